#!/usr/bin/env bash
# Delta Lake tables (issue: Object stores and Delta Lake). For `generate
# --items ITEMS --days DAYS` with its last hour held back, into fresh local
# tables, each repeated RUNS times:
#   enrich --format delta (batch)               : the full load, enriched + current_inventory
#   deltalake (Python delta-rs) write_deltalake : the peer, writing the same enriched rows
#                                                 (pos-etl's Parquet output) as a Delta table
#   enrich --format delta --incremental (first) : the same full load, plus the checkpoint
#   enrich --format delta --incremental (+1 h)  : the held-back hour appended
# and reports wall times, peak memory, and the hour as a fraction of the
# full load; then checks the appended table against a full run's rows.
# Usage: bench/delta.sh [ITEMS DAYS RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
items=${1:-100000}
days=${2:-30}
runs=${3:-3}

source bench/setup.sh
work=$(mktemp -d)
on_exit 'rm -rf "$work"'
python_env "${VENV:-/tmp/pos-etl-bench-delta-venv}" bench/requirements-delta.txt

"$pos_etl" generate --out-dir "$work/data" --items "$items" --days "$days" --seed 1
split_last_hour "$work/data" "$work/base" "$work/hour"
"$pos_etl" enrich --data "$work/base" --out "$work/enriched.parquet" --progress never

batch=(); batch_rss=(); peer=(); first=(); first_rss=(); hour=(); hour_rss=()
for run in $(seq "$runs"); do
    rm -rf "$work/lake"
    read -r seconds rss < <(timed "$pos_etl" enrich --data "$work/base" --format delta --out "$work/lake/e" --current-out "$work/lake/c" --progress never)
    batch+=("$seconds"); batch_rss+=("$rss")
    read -r seconds _ < <(timed "$venv/bin/python" -c '
import sys, pyarrow.parquet as pq, deltalake
deltalake.write_deltalake(sys.argv[2], pq.read_table(sys.argv[1]), mode="overwrite")' "$work/enriched.parquet" "$work/lake/peer")
    peer+=("$seconds")

    rm -rf "$work/lake" "$work/live" && cp -r "$work/base" "$work/live"
    incremental=(enrich --data "$work/live" --format delta --incremental --out "$work/lake/e" --current-out "$work/lake/c" --progress never)
    read -r seconds rss < <(timed "$pos_etl" "${incremental[@]}")
    first+=("$seconds"); first_rss+=("$rss")
    for file in "$work"/hour/*.csv; do cat "$file" >> "$work/live/$(basename "$file")"; done
    read -r seconds rss < <(timed "$pos_etl" "${incremental[@]}" --summary-json "$work/hour.json")
    hour+=("$seconds"); hour_rss+=("$rss")
done
appended=$(python3 -c "import json; print(json.load(open('$work/hour.json'))['incremental']['rows_appended'])")
"$pos_etl" enrich --data "$work/live" --out "$work/all.parquet" --progress never
# The appended table holds exactly the rows of a full run over the same files.
"$venv/bin/python" - "$work/lake/e" "$work/all.parquet" <<'PY'
import sys, deltalake, pyarrow.parquet as pq
table = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table()
full = pq.read_table(sys.argv[2]).cast(table.schema)
key = [(name, "ascending") for name in table.column_names]
assert table.sort_by(key).equals(full.sort_by(key)), "the appended table differs from a full run"
print(f"check: the table after +1 hour equals a full run ({table.num_rows} rows)")
PY
fraction() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
b=$(median "${batch[@]}"); p=$(median "${peer[@]}"); f=$(median "${first[@]}"); h=$(median "${hour[@]}")
echo
echo "deltalake $("$venv/bin/python" -c 'import deltalake; print(deltalake.__version__)'), $items items x $days days, last hour ($hour_rows records from $cut) held back; median of $runs"
echo "enrich --format delta, full load (2 tables):     ${b} s, peak $(( $(median "${batch_rss[@]}") / 1024 )) MiB"
echo "write_deltalake of the same enriched rows:       ${p} s   (pos-etl / delta-rs: $(fraction "$b" "$p"))"
echo "enrich --format delta --incremental, first run:  ${f} s, peak $(( $(median "${first_rss[@]}") / 1024 )) MiB"
echo "enrich --format delta --incremental, +1 hour:    ${h} s, peak $(( $(median "${hour_rss[@]}") / 1024 )) MiB; $appended rows appended"
echo "+1 hour as a fraction of the full load:          $(fraction "$h" "$b") (batch), $(fraction "$h" "$f") (first incremental run)"
