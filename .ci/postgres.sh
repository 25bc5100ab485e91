#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the test suite and print its DSN.
#
#   eval "$(bash .ci/postgres.sh)"     # exports MAILSERVER_TEST_PG=postgresql://...
#
# Works as root on a fresh Debian machine where nothing is running: installs Debian's
# postgresql package when its binaries are missing, creates a cluster under
# $MAILSERVER_PG_DIR (default /tmp/mailserver-pg) owned by the postgres user, starts it
# on 127.0.0.1:$MAILSERVER_PG_PORT (default 55432), and creates the role and database
# "mailserver" (trust authentication on loopback only: a test cluster, not a service).
# Run again, it reuses the running server. Progress goes to stderr; stdout carries only
# the export line. Stop it with: pg_ctl -D "$MAILSERVER_PG_DIR/data" stop (as postgres).
set -euo pipefail

PGDIR=${MAILSERVER_PG_DIR:-/tmp/mailserver-pg}
PORT=${MAILSERVER_PG_PORT:-55432}
DB=mailserver

log() { echo "postgres.sh: $*" >&2; }

if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    log "installing postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)

# The server refuses to run as root: run it as the postgres user the package created.
if [ "$(id -u)" = 0 ]; then
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

mkdir -p "$PGDIR"
if [ "$(id -u)" = 0 ]; then chown postgres: "$PGDIR"; fi

if [ ! -f "$PGDIR/data/PG_VERSION" ]; then
    log "creating cluster in $PGDIR/data"
    as_pg "$BIN/initdb" -D "$PGDIR/data" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C.UTF-8 >"$PGDIR/initdb.log" 2>&1 || {
        cat "$PGDIR/initdb.log" >&2
        exit 1
    }
fi

if ! as_pg "$BIN/pg_ctl" -D "$PGDIR/data" status >/dev/null 2>&1; then
    log "starting server on 127.0.0.1:$PORT"
    # max_connections: each daemon (and each test store) holds a small pool.
    as_pg "$BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$PGDIR \
            -c max_connections=300" >&2 || {
        cat "$PGDIR/server.log" >&2
        exit 1
    }
fi

psql_pg() { as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
if [ "$(psql_pg -c "SELECT 1 FROM pg_roles WHERE rolname = '$DB'")" != 1 ]; then
    log "creating role $DB"
    # CREATEDB: the test suite makes one scratch database per test.
    psql_pg -c "CREATE ROLE $DB LOGIN CREATEDB"
fi
if [ "$(psql_pg -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
    log "creating database $DB"
    psql_pg -c "CREATE DATABASE $DB OWNER $DB"
fi

DSN="postgresql://$DB@127.0.0.1:$PORT/$DB"
log "ready: $DSN"
echo "export MAILSERVER_TEST_PG=$DSN"
