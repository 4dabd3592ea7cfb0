//! Lambda functions on the stand-in (tests/standin/lambda_runner.py): a function's
//! package is a script run as a process with the event on stdin, and an alias routes by
//! its weights, as Lambda does. For tests of the Lambda compute platform.

use crate::archive::{self, Entry};
use crate::moto::Moto;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Environment, FunctionCode, Runtime};
use serde_json::Value;

/// Answers with the version that ran and the event it was given; with MARKER set, also
/// writes the event there.
pub const ECHO: &[u8] = br#"import json, os, sys
event = json.load(sys.stdin)
if os.environ.get("MARKER"):
    with open(os.environ["MARKER"] + ".partial", "w") as out:
        json.dump(event, out)
    os.rename(os.environ["MARKER"] + ".partial", os.environ["MARKER"])
print(json.dumps({"version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"], "event": event}))
"#;

pub struct Stand {
    pub moto: Moto,
    pub lambda: aws_sdk_lambda::Client,
    pub role: String,
}

/// moto, with a role for functions.
pub async fn stand() -> Stand {
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
        moto,
        role,
    }
}

impl Stand {
    /// A function whose package is `script` (run by the stand-in as a process, the event
    /// on stdin), with `env`.
    pub async fn function(&self, name: &str, script: &[u8], env: &[(&str, &str)]) {
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

    /// Publishes `name`'s code as a new version.
    pub async fn publish(&self, name: &str) -> String {
        self.lambda
            .publish_version()
            .function_name(name)
            .send()
            .await
            .unwrap()
            .version
            .unwrap()
    }

    /// Function `shop` published twice (the second with other code) and alias `live` on
    /// the first: (current version, target version).
    pub async fn shop_behind_live(&self) -> (String, String) {
        self.function("shop", ECHO, &[]).await;
        let current = self.publish("shop").await;
        self.lambda
            .update_function_code()
            .function_name("shop")
            .zip_file(Blob::new(archive::zip(&[Entry::file(
                "handler.py",
                &[ECHO, b"# v2\n"].concat(),
            )])))
            .send()
            .await
            .unwrap();
        let target = self.publish("shop").await;
        self.lambda
            .create_alias()
            .function_name("shop")
            .name("live")
            .function_version(&current)
            .send()
            .await
            .unwrap();
        (current, target)
    }

    /// The version each of `count` invocations of `name:alias` ran.
    pub async fn versions(&self, qualified: &str, count: usize) -> Vec<String> {
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

/// The share of `versions` that are `version`.
pub fn share(versions: &[String], version: &str) -> f64 {
    versions.iter().filter(|found| *found == version).count() as f64 / versions.len() as f64
}
