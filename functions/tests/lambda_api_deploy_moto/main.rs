//! Lambda deployments through CodeDeploy's API against the stand-in: a Lambda
//! application's group, CreateDeployment with the AppSpec as a string or an S3 file and
//! its refusals, GetDeployment and the alias as `lambdaTarget`, StopDeployment, trigger
//! notifications, and every predefined configuration's steps on a shortened minute (the
//! `lambda_minute_ms` setting; the steps and weights are the configuration's).

use gantry_core::lambda::{LambdaDeploymentConfig, MINUTE_MS, PREDEFINED_NAMES, Step};
use gantry_functions::control::{ControlPlane, Settings};
use gantry_functions::error::ApiError;
use gantry_functions::handlers;
use gantry_functions::lambda_deployments::{self, LambdaSpec};
use gantry_tests::lambda_stand::{Stand, stand};
use gantry_tests::wait_until;
use serde_json::{Value, json};
use std::time::Duration;

mod faults;

/// A minute of traffic routing, in these tests.
const MINUTE: u64 = 1_000;

/// Writes its event where MARKER says; the test answers for it.
const HOOK: &[u8] = br#"import json, os, sys
event = json.load(sys.stdin)
with open(os.environ["MARKER"] + ".partial", "w") as out:
    json.dump(event, out)
os.rename(os.environ["MARKER"] + ".partial", os.environ["MARKER"])
"#;

struct Fixture {
    stand: Stand,
    control: ControlPlane,
    current: String,
    target: String,
    dir: tempfile::TempDir,
    queue_url: String,
    sqs: aws_sdk_sqs::Client,
}

async fn fixture() -> Fixture {
    let stand = stand().await;
    let dir = tempfile::tempdir().unwrap();
    let (current, target) = stand.shop_behind_live().await;
    for hook in [
        "CodeDeployHook_before",
        "CodeDeployHook_after",
        "other_hook",
    ] {
        let marker = dir.path().join(hook);
        stand
            .function(hook, HOOK, &[("MARKER", marker.to_str().unwrap())])
            .await;
    }
    let config = stand.moto.sdk_config().await;
    let mut settings = Settings::from_env().unwrap();
    settings.lambda_minute_ms = MINUTE;
    settings.lambda_hook_prefix = Some("CodeDeployHook_".into());
    let control = ControlPlane::new(&config, settings);
    control.store.create_table().await.unwrap();
    // Trigger notifications land in a queue subscribed to the topic.
    let sns = aws_sdk_sns::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let topic = sns.create_topic().name("deploys").send().await.unwrap();
    let topic_arn = topic.topic_arn.unwrap();
    let queue_url = sqs
        .create_queue()
        .queue_name("deploys")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint("arn:aws:sqs:us-east-1:123456789012:deploys")
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();
    let fx = Fixture {
        stand,
        control,
        current,
        target,
        dir,
        queue_url,
        sqs,
    };
    fx.ok(
        "CreateApplication",
        json!({"applicationName": "shop", "computePlatform": "Lambda"}),
    )
    .await;
    fx.ok(
        "CreateDeploymentGroup",
        json!({
            "applicationName": "shop",
            "deploymentGroupName": "live",
            "deploymentConfigName": "CodeDeployDefault.LambdaLinear10PercentEvery1Minute",
            "triggerConfigurations": [{
                "triggerName": "ends", "triggerTargetArn": topic_arn,
                "triggerEvents": ["DeploymentStart", "DeploymentSuccess", "DeploymentFailure", "DeploymentStop"],
            }],
        }),
    )
    .await;
    fx
}

impl Fixture {
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

    /// The AppSpec moving `live` of `shop` from the current version to the target, with
    /// the hooks given.
    fn appspec(&self, before: Option<&str>, after: Option<&str>) -> String {
        let mut hooks = String::new();
        for (event, function) in [("BeforeAllowTraffic", before), ("AfterAllowTraffic", after)] {
            if let Some(function) = function {
                hooks.push_str(&format!("  - {event}: {function}\n"));
            }
        }
        let hooks = if hooks.is_empty() {
            String::new()
        } else {
            format!("Hooks:\n{hooks}")
        };
        format!(
            "version: 0.0\nResources:\n  - shop:\n      Type: AWS::Lambda::Function\n      Properties:\n        Name: shop\n        Alias: live\n        CurrentVersion: {}\n        TargetVersion: {}\n{hooks}",
            self.current, self.target
        )
    }

    async fn deploy(&self, appspec: &str, config: Option<&str>) -> Result<String, ApiError> {
        let mut input = json!({
            "applicationName": "shop",
            "deploymentGroupName": "live",
            "revision": {"revisionType": "AppSpecContent", "appSpecContent": {"content": appspec}},
        });
        if let Some(config) = config {
            input["deploymentConfigName"] = json!(config);
        }
        let created = self.call("CreateDeployment", input).await?;
        Ok(created["deploymentId"].as_str().unwrap().to_owned())
    }

    fn hook_event(&self, hook: &str) -> Value {
        let marker = self.dir.path().join(hook);
        assert!(
            wait_until(Duration::from_secs(20), || marker.exists()),
            "{hook} was never invoked"
        );
        let event = serde_json::from_str(&std::fs::read_to_string(&marker).unwrap()).unwrap();
        std::fs::remove_file(&marker).unwrap();
        event
    }

    async fn answer(&self, event: &Value, status: &str) {
        self.ok(
            "PutLifecycleEventHookExecutionStatus",
            json!({
                "deploymentId": event["DeploymentId"],
                "lifecycleEventHookExecutionId": event["LifecycleEventHookExecutionId"],
                "status": status,
            }),
        )
        .await;
    }

    async fn info(&self, id: &str) -> Value {
        self.ok("GetDeployment", json!({"deploymentId": id})).await["deploymentInfo"].clone()
    }

    async fn target(&self, id: &str) -> Value {
        let listed = self
            .ok("ListDeploymentTargets", json!({"deploymentId": id}))
            .await;
        assert_eq!(listed["targetIds"], json!(["shop:live"]));
        let got = self
            .ok(
                "GetDeploymentTarget",
                json!({"deploymentId": id, "targetId": "shop:live"}),
            )
            .await;
        assert_eq!(
            got["deploymentTarget"]["deploymentTargetType"],
            "LambdaTarget"
        );
        got["deploymentTarget"]["lambdaTarget"].clone()
    }

    /// The alias's version and the target version's weight.
    async fn alias(&self) -> (String, f64) {
        let alias = self.control.aliases.alias("shop", "live").await.unwrap();
        let weight = alias.weights.get(&self.target).copied().unwrap_or(0.0);
        (alias.version, weight)
    }

    async fn shifting_start(&self, id: &str) -> u64 {
        self.control
            .store
            .load_lambda_deployment::<LambdaSpec>(id)
            .await
            .unwrap()
            .state
            .shifting_start
            .unwrap()
    }

    /// The trigger messages' `status` words so far.
    async fn notified(&self) -> Vec<String> {
        let mut statuses = Vec::new();
        loop {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            let messages = got.messages.unwrap_or_default();
            if messages.is_empty() {
                return statuses;
            }
            for message in messages {
                let body: Value = serde_json::from_str(message.body().unwrap()).unwrap();
                statuses.push(body["status"].as_str().unwrap().to_owned());
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

/// The group's linear configuration on a one-second minute, through the API: the
/// BeforeAllowTraffic hook answered, ten steps of 10 % at the ticks, AfterAllowTraffic,
/// Succeeded; GetDeployment, the alias as `lambdaTarget` with the next step, and the
/// group's triggers as CodeDeploy sends them.
#[tokio::test(flavor = "multi_thread")]
async fn a_linear_deployment_through_the_api_moves_the_alias_step_by_step() {
    let fx = fixture().await;
    let appspec = fx.appspec(Some("CodeDeployHook_before"), Some("CodeDeployHook_after"));
    let id = fx.deploy(&appspec, None).await.unwrap();
    let info = fx.info(&id).await;
    assert_eq!(info["computePlatform"], "Lambda");
    assert_eq!(info["status"], "InProgress");
    assert_eq!(
        info["deploymentConfigName"],
        "CodeDeployDefault.LambdaLinear10PercentEvery1Minute"
    );
    assert_eq!(info["revision"]["revisionType"], "AppSpecContent");
    assert_eq!(info["deploymentOverview"]["InProgress"], 1);
    // One deployment per group at a time, as for EC2.
    let busy = fx.deploy(&appspec, None).await.unwrap_err();
    assert_eq!(
        busy.code.name(),
        "DeploymentLimitExceededException",
        "{busy}"
    );

    let before = fx.hook_event("CodeDeployHook_before");
    assert_eq!(before["DeploymentId"], id.as_str());
    fx.answer(&before, "Succeeded").await;
    let start = fx.shifting_start(&id).await;
    let target = fx.target(&id).await;
    assert_eq!(target["lambdaFunctionInfo"]["targetVersionWeight"], 10.0);
    assert_eq!(target["lambdaFunctionInfo"]["nextStepWeight"], 20.0);
    assert_eq!(
        target["lambdaFunctionInfo"]["nextStepTime"]
            .as_f64()
            .unwrap(),
        (start + MINUTE) as f64 / 1000.0
    );
    let events: Vec<(&str, &str)> = target["lifecycleEvents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (
                event["lifecycleEventName"].as_str().unwrap(),
                event["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("BeforeAllowTraffic", "Succeeded"),
            ("AllowTraffic", "InProgress"),
            ("AfterAllowTraffic", "Pending")
        ]
    );
    for step in 2..=9u64 {
        lambda_deployments::tick(&fx.control, start + (step - 1) * MINUTE)
            .await
            .unwrap();
        assert_eq!(fx.alias().await, (fx.current.clone(), step as f64 / 10.0));
    }
    lambda_deployments::tick(&fx.control, start + 9 * MINUTE)
        .await
        .unwrap();
    assert_eq!(fx.alias().await, (fx.target.clone(), 0.0));
    let after = fx.hook_event("CodeDeployHook_after");
    fx.answer(&after, "Succeeded").await;
    let info = fx.info(&id).await;
    assert_eq!(info["status"], "Succeeded");
    assert_eq!(info["deploymentOverview"]["Succeeded"], 1);
    let target = fx.target(&id).await;
    assert_eq!(target["status"], "Succeeded");
    assert_eq!(target["lambdaFunctionInfo"]["targetVersionWeight"], 100.0);
    assert!(target["lambdaFunctionInfo"].get("nextStepTime").is_none());
    assert_eq!(fx.notified().await, ["CREATED", "SUCCEEDED"]);
    let listed = fx
        .ok(
            "ListDeployments",
            json!({"applicationName": "shop", "deploymentGroupName": "live", "includeOnlyStatuses": ["Succeeded"]}),
        )
        .await;
    assert_eq!(listed["deployments"], json!([id]));
}

/// StopDeployment mid-shift puts the alias back on the current version at once; the
/// deployment is Stopped and its trigger says so.
#[tokio::test(flavor = "multi_thread")]
async fn stopping_a_lambda_deployment_puts_the_alias_back() {
    let fx = fixture().await;
    let id = fx
        .deploy(
            &fx.appspec(None, None),
            Some("CodeDeployDefault.LambdaCanary10Percent5Minutes"),
        )
        .await
        .unwrap();
    assert_eq!(fx.alias().await, (fx.current.clone(), 0.1));
    let stopped = fx.ok("StopDeployment", json!({"deploymentId": id})).await;
    assert_eq!(stopped["status"], "Succeeded");
    assert_eq!(fx.alias().await, (fx.current.clone(), 0.0));
    assert_eq!(fx.info(&id).await["status"], "Stopped");
    let again = fx
        .call("StopDeployment", json!({"deploymentId": id}))
        .await
        .unwrap();
    assert_eq!(
        again["status"], "Succeeded",
        "a stopped deployment stays stopped"
    );
    assert_eq!(fx.notified().await, ["CREATED", "STOPPED"]);
    // The group is free again.
    fx.deploy(
        &fx.appspec(None, None),
        Some("CodeDeployDefault.LambdaAllAtOnce"),
    )
    .await
    .unwrap();
    assert_eq!(fx.alias().await, (fx.target.clone(), 0.0));
}

/// CreateDeployment refuses, before anything moves, a revision that does not say what
/// Lambda has, or that Gantry may not run, each error naming what is wrong.
#[tokio::test(flavor = "multi_thread")]
async fn a_lambda_revision_that_does_not_match_lambda_is_refused_before_anything_moves() {
    let fx = fixture().await;
    let good = fx.appspec(Some("CodeDeployHook_before"), None);
    let refusals = [
        (
            good.replace(
                &format!("CurrentVersion: {}", fx.current),
                "CurrentVersion: 7",
            ),
            "InvalidRevisionException",
            "points at version",
        ),
        (
            good.replace("Alias: live", "Alias: nope"),
            "InvalidRevisionException",
            "alias nope of shop does not exist",
        ),
        (
            good.replace(&format!("TargetVersion: {}", fx.target), "TargetVersion: 9"),
            "InvalidRevisionException",
            "TargetVersion 9",
        ),
        (
            good.replace("CodeDeployHook_before", "other_hook"),
            "InvalidRevisionException",
            "BeforeAllowTraffic",
        ),
        (
            "version: 0.0\nos: linux\nfiles:\n  - source: /\n    destination: /srv\n".to_owned(),
            "InvalidRevisionException",
            "EC2/On-premises AppSpec",
        ),
        (
            "version: 0.0\nResources: []\n".to_owned(),
            "InvalidRevisionException",
            "Resources",
        ),
    ];
    for (appspec, exception, says) in refusals {
        let error = fx.deploy(&appspec, None).await.unwrap_err();
        assert_eq!(error.code.name(), exception, "{appspec}: {error}");
        assert!(
            error.message.contains(says),
            "{appspec}: {error} does not say {says:?}"
        );
    }
    for (input, exception, says) in [
        (json!({}), "RevisionRequiredException", "revision"),
        (
            json!({"revision": {"revisionType": "AppSpecContent", "appSpecContent": {"content": good, "sha256": "00"}}}),
            "InvalidRevisionException",
            "sha256",
        ),
        (
            json!({"revision": {"revisionType": "String", "string": {"content": good}}, "deploymentConfigName": "CodeDeployDefault.OneAtATime"}),
            "InvalidDeploymentConfigNameException",
            "Lambda",
        ),
        (
            json!({"revision": {"revisionType": "String", "string": {"content": good}}, "fileExistsBehavior": "OVERWRITE"}),
            "InvalidInputException",
            "fileExistsBehavior",
        ),
    ] {
        let mut input = input;
        input["applicationName"] = json!("shop");
        input["deploymentGroupName"] = json!("live");
        let error = fx
            .call("CreateDeployment", input.clone())
            .await
            .unwrap_err();
        assert_eq!(error.code.name(), exception, "{input}: {error}");
        assert!(error.message.contains(says), "{input}: {error}");
    }
    assert_eq!(fx.alias().await, (fx.current.clone(), 0.0), "nothing moved");
    let listed = fx
        .ok("ListDeployments", json!({"applicationName": "shop"}))
        .await;
    assert_eq!(listed["deployments"], json!([]), "nothing was created");
    // The same AppSpec as an S3 file is taken, pinned to the version read.
    let s3 = aws_sdk_s3::Client::new(&fx.stand.moto.sdk_config().await);
    s3.create_bucket().bucket("revisions").send().await.unwrap();
    s3.put_object()
        .bucket("revisions")
        .key("shop/appspec.yaml")
        .body(good.into_bytes().into())
        .send()
        .await
        .unwrap();
    let created = fx
        .ok(
            "CreateDeployment",
            json!({
                "applicationName": "shop", "deploymentGroupName": "live",
                "deploymentConfigName": "CodeDeployDefault.LambdaAllAtOnce",
                "revision": {"revisionType": "S3", "s3Location": {"bucket": "revisions", "key": "shop/appspec.yaml", "bundleType": "YAML"}},
            }),
        )
        .await;
    let id = created["deploymentId"].as_str().unwrap();
    let revision = &fx.info(id).await["revision"];
    assert_eq!(revision["s3Location"]["key"], "shop/appspec.yaml");
    assert!(revision["s3Location"]["eTag"].is_string(), "{revision}");
    fx.hook_event("CodeDeployHook_before");
}

/// Every predefined Lambda configuration, deployed: each step's weight arrives at its
/// offset (read on a one-second minute) and not a millisecond before.
#[tokio::test(flavor = "multi_thread")]
async fn every_predefined_configuration_moves_in_its_steps_at_their_times() {
    let fx = fixture().await;
    for name in PREDEFINED_NAMES {
        let routing = LambdaDeploymentConfig::predefined(name)
            .unwrap()
            .traffic_routing_config;
        let steps: Vec<Step> = routing.steps();
        let id = fx
            .deploy(&fx.appspec(None, None), Some(name))
            .await
            .unwrap();
        let start = fx.shifting_start(&id).await;
        for (index, step) in steps.iter().enumerate() {
            let due = start + step.offset_ms * MINUTE / MINUTE_MS;
            if index > 0 {
                lambda_deployments::tick(&fx.control, due - 1)
                    .await
                    .unwrap();
                let before = f64::from(steps[index - 1].percent) / 100.0;
                assert_eq!(
                    fx.alias().await.1,
                    before,
                    "{name}: step {index} came early"
                );
            }
            lambda_deployments::tick(&fx.control, due).await.unwrap();
            let expected = if step.percent >= 100 {
                (fx.target.clone(), 0.0)
            } else {
                (fx.current.clone(), f64::from(step.percent) / 100.0)
            };
            assert_eq!(fx.alias().await, expected, "{name}: step {index}");
        }
        assert_eq!(fx.info(&id).await["status"], "Succeeded", "{name}");
        // Back to the current version for the next configuration, as a new deployment
        // would find it.
        fx.control
            .aliases
            .roll_back(&gantry_core::lambda::AliasShift {
                function_name: "shop".into(),
                alias: "live".into(),
                current_version: fx.current.clone(),
                target_version: fx.target.clone(),
            })
            .await
            .unwrap();
    }
}

/// A hook that never answers fails its deployment once its hour has passed (the tick's
/// look, at that time): the alias never moved, the group is free, and GetDeployment says
/// why.
#[tokio::test(flavor = "multi_thread")]
async fn a_hook_that_never_answers_fails_the_deployment_after_its_hour() {
    let fx = fixture().await;
    let id = fx
        .deploy(&fx.appspec(Some("CodeDeployHook_before"), None), None)
        .await
        .unwrap();
    let event = fx.hook_event("CodeDeployHook_before");
    let invoked = fx
        .control
        .store
        .load_lambda_deployment::<LambdaSpec>(&id)
        .await
        .unwrap()
        .state
        .hooks[0]
        .start_time
        .unwrap();
    let hour = gantry_core::lambda::HOOK_TIMEOUT_MS;
    lambda_deployments::tick(&fx.control, invoked + hour - 1)
        .await
        .unwrap();
    assert_eq!(fx.info(&id).await["status"], "InProgress");
    lambda_deployments::tick(&fx.control, invoked + hour)
        .await
        .unwrap();
    let info = fx.info(&id).await;
    assert_eq!(info["status"], "Failed");
    assert!(
        info["errorInformation"]["message"]
            .as_str()
            .unwrap()
            .contains("BeforeAllowTraffic"),
        "{info}"
    );
    assert_eq!(fx.alias().await, (fx.current.clone(), 0.0), "never moved");
    // Its answer, late, is refused.
    let late = fx
        .call(
            "PutLifecycleEventHookExecutionStatus",
            json!({
                "deploymentId": id,
                "lifecycleEventHookExecutionId": event["LifecycleEventHookExecutionId"],
                "status": "Succeeded",
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(
        late.code.name(),
        "LifecycleEventAlreadyCompletedException",
        "{late}"
    );
    assert_eq!(fx.notified().await, ["CREATED", "FAILED"]);
    fx.deploy(
        &fx.appspec(None, None),
        Some("CodeDeployDefault.LambdaAllAtOnce"),
    )
    .await
    .expect("the group is free");
}
