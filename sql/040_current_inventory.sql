-- Stock now, per store and item that has a snapshot (SPEC 3): the last row
-- of each store and item in enriched, in stock_seq order, or the carried
-- stock of an incremental run where the run has nothing newer. pos-etl
-- streams enriched's rows into this view while it writes them, so the
-- stock order is computed once.
CREATE VIEW current_inventory AS
WITH rows AS (
    SELECT store_id, item_id, stock_seq, date_time, final_quantity,
           CASE WHEN source_type = 'snapshot_only' THEN quantity END AS snapshot_count
    FROM enriched
    UNION ALL
    SELECT store_id, item_id, CAST(0 AS BIGINT UNSIGNED), date_time, final_quantity, snapshot_quantity
    FROM stock_state
),
latest AS (
    SELECT store_id,
           item_id,
           last_value(snapshot_count ORDER BY stock_seq)
               FILTER (WHERE snapshot_count IS NOT NULL) AS snapshot_quantity,
           last_value(final_quantity ORDER BY stock_seq) AS current_inventory,
           max(date_time) AS date_time
    FROM rows
    GROUP BY store_id, item_id
)
SELECT l.store_id,
       s.name AS store_name,
       l.item_id,
       i.name AS item_name,
       l.snapshot_quantity,
       l.current_inventory - l.snapshot_quantity AS change_quantity,
       l.current_inventory,
       i.safety_stock_quantity,
       l.current_inventory < i.safety_stock_quantity AS below_safety_stock,
       l.date_time
FROM latest l
LEFT JOIN store s ON s.store_id = l.store_id
LEFT JOIN item i ON i.item_id = l.item_id
WHERE l.snapshot_quantity IS NOT NULL
ORDER BY l.store_id, l.item_id;
