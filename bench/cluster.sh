#!/usr/bin/env bash
# Scale-out on Ballista (issue: Scale-out on a DataFusion Ballista cluster).
# For `generate --items ITEMS --days DAYS`, enriched + current_inventory as
# CSV, each repeated RUNS times:
#   local             : enrich on this machine (--threads = cores)
#   cluster, 1 exec.  : enrich --cluster on a scheduler and one executor of
#                       every core, all on this machine
#   cluster, 2 exec.  : the same with two executors of half the cores each
# Reports wall times, the peak memory of the client and of each cluster
# process, and the client's staging time; checks every output byte-identical
# to the local run's.
# Usage: bench/cluster.sh [ITEMS DAYS RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
items=${1:-100000}
days=${2:-30}
runs=${3:-3}
cores=$(nproc)

source bench/setup.sh
work=$(mktemp -d)
on_exit 'rm -rf "$work"'
"$pos_etl" generate --out-dir "$work/data" --items "$items" --days "$days" --seed 1 >/dev/null
mkdir -p "$work/staging"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# `wait_for FILE TEXT` waits (up to 60 s) for TEXT in FILE.
wait_for() {
    for _ in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return; sleep 0.1; done
    echo "no '$2' in $1 within 60 s:" >&2; cat "$1" >&2; exit 1
}

# `cluster_runs EXECUTORS`: starts a cluster, runs enrich on it RUNS times,
# stops it; sets `times`, `rss`, `staged` and `nodes_rss` (scheduler, executors).
cluster_runs() {
    local executors=$1 port tasks=$(( cores / $1 )) index pids=()
    port=$(free_port)
    /usr/bin/time -f '%M' -o "$work/rss-scheduler" "$pos_etl" cluster scheduler --bind "127.0.0.1:$port" 2>"$work/scheduler.log" &
    pids+=($!)
    on_exit "pkill -TERM -P $! 2>/dev/null || true"
    wait_for "$work/scheduler.log" "scheduler listening"
    for index in $(seq "$executors"); do
        mkdir -p "$work/executor-$index"
        /usr/bin/time -f '%M' -o "$work/rss-executor-$index" "$pos_etl" cluster executor --scheduler "127.0.0.1:$port" \
            --bind "127.0.0.1:$(free_port)" --grpc-port "$(free_port)" --concurrent-tasks "$tasks" \
            --work-dir "$work/executor-$index" 2>"$work/executor-$index.log" &
        pids+=($!)
        on_exit "pkill -TERM -P $! 2>/dev/null || true"
        wait_for "$work/executor-$index.log" "registered with the scheduler"
    done
    times=(); rss=(); staged=()
    for _ in $(seq "$runs"); do
        read -r seconds kib < <(timed "$pos_etl" enrich --data "$work/data" --cluster "df://127.0.0.1:$port" \
            --cluster-staging "$work/staging" --threads "$cores" \
            --out "$work/cluster.csv" --current-out "$work/cluster-current.csv" --progress never)
        times+=("$seconds"); rss+=("$kib")
        staged+=("$(sed -n 's/.*staged the inputs for the cluster in \([0-9.]*\) s.*/\1/p' "$work/stderr")")
        cmp "$work/cluster.csv" "$work/local.csv" && cmp "$work/cluster-current.csv" "$work/local-current.csv" \
            || { echo "the cluster's output differs from the local run's" >&2; exit 1; }
    done
    # SIGTERM to the processes under time(1); then their peaks.
    for pid in "${pids[@]}"; do pkill -TERM -P "$pid" || true; done
    for pid in "${pids[@]}"; do wait "$pid" || true; done
    # Per stage of the last job: its tasks, their summed and longest time
    # (the executors log "Finished task : [TID job/stage.attempt/partition] in T").
    stages=$(cat "$work"/executor-*.log | awk '
        /Finished task/ { split($0, a, "TID "); split(a[2], b, "/"); job = b[1]; stage = b[2] + 0
            t = $NF; ms = t ~ /ms$/ ? t + 0 : (t ~ /µs$/ ? t / 1000 : t * 1000)
            last = job; n[job, stage]++; sum[job, stage] += ms; if (ms > max[job, stage]) max[job, stage] = ms; seen[job, stage] = 1 }
        END { for (k in seen) { split(k, p, SUBSEP); if (p[1] == last) printf "  stage %d: %d tasks, %.1f s in all, longest %.1f s\n", p[2], n[k], sum[k] / 1000, max[k] / 1000 } }' | sort -n -k2)
    nodes_rss="scheduler $(( $(cat "$work/rss-scheduler") / 1024 )) MiB"
    for index in $(seq "$executors"); do
        nodes_rss+=", executor $index $(( $(cat "$work/rss-executor-$index") / 1024 )) MiB"
    done
}

local_times=(); local_rss=(); stage_lines=()
for _ in $(seq "$runs"); do
    read -r seconds kib < <(timed "$pos_etl" enrich --data "$work/data" --out "$work/local.csv" --current-out "$work/local-current.csv" --progress never)
    local_times+=("$seconds"); local_rss+=("$kib")
done
rows=$(( $(wc -l < "$work/local.csv") - 1 ))

mib() { echo "$(( $1 / 1024 )) MiB"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
lt=$(median "${local_times[@]}")
echo
echo "pos-etl enrich, $items items x $days days ($rows enriched rows), CSV out; $cores cores, $(free -g | awk '/Mem:/ {print $2}') GiB; median of $runs"
echo "| run | wall s | vs local | client peak | staging s | cluster processes' peaks |"
echo "|---|---:|---:|---:|---:|---|"
echo "| local | $lt | 1.00 | $(mib "$(median "${local_rss[@]}")") | - | - |"
for executors in 1 2; do
    cluster_runs "$executors"
    t=$(median "${times[@]}")
    echo "| cluster, $executors executor(s) of $(( cores / executors )) task slot(s) | $t | $(ratio "$t" "$lt") | $(mib "$(median "${rss[@]}")") | $(median "${staged[@]}") | $nodes_rss |"
    stage_lines+=("tasks of the last job on $executors executor(s):" "$stages")
done
echo
printf '%s\n' "${stage_lines[@]}"
