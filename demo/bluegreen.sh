#!/usr/bin/env bash
# `make demo-bluegreen`: a blue/green deployment through a load balancer that drops no
# request, then a replacement fleet that fails its validation and is rolled back.
#
# Starts the same stack as `make demo-lb` (demo/lb_stack.sh: moto with the stand-in's
# loopback load balancer, gantry-local, a real gantry-agent per instance of an Auto
# Scaling group of four, lb-app v1 deployed in place). Then turns group web blue/green
# (COPY_AUTO_SCALING_GROUP, STOP_DEPLOYMENT, TERMINATE) and deploys v2: a copy of the Auto
# Scaling group installs v2 and waits, Ready, until `gantry continue`; traffic moves to
# it half at a time, the original instances leave the target group and their group is
# deleted. A client loop on the load balancer counts failures throughout. Then v3, whose
# ValidateService fails: traffic never leaves v2 and the copy made for v3 is deleted.
# Everything it starts is stopped on exit, by pid.
set -euo pipefail
DEMO_NAME=bluegreen
# shellcheck source=demo/lb_stack.sh
source "$(dirname "$0")/lb_stack.sh"

asg_names() {
  aws autoscaling describe-auto-scaling-groups --query 'AutoScalingGroups[].AutoScalingGroupName' --output text
}

say "Turning group web blue/green: copy its Auto Scaling group, wait for 'gantry continue', terminate the original"
gantry_api UpdateDeploymentGroup '{"applicationName": "shop", "currentDeploymentGroupName": "web",
  "deploymentStyle": {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
  "blueGreenDeploymentConfiguration": {
    "greenFleetProvisioningOption": {"action": "COPY_AUTO_SCALING_GROUP"},
    "deploymentReadyOption": {"actionOnTimeout": "STOP_DEPLOYMENT", "waitTimeInMinutes": 10},
    "terminateBlueInstancesOnDeploymentSuccess": {"action": "TERMINATE", "terminationWaitTimeInMinutes": 0}}}'
echo "  Auto Scaling groups: $(asg_names)"

say "Pushing v2 and deploying it blue/green, with a client loop on the load balancer throughout"
revision v2
newest() { gantry list --app shop --group web | sed -n 1p; }
BEFORE=$(newest)
client_loop v2-loop
gantry deploy --app shop --group web &
DEPLOY_PID=$!
is_new() { [ "$(newest)" != "$BEFORE" ]; }
wait_for 60 "the v2 deployment" is_new
V2=$(newest)
stage_is() { [ "$(info "$V2" blueGreenProgress.stage)" = "$1" ]; }
wait_for 120 "the replacement fleet to be Ready" stage_is Ready
echo
echo "  the replacement fleet installed v2 and waits; the original fleet still serves:"
gantry status "$V2" | sed 's/^/    /'
echo "  http://$BALANCER/ answers: $(curl -sf "http://$BALANCER/")"
say "gantry continue $V2: rerouting traffic to the replacement fleet"
gantry continue "$V2"
wait "$DEPLOY_PID"
# The loop goes on a second past the end, when every answer is v2.
sleep 1
stop_client_loop v2-loop
echo "  http://$BALANCER/ answers: $(curl -sf "http://$BALANCER/")"
echo "  Auto Scaling groups now: $(asg_names) (web, the original, is deleted)"
echo "  group web now deploys to Auto Scaling group $(gantry_api GetDeploymentGroup '{"applicationName": "shop", "deploymentGroupName": "web"}' |
  "$PY" -c 'import json, sys; print(*(g["name"] for g in json.loads(sys.stdin.readline())["deploymentGroupInfo"]["autoScalingGroups"]))')"

say "Pushing v3, whose ValidateService fails, and deploying it: traffic never leaves v2"
gantry_api UpdateDeploymentGroup '{"applicationName": "shop", "currentDeploymentGroupName": "web",
  "blueGreenDeploymentConfiguration": {
    "deploymentReadyOption": {"actionOnTimeout": "CONTINUE_DEPLOYMENT", "waitTimeInMinutes": 0}}}' >/dev/null
mkdir -p "$WORK/revisions/v3" && cp -r "$ROOT/examples/lb-app/." "$WORK/revisions/v3"
echo v3 >"$WORK/revisions/v3/app/version.txt"
echo "$APP_PORT" >"$WORK/revisions/v3/app/port"
printf '#!/bin/sh\necho "lb-app v3 fails its validation" >&2\nexit 1\n' >"$WORK/revisions/v3/scripts/validate.sh"
gantry push "$WORK/revisions/v3" --app shop --s3 "s3://gantry-revisions/revisions/shop/v3.tgz"
BEFORE=$(newest)
client_loop v3-loop
gantry deploy --app shop --group web &
DEPLOY_PID=$!
wait_for 60 "the v3 deployment" is_new
V3=$(newest)
if wait "$DEPLOY_PID"; then
  echo "the v3 deployment succeeded; that was not supposed to happen" >&2
  exit 1
fi
rollback_linked() { [ -n "$(info "$V3" rollbackInfo.rollbackDeploymentId)" ]; }
wait_for 30 "v3's rollback" rollback_linked
ROLLBACK=$(info "$V3" rollbackInfo.rollbackDeploymentId)
ended() { case "$(info "$1" status)" in Succeeded | Failed | Stopped) true ;; *) false ;; esac; }
wait_for 120 "the rollback $ROLLBACK to end" ended "$ROLLBACK"
stop_client_loop v3-loop
echo "  the failed v3 deployment:"
gantry status "$V3" | sed 's/^/    /' || true
echo "  its rollback (the replacement fleet leaves, its copied group is deleted):"
gantry status "$ROLLBACK" | sed 's/^/    /'
echo "  Auto Scaling groups now: $(asg_names)"
echo "  http://$BALANCER/ answers: $(curl -sf "http://$BALANCER/")"

say "Summary"
echo "  deployments of group web, newest first:"
gantry list --app shop --group web | sed 's/^/    /'
echo "  all processes started by the demo are stopped now; logs are in $WORK"
