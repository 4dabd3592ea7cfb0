//! Lambda deployments as the API shows them: `deploymentInfo`, and their one target, the
//! alias, as `lambdaTarget` (ListDeploymentTargets, BatchGetDeploymentTargets,
//! GetDeploymentTarget).

use crate::control::ControlPlane;
use crate::lambda_deployments::{LambdaSpec, overview};
use crate::model::{DeploymentStyle, LAMBDA_PLATFORM, WITH_TRAFFIC_CONTROL, seconds};
use crate::store::LambdaRecord;
use gantry_api::lambda::{LambdaDeploymentInfo, LambdaRevision, RawString};
use gantry_api::target::{DeploymentTarget, LambdaFunctionInfo, LambdaTarget, LifecycleEventInfo};
use gantry_core::deployment::{DeploymentStatus, TargetStatus};
use gantry_core::lambda::{HookEvent, LambdaDeployment, Stage};
use gantry_core::wire::EventStatus;

/// A Lambda deployment's `deploymentInfo`.
pub(super) fn deployment_info(record: &LambdaRecord<LambdaSpec>) -> LambdaDeploymentInfo {
    let spec = &record.spec;
    let state = &record.state;
    LambdaDeploymentInfo {
        application_name: spec.application_name.clone(),
        deployment_group_name: spec.deployment_group_name.clone(),
        deployment_config_name: spec.deployment_config_name.clone(),
        deployment_id: spec.deployment_id.clone(),
        revision: spec.revision.clone().unwrap_or(LambdaRevision::String {
            string: RawString {
                content: String::new(),
                sha256: None,
            },
        }),
        status: state.status(),
        create_time: seconds(state.create_time),
        start_time: state.start_time.map(seconds),
        complete_time: state.complete_time.map(seconds),
        deployment_overview: overview(state.status()),
        creator: spec.creator,
        auto_rollback_configuration: spec.auto_rollback_configuration.clone(),
        deployment_style: DeploymentStyle {
            deployment_type: crate::model::BLUE_GREEN.to_owned(),
            deployment_option: WITH_TRAFFIC_CONTROL.to_owned(),
        },
        compute_platform: LAMBDA_PLATFORM.to_owned(),
        override_alarm_configuration: spec.override_alarm_configuration.clone(),
        description: spec.description.clone(),
        error_information: state.error.clone(),
        failed_effects: Vec::new(),
    }
}

/// The deployment's one target id: `function:alias`, the function by name.
pub(super) fn target_id(state: &LambdaDeployment) -> String {
    state.alias.target_id()
}

/// The alias as `lambdaTarget`.
pub(super) fn target(
    control: &ControlPlane,
    record: &LambdaRecord<LambdaSpec>,
) -> DeploymentTarget {
    let state = &record.state;
    let settings = &control.settings;
    let id = target_id(state);
    let events = lifecycle_events(state);
    let last_updated = events
        .iter()
        .flat_map(|event| [event.start_time, event.end_time])
        .flatten()
        .chain(state.complete_time.map(seconds))
        .fold(None, |latest: Option<f64>, time| {
            Some(latest.map_or(time, |l| l.max(time)))
        });
    let next = state.next_step();
    DeploymentTarget {
        deployment_target_type: "LambdaTarget".to_owned(),
        instance_target: None,
        lambda_target: Some(LambdaTarget {
            deployment_id: record.spec.deployment_id.clone(),
            target_arn: format!(
                "arn:aws:lambda:{}:{}:function:{id}",
                settings.region, settings.account_id
            ),
            target_id: id,
            status: match state.status() {
                DeploymentStatus::Created => TargetStatus::Pending,
                DeploymentStatus::InProgress => TargetStatus::InProgress,
                DeploymentStatus::Succeeded => TargetStatus::Succeeded,
                DeploymentStatus::Failed | DeploymentStatus::Stopped => TargetStatus::Failed,
            },
            last_updated_at: last_updated,
            lifecycle_events: events,
            lambda_function_info: LambdaFunctionInfo {
                function_name: state.alias.function_name.clone(),
                function_alias: state.alias.alias.clone(),
                current_version: state.alias.current_version.clone(),
                target_version: state.alias.target_version.clone(),
                target_version_weight: f64::from(state.weight),
                next_step_time: next.map(|(due, _)| seconds(due)),
                next_step_weight: next.map(|(_, percent)| f64::from(percent)),
            },
        }),
    }
}

/// BeforeAllowTraffic (when the AppSpec names a hook for it), AllowTraffic (the shift),
/// AfterAllowTraffic (likewise).
fn lifecycle_events(state: &LambdaDeployment) -> Vec<LifecycleEventInfo> {
    let hook_event = |event: HookEvent| {
        state.hook(event).map(|hook| LifecycleEventInfo {
            lifecycle_event_name: event.to_string(),
            status: hook.status,
            start_time: hook.start_time.map(seconds),
            end_time: hook.end_time.map(seconds),
            diagnostics: None,
        })
    };
    let after = state.hook(HookEvent::AfterAllowTraffic);
    let shifted = matches!(state.stage, Stage::AfterAllowTraffic | Stage::Succeeded)
        || after.is_some_and(|hook| hook.start_time.is_some());
    let status = if shifted {
        EventStatus::Succeeded
    } else {
        match state.stage {
            Stage::Created | Stage::BeforeAllowTraffic => EventStatus::Pending,
            Stage::Shifting => EventStatus::InProgress,
            _ if state.shifting_start.is_some() => EventStatus::Failed,
            _ => EventStatus::Skipped,
        }
    };
    let end = if shifted {
        after
            .and_then(|hook| hook.start_time)
            .or(state.complete_time)
    } else if status == EventStatus::Failed {
        state.complete_time
    } else {
        None
    };
    let allow_traffic = LifecycleEventInfo {
        lifecycle_event_name: "AllowTraffic".to_owned(),
        status,
        start_time: state.shifting_start.map(seconds),
        end_time: end.map(seconds),
        diagnostics: None,
    };
    hook_event(HookEvent::BeforeAllowTraffic)
        .into_iter()
        .chain([allow_traffic])
        .chain(hook_event(HookEvent::AfterAllowTraffic))
        .collect()
}
