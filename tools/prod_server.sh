#!/usr/bin/env bash
# A PostgreSQL 15 with production-like settings, for soaking pgrace's verdicts on a server
# that is NOT the throwaway one pgrace starts (harness/server.c: fsync, synchronous_commit
# and full_page_writes off, max_connections 300, deadlock_timeout 20ms).
#
#   tools/prod_server.sh start    # prints the DSN on stdout (already running: prints it again)
#   tools/prod_server.sh stop     # stops the server and removes its directory (none: no-op)
#   tools/prod_server.sh status   # prints the DSN and exits 0 when running, else exits 1
#
# Settings: initdb defaults (fsync=on, synchronous_commit=on, full_page_writes=on,
# deadlock_timeout=1s, shared_buffers=128MB, max_locks_per_transaction=64, ...) plus
# max_connections=40, listening only on a unix socket in a private 0700 directory. As root
# the server runs as user "nobody" (initdb refuses root), the way harness/server.c does it.
#
# Environment: PGRACE_PROD_DIR (default ${TMPDIR:-/tmp}/pgrace-prod-<uid>),
# PGRACE_PROD_PORT (default 5432; the socket lives in the private directory, so it never
# collides with another server's), PGRACE_PG_BINDIR (default pg_config --bindir, then
# /usr/lib/postgresql/15/bin).
set -euo pipefail

dir="${PGRACE_PROD_DIR:-${TMPDIR:-/tmp}/pgrace-prod-$(id -u)}"
port="${PGRACE_PROD_PORT:-5432}"
bindir="${PGRACE_PG_BINDIR:-}"
if [ -z "$bindir" ]; then
    bindir="$(pg_config --bindir 2>/dev/null || true)"
    [ -x "$bindir/initdb" ] || bindir=/usr/lib/postgresql/15/bin
fi
[ -x "$bindir/initdb" ] || { echo "prod_server: no initdb in $bindir (set PGRACE_PG_BINDIR)" >&2; exit 2; }
dsn="host=$dir port=$port user=pgrace dbname=postgres"

# Our PG* variables must not steer initdb/pg_ctl/pg_isready elsewhere.
while IFS='=' read -r name _; do
    case "$name" in PG*) unset "$name" ;; esac
done < <(env)

as_server() {                       # run a command as the server account
    if [ "$(id -u)" -eq 0 ]; then
        setpriv --reuid=nobody --regid="$(id -gn nobody)" --clear-groups -- "$@"
    else
        "$@"
    fi
}

running() {
    [ -f "$dir/data/postmaster.pid" ] && as_server "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 &&
        "$bindir/pg_isready" -q -h "$dir" -p "$port" -U pgrace -d postgres
}

case "${1:-}" in
start)
    if running; then echo "$dsn"; exit 0; fi
    if [ -f "$dir/data/postmaster.pid" ]; then           # a dead or half-started server: start clean
        as_server "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$dir"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        rm -rf "$dir"
        mkdir -m 0700 "$dir"
        [ "$(id -u)" -eq 0 ] && chown nobody:"$(id -gn nobody)" "$dir"
        (cd "$dir" && as_server "$bindir/initdb" -D "$dir/data" -U pgrace -A trust -E UTF8 --locale=C \
            --no-instructions >"$dir/initdb.log" 2>&1) ||
            { echo "prod_server: initdb failed; see $dir/initdb.log" >&2; tail -n 5 "$dir/initdb.log" >&2; exit 2; }
    fi
    (cd "$dir" && as_server "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -s \
        -o "-k '$dir' -p $port -c listen_addresses= -c unix_socket_permissions=0700 \
            -c fsync=on -c synchronous_commit=on -c max_connections=40" start) ||
        { echo "prod_server: the server did not start; see $dir/server.log" >&2; tail -n 5 "$dir/server.log" >&2; exit 2; }
    echo "$dsn"
    ;;
stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_server "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 -s stop >/dev/null 2>&1 ||
            as_server "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -s stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
status)
    if running; then echo "$dsn"; exit 0; fi
    echo "not running" >&2
    exit 1
    ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
