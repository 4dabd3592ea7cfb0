//! Making deployments: CreateDeployment's validation and planning, and the rollback that
//! replaces a failed or stopped deployment. Both store the new deployment with its start
//! effects in its outbox and return it; the caller carries the effects out (see
//! [`crate::engine`]).

use crate::adapters::Host;
use crate::error::{ApiError, Exception};
use crate::model::{AutoRollbackConfiguration, DeploymentSpec, LifecycleAction};
use crate::store::DeploymentRecord;
use gantry_core::deployment::Effect;
use gantry_core::wire::RevisionLocation;
use serde::{Deserialize, Serialize};

mod create;
mod gather;
#[cfg(test)]
pub mod memory;
mod provisioning;
mod rollback;

pub use create::{Checked, Gathered, NewDeployment, Request, Sources, check, create, plan, store};
pub use provisioning::{Provisioned, ProvisionedFleet, finish_provisioning};
pub use rollback::{start_rollback, update_outdated};

/// A deployment just stored, with the effects of its start (in its outbox as version 1).
#[derive(Debug)]
pub struct Created {
    pub record: DeploymentRecord<DeploymentSpec>,
    pub effects: Vec<Effect>,
}

/// CreateDeployment's input, in CodeDeploy's shape.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDeploymentInput {
    pub application_name: String,
    #[serde(default)]
    pub deployment_group_name: String,
    #[serde(default)]
    pub revision: Option<RevisionLocation>,
    #[serde(default)]
    pub deployment_config_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub ignore_application_stop_failures: bool,
    #[serde(default)]
    pub target_instances: Option<serde_json::Value>,
    #[serde(default)]
    pub auto_rollback_configuration: Option<AutoRollbackConfiguration>,
    #[serde(default)]
    pub update_outdated_instances_only: bool,
    #[serde(default)]
    pub file_exists_behavior: Option<String>,
    #[serde(default)]
    pub override_alarm_configuration: Option<serde_json::Value>,
    #[serde(default)]
    pub deployment_mode: Option<String>,
    #[serde(default)]
    pub ec2_deployment_options: Option<serde_json::Value>,
}

/// CodeDeploy's `ec2DeploymentOptions`: Gantry suspends no Auto Scaling process during a
/// deployment (it holds launching instances with lifecycle hooks instead, and deploys to
/// them after), so only an empty `autoScalingGroupProcessesToSuspend` is taken.
pub fn check_ec2_deployment_options(options: Option<&serde_json::Value>) -> Result<(), ApiError> {
    let processes = options
        .and_then(|options| options.get("autoScalingGroupProcessesToSuspend"))
        .and_then(serde_json::Value::as_array)
        .map_or(0, Vec::len);
    if processes > 0 {
        return Err(ApiError::new(
            Exception::InvalidAutoScalingGroupProcessToSuspend,
            "ec2DeploymentOptions.autoScalingGroupProcessesToSuspend: Gantry suspends no Auto Scaling process; it holds launching instances with lifecycle hooks and deploys to them once the deployment ends, so leave the list empty",
        ));
    }
    Ok(())
}

/// CodeDeploy's `deploymentMode`: STANDARD (the default) deploys the revision given;
/// RESTART (restarting the last successful revision without a download) is not done by
/// Gantry yet, and never for Lambda deployments.
pub fn check_deployment_mode(mode: Option<&str>) -> Result<(), ApiError> {
    match mode {
        None | Some("" | "STANDARD") => Ok(()),
        Some("RESTART") => Err(ApiError::invalid_input(
            "deploymentMode: RESTART is not supported by Gantry; deploy the group's last successful revision with STANDARD",
        )),
        Some(other) => Err(ApiError::invalid_input(format!(
            "deploymentMode: {other:?} is not STANDARD or RESTART"
        ))),
    }
}

/// An alarm configuration refused, as CodeDeploy's exception.
pub fn alarm_error(error: crate::model::AlarmConfigError) -> ApiError {
    match error {
        crate::model::AlarmConfigError::TooMany(message) => {
            ApiError::new(Exception::AlarmsLimitExceeded, message)
        }
        crate::model::AlarmConfigError::Invalid(message) => {
            ApiError::new(Exception::InvalidAlarmConfig, message)
        }
    }
}

/// Who asked for a deployment, beyond the input: a user, a rollback of another, an
/// instance launching, or the update of instances that launched during another.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub rollback_of: Option<String>,
    /// A fixed id (a rollback's, claimed before it is created).
    pub deployment_id: Option<String>,
    /// A launching (or, with creator `autoscalingTermination`, terminating) instance: the
    /// only target, whatever the group's selection matches. Such a deployment runs
    /// beside the group's others: it takes no lock.
    pub launch: Option<(Host, LifecycleAction)>,
    /// The targets, instead of what the group's selection matches.
    pub hosts: Option<Vec<Host>>,
    /// The deployment whose end found these instances outdated (an update's root).
    pub outdated_of: Option<String>,
    /// A blue/green deployment stored while its copy was provisioned, now planned over
    /// the copy's instances.
    pub provisioned: Option<ProvisionedFleet>,
}

/// A new deployment id in CodeDeploy's form: `d-` and nine of `A-Z0-9`.
pub fn new_deployment_id() -> String {
    deployment_id_from(uuid::Uuid::new_v4())
}

/// The same id every time for the same `name`: a redelivered message that creates a
/// deployment finds the one it created before.
pub fn deployment_id_for(name: &str) -> String {
    deployment_id_from(uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        name.as_bytes(),
    ))
}

fn deployment_id_from(uuid: uuid::Uuid) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut value = uuid.as_u128();
    let mut id = String::from("d-");
    for _ in 0..9 {
        id.push(ALPHABET[(value % 36) as usize] as char);
        value /= 36;
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_ids_look_like_codedeploys() {
        for _ in 0..200 {
            let id = new_deployment_id();
            gantry_core::wire::check_deployment_id(&id).unwrap();
        }
    }
}
