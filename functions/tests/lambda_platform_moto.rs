//! The Lambda compute platform against the stand-in, whose Lambda functions run as local
//! processes and whose aliases route by weight, as Lambda's do
//! (tests/standin/lambda_runner.py): the alias and hook adapter ([`Aliases`]), then whole
//! deployments through the engine (`gantry_functions::lambda_deployments`).

use gantry_core::deployment::DeploymentStatus;
use gantry_core::lambda::{AliasShift, Hooks, LambdaDeployment, TrafficRouting};
use gantry_functions::adapters::{AliasState, Aliases};
use gantry_functions::control::{ControlPlane, Settings};
use gantry_functions::error::ApiError;
use gantry_functions::handlers;
use gantry_functions::lambda_deployments::{self, LambdaSpec};
use gantry_functions::store::{ALARM_LOOK_MS, keys};
use gantry_tests::lambda_stand::{ECHO, share, stand};
use gantry_tests::wait_until;
use serde_json::{Value, json};
use std::time::Duration;

/// A deployment's alias effects, as Lambda's invocations see them: a weight sends that
/// share of invocations to the target, pointing at the target sends all, and a rollback
/// sends all back to the current version.
#[tokio::test(flavor = "multi_thread")]
async fn an_alias_shifts_by_weight_then_points_at_the_target_or_rolls_back() {
    let stand = stand().await;
    let (current, target) = stand.shop_behind_live().await;
    let aliases = Aliases::new(stand.lambda.clone());
    let shift = AliasShift {
        function_name: "shop".into(),
        alias: "live".into(),
        current_version: current.clone(),
        target_version: target.clone(),
    };

    aliases.set_weight(&shift, 30).await.unwrap();
    let state = aliases.alias("shop", "live").await.unwrap();
    assert_eq!(state.version, current);
    assert_eq!(state.weights.get(&target), Some(&0.3));
    let versions = stand.versions("shop:live", 300).await;
    // 300 draws at 30 %: within 0.18..0.42 but for odds below one in 10^4.
    let moved = share(&versions, &target);
    assert!((0.18..0.42).contains(&moved), "{moved}");

    aliases.point_at_target(&shift).await.unwrap();
    assert_eq!(share(&stand.versions("shop:live", 20).await, &target), 1.0);
    let state = aliases.alias("shop", "live").await.unwrap();
    assert_eq!(
        (state.version.as_str(), state.weights.len()),
        (target.as_str(), 0)
    );

    aliases.roll_back(&shift).await.unwrap();
    assert_eq!(share(&stand.versions("shop:live", 20).await, &current), 1.0);
}

/// A hook is invoked asynchronously with CodeDeploy's event; an alias or function that
/// does not exist fails for good (ResourceNotFound), not as a failure to retry.
#[tokio::test(flavor = "multi_thread")]
async fn a_hook_gets_codedeploys_event_and_a_missing_alias_fails_for_good() {
    let stand = stand().await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("event.json");
    stand
        .function("validate", ECHO, &[("MARKER", marker.to_str().unwrap())])
        .await;
    let aliases = Aliases::new(stand.lambda.clone());
    aliases
        .invoke_hook("validate", "d-LAMBDA001", "d-LAMBDA001.BeforeAllowTraffic")
        .await
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || marker.exists()),
        "the hook never ran"
    );
    let event: Value = serde_json::from_str(&std::fs::read_to_string(&marker).unwrap()).unwrap();
    assert_eq!(
        event,
        serde_json::json!({
            "DeploymentId": "d-LAMBDA001",
            "LifecycleEventHookExecutionId": "d-LAMBDA001.BeforeAllowTraffic",
        })
    );

    let missing = AliasShift {
        function_name: "validate".into(),
        alias: "nope".into(),
        current_version: "1".into(),
        target_version: "2".into(),
    };
    let error = aliases.roll_back(&missing).await.unwrap_err();
    assert_eq!(error.code.name(), "ResourceNotFoundException", "{error}");
    assert!(error.message.contains("alias nope of validate"), "{error}");
}

// ---- whole deployments through the engine ----

const APP: &str = "shop";
const GROUP: &str = "live";

/// A hook that writes its event where MARKER says, and answers nothing itself: the test
/// answers for it, as a hook answers through PutLifecycleEventHookExecutionStatus.
const HOOK: &[u8] = br#"import json, os, sys
event = json.load(sys.stdin)
with open(os.environ["MARKER"] + ".partial", "w") as out:
    json.dump(event, out)
os.rename(os.environ["MARKER"] + ".partial", os.environ["MARKER"])
"#;

struct Platform {
    stand: gantry_tests::lambda_stand::Stand,
    control: ControlPlane,
    shift: AliasShift,
    dir: tempfile::TempDir,
}

/// The stand-in with function `shop` at versions 1 and 2 behind alias `live` (on 1), two
/// hook functions, a deployment group to lock, and the control plane.
async fn platform() -> Platform {
    let stand = stand().await;
    let dir = tempfile::tempdir().unwrap();
    let (current, target) = stand.shop_behind_live().await;
    for hook in ["CodeDeployHook_before", "CodeDeployHook_after"] {
        let marker = dir.path().join(hook);
        stand
            .function(hook, HOOK, &[("MARKER", marker.to_str().unwrap())])
            .await;
    }
    let control = ControlPlane::new(
        &stand.moto.sdk_config().await,
        Settings::from_env().unwrap(),
    );
    control.store.create_table().await.unwrap();
    control
        .store
        .put_new(
            &keys::groups(APP),
            GROUP,
            &json!({"deploymentGroupName": GROUP}),
            &[],
        )
        .await
        .unwrap();
    Platform {
        stand,
        control,
        shift: AliasShift {
            function_name: "shop".into(),
            alias: "live".into(),
            current_version: current,
            target_version: target,
        },
        dir,
    }
}

impl Platform {
    async fn deploy(&self, id: &str, routing: TrafficRouting, hooks: Hooks, alarms: &[&str]) {
        let spec = LambdaSpec {
            deployment_id: id.into(),
            application_name: APP.into(),
            deployment_group_name: GROUP.into(),
            deployment_config_name: "custom".into(),
            alarms: alarms.iter().map(|alarm| (*alarm).to_owned()).collect(),
            revision: None,
            description: None,
            creator: gantry_core::wire::Creator::User,
            auto_rollback_configuration: Default::default(),
            trigger_configurations: Vec::new(),
            ignore_poll_alarm_failure: false,
            override_alarm_configuration: None,
        };
        lambda_deployments::create(&self.control, spec, self.shift.clone(), routing, &hooks)
            .await
            .unwrap();
    }

    /// The event the hook function `hook` was invoked with, once it ran.
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

    /// Answers for the hook that `event` invoked, through the API's
    /// PutLifecycleEventHookExecutionStatus, as a hook function does.
    async fn answer(&self, event: &Value, succeeded: bool) -> Result<(), ApiError> {
        let status = if succeeded { "Succeeded" } else { "Failed" };
        self.api(
            "PutLifecycleEventHookExecutionStatus",
            json!({
                "deploymentId": event["DeploymentId"],
                "lifecycleEventHookExecutionId": event["LifecycleEventHookExecutionId"],
                "status": status,
            }),
        )
        .await
        .map(|answer| {
            assert_eq!(
                answer["lifecycleEventHookExecutionId"],
                event["LifecycleEventHookExecutionId"]
            );
        })
    }

    async fn api(&self, operation: &str, input: Value) -> Result<Value, ApiError> {
        Box::pin(handlers::invoke(
            &self.control,
            "api",
            json!({"operation": operation, "input": input}),
        ))
        .await
    }

    async fn state(&self, id: &str) -> LambdaDeployment {
        self.control
            .store
            .load_lambda_deployment::<LambdaSpec>(id)
            .await
            .unwrap()
            .state
    }

    async fn alias(&self) -> AliasState {
        self.control.aliases.alias("shop", "live").await.unwrap()
    }

    async fn locked_by(&self) -> Option<String> {
        self.control
            .store
            .load_group::<Value>(APP, GROUP)
            .await
            .unwrap()
            .unwrap()
            .active_deployment_id
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn both_hooks() -> Hooks {
    Hooks {
        before_allow_traffic: Some("CodeDeployHook_before".into()),
        after_allow_traffic: Some("CodeDeployHook_after".into()),
    }
}

/// Canary 10 % for 5 minutes, with both hooks: BeforeAllowTraffic is invoked with
/// CodeDeploy's event and answered; 10 % goes to v2 and stays there until the tick five
/// minutes on points the alias at v2; AfterAllowTraffic answered, the deployment
/// succeeds and frees its group. The waits are the tick's, at simulated times.
#[tokio::test(flavor = "multi_thread")]
async fn a_canary_deployment_shifts_in_its_steps_between_its_hooks_and_succeeds() {
    let platform = platform().await;
    let id = "d-LAMBDA001";
    let routing = TrafficRouting::canary(10, 5).unwrap();
    platform.deploy(id, routing, both_hooks(), &[]).await;
    assert_eq!(platform.locked_by().await.as_deref(), Some(id));
    let before = platform.hook_event("CodeDeployHook_before");
    assert_eq!(before["DeploymentId"], id);
    assert_eq!(
        platform.alias().await.weights.len(),
        0,
        "nothing moves before the hook answers"
    );

    platform.answer(&before, true).await.unwrap();
    let shifted = platform.alias().await;
    assert_eq!(shifted.version, platform.shift.current_version);
    assert_eq!(
        shifted.weights.get(&platform.shift.target_version),
        Some(&0.1)
    );
    let started = platform.state(id).await.shifting_start.unwrap();
    // A tick before the canary's five minutes changes nothing.
    lambda_deployments::tick(&platform.control, started + 5 * 60_000 - 1)
        .await
        .unwrap();
    assert_eq!(platform.alias().await, shifted);

    lambda_deployments::tick(&platform.control, started + 5 * 60_000)
        .await
        .unwrap();
    let moved = platform.alias().await;
    assert_eq!(
        (moved.version.as_str(), moved.weights.len()),
        (platform.shift.target_version.as_str(), 0)
    );
    let versions = platform.stand.versions("shop:live", 10).await;
    assert!(
        versions
            .iter()
            .all(|version| *version == platform.shift.target_version)
    );

    let after = platform.hook_event("CodeDeployHook_after");
    platform.answer(&after, true).await.unwrap();
    assert_eq!(
        platform.state(id).await.status(),
        DeploymentStatus::Succeeded
    );
    assert_eq!(platform.locked_by().await, None, "the group is free");
    // The tick's next look sees it ended, and takes it off the schedule.
    lambda_deployments::tick(&platform.control, now_ms() + 60_000)
        .await
        .unwrap();
    let due = platform
        .control
        .store
        .due_lambda_deployments(u64::MAX / 2)
        .await
        .unwrap();
    assert!(due.is_empty(), "nothing left for the tick: {due:?}");
}

/// A failing AfterAllowTraffic hook rolls the alias back to v1 at once; answers for a
/// hook that is not the deployment's, or again with another status, are refused with
/// CodeDeploy's exceptions.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_hook_rolls_the_alias_back_and_stray_answers_are_refused() {
    let platform = platform().await;
    let id = "d-LAMBDA002";
    platform
        .deploy(id, TrafficRouting::AllAtOnce, both_hooks(), &[])
        .await;
    let before = platform.hook_event("CodeDeployHook_before");
    platform.answer(&before, true).await.unwrap();
    assert_eq!(
        platform.alias().await.version,
        platform.shift.target_version
    );

    let after = platform.hook_event("CodeDeployHook_after");
    let mut stray = after.clone();
    stray["LifecycleEventHookExecutionId"] = json!("d-LAMBDA002.Install");
    let error = platform.answer(&stray, true).await.unwrap_err();
    assert_eq!(
        error.code.name(),
        "InvalidLifecycleEventHookExecutionIdException",
        "{error}"
    );

    for (status, exception) in [
        (
            "InProgress",
            "InvalidLifecycleEventHookExecutionStatusException",
        ),
        ("", "InvalidLifecycleEventHookExecutionStatusException"),
    ] {
        let mut input = json!({
            "deploymentId": id,
            "lifecycleEventHookExecutionId": after["LifecycleEventHookExecutionId"],
        });
        if !status.is_empty() {
            input["status"] = json!(status);
        }
        let error = platform
            .api("PutLifecycleEventHookExecutionStatus", input)
            .await
            .unwrap_err();
        assert_eq!(error.code.name(), exception, "{status}: {error}");
    }
    let error = platform
        .api(
            "PutLifecycleEventHookExecutionStatus",
            json!({"deploymentId": "d-NOTTHERE1", "lifecycleEventHookExecutionId": "x", "status": "Succeeded"}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.code.name(),
        "DeploymentDoesNotExistException",
        "{error}"
    );

    platform.answer(&after, false).await.unwrap();
    let state = platform.state(id).await;
    assert_eq!(state.status(), DeploymentStatus::Failed);
    let back = platform.alias().await;
    assert_eq!(
        (back.version.as_str(), back.weights.len()),
        (platform.shift.current_version.as_str(), 0)
    );
    assert_eq!(platform.locked_by().await, None);
    let got = platform
        .api("GetDeployment", json!({"deploymentId": id}))
        .await
        .unwrap();
    assert_eq!(got["deploymentInfo"]["status"], "Failed");
    assert_eq!(got["deploymentInfo"]["computePlatform"], "Lambda");
    // Operations on instances say what a Lambda deployment is, not that it is broken.
    let error = platform
        .api("ListDeploymentInstances", json!({"deploymentId": id}))
        .await
        .unwrap_err();
    assert_eq!(
        error.code.name(),
        "UnsupportedActionForDeploymentTypeException",
        "{error}"
    );
    let error = platform.answer(&after, true).await.unwrap_err();
    assert_eq!(
        error.code.name(),
        "LifecycleEventAlreadyCompletedException",
        "{error}"
    );
}

/// A group alarm in ALARM during a canary's wait stops the deployment and rolls the
/// alias back; a hook function Lambda cannot run fails its event at once, not after an
/// hour.
#[tokio::test(flavor = "multi_thread")]
async fn an_alarm_during_a_wait_rolls_back_and_a_missing_hook_fails_at_once() {
    let platform = platform().await;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&platform.stand.moto.sdk_config().await);
    cloudwatch
        .put_metric_alarm()
        .alarm_name("shop-errors")
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
    let id = "d-LAMBDA003";
    let routing = TrafficRouting::linear(10, 1).unwrap();
    platform
        .deploy(id, routing, Hooks::default(), &["shop-errors"])
        .await;
    assert_eq!(
        platform
            .alias()
            .await
            .weights
            .get(&platform.shift.target_version),
        Some(&0.1)
    );
    cloudwatch
        .set_alarm_state()
        .alarm_name("shop-errors")
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("set by the test")
        .send()
        .await
        .unwrap();
    // Polled while the deployment waits for its next step (a minute away).
    let looked = lambda_deployments::tick(&platform.control, now_ms() + ALARM_LOOK_MS + 1_000)
        .await
        .unwrap();
    assert_eq!(looked, 1);
    assert_eq!(platform.state(id).await.status(), DeploymentStatus::Stopped);
    let back = platform.alias().await;
    assert_eq!(
        (back.version.as_str(), back.weights.len()),
        (platform.shift.current_version.as_str(), 0)
    );
    assert_eq!(platform.locked_by().await, None);

    let missing = Hooks {
        before_allow_traffic: Some("CodeDeployHook_gone".into()),
        after_allow_traffic: None,
    };
    let id = "d-LAMBDA004";
    platform
        .deploy(id, TrafficRouting::AllAtOnce, missing, &[])
        .await;
    let state = platform.state(id).await;
    assert_eq!(state.status(), DeploymentStatus::Failed);
    assert_eq!(
        platform.alias().await.version,
        platform.shift.current_version,
        "never moved"
    );
    assert_eq!(platform.locked_by().await, None);
}
