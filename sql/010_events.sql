-- Every event in one shape: snapshots (shelf counts) and changes, and, in an
-- incremental run, the stock carried in from the events already applied
-- (stock_state: one row per store and item, the state after the last event
-- before this run's; empty in a full run). event_order puts the carried
-- stock first and snapshots before changes at the same instant (SPEC 2.1).
CREATE VIEW events AS
SELECT item_id, employee_id, store_id, date_time, quantity,
       0 AS event_order,
       CAST(NULL AS VARCHAR) AS trans_id,
       CAST(NULL AS BIGINT) AS change_type_id
FROM inventory_snapshot
UNION ALL
SELECT item_id, CAST(NULL AS BIGINT), store_id, date_time, quantity,
       1, trans_id, change_type_id
FROM inventory_change
UNION ALL
SELECT item_id, CAST(NULL AS BIGINT), store_id, date_time, final_quantity,
       -1, CAST(NULL AS VARCHAR), CAST(NULL AS BIGINT)
FROM stock_state;
