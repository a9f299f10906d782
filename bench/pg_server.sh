# Sourced by the PostgreSQL bench scripts, after setup.sh: starts a
# throwaway local server (initdb in the temporary directory `work`, made if unset; default
# settings, fsync on) on a free port, stopped and removed at exit; sets
# `bin` (the server's tools), `url`, and the helpers `timed COMMAND…`
# (prints "seconds peak-KiB") and `median VALUES…`. PG_SETTINGS="-c NAME=VALUE …"
# adds server settings (a lever tried).
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
work=${work:-$(mktemp -d)}
chmod 755 "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_server() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir "$work/pg" && { [ "$(id -u)" != 0 ] || chown postgres "$work/pg"; }
as_server "$bin/initdb" -U pos -A trust -E UTF8 --no-instructions -D "$work/pg/data" > /dev/null
as_server "$bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w -t 60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $work/pg -c max_wal_size=8GB ${PG_SETTINGS:-}" start > /dev/null
on_exit 'as_server "$bin/pg_ctl" -D "$work/pg/data" -m fast stop > /dev/null; rm -rf "$work"'
url="postgresql://pos@127.0.0.1:$port/postgres"

