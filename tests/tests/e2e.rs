//! End to end: moto, gantry-local, real `gantry-agent` processes as on-premises hosts,
//! and the `gantry` CLI (or the stock AWS CLI), with real hooks writing real files.

use gantry_tests::fleet::{Fleet, installed_version};
use gantry_tests::wait_until;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

/// Long enough for any deployment here on a loaded 2-core machine; a hang fails the test.
const DEPLOYMENT_TIMEOUT: Duration = Duration::from_secs(120);

/// A fleet with a fast tick, and `hosts` (name, tags) registered and running.
fn fleet(local_args: &[&str], hosts: &[(&str, &[&str])]) -> Fleet {
    let mut args = vec!["--tick-ms", "200"];
    args.extend_from_slice(local_args);
    let mut fleet = Fleet::start(&args).expect("moto and gantry-local start");
    for (name, tags) in hosts {
        fleet.add_host(name, tags).expect("the host's agent starts");
    }
    fleet
}

/// Writes a revision, pushes it to `s3://gantry-revisions/<app>/<version>.tgz`.
fn push(fleet: &Fleet, app: &str, version: &str, hooks: &[(&str, &str)], timeout_seconds: u32) {
    fleet.push(app, version, hooks, timeout_seconds);
}

fn deploy_json(fleet: &Fleet, app: &str, group: &str) -> (bool, Value) {
    deploy_json_with(fleet, app, group, &[])
}

fn deploy_json_with(fleet: &Fleet, app: &str, group: &str, extra: &[&str]) -> (bool, Value) {
    let mut args = vec!["--output", "json", "deploy", "--app", app, "--group", group];
    args.extend_from_slice(extra);
    let output = fleet
        .gantry_command(&args)
        .output()
        .expect("the gantry CLI runs");
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "gantry deploy printed no JSON ({error}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.success(), printed["deploymentInfo"].clone())
}

fn seconds(value: &Value) -> f64 {
    value.as_f64().unwrap_or(f64::NAN)
}

/// When a host started its first event and ended its last, by its own reports.
fn window(target: &Value) -> (f64, f64) {
    let events = target["lifecycleEvents"]
        .as_array()
        .expect("lifecycle events");
    let started = events
        .iter()
        .filter_map(|e| e["startTime"].as_f64())
        .fold(f64::INFINITY, f64::min);
    let ended = events
        .iter()
        .filter_map(|e| e["endTime"].as_f64())
        .fold(f64::NEG_INFINITY, f64::max);
    (started, ended)
}

/// The most hosts that were deploying at the same moment.
fn max_concurrency(targets: &[Value]) -> usize {
    let windows: Vec<(f64, f64)> = targets.iter().map(window).collect();
    windows
        .iter()
        .map(|(start, _)| {
            windows
                .iter()
                .filter(|(other_start, other_end)| other_start <= start && start < other_end)
                .count()
        })
        .max()
        .unwrap_or(0)
}

fn ids(targets: &[Value]) -> BTreeSet<String> {
    targets
        .iter()
        .map(|t| t["targetId"].as_str().unwrap_or("?").to_owned())
        .collect()
}

const WEB: &[&str] = &["role=web", "gantry:availability-zone=zone-a"];
const WEB_B: &[&str] = &["role=web", "gantry:availability-zone=zone-b"];

#[test]
fn every_predefined_config_deploys_across_four_hosts_in_its_batch_size() {
    let fleet = fleet(
        &[],
        &[
            ("web-1", WEB),
            ("web-2", WEB_B),
            ("web-3", WEB),
            ("web-4", WEB_B),
        ],
    );
    fleet.gantry_ok(&["app", "create", "shop"]);
    // A second in ValidateService makes the hosts of one batch overlap for certain.
    push(&fleet, "shop", "v1", &[("ValidateService", "sleep 1")], 60);

    for (config, batch) in [
        ("CodeDeployDefault.OneAtATime", 1),
        ("CodeDeployDefault.HalfAtATime", 2),
        ("CodeDeployDefault.AllAtOnce", 4),
    ] {
        let group = config.trim_start_matches("CodeDeployDefault.");
        fleet.gantry_ok(&[
            "group",
            "create",
            group,
            "--app",
            "shop",
            "--config",
            config,
            "--on-prem-tag",
            "role=web",
        ]);
        // The groups share hosts and paths: each later group overwrites what the one
        // before it installed (under DISALLOW it would fail, as CodeDeploy does).
        let (succeeded, info) = deploy_json_with(
            &fleet,
            "shop",
            group,
            &["--file-exists-behavior", "OVERWRITE"],
        );
        assert!(succeeded, "{config}: {info:#}");
        assert_eq!(info["status"], "Succeeded", "{config}: {info:#}");
        assert_eq!(info["deploymentOverview"]["Succeeded"], 4, "{info:#}");

        // What `deploy --output json` printed is what GetDeployment answers, asked with
        // the stock AWS CLI.
        let id = info["deploymentId"].as_str().unwrap();
        let got = fleet.aws_lambda_invoke(
            "gantry-api",
            &json!({"operation": "GetDeployment", "input": {"deploymentId": id}}),
        );
        assert_eq!(got["deploymentInfo"], info, "{config}");

        let targets = fleet.targets(id);
        assert_eq!(targets.len(), 4);
        assert_eq!(
            max_concurrency(&targets),
            batch,
            "{config}: hosts deploying at once, by their reports: {:?}",
            targets.iter().map(window).collect::<Vec<_>>()
        );
        for host in &fleet.hosts {
            assert_eq!(
                installed_version(host).as_deref(),
                Some("v1"),
                "{}",
                host.name
            );
        }
    }
}

#[test]
fn a_failed_deployment_rolls_back_automatically_to_the_last_good_revision() {
    let fleet = fleet(
        &[],
        &[
            ("web-1", WEB),
            ("web-2", WEB_B),
            ("web-3", WEB),
            ("web-4", WEB_B),
        ],
    );
    fleet.gantry_ok(&["app", "create", "shop"]);
    fleet.gantry_ok(&[
        "group",
        "create",
        "web",
        "--app",
        "shop",
        "--config",
        "CodeDeployDefault.HalfAtATime",
        "--on-prem-tag",
        "role=web",
        "--auto-rollback",
    ]);
    push(&fleet, "shop", "v1", &[("ValidateService", "true")], 60);
    let (succeeded, first) = deploy_json(&fleet, "shop", "web");
    assert!(succeeded, "{first:#}");

    push(
        &fleet,
        "shop",
        "v2",
        &[(
            "ValidateService",
            "echo 'version 2 answers 500' >&2; exit 1",
        )],
        60,
    );
    let (succeeded, failed) = deploy_json(&fleet, "shop", "web");
    assert!(
        !succeeded,
        "a failing ValidateService must fail the deploy command"
    );
    let failed_id = failed["deploymentId"].as_str().unwrap().to_owned();
    let failed = fleet.wait_for_end(&failed_id, DEPLOYMENT_TIMEOUT);
    assert_eq!(failed["status"], "Failed", "{failed:#}");

    // The failed host's diagnostics name the script and carry its output.
    let targets = fleet.targets(&failed_id);
    let failure = targets
        .iter()
        .flat_map(|t| t["lifecycleEvents"].as_array().cloned().unwrap_or_default())
        .find(|e| e["status"] == "Failed")
        .expect("a failed event");
    assert_eq!(failure["lifecycleEventName"], "ValidateService");
    assert_eq!(failure["diagnostics"]["errorCode"], "ScriptFailed");
    assert!(
        failure["diagnostics"]["logTail"]
            .as_str()
            .unwrap_or("")
            .contains("version 2 answers 500"),
        "{failure:#}"
    );

    let rollback_id = failed["rollbackInfo"]["rollbackDeploymentId"]
        .as_str()
        .unwrap_or_else(|| panic!("no automatic rollback: {failed:#}"))
        .to_owned();
    let rollback = fleet.wait_for_end(&rollback_id, DEPLOYMENT_TIMEOUT);
    assert_eq!(rollback["status"], "Succeeded", "{rollback:#}");
    assert_eq!(rollback["creator"], "codeDeployRollback", "{rollback:#}");
    assert_eq!(rollback["revision"], first["revision"]);
    for host in &fleet.hosts {
        assert_eq!(
            installed_version(host).as_deref(),
            Some("v1"),
            "{}",
            host.name
        );
    }
}

#[test]
fn the_next_deployment_goes_first_to_the_host_whose_last_deployment_failed() {
    let fleet = fleet(&[], &[("web-1", WEB), ("web-2", WEB), ("web-3", WEB)]);
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
    push(&fleet, "shop", "v1", &[], 60);
    assert!(deploy_json(&fleet, "shop", "web").0);

    // v2 fails on web-2 only; OneAtATime stops the deployment there.
    push(
        &fleet,
        "shop",
        "v2",
        &[(
            "ValidateService",
            r#"if [ "$E2E_HOST" = web-2 ]; then echo "web-2 is unwell" >&2; exit 1; fi"#,
        )],
        60,
    );
    let (succeeded, failed) = deploy_json(&fleet, "shop", "web");
    assert!(!succeeded);
    let failed_targets = fleet.targets(failed["deploymentId"].as_str().unwrap());
    let web_2 = failed_targets
        .iter()
        .find(|t| t["targetId"] == "web-2")
        .expect("web-2 is a target");
    assert_eq!(web_2["status"], "Failed", "{web_2:#}");

    push(&fleet, "shop", "v3", &[], 60);
    let (succeeded, fixed) = deploy_json(&fleet, "shop", "web");
    assert!(succeeded, "{fixed:#}");
    let targets = fleet.targets(fixed["deploymentId"].as_str().unwrap());
    let mut by_start: Vec<(f64, String)> = targets
        .iter()
        .map(|t| (window(t).0, t["targetId"].as_str().unwrap().to_owned()))
        .collect();
    by_start.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(
        by_start[0].1, "web-2",
        "the unhealthy host goes first: {by_start:?}"
    );
    for host in &fleet.hosts {
        assert_eq!(
            installed_version(host).as_deref(),
            Some("v3"),
            "{}",
            host.name
        );
    }
}

#[test]
fn a_stopped_deployment_rolls_back_when_asked() {
    let fleet = fleet(&[], &[("web-1", WEB), ("web-2", WEB_B)]);
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
    push(&fleet, "shop", "v1", &[], 60);
    assert!(deploy_json(&fleet, "shop", "web").0);

    // v2 takes its time in AfterInstall, so there is a moment to stop it.
    push(
        &fleet,
        "shop",
        "v2",
        &[(
            "AfterInstall",
            r#"touch "$E2E_RUN_DIR/after-install-started"; sleep 3"#,
        )],
        60,
    );
    let created = fleet.gantry_json(&["deploy", "--app", "shop", "--group", "web", "--no-wait"]);
    let id = created["deploymentId"].as_str().unwrap().to_owned();
    let started = wait_until(DEPLOYMENT_TIMEOUT, || {
        fleet
            .hosts
            .iter()
            .any(|host| host.run_dir().join("after-install-started").exists())
    });
    assert!(started, "no host reached AfterInstall");
    let stopped = fleet.gantry_ok(&["stop", &id, "--rollback"]);
    assert!(stopped.contains("rolling back"), "{stopped}");

    let info = fleet.wait_for_end(&id, DEPLOYMENT_TIMEOUT);
    assert_eq!(info["status"], "Stopped", "{info:#}");
    let rollback_id = info["rollbackInfo"]["rollbackDeploymentId"]
        .as_str()
        .unwrap_or_else(|| panic!("no rollback: {info:#}"))
        .to_owned();
    let rollback = fleet.wait_for_end(&rollback_id, DEPLOYMENT_TIMEOUT);
    assert_eq!(rollback["status"], "Succeeded", "{rollback:#}");
    // The host that was mid-v2 finished that command, then ran the rollback's.
    for host in &fleet.hosts {
        assert_eq!(
            installed_version(host).as_deref(),
            Some("v1"),
            "{}",
            host.name
        );
    }
}

#[test]
fn a_tag_set_targets_the_and_of_its_ors_and_the_stock_aws_cli_drives_it() {
    let fleet = fleet(
        &[],
        &[
            ("web-prod", &["role=web", "env=prod"]),
            ("api-prod", &["role=api", "env=prod"]),
            ("web-dev", &["role=web", "env=dev"]),
            ("db-prod", &["role=db", "env=prod"]),
        ],
    );
    fleet.gantry_ok(&["app", "create", "shop"]);
    fleet.gantry_ok(&[
        "group",
        "create",
        "prod-front",
        "--app",
        "shop",
        "--config",
        "CodeDeployDefault.AllAtOnce",
        "--on-prem-tag-set",
        "role=web,role=api",
        "--on-prem-tag-set",
        "env=prod",
    ]);
    push(&fleet, "shop", "v1", &[], 60);

    // CodeDeploy's own create-deployment JSON, through the stock AWS CLI.
    let created = fleet.aws_lambda_invoke(
        "gantry-create-deployment",
        &json!({
            "applicationName": "shop",
            "deploymentGroupName": "prod-front",
            "revision": {
                "revisionType": "S3",
                "s3Location": {"bucket": "gantry-revisions", "key": "shop/v1.tgz", "bundleType": "tgz"}
            }
        }),
    );
    let id = created["deploymentId"].as_str().expect("a deployment id");
    let info = fleet.wait_for_end(id, DEPLOYMENT_TIMEOUT);
    assert_eq!(info["status"], "Succeeded", "{info:#}");

    let expected: BTreeSet<String> = ["api-prod", "web-prod"].map(String::from).into();
    assert_eq!(ids(&fleet.targets(id)), expected);
    for host in &fleet.hosts {
        let wanted = expected.contains(&host.name).then_some("v1");
        assert_eq!(installed_version(host).as_deref(), wanted, "{}", host.name);
    }
}

#[test]
fn a_host_whose_agent_dies_mid_hook_fails_by_its_deadline() {
    // Deadlines: the hook's 3 s timeout plus 1 s slack; a tick every 200 ms notices.
    let mut fleet = fleet(
        &[
            "--event-slack-seconds",
            "1",
            "--host-start-timeout-seconds",
            "5",
        ],
        &[("web-1", WEB)],
    );
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
    push(
        &fleet,
        "shop",
        "v1",
        &[(
            "AfterInstall",
            r#"echo $$ > "$E2E_RUN_DIR/hook.pid"; exec sleep 30"#,
        )],
        3,
    );
    let created = fleet.gantry_json(&["deploy", "--app", "shop", "--group", "web", "--no-wait"]);
    let id = created["deploymentId"].as_str().unwrap().to_owned();
    // Killed once the control plane knows the hook started (its start report leaves
    // within the agent's linger, a second): then it names the event the host died in.
    let pid_file = fleet.host("web-1").run_dir().join("hook.pid");
    let after_install_started = || {
        fleet.targets(&id)[0]["lifecycleEvents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["lifecycleEventName"] == "AfterInstall" && e["status"] == "InProgress")
    };
    assert!(
        wait_until(DEPLOYMENT_TIMEOUT, || pid_file.exists()
            && after_install_started()),
        "the hook never started"
    );
    fleet.host_mut("web-1").kill();

    let info = fleet.wait_for_end(&id, DEPLOYMENT_TIMEOUT);
    assert_eq!(info["status"], "Failed", "{info:#}");
    let targets = fleet.targets(&id);
    assert_eq!(targets[0]["status"], "Failed", "{:#}", targets[0]);
    let after_install = targets[0]["lifecycleEvents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["lifecycleEventName"] == "AfterInstall")
        .cloned()
        .unwrap();
    assert_eq!(after_install["status"], "Failed", "{after_install:#}");
    // Nothing waited for the full 30 s hook: the deadline, not the script, ended it.
    let (started, _) = window(&targets[0]);
    let ended = seconds(&info["completeTime"]);
    assert!(
        ended - started < 25.0,
        "the deployment ended {:.1} s after the host started",
        ended - started
    );
}

#[test]
fn a_host_cannot_report_for_another_host() {
    // web-2 is registered with an IAM user of its own but runs no agent; web-1's keys
    // send "Succeeded" for every one of web-2's events.
    let fleet = fleet(
        &[
            "--event-slack-seconds",
            "1",
            "--host-start-timeout-seconds",
            "5",
        ],
        &[("web-1", WEB)],
    );
    fleet.register_host("web-2", WEB).expect("web-2 registers");
    fleet.gantry_ok(&["app", "create", "shop"]);
    fleet.gantry_ok(&[
        "group",
        "create",
        "web",
        "--app",
        "shop",
        "--on-prem-tag",
        "role=web",
        "--config",
        "CodeDeployDefault.AllAtOnce",
    ]);
    push(&fleet, "shop", "v1", &[], 30);
    let created = fleet.gantry_json(&["deploy", "--app", "shop", "--group", "web", "--no-wait"]);
    let id = created["deploymentId"].as_str().unwrap().to_owned();

    let forged = gantry_tests::reports::host_reports(&id, "web-2", None);
    let env: std::collections::HashMap<_, _> = fleet
        .moto
        .sdk_env_as(&fleet.host("web-1").user)
        .into_iter()
        .collect();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .endpoint_url(&env["AWS_ENDPOINT_URL"])
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                    &env["AWS_ACCESS_KEY_ID"],
                    &env["AWS_SECRET_ACCESS_KEY"],
                    None,
                    None,
                    "web-1",
                ))
                .load()
                .await;
            let sqs = aws_sdk_sqs::Client::new(&config);
            let queue = sqs
                .get_queue_url()
                .queue_name("gantry-reports")
                .send()
                .await
                .expect("reports queue")
                .queue_url
                .unwrap();
            for body in forged {
                sqs.send_message()
                    .queue_url(&queue)
                    .message_body(body)
                    .send()
                    .await
                    .expect("web-1 may send to the reports queue");
            }
        });

    let info = fleet.wait_for_end(&id, DEPLOYMENT_TIMEOUT);
    let targets = fleet.targets(&id);
    let status = |host: &str| {
        targets
            .iter()
            .find(|t| t["targetId"] == host)
            .map(|t| t["status"].clone())
            .unwrap_or_else(|| panic!("no target {host}: {targets:#?}"))
    };
    assert_eq!(status("web-1"), "Succeeded", "{targets:#?}");
    // None of web-1's reports for web-2 counted: web-2 failed by its deadline, having
    // never started its first event.
    assert_eq!(status("web-2"), "Failed", "{targets:#?}");
    let web_2 = targets.iter().find(|t| t["targetId"] == "web-2").unwrap();
    assert!(
        web_2["lifecycleEvents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|event| event["status"] != "Succeeded"),
        "{web_2:#}"
    );
    assert_eq!(info["deploymentOverview"]["Succeeded"], 1, "{info:#}");
    assert_eq!(info["deploymentOverview"]["Failed"], 1, "{info:#}");
}

/// Resource tags through the CLI (`--tag` at creation, `gantry tags`) and the stock AWS
/// CLI (TagResource's own JSON through `aws lambda invoke`).
#[test]
fn resources_are_tagged_through_the_cli_and_the_stock_aws_cli() {
    let fleet = fleet(&[], &[]);
    // gantry-local's account when GANTRY_ACCOUNT_ID is not set.
    let arn = |rest: &str| format!("arn:aws:codedeploy:us-east-1:123456789012:{rest}");
    let app = arn("application:shop");
    let group = arn("deploymentgroup:shop/web");
    fleet.gantry_ok(&["app", "create", "shop", "--tag", "team=shop"]);
    fleet.gantry_ok(&[
        "group",
        "create",
        "web",
        "--app",
        "shop",
        "--on-prem-tag",
        "role=web",
        "--tag",
        "tier=front",
    ]);
    fleet.gantry_ok(&["tags", "add", &app, "env=prod", "team=ops"]);
    assert_eq!(
        fleet.gantry_ok(&["tags", "list", &app]),
        "team=ops\nenv=prod\n"
    );
    fleet.gantry_ok(&["tags", "remove", &app, "team"]);
    assert_eq!(
        fleet.gantry_json(&["tags", "list", &app]),
        json!({"Tags": [{"Key": "env", "Value": "prod"}]})
    );
    assert_eq!(
        fleet.gantry_json(&["tags", "list", &group]),
        json!({"Tags": [{"Key": "tier", "Value": "front"}]})
    );

    let tagged = fleet.aws_lambda_invoke(
        "gantry-api",
        &json!({"operation": "TagResource", "input": {"ResourceArn": group, "Tags": [{"Key": "owner", "Value": "sre"}]}}),
    );
    assert_eq!(tagged, json!({}));
    let listed = fleet.aws_lambda_invoke(
        "gantry-api",
        &json!({"operation": "ListTagsForResource", "input": {"ResourceArn": group}}),
    );
    assert_eq!(
        listed,
        json!({"Tags": [{"Key": "tier", "Value": "front"}, {"Key": "owner", "Value": "sre"}]})
    );

    // A refusal names CodeDeploy's exception.
    let refused = fleet.gantry(&["tags", "add", &app, "aws:owner=me"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("InvalidTagsToAddException"), "{stderr}");
}

/// StopDeployment reaches a host mid-deployment: the event it is running finishes, the
/// events after it are reported Skipped and never run, and the host ends Skipped.
#[test]
fn a_stop_reaches_the_host_which_skips_what_it_had_not_started() {
    let fleet = fleet(&[], &[("web-1", WEB)]);
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
    push(&fleet, "shop", "v1", &[], 60);
    assert!(deploy_json(&fleet, "shop", "web").0);
    // v2's AfterInstall waits for the test's word (at most a minute); its
    // ValidateService leaves a mark.
    push(
        &fleet,
        "shop",
        "v2",
        &[
            (
                "AfterInstall",
                r#"touch "$E2E_RUN_DIR/after-install-started"
i=0; while [ ! -e "$E2E_RUN_DIR/release" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done"#,
            ),
            ("ValidateService", r#"touch "$E2E_RUN_DIR/validated""#),
        ],
        90,
    );
    let created = fleet.gantry_json(&["deploy", "--app", "shop", "--group", "web", "--no-wait"]);
    let id = created["deploymentId"].as_str().unwrap().to_owned();
    let host = &fleet.hosts[0];
    assert!(
        wait_until(DEPLOYMENT_TIMEOUT, || host
            .run_dir()
            .join("after-install-started")
            .exists()),
        "the host never reached AfterInstall"
    );
    fleet.gantry_ok(&["stop", &id]);
    // The agent notes the cancel while AfterInstall runs.
    let noted = host
        .dir
        .join("root/deployment-instructions")
        .join(format!("{id}-web-1.cancelled"));
    assert!(
        wait_until(Duration::from_secs(60), || noted.exists()),
        "the agent never heard of the stop"
    );
    std::fs::write(host.run_dir().join("release"), "").unwrap();
    let mut target = Value::Null;
    let skipped = wait_until(DEPLOYMENT_TIMEOUT, || {
        target = fleet.targets(&id).into_iter().next().unwrap_or_default();
        target["status"] == "Skipped"
    });
    assert!(skipped, "the host did not end Skipped: {target:#}");
    let statuses: Vec<(String, String)> = target["lifecycleEvents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (
                event["lifecycleEventName"].as_str().unwrap().to_owned(),
                event["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let after = statuses
        .iter()
        .position(|(name, _)| name == "AfterInstall")
        .unwrap();
    assert_eq!(statuses[after].1, "Succeeded", "{statuses:?}");
    assert!(
        statuses[after + 1..]
            .iter()
            .all(|(_, status)| status == "Skipped"),
        "{statuses:?}"
    );
    assert!(
        !host.run_dir().join("validated").exists(),
        "ValidateService never ran"
    );
    let info = fleet.deployment(&id);
    assert_eq!(info["status"], "Stopped", "{info:#}");
    assert_eq!(info["deploymentOverview"]["Skipped"], 1, "{info:#}");
}

/// The read commands over the newer read operations: `gantry revisions` (List and
/// BatchGetApplicationRevisions), `gantry targets --status` (ListDeploymentTargets'
/// filter) and `gantry target` (GetDeploymentTarget).
#[test]
fn revisions_and_targets_are_read_through_the_cli() {
    let fleet = fleet(&[], &[("web-1", &["role=web"])]);
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
    push(&fleet, "shop", "v1", &[], 60);
    let revisions = fleet.gantry_ok(&["revisions", "--app", "shop"]);
    assert!(
        revisions.starts_with("s3://gantry-revisions/shop/v1.tgz registered "),
        "{revisions}"
    );
    let (succeeded, info) = deploy_json(&fleet, "shop", "web");
    assert!(succeeded, "{info:#}");
    let id = info["deploymentId"].as_str().unwrap();
    assert_eq!(
        fleet.gantry_ok(&["targets", id, "--status", "Succeeded"]),
        "web-1\n"
    );
    assert_eq!(fleet.gantry_ok(&["targets", id, "--status", "Failed"]), "");
    let target = fleet.gantry_ok(&["target", id, "web-1"]);
    assert!(target.starts_with("web-1 Succeeded\n"), "{target}");
    assert!(target.contains("\n  ValidateService Succeeded"), "{target}");
}

/// `gantry config create` and `delete`: a custom configuration deploys with its minimum,
/// cannot be deleted while a group uses it (DeploymentConfigInUseException), and is
/// deleted once none does; `group update --config` changes the configuration alone.
#[test]
fn a_custom_config_deploys_and_is_deleted_once_no_group_uses_it() {
    let fleet = fleet(&[], &[("web-1", WEB), ("web-2", WEB_B), ("web-3", WEB)]);
    fleet.gantry_ok(&["config", "create", "TwoHealthy", "--min-healthy-hosts", "2"]);
    fleet.gantry_ok(&["app", "create", "shop"]);
    fleet.gantry_ok(&[
        "group",
        "create",
        "web",
        "--app",
        "shop",
        "--config",
        "TwoHealthy",
        "--on-prem-tag",
        "role=web",
    ]);
    // A second in ValidateService makes the hosts of one batch overlap for certain.
    push(&fleet, "shop", "v1", &[("ValidateService", "sleep 1")], 60);
    let (succeeded, info) = deploy_json(&fleet, "shop", "web");
    assert!(succeeded, "{info:#}");
    assert_eq!(info["deploymentConfigName"], "TwoHealthy", "{info:#}");
    let targets = fleet.targets(info["deploymentId"].as_str().unwrap());
    assert_eq!(targets.len(), 3);
    assert_eq!(
        max_concurrency(&targets),
        1,
        "three hosts, two kept healthy: one at a time"
    );

    let refused = fleet.gantry(&["config", "delete", "TwoHealthy"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("DeploymentConfigInUseException") && stderr.contains("shop/web"),
        "{stderr}"
    );
    let kept = fleet.gantry_json(&["config", "get", "TwoHealthy"]);
    assert_eq!(
        kept["deploymentConfigInfo"]["minimumHealthyHosts"],
        json!({"type": "HOST_COUNT", "value": 2}),
        "{kept:#}"
    );

    fleet.gantry_ok(&[
        "group",
        "update",
        "web",
        "--app",
        "shop",
        "--config",
        "CodeDeployDefault.AllAtOnce",
    ]);
    let group = fleet.gantry_json(&["group", "get", "web", "--app", "shop"]);
    let group = &group["deploymentGroupInfo"];
    assert_eq!(group["deploymentConfigName"], "CodeDeployDefault.AllAtOnce");
    assert_eq!(
        group["onPremisesInstanceTagFilters"],
        json!([{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}]),
        "the targets, left out, stay: {group:#}"
    );
    fleet.gantry_ok(&["config", "delete", "TwoHealthy"]);
    let listed = fleet.gantry_ok(&["config", "list"]);
    assert!(
        listed
            .lines()
            .any(|line| line == "CodeDeployDefault.OneAtATime")
            && !listed.lines().any(|line| line == "TwoHealthy"),
        "{listed}"
    );
    let gone = fleet.gantry(&["config", "get", "TwoHealthy"]);
    assert!(!gone.status.success());
    let stderr = String::from_utf8_lossy(&gone.stderr);
    assert!(
        stderr.contains("DeploymentConfigDoesNotExistException"),
        "{stderr}"
    );

    let (succeeded, info) = deploy_json(&fleet, "shop", "web");
    assert!(succeeded, "{info:#}");
    assert_eq!(info["deploymentConfigName"], "CodeDeployDefault.AllAtOnce");
    let targets = fleet.targets(info["deploymentId"].as_str().unwrap());
    assert_eq!(max_concurrency(&targets), 3, "all at once");
}

/// `gantry group update` follows CodeDeploy's rule: a list given replaces the group's, a
/// list given empty (`--clear`) removes it, a field left out is kept; removing one tag
/// filter keeps the others. Each change is checked by where a deployment goes.
#[test]
fn group_update_replaces_what_it_is_given_removes_what_is_given_empty_and_keeps_the_rest() {
    let fleet = fleet(
        &[],
        &[
            ("web-1", &["role=web"]),
            ("api-1", &["role=api"]),
            ("db-1", &["role=db"]),
        ],
    );
    fleet.gantry_ok(&["app", "create", "shop"]);
    fleet.gantry_ok(&[
        "group",
        "create",
        "g",
        "--app",
        "shop",
        "--config",
        "CodeDeployDefault.AllAtOnce",
        "--on-prem-tag",
        "role=web",
        "--on-prem-tag",
        "role=api",
        "--auto-rollback",
    ]);
    push(&fleet, "shop", "v1", &[], 60);
    let update = |args: &[&str]| {
        let mut all = vec!["group", "update", "g", "--app", "shop"];
        all.extend_from_slice(args);
        fleet.gantry_ok(&all);
        fleet.gantry_json(&["group", "get", "g", "--app", "shop"])["deploymentGroupInfo"].clone()
    };
    let deployed_to = || {
        let (succeeded, info) = deploy_json(&fleet, "shop", "g");
        assert!(succeeded, "{info:#}");
        ids(&fleet.targets(info["deploymentId"].as_str().unwrap()))
    };
    let hosts = |names: &[&str]| -> BTreeSet<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    };
    let filter = |value: &str| json!({"Key": "role", "Value": value, "Type": "KEY_AND_VALUE"});

    // Removing one tag filter keeps the others, and every field left out.
    let group = update(&["--remove-on-prem-tag", "role=api"]);
    assert_eq!(
        group["onPremisesInstanceTagFilters"],
        json!([filter("web")]),
        "{group:#}"
    );
    assert_eq!(group["deploymentConfigName"], "CodeDeployDefault.AllAtOnce");
    assert_eq!(
        group["autoRollbackConfiguration"]["enabled"], true,
        "{group:#}"
    );
    assert_eq!(deployed_to(), hosts(&["web-1"]));

    // A list given replaces the group's.
    let group = update(&["--on-prem-tag", "role=db"]);
    assert_eq!(group["onPremisesInstanceTagFilters"], json!([filter("db")]));
    assert_eq!(deployed_to(), hosts(&["db-1"]));

    // A tag set cannot stand beside the filter list; the list given empty is removed.
    let refused = fleet.gantry(&[
        "group",
        "update",
        "g",
        "--app",
        "shop",
        "--on-prem-tag-set",
        "role=web,role=api",
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("InvalidTagException"), "{stderr}");
    let group = update(&[
        "--clear",
        "on-prem-tags",
        "--on-prem-tag-set",
        "role=web,role=api",
    ]);
    assert_eq!(
        group["onPremisesInstanceTagFilters"],
        json!([]),
        "{group:#}"
    );
    assert_eq!(
        group["onPremisesTagSet"]["onPremisesTagSetList"],
        json!([[filter("web"), filter("api")]]),
        "{group:#}"
    );
    assert_eq!(deployed_to(), hosts(&["web-1", "api-1"]));

    // Given empty too, the group has no targets left, and keeps everything else.
    let group = update(&["--clear", "on-prem-tag-sets"]);
    assert!(group["onPremisesTagSet"].is_null(), "{group:#}");
    assert_eq!(group["onPremisesInstanceTagFilters"], json!([]));
    assert_eq!(group["deploymentConfigName"], "CodeDeployDefault.AllAtOnce");
    assert_eq!(group["autoRollbackConfiguration"]["enabled"], true);
}

/// `gantry app rename`: the application keeps its group, revisions, tags and history,
/// deploys by its new name with the last successful revision as the previous one, and
/// the old name is gone.
#[test]
fn an_application_renamed_through_the_cli_deploys_and_lists_by_its_new_name() {
    let fleet = fleet(&[], &[("web-1", WEB)]);
    fleet.gantry_ok(&["app", "create", "shop", "--tag", "team=shop"]);
    fleet.gantry_ok(&[
        "group",
        "create",
        "web",
        "--app",
        "shop",
        "--on-prem-tag",
        "role=web",
    ]);
    push(&fleet, "shop", "v1", &[], 60);
    let (succeeded, first) = deploy_json(&fleet, "shop", "web");
    assert!(succeeded, "{first:#}");
    let first = first["deploymentId"].as_str().unwrap().to_owned();

    assert_eq!(
        fleet.gantry_ok(&["app", "rename", "shop", "store"]),
        "renamed application shop to store\n"
    );
    assert_eq!(fleet.gantry_ok(&["app", "list"]), "store\n");
    assert_eq!(
        fleet.gantry_ok(&[
            "tags",
            "list",
            "arn:aws:codedeploy:us-east-1:123456789012:application:store"
        ]),
        "team=shop\n"
    );
    push(&fleet, "store", "v2", &[], 60);
    let (succeeded, second) = deploy_json(&fleet, "store", "web");
    assert!(succeeded, "{second:#}");
    assert_eq!(
        second["previousRevision"]["s3Location"]["key"], "shop/v1.tgz",
        "{second:#}"
    );
    assert_eq!(installed_version(&fleet.hosts[0]).as_deref(), Some("v2"));
    let second = second["deploymentId"].as_str().unwrap();
    assert_eq!(
        fleet.gantry_ok(&["list", "--app", "store", "--group", "web"]),
        format!("{second}\n{first}\n")
    );
    // History keeps the name it was made with.
    assert_eq!(fleet.deployment(&first)["applicationName"], "shop");
    let gone = fleet.gantry(&["group", "get", "web", "--app", "shop"]);
    assert!(!gone.status.success());
    let stderr = String::from_utf8_lossy(&gone.stderr);
    assert!(
        stderr.contains("ApplicationDoesNotExistException"),
        "{stderr}"
    );
}
