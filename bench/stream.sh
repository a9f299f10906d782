#!/usr/bin/env bash
# The latency experiment of the system pos-etl replaces (issue: pos-etl
# stream). On a local Tansu broker and a throwaway PostgreSQL server
# (bench/pg_server.sh), for K = 1..6 producers each sending RATE records/s
# for SECONDS, `pos-etl stream` applies what arrives (every rule, both tables)
# and logs each batch; reported per K: batches, records per batch, mean and
# p95 latency (commit end minus the batch's mean sent_time) and the time in
# rules + writes + commit per batch, beside the original Spark consumer's
# published figures for PostgreSQL (mean 0.37-0.60 s, p95 0.54-0.61 s,
# inserts 0.08-0.18 s per batch). Spark itself cannot run here (its Kafka
# connector comes from Maven, which this machine cannot reach).
# Usage: bench/stream.sh [RATE SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-1300}
seconds=${2:-20}

source bench/setup.sh
source bench/pg_server.sh
tansu="${TANSU:-$HOME/.cache/pos-etl/tools/bin/tansu}"
[ -x "$tansu" ] || { echo "no Tansu at $tansu: run .ci/run once, or set TANSU" >&2; exit 1; }
kport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
brokers="127.0.0.1:$kport"
"$tansu" broker --listener-url "tcp://$brokers" --advertised-listener-url "tcp://$brokers" \
    --storage-engine memory://tansu/ > "$work/tansu.log" 2>&1 &
tansu_pid=$!
trap 'kill $tansu_pid 2>/dev/null; as_server "$bin/pg_ctl" -D "$work/pg/data" -m fast stop > /dev/null; rm -rf "$work"' EXIT

# Enough fresh records that no producer runs out: 6 × RATE × SECONDS at most.
"$pos_etl" generate --out-dir "$work/data" --items 20000 --days 30 --seed 1 > /dev/null 2>&1

echo
echo "K producers x $rate records/s for $seconds s; pos-etl stream into PostgreSQL $("$bin/postgres" --version | awk '{print $3}')"
printf '%-3s %8s %14s %12s %12s %14s\n' K batches records/batch "mean lat s" "p95 lat s" "rules+write+commit s"
for k in 1 2 3 4 5 6; do
    # Fresh topics and schema for each K: the files under new names (…_k2.csv → …K2 topics).
    dir="$work/k$k"; mkdir "$dir"
    for file in "$work"/data/*.csv; do
        name=$(basename "$file" .csv)
        case $name in
            inventory_snapshot_*|inventory_change_store*|inventory_change_online*) ln -s "$file" "$dir/${name}_k$k.csv" ;;
            *) ln -s "$file" "$dir/$name.csv" ;;
        esac
    done
    topics="--snapshot-topics InventorySnapshotOnlineK$k,InventorySnapshotStore001K$k --change-topics InventoryChangeOnlineK$k,InventoryChangeStore001K$k"
    # Creates the topics (a record or two, sent again by the timed run: duplicates).
    "$pos_etl" produce --brokers "$brokers" --data "$dir" --kafka-timeout 60s --rate 1 --loop 1s --progress never 2> /dev/null
    rm -f "$work/m.jsonl"
    "$pos_etl" stream --brokers "$brokers" $topics --data "$dir" --postgres "$url" --pg-schema "k$k" \
        --metrics "$work/m.jsonl" --progress never 2> "$work/stream.err" &
    stream_pid=$!
    "$pos_etl" produce --brokers "$brokers" --data "$dir" --producers "$k" --rate-per-producer "$rate" \
        --loop "${seconds}s" --progress never 2> /dev/null
    # Let the last batches commit, then stop it as an operator would.
    python3 - "$work/m.jsonl" <<'PY'
import json, sys, time
path = sys.argv[1]
deadline = time.time() + 30
def lag():
    try:
        lines = open(path).read().splitlines()
        return sum(json.loads(lines[-1])["lag"].values()) if lines else 1
    except (OSError, ValueError):
        return 1
while lag() > 0 and time.time() < deadline:
    time.sleep(0.2)
PY
    kill -TERM "$stream_pid"; wait "$stream_pid"
    python3 - "$work/m.jsonl" "$k" <<'PY'
import json, math, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
# The first batches catch up from the stream's start; the steady state is what the experiment measured.
steady = lines[3:] or lines
lat = sorted(l["latency_ms"] / 1000 for l in steady if l["latency_ms"] is not None)
mean = sum(lat) / len(lat)
p95 = lat[max(0, math.ceil(0.95 * len(lat)) - 1)]
work = sum(l["rules_ms"] + l["write_ms"] + l["commit_ms"] for l in steady) / len(steady) / 1000
records = sum(l["records"] for l in steady) / len(steady)
print(f"{sys.argv[2]:<3} {len(steady):>8} {records:>14.0f} {mean:>12.3f} {p95:>12.3f} {work:>14.3f}")
PY
done
