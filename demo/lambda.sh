#!/usr/bin/env bash
# `make demo-lambda`: a Lambda deployment that shifts an alias's traffic 10% a "minute"
# with no failed invocation, then one whose AfterAllowTraffic hook fails and is rolled back.
#
# Starts moto (with the stand-in, whose Lambda functions run as local processes and whose
# aliases route by their weights) and gantry-local, a traffic-routing minute shortened to
# GANTRY_LAMBDA_MINUTE_MS (2 s: a linear 10%-every-minute shift takes about 20 s). Creates
# function shop (versions 1, 2 and 3, each answering its version) behind alias live, and
# two hook functions that answer Gantry with PutLifecycleEventHookExecutionStatus:
# CodeDeployHook_ok (Succeeded) and CodeDeployHook_fail (Failed). A client loop invokes
# shop:live throughout and counts answers per version, per step of the alias's split, and
# failures. Deploys v2 with `gantry deploy --appspec`, then v3 whose AfterAllowTraffic
# hook fails: all traffic goes back to v2. Everything it starts is stopped on exit, by pid.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gantry-demo-lambda.XXXXXX")"
PY="$ROOT/.venv/bin/python"
MINUTE_MS="${GANTRY_LAMBDA_MINUTE_MS:-2000}"
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
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

aws() { "$ROOT/.venv/bin/aws" "$@"; }

say "Starting moto (AWS stand-in) and gantry-local (a routing minute is ${MINUTE_MS} ms) in $WORK"
MOTO_PORT=$(free_port)
"$PY" "$ROOT/tests/moto_server.py" -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
wait_for 60 moto curl -sf "$AWS_ENDPOINT_URL/moto-api/"

GANTRY_LAMBDA_MINUTE_MS="$MINUTE_MS" GANTRY_LAMBDA_HOOK_PREFIX=CodeDeployHook_ \
  "$TARGET/gantry-local" --port 0 --tick-ms 250 >"$WORK/local.out" 2>"$WORK/local.log" &
PIDS+=($!)
wait_for 30 gantry-local grep -q listening "$WORK/local.out"
export GANTRY_ENDPOINT_URL
GANTRY_ENDPOINT_URL="$(sed -n 's/^gantry-local listening on //p' "$WORK/local.out")"
gantry() { "$TARGET/gantry" "$@"; }

# A function's package: one script, handler.py, which the stand-in runs with the event on stdin.
package() { # package NAME SCRIPT_FILE: writes $WORK/NAME.zip
  "$PY" - "$WORK/$1.zip" "$2" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as archive:
    archive.write(sys.argv[2], "handler.py")
PY
}

say "Creating function shop (versions 1, 2, 3, each answering its version) and alias live on 1"
ROLE=$(aws iam create-role --role-name shop --query Role.Arn --output text \
  --assume-role-policy-document '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}')
for version in 1 2 3; do
  cat >"$WORK/shop.py" <<EOF
import json, os, sys
json.load(sys.stdin)
# shop v$version
print(json.dumps({"version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"]}))
EOF
  package shop "$WORK/shop.py"
  if [ "$version" = 1 ]; then
    aws lambda create-function --function-name shop --runtime python3.12 --role "$ROLE" \
      --handler handler.py --zip-file "fileb://$WORK/shop.zip" >/dev/null
  else
    aws lambda update-function-code --function-name shop --zip-file "fileb://$WORK/shop.zip" >/dev/null
  fi
  echo "  published shop version $(aws lambda publish-version --function-name shop --query Version --output text)"
done
aws lambda create-alias --function-name shop --name live --function-version 1 >/dev/null
echo "  shop:live answers: $(aws lambda invoke --function-name shop:live "$WORK/answer.json" >/dev/null && cat "$WORK/answer.json")"

say "Creating hook functions CodeDeployHook_ok and CodeDeployHook_fail: each tells Gantry its verdict"
# A hook answers Gantry's API (gantry-local's Lambda Invoke API, as the CLI reaches it:
# GANTRY_ENDPOINT_URL in the function's environment) with PutLifecycleEventHookExecutionStatus.
cat >"$WORK/hook.py" <<'EOF'
import json, os, sys
import boto3
event = json.load(sys.stdin)
gantry = boto3.client("lambda", endpoint_url=os.environ["GANTRY_ENDPOINT_URL"])
answer = gantry.invoke(FunctionName="gantry-api", Payload=json.dumps({
    "operation": "PutLifecycleEventHookExecutionStatus",
    "input": {"deploymentId": event["DeploymentId"],
              "lifecycleEventHookExecutionId": event["LifecycleEventHookExecutionId"],
              "status": os.environ["VERDICT"]}}))
if "FunctionError" in answer:
    sys.exit(f"PutLifecycleEventHookExecutionStatus failed: {answer['Payload'].read().decode()}")
print(json.dumps({"verdict": os.environ["VERDICT"]}))
EOF
package hook "$WORK/hook.py"
for hook in ok:Succeeded fail:Failed; do
  aws lambda create-function --function-name "CodeDeployHook_${hook%%:*}" --runtime python3.12 --role "$ROLE" \
    --handler handler.py --zip-file "fileb://$WORK/hook.zip" --timeout 30 \
    --environment "{\"Variables\": {\"GANTRY_ENDPOINT_URL\": \"$GANTRY_ENDPOINT_URL\", \"VERDICT\": \"${hook#*:}\"}}" >/dev/null
  echo "  CodeDeployHook_${hook%%:*} answers ${hook#*:}"
done

say "Creating Lambda application 'shop' and group 'live' (CodeDeployDefault.LambdaLinear10PercentEvery1Minute)"
gantry app create shop --compute-platform Lambda
gantry group create live --app shop --config CodeDeployDefault.LambdaLinear10PercentEvery1Minute

appspec() { # appspec FROM TO AFTER_HOOK: the AppSpec moving shop:live from FROM to TO
  cat >"$WORK/appspec-v$2.yml" <<EOF
version: 0.0
Resources:
  - shop:
      Type: AWS::Lambda::Function
      Properties:
        Name: shop
        Alias: live
        CurrentVersion: "$1"
        TargetVersion: "$2"
Hooks:
  - BeforeAllowTraffic: CodeDeployHook_ok
  - AfterAllowTraffic: $3
EOF
  echo "$WORK/appspec-v$2.yml"
}

# The client loop: invokes shop:live from three threads until told to stop (a file), and
# counts the answers per version and failures, under the alias's split at the time (read
# with GetAlias every 50 ms; an invocation during a change is counted apart); then writes
# its tally.
client_loop() { # client_loop NAME
  rm -f "$WORK/$1.stop"
  "$PY" - "$WORK/$1" <<'PY' &
import json, os, sys, threading, time
import boto3
out = sys.argv[1]
split = {"now": None}
steps, order, failures, errors, lock = {}, [], 0, {}, threading.Lock()
def alias_split(lam):
    alias = lam.get_alias(FunctionName="shop", Name="live")
    weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    shares = {alias["FunctionVersion"]: 1.0 - sum(weights.values()), **weights}
    return " → ".join(f"v{v} {round(s * 100)}%" for v, s in sorted(shares.items()) if s > 0)
seen = set()
def phase(now):
    """The split as a row of the tally: a split the alias comes back to is a row of its own."""
    if split["now"] is not None and now == split["now"].removesuffix(" (again)"):
        return split["now"]
    label = now + " (again)" if now in seen else now
    seen.add(now)
    return label
def watch():
    lam = boto3.client("lambda")
    while not os.path.exists(out + ".stop"):
        split["now"] = phase(alias_split(lam))
        time.sleep(0.05)
def invoke():
    global failures
    lam = boto3.client("lambda")
    while not os.path.exists(out + ".stop"):
        under = split["now"]
        try:
            answer = lam.invoke(FunctionName="shop", Qualifier="live", Payload=b"{}")
            body = answer["Payload"].read().decode()
            outcome = ("failed: " + body) if "FunctionError" in answer else "v" + json.loads(body)["version"]
        except Exception as error:  # noqa: BLE001, a failed invocation is what is counted
            outcome = f"failed: {type(error).__name__}: {error}"
        if split["now"] != under:
            under = "(split changing)"  # invoked while the alias changed: either split's
        with lock:
            if under not in steps:
                steps[under] = {}
                order.append(under)
            if outcome.startswith("v"):
                steps[under][outcome] = steps[under].get(outcome, 0) + 1
            else:
                failures += 1
                errors[outcome] = errors.get(outcome, 0) + 1
split["now"] = phase(alias_split(boto3.client("lambda")))
threads = [threading.Thread(target=watch)] + [threading.Thread(target=invoke) for _ in range(3)]
began = time.monotonic()
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
with open(out + ".json", "w") as f:
    json.dump({"steps": [[s, steps[s]] for s in order], "failures": failures, "errors": errors,
               "seconds": round(time.monotonic() - began, 1)}, f)
PY
  LOOP_PID=$!
}
stop_client_loop() { # stop_client_loop NAME NEW_VERSION: stops it and prints its tally
  touch "$WORK/$1.stop"
  wait "$LOOP_PID"
  "$PY" - "$WORK/$1.json" "$2" <<'PY'
import json, sys
t, new = json.load(open(sys.argv[1])), sys.argv[2]
total = sum(sum(answers.values()) for _, answers in t["steps"])
print(f"  client loop: {total + t['failures']} invocations of shop:live in {t['seconds']} s, {t['failures']} failed")
print(f"    {'alias split':<24} {'answers':>7}  {new + ' share':>9}")
changing = [step for step in t["steps"] if step[0] == "(split changing)"]
for split, answers in [step for step in t["steps"] if step not in changing] + changing:
    n = sum(answers.values())
    print(f"    {split:<24} {n:>7}  {100 * answers.get(new, 0) / n:>8.0f}%")
for error, n in t["errors"].items():
    print(f"    failed x{n}: {error}")
PY
}

alias_state() { # where alias live points, as Lambda's GetAlias says
  aws lambda get-alias --function-name shop --name live --output json | "$PY" -c 'import json, sys
alias = json.load(sys.stdin)
weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
extra = ", ".join(f"version {v} at {w:.0%}" for v, w in weights.items()) or "no additional version weights"
print("FunctionVersion", alias["FunctionVersion"] + ",", extra)'
}

say "Deploying v2 (hooks CodeDeployHook_ok before and after), with a client loop on shop:live throughout"
client_loop v2-loop
sleep 1 # some answers under v1 alone first
gantry deploy --app shop --group live --appspec "$(appspec 1 2 CodeDeployHook_ok)" --description "shop v2"
sleep 1
stop_client_loop v2-loop v2
echo "  shop:live: $(alias_state)"

say "Deploying v3, whose AfterAllowTraffic hook (CodeDeployHook_fail) fails: traffic goes back to v2"
client_loop v3-loop
sleep 1
if gantry deploy --app shop --group live --appspec "$(appspec 2 3 CodeDeployHook_fail)" --description "shop v3"; then
  echo "the v3 deployment succeeded; that was not supposed to happen" >&2
  exit 1
fi
sleep 1
stop_client_loop v3-loop v3
echo "  shop:live: $(alias_state)"

say "Summary"
echo "  deployments of group live, newest first:"
for id in $(gantry list --app shop --group live); do
  { gantry status "$id" || true; } | sed 's/^/    /'
done
echo "  all processes started by the demo are stopped now; logs are in $WORK"
