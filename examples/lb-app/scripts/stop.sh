#!/bin/sh
# Stops the server the previous revision started, if it runs, and waits until it has
# exited so that the next one can listen on the port.
set -eu
pidfile="${LB_APP_RUN_DIR:-/run/lb-app}/server.pid"
[ -f "$pidfile" ] || exit 0
pid="$(cat "$pidfile")"
# Only our server: a pid left from before a reboot may be another process's now.
if grep -q server.py "/proc/$pid/cmdline" 2>/dev/null; then
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
fi
rm -f "$pidfile"
