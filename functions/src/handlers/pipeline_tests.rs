use super::*;

#[test]
fn user_parameters_take_the_documented_fields() {
    let parameters = parse_user_parameters(Some(
        r#"{"application": "shop", "deploymentGroup": "web", "deploymentConfig": "CodeDeployDefault.AllAtOnce", "description": "from the pipeline"}"#,
    ))
    .unwrap();
    assert_eq!(parameters.application, "shop");
    assert_eq!(parameters.deployment_group, "web");
    assert_eq!(
        parameters.deployment_config.as_deref(),
        Some("CodeDeployDefault.AllAtOnce")
    );
    let minimal =
        parse_user_parameters(Some(r#"{"application": "shop", "deploymentGroup": "web"}"#))
            .unwrap();
    assert_eq!(minimal.deployment_config, None);
    assert_eq!(minimal.description, None);
}

#[test]
fn bad_user_parameters_name_the_field_and_what_is_allowed() {
    let cases: [(Option<&str>, &[&str]); 7] = [
        (None, &["UserParameters: is required", "deploymentGroup"]),
        (Some("  "), &["UserParameters: is required"]),
        (
            Some("shop/web"),
            &["UserParameters", "expected", "a JSON object"],
        ),
        (
            Some(r#"{"application": "shop"}"#),
            &["missing field `deploymentGroup`"],
        ),
        (
            Some(r#"{"application": "shop", "deploymentGroup": "web", "group": "x"}"#),
            &[
                "unknown field `group`",
                "`deploymentConfig`",
                "`description`",
            ],
        ),
        (
            Some(r#"{"application": 7, "deploymentGroup": "web"}"#),
            &["UserParameters.application", "a string"],
        ),
        (
            Some(r#"{"application": "shop", "deploymentGroup": " "}"#),
            &["UserParameters.deploymentGroup: must not be empty"],
        ),
    ];
    for (raw, expected) in cases {
        let message = parse_user_parameters(raw).unwrap_err();
        for part in expected {
            assert!(message.contains(part), "{raw:?}: {part:?} not in {message}");
        }
    }
}

#[test]
fn a_job_always_names_the_same_deployment_and_copy() {
    let id = job_deployment_id("11111111-abcd-1111-abcd-111111abcdef");
    assert_eq!(
        id,
        job_deployment_id("11111111-abcd-1111-abcd-111111abcdef")
    );
    assert_ne!(
        id,
        job_deployment_id("22222222-abcd-1111-abcd-111111abcdef")
    );
    gantry_core::wire::check_deployment_id(&id).unwrap();
    assert_eq!(
        copy_key(Some("revisions/"), "shop", "job-1"),
        "revisions/codepipeline/shop/job-1"
    );
    assert_eq!(copy_key(None, "shop", "job-1"), "codepipeline/shop/job-1");
}

#[test]
fn a_running_deployment_continues_and_an_ended_one_answers_its_outcome() {
    for status in [DeploymentStatus::Created, DeploymentStatus::InProgress] {
        assert!(matches!(
            answer_for("job-1", "d-ABCDEFGHI", status, None),
            JobAnswer::Continue { token, deployment_id, .. }
                if deployment_id == "d-ABCDEFGHI" && token == "job-1"
        ));
    }
    assert!(matches!(
        answer_for("job-1", "d-ABCDEFGHI", DeploymentStatus::Succeeded, None),
        JobAnswer::Succeeded { .. }
    ));
    let error = ErrorInformation {
        code: "HEALTH_CONSTRAINTS".into(),
        message:
            "The overall deployment failed because too many individual instances failed deployment"
                .into(),
    };
    for status in [DeploymentStatus::Failed, DeploymentStatus::Stopped] {
        let JobAnswer::Failed {
            kind,
            message,
            deployment_id,
        } = answer_for("job-1", "d-ABCDEFGHI", status, Some(&error))
        else {
            panic!("{status:?} fails the job");
        };
        assert_eq!(kind, FailureKind::JobFailed);
        assert_eq!(deployment_id.as_deref(), Some("d-ABCDEFGHI"));
        assert!(
            message.contains("HEALTH_CONSTRAINTS") && message.contains("too many individual"),
            "{message}"
        );
    }
}

#[test]
fn refusals_of_what_user_parameters_name_are_configuration_errors_naming_the_field() {
    for (error, field) in [
        (
            ApiError::application_missing("nope"),
            "UserParameters.application",
        ),
        (
            ApiError::group_missing("shop", "nope"),
            "UserParameters.deploymentGroup",
        ),
        (
            ApiError::new(Exception::DeploymentConfigDoesNotExist, "no such config"),
            "UserParameters.deploymentConfig",
        ),
    ] {
        let Ok(JobAnswer::Failed { kind, message, .. }) = configuration_error(error) else {
            panic!("a refusal fails the job");
        };
        assert_eq!(kind, FailureKind::ConfigurationError);
        assert!(message.starts_with(field), "{message}");
    }
    let Ok(JobAnswer::Failed { kind, message, .. }) = configuration_error(ApiError::new(
        Exception::DeploymentLimitExceeded,
        "deployment group web already has an active deployment",
    )) else {
        panic!("a busy group fails the job");
    };
    assert_eq!(kind, FailureKind::JobFailed);
    assert!(message.contains("DeploymentLimitExceeded"), "{message}");
    // Ours, not the job's: the invocation fails and is retried.
    assert!(configuration_error(ApiError::internal("DynamoDB: throttled")).is_err());
}
