-- Every distinct event in one shape: snapshots (shelf counts) and changes.
-- Kafka delivers at least once, so records identical in every column count
-- once (SPEC 2.2); distinct records are never merged.
-- event_order puts snapshots before changes at the same instant (SPEC 2.1).
CREATE VIEW events AS
SELECT item_id, employee_id, store_id, date_time, quantity,
       0 AS event_order,
       CAST(NULL AS VARCHAR) AS trans_id,
       CAST(NULL AS BIGINT) AS change_type_id
FROM (SELECT DISTINCT item_id, employee_id, store_id, date_time, quantity
      FROM inventory_snapshot)
UNION ALL
SELECT item_id, CAST(NULL AS BIGINT), store_id, date_time, quantity,
       1, trans_id, change_type_id
FROM (SELECT DISTINCT trans_id, item_id, store_id, date_time, quantity, change_type_id
      FROM inventory_change);
