#!/usr/bin/env bash
# Runs a command beside a throwaway PostgreSQL 15 cluster, for the PostgreSQL store's tests.
#
#   tests/pg/with-cluster.sh COMMAND [ARG...]
#
# The cluster lives in a new temporary directory: initdb as an unprivileged user (nobody when
# run as root: PostgreSQL refuses to run as root), a Unix socket in that directory and no TCP
# listener at all, fsync on. It has a role "idm" (login, no superuser) owning a database "idm".
# The command gets IDM_TEST_PG, a libpq connection string for it, IDM_TEST_PG_CTL, a script that
# stops the server (immediately, as a crash would), kills it (SIGKILL to the postmaster and every
# process of the server at once) or starts it again, and PG_BINDIR. The cluster is
# stopped and its directory removed when the command ends, whatever it did; the command's exit
# status is this script's. Nothing outside the temporary directory is touched.
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }

bindir=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
if [ ! -x "$bindir/initdb" ]; then
        echo "$0: no PostgreSQL 15 server in $bindir (Debian package postgresql-15)" >&2
        exit 77        # meson: skipped
fi

dir=$(mktemp -d /tmp/idm-pg-XXXXXX)
as_owner=()
if [ "$(id -u)" -eq 0 ]; then
        chown nobody: "$dir"
        as_owner=(setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups --)
fi

stop() {
        (cd "$dir" && "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1) || true
        rm -rf "$dir"
}
trap stop EXIT

# Trust on the socket only: the socket's directory is this user's (and root's) alone. The
# server's tools run from that directory (the unprivileged user may not read the caller's).
(cd "$dir" && "${as_owner[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 \
        --locale=C >"$dir/initdb.log" 2>&1) || { cat "$dir/initdb.log" >&2; exit 1; }
server_options="-c listen_addresses='' -c unix_socket_directories='$dir' -c fsync=on -c max_connections=60"
(cd "$dir" && "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -w -t 60 -l "$dir/server.log" \
        -o "$server_options" start >/dev/null) || { cat "$dir/server.log" >&2; exit 1; }
"$bindir/psql" -X -q -h "$dir" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE idm LOGIN" -c "CREATE DATABASE idm OWNER idm" >/dev/null

# For tests of a database that goes away and comes back: "$IDM_TEST_PG_CTL" stop|kill|start.
# kill: SIGKILL to the postmaster and its children together (nothing gets to finish or flush),
# then waits until all are gone, so that start finds no process of the old server.
{
        echo '#!/bin/sh'
        echo "cd '$dir' || exit 1"
        echo 'case "$1" in'
        echo "stop) exec ${as_owner[*]} '$bindir/pg_ctl' -D '$dir/data' -m immediate -w stop ;;"
        echo "start) exec ${as_owner[*]} '$bindir/pg_ctl' -D '$dir/data' -w -t 60 -l '$dir/server.log' -o \"$server_options\" start ;;"
        echo "kill) pid=\$(head -n 1 '$dir/data/postmaster.pid') || exit 1"
        echo '      pids="$pid $(pgrep -P "$pid" | tr "\n" " ")"'
        echo '      kill -KILL $pids || exit 1'
        echo '      for _ in $(seq 300); do'
        echo '              alive=""; for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done'
        echo '              [ -n "$alive" ] || exit 0; sleep 0.1'
        echo '      done'
        echo '      echo "the killed server is still there" >&2; exit 1 ;;'
        echo '*) echo "usage: $0 stop|kill|start" >&2; exit 2 ;;'
        echo 'esac'
} >"$dir/ctl"
chmod 755 "$dir/ctl"

export IDM_TEST_PG="host=$dir dbname=idm user=idm"
export IDM_TEST_PG_CTL="$dir/ctl"
export PG_BINDIR=$bindir
set +e
"$@"
rc=$?
set -e
exit $rc
