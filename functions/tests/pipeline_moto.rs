//! The `pipeline` function (CodePipeline's "Invoke AWS Lambda" action) against a real moto
//! server: jobs shaped as CodePipeline sends them, their artifacts in an artifact bucket,
//! their results recorded by the stand-in (tests/standin/codepipeline.py). The test plays
//! CodePipeline's part: while a job is answered with a continuation token, it invokes the
//! function again (a new job carrying the token), as CodePipeline does; and it plays the
//! hosts, delivering their reports to batch-advance as the SQS event source does.

use aws_sdk_s3::primitives::ByteStream;
use gantry_core::lifecycle::LifecycleEvent;
use gantry_core::wire::HostMessage;
use gantry_functions::control::{ControlPlane, Settings};
use gantry_functions::error::ApiError;
use gantry_functions::handlers;
use gantry_tests::archive::{self, Entry};
use gantry_tests::instance_profile;
use gantry_tests::moto::Moto;
use gantry_tests::reports::host_reports;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

const BUNDLES: &str = "gantry-bundles";
const ARTIFACTS: &str = "codepipeline-us-east-1-artifacts";
const PREFIX: &str = "revisions/";
const APP: &str = "shop";
const HOST_ROLE: &str = "gantry-hosts";

static NEXT_MESSAGE: AtomicU64 = AtomicU64::new(1);

struct Fixture {
    moto: Moto,
    control: ControlPlane,
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    host_role_id: String,
}

fn settings() -> Settings {
    Settings {
        command_queue_prefix: "cmd-".into(),
        account_id: "123456789012".into(),
        command_dead_letter_arn: None,
        // As the pipeline function runs in Lambda (handlers::carries_fleet_effects).
        fleet_effects_here: false,
        lambda_hook_prefix: None,
        bundle_bucket: Some(BUNDLES.into()),
        revision_prefix: Some(PREFIX.into()),
        ..Settings::defaults()
    }
}

fn good_bundle() -> Vec<Entry> {
    vec![
        Entry::file(
            "appspec.yml",
            b"version: 0.0\nos: linux\nfiles:\n  - source: app/\n    destination: /srv/shop\nhooks:\n  ValidateService:\n    - location: scripts/validate.sh\n      timeout: 30\n",
        ),
        Entry::file("app/version.txt", b"1"),
        Entry::file_with_mode("scripts/validate.sh", b"#!/bin/sh\nexit 0\n", 0o755),
    ]
}

fn parameters(group: &str) -> String {
    json!({"application": APP, "deploymentGroup": group, "deploymentConfig": "CodeDeployDefault.OneAtATime"})
        .to_string()
}

/// A job as CodePipeline sends it to the function.
fn job(id: &str, user_parameters: Option<&str>, artifact: &str, token: Option<&str>) -> Value {
    json!({"CodePipeline.job": {
        "id": id,
        "accountId": "123456789012",
        "data": {
            "actionConfiguration": {"configuration": {
                "FunctionName": "gantry-pipeline",
                "UserParameters": user_parameters,
            }},
            "inputArtifacts": [{
                "name": "BuildOutput",
                "revision": null,
                "location": {"type": "S3", "s3Location": {"bucketName": ARTIFACTS, "objectKey": artifact}},
            }],
            "outputArtifacts": [],
            "artifactCredentials": {
                "accessKeyId": "ASIAPIPELINEJOB00001",
                "secretAccessKey": "job-secret",
                "sessionToken": "job-session",
            },
            "continuationToken": token,
        },
    }})
}

impl Fixture {
    async fn start() -> Self {
        let moto = Moto::start().expect("moto");
        let config = moto.sdk_config().await;
        let control = ControlPlane::new(&config, settings());
        control.store.create_table().await.expect("table");
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        );
        for bucket in [BUNDLES, ARTIFACTS] {
            s3.create_bucket()
                .bucket(bucket)
                .send()
                .await
                .expect("bucket");
        }
        s3.put_bucket_versioning()
            .bucket(BUNDLES)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("versioning");
        let host_role_id = instance_profile::host_role(&config, HOST_ROLE).await;
        let fixture = Self {
            moto,
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

    async fn ok(&self, operation: &str, input: Value) -> Value {
        match handlers::invoke(
            &self.control,
            "api",
            json!({"operation": operation, "input": input}),
        )
        .await
        {
            Ok(output) => output,
            Err(error) => panic!("{operation} {input}: {error}"),
        }
    }

    /// Group `name` of on-premises hosts `hosts`, tagged `group=<name>`.
    async fn group(&self, name: &str, hosts: &[&str]) {
        for host in hosts {
            self.ok(
                "RegisterOnPremisesInstance",
                json!({"instanceName": host, "iamSessionArn": format!("arn:aws:sts::123456789012:assumed-role/{HOST_ROLE}/{host}")}),
            )
            .await;
            self.ok(
                "AddTagsToOnPremisesInstances",
                json!({"instanceNames": [host], "tags": [{"Key": "group", "Value": name}]}),
            )
            .await;
        }
        self.ok(
            "CreateDeploymentGroup",
            json!({
                "applicationName": APP,
                "deploymentGroupName": name,
                "onPremisesInstanceTagFilters": [{"Key": "group", "Value": name, "Type": "KEY_AND_VALUE"}],
                "tags": [{"Key": "gantry:codepipeline", "Value": "allow"}],
            }),
        )
        .await;
    }

    async fn artifact(&self, key: &str, bytes: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(ARTIFACTS)
            .key(key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .expect("artifact upload");
    }

    async fn invoke(&self, event: Value) -> Result<Value, ApiError> {
        Box::pin(handlers::invoke(&self.control, "pipeline", event)).await
    }

    /// Invokes the function with `event` and returns what the job was answered (the
    /// stand-in's record): exactly one result per invocation.
    async fn answer(&self, event: Value) -> Value {
        let id = event["CodePipeline.job"]["id"].as_str().unwrap().to_owned();
        let before = self.results(&id).len();
        let output = self.invoke(event).await.expect("the invocation succeeds");
        let results = self.results(&id);
        assert_eq!(
            results.len(),
            before + 1,
            "one result per invocation: {results:?}"
        );
        assert_eq!(output["jobId"], id.as_str());
        results.last().unwrap().clone()
    }

    fn results(&self, job_id: &str) -> Vec<Value> {
        self.moto.job_results(job_id).expect("job results")
    }

    /// Hosts with a command waiting, after taking their messages.
    async fn dispatched(&self, hosts: &[&str]) -> Vec<String> {
        let mut sent = Vec::new();
        for host in hosts {
            let url = self.control.queues.url(host).await.unwrap();
            let received = self
                .sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            for message in received.messages.unwrap_or_default() {
                if matches!(
                    HostMessage::from_json(message.body().unwrap()).unwrap(),
                    HostMessage::Command(_)
                ) {
                    sent.push((*host).to_owned());
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
        sent
    }

    /// A host runs its command: every event succeeds, or `fail_at` fails.
    async fn run_host(&self, deployment_id: &str, host: &str, fail_at: Option<LifecycleEvent>) {
        let records: Vec<Value> = host_reports(deployment_id, host, fail_at)
            .into_iter()
            .map(|body| {
                let id = NEXT_MESSAGE.fetch_add(1, Ordering::SeqCst);
                json!({"messageId": format!("m-{id}"), "receiptHandle": "h", "body": body,
                       "attributes": {"SenderId": format!("{}:{host}", self.host_role_id)},
                       "eventSource": "aws:sqs"})
            })
            .collect();
        let response = Box::pin(handlers::invoke(
            &self.control,
            "batch-advance",
            json!({"Records": records}),
        ))
        .await
        .unwrap();
        assert_eq!(response["batchItemFailures"], json!([]), "reports refused");
    }

    async fn deployments(&self, group: &str) -> Vec<String> {
        self.ok(
            "ListDeployments",
            json!({"applicationName": APP, "deploymentGroupName": group}),
        )
        .await["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap().to_owned())
            .collect()
    }

    async fn revisions(&self) -> Vec<Value> {
        self.ok("ListApplicationRevisions", json!({"applicationName": APP}))
            .await["revisions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn deployment(&self, id: &str) -> Value {
        self.ok("GetDeployment", json!({"deploymentId": id})).await["deploymentInfo"].clone()
    }

    /// The keys under `prefix` in the bundle bucket, every version.
    async fn bundle_versions(&self, prefix: &str) -> usize {
        let listed = self
            .s3
            .list_object_versions()
            .bucket(BUNDLES)
            .prefix(prefix)
            .send()
            .await
            .expect("ListObjectVersions");
        listed.versions().len() + listed.delete_markers().len()
    }

    /// Plays CodePipeline: invokes the function with the continuation `token` as job
    /// `id` (the action's configuration as before: group `web`), and returns the result.
    async fn continuation(&self, id: &str, token: &str) -> Value {
        self.answer(job(id, Some(&parameters("web")), "unused", Some(token)))
            .await
    }
}

fn token(result: &Value) -> Option<&str> {
    result["continuationToken"].as_str()
}

/// The deployment a job's answer names.
fn deployment_of(result: &Value) -> String {
    result["executionDetails"]["externalExecutionId"]
        .as_str()
        .or(result["failureDetails"]["externalExecutionId"].as_str())
        .unwrap_or_else(|| panic!("no deployment in {result}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_succeeds_after_continuations_while_its_deployment_runs() {
    let fx = Fixture::start().await;
    let hosts = ["web-1", "web-2"];
    fx.group("web", &hosts).await;
    fx.artifact("shop/BuildOutput/abc.zip", archive::zip(&good_bundle()))
        .await;

    let first = fx
        .answer(job(
            "job-1",
            Some(&parameters("web")),
            "shop/BuildOutput/abc.zip",
            None,
        ))
        .await;
    assert_eq!(first["result"], "success", "{first}");
    // The token is the first job's id; the deployment is derived from it.
    assert_eq!(token(&first), Some("job-1"));
    let deployment_id = deployment_of(&first);
    assert_eq!(
        fx.deployments("web").await,
        std::slice::from_ref(&deployment_id)
    );

    // The artifact was copied under the revision prefix and registered, pinned.
    let info = fx.deployment(&deployment_id).await;
    let location = &info["revision"]["s3Location"];
    assert_eq!(location["bucket"], BUNDLES);
    assert_eq!(location["key"], "revisions/codepipeline/shop/job-1");
    assert_eq!(location["bundleType"], "zip");
    assert!(
        location["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{location}"
    );
    assert_eq!(info["description"], "Deployed by CodePipeline job job-1");
    assert_eq!(info["deploymentConfigName"], "CodeDeployDefault.OneAtATime");
    assert_eq!(fx.revisions().await.len(), 1);

    // CodePipeline's part: a new job with the token until it is answered without one;
    // the hosts' part: one at a time, each runs its command when it has one.
    let mut answered = Vec::new();
    for round in 1..=8 {
        let result = fx
            .continuation(&format!("job-1-continued-{round}"), "job-1")
            .await;
        assert_eq!(result["result"], "success", "{result}");
        answered.push(token(&result).map(str::to_owned));
        let Some(again) = token(&result) else {
            break;
        };
        assert_eq!(again, "job-1", "the same token again while it runs");
        for host in fx.dispatched(&hosts).await {
            fx.run_host(&deployment_id, &host, None).await;
        }
    }
    assert_eq!(
        answered.last(),
        Some(&None),
        "success without a token once the deployment succeeded: {answered:?}"
    );
    assert!(
        answered.len() >= 3,
        "at least one continuation per host before success: {answered:?}"
    );
    assert_eq!(fx.deployment(&deployment_id).await["status"], "Succeeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_whose_deployment_fails_is_failed_with_the_deployments_error() {
    let fx = Fixture::start().await;
    fx.group("web", &["web-1"]).await;
    fx.artifact("bundle.zip", archive::zip(&good_bundle()))
        .await;
    let first = fx
        .answer(job("job-2", Some(&parameters("web")), "bundle.zip", None))
        .await;
    let deployment_id = deployment_of(&first);
    assert_eq!(token(&first), Some("job-2"));
    assert_eq!(fx.dispatched(&["web-1"]).await, ["web-1"]);
    fx.run_host(
        &deployment_id,
        "web-1",
        Some(LifecycleEvent::ValidateService),
    )
    .await;

    let result = fx.continuation("job-2-continued", "job-2").await;
    assert_eq!(result["result"], "failure", "{result}");
    let details = &result["failureDetails"];
    assert_eq!(details["type"], "JobFailed");
    assert_eq!(details["externalExecutionId"], deployment_id.as_str());
    let info = fx.deployment(&deployment_id).await;
    assert_eq!(info["status"], "Failed");
    let message = details["message"].as_str().unwrap();
    for part in [
        info["errorInformation"]["code"].as_str().unwrap(),
        info["errorInformation"]["message"].as_str().unwrap(),
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_artifact_that_is_no_bundle_fails_the_job_listing_its_problems_and_records_nothing() {
    let fx = Fixture::start().await;
    fx.group("web", &["web-1"]).await;
    fx.artifact(
        "bad.zip",
        archive::zip(&[Entry::file(
            "appspec.yml",
            b"version: 1.0\nos: solaris\nhooks:\n  AfterInstall:\n    - location: scripts/missing.sh\n      timeout: soon\n",
        )]),
    )
    .await;
    fx.artifact("notes.txt", b"not an archive at all".to_vec())
        .await;

    let result = fx
        .answer(job("job-3", Some(&parameters("web")), "bad.zip", None))
        .await;
    assert_eq!(result["result"], "failure", "{result}");
    assert_eq!(result["failureDetails"]["type"], "JobFailed");
    let message = result["failureDetails"]["message"].as_str().unwrap();
    for problem in [
        "inputArtifacts[0]",
        "version",
        "os",
        "hooks.AfterInstall[0].timeout",
    ] {
        assert!(
            message.contains(problem),
            "{problem} missing from: {message}"
        );
    }

    let text = fx
        .answer(job("job-3b", Some(&parameters("web")), "notes.txt", None))
        .await;
    assert_eq!(text["result"], "failure", "{text}");
    assert_eq!(text["failureDetails"]["type"], "JobFailed");

    let missing = fx
        .answer(job("job-3c", Some(&parameters("web")), "nowhere.zip", None))
        .await;
    assert_eq!(
        missing["failureDetails"]["type"], "RevisionUnavailable",
        "{missing}"
    );
    assert!(
        missing["failureDetails"]["message"]
            .as_str()
            .unwrap()
            .contains("nowhere.zip")
    );

    assert_eq!(
        fx.revisions().await,
        Vec::<Value>::new(),
        "no revision registered"
    );
    assert_eq!(
        fx.deployments("web").await,
        Vec::<String>::new(),
        "no deployment"
    );
    assert_eq!(
        fx.bundle_versions("revisions/codepipeline/").await,
        0,
        "the refused copies were deleted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_delivered_again_creates_no_second_deployment() {
    let fx = Fixture::start().await;
    fx.group("web", &["web-1"]).await;
    fx.artifact("bundle.zip", archive::zip(&good_bundle()))
        .await;
    let event = job("job-4", Some(&parameters("web")), "bundle.zip", None);
    let first = fx.answer(event.clone()).await;
    let again = fx.answer(event.clone()).await;
    assert_eq!(first["result"], "success");
    assert_eq!(again["result"], "success");
    let deployment_id = deployment_of(&first);
    assert_eq!(deployment_of(&again), deployment_id, "the same deployment");
    assert_eq!(token(&again), Some("job-4"));
    assert_eq!(
        fx.deployments("web").await,
        std::slice::from_ref(&deployment_id)
    );
    assert_eq!(fx.revisions().await.len(), 1, "registered once");

    // Delivered again after the deployment ended: its outcome, still no new deployment.
    assert_eq!(fx.dispatched(&["web-1"]).await, ["web-1"]);
    fx.run_host(&deployment_id, "web-1", None).await;
    let late = fx.answer(event).await;
    assert_eq!(late["result"], "success", "{late}");
    assert_eq!(token(&late), None);
    assert_eq!(fx.deployments("web").await, [deployment_id]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_user_parameters_fail_the_job_naming_the_field_and_what_is_allowed() {
    let fx = Fixture::start().await;
    fx.group("web", &["web-1"]).await;
    fx.artifact("bundle.zip", archive::zip(&good_bundle()))
        .await;
    let cases: [(Option<&str>, &[&str]); 7] = [
        (None, &["UserParameters: is required", "deploymentGroup"]),
        (Some("shop web"), &["UserParameters", "a JSON object"]),
        (Some(r#"{"application": "shop"}"#), &["deploymentGroup"]),
        (
            Some(r#"{"application": "shop", "deploymentGroup": "web", "config": "x"}"#),
            &["unknown field `config`", "`deploymentConfig`"],
        ),
        (
            Some(r#"{"application": "nope", "deploymentGroup": "web"}"#),
            &["UserParameters.application", "nope"],
        ),
        (
            Some(r#"{"application": "shop", "deploymentGroup": "nope"}"#),
            &["UserParameters.deploymentGroup", "nope"],
        ),
        (
            Some(
                r#"{"application": "shop", "deploymentGroup": "web", "deploymentConfig": "Fastest"}"#,
            ),
            &["UserParameters.deploymentConfig", "Fastest"],
        ),
    ];
    for (index, (raw, expected)) in cases.into_iter().enumerate() {
        let result = fx
            .answer(job(&format!("job-5-{index}"), raw, "bundle.zip", None))
            .await;
        assert_eq!(result["result"], "failure", "{raw:?}: {result}");
        assert_eq!(
            result["failureDetails"]["type"], "ConfigurationError",
            "{raw:?}"
        );
        let message = result["failureDetails"]["message"].as_str().unwrap();
        for part in expected {
            assert!(message.contains(part), "{raw:?}: {part:?} not in {message}");
        }
    }
    assert_eq!(fx.deployments("web").await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_for_a_group_busy_with_another_deployment_fails_naming_it() {
    let fx = Fixture::start().await;
    fx.group("web", &["web-1"]).await;
    fx.artifact("bundle.zip", archive::zip(&good_bundle()))
        .await;
    let first = fx
        .answer(job("job-6", Some(&parameters("web")), "bundle.zip", None))
        .await;
    let running = deployment_of(&first);
    let second = fx
        .answer(job("job-7", Some(&parameters("web")), "bundle.zip", None))
        .await;
    assert_eq!(second["result"], "failure", "{second}");
    assert_eq!(second["failureDetails"]["type"], "JobFailed");
    let message = second["failureDetails"]["message"].as_str().unwrap();
    assert!(
        message.contains("DeploymentLimitExceeded") && message.contains(&running),
        "{message}"
    );
    assert_eq!(fx.deployments("web").await, std::slice::from_ref(&running));
}

/// Whoever may invoke the function deploys only to groups tagged open to CodePipeline,
/// and a continuation token reports only a deployment its action's job made to that
/// action's group: a token made up, or taken from another group's job, fails the job.
#[tokio::test(flavor = "multi_thread")]
async fn only_groups_open_to_codepipeline_are_deployed_to_and_tokens_are_bound_to_their_group() {
    let fx = Fixture::start().await;
    fx.group("web", &["web-1"]).await;
    fx.ok(
        "CreateDeploymentGroup",
        json!({
            "applicationName": APP,
            "deploymentGroupName": "closed",
            "onPremisesInstanceTagFilters": [{"Key": "group", "Value": "closed", "Type": "KEY_AND_VALUE"}],
        }),
    )
    .await;
    fx.artifact("bundle.zip", archive::zip(&good_bundle()))
        .await;
    let refused = fx
        .answer(job(
            "job-8",
            Some(&parameters("closed")),
            "bundle.zip",
            None,
        ))
        .await;
    assert_eq!(refused["result"], "failure", "{refused}");
    assert_eq!(refused["failureDetails"]["type"], "ConfigurationError");
    let message = refused["failureDetails"]["message"].as_str().unwrap();
    assert!(
        message.contains("UserParameters.deploymentGroup")
            && message.contains("gantry:codepipeline=allow"),
        "{message}"
    );
    assert_eq!(fx.deployments("closed").await, Vec::<String>::new());
    assert_eq!(
        fx.revisions().await.len(),
        0,
        "nothing copied or registered"
    );

    // A running deployment of `web`, made by job-9.
    let first = fx
        .answer(job("job-9", Some(&parameters("web")), "bundle.zip", None))
        .await;
    assert_eq!(token(&first), Some("job-9"));
    // Its token under another group's action, or a token no job of this function gave:
    // the job fails, reporting nothing of the deployment.
    for (group, token) in [("closed", "job-9"), ("web", "job-unknown")] {
        let result = fx
            .answer(job(
                &format!("job-10-{group}"),
                Some(&parameters(group)),
                "unused",
                Some(token),
            ))
            .await;
        assert_eq!(result["result"], "failure", "{group} {token}: {result}");
        assert_eq!(result["failureDetails"]["type"], "JobFailed");
        assert!(
            result["failureDetails"]["message"]
                .as_str()
                .unwrap()
                .contains("continuationToken"),
            "{result}"
        );
    }
}
