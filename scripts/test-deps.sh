#!/usr/bin/env bash
# Gets a machine ready for the whole test suite and prints the PostgreSQL URL the store tests
# read from VRAMSCRIBE_TEST_PG_URL; `make test` runs it before pytest:
#
#     VRAMSCRIBE_TEST_PG_URL="$(scripts/test-deps.sh)" pytest tests
#
# The suite needs, besides the Python packages in .venv:
#   - Debian's headless chromium and its driver (/usr/bin/chromium, /usr/bin/chromedriver) for
#     the dashboard test, curl for the service test, strace to count how often a worker opens
#     its input;
#   - a PostgreSQL server for the store tests (scripts/ci-postgres.sh sets one up on loopback).
# Missing packages are installed with apt-get when this runs as root (or with sudo that needs no
# password). Otherwise it prints one message saying what to run, and fails. With
# VRAMSCRIBE_TEST_PG_URL already set, that server is used and no local one is started.
# Progress goes to stderr; stdout carries the URL alone.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "test-deps: $*" >&2; }

# Privileged commands run directly as root, through sudo where it asks no password, else not at all.
if [ "$(id -u)" -eq 0 ]; then
    AS_ROOT=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    AS_ROOT=(sudo -n)
else
    AS_ROOT=(false)
fi
can_root() { [ "${AS_ROOT[*]}" != false ]; }

# What the tests look for, by Debian package name.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
command -v curl >/dev/null || missing+=(curl)
command -v strace >/dev/null || missing+=(strace)
pg_url="${VRAMSCRIBE_TEST_PG_URL:-}"
if [ -z "$pg_url" ] && {
    ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || ! command -v pg_ctlcluster >/dev/null
}; then
    missing+=(postgresql)
fi

# A PostgreSQL that scripts/ci-postgres.sh set up earlier is usable without root: find its URL.
existing_pg_url() {
    command -v pg_lsclusters >/dev/null && command -v psql >/dev/null || return 1
    local port
    port="$(pg_lsclusters -h 2>/dev/null | awk '$2 == "main" && $4 == "online" {print $3}' \
        | sort -n | tail -n 1)"
    [ -n "$port" ] || return 1
    psql -X -q -h 127.0.0.1 -p "$port" -U vramscribe -d vramscribe_test -tAc "SELECT 1" \
        >/dev/null 2>&1 || return 1
    echo "postgresql+psycopg://vramscribe@127.0.0.1:$port/vramscribe_test"
}

if [ -z "$pg_url" ] && ! can_root; then
    pg_url="$(existing_pg_url)" || pg_url=""
fi

stuck=0
if [ ${#missing[@]} -gt 0 ] && { ! can_root || ! command -v apt-get >/dev/null; }; then
    stuck=1
fi
if [ -z "$pg_url" ] && ! can_root; then
    stuck=1
fi
if [ "$stuck" = 1 ]; then
    {
        echo
        echo "make test cannot run the whole suite on this machine yet."
        if [ ${#missing[@]} -gt 0 ]; then
            echo "Missing: ${missing[*]} (Debian package names)."
        fi
        if [ -z "$pg_url" ]; then
            echo "No PostgreSQL server is set up for the store tests."
        fi
        if command -v apt-get >/dev/null; then
            echo "Run this once as root, then run make test again:"
            echo
            echo "    sudo scripts/test-deps.sh"
        else
            echo "This is not a Debian-like system: install chromium, chromedriver (at"
            echo "/usr/bin/chromium and /usr/bin/chromedriver), curl and a PostgreSQL server, and"
            echo "point the tests at an empty database the test role owns, then run make test again:"
            echo
            echo "    export VRAMSCRIBE_TEST_PG_URL=postgresql+psycopg://USER@HOST:PORT/DATABASE"
        fi
        echo
        echo "(With VRAMSCRIBE_TEST_PG_URL set to a PostgreSQL database of your own, no local"
        echo "server is needed.)"
    } >&2
    exit 1
fi

if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    "${AS_ROOT[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    "${AS_ROOT[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq "${missing[@]}" >&2
fi

if [ -z "$pg_url" ]; then
    pg_url="$("${AS_ROOT[@]}" scripts/ci-postgres.sh)"
fi
echo "$pg_url"
