//! create-deployment: CreateDeployment. Validates the input, resolves and orders the
//! group's instances, stores the deployment with the group's lock (see
//! [`crate::deploy::create`]), then carries out its start: DeploymentStart and the first
//! batch of commands.

use crate::control::ControlPlane;
use crate::deploy::{self, CreateDeploymentInput, Origin};
use crate::engine;
use crate::error::ApiError;
use gantry_api::deployment::CreateDeploymentOutput;
use gantry_core::wire::Creator;

pub async fn handle(
    control: &ControlPlane,
    input: CreateDeploymentInput,
) -> Result<CreateDeploymentOutput, ApiError> {
    let created = Box::pin(deploy::create(
        control,
        input,
        Creator::User,
        Origin::default(),
    ))
    .await?;
    engine::start(control, &created).await;
    Ok(CreateDeploymentOutput {
        deployment_id: created.record.spec.deployment_id,
    })
}
