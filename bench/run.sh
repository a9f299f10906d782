#!/usr/bin/env bash
# The benchmark in one command (see bench/README.md): builds pos-etl in
# release mode, sets up the peers' Python environment in bench/.venv, and runs
# bench/harness.py, which writes bench/results/. Extra arguments go to the
# harness, e.g. bench/run.sh --scales 1M --runs 1 for a quick look.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/setup.sh
python_env bench/.venv bench/requirements.txt
exec "$venv/bin/python" bench/harness.py --pos-etl "$pos_etl" "$@"
