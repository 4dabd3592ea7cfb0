#!/usr/bin/env bash
# `make demo`: a real deployment across four local hosts, a failed one, and its rollback.
#
# Starts moto (the AWS stand-in), gantry-local (the control plane) and four gantry-agent
# processes playing four on-premises hosts in two zones, each with its own root_dir,
# install_root and web port. Everything it starts is stopped on exit, by pid.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gantry-demo.XXXXXX")"
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  # The demo's web servers, started by the hooks, record their pids.
  for pidfile in "$WORK"/hosts/*/run/server.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
}
trap cleanup EXIT

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then echo "timed out waiting for $what" >&2; exit 1; fi
    sleep 0.1
  done
}

say "Starting moto (AWS stand-in), gantry-local (control plane) and four hosts in $WORK"
MOTO_PORT=$(free_port)
"$ROOT/.venv/bin/python" "$ROOT/tests/moto_server.py" -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
wait_for 60 moto curl -sf "$AWS_ENDPOINT_URL/moto-api/"

"$TARGET/gantry-local" --port 0 --tick-ms 500 >"$WORK/local.out" 2>"$WORK/local.log" &
PIDS+=($!)
wait_for 30 gantry-local grep -q listening "$WORK/local.out"
export GANTRY_ENDPOINT_URL
GANTRY_ENDPOINT_URL="$(sed -n 's/^gantry-local listening on //p' "$WORK/local.out")"
gantry() { "$TARGET/gantry" "$@"; }

# The web console, watching the same deployments: open its URL while the demo runs.
"$TARGET/gantry" console --port 0 >"$WORK/console.out" 2>"$WORK/console.log" &
PIDS+=($!)
wait_for 30 "gantry console" grep -q "open http" "$WORK/console.out"
say "The web console: $(sed -n 's/^gantry console: open //p' "$WORK/console.out")"

HOSTS=(web-1 web-2 web-3 web-4)
for index in "${!HOSTS[@]}"; do
  host=${HOSTS[$index]}
  zone=$([ $((index % 2)) = 0 ] && echo zone-a || echo zone-b)
  # Each host's agent signs as an IAM user of its own: reports count only from their host.
  read -r user_arn key_id secret < <("$ROOT/.venv/bin/python" - "$host" <<'PY'
import sys, boto3
iam = boto3.client("iam", region_name="us-east-1")
name = f"host-{sys.argv[1]}"
arn = iam.create_user(UserName=name)["User"]["Arn"]
key = iam.create_access_key(UserName=name)["AccessKey"]
print(arn, key["AccessKeyId"], key["SecretAccessKey"])
PY
)
  gantry instance register "$host" --iam-user-arn "$user_arn" --tag role=web --tag "gantry:availability-zone=$zone"
  dir="$WORK/hosts/$host"
  mkdir -p "$dir/root" "$dir/logs" "$dir/fs" "$dir/run"
  cat >"$dir/agent.yml" <<EOF
identity:
  on_premises_name: $host
region: us-east-1
queue_prefix: gantry-commands-
reports_queue: gantry-reports
root_dir: $dir/root
log_dir: $dir/logs
install_root: $dir/fs
poll_wait_seconds: 20
EOF
  AWS_ACCESS_KEY_ID="$key_id" AWS_SECRET_ACCESS_KEY="$secret" \
    HELLO_PORT=$((18080 + index)) HELLO_RUN_DIR="$dir/run" HELLO_ROOT="$dir/fs/srv/hello" \
    "$TARGET/gantry-agent" --config "$dir/agent.yml" 2>"$dir/agent.stderr" &
  PIDS+=($!)
done

serving() {
  for index in "${!HOSTS[@]}"; do
    page=$(curl -sf "http://127.0.0.1:$((18080 + index))/" | grep -o '<p>.*</p>' || echo "(not serving)")
    printf '  %-6s http://127.0.0.1:%d  %s\n' "${HOSTS[$index]}" $((18080 + index)) "$page"
  done
}

say "Creating application 'hello' and a HalfAtATime group with automatic rollback"
gantry app create hello
gantry group create web --app hello --config CodeDeployDefault.HalfAtATime \
  --on-prem-tag role=web --auto-rollback

say "Pushing examples/hello (linted, bundled, uploaded, validated by the control plane)"
gantry push "$ROOT/examples/hello" --app hello --s3 s3://gantry-revisions/hello/v1.tgz

say "Deploying it: two hosts at a time"
gantry deploy --app hello --group web
say "Every host serves version 1"
serving

say "Pushing a broken version 2: its page no longer says hello, so ValidateService fails"
cp -r "$ROOT/examples/hello" "$WORK/hello-v2"
printf '<!doctype html>\n<title>oops</title>\n<p>goodbye, version 2</p>\n' >"$WORK/hello-v2/site/index.html"
gantry push "$WORK/hello-v2" --app hello --s3 s3://gantry-revisions/hello/v2.tgz

say "Deploying version 2: the first batch fails, the deployment fails and rolls back"
if gantry deploy --app hello --group web; then
  echo "the broken deployment succeeded; that was not supposed to happen" >&2
  exit 1
fi
say "Every host serves version 1 again"
serving

say "Summary"
echo "  deployments of group web, newest first:"
gantry list --app hello --group web | sed 's/^/    /'
echo "  the failed host's script output: gantry logs <deployment-id> --event ValidateService"
if [ -n "${DEMO_KEEP:-}" ]; then
  read -rp "  DEMO_KEEP is set: the console stays up at $(sed -n 's/^gantry console: open //p' "$WORK/console.out") until you press Enter " _
fi
echo "  all processes started by the demo are stopped now; logs are in $WORK"
