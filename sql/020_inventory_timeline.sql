-- Each event with its lookups and the stock after it (SPEC 2.1), in the order
-- of the stock: per store and item by time, snapshots first at the same
-- instant, then trans_id, quantity, employee_id, change_type_id.
--
-- final_quantity = the last snapshot's count + the counted changes since it,
-- computed as running sums over one window order, so that one sort serves
-- every window (the order is spelled out twice because a WINDOW clause
-- belongs to one SELECT).
CREATE VIEW inventory_timeline AS
WITH joined AS (
    SELECT e.*,
           s.name AS store_name,
           i.name AS item_name,
           i.supplier_id,
           i.safety_stock_quantity,
           t.change_type,
           CASE
               WHEN e.event_order = 0 THEN 0
               -- an online BOPIS order is picked from the physical store's
               -- shelf, so it does not move the online store's stock
               WHEN t.change_type = 'bopis' AND s.name = 'online' THEN 0
               ELSE e.quantity
           END AS counted_change
    FROM events e
    LEFT JOIN store s ON s.store_id = e.store_id
    LEFT JOIN item i ON i.item_id = e.item_id
    LEFT JOIN inventory_change_type t ON t.change_type_id = e.change_type_id
),
running AS (
    SELECT *,
           ROW_NUMBER() OVER stock_order AS stock_seq,
           SUM(counted_change) OVER stock_order AS changes_so_far,
           COUNT(CASE WHEN event_order = 0 THEN 1 END) OVER stock_order AS snapshots_so_far
    FROM joined
    WINDOW stock_order AS (
        PARTITION BY store_id, item_id
        ORDER BY date_time, event_order, trans_id, quantity, employee_id, change_type_id
        ROWS UNBOUNDED PRECEDING)
),
anchored AS (
    SELECT *,
           LAST_VALUE(CASE WHEN event_order = 0 THEN quantity END) IGNORE NULLS
               OVER stock_order AS last_snapshot_quantity,
           LAST_VALUE(CASE WHEN event_order = 0 THEN changes_so_far END) IGNORE NULLS
               OVER stock_order AS changes_at_last_snapshot
    FROM running
    WINDOW stock_order AS (
        PARTITION BY store_id, item_id
        ORDER BY date_time, event_order, trans_id, quantity, employee_id, change_type_id
        ROWS UNBOUNDED PRECEDING)
)
SELECT *,
       last_snapshot_quantity + changes_so_far - changes_at_last_snapshot AS final_quantity
FROM anchored;
