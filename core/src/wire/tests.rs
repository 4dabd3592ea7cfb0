use super::*;
use proptest::prelude::*;

#[test]
fn creators_are_spelled_as_codedeploy_spells_them() {
    let names: Vec<String> = [
        Creator::User,
        Creator::Autoscaling,
        Creator::CodeDeployRollback,
        Creator::CodeDeploy,
        Creator::CodeDeployAutoUpdate,
    ]
    .iter()
    .map(|creator| serde_json::to_string(creator).unwrap())
    .collect();
    assert_eq!(
        names,
        [
            "\"user\"",
            "\"autoscaling\"",
            "\"codeDeployRollback\"",
            "\"CodeDeploy\"",
            "\"CodeDeployAutoUpdate\""
        ]
    );
}

fn command() -> Command {
    Command {
        schema_version: SCHEMA_VERSION,
        deployment_id: "d-ABCDEF123".into(),
        deployment_group_id: "g-1".into(),
        deployment_group_name: "web".into(),
        application_name: "shop".into(),
        instance_id: "host-1".into(),
        revision: RevisionLocation::S3 {
            s3_location: S3Location {
                bucket: "bundles".into(),
                key: "shop.zip".into(),
                bundle_type: BundleType::Zip,
                version: Some("v1".into()),
                e_tag: Some("\"abc\"".into()),
            },
        },
        lifecycle_events: crate::lifecycle::in_place(false),
        file_exists_behavior: FileExistsBehavior::Disallow,
        ignore_application_stop_failures: false,
        creator: Creator::User,
        start_by: Some(2_000),
        bundle_url: Some("https://bundles.s3.amazonaws.com/shop.zip?X-Amz-Signature=00".into()),
    }
}

#[test]
fn a_bundle_url_is_an_http_url_of_a_presigned_urls_size_on_one_line() {
    let parsed = Command::from_json(&command().to_json()).unwrap();
    assert_eq!(parsed, command(), "bundleUrl travels");
    for bad in [
        "file:///etc/shadow".to_owned(),
        "https://bundles/x\nHost: evil".to_owned(),
        format!("https://bundles/{}", "a".repeat(BUNDLE_URL_MAX)),
    ] {
        let mut command = command();
        command.bundle_url = Some(bad.clone());
        let error = command.validate().unwrap_err().to_string();
        assert!(error.contains("bundleUrl"), "{bad}: {error}");
    }
}

#[test]
fn a_command_expires_after_its_start_by_and_one_without_never_does() {
    let command = command();
    assert!(!command.expired(2_000));
    assert!(command.expired(2_001));
    let parsed = Command::from_json(&command.to_json()).unwrap();
    assert_eq!(parsed, command, "startBy travels");
    let unbounded = Command {
        start_by: None,
        ..command
    };
    assert!(!unbounded.to_json().contains("startBy"));
    assert!(!unbounded.expired(u64::MAX));
}

#[test]
fn a_host_message_is_a_command_or_a_cancel() {
    let command = command();
    assert_eq!(
        HostMessage::from_json(&command.to_json()).unwrap(),
        HostMessage::Command(Box::new(command))
    );
    let cancel = Cancel {
        deployment_id: "d-ABCDEF123".into(),
        instance_id: "host-1".into(),
    };
    assert_eq!(
        HostMessage::from_json(&cancel.to_json()).unwrap(),
        HostMessage::Cancel(cancel)
    );
    let bad = r#"{"schemaVersion": 1, "cancel": {"deploymentId": "nope", "instanceId": "host-1"}}"#;
    assert!(HostMessage::from_json(bad).is_err());
    let extra = r#"{"schemaVersion": 1, "cancel": {"deploymentId": "d-ABCDEF123", "instanceId": "host-1"}, "x": 1}"#;
    assert!(matches!(
        HostMessage::from_json(extra),
        Err(WireError::Malformed(_))
    ));
    let newer = r#"{"schemaVersion": 9, "cancel": {}}"#;
    assert!(matches!(
        HostMessage::from_json(newer),
        Err(WireError::UnsupportedVersion { found: 9 })
    ));
}

fn report(status: EventStatus) -> Report {
    Report {
        schema_version: SCHEMA_VERSION,
        deployment_id: "d-ABCDEF123".into(),
        instance_id: "host-1".into(),
        lifecycle_event: LifecycleEvent::AfterInstall,
        status,
        start_time: 1_000,
        end_time: status.is_terminal().then_some(2_000),
        diagnostics: (status == EventStatus::Failed).then(|| Diagnostics {
            error_code: ErrorCode::ScriptFailed,
            script_name: "scripts/configure.sh".into(),
            message: "exited with 3".into(),
            log_tail: "boom".into(),
        }),
    }
}

#[test]
fn a_message_carries_one_report_or_an_array_of_them() {
    let one = report(EventStatus::InProgress);
    assert_eq!(reports_to_json(std::slice::from_ref(&one)), one.to_json());
    assert_eq!(
        reports_from_json(&one.to_json()).unwrap(),
        vec![one.clone()]
    );

    let many = vec![one.clone(), report(EventStatus::Failed)];
    let body = reports_to_json(&many);
    assert!(body.starts_with('['));
    assert_eq!(reports_from_json(&body).unwrap(), many);

    assert!(matches!(
        reports_from_json("[]"),
        Err(WireError::Invalid {
            field: "reports",
            ..
        })
    ));
    let eleven = reports_to_json(&vec![one.clone(); REPORTS_PER_MESSAGE_MAX + 1]);
    assert!(reports_from_json(&eleven).is_err());

    let mut bad = report(EventStatus::Succeeded);
    bad.end_time = None;
    let error = reports_from_json(&reports_to_json(&[one, bad])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "report 1 of the message: endTime: is required when the event has ended"
    );
}

#[test]
fn command_round_trips_in_codedeploy_shape() {
    let json = command().to_json();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["revision"]["revisionType"], "S3");
    assert_eq!(value["revision"]["s3Location"]["bundleType"], "zip");
    assert_eq!(value["revision"]["s3Location"]["eTag"], "\"abc\"");
    assert_eq!(value["lifecycleEvents"][0], "ApplicationStop");
    assert_eq!(value["fileExistsBehavior"], "DISALLOW");
    assert_eq!(value["creator"], "user");
    assert_eq!(Command::from_json(&json).unwrap(), command());
}

#[test]
fn github_revisions_round_trip_and_are_checked() {
    let mut cmd = command();
    cmd.revision = RevisionLocation::GitHub {
        git_hub_location: GitHubLocation {
            repository: "acme/shop".into(),
            commit_id: "0123456789abcdef0123456789abcdef01234567".into(),
        },
    };
    let json = cmd.to_json();
    assert!(json.contains("\"gitHubLocation\""));
    assert_eq!(Command::from_json(&json).unwrap(), cmd);
    cmd.revision = RevisionLocation::GitHub {
        git_hub_location: GitHubLocation {
            repository: "shop".into(),
            commit_id: "0123456".into(),
        },
    };
    assert!(matches!(
        Command::from_json(&cmd.to_json()),
        Err(WireError::Invalid {
            field: "revision.gitHubLocation.repository",
            ..
        })
    ));
}

/// A repository goes into a URL path with the token: nothing but GitHub's own names.
#[test]
fn github_locations_take_only_githubs_names() {
    let location = |repository: &str, commit: &str| RevisionLocation::GitHub {
        git_hub_location: GitHubLocation {
            repository: repository.into(),
            commit_id: commit.into(),
        },
    };
    let field = |location: RevisionLocation| match location.validate() {
        Ok(()) => None,
        Err(WireError::Invalid { field, .. }) => Some(field),
        Err(other) => panic!("{other}"),
    };
    for good in ["acme/shop", "a-b/c.d_e", "A1/x"] {
        assert_eq!(field(location(good, "abcdef0")), None, "{good}");
    }
    for bad in [
        "../x",
        "acme/..",
        "acme/.",
        "acme/shop/extra",
        "ac me/shop",
        "acme/sh%2fop",
        "acme/shop?x",
        "acme_x/shop",
        "/shop",
        "acme/",
    ] {
        assert_eq!(
            field(location(bad, "abcdef0")),
            Some("revision.gitHubLocation.repository"),
            "{bad}"
        );
    }
    for bad in [
        "abc",
        "abcdefg0123456789012345678901234567890123",
        "abcdefz",
    ] {
        assert_eq!(
            field(location("acme/shop", bad)),
            Some("revision.gitHubLocation.commitId"),
            "{bad}"
        );
    }
    let pinned = GitHubLocation {
        repository: "acme/shop".into(),
        commit_id: "0123456789abcdef0123456789abcdef01234567".into(),
    };
    assert!(pinned.is_pinned());
    let short = GitHubLocation {
        commit_id: "0123456".into(),
        ..pinned.clone()
    };
    assert!(!short.is_pinned());
    let upper = GitHubLocation {
        commit_id: pinned.commit_id.to_uppercase(),
        ..pinned
    };
    assert!(!upper.is_pinned());
}

#[test]
fn commands_are_validated() {
    let mut cmd = command();
    cmd.deployment_id = "12".into();
    assert!(matches!(
        cmd.validate(),
        Err(WireError::Invalid {
            field: "deploymentId",
            ..
        })
    ));
    let mut cmd = command();
    cmd.lifecycle_events.push(LifecycleEvent::Install);
    assert!(matches!(
        cmd.validate(),
        Err(WireError::Invalid {
            field: "lifecycleEvents",
            ..
        })
    ));
    let mut cmd = command();
    cmd.lifecycle_events = vec![LifecycleEvent::AllowTraffic];
    assert!(cmd.validate().is_err());
    let mut cmd = command();
    cmd.instance_id = " ".into();
    assert!(matches!(
        cmd.validate(),
        Err(WireError::Invalid {
            field: "instanceId",
            ..
        })
    ));
}

#[test]
fn deployment_group_ids_cannot_lead_a_path_elsewhere() {
    for id in [
        "00000000-0000-0000-0000-000000000001",
        "cdac3220-0e64-4d63-bb50-e68faEXAMPLE",
        "g-1",
        &"g".repeat(MAX_DEPLOYMENT_GROUP_ID),
    ] {
        let mut cmd = command();
        cmd.deployment_group_id = id.to_owned();
        assert_eq!(cmd.validate(), Ok(()), "{id}");
    }
    for id in [
        "",
        "../../tmp/x",
        "..",
        ".",
        "a/b",
        "/etc",
        "g 1",
        "g_1",
        "g-1\0",
        &"g".repeat(MAX_DEPLOYMENT_GROUP_ID + 1),
    ] {
        let mut cmd = command();
        cmd.deployment_group_id = id.to_owned();
        let error = Command::from_json(&cmd.to_json()).unwrap_err();
        assert!(
            matches!(
                error,
                WireError::Invalid {
                    field: "deploymentGroupId",
                    ..
                }
            ),
            "{id}: {error:?}"
        );
        assert!(
            error.to_string().contains("A-Z, a-z, 0-9 and -"),
            "says what is allowed: {error}"
        );
    }
}

#[test]
fn unknown_fields_and_newer_versions_are_refused() {
    let mut value: serde_json::Value = serde_json::from_str(&command().to_json()).unwrap();
    value["surprise"] = serde_json::json!(1);
    assert!(matches!(
        Command::from_json(&value.to_string()),
        Err(WireError::Malformed(_))
    ));
    value["schemaVersion"] = serde_json::json!(2);
    assert_eq!(
        Command::from_json(&value.to_string()),
        Err(WireError::UnsupportedVersion { found: 2 })
    );
    let text = command().to_json().replace("\"schemaVersion\":1,", "");
    assert!(matches!(
        Command::from_json(&text),
        Err(WireError::Invalid {
            field: "schemaVersion",
            ..
        })
    ));
}

#[test]
fn host_ids_are_bounded_as_instance_names_are() {
    for id in [
        "i-0123456789abcdef0",
        "web_01",
        &"h".repeat(MAX_INSTANCE_ID),
    ] {
        assert!(is_instance_id(id), "{id}");
    }
    for id in ["", " ", "web.01", "a/b", &"h".repeat(MAX_INSTANCE_ID + 1)] {
        assert!(!is_instance_id(id), "{id}");
    }
    // A key DynamoDB would refuse (over 1,024 bytes) is refused before any store call.
    let mut oversized = report(EventStatus::Succeeded);
    oversized.instance_id = "h".repeat(1100);
    let error = Report::from_json(&oversized.to_json()).unwrap_err();
    assert!(
        matches!(
            error,
            WireError::Invalid {
                field: "instanceId",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().len() < 300, "{error}");
}

#[test]
fn reports_round_trip_and_are_validated() {
    for status in [
        EventStatus::InProgress,
        EventStatus::Succeeded,
        EventStatus::Failed,
        EventStatus::Skipped,
    ] {
        let json = report(status).to_json();
        assert_eq!(Report::from_json(&json).unwrap(), report(status), "{json}");
    }
    let mut bad = report(EventStatus::Succeeded);
    bad.end_time = None;
    assert!(matches!(
        bad.validate(),
        Err(WireError::Invalid {
            field: "endTime",
            ..
        })
    ));
    let mut bad = report(EventStatus::Succeeded);
    bad.end_time = Some(10);
    assert!(bad.validate().is_err());
    let mut bad = report(EventStatus::Failed);
    bad.diagnostics = None;
    assert!(matches!(
        bad.validate(),
        Err(WireError::Invalid {
            field: "diagnostics",
            ..
        })
    ));
    let mut bad = report(EventStatus::Failed);
    bad.diagnostics.as_mut().unwrap().log_tail = "x".repeat(LOG_TAIL_MAX_BYTES + 1);
    assert!(matches!(
        bad.validate(),
        Err(WireError::Invalid {
            field: "diagnostics.logTail",
            ..
        })
    ));
    let mut bad = report(EventStatus::Failed);
    bad.diagnostics.as_mut().unwrap().error_code = ErrorCode::Success;
    assert!(bad.validate().is_err());
    assert!(report(EventStatus::Pending).validate().is_err());
}

#[test]
fn log_tail_keeps_the_end_on_a_char_boundary() {
    assert_eq!(log_tail("short"), "short");
    assert_eq!(last_bytes("héllo", 4), "llo");
    assert_eq!(first_bytes("héllo", 2), "h");
    assert_eq!(first_bytes("héllo", 3), "hé");
    assert_eq!(first_bytes("", 3), "");
    assert_eq!(json_len("a\"\n\u{1b}é"), 1 + 2 + 2 + 6 + 2);
    let escapes = "\u{1}".repeat(100);
    assert_eq!(
        serde_json::to_string(&escapes).unwrap().len() - 2,
        json_len(&escapes)
    );
    assert_eq!(
        first_json_bytes(&escapes, 20).len(),
        3,
        "20 bytes hold three \\u0001"
    );
    assert_eq!(last_json_bytes("ab\u{1}cd", 8), "\u{1}cd");
    assert_eq!(last_json_bytes("ab\u{1}cd", 7), "cd");
    assert_eq!(first_json_bytes("héllo", 2), "h");
    assert_eq!(last_json_bytes("héllo", 100), "héllo");
    let long = format!("{}{}", "é".repeat(3000), "end");
    let tail = log_tail(&long);
    assert!(tail.len() <= LOG_TAIL_MAX_BYTES);
    assert!(tail.ends_with("end"));
    assert!(tail.len() >= LOG_TAIL_MAX_BYTES - 1);
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in ".*") {
        let _ = Command::from_json(&text);
        let _ = Report::from_json(&text);
    }

    #[test]
    fn arbitrary_json_objects_never_panic(
        keys in proptest::collection::vec("[a-zA-Z]{1,12}", 0..6),
        numbers in proptest::collection::vec(any::<i64>(), 0..6),
    ) {
        let mut object = serde_json::Map::new();
        for (key, number) in keys.iter().zip(numbers.iter()) {
            object.insert(key.clone(), serde_json::json!(number));
        }
        object.insert("schemaVersion".into(), serde_json::json!(1));
        let text = serde_json::Value::Object(object).to_string();
        prop_assert!(Command::from_json(&text).is_err());
        prop_assert!(Report::from_json(&text).is_err());
    }
}
