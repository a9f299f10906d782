#!/usr/bin/env bash
# PostgreSQL load benchmark (issue: PostgreSQL as a destination). On a
# throwaway local server (initdb in a temporary directory, default settings,
# fsync on), times in one run, alternating:
#   pos-etl enrich --postgres ...        : read, rules, COPY of all three tables, swap, commit
#   psql \copy enriched FROM combined.csv : only loading pos-etl's own CSV output of the same run
# and reports wall times, pos-etl's peak memory and the ratio.
# Usage: bench/postgres.sh [ITEMS DAYS RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
items=${1:-100000}
days=${2:-30}
runs=${3:-3}

source bench/setup.sh
source bench/pg_server.sh

"$pos_etl" generate --out-dir "$work/data" --items "$items" --days "$days" --seed 1
"$pos_etl" enrich --data "$work/data" --out "$work/combined.csv" --progress never
"$pos_etl" enrich --data "$work/data" --postgres "$url" --rejects "$work/rejects.csv" --progress never
"$bin/psql" -X -q -d "$url" -c 'CREATE TABLE enriched_copy (LIKE enriched)'

pos_times=(); pos_rss=(); copy_times=()
for run in $(seq "$runs"); do
    read -r seconds rss < <(timed "$pos_etl" enrich --data "$work/data" --postgres "$url" --rejects "$work/rejects.csv" --progress never)
    pos_times+=("$seconds"); pos_rss+=("$rss")
    "$bin/psql" -X -q -d "$url" -c 'TRUNCATE enriched_copy'
    read -r seconds _ < <(timed "$bin/psql" -X -q -d "$url" -c "\\copy enriched_copy FROM '$work/combined.csv' CSV HEADER")
    copy_times+=("$seconds")
done
pos=$(median "${pos_times[@]}"); copy=$(median "${copy_times[@]}"); rss=$(median "${pos_rss[@]}")
rows=$("$bin/psql" -X -At -d "$url" -c 'SELECT count(*) FROM enriched')
same=$("$bin/psql" -X -At -d "$url" -c 'SELECT count(*) FROM (SELECT * FROM enriched EXCEPT ALL SELECT * FROM enriched_copy) d')
echo
echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}'), $rows enriched rows ($items items x $days days), median of $runs"
echo "pos-etl enrich --postgres (all of it):  ${pos} s, peak $((rss / 1024)) MiB"
echo "psql \\copy enriched of its CSV:          ${copy} s"
echo "ratio pos-etl / psql \\copy:             $(awk -v a="$pos" -v b="$copy" 'BEGIN {printf "%.2f", a / b}')"
echo "rows of enriched not in the \\copy table: $same"
