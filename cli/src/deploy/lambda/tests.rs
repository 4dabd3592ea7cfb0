use super::*;

/// A Lambda `deploymentInfo` as the control plane renders it, with `fields` over one in
/// progress.
fn info(fields: Value) -> LambdaDeploymentInfo {
    let mut info = json!({
        "applicationName": "shop", "deploymentGroupName": "live",
        "deploymentConfigName": "CodeDeployDefault.LambdaLinear10PercentEvery1Minute",
        "deploymentId": "d-1",
        "revision": {"revisionType": "AppSpecContent", "appSpecContent": {"content": "version: 0.0\n"}},
        "status": "InProgress", "createTime": 1.0, "startTime": 1.0, "completeTime": null,
        "deploymentOverview": {"Pending": 0, "InProgress": 1, "Succeeded": 0, "Failed": 0, "Skipped": 0, "Ready": 0},
        "creator": "user",
        "autoRollbackConfiguration": {"enabled": false, "events": []},
        "deploymentStyle": {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
        "computePlatform": "Lambda",
    });
    for (name, value) in fields.as_object().expect("fields").clone() {
        info[name] = value;
    }
    serde_json::from_value(info).expect("a Lambda deploymentInfo")
}

fn event(name: &str, status: &str, start: Option<f64>, end: Option<f64>) -> Value {
    json!({"lifecycleEventName": name, "status": status, "startTime": start, "endTime": end})
}

/// The alias `shop:live` from version 1 to 2 at `weight` percent, with `events` and the
/// next step due at `next`.
fn target(weight: f64, next: Option<f64>, events: Value) -> LambdaTarget {
    serde_json::from_value(json!({
        "deploymentId": "d-1", "targetId": "shop:live",
        "targetArn": "arn:aws:lambda:us-east-1:000000000000:function:shop:live",
        "status": "InProgress", "lastUpdatedAt": null, "lifecycleEvents": events,
        "lambdaFunctionInfo": {
            "functionName": "shop", "functionAlias": "live",
            "currentVersion": "1", "targetVersion": "2",
            "targetVersionWeight": weight, "nextStepTime": next,
            "nextStepWeight": next.map(|_| weight + 10.0),
        },
    }))
    .expect("a lambdaTarget")
}

#[test]
fn a_split_names_both_versions_with_their_shares() {
    let at = |weight| target(weight, None, json!([])).lambda_function_info;
    assert_eq!(split(&at(0.0)), "v1 100% → v2 0%");
    assert_eq!(split(&at(10.0)), "v1 90% → v2 10%");
    assert_eq!(split(&at(12.5)), "v1 87.5% → v2 12.5%");
    assert_eq!(split(&at(100.0)), "v1 0% → v2 100%");
    let mut named = at(30.0);
    named.current_version = "$LATEST".into();
    assert_eq!(split(&named), "$LATEST 70% → v2 30%");
    assert_eq!(percent(33.333), "33.3%");
    assert_eq!(percent(-1.0), "0%");
}

#[test]
fn the_next_step_is_counted_down_in_minutes_and_seconds() {
    let shifting = target(10.0, Some(1_000.0 + 252.0), json!([]));
    assert_eq!(
        split_line(&shifting, 1_000.0),
        "shop:live  v1 90% → v2 10%, next step in 4m 12s"
    );
    assert_eq!(
        split_line(&shifting, 1_000.0 + 250.6),
        "shop:live  v1 90% → v2 10%, next step in 1s"
    );
    // A step already due (the tick has not run yet) is not a negative time.
    assert_eq!(
        split_line(&shifting, 2_000.0),
        "shop:live  v1 90% → v2 10%, next step in 0s"
    );
    assert_eq!(wait(45.0), "45s");
    assert_eq!(wait(3_720.0), "1h 02m");
}

#[test]
fn without_a_next_step_the_line_says_which_hook_it_waits_for() {
    let before = target(
        0.0,
        None,
        json!([
            event("BeforeAllowTraffic", "InProgress", Some(5.0), None),
            event("AllowTraffic", "Pending", None, None)
        ]),
    );
    assert_eq!(
        split_line(&before, 6.0),
        "shop:live  v1 100% → v2 0%, waiting for the BeforeAllowTraffic hook"
    );
    let plain = target(
        0.0,
        None,
        json!([event("AllowTraffic", "Pending", None, None)]),
    );
    assert_eq!(split_line(&plain, 6.0), "shop:live  v1 100% → v2 0%");
}

#[test]
fn an_event_is_shown_once_it_ends_with_how_long_it_took() {
    let read = |value: Value| -> LifecycleEventInfo { serde_json::from_value(value).unwrap() };
    assert_eq!(
        event_line(&read(event(
            "BeforeAllowTraffic",
            "Succeeded",
            Some(10.0),
            Some(11.23)
        ))),
        Some("BeforeAllowTraffic Succeeded (1.2 s)".to_owned())
    );
    assert_eq!(
        event_line(&read(event(
            "AfterAllowTraffic",
            "Failed",
            Some(30.0),
            Some(30.8)
        ))),
        Some("AfterAllowTraffic Failed (0.8 s)".to_owned())
    );
    assert_eq!(
        event_line(&read(event("AfterAllowTraffic", "Skipped", None, None))),
        Some("AfterAllowTraffic Skipped".to_owned())
    );
    assert_eq!(
        event_line(&read(event("AllowTraffic", "InProgress", Some(12.0), None))),
        None
    );
}

#[test]
fn the_end_says_the_status_and_why_and_where_the_alias_is() {
    assert_eq!(end_line(&info(json!({"status": "Succeeded"}))), "Succeeded");
    let failed = info(json!({"status": "Failed", "errorInformation": {
        "code": "HOOK_FAILED", "message": "the AfterAllowTraffic hook answered Failed"}}));
    assert_eq!(
        end_line(&failed),
        "Failed: the AfterAllowTraffic hook answered Failed"
    );
    assert_eq!(end_line(&info(json!({"status": "Stopped"}))), "Stopped");
    let moved = target(
        0.0,
        None,
        json!([event("AllowTraffic", "Succeeded", Some(1.0), Some(2.0))]),
    );
    assert_eq!(
        end_split_line(&moved, DeploymentStatus::Failed),
        "shop:live  all traffic back on v1"
    );
    assert_eq!(
        end_split_line(&moved, DeploymentStatus::Succeeded),
        "shop:live  all traffic on v2"
    );
    let never = target(
        0.0,
        None,
        json!([event("AllowTraffic", "Skipped", None, None)]),
    );
    assert_eq!(
        end_split_line(&never, DeploymentStatus::Stopped),
        "shop:live  all traffic still on v1"
    );
}

#[test]
fn a_watch_prints_each_split_once_each_ended_event_once_and_the_end() {
    let mut watch = Watch::default();
    let running = info(json!({}));
    let hooks = |before: &str, allow: &str, after: &str| {
        json!([
            event(
                "BeforeAllowTraffic",
                before,
                Some(1.0),
                (before != "InProgress").then_some(2.5)
            ),
            event(
                "AllowTraffic",
                allow,
                Some(3.0),
                (allow == "Succeeded").then_some(23.0)
            ),
            event(
                "AfterAllowTraffic",
                after,
                Some(23.0),
                (after == "Failed").then_some(24.0)
            ),
        ])
    };
    let first = target(0.0, None, hooks("InProgress", "Pending", "Pending"));
    assert_eq!(
        watch.observe(&running, Some(&first), 1.0),
        ["shop:live  v1 100% → v2 0%, waiting for the BeforeAllowTraffic hook"]
    );
    assert!(watch.observe(&running, Some(&first), 2.0).is_empty());
    let ten = target(10.0, Some(5.0), hooks("Succeeded", "InProgress", "Pending"));
    assert_eq!(
        watch.observe(&running, Some(&ten), 3.0),
        [
            "BeforeAllowTraffic Succeeded (1.5 s)",
            "shop:live  v1 90% → v2 10%, next step in 2s"
        ]
    );
    // The countdown alone is no new line.
    assert!(watch.observe(&running, Some(&ten), 4.0).is_empty());
    // The target read after GetDeployment already shows the end: no split line for it.
    let mut back = target(0.0, None, hooks("Succeeded", "Succeeded", "Failed"));
    back.status = TargetStatus::Failed;
    assert_eq!(
        watch.observe(&running, Some(&back), 24.5),
        [
            "AllowTraffic Succeeded (20.0 s)",
            "AfterAllowTraffic Failed (1.0 s)"
        ]
    );
    let failed = info(json!({"status": "Failed", "errorInformation": {
        "code": "HOOK_FAILED", "message": "AfterAllowTraffic failed"}}));
    assert_eq!(
        watch.observe(&failed, Some(&back), 25.0),
        [
            "Failed: AfterAllowTraffic failed",
            "shop:live  all traffic back on v1"
        ]
    );
    assert!(watch.observe(&failed, Some(&back), 26.0).is_empty());
}

#[test]
fn status_summarises_a_lambda_deployment() {
    let done = info(json!({"status": "Succeeded"}));
    let alias = target(
        100.0,
        None,
        json!([event("AllowTraffic", "Succeeded", Some(3.0), Some(23.0))]),
    );
    assert_eq!(
        summary(&done, Some(&alias), 30.0),
        "d-1 Succeeded (AppSpec to shop/live, CodeDeployDefault.LambdaLinear10PercentEvery1Minute)\n  shop:live  all traffic on v2\n  AllowTraffic Succeeded (20.0 s)"
    );
}

#[test]
fn get_deployment_is_read_by_its_compute_platform() {
    let lambda = serde_json::to_value(info(json!({}))).unwrap();
    assert!(matches!(
        read_deployment(&lambda).unwrap(),
        Deployment::Lambda(_)
    ));
    let error = read_deployment(&json!({"computePlatform": "Lambda"}))
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("cannot read"), "{error}");
}

#[test]
fn appspec_is_the_revision_and_excludes_the_bundle_flags() {
    use clap::Parser;
    /// `gantry deploy`'s flags alone (the whole command line is `crate::args`', which
    /// needs this module: a test here may not need it back).
    #[derive(Parser)]
    struct Deploy {
        #[command(flatten)]
        _args: crate::deploy::DeployArgs,
    }
    let deploy = |extra: &[&str]| {
        let mut words = vec!["deploy", "--app", "shop", "--group", "live"];
        words.extend_from_slice(extra);
        Deploy::try_parse_from(words).map(|_| ())
    };
    assert!(deploy(&["--appspec", "appspec.yml"]).is_ok());
    assert!(
        deploy(&[
            "--appspec",
            "appspec.yml",
            "--config",
            "CodeDeployDefault.LambdaAllAtOnce"
        ])
        .is_ok()
    );
    for bundle_flag in [
        ["--revision", "s3://b/k.zip"],
        ["--bundle-type", "zip"],
        ["--file-exists-behavior", "OVERWRITE"],
    ] {
        assert!(
            deploy(&[&["--appspec", "appspec.yml"], bundle_flag.as_slice()].concat()).is_err(),
            "{bundle_flag:?} with --appspec"
        );
    }
    // An AppSpec file in S3 is a Lambda revision too: its key says YAML or JSON.
    assert_eq!(super::super::bundle_type_of("appspec.yml"), Some("YAML"));
    assert_eq!(super::super::bundle_type_of("a/appspec.yaml"), Some("YAML"));
    assert_eq!(super::super::bundle_type_of("appspec.json"), Some("JSON"));
}
