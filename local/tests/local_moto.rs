//! gantry-local as a real process against moto: the stock AWS CLI and the SDK's Lambda
//! client invoke its handlers, reports flow through the real reports queue, a poison
//! report is dead-lettered, and SIGTERM stops it cleanly.

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_s3::primitives::ByteStream;
use gantry_core::wire::Command;
use gantry_tests::archive::{self, Entry};
use gantry_tests::local::{GantryLocal, aws_lambda_invoke};
use gantry_tests::moto::Moto;
use gantry_tests::reports::host_reports;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_gantry-local");

/// The stock AWS CLI against `local`.
fn aws_invoke(
    moto: &Moto,
    local: &GantryLocal,
    function: &str,
    payload: &Value,
    out: &Path,
) -> Value {
    aws_lambda_invoke(moto, local.endpoint(), function, payload, out)
}

async fn sdk_invoke(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
    payload: Value,
) -> (Option<String>, Value) {
    let output = lambda
        .invoke()
        .function_name(function)
        .payload(Blob::new(payload.to_string()))
        .send()
        .await
        .expect("invoke");
    let body = serde_json::from_slice(output.payload().unwrap().as_ref()).unwrap();
    (output.function_error().map(str::to_owned), body)
}

async fn wait_for_status(lambda: &aws_sdk_lambda::Client, id: &str, wanted: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = sdk_invoke(
            lambda,
            "api",
            json!({"operation": "GetDeployment", "input": {"deploymentId": id}}),
        )
        .await;
        let info = body["deploymentInfo"].clone();
        if info["status"] == wanted {
            return info;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never became {wanted}: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stock_aws_cli_drives_a_deployment_through_gantry_local() {
    let moto = Moto::start().unwrap();
    let mut local = GantryLocal::start(
        Path::new(BINARY),
        &moto,
        &["--max-receives", "2", "--tick-ms", "200"],
    )
    .unwrap();
    let config = moto.sdk_config().await;
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("out.json");
    let api = |operation: &str, input: Value| json!({"operation": operation, "input": input});
    // The host's own IAM user: reports count only from it.
    let host = moto.create_iam_user("web-1").unwrap();

    aws_invoke(
        &moto,
        &local,
        "api",
        &api("CreateApplication", json!({"applicationName": "shop"})),
        &out,
    );
    aws_invoke(
        &moto,
        &local,
        "api",
        &api(
            "RegisterOnPremisesInstance",
            json!({"instanceName": "web-1", "iamUserArn": host.arn}),
        ),
        &out,
    );
    aws_invoke(
        &moto,
        &local,
        "api",
        &api(
            "AddTagsToOnPremisesInstances",
            json!({"instanceNames": ["web-1"], "tags": [{"Key": "role", "Value": "web"}]}),
        ),
        &out,
    );
    aws_invoke(
        &moto,
        &local,
        "api",
        &api(
            "CreateDeploymentGroup",
            json!({
                "applicationName": "shop",
                "deploymentGroupName": "web",
                "onPremisesInstanceTagFilters": [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
            }),
        ),
        &out,
    );
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let bundle = archive::tgz(&[
        Entry::file("appspec.yml", b"version: 0.0\nos: linux\n"),
        Entry::file("index.html", b"hello\n"),
    ]);
    s3.put_object()
        .bucket("gantry-revisions")
        .key("shop/v1.tgz")
        .body(ByteStream::from(bundle))
        .send()
        .await
        .unwrap();

    // The payload `aws deploy create-deployment --generate-cli-skeleton` describes.
    let created = aws_invoke(
        &moto,
        &local,
        "create-deployment",
        &json!({
            "applicationName": "shop",
            "deploymentGroupName": "web",
            "revision": {"revisionType": "S3", "s3Location": {"bucket": "gantry-revisions", "key": "shop/v1.tgz", "bundleType": "tgz"}},
            "deploymentConfigName": "CodeDeployDefault.OneAtATime",
            "description": "first",
            "ignoreApplicationStopFailures": false,
            "updateOutdatedInstancesOnly": false,
            "fileExistsBehavior": "OVERWRITE",
        }),
        &out,
    );
    let id = created["deploymentId"]
        .as_str()
        .expect("deploymentId")
        .to_owned();

    // Play the host: take its command, send the agent's reports to the reports queue.
    let sqs = aws_sdk_sqs::Client::new(&config);
    let command_queue = sqs
        .get_queue_url()
        .queue_name("gantry-commands-web-1")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let received = sqs
        .receive_message()
        .queue_url(&command_queue)
        .wait_time_seconds(5)
        .send()
        .await
        .unwrap();
    let command = Command::from_json(received.messages()[0].body().unwrap()).unwrap();
    assert_eq!(command.deployment_id, id);
    let reports_queue = sqs
        .get_queue_url()
        .queue_name("gantry-reports")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    sqs.send_message()
        .queue_url(&reports_queue)
        .message_body("{\"poison\": true}")
        .send()
        .await
        .unwrap();
    let as_host = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&config)
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                &host.access_key_id,
                &host.secret_access_key,
                None,
                None,
                "web-1",
            ))
            .build(),
    );
    for body in host_reports(&id, "web-1", None) {
        as_host
            .send_message()
            .queue_url(&reports_queue)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    let lambda = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(&config)
            .endpoint_url(local.endpoint())
            .build(),
    );
    let info = wait_for_status(&lambda, &id, "Succeeded").await;
    assert_eq!(info["deploymentOverview"]["Succeeded"], 1);
    assert_eq!(info["fileExistsBehavior"], "OVERWRITE");

    // The poison report ends in the dead-letter queue; nothing else does.
    let dead_letters = sqs
        .get_queue_url()
        .queue_name("gantry-reports-dlq")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let poison = loop {
        let received = sqs
            .receive_message()
            .queue_url(&dead_letters)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if let Some(message) = received.messages().first() {
            break message.body().unwrap().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the poison report was never dead-lettered"
        );
    };
    assert_eq!(poison, "{\"poison\": true}");

    // Errors come back as Lambda reports them, with CodeDeploy's exception names.
    let (error, body) = sdk_invoke(
        &lambda,
        "create-deployment",
        json!({"applicationName": "nope", "deploymentGroupName": "web"}),
    )
    .await;
    assert_eq!(error.as_deref(), Some("Unhandled"));
    assert_eq!(
        body["errorType"], "ApplicationDoesNotExistException",
        "{body}"
    );
    let missing = lambda
        .invoke()
        .function_name("no-such-function")
        .send()
        .await
        .unwrap_err();
    assert!(
        missing
            .as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{missing:?}"
    );

    let status = local.terminate(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "gantry-local exited with {status}");
}
