#!/bin/sh
# Serves the installed site on HELLO_PORT (default 8080) in the background.
set -eu
run_dir="${HELLO_RUN_DIR:-/run/hello}"
mkdir -p "$run_dir"
cd "${HELLO_ROOT:-/srv/hello}"
nohup python3 -m http.server "${HELLO_PORT:-8080}" --bind 127.0.0.1 >"$run_dir/server.log" 2>&1 &
echo $! >"$run_dir/server.pid"
