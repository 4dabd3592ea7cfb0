#!/usr/bin/env bash
# Shared by `make demo-lb` (demo/lb.sh) and `make demo-bluegreen` (demo/bluegreen.sh):
# sourced, it starts moto with the stand-in (whose load balancers carry real HTTP on
# loopback), gantry-local and tests/fleet_runner.py (a real gantry-agent per EC2 instance
# of an Auto Scaling group of four), creates application 'shop' and group 'web' (in place,
# WITH_TRAFFIC_CONTROL) and deploys examples/lb-app v1 to all four. It defines the
# helpers both demos use: revision, client_loop, stop_client_loop, healthy_targets, info.
# Everything it starts is stopped on exit, by pid. DEMO_NAME names the work directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gantry-demo-${DEMO_NAME:-lb}.XXXXXX")"
PY="$ROOT/.venv/bin/python"
PIDS=()

cleanup() {
  # The fleet runner first: it stops the agents (SIGTERM, then SIGKILL after --grace).
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  # What outlived it, by the pids recorded: agents, and the servers the hooks started.
  for pidfile in "$WORK"/fleet/*/run/*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
}
trap cleanup EXIT

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("0.0.0.0",0)); print(s.getsockname()[1])'; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then echo "timed out waiting for $what" >&2; exit 1; fi
    sleep 0.2
  done
}

# at_least N COMMAND...: whether COMMAND prints a number of at least N (for wait_for).
at_least() { local n=$1 got; shift; got=$("$@") && [ "$got" -ge "$n" ]; }

aws() { "$ROOT/.venv/bin/aws" "$@"; }

say "Starting moto (AWS stand-in) and gantry-local (control plane) in $WORK"
MOTO_PORT=$(free_port)
"$PY" "$ROOT/tests/moto_server.py" -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
wait_for 60 moto curl -sf "$AWS_ENDPOINT_URL/moto-api/"

"$TARGET/gantry-local" --port 0 --tick-ms 500 >"$WORK/local.out" 2>"$WORK/local.log" &
PIDS+=($!)
wait_for 30 gantry-local grep -q listening "$WORK/local.out"
export GANTRY_ENDPOINT_URL
GANTRY_ENDPOINT_URL="$(sed -n 's/^gantry-local listening on //p' "$WORK/local.out")"
gantry() { "$TARGET/gantry" "$@"; }
gantry_api() { # gantry_api OPERATION INPUT_JSON: the API, as `aws lambda invoke` reaches it
  local invoked
  invoked=$(aws lambda invoke --endpoint-url "$GANTRY_ENDPOINT_URL" --function-name gantry-api \
    --payload "{\"operation\": \"$1\", \"input\": $2}" "$WORK/api-response.json")
  cat "$WORK/api-response.json"
  echo
  if grep -q FunctionError <<<"$invoked"; then echo "$1 failed" >&2; exit 1; fi
}

APP_PORT=$(free_port)
say "An Auto Scaling group of four, and a load balancer whose target group checks /health every second"
# The instance profile's role carries the template's Ec2HostPolicy; the agents assume it.
read -r BALANCER < <("$PY" - "$APP_PORT" "$ROOT/local/ec2-host-policy.json" <<'PY'
import json, sys, boto3
from botocore.config import Config
port = int(sys.argv[1])
iam, ec2, asg, cw = (boto3.client(s) for s in ("iam", "ec2", "autoscaling", "cloudwatch"))
# botocore refuses a health check interval below AWS's 5 s; the stand-in takes 1 s.
elb = boto3.client("elbv2", config=Config(parameter_validation=False))
iam.create_role(RoleName="gantry-host", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
with open(sys.argv[2]) as policy:  # local/ec2-host-policy.json: the template's, checked by local/tests/template.rs
    iam.put_role_policy(RoleName="gantry-host", PolicyName="gantry-host", PolicyDocument=policy.read())
iam.create_instance_profile(InstanceProfileName="gantry-host")
iam.add_role_to_instance_profile(InstanceProfileName="gantry-host", RoleName="gantry-host")
vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
subnets = sorted((s["AvailabilityZone"], s["SubnetId"])
                 for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"])[:2]
subnets = [subnet for _, subnet in subnets]
balancer = elb.create_load_balancer(Name="web", Subnets=subnets)["LoadBalancers"][0]
group = elb.create_target_group(Name="web", Protocol="HTTP", Port=port, VpcId=vpc, HealthCheckPath="/health",
                                HealthCheckIntervalSeconds=1, HealthyThresholdCount=2,
                                UnhealthyThresholdCount=2)["TargetGroups"][0]["TargetGroupArn"]
elb.modify_target_group_attributes(TargetGroupArn=group, Attributes=[
    {"Key": "deregistration_delay.timeout_seconds", "Value": "1"}])
elb.create_listener(LoadBalancerArn=balancer["LoadBalancerArn"], Protocol="HTTP", Port=80,
                    DefaultActions=[{"Type": "forward", "TargetGroupArn": group}])
image = ec2.describe_images()["Images"][0]["ImageId"]
# A launch configuration: the stand-in gives Auto Scaling's instances its profile.
asg.create_launch_configuration(LaunchConfigurationName="web", ImageId=image, InstanceType="t3.micro",
                                IamInstanceProfile="gantry-host")
asg.create_auto_scaling_group(AutoScalingGroupName="web", LaunchConfigurationName="web", MinSize=4, MaxSize=5,
                              DesiredCapacity=4, VPCZoneIdentifier=",".join(subnets),
                              # Gantry hooks only the Auto Scaling groups it is given so.
                              Tags=[{"Key": "gantry:managed", "Value": "true", "PropagateAtLaunch": False}])
cw.put_metric_alarm(AlarmName="shop-errors", MetricName="Errors", Namespace="Shop", Statistic="Sum", Period=60,
                    EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold")
print(balancer["DNSName"])
PY
)
echo "  load balancer web: http://$BALANCER/ (the stand-in's DNSName), target group web on port $APP_PORT"

say "Starting the fleet runner: a gantry-agent per instance, with the instance's EC2 identity"
mkdir -p "$WORK/fleet"
cat >"$WORK/agent.yml.in" <<'EOF'
identity:
  ec2:
    metadata_endpoint: "{metadata_endpoint}"
region: {region}
queue_prefix: gantry-commands-
reports_queue: gantry-reports
root_dir: {dir}/root
log_dir: {dir}/logs
install_root: {dir}/fs
poll_wait_seconds: 20
stop_grace_seconds: 5
EOF
# agent_service.sh restarts an agent that exits, as gantry-agent.service does: an
# instance's agent waits so for its command queue, which its first deployment creates.
"$PY" "$ROOT/tests/fleet_runner.py" --endpoint "$AWS_ENDPOINT_URL" --dir "$WORK/fleet" --grace 5 \
  --config-template "$WORK/agent.yml.in" \
  --command "'$ROOT/tests/agent_service.sh' {dir}/run env LB_APP_ROOT={dir}/fs/srv/lb-app LB_APP_RUN_DIR={dir}/run '$TARGET/gantry-agent' --config {dir}/agent.yml" \
  >"$WORK/fleet_runner.log" 2>&1 &
PIDS+=($!)
fleet_size() { "$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$WORK/fleet/fleet.json" 2>/dev/null || echo 0; }
wait_for 30 "an agent per instance" at_least 4 fleet_size
"$PY" - "$WORK/fleet/fleet.json" "$APP_PORT" <<'PY'
import json, sys
for instance, host in json.load(open(sys.argv[1])).items():
    print(f"  {instance}: its application will listen on {host['address']}:{sys.argv[2]}")
PY

say "Creating application 'shop' and group 'web': the Auto Scaling group, HalfAtATime, WITH_TRAFFIC_CONTROL"
gantry app create shop
gantry_api CreateDeploymentGroup '{"applicationName": "shop", "deploymentGroupName": "web",
  "deploymentConfigName": "CodeDeployDefault.HalfAtATime", "autoScalingGroups": ["web"],
  "deploymentStyle": {"deploymentType": "IN_PLACE", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
  "loadBalancerInfo": {"targetGroupInfoList": [{"name": "web"}]},
  "alarmConfiguration": {"enabled": true, "alarms": [{"name": "shop-errors"}]},
  "autoRollbackConfiguration": {"enabled": true, "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"]}}'

revision() { # revision VERSION: examples/lb-app saying VERSION on the target group's port
  local dir="$WORK/revisions/$1"
  mkdir -p "$dir" && cp -r "$ROOT/examples/lb-app/." "$dir"
  echo "$1" >"$dir/app/version.txt"
  echo "$APP_PORT" >"$dir/app/port"
  gantry push "$dir" --app shop --s3 "s3://gantry-revisions/revisions/shop/$1.tgz"
}

healthy_targets() {
  aws elbv2 describe-target-health --target-group-arn "$(aws elbv2 describe-target-groups --names web \
    --query 'TargetGroups[0].TargetGroupArn' --output text)" \
    --query 'length(TargetHealthDescriptions[?TargetHealth.State==`healthy`])' --output text
}

say "Pushing lb-app v1 and deploying it to all four at once (nothing serves yet)"
revision v1
gantry deploy --app shop --group web --config CodeDeployDefault.AllAtOnce
wait_for 30 "four healthy targets" at_least 4 healthy_targets
echo "  http://$BALANCER/ answers: $(curl -sf "http://$BALANCER/")"

# The client loop: GET / through the load balancer, one connection per request, until
# told to stop (a file) or 20000 requests or 5 minutes; then its tally.
client_loop() { # client_loop NAME
  rm -f "$WORK/$1.stop"
  "$PY" - "$BALANCER" "$WORK/$1" <<'PY' &
import http.client, json, os, sys, time
balancer, out = sys.argv[1:3]
requests, failures, largest, versions, errors = 0, 0, 0.0, {}, {}
began = time.monotonic()
while not os.path.exists(out + ".stop") and requests < 20000 and time.monotonic() - began < 300:
    sent = time.monotonic()
    try:
        connection = http.client.HTTPConnection(balancer, timeout=5)
        connection.request("GET", "/", headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read().decode().strip()
        connection.close()
        outcome = body if response.status == 200 else f"HTTP {response.status}"
    except OSError as error:
        outcome = f"{type(error).__name__}: {error}"
    largest = max(largest, time.monotonic() - sent)
    requests += 1
    if outcome.startswith("v"):
        versions[outcome] = versions.get(outcome, 0) + 1
    else:
        failures += 1
        errors[outcome] = errors.get(outcome, 0) + 1
    time.sleep(0.01)  # a pace, leaving the cores to the control plane and the agents
with open(out + ".json", "w") as f:
    json.dump({"requests": requests, "failures": failures, "largest_latency_ms": round(largest * 1000, 1),
               "versions": versions, "errors": errors, "seconds": round(time.monotonic() - began, 1)}, f)
PY
  LOOP_PID=$!
}
stop_client_loop() { # stop_client_loop NAME: stops it and prints its tally
  touch "$WORK/$1.stop"
  wait "$LOOP_PID"
  "$PY" - "$WORK/$1.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
seen = ", ".join(f"{v} x{n}" for v, n in sorted(t["versions"].items()))
print(f"  client loop: {t['requests']} requests in {t['seconds']} s, {t['failures']} failed, "
      f"largest latency {t['largest_latency_ms']} ms; answers: {seen}")
for error, n in t["errors"].items():
    print(f"    failed x{n}: {error}")
PY
}

info() { # info DEPLOYMENT FIELD: a field of its deploymentInfo (empty if none)
  # `status` exits 1 for a stopped or failed deployment; its JSON is the answer all the same.
  { gantry --output json status "$1" || true; } | "$PY" -c 'import json, sys
info = json.load(sys.stdin)["deploymentInfo"]
for key in sys.argv[1].split("."):
    info = info.get(key) or {}
print(info or "")' "$2"
}
