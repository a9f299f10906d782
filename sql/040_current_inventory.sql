-- Stock now, per store and item that has a snapshot (SPEC 3): from the last
-- row of each store and item in enriched. pos-etl streams enriched's rows
-- into this view while it writes them, so the stock order is computed once.
-- The ORDER BY inside the aggregates is the stock order of SPEC 2.1.
CREATE VIEW current_inventory AS
SELECT store_id,
       store_name,
       item_id,
       item_name,
       snapshot_quantity,
       current_inventory - snapshot_quantity AS change_quantity,
       current_inventory,
       safety_stock_quantity,
       current_inventory < safety_stock_quantity AS below_safety_stock,
       date_time
FROM (
    SELECT store_id, store_name, item_id, item_name, safety_stock_quantity,
           last_value(quantity ORDER BY date_time, source_type <> 'snapshot_only',
                      trans_id, quantity, employee_id, change_type_id)
               FILTER (WHERE source_type = 'snapshot_only') AS snapshot_quantity,
           last_value(final_quantity ORDER BY date_time, source_type <> 'snapshot_only',
                      trans_id, quantity, employee_id, change_type_id) AS current_inventory,
           max(date_time) AS date_time
    FROM enriched
    GROUP BY store_id, store_name, item_id, item_name, safety_stock_quantity
)
WHERE snapshot_quantity IS NOT NULL
ORDER BY store_id, item_id;
