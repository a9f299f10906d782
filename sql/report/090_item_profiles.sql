-- What pos-etl clusters items on: units sold per item by day of week
-- (1 = Monday … 7 = Sunday) and by hour of day, and the days in the period.
CREATE VIEW item_profiles AS
WITH sold AS (
    SELECT item_id, item_name,
           CAST(CASE date_part('dow', date_time) WHEN 0 THEN 7 ELSE date_part('dow', date_time) END AS BIGINT)
               AS day_of_week,
           CAST(date_part('hour', date_time) AS BIGINT) AS hour_of_day,
           sales
    FROM enriched
    WHERE sales IS NOT NULL
)
SELECT item_id, item_name, 'day_of_week' AS profile, day_of_week AS bucket, sum(sales) AS units_sold
FROM sold GROUP BY item_id, item_name, day_of_week
UNION ALL
SELECT item_id, item_name, 'hour_of_day', hour_of_day, sum(sales)
FROM sold GROUP BY item_id, item_name, hour_of_day
ORDER BY item_id, profile, bucket;
