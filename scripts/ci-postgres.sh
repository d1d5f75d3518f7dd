#!/usr/bin/env bash
# Starts a PostgreSQL server on 127.0.0.1 for the store tests and prints the URL they read
# from VRAMSCRIBE_TEST_PG_URL. Works on a bare Debian machine (installs the server) and on one
# where this already ran (changes nothing, prints the same URL). Progress goes to stderr so that
# callers can capture the URL alone: VRAMSCRIBE_TEST_PG_URL="$(scripts/ci-postgres.sh)".
set -euo pipefail

ROLE=vramscribe
DB=vramscribe_test
CLUSTER=main
MARKER="# vramscribe test role: trust on loopback"

log() { echo "ci-postgres: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "run as root (it installs packages and manages the cluster)"
    exit 1
fi

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || ! command -v pg_ctlcluster >/dev/null; then
    log "installing PostgreSQL"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
fi

VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"

# The package creates the cluster, except where policy (e.g. a Docker image) turned that off.
if ! pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1 == v && $2 == c {f = 1} END {exit !f}'
then
    log "creating cluster $VERSION/$CLUSTER"
    pg_createcluster "$VERSION" "$CLUSTER" >&2
fi

# Only the test role, only its database, only from this machine: no password to hand around.
HBA="/etc/postgresql/$VERSION/$CLUSTER/pg_hba.conf"
if ! grep -qF "$MARKER" "$HBA"; then
    log "allowing $ROLE on 127.0.0.1 and ::1 without a password"
    tmp="$(mktemp)"
    {
        echo "$MARKER"
        echo "host    $DB    $ROLE    127.0.0.1/32    trust"
        echo "host    $DB    $ROLE    ::1/128         trust"
        cat "$HBA"
    } >"$tmp"
    cat "$tmp" >"$HBA"
    rm -f "$tmp"
    HBA_CHANGED=1
fi

status="$(pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1 == v && $2 == c {print $4}')"
if [ "$status" != "online" ]; then
    log "starting cluster $VERSION/$CLUSTER"
    pg_ctlcluster "$VERSION" "$CLUSTER" start >&2
elif [ "${HBA_CHANGED:-0}" = 1 ]; then
    pg_ctlcluster "$VERSION" "$CLUSTER" reload >&2
fi

PORT="$(pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1 == v && $2 == c {print $3}')"

for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p "$PORT" && break
    sleep 0.5
done
pg_isready -h 127.0.0.1 -p "$PORT" >&2

psql_admin() { runuser -u postgres -- psql -p "$PORT" -X -q -v ON_ERROR_STOP=1 "$@"; }

if [ -z "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" ]; then
    log "creating role $ROLE"
    psql_admin -c "CREATE ROLE $ROLE LOGIN" >&2
fi
if [ -z "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
    log "creating database $DB"
    psql_admin -c "CREATE DATABASE $DB OWNER $ROLE" >&2
fi

URL="postgresql+psycopg://$ROLE@127.0.0.1:$PORT/$DB"
# Prove the URL works the way the tests will use it: over TCP, as the test role.
psql -X -q -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d "$DB" -tAc "SELECT 1" >/dev/null
log "ready: $URL"
echo "$URL"
