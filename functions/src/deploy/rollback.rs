//! Rollbacks (a failed or stopped deployment's group back to its last good revision)
//! and the update of instances that launched during a deployment.

use super::create::create;
use super::gather::standing;
use super::{CreateDeploymentInput, Created, Origin, new_deployment_id};
use crate::adapters::Host;
use crate::control::ControlPlane;
use crate::error::{ApiError, Exception};
use crate::model::{AutoRollbackConfiguration, DeploymentSpec, RollbackInfo};
use crate::store::{DeploymentRecord, StoreError};
use gantry_core::deployment::NotificationEvent;
use gantry_core::planner::Standing;
use gantry_core::wire::Creator;

/// Redeploys the group's last successful revision, replacing `record`'s deployment, and
/// returns the rollback (None when there is nothing to roll back to, another deployment
/// took the group, or an earlier call created it). Safe to run twice: the first call
/// claims the rollback's id on the original.
pub async fn start_rollback(
    control: &ControlPlane,
    record: &DeploymentRecord<DeploymentSpec>,
) -> Result<Option<Created>, ApiError> {
    let spec = &record.spec;
    let original = &spec.deployment_id;
    let group = control
        .load_group(&spec.application_name, &spec.deployment_group_name)
        .await?;
    let target = group
        .last_successful
        .as_ref()
        .zip(group.target_revision.clone());
    let no_rollback = |why: &str| RollbackInfo {
        rollback_message: Some(format!(
            "No rollback: {why} in deployment group {}.",
            spec.deployment_group_name
        )),
        ..RollbackInfo::default()
    };
    let Some((last, revision)) = target.filter(|(last, _)| &last.deployment_id != original) else {
        let info = no_rollback("there is no earlier successful deployment to roll back to");
        control.store.link_rollback(original, &info).await?;
        tracing::warn!("no successful deployment to roll back to");
        return Ok(None);
    };
    let restored = match control
        .store
        .load_deployment::<DeploymentSpec>(&last.deployment_id)
        .await
    {
        Ok(found) => found.spec,
        // Its record is gone (deleted by hand): the failed deployment's options stand in.
        Err(StoreError::NotFound(_)) => spec.clone(),
        Err(error) => return Err(error.into()),
    };
    // Whoever claims first decides the rollback's id; the original links to it only
    // once it exists, so nobody following the link finds nothing.
    let rollback_id = control
        .store
        .claim_rollback(original, &new_deployment_id())
        .await?;
    let link = RollbackInfo {
        rollback_deployment_id: Some(rollback_id.clone()),
        ..RollbackInfo::default()
    };
    match control
        .store
        .load_deployment::<DeploymentSpec>(&rollback_id)
        .await
    {
        Ok(_) => {
            // Created by an earlier call that may have stopped before linking.
            control.store.link_rollback(original, &link).await?;
            return Ok(None);
        }
        Err(StoreError::NotFound(_)) => {}
        Err(error) => return Err(error.into()),
    }
    let input = CreateDeploymentInput {
        application_name: spec.application_name.clone(),
        deployment_group_name: spec.deployment_group_name.clone(),
        revision: Some(revision),
        deployment_config_name: Some(spec.deployment_config_name.clone()),
        description: Some(format!(
            "Rollback of {original} to {} (the last successful deployment)",
            last.deployment_id
        )),
        ignore_application_stop_failures: spec.ignore_application_stop_failures,
        // A rollback never rolls itself back.
        auto_rollback_configuration: Some(AutoRollbackConfiguration::default()),
        // The content option of the deployment whose revision comes back, as CodeDeploy
        // applies it (the failed deployment's may have been DISALLOW, say, where the
        // good one overwrote).
        file_exists_behavior: Some(restored.file_exists_behavior.name().to_owned()),
        ..CreateDeploymentInput::default()
    };
    let origin = Origin {
        rollback_of: Some(original.clone()),
        deployment_id: Some(rollback_id.clone()),
        ..Origin::default()
    };
    match Box::pin(create(control, input, Creator::CodeDeployRollback, origin)).await {
        Ok(created) => {
            control.store.link_rollback(original, &link).await?;
            // Best effort, as every notification: the rollback's start must not wait on it.
            if let Err(error) = crate::notify::publish(
                control,
                record,
                NotificationEvent::DeploymentRollback,
                None,
                None,
            )
            .await
            {
                tracing::warn!(%error, "DeploymentRollback notification not sent");
            }
            tracing::info!(%rollback_id, "rollback deployment created");
            Ok(Some(created))
        }
        Err(error) if error.code == Exception::DeploymentLimitExceeded => {
            // The failed deployment's own lock, not yet released (its release failed for
            // now and waits in the outbox): tried again after it, not given up.
            still_locked_by(control, spec).await?;
            tracing::warn!(%error, "rollback not started: another deployment took the group");
            let info = no_rollback("another deployment started first");
            control.store.link_rollback(original, &info).await?;
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// The deployment that brings instances up to `record`'s revision when they joined the
/// group's Auto Scaling groups while it ran (launched during it, so given the revision
/// before), if the group's outdatedInstancesStrategy is UPDATE. None when there are none,
/// or another deployment took the group first (it deploys to them anyway).
pub async fn update_outdated(
    control: &ControlPlane,
    record: &DeploymentRecord<DeploymentSpec>,
) -> Result<Option<Created>, ApiError> {
    let spec = &record.spec;
    let group = control
        .load_group(&spec.application_name, &spec.deployment_group_name)
        .await?;
    let settings = &group.settings.value;
    let groups = &settings.targets.auto_scaling_groups;
    if settings.outdated_instances_strategy != "UPDATE" || groups.is_empty() {
        return Ok(None);
    }
    let deployed: std::collections::HashSet<String> = control
        .store
        .plan(&spec.deployment_id)
        .await?
        .into_iter()
        .map(|target| target.instance_id)
        .collect();
    // Instances already on the revision are not outdated: without this, the update's
    // own success would send the revision again to those the deployment before it
    // reached, and so on, back and forth.
    let health = control
        .store
        .group_health(&spec.application_name, &spec.deployment_group_name)
        .await?;
    let outdated: Vec<Host> = control
        .fleet
        .auto_scaling(groups)
        .await?
        .into_iter()
        .filter(|host| !deployed.contains(&host.instance_id))
        .filter(|host| {
            standing(health.get(&host.instance_id), Some(&spec.revision)) != Standing::Current
        })
        .collect();
    if outdated.is_empty() {
        return Ok(None);
    }
    tracing::info!(
        instances = outdated.len(),
        "updating instances that launched during the deployment"
    );
    let input = CreateDeploymentInput {
        application_name: spec.application_name.clone(),
        deployment_group_name: spec.deployment_group_name.clone(),
        revision: Some(spec.revision.clone()),
        deployment_config_name: Some(spec.deployment_config_name.clone()),
        description: Some(format!(
            "Update of instances that launched during {}",
            spec.deployment_id
        )),
        ignore_application_stop_failures: spec.ignore_application_stop_failures,
        auto_rollback_configuration: Some(AutoRollbackConfiguration::default()),
        file_exists_behavior: Some(spec.file_exists_behavior.name().to_owned()),
        ..CreateDeploymentInput::default()
    };
    let origin = Origin {
        hosts: Some(outdated),
        outdated_of: Some(spec.deployment_id.clone()),
        ..Origin::default()
    };
    match Box::pin(create(
        control,
        input,
        Creator::CodeDeployAutoUpdate,
        origin,
    ))
    .await
    {
        Ok(created) => {
            // Only shown (GetDeployment's relatedDeployments): a failure is logged.
            let update = &created.record.spec.deployment_id;
            if let Err(error) = control
                .store
                .link_outdated_update(&spec.deployment_id, update)
                .await
            {
                tracing::warn!(%error, %update, "could not link the update of outdated instances");
            }
            Ok(Some(created))
        }
        Err(error) if error.code == Exception::DeploymentLimitExceeded => {
            still_locked_by(control, spec).await?;
            tracing::info!(%error, "outdated instances left to the deployment that took the group");
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// Fails for now (to be tried again) while `spec`'s own deployment still holds its
/// group's lock: a deployment that follows it (a rollback, an update) is refused only
/// until that lock is released, which may itself have failed for now.
async fn still_locked_by(control: &ControlPlane, spec: &DeploymentSpec) -> Result<(), ApiError> {
    let group = control
        .load_group(&spec.application_name, &spec.deployment_group_name)
        .await?;
    if group.active_deployment_id.as_deref() == Some(spec.deployment_id.as_str()) {
        return Err(ApiError::new(
            Exception::ConcurrentModification,
            format!(
                "deployment group {} is still locked by {}, which has ended: retried once its lock is released",
                spec.deployment_group_name, spec.deployment_id
            ),
        ));
    }
    Ok(())
}
