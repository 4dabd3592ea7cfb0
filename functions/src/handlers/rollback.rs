//! rollback: stops the group's active deployment, if any, and redeploys its last
//! successful revision as a new deployment (creator `codeDeployRollback`).

use crate::control::ControlPlane;
use crate::deploy;
use crate::engine;
use crate::error::{ApiError, Exception};
use crate::model::{DeploymentSpec, now_millis};
use crate::store::DeploymentRecord;
use gantry_api::deployment::RollbackOutput;
use gantry_core::deployment::Input;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollbackInput {
    pub application_name: String,
    pub deployment_group_name: String,
}

/// The `rollback` handler.
pub async fn handle(
    control: &ControlPlane,
    input: RollbackInput,
) -> Result<RollbackOutput, ApiError> {
    let group_name = &input.deployment_group_name;
    let group = control
        .load_group(&input.application_name, group_name)
        .await?;
    let latest = match &group.active_deployment_id {
        Some(active) => {
            let applied = engine::step(
                control,
                active,
                &[Input::Stop {
                    now: now_millis(),
                    rollback: true,
                }],
            )
            .await?;
            applied.record
        }
        None => {
            let last = group.last_attempted.as_ref().ok_or_else(|| {
                ApiError::new(
                    Exception::DeploymentDoesNotExist,
                    format!("deployment group {group_name} has no deployment to roll back"),
                )
            })?;
            let record = control.store.load_deployment(&last.deployment_id).await?;
            if let Some(created) = deploy::start_rollback(control, &record).await? {
                engine::start(control, &created).await;
            }
            record
        }
    };
    let record: DeploymentRecord<DeploymentSpec> = control
        .store
        .load_deployment(&latest.state.deployment_id)
        .await?;
    match (
        record.rollback_info.rollback_deployment_id,
        record.rollback_info.rollback_message,
    ) {
        (Some(deployment_id), _) => Ok(RollbackOutput {
            deployment_id,
            rollback_triggering_deployment_id: record.state.deployment_id,
        }),
        (None, message) => Err(ApiError::new(
            Exception::RevisionDoesNotExist,
            message.unwrap_or_else(|| {
                format!(
                    "deployment {} was already rolled back or cannot be",
                    record.state.deployment_id
                )
            }),
        )),
    }
}
