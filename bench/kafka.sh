#!/usr/bin/env bash
# Kafka read benchmark (issue: Kafka in and out). With about 1 million change
# rows already in a local Tansu broker, times in one run, alternating:
#   pos-etl enrich --brokers ... : start to finished CSV output (decode, rules, write)
#   a bare librdkafka consumer (confluent-kafka) reading the same topics, no decoding
# and reports the ratio. Usage: bench/kafka.sh [ITEMS DAYS RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
items=${1:-33000}
days=${2:-10}
runs=${3:-3}

source bench/setup.sh
python_env bench/.venv bench/requirements.txt
source bench/broker.sh

"$pos_etl" generate --out-dir "$work/data" --items "$items" --days "$days" --seed 1
# produce waits for the broker itself (it fails after --kafka-timeout if it never answers)
"$pos_etl" produce --brokers "$brokers" --data "$work/data" --form row --kafka-timeout 60s

topics=InventorySnapshotOnline,InventorySnapshotStore001,InventoryChangeOnline,InventoryChangeStore001
seconds() { /usr/bin/time -f %e -o "$work/time" "$@" > /dev/null 2>"$work/stderr" || { cat "$work/stderr"; exit 1; }; cat "$work/time"; }
pos_times=(); peer_times=()
for run in $(seq "$runs"); do
    pos_times+=("$(seconds "$pos_etl" enrich --brokers "$brokers" --data "$work/data" --out "$work/out.csv")")
    peer_times+=("$(seconds "$venv/bin/python" bench/kafka_peer.py "$brokers" "$topics")")
done
pos=$(median "${pos_times[@]}"); peer=$(median "${peer_times[@]}")
changes=$(( $(cat "$work"/data/inventory_change_{online,store_001}.csv | wc -l) - 2 ))
echo
echo "change rows in the broker: $changes; runs: $runs; machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
echo "pos-etl enrich from Kafka (decode + rules + CSV): ${pos_times[*]} s, median $pos s"
echo "confluent-kafka consume, no decoding:            ${peer_times[*]} s, median $peer s"
awk -v a="$pos" -v b="$peer" 'BEGIN { printf "ratio pos-etl / bare consumer: %.2f\n", a / b }'
