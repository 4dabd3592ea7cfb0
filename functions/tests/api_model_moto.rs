//! Where CodeDeploy's API model documents more than Gantry answered (issue 29's review),
//! against a real moto server: ListApplicationRevisions' sorting and filters, a
//! revision's groups and use times, predefined configurations' ids and create times,
//! and every BatchGet operation's limit.

use aws_sdk_s3::primitives::ByteStream;
use gantry_functions::control::{ControlPlane, Settings};
use gantry_functions::error::ApiError;
use gantry_functions::handlers;
use gantry_tests::archive::{self, Entry};
use gantry_tests::instance_profile;
use gantry_tests::moto::Moto;
use gantry_tests::reports::host_reports;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BUCKET: &str = "revisions";
const APP: &str = "shop";
const HOST_ROLE: &str = "gantry-hosts";

static NEXT_MESSAGE: AtomicU64 = AtomicU64::new(1);

struct Fixture {
    _moto: Moto,
    control: Arc<ControlPlane>,
    s3: aws_sdk_s3::Client,
    host_role_id: String,
}

fn settings() -> Settings {
    Settings {
        command_queue_prefix: "cmd-".into(),
        account_id: "123456789012".into(),
        lambda_hook_prefix: None,
        ..Settings::defaults()
    }
}

impl Fixture {
    async fn start() -> Self {
        let moto = Moto::start().expect("moto");
        let config = moto.sdk_config().await;
        let control = Arc::new(ControlPlane::new(&config, settings()));
        control.store.create_table().await.expect("table");
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        );
        s3.create_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .expect("bucket");
        let host_role_id = instance_profile::host_role(&config, HOST_ROLE).await;
        let fixture = Self {
            _moto: moto,
            control,
            s3,
            host_role_id,
        };
        fixture
            .ok("CreateApplication", json!({"applicationName": APP}))
            .await;
        fixture
    }

    async fn call(&self, operation: &str, input: Value) -> Result<Value, ApiError> {
        handlers::invoke(
            &self.control,
            "api",
            json!({"operation": operation, "input": input}),
        )
        .await
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

    /// Uploads a bundle at `key` and registers it; a few milliseconds apart, so that
    /// registrations have distinct times.
    async fn register(&self, key: &str) {
        self.s3
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(ByteStream::from(archive::tgz(&bundle(key))))
            .send()
            .await
            .expect("upload");
        self.ok(
            "RegisterApplicationRevision",
            json!({"applicationName": APP, "revision": location(key), "description": key}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    async fn host(&self, name: &str) {
        self.ok(
            "RegisterOnPremisesInstance",
            json!({
                "instanceName": name,
                "iamSessionArn": format!("arn:aws:sts::123456789012:assumed-role/{HOST_ROLE}/{name}"),
            }),
        )
        .await;
        self.ok(
            "AddTagsToOnPremisesInstances",
            json!({"instanceNames": [name], "tags": [{"Key": "role", "Value": name}]}),
        )
        .await;
    }

    /// A group of the one host `host`.
    async fn group(&self, name: &str, host: &str) {
        self.ok(
            "CreateDeploymentGroup",
            json!({
                "applicationName": APP,
                "deploymentGroupName": name,
                "deploymentConfigName": "CodeDeployDefault.AllAtOnce",
                "onPremisesInstanceTagFilters": [{"Key": "role", "Value": host, "Type": "KEY_AND_VALUE"}],
            }),
        )
        .await;
    }

    /// Deploys `key` to `group`, whose one host `host` runs it to success.
    async fn deploy(&self, group: &str, host: &str, key: &str) -> String {
        let created = Box::pin(handlers::invoke(
            &self.control,
            "create-deployment",
            json!({"applicationName": APP, "deploymentGroupName": group, "revision": location(key)}),
        ))
        .await
        .expect("create-deployment");
        let id = created["deploymentId"].as_str().unwrap().to_owned();
        let records: Vec<Value> = host_reports(&id, host, None)
            .into_iter()
            .map(|body| {
                let message = NEXT_MESSAGE.fetch_add(1, Ordering::SeqCst);
                json!({"messageId": format!("m-{message}"), "receiptHandle": "h", "body": body,
                       "attributes": {"SenderId": format!("{}:{host}", self.host_role_id)},
                       "eventSource": "aws:sqs"})
            })
            .collect();
        let answer = handlers::invoke(&self.control, "batch-advance", json!({"Records": records}))
            .await
            .expect("batch-advance");
        assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
        let info = self.ok("GetDeployment", json!({"deploymentId": id})).await;
        assert_eq!(info["deploymentInfo"]["status"], "Succeeded", "{info}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        id
    }

    /// ListApplicationRevisions' keys, in its order, for `filters` added to its input.
    async fn listed(&self, filters: Value) -> Vec<String> {
        let mut input = json!({"applicationName": APP});
        input
            .as_object_mut()
            .unwrap()
            .extend(filters.as_object().unwrap().clone());
        let output = self.ok("ListApplicationRevisions", input).await;
        output["revisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|revision| revision["s3Location"]["key"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn revision_info(&self, key: &str) -> Value {
        let got = self
            .ok(
                "GetApplicationRevision",
                json!({"applicationName": APP, "revision": location(key)}),
            )
            .await;
        got["revisionInfo"].clone()
    }
}

fn location(key: &str) -> Value {
    json!({"revisionType": "S3", "s3Location": {"bucket": BUCKET, "key": key, "bundleType": "tgz"}})
}

fn bundle(version: &str) -> Vec<Entry> {
    vec![
        Entry::file(
            "appspec.yml",
            b"version: 0.0\nos: linux\nfiles:\n  - source: app/\n    destination: /srv/shop\n",
        ),
        Entry::file("app/version.txt", version.as_bytes()),
    ]
}

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn list_application_revisions_sorts_and_filters_as_codedeploy_documents() {
    let fx = Fixture::start().await;
    for key in ["v1.tgz", "v2.tgz", "other/v3.tgz"] {
        fx.register(key).await;
    }
    // Neither sortBy nor sortOrder: newest registration first.
    assert_eq!(
        fx.listed(json!({})).await,
        keys(&["other/v3.tgz", "v2.tgz", "v1.tgz"])
    );
    // sortBy alone is ascending, as documented.
    assert_eq!(
        fx.listed(json!({"sortBy": "registerTime"})).await,
        keys(&["v1.tgz", "v2.tgz", "other/v3.tgz"])
    );
    assert_eq!(
        fx.listed(json!({"sortBy": "registerTime", "sortOrder": "descending"}))
            .await,
        keys(&["other/v3.tgz", "v2.tgz", "v1.tgz"])
    );
    // The bucket, then a key prefix within it.
    assert_eq!(
        fx.listed(json!({"s3Bucket": BUCKET, "sortBy": "registerTime"}))
            .await,
        keys(&["v1.tgz", "v2.tgz", "other/v3.tgz"])
    );
    assert_eq!(
        fx.listed(json!({"s3Bucket": BUCKET, "s3KeyPrefix": "other/"}))
            .await,
        keys(&["other/v3.tgz"])
    );
    assert!(fx.listed(json!({"s3Bucket": "elsewhere"})).await.is_empty());
    // No group has a target revision yet.
    assert!(fx.listed(json!({"deployed": "include"})).await.is_empty());
    assert_eq!(fx.listed(json!({"deployed": "exclude"})).await.len(), 3);
    assert_eq!(fx.listed(json!({"deployed": "ignore"})).await.len(), 3);

    fx.host("web-1").await;
    fx.group("web", "web-1").await;
    fx.deploy("web", "web-1", "v2.tgz").await;
    fx.deploy("web", "web-1", "v1.tgz").await;
    // v1 is the group's target revision now; v2 was, and has been used.
    assert_eq!(
        fx.listed(json!({"deployed": "include"})).await,
        keys(&["v1.tgz"])
    );
    assert_eq!(
        fx.listed(json!({"deployed": "exclude", "sortBy": "registerTime"}))
            .await,
        keys(&["v2.tgz", "other/v3.tgz"])
    );
    // By use: the revision never used comes last in either order.
    assert_eq!(
        fx.listed(json!({"sortBy": "firstUsedTime"})).await,
        keys(&["v2.tgz", "v1.tgz", "other/v3.tgz"])
    );
    assert_eq!(
        fx.listed(json!({"sortBy": "lastUsedTime", "sortOrder": "descending"}))
            .await,
        keys(&["v1.tgz", "v2.tgz", "other/v3.tgz"])
    );
    assert_eq!(
        fx.listed(json!({"sortBy": "lastUsedTime", "sortOrder": "ascending", "s3Bucket": BUCKET, "s3KeyPrefix": "v"}))
            .await,
        keys(&["v2.tgz", "v1.tgz"])
    );

    // What CodeDeploy refuses, by the exceptions its model names, each message naming
    // the field and what it takes.
    let list = |extra: Value| {
        let mut input = json!({"applicationName": APP});
        input
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        input
    };
    for (filters, exception, message) in [
        (
            json!({"sortBy": "size"}),
            "InvalidSortByException",
            "sortBy: must be one of registerTime, firstUsedTime, lastUsedTime",
        ),
        (
            json!({"sortOrder": "up"}),
            "InvalidSortOrderException",
            "sortOrder: must be one of ascending, descending",
        ),
        (
            json!({"deployed": "maybe"}),
            "InvalidDeployedStateFilterException",
            "deployed: must be one of include, exclude, ignore",
        ),
        (
            json!({"s3Bucket": "a/b"}),
            "InvalidBucketNameFilterException",
            "s3Bucket: must be an S3 bucket name",
        ),
        (
            json!({"s3Bucket": BUCKET, "s3KeyPrefix": "k".repeat(1025)}),
            "InvalidKeyPrefixFilterException",
            "s3KeyPrefix: must be at most 1024 bytes",
        ),
        (
            json!({"s3KeyPrefix": "other/"}),
            "BucketNameFilterRequiredException",
            "s3KeyPrefix: filters the keys of one bucket; give s3Bucket too",
        ),
    ] {
        let error = fx
            .refused("ListApplicationRevisions", list(filters.clone()))
            .await;
        assert_eq!(error.code, exception, "{filters}: {error}");
        assert!(error.message.starts_with(message), "{filters}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revisions_info_shows_its_target_groups_and_when_deployments_used_it() {
    let fx = Fixture::start().await;
    fx.register("v1.tgz").await;
    let registered = fx.revision_info("v1.tgz").await;
    assert_eq!(registered["description"], "v1.tgz");
    assert!(
        registered["registerTime"].as_f64().is_some(),
        "{registered}"
    );
    for unused in ["deploymentGroups", "firstUsedTime", "lastUsedTime"] {
        assert!(registered.get(unused).is_none(), "{unused}: {registered}");
    }
    let register_time = registered["registerTime"].as_f64().unwrap();

    fx.host("web-1").await;
    fx.host("canary-1").await;
    fx.group("web", "web-1").await;
    fx.group("canary", "canary-1").await;
    let first = fx.deploy("web", "web-1", "v1.tgz").await;
    let once = fx.revision_info("v1.tgz").await;
    assert_eq!(once["deploymentGroups"], json!(["web"]), "{once}");
    let first_used = once["firstUsedTime"].as_f64().unwrap();
    assert!(first_used >= register_time, "{once}");
    assert_eq!(once["lastUsedTime"].as_f64(), Some(first_used), "{once}");
    // The deployment's own create time is when it used the revision.
    let created = fx.ok("GetDeployment", json!({"deploymentId": first})).await["deploymentInfo"]
        ["createTime"]
        .as_f64()
        .unwrap();
    assert!(
        (created - first_used).abs() < 1.0,
        "{created} vs {first_used}"
    );

    // Registered again (the same object): its use is kept.
    fx.ok(
        "RegisterApplicationRevision",
        json!({"applicationName": APP, "revision": location("v1.tgz"), "description": "again"}),
    )
    .await;
    let again = fx.revision_info("v1.tgz").await;
    assert_eq!(again["description"], "again");
    assert_eq!(again["firstUsedTime"].as_f64(), Some(first_used), "{again}");

    fx.deploy("canary", "canary-1", "v1.tgz").await;
    let twice = fx.revision_info("v1.tgz").await;
    assert_eq!(
        twice["deploymentGroups"],
        json!(["canary", "web"]),
        "{twice}"
    );
    assert_eq!(twice["firstUsedTime"].as_f64(), Some(first_used), "{twice}");
    let last_used = twice["lastUsedTime"].as_f64().unwrap();
    assert!(last_used > first_used, "{twice}");

    // web moves on to v2: v1 is canary's target revision only.
    fx.register("v2.tgz").await;
    fx.deploy("web", "web-1", "v2.tgz").await;
    let batch = fx
        .ok(
            "BatchGetApplicationRevisions",
            json!({"applicationName": APP, "revisions": [location("v1.tgz"), location("v2.tgz")]}),
        )
        .await;
    let infos: Vec<&Value> = batch["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|revision| &revision["genericRevisionInfo"])
        .collect();
    assert_eq!(infos[0]["deploymentGroups"], json!(["canary"]), "{batch}");
    assert_eq!(
        infos[0]["lastUsedTime"].as_f64(),
        Some(last_used),
        "{batch}"
    );
    assert_eq!(infos[1]["deploymentGroups"], json!(["web"]), "{batch}");
    assert!(
        infos[1]["firstUsedTime"].as_f64().unwrap() > last_used,
        "{batch}"
    );

    // BatchGetDeploymentInstances takes 25 instance ids, as the model documents.
    let ids: Vec<String> = (0..26).map(|i| format!("i-{i:017}")).collect();
    let error = fx
        .refused(
            "BatchGetDeploymentInstances",
            json!({"deploymentId": first, "instanceIds": ids}),
        )
        .await;
    assert_eq!(error.code, "BatchLimitExceededException", "{error}");
    assert_eq!(error.message, "instanceIds: at most 25 per call, found 26");
    let answer = fx
        .call(
            "BatchGetDeploymentInstances",
            json!({"deploymentId": first, "instanceIds": ids[..25]}),
        )
        .await;
    assert!(
        not_refused_for(&answer, "BatchLimitExceededException"),
        "{answer:?}"
    );
}

/// Whether a call was answered, or refused for something other than `exception`.
fn not_refused_for(answer: &Result<Value, ApiError>, exception: &str) -> bool {
    match answer {
        Ok(_) => true,
        Err(error) => error.code != exception,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn predefined_deployment_configs_show_a_stable_id_and_a_fixed_create_time() {
    let fx = &Fixture::start().await;
    let get = |name: &'static str| async move {
        fx.ok("GetDeploymentConfig", json!({"deploymentConfigName": name}))
            .await["deploymentConfigInfo"]
            .clone()
    };
    let mut ids = Vec::new();
    for name in [
        "CodeDeployDefault.OneAtATime",
        "CodeDeployDefault.HalfAtATime",
        "CodeDeployDefault.AllAtOnce",
        "CodeDeployDefault.LambdaAllAtOnce",
        "CodeDeployDefault.LambdaCanary10Percent5Minutes",
    ] {
        let info = get(name).await;
        let id = info["deploymentConfigId"].as_str().unwrap().to_owned();
        assert_eq!(id.len(), 36, "a UUID: {info}");
        assert_eq!(get(name).await["deploymentConfigId"], id.as_str(), "stable");
        // CodeDeploy's launch, 2014-11-12T00:00:00Z.
        assert_eq!(info["createTime"].as_f64(), Some(1_415_750_400.0), "{info}");
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "one id per name: {ids:?}");
    let created = fx
        .ok(
            "CreateDeploymentConfig",
            json!({"deploymentConfigName": "TwoAtATime", "minimumHealthyHosts": {"type": "HOST_COUNT", "value": 2}}),
        )
        .await;
    let id = created["deploymentConfigId"].as_str().unwrap();
    assert!(!ids.iter().any(|predefined| predefined == id));
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_gets_take_as_many_as_codedeploys_model_documents() {
    let fx = Fixture::start().await;
    let names = |count: usize| -> Vec<String> { (0..count).map(|i| format!("n{i}")).collect() };
    let deployment_ids =
        |count: usize| -> Vec<String> { (0..count).map(|i| format!("d-{i:09}")).collect() };
    let revisions = |count: usize| -> Vec<Value> {
        (0..count).map(|i| location(&format!("r{i}.tgz"))).collect()
    };
    // (operation, input with `limit + 1` items, input with `limit`, field, limit,
    // the exception for too many)
    let cases = [
        (
            "BatchGetApplications",
            json!({"applicationNames": names(101)}),
            json!({"applicationNames": names(100)}),
            "applicationNames",
            100,
            "BatchLimitExceededException",
        ),
        (
            "BatchGetDeploymentGroups",
            json!({"applicationName": APP, "deploymentGroupNames": names(101)}),
            json!({"applicationName": APP, "deploymentGroupNames": names(100)}),
            "deploymentGroupNames",
            100,
            "BatchLimitExceededException",
        ),
        (
            "BatchGetDeployments",
            json!({"deploymentIds": deployment_ids(26)}),
            json!({"deploymentIds": deployment_ids(25)}),
            "deploymentIds",
            25,
            "BatchLimitExceededException",
        ),
        (
            "BatchGetOnPremisesInstances",
            json!({"instanceNames": names(26)}),
            json!({"instanceNames": names(25)}),
            "instanceNames",
            25,
            "BatchLimitExceededException",
        ),
        (
            "BatchGetApplicationRevisions",
            json!({"applicationName": APP, "revisions": revisions(26)}),
            json!({"applicationName": APP, "revisions": revisions(25)}),
            "revisions",
            25,
            "BatchLimitExceededException",
        ),
        (
            "BatchGetDeploymentTargets",
            json!({"deploymentId": "d-AAAAAAAAA", "targetIds": names(26)}),
            json!({"deploymentId": "d-AAAAAAAAA", "targetIds": names(25)}),
            "targetIds",
            25,
            "DeploymentTargetListSizeExceededException",
        ),
    ];
    for (operation, too_many, at_limit, field, limit, exception) in cases {
        let error = fx.refused(operation, too_many).await;
        assert_eq!(error.code, exception, "{operation}: {error}");
        assert_eq!(
            error.message,
            format!("{field}: at most {limit} per call, found {}", limit + 1),
            "{operation}"
        );
        // At the limit the call is taken (and may find nothing).
        let answer = fx.call(operation, at_limit).await;
        assert!(
            not_refused_for(&answer, exception),
            "{operation}: {answer:?}"
        );
    }
}
