//! The Lambda platform's alias and hook adapter ([`Aliases`]) against the stand-in, whose
//! Lambda functions run as local processes and whose aliases route by weight, as
//! Lambda's do (tests/standin/lambda_runner.py).

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Environment, FunctionCode, Runtime};
use gantry_core::lambda::AliasShift;
use gantry_functions::adapters::Aliases;
use gantry_tests::archive::{self, Entry};
use gantry_tests::moto::Moto;
use gantry_tests::wait_until;
use serde_json::Value;
use std::time::Duration;

/// Answers with the version that ran and the event it was given; with MARKER set, also
/// writes the event there.
const ECHO: &[u8] = br#"import json, os, sys
event = json.load(sys.stdin)
if os.environ.get("MARKER"):
    with open(os.environ["MARKER"] + ".partial", "w") as out:
        json.dump(event, out)
    os.rename(os.environ["MARKER"] + ".partial", os.environ["MARKER"])
print(json.dumps({"version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"], "event": event}))
"#;

struct Stand {
    _moto: Moto,
    lambda: aws_sdk_lambda::Client,
    role: String,
}

async fn stand() -> Stand {
    let moto = Moto::start().expect("moto");
    let config = moto.sdk_config().await;
    let role = aws_sdk_iam::Client::new(&config)
        .create_role()
        .role_name("functions")
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .unwrap()
        .role
        .unwrap()
        .arn;
    Stand {
        lambda: aws_sdk_lambda::Client::new(&config),
        _moto: moto,
        role,
    }
}

impl Stand {
    async fn function(&self, name: &str, script: &[u8], env: &[(&str, &str)]) {
        let mut variables = Environment::builder();
        for (key, value) in env {
            variables = variables.variables(*key, *value);
        }
        self.lambda
            .create_function()
            .function_name(name)
            .runtime(Runtime::Python312)
            .role(&self.role)
            .handler("handler.py")
            .environment(variables.build())
            .code(
                FunctionCode::builder()
                    .zip_file(Blob::new(archive::zip(&[Entry::file(
                        "handler.py",
                        script,
                    )])))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    async fn publish(&self, name: &str) -> String {
        self.lambda
            .publish_version()
            .function_name(name)
            .send()
            .await
            .unwrap()
            .version
            .unwrap()
    }

    /// The version each of `count` invocations of `name:alias` ran.
    async fn versions(&self, qualified: &str, count: usize) -> Vec<String> {
        let mut versions = Vec::new();
        for _ in 0..count {
            let answer = self
                .lambda
                .invoke()
                .function_name(qualified)
                .payload(Blob::new("{}"))
                .send()
                .await
                .unwrap();
            let payload: Value = serde_json::from_slice(answer.payload.unwrap().as_ref()).unwrap();
            versions.push(payload["version"].as_str().unwrap().to_owned());
        }
        versions
    }
}

fn share(versions: &[String], version: &str) -> f64 {
    versions.iter().filter(|found| *found == version).count() as f64 / versions.len() as f64
}

/// A deployment's alias effects, as Lambda's invocations see them: a weight sends that
/// share of invocations to the target, pointing at the target sends all, and a rollback
/// sends all back to the current version.
#[tokio::test(flavor = "multi_thread")]
async fn an_alias_shifts_by_weight_then_points_at_the_target_or_rolls_back() {
    let stand = stand().await;
    stand.function("shop", ECHO, &[]).await;
    let current = stand.publish("shop").await;
    stand
        .lambda
        .update_function_code()
        .function_name("shop")
        .zip_file(Blob::new(archive::zip(&[Entry::file(
            "handler.py",
            &[ECHO, b"# v2\n"].concat(),
        )])))
        .send()
        .await
        .unwrap();
    let target = stand.publish("shop").await;
    stand
        .lambda
        .create_alias()
        .function_name("shop")
        .name("live")
        .function_version(&current)
        .send()
        .await
        .unwrap();
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
