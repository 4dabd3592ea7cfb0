#!/bin/sh
# Starts the installed server in the background, detached from this hook (a session of
# its own, no stdio of the hook's) so that the hook returns while the server runs.
# Listens on GANTRY_INSTANCE_ADDRESS (default: every address) and the port in app/port.
set -eu
root="${LB_APP_ROOT:-/srv/lb-app}"
run_dir="${LB_APP_RUN_DIR:-/run/lb-app}"
address="${GANTRY_INSTANCE_ADDRESS:-0.0.0.0}"
port="$(cat "$root/port")"
mkdir -p "$run_dir"
rm -f "$run_dir/server.pid"
setsid python3 "$root/server.py" "$address" "$port" "$root/version.txt" "$run_dir/server.pid" \
  </dev/null >>"$run_dir/server.log" 2>&1 &
