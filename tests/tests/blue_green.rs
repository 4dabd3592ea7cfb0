//! Blue/green through the load balancer (issue 17's proof): an Auto Scaling group of four
//! EC2 instances, each with a real gantry-agent (tests/fleet_runner.py, which runs an
//! agent for every running instance, those of groups created later included) serving
//! examples/lb-app behind the stand-in's load balancer, and a client loop sending
//! requests through it. v1 goes on in place; the group then turns BLUE_GREEN
//! (COPY_AUTO_SCALING_GROUP, CONTINUE_DEPLOYMENT, TERMINATE after 0 minutes).
//!
//! - v2, blue/green: Gantry copies the group, installs v2 on the copy's instances, moves
//!   traffic to them and away from the originals, and deletes the original group. No
//!   request fails; v2 answers nothing before traffic is allowed to the replacement fleet
//!   and v1 nothing once the original fleet is blocked.
//! - v3, whose ValidateService fails: the deployment fails before any traffic moves, the
//!   automatic rollback leaves the original fleet serving and deletes the copy. No
//!   request fails and only v1 answers throughout.
//! - v2 again, with the original fleet kept for 60 minutes after it is blocked and the
//!   group watching CloudWatch alarm shop-errors: the alarm fires during the termination
//!   wait, with traffic all on the copy. The deployment stops, and its automatic rollback
//!   sends traffic back to the original fleet (still running, out of the load balancer)
//!   and deletes the copy. No request fails, and v1 alone answers once the copy is
//!   blocked.
//!
//! The stand-in, the setup, the revision and the client loop are those of
//! load_balancer.rs: gantry_tests::lb_stack.

use gantry_tests::fleet::Fleet;
use gantry_tests::lb_stack::{
    INSTANCES, Limits, LoadBalanced, REQUESTS_AFTER_END, assert_all_answered, assert_both_served,
    assert_last_answered, assert_only_between, event, events, get, push_edited, started_at,
    succeeded_at, tally,
};
use gantry_tests::{wait_until, workspace_root};
use serde_json::{Value, json};
use std::ops::Deref;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Long enough for a blue/green deployment here (a second fleet to provision and install,
/// two fleets to move traffic between) on a loaded 2-core machine (a hang fails the
/// test), and the client loop's bounds, whatever happens to the test.
const LIMITS: Limits = Limits {
    deployment: Duration::from_secs(180),
    loop_requests: 40_000,
    loop_time: Duration::from_secs(420),
};
/// How long a group, its instances and their agents may take to go once Gantry let go.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The CloudWatch alarm the third test's group watches, as demo/lb_stack.sh creates it.
const ALARM: &str = "shop-errors";

/// The tests each run moto, gantry-local and eight agents at their busiest: one at a
/// time, or the two cores would time both out.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// lb_stack's revision, pushed as version `version`. With `validates` false, its
/// ValidateService hook fails (after the server started).
fn push(fleet: &Fleet, version: &str, port: u16, validates: bool) {
    push_edited(fleet, version, port, |dir| {
        if !validates {
            // Rewritten in place: the copy keeps the execute bit.
            std::fs::write(
                dir.join("scripts/validate.sh"),
                format!("#!/bin/sh\necho \"lb-app {version} fails its validation\" >&2\nexit 1\n"),
            )
            .unwrap();
        }
    });
}

/// The blue/green settings the group takes after v1 (the task's, CodeDeploy's shapes):
/// the original fleet is terminated `termination_wait_minutes` after it is blocked.
fn blue_green_settings(termination_wait_minutes: u32) -> Value {
    json!({
        "greenFleetProvisioningOption": {"action": "COPY_AUTO_SCALING_GROUP"},
        "deploymentReadyOption": {"actionOnTimeout": "CONTINUE_DEPLOYMENT"},
        "terminateBlueInstancesOnDeploymentSuccess": {
            "action": "TERMINATE",
            "terminationWaitTimeInMinutes": termination_wait_minutes,
        },
    })
}

/// `aws cloudwatch ARGS` with the stock AWS CLI, against moto (as the demo's boto3);
/// returns what it printed, if anything.
fn cloudwatch(fleet: &Fleet, args: &[&str]) -> Value {
    let output = Command::new(workspace_root().join(".venv/bin/aws"))
        .arg("cloudwatch")
        .args(args)
        .envs(fleet.moto.sdk_env())
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .expect("the stock AWS CLI runs");
    assert!(
        output.status.success(),
        "aws cloudwatch {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    if output.stdout.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&output.stdout).expect("aws prints JSON")
    }
}

/// Sets CloudWatch alarm `name` to `state` (OK, ALARM), as an operator testing it would.
fn set_alarm_state(fleet: &Fleet, name: &str, state: &str) {
    cloudwatch(
        fleet,
        &[
            "set-alarm-state",
            "--alarm-name",
            name,
            "--state-value",
            state,
            "--state-reason",
            "set by the blue/green test",
        ],
    );
}

/// CloudWatch alarm `name`'s state.
fn alarm_state(fleet: &Fleet, name: &str) -> Value {
    let described = cloudwatch(fleet, &["describe-alarms", "--alarm-names", name]);
    described["MetricAlarms"][0]["StateValue"].clone()
}

/// Seconds since the epoch, the control plane's clock.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// lb_stack's setup (v1 installed in place on every instance, each healthy behind the
/// load balancer), and then deployment group `web` turned BLUE_GREEN with automatic
/// rollback on failure (and on an alarm, for a group that watches one).
struct BlueGreen(LoadBalanced);

impl Deref for BlueGreen {
    type Target = LoadBalanced;

    fn deref(&self) -> &LoadBalanced {
        &self.0
    }
}

impl BlueGreen {
    /// The original fleet terminated as soon as it is blocked; no alarm.
    fn start() -> Self {
        Self::start_with(0, None)
    }

    /// The original fleet terminated `termination_wait_minutes` after it is blocked; with
    /// `alarm`, the group watches that CloudWatch alarm (created here, OK) and rolls back
    /// when it stops a deployment.
    fn start_with(termination_wait_minutes: u32, alarm: Option<&str>) -> Self {
        let setup = Self(LoadBalanced::start(LIMITS));

        // From now on, blue/green.
        let mut update = json!({
            "applicationName": "shop",
            "currentDeploymentGroupName": "web",
            "deploymentStyle": {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
            "blueGreenDeploymentConfiguration": blue_green_settings(termination_wait_minutes),
            "autoRollbackConfiguration": {"enabled": true, "events": ["DEPLOYMENT_FAILURE"]},
        });
        if let Some(alarm) = alarm {
            cloudwatch(
                &setup.fleet,
                &[
                    "put-metric-alarm",
                    "--alarm-name",
                    alarm,
                    "--metric-name",
                    "Errors",
                    "--namespace",
                    "Shop",
                    "--statistic",
                    "Sum",
                    "--period",
                    "60",
                    "--evaluation-periods",
                    "1",
                    "--threshold",
                    "1",
                    "--comparison-operator",
                    "GreaterThanOrEqualToThreshold",
                ],
            );
            set_alarm_state(&setup.fleet, alarm, "OK");
            update["alarmConfiguration"] = json!({"enabled": true, "alarms": [{"name": alarm}]});
            update["autoRollbackConfiguration"] = json!({
                "enabled": true,
                "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"],
            });
        }
        setup.fleet.aws_lambda_invoke(
            "gantry-api",
            &json!({"operation": "UpdateDeploymentGroup", "input": update}),
        );
        let group = setup.group_info();
        assert_eq!(
            group["deploymentStyle"]["deploymentType"], "BLUE_GREEN",
            "{group:#}"
        );
        let kept = &group["blueGreenDeploymentConfiguration"];
        assert_eq!(
            kept["greenFleetProvisioningOption"]["action"], "COPY_AUTO_SCALING_GROUP",
            "{group:#}"
        );
        assert_eq!(
            kept["terminateBlueInstancesOnDeploymentSuccess"],
            json!({"action": "TERMINATE", "terminationWaitTimeInMinutes": termination_wait_minutes}),
            "{group:#}"
        );
        if let Some(alarm) = alarm {
            assert_eq!(
                group["alarmConfiguration"]["alarms"][0]["name"], alarm,
                "{group:#}"
            );
            assert_eq!(
                group["autoRollbackConfiguration"]["events"],
                json!(["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"]),
                "{group:#}"
            );
        }
        assert_eq!(
            group["loadBalancerInfo"]["targetGroupInfoList"][0]["name"], "web",
            "the update kept the group's target group: {group:#}"
        );
        assert_eq!(setup.auto_scaling_groups(), ["web"], "{group:#}");
        setup
    }

    /// GetDeploymentGroup's `deploymentGroupInfo` of shop/web.
    fn group_info(&self) -> Value {
        let got = self.fleet.aws_lambda_invoke(
            "gantry-api",
            &json!({"operation": "GetDeploymentGroup", "input": {
                "applicationName": "shop", "deploymentGroupName": "web",
            }}),
        );
        got["deploymentGroupInfo"].clone()
    }

    /// The Auto Scaling groups deployment group web deploys to.
    fn auto_scaling_groups(&self) -> Vec<String> {
        let group = self.group_info();
        group["autoScalingGroups"]
            .as_array()
            .unwrap_or_else(|| panic!("autoScalingGroups: {group:#}"))
            .iter()
            .map(|g| g["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Waits until Auto Scaling group `name` is gone, its `instances` terminated and
    /// their agents stopped by the fleet runner.
    fn wait_until_removed(&self, name: &str, instances: &[String]) {
        let mut group = None;
        let deleted = wait_until(CLEANUP_TIMEOUT, || {
            group = self.group(name);
            group.is_none()
        });
        assert!(deleted, "Auto Scaling group {name} was deleted: {group:?}");
        let mut states = Vec::new();
        let terminated = wait_until(CLEANUP_TIMEOUT, || {
            states = self.runtime.block_on(self.stack.instance_states(instances));
            states.len() == instances.len() && states.iter().all(|(_, state)| state == "terminated")
        });
        assert!(terminated, "{name}'s instances terminated: {states:?}");
        let mut running = Vec::new();
        let stopped = wait_until(CLEANUP_TIMEOUT, || {
            running = self.ec2_fleet.instances().into_keys().collect();
            running.iter().all(|id| !instances.contains(id))
        });
        assert!(
            stopped,
            "the fleet runner stopped the agents of {instances:?}; it runs {running:?}"
        );
    }
}

/// The deployment's targets, Green (replacement) and Blue (original) apart, each sorted
/// by instance id.
fn fleets(fleet: &Fleet, deployment_id: &str) -> (Vec<Value>, Vec<Value>) {
    let mut targets = fleet.targets(deployment_id);
    targets.sort_by(|a, b| a["targetId"].as_str().cmp(&b["targetId"].as_str()));
    let (green, blue): (Vec<Value>, Vec<Value>) = targets
        .into_iter()
        .partition(|t| t["instanceLabel"] == "Green");
    assert!(
        blue.iter().all(|t| t["instanceLabel"] == "Blue"),
        "every target is Green or Blue: {blue:#?}"
    );
    (green, blue)
}

fn ids(targets: &[Value]) -> Vec<String> {
    targets
        .iter()
        .map(|t| t["targetId"].as_str().unwrap().to_owned())
        .collect()
}

fn sorted(ids: &[String]) -> Vec<String> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids
}

/// Prints each of `targets` as `PREFIX Label id status: events`, indented.
fn print_targets<'a>(prefix: &str, targets: impl IntoIterator<Item = &'a Value>) {
    for target in targets {
        println!(
            "  {prefix}{} {} {}: {}",
            target["instanceLabel"],
            target["targetId"],
            target["status"],
            events(target)
        );
    }
}

#[test]
fn a_blue_green_deployment_moves_traffic_to_a_copy_of_the_group_dropping_no_request() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let setup = BlueGreen::start();
    let set_up = started.elapsed();

    push(&setup.fleet, "v2", setup.port, true);
    let deploying = Instant::now();
    let (info, samples) = setup.with_client_loop(|| {
        let info = setup.deploy(&[]);
        if info["status"] == "Succeeded" {
            // The original fleet goes after the termination wait (none here).
            setup.wait_until_removed("web", &setup.stack.instance_ids);
        }
        info
    });
    let deployed = deploying.elapsed();
    let id = info["deploymentId"].as_str().unwrap().to_owned();
    let (green, blue) = fleets(&setup.fleet, &id);
    let copy = format!("CodeDeploy_web_{id}");

    // Where the time went, from the deployment's own record.
    let created = info["createTime"].as_f64().unwrap_or(f64::NAN);
    let latest = |targets: &[Value], name: &str| {
        targets
            .iter()
            .filter_map(|t| succeeded_at(t, name))
            .fold(f64::NAN, f64::max)
    };
    let earliest_start = |targets: &[Value], name: &str| {
        targets
            .iter()
            .filter_map(|t| started_at(t, name))
            .fold(f64::NAN, f64::min)
    };
    let first_event = green
        .iter()
        .filter_map(|t| t["lifecycleEvents"][0]["startTime"].as_f64())
        .fold(f64::NAN, f64::min);
    let installed = latest(&green, "ValidateService");
    let first_allowed = earliest_start(&green, "AllowTraffic");
    let rerouted = latest(&green, "AllowTraffic");
    let blocked = latest(&blue, "BlockTraffic");
    let completed = info["completeTime"].as_f64().unwrap_or(f64::NAN);
    println!(
        "blue/green {id} {}: {:.1} s to the replacement fleet's first event (provisioning), \
         {:.1} s installing, {:.1} s rerouting, {:.1} s blocking the original fleet, \
         {:.1} s to the end; test's view {deployed:.1?} with the original group's removal; \
         client loop through {} and {REQUESTS_AFTER_END} requests more: {}",
        info["status"],
        first_event - created,
        installed - first_event,
        rerouted - installed,
        blocked - rerouted,
        completed - blocked,
        setup.stack.balancer,
        tally(&samples, &["v1", "v2"])
    );
    print_targets("", green.iter().chain(&blue));

    assert_eq!(info["status"], "Succeeded", "{info:#}");
    assert_eq!(
        info["deploymentStyle"]["deploymentType"], "BLUE_GREEN",
        "{info:#}"
    );
    let progress = &info["blueGreenProgress"];
    assert_eq!(
        progress["replacementAutoScalingGroup"],
        copy.as_str(),
        "{info:#}"
    );
    assert_eq!(
        progress["originalAutoScalingGroups"],
        json!(["web"]),
        "{info:#}"
    );

    // The copy: a new group of as many instances, the deployment's Green targets, in no
    // target group of its own (Gantry registers them); the originals are the Blue ones.
    let copied = setup
        .group(&copy)
        .unwrap_or_else(|| panic!("Auto Scaling group {copy} exists"));
    assert_eq!(copied.instances.len(), INSTANCES, "{copied:?}");
    assert!(copied.status.is_none(), "{copied:?}");
    assert!(copied.target_groups.is_empty(), "{copied:?}");
    assert_eq!(green.len(), INSTANCES, "{green:#?}");
    assert_eq!(blue.len(), INSTANCES, "{blue:#?}");
    assert_eq!(ids(&green), sorted(&copied.instances));
    assert_eq!(ids(&blue), sorted(&setup.stack.instance_ids));
    for target in &green {
        assert_eq!(target["status"], "Succeeded", "{target:#}");
        for name in ["Install", "ValidateService", "AllowTraffic"] {
            assert!(
                succeeded_at(target, name).is_some(),
                "{name} succeeded: {target:#}"
            );
        }
    }
    for target in &blue {
        assert_eq!(target["status"], "Succeeded", "{target:#}");
        assert!(
            succeeded_at(target, "BlockTraffic").is_some(),
            "BlockTraffic succeeded: {target:#}"
        );
        assert!(
            event(target, "Install", "Succeeded").is_none(),
            "the original fleet installs nothing: {target:#}"
        );
    }
    assert!(
        rerouted <= blocked,
        "the original fleet is blocked once the replacement fleet serves: rerouted at {rerouted}, blocked at {blocked}"
    );

    // The client loop: nothing failed; v1 alone until traffic was allowed to the
    // replacement fleet, v2 alone once the original fleet was blocked.
    assert_all_answered(&samples, &["v1", "v2"]);
    assert_both_served(&samples, "v1", "v2");
    assert_only_between(
        &samples,
        f64::NEG_INFINITY,
        first_allowed,
        "v1",
        &format!("before the first AllowTraffic started ({first_allowed})"),
    );
    assert_only_between(
        &samples,
        blocked,
        f64::INFINITY,
        "v2",
        &format!("after the last BlockTraffic ended ({blocked})"),
    );
    assert_last_answered(&samples, "v2");

    // The original group is gone (checked in the loop) and the deployment group now
    // deploys to the copy, whose instances alone are behind the load balancer.
    assert_eq!(setup.auto_scaling_groups(), [copy.as_str()]);
    setup.wait_until_healthy(&copied.instances);
    for _ in 0..=INSTANCES {
        assert_eq!(get(&setup.balancer), Ok("v2".to_owned()));
    }
    println!(
        "test ran {:.1?}: set-up, v1 in place and the switch to blue/green {set_up:.1?}, v2 blue/green {deployed:.1?}",
        started.elapsed()
    );
}

#[test]
fn a_replacement_fleet_that_fails_validation_is_rolled_back_and_removed_dropping_no_request() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let setup = BlueGreen::start();
    let set_up = started.elapsed();

    push(&setup.fleet, "v3", setup.port, false);
    let deploying = Instant::now();
    let ((failed, rollback), samples) = setup.with_client_loop(|| {
        let mut failed = setup.deploy(&[]);
        // The rollback is started as the deployment fails: its id may follow the status.
        let id = failed["deploymentId"].as_str().unwrap().to_owned();
        if failed["status"] == "Failed" {
            wait_until(Duration::from_secs(30), || {
                failed = setup.fleet.deployment(&id);
                failed["rollbackInfo"]["rollbackDeploymentId"].is_string()
            });
        }
        let rollback = failed["rollbackInfo"]["rollbackDeploymentId"]
            .as_str()
            .map(|rollback| setup.fleet.wait_for_end(rollback, setup.limits.deployment));
        if let (Some(copy), Some(rollback)) = (
            failed["blueGreenProgress"]["replacementAutoScalingGroup"].as_str(),
            &rollback,
        ) && rollback["status"] == "Succeeded"
        {
            let (green, _) = fleets(&setup.fleet, &id);
            setup.wait_until_removed(copy, &ids(&green));
        }
        (failed, rollback)
    });
    let elapsed = deploying.elapsed();
    let id = failed["deploymentId"].as_str().unwrap().to_owned();
    let (green, blue) = fleets(&setup.fleet, &id);
    println!(
        "blue/green {id} {} ({}), rollback {} {}, {elapsed:.1?} with the copy's removal; client loop through {} and {REQUESTS_AFTER_END} requests more: {}",
        failed["status"],
        failed["errorInformation"],
        failed["rollbackInfo"]["rollbackDeploymentId"],
        rollback
            .as_ref()
            .map_or(Value::Null, |r| r["status"].clone()),
        setup.stack.balancer,
        tally(&samples, &["v1", "v3"])
    );
    print_targets("", green.iter().chain(&blue));

    if let Some(rollback) = &rollback {
        let rollback_id = rollback["deploymentId"].as_str().unwrap_or_default();
        print_targets("rollback ", &setup.fleet.targets(rollback_id));
    }

    assert_eq!(failed["status"], "Failed", "{failed:#}");
    assert_eq!(
        failed["deploymentStyle"]["deploymentType"], "BLUE_GREEN",
        "{failed:#}"
    );
    assert!(failed["errorInformation"]["code"].is_string(), "{failed:#}");
    let copy = format!("CodeDeploy_web_{id}");
    assert_eq!(
        failed["blueGreenProgress"]["replacementAutoScalingGroup"],
        copy.as_str(),
        "{failed:#}"
    );
    // The replacement fleet failed its validation, and no traffic ever went to it.
    assert_eq!(green.len(), INSTANCES, "{green:#?}");
    assert!(
        green
            .iter()
            .any(|t| event(t, "ValidateService", "Failed").is_some()),
        "ValidateService failed on the replacement fleet: {green:#?}"
    );
    assert!(
        green
            .iter()
            .all(|t| succeeded_at(t, "AllowTraffic").is_none()),
        "no replacement instance took traffic: {green:#?}"
    );
    assert_eq!(ids(&blue), sorted(&setup.stack.instance_ids));

    // The rollback: a new deployment that succeeded and left the original fleet serving.
    let rollback = rollback.unwrap_or_else(|| panic!("a rollback deployment: {failed:#}"));
    assert_eq!(rollback["status"], "Succeeded", "{rollback:#}");
    assert_eq!(rollback["creator"], "codeDeployRollback", "{rollback:#}");
    assert_eq!(
        rollback["rollbackInfo"]["rollbackTriggeringDeploymentId"],
        id.as_str(),
        "{rollback:#}"
    );

    // Only v1 ever answered, and none failed.
    assert_all_answered(&samples, &["v1"]);

    // The copy is gone (checked in the loop), the original group stays the group's, and
    // its instances alone are behind the load balancer.
    assert!(setup.group(&copy).is_none(), "{copy} was deleted");
    let original = setup.group("web").expect("the original group stays");
    assert_eq!(
        sorted(&original.instances),
        sorted(&setup.stack.instance_ids)
    );
    assert_eq!(setup.auto_scaling_groups(), ["web"]);
    setup.wait_until_healthy(&setup.stack.instance_ids);
    println!(
        "test ran {:.1?}: set-up, v1 in place and the switch to blue/green {set_up:.1?}, v3 and its rollback {elapsed:.1?}",
        started.elapsed()
    );
}

/// What the third test's closure saw: the v2 deployment as it stopped, its rollback, and
/// the copy of the group.
struct AlarmedRun {
    stopped: Value,
    rollback: Option<Value>,
    copy: String,
    copy_instances: Vec<String>,
    /// When the test set the alarm to ALARM (seconds since the epoch).
    alarmed_at: f64,
}

#[test]
fn an_alarm_after_traffic_moved_sends_it_back_to_the_original_fleet_dropping_no_request() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let setup = BlueGreen::start_with(60, Some(ALARM));
    let set_up = started.elapsed();

    push(&setup.fleet, "v2", setup.port, true);
    let deploying = Instant::now();
    let (run, samples) = setup.with_client_loop(|| {
        let created =
            setup
                .fleet
                .gantry_json(&["deploy", "--app", "shop", "--group", "web", "--no-wait"]);
        let id = created["deploymentId"]
            .as_str()
            .expect("a deployment id")
            .to_owned();

        // Traffic all on the copy, the originals out of the load balancer but running:
        // the termination wait (60 minutes) has begun.
        let mut waiting = Value::Null;
        wait_until(setup.limits.deployment, || {
            waiting = setup.fleet.deployment(&id);
            (waiting["blueGreenProgress"]["stage"] == "TerminationWait"
                && waiting["instanceTerminationWaitTimeStarted"] == true)
                || matches!(
                    waiting["status"].as_str(),
                    Some("Succeeded" | "Failed" | "Stopped")
                )
        });
        assert_eq!(waiting["status"], "InProgress", "{waiting:#}");
        assert_eq!(
            waiting["blueGreenProgress"]["stage"], "TerminationWait",
            "{waiting:#}"
        );
        assert_eq!(
            waiting["instanceTerminationWaitTimeStarted"], true,
            "{waiting:#}"
        );
        let copy = waiting["blueGreenProgress"]["replacementAutoScalingGroup"]
            .as_str()
            .unwrap_or_else(|| panic!("a replacement group: {waiting:#}"))
            .to_owned();
        let copy_instances = setup
            .group(&copy)
            .unwrap_or_else(|| panic!("Auto Scaling group {copy} exists"))
            .instances;
        setup.wait_until_healthy(&copy_instances);
        let originals = setup
            .runtime
            .block_on(setup.stack.instance_states(&setup.stack.instance_ids));
        assert!(
            originals.len() == INSTANCES && originals.iter().all(|(_, state)| state == "running"),
            "the original fleet runs through the termination wait: {originals:?}"
        );
        println!(
            "{id} in its termination wait {:.1?} after it was created, until {}",
            deploying.elapsed(),
            waiting["blueGreenProgress"]["waitUntil"]
        );

        // The alarm fires. Gantry polls it when its tick looks at the deployment: in the
        // wait, with nothing else due, about once a minute (store::IDLE_TICK_MS), well
        // within the deadline.
        let alarmed_at = now();
        set_alarm_state(&setup.fleet, ALARM, "ALARM");
        let mut stopped = setup.fleet.wait_for_end(&id, setup.limits.deployment);
        // The rollback is started as the deployment stops: its id may follow the status.
        if stopped["status"] == "Stopped" {
            wait_until(Duration::from_secs(30), || {
                stopped = setup.fleet.deployment(&id);
                stopped["rollbackInfo"]["rollbackDeploymentId"].is_string()
            });
        }
        let rollback = stopped["rollbackInfo"]["rollbackDeploymentId"]
            .as_str()
            .map(|rollback| setup.fleet.wait_for_end(rollback, setup.limits.deployment));
        if rollback
            .as_ref()
            .is_some_and(|rollback| rollback["status"] == "Succeeded")
        {
            setup.wait_until_removed(&copy, &copy_instances);
        }
        AlarmedRun {
            stopped,
            rollback,
            copy,
            copy_instances,
            alarmed_at,
        }
    });
    let elapsed = deploying.elapsed();
    set_alarm_state(&setup.fleet, ALARM, "OK");
    assert_eq!(alarm_state(&setup.fleet, ALARM), "OK");

    let AlarmedRun {
        stopped,
        rollback,
        copy,
        copy_instances,
        alarmed_at,
    } = run;
    let id = stopped["deploymentId"].as_str().unwrap().to_owned();
    let (green, blue) = fleets(&setup.fleet, &id);
    let rollback_id = rollback
        .as_ref()
        .and_then(|r| r["deploymentId"].as_str())
        .unwrap_or_default()
        .to_owned();
    let (back, blocked_copy) = if rollback_id.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        fleets(&setup.fleet, &rollback_id)
    };
    println!(
        "blue/green {id} {} ({}) {:.1} s after the alarm was set, rollback {} {}, \
         {elapsed:.1?} with the copy's removal; client loop through {} and \
         {REQUESTS_AFTER_END} requests more: {}",
        stopped["status"],
        stopped["errorInformation"],
        stopped["completeTime"].as_f64().unwrap_or(f64::NAN) - alarmed_at,
        stopped["rollbackInfo"]["rollbackDeploymentId"],
        rollback
            .as_ref()
            .map_or(Value::Null, |r| r["status"].clone()),
        setup.stack.balancer,
        tally(&samples, &["v1", "v2"])
    );
    print_targets("", green.iter().chain(&blue));
    print_targets("rollback ", back.iter().chain(&blocked_copy));

    // The deployment moved all traffic to the copy, then the alarm stopped it.
    assert_eq!(stopped["status"], "Stopped", "{stopped:#}");
    assert_eq!(
        stopped["errorInformation"]["code"], "ALARM_ACTIVE",
        "{stopped:#}"
    );
    assert!(
        stopped["errorInformation"]["message"]
            .as_str()
            .is_some_and(|message| message.contains(ALARM)),
        "the error names the alarm: {stopped:#}"
    );
    assert_eq!(copy, format!("CodeDeploy_web_{id}"), "{stopped:#}");
    assert_eq!(green.len(), INSTANCES, "{green:#?}");
    assert_eq!(ids(&green), sorted(&copy_instances));
    assert_eq!(ids(&blue), sorted(&setup.stack.instance_ids));
    for target in &green {
        assert!(
            succeeded_at(target, "AllowTraffic").is_some(),
            "AllowTraffic succeeded: {target:#}"
        );
    }
    for target in &blue {
        assert!(
            succeeded_at(target, "BlockTraffic").is_some(),
            "BlockTraffic succeeded: {target:#}"
        );
    }

    // The rollback: a new deployment that gave the original fleet its traffic back (no
    // install: it still has v1), then blocked the copy.
    let rollback = rollback.unwrap_or_else(|| panic!("a rollback deployment: {stopped:#}"));
    assert_eq!(rollback["status"], "Succeeded", "{rollback:#}");
    assert_eq!(rollback["creator"], "codeDeployRollback", "{rollback:#}");
    assert_eq!(
        rollback["rollbackInfo"]["rollbackTriggeringDeploymentId"],
        id.as_str(),
        "{rollback:#}"
    );
    assert_eq!(
        ids(&back),
        sorted(&setup.stack.instance_ids),
        "the rollback's replacement fleet is the original one: {back:#?}"
    );
    assert_eq!(
        ids(&blocked_copy),
        sorted(&copy_instances),
        "the rollback's original fleet is the copy: {blocked_copy:#?}"
    );
    for target in &back {
        assert_eq!(target["status"], "Succeeded", "{target:#}");
        for name in ["BeforeAllowTraffic", "AllowTraffic", "AfterAllowTraffic"] {
            assert!(
                succeeded_at(target, name).is_some(),
                "{name} succeeded: {target:#}"
            );
        }
        assert!(
            started_at(target, "Install").is_none(),
            "the original fleet installs nothing again: {target:#}"
        );
    }
    for target in &blocked_copy {
        assert_eq!(target["status"], "Succeeded", "{target:#}");
        for name in ["BeforeBlockTraffic", "BlockTraffic", "AfterBlockTraffic"] {
            assert!(
                succeeded_at(target, name).is_some(),
                "{name} succeeded: {target:#}"
            );
        }
    }
    let latest = |targets: &[Value], name: &str| {
        targets
            .iter()
            .filter_map(|t| succeeded_at(t, name))
            .fold(f64::NAN, f64::max)
    };
    let earliest_start = |targets: &[Value], name: &str| {
        targets
            .iter()
            .filter_map(|t| started_at(t, name))
            .fold(f64::NAN, f64::min)
    };
    let first_allowed = earliest_start(&green, "AllowTraffic");
    let originals_blocked = latest(&blue, "BlockTraffic");
    let first_allowed_back = earliest_start(&back, "AllowTraffic");
    let allowed_back = latest(&back, "AllowTraffic");
    let copy_blocked = latest(&blocked_copy, "BlockTraffic");
    assert!(
        allowed_back <= earliest_start(&blocked_copy, "BlockTraffic"),
        "the copy is blocked once the original fleet serves again: allowed back at \
         {allowed_back}, the copy's first BlockTraffic started at {}",
        earliest_start(&blocked_copy, "BlockTraffic")
    );

    // The client loop: nothing failed; v1 until traffic went to the copy, v2 alone while
    // it had it all, v1 alone once the copy was blocked.
    assert_all_answered(&samples, &["v1", "v2"]);
    assert_both_served(&samples, "v1", "v2");
    assert_only_between(
        &samples,
        f64::NEG_INFINITY,
        first_allowed,
        "v1",
        &format!("before the first AllowTraffic started ({first_allowed})"),
    );
    assert_only_between(
        &samples,
        originals_blocked,
        first_allowed_back,
        "v2",
        &format!(
            "between the original fleet's last BlockTraffic ({originals_blocked}) and the \
             rollback's first AllowTraffic ({first_allowed_back})"
        ),
    );
    assert_only_between(
        &samples,
        copy_blocked,
        f64::INFINITY,
        "v1",
        &format!("after the rollback's last BlockTraffic ended ({copy_blocked})"),
    );
    assert_last_answered(&samples, "v1");

    // The copy is gone (checked in the loop); the original group, its instances and the
    // deployment group's hold on it stay, and they alone are behind the load balancer.
    assert!(setup.group(&copy).is_none(), "{copy} was deleted");
    let original = setup.group("web").expect("the original group stays");
    assert_eq!(
        sorted(&original.instances),
        sorted(&setup.stack.instance_ids)
    );
    assert_eq!(setup.auto_scaling_groups(), ["web"]);
    setup.wait_until_healthy(&setup.stack.instance_ids);
    for _ in 0..=INSTANCES {
        assert_eq!(get(&setup.balancer), Ok("v1".to_owned()));
    }
    println!(
        "test ran {:.1?}: set-up, v1 in place and the switch to blue/green {set_up:.1?}, v2, the alarm and the rollback {elapsed:.1?}",
        started.elapsed()
    );
}
