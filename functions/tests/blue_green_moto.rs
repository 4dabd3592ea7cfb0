//! Blue/green deployments on the control plane against moto and the stand-in's load
//! balancer: the handlers invoked with CodeDeploy's JSON, commands read from the hosts'
//! real SQS queues, reports delivered as the SQS event source delivers them, and traffic
//! moved through a target group whose health checks reach an HTTP server this test runs
//! on each instance's loopback address (tests/standin/addresses.py).
//!
//! tests/tests/blue_green.rs runs a copied Auto Scaling group with real agents; this file
//! covers the replacement fleet given by `targetInstances` (DISCOVER_EXISTING), the Ready
//! wait with ContinueDeployment (and its timeout), the termination wait with
//! SkipWaitTimeForInstanceTermination, and what CreateDeployment and ContinueDeployment
//! refuse.

use aws_sdk_elasticloadbalancingv2 as elb;
use aws_sdk_s3::primitives::ByteStream;
use elb::types::{
    Action, ActionTypeEnum, ProtocolEnum, TargetDescription, TargetGroupAttribute,
    TargetHealthStateEnum,
};
use gantry_core::lifecycle::LifecycleEvent::{self, *};
use gantry_core::wire::{Command, HostMessage};
use gantry_functions::control::{ControlPlane, Settings};
use gantry_functions::error::ApiError;
use gantry_functions::handlers;
use gantry_functions::handlers::batch_advance;
use gantry_tests::archive::{self, Entry};
use gantry_tests::instance_profile;
use gantry_tests::moto::Moto;
use gantry_tests::reports::event_reports;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const APP: &str = "shop";
const BUCKET: &str = "revisions";
const LIFECYCLE_QUEUE: &str = "gantry-lifecycle";
/// The role in the instances' instance profile (of the same name): their reports come
/// from its sessions, each named for its instance.
const HOST_ROLE: &str = "gantry-hosts";
/// Long enough for the stand-in's health checks on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// The replacement hosts' first command: the install events, and no traffic event.
const INSTALL: [LifecycleEvent; 7] = [
    ApplicationStop,
    DownloadBundle,
    BeforeInstall,
    Install,
    AfterInstall,
    ApplicationStart,
    ValidateService,
];

static NEXT_MESSAGE: AtomicU64 = AtomicU64::new(1);

fn settings(lifecycle_queue_url: String) -> Settings {
    Settings {
        command_queue_prefix: "cmd-".into(),
        account_id: "123456789012".into(),
        lifecycle_queue_url: Some(lifecycle_queue_url),
        lifecycle_queue_arn: Some(format!(
            "arn:aws:sqs:us-east-1:123456789012:{LIFECYCLE_QUEUE}"
        )),
        lifecycle_role_arn: Some("arn:aws:iam::123456789012:role/gantry-lifecycle".into()),
        lambda_hook_prefix: None,
        ..Settings::defaults()
    }
}

struct Fixture {
    _moto: Moto,
    control: ControlPlane,
    sqs: aws_sdk_sqs::Client,
    ec2: aws_sdk_ec2::Client,
    elb: elb::Client,
    vpc: String,
    subnet: String,
    /// The unique id of [`HOST_ROLE`], the first half of each report's SenderId.
    host_role_id: String,
}

impl Fixture {
    /// moto with the table, the lifecycle queue, a bucket holding `v1.tgz`, application
    /// `shop`, and a VPC with one subnet for the instances.
    async fn start() -> Self {
        let moto = Moto::start().expect("moto");
        let config = moto.sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let queue = sqs
            .create_queue()
            .queue_name(LIFECYCLE_QUEUE)
            .send()
            .await
            .expect("lifecycle queue")
            .queue_url
            .unwrap();
        let control = ControlPlane::new(&config, settings(queue));
        control.store.create_table().await.expect("table");
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        );
        s3.create_bucket().bucket(BUCKET).send().await.unwrap();
        s3.put_object()
            .bucket(BUCKET)
            .key("v1.tgz")
            .body(ByteStream::from(archive::tgz(&bundle())))
            .send()
            .await
            .unwrap();
        let ec2 = aws_sdk_ec2::Client::new(&config);
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.32.0.0/16")
            .send()
            .await
            .unwrap()
            .vpc
            .and_then(|vpc| vpc.vpc_id)
            .unwrap();
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block("10.32.1.0/24")
            .availability_zone("us-east-1a")
            .send()
            .await
            .unwrap()
            .subnet
            .and_then(|subnet| subnet.subnet_id)
            .unwrap();
        let host_role_id = instance_profile::host_role(&config, HOST_ROLE).await;
        let fixture = Self {
            _moto: moto,
            control,
            sqs,
            ec2,
            elb: elb::Client::new(&config),
            vpc,
            subnet,
            host_role_id,
        };
        fixture
            .ok("CreateApplication", json!({"applicationName": APP}))
            .await;
        fixture
    }

    async fn call(&self, operation: &str, input: Value) -> Result<Value, ApiError> {
        // Boxed: CreateDeployment's future, inlined, overflows a debug test thread.
        Box::pin(handlers::invoke(
            &self.control,
            "api",
            json!({"operation": operation, "input": input}),
        ))
        .await
    }

    async fn ok(&self, operation: &str, input: Value) -> Value {
        match self.call(operation, input.clone()).await {
            Ok(output) => output,
            Err(error) => panic!("{operation} {input}: {error}"),
        }
    }

    /// The exception `operation` answers with.
    async fn refused(&self, operation: &str, input: Value) -> ApiError {
        match self.call(operation, input.clone()).await {
            Ok(output) => panic!("{operation} {input} was accepted: {output}"),
            Err(error) => error,
        }
    }

    /// CreateDeployment of `v1.tgz` to `group`, with `extra` fields.
    async fn deploy(&self, group: &str, extra: Value) -> Result<String, ApiError> {
        let mut input = json!({
            "applicationName": APP,
            "deploymentGroupName": group,
            "revision": {"revisionType": "S3", "s3Location": {"bucket": BUCKET, "key": "v1.tgz", "bundleType": "tgz"}},
        });
        input
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        self.call("CreateDeployment", input)
            .await
            .map(|output| output["deploymentId"].as_str().unwrap().to_owned())
    }

    async fn deployment(&self, id: &str) -> Value {
        self.ok("GetDeployment", json!({"deploymentId": id})).await["deploymentInfo"].take()
    }

    /// Runs `count` EC2 instances in the subnet, tagged `tags`.
    async fn instances(&self, count: i32, tags: &[(&str, &str)]) -> Vec<Instance> {
        let image = self.ec2.describe_images().send().await.unwrap().images()[0]
            .image_id()
            .unwrap()
            .to_owned();
        let mut spec = aws_sdk_ec2::types::TagSpecification::builder()
            .resource_type(aws_sdk_ec2::types::ResourceType::Instance);
        for (key, value) in tags {
            spec = spec.tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key(*key)
                    .value(*value)
                    .build(),
            );
        }
        // One at a time: moto gives IamInstanceProfile to the first instance of a
        // RunInstances only, and an instance without one fails at once.
        let mut launched = Vec::new();
        for _ in 0..count {
            let output = self
                .ec2
                .run_instances()
                .image_id(&image)
                .iam_instance_profile(instance_profile::by_name(HOST_ROLE))
                .subnet_id(&self.subnet)
                .min_count(1)
                .max_count(1)
                .tag_specifications(spec.clone().build())
                .send()
                .await
                .unwrap();
            launched.extend(output.instances().iter().cloned());
        }
        launched
            .iter()
            .map(|instance| {
                let private: Ipv4Addr = instance.private_ip_address().unwrap().parse().unwrap();
                let [_, b, c, d] = private.octets();
                Instance {
                    id: instance.instance_id().unwrap().to_owned(),
                    loopback: Ipv4Addr::new(127, b, c, d),
                }
            })
            .collect()
    }

    /// Each instance's EC2 state name.
    async fn states(&self, instances: &[Instance]) -> BTreeMap<String, String> {
        let described = self
            .ec2
            .describe_instances()
            .set_instance_ids(Some(ids(instances)))
            .send()
            .await
            .unwrap();
        described
            .reservations()
            .iter()
            .flat_map(|reservation| reservation.instances())
            .map(|instance| {
                let state = instance
                    .state()
                    .and_then(|state| state.name())
                    .map(|name| name.as_str().to_owned())
                    .unwrap_or_default();
                (instance.instance_id().unwrap().to_owned(), state)
            })
            .collect()
    }

    /// Messages waiting on a host's queue (received and deleted).
    async fn take_commands(&self, host: &str) -> Vec<Command> {
        let url = self.control.queues.url(host).await.unwrap();
        let mut commands = Vec::new();
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                return commands;
            }
            for message in messages {
                if let HostMessage::Command(command) =
                    HostMessage::from_json(message.body().unwrap()).unwrap()
                {
                    commands.push(*command);
                }
                self.sqs
                    .delete_message()
                    .queue_url(&url)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// The one command each of `hosts` has waiting now.
    async fn one_command_each(&self, hosts: &[Instance]) -> Vec<Command> {
        let mut commands = Vec::new();
        for host in hosts {
            let mut waiting = self.take_commands(&host.id).await;
            assert_eq!(waiting.len(), 1, "{}: {waiting:?}", host.id);
            commands.push(waiting.remove(0));
        }
        commands
    }

    /// Runs the lifecycle function on what comes to its queue (the checks of target
    /// health) until each of `hosts` has a command; returns them in `hosts`' order.
    async fn commands_after_traffic(&self, hosts: &[Instance]) -> Vec<Command> {
        let url = self.control.settings.lifecycle_queue_url.clone().unwrap();
        let deadline = Instant::now() + DEADLINE;
        let mut commands: BTreeMap<String, Command> = BTreeMap::new();
        loop {
            for host in hosts {
                let mut waiting = self.take_commands(&host.id).await;
                if let Some(command) = waiting.pop() {
                    assert!(waiting.is_empty(), "one command at a time: {waiting:?}");
                    assert!(
                        commands.insert(host.id.clone(), command).is_none(),
                        "{} got a second command",
                        host.id
                    );
                }
            }
            if commands.len() == hosts.len() {
                return hosts
                    .iter()
                    .map(|host| commands.remove(&host.id).unwrap())
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "commands for only {:?} of {:?} within {DEADLINE:?}; target health: {:?}",
                commands.keys().collect::<Vec<_>>(),
                ids(hosts),
                self.health().await
            );
            let received = self
                .sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let mut records = Vec::new();
            for message in received.messages.unwrap_or_default() {
                let id = NEXT_MESSAGE.fetch_add(1, Ordering::SeqCst);
                records.push(json!({"messageId": format!("l-{id}"), "body": message.body().unwrap(), "eventSource": "aws:sqs"}));
                self.sqs
                    .delete_message()
                    .queue_url(&url)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
            if !records.is_empty() {
                let output = Box::pin(handlers::invoke(
                    &self.control,
                    "lifecycle",
                    json!({"Records": records}),
                ))
                .await
                .expect("lifecycle answers");
                assert_eq!(output["batchItemFailures"], json!([]), "{records:?}");
            }
        }
    }

    /// The host runs its command's events, every one succeeding, and reports them as
    /// the agent does, through batch-advance.
    async fn run(&self, deployment_id: &str, command: &Command) {
        let host = &command.instance_id;
        assert_eq!(command.deployment_id, deployment_id);
        let records: Vec<Value> =
            event_reports(deployment_id, host, &command.lifecycle_events, None)
                .into_iter()
                .map(|body| {
                    let id = NEXT_MESSAGE.fetch_add(1, Ordering::SeqCst);
                    json!({"messageId": format!("m-{id}"), "receiptHandle": "h", "body": body,
                           "attributes": {"SenderId": format!("{}:{host}", self.host_role_id)},
                           "eventSource": "aws:sqs"})
                })
                .collect();
        let output = Box::pin(handlers::invoke(
            &self.control,
            "batch-advance",
            json!({"Records": records}),
        ))
        .await
        .unwrap();
        assert_eq!(output["batchItemFailures"], json!([]), "{host}'s reports");
    }

    async fn run_all(&self, deployment_id: &str, commands: &[Command]) {
        for command in commands {
            self.run(deployment_id, command).await;
        }
    }

    /// Target group `web`'s targets and their states (none before it exists).
    async fn health(&self) -> BTreeMap<String, TargetHealthStateEnum> {
        let Some(arn) = self.target_group_arn().await else {
            return BTreeMap::new();
        };
        let described = self
            .elb
            .describe_target_health()
            .target_group_arn(arn)
            .send()
            .await
            .unwrap();
        described
            .target_health_descriptions()
            .iter()
            .filter_map(|d| {
                Some((
                    d.target()?.id()?.to_owned(),
                    d.target_health()?.state()?.clone(),
                ))
            })
            .collect()
    }

    async fn target_group_arn(&self) -> Option<String> {
        let groups = self.elb.describe_target_groups().send().await.unwrap();
        groups
            .target_groups()
            .iter()
            .find(|group| group.target_group_name() == Some("web"))
            .and_then(|group| group.target_group_arn().map(str::to_owned))
    }

    /// Waits until the target group holds exactly `hosts`, all healthy.
    async fn wait_for_serving(&self, hosts: &[Instance]) {
        let wanted: BTreeMap<String, TargetHealthStateEnum> = hosts
            .iter()
            .map(|host| (host.id.clone(), TargetHealthStateEnum::Healthy))
            .collect();
        let deadline = Instant::now() + DEADLINE;
        loop {
            let health = self.health().await;
            if health == wanted {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "target group web: {health:?}, not {wanted:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

struct Instance {
    id: String,
    /// Where the stand-in reaches the instance's application.
    loopback: Ipv4Addr,
}

fn ids(instances: &[Instance]) -> Vec<String> {
    instances
        .iter()
        .map(|instance| instance.id.clone())
        .collect()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

fn bundle() -> Vec<Entry> {
    vec![
        Entry::file(
            "appspec.yml",
            b"version: 0.0\nos: linux\nfiles:\n  - source: app/\n    destination: /srv/shop\nhooks:\n  ValidateService:\n    - location: scripts/validate.sh\n      timeout: 30\n",
        ),
        Entry::file("app/version.txt", b"1"),
        Entry::file_with_mode("scripts/validate.sh", b"#!/bin/sh\nexit 0\n", 0o755),
    ]
}

/// Answers every request 200.
async fn serve(listener: TcpListener) {
    while let Ok((mut stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut chunk = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => request.extend_from_slice(&chunk[..read]),
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .await;
        });
    }
}

/// Two fleets of two instances each: the originals (tagged role=web, and
/// gantry:managed=true as Gantry's role needs to terminate them) registered and healthy
/// in target group `web` behind a load balancer, and the replacements (role=web-next)
/// out of it. Every instance's application answers on the group's port.
struct Fleets {
    blue: Vec<Instance>,
    green: Vec<Instance>,
    apps: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Fleets {
    fn drop(&mut self) {
        for app in &self.apps {
            app.abort();
        }
    }
}

async fn fleets(fx: &Fixture) -> Fleets {
    let blue = fx
        .instances(2, &[("role", "web"), ("gantry:managed", "true")])
        .await;
    let green = fx
        .instances(2, &[("role", "web-next"), ("gantry:managed", "true")])
        .await;
    let mut port = 0;
    let mut apps = Vec::new();
    for instance in blue.iter().chain(&green) {
        let listener = TcpListener::bind((instance.loopback, port))
            .await
            .expect("the instance's loopback address");
        port = listener.local_addr().unwrap().port();
        apps.push(tokio::spawn(serve(listener)));
    }
    let balancer = fx
        .elb
        .create_load_balancer()
        .name("shop")
        .subnets(&fx.subnet)
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_owned();
    let group_arn = fx
        .elb
        .create_target_group()
        .name("web")
        .protocol(ProtocolEnum::Http)
        .port(i32::from(port))
        .vpc_id(&fx.vpc)
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
    fx.elb
        .modify_target_group_attributes()
        .target_group_arn(&group_arn)
        .attributes(
            TargetGroupAttribute::builder()
                .key("deregistration_delay.timeout_seconds")
                .value("1")
                .build(),
        )
        .send()
        .await
        .unwrap();
    fx.elb
        .create_listener()
        .load_balancer_arn(&balancer)
        .protocol(ProtocolEnum::Http)
        .port(80)
        .default_actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(&group_arn)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut register = fx.elb.register_targets().target_group_arn(&group_arn);
    for instance in &blue {
        register = register.targets(TargetDescription::builder().id(&instance.id).build());
    }
    register.send().await.unwrap();
    fx.wait_for_serving(&blue).await;
    Fleets { blue, green, apps }
}

/// CreateDeploymentGroup of a blue/green group `name` over the instances tagged
/// role=web behind target group `web`, discovering its replacement fleet, with
/// `configuration` over CodeDeploy's defaults.
async fn blue_green_group(fx: &Fixture, name: &str, config: &str, configuration: Value) {
    let mut blue_green = json!({"greenFleetProvisioningOption": {"action": "DISCOVER_EXISTING"}});
    blue_green
        .as_object_mut()
        .unwrap()
        .extend(configuration.as_object().unwrap().clone());
    fx.ok(
        "CreateDeploymentGroup",
        json!({
            "applicationName": APP,
            "deploymentGroupName": name,
            "deploymentConfigName": config,
            "ec2TagFilters": [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
            "deploymentStyle": {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
            "loadBalancerInfo": {"targetGroupInfoList": [{"name": "web"}]},
            "blueGreenDeploymentConfiguration": blue_green,
        }),
    )
    .await;
}

/// CreateDeployment's `targetInstances` naming the replacement fleet by its tag.
fn next_fleet() -> Value {
    json!({"targetInstances": {"tagFilters": [{"Key": "role", "Value": "web-next", "Type": "KEY_AND_VALUE"}]}})
}

/// The replacement hosts, each sent its install events and nothing else, run them.
async fn install(fx: &Fixture, id: &str, green: &[Instance], blue: &[Instance]) {
    let commands = fx.one_command_each(green).await;
    for command in &commands {
        assert_eq!(command.lifecycle_events, INSTALL, "{}", command.instance_id);
        assert!(command.start_by.is_some());
    }
    for host in blue {
        assert!(
            fx.take_commands(&host.id).await.is_empty(),
            "the original hosts wait for the replacement fleet"
        );
    }
    fx.run_all(id, &commands).await;
}

/// The replacement hosts, Ready, are sent BeforeAllowTraffic; AllowTraffic registers
/// them, and once the stand-in finds them healthy they get AfterAllowTraffic.
async fn reroute(fx: &Fixture, id: &str, green: &[Instance], blue: &[Instance]) {
    let commands = fx.one_command_each(green).await;
    for command in &commands {
        assert_eq!(command.lifecycle_events, [BeforeAllowTraffic]);
    }
    fx.run_all(id, &commands).await;
    let commands = fx.commands_after_traffic(green).await;
    for command in &commands {
        assert_eq!(command.lifecycle_events, [AfterAllowTraffic]);
    }
    let health = fx.health().await;
    for host in green {
        assert_eq!(
            health.get(&host.id),
            Some(&TargetHealthStateEnum::Healthy),
            "{health:?}"
        );
    }
    for host in blue {
        assert_eq!(
            health.get(&host.id),
            Some(&TargetHealthStateEnum::Healthy),
            "the originals serve until the replacement fleet does: {health:?}"
        );
    }
    fx.run_all(id, &commands).await;
}

/// The original hosts are sent BeforeBlockTraffic; BlockTraffic deregisters them, and
/// once drained they get AfterBlockTraffic.
async fn block(fx: &Fixture, id: &str, green: &[Instance], blue: &[Instance]) {
    let commands = fx.one_command_each(blue).await;
    for command in &commands {
        assert_eq!(command.lifecycle_events, [BeforeBlockTraffic]);
    }
    fx.run_all(id, &commands).await;
    let commands = fx.commands_after_traffic(blue).await;
    for command in &commands {
        assert_eq!(command.lifecycle_events, [AfterBlockTraffic]);
    }
    let health = fx.health().await;
    let mut serving: Vec<String> = health.keys().cloned().collect();
    serving.sort();
    assert_eq!(
        serving,
        sorted(ids(green)),
        "only the replacement fleet is registered: {health:?}"
    );
    fx.run_all(id, &commands).await;
}

/// A target's lifecycle events' names and statuses, as the targets APIs list them.
fn event_statuses(target: &Value) -> Vec<(String, String)> {
    target["instanceTarget"]["lifecycleEvents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (
                event["lifecycleEventName"].as_str().unwrap().to_owned(),
                event["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn all_succeeded(events: &[LifecycleEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|event| (event.name().to_owned(), "Succeeded".to_owned()))
        .collect()
}

/// ListDeploymentTargets' ids with `filters`.
async fn listed_targets(fx: &Fixture, id: &str, filters: Value) -> Vec<String> {
    let listed = fx
        .ok(
            "ListDeploymentTargets",
            json!({"deploymentId": id, "targetFilters": filters}),
        )
        .await;
    sorted(
        serde_json::from_value(listed["targetIds"].clone()).unwrap_or_else(|_| panic!("{listed}")),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn discovered_replacement_instances_take_the_traffic_and_the_originals_are_terminated() {
    let fx = Fixture::start().await;
    let fleets = fleets(&fx).await;
    let (blue, green) = (&fleets.blue, &fleets.green);
    blue_green_group(
        &fx,
        "web",
        "CodeDeployDefault.AllAtOnce",
        json!({"terminateBlueInstancesOnDeploymentSuccess": {"action": "TERMINATE", "terminationWaitTimeInMinutes": 0}}),
    )
    .await;
    let id = fx.deploy("web", next_fleet()).await.unwrap();

    let info = fx.deployment(&id).await;
    assert_eq!(
        info["deploymentStyle"],
        json!({"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"})
    );
    assert_eq!(info["blueGreenProgress"]["stage"], "Installing", "{info}");
    assert_eq!(info["blueGreenProgress"]["replacementInstances"], 2);
    assert_eq!(info["blueGreenProgress"]["originalInstances"], 2);
    assert_eq!(info["deploymentOverview"]["InProgress"], 2, "{info}");
    assert_eq!(info["deploymentOverview"]["Pending"], 2, "{info}");

    install(&fx, &id, green, blue).await;
    reroute(&fx, &id, green, blue).await;
    let info = fx.deployment(&id).await;
    assert_eq!(info["status"], "InProgress");
    assert_eq!(
        info["blueGreenProgress"]["stage"], "BlockingOriginal",
        "{info}"
    );
    assert_eq!(info["blueGreenProgress"]["rerouted"], 2);
    block(&fx, &id, green, blue).await;

    // No termination wait: the originals are terminated as the deployment succeeds.
    let info = fx.deployment(&id).await;
    assert_eq!(info["status"], "Succeeded", "{info}");
    assert_eq!(info["deploymentOverview"]["Succeeded"], 4, "{info}");
    assert_eq!(
        info["deploymentStyle"],
        json!({"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"})
    );
    assert_eq!(
        info["blueGreenProgress"]["replacementAutoScalingGroup"],
        Value::Null
    );
    let states = fx.states(blue).await;
    for host in blue {
        assert!(
            matches!(states[&host.id].as_str(), "shutting-down" | "terminated"),
            "{states:?}"
        );
    }
    let states = fx.states(green).await;
    assert!(
        states.values().all(|state| state == "running"),
        "{states:?}"
    );
    assert!(
        fx.health()
            .await
            .into_keys()
            .eq(sorted(ids(green)).into_iter()),
        "the replacement fleet serves"
    );

    // Labels: Green for the replacement fleet, Blue for the original one.
    assert_eq!(
        listed_targets(&fx, &id, json!({"ServerInstanceLabel": ["Green"]})).await,
        sorted(ids(green))
    );
    assert_eq!(
        listed_targets(&fx, &id, json!({"ServerInstanceLabel": ["Blue"]})).await,
        sorted(ids(blue))
    );
    let instances = fx
        .ok(
            "ListDeploymentInstances",
            json!({"deploymentId": id, "instanceTypeFilter": ["Blue"]}),
        )
        .await;
    let listed: Vec<String> = serde_json::from_value(instances["instancesList"].clone()).unwrap();
    assert_eq!(sorted(listed), sorted(ids(blue)));
    let all: Vec<String> = green.iter().chain(blue).map(|i| i.id.clone()).collect();
    let targets = fx
        .ok(
            "BatchGetDeploymentTargets",
            json!({"deploymentId": id, "targetIds": all}),
        )
        .await;
    let targets = targets["deploymentTargets"].as_array().unwrap();
    assert_eq!(targets.len(), 4);
    for target in targets {
        let instance = &target["instanceTarget"];
        let host = instance["targetId"].as_str().unwrap();
        assert_eq!(instance["status"], "Succeeded", "{target}");
        if green.iter().any(|g| g.id == host) {
            assert_eq!(instance["instanceLabel"], "Green", "{target}");
            let events = [
                &INSTALL[..],
                &[BeforeAllowTraffic, AllowTraffic, AfterAllowTraffic],
            ]
            .concat();
            assert_eq!(event_statuses(target), all_succeeded(&events));
        } else {
            assert_eq!(instance["instanceLabel"], "Blue", "{target}");
            assert_eq!(
                event_statuses(target),
                all_succeeded(&[BeforeBlockTraffic, BlockTraffic, AfterBlockTraffic])
            );
        }
    }
    let summaries = fx
        .ok(
            "BatchGetDeploymentInstances",
            json!({"deploymentId": id, "instanceIds": ids(green)}),
        )
        .await;
    for summary in summaries["instancesSummary"].as_array().unwrap() {
        assert_eq!(summary["instanceType"], "Green", "{summary}");
    }

    // The group is free again.
    assert!(
        fx.deploy("web", next_fleet()).await.is_ok(),
        "the lock was released"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ready_deployment_waits_for_continue_and_the_termination_wait_is_skipped() {
    let fx = Fixture::start().await;
    let fleets = fleets(&fx).await;
    let (blue, green) = (&fleets.blue, &fleets.green);
    blue_green_group(
        &fx,
        "web",
        "CodeDeployDefault.AllAtOnce",
        json!({
            "deploymentReadyOption": {"actionOnTimeout": "STOP_DEPLOYMENT", "waitTimeInMinutes": 5},
            "terminateBlueInstancesOnDeploymentSuccess": {"action": "TERMINATE", "terminationWaitTimeInMinutes": 60},
        }),
    )
    .await;
    let id = fx.deploy("web", next_fleet()).await.unwrap();
    install(&fx, &id, green, blue).await;

    // Ready: both replacement hosts wait, and no traffic moves.
    let info = fx.deployment(&id).await;
    assert_eq!(info["status"], "InProgress", "{info}");
    assert_eq!(info["blueGreenProgress"]["stage"], "Ready", "{info}");
    assert_eq!(info["blueGreenProgress"]["installed"], 2, "{info}");
    assert_eq!(info["blueGreenProgress"]["rerouted"], 0, "{info}");
    assert!(
        info["blueGreenProgress"]["waitUntil"].is_number(),
        "the ready wait ends: {info}"
    );
    let overview = &info["deploymentOverview"];
    assert_eq!(overview["Ready"], 2, "{info}");
    assert_eq!(overview["InProgress"], 0, "{info}");
    assert_eq!(overview["Pending"], 2, "{info}");
    assert_eq!(
        listed_targets(&fx, &id, json!({"TargetStatus": ["Ready"]})).await,
        sorted(ids(green))
    );
    for host in green.iter().chain(blue) {
        assert!(fx.take_commands(&host.id).await.is_empty(), "{}", host.id);
    }
    let target = fx
        .ok(
            "GetDeploymentTarget",
            json!({"deploymentId": id, "targetId": green[0].id}),
        )
        .await;
    let events = event_statuses(&target["deploymentTarget"]);
    assert_eq!(events[7], ("BeforeAllowTraffic".into(), "Pending".into()));
    assert_eq!(events[8], ("AllowTraffic".into(), "Pending".into()));
    assert_eq!(
        target["deploymentTarget"]["instanceTarget"]["status"], "Ready",
        "{target}"
    );
    assert!(
        fx.health()
            .await
            .into_keys()
            .eq(sorted(ids(blue)).into_iter()),
        "only the originals are registered"
    );

    // Not in the termination wait: refused, and nothing moves.
    for (operation, input) in [
        (
            "ContinueDeployment",
            json!({"deploymentId": id, "deploymentWaitType": "TERMINATION_WAIT"}),
        ),
        (
            "SkipWaitTimeForInstanceTermination",
            json!({"deploymentId": id}),
        ),
    ] {
        let error = fx.refused(operation, input).await;
        assert_eq!(
            error.code.name(),
            "DeploymentIsNotInReadyStateException",
            "{operation}: {error}"
        );
    }
    let error = fx
        .refused(
            "ContinueDeployment",
            json!({"deploymentId": id, "deploymentWaitType": "SOON"}),
        )
        .await;
    assert_eq!(error.code.name(), "InvalidDeploymentWaitTypeException");
    assert_eq!(
        fx.deployment(&id).await["blueGreenProgress"]["stage"],
        "Ready"
    );
    for host in green {
        assert!(fx.take_commands(&host.id).await.is_empty(), "{}", host.id);
    }

    // ContinueDeployment without a wait type ends the ready wait: traffic is rerouted.
    assert_eq!(
        fx.ok("ContinueDeployment", json!({"deploymentId": id}))
            .await,
        json!({})
    );
    reroute(&fx, &id, green, blue).await;
    block(&fx, &id, green, blue).await;

    // The termination wait: the originals run, out of the load balancer.
    let info = fx.deployment(&id).await;
    assert_eq!(info["status"], "InProgress", "{info}");
    assert_eq!(info["blueGreenProgress"]["stage"], "TerminationWait");
    assert_eq!(info["instanceTerminationWaitTimeStarted"], true, "{info}");
    assert_eq!(info["deploymentOverview"]["Succeeded"], 4, "{info}");
    let states = fx.states(blue).await;
    assert!(
        states.values().all(|state| state == "running"),
        "{states:?}"
    );
    let error = fx
        .refused(
            "ContinueDeployment",
            json!({"deploymentId": id, "deploymentWaitType": "READY_WAIT"}),
        )
        .await;
    assert_eq!(error.code.name(), "DeploymentIsNotInReadyStateException");

    // Skipped: the originals are terminated now and the deployment succeeds.
    assert_eq!(
        fx.ok(
            "SkipWaitTimeForInstanceTermination",
            json!({"deploymentId": id})
        )
        .await,
        json!({})
    );
    let info = fx.deployment(&id).await;
    assert_eq!(info["status"], "Succeeded", "{info}");
    let states = fx.states(blue).await;
    assert!(
        states
            .values()
            .all(|state| matches!(state.as_str(), "shutting-down" | "terminated")),
        "{states:?}"
    );
    let states = fx.states(green).await;
    assert!(
        states.values().all(|state| state == "running"),
        "{states:?}"
    );
    let error = fx
        .refused(
            "SkipWaitTimeForInstanceTermination",
            json!({"deploymentId": id}),
        )
        .await;
    assert_eq!(error.code.name(), "DeploymentAlreadyCompletedException");
}

#[tokio::test(flavor = "multi_thread")]
async fn target_instances_are_checked_and_continue_refuses_in_place_deployments() {
    let fx = Fixture::start().await;
    let blue = fx.instances(2, &[("role", "web")]).await;
    let green = fx.instances(1, &[("role", "web-next")]).await;
    // The target group exists (CreateDeployment resolves it); no load balancer is needed
    // for what is refused.
    fx.elb
        .create_target_group()
        .name("web")
        .protocol(ProtocolEnum::Http)
        .port(8080)
        .vpc_id(&fx.vpc)
        .send()
        .await
        .unwrap();
    blue_green_group(&fx, "bg", "CodeDeployDefault.AllAtOnce", json!({})).await;
    let tags = |filters: Value| json!({"targetInstances": {"tagFilters": filters}});
    let cases = [
        (
            json!({}),
            vec!["targetInstances", "required", "DISCOVER_EXISTING"],
        ),
        (
            json!({"targetInstances": {}}),
            vec!["targetInstances", "tagFilters"],
        ),
        (
            tags(json!([{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}])),
            vec![
                "targetInstances",
                "in the deployment group already",
                &blue[0].id,
            ],
        ),
        (
            // Both fleets at once: one instance of the group is enough to refuse.
            tags(json!([{"Key": "role", "Type": "KEY_ONLY"}])),
            vec!["targetInstances", "in the deployment group already"],
        ),
        (
            tags(json!([{"Key": "role", "Value": "nothing", "Type": "KEY_AND_VALUE"}])),
            vec!["targetInstances", "matched no running instance"],
        ),
        (
            json!({"targetInstances": {"tagFilters": [], "colour": "green"}}),
            vec!["targetInstances", "colour"],
        ),
    ];
    for (extra, needles) in cases {
        let error = fx.deploy("bg", extra.clone()).await.unwrap_err();
        assert_eq!(
            error.code.name(),
            "InvalidTargetInstancesException",
            "{extra}: {error}"
        );
        for needle in needles {
            assert!(
                error.message.contains(needle),
                "{extra}: {error} lacks {needle:?}"
            );
        }
    }
    let listed = fx
        .ok(
            "ListDeployments",
            json!({"applicationName": APP, "deploymentGroupName": "bg"}),
        )
        .await;
    assert_eq!(
        listed["deployments"],
        json!([]),
        "nothing refused was created"
    );
    for host in blue.iter().chain(&green) {
        assert!(fx.take_commands(&host.id).await.is_empty());
    }

    // Refusals leave the group free; a blue/green deployment installing is not waiting
    // for ContinueDeployment.
    let id = fx.deploy("bg", next_fleet()).await.unwrap();
    assert_eq!(
        fx.one_command_each(&green).await[0].lifecycle_events,
        INSTALL
    );
    for wait in ["READY_WAIT", "TERMINATION_WAIT"] {
        let error = fx
            .refused(
                "ContinueDeployment",
                json!({"deploymentId": id, "deploymentWaitType": wait}),
            )
            .await;
        assert_eq!(
            error.code.name(),
            "DeploymentIsNotInReadyStateException",
            "{wait}: {error}"
        );
    }
    fx.ok("StopDeployment", json!({"deploymentId": id})).await;

    // Nobody continues a Ready deployment in time: it stops with CodeDeploy's TIMEOUT,
    // and its Ready hosts, never given traffic, read as Skipped.
    fx.ok(
        "UpdateDeploymentGroup",
        json!({
            "applicationName": APP,
            "currentDeploymentGroupName": "bg",
            "blueGreenDeploymentConfiguration": {
                "deploymentReadyOption": {"actionOnTimeout": "STOP_DEPLOYMENT", "waitTimeInMinutes": 5},
            },
        }),
    )
    .await;
    let id = fx.deploy("bg", next_fleet()).await.unwrap();
    install(&fx, &id, &green, &blue).await;
    let info = fx.deployment(&id).await;
    assert_eq!(info["blueGreenProgress"]["stage"], "Ready", "{info}");
    let later = gantry_functions::model::now_millis() + 6 * 60_000;
    batch_advance::tick_at(&fx.control, later).await.unwrap();
    let info = fx.deployment(&id).await;
    assert_eq!(info["status"], "Stopped", "{info}");
    assert_eq!(info["errorInformation"]["code"], "TIMEOUT", "{info}");
    assert_eq!(info["deploymentOverview"]["Skipped"], 3, "{info}");
    assert_eq!(info["deploymentOverview"]["Ready"], 0, "{info}");
    assert_eq!(
        listed_targets(&fx, &id, json!({"TargetStatus": ["Skipped"]})).await,
        sorted(blue.iter().chain(&green).map(|i| i.id.clone()).collect())
    );
    for host in blue.iter().chain(&green) {
        assert!(fx.take_commands(&host.id).await.is_empty(), "{}", host.id);
    }
    let error = fx
        .refused("ContinueDeployment", json!({"deploymentId": id}))
        .await;
    assert_eq!(error.code.name(), "DeploymentAlreadyCompletedException");

    // In place: targetInstances is refused, and ContinueDeployment is not supported.
    fx.ok(
        "CreateDeploymentGroup",
        json!({
            "applicationName": APP,
            "deploymentGroupName": "in-place",
            "deploymentConfigName": "CodeDeployDefault.AllAtOnce",
            "ec2TagFilters": [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
        }),
    )
    .await;
    let error = fx.deploy("in-place", next_fleet()).await.unwrap_err();
    assert_eq!(error.code.name(), "InvalidTargetInstancesException");
    assert!(
        error.message.contains("targetInstances") && error.message.contains("in place"),
        "{error}"
    );
    let id = fx.deploy("in-place", json!({})).await.unwrap();
    for wait in [json!("READY_WAIT"), json!("TERMINATION_WAIT"), Value::Null] {
        let error = fx
            .refused(
                "ContinueDeployment",
                json!({"deploymentId": id, "deploymentWaitType": wait}),
            )
            .await;
        assert_eq!(
            error.code.name(),
            "UnsupportedActionForDeploymentTypeException",
            "{wait}: {error}"
        );
    }
    let error = fx
        .refused(
            "SkipWaitTimeForInstanceTermination",
            json!({"deploymentId": id}),
        )
        .await;
    assert_eq!(
        error.code.name(),
        "UnsupportedActionForDeploymentTypeException"
    );
    let info = fx.deployment(&id).await;
    assert_eq!(info["deploymentStyle"]["deploymentType"], "IN_PLACE");
    assert!(info.get("blueGreenProgress").is_none(), "{info}");
    assert_eq!(info["status"], "InProgress");
}
