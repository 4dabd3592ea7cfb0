//! A deployment group's Auto Scaling lifecycle hooks: put on the Auto Scaling groups it
//! deploys to (when the group is created or updated, and when a blue/green deployment's
//! copy is adopted), removed from those it leaves. Below both the API and blue/green,
//! which share it.

use crate::adapters::{HookKind, MANAGED_TAG};
use crate::control::ControlPlane;
use crate::error::{ApiError, Exception};
use crate::model::DeploymentGroupSettings;
use serde_json::{Value, json};

/// The hooks a group puts on each of its Auto Scaling groups: the launch hook, and with
/// `terminationHookEnabled` the termination hook.
pub(crate) fn hook_kinds(settings: &DeploymentGroupSettings) -> Vec<HookKind> {
    HookKind::ALL
        .into_iter()
        .filter(|kind| *kind == HookKind::Launch || settings.termination_hook_enabled)
        .collect()
}

/// What a group's hooks carry to the lifecycle function: which group a launch is for.
pub(crate) fn hook_metadata(application: &str, group: &str) -> String {
    json!({"applicationName": application, "deploymentGroupName": group}).to_string()
}

/// Puts the group's hooks on `added`, Auto Scaling groups it starts deploying to (a
/// blue/green deployment's copy, as the group adopts it).
pub(crate) async fn put_group_hooks(
    control: &ControlPlane,
    settings: &DeploymentGroupSettings,
    added: &[String],
) -> Result<(), ApiError> {
    put_hooks(
        control,
        &settings.application_name,
        &settings.deployment_group_name,
        &settings.deployment_group_id,
        &hook_kinds(settings),
        added,
    )
    .await
}

/// Puts the group's hooks of `kinds` on each of `added`, the Auto Scaling groups it
/// starts deploying to. If one cannot be put, those put are removed again.
pub(crate) async fn put_hooks(
    control: &ControlPlane,
    application: &str,
    group: &str,
    deployment_group_id: &str,
    kinds: &[HookKind],
    added: &[String],
) -> Result<(), ApiError> {
    if added.is_empty() || kinds.is_empty() {
        return Ok(());
    }
    let (Some(queue), Some(role)) = (
        control.settings.lifecycle_queue_arn.as_deref(),
        control.settings.lifecycle_role_arn.as_deref(),
    ) else {
        return Err(ApiError::invalid_input(
            "autoScalingGroups: this Gantry has no lifecycle queue configured (GANTRY_LIFECYCLE_QUEUE_ARN and GANTRY_LIFECYCLE_ROLE_ARN), so it cannot deploy to instances as they launch",
        ));
    };
    let (missing, untagged) = control.lifecycle.unusable(added).await?;
    if let Some(name) = missing.first() {
        return Err(ApiError::new(
            Exception::InvalidAutoScalingGroup,
            format!("autoScalingGroups: there is no Auto Scaling group named {name:?}"),
        ));
    }
    if !untagged.is_empty() {
        return Err(ApiError::new(
            Exception::InvalidAutoScalingGroup,
            format!(
                "autoScalingGroups: {} not tagged {MANAGED_TAG}=true; tag each Auto Scaling group Gantry may deploy to (Gantry's role may put lifecycle hooks only on groups so tagged)",
                untagged.join(", ")
            ),
        ));
    }
    // With a lifecycle topic, Auto Scaling notifies it and the topic the queue.
    let target = control
        .settings
        .lifecycle_topic_arn
        .as_deref()
        .unwrap_or(queue);
    let metadata = hook_metadata(application, group);
    for (index, auto_scaling_group) in added.iter().enumerate() {
        for kind in kinds {
            let hook = kind.hook_name(deployment_group_id);
            if let Err(error) = control
                .lifecycle
                .put(auto_scaling_group, *kind, &hook, target, role, &metadata)
                .await
            {
                remove_hooks(control, deployment_group_id, kinds, &added[..=index]).await;
                return Err(error);
            }
        }
    }
    Ok(())
}

/// Removes the group's hooks of `kinds` from each of `removed`, the Auto Scaling groups
/// it no longer deploys to; answers those it could not remove from, as CodeDeploy's
/// `hooksNotCleanedUp` lists them.
pub(crate) async fn remove_hooks(
    control: &ControlPlane,
    deployment_group_id: &str,
    kinds: &[HookKind],
    removed: &[String],
) -> Vec<Value> {
    let mut not_cleaned_up = Vec::new();
    for auto_scaling_group in removed {
        for kind in kinds {
            let hook = kind.hook_name(deployment_group_id);
            if let Err(error) = control.lifecycle.delete(auto_scaling_group, &hook).await {
                tracing::warn!(%error, auto_scaling_group, "lifecycle hook not removed");
                not_cleaned_up.push(json!({"name": auto_scaling_group, "hook": hook}));
            }
        }
    }
    not_cleaned_up
}
