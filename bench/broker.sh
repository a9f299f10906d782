# Sourced by the Kafka bench scripts, after setup.sh: starts a throwaway
# Tansu broker (in-memory storage) on a free port of 127.0.0.1, stopped at
# exit, its log in the temporary directory `work` (made if unset); sets
# `brokers`. Producers wait for it themselves (--kafka-timeout).
tansu="${TANSU:-$HOME/.cache/pos-etl/tools/bin/tansu}"
[ -x "$tansu" ] || cargo install tansu --version 0.6.0 --features dynostore --locked --root "$HOME/.cache/pos-etl/tools"
if [ -z "${work:-}" ]; then
    work=$(mktemp -d)
    on_exit 'rm -rf "$work"'
fi
kafka_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
brokers="127.0.0.1:$kafka_port"
"$tansu" broker --listener-url "tcp://$brokers" --advertised-listener-url "tcp://$brokers" \
    --storage-engine memory://tansu/ > "$work/tansu.log" 2>&1 &
tansu_pid=$!
on_exit 'kill $tansu_pid 2>/dev/null'
