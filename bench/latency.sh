#!/usr/bin/env bash
# The latency experiment of the system pos-etl replaces (issue: pos-etl
# stream), on this machine: a Tansu broker and a PostgreSQL server on
# 127.0.0.1, `pos-etl stream` applying what arrives (every rule), each batch
# logged to --metrics.
#
# 1. Original batch sizes: for K = 1..6 producers (`produce --producers K
#    --rate-per-producer RATE --loop SECONDS`, row form, sent_time stamped at
#    send), in both variants: both tables, and current_inventory alone.
# 2. Highest rate: the events of `generate --items 20000 --days 7` (about
#    half a million) already on the topics, `stream` catching up, in both
#    variants: records per second sustained into PostgreSQL.
# 3. The original's aggregate query (sum(quantity) per store and item over
#    every row of enriched) against reading current_inventory.
#
# bench/latency_report.py turns the metrics into bench/results/latency.md
# (the table, with the original study's figures beside it) and the original's
# two plots (latency and insert time against rows per batch, fitted trend)
# as bench/results/latency_*.png.
# Usage: bench/latency.sh [SECONDS [RATE [KS]]]   (20 s, 1300/s, "1 2 3 4 5 6")
# A lever is tried with STREAM_FLAGS / PRODUCE_FLAGS (added to every stream /
# timed produce, e.g. STREAM_FLAGS="--threads 1"); SKIP_CATCHUP=1 stops after 1.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
rate=${2:-1300}
ks=${3:-1 2 3 4 5 6}

source bench/setup.sh
python_env bench/.venv bench/requirements.txt
source bench/pg_server.sh
source bench/broker.sh
out=bench/results/latency
rm -rf "$out" && mkdir -p "$out"

# Sent by one `produce`, from its last line ("sent N records in …").
sent() { sed -n 's/^pos-etl: sent \([0-9]*\) records.*/\1/p' "$1" | tail -1; }

# A directory of the files of `data` whose event files are named for `tag`,
# so that their topics are new (…_k2_all.csv → InventoryChangeStore001K2All).
tagged() {
    local data=$1 tag=$2 dir="$work/$2"
    mkdir "$dir"
    for file in "$data"/*.csv; do
        name=$(basename "$file" .csv)
        case $name in
            inventory_*_online|inventory_*_store_*) ln -s "$file" "$dir/${name}_$tag.csv" ;;
            *) ln -s "$file" "$dir/$name.csv" ;;
        esac
    done
    echo "$dir"
}

# The stream flags of the topics of `tag`.
topics() {
    local camel
    camel=$(python3 -c 'import sys; print("".join(p.capitalize() for p in sys.argv[1].split("_")))' "$1")
    echo "--snapshot-topics InventorySnapshotOnline$camel,InventorySnapshotStore001$camel" \
         "--change-topics InventoryChangeOnline$camel,InventoryChangeStore001$camel"
}

# Waits (60 s at most) until the metrics in $1 account for $2 records.
wait_for_records() {
    python3 - "$1" "$2" <<'PY'
import json, sys, time
path, wanted = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 60
def committed():
    try:
        return sum(json.loads(line)["records"] for line in open(path))
    except (OSError, ValueError):
        return 0
while committed() < wanted and time.time() < deadline:
    time.sleep(0.2)
PY
}

tables() { case $1 in all) echo enriched,current_inventory ;; agg) echo current_inventory ;; esac; }

"$pos_etl" generate --out-dir "$work/data" --items 20000 --days 30 --seed 1 > /dev/null 2>&1
echo "1. K producers x $rate records/s for $seconds s"
for k in $ks; do
    for variant in all agg; do
        tag="k${k}_$variant"
        dir=$(tagged "$work/data" "$tag")
        # Creates the topics (a record or two, sent again by the timed run: duplicates).
        "$pos_etl" produce --brokers "$brokers" --data "$dir" --kafka-timeout 60s --rate 1 --loop 1s --progress never 2> "$work/created"
        "$pos_etl" stream --brokers "$brokers" $(topics "$tag") --data "$dir" --postgres "$url" --pg-schema "$tag" \
            --tables "$(tables $variant)" --metrics "$out/$tag.jsonl" --progress never ${STREAM_FLAGS:-} 2> "$work/stream.err" &
        stream_pid=$!
        # produce's own linger.ms (20): with librdkafka's 5 the six producers'
        # smaller requests took the CPU the stream needs (K=6 latency 0.23 s, not 0.09).
        "$pos_etl" produce --brokers "$brokers" --data "$dir" --producers "$k" --rate-per-producer "$rate" \
            --loop "${seconds}s" --progress never ${PRODUCE_FLAGS:-} 2> "$work/produced"
        wait_for_records "$out/$tag.jsonl" $(( $(sent "$work/created") + $(sent "$work/produced") ))
        kill -TERM "$stream_pid"; wait "$stream_pid"
        echo "   K=$k $variant: $(wc -l < "$out/$tag.jsonl") batches"
    done
done

[ "${SKIP_CATCHUP:-}" ] && exit 0
echo "2. Catching up with the events of 20,000 items x 7 days"
"$pos_etl" generate --out-dir "$work/week" --items 20000 --days 7 --seed 2 > /dev/null 2>&1
for variant in all agg; do
    tag="catchup_$variant"
    dir=$(tagged "$work/week" "$tag")
    "$pos_etl" produce --brokers "$brokers" --data "$dir" --producers 2 --kafka-timeout 60s --progress never 2> "$work/produced"
    # A backlog's topics are read at different paces in event time (a snapshot
    # topic covers a day in fewer records than a change topic): with the
    # default 24h window, events of the slower topics would be rejected as late.
    "$pos_etl" stream --brokers "$brokers" $(topics "$tag") --data "$dir" --postgres "$url" --pg-schema "$tag" \
        --tables "$(tables $variant)" --metrics "$out/$tag.jsonl" --stop-when-idle 3s --late-window 30d \
        --progress never ${STREAM_FLAGS:-} 2> "$work/stream.err"
    echo "   $variant: $(sent "$work/produced") records in $(wc -l < "$out/$tag.jsonl") batches"
done

echo "3. The original's aggregate query against current_inventory"
query_ms() {
    for run in 1 2 3 4 5; do
        as_server "$bin/psql" -X -q "$url" -c '\timing on' -c "$1" -o /dev/null | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'
    done | sort -n | sed -n 3p
}
rows=$(as_server "$bin/psql" -X -A -t "$url" -c "SELECT count(*) FROM catchup_all.enriched")
aggregate=$(query_ms "SELECT store_id, item_id, sum(quantity) FROM catchup_all.enriched GROUP BY 1, 2")
current=$(query_ms "SELECT * FROM catchup_all.current_inventory")
echo "{\"enriched_rows\": $rows, \"aggregate_ms\": $aggregate, \"current_inventory_ms\": $current}" > "$out/queries.json"

[ "${SKIP_CATCHUP:-}" ] || "$venv/bin/python" bench/latency_report.py "$out" "$rate" "$seconds"
[ "${SKIP_CATCHUP:-}" ] || cat bench/results/latency.md
