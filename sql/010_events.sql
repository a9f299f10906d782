-- Every event in one shape: snapshots (shelf counts) and changes.
-- event_order puts snapshots before changes at the same instant (SPEC 2.1).
CREATE VIEW events AS
SELECT item_id, employee_id, store_id, date_time, quantity,
       0 AS event_order,
       CAST(NULL AS VARCHAR) AS trans_id,
       CAST(NULL AS BIGINT) AS change_type_id
FROM inventory_snapshot
UNION ALL
SELECT item_id, CAST(NULL AS BIGINT), store_id, date_time, quantity,
       1, trans_id, change_type_id
FROM inventory_change;
