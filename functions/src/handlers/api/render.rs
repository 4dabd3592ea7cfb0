//! How a deployment and its targets are shown: `deploymentInfo`, `instanceSummary`,
//! `deploymentTarget`, in CodeDeploy's JSON.

use super::load;
use crate::control::ControlPlane;
use crate::error::ApiError;
use crate::model::{
    BLUE_GREEN, DeploymentSpec, IN_PLACE, WITH_TRAFFIC_CONTROL, WITHOUT_TRAFFIC_CONTROL, seconds,
    serialized_name,
};
use crate::store::DeploymentRecord;
use gantry_core::deployment::{Millis, TargetState};
use serde_json::{Value, json};

pub(super) fn time(millis: Option<Millis>) -> Value {
    millis.map_or(Value::Null, |millis| json!(seconds(millis)))
}

/// GetDeployment's `deploymentInfo` with what Gantry adds, when there is any: the
/// effects that failed for good (`failedEffects`, a notification to a deleted topic, say)
/// and how many reports were dropped because their host did not send them
/// (`forgedReports`). CodeDeploy's clients ignore both.
pub(super) async fn deployment_info_with_incidents(
    control: &ControlPlane,
    id: &str,
) -> Result<Value, ApiError> {
    let mut info = deployment_info(&load(control, id).await?);
    let failed = control.store.failed_effects(id).await?;
    if !failed.is_empty() {
        info["failedEffects"] = failed
            .iter()
            .map(|failed| {
                json!({
                    "effect": failed.effect,
                    "reason": failed.reason,
                    "failures": failed.failures,
                    "firstTime": seconds(failed.first_time),
                    "lastTime": seconds(failed.last_time),
                })
            })
            .collect();
    }
    let forged = control.store.forged_reports(id).await?;
    if forged > 0 {
        info["forgedReports"] = json!(forged);
    }
    Ok(info)
}

/// GetDeployment's `deploymentInfo`.
pub fn deployment_info(record: &DeploymentRecord<DeploymentSpec>) -> Value {
    let spec = &record.spec;
    let state = &record.state;
    let counts = state.counts();
    // Ready hosts are deploying hosts that wait for traffic; once the deployment ended,
    // they never will, and count as skipped.
    let ready = state
        .blue_green
        .as_ref()
        .map_or(0, |bg| bg.installed.saturating_sub(bg.rerouted));
    let (ready, ended_ready) = match state.status.is_terminal() {
        true => (0, ready),
        false => (ready, 0),
    };
    let start_time = state.start_time;
    let mut rollback = record.rollback_info.clone();
    if rollback.rollback_triggering_deployment_id.is_none() {
        rollback.rollback_triggering_deployment_id = spec.rollback_triggering_deployment_id.clone();
    }
    let mut info = json!({
        "applicationName": spec.application_name,
        "deploymentGroupName": spec.deployment_group_name,
        "deploymentConfigName": spec.deployment_config_name,
        "deploymentId": spec.deployment_id,
        "revision": spec.revision,
        "status": serialized_name(&state.status),
        "createTime": seconds(state.create_time),
        "startTime": time(start_time),
        "completeTime": time(state.complete_time),
        "deploymentOverview": {
            "Pending": counts.pending,
            "InProgress": counts.in_progress.saturating_sub(ready + ended_ready),
            "Succeeded": counts.succeeded,
            "Failed": counts.failed,
            "Skipped": counts.skipped + ended_ready,
            "Ready": ready,
        },
        "creator": spec.creator,
        "ignoreApplicationStopFailures": spec.ignore_application_stop_failures,
        "autoRollbackConfiguration": spec.auto_rollback_configuration,
        "updateOutdatedInstancesOnly": spec.update_outdated_instances_only,
        "deploymentStyle": {
            "deploymentType": if state.blue_green.is_some() { BLUE_GREEN } else { IN_PLACE },
            "deploymentOption": if spec.target_groups.is_empty() { WITHOUT_TRAFFIC_CONTROL } else { WITH_TRAFFIC_CONTROL },
        },
        "fileExistsBehavior": spec.file_exists_behavior,
        "computePlatform": "Server",
        "instanceTerminationWaitTimeStarted": state
            .blue_green
            .as_ref()
            .is_some_and(|bg| bg.stage == gantry_core::deployment::Stage::TerminationWait),
    });
    if let Some(bg) = &state.blue_green {
        // Gantry's own: where the deployment stands, for `gantry deploy` to show.
        let fleets = spec.blue_green.clone().unwrap_or_default();
        info["blueGreenProgress"] = json!({
            "stage": bg.stage,
            "replacementInstances": bg.replacement,
            "originalInstances": bg.original,
            "installed": bg.installed,
            "rerouted": bg.rerouted,
            "waitUntil": time(bg.wait_until),
            "replacementAutoScalingGroup": fleets.replacement_auto_scaling_group,
            "originalAutoScalingGroups": fleets.original_auto_scaling_groups,
        });
        if let Some(configuration) = &fleets.configuration {
            info["blueGreenDeploymentConfiguration"] = json!(configuration);
        }
        if let Some(target_instances) = &fleets.target_instances {
            info["targetInstances"] = target_instances.clone();
        }
    }
    if let Some(alarms) = &spec.override_alarm_configuration {
        info["overrideAlarmConfiguration"] = json!(alarms);
    }
    if let Some(previous) = &spec.previous_revision {
        info["previousRevision"] = json!(previous);
    }
    if !spec.target_groups.is_empty() {
        let groups: Vec<Value> = spec
            .target_groups
            .iter()
            .map(|group| json!({"name": group.name}))
            .collect();
        info["loadBalancerInfo"] = json!({"targetGroupInfoList": groups});
    }
    if let Some(description) = &spec.description {
        info["description"] = json!(description);
    }
    if let Some(error) = &state.error {
        info["errorInformation"] = json!({"code": error.code, "message": error.message});
    }
    if rollback != Default::default() {
        info["rollbackInfo"] = json!(rollback);
    }
    info
}

/// A host's lifecycle events, with their diagnostics.
fn lifecycle_events(target: &TargetState) -> Vec<Value> {
    target
        .events
        .iter()
        .map(|event| {
            let mut value = json!({
                "lifecycleEventName": event.event.name(),
                "status": serialized_name(&event.status),
                "startTime": time(event.start_time),
                "endTime": time(event.end_time),
            });
            if let Some(diagnostics) = &event.diagnostics {
                value["diagnostics"] = json!(diagnostics);
            }
            value
        })
        .collect()
}

/// An `instancesSummary` entry (GetDeploymentInstance, BatchGetDeploymentInstances).
pub(super) fn instance_summary(
    record: &DeploymentRecord<DeploymentSpec>,
    target: &TargetState,
) -> Value {
    json!({
        "deploymentId": record.spec.deployment_id,
        "instanceId": target.target.instance_id,
        "status": serialized_name(&shown_status(&record.state, target)),
        "lastUpdatedAt": time(target.last_updated()),
        "lifecycleEvents": lifecycle_events(target),
        "instanceType": instance_label(&record.state, target.index),
    })
}

/// A host's status as readers see it: a blue/green replacement host left Ready when its
/// deployment ended never gets traffic, and is Skipped.
pub(super) fn shown_status(
    state: &gantry_core::deployment::Deployment,
    target: &TargetState,
) -> gantry_core::deployment::TargetStatus {
    use gantry_core::deployment::TargetStatus;
    match target.status {
        TargetStatus::Ready if state.status.is_terminal() => TargetStatus::Skipped,
        status => status,
    }
}

/// CodeDeploy's label of a deployment's host: Green in a blue/green deployment's
/// replacement fleet, else Blue (the original fleet, and every host in place).
pub(super) fn instance_label(
    state: &gantry_core::deployment::Deployment,
    index: u32,
) -> &'static str {
    match &state.blue_green {
        Some(bg) if bg.is_replacement(index) => "Green",
        _ => "Blue",
    }
}

/// One `deploymentTargets` entry: the instance with its lifecycle events and diagnostics.
pub(super) fn target_info(
    control: &ControlPlane,
    record: &DeploymentRecord<DeploymentSpec>,
    target: &TargetState,
) -> Value {
    let events = lifecycle_events(target);
    let last_updated = target.last_updated();
    let status = serialized_name(&shown_status(&record.state, target));
    let id = &target.target.instance_id;
    json!({
        "deploymentTargetType": "InstanceTarget",
        "instanceTarget": {
            "deploymentId": record.spec.deployment_id,
            "targetId": id,
            "targetArn": format!(
                "arn:aws:codedeploy:{}:{}:instance/{id}",
                control.settings.region, control.settings.account_id
            ),
            "status": status,
            "lastUpdatedAt": time(last_updated),
            "lifecycleEvents": events,
            "instanceLabel": instance_label(&record.state, target.index),
        },
    })
}
