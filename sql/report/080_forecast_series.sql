-- The daily series pos-etl forecasts: units sold per day by each of the
-- --top best-selling items (all stores together) and by each store.
CREATE VIEW forecast_series AS
WITH top AS (
    SELECT ranked.item_id, ranked.item_name
    FROM (SELECT item_id, item_name, ROW_NUMBER() OVER (ORDER BY units_sold DESC, item_id) AS place
          FROM item_sales) ranked
    CROSS JOIN report_settings s
    WHERE ranked.place <= s.top
),
item_days AS (
    SELECT item_id, day, sum(sales) AS units_sold
    FROM sales_lines
    WHERE item_id IN (SELECT item_id FROM top)
    GROUP BY item_id, day
)
SELECT 'item' AS series_kind,
       t.item_id AS series_id,
       t.item_name AS series_name,
       d.day,
       coalesce(u.units_sold, 0) AS units_sold
FROM top t
CROSS JOIN report_days d
LEFT JOIN item_days u ON u.item_id = t.item_id AND u.day = d.day
UNION ALL
SELECT 'store', store_id, store_name, day, units_sold
FROM sales_by_store
ORDER BY series_kind, series_id, day;
