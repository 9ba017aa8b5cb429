#!/usr/bin/env bash
# Install what pgrace needs and this machine lacks (Debian packages). Idempotent, and
# silent when everything is present. Arguments are more packages a target needs
# (make bench-isolation: postgresql-server-dev-15, for PostgreSQL's isolationtester).
set -euo pipefail

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for p in gcc make clang libclang-rt-14-dev libpq-dev libpg-query-dev libjansson-dev libunistring-dev postgresql-15 \
         postgresql-client-15 python3-pytest python3-psycopg2 chromium "$@"; do
    have_pkg "$p" || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0

# A server-dev package must match the installed server's version exactly: unpinned, apt
# would upgrade postgresql-15, libpq and the client to the newest point release with it
# (15.18 -> 15.20 once, which changed insert-conflict-serializable's output).
for i in "${!need[@]}"; do
    if [ "${need[$i]}" = postgresql-server-dev-15 ] && have_pkg postgresql-15; then
        need[$i]="postgresql-server-dev-15=$(dpkg-query -W -f='${Version}' postgresql-15)"
    fi
done

echo "deps: installing ${need[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
