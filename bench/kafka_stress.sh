#!/usr/bin/env bash
# Kafka round-trip stress (issue: all-or-nothing outputs, point 7). Repeats,
# each time on a fresh Tansu broker: produce the same exports with several
# producers, enrich from the topics into enriched + current_inventory, and
# compare both with the CSV enrich of the exports. Stops at the first
# difference and keeps its files. Usage: bench/kafka_stress.sh [RUNS ITEMS DAYS PRODUCERS]
# POS_ETL_BIN=path tests that binary instead of building the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-50}
items=${2:-200}
days=${3:-7}
producers=${4:-3}

if [ -n "${POS_ETL_BIN:-}" ]; then pos_etl=$POS_ETL_BIN; else source bench/setup.sh; fi
tansu="${TANSU:-$HOME/.cache/pos-etl/tools/bin/tansu}"
[ -x "$tansu" ] || { echo "no Tansu at $tansu: run .ci/run once, or set TANSU" >&2; exit 1; }

work=$(mktemp -d)
# A copy, so that a rebuild during the runs does not change the binary under test.
cp "$pos_etl" "$work/pos-etl"
pos_etl="$work/pos-etl"
tansu_pid=
trap '[ -n "$tansu_pid" ] && kill $tansu_pid 2>/dev/null; [ -f "$work/kept" ] || rm -rf "$work"' EXIT
"$pos_etl" generate --out-dir "$work/data" --items "$items" --days "$days" --seed 11 2>/dev/null
"$pos_etl" enrich --data "$work/data" --out "$work/expected.csv" --current-out "$work/expected_current.csv" 2>/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

for run in $(seq "$runs"); do
    brokers="127.0.0.1:$(free_port)"
    "$tansu" broker --listener-url "tcp://$brokers" --advertised-listener-url "tcp://$brokers" \
        --storage-engine memory://tansu/ > "$work/tansu.log" 2>&1 &
    tansu_pid=$!
    # produce waits for the broker itself (it fails after --kafka-timeout if it never answers)
    "$pos_etl" produce --brokers "$brokers" --data "$work/data" --producers "$producers" --kafka-timeout 30s 2>"$work/produce.log"
    "$pos_etl" enrich --brokers "$brokers" --data "$work/data" --out "$work/kafka.csv" \
        --current-out "$work/kafka_current.csv" 2>"$work/enrich.log"
    kill $tansu_pid; wait $tansu_pid 2>/dev/null || true; tansu_pid=
    if ! cmp -s "$work/kafka.csv" "$work/expected.csv" || ! cmp -s "$work/kafka_current.csv" "$work/expected_current.csv"; then
        touch "$work/kept"
        echo "run $run of $runs: the Kafka output differs from the CSV output; files kept in $work" >&2
        diff "$work/expected_current.csv" "$work/kafka_current.csv" | head -20 >&2
        exit 1
    fi
    echo "run $run: identical"
done
echo "$runs runs of produce ($producers producers) -> enrich on fresh brokers: all identical to the CSV run"
