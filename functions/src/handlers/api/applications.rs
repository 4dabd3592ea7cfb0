//! Applications: Create, Get, BatchGet, List, Update (rename), Delete.

use super::paging::page;
use super::{application_field, batch_names, check_name, unknown_operation};
use crate::adapters::HookKind;
use crate::control::ControlPlane;
use crate::error::{ApiError, Exception};
use crate::group_hooks::remove_hooks;
use crate::model::{
    ApplicationInfo, COMPUTE_PLATFORMS, DeploymentGroupSettings, LAMBDA_PLATFORM, SERVER_PLATFORM,
    now_millis, seconds,
};
use crate::store::{StoreError, keys};
use gantry_api::application::{GetApplicationOutput, ListApplicationsOutput};
use serde_json::{Value, json};

/// Applications: Create, Get, BatchGet, List, Update (rename), Delete.
pub(super) async fn applications(
    control: &ControlPlane,
    name: &str,
    input: Value,
) -> Result<Value, ApiError> {
    let store = &control.store;
    match name {
        "CreateApplication" => {
            let application = application_field(&input)?;
            check_name("applicationName", &application)?;
            // CodeDeploy's default is Server; ECS is not a platform Gantry deploys to.
            let compute_platform = match input.get("computePlatform").and_then(Value::as_str) {
                None => SERVER_PLATFORM,
                Some(platform @ (SERVER_PLATFORM | LAMBDA_PLATFORM)) => platform,
                Some(platform) => {
                    return Err(ApiError::new(
                        Exception::InvalidComputePlatform,
                        format!(
                            "computePlatform: {platform:?}; Gantry deploys to the {COMPUTE_PLATFORMS} platform (EC2 and on-premises instances, or AWS Lambda functions)"
                        ),
                    ));
                }
            };
            let info = ApplicationInfo {
                application_id: uuid::Uuid::new_v4().to_string(),
                application_name: application.clone(),
                create_time: seconds(now_millis()),
                linked_to_git_hub: false,
                compute_platform: compute_platform.into(),
            };
            let tags = super::tags::creation_tags(&input, "tags")?;
            store
                .put_new(
                    keys::APPLICATIONS,
                    &application,
                    &info,
                    &crate::store::DynamoStore::tag_attributes(&tags),
                )
                .await
                .map_err(|error| match error {
                    StoreError::Conflict(_) => already_exists("applicationName", &application),
                    other => other.into(),
                })?;
            Ok(json!({"applicationId": info.application_id}))
        }
        "GetApplication" => {
            let application = application_field(&input)?;
            let info = get_application(control, &application).await?;
            Ok(json!(GetApplicationOutput { application: info }))
        }
        "BatchGetApplications" => {
            let mut infos = Vec::new();
            // At most 100 names, as CodeDeploy's model documents.
            for application in batch_names(&input, "applicationNames", 100)? {
                infos.push(get_application(control, &application).await?);
            }
            Ok(json!({"applicationsInfo": infos}))
        }
        "ListApplications" => {
            let applications: Vec<ApplicationInfo> = store.list(keys::APPLICATIONS).await?;
            let names: Vec<String> = applications
                .into_iter()
                .map(|a| a.application_name)
                .collect();
            let (names, next) = page(names, &input, String::clone)?;
            Ok(json!(ListApplicationsOutput {
                applications: names,
                next_token: next,
            }))
        }
        "UpdateApplication" => {
            let application = application_field(&input)?;
            get_application(control, &application).await?;
            match input.get("newApplicationName").and_then(Value::as_str) {
                None | Some("") => {}
                Some(new_name) if new_name == application => {}
                // Boxed: the rename's steps make a large future.
                Some(new_name) => {
                    Box::pin(super::rename::rename(control, &application, new_name)).await?
                }
            }
            Ok(json!({}))
        }
        "DeleteApplication" => {
            let application = application_field(&input)?;
            let groups: Vec<DeploymentGroupSettings> =
                store.list(&keys::groups(&application)).await?;
            for group in &groups {
                store
                    .delete(
                        &keys::groups(&application),
                        &group.deployment_group_name,
                        Some("attribute_not_exists(activeDeploymentId)"),
                    )
                    .await
                    .map_err(|_| {
                        ApiError::new(
                            Exception::DeploymentAlreadyStarted,
                            format!(
                                "deployment group {} has an active deployment; stop it first",
                                group.deployment_group_name
                            ),
                        )
                    })?;
                remove_hooks(
                    control,
                    &group.deployment_group_id,
                    &HookKind::ALL,
                    &group.targets.auto_scaling_groups,
                )
                .await;
            }
            store.delete(keys::APPLICATIONS, &application, None).await?;
            Ok(json!({}))
        }
        other => Err(unknown_operation(other)),
    }
}

pub(super) fn already_exists(field: &str, application: &str) -> ApiError {
    ApiError::new(
        Exception::ApplicationAlreadyExists,
        format!("{field}: an application named {application:?} already exists"),
    )
}

pub(super) async fn get_application(
    control: &ControlPlane,
    name: &str,
) -> Result<ApplicationInfo, ApiError> {
    Ok(control
        .store
        .get::<ApplicationInfo>(keys::APPLICATIONS, name)
        .await?
        .ok_or_else(|| ApiError::application_missing(name))?
        .value)
}
