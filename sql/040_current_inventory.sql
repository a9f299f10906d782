-- Stock now, per store and item that has a snapshot (SPEC 3): the last row of
-- each (store, item) in inventory_timeline.
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
           last_value(last_snapshot_quantity ORDER BY stock_seq) AS snapshot_quantity,
           last_value(final_quantity ORDER BY stock_seq) AS current_inventory,
           max(date_time) AS date_time
    FROM inventory_timeline
    GROUP BY store_id, store_name, item_id, item_name, safety_stock_quantity
    HAVING max(snapshots_so_far) > 0
)
ORDER BY store_id, item_id;
