#!/bin/sh
# Stops the server the previous revision started, if it is still running.
set -eu
pidfile="${HELLO_RUN_DIR:-/run/hello}/server.pid"
if [ -f "$pidfile" ]; then
  kill "$(cat "$pidfile")" 2>/dev/null || true
  rm -f "$pidfile"
fi
