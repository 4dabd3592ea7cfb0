#!/bin/sh
# Passes once the server answers /health and serves this revision's version, within
# 10 seconds.
set -eu
root="${LB_APP_ROOT:-/srv/lb-app}"
address="${GANTRY_INSTANCE_ADDRESS:-127.0.0.1}"
port="$(cat "$root/port")"
version="$(cat "$root/version.txt")"
for _ in $(seq 1 50); do
  if python3 - "http://$address:$port" "$version" <<'PY' 2>/dev/null; then
import sys, urllib.request
base, version = sys.argv[1:3]
with urllib.request.urlopen(base + "/health", timeout=1) as health:
    assert health.status == 200
with urllib.request.urlopen(base + "/", timeout=1) as page:
    assert page.read().decode().strip() == version
PY
    exit 0
  fi
  sleep 0.2
done
echo "lb-app $version does not answer on $address:$port" >&2
exit 1
