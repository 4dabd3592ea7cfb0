//! A blue/green deployment that copies its group's Auto Scaling group, against moto:
//! CreateDeployment stores it and returns while the copy launches (no wait inside an
//! invocation), and from the moment the copy may exist the deployment owns it. Whatever
//! ends it before it is planned over the copy (a stop, its provisioning deadline, a
//! plan refused, a process cut off mid-way) deletes the copy, through a stored effect.
//!
//! tests/tests/blue_green.rs runs the same deployments to the end with real agents.

use aws_sdk_autoscaling as autoscaling;
use aws_sdk_elasticloadbalancingv2 as elb;
use aws_sdk_s3::primitives::ByteStream;
use gantry_core::wire::{Creator, HostMessage};
use gantry_functions::blue_green::PROVISIONING_LIMIT_MS;
use gantry_functions::control::{ControlPlane, Settings};
use gantry_functions::deploy::{self, CreateDeploymentInput, Origin};
use gantry_functions::engine;
use gantry_functions::error::ApiError;
use gantry_functions::handlers;
use gantry_functions::handlers::batch_advance;
use gantry_functions::model::now_millis;
use gantry_functions::store::{IDLE_TICK_MS, OUTBOX_GRACE_MS};
use gantry_tests::archive::{self, Entry};
use gantry_tests::instance_profile;
use gantry_tests::moto::Moto;
use serde_json::{Value, json};

const APP: &str = "shop";
const BUCKET: &str = "revisions";
const GROUP: &str = "bg";
const SOURCE: &str = "web-asg";
/// The role in the group's instance profile (of the same name).
const HOST_ROLE: &str = "gantry-hosts";

struct Fixture {
    _moto: Moto,
    control: ControlPlane,
    autoscaling: autoscaling::Client,
    elb: elb::Client,
    sqs: aws_sdk_sqs::Client,
}

impl Fixture {
    /// moto with the table, the lifecycle queue, `v1.tgz`, application `shop`, a managed
    /// Auto Scaling group of one instance, target group `web`, and blue/green group `bg`
    /// that copies the Auto Scaling group and keeps the original fleet (KEEP_ALIVE).
    async fn start() -> Self {
        let moto = Moto::start().expect("moto");
        let config = moto.sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let queue = sqs
            .create_queue()
            .queue_name("gantry-lifecycle")
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let control = ControlPlane::new(
            &config,
            Settings {
                command_queue_prefix: "cmd-".into(),
                account_id: "123456789012".into(),
                lifecycle_queue_url: Some(queue),
                lifecycle_queue_arn: Some(
                    "arn:aws:sqs:us-east-1:123456789012:gantry-lifecycle".into(),
                ),
                lifecycle_role_arn: Some("arn:aws:iam::123456789012:role/gantry-lifecycle".into()),
                lambda_hook_prefix: None,
                ..Settings::defaults()
            },
        );
        control.store.create_table().await.unwrap();
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        );
        s3.create_bucket().bucket(BUCKET).send().await.unwrap();
        let bundle = [
            Entry::file(
                "appspec.yml",
                b"version: 0.0\nos: linux\nfiles:\n  - source: /app\n    destination: /srv/app\n",
            ),
            Entry::file("app/index.html", b"v1"),
        ];
        s3.put_object()
            .bucket(BUCKET)
            .key("v1.tgz")
            .body(ByteStream::from(archive::tgz(&bundle)))
            .send()
            .await
            .unwrap();
        let ec2 = aws_sdk_ec2::Client::new(&config);
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.33.0.0/16")
            .send()
            .await
            .unwrap()
            .vpc
            .and_then(|vpc| vpc.vpc_id)
            .unwrap();
        let image = ec2.describe_images().send().await.unwrap().images()[0]
            .image_id()
            .unwrap()
            .to_owned();
        // The copy's instances get the original's profile: with none, each would fail.
        instance_profile::host_role(&config, HOST_ROLE).await;
        let autoscaling = autoscaling::Client::new(&config);
        autoscaling
            .create_launch_configuration()
            .launch_configuration_name("web")
            .image_id(&image)
            .instance_type("t3.micro")
            .iam_instance_profile(HOST_ROLE)
            .send()
            .await
            .unwrap();
        autoscaling
            .create_auto_scaling_group()
            .auto_scaling_group_name(SOURCE)
            .launch_configuration_name("web")
            .min_size(1)
            .max_size(3)
            .desired_capacity(1)
            .availability_zones("us-east-1a")
            .tags(
                autoscaling::types::Tag::builder()
                    .key("gantry:managed")
                    .value("true")
                    .propagate_at_launch(true)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let elb = elb::Client::new(&config);
        elb.create_target_group()
            .name("web")
            .protocol(elb::types::ProtocolEnum::Http)
            .port(80)
            .vpc_id(&vpc)
            .send()
            .await
            .unwrap();
        let fx = Self {
            _moto: moto,
            control,
            autoscaling,
            elb,
            sqs,
        };
        fx.ok("CreateApplication", json!({"applicationName": APP}))
            .await;
        fx.ok(
            "CreateDeploymentGroup",
            json!({
                "applicationName": APP,
                "deploymentGroupName": GROUP,
                "deploymentConfigName": "CodeDeployDefault.AllAtOnce",
                "autoScalingGroups": [SOURCE],
                "deploymentStyle": {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
                "loadBalancerInfo": {"targetGroupInfoList": [{"name": "web"}]},
                "blueGreenDeploymentConfiguration": {
                    "greenFleetProvisioningOption": {"action": "COPY_AUTO_SCALING_GROUP"},
                    "terminateBlueInstancesOnDeploymentSuccess": {"action": "KEEP_ALIVE"},
                },
            }),
        )
        .await;
        fx
    }

    async fn call(&self, operation: &str, input: Value) -> Result<Value, ApiError> {
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

    fn input() -> Value {
        json!({
            "applicationName": APP,
            "deploymentGroupName": GROUP,
            "revision": {"revisionType": "S3", "s3Location": {"bucket": BUCKET, "key": "v1.tgz", "bundleType": "tgz"}},
        })
    }

    /// CreateDeployment through the API (the copy is made as it returns).
    async fn deploy(&self) -> String {
        self.ok("CreateDeployment", Self::input()).await["deploymentId"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// CreateDeployment stored, and the process cut off before it carried out anything.
    async fn deploy_cut_off(&self) -> String {
        let input: CreateDeploymentInput = serde_json::from_value(Self::input()).unwrap();
        let created = Box::pin(deploy::create(
            &self.control,
            input,
            Creator::User,
            Origin::default(),
        ))
        .await
        .unwrap();
        created.record.spec.deployment_id
    }

    async fn info(&self, id: &str) -> Value {
        self.ok("GetDeployment", json!({"deploymentId": id})).await["deploymentInfo"].take()
    }

    /// The Auto Scaling groups whose names start CodeDeploy_ (copies).
    async fn copies(&self) -> Vec<String> {
        self.autoscaling
            .describe_auto_scaling_groups()
            .send()
            .await
            .unwrap()
            .auto_scaling_groups()
            .iter()
            .map(|group| {
                group
                    .auto_scaling_group_name()
                    .unwrap_or_default()
                    .to_owned()
            })
            .filter(|name| name.starts_with("CodeDeploy_"))
            .collect()
    }

    async fn lock(&self) -> Option<String> {
        self.control
            .store
            .load_group::<Value>(APP, GROUP)
            .await
            .unwrap()
            .expect("the group")
            .active_deployment_id
    }

    /// The tick, `after` ms from now.
    async fn tick(&self, after: u64) {
        Box::pin(batch_advance::tick_at(&self.control, now_millis() + after))
            .await
            .unwrap();
    }

    async fn commands(&self, host: &str) -> Vec<String> {
        let Ok(url) = self
            .sqs
            .get_queue_url()
            .queue_name(format!("cmd-{host}"))
            .send()
            .await
        else {
            return Vec::new();
        };
        let received = self
            .sqs
            .receive_message()
            .queue_url(url.queue_url().unwrap())
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        received
            .messages()
            .iter()
            .filter_map(|message| match HostMessage::from_json(message.body()?) {
                Ok(HostMessage::Command(command)) => Some(command.deployment_id),
                _ => None,
            })
            .collect()
    }
}

/// Ended with no copy left and the group free for the next deployment.
async fn nothing_left(fx: &Fixture, id: &str, status: &str) {
    let info = fx.info(id).await;
    assert_eq!(info["status"], status, "{info}");
    assert!(
        fx.copies().await.is_empty(),
        "copies left: {:?}",
        fx.copies().await
    );
    assert_eq!(fx.lock().await, None, "the group's lock is released");
    let stored = fx
        .control
        .store
        .load_deployment::<gantry_functions::model::DeploymentSpec>(id)
        .await
        .unwrap();
    assert!(stored.outbox.is_empty(), "{:?}", stored.outbox);
    assert!(
        info.get("rollbackInfo")
            .is_none_or(|r| r["rollbackDeploymentId"].is_null()),
        "no rollback: {info}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn create_returns_while_the_copy_launches_and_the_deployment_then_runs_on_it() {
    let fx = Fixture::start().await;
    let id = fx.deploy().await;
    let info = fx.info(&id).await;
    assert_eq!(info["status"], "InProgress", "{info}");
    let progress = &info["blueGreenProgress"];
    assert_eq!(progress["stage"], "Provisioning", "{info}");
    let copy = format!("CodeDeploy_{GROUP}_{id}");
    assert_eq!(progress["replacementAutoScalingGroup"], copy.as_str());
    assert_eq!(
        fx.copies().await,
        std::slice::from_ref(&copy),
        "the stored effect made the copy"
    );
    assert_eq!(fx.lock().await.as_deref(), Some(id.as_str()));
    // A second deployment is refused while it provisions.
    let refused = fx
        .call("CreateDeployment", Fixture::input())
        .await
        .unwrap_err();
    assert_eq!(refused.code.name(), "DeploymentLimitExceededException");

    // The look at the copy (the fleet check, or the tick) plans it over both fleets.
    Box::pin(engine::look_at_copy(&fx.control, &id, false))
        .await
        .unwrap();
    let info = fx.info(&id).await;
    assert_eq!(info["blueGreenProgress"]["stage"], "Installing", "{info}");
    assert_eq!(
        info["blueGreenProgress"]["replacementInstances"], 1,
        "{info}"
    );
    assert_eq!(info["blueGreenProgress"]["originalInstances"], 1, "{info}");
    let green = fx
        .control
        .green_fleets
        .instances(&copy)
        .await
        .unwrap()
        .remove(0)
        .instance_id;
    assert_eq!(
        fx.commands(&green).await,
        std::slice::from_ref(&id),
        "the copy's host installs"
    );
    // Looked at again (a repeated check): nothing changes.
    Box::pin(engine::look_at_copy(&fx.control, &id, false))
        .await
        .unwrap();
    assert_eq!(
        fx.info(&id).await["blueGreenProgress"]["stage"],
        "Installing"
    );
    assert_eq!(fx.copies().await, [copy]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_stopped_while_provisioning_removes_its_copy() {
    let fx = Fixture::start().await;
    let id = fx.deploy().await;
    assert_eq!(fx.copies().await.len(), 1);
    fx.ok(
        "StopDeployment",
        json!({"deploymentId": id, "autoRollbackEnabled": true}),
    )
    .await;
    nothing_left(&fx, &id, "Stopped").await;
    // A fleet check or a ProvisionFleet retried late finds it over and makes nothing.
    Box::pin(engine::look_at_copy(&fx.control, &id, true))
        .await
        .unwrap();
    fx.tick(OUTBOX_GRACE_MS + 1).await;
    nothing_left(&fx, &id, "Stopped").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_not_ready_by_its_deadline_is_removed() {
    let fx = Fixture::start().await;
    let id = fx.deploy().await;
    // The copy cannot launch its instance (capacity, say): it never has as many.
    let copy = format!("CodeDeploy_{GROUP}_{id}");
    fx.autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name(&copy)
        .min_size(0)
        .desired_capacity(0)
        .send()
        .await
        .unwrap();
    let launched = fx.control.green_fleets.instances(&copy).await.unwrap();
    assert!(launched.is_empty(), "{launched:?}");
    Box::pin(engine::look_at_copy(&fx.control, &id, false))
        .await
        .unwrap();
    assert_eq!(
        fx.info(&id).await["blueGreenProgress"]["stage"],
        "Provisioning"
    );
    fx.tick(PROVISIONING_LIMIT_MS + 1).await;
    nothing_left(&fx, &id, "Failed").await;
    let info = fx.info(&id).await;
    assert_eq!(
        info["errorInformation"]["code"], "AUTO_SCALING_CONFIGURATION",
        "{info}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_that_cannot_be_planned_over_its_copy_removes_it() {
    let fx = Fixture::start().await;
    let id = fx.deploy().await;
    // Its target group goes while the copy launches: planning now fails for good.
    let arn = fx
        .elb
        .describe_target_groups()
        .names("web")
        .send()
        .await
        .unwrap()
        .target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_owned();
    fx.elb
        .delete_target_group()
        .target_group_arn(arn)
        .send()
        .await
        .unwrap();
    Box::pin(engine::look_at_copy(&fx.control, &id, false))
        .await
        .unwrap();
    nothing_left(&fx, &id, "Failed").await;
    let message = fx.info(&id).await["errorInformation"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("could not be planned") && message.contains("web"),
        "{message}"
    );
}

/// Cut off (as Lambda cuts a function off at its timeout) right after the deployment was
/// stored, before the copy was made; or right after the copy was made, before anyone
/// looked at it. Either way the tick carries out what was stored, and a deployment that
/// reaches its deadline removes the copy.
#[tokio::test(flavor = "multi_thread")]
async fn a_creation_cut_off_at_any_point_leaves_no_copy() {
    let fx = Fixture::start().await;
    // Before the copy: the tick makes it (the stored ProvisionFleet), then plans.
    let id = fx.deploy_cut_off().await;
    assert!(fx.copies().await.is_empty());
    fx.tick(OUTBOX_GRACE_MS + 1).await;
    assert_eq!(
        fx.copies().await.len(),
        1,
        "the tick carried out ProvisionFleet"
    );
    // The next tick (its idle look) finds the copy's instances.
    fx.tick(OUTBOX_GRACE_MS + 1 + IDLE_TICK_MS + 1).await;
    assert_eq!(
        fx.info(&id).await["blueGreenProgress"]["stage"],
        "Installing"
    );
    fx.ok("StopDeployment", json!({"deploymentId": id})).await;
    assert_eq!(fx.info(&id).await["status"], "Stopped");
    // Stopped once planned, the copy is the rollback's to remove (none was asked for here).
    fx.autoscaling
        .delete_auto_scaling_group()
        .auto_scaling_group_name(format!("CodeDeploy_{GROUP}_{id}"))
        .force_delete(true)
        .send()
        .await
        .unwrap();

    // Before the copy, and not run again until its deadline: it fails, and the
    // ProvisionFleet left in its outbox, run late, makes nothing.
    let id = fx.deploy_cut_off().await;
    fx.tick(PROVISIONING_LIMIT_MS + 1).await;
    fx.tick(PROVISIONING_LIMIT_MS + OUTBOX_GRACE_MS + 2).await;
    nothing_left(&fx, &id, "Failed").await;
}
