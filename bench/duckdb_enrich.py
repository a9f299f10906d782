"""The DuckDB peer of the benchmark: the rules of sql/*.sql (SPEC 2 and 3)
written as DuckDB SQL over the same CSV exports, writing the same two outputs
in the same format as `pos-etl enrich`.

Usage: duckdb_enrich.py DATA_DIR ENRICHED_OUT CURRENT_OUT THREADS [MEMORY_LIMIT]
The format of each output follows its extension (.csv or .parquet).
"""

import glob
import os
import sys

import duckdb

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def source_views(data: str) -> str:
    """The five input tables, typed as pos-etl types them (the exports are in
    the original dialect: BOM, CRLF, GUIDs in braces)."""
    csv = "header = true, auto_detect = false, delim = ',', quote = '\"'"
    snapshots = files(data, "inventory_snapshot_")
    changes = files(data, "inventory_change_")
    return f"""
    CREATE VIEW store AS SELECT * FROM read_csv('{data}/store.csv', {csv},
        columns = {{'store_id': 'BIGINT', 'name': 'VARCHAR'}});
    CREATE VIEW item AS SELECT * FROM read_csv('{data}/item.csv', {csv},
        columns = {{'item_id': 'BIGINT', 'name': 'VARCHAR', 'supplier_id': 'BIGINT',
                   'safety_stock_quantity': 'BIGINT'}});
    CREATE VIEW inventory_change_type AS SELECT * FROM read_csv('{data}/inventory_change_type.csv', {csv},
        columns = {{'change_type_id': 'BIGINT', 'change_type': 'VARCHAR'}});
    CREATE VIEW inventory_snapshot AS SELECT * FROM read_csv({snapshots}, {csv},
        timestampformat = '{TIME_FORMAT}',
        columns = {{'item_id': 'BIGINT', 'employee_id': 'BIGINT', 'store_id': 'BIGINT',
                   'date_time': 'TIMESTAMP', 'quantity': 'BIGINT'}});
    CREATE VIEW inventory_change AS
        SELECT trim(trans_id, '{{}}') AS trans_id, item_id, store_id, date_time, quantity, change_type_id
        FROM read_csv({changes}, {csv},
            timestampformat = '{TIME_FORMAT}',
            columns = {{'trans_id': 'VARCHAR', 'item_id': 'BIGINT', 'store_id': 'BIGINT',
                       'date_time': 'TIMESTAMP', 'quantity': 'BIGINT', 'change_type_id': 'BIGINT'}});
    """


def files(data: str, prefix: str) -> str:
    """The event files of one table as a DuckDB list (not inventory_change_type.csv)."""
    paths = sorted(p for p in glob.glob(os.path.join(data, prefix + "*.csv"))
                   if os.path.basename(p) != "inventory_change_type.csv")
    return "[" + ", ".join(f"'{p}'" for p in paths) + "]"


# The rules as sql/*.sql state them, in DuckDB's dialect: records ranked in the
# stock order (equals after the first are duplicates), the lookups joined, a
# running sum of the counted changes and a look back to the last snapshot.
# The timeline is materialised once, as a DuckDB user would for two outputs.
RULES = """
CREATE TEMP TABLE inventory_timeline AS
WITH ranked AS (
    SELECT *, ROW_NUMBER() OVER w AS stock_seq, RANK() OVER w AS first_of_equals
    FROM (SELECT item_id, employee_id, store_id, date_time, quantity, 0 AS event_order,
                 CAST(NULL AS VARCHAR) AS trans_id, CAST(NULL AS BIGINT) AS change_type_id
          FROM inventory_snapshot
          UNION ALL
          SELECT item_id, NULL, store_id, date_time, quantity, 1, trans_id, change_type_id
          FROM inventory_change)
    WINDOW w AS (PARTITION BY store_id, item_id
                 ORDER BY date_time, event_order, trans_id, quantity, employee_id, change_type_id)
),
counted AS (
    SELECT e.*, s.name AS store_name, i.name AS item_name, i.supplier_id, i.safety_stock_quantity,
           t.change_type,
           CASE WHEN e.event_order = 0 THEN 0
                WHEN t.change_type = 'bopis' AND s.name = 'online' THEN 0
                ELSE e.quantity END AS counted_change
    FROM ranked e
    LEFT JOIN store s ON s.store_id = e.store_id
    LEFT JOIN item i ON i.item_id = e.item_id
    LEFT JOIN inventory_change_type t ON t.change_type_id = e.change_type_id
    WHERE e.stock_seq = e.first_of_equals
),
running AS (
    SELECT *, SUM(counted_change) OVER (PARTITION BY store_id, item_id ORDER BY stock_seq
                                        ROWS UNBOUNDED PRECEDING) AS changes_so_far
    FROM counted
),
anchored AS (
    SELECT *, LAST_VALUE(CASE WHEN event_order = 0 THEN quantity - changes_so_far END IGNORE NULLS)
                  OVER (PARTITION BY store_id, item_id ORDER BY stock_seq ROWS UNBOUNDED PRECEDING)
                  AS snapshot_anchor
    FROM running
)
SELECT *, snapshot_anchor + changes_so_far AS final_quantity
FROM anchored;

CREATE VIEW enriched AS
SELECT item_id,
       CASE WHEN store_name = 'online' THEN NULL ELSE employee_id END AS employee_id,
       store_id, date_time, quantity,
       CASE WHEN event_order = 0 THEN 'snapshot_only'
            WHEN snapshot_anchor IS NULL THEN 'change_only'
            ELSE 'snapshot_with_change' END AS source_type,
       store_name,
       CASE WHEN event_order = 0 THEN 'inventory report' ELSE change_type END AS action,
       trans_id, change_type_id, change_type, final_quantity, item_name, supplier_id,
       safety_stock_quantity,
       CASE WHEN change_type IN ('sale', 'bopis') THEN abs(quantity) END AS sales
FROM inventory_timeline
ORDER BY store_id, item_id, stock_seq;

CREATE VIEW current_inventory AS
SELECT store_id, store_name, item_id, item_name, snapshot_quantity,
       current_inventory - snapshot_quantity AS change_quantity, current_inventory,
       safety_stock_quantity, current_inventory < safety_stock_quantity AS below_safety_stock, date_time
FROM (
    SELECT store_id, store_name, item_id, item_name, safety_stock_quantity,
           arg_max(quantity, stock_seq) FILTER (WHERE event_order = 0) AS snapshot_quantity,
           arg_max(final_quantity, stock_seq) AS current_inventory,
           max(date_time) AS date_time
    FROM inventory_timeline
    GROUP BY ALL
)
WHERE snapshot_quantity IS NOT NULL
ORDER BY store_id, item_id;
"""


def copy_to(con: duckdb.DuckDBPyConnection, view: str, path: str) -> None:
    if path.endswith(".parquet"):
        options = "FORMAT parquet, COMPRESSION snappy"
    else:
        options = f"FORMAT csv, HEADER true, TIMESTAMPFORMAT '{TIME_FORMAT}'"
    con.execute(f"COPY (SELECT * FROM {view}) TO '{path}' ({options})")


def main(data: str, enriched: str, current: str, threads: int, memory_limit: str | None) -> None:
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute("SET preserve_insertion_order = true")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(source_views(data))
    con.execute(RULES)
    copy_to(con, "enriched", enriched)
    copy_to(con, "current_inventory", current)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else None)
