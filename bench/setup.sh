# Sourced by the bench scripts, from the repository root: builds pos-etl in
# release mode and sets `pos_etl` to it; `python_env DIR REQUIREMENTS` makes
# a virtualenv with the pinned peers and sets `venv` to it.
# POS_ETL=PATH runs that binary instead (two builds compared, say).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pos-etl/target}"
if [ -n "${POS_ETL:-}" ]; then
    pos_etl=$POS_ETL
else
    cargo build --release --locked -q
    pos_etl="$CARGO_TARGET_DIR/release/pos-etl"
fi

python_env() {
    venv=$1
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$2"
}

# Commands run at exit, the last added first: `on_exit 'COMMAND'`.
exit_commands=()
on_exit() { exit_commands=("$1" "${exit_commands[@]}"); }
trap 'for command in "${exit_commands[@]}"; do eval "$command"; done' EXIT

# `timed COMMAND…` runs a command (its output to $work) and prints its wall
# seconds and peak RSS in KiB; `median N…` prints the median.
timed() { /usr/bin/time -f '%e %M' -o "$work/time" "$@" > /dev/null 2>"$work/stderr" || { cat "$work/stderr" >&2; exit 1; }; cat "$work/time"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# `split_last_hour DATA BASE HOUR` copies the exports of DATA to BASE less
# their last hour of events (by date_time, column 4 of both kinds), which
# goes to HOUR (without headers, to be appended); sets `cut` to the hour's
# first second and `hour_rows` to its records.
split_last_hour() {
    local data=$1 base=$2 hour=$3 last name file
    last=$(awk -F, 'FNR > 1 && $4 > max { max = $4 } END { print max }' "$data"/inventory_*_[0-9a-z]*.csv)
    cut=$(date -u -d "$last UTC - 1 hour" '+%F %T')
    mkdir -p "$base" "$hour"
    for file in "$data"/*.csv; do
        name=$(basename "$file")
        case $name in
            inventory_snapshot_*|inventory_change_*) [ "$name" != inventory_change_type.csv ] || { cp "$file" "$base/"; continue; } ;;
            *) cp "$file" "$base/"; continue ;;
        esac
        awk -F, -v cut="$cut" 'FNR == 1 || $4 < cut' "$file" > "$base/$name"
        awk -F, -v cut="$cut" 'FNR > 1 && $4 >= cut' "$file" > "$hour/$name"
    done
    hour_rows=$(cat "$hour"/*.csv | wc -l)
}
