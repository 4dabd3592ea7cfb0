//! Behind a load balancer, for tests/load_balancer.rs and tests/blue_green.rs: the
//! stand-in's AWS holding a load balancer, target group `web` and Auto Scaling group `web`
//! of INSTANCES EC2 instances, each with a real gantry-agent (tests/fleet_runner.py)
//! serving examples/lb-app on its own loopback address; application `shop` with
//! deployment group `web` deploying to them; and a client loop sending requests through
//! the load balancer, with the tallies and assertions on what it saw.

use crate::ec2_fleet::Ec2Fleet;
use crate::fleet::Fleet;
use crate::moto::Moto;
use crate::wait_until;
use aws_sdk_autoscaling as autoscaling;
use aws_sdk_ec2 as ec2;
use aws_sdk_elasticloadbalancingv2 as elb;
use elb::types::{
    Action, ActionTypeEnum, ProtocolEnum, TargetGroupAttribute, TargetHealthStateEnum,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The instances of Auto Scaling group `web` (it may grow by one).
pub const INSTANCES: usize = 4;
/// The loop's pace (not a synchronisation): enough requests to see every moment of a
/// deployment, leaving the two cores to the control plane, the agents and moto.
const LOOP_PACE: Duration = Duration::from_millis(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests that must follow the end of what the client loop watches before it stops.
pub const REQUESTS_AFTER_END: usize = 20;

/// How long a test file gives its deployments and its client loop.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Long enough for a deployment on a loaded 2-core machine; a hang fails the test.
    pub deployment: Duration,
    /// The client loop's bounds, whatever happens to the test.
    pub loop_requests: usize,
    pub loop_time: Duration,
}

/// The hosts' role: the template's Ec2HostPolicy as rendered for the stand-in, from the
/// one file the template is checked against (local/tests/template.rs), as a user attaches
/// it to the instance profile's role. (The stand-in does not enforce IAM; SQS reads the
/// role's session from each agent's credentials as SenderId.)
const HOST_POLICY: &str = include_str!("../../local/ec2-host-policy.json");
const EC2_TRUST: &str = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
  "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}"#;

/// What the stand-in's AWS holds for a test: a load balancer forwarding to target
/// group `web`, and Auto Scaling group `web` of INSTANCES instances.
pub struct Stack {
    pub elb: elb::Client,
    pub autoscaling: autoscaling::Client,
    pub ec2: ec2::Client,
    pub target_group_arn: String,
    /// `127.0.0.1:PORT`: the load balancer's DNSName.
    pub balancer: String,
    /// Group `web`'s instances as it was created.
    pub instance_ids: Vec<String>,
}

/// An Auto Scaling group as DescribeAutoScalingGroups lists it.
#[derive(Debug)]
pub struct Group {
    pub instances: Vec<String>,
    /// Its `Status` (`Delete in progress`), if it has one.
    pub status: Option<String>,
    pub target_groups: Vec<String>,
}

impl Stack {
    /// Sets up the hosts' role, the load balancer and target group (the stand-in's
    /// shortest health settings, instances listening on `port`) and the Auto Scaling
    /// group, in the default VPC's two first zones.
    pub async fn create(moto: &Moto, port: u16) -> Self {
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
        let mut stack = Self {
            elb,
            autoscaling,
            ec2,
            target_group_arn,
            balancer: balancer.dns_name().unwrap().to_owned(),
            instance_ids: Vec::new(),
        };
        stack.instance_ids = stack.group("web").await.expect("group web").instances;
        stack
    }

    /// The targets of group `web` and their states.
    pub async fn health(&self) -> Vec<(String, TargetHealthStateEnum)> {
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

    /// Auto Scaling group `name`, if it exists.
    pub async fn group(&self, name: &str) -> Option<Group> {
        let described = self
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .unwrap();
        let group = described
            .auto_scaling_groups()
            .iter()
            .find(|group| group.auto_scaling_group_name() == Some(name))?;
        Some(Group {
            instances: group
                .instances()
                .iter()
                .map(|instance| instance.instance_id().unwrap().to_owned())
                .collect(),
            status: group.status().map(str::to_owned),
            target_groups: group.target_group_arns().to_vec(),
        })
    }

    /// The instances of Auto Scaling group `web` and their lifecycle states.
    pub async fn instances(&self) -> Vec<(String, String)> {
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

    /// The EC2 state (`running`, `terminated`, ...) of each of `ids`.
    pub async fn instance_states(&self, ids: &[String]) -> Vec<(String, String)> {
        let described = self
            .ec2
            .describe_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .unwrap();
        described
            .reservations()
            .iter()
            .flat_map(|reservation| reservation.instances())
            .map(|instance| {
                (
                    instance.instance_id().unwrap().to_owned(),
                    instance
                        .state()
                        .and_then(|state| state.name())
                        .map_or("?", |name| name.as_str())
                        .to_owned(),
                )
            })
            .collect()
    }

    pub async fn set_desired_capacity(&self, capacity: usize) {
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
pub fn push(fleet: &Fleet, version: &str, port: u16) {
    push_edited(fleet, version, port, |_| {});
}

/// [`push`], with `edit` changing the revision's directory before it is pushed.
pub fn push_edited(fleet: &Fleet, version: &str, port: u16, edit: impl FnOnce(&Path)) {
    let dir = fleet.work.path().join("revisions").join(version);
    copy_dir(&crate::workspace_root().join("examples/lb-app"), &dir);
    std::fs::write(dir.join("app/version.txt"), format!("{version}\n")).unwrap();
    std::fs::write(dir.join("app/port"), format!("{port}\n")).unwrap();
    edit(&dir);
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

/// A free port, for the target group: every instance listens on it at its own address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Everything a test runs against: moto with the stand-in, gantry-local, the stack, the
/// fleet runner with an agent per instance, application `shop` with group `web` (the
/// Auto Scaling group, HalfAtATime, WITH_TRAFFIC_CONTROL through target group `web`), and
/// v1 installed in place on every instance, each healthy behind the load balancer. Fields
/// drop in order: the agents stop before moto does.
pub struct LoadBalanced {
    pub ec2_fleet: Ec2Fleet,
    pub stack: Stack,
    pub runtime: tokio::runtime::Runtime,
    pub fleet: Fleet,
    /// The target group's port, where every instance's lb-app listens.
    pub port: u16,
    pub balancer: SocketAddr,
    pub limits: Limits,
}

impl LoadBalanced {
    pub fn start(limits: Limits) -> Self {
        let fleet = Fleet::start(&["--tick-ms", "200"]).expect("moto and gantry-local start");
        let port = free_port();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let stack = runtime.block_on(Stack::create(&fleet.moto, port));
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
            limits,
        };

        // v1 everywhere, in place and all at once: nothing serves yet.
        push(&setup.fleet, "v1", port);
        let first = setup.deploy(&["--config", "CodeDeployDefault.AllAtOnce"]);
        assert_eq!(first["status"], "Succeeded", "{first:#}");
        setup.wait_until_healthy(&setup.stack.instance_ids);
        assert_eq!(get(&setup.balancer), Ok("v1".to_owned()));
        setup
    }

    /// `gantry deploy --app shop --group web EXTRA`; waits for the deployment's end and
    /// returns its info.
    pub fn deploy(&self, extra: &[&str]) -> Value {
        let mut args = vec!["deploy", "--app", "shop", "--group", "web", "--no-wait"];
        args.extend_from_slice(extra);
        let created = self.fleet.gantry_json(&args);
        let id = created["deploymentId"].as_str().expect("a deployment id");
        self.fleet.wait_for_end(id, self.limits.deployment)
    }

    /// Runs `during` with the client loop sending requests through the load balancer
    /// throughout, and REQUESTS_AFTER_END more after it returns; returns its result and
    /// every request.
    pub fn with_client_loop<T>(&self, during: impl FnOnce() -> T) -> (T, Vec<Sample>) {
        let client = ClientLoop::start(self.balancer, self.limits);
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

    pub fn health(&self) -> Vec<(String, TargetHealthStateEnum)> {
        self.runtime.block_on(self.stack.health())
    }

    /// Waits until target group `web`'s targets are `ids`, every one healthy.
    pub fn wait_until_healthy(&self, ids: &[String]) {
        let ids: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        let (all_healthy, health) = self.wait_for_health(|health| {
            health
                .iter()
                .map(|(id, _)| id.as_str())
                .collect::<BTreeSet<_>>()
                == ids
        });
        assert!(
            all_healthy,
            "target group web's targets are {ids:?}, every one healthy: {health:?}"
        );
    }

    /// Waits until target group `web` has `count` targets, every one healthy; returns them.
    pub fn wait_until_healthy_count(&self, count: usize) -> Vec<(String, TargetHealthStateEnum)> {
        let (all_healthy, health) = self.wait_for_health(|health| health.len() == count);
        assert!(
            all_healthy,
            "{count} targets, every one healthy, in target group web: {health:?}"
        );
        health
    }

    /// Waits until target group `web`'s targets are as `expected` would have them, every
    /// one healthy; says whether they came to be, and the targets as last read.
    fn wait_for_health(
        &self,
        expected: impl Fn(&[(String, TargetHealthStateEnum)]) -> bool,
    ) -> (bool, Vec<(String, TargetHealthStateEnum)>) {
        let mut health = Vec::new();
        let all_healthy = wait_until(Duration::from_secs(30), || {
            health = self.health();
            expected(&health)
                && health
                    .iter()
                    .all(|(_, state)| *state == TargetHealthStateEnum::Healthy)
        });
        (all_healthy, health)
    }

    pub fn group(&self, name: &str) -> Option<Group> {
        self.runtime.block_on(self.stack.group(name))
    }

    /// The lifecycle state of an instance of Auto Scaling group `web`, if it is in it.
    pub fn lifecycle_state(&self, instance_id: &str) -> Option<String> {
        self.runtime
            .block_on(self.stack.instances())
            .into_iter()
            .find(|(id, _)| id == instance_id)
            .map(|(_, state)| state)
    }

    /// Group `web`'s deployments, newest first.
    pub fn deployments(&self) -> Vec<String> {
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

/// One request of the client loop.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was sent, in seconds since the epoch (the control plane's clock too).
    pub sent: f64,
    pub latency: Duration,
    /// The body of a 200, or what went wrong.
    pub outcome: Result<String, String>,
}

fn epoch_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// GET / through the load balancer (or at an instance's own address), one connection
/// per request, as a browser that opens a new one would.
pub fn get(balancer: &SocketAddr) -> Result<String, String> {
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
    fn start(balancer: SocketAddr, limits: Limits) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, samples) = (stop.clone(), samples.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed)
                    && started.elapsed() < limits.loop_time
                    && samples.lock().unwrap().len() < limits.loop_requests
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

/// The target's `event` with status `status`, if it has one.
pub fn event<'a>(target: &'a Value, event: &str, status: &str) -> Option<&'a Value> {
    target["lifecycleEvents"]
        .as_array()?
        .iter()
        .find(|e| e["lifecycleEventName"] == event && e["status"] == status)
}

/// When the target's `event` ended, if it succeeded.
pub fn succeeded_at(target: &Value, name: &str) -> Option<f64> {
    event(target, name, "Succeeded").and_then(|e| e["endTime"].as_f64())
}

/// When the target's `event` started, whatever came of it.
pub fn started_at(target: &Value, name: &str) -> Option<f64> {
    target["lifecycleEvents"]
        .as_array()?
        .iter()
        .find(|e| e["lifecycleEventName"] == name)
        .and_then(|e| e["startTime"].as_f64())
}

/// The target's events as `Name Status` (with the diagnostics of one that did not
/// succeed), for messages.
pub fn events(target: &Value) -> String {
    target["lifecycleEvents"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|e| {
                    let said = &e["diagnostics"];
                    let mut text = format!("{} {}", e["lifecycleEventName"], e["status"]);
                    if said.is_object() && said["errorCode"] != "Success" {
                        text.push_str(&format!(
                            " ({} {}: {})",
                            said["errorCode"], said["message"], said["logTail"]
                        ));
                    }
                    text.replace('"', "")
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// How many requests `version` answered.
pub fn answered(samples: &[Sample], version: &str) -> usize {
    samples
        .iter()
        .filter(|s| s.outcome.as_deref() == Ok(version))
        .count()
}

/// The client loop's tally, for the test's output: requests, failures, the largest
/// latency, and how many each of `versions` answered.
pub fn tally(samples: &[Sample], versions: &[&str]) -> String {
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
pub fn assert_all_answered(samples: &[Sample], versions: &[&str]) {
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

/// Both `old` and `new` answered some request.
pub fn assert_both_served(samples: &[Sample], old: &str, new: &str) {
    assert!(
        answered(samples, old) > 0 && answered(samples, new) > 0,
        "the loop saw the old and the new revision serve"
    );
}

/// Every answer to a request sent in (`after`, `before`) is `version`.
pub fn assert_only_between(samples: &[Sample], after: f64, before: f64, version: &str, when: &str) {
    let others: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.sent > after && s.sent < before && s.outcome.as_deref() != Ok(version))
        .collect();
    assert!(
        others.is_empty(),
        "{} answers other than {version} {when}: {:?}",
        others.len(),
        &others[..others.len().min(5)]
    );
}

/// The last REQUESTS_AFTER_END answers, to requests sent after the end, are `version`.
pub fn assert_last_answered(samples: &[Sample], version: &str) {
    let last = &samples[samples.len() - REQUESTS_AFTER_END..];
    assert!(
        last.iter().all(|s| s.outcome.as_deref() == Ok(version)),
        "the last answers are {version}: {last:?}"
    );
}
