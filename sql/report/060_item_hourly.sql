-- The chosen items hour by hour, in every store that has them.
CREATE VIEW item_hourly AS
SELECT store_id,
       store_name,
       item_id,
       item_name,
       hour,
       units_sold,
       restocked,
       shrunk,
       stock_at_end AS final_quantity
FROM hourly_activity
WHERE item_id IN (SELECT item_id FROM chosen_items)
ORDER BY item_id, store_id, hour;
