//! GitHub revisions through the api function, against moto and the GitHub stand-in
//! (tests/src/github.rs): pinned to the full commit id and checked before anything is
//! recorded, as S3 bundles are; refused with CodeDeploy's exceptions when the repository,
//! the commit or the bundle is wrong or GitHub's rate limit is spent; a private
//! repository read with the token from the stack's secret (Secrets Manager or SSM), the
//! token sent to the API's host only and never in a message.

use gantry_functions::control::{ControlPlane, GitHubSettings, Settings};
use gantry_functions::error::ApiError;
use gantry_functions::handlers;
use gantry_tests::github::{ARCHIVE_QUERY_TOKEN, GitHubStandIn, Repository, tarball};
use gantry_tests::moto::Moto;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const APP: &str = "shop";
const REPO: &str = "acme/shop";
const COMMIT: &str = "9f1c2e3d4b5a69788796a5b4c3d2e1f0a9b8c7d6";
const BAD_COMMIT: &str = "0badc0de0badc0de0badc0de0badc0de0badc0de";
const TOKEN: &str = "ghp_standin_token_4711";

const APPSPEC: &str = "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/shop\nhooks:\n  ValidateService:\n    - location: scripts/check.sh\n      timeout: 45\n";

fn settings(github: GitHubSettings) -> Settings {
    Settings {
        command_queue_prefix: "cmd-".into(),
        account_id: "123456789012".into(),
        lambda_hook_prefix: None,
        github,
        ..Settings::defaults()
    }
}

/// The stand-in's `acme/shop`: a good commit, and one whose appspec names a missing
/// script; private (`token`) or public.
fn shop(token: Option<&str>) -> Repository {
    let good = tarball(
        REPO,
        COMMIT,
        &[
            ("appspec.yml", APPSPEC, false),
            ("site/index.html", "<h1>shop</h1>\n", false),
            ("scripts/check.sh", "#!/bin/sh\nexit 0\n", true),
        ],
    );
    let bad = tarball(
        REPO,
        BAD_COMMIT,
        &[
            ("appspec.yml", APPSPEC, false),
            ("site/index.html", "x\n", false),
        ],
    );
    Repository {
        commits: BTreeMap::from([(COMMIT.to_owned(), good), (BAD_COMMIT.to_owned(), bad)]),
        token: token.map(str::to_owned),
    }
}

struct Fixture {
    moto: Moto,
    github: GitHubStandIn,
    control: ControlPlane,
}

impl Fixture {
    async fn start(token: Option<&str>) -> Self {
        let moto = Moto::start().expect("moto");
        let github = GitHubStandIn::start().expect("the GitHub stand-in");
        github.add(REPO, shop(token));
        let control = Self::control_plane(&moto, &github, None).await;
        control.store.create_table().await.expect("table");
        let fixture = Self {
            moto,
            github,
            control,
        };
        fixture
            .ok("CreateApplication", json!({"applicationName": APP}))
            .await;
        fixture
    }

    async fn control_plane(
        moto: &Moto,
        github: &GitHubStandIn,
        token_secret: Option<String>,
    ) -> ControlPlane {
        let config = moto.sdk_config().await;
        let github = GitHubSettings::new(Some(github.api_url()), token_secret).expect("settings");
        ControlPlane::new(&config, settings(github))
    }

    async fn call(&self, operation: &str, input: Value) -> Result<Value, ApiError> {
        call(&self.control, operation, input).await
    }

    async fn ok(&self, operation: &str, input: Value) -> Value {
        match self.call(operation, input.clone()).await {
            Ok(output) => output,
            Err(error) => panic!("{operation} {input}: {error}"),
        }
    }

    async fn refused(&self, operation: &str, input: Value) -> ApiError {
        match self.call(operation, input.clone()).await {
            Ok(output) => panic!("{operation} {input} answered {output}"),
            Err(error) => error,
        }
    }

    async fn revisions(&self) -> Value {
        self.ok("ListApplicationRevisions", json!({"applicationName": APP}))
            .await["revisions"]
            .clone()
    }
}

async fn call(control: &ControlPlane, operation: &str, input: Value) -> Result<Value, ApiError> {
    handlers::invoke(
        control,
        "api",
        json!({"operation": operation, "input": input}),
    )
    .await
}

fn github(repository: &str, commit: &str) -> Value {
    json!({"revisionType": "GitHub", "gitHubLocation": {"repository": repository, "commitId": commit}})
}

fn register(revision: Value) -> Value {
    json!({"applicationName": APP, "revision": revision, "description": "from GitHub"})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_github_revision_is_pinned_to_its_full_commit_and_checked_before_it_is_recorded() {
    let fx = Fixture::start(None).await;
    fx.ok(
        "RegisterApplicationRevision",
        register(github(REPO, &COMMIT[..7])),
    )
    .await;
    // Recorded under the full id, whatever was given.
    assert_eq!(fx.revisions().await, json!([github(REPO, COMMIT)]));
    let got = fx
        .ok(
            "GetApplicationRevision",
            json!({"applicationName": APP, "revision": github(REPO, COMMIT)}),
        )
        .await;
    assert_eq!(got["revisionInfo"]["description"], "from GitHub", "{got}");
    // Asked for as a user types it: abbreviated, in another case.
    let short = fx
        .ok(
            "GetApplicationRevision",
            json!({"applicationName": APP, "revision": github("Acme/Shop", &COMMIT[..9].to_uppercase())}),
        )
        .await;
    assert_eq!(short["revisionInfo"], got["revisionInfo"], "{short}");
    // The hook's own timeout was read from the appspec, as for an S3 bundle.
    let record = fx
        .control
        .store
        .get::<Value>(
            &gantry_functions::store::keys::revisions(APP),
            &format!("github:{REPO}@{COMMIT}"),
        )
        .await
        .unwrap()
        .expect("the revision's record");
    assert_eq!(
        record.value["eventTimeouts"]["ValidateService"], 45,
        "{record:?}"
    );
    // Registering the pinned revision again asks GitHub for nothing but the tarball.
    let before = fx.github.requests().len();
    fx.ok(
        "RegisterApplicationRevision",
        register(github(REPO, COMMIT)),
    )
    .await;
    let asked: Vec<String> = fx.github.requests()[before..].to_vec();
    assert!(
        asked.iter().all(|request| !request.contains("/commits/")),
        "{asked:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_github_revisions_are_refused_naming_what_is_wrong_and_nothing_is_recorded() {
    let fx = Fixture::start(None).await;
    let cases = [
        (
            github(REPO, "xyz"),
            "InvalidRevisionException",
            "revision.gitHubLocation.commitId",
        ),
        (
            github("../../etc", COMMIT),
            "InvalidRevisionException",
            "revision.gitHubLocation.repository",
        ),
        (
            github("acme/shop/extra", COMMIT),
            "InvalidRevisionException",
            "revision.gitHubLocation.repository",
        ),
        (
            github("acme/nothing", COMMIT),
            "RevisionDoesNotExistException",
            "no such repository or commit",
        ),
        (
            github(REPO, "abcdef0"),
            "RevisionDoesNotExistException",
            "no such repository or commit",
        ),
        (
            github(REPO, BAD_COMMIT),
            "InvalidRevisionException",
            "scripts/check.sh",
        ),
    ];
    for (revision, exception, says) in cases {
        let error = fx
            .refused("RegisterApplicationRevision", register(revision.clone()))
            .await;
        assert_eq!(error.code, exception, "{revision}: {error}");
        assert!(error.message.contains(says), "{revision}: {error}");
    }
    // CreateDeployment checks the same before anything is stored.
    fx.ok(
        "CreateDeploymentGroup",
        json!({
            "applicationName": APP, "deploymentGroupName": "web",
            "serviceRoleArn": "arn:aws:iam::123456789012:role/gantry",
            "onPremisesInstanceTagFilters": [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
        }),
    )
    .await;
    let error = fx
        .refused(
            "CreateDeployment",
            json!({"applicationName": APP, "deploymentGroupName": "web", "revision": github(REPO, BAD_COMMIT)}),
        )
        .await;
    assert_eq!(error.code, "InvalidRevisionException", "{error}");
    assert_eq!(fx.revisions().await, json!([]));
    let deployments = fx
        .ok("ListDeployments", json!({"applicationName": APP}))
        .await;
    assert_eq!(deployments["deployments"], json!([]), "{deployments}");

    // GitHub's rate limit: ThrottlingException, to retry later.
    fx.github.set_rate_limited(true);
    let error = fx
        .refused(
            "RegisterApplicationRevision",
            register(github(REPO, &COMMIT[..7])),
        )
        .await;
    assert_eq!(error.code, "ThrottlingException", "{error}");
    assert!(error.message.contains("rate limit"), "{error}");
    assert!(error.message.contains("GitHubTokenSecret"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_repository_is_read_with_the_token_from_secrets_manager_or_ssm() {
    let fx = Fixture::start(Some(TOKEN)).await;
    // Without a token GitHub hides the repository: the error says where a token goes.
    let error = fx
        .refused(
            "RegisterApplicationRevision",
            register(github(REPO, COMMIT)),
        )
        .await;
    assert_eq!(error.code, "RevisionDoesNotExistException", "{error}");
    assert!(error.message.contains("GitHubTokenSecret"), "{error}");

    let config = fx.moto.sdk_config().await;
    let secret = aws_sdk_secretsmanager::Client::new(&config)
        .create_secret()
        .name("gantry/github")
        .secret_string(TOKEN)
        .send()
        .await
        .expect("a secret")
        .arn
        .expect("its ARN");
    let ssm = aws_sdk_ssm::Client::new(&config);
    ssm.put_parameter()
        .name("/gantry/github")
        .value(TOKEN)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("a parameter");
    let parameter = ssm
        .get_parameter()
        .name("/gantry/github")
        .send()
        .await
        .unwrap()
        .parameter
        .and_then(|p| p.arn)
        .expect("its ARN");
    for arn in [secret, parameter] {
        let control = Fixture::control_plane(&fx.moto, &fx.github, Some(arn.clone())).await;
        call(
            &control,
            "RegisterApplicationRevision",
            register(github(REPO, &COMMIT[..10])),
        )
        .await
        .unwrap_or_else(|error| panic!("with {arn}: {error}"));
    }
    assert_eq!(fx.revisions().await, json!([github(REPO, COMMIT)]));
    // The token went to the API's host only: never along the redirect to the archive host.
    let requests = fx.github.requests();
    let bearer = format!("Bearer {TOKEN}");
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET /repos/") && r.ends_with(&bearer)),
        "{requests:?}"
    );
    let archives: Vec<&String> = requests
        .iter()
        .filter(|r| r.contains("/codeload/"))
        .collect();
    assert!(!archives.is_empty(), "{requests:?}");
    assert!(archives.iter().all(|r| !r.contains(TOKEN)), "{archives:?}");
}

/// Neither the token nor the archive host's query token appears in any message.
#[tokio::test(flavor = "multi_thread")]
async fn errors_never_carry_a_token() {
    let fx = Fixture::start(None).await;
    fx.github.set_slow_body(None);
    // An archive that is not a bundle fails after the redirect was followed.
    fx.github.add(
        "acme/junk",
        Repository {
            commits: BTreeMap::from([(COMMIT.to_owned(), b"not a tarball".to_vec())]),
            token: None,
        },
    );
    let error = fx
        .refused(
            "RegisterApplicationRevision",
            register(github("acme/junk", COMMIT)),
        )
        .await;
    assert_eq!(error.code, "InvalidRevisionException", "{error}");
    assert!(!error.message.contains(ARCHIVE_QUERY_TOKEN), "{error}");
    assert!(!error.message.contains(TOKEN), "{error}");
}

/// An archive host that goes silent mid-body fails the check within the function's time
/// (the silence timeout), as a failure to retry: nothing is recorded.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_archive_host_fails_within_the_functions_time_recording_nothing() {
    let fx = Fixture::start(None).await;
    fx.github
        .set_slow_body(Some(std::time::Duration::from_secs(6)));
    let error = fx
        .refused(
            "RegisterApplicationRevision",
            register(github(REPO, COMMIT)),
        )
        .await;
    assert_eq!(error.code, "InternalFailure", "{error}");
    // The silence timeout (5 s), not the function's own 30 s, ended it.
    assert!(
        error.message.contains("nothing received for 5 s"),
        "{error}"
    );
    assert_eq!(fx.revisions().await, json!([]));
}
