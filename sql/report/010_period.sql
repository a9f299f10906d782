-- The report's calendar: every day and every hour from the first event to
-- the last, so that days and hours with no sales appear as zeros.
-- report_settings (top, horizon, history_days) and report_items (the
-- --items chosen, possibly none) are provided by pos-etl.
--
-- Tables, not views, where a result is small and later views read it more
-- than once: computed once, and a join with them builds its hash table on
-- their side, not on enriched's.
CREATE TABLE report_period AS
SELECT CAST(min(date_time) AS DATE) AS first_day,
       CAST(max(date_time) AS DATE) AS last_day,
       date_trunc('hour', min(date_time)) AS first_hour,
       date_trunc('hour', max(date_time)) AS last_hour
FROM enriched;

-- day_of_week: 1 = Monday … 7 = Sunday, here and in sales_lines.
CREATE VIEW report_days AS
SELECT day,
       CAST(CASE date_part('dow', day) WHEN 0 THEN 7 ELSE date_part('dow', day) END AS BIGINT) AS day_of_week
FROM (
    SELECT CAST(unnest(generate_series(first_day, last_day, INTERVAL '1 day')) AS DATE) AS day
    FROM report_period
);

CREATE VIEW report_hours AS
SELECT unnest(generate_series(first_hour, last_hour, INTERVAL '1 hour')) AS hour
FROM report_period;

CREATE TABLE report_stores AS
SELECT DISTINCT store_id, store_name FROM enriched;

-- Every line that sold units (the sales column: sale and BOPIS), with the
-- calendar fields the report groups by.
CREATE VIEW sales_lines AS
SELECT store_id,
       item_id,
       item_name,
       trans_id,
       sales,
       CAST(date_time AS DATE) AS day,
       CAST(CASE date_part('dow', date_time) WHEN 0 THEN 7 ELSE date_part('dow', date_time) END AS BIGINT)
           AS day_of_week,
       CAST(date_part('hour', date_time) AS BIGINT) AS hour_of_day
FROM enriched
WHERE sales IS NOT NULL;

-- Units sold per item, across stores.
CREATE TABLE item_sales AS
SELECT item_id,
       item_name,
       sum(sales) AS units_sold,
       count(DISTINCT trans_id) AS transactions
FROM sales_lines
GROUP BY item_id, item_name;
