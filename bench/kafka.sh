#!/usr/bin/env bash
# Kafka read benchmark (issue 17, target 4). With a generated dataset
# already in a local Tansu broker, times in one run, alternating:
#   pos-etl enrich --brokers ... : start to finished CSV output (consume,
#     decode, rules, write), wall time and peak RSS;
#   a bare Rust consumer (bench/bare_consumer.rs, an rdkafka BaseConsumer
#     loop) reading the same topics to their end, no decoding;
#   pos-etl enrich of the same rows from the CSV files they were produced
#     from, whose output must equal the run from Kafka;
# and reports the ratios of the medians.
# Usage: bench/kafka.sh [ITEMS DAYS RUNS]; the default is about 1 million
# change rows, `bench/kafka.sh 100000 98 3` about 30 million.
# POS_ETL_BEFORE=PATH also times that build of pos-etl in each run, on the
# same topics, and checks that its output is the same (a change compared).
set -euo pipefail
cd "$(dirname "$0")/.."
items=${1:-33000}
days=${2:-10}
runs=${3:-3}

source bench/setup.sh
cargo build --release --locked -q --example bare_consumer
bare_consumer="$CARGO_TARGET_DIR/release/examples/bare_consumer"
source bench/broker.sh

"$pos_etl" generate --out-dir "$work/data" --items "$items" --days "$days" --seed 1
started=$(date +%s)
# produce waits for the broker itself (it fails after --kafka-timeout if it never answers)
"$pos_etl" produce --brokers "$brokers" --data "$work/data" --form row --kafka-timeout 60s
echo "produced in $(( $(date +%s) - started )) s"

topics=InventorySnapshotOnline,InventorySnapshotStore001,InventoryChangeOnline,InventoryChangeStore001
pos_times=(); pos_rss=(); peer_times=(); csv_times=(); before_times=()
for run in $(seq "$runs"); do
    read -r seconds kib < <(timed "$pos_etl" enrich --brokers "$brokers" --data "$work/data" --out "$work/out.csv")
    pos_times+=("$seconds"); pos_rss+=("$kib")
    read -r seconds _ < <(timed "$bare_consumer" "$brokers" "$topics")
    peer_times+=("$seconds")
    read -r seconds _ < <(timed "$pos_etl" enrich --data "$work/data" --out "$work/csv.csv")
    csv_times+=("$seconds")
    cmp -s "$work/out.csv" "$work/csv.csv" || { echo "the runs from Kafka and from CSV differ" >&2; exit 1; }
    echo "run $run: pos-etl ${pos_times[-1]} s (${pos_rss[-1]} KiB), bare consumer ${peer_times[-1]} s, from CSV ${csv_times[-1]} s"
    if [ -n "${POS_ETL_BEFORE:-}" ]; then
        read -r seconds kib < <(timed "$POS_ETL_BEFORE" enrich --brokers "$brokers" --data "$work/data" --out "$work/before.csv")
        before_times+=("$seconds")
        echo "run $run: the build before $seconds s ($kib KiB)"
        cmp -s "$work/out.csv" "$work/before.csv" || { echo "the two builds' outputs differ" >&2; exit 1; }
    fi
done
pos=$(median "${pos_times[@]}"); peer=$(median "${peer_times[@]}")
rss=$(printf '%s\n' "${pos_rss[@]}" | sort -n | tail -1)
changes=$(( $(cat "$work"/data/inventory_change_{online,store_001}.csv | wc -l) - 2 ))
snapshots=$(( $(cat "$work"/data/inventory_snapshot_{online,store_001}.csv | wc -l) - 2 ))
echo
echo "in the broker: $changes change rows, $snapshots snapshot rows; runs: $runs; machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
echo "pos-etl enrich from Kafka (consume, decode, rules, CSV): ${pos_times[*]} s, median $pos s, peak RSS $(( rss / 1024 )) MiB"
echo "bare Rust consumer (rdkafka BaseConsumer, no decoding):  ${peer_times[*]} s, median $peer s"
echo "pos-etl enrich of the same rows from CSV files:          ${csv_times[*]} s, median $(median "${csv_times[@]}") s"
awk -v a="$pos" -v b="$peer" 'BEGIN { printf "ratio pos-etl / bare consumer: %.2f\n", a / b }'
awk -v a="$pos" -v b="$(median "${csv_times[@]}")" 'BEGIN { printf "ratio from Kafka / from CSV: %.2f\n", a / b }'
if [ -n "${POS_ETL_BEFORE:-}" ]; then
    echo "the build before ($POS_ETL_BEFORE): ${before_times[*]} s, median $(median "${before_times[@]}") s"
fi
