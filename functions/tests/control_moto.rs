//! The control plane against a real moto server: handlers invoked with CodeDeploy's JSON,
//! commands read from the hosts' real SQS queues, and reports delivered as the SQS event
//! source delivers them, shaped exactly as the agent sends them.

use aws_sdk_s3::primitives::ByteStream;
use gantry_core::deployment::{Effect, Input};
use gantry_core::lifecycle::LifecycleEvent;
use gantry_core::wire::{Cancel, EventStatus};
use gantry_core::wire::{Command, HostMessage};
use gantry_functions::control::{ControlPlane, Settings};
use gantry_functions::engine;
use gantry_functions::engine::transition;
use gantry_functions::error::ApiError;
use gantry_functions::handlers;
use gantry_functions::handlers::batch_advance;
use gantry_functions::model::DeploymentSpec;
use gantry_functions::store::{OUTBOX_GRACE_MS, OutboxEntry};
use gantry_tests::archive::{self, Entry};
use gantry_tests::instance_profile;
use gantry_tests::moto::Moto;
use gantry_tests::reports::host_reports;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BUCKET: &str = "revisions";
const APP: &str = "shop";

struct Fixture {
    _moto: Moto,
    control: Arc<ControlPlane>,
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    /// The IAM role the fixture's hosts run as, each in a session named for it.
    host_role_id: String,
}

/// The role session an on-premises host registers with.
fn session_arn(host: &str) -> String {
    format!("arn:aws:sts::123456789012:assumed-role/{HOST_ROLE}/{host}")
}

const HOST_ROLE: &str = "gantry-hosts";

static NEXT_MESSAGE: AtomicU64 = AtomicU64::new(1);

fn settings(prefix: &str) -> Settings {
    Settings {
        command_queue_prefix: prefix.into(),
        account_id: "123456789012".into(),
        lambda_hook_prefix: None,
        ..Settings::defaults()
    }
}

const LIFECYCLE_QUEUE: &str = "gantry-lifecycle";

impl Fixture {
    async fn start() -> Self {
        Self::with_settings(|_| {}).await
    }

    async fn with_settings(change: impl FnOnce(&mut Settings)) -> Self {
        let moto = Moto::start().expect("moto");
        let config = moto.sdk_config().await;
        let mut settings = settings("cmd-");
        let lifecycle_url = aws_sdk_sqs::Client::new(&config)
            .create_queue()
            .queue_name(LIFECYCLE_QUEUE)
            .send()
            .await
            .expect("lifecycle queue")
            .queue_url
            .unwrap();
        settings.lifecycle_queue_url = Some(lifecycle_url);
        settings.lifecycle_queue_arn = Some(format!(
            "arn:aws:sqs:us-east-1:123456789012:{LIFECYCLE_QUEUE}"
        ));
        settings.lifecycle_role_arn =
            Some("arn:aws:iam::123456789012:role/gantry-lifecycle".into());
        change(&mut settings);
        let control = Arc::new(ControlPlane::new(&config, settings));
        control.store.create_table().await.expect("table");
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        );
        s3.create_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .expect("bucket");
        // Its instance profile (of the same name) is every EC2 instance's here.
        let host_role_id = instance_profile::host_role(&config, HOST_ROLE).await;
        let fixture = Self {
            _moto: moto,
            control,
            s3,
            sqs: aws_sdk_sqs::Client::new(&config),
            host_role_id,
        };
        fixture
            .ok("CreateApplication", json!({"applicationName": APP}))
            .await;
        fixture
    }

    async fn call(&self, operation: &str, input: Value) -> Result<Value, ApiError> {
        handlers::invoke(
            &self.control,
            "api",
            json!({"operation": operation, "input": input}),
        )
        .await
    }

    async fn ok(&self, operation: &str, input: Value) -> Value {
        match self.call(operation, input.clone()).await {
            Ok(output) => output,
            Err(error) => panic!("{operation} {input}: {error}"),
        }
    }

    async fn upload(&self, key: &str, entries: &[Entry]) {
        self.s3
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(ByteStream::from(archive::tgz(entries)))
            .send()
            .await
            .expect("upload");
    }

    async fn hosts(&self, names: &[&str]) {
        for (index, name) in names.iter().enumerate() {
            self.ok(
                "RegisterOnPremisesInstance",
                json!({"instanceName": name, "iamSessionArn": session_arn(name)}),
            )
            .await;
            self.ok(
                "AddTagsToOnPremisesInstances",
                json!({
                    "instanceNames": [name],
                    "tags": [
                        {"Key": "role", "Value": "web"},
                        {"Key": "gantry:availability-zone", "Value": format!("zone-{}", index % 2)},
                    ],
                }),
            )
            .await;
        }
    }

    async fn group(&self, name: &str, config: &str, extra: Value) {
        let mut input = json!({
            "applicationName": APP,
            "deploymentGroupName": name,
            "deploymentConfigName": config,
            "onPremisesInstanceTagFilters": [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
        });
        if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
            input.extend(extra.clone());
        }
        self.ok("CreateDeploymentGroup", input).await;
    }

    async fn deploy(&self, group: &str, key: &str) -> Result<String, ApiError> {
        // Boxed: a whole CreateDeployment inlined into a test's future overflows a debug
        // build's test thread.
        Box::pin(handlers::invoke(
            &self.control,
            "create-deployment",
            json!({
                "applicationName": APP,
                "deploymentGroupName": group,
                "revision": {"revisionType": "S3", "s3Location": {"bucket": BUCKET, "key": key, "bundleType": "tgz"}},
            }),
        ))
        .await
        .map(|output| output["deploymentId"].as_str().unwrap().to_owned())
    }

    /// Commands waiting on a host's queue (received and deleted, with any cancels).
    async fn take_commands(&self, host: &str) -> Vec<Command> {
        self.take_messages(host)
            .await
            .into_iter()
            .filter_map(|message| match message {
                HostMessage::Command(command) => Some(*command),
                HostMessage::Cancel(_) => None,
            })
            .collect()
    }

    /// Messages waiting on a host's queue (received and deleted).
    async fn take_messages(&self, host: &str) -> Vec<HostMessage> {
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
                commands.push(HostMessage::from_json(message.body().unwrap()).unwrap());
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

    /// Which of `hosts` have a command waiting, after taking them.
    async fn dispatched(&self, hosts: &[&str]) -> Vec<String> {
        let mut sent = Vec::new();
        for host in hosts {
            if !self.take_commands(host).await.is_empty() {
                sent.push((*host).to_owned());
            }
        }
        sent
    }

    /// Delivers report bodies as one SQS event to batch-advance, each sent by the host it
    /// names (its role session); returns the failed ids.
    async fn deliver(&self, bodies: Vec<String>) -> Vec<String> {
        let sent = bodies
            .into_iter()
            .map(|body| {
                // A malformed body (a poison message) comes from some host or other.
                let host = gantry_core::wire::reports_from_json(&body)
                    .map(|reports| reports[0].instance_id.clone())
                    .unwrap_or_else(|_| "web-1".into());
                (format!("{}:{host}", self.host_role_id), body)
            })
            .collect();
        self.deliver_from(sent).await
    }

    /// Delivers `(SenderId, body)` messages as one SQS event to batch-advance; returns
    /// the failed ids.
    async fn deliver_from(&self, messages: Vec<(String, String)>) -> Vec<String> {
        let records: Vec<Value> = messages
            .into_iter()
            .map(|(sender, body)| {
                let id = NEXT_MESSAGE.fetch_add(1, Ordering::SeqCst);
                json!({"messageId": format!("m-{id}"), "receiptHandle": "h", "body": body,
                       "attributes": {"SenderId": sender}, "eventSource": "aws:sqs"})
            })
            .collect();
        let response =
            handlers::invoke(&self.control, "batch-advance", json!({"Records": records}))
                .await
                .unwrap();
        response["batchItemFailures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["itemIdentifier"].as_str().unwrap().to_owned())
            .collect()
    }

    /// A host runs its command: every event succeeds, or `fail_at` fails.
    async fn run_host(&self, deployment_id: &str, host: &str, fail_at: Option<LifecycleEvent>) {
        let failed = self
            .deliver(host_reports(deployment_id, host, fail_at))
            .await;
        assert!(failed.is_empty(), "reports refused: {failed:?}");
    }

    /// How many revisions the application has registered.
    async fn revision_count(&self) -> usize {
        self.ok("ListApplicationRevisions", json!({"applicationName": APP}))
            .await["revisions"]
            .as_array()
            .map_or(0, Vec::len)
    }

    async fn deployment(&self, id: &str) -> Value {
        self.ok("GetDeployment", json!({"deploymentId": id})).await["deploymentInfo"].clone()
    }

    async fn status(&self, id: &str) -> String {
        self.deployment(id).await["status"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

fn good_bundle(version: &str) -> Vec<Entry> {
    vec![
        Entry::file(
            "appspec.yml",
            b"version: 0.0\nos: linux\nfiles:\n  - source: app/\n    destination: /srv/shop\nhooks:\n  ValidateService:\n    - location: scripts/validate.sh\n      timeout: 30\n",
        ),
        Entry::file("app/version.txt", version.as_bytes()),
        Entry::file_with_mode("scripts/validate.sh", b"#!/bin/sh\nexit 0\n", 0o755),
    ]
}

const HOSTS: [&str; 4] = ["web-1", "web-2", "web-3", "web-4"];

#[tokio::test(flavor = "multi_thread")]
async fn push_accepts_a_good_bundle_and_refuses_a_bad_one_recording_nothing() {
    let fx = Fixture::start().await;
    fx.upload("good.tgz", &good_bundle("1")).await;
    let pushed = handlers::invoke(
        &fx.control,
        "push",
        json!({"applicationName": APP, "revision": {"revisionType": "S3", "s3Location": {"bucket": BUCKET, "key": "good.tgz", "bundleType": "tgz"}}}),
    )
    .await
    .unwrap();
    assert!(
        pushed["revision"]["s3Location"]["eTag"]
            .as_str()
            .is_some_and(|tag| !tag.is_empty()),
        "the revision is pinned to the object's ETag: {pushed}"
    );

    fx.upload(
        "bad.tgz",
        &[Entry::file(
            "appspec.yml",
            b"version: 1.0\nos: solaris\nhooks:\n  AfterInstall:\n    - location: scripts/missing.sh\n      timeout: soon\n",
        )],
    )
    .await;
    let refused = handlers::invoke(
        &fx.control,
        "push",
        json!({"applicationName": APP, "revision": {"revisionType": "S3", "s3Location": {"bucket": BUCKET, "key": "bad.tgz", "bundleType": "tgz"}}}),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code, "InvalidRevisionException");
    for problem in ["version", "os", "hooks.AfterInstall[0].timeout"] {
        assert!(
            refused.message.contains(problem),
            "{problem} missing from: {}",
            refused.message
        );
    }
    assert_eq!(fx.revision_count().await, 1);

    let missing = handlers::invoke(
        &fx.control,
        "push",
        json!({"applicationName": APP, "revision": {"revisionType": "S3", "s3Location": {"bucket": BUCKET, "key": "nope.tgz", "bundleType": "tgz"}}}),
    )
    .await
    .unwrap_err();
    assert_eq!(missing.code, "RevisionDoesNotExistException", "{missing}");
    let unknown_app = fx
        .call("GetApplication", json!({"applicationName": "nope"}))
        .await
        .unwrap_err();
    assert_eq!(unknown_app.code, "ApplicationDoesNotExistException");
    let typo = handlers::invoke(
        &fx.control,
        "push",
        json!({"applicationName": APP, "revision": {"revisionType": "S3", "s3Location": {"bucket": BUCKET, "key": "good.tgz", "bundleType": "zap"}}}),
    )
    .await
    .unwrap_err();
    assert!(typo.message.contains("revision"), "{typo}");
}

#[tokio::test(flavor = "multi_thread")]
async fn push_downloads_a_large_bundle_in_ranges_and_checks_all_of_it() {
    let fx = Fixture::start().await;
    // 20 MiB that gzip cannot shrink: the archive spans three 8 MiB ranges.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..20 * 1024 * 1024 / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    let mut entries = good_bundle("1");
    entries.push(Entry::file("app/blob.bin", &noise));
    fx.upload("large.tgz", &entries).await;
    let push = |key: &str| {
        handlers::invoke(
            &fx.control,
            "push",
            json!({"applicationName": APP, "revision": {"revisionType": "S3", "s3Location": {"bucket": BUCKET, "key": key, "bundleType": "tgz"}}}),
        )
    };
    push("large.tgz").await.unwrap();
    assert_eq!(fx.revision_count().await, 1);

    // The same bundle with the appspec's script missing, placed last: the check reads
    // the whole archive, put together from its ranges.
    let mut broken: Vec<Entry> = vec![Entry::file("app/blob.bin", &noise)];
    broken.push(Entry::file(
        "appspec.yml",
        b"version: 0.0\nos: linux\nhooks:\n  ValidateService:\n    - location: scripts/missing.sh\n",
    ));
    fx.upload("broken.tgz", &broken).await;
    let refused = push("broken.tgz").await.unwrap_err();
    assert_eq!(refused.code, "InvalidRevisionException", "{refused}");
    assert!(refused.message.contains("scripts/missing.sh"), "{refused}");

    // A bundle replaced after it was pinned (its ETag taken) is refused, never checked
    // or deployed as a mix of the two objects.
    let (pinned, size) = fx
        .control
        .bundles
        .pin(
            &serde_json::from_value(
                json!({"bucket": BUCKET, "key": "large.tgz", "bundleType": "tgz"}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    fx.upload("large.tgz", &good_bundle("swapped")).await;
    let swapped = fx
        .control
        .bundles
        .validate(&pinned, size)
        .await
        .unwrap_err();
    assert!(swapped.message.contains("PreconditionFailed"), "{swapped}");

    // Over the limit, a bundle is refused by its size, before any of it is downloaded.
    let location: gantry_core::wire::S3Location =
        serde_json::from_value(json!({"bucket": BUCKET, "key": "large.tgz", "bundleType": "tgz"}))
            .unwrap();
    let too_large = gantry_core::bundle::MAX_VALIDATED_ARCHIVE_BYTES as i64 + 1;
    let refused = fx
        .control
        .bundles
        .validate(&location, too_large)
        .await
        .unwrap_err();
    assert_eq!(refused.code, "InvalidRevisionException", "{refused}");
    assert!(
        refused.message.contains("revision.s3Location") && refused.message.contains("1024 MiB"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_configuration_dispatches_its_batches() {
    let fx = Fixture::start().await;
    fx.hosts(&HOSTS).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.ok(
        "CreateDeploymentConfig",
        json!({"deploymentConfigName": "three-healthy", "minimumHealthyHosts": {"type": "HOST_COUNT", "value": 3}}),
    )
    .await;
    fx.ok(
        "CreateDeploymentConfig",
        json!({"deploymentConfigName": "quarter-healthy", "minimumHealthyHosts": {"type": "FLEET_PERCENT", "value": 25}}),
    )
    .await;
    let cases = [
        ("CodeDeployDefault.OneAtATime", vec![1, 1, 1, 1]),
        ("CodeDeployDefault.HalfAtATime", vec![2, 2]),
        ("CodeDeployDefault.AllAtOnce", vec![4]),
        ("three-healthy", vec![1, 1, 1, 1]),
        ("quarter-healthy", vec![3, 1]),
    ];
    for (index, (config, batches)) in cases.iter().enumerate() {
        let group = format!("g{index}");
        fx.group(&group, config, json!({})).await;
        let id = fx.deploy(&group, "v1.tgz").await.unwrap();
        let mut seen = Vec::new();
        loop {
            let batch = fx.dispatched(&HOSTS).await;
            if batch.is_empty() {
                break;
            }
            seen.push(batch.len());
            for host in &batch {
                fx.run_host(&id, host, None).await;
            }
        }
        assert_eq!(&seen, batches, "{config}");
        assert_eq!(fx.status(&id).await, "Succeeded", "{config}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn success_and_failure_follow_the_documented_rules() {
    let fx = Fixture::start().await;
    fx.hosts(&["web-1", "web-2", "web-3"]).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;

    // OneAtATime: the last instance may fail if every other one succeeded.
    fx.group("one", "CodeDeployDefault.OneAtATime", json!({}))
        .await;
    let id = fx.deploy("one", "v1.tgz").await.unwrap();
    for round in 0..3 {
        let batch = fx.dispatched(&["web-1", "web-2", "web-3"]).await;
        assert_eq!(batch.len(), 1);
        let fail = (round == 2).then_some(LifecycleEvent::ValidateService);
        fx.run_host(&id, &batch[0], fail).await;
    }
    let info = fx.deployment(&id).await;
    assert_eq!(info["status"], "Succeeded", "{info}");
    assert_eq!(info["deploymentOverview"]["Failed"], 1);

    // AllAtOnce: one success is enough.
    fx.group("all", "CodeDeployDefault.AllAtOnce", json!({}))
        .await;
    let id = fx.deploy("all", "v1.tgz").await.unwrap();
    let batch = fx.dispatched(&["web-1", "web-2", "web-3"]).await;
    assert_eq!(batch.len(), 3);
    fx.run_host(&id, &batch[0], Some(LifecycleEvent::BeforeInstall))
        .await;
    fx.run_host(&id, &batch[1], None).await;
    fx.run_host(&id, &batch[2], Some(LifecycleEvent::ApplicationStart))
        .await;
    assert_eq!(fx.status(&id).await, "Succeeded");

    // HalfAtATime over 3: at least 2 must succeed; the first failure leaves too few.
    fx.group("half", "CodeDeployDefault.HalfAtATime", json!({}))
        .await;
    let id = fx.deploy("half", "v1.tgz").await.unwrap();
    let batch = fx.dispatched(&["web-1", "web-2", "web-3"]).await;
    assert_eq!(batch.len(), 1, "{batch:?}");
    fx.run_host(&id, &batch[0], Some(LifecycleEvent::AfterInstall))
        .await;
    let info = fx.deployment(&id).await;
    assert_eq!(info["status"], "Failed", "{info}");
    assert_eq!(info["errorInformation"]["code"], "HEALTH_CONSTRAINTS");

    // The failed host's diagnostics are there for `gantry logs`.
    let targets = fx
        .ok(
            "BatchGetDeploymentTargets",
            json!({"deploymentId": id, "targetIds": [batch[0]]}),
        )
        .await;
    let events = &targets["deploymentTargets"][0]["instanceTarget"]["lifecycleEvents"];
    let failed = events
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["status"] == "Failed")
        .unwrap();
    assert_eq!(failed["lifecycleEventName"], "AfterInstall");
    assert_eq!(failed["diagnostics"]["errorCode"], "ScriptFailed");
    assert!(
        failed["diagnostics"]["logTail"]
            .as_str()
            .unwrap()
            .contains("Failed to connect")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_next_deployment_starts_with_unhealthy_hosts_and_the_lock_holds() {
    let fx = Fixture::start().await;
    fx.hosts(&HOSTS).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.upload("v2.tgz", &good_bundle("2")).await;
    fx.group("web", "CodeDeployDefault.AllAtOnce", json!({}))
        .await;
    let first = fx.deploy("web", "v1.tgz").await.unwrap();

    let second = fx.deploy("web", "v2.tgz").await.unwrap_err();
    assert_eq!(second.code, "DeploymentLimitExceededException");
    assert!(second.message.contains(&first), "{second}");

    let batch = fx.dispatched(&HOSTS).await;
    assert_eq!(batch.len(), 4);
    for host in &batch {
        let fail = (host == "web-3").then_some(LifecycleEvent::ValidateService);
        fx.run_host(&first, host, fail).await;
    }
    assert_eq!(fx.status(&first).await, "Succeeded");

    fx.ok(
        "UpdateDeploymentGroup",
        json!({"applicationName": APP, "currentDeploymentGroupName": "web", "deploymentConfigName": "CodeDeployDefault.OneAtATime"}),
    )
    .await;
    let next = fx.deploy("web", "v2.tgz").await.unwrap();
    let batch = fx.dispatched(&HOSTS).await;
    assert_eq!(
        batch,
        vec!["web-3".to_owned()],
        "the unhealthy host goes first"
    );
    let info = fx.deployment(&next).await;
    assert_eq!(info["previousRevision"]["s3Location"]["key"], "v1.tgz");
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_ends_a_deployment_and_frees_the_group() {
    let fx = Fixture::start().await;
    fx.hosts(&HOSTS).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.group("web", "CodeDeployDefault.OneAtATime", json!({}))
        .await;
    let id = fx.deploy("web", "v1.tgz").await.unwrap();
    let stopped = fx.ok("StopDeployment", json!({"deploymentId": id})).await;
    assert_eq!(
        stopped["status"], "Pending",
        "the first host is still running its event: {stopped}"
    );
    let info = fx.deployment(&id).await;
    assert_eq!(info["status"], "Stopped");
    assert_eq!(info["deploymentOverview"]["Skipped"], 3);
    let again = fx
        .call("StopDeployment", json!({"deploymentId": id}))
        .await
        .unwrap_err();
    assert_eq!(again.code, "DeploymentAlreadyCompletedException");
    fx.deploy("web", "v1.tgz")
        .await
        .expect("the group is free again");
    let unknown = fx
        .call("StopDeployment", json!({"deploymentId": "d-NOSUCH123"}))
        .await
        .unwrap_err();
    assert_eq!(unknown.code, "DeploymentDoesNotExistException");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_deployment_rolls_back_and_triggers_reach_a_subscribed_queue() {
    let fx = Fixture::start().await;
    let config = fx._moto.sdk_config().await;
    let sns = aws_sdk_sns::Client::new(&config);
    let topic = sns
        .create_topic()
        .name("deploys")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let inbox_url = fx
        .sqs
        .create_queue()
        .queue_name("inbox")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint("arn:aws:sqs:us-east-1:123456789012:inbox")
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();

    fx.hosts(&["web-1", "web-2"]).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.upload("v2.tgz", &good_bundle("2")).await;
    fx.group(
        "web",
        "CodeDeployDefault.AllAtOnce",
        json!({
            "autoRollbackConfiguration": {"enabled": true, "events": ["DEPLOYMENT_FAILURE"]},
            "triggerConfigurations": [{
                "triggerName": "ops",
                "triggerTargetArn": topic,
                "triggerEvents": ["DeploymentStart", "DeploymentFailure", "DeploymentRollback", "InstanceFailure"],
            }],
        }),
    )
    .await;
    let good = fx.deploy("web", "v1.tgz").await.unwrap();
    for host in fx.dispatched(&["web-1", "web-2"]).await {
        fx.run_host(&good, &host, None).await;
    }
    assert_eq!(fx.status(&good).await, "Succeeded");

    let bad = fx.deploy("web", "v2.tgz").await.unwrap();
    for host in fx.dispatched(&["web-1", "web-2"]).await {
        fx.run_host(&bad, &host, Some(LifecycleEvent::ValidateService))
            .await;
    }
    let info = fx.deployment(&bad).await;
    assert_eq!(info["status"], "Failed", "{info}");
    let rollback = info["rollbackInfo"]["rollbackDeploymentId"]
        .as_str()
        .unwrap_or_else(|| panic!("no rollback in {info}"))
        .to_owned();
    let rollback_info = fx.deployment(&rollback).await;
    assert_eq!(rollback_info["creator"], "codeDeployRollback");
    assert_eq!(
        rollback_info["rollbackInfo"]["rollbackTriggeringDeploymentId"],
        bad
    );
    assert_eq!(rollback_info["revision"]["s3Location"]["key"], "v1.tgz");
    let commands: Vec<Command> = fx.take_commands("web-1").await;
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0].deployment_id, rollback);
    assert_eq!(
        commands[0].lifecycle_events,
        gantry_core::lifecycle::in_place(false),
        "the agent runs every in-place event"
    );
    assert_eq!(
        commands[0].creator,
        gantry_core::wire::Creator::CodeDeployRollback
    );

    // The trigger messages, as CodeDeploy documents them.
    let mut messages: Vec<Value> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while messages.len() < 8 && std::time::Instant::now() < deadline {
        let received = fx
            .sqs
            .receive_message()
            .queue_url(&inbox_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for message in received.messages.unwrap_or_default() {
            messages.push(serde_json::from_str(message.body().unwrap()).unwrap());
        }
    }
    let failure = messages
        .iter()
        .find(|m| m["deploymentId"] == bad && m["status"] == "FAILED")
        .unwrap_or_else(|| panic!("no DeploymentFailure in {messages:?}"));
    for field in [
        "region",
        "accountId",
        "eventTriggerName",
        "applicationName",
        "deploymentGroupName",
        "createTime",
        "completeTime",
    ] {
        assert!(
            failure.get(field).is_some(),
            "{field} missing from {failure}"
        );
    }
    assert_eq!(failure["deploymentOverview"]["Failed"], "2");
    assert_eq!(
        failure["errorInformation"]["ErrorCode"],
        "HEALTH_CONSTRAINTS"
    );
    let instance = messages
        .iter()
        .find(|m| m["deploymentId"] == bad && m["instanceStatus"] == "Failed")
        .unwrap_or_else(|| panic!("no InstanceFailure in {messages:?}"));
    // CodeDeploy names the instance by its ARN; an on-premises one by CodeDeploy's.
    assert!(
        instance["instanceId"].as_str().is_some_and(
            |id| id.starts_with("arn:aws:codedeploy:us-east-1:123456789012:instance/web-")
        ),
        "{instance}"
    );
    assert!(
        instance["lifecycleEvents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["LifecycleEvent"] == "ValidateService"
                && e["LifecycleEventStatus"] == "Failed")
    );
    assert!(
        messages
            .iter()
            .any(|m| m["deploymentId"] == bad && m["status"] == "ROLLBACK"),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m["deploymentId"] == rollback && m["status"] == "CREATED"),
        "{messages:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_host_fails_after_its_deadline() {
    let fx = Fixture::with_settings(|settings| {
        settings.host_start_timeout_ms = 300;
        settings.event_slack_ms = 0;
    })
    .await;
    fx.hosts(&["web-1"]).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.group("web", "CodeDeployDefault.AllAtOnce", json!({}))
        .await;
    let id = fx.deploy("web", "v1.tgz").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while fx.status(&id).await == "InProgress" {
        assert!(
            std::time::Instant::now() < deadline,
            "the host was never failed"
        );
        handlers::invoke(
            &fx.control,
            "batch-advance",
            json!({"source": "aws.events"}),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let info = fx.deployment(&id).await;
    assert_eq!(info["status"], "Failed", "{info}");
    let targets = fx
        .ok(
            "BatchGetDeploymentTargets",
            json!({"deploymentId": id, "targetIds": ["web-1"]}),
        )
        .await;
    let first = &targets["deploymentTargets"][0]["instanceTarget"]["lifecycleEvents"][0];
    assert_eq!(first["status"], "Failed");
    assert!(
        first["diagnostics"]["message"]
            .as_str()
            .unwrap()
            .contains("no report from web-1"),
        "{first}"
    );
}

/// Final state with every report delivered once in order, and twice shuffled.
#[tokio::test(flavor = "multi_thread")]
async fn duplicated_and_shuffled_reports_give_the_same_final_state() {
    let fx = Fixture::start().await;
    fx.hosts(&HOSTS).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    let mut finals = Vec::new();
    for (round, duplicate) in [false, true].into_iter().enumerate() {
        let group = format!("g{round}");
        fx.group(&group, "CodeDeployDefault.AllAtOnce", json!({}))
            .await;
        let id = fx.deploy(&group, "v1.tgz").await.unwrap();
        assert_eq!(fx.dispatched(&HOSTS).await.len(), 4);
        let mut bodies: Vec<String> = HOSTS
            .iter()
            .flat_map(|host| {
                let fail = (*host == "web-2").then_some(LifecycleEvent::Install);
                host_reports(&id, host, fail)
            })
            .collect();
        if duplicate {
            bodies.extend(bodies.clone());
            // A fixed shuffle: reverse, then interleave halves.
            bodies.reverse();
            let (a, b) = bodies.split_at(bodies.len() / 2);
            bodies = a
                .iter()
                .zip(b)
                .flat_map(|(x, y)| [y.clone(), x.clone()])
                .collect();
        }
        for chunk in bodies.chunks(10) {
            assert!(fx.deliver(chunk.to_vec()).await.is_empty());
        }
        let info = fx.deployment(&id).await;
        let targets = fx
            .ok(
                "BatchGetDeploymentTargets",
                json!({"deploymentId": id, "targetIds": HOSTS}),
            )
            .await;
        let per_host: BTreeMap<String, (Value, Vec<Value>)> = targets["deploymentTargets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|target| {
                let target = &target["instanceTarget"];
                let events = target["lifecycleEvents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|event| {
                        // Each round has its own clock; durations must agree.
                        let duration = event["endTime"]
                            .as_f64()
                            .zip(event["startTime"].as_f64())
                            .map(|(end, start)| ((end - start) * 1000.0).round());
                        json!([event["lifecycleEventName"], event["status"], duration])
                    })
                    .collect();
                (
                    target["targetId"].as_str().unwrap().to_owned(),
                    (target["status"].clone(), events),
                )
            })
            .collect();
        finals.push((
            info["status"].clone(),
            info["deploymentOverview"].clone(),
            per_host,
        ));
    }
    assert_eq!(finals[0], finals[1]);
    assert_eq!(finals[0].0, "Succeeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn four_concurrent_workers_never_dispatch_a_batch_twice() {
    let fx = Arc::new(Fixture::start().await);
    let hosts: Vec<String> = (1..=6).map(|i| format!("web-{i}")).collect();
    let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    fx.hosts(&names).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.group("web", "CodeDeployDefault.HalfAtATime", json!({}))
        .await;
    let id = fx.deploy("web", "v1.tgz").await.unwrap();
    let mut commands: BTreeMap<String, usize> = BTreeMap::new();
    loop {
        let mut batch = Vec::new();
        for host in &names {
            let taken = fx.take_commands(host).await.len();
            if taken > 0 {
                *commands.entry((*host).to_owned()).or_default() += taken;
                batch.push((*host).to_owned());
            }
        }
        if batch.is_empty() {
            break;
        }
        // Every report of the batch goes to each of four workers at once.
        let bodies: Vec<String> = batch
            .iter()
            .flat_map(|host| host_reports(&id, host, None))
            .collect();
        let mut workers = Vec::new();
        for worker in 0..4 {
            let fx = Arc::clone(&fx);
            let mut mine = bodies.clone();
            let shift = worker * 3 % mine.len();
            mine.rotate_left(shift);
            workers.push(tokio::spawn(async move {
                for chunk in mine.chunks(10) {
                    let failed = fx.deliver(chunk.to_vec()).await;
                    assert!(failed.is_empty(), "{failed:?}");
                }
            }));
        }
        for worker in workers {
            worker.await.unwrap();
        }
    }
    assert_eq!(fx.status(&id).await, "Succeeded");
    assert_eq!(commands.len(), 6, "{commands:?}");
    assert!(
        commands.values().all(|&count| count == 1),
        "a host got its command twice: {commands:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_report_is_failed_alone_and_the_rest_apply() {
    let fx = Fixture::start().await;
    fx.hosts(&["web-1"]).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.group("web", "CodeDeployDefault.AllAtOnce", json!({}))
        .await;
    let id = fx.deploy("web", "v1.tgz").await.unwrap();
    let mut bodies = vec![
        "not json at all".to_owned(),
        json!({"schemaVersion": 1, "deploymentId": id}).to_string(),
        host_reports("d-NOSUCH123", "web-1", None).remove(0),
        host_reports(&id, "web-9", None).remove(0),
    ];
    let good = host_reports(&id, "web-1", None);
    bodies.extend(good.iter().take(6).cloned());
    // Agents send what they have ready at once as one message: a JSON array.
    bodies.push(format!("[{},{}]", good[6], good[7]));
    // A report that can never apply (web-9 is no target) is dropped; the good one beside
    // it still applies.
    bodies.push(format!(
        "[{},{}]",
        good[8],
        host_reports(&id, "web-9", None).remove(0)
    ));
    let failed = fx.deliver(bodies).await;
    // Only the malformed messages are left for the dead-letter queue: reports for a
    // deployment that does not exist or a host that is not its target are dropped.
    assert_eq!(failed.len(), 2, "{failed:?}");
    let targets = fx
        .ok(
            "BatchGetDeploymentTargets",
            json!({"deploymentId": id, "targetIds": ["web-1"]}),
        )
        .await;
    let events = targets["deploymentTargets"][0]["instanceTarget"]["lifecycleEvents"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(events[2]["status"], "Succeeded", "{events:?}");
    assert_eq!(events[3]["status"], "Succeeded", "{events:?}");
    assert_eq!(events[4]["status"], "InProgress", "{events:?}");
}

/// A report whose host id DynamoDB would refuse as a key (over 1,024 bytes) fails its
/// own message and no other: before, it failed the read of the whole run's hosts, and
/// every honest report in the SQS batch with it was retried until dead-lettered.
#[tokio::test(flavor = "multi_thread")]
async fn a_report_with_an_oversized_host_id_fails_alone() {
    let fx = Fixture::start().await;
    fx.hosts(&["web-1"]).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.group("web", "CodeDeployDefault.AllAtOnce", json!({}))
        .await;
    let id = fx.deploy("web", "v1.tgz").await.unwrap();
    let good = host_reports(&id, "web-1", None);
    let oversized = good[0].replace("\"web-1\"", &format!("\"{}\"", "h".repeat(1100)));
    assert_ne!(oversized, good[0]);
    let sent = vec![
        (format!("{}:web-1", fx.host_role_id), good[0].clone()),
        (format!("{}:web-1", fx.host_role_id), oversized),
        (format!("{}:web-1", fx.host_role_id), good[1].clone()),
    ];
    let failed = fx.deliver_from(sent).await;
    assert_eq!(
        failed.len(),
        1,
        "only the oversized report fails: {failed:?}"
    );
    let targets = fx
        .ok(
            "BatchGetDeploymentTargets",
            json!({"deploymentId": id, "targetIds": ["web-1"]}),
        )
        .await;
    let events = &targets["deploymentTargets"][0]["instanceTarget"]["lifecycleEvents"];
    assert_eq!(events[0]["status"], "Succeeded", "{events}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_names_the_field() {
    let fx = Fixture::start().await;
    let cases = [
        (
            "CreateDeploymentGroup",
            json!({"applicationName": APP, "deploymentGroupName": "g", "ec2TagFilters": [{"Type": "KEY_ONLY"}]}),
            "ec2TagFilters[0].Key",
        ),
        (
            "CreateDeploymentGroup",
            json!({"applicationName": APP, "deploymentGroupName": "g", "deploymentConfigName": "nope"}),
            "deploymentConfigName",
        ),
        (
            "CreateDeploymentGroup",
            json!({"applicationName": APP, "deploymentGroupName": "g", "autoRollbackConfiguration": {"enabled": true, "events": ["SOMETIMES"]}}),
            "autoRollbackConfiguration.events[0]",
        ),
        (
            "CreateDeploymentGroup",
            json!({"applicationName": APP, "deploymentGroupName": "g", "deploymentGroupColour": "red"}),
            "deploymentGroupColour",
        ),
        (
            "CreateDeploymentConfig",
            json!({"deploymentConfigName": "c", "minimumHealthyHosts": {"type": "FLEET_PERCENT", "value": 100}}),
            "minimumHealthyHosts.value",
        ),
        (
            "RegisterOnPremisesInstance",
            json!({"instanceName": "bad name!"}),
            "instanceName",
        ),
        // `#` and `/` would let one application's or group's name stand for another's.
        (
            "CreateDeploymentGroup",
            json!({"applicationName": APP, "deploymentGroupName": "b#c"}),
            "deploymentGroupName",
        ),
        (
            "CreateApplication",
            json!({"applicationName": "shop#b"}),
            "applicationName",
        ),
        (
            "CreateDeploymentConfig",
            json!({"deploymentConfigName": "a/b", "minimumHealthyHosts": {"type": "HOST_COUNT", "value": 1}}),
            "deploymentConfigName",
        ),
        (
            "CreateDeployment",
            json!({"applicationName": APP, "deploymentGroupName": "missing"}),
            "deploymentGroupName",
        ),
    ];
    for (operation, input, field) in cases {
        let error = fx.call(operation, input.clone()).await.unwrap_err();
        assert!(
            error.message.contains(field),
            "{operation} {input}: {error} does not name {field}"
        );
    }
    let unknown = handlers::invoke(&fx.control, "deploy-everything", json!({}))
        .await
        .unwrap_err();
    assert_eq!(unknown.code, "ResourceNotFoundException");
}

#[tokio::test(flavor = "multi_thread")]
async fn ec2_tag_sets_and_auto_scaling_groups_resolve_to_running_instances() {
    let fx = Fixture::start().await;
    let config = fx._moto.sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let image = ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_owned();
    let launch = |zone: &str, tags: &[(&str, &str)]| {
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
        ec2.run_instances()
            .iam_instance_profile(instance_profile::by_name(HOST_ROLE))
            .image_id(&image)
            .min_count(1)
            .max_count(1)
            .placement(
                aws_sdk_ec2::types::Placement::builder()
                    .availability_zone(zone)
                    .build(),
            )
            .tag_specifications(spec.build())
            .send()
    };
    let web_a = launch("us-east-1a", &[("role", "web"), ("env", "prod")])
        .await
        .unwrap();
    let web_b = launch("us-east-1b", &[("role", "web"), ("env", "prod")])
        .await
        .unwrap();
    let staging = launch("us-east-1a", &[("role", "web"), ("env", "staging")])
        .await
        .unwrap();
    let stopped = launch("us-east-1b", &[("role", "web"), ("env", "prod")])
        .await
        .unwrap();
    let id = |output: &aws_sdk_ec2::operation::run_instances::RunInstancesOutput| {
        output.instances()[0].instance_id().unwrap().to_owned()
    };
    ec2.stop_instances()
        .instance_ids(id(&stopped))
        .send()
        .await
        .unwrap();

    // role=web AND env=prod: the staging host is left out; the stopped host is in the
    // deployment (failed at once, see below) but is sent no command.
    fx.ok(
        "CreateDeploymentGroup",
        json!({
            "applicationName": APP,
            "deploymentGroupName": "ec2",
            "deploymentConfigName": "CodeDeployDefault.AllAtOnce",
            "ec2TagSet": {"ec2TagSetList": [
                [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
                [{"Key": "env", "Value": "prod", "Type": "KEY_AND_VALUE"}],
            ]},
        }),
    )
    .await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    let deployment = fx.deploy("ec2", "v1.tgz").await.unwrap();
    let candidates = [id(&web_a), id(&web_b), id(&staging), id(&stopped)];
    let names: Vec<&str> = candidates.iter().map(String::as_str).collect();
    let mut sent = fx.dispatched(&names).await;
    sent.sort();
    let mut expected = vec![id(&web_a), id(&web_b)];
    expected.sort();
    assert_eq!(sent, expected);
    let info = fx.deployment(&deployment).await;
    assert_eq!(info["deploymentOverview"]["InProgress"], 2);
    assert_eq!(info["deploymentOverview"]["Failed"], 1);

    // An Auto Scaling group's in-service instances.
    let autoscaling = aws_sdk_autoscaling::Client::new(&config);
    autoscaling
        .create_launch_configuration()
        .iam_instance_profile(HOST_ROLE)
        .launch_configuration_name("web")
        .image_id(&image)
        .instance_type("t3.micro")
        .send()
        .await
        .unwrap();
    autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name("web-asg")
        .launch_configuration_name("web")
        .min_size(2)
        .max_size(2)
        .desired_capacity(2)
        .availability_zones("us-east-1a")
        .availability_zones("us-east-1b")
        .send()
        .await
        .unwrap();
    // Gantry hooks only the Auto Scaling groups tagged for it, and says which are not.
    let asg_group = json!({
        "applicationName": APP,
        "deploymentGroupName": "asg",
        "deploymentConfigName": "CodeDeployDefault.AllAtOnce",
        "autoScalingGroups": ["web-asg"],
    });
    let error = fx
        .call("CreateDeploymentGroup", asg_group.clone())
        .await
        .unwrap_err();
    assert_eq!(error.code.name(), "InvalidAutoScalingGroupException");
    assert!(
        error.message.contains("web-asg") && error.message.contains("gantry:managed=true"),
        "{}",
        error.message
    );
    let mut missing = asg_group.clone();
    missing["autoScalingGroups"] = json!(["no-such-asg"]);
    let error = fx.call("CreateDeploymentGroup", missing).await.unwrap_err();
    assert!(error.message.contains("no-such-asg"), "{}", error.message);
    manage(&autoscaling, "web-asg").await;
    fx.ok("CreateDeploymentGroup", asg_group).await;
    let deployment = fx.deploy("asg", "v1.tgz").await.unwrap();
    let info = fx.deployment(&deployment).await;
    assert_eq!(info["deploymentOverview"]["InProgress"], 2, "{info}");
    let group = fx
        .ok(
            "GetDeploymentGroup",
            json!({"applicationName": APP, "deploymentGroupName": "asg"}),
        )
        .await;
    assert_eq!(
        group["deploymentGroupInfo"]["autoScalingGroups"][0]["name"],
        "web-asg"
    );
}

async fn group_deployments(fx: &Fixture, group: &str) -> Vec<String> {
    let listed = fx
        .ok(
            "ListDeployments",
            json!({"applicationName": APP, "deploymentGroupName": group}),
        )
        .await;
    listed["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

/// An SQS event of `bodies` for the lifecycle function; returns the failed message ids.
async fn lifecycle_event(fx: &Fixture, bodies: &[String]) -> Vec<String> {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(index, body)| json!({"messageId": format!("m-{index}"), "body": body, "eventSource": "aws:sqs"}))
        .collect();
    // Boxed: the handler's future is large, and inlined it overflows a debug build's
    // stack.
    let output = Box::pin(handlers::invoke(
        &fx.control,
        "lifecycle",
        json!({"Records": records}),
    ))
    .await
    .expect("lifecycle answers");
    output["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect()
}

/// An Auto Scaling group `web-asg` of one instance, in service (it launched before any
/// hook), and room for three more.
async fn auto_scaling_group(config: &aws_config::SdkConfig) -> aws_sdk_autoscaling::Client {
    let ec2 = aws_sdk_ec2::Client::new(config);
    let image = ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_owned();
    let autoscaling = aws_sdk_autoscaling::Client::new(config);
    autoscaling
        .create_launch_configuration()
        .iam_instance_profile(HOST_ROLE)
        .launch_configuration_name("web")
        .image_id(&image)
        .instance_type("t3.micro")
        .send()
        .await
        .unwrap();
    autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name("web-asg")
        .launch_configuration_name("web")
        .min_size(1)
        .max_size(4)
        .desired_capacity(1)
        .availability_zones("us-east-1a")
        .send()
        .await
        .unwrap();
    manage(&autoscaling, "web-asg").await;
    autoscaling
}

/// Tags an Auto Scaling group for Gantry (gantry:managed=true), as its owner would.
async fn manage(autoscaling: &aws_sdk_autoscaling::Client, name: &str) {
    autoscaling
        .create_or_update_tags()
        .tags(
            aws_sdk_autoscaling::types::Tag::builder()
                .resource_id(name)
                .resource_type("auto-scaling-group")
                .key("gantry:managed")
                .value("true")
                .propagate_at_launch(false)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

async fn asg_instances(autoscaling: &aws_sdk_autoscaling::Client) -> Vec<String> {
    autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("web-asg")
        .send()
        .await
        .unwrap()
        .auto_scaling_groups()[0]
        .instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_owned())
        .collect()
}

async fn lifecycle_hook_names(
    autoscaling: &aws_sdk_autoscaling::Client,
) -> Vec<(String, String, String)> {
    autoscaling
        .describe_lifecycle_hooks()
        .auto_scaling_group_name("web-asg")
        .send()
        .await
        .unwrap()
        .lifecycle_hooks()
        .iter()
        .map(|h| {
            (
                h.lifecycle_hook_name().unwrap_or_default().to_owned(),
                h.lifecycle_transition().unwrap_or_default().to_owned(),
                h.default_result().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// What is on the lifecycle queue (received and deleted), which must be `count`
/// messages: it waits for them up to a deadline, then takes whatever else is there.
async fn take_lifecycle_messages(fx: &Fixture, count: usize) -> Vec<String> {
    let url = fx.control.settings.lifecycle_queue_url.clone().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut bodies = Vec::new();
    loop {
        let waiting = bodies.len() < count;
        let received = fx
            .sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(if waiting { 1 } else { 0 })
            .send()
            .await
            .unwrap();
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() && (!waiting || std::time::Instant::now() > deadline) {
            break;
        }
        for message in messages {
            bodies.push(message.body().unwrap().to_owned());
            fx.sqs
                .delete_message()
                .queue_url(&url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    assert_eq!(bodies.len(), count, "the lifecycle queue: {bodies:?}");
    bodies
}

fn body(message: &str) -> Value {
    serde_json::from_str(message).unwrap_or_else(|error| panic!("{message}: {error}"))
}

/// The instance and token of Auto Scaling's notification of a launch in `web-asg`,
/// checked to come from Gantry's hook for deployment group `group`.
fn launch_of(message: &str, hook: &str, group: &str) -> (String, String) {
    let notification = body(message);
    assert_eq!(
        notification["LifecycleTransition"], "autoscaling:EC2_INSTANCE_LAUNCHING",
        "{notification}"
    );
    assert_eq!(
        notification["AutoScalingGroupName"], "web-asg",
        "{notification}"
    );
    assert_eq!(notification["LifecycleHookName"], hook, "{notification}");
    let metadata = body(
        notification["NotificationMetadata"]
            .as_str()
            .expect("the hook's metadata"),
    );
    assert_eq!(
        metadata,
        json!({"applicationName": APP, "deploymentGroupName": group})
    );
    let field = |name: &str| notification[name].as_str().unwrap().to_owned();
    (field("EC2InstanceId"), field("LifecycleActionToken"))
}

/// Sets `web-asg`'s desired capacity; returns the instances that launched.
async fn scale_to(autoscaling: &aws_sdk_autoscaling::Client, capacity: i32) -> Vec<String> {
    let before = asg_instances(autoscaling).await;
    autoscaling
        .set_desired_capacity()
        .auto_scaling_group_name("web-asg")
        .desired_capacity(capacity)
        .send()
        .await
        .unwrap();
    let launched: Vec<String> = asg_instances(autoscaling)
        .await
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert_eq!(
        launched.len() + before.len(),
        usize::try_from(capacity).unwrap(),
        "launched {launched:?} beside {before:?}"
    );
    launched
}

/// An instance's lifecycle state in `web-asg`, or None when it is not in the group.
async fn lifecycle_state(
    autoscaling: &aws_sdk_autoscaling::Client,
    instance: &str,
) -> Option<String> {
    autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("web-asg")
        .send()
        .await
        .unwrap()
        .auto_scaling_groups()[0]
        .instances()
        .iter()
        .find(|i| i.instance_id() == Some(instance))
        .and_then(|i| i.lifecycle_state())
        .map(|state| state.as_str().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launching_instance_gets_the_last_successful_revision_and_completes_its_hook() {
    let fx = Fixture::start().await;
    let config = fx._moto.sdk_config().await;
    let autoscaling = auto_scaling_group(&config).await;
    let first = asg_instances(&autoscaling).await[0].clone();
    // In parts: one async body this long overflows a debug build's stack.
    let (hook, test) = Box::pin(launch_hook_is_put(&fx, &autoscaling)).await;
    let second = Box::pin(an_early_launch_goes_on(&fx, &autoscaling, &hook)).await;
    Box::pin(a_launch_gets_the_last_revision(
        &fx,
        &autoscaling,
        &hook,
        &test,
        [&first, &second],
    ))
    .await;
    Box::pin(the_hook_goes_with_the_group(&fx, &autoscaling)).await;
}

/// Creating the group puts its launch hook; Auto Scaling tests the hook's target.
/// Returns the hook's name and the test notification.
async fn launch_hook_is_put(
    fx: &Fixture,
    autoscaling: &aws_sdk_autoscaling::Client,
) -> (String, Vec<String>) {
    let created = fx
        .ok(
            "CreateDeploymentGroup",
            json!({
                "applicationName": APP,
                "deploymentGroupName": "asg",
                "deploymentConfigName": "CodeDeployDefault.AllAtOnce",
                "autoScalingGroups": ["web-asg"],
            }),
        )
        .await;
    let hook = format!("gantry-{}", created["deploymentGroupId"].as_str().unwrap());
    let hooks = lifecycle_hook_names(autoscaling).await;
    assert_eq!(
        hooks,
        vec![(
            hook.clone(),
            "autoscaling:EC2_INSTANCE_LAUNCHING".to_owned(),
            "ABANDON".to_owned()
        )],
        "the group put its launch hook"
    );
    // Putting the hook, Auto Scaling tested its target: the lifecycle queue.
    let test = take_lifecycle_messages(fx, 1).await;
    assert_eq!(
        body(&test[0])["Event"],
        "autoscaling:TEST_NOTIFICATION",
        "{test:?}"
    );
    assert_eq!(body(&test[0])["AutoScalingGroupName"], "web-asg");
    assert!(lifecycle_event(fx, &test).await.is_empty());
    (hook, test)
}

/// A launch before any successful deployment: nothing to deploy, the instance may go
/// on (Gantry answers CONTINUE). Returns the instance.
async fn an_early_launch_goes_on(
    fx: &Fixture,
    autoscaling: &aws_sdk_autoscaling::Client,
    hook: &str,
) -> String {
    let second = scale_to(autoscaling, 2).await[0].clone();
    assert_eq!(
        lifecycle_state(autoscaling, &second).await.as_deref(),
        Some("Pending:Wait"),
        "the hook holds the launch"
    );
    let early = take_lifecycle_messages(fx, 1).await;
    let (instance, _) = launch_of(&early[0], hook, "asg");
    assert_eq!(instance, second);
    assert!(lifecycle_event(fx, &early).await.is_empty());
    assert_eq!(
        lifecycle_state(autoscaling, &second).await.as_deref(),
        Some("InService"),
        "nothing to deploy: the launch goes on"
    );
    assert!(
        group_deployments(fx, "asg").await.is_empty(),
        "no deployment for a group with nothing deployed"
    );
    second
}

/// v1 everywhere, then a third instance launches: it gets v1, and goes into service
/// when that succeeds.
async fn a_launch_gets_the_last_revision(
    fx: &Fixture,
    autoscaling: &aws_sdk_autoscaling::Client,
    hook: &str,
    test: &[String],
    [first, second]: [&String; 2],
) {
    fx.upload("v1.tgz", &good_bundle("1")).await;
    let v1 = fx.deploy("asg", "v1.tgz").await.unwrap();
    for host in [first, second] {
        assert_eq!(fx.take_commands(host).await.len(), 1, "{host}");
        fx.run_host(&v1, host, None).await;
    }
    assert_eq!(fx.status(&v1).await, "Succeeded");
    assert!(
        take_lifecycle_messages(fx, 0).await.is_empty(),
        "a deployment that completes no launch posts nothing"
    );
    let third = scale_to(autoscaling, 3).await[0].clone();
    let notified = take_lifecycle_messages(fx, 1).await;
    let (instance, token) = launch_of(&notified[0], hook, "asg");
    assert_eq!(instance, third);

    // The notification, twice (SQS delivers at least once), with the test notification
    // and a malformed message.
    let batch = [notified[0].clone(), test[0].clone(), "not json".to_owned()];
    let failed = lifecycle_event(fx, &batch).await;
    assert_eq!(
        failed,
        vec!["m-2".to_owned()],
        "only the malformed message fails"
    );
    assert!(lifecycle_event(fx, &notified).await.is_empty());
    let all = group_deployments(fx, "asg").await;
    assert_eq!(
        all.len(),
        2,
        "one launch deployment, however often notified"
    );

    let launched = all.into_iter().find(|id| *id != v1).unwrap();
    let info = fx.deployment(&launched).await;
    assert_eq!(info["creator"], "autoscaling", "{info}");
    assert_eq!(info["revision"]["s3Location"]["key"], "v1.tgz");
    assert_eq!(info["deploymentOverview"]["InProgress"], 1, "{info}");
    let commands = fx.take_commands(&third).await;
    assert_eq!(
        commands.len(),
        1,
        "the launching instance, and only it, gets the command"
    );
    assert!(fx.take_commands(first).await.is_empty());
    assert!(fx.take_commands(second).await.is_empty());
    assert_eq!(
        lifecycle_state(autoscaling, &third).await.as_deref(),
        Some("Pending:Wait"),
        "the launch waits for its deployment"
    );

    // It succeeds: the lifecycle function is told, and completes the action (CONTINUE)
    // with the notification's token.
    fx.run_host(&launched, &third, None).await;
    assert_eq!(fx.status(&launched).await, "Succeeded");
    let finished = take_lifecycle_messages(fx, 1).await;
    assert_eq!(
        body(&finished[0]),
        json!({"gantryDeploymentFinished": launched})
    );
    assert!(lifecycle_event(fx, &finished).await.is_empty());
    assert_eq!(
        lifecycle_state(autoscaling, &third).await.as_deref(),
        Some("InService"),
        "the deployment succeeded: the launch goes on"
    );
    // The same message again: the action is complete, and stays so.
    assert!(lifecycle_event(fx, &finished).await.is_empty());
    assert_eq!(
        lifecycle_state(autoscaling, &third).await.as_deref(),
        Some("InService")
    );
    let stale = autoscaling
        .complete_lifecycle_action()
        .auto_scaling_group_name("web-asg")
        .lifecycle_hook_name(hook)
        .lifecycle_action_token(&token)
        .lifecycle_action_result("ABANDON")
        .send()
        .await
        .expect_err("the token was used");
    assert!(
        format!(
            "{}",
            aws_sdk_autoscaling::error::DisplayErrorContext(&stale)
        )
        .contains("No active Lifecycle Action"),
        "{stale:?}"
    );
    assert_eq!(
        asg_instances(autoscaling).await.len(),
        3,
        "no instance was abandoned"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launch_deployed_longer_than_its_hooks_heartbeat_timeout_is_kept_waiting() {
    let fx = Fixture::start().await;
    let config = fx._moto.sdk_config().await;
    let autoscaling = auto_scaling_group(&config).await;
    let first = asg_instances(&autoscaling).await[0].clone();
    let created = fx
        .ok(
            "CreateDeploymentGroup",
            json!({"applicationName": APP, "deploymentGroupName": "asg",
                   "deploymentConfigName": "CodeDeployDefault.AllAtOnce",
                   "autoScalingGroups": ["web-asg"]}),
        )
        .await;
    let hook = format!("gantry-{}", created["deploymentGroupId"].as_str().unwrap());
    take_lifecycle_messages(&fx, 1).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    let v1 = fx.deploy("asg", "v1.tgz").await.unwrap();
    fx.take_commands(&first).await;
    fx.run_host(&v1, &first, None).await;
    assert_eq!(fx.status(&v1).await, "Succeeded");
    // The hook abandons a launch not heard of for 2 s (the stand-in allows less than
    // AWS's 30 s minimum): a deployment to the launch outlasts that many times over.
    autoscaling
        .put_lifecycle_hook()
        .auto_scaling_group_name("web-asg")
        .lifecycle_hook_name(&hook)
        .heartbeat_timeout(2)
        .send()
        .await
        .unwrap();
    let second = scale_to(&autoscaling, 2).await[0].clone();
    let notified = take_lifecycle_messages(&fx, 1).await;
    assert!(lifecycle_event(&fx, &notified).await.is_empty());
    assert_eq!(fx.take_commands(&second).await.len(), 1);
    // The tick looks at the launch's deployment every minute; here a minute passes
    // every real second, so each look comes before the hook's 2 s run out, for 3.5 s,
    // and the host's 5 minutes to start do not.
    let start = std::time::Instant::now();
    let origin = now_ms() + 61_000;
    while start.elapsed() < Duration::from_millis(3_500) {
        let simulated = origin + start.elapsed().as_millis() as u64 * 60;
        batch_advance::tick_at(&fx.control, simulated)
            .await
            .unwrap();
        assert_eq!(
            lifecycle_state(&autoscaling, &second).await.as_deref(),
            Some("Pending:Wait"),
            "the launch still waits for its deployment after {:?}",
            start.elapsed()
        );
    }
}

/// Deleting the group takes its hook off the Auto Scaling group.
async fn the_hook_goes_with_the_group(fx: &Fixture, autoscaling: &aws_sdk_autoscaling::Client) {
    let deleted = fx
        .ok(
            "DeleteDeploymentGroup",
            json!({"applicationName": APP, "deploymentGroupName": "asg"}),
        )
        .await;
    assert_eq!(deleted["hooksNotCleanedUp"], json!([]));
    assert!(
        lifecycle_hook_names(autoscaling).await.is_empty(),
        "the hook is gone"
    );
    // Without it, a launch goes into service at once, and nothing is notified.
    let fourth = scale_to(autoscaling, 4).await[0].clone();
    assert_eq!(
        lifecycle_state(autoscaling, &fourth).await.as_deref(),
        Some("InService")
    );
    assert!(take_lifecycle_messages(fx, 0).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_scaling_groups_need_a_lifecycle_queue() {
    let fx = Fixture::with_settings(|settings| {
        settings.lifecycle_queue_arn = None;
    })
    .await;
    let error = fx
        .call(
            "CreateDeploymentGroup",
            json!({"applicationName": APP, "deploymentGroupName": "asg", "autoScalingGroups": ["web-asg"]}),
        )
        .await
        .unwrap_err();
    assert!(
        error.message.contains("GANTRY_LIFECYCLE_QUEUE_ARN"),
        "{error}"
    );
    assert!(error.message.starts_with("autoScalingGroups"), "{error}");
}

/// Registers `count` on-premises hosts tagged for the fixture's groups, several at once.
async fn register_fleet(fx: &Fixture, count: usize) -> Vec<String> {
    let names: Vec<String> = (0..count).map(|index| format!("host-{index:05}")).collect();
    for chunk in names.chunks(50) {
        let mut tasks = tokio::task::JoinSet::new();
        for name in chunk {
            let control = Arc::clone(&fx.control);
            let input = json!({"operation": "RegisterOnPremisesInstance", "input": {"instanceName": name, "iamSessionArn": session_arn(name)}});
            tasks.spawn(async move { handlers::invoke(&control, "api", input).await });
        }
        while let Some(result) = tasks.join_next().await {
            result.unwrap().expect("register");
        }
    }
    for zone in 0..2 {
        let members: Vec<&String> = names.iter().skip(zone).step_by(2).collect();
        for chunk in members.chunks(100) {
            fx.ok(
                "AddTagsToOnPremisesInstances",
                json!({
                    "instanceNames": chunk,
                    "tags": [
                        {"Key": "role", "Value": "web"},
                        {"Key": "gantry:availability-zone", "Value": format!("zone-{zone}")},
                    ],
                }),
            )
            .await;
        }
    }
    names
}

/// One host's reports as the agent sends them: arrays of up to ten per message.
fn batched_reports(deployment_id: &str, host: &str) -> Vec<String> {
    let reports: Vec<Value> = host_reports(deployment_id, host, None)
        .iter()
        .map(|body| serde_json::from_str(body).unwrap())
        .collect();
    reports
        .chunks(10)
        .map(|chunk| Value::Array(chunk.to_vec()).to_string())
        .collect()
}

/// Plays every host of a fleet until the deployment ends: reads each host's queue, and
/// answers each command with the host's reports, delivered to batch-advance in SQS
/// batches of ten messages. With `shuffle`, each round's messages are shuffled and a
/// third of them delivered twice. Returns the final `deploymentInfo`.
async fn play_fleet(fx: &Fixture, id: &str, hosts: &[String], shuffle: bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut answered = std::collections::BTreeSet::new();
    loop {
        let info = fx.deployment(id).await;
        let status = info["status"].as_str().unwrap().to_owned();
        if status != "InProgress" && status != "Created" {
            return info;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} is still {status}: {info}"
        );
        // Read every unanswered host's queue, a few dozen at once.
        let mut commanded = Vec::new();
        let waiting: Vec<&String> = hosts.iter().filter(|h| !answered.contains(*h)).collect();
        for chunk in waiting.chunks(64) {
            let mut tasks = tokio::task::JoinSet::new();
            for host in chunk {
                let sqs = fx.sqs.clone();
                let queues = fx.control.queues.clone();
                let host = (*host).clone();
                tasks.spawn(async move {
                    let url = queues.url(&host).await.unwrap();
                    let received = sqs
                        .receive_message()
                        .queue_url(&url)
                        .max_number_of_messages(10)
                        .send()
                        .await
                        .unwrap();
                    let found = !received.messages().is_empty();
                    for message in received.messages() {
                        sqs.delete_message()
                            .queue_url(&url)
                            .receipt_handle(message.receipt_handle().unwrap())
                            .send()
                            .await
                            .unwrap();
                    }
                    found.then_some(host)
                });
            }
            while let Some(result) = tasks.join_next().await {
                commanded.extend(result.unwrap());
            }
        }
        let mut bodies: Vec<String> = Vec::new();
        for host in &commanded {
            answered.insert(host.clone());
            bodies.extend(batched_reports(id, host));
        }
        if shuffle && !bodies.is_empty() {
            let again: Vec<String> = bodies.iter().step_by(3).cloned().collect();
            bodies.extend(again);
            for i in (1..bodies.len()).rev() {
                let j = (next() % (i as u64 + 1)) as usize;
                bodies.swap(i, j);
            }
        }
        for chunk in bodies.chunks(10) {
            let failed = fx.deliver(chunk.to_vec()).await;
            assert!(failed.is_empty(), "reports refused: {failed:?}");
        }
    }
}

async fn deploy_to_fleet(hosts: usize, config: &str, shuffle: bool) {
    let fx = Fixture::start().await;
    let names = register_fleet(&fx, hosts).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.group("web", config, json!({})).await;
    let id = fx.deploy("web", "v1.tgz").await.unwrap();
    // AllAtOnce dispatches the whole fleet at once: past a slice, it fans out.
    if config == "CodeDeployDefault.AllAtOnce" && hosts > engine::DISPATCH_SLICE as usize {
        Box::pin(fan_out_lands(&fx, &id, hosts)).await;
    }
    let info = play_fleet(&fx, &id, &names, shuffle).await;
    assert_eq!(info["status"], "Succeeded", "{info}");
    assert_eq!(info["deploymentOverview"]["Succeeded"], hosts, "{info}");
    let listed = list_all(
        &fx,
        "ListDeploymentTargets",
        json!({"deploymentId": id}),
        "targetIds",
    )
    .await;
    assert_eq!(listed.len(), hosts);
    let sample: Vec<&String> = names.iter().step_by((hosts / 7).max(1)).collect();
    let targets = fx
        .ok(
            "BatchGetDeploymentTargets",
            json!({"deploymentId": id, "targetIds": sample}),
        )
        .await;
    for target in targets["deploymentTargets"].as_array().unwrap() {
        let target = &target["instanceTarget"];
        assert_eq!(target["status"], "Succeeded", "{target}");
        let events = target["lifecycleEvents"].as_array().unwrap();
        assert!(
            events.iter().all(|e| e["status"] == "Succeeded"),
            "{target}"
        );
    }
}

/// A dispatch of more hosts than one invocation sends to went out as slices on the
/// lifecycle queue, covering every host once; the lifecycle function sends them.
async fn fan_out_lands(fx: &Fixture, id: &str, hosts: usize) {
    let slice = engine::DISPATCH_SLICE as usize;
    let bodies = take_lifecycle_messages(fx, hosts.div_ceil(slice)).await;
    assert_eq!(bodies.len(), hosts.div_ceil(slice), "{bodies:?}");
    let mut covered = Vec::new();
    for body in &bodies {
        let slice: engine::DispatchSlice = serde_json::from_value(
            serde_json::from_str::<Value>(body).unwrap()["gantryDispatch"].clone(),
        )
        .unwrap();
        assert_eq!(slice.deployment_id, id);
        assert!(
            slice.count as usize <= engine::DISPATCH_SLICE as usize,
            "{slice:?}"
        );
        covered.extend(slice.first..slice.first + slice.count);
    }
    covered.sort_unstable();
    assert_eq!(covered, (0..hosts as u32).collect::<Vec<_>>());
    for batch in bodies.chunks(10) {
        assert!(lifecycle_event(fx, batch).await.is_empty());
    }
}

/// A slice of a dispatch carried out after the deployment stopped (StopDeployment told
/// only the hosts already sent their command to skip the rest): its hosts get their
/// command and then a cancel, so they skip every event and the deployment settles.
#[tokio::test(flavor = "multi_thread")]
async fn a_dispatch_slice_after_a_stop_cancels_what_it_sends() {
    let fx = Fixture::start().await;
    let hosts = engine::DISPATCH_SLICE as usize + 5;
    let names = register_fleet(&fx, hosts).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.group("web", "CodeDeployDefault.AllAtOnce", json!({}))
        .await;
    let id = fx.deploy("web", "v1.tgz").await.unwrap();
    let slices = take_lifecycle_messages(&fx, 2).await;
    assert_eq!(slices.len(), 2, "{slices:?}");
    fx.ok("StopDeployment", json!({"deploymentId": id})).await;
    assert_eq!(fx.status(&id).await, "Stopped");
    assert!(lifecycle_event(&fx, &slices).await.is_empty());
    for host in [&names[0], &names[hosts - 1]] {
        let messages = fx.take_messages(host).await;
        assert!(
            matches!(&messages[..], [HostMessage::Command(_), HostMessage::Cancel(cancel)] if cancel.deployment_id == id),
            "{host}: {messages:?}"
        );
    }
}

/// CodeDeploy takes 1,000 instances in one deployment; so does Gantry, and more.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_hosts_all_at_once_succeed() {
    deploy_to_fleet(1000, "CodeDeployDefault.AllAtOnce", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_hosts_one_at_a_time_succeed() {
    deploy_to_fleet(50, "CodeDeployDefault.OneAtATime", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn all_at_once_with_reports_shuffled_and_duplicated_succeeds() {
    deploy_to_fleet(200, "CodeDeployDefault.AllAtOnce", true).await;
}

/// Launches run beside a user's deployment, as CodeDeploy runs them: none waits on the
/// group's lock (even with HalfAtATime, which a one-instance deployment could not meet),
/// each goes into service when its own deployment succeeds, and when the user's
/// deployment succeeds, the instances that launched during it get its revision in a
/// deployment of their own.
#[tokio::test(flavor = "multi_thread")]
async fn launches_run_beside_a_deployment_and_are_updated_when_it_succeeds() {
    let fx = Fixture::start().await;
    let config = fx._moto.sdk_config().await;
    let autoscaling = auto_scaling_group(&config).await;
    let first = asg_instances(&autoscaling).await[0].clone();
    // In parts: one async body this long overflows a debug build's stack.
    let (hook, v1, v2) = Box::pin(v2_runs_after_v1(&fx, &first)).await;
    let (launched, deployments) =
        Box::pin(launches_during_v2(&fx, &autoscaling, &hook, &v1, &v2)).await;
    Box::pin(v2_succeeds_and_updates_the_launches(
        &fx,
        &first,
        &v2,
        &launched,
        &deployments,
    ))
    .await;
}

/// A group with outdatedInstancesStrategy UPDATE; v1 succeeds and v2 starts on
/// `first`. Returns the group's hook, v1 and v2.
async fn v2_runs_after_v1(fx: &Fixture, first: &str) -> (String, String, String) {
    let created = fx
        .ok(
            "CreateDeploymentGroup",
            json!({
                "applicationName": APP,
                "deploymentGroupName": "asg",
                "autoScalingGroups": ["web-asg"],
                "deploymentConfigName": "CodeDeployDefault.HalfAtATime",
                "outdatedInstancesStrategy": "UPDATE",
            }),
        )
        .await;
    let hook = format!("gantry-{}", created["deploymentGroupId"].as_str().unwrap());
    let test = take_lifecycle_messages(fx, 1).await;
    assert_eq!(body(&test[0])["Event"], "autoscaling:TEST_NOTIFICATION");
    let create = |key: &str| {
        json!({
            "applicationName": APP,
            "deploymentGroupName": "asg",
            "deploymentConfigName": "CodeDeployDefault.OneAtATime",
            "revision": {"revisionType": "S3", "s3Location": {"bucket": BUCKET, "key": key, "bundleType": "tgz"}},
        })
    };
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.upload("v2.tgz", &good_bundle("2")).await;
    let v1 = fx.ok("CreateDeployment", create("v1.tgz")).await["deploymentId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(fx.take_commands(first).await.len(), 1);
    fx.run_host(&v1, first, None).await;
    assert_eq!(fx.status(&v1).await, "Succeeded");

    // v2 starts and holds the group; three instances launch while it runs, and wait
    // on the hook.
    let v2 = fx.ok("CreateDeployment", create("v2.tgz")).await["deploymentId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(fx.take_commands(first).await.len(), 1);
    (hook, v1, v2)
}

/// Three instances launch while v2 runs: each gets v1 in a deployment of its own and
/// goes into service. Returns them, and the group's deployments.
async fn launches_during_v2(
    fx: &Fixture,
    autoscaling: &aws_sdk_autoscaling::Client,
    hook: &str,
    v1: &str,
    v2: &str,
) -> (Vec<String>, Vec<String>) {
    let mut launched = scale_to(autoscaling, 4).await;
    launched.sort();
    for instance in &launched {
        assert_eq!(
            lifecycle_state(autoscaling, instance).await.as_deref(),
            Some("Pending:Wait")
        );
    }
    let notifications = take_lifecycle_messages(fx, 3).await;
    let mut notified: Vec<String> = notifications
        .iter()
        .map(|message| launch_of(message, hook, "asg").0)
        .collect();
    notified.sort();
    assert_eq!(notified, launched, "a notification per launch");
    assert!(
        lifecycle_event(fx, &notifications).await.is_empty(),
        "no launch waits for the group's lock"
    );
    let deployments = group_deployments(fx, "asg").await;
    assert_eq!(deployments.len(), 5, "v1, v2 and a deployment per launch");
    let mut launches = Vec::new();
    for instance in &launched {
        let commands = fx.take_commands(instance).await;
        assert_eq!(commands.len(), 1, "{instance} is deploying");
        assert_eq!(
            json!(commands[0].revision)["s3Location"]["key"],
            "v1.tgz",
            "a launch gets the group's last successful revision"
        );
        fx.run_host(&commands[0].deployment_id, instance, None)
            .await;
        let launch = fx.deployment(&commands[0].deployment_id).await;
        assert_eq!(launch["status"], "Succeeded", "{launch}");
        assert_eq!(launch["creator"], "autoscaling");
        launches.push(commands[0].deployment_id.clone());
    }
    // Each launch's end comes back on the lifecycle queue, and its instance goes into
    // service.
    let finished = take_lifecycle_messages(fx, 3).await;
    let mut ended: Vec<String> = finished
        .iter()
        .map(|message| {
            body(message)["gantryDeploymentFinished"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    ended.sort();
    launches.sort();
    assert_eq!(ended, launches);
    assert!(lifecycle_event(fx, &finished).await.is_empty());
    for instance in &launched {
        assert_eq!(
            lifecycle_state(autoscaling, instance).await.as_deref(),
            Some("InService"),
            "{instance}"
        );
    }
    assert_eq!(
        fx.status(v2).await,
        "InProgress",
        "the launches left v2 alone"
    );
    let group = fx
        .ok(
            "GetDeploymentGroup",
            json!({"applicationName": APP, "deploymentGroupName": "asg"}),
        )
        .await;
    assert_eq!(
        group["deploymentGroupInfo"]["lastSuccessfulDeployment"]["deploymentId"], v1,
        "a launch is not the group's last successful deployment"
    );
    (launched, deployments)
}

/// v2 succeeds: the three that launched during it are brought up to v2.
async fn v2_succeeds_and_updates_the_launches(
    fx: &Fixture,
    first: &str,
    v2: &str,
    launched: &[String],
    deployments: &[String],
) {
    fx.run_host(v2, first, None).await;
    assert_eq!(fx.status(v2).await, "Succeeded");
    let all = group_deployments(fx, "asg").await;
    let follow_on = all
        .iter()
        .find(|id| !deployments.contains(id))
        .expect("a follow-on deployment")
        .clone();
    assert_eq!(all.len(), 6, "one follow-on deployment");
    let info = fx.deployment(&follow_on).await;
    assert_eq!(info["creator"], "CodeDeployAutoUpdate", "{info}");
    assert_eq!(info["revision"]["s3Location"]["key"], "v2.tgz");
    // Each names the other, as CodeDeploy's relatedDeployments do.
    assert_eq!(
        info["relatedDeployments"],
        json!({"autoUpdateOutdatedInstancesRootDeploymentId": v2}),
        "{info}"
    );
    let root = fx.deployment(v2).await;
    assert_eq!(
        root["relatedDeployments"],
        json!({"autoUpdateOutdatedInstancesDeploymentIds": [follow_on]}),
        "{root}"
    );
    let targets = fx
        .ok("ListDeploymentTargets", json!({"deploymentId": follow_on}))
        .await;
    let mut targeted: Vec<String> = serde_json::from_value(targets["targetIds"].clone()).unwrap();
    targeted.sort();
    assert_eq!(
        targeted, launched,
        "only the instances that launched during v2"
    );

    // The follow-on runs (OneAtATime, v2's configuration) and succeeds; the group is
    // then all on v2, and nothing more is deployed.
    let mut updated = Vec::new();
    while updated.len() < launched.len() {
        let sent = fx
            .dispatched(&launched.iter().map(String::as_str).collect::<Vec<_>>())
            .await;
        assert_eq!(sent.len(), 1, "one at a time: {sent:?}");
        fx.run_host(&follow_on, &sent[0], None).await;
        updated.push(sent[0].clone());
    }
    assert_eq!(fx.status(&follow_on).await, "Succeeded");
    assert!(fx.take_commands(first).await.is_empty());
    assert_eq!(
        group_deployments(fx, "asg").await.len(),
        6,
        "an update of outdated instances makes none of its own"
    );
    assert!(
        take_lifecycle_messages(fx, 0).await.is_empty(),
        "it completes no launch"
    );
}

/// A launch whose deployment cannot be made is answered ABANDON at once, rather than
/// left in Pending:Wait until the hook times out: Auto Scaling terminates the instance
/// and launches another in its place.
#[tokio::test(flavor = "multi_thread")]
async fn a_launch_that_cannot_be_deployed_is_abandoned_at_once() {
    let fx = Fixture::start().await;
    let config = fx._moto.sdk_config().await;
    let autoscaling = auto_scaling_group(&config).await;
    let first = asg_instances(&autoscaling).await[0].clone();
    let created = fx
        .ok(
            "CreateDeploymentGroup",
            json!({"applicationName": APP, "deploymentGroupName": "asg", "autoScalingGroups": ["web-asg"]}),
        )
        .await;
    let hook = format!("gantry-{}", created["deploymentGroupId"].as_str().unwrap());
    fx.upload("v1.tgz", &good_bundle("1")).await;
    let v1 = fx.deploy("asg", "v1.tgz").await.unwrap();
    fx.run_host(&v1, &first, None).await;
    assert_eq!(fx.status(&v1).await, "Succeeded");
    // The revision's bundle is deleted: nothing can be deployed to a new instance.
    fx.s3
        .delete_object()
        .bucket(BUCKET)
        .key("v1.tgz")
        .send()
        .await
        .unwrap();
    let second = scale_to(&autoscaling, 2).await[0].clone();
    assert_eq!(
        lifecycle_state(&autoscaling, &second).await.as_deref(),
        Some("Pending:Wait")
    );
    // The queue holds the hook's test notification and the launch's; the SQS event
    // source delivers both.
    let messages = take_lifecycle_messages(&fx, 2).await;
    assert_eq!(body(&messages[0])["Event"], "autoscaling:TEST_NOTIFICATION");
    let (instance, _) = launch_of(&messages[1], &hook, "asg");
    assert_eq!(instance, second);
    assert!(lifecycle_event(&fx, &messages).await.is_empty());
    assert_eq!(
        group_deployments(&fx, "asg").await,
        vec![v1],
        "no deployment could be made"
    );

    // Abandoned: the instance left the group and was terminated, and Auto Scaling
    // launched a replacement, which waits on the hook in turn.
    assert_eq!(lifecycle_state(&autoscaling, &second).await, None);
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let described = ec2
        .describe_instances()
        .instance_ids(&second)
        .send()
        .await
        .unwrap();
    let state = described.reservations()[0].instances()[0]
        .state()
        .and_then(|s| s.name())
        .unwrap()
        .as_str()
        .to_owned();
    assert!(
        state == "terminated" || state == "shutting-down",
        "{second} is {state}"
    );
    let instances = asg_instances(&autoscaling).await;
    assert_eq!(instances.len(), 2, "{instances:?}");
    let replacement = instances
        .into_iter()
        .find(|id| *id != first)
        .expect("a replacement");
    assert_ne!(replacement, second);
    assert_eq!(
        lifecycle_state(&autoscaling, &replacement).await.as_deref(),
        Some("Pending:Wait")
    );
    let notified = take_lifecycle_messages(&fx, 1).await;
    assert_eq!(launch_of(&notified[0], &hook, "asg").0, replacement);
    assert_eq!(
        lifecycle_state(&autoscaling, &first).await.as_deref(),
        Some("InService"),
        "the instance in service is left alone"
    );
}

/// Every item of a List operation, page by page; each page holds at most 100.
async fn list_all(fx: &Fixture, operation: &str, mut input: Value, field: &str) -> Vec<String> {
    let mut items = Vec::new();
    loop {
        let page = fx.ok(operation, input.clone()).await;
        let got: Vec<String> = serde_json::from_value(page[field].clone()).unwrap();
        assert!(got.len() <= 100, "{operation}: a page of {}", got.len());
        items.extend(got);
        match page["nextToken"].as_str() {
            Some(token) => input["nextToken"] = json!(token),
            None => return items,
        }
    }
}

/// ListDeployments pages as CodeDeploy's does: 250 deployments come back in pages of at
/// most 100, newest first, none missed or repeated; filters by status and create time,
/// and lists an application's deployments without a group.
#[tokio::test(flavor = "multi_thread")]
async fn deployments_are_listed_page_by_page() {
    let fx = Fixture::start().await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    // No instance matches the group, so each deployment fails at once (NO_INSTANCES) and
    // the next may start.
    fx.group("empty", "CodeDeployDefault.AllAtOnce", json!({"onPremisesInstanceTagFilters": [{"Key": "role", "Value": "nobody", "Type": "KEY_AND_VALUE"}]}))
        .await;
    let mut created = Vec::new();
    for _ in 0..250 {
        created.push(fx.deploy("empty", "v1.tgz").await.unwrap());
    }
    let group = json!({"applicationName": APP, "deploymentGroupName": "empty"});
    let first = fx.ok("ListDeployments", group.clone()).await;
    assert_eq!(first["deployments"].as_array().unwrap().len(), 100);
    let listed = list_all(&fx, "ListDeployments", group.clone(), "deployments").await;
    let mut newest_first = created.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first, "every deployment once, newest first");

    let mut by_application = json!({"applicationName": APP});
    assert_eq!(
        list_all(
            &fx,
            "ListDeployments",
            by_application.clone(),
            "deployments"
        )
        .await,
        newest_first
    );
    let mut failed = group.clone();
    failed["includeOnlyStatuses"] = json!(["Failed"]);
    assert_eq!(
        list_all(&fx, "ListDeployments", failed, "deployments").await,
        newest_first
    );
    let mut succeeded = group.clone();
    succeeded["includeOnlyStatuses"] = json!(["Succeeded"]);
    assert!(
        list_all(&fx, "ListDeployments", succeeded, "deployments")
            .await
            .is_empty()
    );

    // Created from the 101st deployment on.
    let from = fx.deployment(&created[100]).await["createTime"]
        .as_f64()
        .unwrap();
    by_application["createTimeRange"] = json!({"start": from});
    let recent = list_all(&fx, "ListDeployments", by_application, "deployments").await;
    assert_eq!(recent, newest_first[..150].to_vec());

    let mut bad = group.clone();
    bad["nextToken"] = json!("not-a-token");
    let error = fx.call("ListDeployments", bad).await.unwrap_err();
    assert_eq!(error.code, "InvalidNextTokenException");
    let too_many: Vec<String> = created[..26].to_vec();
    let error = fx
        .call("BatchGetDeployments", json!({"deploymentIds": too_many}))
        .await
        .unwrap_err();
    assert_eq!(error.code, "BatchLimitExceededException");
    assert!(
        error.message.contains("deploymentIds: at most 25"),
        "{error}"
    );
}

/// A trigger whose topic was deleted blocks nothing: the failed deployment ends, its
/// rollback starts and ends, and the group takes the next deployment.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_trigger_topic_leaves_nothing_locked() {
    let fx = Fixture::start().await;
    let config = fx._moto.sdk_config().await;
    let sns = aws_sdk_sns::Client::new(&config);
    let topic = sns
        .create_topic()
        .name("soon-gone")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    fx.hosts(&["web-1", "web-2"]).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.upload("v2.tgz", &good_bundle("2")).await;
    fx.group(
        "web",
        "CodeDeployDefault.AllAtOnce",
        json!({
            "autoRollbackConfiguration": {"enabled": true, "events": ["DEPLOYMENT_FAILURE"]},
            "triggerConfigurations": [{
                "triggerName": "ops",
                "triggerTargetArn": topic,
                "triggerEvents": ["DeploymentStart", "DeploymentSuccess", "DeploymentFailure", "DeploymentRollback", "InstanceStart", "InstanceSuccess", "InstanceFailure"],
            }],
        }),
    )
    .await;
    let good = fx.deploy("web", "v1.tgz").await.unwrap();
    for host in fx.dispatched(&["web-1", "web-2"]).await {
        fx.run_host(&good, &host, None).await;
    }
    assert_eq!(fx.status(&good).await, "Succeeded");

    sns.delete_topic().topic_arn(&topic).send().await.unwrap();
    let bad = fx.deploy("web", "v2.tgz").await.unwrap();
    let sent = fx.dispatched(&["web-1", "web-2"]).await;
    assert_eq!(
        sent.len(),
        2,
        "commands go out whatever the notifications do"
    );
    for host in sent {
        fx.run_host(&bad, &host, Some(LifecycleEvent::ValidateService))
            .await;
    }
    let info = fx.deployment(&bad).await;
    assert_eq!(info["status"], "Failed", "{info}");
    // The deployment shows what was not sent: one record for the trigger, however
    // many of its notifications were refused.
    let failed = info["failedEffects"]
        .as_array()
        .expect("failedEffects shown");
    assert_eq!(failed.len(), 1, "{info}");
    let effect = failed[0]["effect"].as_str().unwrap();
    assert!(
        effect.contains("trigger ops") && effect.contains(&topic),
        "{effect}"
    );
    assert!(failed[0]["failures"].as_u64().unwrap() >= 4, "{info}");
    assert!(fx.deployment(&good).await.get("failedEffects").is_none());
    let rollback = info["rollbackInfo"]["rollbackDeploymentId"]
        .as_str()
        .expect("the rollback started")
        .to_owned();
    for host in fx.dispatched(&["web-1", "web-2"]).await {
        fx.run_host(&rollback, &host, None).await;
    }
    assert_eq!(fx.status(&rollback).await, "Succeeded");
    let next = fx.deploy("web", "v1.tgz").await;
    assert!(next.is_ok(), "the group is not locked: {next:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_on_premises_instance_registers_with_exactly_one_iam_identity_of_its_own() {
    let fx = Fixture::start().await;
    let user_arn = "arn:aws:iam::123456789012:user/web-9";
    let cases = [
        (
            json!({"instanceName": "web-9"}),
            "IamArnRequiredException",
            "iamUserArn or iamSessionArn",
        ),
        (
            json!({"instanceName": "web-9", "iamUserArn": user_arn, "iamSessionArn": session_arn("web-9")}),
            "MultipleIamArnsProvidedException",
            "iamUserArn, iamSessionArn",
        ),
        (
            json!({"instanceName": "web-9", "iamUserArn": "web-9"}),
            "InvalidIamUserArnException",
            "iamUserArn",
        ),
        (
            json!({"instanceName": "web-9", "iamUserArn": user_arn}),
            "InvalidIamUserArnException",
            "no user",
        ),
        (
            json!({"instanceName": "web-9", "iamSessionArn": "arn:aws:sts::123456789012:assumed-role/nobody/web-9"}),
            "InvalidIamSessionArnException",
            "no role",
        ),
    ];
    for (input, code, says) in cases {
        let error = fx
            .call("RegisterOnPremisesInstance", input.clone())
            .await
            .unwrap_err();
        assert_eq!(error.code, code, "{input}: {error}");
        assert!(error.message.contains(says), "{input}: {error}");
    }
    // Nothing was registered by the refusals.
    let listed = fx.ok("ListOnPremisesInstances", json!({})).await;
    assert_eq!(listed["instanceNames"], json!([]), "{listed}");

    fx.hosts(&["web-1"]).await;
    let info = fx
        .ok("GetOnPremisesInstance", json!({"instanceName": "web-1"}))
        .await["instanceInfo"]
        .clone();
    assert_eq!(info["iamSessionArn"], session_arn("web-1"), "{info}");
    assert!(
        info.get("senderId").is_none(),
        "Gantry's own field stays inside: {info}"
    );
    // web-1's queue is its identity's alone (the host policy's condition reads the tag).
    let web_1 = Some(format!("{}:web-1", fx.host_role_id));
    assert_eq!(queue_sender(&fx, "web-1").await, web_1);
    // Another instance with web-1's identity could report for it.
    let error = fx
        .call(
            "RegisterOnPremisesInstance",
            json!({"instanceName": "web-2", "iamSessionArn": session_arn("web-1")}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.code, "IamSessionArnAlreadyRegisteredException",
        "{error}"
    );
    assert!(error.message.contains("\"web-1\""), "{error}");
    // Another spelling of the same identity is the same identity.
    let other_spelling = session_arn("web-1").replace("arn:aws:", "arn:aws-us-gov:");
    let error = fx
        .call(
            "RegisterOnPremisesInstance",
            json!({"instanceName": "web-2", "iamSessionArn": other_spelling}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.code, "IamSessionArnAlreadyRegisteredException",
        "{error}"
    );
    // An on-premises name shaped like an EC2 id would share that instance's queue.
    let error = fx
        .call(
            "RegisterOnPremisesInstance",
            json!({"instanceName": "i-0123456789abcdef0", "iamSessionArn": session_arn("i-0123456789abcdef0")}),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code, "InvalidInstanceNameException", "{error}");
    let error = fx
        .call(
            "RegisterOnPremisesInstance",
            json!({"instanceName": "web-1", "iamSessionArn": session_arn("web-3")}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.code, "InstanceNameAlreadyRegisteredException",
        "{error}"
    );
    // Deregistering frees the identity for a new instance, and takes it off the queue.
    fx.ok(
        "DeregisterOnPremisesInstance",
        json!({"instanceName": "web-1"}),
    )
    .await;
    assert_eq!(queue_sender(&fx, "web-1").await, None);
    fx.ok(
        "RegisterOnPremisesInstance",
        json!({"instanceName": "web-2", "iamSessionArn": session_arn("web-1")}),
    )
    .await;
    // And a deregistered name may be registered again, with an identity of its own.
    fx.ok(
        "RegisterOnPremisesInstance",
        json!({"instanceName": "web-1", "iamSessionArn": session_arn("web-3")}),
    )
    .await;
    let info = fx
        .ok("GetOnPremisesInstance", json!({"instanceName": "web-1"}))
        .await["instanceInfo"]
        .clone();
    assert_eq!(info["iamSessionArn"], session_arn("web-3"), "{info}");
    assert!(info.get("deregisterTime").is_none(), "{info}");
    let web_3 = Some(format!("{}:web-3", fx.host_role_id));
    assert_eq!(queue_sender(&fx, "web-1").await, web_3);
    assert_eq!(queue_sender(&fx, "web-2").await, web_1);
    let error = fx
        .call(
            "RegisterOnPremisesInstance",
            json!({"instanceName": "web-1", "iamSessionArn": session_arn("web-4")}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.code, "InstanceNameAlreadyRegisteredException",
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_that_can_never_apply_are_dropped_not_retried() {
    let fx = Fixture::start().await;
    fx.hosts(&["web-1"]).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.group("web", "CodeDeployDefault.AllAtOnce", json!({}))
        .await;
    let id = fx.deploy("web", "v1.tgz").await.unwrap();
    let web_1 = format!("{}:web-1", fx.host_role_id);
    let mut flood = Vec::new();
    // From a real host's identity, for deployments that do not exist.
    for n in 0..20 {
        for body in host_reports(&format!("d-FLOOD{n:04}"), "web-1", None) {
            flood.push((web_1.clone(), body));
        }
    }
    // For an instance that is not a target of a deployment that exists.
    let web_99 = format!("{}:web-99", fx.host_role_id);
    for body in host_reports(&id, "web-99", None) {
        flood.push((web_99.clone(), body));
    }
    // From no identity SQS gives.
    for body in host_reports(&id, "web-1", None) {
        flood.push(("web-1".to_owned(), body));
    }
    assert_eq!(
        fx.deliver_from(flood).await,
        Vec::<String>::new(),
        "nothing comes back to be tried again"
    );
    // The honest deployment is untouched by it, and goes on.
    assert_eq!(fx.control.store.forged_reports(&id).await.unwrap(), 0);
    assert_eq!(
        fx.deployment(&id).await["deploymentOverview"]["InProgress"],
        1
    );
    fx.run_host(&id, "web-1", None).await;
    assert_eq!(fx.status(&id).await, "Succeeded");
}

/// The identity a host's command queue is tagged for.
async fn queue_sender(fx: &Fixture, instance: &str) -> Option<String> {
    let url = fx
        .sqs
        .get_queue_url()
        .queue_name(fx.control.queues.queue_name(instance))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let tags = fx
        .sqs
        .list_queue_tags()
        .queue_url(url)
        .send()
        .await
        .unwrap();
    tags.tags
        .unwrap_or_default()
        .remove(gantry_functions::adapters::SENDER_ID_TAG)
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_sent_by_another_identity_are_dropped_and_counted() {
    let fx = Fixture::start().await;
    fx.hosts(&["web-1", "web-2"]).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.group("web", "CodeDeployDefault.AllAtOnce", json!({}))
        .await;
    let id = fx.deploy("web", "v1.tgz").await.unwrap();
    // web-1's identity speaks for web-2, and someone with the account's other keys for
    // web-1: neither is retried (nothing would change), neither counts.
    let web_1 = format!("{}:web-1", fx.host_role_id);
    let forged: Vec<(String, String)> = host_reports(&id, "web-2", None)
        .into_iter()
        .map(|body| (web_1.clone(), body))
        .chain(
            host_reports(&id, "web-1", None)
                .into_iter()
                .map(|body| ("AIDAIT2UOQQY3AUEKVGXU".to_owned(), body)),
        )
        .collect();
    let count = forged.len();
    assert_eq!(fx.deliver_from(forged).await, Vec::<String>::new());
    let info = fx.deployment(&id).await;
    assert_eq!(info["status"], "InProgress", "{info}");
    assert_eq!(info["deploymentOverview"]["InProgress"], 2, "{info}");
    let targets = fx
        .ok(
            "BatchGetDeploymentTargets",
            json!({"deploymentId": id, "targetIds": ["web-1", "web-2"]}),
        )
        .await;
    for target in targets["deploymentTargets"].as_array().unwrap() {
        let events = target["instanceTarget"]["lifecycleEvents"]
            .as_array()
            .unwrap();
        assert!(events.iter().all(|e| e["status"] == "Pending"), "{target}");
    }
    assert_eq!(
        fx.control.store.forged_reports(&id).await.unwrap(),
        count as u64
    );
    // The hosts' own reports still count.
    fx.run_host(&id, "web-1", None).await;
    fx.run_host(&id, "web-2", None).await;
    assert_eq!(fx.status(&id).await, "Succeeded");
}

/// A bundle whose ApplicationStop script may run `stop_timeout` seconds (none without).
fn bundle_with_stop(version: &str, stop_timeout: Option<u32>) -> Vec<Entry> {
    let stop = stop_timeout
        .map(|timeout| {
            format!(
                "  ApplicationStop:\n    - location: scripts/stop.sh\n      timeout: {timeout}\n"
            )
        })
        .unwrap_or_default();
    let appspec = format!(
        "version: 0.0\nos: linux\nfiles:\n  - source: app/\n    destination: /srv/shop\nhooks:\n{stop}  ValidateService:\n    - location: scripts/validate.sh\n      timeout: 30\n"
    );
    vec![
        Entry::file("appspec.yml", appspec.as_bytes()),
        Entry::file("app/version.txt", version.as_bytes()),
        Entry::file_with_mode("scripts/stop.sh", b"#!/bin/sh\nexit 0\n", 0o755),
        Entry::file_with_mode("scripts/validate.sh", b"#!/bin/sh\nexit 0\n", 0o755),
    ]
}

/// When the tick will fail a host, as stored (`dueAt` of its record).
async fn host_due_at(fx: &Fixture, id: &str, host: &str) -> u64 {
    let item = aws_sdk_dynamodb::Client::new(&fx._moto.sdk_config().await)
        .get_item()
        .table_name("gantry")
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("DEPLOYMENT#{id}")),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("TARGET#{host}")),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap_or_else(|| panic!("no record of {host} in {id}"));
    item["dueAt"].as_n().unwrap().parse().unwrap()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn application_stop_gets_the_timeout_of_the_revision_whose_script_runs() {
    let fx = Fixture::start().await;
    fx.hosts(&["web-1"]).await;
    fx.upload("v1.tgz", &bundle_with_stop("1", Some(600))).await;
    fx.upload("v2.tgz", &bundle_with_stop("2", None)).await;
    fx.group("web", "CodeDeployDefault.AllAtOnce", json!({}))
        .await;
    let first = fx.deploy("web", "v1.tgz").await.unwrap();
    fx.run_host(&first, "web-1", None).await;
    assert_eq!(fx.status(&first).await, "Succeeded");

    // v2 has no ApplicationStop hook, but the host runs v1's, which may take 10 minutes.
    let second = fx.deploy("web", "v2.tgz").await.unwrap();
    let started = host_reports(&second, "web-1", None).remove(0);
    assert!(
        started.contains("ApplicationStop") && started.contains("InProgress"),
        "{started}"
    );
    let before = now_ms();
    assert!(fx.deliver(vec![started]).await.is_empty());
    let due = host_due_at(&fx, &second, "web-1").await;
    // 600 s of v1's script and the fixture's 60 s of slack; v2's appspec alone gave 60 s.
    assert!(
        due >= before + 660_000,
        "due {} s after the report",
        (due - before) / 1000
    );
}

/// Host web-1 in group "web" (all at once, rolled back on failure), v1 and v2 uploaded.
async fn rollback_fixture() -> Fixture {
    let fx = Fixture::start().await;
    fx.hosts(&["web-1"]).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.upload("v2.tgz", &good_bundle("2")).await;
    fx.group(
        "web",
        "CodeDeployDefault.AllAtOnce",
        json!({"autoRollbackConfiguration": {"enabled": true, "events": ["DEPLOYMENT_FAILURE"]}}),
    )
    .await;
    fx
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_installs_with_the_restored_deployments_file_exists_behavior() {
    let fx = rollback_fixture().await;
    let create = |key: &str, behavior: &str| {
        json!({
            "applicationName": APP, "deploymentGroupName": "web", "fileExistsBehavior": behavior,
            "revision": {"revisionType": "S3", "s3Location": {"bucket": BUCKET, "key": key, "bundleType": "tgz"}},
        })
    };
    let good = handlers::invoke(
        &fx.control,
        "create-deployment",
        create("v1.tgz", "OVERWRITE"),
    )
    .await
    .unwrap()["deploymentId"]
        .as_str()
        .unwrap()
        .to_owned();
    fx.run_host(&good, "web-1", None).await;
    let bad = handlers::invoke(
        &fx.control,
        "create-deployment",
        create("v2.tgz", "DISALLOW"),
    )
    .await
    .unwrap()["deploymentId"]
        .as_str()
        .unwrap()
        .to_owned();
    fx.take_commands("web-1").await;
    fx.run_host(&bad, "web-1", Some(LifecycleEvent::ValidateService))
        .await;
    let info = fx.deployment(&bad).await;
    assert_eq!(info["status"], "Failed", "{info}");
    let rollback = info["rollbackInfo"]["rollbackDeploymentId"]
        .as_str()
        .expect("a rollback")
        .to_owned();
    let commands = fx.take_commands("web-1").await;
    assert_eq!(commands.len(), 1, "{commands:?}");
    assert_eq!(commands[0].deployment_id, rollback);
    assert_eq!(commands[0].file_exists_behavior.name(), "OVERWRITE");
    assert_eq!(
        fx.deployment(&rollback).await["fileExistsBehavior"],
        "OVERWRITE"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_waits_for_its_deployments_lock_instead_of_giving_up() {
    let fx = rollback_fixture().await;
    let good = fx.deploy("web", "v1.tgz").await.unwrap();
    fx.run_host(&good, "web-1", None).await;
    let bad = fx.deploy("web", "v2.tgz").await.unwrap();
    // As when its lock's release failed for now: the deployment that needs a rollback
    // still holds the group when the rollback is asked for.
    let record = fx
        .control
        .store
        .load_deployment::<DeploymentSpec>(&bad)
        .await
        .unwrap();
    let error = Box::pin(gantry_functions::deploy::start_rollback(
        &fx.control,
        &record,
    ))
    .await
    .expect_err("tried again later, not given up");
    assert_eq!(
        error.code,
        gantry_functions::error::Exception::ConcurrentModification,
        "{error}"
    );
    let info = fx.deployment(&bad).await;
    assert!(
        info["rollbackInfo"].is_null(),
        "no rollback message: {info}"
    );
    // Once the lock is released, the retry creates the rollback.
    assert!(
        fx.control
            .store
            .unlock_group(APP, "web", &bad)
            .await
            .unwrap()
    );
    let created = Box::pin(gantry_functions::deploy::start_rollback(
        &fx.control,
        &record,
    ))
    .await
    .unwrap()
    .expect("a rollback");
    let info = fx.deployment(&bad).await;
    assert_eq!(
        info["rollbackInfo"]["rollbackDeploymentId"],
        created.record.spec.deployment_id.as_str(),
        "{info}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_on_the_last_successful_revision_go_after_those_on_any_other() {
    let fx = Fixture::start().await;
    fx.hosts(&["web-1", "web-2"]).await;
    for version in ["1", "2"] {
        fx.upload(&format!("v{version}.tgz"), &good_bundle(version))
            .await;
    }
    fx.group("web", "CodeDeployDefault.OneAtATime", json!({}))
        .await;
    let first = fx.deploy("web", "v1.tgz").await.unwrap();
    for host in ["web-1", "web-2"] {
        assert_eq!(
            fx.dispatched(&["web-1", "web-2"]).await,
            vec![host.to_owned()]
        );
        fx.run_host(&first, host, None).await;
    }
    assert_eq!(fx.status(&first).await, "Succeeded");
    // web-1 gets v2, then the deployment stops: v1 stays the last successful revision.
    let second = fx.deploy("web", "v2.tgz").await.unwrap();
    assert_eq!(
        fx.dispatched(&["web-1", "web-2"]).await,
        vec!["web-1".to_owned()]
    );
    fx.run_host(&second, "web-1", None).await;
    fx.ok("StopDeployment", json!({"deploymentId": second}))
        .await;
    fx.dispatched(&["web-1", "web-2"]).await;
    // Deploying v2 again: web-2, on the last successful revision, goes last, though
    // web-1 already runs v2 (CodeDeploy's "current" is the last successful revision).
    let third = fx.deploy("web", "v2.tgz").await.unwrap();
    assert_eq!(
        fx.dispatched(&["web-1", "web-2"]).await,
        vec!["web-1".to_owned()]
    );
    fx.run_host(&third, "web-1", None).await;
    assert_eq!(
        fx.dispatched(&["web-1", "web-2"]).await,
        vec!["web-2".to_owned()]
    );
}

/// The exception an operation answers with.
async fn error_code(fx: &Fixture, operation: &str, input: Value) -> String {
    match fx.call(operation, input.clone()).await {
        Ok(output) => panic!("{operation} {input} answered {output}"),
        Err(error) => error.code.name().to_owned(),
    }
}

async fn deployment_group(fx: &Fixture, name: &str) -> Value {
    fx.ok(
        "GetDeploymentGroup",
        json!({"applicationName": APP, "deploymentGroupName": name}),
    )
    .await["deploymentGroupInfo"]
        .clone()
}

/// ContinueDeployment answers as CodeDeploy does for in-place deployments (Gantry's only
/// kind): the id is checked, a running deployment does not support the action, and an
/// ended one is already completed.
#[tokio::test(flavor = "multi_thread")]
async fn continue_deployment_answers_as_codedeploy_does_for_in_place_deployments() {
    let fx = Fixture::start().await;
    fx.hosts(&HOSTS[..1]).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.group("web", "CodeDeployDefault.OneAtATime", json!({}))
        .await;
    let id = fx.deploy("web", "v1.tgz").await.unwrap();
    for (input, expected) in [
        (json!({}), "DeploymentIdRequiredException"),
        (
            json!({"deploymentId": "not-an-id"}),
            "InvalidDeploymentIdException",
        ),
        (
            json!({"deploymentId": "d-NOSUCH123"}),
            "DeploymentDoesNotExistException",
        ),
        (
            json!({"deploymentId": id, "deploymentWaitType": "SOON"}),
            "InvalidDeploymentWaitTypeException",
        ),
        (
            json!({"deploymentId": id, "deploymentWaitType": "READY_WAIT"}),
            "UnsupportedActionForDeploymentTypeException",
        ),
        (
            json!({"deploymentId": id}),
            "UnsupportedActionForDeploymentTypeException",
        ),
    ] {
        assert_eq!(
            error_code(&fx, "ContinueDeployment", input.clone()).await,
            expected,
            "{input}"
        );
    }
    fx.ok("StopDeployment", json!({"deploymentId": id})).await;
    assert_eq!(
        error_code(
            &fx,
            "ContinueDeployment",
            json!({"deploymentId": id, "deploymentWaitType": "TERMINATION_WAIT"})
        )
        .await,
        "DeploymentAlreadyCompletedException"
    );
}

/// A custom configuration a group uses cannot be deleted (the error names the groups);
/// once no group uses it, it can. Predefined ones never can.
#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_config_in_use_cannot_be_deleted() {
    let fx = Fixture::start().await;
    fx.ok(
        "CreateDeploymentConfig",
        json!({"deploymentConfigName": "TwoHealthy", "minimumHealthyHosts": {"type": "HOST_COUNT", "value": 2}}),
    )
    .await;
    fx.group("web", "TwoHealthy", json!({})).await;
    fx.group("api", "TwoHealthy", json!({})).await;
    let delete = json!({"deploymentConfigName": "TwoHealthy"});
    let error = fx
        .call("DeleteDeploymentConfig", delete.clone())
        .await
        .unwrap_err();
    assert_eq!(error.code, "DeploymentConfigInUseException");
    assert!(
        error.message.contains("shop/web") && error.message.contains("shop/api"),
        "{error}"
    );
    for group in ["web", "api"] {
        fx.ok(
            "UpdateDeploymentGroup",
            json!({"applicationName": APP, "currentDeploymentGroupName": group, "deploymentConfigName": "CodeDeployDefault.AllAtOnce"}),
        )
        .await;
    }
    fx.ok("DeleteDeploymentConfig", delete.clone()).await;
    assert_eq!(
        error_code(&fx, "GetDeploymentConfig", delete).await,
        "DeploymentConfigDoesNotExistException"
    );
    assert_eq!(
        error_code(
            &fx,
            "DeleteDeploymentConfig",
            json!({"deploymentConfigName": "CodeDeployDefault.OneAtATime"})
        )
        .await,
        "InvalidOperationException"
    );
}

/// UpdateDeploymentGroup follows CodeDeploy's rule for targets: a field left out keeps
/// what the group has, an empty list removes it. The Auto Scaling group's launch hook
/// stays while the group lists it and goes when an update removes it.
#[tokio::test(flavor = "multi_thread")]
async fn updating_a_group_keeps_the_targets_it_leaves_out_and_removes_those_given_empty() {
    let fx = Fixture::start().await;
    let config = fx._moto.sdk_config().await;
    let autoscaling = auto_scaling_group(&config).await;
    fx.group(
        "web",
        "CodeDeployDefault.OneAtATime",
        json!({
            "autoScalingGroups": ["web-asg"],
            "autoRollbackConfiguration": {"enabled": true, "events": ["DEPLOYMENT_FAILURE"]},
        }),
    )
    .await;
    assert_eq!(lifecycle_hook_names(&autoscaling).await.len(), 1);
    let update = |changes: Value| {
        let mut input = json!({"applicationName": APP, "currentDeploymentGroupName": "web"});
        input
            .as_object_mut()
            .unwrap()
            .extend(changes.as_object().unwrap().clone());
        input
    };
    let ec2 = json!([{"Key": "app", "Value": "shop", "Type": "KEY_AND_VALUE"}]);
    let updated = fx
        .ok(
            "UpdateDeploymentGroup",
            update(json!({"ec2TagFilters": ec2})),
        )
        .await;
    assert_eq!(updated["hooksNotCleanedUp"], json!([]));
    let group = deployment_group(&fx, "web").await;
    assert_eq!(group["ec2TagFilters"], ec2);
    assert_eq!(group["autoScalingGroups"], json!([{"name": "web-asg"}]));
    assert_eq!(
        group["onPremisesInstanceTagFilters"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(group["autoRollbackConfiguration"]["enabled"], true);
    assert_eq!(
        lifecycle_hook_names(&autoscaling).await.len(),
        1,
        "the hook of a group still listed stays"
    );

    // A tag set beside the filters that remain is refused; given with the filters
    // emptied, it replaces them.
    let tag_set =
        json!({"ec2TagSetList": [[{"Key": "env", "Value": "prod", "Type": "KEY_AND_VALUE"}]]});
    assert_eq!(
        error_code(
            &fx,
            "UpdateDeploymentGroup",
            update(json!({"ec2TagSet": tag_set}))
        )
        .await,
        "InvalidTagException"
    );
    fx.ok(
        "UpdateDeploymentGroup",
        update(json!({"ec2TagFilters": [], "ec2TagSet": tag_set})),
    )
    .await;

    fx.ok(
        "UpdateDeploymentGroup",
        update(json!({"onPremisesInstanceTagFilters": [], "autoScalingGroups": []})),
    )
    .await;
    let group = deployment_group(&fx, "web").await;
    assert_eq!(group["onPremisesInstanceTagFilters"], json!([]));
    assert_eq!(group["ec2TagFilters"], json!([]));
    assert_eq!(group["ec2TagSet"], tag_set);
    assert_eq!(group["autoScalingGroups"], json!([]));
    assert_eq!(group["autoRollbackConfiguration"]["enabled"], true);
    assert!(
        lifecycle_hook_names(&autoscaling).await.is_empty(),
        "the removed Auto Scaling group's hook is deleted"
    );
}

/// A deployment's hosts one at a time or in batches, as targets and as (older API)
/// instances, and its host list filtered by status, a page at a time.
#[tokio::test(flavor = "multi_thread")]
async fn a_deployments_hosts_are_read_one_by_one_in_batches_and_listed_by_status() {
    let fx = Fixture::start().await;
    fx.hosts(&HOSTS).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.group("web", "CodeDeployDefault.OneAtATime", json!({}))
        .await;
    let id = fx.deploy("web", "v1.tgz").await.unwrap();
    let first = fx.dispatched(&HOSTS).await;
    assert_eq!(first.len(), 1);
    fx.run_host(&id, &first[0], None).await;
    let second = fx.dispatched(&HOSTS).await;
    assert_eq!(second.len(), 1);

    let target = fx
        .ok(
            "GetDeploymentTarget",
            json!({"deploymentId": id, "targetId": first[0]}),
        )
        .await;
    assert_eq!(
        target["deploymentTarget"]["instanceTarget"]["status"],
        "Succeeded"
    );
    let instance = fx
        .ok(
            "GetDeploymentInstance",
            json!({"deploymentId": id, "instanceId": second[0]}),
        )
        .await;
    assert_eq!(instance["instanceSummary"]["status"], "InProgress");
    assert_eq!(instance["instanceSummary"]["instanceId"], json!(second[0]));
    assert_eq!(instance["instanceSummary"]["deploymentId"], json!(id));
    let batch = fx
        .ok(
            "BatchGetDeploymentInstances",
            json!({"deploymentId": id, "instanceIds": HOSTS.iter().chain(["web-9"].iter()).collect::<Vec<_>>()}),
        )
        .await;
    let statuses: BTreeMap<String, String> = batch["instancesSummary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["instanceId"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(statuses.len(), 4);
    assert_eq!(statuses[&first[0]], "Succeeded");
    assert_eq!(statuses.values().filter(|s| *s == "Pending").count(), 2);
    assert!(
        batch["errorMessage"].as_str().unwrap().contains("web-9"),
        "{batch}"
    );

    let list = |filter: Value| {
        let mut input = json!({"deploymentId": id});
        input
            .as_object_mut()
            .unwrap()
            .extend(filter.as_object().unwrap().clone());
        input
    };
    let pending = list_all(
        &fx,
        "ListDeploymentInstances",
        list(json!({"instanceStatusFilter": ["Pending"]})),
        "instancesList",
    )
    .await;
    assert_eq!(pending.len(), 2);
    assert!(!pending.contains(&first[0]) && !pending.contains(&second[0]));
    let done = list_all(
        &fx,
        "ListDeploymentTargets",
        list(json!({"targetFilters": {"TargetStatus": ["Succeeded", "InProgress"]}})),
        "targetIds",
    )
    .await;
    assert_eq!(done.len(), 2);
    assert_eq!(
        list_all(
            &fx,
            "ListDeploymentInstances",
            list(json!({})),
            "instancesList"
        )
        .await
        .len(),
        4
    );
    assert!(
        list_all(
            &fx,
            "ListDeploymentInstances",
            list(json!({"instanceTypeFilter": ["Green"]})),
            "instancesList"
        )
        .await
        .is_empty()
    );

    for (operation, input, expected) in [
        (
            "GetDeploymentTarget",
            json!({"deploymentId": id}),
            "DeploymentTargetIdRequiredException",
        ),
        (
            "GetDeploymentTarget",
            json!({"deploymentId": id, "targetId": "web-9"}),
            "DeploymentTargetDoesNotExistException",
        ),
        (
            "GetDeploymentInstance",
            json!({"deploymentId": id}),
            "InstanceIdRequiredException",
        ),
        (
            "GetDeploymentInstance",
            json!({"deploymentId": id, "instanceId": "web-9"}),
            "InstanceDoesNotExistException",
        ),
        (
            "GetDeploymentInstance",
            json!({"deploymentId": "d-NOSUCH123", "instanceId": "web-1"}),
            "DeploymentDoesNotExistException",
        ),
        (
            "BatchGetDeploymentInstances",
            json!({"deploymentId": id, "instanceIds": (0..26).map(|i| format!("web-{i}")).collect::<Vec<_>>()}),
            "BatchLimitExceededException",
        ),
        (
            "ListDeploymentInstances",
            json!({"deploymentId": id, "instanceStatusFilter": ["Done"]}),
            "InvalidInstanceStatusException",
        ),
        (
            "ListDeploymentInstances",
            json!({"deploymentId": id, "instanceTypeFilter": ["Red"]}),
            "InvalidInstanceTypeException",
        ),
    ] {
        assert_eq!(
            error_code(&fx, operation, input.clone()).await,
            expected,
            "{operation} {input}"
        );
    }
}

/// ListDeploymentInstances filtered by status pages as the other List operations do.
#[tokio::test(flavor = "multi_thread")]
async fn deployment_instances_filtered_by_status_come_page_by_page() {
    let fx = Fixture::start().await;
    let hosts = register_fleet(&fx, 150).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.group("fleet", "CodeDeployDefault.OneAtATime", json!({}))
        .await;
    let id = fx.deploy("fleet", "v1.tgz").await.unwrap();
    let input = json!({"deploymentId": id, "instanceStatusFilter": ["Pending"]});
    let first = fx.ok("ListDeploymentInstances", input.clone()).await;
    assert_eq!(first["instancesList"].as_array().unwrap().len(), 100);
    assert!(first["nextToken"].is_string());
    let pending = list_all(&fx, "ListDeploymentInstances", input, "instancesList").await;
    assert_eq!(pending.len(), hosts.len() - 1, "all but the one running");
    let mut unique = pending.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), pending.len(), "none repeated");
}

/// BatchGetApplicationRevisions answers each registered revision's information and
/// names those not registered; UpdateApplication renames an application, never onto
/// another's name.
#[tokio::test(flavor = "multi_thread")]
async fn application_revisions_come_in_batches_and_applications_are_renamed() {
    let fx = Fixture::start().await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    let location = |key: &str| json!({"revisionType": "S3", "s3Location": {"bucket": BUCKET, "key": key, "bundleType": "tgz"}});
    fx.ok(
        "RegisterApplicationRevision",
        json!({"applicationName": APP, "revision": location("v1.tgz"), "description": "first"}),
    )
    .await;
    let batch = fx
        .ok(
            "BatchGetApplicationRevisions",
            json!({"applicationName": APP, "revisions": [location("v1.tgz"), location("v9.tgz")]}),
        )
        .await;
    assert_eq!(batch["applicationName"], APP);
    let revisions = batch["revisions"].as_array().unwrap();
    assert_eq!(revisions.len(), 1);
    assert_eq!(
        revisions[0]["revisionLocation"]["s3Location"]["key"],
        "v1.tgz"
    );
    assert_eq!(revisions[0]["genericRevisionInfo"]["description"], "first");
    assert!(revisions[0]["genericRevisionInfo"]["registerTime"].is_number());
    assert!(
        batch["errorMessage"]
            .as_str()
            .unwrap()
            .contains("revisions[1]"),
        "{batch}"
    );
    assert_eq!(
        error_code(
            &fx,
            "BatchGetApplicationRevisions",
            json!({"applicationName": APP})
        )
        .await,
        "RevisionRequiredException"
    );
    assert_eq!(
        error_code(
            &fx,
            "BatchGetApplicationRevisions",
            json!({"applicationName": APP, "revisions": vec![location("v1.tgz"); 26]})
        )
        .await,
        "BatchLimitExceededException"
    );

    fx.ok("CreateApplication", json!({"applicationName": "old"}))
        .await;
    let id = fx
        .ok("GetApplication", json!({"applicationName": "old"}))
        .await["application"]["applicationId"]
        .clone();
    assert_eq!(
        error_code(
            &fx,
            "UpdateApplication",
            json!({"applicationName": "old", "newApplicationName": APP})
        )
        .await,
        "ApplicationAlreadyExistsException"
    );
    fx.ok(
        "UpdateApplication",
        json!({"applicationName": "old", "newApplicationName": "new"}),
    )
    .await;
    let renamed = fx
        .ok("GetApplication", json!({"applicationName": "new"}))
        .await;
    assert_eq!(renamed["application"]["applicationId"], id);
    assert_eq!(renamed["application"]["applicationName"], "new");
    assert_eq!(
        error_code(&fx, "GetApplication", json!({"applicationName": "old"})).await,
        "ApplicationDoesNotExistException"
    );
    assert_eq!(
        error_code(
            &fx,
            "UpdateApplication",
            json!({"applicationName": "old", "newApplicationName": "newer"})
        )
        .await,
        "ApplicationDoesNotExistException"
    );
    // An application with revisions is renamed with them (more in the rename tests).
    fx.ok(
        "UpdateApplication",
        json!({"applicationName": APP, "newApplicationName": "elsewhere"}),
    )
    .await;
    let moved = fx
        .ok(
            "ListApplicationRevisions",
            json!({"applicationName": "elsewhere"}),
        )
        .await;
    assert_eq!(moved["revisions"].as_array().unwrap().len(), 1, "{moved}");
}

/// Applies a host's last report without carrying out its effects, as a process killed
/// right after the write leaves it; returns the effects the write stored.
async fn apply_without_effects(fx: &Fixture, id: &str, body: &str) -> Vec<Effect> {
    let inputs: Vec<Input> = gantry_core::wire::reports_from_json(body)
        .unwrap()
        .into_iter()
        .map(|report| {
            let sender = format!("{}:{}", fx.host_role_id, report.instance_id);
            Input::Report {
                report,
                sender: Some(sender),
                now: now_ms(),
            }
        })
        .collect();
    let applied = transition::apply::<DeploymentSpec>(&fx.control.store, id, &inputs, now_ms(), 5)
        .await
        .unwrap();
    assert!(applied.refused.is_empty(), "{:?}", applied.refused);
    let stored = fx
        .control
        .store
        .load_deployment::<DeploymentSpec>(id)
        .await
        .unwrap();
    assert_eq!(
        stored.outbox.values().next().map(|entry| &entry.effects),
        Some(&applied.effects),
        "the effects wait in the outbox"
    );
    applied.effects
}

/// A process killed between any two effects of a deployment's last write loses none of
/// them: the tick carries out the whole entry again, each effect safe to repeat. For a
/// failure with automatic rollback (notifications, health, lock, rollback) and for a
/// success (last successful revision, lock), after k of n effects for every k: the
/// deployment is terminal, the lock is released, exactly one rollback exists, and the
/// outbox is empty.
#[tokio::test(flavor = "multi_thread")]
async fn a_process_killed_between_any_two_effects_loses_none() {
    let fx = Fixture::start().await;
    let config = fx._moto.sdk_config().await;
    let sns = aws_sdk_sns::Client::new(&config);
    let topic = sns
        .create_topic()
        .name("ops")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    fx.hosts(&["web-1", "web-2"]).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.upload("v2.tgz", &good_bundle("2")).await;
    fx.group(
        "web",
        "CodeDeployDefault.AllAtOnce",
        json!({
            "autoRollbackConfiguration": {"enabled": true, "events": ["DEPLOYMENT_FAILURE"]},
            "triggerConfigurations": [{
                "triggerName": "ops",
                "triggerTargetArn": topic,
                "triggerEvents": ["DeploymentSuccess", "DeploymentFailure", "InstanceFailure", "InstanceSuccess"],
            }],
        }),
    )
    .await;
    let play = |id: String, fail: bool| {
        let fx = &fx;
        async move {
            let sent = fx.dispatched(&["web-1", "web-2"]).await;
            assert_eq!(sent.len(), 2);
            // AllAtOnce fails only when every host does.
            let fail_at = fail.then_some(LifecycleEvent::ValidateService);
            fx.run_host(&id, "web-1", fail_at).await;
            let mut bodies = host_reports(&id, "web-2", fail_at);
            let last = bodies.pop().unwrap();
            assert!(fx.deliver(bodies).await.is_empty());
            apply_without_effects(fx, &id, &last).await
        }
    };
    let mut expected_deployments = 0;
    for fail in [false, true] {
        let mut k = 0;
        loop {
            let id = fx
                .deploy("web", if fail { "v2.tgz" } else { "v1.tgz" })
                .await
                .unwrap();
            expected_deployments += 1;
            let effects = play(id.clone(), fail).await;
            let record = fx
                .control
                .store
                .load_deployment::<DeploymentSpec>(&id)
                .await
                .unwrap();
            // Killed after k effects, before marking the entry done.
            engine::execute(&*fx.control, &record, &effects[..k], None).await;
            batch_advance::tick_at(&fx.control, now_ms() + OUTBOX_GRACE_MS + 1)
                .await
                .unwrap();
            let info = fx.deployment(&id).await;
            let stored = fx
                .control
                .store
                .load_deployment::<DeploymentSpec>(&id)
                .await
                .unwrap();
            assert!(stored.outbox.is_empty(), "k={k}: {:?}", stored.outbox);
            if fail {
                assert_eq!(info["status"], "Failed", "k={k}: {info}");
                let rollback = info["rollbackInfo"]["rollbackDeploymentId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("k={k}: no rollback: {info}"))
                    .to_owned();
                expected_deployments += 1;
                for host in fx.dispatched(&["web-1", "web-2"]).await {
                    fx.run_host(&rollback, &host, None).await;
                }
                assert_eq!(fx.status(&rollback).await, "Succeeded", "k={k}");
            } else {
                assert_eq!(info["status"], "Succeeded", "k={k}: {info}");
                let group = deployment_group(&fx, "web").await;
                assert_eq!(
                    group["lastSuccessfulDeployment"]["deploymentId"],
                    id.as_str(),
                    "k={k}"
                );
            }
            assert!(info.get("failedEffects").is_none(), "k={k}: {info}");
            assert_eq!(
                group_deployments(&fx, "web").await.len(),
                expected_deployments,
                "k={k}: one rollback, never two"
            );
            if k == effects.len() {
                break;
            }
            k += 1;
        }
    }
    // The group is free for the next deployment.
    fx.deploy("web", "v1.tgz")
        .await
        .expect("the group is not locked");
}

#[test]
fn failed_effects_are_retried_later_and_later_up_to_ten_minutes() {
    let entry = |attempts| OutboxEntry {
        effects: Vec::new(),
        at: 1_000,
        attempts,
    };
    assert_eq!(
        entry(0).due(),
        1_000 + OUTBOX_GRACE_MS,
        "its writer's grace"
    );
    assert_eq!(entry(1).due(), 1_000 + OUTBOX_GRACE_MS);
    assert_eq!(entry(2).due(), 1_000 + 2 * OUTBOX_GRACE_MS);
    assert_eq!(entry(3).due(), 1_000 + 4 * OUTBOX_GRACE_MS);
    assert_eq!(entry(40).due(), 1_000 + 600_000);
}

/// A CodeDeploy ARN in the fixture's region and account.
fn codedeploy_arn(resource: &str) -> String {
    format!("arn:aws:codedeploy:us-east-1:123456789012:{resource}")
}

async fn tags_of(fx: &Fixture, arn: &str) -> Value {
    fx.ok("ListTagsForResource", json!({"ResourceArn": arn}))
        .await["Tags"]
        .clone()
}

/// TagResource, UntagResource and ListTagsForResource on an application, a deployment
/// group and a deployment configuration by their CodeDeploy ARNs; the tags Create takes
/// are kept; deleting the resource deletes its tags; CodeDeploy's errors. (In parts: one
/// async body this long overflows a debug build's stack.)
#[tokio::test(flavor = "multi_thread")]
async fn resources_are_tagged_by_their_arns_and_lose_their_tags_with_them() {
    let fx = Fixture::start().await;
    Box::pin(tag_an_application(&fx)).await;
    Box::pin(tag_a_group_and_a_config(&fx)).await;
    Box::pin(tagging_answers_codedeploys_errors(&fx)).await;
    Box::pin(deleted_resources_come_back_without_tags(&fx)).await;
}

async fn tag_an_application(fx: &Fixture) {
    fx.ok(
        "CreateApplication",
        json!({"applicationName": "tagged", "tags": [{"Key": "team", "Value": "shop"}]}),
    )
    .await;
    let app = codedeploy_arn("application:tagged");
    assert_eq!(
        tags_of(fx, &app).await,
        json!([{"Key": "team", "Value": "shop"}])
    );
    fx.ok(
        "TagResource",
        json!({"ResourceArn": app, "Tags": [{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "ops"}]}),
    )
    .await;
    assert_eq!(
        tags_of(fx, &app).await,
        json!([{"Key": "team", "Value": "ops"}, {"Key": "env", "Value": "prod"}])
    );
    fx.ok(
        "UntagResource",
        json!({"ResourceArn": app, "TagKeys": ["team", "absent"]}),
    )
    .await;
    assert_eq!(
        tags_of(fx, &app).await,
        json!([{"Key": "env", "Value": "prod"}])
    );
    // Renamed, it keeps them; the old name has none.
    fx.ok(
        "UpdateApplication",
        json!({"applicationName": "tagged", "newApplicationName": "renamed"}),
    )
    .await;
    assert_eq!(
        tags_of(fx, &codedeploy_arn("application:renamed")).await,
        json!([{"Key": "env", "Value": "prod"}])
    );
    assert_eq!(
        error_code(fx, "ListTagsForResource", json!({"ResourceArn": app})).await,
        "ApplicationDoesNotExistException"
    );
}

async fn tag_a_group_and_a_config(fx: &Fixture) {
    // A group: tags given at creation, then changed; untouched by UpdateDeploymentGroup.
    fx.group(
        "web",
        "CodeDeployDefault.OneAtATime",
        json!({"tags": [{"Key": "tier", "Value": "front"}]}),
    )
    .await;
    let group = codedeploy_arn(&format!("deploymentgroup:{APP}/web"));
    assert_eq!(
        tags_of(fx, &group).await,
        json!([{"Key": "tier", "Value": "front"}])
    );
    fx.ok(
        "UpdateDeploymentGroup",
        json!({"applicationName": APP, "currentDeploymentGroupName": "web", "deploymentConfigName": "CodeDeployDefault.AllAtOnce"}),
    )
    .await;
    assert_eq!(
        tags_of(fx, &group).await,
        json!([{"Key": "tier", "Value": "front"}])
    );
    // Fifty tags at most, counting those it has.
    let many: Vec<Value> = (0..49)
        .map(|i| json!({"Key": format!("k{i}"), "Value": ""}))
        .collect();
    fx.ok("TagResource", json!({"ResourceArn": group, "Tags": many}))
        .await;
    assert_eq!(
        error_code(
            fx,
            "TagResource",
            json!({"ResourceArn": group, "Tags": [{"Key": "one-more", "Value": ""}]})
        )
        .await,
        "TagLimitExceededException"
    );
    assert_eq!(tags_of(fx, &group).await.as_array().unwrap().len(), 50);

    // A custom configuration; a predefined one has none.
    fx.ok(
        "CreateDeploymentConfig",
        json!({"deploymentConfigName": "TwoHealthy", "minimumHealthyHosts": {"type": "HOST_COUNT", "value": 2}}),
    )
    .await;
    let config = codedeploy_arn("deploymentconfig:TwoHealthy");
    fx.ok(
        "TagResource",
        json!({"ResourceArn": config, "Tags": [{"Key": "owner", "Value": "sre@example.com"}]}),
    )
    .await;
    assert_eq!(
        tags_of(fx, &config).await,
        json!([{"Key": "owner", "Value": "sre@example.com"}])
    );
    let predefined = codedeploy_arn("deploymentconfig:CodeDeployDefault.AllAtOnce");
    assert_eq!(tags_of(fx, &predefined).await, json!([]));
}

async fn tagging_answers_codedeploys_errors(fx: &Fixture) {
    let config = codedeploy_arn("deploymentconfig:TwoHealthy");
    let cases = [
        (
            "TagResource",
            json!({"Tags": [{"Key": "k"}]}),
            "ResourceArnRequiredException",
        ),
        (
            "ListTagsForResource",
            json!({"ResourceArn": "tagged"}),
            "InvalidArnException",
        ),
        (
            "ListTagsForResource",
            json!({"ResourceArn": "arn:aws:codedeploy:eu-west-1:123456789012:application:renamed"}),
            "InvalidArnException",
        ),
        (
            "ListTagsForResource",
            json!({"ResourceArn": codedeploy_arn("application:nope")}),
            "ApplicationDoesNotExistException",
        ),
        (
            "TagResource",
            json!({"ResourceArn": codedeploy_arn(&format!("deploymentgroup:{APP}/nope")), "Tags": [{"Key": "k"}]}),
            "DeploymentGroupDoesNotExistException",
        ),
        (
            "UntagResource",
            json!({"ResourceArn": codedeploy_arn("deploymentconfig:Nope"), "TagKeys": ["k"]}),
            "DeploymentConfigDoesNotExistException",
        ),
        (
            "TagResource",
            json!({"ResourceArn": config, "Tags": []}),
            "TagRequiredException",
        ),
        (
            "UntagResource",
            json!({"ResourceArn": config}),
            "TagRequiredException",
        ),
        (
            "TagResource",
            json!({"ResourceArn": config, "Tags": [{"Key": "aws:owner", "Value": "x"}]}),
            "InvalidTagsToAddException",
        ),
        (
            "TagResource",
            json!({"ResourceArn": config, "Tags": [{"Key": "k", "Value": "v".repeat(257)}]}),
            "InvalidTagsToAddException",
        ),
        (
            "TagResource",
            json!({"ResourceArn": config, "Tags": [{"Value": "no key"}]}),
            "InvalidTagException",
        ),
        (
            "UntagResource",
            json!({"ResourceArn": config, "TagKeys": [""]}),
            "InvalidTagException",
        ),
        (
            "TagResource",
            json!({"ResourceArn": codedeploy_arn("deploymentconfig:CodeDeployDefault.AllAtOnce"), "Tags": [{"Key": "k"}]}),
            "ArnNotSupportedException",
        ),
        (
            "CreateApplication",
            json!({"applicationName": "bad", "tags": [{"Key": "aws:x"}]}),
            "InvalidTagsToAddException",
        ),
    ];
    for (operation, input, expected) in cases {
        assert_eq!(
            error_code(fx, operation, input.clone()).await,
            expected,
            "{operation} {input}"
        );
    }
    // Nothing is created with tags it refuses.
    assert_eq!(
        error_code(fx, "GetApplication", json!({"applicationName": "bad"})).await,
        "ApplicationDoesNotExistException"
    );
}

async fn deleted_resources_come_back_without_tags(fx: &Fixture) {
    let group = codedeploy_arn(&format!("deploymentgroup:{APP}/web"));
    fx.ok(
        "DeleteDeploymentGroup",
        json!({"applicationName": APP, "deploymentGroupName": "web"}),
    )
    .await;
    assert_eq!(
        error_code(fx, "ListTagsForResource", json!({"ResourceArn": group})).await,
        "DeploymentGroupDoesNotExistException"
    );
    fx.group("web", "CodeDeployDefault.OneAtATime", json!({}))
        .await;
    assert_eq!(tags_of(fx, &group).await, json!([]));
    let config = codedeploy_arn("deploymentconfig:TwoHealthy");
    fx.ok(
        "DeleteDeploymentConfig",
        json!({"deploymentConfigName": "TwoHealthy"}),
    )
    .await;
    fx.ok(
        "CreateDeploymentConfig",
        json!({"deploymentConfigName": "TwoHealthy", "minimumHealthyHosts": {"type": "HOST_COUNT", "value": 2}}),
    )
    .await;
    assert_eq!(tags_of(fx, &config).await, json!([]));
    let app = codedeploy_arn("application:renamed");
    assert_eq!(tags_of(fx, &app).await.as_array().unwrap().len(), 1);
    fx.ok("DeleteApplication", json!({"applicationName": "renamed"}))
        .await;
    fx.ok("CreateApplication", json!({"applicationName": "renamed"}))
        .await;
    assert_eq!(tags_of(fx, &app).await, json!([]));
}

/// StopDeployment reaches the hosts: each deploying host is told to skip the events it
/// has not started (a cancel on its queue), the answer is Pending until they have, and a
/// host that skips ends Skipped, unhealthy. Commands say by when they may start, and
/// command queues keep messages a bounded time.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_tells_deploying_hosts_to_skip_the_rest() {
    let fx = Fixture::start().await;
    fx.hosts(&["web-1", "web-2"]).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.group("web", "CodeDeployDefault.AllAtOnce", json!({}))
        .await;
    let before = now_ms();
    let id = fx.deploy("web", "v1.tgz").await.unwrap();
    let commands = fx.take_commands("web-1").await;
    assert_eq!(commands.len(), 1);
    let start_by = commands[0]
        .start_by
        .expect("a command says by when it may start");
    assert!(
        (before + 300_000..=now_ms() + 300_000).contains(&start_by),
        "startBy is the host's start deadline: {start_by}"
    );
    assert_eq!(fx.take_commands("web-2").await.len(), 1);
    let url = fx.control.queues.url("web-1").await.unwrap();
    let attributes = fx
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::MessageRetentionPeriod)
        .send()
        .await
        .unwrap();
    assert_eq!(
        attributes.attributes().unwrap()
            [&aws_sdk_sqs::types::QueueAttributeName::MessageRetentionPeriod],
        "86400"
    );

    // web-1 is three events in when the stop comes; web-2 has said nothing yet.
    let mut reports = host_reports(&id, "web-1", None);
    let rest = reports.split_off(6);
    assert!(fx.deliver(reports).await.is_empty());
    let answer = fx.ok("StopDeployment", json!({"deploymentId": id})).await;
    assert_eq!(answer["status"], "Pending", "{answer}");
    for host in ["web-1", "web-2"] {
        let messages = fx.take_messages(host).await;
        assert_eq!(
            messages,
            [HostMessage::Cancel(Cancel {
                deployment_id: id.clone(),
                instance_id: host.into()
            })],
            "{host} is told"
        );
    }
    // The agent skips the events it had not started.
    let skipped: Vec<String> = rest
        .iter()
        .filter_map(|body| {
            let mut report = gantry_core::wire::reports_from_json(body)
                .unwrap()
                .remove(0);
            (report.status == EventStatus::InProgress).then(|| {
                report.status = EventStatus::Skipped;
                report.end_time = Some(report.start_time);
                report.to_json()
            })
        })
        .collect();
    assert!(fx.deliver(skipped).await.is_empty());
    let info = fx.deployment(&id).await;
    assert_eq!(info["status"], "Stopped");
    assert_eq!(info["deploymentOverview"]["Skipped"], 1, "{info}");
    assert_eq!(info["deploymentOverview"]["InProgress"], 1, "{info}");
    let target = fx
        .ok(
            "GetDeploymentTarget",
            json!({"deploymentId": id, "targetId": "web-1"}),
        )
        .await;
    assert_eq!(
        target["deploymentTarget"]["instanceTarget"]["status"], "Skipped",
        "{target}"
    );
    let stop_again = fx.call("StopDeployment", json!({"deploymentId": id})).await;
    assert!(
        stop_again.is_err(),
        "an ended deployment is not stopped twice"
    );
}

/// CloudWatch, on the test's moto, with one metric alarm in `state`.
async fn alarm(fx: &Fixture, name: &str, state: &str) -> aws_sdk_cloudwatch::Client {
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&fx._moto.sdk_config().await);
    cloudwatch
        .put_metric_alarm()
        .alarm_name(name)
        .namespace("Shop")
        .metric_name("Errors")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .unwrap();
    set_alarm(&cloudwatch, name, state).await;
    cloudwatch
}

async fn set_alarm(cloudwatch: &aws_sdk_cloudwatch::Client, name: &str, state: &str) {
    cloudwatch
        .set_alarm_state()
        .alarm_name(name)
        .state_value(state.into())
        .state_reason("set by the test")
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alarm_in_alarm_mid_deployment_stops_it_and_rolls_back() {
    let fx = Fixture::start().await;
    let cloudwatch = alarm(&fx, "web-errors", "OK").await;
    fx.hosts(&["web-1", "web-2"]).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.upload("v2.tgz", &good_bundle("2")).await;
    let alarms = json!({"enabled": true, "ignorePollAlarmFailure": false, "alarms": [{"name": "web-errors"}]});
    fx.group(
        "web",
        "CodeDeployDefault.OneAtATime",
        json!({
            "autoRollbackConfiguration": {"enabled": true, "events": ["DEPLOYMENT_STOP_ON_ALARM"]},
            "alarmConfiguration": alarms,
        }),
    )
    .await;
    let group = fx
        .ok(
            "GetDeploymentGroup",
            json!({"applicationName": APP, "deploymentGroupName": "web"}),
        )
        .await;
    assert_eq!(group["deploymentGroupInfo"]["alarmConfiguration"], alarms);

    // With the alarm OK, every boundary's poll lets the deployment go on.
    let good = fx.deploy("web", "v1.tgz").await.unwrap();
    for _ in 0..2 {
        let hosts = fx.dispatched(&["web-1", "web-2"]).await;
        assert_eq!(hosts.len(), 1, "one at a time");
        fx.run_host(&good, &hosts[0], None).await;
    }
    assert_eq!(fx.status(&good).await, "Succeeded");

    let bad = fx.deploy("web", "v2.tgz").await.unwrap();
    let first = fx.dispatched(&["web-1", "web-2"]).await;
    assert_eq!(first.len(), 1);
    set_alarm(&cloudwatch, "web-errors", "ALARM").await;
    // The host finishes: a batch boundary, where the alarm is found in ALARM.
    fx.run_host(&bad, &first[0], None).await;
    let info = fx.deployment(&bad).await;
    assert_eq!(info["status"], "Stopped", "{info}");
    assert_eq!(info["errorInformation"]["code"], "ALARM_ACTIVE", "{info}");
    let message = info["errorInformation"]["message"].as_str().unwrap();
    assert!(message.contains("web-errors"), "{message}");
    assert_eq!(info["deploymentOverview"]["Skipped"], 1, "{info}");
    let rollback = info["rollbackInfo"]["rollbackDeploymentId"]
        .as_str()
        .unwrap_or_else(|| panic!("no rollback in {info}"))
        .to_owned();
    // The rollback watches no alarm (the one that stopped v2 is still in ALARM): it
    // redeploys v1 host by host to the end.
    for _ in 0..2 {
        let commands: Vec<Command> = [
            fx.take_commands("web-1").await,
            fx.take_commands("web-2").await,
        ]
        .concat();
        assert_eq!(commands.len(), 1, "{commands:?}");
        assert_eq!(commands[0].deployment_id, rollback, "v2 sent nothing more");
        fx.run_host(&rollback, &commands[0].instance_id, None).await;
    }
    let rolled_back = fx.deployment(&rollback).await;
    assert_eq!(rolled_back["status"], "Succeeded", "{rolled_back}");
    assert_eq!(rolled_back["revision"]["s3Location"]["key"], "v1.tgz");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tick_polls_alarms_while_a_deployment_runs() {
    let fx = Fixture::start().await;
    let cloudwatch = alarm(&fx, "api-latency", "OK").await;
    fx.hosts(&["web-1", "web-2"]).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.group(
        "web",
        "CodeDeployDefault.AllAtOnce",
        json!({"alarmConfiguration": {"enabled": true, "alarms": [{"name": "api-latency"}]}}),
    )
    .await;
    let id = fx.deploy("web", "v1.tgz").await.unwrap();
    assert_eq!(fx.dispatched(&["web-1", "web-2"]).await.len(), 2);
    batch_advance::tick_at(&fx.control, now_ms() + 120_000)
        .await
        .unwrap();
    assert_eq!(fx.status(&id).await, "InProgress", "the alarm is OK");
    set_alarm(&cloudwatch, "api-latency", "ALARM").await;
    batch_advance::tick_at(&fx.control, now_ms() + 240_000)
        .await
        .unwrap();
    let info = fx.deployment(&id).await;
    assert_eq!(info["status"], "Stopped", "{info}");
    assert_eq!(info["errorInformation"]["code"], "ALARM_ACTIVE");
    assert!(
        info["rollbackInfo"]["rollbackDeploymentId"].is_null(),
        "{info}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_alarm_stops_a_deployment_unless_poll_failures_are_ignored() {
    let fx = Fixture::start().await;
    fx.hosts(&["web-1", "web-2"]).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    let missing = |ignore: bool| {
        json!({
            "autoRollbackConfiguration": {"enabled": true, "events": ["DEPLOYMENT_STOP_ON_ALARM"]},
            "alarmConfiguration": {"enabled": true, "ignorePollAlarmFailure": ignore, "alarms": [{"name": "nobody"}]},
        })
    };
    fx.group("lenient", "CodeDeployDefault.OneAtATime", missing(true))
        .await;
    fx.group("strict", "CodeDeployDefault.OneAtATime", missing(false))
        .await;

    let lenient = fx.deploy("lenient", "v1.tgz").await.unwrap();
    for _ in 0..2 {
        let hosts = fx.dispatched(&["web-1", "web-2"]).await;
        assert_eq!(hosts.len(), 1);
        fx.run_host(&lenient, &hosts[0], None).await;
    }
    assert_eq!(fx.status(&lenient).await, "Succeeded");

    // The poll before the first batch fails: no host is sent anything.
    let strict = fx.deploy("strict", "v1.tgz").await.unwrap();
    assert!(fx.dispatched(&["web-1", "web-2"]).await.is_empty());
    let info = fx.deployment(&strict).await;
    assert_eq!(info["status"], "Stopped", "{info}");
    assert_eq!(info["errorInformation"]["code"], "ALARM_CONFIG", "{info}");
    let message = info["errorInformation"]["message"].as_str().unwrap();
    assert!(message.contains("nobody"), "{message}");
    assert!(
        info["rollbackInfo"]["rollbackDeploymentId"].is_null(),
        "a failed poll does not roll back: {info}"
    );
    assert!(fx.dispatched(&["web-1", "web-2"]).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn alarm_configurations_are_checked_and_overridden_per_deployment() {
    let fx = Fixture::start().await;
    fx.hosts(&["web-1"]).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    let create = |alarms: Value| {
        json!({"applicationName": APP, "deploymentGroupName": "g",
               "onPremisesInstanceTagFilters": [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
               "alarmConfiguration": alarms})
    };
    let eleven: Vec<Value> = (0..11).map(|i| json!({"name": format!("a{i}")})).collect();
    let error = fx
        .call(
            "CreateDeploymentGroup",
            create(json!({"enabled": true, "alarms": eleven})),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code.name(), "AlarmsLimitExceededException", "{error}");
    for bad in [
        json!({"enabled": true, "alarms": []}),
        json!({"enabled": true, "alarms": [{"name": "a"}, {"name": "a"}]}),
        json!({"enabled": true, "alarms": [{"name": ""}]}),
    ] {
        let error = fx
            .call("CreateDeploymentGroup", create(bad.clone()))
            .await
            .unwrap_err();
        assert_eq!(
            error.code.name(),
            "InvalidAlarmConfigException",
            "{bad}: {error}"
        );
    }
    // A CLI skeleton's blank, disabled configuration is no alarm.
    fx.ok(
        "CreateDeploymentGroup",
        create(
            json!({"enabled": false, "ignorePollAlarmFailure": false, "alarms": [{"name": ""}]}),
        ),
    )
    .await;
    fx.ok(
        "UpdateDeploymentGroup",
        json!({"applicationName": APP, "currentDeploymentGroupName": "g",
               "alarmConfiguration": {"enabled": true, "alarms": [{"name": "nobody"}]}}),
    )
    .await;
    // The group's alarm does not exist; the deployment's override turns polling off.
    let id = handlers::invoke(
        &fx.control,
        "create-deployment",
        json!({
            "applicationName": APP,
            "deploymentGroupName": "g",
            "revision": {"revisionType": "S3", "s3Location": {"bucket": BUCKET, "key": "v1.tgz", "bundleType": "tgz"}},
            "overrideAlarmConfiguration": {"enabled": false, "alarms": []},
        }),
    )
    .await
    .unwrap()["deploymentId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(fx.dispatched(&["web-1"]).await, ["web-1"]);
    fx.run_host(&id, "web-1", None).await;
    let info = fx.deployment(&id).await;
    assert_eq!(info["status"], "Succeeded", "{info}");
    assert_eq!(info["overrideAlarmConfiguration"]["enabled"], false);
}

/// A stopped EC2 instance of a tag group is in the deployment, as CodeDeploy includes
/// it: it fails at once, with the reason, without being sent a command, and counts as
/// failed in the minimum-healthy rules. A terminated instance stays out.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_ec2_instance_fails_at_once_and_counts_against_the_minimum() {
    let fx = Fixture::start().await;
    let ec2 = aws_sdk_ec2::Client::new(&fx._moto.sdk_config().await);
    let image = ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_owned();
    let mut ids = Vec::new();
    for _ in 0..4 {
        let launched = ec2
            .run_instances()
            .iam_instance_profile(instance_profile::by_name(HOST_ROLE))
            .image_id(&image)
            .min_count(1)
            .max_count(1)
            .tag_specifications(
                aws_sdk_ec2::types::TagSpecification::builder()
                    .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                    .tags(
                        aws_sdk_ec2::types::Tag::builder()
                            .key("role")
                            .value("ec2-web")
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
        ids.push(launched.instances()[0].instance_id().unwrap().to_owned());
    }
    let (running, stopped, terminated) = (&ids[..2], &ids[2], &ids[3]);
    ec2.stop_instances()
        .instance_ids(stopped)
        .send()
        .await
        .unwrap();
    ec2.terminate_instances()
        .instance_ids(terminated)
        .send()
        .await
        .unwrap();
    fx.upload("v1.tgz", &good_bundle("1")).await;
    let filter = json!([{"Key": "role", "Value": "ec2-web", "Type": "KEY_AND_VALUE"}]);
    for (group, config) in [
        ("all", "CodeDeployDefault.AllAtOnce"),
        ("one", "CodeDeployDefault.OneAtATime"),
    ] {
        fx.ok(
            "CreateDeploymentGroup",
            json!({"applicationName": APP, "deploymentGroupName": group,
                   "deploymentConfigName": config, "ec2TagFilters": filter}),
        )
        .await;
    }

    // AllAtOnce: the running two are sent the deployment; the stopped one has failed.
    let id = fx.deploy("all", "v1.tgz").await.unwrap();
    let hosts: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut sent = fx.dispatched(&hosts).await;
    sent.sort();
    let mut expected = running.to_vec();
    expected.sort();
    assert_eq!(sent, expected);
    let info = fx.deployment(&id).await;
    assert_eq!(info["deploymentOverview"]["InProgress"], 2, "{info}");
    assert_eq!(info["deploymentOverview"]["Failed"], 1, "{info}");
    let mut listed: Vec<String> = fx
        .ok("ListDeploymentTargets", json!({"deploymentId": id}))
        .await["targetIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    let mut expected = ids[..3].to_vec();
    expected.sort();
    assert_eq!(listed, expected, "the terminated instance is not a target");
    let target = fx
        .ok(
            "GetDeploymentTarget",
            json!({"deploymentId": id, "targetId": stopped}),
        )
        .await["deploymentTarget"]["instanceTarget"]
        .clone();
    assert_eq!(target["status"], "Failed");
    let first = &target["lifecycleEvents"][0];
    assert_eq!(first["status"], "Failed");
    let message = first["diagnostics"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{stopped} is stopped")),
        "{message}"
    );
    for host in running {
        fx.run_host(&id, host, None).await;
    }
    let info = fx.deployment(&id).await;
    assert_eq!(
        info["status"], "Succeeded",
        "AllAtOnce needs one success: {info}"
    );

    // OneAtATime keeps all but one host healthy: with one stopped, none may go, and the
    // deployment fails as it starts, sending nothing.
    let id = fx.deploy("one", "v1.tgz").await.unwrap();
    assert!(fx.dispatched(&hosts).await.is_empty());
    let info = fx.deployment(&id).await;
    assert_eq!(info["status"], "Failed", "{info}");
    assert_eq!(info["errorInformation"]["code"], "HEALTH_CONSTRAINTS");
    assert_eq!(info["deploymentOverview"]["Failed"], 1);
    assert_eq!(info["deploymentOverview"]["Skipped"], 2);
}

/// In-place deployments behind ELBv2 target groups, with the stand-in's real health
/// checks: the host's application is an HTTP server this test runs on the instance's
/// loopback address (tests/standin/addresses.py).
mod load_balanced {
    use super::*;
    use aws_sdk_elasticloadbalancingv2 as elb;
    use elb::types::{
        Action, ActionTypeEnum, ProtocolEnum, TargetDescription, TargetGroupAttribute,
        TargetHealthStateEnum,
    };
    use gantry_core::lifecycle;
    use gantry_tests::reports::event_reports;
    use std::net::Ipv4Addr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const DEADLINE: Duration = Duration::from_secs(30);

    /// A VPC with a load balancer whose listener forwards to target group `web`, and
    /// one running EC2 instance tagged role=web whose application answers on the
    /// group's port.
    struct Balanced {
        elb: elb::Client,
        group_arn: String,
        instance: String,
        app: tokio::task::JoinHandle<()>,
    }

    async fn balanced(fx: &Fixture) -> Balanced {
        let config = fx._moto.sdk_config().await;
        let ec2 = aws_sdk_ec2::Client::new(&config);
        let elb = elb::Client::new(&config);
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.31.0.0/16")
            .send()
            .await
            .unwrap()
            .vpc
            .and_then(|vpc| vpc.vpc_id)
            .unwrap();
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block("10.31.1.0/24")
            .availability_zone("us-east-1a")
            .send()
            .await
            .unwrap()
            .subnet
            .and_then(|subnet| subnet.subnet_id)
            .unwrap();
        let image = ec2.describe_images().send().await.unwrap().images()[0]
            .image_id()
            .unwrap()
            .to_owned();
        let tags = aws_sdk_ec2::types::TagSpecification::builder()
            .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("role")
                    .value("web")
                    .build(),
            )
            .build();
        let launched = ec2
            .run_instances()
            .iam_instance_profile(instance_profile::by_name(HOST_ROLE))
            .image_id(image)
            .subnet_id(&subnet)
            .min_count(1)
            .max_count(1)
            .tag_specifications(tags)
            .send()
            .await
            .unwrap()
            .instances()[0]
            .clone();
        let private: Ipv4Addr = launched.private_ip_address().unwrap().parse().unwrap();
        let [_, b, c, d] = private.octets();
        let listener = TcpListener::bind((Ipv4Addr::new(127, b, c, d), 0))
            .await
            .expect("the instance's loopback address");
        let port = listener.local_addr().unwrap().port();
        let app = tokio::spawn(serve(listener));
        let balancer = elb
            .create_load_balancer()
            .name("shop")
            .subnets(&subnet)
            .send()
            .await
            .unwrap()
            .load_balancers()[0]
            .load_balancer_arn()
            .unwrap()
            .to_owned();
        let group_arn = elb
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
        elb.create_listener()
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
        Balanced {
            elb,
            group_arn,
            instance: launched.instance_id().unwrap().to_owned(),
            app,
        }
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
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    }

    impl Balanced {
        /// The instance's state in the target group (None: not registered).
        async fn health(&self) -> Option<TargetHealthStateEnum> {
            let described = self
                .elb
                .describe_target_health()
                .target_group_arn(&self.group_arn)
                .send()
                .await
                .unwrap();
            described
                .target_health_descriptions()
                .iter()
                .find(|d| d.target().and_then(|t| t.id()) == Some(self.instance.as_str()))
                .and_then(|d| d.target_health()?.state().cloned())
        }

        async fn register(&self) {
            self.elb
                .register_targets()
                .target_group_arn(&self.group_arn)
                .targets(TargetDescription::builder().id(&self.instance).build())
                .send()
                .await
                .unwrap();
        }
    }

    /// Runs the lifecycle function on what comes to its queue (the checks of target
    /// health) until `host` has a command; returns it and the health seen on the way.
    async fn until_command(fx: &Fixture, lb: &Balanced) -> (Command, Vec<TargetHealthStateEnum>) {
        let url = fx.control.settings.lifecycle_queue_url.clone().unwrap();
        let deadline = std::time::Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        loop {
            if let Some(state) = lb.health().await
                && seen.last() != Some(&state)
            {
                seen.push(state);
            }
            let mut commands = fx.take_commands(&lb.instance).await;
            if let Some(command) = commands.pop() {
                assert!(commands.is_empty(), "one command at a time: {commands:?}");
                return (command, seen);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no command within {DEADLINE:?}; target health seen: {seen:?}"
            );
            let received = fx
                .sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let mut bodies = Vec::new();
            for message in received.messages.unwrap_or_default() {
                bodies.push(message.body().unwrap().to_owned());
                fx.sqs
                    .delete_message()
                    .queue_url(&url)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
            if !bodies.is_empty() {
                assert!(lifecycle_event(fx, &bodies).await.is_empty(), "{bodies:?}");
            }
        }
    }

    async fn load_balanced_group(fx: &Fixture, config: &str) {
        fx.ok(
            "CreateDeploymentGroup",
            json!({
                "applicationName": APP,
                "deploymentGroupName": "behind-lb",
                "deploymentConfigName": config,
                "ec2TagFilters": [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
                "deploymentStyle": {"deploymentType": "IN_PLACE", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
                "loadBalancerInfo": {"targetGroupInfoList": [{"name": "web"}]},
            }),
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_host_leaves_its_target_group_for_its_install_and_rejoins_healthy() {
        let fx = Fixture::start().await;
        fx.upload("v1.tgz", &good_bundle("v1")).await;
        let lb = balanced(&fx).await;
        lb.register().await;
        assert!(
            wait_for_health(&lb, TargetHealthStateEnum::Healthy).await,
            "the instance serves before the deployment"
        );
        load_balanced_group(&fx, "CodeDeployDefault.OneAtATime").await;
        let group = fx
            .ok(
                "GetDeploymentGroup",
                json!({"applicationName": APP, "deploymentGroupName": "behind-lb"}),
            )
            .await;
        assert_eq!(
            group["deploymentGroupInfo"]["deploymentStyle"],
            json!({"deploymentType": "IN_PLACE", "deploymentOption": "WITH_TRAFFIC_CONTROL"})
        );
        assert_eq!(
            group["deploymentGroupInfo"]["loadBalancerInfo"],
            json!({"targetGroupInfoList": [{"name": "web"}]})
        );

        let id = Box::pin(fx.deploy("behind-lb", "v1.tgz")).await.unwrap();
        let events = lifecycle::in_place(true);
        // The instance's queue names it, for the host policy's ec2:SourceInstanceARN.
        let queue = fx.control.queues.url(&lb.instance).await.unwrap();
        let tags = fx
            .sqs
            .list_queue_tags()
            .queue_url(&queue)
            .send()
            .await
            .unwrap();
        assert_eq!(
            tags.tags().and_then(|tags| tags.get("gantry:instance-arn")),
            Some(&format!(
                "arn:aws:ec2:us-east-1:123456789012:instance/{}",
                lb.instance
            ))
        );
        let first = fx.take_commands(&lb.instance).await;
        assert_eq!(first.len(), 1);
        assert_eq!(
            first[0].lifecycle_events,
            [LifecycleEvent::BeforeBlockTraffic]
        );
        assert_eq!(
            lb.health().await,
            Some(TargetHealthStateEnum::Healthy),
            "serving until BeforeBlockTraffic ran"
        );
        let failed = fx
            .deliver(event_reports(
                &id,
                &lb.instance,
                &first[0].lifecycle_events,
                None,
            ))
            .await;
        assert!(failed.is_empty());

        // BlockTraffic: deregistered, drained, then the install command.
        let (install, seen) = until_command(&fx, &lb).await;
        assert_eq!(install.lifecycle_events, lifecycle::stretch(&events, 2));
        assert!(install.start_by.is_some());
        assert!(
            seen.contains(&TargetHealthStateEnum::Draining),
            "drained before the install: {seen:?}"
        );
        assert_eq!(
            lb.health().await,
            None,
            "out of the target group while installing"
        );
        let target = fx
            .ok(
                "GetDeploymentTarget",
                json!({"deploymentId": id, "targetId": lb.instance}),
            )
            .await;
        let lifecycle_events = &target["deploymentTarget"]["instanceTarget"]["lifecycleEvents"];
        assert_eq!(lifecycle_events.as_array().unwrap().len(), 13);
        assert_eq!(lifecycle_events[1]["lifecycleEventName"], "BlockTraffic");
        assert_eq!(lifecycle_events[1]["status"], "Succeeded");

        let failed = fx
            .deliver(event_reports(
                &id,
                &lb.instance,
                &install.lifecycle_events,
                None,
            ))
            .await;
        assert!(failed.is_empty());

        // AllowTraffic: registered, healthy, then AfterAllowTraffic.
        let (last, seen) = until_command(&fx, &lb).await;
        assert_eq!(last.lifecycle_events, [LifecycleEvent::AfterAllowTraffic]);
        assert_eq!(
            seen.last(),
            Some(&TargetHealthStateEnum::Healthy),
            "healthy before AfterAllowTraffic: {seen:?}"
        );
        assert_eq!(fx.status(&id).await, "InProgress");
        let failed = fx
            .deliver(event_reports(
                &id,
                &lb.instance,
                &last.lifecycle_events,
                None,
            ))
            .await;
        assert!(failed.is_empty());
        assert_eq!(fx.status(&id).await, "Succeeded");
        let info = fx.deployment(&id).await;
        assert_eq!(
            info["deploymentStyle"]["deploymentOption"],
            "WITH_TRAFFIC_CONTROL"
        );
        assert_eq!(
            info["loadBalancerInfo"],
            json!({"targetGroupInfoList": [{"name": "web"}]})
        );
        lb.app.abort();
    }

    /// The writes that change only a host's record (its reports reaching BlockTraffic or
    /// AllowTraffic; the traffic step ending, which resumes it) store their effects like
    /// any other: a process killed right after such a write loses nothing. The tick,
    /// past the writer's grace, asks ELB for the step and sends the next command.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_process_killed_at_a_load_balancer_step_loses_nothing() {
        let fx = Fixture::start().await;
        fx.upload("v1.tgz", &good_bundle("v1")).await;
        let lb = balanced(&fx).await;
        lb.register().await;
        assert!(wait_for_health(&lb, TargetHealthStateEnum::Healthy).await);
        load_balanced_group(&fx, "CodeDeployDefault.OneAtATime").await;
        let id = Box::pin(fx.deploy("behind-lb", "v1.tgz")).await.unwrap();
        // Past the writer's grace, and past the idle look that brings the tick to a
        // deployment whose summary did not change; each tick later than the last, which
        // set the next look from its own time.
        let step = OUTBOX_GRACE_MS + gantry_functions::store::IDLE_TICK_MS + 1;
        let ticks = AtomicU64::new(0);
        let late = || now_ms() + step * (ticks.fetch_add(1, Ordering::SeqCst) + 1);
        let store = Arc::clone(&fx.control);
        let deployment = id.clone();
        let outbox = move |_: &Fixture| {
            let store = Arc::clone(&store);
            let id = deployment.clone();
            async move {
                store
                    .store
                    .load_deployment::<DeploymentSpec>(&id)
                    .await
                    .unwrap()
                    .outbox
            }
        };
        // Killed after the write that brings the host to BlockTraffic.
        let first = fx.take_commands(&lb.instance).await.remove(0);
        let mut bodies = event_reports(&id, &lb.instance, &first.lifecycle_events, None);
        let last = bodies.pop().unwrap();
        assert!(fx.deliver(bodies).await.is_empty());
        let effects = apply_without_effects(&fx, &id, &last).await;
        assert!(
            matches!(
                &effects[..],
                [Effect::Traffic {
                    event: LifecycleEvent::BlockTraffic,
                    ..
                }]
            ),
            "{effects:?}"
        );
        assert_eq!(lb.health().await, Some(TargetHealthStateEnum::Healthy));
        batch_advance::tick_at(&fx.control, late()).await.unwrap();
        assert!(outbox(&fx).await.is_empty());
        // The tick asked ELB to take the host out: it drains, then leaves.
        let drained = std::time::Instant::now() + DEADLINE;
        while lb.health().await.is_some() {
            assert!(std::time::Instant::now() < drained, "never deregistered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Killed after the write that ends the step: the host's next command is stored.
        let done = Input::Traffic {
            instance_id: lb.instance.clone(),
            event: LifecycleEvent::BlockTraffic,
            outcome: gantry_core::deployment::TrafficOutcome::Done,
            now: now_ms(),
        };
        let applied =
            transition::apply::<DeploymentSpec>(&fx.control.store, &id, &[done], now_ms(), 5)
                .await
                .unwrap();
        assert!(
            matches!(&applied.effects[..], [Effect::Resume { .. }]),
            "{:?}",
            applied.effects
        );
        let stored = outbox(&fx).await;
        assert_eq!(
            stored.values().next().map(|entry| &entry.effects),
            Some(&applied.effects),
            "the Resume waits in the outbox"
        );
        assert!(fx.take_commands(&lb.instance).await.is_empty());
        batch_advance::tick_at(&fx.control, late()).await.unwrap();
        let install = fx.take_commands(&lb.instance).await;
        assert_eq!(install.len(), 1, "{install:?}");
        assert_eq!(
            install[0].lifecycle_events,
            lifecycle::stretch(&lifecycle::in_place(true), 2)
        );
        assert!(outbox(&fx).await.is_empty());

        // Killed after the write that brings the host to AllowTraffic.
        let mut bodies = event_reports(&id, &lb.instance, &install[0].lifecycle_events, None);
        let last = bodies.pop().unwrap();
        assert!(fx.deliver(bodies).await.is_empty());
        let effects = apply_without_effects(&fx, &id, &last).await;
        assert!(
            matches!(
                &effects[..],
                [Effect::Traffic {
                    event: LifecycleEvent::AllowTraffic,
                    ..
                }]
            ),
            "{effects:?}"
        );
        batch_advance::tick_at(&fx.control, late()).await.unwrap();
        let (after, seen) = until_command(&fx, &lb).await;
        assert_eq!(after.lifecycle_events, [LifecycleEvent::AfterAllowTraffic]);
        assert_eq!(
            seen.last(),
            Some(&TargetHealthStateEnum::Healthy),
            "{seen:?}"
        );
        assert!(
            fx.deliver(event_reports(
                &id,
                &lb.instance,
                &after.lifecycle_events,
                None
            ))
            .await
            .is_empty()
        );
        assert_eq!(fx.status(&id).await, "Succeeded");
        assert!(outbox(&fx).await.is_empty());
        lb.app.abort();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_host_that_fails_its_health_checks_fails_allow_traffic_with_elbs_reason() {
        let fx = Fixture::start().await;
        fx.upload("v1.tgz", &good_bundle("v1")).await;
        let lb = balanced(&fx).await;
        load_balanced_group(&fx, "CodeDeployDefault.AllAtOnce").await;
        let id = Box::pin(fx.deploy("behind-lb", "v1.tgz")).await.unwrap();
        let first = fx.take_commands(&lb.instance).await.remove(0);
        fx.deliver(event_reports(
            &id,
            &lb.instance,
            &first.lifecycle_events,
            None,
        ))
        .await;
        // Never registered: BlockTraffic has nothing to wait for.
        let (install, _) = until_command(&fx, &lb).await;
        // The application is down when the host is put back.
        lb.app.abort();
        let stopped = std::time::Instant::now() + DEADLINE;
        while !lb.app.is_finished() && std::time::Instant::now() < stopped {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        fx.deliver(event_reports(
            &id,
            &lb.instance,
            &install.lifecycle_events,
            None,
        ))
        .await;
        assert!(
            wait_for_health(&lb, TargetHealthStateEnum::Unhealthy).await,
            "the stand-in's health checks fail"
        );
        // Past the AllowTraffic deadline, the tick takes a last look and fails the host.
        let later = gantry_functions::model::now_millis() + 24 * 3600 * 1000;
        batch_advance::tick_at(&fx.control, later).await.unwrap();
        assert_eq!(fx.status(&id).await, "Failed");
        let target = fx
            .ok(
                "GetDeploymentTarget",
                json!({"deploymentId": id, "targetId": lb.instance}),
            )
            .await;
        let events = &target["deploymentTarget"]["instanceTarget"]["lifecycleEvents"];
        assert_eq!(events[11]["lifecycleEventName"], "AllowTraffic");
        assert_eq!(events[11]["status"], "Failed");
        let message = events[11]["diagnostics"]["message"].as_str().unwrap();
        assert!(
            message.contains("AllowTraffic deadline") && message.contains("unhealthy"),
            "{message}"
        );
        assert_eq!(events[12]["status"], "Skipped");
        assert!(fx.take_commands(&lb.instance).await.is_empty());
    }

    async fn wait_for_health(lb: &Balanced, wanted: TargetHealthStateEnum) -> bool {
        let deadline = std::time::Instant::now() + DEADLINE;
        while std::time::Instant::now() < deadline {
            if lb.health().await == Some(wanted.clone()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn load_balancer_settings_are_checked_naming_the_field() {
        let fx = Fixture::start().await;
        let refused = |input: Value| {
            let mut base = json!({
                "applicationName": APP,
                "deploymentGroupName": "g",
                "ec2TagFilters": [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
            });
            base.as_object_mut()
                .unwrap()
                .extend(input.as_object().unwrap().clone());
            fx.call("CreateDeploymentGroup", base)
        };
        let traffic =
            json!({"deploymentType": "IN_PLACE", "deploymentOption": "WITH_TRAFFIC_CONTROL"});
        let error = refused(json!({"deploymentStyle": traffic}))
            .await
            .unwrap_err();
        assert_eq!(error.code.name(), "InvalidLoadBalancerInfoException");
        assert!(
            error.message.contains("targetGroupInfoList"),
            "{}",
            error.message
        );
        let error = refused(json!({
            "deploymentStyle": traffic,
            "loadBalancerInfo": {"elbInfoList": [{"name": "classic"}]},
        }))
        .await
        .unwrap_err();
        assert!(
            error.message.contains("loadBalancerInfo.elbInfoList"),
            "{}",
            error.message
        );
        let error = refused(json!({
            "deploymentStyle": {"deploymentType": "IN_PLACE", "deploymentOption": "SOMETIMES"},
        }))
        .await
        .unwrap_err();
        assert_eq!(error.code.name(), "InvalidDeploymentStyleException");
        assert!(
            error.message.contains("deploymentOption"),
            "{}",
            error.message
        );

        // A target group that does not exist fails the deployment's creation, naming it.
        fx.upload("v1.tgz", &good_bundle("v1")).await;
        fx.ok(
            "CreateDeploymentGroup",
            json!({
                "applicationName": APP,
                "deploymentGroupName": "g",
                "ec2TagFilters": [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
                "deploymentStyle": traffic,
                "loadBalancerInfo": {"targetGroupInfoList": [{"name": "missing"}]},
            }),
        )
        .await;
        let error = Box::pin(fx.deploy("g", "v1.tgz")).await.unwrap_err();
        assert_eq!(error.code.name(), "InvalidLoadBalancerInfoException");
        assert!(error.message.contains("missing"), "{}", error.message);

        // Without the lifecycle queue, traffic control cannot be watched.
        let bare = Fixture::with_settings(|settings| settings.lifecycle_queue_url = None).await;
        let error = bare
            .call(
                "CreateDeploymentGroup",
                json!({
                    "applicationName": APP,
                    "deploymentGroupName": "g",
                    "deploymentStyle": traffic,
                    "loadBalancerInfo": {"targetGroupInfoList": [{"name": "web"}]},
                }),
            )
            .await
            .unwrap_err();
        assert!(
            error.message.contains("GANTRY_LIFECYCLE_QUEUE_URL"),
            "{}",
            error.message
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stored_strings_are_bounded_and_oversized_input_is_refused_naming_the_field() {
    let fx = Fixture::start().await;
    fx.hosts(&["web-1", "web-2"]).await;
    fx.upload("v1.tgz", &good_bundle("v1")).await;
    fx.group("web", "CodeDeployDefault.AllAtOnce", json!({}))
        .await;
    let revision = json!({"revisionType": "S3", "s3Location": {"bucket": BUCKET, "key": "v1.tgz", "bundleType": "tgz"}});

    // Descriptions: CodeDeploy's 100 characters.
    let long = "d".repeat(101);
    let error = fx
        .call(
            "RegisterApplicationRevision",
            json!({"applicationName": APP, "revision": revision, "description": long}),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code.name(), "DescriptionTooLongException");
    let error = Box::pin(handlers::invoke(
        &fx.control,
        "create-deployment",
        json!({"applicationName": APP, "deploymentGroupName": "web", "revision": revision, "description": long}),
    ))
    .await
    .unwrap_err();
    assert_eq!(error.code.name(), "DescriptionTooLongException");
    assert!(
        error.message.contains("101 characters"),
        "{}",
        error.message
    );

    // Triggers: at most 10 a group, names of at most 100 characters.
    let trigger = |name: String| json!({"triggerName": name, "triggerTargetArn": "arn:aws:sns:us-east-1:123456789012:t", "triggerEvents": ["DeploymentFailure"]});
    let eleven: Vec<Value> = (0..11).map(|i| trigger(format!("t{i}"))).collect();
    let error = fx
        .call(
            "UpdateDeploymentGroup",
            json!({"applicationName": APP, "currentDeploymentGroupName": "web", "triggerConfigurations": eleven}),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code.name(), "TriggerTargetsLimitExceededException");
    let error = fx
        .call(
            "UpdateDeploymentGroup",
            json!({"applicationName": APP, "currentDeploymentGroupName": "web", "triggerConfigurations": [trigger("n".repeat(101))]}),
        )
        .await
        .unwrap_err();
    assert!(
        error
            .message
            .contains("triggerConfigurations[0].triggerName"),
        "{}",
        error.message
    );

    // A group too large for one DynamoDB item is refused, naming its largest field.
    let filters: Vec<Value> = (0..1500)
        .map(|i| json!({"Key": format!("{i}{}", "k".repeat(120)), "Value": "v".repeat(250), "Type": "KEY_AND_VALUE"}))
        .collect();
    let error = fx
        .call(
            "CreateDeploymentGroup",
            json!({"applicationName": APP, "deploymentGroupName": "huge", "ec2TagFilters": filters}),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code.name(), "InvalidInputException");
    assert!(
        error.message.contains("too large to store") && error.message.contains("ec2TagFilters"),
        "{}",
        error.message
    );
    let missing = fx
        .call(
            "GetDeploymentGroup",
            json!({"applicationName": APP, "deploymentGroupName": "huge"}),
        )
        .await
        .unwrap_err();
    assert_eq!(missing.code.name(), "DeploymentGroupDoesNotExistException");

    // A host's diagnostics are kept within their stored bounds, whatever it sends.
    let id = Box::pin(fx.deploy("web", "v1.tgz")).await.unwrap();
    fx.take_commands("web-1").await;
    // An on-premises host's queue carries no instance tag, only its identity's.
    let queue = fx.control.queues.url("web-1").await.unwrap();
    let tags = fx
        .sqs
        .list_queue_tags()
        .queue_url(&queue)
        .send()
        .await
        .unwrap();
    let keys: Vec<&String> = tags
        .tags()
        .map(|tags| tags.keys().collect())
        .unwrap_or_default();
    assert_eq!(
        keys,
        [gantry_functions::adapters::SENDER_ID_TAG],
        "{tags:?}"
    );
    let mut bodies = host_reports(&id, "web-1", Some(LifecycleEvent::ValidateService));
    let mut failed: Value = serde_json::from_str(bodies.last().unwrap()).unwrap();
    failed["diagnostics"]["logTail"] = json!("\u{1b}".repeat(4096));
    failed["diagnostics"]["message"] = json!("\u{7}".repeat(5000));
    failed["diagnostics"]["scriptName"] = json!("s".repeat(50_000));
    *bodies.last_mut().unwrap() = failed.to_string();
    assert!(fx.deliver(bodies).await.is_empty());
    let target = fx
        .ok(
            "GetDeploymentTarget",
            json!({"deploymentId": id, "targetId": "web-1"}),
        )
        .await;
    let events = &target["deploymentTarget"]["instanceTarget"]["lifecycleEvents"];
    let validate = &events[6];
    assert_eq!(validate["status"], "Failed");
    let stored = |field: &str| {
        let text = validate["diagnostics"][field].as_str().unwrap();
        serde_json::to_string(text).unwrap().len() - 2
    };
    assert!(stored("logTail") <= 4096, "{}", stored("logTail"));
    assert!(stored("message") <= 512, "{}", stored("message"));
    assert!(stored("scriptName") <= 512, "{}", stored("scriptName"));
}

/// Auto Scaling's notifications through an SNS topic (Gantry's lifecycle topic,
/// subscribed to the lifecycle queue): the hook targets the topic, the queue receives
/// SNS's envelope, and the launch deploys as one notified on the queue does. The
/// function also takes the topic's messages as a Lambda SNS event.
#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_notifications_through_an_sns_topic_deploy_a_launch() {
    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:gantry-lifecycle-topic";
    let fx = Fixture::with_settings(|settings| {
        settings.lifecycle_topic_arn = Some(TOPIC.into());
    })
    .await;
    let config = fx._moto.sdk_config().await;
    let sns = aws_sdk_sns::Client::new(&config);
    let topic = sns
        .create_topic()
        .name("gantry-lifecycle-topic")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    assert_eq!(topic, TOPIC);
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(fx.control.settings.lifecycle_queue_arn.clone().unwrap())
        .send()
        .await
        .unwrap();
    let autoscaling = auto_scaling_group(&config).await;
    let first = asg_instances(&autoscaling).await[0].clone();
    fx.ok(
        "CreateDeploymentGroup",
        json!({
            "applicationName": APP,
            "deploymentGroupName": "asg",
            "deploymentConfigName": "CodeDeployDefault.AllAtOnce",
            "autoScalingGroups": ["web-asg"],
        }),
    )
    .await;
    let hook = lifecycle_hook_names(&autoscaling).await[0].0.clone();
    let test = take_lifecycle_messages(&fx, 1).await;
    assert_eq!(body(&test[0])["Type"], "Notification", "{test:?}");
    assert_eq!(body(&test[0])["TopicArn"], TOPIC);
    assert!(lifecycle_event(&fx, &test).await.is_empty());

    fx.upload("v1.tgz", &good_bundle("1")).await;
    let v1 = fx.deploy("asg", "v1.tgz").await.unwrap();
    assert_eq!(fx.take_commands(&first).await.len(), 1);
    fx.run_host(&v1, &first, None).await;
    assert_eq!(fx.status(&v1).await, "Succeeded");

    let launched = scale_to(&autoscaling, 2).await[0].clone();
    let notified = take_lifecycle_messages(&fx, 1).await;
    let envelope = body(&notified[0]);
    assert_eq!(envelope["Type"], "Notification");
    let (instance, _) = launch_of(envelope["Message"].as_str().unwrap(), &hook, "asg");
    assert_eq!(instance, launched);
    // As the lifecycle function subscribed to the topic gets it: a Lambda SNS event.
    let event = json!({"Records": [{
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": format!("{TOPIC}:sub"),
        "Sns": {
            "Type": "Notification",
            "MessageId": "m-1",
            "TopicArn": TOPIC,
            "Subject": null,
            "Message": envelope["Message"],
            "Timestamp": "2026-11-27T00:00:00.000Z",
            "SignatureVersion": "1",
            "Signature": "",
            "SigningCertUrl": "",
            "UnsubscribeUrl": "",
            "MessageAttributes": {},
        },
    }]});
    Box::pin(handlers::invoke(&fx.control, "lifecycle", event))
        .await
        .expect("the SNS event is handled");
    let commands = fx.take_commands(&launched).await;
    assert_eq!(commands.len(), 1, "the launch got its deployment");
    assert_eq!(commands[0].creator, gantry_core::wire::Creator::Autoscaling);
    // The same notification again, through the queue: the same deployment, no other.
    assert!(lifecycle_event(&fx, &notified).await.is_empty());
    assert!(fx.take_commands(&launched).await.is_empty());
    fx.run_host(&commands[0].deployment_id, &launched, None)
        .await;
    let completed = take_lifecycle_messages(&fx, 1).await;
    assert!(lifecycle_event(&fx, &completed).await.is_empty());
    assert_eq!(
        lifecycle_state(&autoscaling, &launched).await.as_deref(),
        Some("InService")
    );
}

/// `terminationHookEnabled`: a terminating instance runs BeforeBlockTraffic,
/// AfterBlockTraffic and ApplicationStop (creator `autoscalingTermination`), then
/// terminates; turned off, the hook comes off the Auto Scaling group.
#[tokio::test(flavor = "multi_thread")]
async fn a_terminating_instance_stops_its_application_then_terminates() {
    let fx = Fixture::start().await;
    let config = fx._moto.sdk_config().await;
    let autoscaling = auto_scaling_group(&config).await;
    let instance = asg_instances(&autoscaling).await[0].clone();
    let created = fx
        .ok(
            "CreateDeploymentGroup",
            json!({
                "applicationName": APP,
                "deploymentGroupName": "asg",
                "deploymentConfigName": "CodeDeployDefault.AllAtOnce",
                "autoScalingGroups": ["web-asg"],
                "terminationHookEnabled": true,
            }),
        )
        .await;
    let id = created["deploymentGroupId"].as_str().unwrap();
    let mut hooks = lifecycle_hook_names(&autoscaling).await;
    hooks.sort();
    assert_eq!(
        hooks,
        vec![
            (
                format!("gantry-{id}"),
                "autoscaling:EC2_INSTANCE_LAUNCHING".to_owned(),
                "ABANDON".to_owned()
            ),
            (
                format!("gantry-termination-{id}"),
                "autoscaling:EC2_INSTANCE_TERMINATING".to_owned(),
                "CONTINUE".to_owned()
            ),
        ]
    );
    let tests = take_lifecycle_messages(&fx, 2).await;
    assert!(lifecycle_event(&fx, &tests).await.is_empty());
    let group = fx
        .ok(
            "GetDeploymentGroup",
            json!({"applicationName": APP, "deploymentGroupName": "asg"}),
        )
        .await;
    assert_eq!(group["deploymentGroupInfo"]["terminationHookEnabled"], true);

    fx.upload("v1.tgz", &good_bundle("1")).await;
    let v1 = fx.deploy("asg", "v1.tgz").await.unwrap();
    assert_eq!(fx.take_commands(&instance).await.len(), 1);
    fx.run_host(&v1, &instance, None).await;
    assert_eq!(fx.status(&v1).await, "Succeeded");

    autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name("web-asg")
        .min_size(0)
        .desired_capacity(0)
        .send()
        .await
        .unwrap();
    let notified = take_lifecycle_messages(&fx, 1).await;
    assert_eq!(
        body(&notified[0])["LifecycleTransition"],
        "autoscaling:EC2_INSTANCE_TERMINATING"
    );
    assert_eq!(
        lifecycle_state(&autoscaling, &instance).await.as_deref(),
        Some("Terminating:Wait")
    );
    assert!(lifecycle_event(&fx, &notified).await.is_empty());
    let commands = fx.take_commands(&instance).await;
    assert_eq!(commands.len(), 1);
    let command = &commands[0];
    assert_eq!(
        command.creator,
        gantry_core::wire::Creator::AutoscalingTermination
    );
    assert_eq!(
        command.lifecycle_events,
        [
            LifecycleEvent::BeforeBlockTraffic,
            LifecycleEvent::AfterBlockTraffic,
            LifecycleEvent::ApplicationStop
        ]
    );
    let info = fx.deployment(&command.deployment_id).await;
    assert_eq!(info["creator"], "autoscalingTermination");
    // Its ApplicationStop fails: the instance terminates all the same.
    let reports = gantry_tests::reports::event_reports(
        &command.deployment_id,
        &instance,
        &command.lifecycle_events,
        Some(LifecycleEvent::ApplicationStop),
    );
    assert!(fx.deliver(reports).await.is_empty());
    assert_eq!(fx.status(&command.deployment_id).await, "Failed");
    assert_eq!(
        group_deployments(&fx, "asg").await.len(),
        2,
        "no rollback of a termination"
    );
    let finished = take_lifecycle_messages(&fx, 1).await;
    assert!(lifecycle_event(&fx, &finished).await.is_empty());
    assert_eq!(
        lifecycle_state(&autoscaling, &instance).await,
        None,
        "terminated"
    );

    fx.ok(
        "UpdateDeploymentGroup",
        json!({"applicationName": APP, "currentDeploymentGroupName": "asg", "terminationHookEnabled": false}),
    )
    .await;
    let hooks = lifecycle_hook_names(&autoscaling).await;
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0].0, format!("gantry-{id}"));
}

/// An EC2 instance with an instance profile reports through its profile's role only: a
/// session of another role, named for the instance, is not it.
#[tokio::test(flavor = "multi_thread")]
async fn an_ec2_instance_reports_only_through_its_instance_profiles_role() {
    let fx = Fixture::start().await;
    let config = fx._moto.sdk_config().await;
    let role_id = instance_profile::host_role(&config, "web-host").await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let image = ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_owned();
    let instance = ec2
        .run_instances()
        .image_id(image)
        .min_count(1)
        .max_count(1)
        .iam_instance_profile(instance_profile::by_name("web-host"))
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("role")
                        .value("web")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap()
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_owned();
    fx.upload("v1.tgz", &good_bundle("v1")).await;
    fx.ok(
        "CreateDeploymentGroup",
        json!({
            "applicationName": APP,
            "deploymentGroupName": "ec2",
            "deploymentConfigName": "CodeDeployDefault.AllAtOnce",
            "ec2TagFilters": [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
        }),
    )
    .await;
    let id = Box::pin(fx.deploy("ec2", "v1.tgz")).await.unwrap();
    assert_eq!(fx.take_commands(&instance).await.len(), 1);

    // Another role's session named for the instance: dropped, counted, never retried.
    assert_ne!(fx.host_role_id, role_id);
    let forged = host_reports(&id, &instance, None);
    let count = forged.len();
    assert!(fx.deliver(forged).await.is_empty(), "dropped, not retried");
    assert_eq!(fx.status(&id).await, "InProgress");
    assert_eq!(fx.deployment(&id).await["forgedReports"], count);

    // Its own profile's role: counted.
    let own = host_reports(&id, &instance, None)
        .into_iter()
        .map(|body| (format!("{role_id}:{instance}"), body))
        .collect();
    assert!(fx.deliver_from(own).await.is_empty());
    assert_eq!(fx.status(&id).await, "Succeeded");
}

/// BatchGetDeploymentTargets' `instanceTarget` for one host.
async fn instance_target(fx: &Fixture, deployment_id: &str, host: &str) -> Value {
    fx.ok(
        "BatchGetDeploymentTargets",
        json!({"deploymentId": deployment_id, "targetIds": [host]}),
    )
    .await["deploymentTargets"][0]["instanceTarget"]
        .take()
}

/// The attacker's side: an EC2 instance without an instance profile. Any principal
/// allowed to assume some role could name a session for it, so nothing could tell its
/// agent's reports from forged ones: it fails as the deployment starts, saying why, is
/// sent no command, and a report from a role session named for it does not count.
#[tokio::test(flavor = "multi_thread")]
async fn an_ec2_instance_without_an_instance_profile_fails_at_the_start_and_its_reports_are_refused()
 {
    let fx = Fixture::start().await;
    let ec2 = aws_sdk_ec2::Client::new(&fx._moto.sdk_config().await);
    let image = ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_owned();
    let launch = |profile: Option<&str>| {
        ec2.run_instances()
            .image_id(&image)
            .min_count(1)
            .max_count(1)
            .set_iam_instance_profile(profile.map(instance_profile::by_name))
            .tag_specifications(
                aws_sdk_ec2::types::TagSpecification::builder()
                    .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                    .tags(
                        aws_sdk_ec2::types::Tag::builder()
                            .key("role")
                            .value("web")
                            .build(),
                    )
                    .build(),
            )
            .send()
    };
    let id_of = |output: aws_sdk_ec2::operation::run_instances::RunInstancesOutput| {
        output.instances()[0].instance_id().unwrap().to_owned()
    };
    let bare = id_of(launch(None).await.unwrap());
    let profiled = id_of(launch(Some(HOST_ROLE)).await.unwrap());
    fx.upload("v1.tgz", &good_bundle("v1")).await;
    fx.ok(
        "CreateDeploymentGroup",
        json!({
            "applicationName": APP,
            "deploymentGroupName": "ec2",
            "deploymentConfigName": "CodeDeployDefault.AllAtOnce",
            "ec2TagFilters": [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
        }),
    )
    .await;
    let id = Box::pin(fx.deploy("ec2", "v1.tgz")).await.unwrap();

    // Failed at the start, without a command; the instance with a profile goes on.
    assert_eq!(
        fx.dispatched(&[&bare, &profiled]).await,
        vec![profiled.clone()]
    );
    let info = fx.deployment(&id).await;
    assert_eq!(info["status"], "InProgress", "{info}");
    assert_eq!(info["deploymentOverview"]["Failed"], 1, "{info}");
    assert_eq!(info["deploymentOverview"]["InProgress"], 1, "{info}");
    let failed = instance_target(&fx, &id, &bare).await;
    assert_eq!(failed["status"], "Failed", "{failed}");
    let first = &failed["lifecycleEvents"][0];
    assert_eq!(first["status"], "Failed", "{failed}");
    let message = first["diagnostics"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{bare} has no instance profile")),
        "{message}"
    );

    // A role session named for it (here, even the hosts' own role): dropped as forged,
    // not retried, and the target stays as it was.
    let forged = host_reports(&id, &bare, None);
    let count = forged.len();
    assert!(fx.deliver(forged).await.is_empty(), "dropped, not retried");
    assert_eq!(fx.deployment(&id).await["forgedReports"], count);
    assert_eq!(instance_target(&fx, &id, &bare).await, failed);

    // The instance with a profile succeeds, and AllAtOnce needs only one success.
    fx.run_host(&id, &profiled, None).await;
    let info = fx.deployment(&id).await;
    assert_eq!(info["status"], "Succeeded", "{info}");
    assert_eq!(info["deploymentOverview"]["Failed"], 1, "{info}");
}

/// The first batch is a batch boundary: a deployment created while one of its alarms is
/// in ALARM stops before any host is sent a command.
#[tokio::test(flavor = "multi_thread")]
async fn an_alarm_already_firing_stops_a_new_deployment_before_any_host() {
    let fx = Fixture::start().await;
    alarm(&fx, "web-errors", "ALARM").await;
    fx.hosts(&["web-1", "web-2"]).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.group(
        "web",
        "CodeDeployDefault.AllAtOnce",
        json!({"alarmConfiguration": {"enabled": true, "alarms": [{"name": "web-errors"}]}}),
    )
    .await;
    let id = Box::pin(fx.deploy("web", "v1.tgz")).await.unwrap();
    let info = fx.deployment(&id).await;
    assert_eq!(info["status"], "Stopped", "{info}");
    assert_eq!(info["errorInformation"]["code"], "ALARM_ACTIVE", "{info}");
    assert_eq!(info["deploymentOverview"]["Skipped"], 2, "{info}");
    assert!(
        fx.dispatched(&["web-1", "web-2"]).await.is_empty(),
        "no host was sent a command"
    );
    // The group is free for the next deployment.
    let group = fx
        .ok(
            "GetDeploymentGroup",
            json!({"applicationName": APP, "deploymentGroupName": "web"}),
        )
        .await;
    assert_eq!(
        group["deploymentGroupInfo"]["lastAttemptedDeployment"]["deploymentId"],
        id
    );
}

/// With the stack's bundle bucket and revision prefix set, a revision elsewhere is
/// refused when pushed or deployed, naming the field, instead of failing on every host.
#[tokio::test(flavor = "multi_thread")]
async fn revisions_outside_the_bundle_buckets_prefix_are_refused() {
    let fx = Fixture::with_settings(|settings| {
        settings.bundle_bucket = Some(BUCKET.into());
        settings.revision_prefix = Some("revisions/".into());
    })
    .await;
    fx.hosts(&["web-1"]).await;
    fx.group("web", "CodeDeployDefault.AllAtOnce", json!({}))
        .await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.upload("revisions/v1.tgz", &good_bundle("1")).await;
    let at = |bucket: &str, key: &str| json!({"revisionType": "S3", "s3Location": {"bucket": bucket, "key": key, "bundleType": "tgz"}});
    let error = fx
        .call(
            "RegisterApplicationRevision",
            json!({"applicationName": APP, "revision": at(BUCKET, "v1.tgz")}),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code.name(), "InvalidRevisionException");
    assert!(
        error.message.contains("revision.s3Location.key") && error.message.contains("revisions/"),
        "{}",
        error.message
    );
    let error = Box::pin(handlers::invoke(
        &fx.control,
        "create-deployment",
        json!({"applicationName": APP, "deploymentGroupName": "web", "revision": at("elsewhere", "revisions/v1.tgz")}),
    ))
    .await
    .unwrap_err();
    assert!(
        error.message.contains("revision.s3Location.bucket"),
        "{}",
        error.message
    );
    fx.ok(
        "RegisterApplicationRevision",
        json!({"applicationName": APP, "revision": at(BUCKET, "revisions/v1.tgz")}),
    )
    .await;
    Box::pin(handlers::invoke(
        &fx.control,
        "create-deployment",
        json!({"applicationName": APP, "deploymentGroupName": "web", "revision": at(BUCKET, "revisions/v1.tgz")}),
    ))
    .await
    .expect("a revision under the prefix deploys");
}

// ---- UpdateApplication renames an application with everything it has ----

/// The name the rename tests give the fixture's application.
const RENAMED: &str = "storefront";

/// CreateDeployment of `key` to `app`'s `group`.
async fn deploy_to(fx: &Fixture, app: &str, group: &str, key: &str) -> String {
    Box::pin(handlers::invoke(
        &fx.control,
        "create-deployment",
        json!({
            "applicationName": app,
            "deploymentGroupName": group,
            "revision": {"revisionType": "S3", "s3Location": {"bucket": BUCKET, "key": key, "bundleType": "tgz"}},
        }),
    ))
    .await
    .unwrap_or_else(|error| panic!("deploying {key} to {app}/{group}: {error}"))["deploymentId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Deploys `key` to `group` of the fixture's application and has every host succeed.
async fn deployed(fx: &Fixture, group: &str, key: &str, hosts: &[&str]) -> String {
    let id = deploy_to(fx, APP, group, key).await;
    for host in fx.dispatched(hosts).await {
        fx.run_host(&id, &host, None).await;
    }
    assert_eq!(fx.status(&id).await, "Succeeded");
    id
}

/// ListDeployments of `app`'s `group`, newest first.
async fn deployments_of(fx: &Fixture, app: &str, group: &str) -> Vec<String> {
    list_all(
        fx,
        "ListDeployments",
        json!({"applicationName": app, "deploymentGroupName": group}),
        "deployments",
    )
    .await
}

/// The instances with a health record in `app`'s `group`.
async fn health_of(fx: &Fixture, app: &str, group: &str) -> Vec<String> {
    fx.control
        .store
        .group_health(app, group)
        .await
        .unwrap()
        .into_keys()
        .collect()
}

/// A renamed application answers every read by its new name, with its groups (settings,
/// last successful deployment, target revision, tags), revisions, tags, instance health
/// and past deployments; past deployments keep the name they were made with; the old
/// name answers ApplicationDoesNotExistException; and a deployment by the new name has
/// the group's last successful revision as its previous revision and rollback target.
#[tokio::test(flavor = "multi_thread")]
async fn renaming_an_application_moves_its_groups_revisions_tags_health_and_history() {
    let fx = Fixture::start().await;
    // In parts: one async body this long overflows a debug build's stack.
    let (first, before) = Box::pin(a_deployed_tagged_application_renamed(&fx)).await;
    Box::pin(the_renamed_group_answers(&fx, &before, &first)).await;
    Box::pin(the_old_name_is_gone(&fx)).await;
    Box::pin(the_renamed_group_deploys_and_rolls_back(&fx, &first)).await;
}

/// The fixture's application, tagged, with group web (tagged, rolling back on failure)
/// where v1 succeeded, renamed; returns v1's deployment and the group as it was.
async fn a_deployed_tagged_application_renamed(fx: &Fixture) -> (String, Value) {
    fx.hosts(&["web-1", "web-2"]).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.upload("v2.tgz", &good_bundle("2")).await;
    fx.group(
        "web",
        "CodeDeployDefault.AllAtOnce",
        json!({
            "autoRollbackConfiguration": {"enabled": true, "events": ["DEPLOYMENT_FAILURE"]},
            "tags": [{"Key": "tier", "Value": "front"}],
        }),
    )
    .await;
    fx.ok(
        "TagResource",
        json!({"ResourceArn": codedeploy_arn(&format!("application:{APP}")), "Tags": [{"Key": "team", "Value": "shop"}]}),
    )
    .await;
    let application_id = fx
        .ok("GetApplication", json!({"applicationName": APP}))
        .await["application"]["applicationId"]
        .clone();
    let first = deployed(fx, "web", "v1.tgz", &["web-1", "web-2"]).await;
    let before = deployment_group(fx, "web").await;

    fx.ok(
        "UpdateApplication",
        json!({"applicationName": APP, "newApplicationName": RENAMED}),
    )
    .await;

    let renamed = fx
        .ok("GetApplication", json!({"applicationName": RENAMED}))
        .await;
    assert_eq!(renamed["application"]["applicationId"], application_id);
    assert_eq!(renamed["application"]["applicationName"], RENAMED);
    assert_eq!(
        list_all(fx, "ListApplications", json!({}), "applications").await,
        vec![RENAMED.to_owned()]
    );
    (first, before)
}

async fn the_renamed_group_answers(fx: &Fixture, before: &Value, first: &str) {
    let groups = fx
        .ok("ListDeploymentGroups", json!({"applicationName": RENAMED}))
        .await;
    assert_eq!(groups["deploymentGroups"], json!(["web"]), "{groups}");
    let group = fx
        .ok(
            "GetDeploymentGroup",
            json!({"applicationName": RENAMED, "deploymentGroupName": "web"}),
        )
        .await["deploymentGroupInfo"]
        .clone();
    assert_eq!(group["applicationName"], RENAMED, "{group}");
    for field in [
        "deploymentGroupId",
        "lastSuccessfulDeployment",
        "lastAttemptedDeployment",
        "targetRevision",
        "autoRollbackConfiguration",
        "onPremisesInstanceTagFilters",
    ] {
        assert_eq!(group[field], before[field], "{field}: {group}");
    }
    assert_eq!(group["lastSuccessfulDeployment"]["deploymentId"], first);
    let revisions = fx
        .ok(
            "ListApplicationRevisions",
            json!({"applicationName": RENAMED}),
        )
        .await;
    assert_eq!(
        revisions["revisions"][0]["s3Location"]["key"], "v1.tgz",
        "{revisions}"
    );
    assert_eq!(revisions["revisions"].as_array().unwrap().len(), 1);
    assert_eq!(deployments_of(fx, RENAMED, "web").await, vec![first]);
    // History keeps the name it was made with.
    assert_eq!(fx.deployment(first).await["applicationName"], APP);
    assert_eq!(
        tags_of(fx, &codedeploy_arn(&format!("application:{RENAMED}"))).await,
        json!([{"Key": "team", "Value": "shop"}])
    );
    assert_eq!(
        tags_of(
            fx,
            &codedeploy_arn(&format!("deploymentgroup:{RENAMED}/web"))
        )
        .await,
        json!([{"Key": "tier", "Value": "front"}])
    );
    assert_eq!(health_of(fx, RENAMED, "web").await, vec!["web-1", "web-2"]);
    assert!(health_of(fx, APP, "web").await.is_empty());
}

async fn the_old_name_is_gone(fx: &Fixture) {
    let app = json!({"applicationName": APP});
    let group = json!({"applicationName": APP, "deploymentGroupName": "web"});
    for (operation, input) in [
        ("GetApplication", &app),
        ("ListDeploymentGroups", &app),
        ("ListApplicationRevisions", &app),
        ("GetDeploymentGroup", &group),
        ("ListDeployments", &group),
    ] {
        assert_eq!(
            error_code(fx, operation, input.clone()).await,
            "ApplicationDoesNotExistException",
            "{operation}"
        );
    }
    assert_eq!(
        error_code(
            fx,
            "ListTagsForResource",
            json!({"ResourceArn": codedeploy_arn(&format!("application:{APP}"))})
        )
        .await,
        "ApplicationDoesNotExistException"
    );
    assert_eq!(
        error_code(
            fx,
            "ListTagsForResource",
            json!({"ResourceArn": codedeploy_arn(&format!("deploymentgroup:{APP}/web"))})
        )
        .await,
        "DeploymentGroupDoesNotExistException"
    );
}

async fn the_renamed_group_deploys_and_rolls_back(fx: &Fixture, first: &str) {
    let bad = deploy_to(fx, RENAMED, "web", "v2.tgz").await;
    let info = fx.deployment(&bad).await;
    assert_eq!(info["applicationName"], RENAMED);
    assert_eq!(
        info["previousRevision"]["s3Location"]["key"], "v1.tgz",
        "{info}"
    );
    for host in fx.dispatched(&["web-1", "web-2"]).await {
        fx.run_host(&bad, &host, Some(LifecycleEvent::ValidateService))
            .await;
    }
    let info = fx.deployment(&bad).await;
    assert_eq!(info["status"], "Failed", "{info}");
    let rollback = info["rollbackInfo"]["rollbackDeploymentId"]
        .as_str()
        .unwrap_or_else(|| panic!("no rollback in {info}"))
        .to_owned();
    let rollback_info = fx.deployment(&rollback).await;
    assert_eq!(rollback_info["applicationName"], RENAMED);
    assert_eq!(
        rollback_info["revision"]["s3Location"]["key"], "v1.tgz",
        "{rollback_info}"
    );
    let mut listed = deployments_of(fx, RENAMED, "web").await;
    listed.sort();
    let mut expected = vec![first.to_owned(), bad, rollback];
    expected.sort();
    assert_eq!(listed, expected);
}

/// A rename waits for the application's deployments to end (DeploymentAlreadyStarted),
/// refuses a name that is taken or invalid, and changes nothing when it refuses.
#[tokio::test(flavor = "multi_thread")]
async fn a_rename_waits_for_running_deployments_and_refuses_a_taken_name() {
    let fx = Fixture::start().await;
    fx.hosts(&["web-1"]).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.group("web", "CodeDeployDefault.AllAtOnce", json!({}))
        .await;
    let running = deploy_to(&fx, APP, "web", "v1.tgz").await;
    let rename = json!({"applicationName": APP, "newApplicationName": RENAMED});
    assert_eq!(
        error_code(&fx, "UpdateApplication", rename.clone()).await,
        "DeploymentAlreadyStartedException"
    );
    assert_eq!(
        error_code(&fx, "GetApplication", json!({"applicationName": RENAMED})).await,
        "ApplicationDoesNotExistException"
    );
    assert_eq!(deployment_group(&fx, "web").await["applicationName"], APP);

    fx.ok("CreateApplication", json!({"applicationName": "taken"}))
        .await;
    assert_eq!(
        error_code(
            &fx,
            "UpdateApplication",
            json!({"applicationName": APP, "newApplicationName": "taken"})
        )
        .await,
        "ApplicationAlreadyExistsException"
    );
    assert_eq!(
        error_code(
            &fx,
            "UpdateApplication",
            json!({"applicationName": APP, "newApplicationName": "a#b"})
        )
        .await,
        "InvalidInputException"
    );

    for host in fx.dispatched(&["web-1"]).await {
        fx.run_host(&running, &host, None).await;
    }
    assert_eq!(fx.status(&running).await, "Succeeded");
    fx.ok("UpdateApplication", rename).await;
    let group = fx
        .ok(
            "GetDeploymentGroup",
            json!({"applicationName": RENAMED, "deploymentGroupName": "web"}),
        )
        .await;
    assert_eq!(
        group["deploymentGroupInfo"]["lastSuccessfulDeployment"]["deploymentId"],
        running
    );
}

/// A rename cut short after its first group moved (the steps a call takes, stopped
/// there) loses nothing: each group answers by one name or the other. Another name is
/// refused until it is finished, and calling UpdateApplication again finishes it,
/// health records of a big group (more than one transaction's worth) included.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_rename_loses_nothing_and_calling_again_finishes_it() {
    let fx = Fixture::start().await;
    let hosts = ["web-1", "web-2"];
    // In parts: one async body this long overflows a debug build's stack.
    let (in_a, in_b) = Box::pin(two_groups_one_with_many_hosts(&fx, &hosts)).await;
    Box::pin(a_rename_cut_short_after_one_group(&fx, &in_a)).await;
    Box::pin(calling_again_finishes_the_rename(&fx, &hosts, &in_a, &in_b)).await;
}

/// Groups a and b deployed to `hosts`, and a with 120 more hosts' health; returns their
/// deployments.
async fn two_groups_one_with_many_hosts(fx: &Fixture, hosts: &[&str]) -> (String, String) {
    fx.hosts(hosts).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    fx.group("a", "CodeDeployDefault.AllAtOnce", json!({}))
        .await;
    fx.group("b", "CodeDeployDefault.AllAtOnce", json!({}))
        .await;
    let in_a = deployed(fx, "a", "v1.tgz", hosts).await;
    let in_b = deployed(fx, "b", "v1.tgz", hosts).await;
    let store = &fx.control.store;
    let health = store.group_health(APP, "a").await.unwrap()["web-1"].clone();
    for index in 0..120 {
        store
            .record_health(APP, "a", &format!("i-{index:017x}"), &health)
            .await
            .unwrap();
    }
    (in_a, in_b)
}

/// The steps of a rename, stopped after group a moved: both names answer, each group by
/// one of them, and another rename of either is refused.
async fn a_rename_cut_short_after_one_group(fx: &Fixture, in_a: &str) {
    let store = &fx.control.store;
    let mut info: gantry_functions::model::ApplicationInfo = serde_json::from_value(
        fx.ok("GetApplication", json!({"applicationName": APP}))
            .await["application"]
            .clone(),
    )
    .unwrap();
    info.application_name = RENAMED.into();
    store
        .reserve_application_name(APP, RENAMED, &info)
        .await
        .unwrap();
    store.move_revisions(APP, RENAMED).await.unwrap();
    assert_eq!(
        store.move_group(APP, RENAMED, "a").await.unwrap(),
        gantry_functions::store::GroupMove::Moved
    );

    for app in [APP, RENAMED] {
        fx.ok("GetApplication", json!({"applicationName": app}))
            .await;
    }
    let get =
        |app: &str, group: &str| json!({"applicationName": app, "deploymentGroupName": group});
    let moved = fx.ok("GetDeploymentGroup", get(RENAMED, "a")).await;
    assert_eq!(
        moved["deploymentGroupInfo"]["lastSuccessfulDeployment"]["deploymentId"],
        in_a
    );
    fx.ok("GetDeploymentGroup", get(APP, "b")).await;
    assert_eq!(
        error_code(fx, "GetDeploymentGroup", get(APP, "a")).await,
        "DeploymentGroupDoesNotExistException"
    );
    // Tagged by its old name while the rename runs, it keeps the tags.
    fx.ok(
        "TagResource",
        json!({"ResourceArn": codedeploy_arn(&format!("application:{APP}")), "Tags": [{"Key": "during", "Value": "rename"}]}),
    )
    .await;
    for (from, to) in [(APP, "other"), (RENAMED, "other")] {
        assert_eq!(
            error_code(
                fx,
                "UpdateApplication",
                json!({"applicationName": from, "newApplicationName": to})
            )
            .await,
            "InvalidOperationException",
            "{from} to {to}"
        );
    }
}

async fn calling_again_finishes_the_rename(fx: &Fixture, hosts: &[&str], in_a: &str, in_b: &str) {
    let store = &fx.control.store;
    fx.ok(
        "UpdateApplication",
        json!({"applicationName": APP, "newApplicationName": RENAMED}),
    )
    .await;
    assert_eq!(health_of(fx, RENAMED, "a").await.len(), 122);
    assert_eq!(health_of(fx, RENAMED, "b").await, hosts);
    assert!(health_of(fx, APP, "a").await.is_empty());
    assert_eq!(
        tags_of(fx, &codedeploy_arn(&format!("application:{RENAMED}"))).await,
        json!([{"Key": "during", "Value": "rename"}])
    );
    assert_eq!(deployments_of(fx, RENAMED, "a").await, vec![in_a]);
    assert_eq!(deployments_of(fx, RENAMED, "b").await, vec![in_b]);
    let groups = fx
        .ok("ListDeploymentGroups", json!({"applicationName": RENAMED}))
        .await;
    assert_eq!(groups["deploymentGroups"], json!(["a", "b"]));
    assert_eq!(
        store.rename_marks(RENAMED).await.unwrap(),
        Some(gantry_functions::store::RenameMarks::default())
    );
    assert!(
        store
            .groups_moved_from(RENAMED, APP)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        error_code(
            fx,
            "UpdateApplication",
            json!({"applicationName": APP, "newApplicationName": RENAMED})
        )
        .await,
        "ApplicationDoesNotExistException"
    );
}

/// A renamed application's groups put their Auto Scaling launch hooks again with the new
/// name as metadata: a launch after the rename is handled for the renamed group.
#[tokio::test(flavor = "multi_thread")]
async fn a_rename_puts_the_launch_hooks_again_naming_the_new_application() {
    let fx = Fixture::start().await;
    let config = fx._moto.sdk_config().await;
    let autoscaling = auto_scaling_group(&config).await;
    fx.ok(
        "CreateDeploymentGroup",
        json!({
            "applicationName": APP,
            "deploymentGroupName": "asg",
            "deploymentConfigName": "CodeDeployDefault.AllAtOnce",
            "autoScalingGroups": ["web-asg"],
        }),
    )
    .await;
    // Auto Scaling tests the hook's new target.
    take_lifecycle_messages(&fx, 1).await;
    fx.ok(
        "UpdateApplication",
        json!({"applicationName": APP, "newApplicationName": RENAMED}),
    )
    .await;
    let launched = scale_to(&autoscaling, 2).await[0].clone();
    // The hook put again keeps its target: Auto Scaling sends no test this time.
    let launch = take_lifecycle_messages(&fx, 1).await;
    let notification = body(&launch[0]);
    assert_eq!(notification["EC2InstanceId"], launched.as_str());
    assert_eq!(
        body(notification["NotificationMetadata"].as_str().unwrap()),
        json!({"applicationName": RENAMED, "deploymentGroupName": "asg"})
    );
    assert!(lifecycle_event(&fx, &launch).await.is_empty());
    assert_eq!(
        lifecycle_state(&autoscaling, &launched).await.as_deref(),
        Some("InService"),
        "the renamed group has nothing deployed yet: the launch goes on"
    );
}

/// With a trigger topic prefix (the template sets `<Prefix>-`), a group's triggers may
/// name only this account's and region's topics with that prefix: the functions may
/// publish nowhere else.
#[tokio::test(flavor = "multi_thread")]
async fn trigger_topics_outside_the_stacks_prefix_are_refused() {
    let fx = Fixture::with_settings(|settings| {
        settings.trigger_topic_prefix = Some("gantry-".into());
    })
    .await;
    let trigger = |arn: &str| {
        json!({
            "applicationName": APP,
            "deploymentGroupName": "web",
            "onPremisesInstanceTagFilters": [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
            "triggerConfigurations": [{"triggerName": "t", "triggerTargetArn": arn, "triggerEvents": ["DeploymentFailure"]}],
        })
    };
    for arn in [
        "arn:aws:sns:us-east-1:123456789012:payments-alerts",
        "arn:aws:sns:us-east-1:999999999999:gantry-deploys",
        "arn:aws:sns:eu-west-1:123456789012:gantry-deploys",
        "arn:aws:sqs:us-east-1:123456789012:gantry-deploys",
    ] {
        let error = fx
            .call("CreateDeploymentGroup", trigger(arn))
            .await
            .unwrap_err();
        assert_eq!(error.code.name(), "InvalidTriggerConfigException", "{arn}");
        assert!(
            error
                .message
                .contains("triggerConfigurations[0].triggerTargetArn")
                && error.message.contains("gantry-"),
            "{}",
            error.message
        );
    }
    fx.ok(
        "CreateDeploymentGroup",
        trigger("arn:aws:sns:us-east-1:123456789012:gantry-deploys"),
    )
    .await;
}

/// Issue 27: the schedule serves one deployment due itself and fans several out, a
/// `gantryTick` each on the lifecycle queue, so no invocation serves them one after
/// another; each is leased, so the next tick does not post it again while its message
/// waits. The lifecycle function serves each; a tick for a deployment that does not
/// exist is dropped, not retried.
#[tokio::test(flavor = "multi_thread")]
async fn a_tick_with_several_deployments_due_fans_them_out_to_the_lifecycle_function() {
    let fx = Fixture::start().await;
    register_fleet(&fx, 1).await;
    fx.upload("v1.tgz", &good_bundle("1")).await;
    let mut ids = Vec::new();
    for group in ["web", "api"] {
        fx.group(group, "CodeDeployDefault.AllAtOnce", json!({}))
            .await;
        ids.push(fx.deploy(group, "v1.tgz").await.unwrap());
    }
    take_lifecycle_messages(&fx, 0).await;
    for id in &ids {
        fx.control.store.lease(id, now_ms() - 1).await.unwrap();
    }

    assert_eq!(batch_advance::tick(&fx.control).await.unwrap(), 2);
    let mut posted = take_lifecycle_messages(&fx, 2).await;
    posted.sort();
    let mut expected: Vec<String> = ids
        .iter()
        .map(|id| json!({"gantryTick": {"deploymentId": id}}).to_string())
        .collect();
    expected.sort();
    assert_eq!(posted, expected);
    assert_eq!(
        batch_advance::tick(&fx.control).await.unwrap(),
        0,
        "leased while their messages wait"
    );

    for body in posted {
        handlers::autoscaling::handle_message(&fx.control, &body)
            .await
            .unwrap();
    }
    let due = fx.control.store.due_deployments(now_ms()).await.unwrap();
    assert!(due.is_empty(), "each was served and rescheduled: {due:?}");
    handlers::autoscaling::handle_message(
        &fx.control,
        &json!({"gantryTick": {"deploymentId": "d-NOTTHERE1"}}).to_string(),
    )
    .await
    .expect("dropped, not retried");
}

/// Issue 27, with a real fault: the failed deployment's lock release fails for now (the
/// stand-in answers DynamoDB's InternalServerError to every attempt), so its automatic
/// rollback finds the group still locked. It is not given up as "another deployment
/// started first": the tick's retry releases the lock, then creates the rollback.
#[tokio::test(flavor = "multi_thread")]
async fn an_automatic_rollback_outlasts_a_lock_release_that_fails_for_now() {
    let fx = rollback_fixture().await;
    let good = fx.deploy("web", "v1.tgz").await.unwrap();
    fx.run_host(&good, "web-1", None).await;
    let bad = fx.deploy("web", "v2.tgz").await.unwrap();
    fx._moto
        .fail_next(
            "DynamoDB_20120810.UpdateItem",
            "REMOVE activeDeploymentId",
            10,
        )
        .unwrap();
    fx.run_host(&bad, "web-1", Some(LifecycleEvent::ValidateService))
        .await;
    fx._moto.clear_faults().unwrap();
    assert_eq!(fx.status(&bad).await, "Failed");
    let info = fx.deployment(&bad).await;
    assert!(
        info["rollbackInfo"].is_null(),
        "no rollback yet, and none given up: {info}"
    );
    let group = fx
        .control
        .store
        .load_group::<Value>(APP, "web")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        group.active_deployment_id.as_deref(),
        Some(bad.as_str()),
        "its release failed: the lock is still held"
    );

    batch_advance::tick_at(&fx.control, now_ms() + OUTBOX_GRACE_MS + 1)
        .await
        .unwrap();
    let info = fx.deployment(&bad).await;
    let rollback = info["rollbackInfo"]["rollbackDeploymentId"]
        .as_str()
        .unwrap_or_else(|| panic!("the retry created the rollback: {info}"));
    assert_eq!(
        fx.deployment(rollback).await["revision"]["s3Location"]["key"],
        "v1.tgz"
    );
}
