#!/usr/bin/env bash
# `make demo-lb`: an in-place deployment behind a load balancer that drops no request.
#
# Starts moto (the AWS stand-in, whose load balancers carry real HTTP on loopback),
# gantry-local (the control plane) and tests/fleet_runner.py, which gives each EC2
# instance of an Auto Scaling group of four a real gantry-agent with the instance's
# identity. Deploys examples/lb-app v1, then v2 half at a time while a client loop sends
# requests through the load balancer, and prints the loop's tally. Then scales out to five
# (the new instance gets v2 through the launch hook and joins the target group), and
# sets a CloudWatch alarm off during a v3 deployment, which stops and rolls back.
# Everything it starts is stopped on exit, by pid.
set -euo pipefail
DEMO_NAME=lb
# shellcheck source=demo/lb_stack.sh
source "$(dirname "$0")/lb_stack.sh"

say "Pushing v2 and deploying it half at a time, with a client loop on the load balancer throughout"
revision v2
client_loop v2-loop
gantry deploy --app shop --group web
# The loop goes on a second past the end, when every answer is v2.
sleep 1
stop_client_loop v2-loop
echo "  http://$BALANCER/ answers: $(curl -sf "http://$BALANCER/")"

say "Scaling out to five: the launch hook deploys v2 to the new instance, which joins the target group"
cp "$WORK/fleet/fleet.json" "$WORK/fleet/before-scale-out.json"
aws autoscaling set-desired-capacity --auto-scaling-group-name web --desired-capacity 5
in_service() {
  aws autoscaling describe-auto-scaling-groups --auto-scaling-group-names web \
    --query 'length(AutoScalingGroups[0].Instances[?LifecycleState==`InService`])' --output text
}
wait_for 90 "the fifth instance in service" at_least 5 in_service
wait_for 30 "five healthy targets" at_least 5 healthy_targets
read -r LAUNCHED ADDRESS < <("$PY" - "$WORK/fleet/before-scale-out.json" "$WORK/fleet/fleet.json" <<'PY'
import json, sys
before, after = (json.load(open(path)) for path in sys.argv[1:3])
print(*next((i, host["address"]) for i, host in after.items() if i not in before))
PY
)
LAUNCH_DEPLOYMENT=$(gantry list --app shop --group web | sed -n 1p)
echo "  $LAUNCHED launched; Auto Scaling held it in Pending:Wait while $LAUNCH_DEPLOYMENT deployed v2 to it:"
gantry status "$LAUNCH_DEPLOYMENT" | sed 's/^/    /'
echo "  $LAUNCHED answers at $ADDRESS:$APP_PORT: $(curl -sf "http://$ADDRESS:$APP_PORT/")"
echo "  target group web:"
aws elbv2 describe-target-health --target-group-arn "$(aws elbv2 describe-target-groups --names web \
  --query 'TargetGroups[0].TargetGroupArn' --output text)" \
  --query 'TargetHealthDescriptions[].[Target.Id, TargetHealth.State]' --output text | sed 's/^/    /'

say "Pushing v3 and deploying it; alarm shop-errors goes off mid-deployment: it stops and rolls back to v2"
revision v3
# sed, not head: the CLI should not see its output closed early.
newest() { gantry list --app shop --group web | sed -n 1p; }
BEFORE=$(newest)
client_loop v3-loop
gantry deploy --app shop --group web &
DEPLOY_PID=$!
is_new() { [ "$(newest)" != "$BEFORE" ]; }
wait_for 30 "the v3 deployment" is_new
V3=$(newest)
hosts_begun() { # hosts_begun DEPLOYMENT: how many of its hosts have begun
  gantry --output json status "$1" | "$PY" -c 'import json, sys
overview = json.load(sys.stdin)["deploymentInfo"]["deploymentOverview"]
print(overview["InProgress"] + overview["Succeeded"])'
}
wait_for 60 "v3's first batch to begin" at_least 1 hosts_begun "$V3"
aws cloudwatch set-alarm-state --alarm-name shop-errors --state-value ALARM --state-reason "set by the demo"
printf '\n  (alarm shop-errors set to ALARM)\n'
if wait "$DEPLOY_PID"; then
  echo "the v3 deployment was not stopped by the alarm; that was not supposed to happen" >&2
  exit 1
fi
rollback_linked() { [ -n "$(info "$V3" rollbackInfo.rollbackDeploymentId)" ]; }
wait_for 30 "v3's rollback" rollback_linked
ROLLBACK=$(info "$V3" rollbackInfo.rollbackDeploymentId)
ended() { case "$(info "$1" status)" in Succeeded | Failed | Stopped) true ;; *) false ;; esac; }
# `gantry deploy` follows the rollback when it sees it in time; wait for its end either way.
wait_for 120 "the rollback $ROLLBACK to end" ended "$ROLLBACK"
echo "  the rollback:"
gantry status "$ROLLBACK" | sed 's/^/    /'
stop_client_loop v3-loop
aws cloudwatch set-alarm-state --alarm-name shop-errors --state-value OK --state-reason "set by the demo"
echo "  http://$BALANCER/ answers: $(curl -sf "http://$BALANCER/")"

say "Summary"
echo "  the stopped v3 deployment, as it ended:"
gantry status "$V3" | sed 's/^/    /' || true
echo "  deployments of group web, newest first:"
gantry list --app shop --group web | sed 's/^/    /'
echo "  all processes started by the demo are stopped now; logs are in $WORK"
