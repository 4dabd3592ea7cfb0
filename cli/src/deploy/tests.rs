use super::*;

/// A `deploymentInfo` as the control plane renders it, with `fields` over a plain
/// in-place deployment's.
pub(crate) fn typed(fields: Value) -> DeploymentInfo {
    let mut info = json!({
        "applicationName": "app", "deploymentGroupName": "group",
        "deploymentConfigName": "CodeDeployDefault.OneAtATime", "deploymentId": "d-1",
        "revision": {"revisionType": "S3", "s3Location": {"bucket": "b", "key": "app.zip", "bundleType": "zip"}},
        "status": "InProgress", "createTime": 1.0, "startTime": 1.0, "completeTime": null,
        "deploymentOverview": {"Pending": 0, "InProgress": 0, "Succeeded": 0, "Failed": 0, "Skipped": 0, "Ready": 0},
        "creator": "user", "ignoreApplicationStopFailures": false,
        "autoRollbackConfiguration": {"enabled": false, "events": []},
        "updateOutdatedInstancesOnly": false,
        "deploymentStyle": {"deploymentType": "IN_PLACE", "deploymentOption": "WITHOUT_TRAFFIC_CONTROL"},
        "fileExistsBehavior": "DISALLOW", "computePlatform": "Server",
        "instanceTerminationWaitTimeStarted": false,
    });
    for (name, value) in fields.as_object().expect("fields").clone() {
        info[name] = value;
    }
    serde_json::from_value(info).expect("a deploymentInfo")
}

#[test]
fn a_rollback_is_followed_when_the_group_asks_for_one_for_that_end() {
    let info = |status: &str, code: Option<&str>, events: &[&str]| {
        typed(json!({
            "status": status,
            "errorInformation": code.map(|code| json!({"code": code, "message": "why"})),
            "autoRollbackConfiguration": {"enabled": true, "events": events},
        }))
    };
    let alarm = ["DEPLOYMENT_STOP_ON_ALARM"];
    assert!(rolls_back(&info("Stopped", Some("ALARM_ACTIVE"), &alarm)));
    assert!(!rolls_back(&info("Stopped", Some("ALARM_CONFIG"), &alarm)));
    assert!(!rolls_back(&info("Stopped", None, &alarm)));
    assert!(rolls_back(&info(
        "Stopped",
        None,
        &["DEPLOYMENT_STOP_ON_REQUEST"]
    )));
    assert!(rolls_back(&info(
        "Failed",
        Some("HEALTH_CONSTRAINTS"),
        &["DEPLOYMENT_FAILURE"]
    )));
    assert!(!rolls_back(&info(
        "Succeeded",
        None,
        &["DEPLOYMENT_FAILURE"]
    )));
}

/// Targets as BatchGetDeploymentTargets returns them, from fixtures that keep only the
/// fields the progress reads.
fn typed_targets(targets: &Value) -> Vec<InstanceTarget> {
    let targets = targets.as_array().cloned().unwrap_or_default();
    targets
        .into_iter()
        .map(|fields| {
            let mut target = json!({
                "deploymentId": "d-1", "targetArn": "arn:aws:codedeploy:us-east-1:1:instance/x",
                "lastUpdatedAt": null, "instanceLabel": "Blue",
            });
            for (name, value) in fields.as_object().expect("a target").clone() {
                target[name] = value;
            }
            serde_json::from_value(target).expect("an instanceTarget")
        })
        .collect()
}

/// Feeds polls (`at`: the CLI's clock; `deploymentInfo`: GetDeployment's answer;
/// `targets`: BatchGetDeploymentTargets' `instanceTarget`s) to a [`Progress`];
/// returns each poll's line, marked `*` where a non-terminal prints it.
fn lines(polls: &str) -> Vec<String> {
    let polls: Vec<Value> = serde_json::from_str(polls).expect("valid fixture");
    let mut progress = Progress::default();
    polls
        .iter()
        .map(|poll| {
            let targets = typed_targets(&poll["targets"]);
            let at = poll["at"].as_f64().expect("at");
            let line = progress.observe(at, &typed(poll["deploymentInfo"].clone()), &targets);
            format!("{} {}", if line.changed { '*' } else { ' ' }, line.text)
        })
        .collect()
}

/// Written by hand: a HalfAtATime deployment of 4 hosts that take about 10 s each; the
/// control plane starts a host whenever one finishes, so the hosts overlap in no fixed
/// batches. Each target keeps only its first and last lifecycle events.
const HALF_AT_A_TIME: &str = r#"[
  {"at": 100.0,
   "deploymentInfo": {"status": "InProgress", "deploymentOverview": {"Pending": 4, "InProgress": 0, "Succeeded": 0, "Failed": 0, "Skipped": 0, "Ready": 0}},
   "targets": [
     {"targetId": "web-1", "status": "Pending", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Pending", "startTime": null, "endTime": null}, {"lifecycleEventName": "ValidateService", "status": "Pending", "startTime": null, "endTime": null}]},
     {"targetId": "web-2", "status": "Pending", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Pending", "startTime": null, "endTime": null}, {"lifecycleEventName": "ValidateService", "status": "Pending", "startTime": null, "endTime": null}]},
     {"targetId": "web-3", "status": "Pending", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Pending", "startTime": null, "endTime": null}, {"lifecycleEventName": "ValidateService", "status": "Pending", "startTime": null, "endTime": null}]},
     {"targetId": "web-4", "status": "Pending", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Pending", "startTime": null, "endTime": null}, {"lifecycleEventName": "ValidateService", "status": "Pending", "startTime": null, "endTime": null}]}]},
  {"at": 101.0,
   "deploymentInfo": {"status": "InProgress", "deploymentOverview": {"Pending": 2, "InProgress": 2, "Succeeded": 0, "Failed": 0, "Skipped": 0, "Ready": 0}},
   "targets": [
     {"targetId": "web-1", "status": "InProgress", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "InProgress", "startTime": 100.9, "endTime": null}, {"lifecycleEventName": "ValidateService", "status": "Pending", "startTime": null, "endTime": null}]},
     {"targetId": "web-2", "status": "Pending", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Pending", "startTime": null, "endTime": null}, {"lifecycleEventName": "ValidateService", "status": "Pending", "startTime": null, "endTime": null}]},
     {"targetId": "web-3", "status": "InProgress", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Pending", "startTime": null, "endTime": null}, {"lifecycleEventName": "ValidateService", "status": "Pending", "startTime": null, "endTime": null}]},
     {"targetId": "web-4", "status": "Pending", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Pending", "startTime": null, "endTime": null}, {"lifecycleEventName": "ValidateService", "status": "Pending", "startTime": null, "endTime": null}]}]},
  {"at": 106.0,
   "deploymentInfo": {"status": "InProgress", "deploymentOverview": {"Pending": 2, "InProgress": 2, "Succeeded": 0, "Failed": 0, "Skipped": 0, "Ready": 0}},
   "targets": [
     {"targetId": "web-1", "status": "InProgress", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 100.9, "endTime": 101.0}, {"lifecycleEventName": "ValidateService", "status": "Pending", "startTime": null, "endTime": null}]},
     {"targetId": "web-2", "status": "Pending", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Pending", "startTime": null, "endTime": null}, {"lifecycleEventName": "ValidateService", "status": "Pending", "startTime": null, "endTime": null}]},
     {"targetId": "web-3", "status": "InProgress", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 101.2, "endTime": 101.3}, {"lifecycleEventName": "ValidateService", "status": "Pending", "startTime": null, "endTime": null}]},
     {"targetId": "web-4", "status": "Pending", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Pending", "startTime": null, "endTime": null}, {"lifecycleEventName": "ValidateService", "status": "Pending", "startTime": null, "endTime": null}]}]},
  {"at": 111.0,
   "deploymentInfo": {"status": "InProgress", "deploymentOverview": {"Pending": 1, "InProgress": 2, "Succeeded": 1, "Failed": 0, "Skipped": 0, "Ready": 0}},
   "targets": [
     {"targetId": "web-1", "status": "Succeeded", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 100.9, "endTime": 101.0}, {"lifecycleEventName": "ValidateService", "status": "Succeeded", "startTime": 110.1, "endTime": 110.4}]},
     {"targetId": "web-2", "status": "InProgress", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Pending", "startTime": null, "endTime": null}, {"lifecycleEventName": "ValidateService", "status": "Pending", "startTime": null, "endTime": null}]},
     {"targetId": "web-3", "status": "InProgress", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 101.2, "endTime": 101.3}, {"lifecycleEventName": "ValidateService", "status": "InProgress", "startTime": 110.9, "endTime": null}]},
     {"targetId": "web-4", "status": "Pending", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Pending", "startTime": null, "endTime": null}, {"lifecycleEventName": "ValidateService", "status": "Pending", "startTime": null, "endTime": null}]}]},
  {"at": 112.0,
   "deploymentInfo": {"status": "InProgress", "deploymentOverview": {"Pending": 0, "InProgress": 2, "Succeeded": 2, "Failed": 0, "Skipped": 0, "Ready": 0}},
   "targets": [
     {"targetId": "web-1", "status": "Succeeded", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 100.9, "endTime": 101.0}, {"lifecycleEventName": "ValidateService", "status": "Succeeded", "startTime": 110.1, "endTime": 110.4}]},
     {"targetId": "web-2", "status": "InProgress", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 111.1, "endTime": 111.2}, {"lifecycleEventName": "ValidateService", "status": "Pending", "startTime": null, "endTime": null}]},
     {"targetId": "web-3", "status": "Succeeded", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 101.2, "endTime": 101.3}, {"lifecycleEventName": "ValidateService", "status": "Succeeded", "startTime": 110.9, "endTime": 111.8}]},
     {"targetId": "web-4", "status": "InProgress", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Pending", "startTime": null, "endTime": null}, {"lifecycleEventName": "ValidateService", "status": "Pending", "startTime": null, "endTime": null}]}]},
  {"at": 117.0,
   "deploymentInfo": {"status": "InProgress", "deploymentOverview": {"Pending": 0, "InProgress": 2, "Succeeded": 2, "Failed": 0, "Skipped": 0, "Ready": 0}},
   "targets": [
     {"targetId": "web-1", "status": "Succeeded", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 100.9, "endTime": 101.0}, {"lifecycleEventName": "ValidateService", "status": "Succeeded", "startTime": 110.1, "endTime": 110.4}]},
     {"targetId": "web-2", "status": "InProgress", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 111.1, "endTime": 111.2}, {"lifecycleEventName": "ValidateService", "status": "Pending", "startTime": null, "endTime": null}]},
     {"targetId": "web-3", "status": "Succeeded", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 101.2, "endTime": 101.3}, {"lifecycleEventName": "ValidateService", "status": "Succeeded", "startTime": 110.9, "endTime": 111.8}]},
     {"targetId": "web-4", "status": "InProgress", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 112.1, "endTime": 112.2}, {"lifecycleEventName": "ValidateService", "status": "Pending", "startTime": null, "endTime": null}]}]},
  {"at": 121.5,
   "deploymentInfo": {"status": "InProgress", "deploymentOverview": {"Pending": 0, "InProgress": 1, "Succeeded": 3, "Failed": 0, "Skipped": 0, "Ready": 0}},
   "targets": [
     {"targetId": "web-1", "status": "Succeeded", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 100.9, "endTime": 101.0}, {"lifecycleEventName": "ValidateService", "status": "Succeeded", "startTime": 110.1, "endTime": 110.4}]},
     {"targetId": "web-2", "status": "Succeeded", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 111.1, "endTime": 111.2}, {"lifecycleEventName": "ValidateService", "status": "Succeeded", "startTime": 120.5, "endTime": 120.8}]},
     {"targetId": "web-3", "status": "Succeeded", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 101.2, "endTime": 101.3}, {"lifecycleEventName": "ValidateService", "status": "Succeeded", "startTime": 110.9, "endTime": 111.8}]},
     {"targetId": "web-4", "status": "InProgress", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 112.1, "endTime": 112.2}, {"lifecycleEventName": "ValidateService", "status": "InProgress", "startTime": 121.3, "endTime": null}]}]},
  {"at": 123.0,
   "deploymentInfo": {"status": "Succeeded", "deploymentOverview": {"Pending": 0, "InProgress": 0, "Succeeded": 4, "Failed": 0, "Skipped": 0, "Ready": 0}},
   "targets": [
     {"targetId": "web-1", "status": "Succeeded", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 100.9, "endTime": 101.0}, {"lifecycleEventName": "ValidateService", "status": "Succeeded", "startTime": 110.1, "endTime": 110.4}]},
     {"targetId": "web-2", "status": "Succeeded", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 111.1, "endTime": 111.2}, {"lifecycleEventName": "ValidateService", "status": "Succeeded", "startTime": 120.5, "endTime": 120.8}]},
     {"targetId": "web-3", "status": "Succeeded", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 101.2, "endTime": 101.3}, {"lifecycleEventName": "ValidateService", "status": "Succeeded", "startTime": 110.9, "endTime": 111.8}]},
     {"targetId": "web-4", "status": "Succeeded", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 112.1, "endTime": 112.2}, {"lifecycleEventName": "ValidateService", "status": "Succeeded", "startTime": 121.3, "endTime": 122.1}]}]}
]"#;

#[test]
fn progress_counts_hosts_and_estimates_the_time_left_of_a_half_at_a_time_deployment() {
    assert_eq!(
        lines(HALF_AT_A_TIME),
        [
            "* 0 of 4 hosts done, 0 running, 4 waiting",
            "* 0 of 4 hosts done, 2 running (at most 2 at once), 2 waiting",
            // The same counts: a terminal redraws it, a log does not repeat it.
            "  0 of 4 hosts done, 2 running (at most 2 at once), 2 waiting",
            // web-1 ran 9.5 s; web-3 has run 10 s of it, web-2 just started, and web-4
            // starts when one of them ends.
            "* 1 of 4 hosts done, 2 running (at most 2 at once), 1 waiting, about 10s left",
            // Median of 9.5 and 10.6 s; web-2 has run 1 s, web-4 none.
            "* 2 of 4 hosts done, 2 running (at most 2 at once), about 10s left",
            "  2 of 4 hosts done, 2 running (at most 2 at once), about 5s left",
            // Median 9.7 s, web-4 has run 9.5 s of it.
            "* 3 of 4 hosts done, 1 running (at most 2 at once), about 1s left",
            "* 4 of 4 hosts done, 0 running (at most 2 at once)",
        ]
    );
}

/// Written by hand: the first two hosts fail ValidateService at different times, the
/// deployment fails and the other two are skipped. The estimate uses failed hosts'
/// runs while none has succeeded.
const FAILING: &str = r#"[
  {"at": 200.0,
   "deploymentInfo": {"status": "InProgress", "deploymentOverview": {"Pending": 2, "InProgress": 2, "Succeeded": 0, "Failed": 0, "Skipped": 0, "Ready": 0}},
   "targets": [
     {"targetId": "web-1", "status": "Pending", "lifecycleEvents": []},
     {"targetId": "web-2", "status": "InProgress", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "InProgress", "startTime": 199.9, "endTime": null}]},
     {"targetId": "web-3", "status": "Pending", "lifecycleEvents": []},
     {"targetId": "web-4", "status": "InProgress", "lifecycleEvents": []}]},
  {"at": 203.0,
   "deploymentInfo": {"status": "InProgress", "deploymentOverview": {"Pending": 2, "InProgress": 1, "Succeeded": 0, "Failed": 1, "Skipped": 0, "Ready": 0}},
   "targets": [
     {"targetId": "web-1", "status": "Pending", "lifecycleEvents": []},
     {"targetId": "web-2", "status": "Failed", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 199.9, "endTime": 200.0}, {"lifecycleEventName": "ValidateService", "status": "Failed", "startTime": 201.0, "endTime": 202.9}]},
     {"targetId": "web-3", "status": "Pending", "lifecycleEvents": []},
     {"targetId": "web-4", "status": "InProgress", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 200.1, "endTime": 200.2}]}]},
  {"at": 203.5,
   "deploymentInfo": {"status": "Failed", "deploymentOverview": {"Pending": 0, "InProgress": 0, "Succeeded": 0, "Failed": 2, "Skipped": 2, "Ready": 0}},
   "targets": [
     {"targetId": "web-1", "status": "Skipped", "lifecycleEvents": []},
     {"targetId": "web-2", "status": "Failed", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 199.9, "endTime": 200.0}, {"lifecycleEventName": "ValidateService", "status": "Failed", "startTime": 201.0, "endTime": 202.9}]},
     {"targetId": "web-3", "status": "Skipped", "lifecycleEvents": []},
     {"targetId": "web-4", "status": "Failed", "lifecycleEvents": [{"lifecycleEventName": "ApplicationStop", "status": "Succeeded", "startTime": 200.1, "endTime": 200.2}, {"lifecycleEventName": "ValidateService", "status": "Failed", "startTime": 201.2, "endTime": 203.2}]}]}
]"#;

#[test]
fn progress_of_a_failing_deployment_says_what_failed_and_what_was_skipped() {
    assert_eq!(
        lines(FAILING),
        [
            "* 0 of 4 hosts done, 2 running (at most 2 at once), 2 waiting",
            // web-2 failed after 3 s; web-4 has run 3 s, and the 2 waiting hosts take
            // 3 s each, two at once.
            "* 1 of 4 hosts done (1 failed), 1 running (at most 2 at once), 2 waiting, about 3s left",
            "* 2 of 4 hosts done (2 failed), 0 running (at most 2 at once), 2 skipped",
        ]
    );
}

/// Recorded from `make demo` (GetDeployment and BatchGetDeploymentTargets polled every
/// ~0.35 s, polls whose answers repeat the previous one left out, each answer trimmed
/// to the fields the line reads): version 1 to 4 hosts, two at a time, each host done
/// in about half a second.
#[test]
fn progress_of_the_demos_recorded_deployment_of_version_1() {
    assert_eq!(
        lines(include_str!(
            "../../tests/fixtures/demo-half-at-a-time-succeeds.json"
        )),
        [
            "* 0 of 4 hosts done, 2 running (at most 2 at once), 2 waiting",
            "* 2 of 4 hosts done, 2 running (at most 2 at once), about 1s left",
            "* 3 of 4 hosts done, 1 running (at most 2 at once), about 1s left",
            "* 4 of 4 hosts done, 0 running (at most 2 at once)",
        ]
    );
}

/// Recorded as above: the broken version 2, whose ValidateService retries for about
/// 19 s and fails on both of the first two hosts; the other two are skipped. In the
/// second poll the targets already show web-2 failed while GetDeployment's counts do
/// not yet: the counts come from GetDeployment alone, the estimate from the targets.
#[test]
fn progress_of_the_demos_recorded_failing_deployment_of_version_2() {
    assert_eq!(
        lines(include_str!(
            "../../tests/fixtures/demo-half-at-a-time-fails.json"
        )),
        [
            "* 0 of 4 hosts done, 2 running (at most 2 at once), 2 waiting",
            "  0 of 4 hosts done, 2 running (at most 2 at once), 2 waiting, about 19s left",
            "* 2 of 4 hosts done (2 failed), 0 running (at most 2 at once), 2 skipped",
        ]
    );
}

#[test]
fn the_summary_warns_of_notifications_not_sent_and_forged_reports() {
    let info = typed(json!({
        "deploymentId": "d-1", "status": "Succeeded",
        "deploymentOverview": {"Succeeded": 2, "Failed": 0, "Skipped": 0, "InProgress": 0, "Pending": 0, "Ready": 0},
        "failedEffects": [{"effect": "DeploymentSuccess notification to trigger ops (arn:aws:sns:us-east-1:1:ops)",
                           "reason": "SNS Publish: NotFound", "failures": 2, "firstTime": 1.0, "lastTime": 2.0}],
        "forgedReports": 3,
    }));
    let text = summary(&info, &[]);
    assert!(text.contains("warning: DeploymentSuccess notification to trigger ops (arn:aws:sns:us-east-1:1:ops) failed 2 time(s): SNS Publish: NotFound"), "{text}");
    assert!(text.contains("warning: 3 report(s) dropped"), "{text}");
}

#[test]
fn time_left_reads_in_seconds_minutes_or_hours() {
    assert_eq!(about(0.2), "1s");
    assert_eq!(about(44.6), "45s");
    assert_eq!(about(125.0), "2m 05s");
    assert_eq!(about(3720.0), "1h 02m");
}
