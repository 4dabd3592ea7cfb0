//! A GitHub revision end to end, with the `gantry` CLI and real agents against
//! gantry-local and the GitHub stand-in: a private repository whose token the stack and
//! the hosts read from one SSM parameter; `gantry push --github` pins the commit,
//! `gantry deploy --revision github:...` installs it on every host, and a commit whose
//! bundle is not deployable is refused before any host sees it.

use gantry_tests::fleet::{Fleet, installed_version};
use gantry_tests::github::{GitHubStandIn, Repository, tarball};
use std::collections::BTreeMap;

const REPO: &str = "acme/shop";
const GOOD: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
const BROKEN: &str = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391";
const TOKEN: &str = "ghp_e2e_token_0042";
/// moto's account, and the parameter the test creates there.
const PARAMETER_ARN: &str = "arn:aws:ssm:us-east-1:123456789012:parameter/gantry/github";

const APPSPEC: &str = "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/app\nhooks:\n  ValidateService:\n    - location: scripts/validate.sh\n      timeout: 30\n";

fn repository() -> Repository {
    let good = tarball(
        REPO,
        GOOD,
        &[
            ("appspec.yml", APPSPEC, false),
            ("site/version.txt", "github-4b825dc\n", false),
            ("scripts/validate.sh", "#!/bin/sh\nexit 0\n", true),
        ],
    );
    // Its ValidateService script is missing.
    let broken = tarball(
        REPO,
        BROKEN,
        &[
            ("appspec.yml", APPSPEC, false),
            ("site/version.txt", "broken\n", false),
        ],
    );
    Repository {
        commits: BTreeMap::from([(GOOD.to_owned(), good), (BROKEN.to_owned(), broken)]),
        token: Some(TOKEN.to_owned()),
    }
}

#[test]
fn a_private_github_commit_is_pinned_checked_and_deployed_by_real_agents() {
    let github = GitHubStandIn::start().expect("the GitHub stand-in");
    github.add(REPO, repository());
    let api = github.api_url();
    let mut fleet = Fleet::start_with_env(
        &["--tick-ms", "200"],
        &[
            ("GANTRY_GITHUB_API_URL", api.as_str()),
            ("GANTRY_GITHUB_TOKEN_SECRET", PARAMETER_ARN),
        ],
    )
    .expect("moto and gantry-local start");
    let created = std::process::Command::new(gantry_tests::workspace_root().join(".venv/bin/aws"))
        .args([
            "ssm",
            "put-parameter",
            "--name",
            "/gantry/github",
            "--type",
            "SecureString",
            "--value",
            TOKEN,
        ])
        .envs(fleet.moto.sdk_env())
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .expect("the AWS CLI runs");
    assert!(created.status.success(), "{created:?}");
    fleet.agent_config_extra = format!(
        "github:\n  api_url: {api}\n  allow_insecure_http: true\n  token_secret: {PARAMETER_ARN}\n"
    );
    for host in ["web-1", "web-2"] {
        fleet
            .add_host(host, &["role=web"])
            .expect("an agent starts");
    }
    fleet.gantry_ok(&["app", "create", "shop"]);
    fleet.gantry_ok(&[
        "group",
        "create",
        "web",
        "--app",
        "shop",
        "--config",
        "CodeDeployDefault.AllAtOnce",
        "--on-prem-tag",
        "role=web",
    ]);

    // Registered by an abbreviated id, recorded by the full one.
    let pushed = fleet.gantry_ok(&[
        "push",
        "--app",
        "shop",
        "--github",
        &format!("{REPO}@{}", &GOOD[..7]),
    ]);
    assert!(pushed.contains(GOOD), "{pushed}");

    let output = fleet
        .gantry_command(&[
            "--output",
            "json",
            "deploy",
            "--app",
            "shop",
            "--group",
            "web",
            "--revision",
            &format!("github:{REPO}@{GOOD}"),
        ])
        .output()
        .expect("the gantry CLI runs");
    let printed: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "gantry deploy printed no JSON ({error}): {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let info = &printed["deploymentInfo"];
    if info["status"] != "Succeeded" {
        let id = info["deploymentId"].as_str().unwrap_or_default();
        panic!("{info:#}\nhosts: {:#?}", fleet.targets(id));
    }
    assert_eq!(
        info["revision"]["gitHubLocation"]["commitId"], GOOD,
        "{info:#}"
    );
    for host in &fleet.hosts {
        assert_eq!(
            installed_version(host).as_deref(),
            Some("github-4b825dc"),
            "{}",
            host.name
        );
    }

    // A commit whose bundle is not deployable never reaches a host.
    let refused = fleet.gantry(&[
        "deploy",
        "--app",
        "shop",
        "--group",
        "web",
        "--revision",
        &format!("github:{REPO}@{BROKEN}"),
    ]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("InvalidRevisionException") && said.contains("scripts/validate.sh"),
        "{said}"
    );

    // The token went to the API's host only (the agents' requests and the control
    // plane's), never along the redirect to the archive host.
    let requests = github.requests();
    let bearer = format!("Bearer {TOKEN}");
    let api_requests: Vec<&String> = requests
        .iter()
        .filter(|r| r.starts_with("GET /repos/"))
        .collect();
    assert!(
        api_requests.iter().all(|r| r.ends_with(&bearer)),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .filter(|r| r.contains("/codeload/"))
            .all(|r| !r.contains(TOKEN)),
        "{requests:?}"
    );
    // Two hosts and the control plane's check each downloaded the good commit.
    let tarballs = api_requests
        .iter()
        .filter(|r| r.contains(&format!("/tarball/{GOOD}")))
        .count();
    assert!(tarballs >= 3, "{requests:?}");
}
