//! create-deployment: CreateDeployment. Validates the input, resolves and orders the
//! group's instances, stores the deployment with the group's lock (see
//! [`crate::deploy::create`]), then carries out its start: DeploymentStart and the first
//! batch of commands.

use crate::control::ControlPlane;
use crate::deploy::{self, CreateDeploymentInput, Origin};
use crate::engine;
use crate::error::{ApiError, Exception, parse_input};
use gantry_api::deployment::CreateDeploymentOutput;
use gantry_core::wire::Creator;

/// CreateDeployment of either platform: a Lambda application's group takes its own
/// input ([`crate::lambda_deployments::create_deployment`]).
pub async fn handle(
    control: &ControlPlane,
    input: serde_json::Value,
) -> Result<CreateDeploymentOutput, ApiError> {
    let names = (
        input.get("applicationName").and_then(|v| v.as_str()),
        input.get("deploymentGroupName").and_then(|v| v.as_str()),
    );
    // A group that does not exist, or a request without names, is the EC2 path's to
    // refuse with CodeDeploy's errors; any other failure to read the group is the caller's
    // answer, never a guess at the platform.
    if let (Some(application), Some(group)) = names
        && !application.is_empty()
        && !group.is_empty()
    {
        match control.load_group(application, group).await {
            Ok(record) if record.settings.value.is_lambda() => {
                return Box::pin(crate::lambda_deployments::create_deployment(
                    control, &record, input,
                ))
                .await;
            }
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.code,
                    Exception::ApplicationDoesNotExist | Exception::DeploymentGroupDoesNotExist
                ) => {}
            Err(error) => return Err(error),
        }
    }
    let input: CreateDeploymentInput = parse_input("CreateDeployment", input)?;
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
