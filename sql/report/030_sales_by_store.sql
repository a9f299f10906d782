-- Units sold per store per day, every day of the period for every store
-- with events (zero when it sold nothing).
CREATE VIEW sales_by_store AS
SELECT s.store_id,
       s.store_name,
       d.day,
       coalesce(u.units_sold, 0) AS units_sold,
       coalesce(u.transactions, 0) AS transactions
FROM report_stores s
CROSS JOIN report_days d
LEFT JOIN (
    SELECT store_id,
           day,
           sum(sales) AS units_sold,
           count(DISTINCT trans_id) AS transactions
    FROM sales_lines
    GROUP BY store_id, day
) u ON u.store_id = s.store_id AND u.day = d.day
ORDER BY s.store_id, d.day;
