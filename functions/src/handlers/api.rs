//! api: the rest of CodeDeploy's API for this platform, one area per module
//! (applications, deployment groups, deployment configs, on-premises instances,
//! revisions, deployments and their targets, tags), with the router and the fields
//! every area reads here.
//!
//! The function takes `{"operation": "<CodeDeploy operation name>", "input": {<its
//! input>}}` and answers with that operation's output JSON. Errors are
//! `{"errorType": "<CodeDeploy exception>", "errorMessage": "..."}`.

use crate::control::ControlPlane;
use crate::error::{ApiError, Exception};
use crate::lambda_deployments::LambdaSpec;
use crate::model::DeploymentSpec;
use crate::store::{DeploymentRecord, LambdaRecord, StoreError};
use serde_json::Value;

mod applications;
mod blue_green_config;
mod configs;
mod deployments;
mod group_input;
mod groups;
mod instances;
mod lambda_hooks;
mod lambda_view;
mod paging;
mod rename;
mod render;
mod revisions;
mod tags;
mod targets;

use applications::applications;
use configs::deployment_configs;
use deployments::deployments;
use groups::deployment_groups;
use instances::on_premises_instances;
use revisions::revisions;

fn name_field(input: &Value, field: &str, exception: Exception) -> Result<String, ApiError> {
    match input.get(field).and_then(Value::as_str) {
        Some(value) if !value.is_empty() => Ok(value.to_owned()),
        _ => Err(ApiError::new(exception, format!("{field}: is required"))),
    }
}

fn application_field(input: &Value) -> Result<String, ApiError> {
    name_field(input, "applicationName", Exception::ApplicationNameRequired)
}

fn group_field(input: &Value) -> Result<String, ApiError> {
    name_field(
        input,
        "deploymentGroupName",
        Exception::DeploymentGroupNameRequired,
    )
}

fn names_field(input: &Value, field: &str) -> Result<Vec<String>, ApiError> {
    match input.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|_| ApiError::invalid_input(format!("{field}: must be a list of strings"))),
    }
}

/// The names of a BatchGet operation, at most `limit` of them (CodeDeploy's limits).
fn batch_names(input: &Value, field: &str, limit: usize) -> Result<Vec<String>, ApiError> {
    let names = names_field(input, field)?;
    if names.len() > limit {
        return Err(ApiError::new(
            Exception::BatchLimitExceeded,
            format!("{field}: at most {limit} per call, found {}", names.len()),
        ));
    }
    Ok(names)
}

fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::invalid_input(format!(
            "{field}: must be 1 to 100 characters, found {}",
            name.len()
        )));
    }
    // `#` joins names in storage keys (`app#group` lists a group's deployments), and `/`
    // splits a group's ARN: either would let one name stand for another. A bidirectional
    // control (U+202E and its kin) makes a name read as another in a console or a log.
    if let Some(bad) = name
        .chars()
        .find(|&c| c == '#' || c == '/' || c.is_control() || is_bidi_control(c))
    {
        return Err(ApiError::invalid_input(format!(
            "{field}: {name:?} contains {bad:?}; names may use any characters but '#', '/', control characters and bidirectional controls"
        )));
    }
    Ok(())
}

/// The characters that reorder text: embeddings, overrides, isolates and marks.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Runs one CodeDeploy operation. Each area is its own function, boxed: one async match
/// over every operation kept all their locals in one stack frame (700 KB in debug builds,
/// enough to overflow a 2 MB thread on a deep path).
pub async fn operation(
    control: &ControlPlane,
    name: &str,
    input: Value,
) -> Result<Value, ApiError> {
    match name {
        "CreateApplication"
        | "GetApplication"
        | "BatchGetApplications"
        | "ListApplications"
        | "UpdateApplication"
        | "DeleteApplication" => Box::pin(applications(control, name, input)).await,
        "CreateDeploymentGroup"
        | "GetDeploymentGroup"
        | "BatchGetDeploymentGroups"
        | "ListDeploymentGroups"
        | "UpdateDeploymentGroup"
        | "DeleteDeploymentGroup" => Box::pin(deployment_groups(control, name, input)).await,
        "CreateDeploymentConfig"
        | "GetDeploymentConfig"
        | "ListDeploymentConfigs"
        | "DeleteDeploymentConfig" => Box::pin(deployment_configs(control, name, input)).await,
        "RegisterOnPremisesInstance"
        | "DeregisterOnPremisesInstance"
        | "AddTagsToOnPremisesInstances"
        | "RemoveTagsFromOnPremisesInstances"
        | "GetOnPremisesInstance"
        | "BatchGetOnPremisesInstances"
        | "ListOnPremisesInstances" => Box::pin(on_premises_instances(control, name, input)).await,
        "RegisterApplicationRevision"
        | "GetApplicationRevision"
        | "BatchGetApplicationRevisions"
        | "ListApplicationRevisions" => Box::pin(revisions(control, name, input)).await,
        "CreateDeployment"
        | "GetDeployment"
        | "BatchGetDeployments"
        | "ListDeployments"
        | "ListDeploymentTargets"
        | "ListDeploymentInstances"
        | "BatchGetDeploymentTargets"
        | "GetDeploymentTarget"
        | "GetDeploymentInstance"
        | "BatchGetDeploymentInstances"
        | "StopDeployment"
        | "ContinueDeployment"
        | "SkipWaitTimeForInstanceTermination" => Box::pin(deployments(control, name, input)).await,
        "PutLifecycleEventHookExecutionStatus" => {
            Box::pin(lambda_hooks::put_hook_status(control, &input)).await
        }
        "TagResource" | "UntagResource" | "ListTagsForResource" => {
            Box::pin(tags::operation(control, name, input)).await
        }
        // Gantry keeps no GitHub account connections (CodeDeploy's OAuth tokens): GitHub
        // revisions come with issue 30.
        "ListGitHubAccountTokenNames" | "DeleteGitHubAccountToken" => Err(ApiError::new(
            Exception::OperationNotSupported,
            format!("{name}: Gantry keeps no GitHub account connections"),
        )),
        // Resources made for a CloudFormation stack's blue/green deployment (ECS): Gantry
        // makes none, so there is nothing to delete.
        "DeleteResourcesByExternalId" => Ok(serde_json::json!({})),
        other => Err(unknown_operation(other)),
    }
}

fn unknown_operation(name: &str) -> ApiError {
    ApiError::new(
        Exception::InvalidOperation,
        format!("operation: {name:?} is not an operation Gantry serves"),
    )
}

/// A deployment of either compute platform.
enum AnyDeployment {
    Server(Box<DeploymentRecord<DeploymentSpec>>),
    Lambda(Box<LambdaRecord<LambdaSpec>>),
}

/// A deployment of either platform, or DeploymentDoesNotExistException naming it. An
/// EC2/On-premises deployment is read first: a Lambda one is told by its `platform`.
async fn load_any(control: &ControlPlane, id: &str) -> Result<AnyDeployment, ApiError> {
    match control.store.load_deployment(id).await {
        Ok(record) => Ok(AnyDeployment::Server(Box::new(record))),
        Err(StoreError::NotFound(_)) => Err(ApiError::deployment_missing(id)),
        Err(error) => {
            if control.store.is_lambda_deployment(id).await? == Some(true) {
                let record = control.store.load_lambda_deployment(id).await?;
                return Ok(AnyDeployment::Lambda(Box::new(record)));
            }
            Err(error.into())
        }
    }
}

/// An EC2/On-premises deployment, or DeploymentDoesNotExistException naming it. A Lambda
/// deployment is not one the instance operations read: UnsupportedActionForDeploymentType.
async fn load(
    control: &ControlPlane,
    id: &str,
) -> Result<DeploymentRecord<DeploymentSpec>, ApiError> {
    match load_any(control, id).await? {
        AnyDeployment::Server(record) => Ok(*record),
        AnyDeployment::Lambda(_) => Err(ApiError::new(
            Exception::UnsupportedActionForDeploymentType,
            format!(
                "deploymentId: {id} is a Lambda deployment; this operation reads the instances of EC2/On-premises deployments (a Lambda deployment's target is its alias: ListDeploymentTargets, BatchGetDeploymentTargets)"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_what_would_let_them_pass_for_another() {
        for good in ["shop", "Shop web (eu-west-1)", "café_v2.1"] {
            check_name("applicationName", good).unwrap();
        }
        for bad in [
            "",
            "a#b",
            "a/b",
            "tab\there",
            "admin\u{202E}nimda",
            "x\u{2066}y",
            "\u{200F}rtl",
        ] {
            let error = check_name("applicationName", bad).expect_err(bad);
            assert!(error.message.starts_with("applicationName: "), "{error}");
        }
        check_name("applicationName", &"a".repeat(101)).expect_err("too long");
    }
}
