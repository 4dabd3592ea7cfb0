//! Behind a load balancer (issue 16): an Auto Scaling group of four EC2 instances, each
//! with a real gantry-agent (tests/fleet_runner.py) serving examples/lb-app on its own
//! loopback address behind the stand-in's load balancer, and a client loop sending
//! requests through the load balancer. A HalfAtATime deployment of a new version drops no
//! request; then a scale-out's new instance gets that version through Gantry's launch
//! hook and joins the target group serving it, again without a failed request.

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
    autoscaling: autoscaling::Client,
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
        autoscaling,
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

    /// The instances of Auto Scaling group `web` and their lifecycle states.
    async fn instances(&self) -> Vec<(String, String)> {
        self.autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names("web")
            .send()
            .await
            .unwrap()
            .auto_scaling_groups()[0]
            .instances()
            .iter()
            .map(|instance| {
                (
                    instance.instance_id().unwrap().to_owned(),
                    instance.lifecycle_state().unwrap().as_str().to_owned(),
                )
            })
            .collect()
    }

    async fn set_desired_capacity(&self, capacity: usize) {
        self.autoscaling
            .set_desired_capacity()
            .auto_scaling_group_name("web")
            .desired_capacity(capacity as i32)
            .send()
            .await
            .unwrap();
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

/// Runs `during` with the client loop sending requests through `balancer` throughout,
/// and REQUESTS_AFTER_END more after it returns; returns its result and every request.
fn with_client_loop<T>(balancer: SocketAddr, during: impl FnOnce() -> T) -> (T, Vec<Sample>) {
    let client = ClientLoop::start(balancer);
    let result = during();
    let ended = epoch_seconds(SystemTime::now());
    let after_end = wait_until(Duration::from_secs(30), || {
        client.sent_after(ended) >= REQUESTS_AFTER_END
    });
    let samples = client.finish();
    assert!(
        after_end,
        "the loop sent {REQUESTS_AFTER_END} requests after the end"
    );
    (result, samples)
}

/// How many requests `version` answered.
fn answered(samples: &[Sample], version: &str) -> usize {
    samples
        .iter()
        .filter(|s| s.outcome.as_deref() == Ok(version))
        .count()
}

/// The client loop's tally, for the test's output: requests, failures, the largest
/// latency, and how many each of `versions` answered.
fn tally(samples: &[Sample], versions: &[&str]) -> String {
    let failed = samples.iter().filter(|s| s.outcome.is_err()).count();
    let largest_latency = samples.iter().map(|s| s.latency).max().unwrap_or_default();
    let answers: Vec<String> = versions
        .iter()
        .map(|version| format!("{version} {}", answered(samples, version)))
        .collect();
    format!(
        "{} requests, {failed} failed, largest latency {largest_latency:.1?}, {}",
        samples.len(),
        answers.join(" ")
    )
}

/// No request failed, and every answer came from one of `versions`.
fn assert_all_answered(samples: &[Sample], versions: &[&str]) {
    let failures: Vec<&Sample> = samples.iter().filter(|s| s.outcome.is_err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, the first: {:?}",
        failures.len(),
        samples.len(),
        &failures[..failures.len().min(5)]
    );
    let others: Vec<&Sample> = samples
        .iter()
        .filter(|s| !versions.iter().any(|v| s.outcome.as_deref() == Ok(*v)))
        .collect();
    assert!(
        others.is_empty(),
        "answers from none of {versions:?}: {others:?}"
    );
}

/// Everything the test runs against: moto with the stand-in, gantry-local, the stack, the
/// fleet runner with an agent per instance, application `shop` with group `web` (the
/// Auto Scaling group, HalfAtATime, WITH_TRAFFIC_CONTROL through target group `web`), and
/// v1 installed on every instance, each healthy behind the load balancer. Fields drop in
/// order: the agents stop before moto does.
struct LoadBalanced {
    ec2_fleet: Ec2Fleet,
    stack: Stack,
    runtime: tokio::runtime::Runtime,
    fleet: Fleet,
    /// The target group's port, where every instance's lb-app listens.
    port: u16,
    balancer: SocketAddr,
}

impl LoadBalanced {
    fn start() -> Self {
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
        let balancer = stack.balancer.parse().unwrap();
        let setup = Self {
            ec2_fleet,
            stack,
            runtime,
            fleet,
            port,
            balancer,
        };

        // v1 everywhere, all at once: nothing serves yet.
        push(&setup.fleet, "v1", port);
        let first = deploy(&setup.fleet, &["--config", "CodeDeployDefault.AllAtOnce"]);
        assert_eq!(first["status"], "Succeeded", "{first:#}");
        setup.wait_until_healthy(INSTANCES);
        assert_eq!(get(&setup.balancer), Ok("v1".to_owned()));
        setup
    }

    fn health(&self) -> Vec<(String, TargetHealthStateEnum)> {
        self.runtime.block_on(self.stack.health())
    }

    /// Waits until target group `web` has `count` targets, every one healthy.
    fn wait_until_healthy(&self, count: usize) -> Vec<(String, TargetHealthStateEnum)> {
        let mut health = Vec::new();
        let all_healthy = wait_until(Duration::from_secs(30), || {
            health = self.health();
            health.len() == count
                && health
                    .iter()
                    .all(|(_, state)| *state == TargetHealthStateEnum::Healthy)
        });
        assert!(
            all_healthy,
            "{count} targets, every one healthy, in target group web: {health:?}"
        );
        health
    }

    /// The lifecycle state of an instance of Auto Scaling group `web`, if it is in it.
    fn lifecycle_state(&self, instance_id: &str) -> Option<String> {
        self.runtime
            .block_on(self.stack.instances())
            .into_iter()
            .find(|(id, _)| id == instance_id)
            .map(|(_, state)| state)
    }

    /// Group `web`'s deployments, newest first.
    fn deployments(&self) -> Vec<String> {
        let listed = self
            .fleet
            .gantry_json(&["list", "--app", "shop", "--group", "web"]);
        listed["deployments"]
            .as_array()
            .expect("ListDeployments' deployments")
            .iter()
            .map(|id| id.as_str().unwrap().to_owned())
            .collect()
    }
}

/// v2, half at a time, with the client loop running throughout: no request fails, and
/// once the last instance is back in the target group only v2 answers.
fn deploy_half_at_a_time_dropping_no_request(setup: &LoadBalanced) {
    push(&setup.fleet, "v2", setup.port);
    let deploying = Instant::now();
    let (second, samples) = with_client_loop(setup.balancer, || deploy(&setup.fleet, &[]));
    println!(
        "client loop through {} during a HalfAtATime deployment of {:.1?} and {REQUESTS_AFTER_END} requests more: {}",
        setup.stack.balancer,
        deploying.elapsed(),
        tally(&samples, &["v1", "v2"])
    );
    assert_eq!(second["status"], "Succeeded", "{second:#}");
    assert_all_answered(&samples, &["v1", "v2"]);
    assert!(
        answered(&samples, "v1") > 0 && answered(&samples, "v2") > 0,
        "the loop saw the old and the new revision serve"
    );

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

/// Auto Scaling group `web` scaled out by one (issue 16 item 4), with the client loop
/// running throughout: the launch waits in Pending:Wait on Gantry's hook while a
/// deployment of the group's revision (creator `autoscaling`) installs `version` on the
/// new instance, whose agent the fleet runner started; when it succeeds the lifecycle
/// action is continued and the instance goes InService, healthy in the target group,
/// serving `version` through the load balancer. No request fails meanwhile.
fn scale_out(setup: &LoadBalanced, version: &str) {
    let before = setup.deployments();
    let scaling = Instant::now();
    let ((launched, launch, info), samples) = with_client_loop(setup.balancer, || {
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
        let ended = wait_until(DEPLOYMENT_TIMEOUT, || {
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
        let health = setup.wait_until_healthy(INSTANCES + 1);
        assert!(
            health.iter().any(|(id, _)| *id == launched),
            "{launched} is a target of web: {health:?}"
        );
        (launched, launch, info)
    });
    let scaled = scaling.elapsed();
    let targets = setup.fleet.targets(&launch);
    let events: Vec<String> = targets
        .iter()
        .flat_map(|t| t["lifecycleEvents"].as_array().cloned().unwrap_or_default())
        .map(|e| format!("{} {}", e["lifecycleEventName"], e["status"]).replace('"', ""))
        .collect();
    println!(
        "scale-out: {launched} InService and healthy {scaled:.1?} after SetDesiredCapacity; its deployment {launch} took {:.1} s ({}); client loop throughout and {REQUESTS_AFTER_END} requests more: {}",
        info["completeTime"].as_f64().unwrap_or(f64::NAN)
            - info["createTime"].as_f64().unwrap_or(f64::NAN),
        events.join(", "),
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
    setup.wait_until_healthy(INSTANCES + 1);
}

#[test]
fn a_deployment_and_a_scale_out_behind_a_load_balancer_drop_no_request() {
    let started = Instant::now();
    let setup = LoadBalanced::start();
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
