//! How a deployment and its targets are shown: `deploymentInfo`, `instanceSummary`,
//! `deploymentTarget`, in CodeDeploy's JSON.

use crate::control::ControlPlane;
use crate::error::ApiError;
use crate::model::{
    BLUE_GREEN, DeploymentSpec, DeploymentStyle, IN_PLACE, LoadBalancerInfo, TargetGroupInfo,
    WITH_TRAFFIC_CONTROL, WITHOUT_TRAFFIC_CONTROL, seconds,
};
use crate::store::DeploymentRecord;
use gantry_api::deployment::{
    BlueGreenProgress, DeploymentInfo, DeploymentOverview, FailedEffectInfo, RelatedDeployments,
};
use gantry_api::target::{DeploymentTarget, InstanceSummary, InstanceTarget, LifecycleEventInfo};
use gantry_core::deployment::TargetState;

/// A deployment's `deploymentInfo`, with the effects that failed for good and the reports
/// refused as forged.
pub(super) async fn deployment_info_with_incidents(
    control: &ControlPlane,
    record: &DeploymentRecord<DeploymentSpec>,
) -> Result<DeploymentInfo, ApiError> {
    let id = &record.spec.deployment_id;
    let mut info = deployment_info(record);
    info.failed_effects = failed_effects(control, id).await?;
    info.forged_reports = control.store.forged_reports(id).await?;
    Ok(info)
}

/// The effects of a deployment (of either platform) that failed for good.
pub(super) async fn failed_effects(
    control: &ControlPlane,
    id: &str,
) -> Result<Vec<FailedEffectInfo>, ApiError> {
    Ok(control
        .store
        .failed_effects(id)
        .await?
        .into_iter()
        .map(|failed| FailedEffectInfo {
            effect: failed.effect,
            reason: failed.reason,
            failures: failed.failures,
            first_time: seconds(failed.first_time),
            last_time: seconds(failed.last_time),
        })
        .collect())
}

/// A deployment as CodeDeploy shows it.
pub fn deployment_info(record: &DeploymentRecord<DeploymentSpec>) -> DeploymentInfo {
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
    let mut rollback = record.rollback_info.clone();
    if rollback.rollback_triggering_deployment_id.is_none() {
        rollback.rollback_triggering_deployment_id = spec.rollback_triggering_deployment_id.clone();
    }
    let fleets = spec.blue_green.clone().unwrap_or_default();
    let blue_green = state.blue_green.as_ref();
    DeploymentInfo {
        application_name: spec.application_name.clone(),
        deployment_group_name: spec.deployment_group_name.clone(),
        deployment_config_name: spec.deployment_config_name.clone(),
        deployment_id: spec.deployment_id.clone(),
        revision: spec.revision.clone(),
        status: state.status,
        create_time: seconds(state.create_time),
        start_time: state.start_time.map(seconds),
        complete_time: state.complete_time.map(seconds),
        deployment_overview: DeploymentOverview {
            pending: counts.pending,
            in_progress: counts.in_progress.saturating_sub(ready + ended_ready),
            succeeded: counts.succeeded,
            failed: counts.failed,
            skipped: counts.skipped + ended_ready,
            ready,
        },
        creator: spec.creator,
        ignore_application_stop_failures: spec.ignore_application_stop_failures,
        auto_rollback_configuration: spec.auto_rollback_configuration.clone(),
        update_outdated_instances_only: spec.update_outdated_instances_only,
        deployment_style: DeploymentStyle {
            deployment_type: if blue_green.is_some() {
                BLUE_GREEN
            } else {
                IN_PLACE
            }
            .to_owned(),
            deployment_option: if spec.target_groups.is_empty() {
                WITHOUT_TRAFFIC_CONTROL
            } else {
                WITH_TRAFFIC_CONTROL
            }
            .to_owned(),
        },
        file_exists_behavior: spec.file_exists_behavior,
        compute_platform: "Server".to_owned(),
        instance_termination_wait_time_started: blue_green
            .is_some_and(|bg| bg.stage == gantry_core::deployment::Stage::TerminationWait),
        blue_green_deployment_configuration: blue_green.and(fleets.configuration.clone()),
        target_instances: blue_green.and(fleets.target_instances.clone()),
        blue_green_progress: blue_green.map(|bg| BlueGreenProgress {
            stage: bg.stage,
            replacement_instances: bg.replacement,
            original_instances: bg.original,
            installed: bg.installed,
            rerouted: bg.rerouted,
            wait_until: bg.wait_until.map(seconds),
            replacement_auto_scaling_group: fleets.replacement_auto_scaling_group.clone(),
            original_auto_scaling_groups: fleets.original_auto_scaling_groups.clone(),
        }),
        override_alarm_configuration: spec.override_alarm_configuration.clone(),
        related_deployments: related_deployments(record),
        previous_revision: spec.previous_revision.clone(),
        load_balancer_info: (!spec.target_groups.is_empty()).then(|| LoadBalancerInfo {
            target_group_info_list: spec
                .target_groups
                .iter()
                .map(|group| TargetGroupInfo {
                    name: group.name.clone(),
                })
                .collect(),
        }),
        description: spec.description.clone(),
        error_information: state.error.clone(),
        rollback_info: (rollback != Default::default()).then_some(rollback),
        failed_effects: Vec::new(),
        forged_reports: 0,
    }
}

/// Its `relatedDeployments`: the update it is of outdated instances, or the updates that
/// followed it.
fn related_deployments(record: &DeploymentRecord<DeploymentSpec>) -> Option<RelatedDeployments> {
    let related = RelatedDeployments {
        auto_update_outdated_instances_root_deployment_id: record
            .spec
            .outdated_root_deployment_id
            .clone(),
        auto_update_outdated_instances_deployment_ids: record.outdated_updates.clone(),
    };
    (related != RelatedDeployments::default()).then_some(related)
}

fn lifecycle_events(target: &TargetState) -> Vec<LifecycleEventInfo> {
    target
        .events
        .iter()
        .map(|event| LifecycleEventInfo {
            lifecycle_event_name: event.event.name().to_owned(),
            status: event.status,
            start_time: event.start_time.map(seconds),
            end_time: event.end_time.map(seconds),
            diagnostics: event.diagnostics.clone(),
        })
        .collect()
}

/// A host as BatchGetDeploymentInstances shows it.
pub(super) fn instance_summary(
    record: &DeploymentRecord<DeploymentSpec>,
    target: &TargetState,
) -> InstanceSummary {
    InstanceSummary {
        deployment_id: record.spec.deployment_id.clone(),
        instance_id: target.target.instance_id.clone(),
        status: shown_status(&record.state, target),
        last_updated_at: target.last_updated().map(seconds),
        lifecycle_events: lifecycle_events(target),
        instance_type: instance_label(&record.state, target.index).to_owned(),
    }
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

/// A host as BatchGetDeploymentTargets shows it.
pub(super) fn target_info(
    control: &ControlPlane,
    record: &DeploymentRecord<DeploymentSpec>,
    target: &TargetState,
) -> DeploymentTarget {
    let id = &target.target.instance_id;
    DeploymentTarget {
        deployment_target_type: "InstanceTarget".to_owned(),
        lambda_target: None,
        instance_target: Some(InstanceTarget {
            deployment_id: record.spec.deployment_id.clone(),
            target_id: id.clone(),
            target_arn: format!(
                "arn:aws:codedeploy:{}:{}:instance/{id}",
                control.settings.region, control.settings.account_id
            ),
            status: shown_status(&record.state, target),
            last_updated_at: target.last_updated().map(seconds),
            lifecycle_events: lifecycle_events(target),
            instance_label: instance_label(&record.state, target.index).to_owned(),
        }),
    }
}
