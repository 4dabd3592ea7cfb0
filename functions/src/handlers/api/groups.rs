//! Deployment groups: Create, Get, BatchGet, List, Update, Delete, and what they show.

use super::applications::get_application;
use super::group_input::GroupInput;
use super::paging::page;
use super::{application_field, batch_names, check_name, group_field, unknown_operation};
use crate::adapters::HookKind;
use crate::control::ControlPlane;
use crate::error::{ApiError, Exception, parse_input};
use crate::group_hooks::{hook_kinds, put_hooks, remove_hooks};
use crate::model::{ApplicationInfo, DeploymentGroupSettings};
use crate::store::{StoreError, keys};
use gantry_api::group::{
    DeploymentGroupInfo, GetDeploymentGroupOutput, ListDeploymentGroupsOutput,
};
use serde_json::{Value, json};

/// Every (application, group) pair of an application.
pub(super) async fn application_groups(
    control: &ControlPlane,
    application: &str,
) -> Result<Vec<(String, String)>, ApiError> {
    let groups: Vec<DeploymentGroupSettings> =
        control.store.list(&keys::groups(application)).await?;
    Ok(groups
        .into_iter()
        .map(|group| (application.to_owned(), group.deployment_group_name))
        .collect())
}

/// Every deployment group of every application.
pub(super) async fn all_groups(
    control: &ControlPlane,
) -> Result<Vec<DeploymentGroupSettings>, ApiError> {
    let applications: Vec<ApplicationInfo> = control.store.list(keys::APPLICATIONS).await?;
    let mut groups = Vec::new();
    for application in applications {
        groups.extend(
            control
                .store
                .list::<DeploymentGroupSettings>(&keys::groups(&application.application_name))
                .await?,
        );
    }
    Ok(groups)
}

/// Deployment groups.
pub(super) async fn deployment_groups(
    control: &ControlPlane,
    name: &str,
    input: Value,
) -> Result<Value, ApiError> {
    let store = &control.store;
    match name {
        "CreateDeploymentGroup" => {
            let request: GroupInput = parse_input(name, input)?;
            let application = request.application_name.clone();
            let info = get_application(control, &application).await?;
            let group = request.deployment_group_name.clone().unwrap_or_default();
            if group.is_empty() {
                return Err(ApiError::new(
                    Exception::DeploymentGroupNameRequired,
                    "deploymentGroupName: is required",
                ));
            }
            check_name("deploymentGroupName", &group)?;
            let tags = super::tags::creation_tags(&json!({"tags": request.tags}), "tags")?;
            let settings = request
                .settings(control, None, &info.compute_platform)
                .await?;
            // Hooks first: a group whose launches would go unanswered is not created.
            let auto_scaling_groups = &settings.targets.auto_scaling_groups;
            let kinds = hook_kinds(&settings);
            let id = &settings.deployment_group_id;
            put_hooks(
                control,
                &application,
                &group,
                id,
                &kinds,
                auto_scaling_groups,
            )
            .await?;
            let created = store
                .create_tagged_group(&application, &group, &settings, &tags)
                .await;
            if created.is_err() {
                remove_hooks(control, id, &kinds, auto_scaling_groups).await;
            }
            created.map_err(|error| match error {
                    StoreError::Conflict(_) => ApiError::new(
                        Exception::DeploymentGroupAlreadyExists,
                        format!("deploymentGroupName: application {application:?} already has a group named {group:?}"),
                    ),
                    other => other.into(),
                })?;
            Ok(json!({"deploymentGroupId": settings.deployment_group_id}))
        }
        "GetDeploymentGroup" => {
            let application = application_field(&input)?;
            let group = group_field(&input)?;
            Ok(json!(GetDeploymentGroupOutput {
                deployment_group_info: group_info(control, &application, &group).await?
            }))
        }
        "BatchGetDeploymentGroups" => {
            let application = application_field(&input)?;
            let mut infos = Vec::new();
            // The operation's documentation gives no number; the model's
            // BatchLimitExceededException says 100 ("names or IDs allowed for this
            // request (100)").
            for group in batch_names(&input, "deploymentGroupNames", 100)? {
                infos.push(group_info(control, &application, &group).await?);
            }
            Ok(json!({"deploymentGroupsInfo": infos}))
        }
        "ListDeploymentGroups" => {
            let application = application_field(&input)?;
            get_application(control, &application).await?;
            let groups: Vec<DeploymentGroupSettings> =
                store.list(&keys::groups(&application)).await?;
            let names: Vec<String> = groups
                .into_iter()
                .map(|g| g.deployment_group_name)
                .collect();
            let (names, next) = page(names, &input, String::clone)?;
            Ok(json!(ListDeploymentGroupsOutput {
                application_name: application,
                deployment_groups: names,
                next_token: next,
            }))
        }
        "UpdateDeploymentGroup" => {
            let mut request: GroupInput = parse_input(name, input)?;
            let application = request.application_name.clone();
            let current = request
                .current_deployment_group_name
                .clone()
                .unwrap_or_default();
            if request
                .new_deployment_group_name
                .as_deref()
                .is_some_and(|new| !new.is_empty() && new != current)
            {
                return Err(ApiError::invalid_input(
                    "newDeploymentGroupName: renaming a deployment group is not supported; create a new group instead",
                ));
            }
            let group = control.load_group(&application, &current).await?;
            request.deployment_group_name = Some(current.clone());
            let current_settings = &group.settings.value;
            let settings = request
                .settings(
                    control,
                    Some(current_settings),
                    &current_settings.compute_platform,
                )
                .await?;
            // Hooks change only on the Auto Scaling groups added or removed: put before
            // the group lists them, removed once it no longer does.
            let before = &group.settings.value.targets.auto_scaling_groups;
            let after = &settings.targets.auto_scaling_groups;
            let added: Vec<String> = after
                .iter()
                .filter(|name| !before.contains(name))
                .cloned()
                .collect();
            let removed: Vec<String> = before
                .iter()
                .filter(|name| !after.contains(name))
                .cloned()
                .collect();
            let kept: Vec<String> = after
                .iter()
                .filter(|name| before.contains(name))
                .cloned()
                .collect();
            // terminationHookEnabled turned on puts the termination hook on the groups
            // kept too; turned off, it comes off them.
            let was = group.settings.value.termination_hook_enabled;
            let now = settings.termination_hook_enabled;
            let id = &settings.deployment_group_id;
            let kinds = hook_kinds(&settings);
            let termination = [HookKind::Termination];
            put_hooks(control, &application, &current, id, &kinds, &added).await?;
            if now
                && !was
                && let Err(error) =
                    put_hooks(control, &application, &current, id, &termination, &kept).await
            {
                remove_hooks(control, id, &kinds, &added).await;
                return Err(error);
            }
            if let Err(error) = store
                .update_body(
                    &keys::groups(&application),
                    &current,
                    &settings,
                    group.settings.version,
                )
                .await
            {
                remove_hooks(control, id, &kinds, &added).await;
                if now && !was {
                    remove_hooks(control, id, &termination, &kept).await;
                }
                return Err(error.into());
            }
            let mut not_cleaned_up = remove_hooks(control, id, &HookKind::ALL, &removed).await;
            if was && !now {
                not_cleaned_up.extend(remove_hooks(control, id, &termination, &kept).await);
            }
            Ok(json!({"hooksNotCleanedUp": not_cleaned_up}))
        }
        "DeleteDeploymentGroup" => {
            let application = application_field(&input)?;
            let group = group_field(&input)?;
            // As CodeDeploy (whose model documents no "does not exist" here): deleting
            // what is not there succeeds, with nothing to clean up.
            let loaded = match control.load_group(&application, &group).await {
                Ok(loaded) => loaded,
                Err(error)
                    if matches!(
                        error.code,
                        Exception::ApplicationDoesNotExist | Exception::DeploymentGroupDoesNotExist
                    ) =>
                {
                    return Ok(json!({"hooksNotCleanedUp": []}));
                }
                Err(error) => return Err(error),
            };
            store
                .delete(
                    &keys::groups(&application),
                    &group,
                    Some("attribute_not_exists(activeDeploymentId)"),
                )
                .await
                .map_err(|error| match error {
                    StoreError::Conflict(_) => ApiError::new(
                        Exception::DeploymentAlreadyStarted,
                        format!("deployment group {group} has an active deployment; stop it first"),
                    ),
                    other => other.into(),
                })?;
            // As CodeDeploy: the group is gone either way; hooks that could not be
            // removed are listed for the caller to remove.
            let settings = &loaded.settings.value;
            let not_cleaned_up = remove_hooks(
                control,
                &settings.deployment_group_id,
                &HookKind::ALL,
                &settings.targets.auto_scaling_groups,
            )
            .await;
            Ok(json!({"hooksNotCleanedUp": not_cleaned_up}))
        }
        other => Err(unknown_operation(other)),
    }
}

async fn group_info(
    control: &ControlPlane,
    application: &str,
    group: &str,
) -> Result<DeploymentGroupInfo, ApiError> {
    let record = control.load_group(application, group).await?;
    Ok(DeploymentGroupInfo::new(
        record.settings.value,
        record.target_revision,
        record.last_successful,
        record.last_attempted,
    ))
}
