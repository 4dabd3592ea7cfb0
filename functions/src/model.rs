//! The control plane's own records beside CodeDeploy's shapes (which are
//! [`gantry_api::model`]'s, re-exported here): what a deployment is, fixed when it is
//! created, and the Auto Scaling launch it may answer.

pub use gantry_api::model::*;
use gantry_core::deployment::Millis;
use gantry_core::wire::{Command, RevisionLocation, SCHEMA_VERSION};
use serde::{Deserialize, Serialize};

/// What a deployment is, fixed when it is created (the state machine holds how it goes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    pub deployment_id: String,
    pub application_name: String,
    pub deployment_group_name: String,
    pub deployment_group_id: String,
    pub deployment_config_name: String,
    pub revision: RevisionLocation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_revision: Option<RevisionLocation>,
    pub creator: gantry_core::wire::Creator,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub ignore_application_stop_failures: bool,
    pub file_exists_behavior: gantry_core::appspec::FileExistsBehavior,
    pub auto_rollback_configuration: AutoRollbackConfiguration,
    pub update_outdated_instances_only: bool,
    #[serde(default)]
    pub trigger_configurations: Vec<TriggerConfig>,
    pub lifecycle_events: Vec<gantry_core::lifecycle::LifecycleEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_triggering_deployment_id: Option<String>,
    /// The deployment this one updates outdated instances after (`relatedDeployments`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outdated_root_deployment_id: Option<String>,
    /// The Auto Scaling launch this deployment answers (creator `autoscaling`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_action: Option<LifecycleAction>,
    /// The alarms it watches: its `overrideAlarmConfiguration`, or else its group's.
    #[serde(default)]
    pub alarm_configuration: AlarmConfiguration,
    /// CreateDeployment's `overrideAlarmConfiguration`, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_alarm_configuration: Option<AlarmConfiguration>,
    /// The target groups each host is taken out of (BlockTraffic) and put back into
    /// (AllowTraffic), resolved from the group's names when the deployment was created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_groups: Vec<crate::traffic::TargetGroupRef>,
    /// A blue/green deployment's fleets (`deploymentStyle` BLUE_GREEN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenSpec>,
}

impl DeploymentSpec {
    /// The command for one host, which it may start until `start_by`: its first stretch
    /// of events (with a load balancer, the rest comes in later commands).
    pub fn command(&self, instance_id: &str, start_by: Option<Millis>) -> Command {
        Command {
            schema_version: SCHEMA_VERSION,
            deployment_id: self.deployment_id.clone(),
            deployment_group_id: self.deployment_group_id.clone(),
            deployment_group_name: self.deployment_group_name.clone(),
            application_name: self.application_name.clone(),
            instance_id: instance_id.to_owned(),
            revision: self.revision.clone(),
            lifecycle_events: gantry_core::lifecycle::stretch(&self.lifecycle_events, 0).to_vec(),
            file_exists_behavior: self.file_exists_behavior,
            ignore_application_stop_failures: self.ignore_application_stop_failures,
            creator: self.creator,
            start_by,
            bundle_url: None,
        }
    }
}

/// A launching instance held in Pending:Wait by a Gantry lifecycle hook, as Auto Scaling's
/// notification names it; CompleteLifecycleAction needs all of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleAction {
    pub auto_scaling_group_name: String,
    pub lifecycle_hook_name: String,
    pub lifecycle_action_token: String,
    pub instance_id: String,
}

/// What a blue/green deployment keeps of its fleets, beside its ordered hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenSpec {
    /// The Auto Scaling groups deleted with the original fleet (TERMINATE).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub original_auto_scaling_groups: Vec<String>,
    /// The copied Auto Scaling group holding the replacement fleet: the deployment group
    /// deploys to it in place of the original once the deployment succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement_auto_scaling_group: Option<String>,
    /// The group's configuration the deployment was made with, as GetDeployment shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<BlueGreenConfiguration>,
    /// CreateDeployment's `targetInstances`, as given (DISCOVER_EXISTING).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_instances: Option<serde_json::Value>,
    /// While the copy is provisioned: CreateDeployment's input, to plan the deployment
    /// with once the copy's instances exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_input: Option<serde_json::Value>,
}

/// A stable key for a revision: the same object version always gets the same key.
pub fn revision_key(location: &RevisionLocation) -> String {
    match location {
        RevisionLocation::S3 { s3_location } => format!(
            "s3://{}/{}#{}#{}",
            s3_location.bucket,
            s3_location.key,
            s3_location.version.as_deref().unwrap_or(""),
            s3_location.e_tag.as_deref().unwrap_or("")
        ),
        RevisionLocation::GitHub { git_hub_location } => format!(
            "github:{}@{}",
            git_hub_location.repository, git_hub_location.commit_id
        ),
    }
}
