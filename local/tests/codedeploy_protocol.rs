//! CodeDeploy's own protocol on gantry-local (JSON 1.1 with `X-Amz-Target`, signed with
//! Signature Version 4), driven by the stock AWS CLI from .venv with no Gantry code on
//! the client side: answers, errors as the CLI prints CodeDeploy's, `aws deploy push`,
//! and requests signed with other keys or none refused as AWS refuses them.

use gantry_tests::local::GantryLocal;
use gantry_tests::moto::Moto;
use serde_json::Value;
use std::io::{Read, Write};
use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_gantry-local");

/// `aws deploy <args>` against gantry-local; every other service (S3 for `push`) goes
/// to moto. `env` overrides the credentials.
fn aws_deploy(moto: &Moto, local: &GantryLocal, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(gantry_tests::workspace_root().join(".venv/bin/aws"))
        .arg("deploy")
        .args(args)
        .args(["--endpoint-url", local.endpoint()])
        .envs(moto.sdk_env())
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .envs(env.iter().copied())
        .output()
        .expect("the stock AWS CLI runs")
}

fn ok(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "aws failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    if output.stdout.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(&output.stdout).expect("aws prints JSON")
}

/// What the CLI prints for a service error: `An error occurred (<Exception>) when calling
/// the <Operation> operation: <message>`.
fn refused(output: &Output, exception: &str, operation: &str) -> String {
    assert!(!output.status.success(), "accepted: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let expected =
        format!("An error occurred ({exception}) when calling the {operation} operation");
    assert!(stderr.contains(&expected), "{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stock_aws_cli_speaks_codedeploy_to_gantry_local() {
    let moto = Moto::start().expect("moto");
    let local = GantryLocal::start(BINARY.as_ref(), &moto, &[]).expect("gantry-local");

    let created = ok(&aws_deploy(
        &moto,
        &local,
        &["create-application", "--application-name", "hello"],
        &[],
    ));
    assert!(created["applicationId"].is_string(), "{created}");
    let listed = ok(&aws_deploy(&moto, &local, &["list-applications"], &[]));
    assert_eq!(listed["applications"], serde_json::json!(["hello"]));
    let stderr = refused(
        &aws_deploy(
            &moto,
            &local,
            &["get-application", "--application-name", "nope"],
            &[],
        ),
        "ApplicationDoesNotExistException",
        "GetApplication",
    );
    assert!(stderr.contains("nope"), "{stderr}");

    // `push` zips the directory, uploads it to S3 (moto) and registers the revision.
    let bundle = tempfile::tempdir().unwrap();
    std::fs::write(
        bundle.path().join("appspec.yml"),
        "version: 0.0\nos: linux\nfiles:\n  - source: index.html\n    destination: /srv/hello\n",
    )
    .unwrap();
    std::fs::write(bundle.path().join("index.html"), "hello\n").unwrap();
    let s3 = aws_sdk_s3::Client::new(&moto.sdk_config().await);
    s3.create_bucket().bucket("revisions").send().await.unwrap();
    let pushed = aws_deploy(
        &moto,
        &local,
        &[
            "push",
            "--application-name",
            "hello",
            "--s3-location",
            "s3://revisions/hello.zip",
            "--source",
            bundle.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        pushed.status.success(),
        "aws deploy push: {}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let revisions = ok(&aws_deploy(
        &moto,
        &local,
        &["list-application-revisions", "--application-name", "hello"],
        &[],
    ));
    let revision = &revisions["revisions"][0];
    assert_eq!(revision["revisionType"], "S3", "{revisions}");
    assert_eq!(revision["s3Location"]["key"], "hello.zip");
    assert_eq!(revision["s3Location"]["bundleType"], "zip");

    // Other keys, or the right key with another secret, are refused as AWS refuses them.
    refused(
        &aws_deploy(
            &moto,
            &local,
            &["list-applications"],
            &[("AWS_SECRET_ACCESS_KEY", "not-the-secret")],
        ),
        "InvalidSignatureException",
        "ListApplications",
    );
    refused(
        &aws_deploy(
            &moto,
            &local,
            &["list-applications"],
            &[("AWS_ACCESS_KEY_ID", "AKIDSOMEONEELSE")],
        ),
        "UnrecognizedClientException",
        "ListApplications",
    );

    // Unsigned: HTTP 400 with CodeDeploy's JSON error.
    let address = local.endpoint().trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    let body = "{}";
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: CodeDeploy_20141006.ListApplications\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains(r#""__type":"MissingAuthenticationTokenException""#),
        "{answer}"
    );
}
