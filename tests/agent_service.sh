#!/bin/sh
# Keeps a host agent running as gantry-agent.service does (Restart=always), for
# tests/fleet_runner.py's simulated EC2 instances and the demos:
#
#     agent_service.sh RUN_DIR COMMAND [ARGS...]
#
# runs COMMAND, and again a second after it exits, with its pid in RUN_DIR/agent.pid
# while it runs. (An EC2 instance's agent exits while its command queue does not exist:
# the first deployment to the instance creates it.) SIGTERM or SIGINT stops the agent with
# SIGTERM, as systemd does, waits for it, and exits.
set -u
run_dir=$1
shift
mkdir -p "$run_dir"
agent=
stop() {
  if [ -n "$agent" ]; then
    kill -TERM "$agent" 2>/dev/null
    wait "$agent"
  fi
  rm -f "$run_dir/agent.pid"
  exit 0
}
trap stop TERM INT
while :; do
  "$@" &
  agent=$!
  echo "$agent" >"$run_dir/agent.pid"
  wait "$agent"
  agent=
  rm -f "$run_dir/agent.pid"
  # In the background, so that a signal is taken at once.
  sleep 1 &
  wait $!
done
