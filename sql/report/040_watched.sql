-- The (store, item) pairs followed hour by hour: the --top pairs with the
-- lowest stock now, and every store of the items chosen with --items (by
-- default the five best sellers).
CREATE TABLE chosen_items AS
SELECT item_id FROM report_items
UNION ALL
SELECT item_id
FROM (SELECT item_id FROM item_sales ORDER BY units_sold DESC, item_id LIMIT 5)
WHERE (SELECT count(*) FROM report_items) = 0;

-- Lowest stock first; equal stock in store and item order, so exactly --top.
CREATE VIEW low_stock_pairs AS
SELECT ranked.*
FROM (
    SELECT ROW_NUMBER() OVER (ORDER BY current_inventory, store_id, item_id) AS rank,
           store_id, store_name, item_id, item_name,
           current_inventory, safety_stock_quantity, below_safety_stock
    FROM current_inventory
) ranked
CROSS JOIN report_settings s
WHERE ranked.rank <= s.top;

-- A table: joined with all of enriched below, it must be the side the hash
-- table is built on.
CREATE TABLE watched_pairs AS
SELECT DISTINCT store_id, store_name, item_id, item_name
FROM (
    SELECT store_id, store_name, item_id, item_name FROM low_stock_pairs
    UNION ALL
    SELECT store_id, store_name, item_id, item_name
    FROM enriched
    WHERE item_id IN (SELECT item_id FROM chosen_items)
);

-- Every hour of the period for every watched pair: units sold, restocked and
-- shrunk in it, and the stock at its end (the final_quantity of its last
-- event in the stock order of SPEC 2.1, stock_seq, carried through hours
-- without events).
-- Read by low_stock and item_hourly, so computed once.
CREATE TABLE hourly_activity AS
WITH activity AS (
    SELECT e.store_id,
           e.item_id,
           date_trunc('hour', e.date_time) AS hour,
           sum(e.sales) AS units_sold,
           sum(CASE WHEN e.change_type = 'restock' THEN e.quantity END) AS restocked,
           sum(CASE WHEN e.change_type = 'shrink' THEN -e.quantity END) AS shrunk,
           last_value(e.final_quantity ORDER BY e.stock_seq) AS closing_stock
    FROM enriched e
    JOIN watched_pairs w ON w.store_id = e.store_id AND w.item_id = e.item_id
    GROUP BY e.store_id, e.item_id, date_trunc('hour', e.date_time)
)
SELECT w.store_id,
       w.store_name,
       w.item_id,
       w.item_name,
       h.hour,
       coalesce(a.units_sold, 0) AS units_sold,
       coalesce(a.restocked, 0) AS restocked,
       coalesce(a.shrunk, 0) AS shrunk,
       LAST_VALUE(a.closing_stock) IGNORE NULLS OVER (
           PARTITION BY w.store_id, w.item_id ORDER BY h.hour ROWS UNBOUNDED PRECEDING
       ) AS stock_at_end
FROM watched_pairs w
CROSS JOIN report_hours h
LEFT JOIN activity a ON a.store_id = w.store_id AND a.item_id = w.item_id AND a.hour = h.hour;
