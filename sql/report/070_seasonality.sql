-- When each store sells: units per day of week (1 = Monday … 7 = Sunday)
-- and hour of day, and an index: the cell's units per occurrence of its
-- weekday over the mean of the store's cells (1.0 = an average hour).
CREATE VIEW seasonality AS
WITH cells AS (
    SELECT s.store_id, s.store_name, d.day_of_week, h.hour_of_day
    FROM report_stores s
    CROSS JOIN (SELECT unnest(range(1, 8)) AS day_of_week) d
    CROSS JOIN (SELECT unnest(range(0, 24)) AS hour_of_day) h
),
sold AS (
    SELECT store_id, day_of_week, hour_of_day, sum(sales) AS units_sold
    FROM sales_lines
    GROUP BY store_id, day_of_week, hour_of_day
),
weekdays AS (
    SELECT day_of_week, count(*) AS occurrences
    FROM report_days
    GROUP BY day_of_week
),
rated AS (
    SELECT c.store_id, c.store_name, c.day_of_week, c.hour_of_day,
           coalesce(s.units_sold, 0) AS units_sold,
           CAST(coalesce(s.units_sold, 0) AS DOUBLE) / CAST(w.occurrences AS DOUBLE) AS units_per_occurrence
    FROM cells c
    LEFT JOIN sold s
        ON s.store_id = c.store_id AND s.day_of_week = c.day_of_week AND s.hour_of_day = c.hour_of_day
    LEFT JOIN weekdays w ON w.day_of_week = c.day_of_week
)
SELECT store_id,
       store_name,
       day_of_week,
       hour_of_day,
       units_sold,
       units_per_occurrence
           / nullif(avg(units_per_occurrence) OVER (PARTITION BY store_id), 0) AS index
FROM rated
ORDER BY store_id, day_of_week, hour_of_day;
