#!/usr/bin/env bash
# Three `cs-init serve` replicas on one PostgreSQL database and one shared file directory, on
# this machine: the shape of a cluster (docs/service.md, "Running several replicas"), runnable
# anywhere Debian's `postgresql` package is installed. Ctrl-C stops the replicas and the
# database and deletes everything.
#
#   docs/examples/replicas.sh [PATH/TO/cs-init]    # default: cs-init on PATH
#
# Replicas listen on 127.0.0.1:8601, :8602 and :8603. Any of them takes any request: jobs,
# uploads, events and downloads go to whichever the load balancer picks (no sticky sessions).
set -euo pipefail
cs_init=${1:-cs-init}
command -v "$cs_init" >/dev/null || { echo "no $cs_init: build it with cargo build --release -p cs-init-cli --features serve" >&2; exit 2; }
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
[ -n "$pg_bin" ] || { echo "no PostgreSQL: apt-get install postgresql" >&2; exit 2; }

work=$(mktemp -d /tmp/cs-init-replicas.XXXXXX)
pg_port=54329
# initdb refuses to run as root: the database runs as the `postgres` user then.
if [ "$(id -u)" = 0 ]; then
  chown postgres "$work"
  as_db() { su postgres -s /bin/sh -c "$*"; }
else
  as_db() { sh -c "$*"; }
fi
pids=()
stop() {
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  as_db "$pg_bin/pg_ctl -D $work/db -m fast stop" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap stop EXIT
trap "exit 130" INT TERM

as_db "$pg_bin/initdb -D $work/db -U postgres --auth=trust" >/dev/null
as_db "$pg_bin/pg_ctl -D $work/db -w -l $work/db.log -o '-p $pg_port -k $work -c listen_addresses=127.0.0.1' start" >/dev/null
"$pg_bin/psql" -q -h 127.0.0.1 -p $pg_port -U postgres -c "CREATE DATABASE cs_init" postgres

# The store's URL through the environment, as a platform passes credentials (never on a
# command line that `ps` shows); the same --data directory for all: on several hosts, a
# shared file system mounted at the same path.
export CS_INIT_STORE="postgres://postgres@127.0.0.1:$pg_port/cs_init"
mkdir -p "$work/files"
for port in 8601 8602 8603; do
  "$cs_init" serve --listen "127.0.0.1:$port" --data "$work/files" --lease 10s &
  pids+=($!)
done
sleep 1
echo
echo "three replicas: http://127.0.0.1:8601 http://127.0.0.1:8602 http://127.0.0.1:8603"
echo "try: curl -X POST http://127.0.0.1:8601/v1/jobs -H 'Content-Type: application/json' -d '{\"input\": \"builtin:resnet18\"}'"
echo "     then GET it, or its /events, from :8602; kill a replica and watch its job move"
wait
