//! Behind a load balancer (issue 16): an Auto Scaling group of four EC2 instances, each
//! with a real gantry-agent (tests/fleet_runner.py) serving examples/lb-app on its own
//! loopback address behind the stand-in's load balancer, and a client loop sending
//! requests through the load balancer. A HalfAtATime deployment of a new version drops no
//! request; then a scale-out's new instance gets that version through Gantry's launch
//! hook and joins the target group serving it, again without a failed request.
//!
//! The stand-in, the setup, the revision and the client loop are gantry_tests::lb_stack.

use gantry_tests::lb_stack::{
    INSTANCES, Limits, LoadBalanced, REQUESTS_AFTER_END, assert_all_answered, assert_both_served,
    assert_last_answered, assert_only_between, events, get, push, succeeded_at, tally,
};
use gantry_tests::wait_until;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Long enough for a deployment here on a loaded 2-core machine (a hang fails the test),
/// and the client loop's bounds, whatever happens to the test.
const LIMITS: Limits = Limits {
    deployment: Duration::from_secs(90),
    loop_requests: 20_000,
    loop_time: Duration::from_secs(150),
};

/// v2, half at a time, with the client loop running throughout: no request fails, and
/// once the last instance is back in the target group only v2 answers.
fn deploy_half_at_a_time_dropping_no_request(setup: &LoadBalanced) {
    push(&setup.fleet, "v2", setup.port);
    let deploying = Instant::now();
    let (second, samples) = setup.with_client_loop(|| setup.deploy(&[]));
    println!(
        "client loop through {} during a HalfAtATime deployment of {:.1?} and {REQUESTS_AFTER_END} requests more: {}",
        setup.stack.balancer,
        deploying.elapsed(),
        tally(&samples, &["v1", "v2"])
    );
    assert_eq!(second["status"], "Succeeded", "{second:#}");
    assert_all_answered(&samples, &["v1", "v2"]);
    assert_both_served(&samples, "v1", "v2");

    // Each instance left its target group and came back, and once the last came back
    // only v2 answers.
    let id = second["deploymentId"].as_str().unwrap();
    let targets = setup.fleet.targets(id);
    assert_eq!(targets.len(), INSTANCES);
    let mut last_allowed = f64::NEG_INFINITY;
    for target in &targets {
        assert!(
            succeeded_at(target, "BlockTraffic").is_some(),
            "BlockTraffic succeeded: {target:#}"
        );
        let allowed = succeeded_at(target, "AllowTraffic")
            .unwrap_or_else(|| panic!("AllowTraffic succeeded: {target:#}"));
        last_allowed = last_allowed.max(allowed);
    }
    assert_only_between(
        &samples,
        last_allowed,
        f64::INFINITY,
        "v2",
        &format!("after the last AllowTraffic ended ({last_allowed})"),
    );
    assert_last_answered(&samples, "v2");
}

/// Auto Scaling group `web` scaled out by one (issue 16 item 4), with the client loop
/// running throughout: the launch waits in Pending:Wait on Gantry's hook while a
/// deployment of the group's revision (creator `autoscaling`) installs `version` on the
/// new instance, whose agent the fleet runner started; when it succeeds the lifecycle
/// action is continued and the instance goes InService, healthy in the target group,
/// serving `version` through the load balancer. No request fails meanwhile.
fn scale_out(setup: &LoadBalanced, version: &str) {
    let before = setup.deployments();
    let scaling = Instant::now();
    let ((launched, launch, info), samples) = setup.with_client_loop(|| {
        setup
            .runtime
            .block_on(setup.stack.set_desired_capacity(INSTANCES + 1));
        let mut instances = Vec::new();
        let appeared = wait_until(Duration::from_secs(30), || {
            instances = setup.runtime.block_on(setup.stack.instances());
            instances.len() > INSTANCES
        });
        assert!(appeared, "Auto Scaling launched an instance: {instances:?}");
        let (launched, state) = instances
            .into_iter()
            .find(|(id, _)| !setup.stack.instance_ids.contains(id))
            .expect("an instance not in the group before");
        assert_eq!(
            state, "Pending:Wait",
            "{launched} waits on the launch hook Gantry put"
        );
        setup
            .ec2_fleet
            .wait_for(std::slice::from_ref(&launched), Duration::from_secs(30))
            .expect("the fleet runner runs an agent for the launched instance");

        // The lifecycle notification reached Gantry, which deploys to the instance.
        let mut created = Vec::new();
        let made = wait_until(Duration::from_secs(30), || {
            created = setup.deployments();
            created.retain(|id| !before.contains(id));
            !created.is_empty()
        });
        assert!(made, "a deployment for the launched instance {launched}");
        assert_eq!(
            created.len(),
            1,
            "one deployment for the launch: {created:?}"
        );
        let launch = created.remove(0);

        // Until that deployment ends the instance waits: the state is read before the
        // deployment's status, so a state read while the deployment was still running
        // is in `waiting`.
        let mut info = Value::Null;
        let mut waiting = Vec::new();
        let ended = wait_until(setup.limits.deployment, || {
            let state = setup.lifecycle_state(&launched);
            info = setup.fleet.deployment(&launch);
            let ended = matches!(
                info["status"].as_str(),
                Some("Succeeded" | "Failed" | "Stopped")
            );
            if !ended {
                waiting.push(state);
            }
            ended
        });
        assert!(ended, "the launch's deployment {launch} ended: {info:#}");
        assert!(
            waiting
                .iter()
                .all(|state| state.as_deref() == Some("Pending:Wait")),
            "{launched} stayed in Pending:Wait while {launch} ran: {waiting:?}"
        );
        assert_eq!(info["status"], "Succeeded", "{info:#}");
        assert_eq!(info["creator"], "autoscaling", "{info:#}");
        assert_eq!(
            info["revision"]["s3Location"]["key"],
            format!("revisions/shop/{version}.tgz"),
            "the group's revision: {info:#}"
        );

        // Gantry continued the lifecycle action: the hook's own default, after its hour,
        // would have abandoned the instance (terminated and replaced it).
        let mut state = None;
        let in_service = wait_until(Duration::from_secs(30), || {
            state = setup.lifecycle_state(&launched);
            state.as_deref() == Some("InService")
        });
        assert!(in_service, "{launched} went InService: {state:?}");
        let health = setup.wait_until_healthy_count(INSTANCES + 1);
        assert!(
            health.iter().any(|(id, _)| *id == launched),
            "{launched} is a target of web: {health:?}"
        );
        (launched, launch, info)
    });
    let scaled = scaling.elapsed();
    let targets = setup.fleet.targets(&launch);
    let launch_events: Vec<String> = targets.iter().map(events).collect();
    println!(
        "scale-out: {launched} InService and healthy {scaled:.1?} after SetDesiredCapacity; its deployment {launch} took {:.1} s ({}); client loop throughout and {REQUESTS_AFTER_END} requests more: {}",
        info["completeTime"].as_f64().unwrap_or(f64::NAN)
            - info["createTime"].as_f64().unwrap_or(f64::NAN),
        launch_events.join(", "),
        tally(&samples, &[version])
    );
    assert_all_answered(&samples, &[version]);

    // The launch's deployment: the instance alone, its events those of any deployment
    // to the group, traffic steps included.
    assert_eq!(targets.len(), 1, "{targets:#?}");
    let target = &targets[0];
    assert_eq!(target["targetId"], launched.as_str(), "{target:#}");
    assert_eq!(target["status"], "Succeeded", "{target:#}");
    assert!(
        succeeded_at(target, "AllowTraffic").is_some(),
        "AllowTraffic succeeded: {target:#}"
    );

    // It answers `version` at its own address, and through the load balancer: the
    // stand-in's load balancer takes its healthy targets in turn, so with no other
    // client as many requests as targets reach each target once, the new one included.
    let instance = &setup.ec2_fleet.instances()[&launched];
    let own: SocketAddr = format!("{}:{}", instance.address, setup.port)
        .parse()
        .unwrap();
    assert_eq!(get(&own), Ok(version.to_owned()), "{launched} at {own}");
    for _ in 0..=INSTANCES {
        assert_eq!(get(&setup.balancer), Ok(version.to_owned()));
    }
    setup.wait_until_healthy_count(INSTANCES + 1);
}

#[test]
fn a_deployment_and_a_scale_out_behind_a_load_balancer_drop_no_request() {
    let started = Instant::now();
    let setup = LoadBalanced::start(LIMITS);
    let set_up = started.elapsed();
    deploy_half_at_a_time_dropping_no_request(&setup);
    let deployed = started.elapsed();
    scale_out(&setup, "v2");
    println!(
        "test ran {:.1?}: set-up and v1 {set_up:.1?}, v2 half at a time {:.1?}, scale-out {:.1?}",
        started.elapsed(),
        deployed - set_up,
        started.elapsed() - deployed
    );
}
