#!/usr/bin/env bash
# The benchmark in one command (see bench/README.md): builds pos-etl in
# release mode, sets up the peers' Python environment in bench/.venv, and runs
# bench/harness.py, which writes bench/results/. Extra arguments go to the
# harness, e.g. bench/run.sh --scales 1M --runs 1 for a quick look.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pos-etl/target}"
cargo build --release --locked
venv=bench/.venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r bench/requirements.txt
exec "$venv/bin/python" bench/harness.py --pos-etl "$CARGO_TARGET_DIR/release/pos-etl" "$@"
