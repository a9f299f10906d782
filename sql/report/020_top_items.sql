-- Items ranked by units sold. Equal units share a rank (1, 2, 2, 4), so the
-- table can hold more than --top rows when the last place is tied.
CREATE VIEW top_items AS
SELECT ranked.rank,
       ranked.item_id,
       ranked.item_name,
       ranked.units_sold,
       ranked.transactions,
       ranked.share_of_units
FROM (
    SELECT RANK() OVER (ORDER BY units_sold DESC) AS rank,
           item_id,
           item_name,
           units_sold,
           transactions,
           CAST(units_sold AS DOUBLE) / CAST(sum(units_sold) OVER () AS DOUBLE) AS share_of_units
    FROM item_sales
) ranked
CROSS JOIN report_settings s
WHERE ranked.rank <= s.top
ORDER BY ranked.rank, ranked.item_id;
