//! End to end: CodePipeline's "Invoke AWS Lambda" action against gantry-local, its
//! `pipeline` function invoked with the stock AWS CLI as CodePipeline would invoke it in
//! AWS, a real `gantry-agent` installing the artifact, the job's results recorded by the
//! stand-in. The test plays CodePipeline: it invokes the function again with the
//! continuation token until the job is answered without one.

use gantry_tests::archive;
use gantry_tests::fleet::{Fleet, installed_version, revision};
use gantry_tests::wait_until;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

const DEPLOYMENT_TIMEOUT: Duration = Duration::from_secs(120);
const ARTIFACTS: &str = "codepipeline-us-east-1-artifacts";

/// `aws s3api ARGS` with the stock AWS CLI against the fleet's moto.
fn s3api(fleet: &Fleet, args: &[&str]) {
    let output = Command::new(gantry_tests::workspace_root().join(".venv/bin/aws"))
        .arg("s3api")
        .args(args)
        .envs(fleet.moto.sdk_env())
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .expect("the stock AWS CLI runs");
    assert!(
        output.status.success(),
        "aws s3api {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A job as CodePipeline sends it to the function.
fn job(id: &str, artifact: &str, token: Option<&str>) -> Value {
    json!({"CodePipeline.job": {
        "id": id,
        "accountId": "123456789012",
        "data": {
            "actionConfiguration": {"configuration": {
                "FunctionName": "gantry-pipeline",
                "UserParameters": "{\"application\": \"shop\", \"deploymentGroup\": \"web\"}",
            }},
            "inputArtifacts": [{
                "name": "BuildOutput",
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

#[test]
fn a_pipeline_job_deploys_its_artifact_to_a_real_agent_and_succeeds_after_continuations() {
    // The bundle bucket and revision prefix, as template.yaml gives every function (the
    // pipeline function copies artifacts there); gantry-local creates the bucket.
    let mut fleet = Fleet::start_with_env(
        &["--tick-ms", "200"],
        &[
            ("GANTRY_BUNDLE_BUCKET", "gantry-revisions"),
            ("GANTRY_REVISION_PREFIX", "revisions/"),
        ],
    )
    .expect("moto and gantry-local start");
    fleet
        .add_host("web-1", &["role=web"])
        .expect("the host's agent starts");
    fleet.gantry_ok(&["app", "create", "shop"]);
    fleet.gantry_ok(&[
        "group",
        "create",
        "web",
        "--app",
        "shop",
        "--on-prem-tag",
        "role=web",
    ]);

    // The build stage's output: a zip of a revision, in the pipeline's artifact store.
    let dir = fleet.work.path().join("build");
    revision(&dir, "pipeline-7", &[("ValidateService", "exit 0")], 60)
        .expect("writing the revision");
    let zip = fleet.work.path().join("BuildOutput.zip");
    std::fs::write(
        &zip,
        archive::zip(&archive::entries_of(&dir, "").expect("the revision's files")),
    )
    .expect("writing the artifact");
    s3api(&fleet, &["create-bucket", "--bucket", ARTIFACTS]);
    let key = "shop-pipeline/BuildOutput/7f3a.zip";
    s3api(
        &fleet,
        &[
            "put-object",
            "--bucket",
            ARTIFACTS,
            "--key",
            key,
            "--body",
            zip.to_str().unwrap(),
        ],
    );

    let output = fleet.aws_lambda_invoke("gantry-pipeline", &job("job-e2e", key, None));
    assert_eq!(output["answer"], "continue", "{output}");
    let deployment_id = output["deploymentId"].as_str().unwrap().to_owned();
    let first = fleet.moto.job_results("job-e2e").expect("job results");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["continuationToken"], deployment_id.as_str());

    // CodePipeline's part: a new job with the token, again, until one is answered
    // without a token (or fails).
    let mut round = 0;
    let mut last = Value::Null;
    let ended = wait_until(DEPLOYMENT_TIMEOUT, || {
        round += 1;
        let id = format!("job-e2e-continued-{round}");
        fleet.aws_lambda_invoke("gantry-pipeline", &job(&id, key, Some(&deployment_id)));
        last = fleet
            .moto
            .job_results(&id)
            .expect("job results")
            .pop()
            .unwrap_or(Value::Null);
        last["result"] == "failure" || last["continuationToken"].is_null()
    });
    assert!(ended, "the job never ended: {last}");
    assert_eq!(last["result"], "success", "{last}");
    assert_eq!(
        last["executionDetails"]["externalExecutionId"],
        deployment_id.as_str()
    );
    let info = fleet.deployment(&deployment_id);
    assert_eq!(info["status"], "Succeeded");
    assert_eq!(
        info["revision"]["s3Location"]["key"],
        "revisions/codepipeline/shop/job-e2e"
    );
    assert_eq!(
        installed_version(fleet.host("web-1")).as_deref(),
        Some("pipeline-7")
    );
}
