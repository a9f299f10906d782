#!/usr/bin/env bash
# Incremental runs into PostgreSQL (issue: PostgreSQL as a destination, and
# incremental runs). On a throwaway local server (bench/pg_server.sh), for
# `generate --items ITEMS --days DAYS` with its last hour held back, times
# in one run, each repeated RUNS times into a fresh schema:
#   enrich --postgres (batch)                 : the full load of the 30 days
#   psql \copy enriched FROM its CSV output    : the peer, loading the same rows
#   enrich --postgres --incremental (first)   : the same full load, plus journal and checkpoint
#   enrich --postgres --incremental (+1 hour) : the held-back hour appended to the files
# and reports wall times, peak memory, and the last as a fraction of the full loads.
# Usage: bench/incremental.sh [ITEMS DAYS RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
items=${1:-100000}
days=${2:-30}
runs=${3:-3}

source bench/setup.sh
source bench/pg_server.sh

"$pos_etl" generate --out-dir "$work/data" --items "$items" --days "$days" --seed 1
split_last_hour "$work/data" "$work/base" "$work/hour"
"$pos_etl" enrich --data "$work/base" --out "$work/combined.csv" --progress never

batch=(); batch_rss=(); copy=(); first=(); first_rss=(); hour=(); hour_rss=()
for run in $(seq "$runs"); do
    read -r seconds rss < <(timed "$pos_etl" enrich --data "$work/base" --postgres "$url" --pg-schema "batch$run" --rejects "$work/rejects.csv" --progress never)
    batch+=("$seconds"); batch_rss+=("$rss")
    "$bin/psql" -X -q -d "$url" -c "CREATE TABLE batch$run.enriched_copy (LIKE batch$run.enriched)"
    read -r seconds _ < <(timed "$bin/psql" -X -q -d "$url" -c "\\copy batch$run.enriched_copy FROM '$work/combined.csv' CSV HEADER")
    copy+=("$seconds")
    "$bin/psql" -X -q -d "$url" -c "DROP SCHEMA batch$run CASCADE"

    rm -rf "$work/live" && cp -r "$work/base" "$work/live"
    read -r seconds rss < <(timed "$pos_etl" enrich --data "$work/live" --postgres "$url" --pg-schema "inc$run" --incremental --rejects "$work/rejects.csv" --progress never)
    first+=("$seconds"); first_rss+=("$rss")
    for file in "$work"/hour/*.csv; do cat "$file" >> "$work/live/$(basename "$file")"; done
    read -r seconds rss < <(timed "$pos_etl" enrich --data "$work/live" --postgres "$url" --pg-schema "inc$run" --incremental --rejects "$work/rejects.csv" --progress never --summary-json "$work/hour.json")
    hour+=("$seconds"); hour_rss+=("$rss")
done
rows=$("$bin/psql" -X -At -d "$url" -c "SELECT count(*) FROM inc$runs.enriched")
appended=$(python3 -c "import json; print(json.load(open('$work/hour.json'))['incremental']['rows_appended'])")
"$pos_etl" enrich --data "$work/live" --out "$work/all.csv" --progress never
expected=$(($(wc -l < "$work/all.csv") - 1))
fraction() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
b=$(median "${batch[@]}"); c=$(median "${copy[@]}"); f=$(median "${first[@]}"); h=$(median "${hour[@]}")
echo
echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}'), $items items x $days days, last hour ($hour_rows records from $cut) held back; median of $runs"
echo "enrich --postgres, full load (batch):        ${b} s, peak $(( $(median "${batch_rss[@]}") / 1024 )) MiB"
echo "psql \\copy enriched of pos-etl's CSV:         ${c} s   (pos-etl / psql: $(fraction "$b" "$c"))"
echo "enrich --incremental, first run (full load): ${f} s, peak $(( $(median "${first_rss[@]}") / 1024 )) MiB"
echo "enrich --incremental, +1 hour:               ${h} s, peak $(( $(median "${hour_rss[@]}") / 1024 )) MiB; $appended rows appended"
echo "+1 hour as a fraction of the full load:      $(fraction "$h" "$b") (batch), $(fraction "$h" "$f") (first incremental run)"
echo "enriched rows after +1 hour: $rows; a full run over the same files: $expected"
