//! End to end: CodePipeline's "Invoke AWS Lambda" action against gantry-local's
//! `pipeline` function, a real `gantry-agent` installing the artifact. The stand-in plays
//! CodePipeline (tests/standin/codepipeline.py): it invokes the function with the job,
//! records each result, and invokes it again with each continuation token until a job is
//! answered without one. The job delivered again comes through the stock AWS CLI.

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
        // Open to CodePipeline: the pipeline function deploys to no other group.
        "--tag",
        "gantry:codepipeline=allow",
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

    // CodePipeline's part, played by the stand-in: it invokes the function with the job,
    // then again with each continuation token (a new job), until a job is answered
    // without one.
    let url = format!(
        "{}/2015-03-31/functions/gantry-pipeline/invocations",
        fleet.local.endpoint()
    );
    fleet
        .moto
        .start_job_run(&url, &job("job-e2e", key, None), 0.2)
        .expect("the stand-in runs the action");
    let mut run = Value::Null;
    let ended = wait_until(DEPLOYMENT_TIMEOUT, || {
        run = fleet.moto.job_run("job-e2e").expect("the run");
        run["ended"] == true
    });
    assert!(ended, "the run never ended: {run:#}");
    assert_eq!(run["errors"], json!([]), "{run:#}");
    let results = run["results"].as_array().unwrap();
    assert_eq!(
        results[0]["continuationToken"], "job-e2e",
        "the first job is answered with its id as the continuation token: {run:#}"
    );
    let deployment_id = results[0]["executionDetails"]["externalExecutionId"]
        .as_str()
        .expect("the deployment the first job made")
        .to_owned();
    let last = results.last().unwrap().clone();
    assert_eq!(last["result"], "success", "{last}");
    assert!(
        results.len() >= 2,
        "at least one continuation before success: {run:#}"
    );
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

    // The first job delivered again, with the stock AWS CLI: the deployment it made,
    // succeeded; none made anew.
    let again = fleet.aws_lambda_invoke("gantry-pipeline", &job("job-e2e", key, None));
    assert_eq!(again["answer"], "succeeded", "{again}");
    assert_eq!(again["deploymentId"], deployment_id.as_str());
    let listed = fleet.aws_lambda_invoke(
        "gantry-api",
        &json!({"operation": "ListDeployments", "input": {"applicationName": "shop", "deploymentGroupName": "web"}}),
    );
    assert_eq!(listed["deployments"], json!([deployment_id]));
}
