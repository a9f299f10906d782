-- What pos-etl clusters items on: units sold per item by day of week
-- (1 = Monday … 7 = Sunday) and by hour of day.
CREATE VIEW item_profiles AS
SELECT item_id, item_name, 'day_of_week' AS profile, day_of_week AS bucket, sum(sales) AS units_sold
FROM sales_lines GROUP BY item_id, item_name, day_of_week
UNION ALL
SELECT item_id, item_name, 'hour_of_day', hour_of_day, sum(sales)
FROM sales_lines GROUP BY item_id, item_name, hour_of_day
ORDER BY item_id, profile, bucket;
