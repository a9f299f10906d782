#!/usr/bin/env bash
# Object stores (issue: Object stores and Delta Lake). On a local S3 API
# server (s3s-fs, the tests' server), for `generate --items ITEMS --days DAYS`,
# alternating RUNS times:
#   enrich from local files to local Parquet (enriched + current_inventory)
#   enrich from s3:// to s3:// Parquet, the same files
# and reports the wall time and peak memory of each and their ratio, after
# checking that both wrote the same bytes. The server runs on the same cores.
# Usage: bench/objects.sh [ITEMS DAYS RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
items=${1:-100000}
days=${2:-30}
runs=${3:-3}

source bench/setup.sh
work=$(mktemp -d)
on_exit 'rm -rf "$work"'
tools="$HOME/.cache/pos-etl/tools"
s3s_fs=${S3S_FS:-$tools/bin/s3s-fs}
[ -x "$s3s_fs" ] || cargo install s3s-fs --version 0.14.1 --features binary --locked --root "$tools"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/s3/bench"
RUST_LOG=info NO_COLOR=1 "$s3s_fs" --host 127.0.0.1 --port "$port" --access-key bench --secret-key bench-secret-key "$work/s3" > "$work/s3s-fs.log" 2>&1 &
on_exit "kill $!"
deadline=$((SECONDS + 30))
until grep -q "server is running" "$work/s3s-fs.log"; do
    [ $SECONDS -lt $deadline ] || { cat "$work/s3s-fs.log"; echo "s3s-fs did not start"; exit 1; }
    sleep 0.1
done
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true

"$pos_etl" generate --out-dir "$work/data" --items "$items" --days "$days" --seed 1
# Uploaded through the S3 API, as a till's exporter would: s3s-fs then keeps
# each object's ETag, where for a file merely copied into the bucket's
# directory it hashes the whole file again on every ranged GET.
python_env "${VENV:-/tmp/pos-etl-bench-s3-venv}" bench/requirements-s3.txt
"$venv/bin/python" - "$work/data" <<'PY'
import os, sys, boto3
s3 = boto3.client("s3")
for name in sorted(os.listdir(sys.argv[1])):
    s3.upload_file(os.path.join(sys.argv[1], name), "bench", "data/" + name)
PY

local_s=(); local_rss=(); s3_s=(); s3_rss=()
for run in $(seq "$runs"); do
    read -r seconds rss < <(timed "$pos_etl" enrich --data "$work/data" --out "$work/out/enriched.parquet" \
        --current-out "$work/out/current_inventory.parquet" --progress never)
    local_s+=("$seconds"); local_rss+=("$rss")
    read -r seconds rss < <(timed "$pos_etl" enrich --data s3://bench/data/ --out s3://bench/out/enriched.parquet \
        --current-out s3://bench/out/current_inventory.parquet --progress never)
    s3_s+=("$seconds"); s3_rss+=("$rss")
done
for name in enriched.parquet current_inventory.parquet enriched.parquet.rejects.csv; do
    if [ "$name" = enriched.parquet.rejects.csv ]; then
        diff <(sed 's|^[^,]*/data/|data/|' "$work/out/$name") <(sed 's|^s3://bench/data/|data/|' "$work/s3/bench/out/$name") > /dev/null
    else
        cmp -s "$work/out/$name" "$work/s3/bench/out/$name"
    fi || { echo "the outputs differ: $name"; exit 1; }
done

rows=$(($(cat "$work"/data/inventory_change_*[0-9a-z].csv "$work"/data/inventory_snapshot_*.csv | wc -l)))
l=$(median "${local_s[@]}"); s=$(median "${s3_s[@]}")
echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; s3s-fs 0.14.1 on 127.0.0.1 (same cores); $rows input lines; runs: $runs"
echo "local files -> local Parquet: ${local_s[*]} s, median $l s; peak RSS ${local_rss[*]} KiB"
echo "s3:// -> s3:// Parquet:       ${s3_s[*]} s, median $s s; peak RSS ${s3_rss[*]} KiB"
echo "ratio s3/local (wall, medians): $(awk -v a="$s" -v b="$l" 'BEGIN {printf "%.2f", a / b}')"
echo "outputs byte-identical (rejects up to the names of their files)"
