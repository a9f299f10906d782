-- The consolidated table for Tableau (SPEC 2). Column names and order are a
-- contract: existing workbooks bind to them.
CREATE VIEW enriched AS
SELECT item_id,
       CASE WHEN store_name = 'online' THEN NULL ELSE employee_id END AS employee_id,
       store_id,
       date_time,
       quantity,
       CASE
           WHEN event_order = 0 THEN 'snapshot_only'
           WHEN snapshots_so_far = 0 THEN 'change_only'
           ELSE 'snapshot_with_change'
       END AS source_type,
       store_name,
       CASE WHEN event_order = 0 THEN 'inventory report' ELSE change_type END AS action,
       trans_id,
       change_type_id,
       change_type,
       final_quantity,
       item_name,
       supplier_id,
       safety_stock_quantity,
       CASE WHEN change_type IN ('sale', 'bopis') THEN abs(quantity) END AS sales
FROM inventory_timeline
ORDER BY store_id, item_id, stock_seq;
