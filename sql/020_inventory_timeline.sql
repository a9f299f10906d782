-- Each distinct event with its store and change type and the stock after it
-- (SPEC 2.1), in the stock order: per store and item by time, snapshots
-- first at the same instant, then trans_id, quantity, employee_id,
-- change_type_id. This is the one place that order is written: stock_seq
-- numbers the events in it, and every later view orders by stock_seq.
--
-- Every column of a record is in that order, so records sent twice (Kafka
-- delivers at least once, SPEC 2.2) are neighbours in it, and
-- repeats_previous(every ordered column) marks all but the first;
-- is_duplicate counts the ones dropped for the run's summary.
--
-- final_quantity = the last count (a snapshot's, or the carried stock) +
-- the counted changes since it, which is what stock_level(change, count,
-- item_id) computes along the stock order; NULL before the first snapshot.
-- It orders by stock_seq, which the first window produced, so one sort
-- serves both.
--
-- The windows run per store and bucket of 16 item ids, ordered by item
-- first, not per store and item: a window partition costs more than a few
-- rows (two thirds of the rules' time at a million events, most items having
-- a handful a day). item_bucket rises with item_id, so (store_id,
-- item_bucket, stock_seq) is the stock order per store and item;
-- repeats_previous and stock_level take item_id, so an item's first event
-- neither repeats nor continues the previous item's. (Larger buckets
-- spread a small catalogue unevenly over many threads: with 64, 2,000
-- items at 48 threads needed more memory per thread.)
CREATE VIEW inventory_timeline AS
WITH bucketed AS (
    SELECT *, item_id / 16 AS item_bucket FROM events
),
ordered AS (
    SELECT *,
           ROW_NUMBER() OVER stock_order AS stock_seq,
           repeats_previous(item_id, date_time, event_order, trans_id, quantity, employee_id, change_type_id)
               OVER stock_order AS sent_again
    FROM bucketed
    WINDOW stock_order AS (
        PARTITION BY store_id, item_bucket
        ORDER BY item_id, date_time, event_order, trans_id, quantity, employee_id, change_type_id)
),
counted AS (
    SELECT e.*,
           s.name AS store_name,
           s.online_store,
           t.change_type,
           CASE
               WHEN e.event_order <= 0 THEN 0
               -- an online BOPIS order is picked from the physical store's
               -- shelf, so it does not move the online store's stock
               WHEN t.change_type = 'bopis' AND s.online_store THEN 0
               ELSE e.quantity
           END AS counted_change
    FROM ordered e
    -- whether a store is the online one is decided once per store, not on
    -- every event (lower and trim copy every event's store name)
    LEFT JOIN (SELECT store_id, name, lower(trim(name)) = 'online' AS online_store FROM store) s
        ON s.store_id = e.store_id
    LEFT JOIN inventory_change_type t ON t.change_type_id = e.change_type_id
    WHERE NOT is_duplicate(e.sent_again)
)
SELECT *,
       stock_level(counted_change, CASE WHEN event_order <= 0 THEN quantity END, item_id)
           OVER (PARTITION BY store_id, item_bucket ORDER BY stock_seq) AS final_quantity
FROM counted;
