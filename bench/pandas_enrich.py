"""The pandas peer of the benchmark: the rules of SPEC 2 and 3 as an analyst
writes them in a notebook (read, deduplicate, merge the lookups, sort, then a
loop per store and item carrying the running stock): the approach pos-etl
replaces. Writes the same two CSV outputs as `pos-etl enrich`.

Usage: pandas_enrich.py DATA_DIR ENRICHED_OUT CURRENT_OUT
"""

import glob
import os
import sys

import numpy as np
import pandas as pd

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def read(path_or_paths, **kwargs) -> pd.DataFrame:
    paths = path_or_paths if isinstance(path_or_paths, list) else [path_or_paths]
    frames = [pd.read_csv(p, encoding="utf-8-sig", **kwargs) for p in paths]
    frame = pd.concat(frames, ignore_index=True)
    frame.columns = [c.strip().lower() for c in frame.columns]
    return frame


def event_files(data: str, prefix: str) -> list[str]:
    return sorted(p for p in glob.glob(os.path.join(data, prefix + "*.csv"))
                  if os.path.basename(p) != "inventory_change_type.csv")


def main(data: str, enriched_out: str, current_out: str) -> None:
    stores = read(os.path.join(data, "store.csv")).rename(columns={"name": "store_name"})
    items = read(os.path.join(data, "item.csv")).rename(columns={"name": "item_name"})
    change_types = read(os.path.join(data, "inventory_change_type.csv"))

    snapshots = read(event_files(data, "inventory_snapshot_")).drop_duplicates()
    snapshots["date_time"] = pd.to_datetime(snapshots["date_time"], format=TIME_FORMAT)
    snapshots["event_order"] = 0
    changes = read(event_files(data, "inventory_change_"))
    changes["trans_id"] = changes["trans_id"].str.strip("{}")
    changes = changes.drop_duplicates()
    changes["date_time"] = pd.to_datetime(changes["date_time"], format=TIME_FORMAT)
    changes["event_order"] = 1

    events = pd.concat([snapshots, changes], ignore_index=True)
    events = events.merge(stores, on="store_id", how="left")
    events = events.merge(items, on="item_id", how="left")
    events = events.merge(change_types, on="change_type_id", how="left")
    events = events.sort_values(
        ["store_id", "item_id", "date_time", "event_order", "trans_id", "quantity", "employee_id", "change_type_id"],
        na_position="last", kind="mergesort",
    ).reset_index(drop=True)

    final_quantity = np.full(len(events), np.nan)
    source_type = np.empty(len(events), dtype=object)
    current_rows = []
    for (store_id, item_id), group in events.groupby(["store_id", "item_id"], sort=False):
        stock = None
        snapshot_quantity = None
        for row in group.itertuples():
            if row.event_order == 0:
                stock = row.quantity
                snapshot_quantity = row.quantity
                source_type[row.Index] = "snapshot_only"
            else:
                source_type[row.Index] = "change_only" if stock is None else "snapshot_with_change"
                if stock is not None and not (row.change_type == "bopis" and row.store_name == "online"):
                    stock += row.quantity
            if stock is not None:
                final_quantity[row.Index] = stock
        if snapshot_quantity is not None:
            last = group.iloc[-1]
            current_rows.append({
                "store_id": store_id, "store_name": last.store_name, "item_id": item_id,
                "item_name": last.item_name, "snapshot_quantity": snapshot_quantity,
                "change_quantity": stock - snapshot_quantity, "current_inventory": stock,
                "safety_stock_quantity": last.safety_stock_quantity,
                "below_safety_stock": "true" if stock < last.safety_stock_quantity else "false",
                "date_time": group["date_time"].max(),
            })

    events["final_quantity"] = pd.array(final_quantity, dtype="Int64")
    events["source_type"] = source_type
    events["action"] = np.where(events["event_order"] == 0, "inventory report", events["change_type"])
    events.loc[events["store_name"] == "online", "employee_id"] = np.nan
    is_sale = events["change_type"].isin(["sale", "bopis"])
    events["sales"] = pd.array(np.where(is_sale, events["quantity"].abs(), np.nan), dtype="Int64")
    for column in ["employee_id", "change_type_id", "supplier_id", "safety_stock_quantity"]:
        events[column] = events[column].astype("Int64")
    columns = ["item_id", "employee_id", "store_id", "date_time", "quantity", "source_type", "store_name",
               "action", "trans_id", "change_type_id", "change_type", "final_quantity", "item_name",
               "supplier_id", "safety_stock_quantity", "sales"]
    events[columns].to_csv(enriched_out, index=False, date_format=TIME_FORMAT, lineterminator="\n")
    current = pd.DataFrame(current_rows)
    current["safety_stock_quantity"] = current["safety_stock_quantity"].astype("Int64")
    current.to_csv(current_out, index=False, date_format=TIME_FORMAT, lineterminator="\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
