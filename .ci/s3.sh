# Sourced by .ci/run: an S3-compatible server on a loopback port, for the service's files in an
# object store (`--files s3://...`, cli/tests/replicas.rs): moto's server from PyPI, as
# object_store's own CI uses, in a virtual environment of its own; stopped when CI exits. The
# tests get its URL, and fail rather than skip without it.
s3_dir=$(mktemp -d /tmp/cs-init-ci-s3.XXXXXX)
echo "== pip install moto[server]"
python3 -m venv "$s3_dir/venv"
"$s3_dir/venv/bin/pip" install -q "moto[server]"
s3_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$s3_dir/venv/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$s3_dir/log" 2>&1 &
s3_pid=$!
on_exit+=("kill $s3_pid 2>/dev/null; rm -rf '$s3_dir'")
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$s3_port/" >/dev/null 2>&1 && break
  sleep 0.1
done
echo "== moto S3 server on 127.0.0.1:$s3_port"
export CS_INIT_TEST_S3="http://127.0.0.1:$s3_port"
export CS_INIT_REQUIRE_S3=1
