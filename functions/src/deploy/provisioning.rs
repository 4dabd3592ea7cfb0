//! A blue/green deployment stored while its copy is provisioned, planned over both
//! fleets once the copy's instances exist.

use super::create::create;
use super::{CreateDeploymentInput, Created, Origin};
use crate::adapters::Host;
use crate::control::ControlPlane;
use crate::error::{ApiError, Exception};
use crate::model::DeploymentSpec;
use gantry_core::deployment;

/// A provisioning deployment's copy, ready: its instances, and the deployment as stored.
#[derive(Debug, Clone)]
pub struct ProvisionedFleet {
    pub replacement: Vec<Host>,
    pub version: u64,
    pub create_time: deployment::Millis,
}

/// What a look at a provisioning deployment's copy found.
#[derive(Debug)]
pub enum Provisioned {
    /// The copy has not all its instances yet.
    Waiting,
    /// The deployment is planned over both fleets: its start is to be carried out.
    Planned(Box<Created>),
    /// It cannot be planned (why): it is to fail.
    Refused(ApiError),
    /// It is not provisioning (any more): planned, or ended, by someone else.
    Over,
}

/// One look at a provisioning deployment: once its copy's instances exist, plans it over
/// both fleets from CreateDeployment's input as given (everything is checked again, as
/// it may have changed meanwhile) and stores it in place of the provisioning record.
pub async fn finish_provisioning(
    control: &ControlPlane,
    deployment_id: &str,
) -> Result<Provisioned, ApiError> {
    let record = control
        .store
        .load_deployment::<DeploymentSpec>(deployment_id)
        .await?;
    if record.state.status.is_terminal() || !record.state.provisioning() {
        return Ok(Provisioned::Over);
    }
    let fleets = record.spec.blue_green.clone().unwrap_or_default();
    let (Some(copy), [source], Some(input)) = (
        fleets.replacement_auto_scaling_group.as_deref(),
        fleets.original_auto_scaling_groups.as_slice(),
        fleets.provisioning_input.clone(),
    ) else {
        return Ok(Provisioned::Refused(ApiError::internal(format!(
            "deployment {deployment_id} is provisioning without its copy's names or input"
        ))));
    };
    let Some(replacement) = crate::blue_green::copy_instances(control, source, copy).await? else {
        return Ok(Provisioned::Waiting);
    };
    let input: CreateDeploymentInput = match serde_json::from_value(input) {
        Ok(input) => input,
        Err(error) => {
            return Ok(Provisioned::Refused(ApiError::internal(format!(
                "deployment {deployment_id}'s stored input: {error}"
            ))));
        }
    };
    let origin = Origin {
        deployment_id: Some(deployment_id.to_owned()),
        provisioned: Some(ProvisionedFleet {
            replacement,
            version: record.version,
            create_time: record.state.create_time,
        }),
        ..Origin::default()
    };
    match Box::pin(create(control, input, record.spec.creator, origin)).await {
        Ok(created) => Ok(Provisioned::Planned(Box::new(created))),
        // Planned, stopped or failed meanwhile: whoever changed it saw to it.
        Err(error) if error.code == Exception::ConcurrentModification => Ok(Provisioned::Over),
        // Tried again at the next look.
        Err(error) if error.code == Exception::InternalFailure => Err(error),
        Err(error) => Ok(Provisioned::Refused(error)),
    }
}
