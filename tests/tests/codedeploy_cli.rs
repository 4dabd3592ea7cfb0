//! The README's quick start with the stock AWS CLI (`aws deploy`, CodeDeploy's own
//! protocol) against gantry-local and real agents: no Gantry code on the client side.

use gantry_tests::fleet::{Fleet, installed_version, revision};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;

fn fleet(hosts: &[&str]) -> Fleet {
    let mut fleet = Fleet::start(&["--tick-ms", "200"]).expect("moto and gantry-local start");
    for host in hosts {
        fleet
            .add_host(host, &["role=web"])
            .expect("the host's agent starts");
    }
    fleet
}

/// `aws deploy push` of a revision directory (zipped by the CLI) to
/// `s3://gantry-revisions/shop/<version>.zip`; its hook scripts executable, as a
/// developer's working tree has them.
fn push(fleet: &Fleet, version: &str, hooks: &[(&str, &str)]) {
    let dir = fleet.work.path().join("revisions").join(version);
    revision(&dir, version, hooks, 60).expect("writing the revision");
    for (event, _) in hooks {
        let script = dir.join(format!("scripts/{event}.sh"));
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let location = format!("s3://gantry-revisions/shop/{version}.zip");
    let pushed = fleet.aws_deploy(&[
        "push",
        "--application-name",
        "shop",
        "--s3-location",
        &location,
        "--source",
        dir.to_str().unwrap(),
    ]);
    let said = String::from_utf8_lossy(&pushed.stdout);
    assert!(
        pushed.status.success() && said.contains("aws deploy create-deployment"),
        "aws deploy push: {said}{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
}

fn create_deployment(fleet: &Fleet, version: &str) -> String {
    let location = format!("bucket=gantry-revisions,key=shop/{version}.zip,bundleType=zip");
    let created = fleet.aws_deploy_ok(&[
        "create-deployment",
        "--application-name",
        "shop",
        "--deployment-group-name",
        "web",
        "--s3-location",
        &location,
    ]);
    created["deploymentId"]
        .as_str()
        .expect("a deployment id")
        .to_owned()
}

fn get_deployment(fleet: &Fleet, id: &str) -> Value {
    fleet.aws_deploy_ok(&["get-deployment", "--deployment-id", id])["deploymentInfo"].clone()
}

#[test]
fn the_stock_aws_cli_runs_the_quick_start_against_gantry_local() {
    let fleet = fleet(&["web-1", "web-2"]);
    fleet.aws_deploy_ok(&["create-application", "--application-name", "shop"]);
    fleet.aws_deploy_ok(&[
        "create-deployment-group",
        "--application-name",
        "shop",
        "--deployment-group-name",
        "web",
        "--deployment-config-name",
        "CodeDeployDefault.AllAtOnce",
        "--on-premises-instance-tag-filters",
        "Key=role,Value=web,Type=KEY_AND_VALUE",
        "--service-role-arn",
        "arn:aws:iam::123456789012:role/CodeDeployServiceRole",
        "--auto-rollback-configuration",
        "enabled=true,events=DEPLOYMENT_FAILURE",
    ]);
    // An instance registered and tagged with the stock CLI (no agent: it is not tagged
    // role=web, so the group does not select it).
    let user = fleet.moto.create_iam_user("host-spare").unwrap();
    fleet.aws_deploy_ok(&[
        "register-on-premises-instance",
        "--instance-name",
        "spare",
        "--iam-user-arn",
        &user.arn,
    ]);
    fleet.aws_deploy_ok(&[
        "add-tags-to-on-premises-instances",
        "--instance-names",
        "spare",
        "--tags",
        "Key=role,Value=spare",
    ]);
    let instances = fleet.aws_deploy_ok(&["list-on-premises-instances"]);
    assert_eq!(
        instances["instanceNames"],
        serde_json::json!(["spare", "web-1", "web-2"]),
        "{instances}"
    );
    let spare = fleet.aws_deploy_ok(&["get-on-premises-instance", "--instance-name", "spare"]);
    assert_eq!(
        spare["instanceInfo"]["tags"][0]["Value"], "spare",
        "{spare}"
    );

    push(&fleet, "v1", &[]);
    let v1 = create_deployment(&fleet, "v1");
    // The waiter polls GetDeployment as CodeDeploy's does (every 15 s).
    fleet.aws_deploy_ok(&["wait", "deployment-successful", "--deployment-id", &v1]);
    let info = get_deployment(&fleet, &v1);
    assert_eq!(info["status"], "Succeeded", "{info:#}");
    assert_eq!(info["deploymentOverview"]["Succeeded"], 2);
    for host in &fleet.hosts {
        assert_eq!(
            installed_version(host).as_deref(),
            Some("v1"),
            "{}",
            host.name
        );
    }

    // A failing ValidateService: the waiter ends in failure, GetDeployment says why.
    push(
        &fleet,
        "v2",
        &[("ValidateService", "echo 'health check: 503' >&2; exit 1")],
    );
    let v2 = create_deployment(&fleet, "v2");
    let waited = fleet.aws_deploy(&["wait", "deployment-successful", "--deployment-id", &v2]);
    assert!(
        !waited.status.success(),
        "the waiter succeeded on a failing deployment"
    );
    let said = String::from_utf8_lossy(&waited.stderr);
    assert!(
        said.contains("Waiter DeploymentSuccessful failed"),
        "{said}"
    );
    let info = get_deployment(&fleet, &v2);
    assert_eq!(info["status"], "Failed", "{info:#}");
    assert!(info["errorInformation"]["code"].is_string(), "{info:#}");
    // The group rolls back on failure: v1 again, on both hosts.
    let rollback = info["rollbackInfo"]["rollbackDeploymentId"]
        .as_str()
        .unwrap_or_else(|| panic!("no rollback: {info:#}"))
        .to_owned();
    fleet.aws_deploy_ok(&[
        "wait",
        "deployment-successful",
        "--deployment-id",
        &rollback,
    ]);
    let rolled_back = get_deployment(&fleet, &rollback);
    assert_eq!(
        rolled_back["rollbackInfo"]["rollbackTriggeringDeploymentId"], v2,
        "{rolled_back:#}"
    );
    assert_eq!(
        rolled_back["revision"],
        get_deployment(&fleet, &v1)["revision"]
    );

    // Every answer about these deployments has CodeDeploy's shape, and what only a run
    // can show is there (tests/conformance/answers.py).
    let root = gantry_tests::workspace_root();
    let checked = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/conformance/answers.py"))
        .args([fleet.local.endpoint(), "shop", "web", &v1, &v2, &rollback])
        .envs(fleet.moto.sdk_env())
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .expect("python runs");
    assert!(
        checked.status.success(),
        "findings:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // Listing pages: the CLI follows nextToken, or hands out its own with --max-items.
    let all = fleet.aws_deploy_ok(&[
        "list-deployments",
        "--application-name",
        "shop",
        "--deployment-group-name",
        "web",
    ]);
    assert_eq!(
        all["deployments"],
        serde_json::json!([rollback, v2, v1]),
        "{all}"
    );
    let first = fleet.aws_deploy_ok(&[
        "list-deployments",
        "--application-name",
        "shop",
        "--deployment-group-name",
        "web",
        "--max-items",
        "1",
    ]);
    assert_eq!(
        first["deployments"],
        serde_json::json!([rollback]),
        "{first}"
    );
    let token = first["NextToken"].as_str().expect("a token for the rest");
    let rest = fleet.aws_deploy_ok(&[
        "list-deployments",
        "--application-name",
        "shop",
        "--deployment-group-name",
        "web",
        "--starting-token",
        token,
    ]);
    assert_eq!(rest["deployments"], serde_json::json!([v2, v1]), "{rest}");
}

/// `gantry proxy`, killed by pid when dropped.
struct Proxy {
    child: std::process::Child,
    endpoint: String,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `gantry proxy` forwards CodeDeploy's protocol to the api function with the caller's
/// credentials (here gantry-local's Invoke API stands for a deployed stack's Lambda): the
/// stock CLI's answers and errors come through unchanged, and a request signed with
/// other keys never leaves the machine.
#[test]
fn gantry_proxy_carries_codedeploys_protocol_to_the_api_function() {
    use std::io::BufRead;
    let fleet = fleet(&[]);
    let mut child = fleet
        .gantry_command(&["proxy"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gantry proxy starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let proxy = Proxy {
        child,
        endpoint: line
            .trim()
            .strip_prefix("gantry proxy listening on ")
            .unwrap_or_else(|| panic!("gantry proxy said {line:?}"))
            .to_owned(),
    };
    let aws = |args: &[&str], env: &[(&str, &str)]| {
        std::process::Command::new(gantry_tests::workspace_root().join(".venv/bin/aws"))
            .arg("deploy")
            .args(args)
            .args(["--endpoint-url", &proxy.endpoint])
            .envs(fleet.moto.sdk_env())
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .envs(env.iter().copied())
            .output()
            .expect("the stock AWS CLI runs")
    };
    let created = aws(&["create-application", "--application-name", "shop"], &[]);
    assert!(created.status.success(), "{created:?}");
    let listed = aws(&["list-applications"], &[]);
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(listed["applications"], serde_json::json!(["shop"]));
    let missing = aws(&["get-application", "--application-name", "nope"], &[]);
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(
        said.contains("An error occurred (ApplicationDoesNotExistException) when calling the GetApplication operation"),
        "{said}"
    );
    let forged = aws(
        &["create-application", "--application-name", "other"],
        &[("AWS_SECRET_ACCESS_KEY", "not-the-secret")],
    );
    let said = String::from_utf8_lossy(&forged.stderr);
    assert!(said.contains("InvalidSignatureException"), "{said}");
    let listed = aws(&["list-applications"], &[]);
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(
        listed["applications"],
        serde_json::json!(["shop"]),
        "nothing forged went through"
    );
}
