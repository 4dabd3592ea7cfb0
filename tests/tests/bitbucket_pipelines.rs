//! examples/bitbucket-pipelines.yml's deploy step, run as Bitbucket Pipelines runs it:
//! the step's script lines, in one shell, in a checkout, with Bitbucket's variables and
//! the repository's. Against gantry-local, moto and real agents: the commit's bundle is
//! uploaded and deployed, and a step missing a variable fails naming it, before anything
//! is pushed.

use gantry_tests::fleet::{Fleet, installed_version, revision};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const COMMIT: &str = "3f1c2e9a7b4d5c6e8f9a0b1c2d3e4f5a6b7c8d9e";
const NEXT_COMMIT: &str = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d";
const BROKEN_COMMIT: &str = "0badc0de0badc0de0badc0de0badc0de0badc0de";

/// The deploy step of the main branch's pipeline, checked for what the README promises,
/// and its script lines.
fn deploy_step_script(pipelines: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(pipelines).expect("reading the pipelines file");
    let file: serde_norway::Value = serde_norway::from_str(&text).expect("valid YAML");
    assert!(file["image"].as_str().is_some(), "no image: {text}");
    let main = file["pipelines"]["branches"]["main"]
        .as_sequence()
        .expect("a pipeline for the main branch");
    let step = main
        .iter()
        .map(|item| &item["step"])
        .find(|step| step["deployment"].as_str() == Some("production"))
        .expect("a step with `deployment: production` on main");
    assert_eq!(
        step["oidc"].as_bool(),
        Some(true),
        "the step has no `oidc: true`"
    );
    let script: Vec<String> = step["script"]
        .as_sequence()
        .expect("the step's script is a list")
        .iter()
        .map(|line| {
            line.as_str()
                .expect("each script line is a string")
                .to_owned()
        })
        .collect();
    assert!(
        script.iter().any(|line| line.contains("deploy.sh")),
        "{script:?}"
    );
    script
}

/// A checkout of a repository laid out as the example expects: the pipelines file, the
/// step's script, and a revision directory whose page says `version`.
fn checkout(dir: &Path, version: &str) -> PathBuf {
    let root = gantry_tests::workspace_root();
    std::fs::create_dir_all(dir.join("examples/bitbucket")).unwrap();
    std::fs::copy(
        root.join("examples/bitbucket-pipelines.yml"),
        dir.join("bitbucket-pipelines.yml"),
    )
    .unwrap();
    std::fs::copy(
        root.join("examples/bitbucket/deploy.sh"),
        dir.join("examples/bitbucket/deploy.sh"),
    )
    .unwrap();
    revision(
        &dir.join("examples/hello"),
        version,
        &[("ValidateService", "test \"$APPLICATION_NAME\" = shop")],
        60,
    )
    .unwrap();
    dir.to_owned()
}

/// The step's script run as Bitbucket runs it: every line in one shell (what one line
/// exports the next sees), stopping at the first that fails, from the checkout, with
/// nothing in the environment but a PATH holding the built `gantry`, Bitbucket's
/// variables and `variables`.
fn run_step(fleet: &Fleet, clone: &Path, script: &[String], variables: &[(&str, &str)]) -> Output {
    let bin = fleet.work.path().join("bin");
    if !bin.join("gantry").exists() {
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(&fleet.binaries.cli, bin.join("gantry")).unwrap();
    }
    let home = fleet.work.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    Command::new("sh")
        .arg("-c")
        .arg(format!("set -e\n{}", script.join("\n")))
        .current_dir(clone)
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display()),
        )
        .env("HOME", &home)
        .env("CI", "true")
        .env("BITBUCKET_CLONE_DIR", clone)
        .env("BITBUCKET_COMMIT", COMMIT)
        .env("BITBUCKET_BRANCH", "main")
        .env("BITBUCKET_BUILD_NUMBER", "42")
        .env("BITBUCKET_REPO_FULL_NAME", "acme/shop")
        .env("BITBUCKET_DEPLOYMENT_ENVIRONMENT", "production")
        // How the CLI reaches the local stack instead of AWS Lambda; S3 and the rest go
        // to moto (AWS_ENDPOINT_URL).
        .env("GANTRY_ENDPOINT_URL", fleet.local.endpoint())
        .envs(variables.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("sh runs")
}

fn said(output: &Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn deployments(fleet: &Fleet) -> Vec<Value> {
    let listed = fleet.gantry_json(&["list", "--app", "shop", "--group", "web"]);
    listed["deployments"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn the_bitbucket_deploy_step_pushes_the_commit_and_deploys_it_to_real_agents() {
    let fleet = Fleet::shop(&["web-1", "web-2"], "CodeDeployDefault.OneAtATime");
    let script = deploy_step_script(
        &gantry_tests::workspace_root().join("examples/bitbucket-pipelines.yml"),
    );
    let clone = checkout(&fleet.work.path().join("clone"), "commit-3f1c2e9");

    // The repository's variables: the stack (gantry-local serves `gantry-<function>`),
    // and moto's keys as the secured AWS variables.
    let mut variables: Vec<(&str, String)> = vec![
        ("GANTRY_STACK", "gantry".into()),
        ("GANTRY_APP", "shop".into()),
        ("GANTRY_GROUP", "web".into()),
        ("GANTRY_BUCKET", "gantry-revisions".into()),
    ];
    variables.extend(fleet.moto.sdk_env());
    let mut variables: Vec<(&str, &str)> =
        variables.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // Each variable the step needs, missing: the step fails naming it, before any push.
    for missing in [
        "GANTRY_GROUP",
        "GANTRY_BUCKET",
        "AWS_REGION",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        let some: Vec<(&str, &str)> = variables
            .iter()
            .copied()
            .filter(|(k, _)| *k != missing)
            .collect();
        let output = run_step(&fleet, &clone, &script, &some);
        let text = said(&output);
        assert!(!output.status.success(), "ran without {missing}: {text}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("set these repository variables:") && stderr.contains(missing),
            "the failure does not name {missing}: {text}"
        );
    }
    // OpenID Connect asked for (AWS_ROLE_ARN) in a step without `oidc: true`.
    let mut oidc: Vec<(&str, &str)> = variables
        .iter()
        .copied()
        .filter(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"))
        .collect();
    oidc.push((
        "AWS_ROLE_ARN",
        "arn:aws:iam::123456789012:role/bitbucket-deploy",
    ));
    let output = run_step(&fleet, &clone, &script, &oidc);
    assert!(!output.status.success(), "{}", said(&output));
    assert!(
        said(&output).contains("BITBUCKET_STEP_OIDC_TOKEN"),
        "{}",
        said(&output)
    );
    assert!(deployments(&fleet).is_empty(), "a failed step deployed");
    let revisions = fleet.gantry_json(&["revisions", "--app", "shop"]);
    assert_eq!(
        revisions["revisions"].as_array().map(Vec::len),
        Some(0),
        "a failed step pushed: {revisions}"
    );

    let output = run_step(&fleet, &clone, &script, &variables);
    let text = said(&output);
    assert!(output.status.success(), "the step failed: {text}");
    let ids = deployments(&fleet);
    assert_eq!(ids.len(), 1, "{ids:?}\n{text}");
    let id = ids[0].as_str().expect("a deployment id");
    let info = fleet.deployment(id);
    assert_eq!(info["status"], "Succeeded", "{info:#}\n{text}");
    let key = format!("revisions/shop/{COMMIT}.tgz");
    assert_eq!(
        info["revision"]["s3Location"]["bucket"], "gantry-revisions",
        "{info:#}"
    );
    assert_eq!(
        info["revision"]["s3Location"]["key"],
        key.as_str(),
        "{info:#}"
    );
    assert!(
        info["description"]
            .as_str()
            .is_some_and(|d| d.contains(COMMIT) && d.contains("acme/shop")),
        "{info:#}"
    );
    for host in &fleet.hosts {
        assert_eq!(
            installed_version(host).as_deref(),
            Some("commit-3f1c2e9"),
            "{}",
            host.name
        );
    }
    // The revision registered is the commit's, pinned to what was uploaded.
    let revisions = fleet.gantry_ok(&["revisions", "--app", "shop"]);
    assert!(
        revisions.contains(&format!("s3://gantry-revisions/{key}")),
        "{revisions}"
    );

    // The next commit, with OpenID Connect instead of keys: no AWS keys in the step, the
    // role assumed with Bitbucket's token (moto's STS takes any token).
    revision(
        &clone.join("examples/hello"),
        "commit-9e8d7c6",
        &[("ValidateService", "test \"$APPLICATION_NAME\" = shop")],
        60,
    )
    .unwrap();
    oidc.extend([
        ("BITBUCKET_COMMIT", NEXT_COMMIT),
        (
            "BITBUCKET_STEP_OIDC_TOKEN",
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ7cmVwb30ifQ.c2ln",
        ),
    ]);
    let output = run_step(&fleet, &clone, &script, &oidc);
    let text = said(&output);
    assert!(
        output.status.success(),
        "the OpenID Connect step failed: {text}"
    );
    let ids = deployments(&fleet);
    assert_eq!(ids.len(), 2, "{ids:?}\n{text}");
    let info = fleet.deployment(ids[0].as_str().expect("a deployment id"));
    assert_eq!(info["status"], "Succeeded", "{info:#}\n{text}");
    assert_eq!(
        info["revision"]["s3Location"]["key"],
        format!("revisions/shop/{NEXT_COMMIT}.tgz").as_str(),
        "{info:#}"
    );
    for host in &fleet.hosts {
        assert_eq!(
            installed_version(host).as_deref(),
            Some("commit-9e8d7c6"),
            "{}",
            host.name
        );
    }

    // A commit whose deployment fails fails the step.
    revision(
        &clone.join("examples/hello"),
        "commit-0badc0d",
        &[("ValidateService", "echo 'health check: 503' >&2; exit 1")],
        60,
    )
    .unwrap();
    variables.push(("BITBUCKET_COMMIT", BROKEN_COMMIT));
    let output = run_step(&fleet, &clone, &script, &variables);
    let text = said(&output);
    assert!(
        !output.status.success(),
        "a failed deployment passed: {text}"
    );
    let ids = deployments(&fleet);
    assert_eq!(ids.len(), 3, "{ids:?}\n{text}");
    let info = fleet.deployment(ids[0].as_str().expect("a deployment id"));
    assert_eq!(info["status"], "Failed", "{info:#}\n{text}");
}
