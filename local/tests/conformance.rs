//! Gantry against CodeDeploy's service model, over CodeDeploy's own protocol: every
//! operation of botocore's model, called by boto3 with every documented input member,
//! is served, refuses no documented member as unknown, and fails only with exceptions
//! the model documents for it; every answer read has the model's shape, and every
//! optional member is answered somewhere or listed with why not
//! (tests/conformance/check.py).

use gantry_tests::local::GantryLocal;
use gantry_tests::moto::Moto;
use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_gantry-local");

/// `tests/conformance/<script> <gantry-local> ARGS` with the venv's Python and boto3.
fn python(script: &str, args: &[&str]) -> std::process::Output {
    let moto = Moto::start().expect("moto");
    let local = GantryLocal::start(BINARY.as_ref(), &moto, &[]).expect("gantry-local");
    let root = gantry_tests::workspace_root();
    Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/conformance").join(script))
        .arg(local.endpoint())
        .args(args)
        // Every other service (STS for the account's id) goes to moto.
        .envs(moto.sdk_env())
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .expect("python runs")
}

#[test]
fn every_operation_of_codedeploys_model_conforms() {
    let output = python("check.py", &[]);
    assert!(
        output.status.success(),
        "findings:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// More of everything than one page holds: boto3's paginator of every list operation
/// follows nextToken to the end (tests/conformance/paging.py).
#[test]
fn boto3_paginators_page_through_gantry() {
    let output = python("paging.py", &["130"]);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
