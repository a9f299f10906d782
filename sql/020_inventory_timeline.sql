-- Each distinct event with its store and change type and the stock after it
-- (SPEC 2.1), in the stock order: per store and item by time, snapshots
-- first at the same instant, then trans_id, quantity, employee_id,
-- change_type_id. stock_seq numbers the events in that order.
--
-- Every column of a record is in that order, so records sent twice (Kafka
-- delivers at least once, SPEC 2.2) are equals in it: RANK gives them the
-- position of the first, and only the first is kept.
--
-- final_quantity = the last snapshot's count + the counted changes since it.
-- With changes_so_far the running sum of counted changes, that is
-- changes_so_far + (count − changes_so_far) at the last snapshot: one
-- running sum and one look back. The later windows order by stock_seq, which
-- the first produced, so one sort serves them all.
CREATE VIEW inventory_timeline AS
WITH ranked AS (
    SELECT *,
           ROW_NUMBER() OVER stock_order AS stock_seq,
           RANK() OVER stock_order AS first_of_equals
    FROM events
    WINDOW stock_order AS (
        PARTITION BY store_id, item_id
        ORDER BY date_time, event_order, trans_id, quantity, employee_id, change_type_id)
),
counted AS (
    SELECT e.*,
           s.name AS store_name,
           t.change_type,
           CASE
               WHEN e.event_order = 0 THEN 0
               -- an online BOPIS order is picked from the physical store's
               -- shelf, so it does not move the online store's stock
               WHEN t.change_type = 'bopis' AND s.name = 'online' THEN 0
               ELSE e.quantity
           END AS counted_change
    FROM ranked e
    LEFT JOIN store s ON s.store_id = e.store_id
    LEFT JOIN inventory_change_type t ON t.change_type_id = e.change_type_id
    WHERE e.stock_seq = e.first_of_equals
),
running AS (
    SELECT *,
           SUM(counted_change)
               OVER (PARTITION BY store_id, item_id ORDER BY stock_seq ROWS UNBOUNDED PRECEDING)
               AS changes_so_far
    FROM counted
),
anchored AS (
    SELECT *,
           LAST_VALUE(CASE WHEN event_order = 0 THEN quantity - changes_so_far END) IGNORE NULLS
               OVER (PARTITION BY store_id, item_id ORDER BY stock_seq ROWS UNBOUNDED PRECEDING)
               AS snapshot_anchor
    FROM running
)
SELECT *, snapshot_anchor + changes_so_far AS final_quantity
FROM anchored;
