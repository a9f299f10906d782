-- The consolidated table for Tableau (SPEC 2). Column names and order are a
-- contract: existing workbooks bind to them. stock_seq comes last, for the
-- views after this one; pos-etl does not write it. The item is joined last,
-- so its columns do not travel through the sort of the stock order.
CREATE VIEW enriched AS
SELECT e.item_id,
       CASE WHEN e.online_store THEN NULL ELSE e.employee_id END AS employee_id,
       e.store_id,
       e.date_time,
       e.quantity,
       CASE
           WHEN e.event_order = 0 THEN 'snapshot_only'
           WHEN e.final_quantity IS NULL THEN 'change_only'
           ELSE 'snapshot_with_change'
       END AS source_type,
       e.store_name,
       CASE WHEN e.event_order = 0 THEN 'inventory report' ELSE e.change_type END AS action,
       e.trans_id,
       e.change_type_id,
       e.change_type,
       e.final_quantity,
       i.name AS item_name,
       i.supplier_id,
       i.safety_stock_quantity,
       CASE WHEN e.change_type IN ('sale', 'bopis') THEN abs(e.quantity) END AS sales,
       e.stock_seq
FROM inventory_timeline e
LEFT JOIN item i ON i.item_id = e.item_id
-- the carried stock is not an event of this run
WHERE e.event_order >= 0
-- the stock order per store and item (see inventory_timeline)
ORDER BY e.store_id, e.item_bucket, e.stock_seq;
