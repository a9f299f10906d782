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
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
work=$(mktemp -d)
chmod 755 "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_server() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir "$work/pg" && { [ "$(id -u)" != 0 ] || chown postgres "$work/pg"; }
as_server "$bin/initdb" -U pos -A trust -E UTF8 --no-instructions -D "$work/pg/data" > /dev/null
as_server "$bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w -t 60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $work/pg -c max_wal_size=8GB" start > /dev/null
trap 'as_server "$bin/pg_ctl" -D "$work/pg/data" -m fast stop > /dev/null; rm -rf "$work"' EXIT
url="postgresql://pos@127.0.0.1:$port/postgres"

"$pos_etl" generate --out-dir "$work/data" --items "$items" --days "$days" --seed 1
"$pos_etl" enrich --data "$work/data" --out "$work/combined.csv" --progress never
"$pos_etl" enrich --data "$work/data" --postgres "$url" --rejects "$work/rejects.csv" --progress never
"$bin/psql" -X -q -d "$url" -c 'CREATE TABLE enriched_copy (LIKE enriched)'

timed() { /usr/bin/time -f '%e %M' -o "$work/time" "$@" > /dev/null 2>"$work/stderr" || { cat "$work/stderr"; exit 1; }; cat "$work/time"; }
pos_times=(); pos_rss=(); copy_times=()
for run in $(seq "$runs"); do
    read -r seconds rss < <(timed "$pos_etl" enrich --data "$work/data" --postgres "$url" --rejects "$work/rejects.csv" --progress never)
    pos_times+=("$seconds"); pos_rss+=("$rss")
    "$bin/psql" -X -q -d "$url" -c 'TRUNCATE enriched_copy'
    read -r seconds _ < <(timed "$bin/psql" -X -q -d "$url" -c "\\copy enriched_copy FROM '$work/combined.csv' CSV HEADER")
    copy_times+=("$seconds")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
pos=$(median "${pos_times[@]}"); copy=$(median "${copy_times[@]}"); rss=$(median "${pos_rss[@]}")
rows=$("$bin/psql" -X -At -d "$url" -c 'SELECT count(*) FROM enriched')
same=$("$bin/psql" -X -At -d "$url" -c 'SELECT count(*) FROM (SELECT * FROM enriched EXCEPT ALL SELECT * FROM enriched_copy) d')
echo
echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}'), $rows enriched rows ($items items x $days days), median of $runs"
echo "pos-etl enrich --postgres (all of it):  ${pos} s, peak $((rss / 1024)) MiB"
echo "psql \\copy enriched of its CSV:          ${copy} s"
echo "ratio pos-etl / psql \\copy:             $(awk -v a="$pos" -v b="$copy" 'BEGIN {printf "%.2f", a / b}')"
echo "rows of enriched not in the \\copy table: $same"
