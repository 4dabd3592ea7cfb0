//! Deployments: Create, Get, BatchGet, List, Stop, Continue, SkipWaitTimeForInstanceTermination,
//! and the reads of their targets.

use super::applications::get_application;
use super::groups::{all_groups, application_groups};
use super::lambda_view;
use super::paging::{PAGE_SIZE, encode_token, page, page_start};
use super::render::{
    deployment_info_with_incidents, failed_effects, instance_summary, target_info,
};
use super::targets::{INSTANCE_LABELS, INSTANCE_STATUSES, filter_values, host_states, list_hosts};
use super::{
    AnyDeployment, batch_names, load, load_any, name_field, names_field, unknown_operation,
};
use crate::control::ControlPlane;
use crate::engine;
use crate::error::{ApiError, Exception};
use crate::lambda_deployments::LambdaSpec;
use crate::model::{now_millis, serialized_name};
use crate::store::LambdaRecord;
use gantry_api::deployment::{ListDeploymentsOutput, StopDeploymentOutput, StopStatus};
use gantry_api::target::{
    BatchGetDeploymentTargetsOutput, GetDeploymentTargetOutput, ListDeploymentInstancesOutput,
    ListDeploymentTargetsOutput,
};
use gantry_core::deployment::{Input, Millis, WaitType};
use serde_json::{Value, json};

/// ListDeployments: a group's deployments, or an application's, or all, newest first,
/// optionally only those with the given statuses and created within a time range
/// (`createTimeRange` `{start, end}`, epoch seconds), a page at a time.
async fn list_deployments(control: &ControlPlane, input: &Value) -> Result<Value, ApiError> {
    let application = input
        .get("applicationName")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty());
    let group = input
        .get("deploymentGroupName")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty());
    let groups: Vec<(String, String)> = match (application, group) {
        (Some(application), Some(group)) => {
            control.load_group(application, group).await?;
            vec![(application.to_owned(), group.to_owned())]
        }
        (None, Some(_)) => {
            return Err(ApiError::new(
                Exception::ApplicationNameRequired,
                "applicationName: is required when deploymentGroupName is given",
            ));
        }
        (Some(application), None) => {
            get_application(control, application).await?;
            application_groups(control, application).await?
        }
        (None, None) => all_groups(control)
            .await?
            .into_iter()
            .map(|group| (group.application_name, group.deployment_group_name))
            .collect(),
    };
    let range = input.get("createTimeRange");
    let bound = |name: &str| -> Result<Option<Millis>, ApiError> {
        match range.and_then(|r| r.get(name)) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_f64()
                .filter(|secs| *secs >= 0.0)
                .map(|secs| Some((secs * 1000.0).round() as Millis))
                .ok_or_else(|| {
                    ApiError::new(
                        Exception::InvalidTimeRange,
                        format!("createTimeRange.{name}: must be a time in epoch seconds"),
                    )
                }),
        }
    };
    let from = bound("start")?.unwrap_or(0);
    let to = bound("end")?.unwrap_or(Millis::MAX / 2);
    if from > to {
        return Err(ApiError::new(
            Exception::InvalidTimeRange,
            "createTimeRange: start is after end",
        ));
    }
    let mut deployments: Vec<(String, Millis)> = Vec::new();
    for (application, group) in &groups {
        deployments.extend(
            control
                .store
                .group_deployments(application, group, from..=to)
                .await?,
        );
    }
    deployments.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let statuses = names_field(input, "includeOnlyStatuses")?;
    for status in &statuses {
        if !DEPLOYMENT_STATUSES.contains(&status.as_str()) {
            return Err(ApiError::new(
                Exception::InvalidDeploymentStatus,
                format!(
                    "includeOnlyStatuses: {status:?} is not one of {}",
                    DEPLOYMENT_STATUSES.join(", ")
                ),
            ));
        }
    }
    let ids: Vec<String> = deployments.into_iter().map(|(id, _)| id).collect();
    if statuses.is_empty() {
        let (ids, next) = page(ids, input, String::clone)?;
        return Ok(json!(ListDeploymentsOutput {
            deployments: ids,
            next_token: next,
        }));
    }
    // Read statuses only as far as one page needs.
    let start = page_start(&ids, input, String::clone)?;
    let mut kept: Vec<String> = Vec::new();
    let mut next = None;
    for id in &ids[start..] {
        if kept.len() == PAGE_SIZE {
            next = kept.last().map(|last| encode_token(last));
            break;
        }
        let status = match load_any(control, id).await? {
            AnyDeployment::Server(record) => record.state.status,
            AnyDeployment::Lambda(record) => record.state.status(),
        };
        if statuses.contains(&serialized_name(&status)) {
            kept.push(id.clone());
        }
    }
    Ok(json!(ListDeploymentsOutput {
        deployments: kept,
        next_token: next,
    }))
}

/// CodeDeploy's deployment statuses a ListDeployments filter may name.
const DEPLOYMENT_STATUSES: [&str; 8] = [
    "Created",
    "Queued",
    "InProgress",
    "Baking",
    "Succeeded",
    "Failed",
    "Stopped",
    "Ready",
];

/// Deployments and their targets.
pub(super) async fn deployments(
    control: &ControlPlane,
    name: &str,
    input: Value,
) -> Result<Value, ApiError> {
    match name {
        "CreateDeployment" => {
            let output = crate::handlers::create_deployment::handle(control, input).await?;
            Ok(json!(output))
        }
        "GetDeployment" => {
            let id = deployment_id_field(&input)?;
            Ok(json!({"deploymentInfo": any_deployment_info(control, &id).await?}))
        }
        "BatchGetDeployments" => {
            // As CodeDeploy: the deployments found; ids of none are left out. At most
            // 25 ids, as its model documents.
            let mut infos = Vec::new();
            for id in batch_names(&input, "deploymentIds", 25)? {
                gantry_core::wire::check_deployment_id(&id).map_err(|error| {
                    ApiError::new(
                        Exception::InvalidDeploymentId,
                        format!("deploymentIds: {error}"),
                    )
                })?;
                match any_deployment_info(control, &id).await {
                    Ok(info) => infos.push(info),
                    Err(error) if error.code == Exception::DeploymentDoesNotExist => {}
                    Err(error) => return Err(error),
                }
            }
            Ok(json!({"deploymentsInfo": infos}))
        }
        "ListDeployments" => list_deployments(control, &input).await,
        "ListDeploymentTargets" => {
            let id = deployment_id_field(&input)?;
            let record = match load_any(control, &id).await? {
                AnyDeployment::Server(record) => *record,
                AnyDeployment::Lambda(record) => {
                    return Ok(json!(ListDeploymentTargetsOutput {
                        target_ids: vec![lambda_view::target_id(&record.state)],
                        next_token: None,
                    }));
                }
            };
            let filters = input.get("targetFilters");
            let statuses = filter_values(
                filters.and_then(|f| f.get("TargetStatus")),
                "targetFilters.TargetStatus",
                &INSTANCE_STATUSES,
                Exception::InvalidInput,
            )?;
            let labels = filter_values(
                filters.and_then(|f| f.get("ServerInstanceLabel")),
                "targetFilters.ServerInstanceLabel",
                &INSTANCE_LABELS,
                Exception::InvalidInput,
            )?;
            let (target_ids, next_token) =
                list_hosts(control, &record, &input, statuses, labels).await?;
            Ok(json!(ListDeploymentTargetsOutput {
                target_ids,
                next_token
            }))
        }
        "ListDeploymentInstances" => {
            let id = deployment_id_field(&input)?;
            let record = load(control, &id).await?;
            let statuses = filter_values(
                input.get("instanceStatusFilter"),
                "instanceStatusFilter",
                &INSTANCE_STATUSES,
                Exception::InvalidInstanceStatus,
            )?;
            let types = filter_values(
                input.get("instanceTypeFilter"),
                "instanceTypeFilter",
                &INSTANCE_LABELS,
                Exception::InvalidInstanceType,
            )?;
            let (instances_list, next_token) =
                list_hosts(control, &record, &input, statuses, types).await?;
            Ok(json!(ListDeploymentInstancesOutput {
                instances_list,
                next_token
            }))
        }
        "BatchGetDeploymentTargets" | "GetDeploymentTarget" => {
            let id = deployment_id_field(&input)?;
            let (field, wanted) = if name == "GetDeploymentTarget" {
                let target = name_field(&input, "targetId", Exception::DeploymentTargetIdRequired)?;
                ("targetId", vec![target])
            } else {
                // At most 25; more is DeploymentTargetListSizeExceededException, the
                // one the model names for this operation.
                let targets = batch_names(&input, "targetIds", 25).map_err(|error| {
                    ApiError::new(Exception::DeploymentTargetListSizeExceeded, error.message)
                })?;
                ("targetIds", targets)
            };
            let record = match load_any(control, &id).await? {
                AnyDeployment::Server(record) => *record,
                AnyDeployment::Lambda(record) => {
                    return lambda_targets(control, &record, name, field, &wanted);
                }
            };
            let mut targets = Vec::new();
            for (target_id, state) in host_states(control, &record, &wanted, &mut None).await? {
                let state = state.ok_or_else(|| {
                    ApiError::new(
                        Exception::DeploymentTargetDoesNotExist,
                        format!("{field}: {target_id} is not a target of {id}"),
                    )
                })?;
                targets.push(target_info(control, &record, &state));
            }
            // GetDeploymentTarget found its one target, or answered the error above.
            if name == "GetDeploymentTarget"
                && let Some(deployment_target) = targets.pop()
            {
                return Ok(json!(GetDeploymentTargetOutput { deployment_target }));
            }
            Ok(json!(BatchGetDeploymentTargetsOutput {
                deployment_targets: targets
            }))
        }
        "GetDeploymentInstance" => {
            let id = deployment_id_field(&input)?;
            let record = load(control, &id).await?;
            let instance = name_field(&input, "instanceId", Exception::InstanceIdRequired)?;
            let states = host_states(control, &record, &[instance], &mut None).await?;
            let (instance, state) = states.into_iter().next().expect("one asked, one answered");
            let state = state.ok_or_else(|| {
                ApiError::new(
                    Exception::InstanceDoesNotExist,
                    format!("instanceId: {instance} is not an instance of {id}"),
                )
            })?;
            Ok(json!({"instanceSummary": instance_summary(&record, &state)}))
        }
        "BatchGetDeploymentInstances" => {
            let id = deployment_id_field(&input)?;
            let record = load(control, &id).await?;
            let wanted = batch_names(&input, "instanceIds", 25)?;
            if wanted.is_empty() {
                return Err(ApiError::new(
                    Exception::InstanceIdRequired,
                    "instanceIds: is required",
                ));
            }
            let mut summaries = Vec::new();
            let mut missing = Vec::new();
            for (instance, state) in host_states(control, &record, &wanted, &mut None).await? {
                match state {
                    Some(state) => summaries.push(instance_summary(&record, &state)),
                    None => missing.push(instance),
                }
            }
            let mut output = json!({"instancesSummary": summaries});
            if !missing.is_empty() {
                output["errorMessage"] = json!(format!(
                    "instanceIds: not instances of {id}: {}",
                    missing.join(", ")
                ));
            }
            Ok(output)
        }
        "StopDeployment" => {
            let id = deployment_id_field(&input)?;
            let rollback = input.get("autoRollbackEnabled").and_then(Value::as_bool);
            stop(control, &id, rollback).await
        }
        "ContinueDeployment" => continue_deployment(control, &input).await,
        "SkipWaitTimeForInstanceTermination" => {
            let mut input = input;
            input["deploymentWaitType"] = json!("TERMINATION_WAIT");
            continue_deployment(control, &input).await
        }
        other => Err(unknown_operation(other)),
    }
}

/// GetDeployment's `deploymentInfo` of a deployment of either platform.
async fn any_deployment_info(control: &ControlPlane, id: &str) -> Result<Value, ApiError> {
    Ok(match load_any(control, id).await? {
        AnyDeployment::Server(record) => {
            json!(deployment_info_with_incidents(control, &record).await?)
        }
        AnyDeployment::Lambda(record) => {
            let mut info = lambda_view::deployment_info(&record);
            info.failed_effects = failed_effects(control, id).await?;
            json!(info)
        }
    })
}

/// BatchGetDeploymentTargets and GetDeploymentTarget of a Lambda deployment: its one
/// target, the alias (`function:alias`).
fn lambda_targets(
    control: &ControlPlane,
    record: &LambdaRecord<LambdaSpec>,
    operation: &str,
    field: &str,
    wanted: &[String],
) -> Result<Value, ApiError> {
    let id = &record.spec.deployment_id;
    let target_id = lambda_view::target_id(&record.state);
    if let Some(other) = wanted.iter().find(|wanted| **wanted != target_id) {
        return Err(ApiError::new(
            Exception::DeploymentTargetDoesNotExist,
            format!("{field}: {other} is not a target of {id}; its one target is {target_id}"),
        ));
    }
    let target = lambda_view::target(control, record);
    if operation == "GetDeploymentTarget" {
        return Ok(json!(GetDeploymentTargetOutput {
            deployment_target: target
        }));
    }
    Ok(json!(BatchGetDeploymentTargetsOutput {
        deployment_targets: wanted.iter().map(|_| target.clone()).take(1).collect()
    }))
}

/// ContinueDeployment: ends a blue/green deployment's wait, READY_WAIT (traffic is
/// rerouted now) or TERMINATION_WAIT (the original fleet is terminated now, as
/// SkipWaitTimeForInstanceTermination does). CodeDeploy's answers otherwise: an ended
/// deployment is completed already, an in-place one does not support the action, and
/// one that is not in that wait is not ready.
async fn continue_deployment(control: &ControlPlane, input: &Value) -> Result<Value, ApiError> {
    let id = deployment_id_field(input)?;
    let wait = match input.get("deploymentWaitType").filter(|v| !v.is_null()) {
        None => WaitType::ReadyWait,
        Some(wait) => match wait.as_str() {
            Some("READY_WAIT") => WaitType::ReadyWait,
            Some("TERMINATION_WAIT") => WaitType::TerminationWait,
            _ => {
                return Err(ApiError::new(
                    Exception::InvalidDeploymentWaitType,
                    format!("deploymentWaitType: {wait} is not READY_WAIT or TERMINATION_WAIT"),
                ));
            }
        },
    };
    let record = load(control, &id).await?;
    let status = serialized_name(&record.state.status);
    if record.state.status.is_terminal() {
        return Err(ApiError::new(
            Exception::DeploymentAlreadyCompleted,
            format!("deploymentId: deployment {id} already ended with status {status}"),
        ));
    }
    if record.state.blue_green.is_none() {
        return Err(ApiError::new(
            Exception::UnsupportedActionForDeploymentType,
            format!(
                "deploymentId: deployment {id} is an IN_PLACE deployment ({status}); ContinueDeployment applies to blue/green deployments waiting for traffic rerouting or for the original instances' termination"
            ),
        ));
    }
    let applied = engine::step(
        control,
        &id,
        &[Input::Continue {
            wait,
            now: now_millis(),
        }],
    )
    .await?;
    if let Some((_, error)) = applied.refused.first() {
        let stage = applied
            .record
            .state
            .blue_green
            .as_ref()
            .map(|bg| format!("{:?}", bg.stage))
            .unwrap_or_default();
        return Err(ApiError::new(
            Exception::DeploymentIsNotInReadyState,
            format!(
                "deploymentId: deployment {id} is not waiting for that ({error}); it is {status}, at stage {stage}"
            ),
        ));
    }
    Ok(json!({}))
}

/// A `deploymentId` that is given and has CodeDeploy's form (`d-` and nine of A-Z, 0-9).
pub(super) fn deployment_id_field(input: &Value) -> Result<String, ApiError> {
    let id = name_field(input, "deploymentId", Exception::DeploymentIdRequired)?;
    gantry_core::wire::check_deployment_id(&id)
        .map_err(|error| ApiError::new(Exception::InvalidDeploymentId, error.to_string()))?;
    Ok(id)
}

/// StopDeployment.
/// StopDeployment. Returns CodeDeploy's `{status, statusMessage}`.
pub(super) async fn stop(
    control: &ControlPlane,
    deployment_id: &str,
    auto_rollback_enabled: Option<bool>,
) -> Result<serde_json::Value, ApiError> {
    let record = match load_any(control, deployment_id).await? {
        AnyDeployment::Server(record) => *record,
        AnyDeployment::Lambda(record) => return stop_lambda(control, &record).await,
    };
    if record.state.status.is_terminal() {
        return Err(ApiError::new(
            Exception::DeploymentAlreadyCompleted,
            format!(
                "deployment {deployment_id} already ended with status {:?}",
                record.state.status
            ),
        ));
    }
    let rollback = auto_rollback_enabled.unwrap_or(false);
    let applied = engine::step(
        control,
        deployment_id,
        &[Input::Stop {
            now: now_millis(),
            rollback,
        }],
    )
    .await?;
    // As CodeDeploy answers: Pending while hosts still finish the event they were
    // running (each was told to skip the rest), Succeeded once none is.
    let finishing = applied.record.state.counts().in_progress;
    let rolling_back = if rollback {
        "; rolling back to the last successful revision"
    } else {
        ""
    };
    Ok(json!(if finishing > 0 {
        StopDeploymentOutput {
            status: StopStatus::Pending,
            status_message: format!(
                "Deployment {deployment_id} stopped{rolling_back}; {finishing} instance(s) are finishing their current lifecycle event and skip the rest"
            ),
        }
    } else {
        StopDeploymentOutput {
            status: StopStatus::Succeeded,
            status_message: format!("Deployment {deployment_id} stopped{rolling_back}"),
        }
    }))
}

/// StopDeployment of a Lambda deployment: the alias goes back to the current version at
/// once, whatever `autoRollbackEnabled` says (a half-shifted alias is never left behind).
async fn stop_lambda(
    control: &ControlPlane,
    record: &LambdaRecord<LambdaSpec>,
) -> Result<Value, ApiError> {
    let id = &record.spec.deployment_id;
    let stopped = Box::pin(crate::lambda_deployments::step(
        control,
        id,
        gantry_core::lambda::Input::Stop { now: now_millis() },
    ))
    .await?;
    let moved = if record.state.weight > 0 {
        format!(
            "; alias {} of {} is back on version {}",
            stopped.state.alias.alias,
            stopped.state.alias.function_name,
            stopped.state.alias.current_version
        )
    } else {
        String::new()
    };
    Ok(json!(StopDeploymentOutput {
        status: StopStatus::Succeeded,
        status_message: format!("Deployment {id} stopped{moved}"),
    }))
}
