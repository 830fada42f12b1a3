#!/bin/bash
# Start Debian's PostgreSQL 15 cluster "main" without systemd and make sure the test database
# exists: role plugboard (password plugboard) owning database plugboard_test, on 127.0.0.1:5432
# (PLUGBOARD_PG_CLUSTER and PLUGBOARD_PG_PORT choose another cluster and port).
# Idempotent. Progress goes to stderr; stdout is only the SQLAlchemy URL, so that
#   export PLUGBOARD_TEST_DB_URL=$(scripts/start-postgres.sh)
# works. Uses Debian's tools (pg_ctlcluster, /usr/lib/postgresql/15/bin), never a pg_ctl on PATH.
set -euo pipefail

VERSION=15
CLUSTER=${PLUGBOARD_PG_CLUSTER:-main}
PORT=${PLUGBOARD_PG_PORT:-5432}
ROLE=plugboard
PASSWORD=plugboard
DB=plugboard_test
URL="postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"

say() { echo "start-postgres: $*" >&2; }
die() { say "$*"; exit 1; }

if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null && exec sudo -E bash "$(readlink -f "${BASH_SOURCE[0]}")" "$@"
    die "must run as root"
fi
[[ -x /usr/lib/postgresql/$VERSION/bin/postgres ]] && command -v pg_ctlcluster >/dev/null \
    || die "PostgreSQL $VERSION is not installed: run scripts/setup-host.sh"

as_postgres() { runuser -u postgres -- "$@"; }
psql_admin() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" -d postgres -tA "$@"; }

if ! pg_lsclusters -h "$VERSION" "$CLUSTER" >/dev/null 2>&1; then
    say "creating cluster $VERSION/$CLUSTER"
    pg_createcluster -p "$PORT" "$VERSION" "$CLUSTER" >&2
fi
port=$(pg_conftool -s "$VERSION" "$CLUSTER" show port 2>/dev/null || echo "$PORT")
if [[ $port != "$PORT" ]]; then
    say "moving cluster $VERSION/$CLUSTER from port $port to $PORT"
    pg_conftool "$VERSION" "$CLUSTER" set port "$PORT"
    pg_ctlcluster "$VERSION" "$CLUSTER" stop >&2 2>/dev/null || true
fi

# The socket directory normally comes from systemd-tmpfiles.
install -d -m 2775 -o postgres -g postgres /var/run/postgresql
status=$(pg_lsclusters -h "$VERSION" "$CLUSTER" | awk '{print $4}')
if [[ $status != online* ]]; then
    say "starting cluster $VERSION/$CLUSTER"
    pg_ctlcluster "$VERSION" "$CLUSTER" start >&2 \
        || die "pg_ctlcluster failed; see /var/log/postgresql/postgresql-$VERSION-$CLUSTER.log"
fi
for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p "$PORT" && break
    sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p "$PORT" || die "PostgreSQL does not answer on 127.0.0.1:$PORT"

if [[ $(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'") != 1 ]]; then
    say "creating role $ROLE"
    psql_admin -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'"
elif ! PGPASSWORD=$PASSWORD psql -X -q -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d postgres -tA -c "SELECT 1" >/dev/null 2>&1; then
    say "resetting the password of role $ROLE"
    psql_admin -c "ALTER ROLE $ROLE LOGIN PASSWORD '$PASSWORD'"
fi
if [[ $(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DB'") != 1 ]]; then
    say "creating database $DB"
    psql_admin -c "CREATE DATABASE $DB OWNER $ROLE"
fi
# Check the way the tests connect: TCP, password.
PGPASSWORD=$PASSWORD psql -X -q -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d "$DB" -tA -c "SELECT 1" >/dev/null \
    || die "cannot log in as $ROLE to $DB on 127.0.0.1:$PORT"
say "ready on 127.0.0.1:$PORT"
echo "$URL"
