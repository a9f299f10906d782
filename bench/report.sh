#!/usr/bin/env bash
# Report benchmark (issue: pos-etl report). Generates 100,000 items over 90
# days, times `pos-etl report` on it (wall time and peak memory, release
# build), then scores its forecasts' back-test beside statsforecast's
# AutoETS on the same held-out series. Usage: bench/report.sh [ITEMS DAYS HORIZON]
set -euo pipefail
cd "$(dirname "$0")/.."
items=${1:-100000}
days=${2:-90}
horizon=${3:-14}

source bench/setup.sh
python_env bench/.venv-forecast bench/requirements-forecast.txt

work=${WORK:-/tmp/pos-etl-bench}/report-$items-$days
if [ ! -d "$work/data" ]; then
    "$pos_etl" generate --out-dir "$work/data" --items "$items" --days "$days" --seed 1
fi
echo "== $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), $(wc -l < "$work/data/inventory_change_store_001.csv") + $(wc -l < "$work/data/inventory_change_online.csv") change lines"
/usr/bin/time -v "$pos_etl" report --data "$work/data" --out-dir "$work/report" --horizon "$horizon" \
    2> "$work/time.log" || { cat "$work/time.log"; exit 1; }
grep -E "^pos-etl:" "$work/time.log"
grep -E "Elapsed \(wall|Maximum resident" "$work/time.log"
"$venv/bin/python" bench/forecast_peer.py "$work/report" "$horizon"
