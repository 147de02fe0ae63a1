# Sourced by .ci/run: a throwaway PostgreSQL cluster on a loopback port, for the job store's
# tests on PostgreSQL (serve/src/store/tests.rs and the replicas' tests). Debian's postgresql
# package, initdb in a temporary directory as the `postgres` user, trust authentication on
# 127.0.0.1 only; stopped and deleted when CI exits. The tests get its URL, and fail rather than
# skip without it.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$pg_bin" ]; then
  echo "== apt-get install postgresql"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
pg_dir=$(mktemp -d /tmp/cs-init-ci-pg.XXXXXX)
chown postgres "$pg_dir"
pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_postgres() { su postgres -s /bin/sh -c "$*"; }
as_postgres "$pg_bin/initdb -D $pg_dir/data -U postgres --auth=trust -E UTF8" >/dev/null
as_postgres "$pg_bin/pg_ctl -D $pg_dir/data -w -l $pg_dir/log \
  -o '-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c max_connections=300' start" >/dev/null
on_exit+=("as_postgres '$pg_bin/pg_ctl -D $pg_dir/data -m immediate stop' >/dev/null 2>&1; rm -rf '$pg_dir'")
echo "== PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port"
export CS_INIT_TEST_POSTGRES="postgres://postgres@127.0.0.1:$pg_port/postgres"
# How the replicas' test restarts the database mid-run.
export CS_INIT_TEST_POSTGRES_RESTART="su postgres -s /bin/sh -c '$pg_bin/pg_ctl -D $pg_dir/data -w -m fast restart -l $pg_dir/log'"
export CS_INIT_REQUIRE_POSTGRES=1
