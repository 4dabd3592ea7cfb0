//! An in-place deployment behind a load balancer drops no request (issue 16): an Auto
//! Scaling group of four EC2 instances, each with a real gantry-agent
//! (tests/fleet_runner.py) serving examples/lb-app on its own loopback address behind
//! the stand-in's load balancer, and a client loop sending requests through the load
//! balancer for the whole of a HalfAtATime deployment of a new version.

use aws_sdk_autoscaling as autoscaling;
use aws_sdk_ec2 as ec2;
use aws_sdk_elasticloadbalancingv2 as elb;
use elb::types::{
    Action, ActionTypeEnum, ProtocolEnum, TargetGroupAttribute, TargetHealthStateEnum,
};
use gantry_tests::ec2_fleet::Ec2Fleet;
use gantry_tests::fleet::Fleet;
use gantry_tests::moto::Moto;
use gantry_tests::wait_until;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const INSTANCES: usize = 4;
/// Long enough for a deployment here on a loaded 2-core machine; a hang fails the test.
const DEPLOYMENT_TIMEOUT: Duration = Duration::from_secs(90);
/// The client loop's bounds, whatever happens to the test.
const LOOP_MAX_REQUESTS: usize = 20_000;
const LOOP_MAX_TIME: Duration = Duration::from_secs(150);
/// The loop's pace (not a synchronisation): enough requests to see every moment of the
/// deployment, leaving the two cores to the control plane, the agents and moto.
const LOOP_PACE: Duration = Duration::from_millis(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests that must follow the deployment's end before the loop stops.
const REQUESTS_AFTER_END: usize = 20;

/// The hosts' role: the template's Ec2HostPolicy, as a user attaches it to the
/// instance profile's role. (The stand-in does not enforce IAM; SQS reads the role's
/// session from each agent's credentials as SenderId.)
const HOST_POLICY: &str = r#"{"Version": "2012-10-17", "Statement": [
  {"Sid": "OwnCommandQueue", "Effect": "Allow",
   "Action": ["sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"],
   "Resource": "arn:aws:sqs:us-east-1:123456789012:gantry-commands-i-*",
   "Condition": {"StringEquals": {"aws:ResourceTag/gantry:instance-arn": "${ec2:SourceInstanceARN}"}}},
  {"Sid": "Reports", "Effect": "Allow", "Action": ["sqs:GetQueueUrl", "sqs:SendMessage"],
   "Resource": "arn:aws:sqs:us-east-1:123456789012:gantry-reports"},
  {"Sid": "ReadBundles", "Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
   "Resource": "arn:aws:s3:::gantry-revisions/revisions/*"}]}"#;
const EC2_TRUST: &str = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
  "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}"#;

/// What the stand-in's AWS holds for the test: a load balancer forwarding to target
/// group `web`, and Auto Scaling group `web` of INSTANCES instances.
struct Stack {
    elb: elb::Client,
    target_group_arn: String,
    /// `127.0.0.1:PORT`: the load balancer's DNSName.
    balancer: String,
    instance_ids: Vec<String>,
}

/// Sets up the hosts' role, the load balancer and target group (the stand-in's shortest
/// health settings) and the Auto Scaling group, in the default VPC's two first zones.
async fn stack(moto: &Moto, port: u16) -> Stack {
    let config = moto.sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&config);
    let ec2 = ec2::Client::new(&config);
    let elb = elb::Client::new(&config);
    let autoscaling = autoscaling::Client::new(&config);

    iam.create_role()
        .role_name("gantry-host")
        .assume_role_policy_document(EC2_TRUST)
        .send()
        .await
        .unwrap();
    iam.put_role_policy()
        .role_name("gantry-host")
        .policy_name("gantry-host")
        .policy_document(HOST_POLICY)
        .send()
        .await
        .unwrap();
    iam.create_instance_profile()
        .instance_profile_name("gantry-host")
        .send()
        .await
        .unwrap();
    iam.add_role_to_instance_profile()
        .instance_profile_name("gantry-host")
        .role_name("gantry-host")
        .send()
        .await
        .unwrap();

    let default_vpc = ec2::types::Filter::builder()
        .name("is-default")
        .values("true")
        .build();
    let vpc = ec2
        .describe_vpcs()
        .filters(default_vpc)
        .send()
        .await
        .unwrap()
        .vpcs()[0]
        .vpc_id()
        .unwrap()
        .to_owned();
    let in_vpc = ec2::types::Filter::builder()
        .name("vpc-id")
        .values(&vpc)
        .build();
    let mut subnets: Vec<(String, String)> = ec2
        .describe_subnets()
        .filters(in_vpc)
        .send()
        .await
        .unwrap()
        .subnets()
        .iter()
        .map(|subnet| {
            (
                subnet.availability_zone().unwrap().to_owned(),
                subnet.subnet_id().unwrap().to_owned(),
            )
        })
        .collect();
    subnets.sort();
    let subnets: Vec<String> = subnets.into_iter().take(2).map(|(_, id)| id).collect();

    let balancer = elb
        .create_load_balancer()
        .name("web")
        .set_subnets(Some(subnets.clone()))
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .clone();
    let target_group_arn = elb
        .create_target_group()
        .name("web")
        .protocol(ProtocolEnum::Http)
        .port(i32::from(port))
        .vpc_id(&vpc)
        .health_check_path("/health")
        .health_check_interval_seconds(1)
        .healthy_threshold_count(2)
        .unhealthy_threshold_count(2)
        .send()
        .await
        .unwrap()
        .target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_owned();
    elb.modify_target_group_attributes()
        .target_group_arn(&target_group_arn)
        .attributes(
            TargetGroupAttribute::builder()
                .key("deregistration_delay.timeout_seconds")
                .value("1")
                .build(),
        )
        .send()
        .await
        .unwrap();
    elb.create_listener()
        .load_balancer_arn(balancer.load_balancer_arn().unwrap())
        .protocol(ProtocolEnum::Http)
        .port(80)
        .default_actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(&target_group_arn)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let image = ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_owned();
    // A launch configuration: the stand-in gives Auto Scaling's instances its profile.
    autoscaling
        .create_launch_configuration()
        .launch_configuration_name("web")
        .image_id(image)
        .instance_type("t3.micro")
        .iam_instance_profile("gantry-host")
        .send()
        .await
        .unwrap();
    autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name("web")
        .launch_configuration_name("web")
        .min_size(INSTANCES as i32)
        .max_size(INSTANCES as i32 + 1)
        .desired_capacity(INSTANCES as i32)
        .vpc_zone_identifier(subnets.join(","))
        // Gantry hooks only the Auto Scaling groups it is given so.
        .tags(
            autoscaling::types::Tag::builder()
                .key("gantry:managed")
                .value("true")
                .resource_id("web")
                .resource_type("auto-scaling-group")
                .propagate_at_launch(false)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let instance_ids = autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("web")
        .send()
        .await
        .unwrap()
        .auto_scaling_groups()[0]
        .instances()
        .iter()
        .map(|instance| instance.instance_id().unwrap().to_owned())
        .collect();
    Stack {
        elb,
        target_group_arn,
        balancer: balancer.dns_name().unwrap().to_owned(),
        instance_ids,
    }
}

impl Stack {
    /// The targets of group `web` and their states.
    async fn health(&self) -> Vec<(String, TargetHealthStateEnum)> {
        self.elb
            .describe_target_health()
            .target_group_arn(&self.target_group_arn)
            .send()
            .await
            .unwrap()
            .target_health_descriptions()
            .iter()
            .map(|description| {
                (
                    description.target().unwrap().id().unwrap().to_owned(),
                    description
                        .target_health()
                        .unwrap()
                        .state()
                        .unwrap()
                        .clone(),
                )
            })
            .collect()
    }
}

/// examples/lb-app as version `version`, listening on `port`, pushed to
/// s3://gantry-revisions/revisions/shop/<version>.tgz.
fn push(fleet: &Fleet, version: &str, port: u16) {
    let dir = fleet.work.path().join("revisions").join(version);
    copy_dir(
        &gantry_tests::workspace_root().join("examples/lb-app"),
        &dir,
    );
    std::fs::write(dir.join("app/version.txt"), format!("{version}\n")).unwrap();
    std::fs::write(dir.join("app/port"), format!("{port}\n")).unwrap();
    let s3 = format!("s3://gantry-revisions/revisions/shop/{version}.tgz");
    fleet.gantry_ok(&["push", dir.to_str().unwrap(), "--app", "shop", "--s3", &s3]);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            // std::fs::copy keeps the scripts' execute bits.
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `gantry deploy --app shop --group web EXTRA`; waits for the deployment's end and
/// returns its info.
fn deploy(fleet: &Fleet, extra: &[&str]) -> Value {
    let mut args = vec!["deploy", "--app", "shop", "--group", "web", "--no-wait"];
    args.extend_from_slice(extra);
    let created = fleet.gantry_json(&args);
    let id = created["deploymentId"].as_str().expect("a deployment id");
    fleet.wait_for_end(id, DEPLOYMENT_TIMEOUT)
}

/// A free port, for the target group: every instance listens on it at its own address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One request of the client loop.
#[derive(Debug, Clone)]
struct Sample {
    /// When it was sent, in seconds since the epoch (the control plane's clock too).
    sent: f64,
    latency: Duration,
    /// The body of a 200, or what went wrong.
    outcome: Result<String, String>,
}

fn epoch_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// GET / through the load balancer, one connection per request, as a browser that
/// opens a new one would.
fn get(balancer: &SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(balancer, REQUEST_TIMEOUT)
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {balancer}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("receive: {e}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP response: {response:.80}"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("?");
    if status != "200" {
        return Err(format!("HTTP {status}: {body:.80}"));
    }
    Ok(body.trim().to_owned())
}

/// A thread sending requests to the load balancer one after another, from `start` until
/// `finish` (or its bounds), recording each. Dropped unfinished (a failed test), it stops.
struct ClientLoop {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ClientLoop {
    fn start(balancer: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, samples) = (stop.clone(), samples.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed)
                    && started.elapsed() < LOOP_MAX_TIME
                    && samples.lock().unwrap().len() < LOOP_MAX_REQUESTS
                {
                    let sent = SystemTime::now();
                    let clock = Instant::now();
                    let outcome = get(&balancer);
                    let sample = Sample {
                        sent: epoch_seconds(sent),
                        latency: clock.elapsed(),
                        outcome,
                    };
                    samples.lock().unwrap().push(sample);
                    std::thread::sleep(LOOP_PACE);
                }
            })
        };
        Self {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    /// How many requests were sent after `time` (seconds since the epoch).
    fn sent_after(&self, time: f64) -> usize {
        let samples = self.samples.lock().unwrap();
        samples.iter().filter(|s| s.sent > time).count()
    }

    /// Stops the loop; returns every request it sent.
    fn finish(mut self) -> Vec<Sample> {
        self.stop_thread();
        self.samples.lock().unwrap().clone()
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ClientLoop {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// When the target's `event` ended, if it succeeded.
fn succeeded_at(target: &Value, event: &str) -> Option<f64> {
    target["lifecycleEvents"]
        .as_array()?
        .iter()
        .find(|e| e["lifecycleEventName"] == event && e["status"] == "Succeeded")
        .and_then(|e| e["endTime"].as_f64())
}

#[test]
fn an_in_place_deployment_behind_a_load_balancer_drops_no_request() {
    let test_started = Instant::now();
    let fleet = Fleet::start(&["--tick-ms", "200"]).expect("moto and gantry-local start");
    let port = free_port();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stack = runtime.block_on(stack(&fleet.moto, port));
    assert_eq!(stack.instance_ids.len(), INSTANCES);
    let ec2_fleet = Ec2Fleet::start(
        &fleet.moto,
        &fleet.binaries.agent,
        &fleet.work.path().join("ec2"),
        &[
            ("LB_APP_ROOT", "{dir}/fs/srv/lb-app"),
            ("LB_APP_RUN_DIR", "{dir}/run"),
        ],
    )
    .expect("the fleet runner starts");
    ec2_fleet
        .wait_for(&stack.instance_ids, Duration::from_secs(30))
        .expect("an agent for every instance");

    fleet.gantry_ok(&["app", "create", "shop"]);
    fleet.aws_lambda_invoke(
        "gantry-api",
        &json!({"operation": "CreateDeploymentGroup", "input": {
            "applicationName": "shop",
            "deploymentGroupName": "web",
            "deploymentConfigName": "CodeDeployDefault.HalfAtATime",
            "autoScalingGroups": ["web"],
            "deploymentStyle": {"deploymentType": "IN_PLACE", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
            "loadBalancerInfo": {"targetGroupInfoList": [{"name": "web"}]},
        }}),
    );

    // v1 everywhere, all at once: nothing serves yet.
    push(&fleet, "v1", port);
    let first = deploy(&fleet, &["--config", "CodeDeployDefault.AllAtOnce"]);
    assert_eq!(first["status"], "Succeeded", "{first:#}");
    let mut health = Vec::new();
    let all_healthy = wait_until(Duration::from_secs(30), || {
        health = runtime.block_on(stack.health());
        health.len() == INSTANCES
            && health
                .iter()
                .all(|(_, state)| *state == TargetHealthStateEnum::Healthy)
    });
    assert!(
        all_healthy,
        "every instance healthy in target group web: {health:?}"
    );
    let balancer: SocketAddr = stack.balancer.parse().unwrap();
    assert_eq!(get(&balancer), Ok("v1".to_owned()));

    // v2, half at a time, with the client loop running throughout.
    push(&fleet, "v2", port);
    let client = ClientLoop::start(balancer);
    let deploying = Instant::now();
    let second = deploy(&fleet, &[]);
    let deployment_time = deploying.elapsed();
    let ended = epoch_seconds(SystemTime::now());
    let after_end = wait_until(Duration::from_secs(30), || {
        client.sent_after(ended) >= REQUESTS_AFTER_END
    });
    let samples = client.finish();
    assert_eq!(second["status"], "Succeeded", "{second:#}");
    assert!(
        after_end,
        "the loop sent {REQUESTS_AFTER_END} requests after the deployment ended"
    );

    let failures: Vec<&Sample> = samples.iter().filter(|s| s.outcome.is_err()).collect();
    let count = |version: &str| {
        samples
            .iter()
            .filter(|s| s.outcome.as_deref() == Ok(version))
            .count()
    };
    let largest_latency = samples.iter().map(|s| s.latency).max().unwrap_or_default();
    println!(
        "client loop through {} during a {:.1?} deployment: {} requests, {} failed, largest latency {:.1?}, v1 {} v2 {}; test ran {:.1?}",
        stack.balancer,
        deployment_time,
        samples.len(),
        failures.len(),
        largest_latency,
        count("v1"),
        count("v2"),
        test_started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, the first: {:?}",
        failures.len(),
        samples.len(),
        &failures[..failures.len().min(5)]
    );
    let others: Vec<&Sample> = samples
        .iter()
        .filter(|s| !matches!(s.outcome.as_deref(), Ok("v1" | "v2")))
        .collect();
    assert!(
        others.is_empty(),
        "answers from neither revision: {others:?}"
    );
    assert!(
        count("v1") > 0 && count("v2") > 0,
        "the loop saw the old and the new revision serve"
    );

    // Each instance left its target group and came back, and once the last came back
    // only v2 answers.
    let id = second["deploymentId"].as_str().unwrap();
    let targets = fleet.targets(id);
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
    let late_v1: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.sent > last_allowed && s.outcome.as_deref() != Ok("v2"))
        .collect();
    assert!(
        late_v1.is_empty(),
        "answers other than v2 after the last AllowTraffic ended ({last_allowed}): {late_v1:?}"
    );
    let last = &samples[samples.len() - REQUESTS_AFTER_END..];
    assert!(
        last.iter().all(|s| s.outcome.as_deref() == Ok("v2")),
        "the last answers are v2: {last:?}"
    );
}
