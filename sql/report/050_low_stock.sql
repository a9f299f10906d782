-- The --top (store, item) pairs with the lowest stock now, each with its
-- last history_days days: units sold, restocked, shrunk, stock at day's end.
CREATE VIEW low_stock AS
WITH daily AS (
    SELECT store_id,
           item_id,
           CAST(hour AS DATE) AS day,
           sum(units_sold) AS units_sold,
           sum(restocked) AS restocked,
           sum(shrunk) AS shrunk,
           last_value(stock_at_end ORDER BY hour) AS end_of_day_stock
    FROM hourly_activity
    GROUP BY store_id, item_id, CAST(hour AS DATE)
),
recent_days AS (
    SELECT day
    FROM (SELECT day, ROW_NUMBER() OVER (ORDER BY day DESC) AS days_back FROM report_days)
    CROSS JOIN report_settings s
    WHERE days_back <= s.history_days
)
SELECT p.rank,
       p.store_id,
       p.store_name,
       p.item_id,
       p.item_name,
       p.current_inventory,
       p.safety_stock_quantity,
       p.below_safety_stock,
       d.day,
       d.units_sold,
       d.restocked,
       d.shrunk,
       d.end_of_day_stock
FROM low_stock_pairs p
JOIN daily d ON d.store_id = p.store_id AND d.item_id = p.item_id
JOIN recent_days r ON r.day = d.day
ORDER BY p.rank, d.day;
