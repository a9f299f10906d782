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

CREATE VIEW report_days AS
SELECT CAST(unnest(generate_series(first_day, last_day, INTERVAL '1 day')) AS DATE) AS day
FROM report_period;

CREATE VIEW report_hours AS
SELECT unnest(generate_series(first_hour, last_hour, INTERVAL '1 hour')) AS hour
FROM report_period;

CREATE TABLE report_stores AS
SELECT DISTINCT store_id, store_name FROM enriched;

-- Units sold (the sales column: sale and BOPIS) per item, across stores.
CREATE TABLE item_sales AS
SELECT item_id,
       item_name,
       sum(sales) AS units_sold,
       count(DISTINCT trans_id) AS transactions
FROM enriched
WHERE sales IS NOT NULL
GROUP BY item_id, item_name;
