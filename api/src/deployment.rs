//! A deployment as GetDeployment and BatchGetDeployments return it (`deploymentInfo`),
//! with Gantry's additions beside CodeDeploy's fields; and what creating, listing,
//! stopping and rolling back deployments answer.

use crate::model::{
    AlarmConfiguration, AutoRollbackConfiguration, BlueGreenConfiguration, DeploymentStyle,
    LoadBalancerInfo, RollbackInfo,
};
use crate::paging::page_of;
use gantry_core::appspec::FileExistsBehavior;
use gantry_core::deployment::{DeploymentStatus, ErrorInformation, Stage};
use gantry_core::wire::{Creator, RevisionLocation};
use serde::{Deserialize, Serialize};

/// CreateDeployment's output (the `create-deployment` function's, and the api's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateDeploymentOutput {
    pub deployment_id: String,
}

/// ListDeployments' output: deployment ids, newest first, a page at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDeploymentsOutput {
    pub deployments: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

page_of!(ListDeploymentsOutput, deployments: String);

/// StopDeployment's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopDeploymentOutput {
    pub status: StopStatus,
    pub status_message: String,
}

/// Where a stop stands: `Pending` while hosts still finish the event they were running,
/// `Succeeded` once none is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopStatus {
    Pending,
    Succeeded,
}

/// The `rollback` function's output (Gantry's; CodeDeploy rolls back only by itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackOutput {
    /// The rollback deployment.
    pub deployment_id: String,
    /// The deployment it replaces.
    pub rollback_triggering_deployment_id: String,
}

/// GetDeployment's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetDeploymentOutput {
    pub deployment_info: DeploymentInfo,
}

/// CodeDeploy's `deploymentInfo`. Times are epoch seconds; those not reached yet are
/// null, as CodeDeploy's are absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentInfo {
    pub application_name: String,
    pub deployment_group_name: String,
    pub deployment_config_name: String,
    pub deployment_id: String,
    pub revision: RevisionLocation,
    pub status: DeploymentStatus,
    pub create_time: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_time: Option<f64>,
    pub deployment_overview: DeploymentOverview,
    pub creator: Creator,
    pub ignore_application_stop_failures: bool,
    pub auto_rollback_configuration: AutoRollbackConfiguration,
    pub update_outdated_instances_only: bool,
    pub deployment_style: DeploymentStyle,
    pub file_exists_behavior: FileExistsBehavior,
    pub compute_platform: String,
    pub instance_termination_wait_time_started: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green_deployment_configuration: Option<BlueGreenConfiguration>,
    /// CreateDeployment's `targetInstances`, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_instances: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_alarm_configuration: Option<AlarmConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related_deployments: Option<RelatedDeployments>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_revision: Option<RevisionLocation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_info: Option<LoadBalancerInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_information: Option<ErrorInformation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_info: Option<RollbackInfo>,
    /// Gantry's: where a blue/green deployment stands, for `gantry deploy` to show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green_progress: Option<BlueGreenProgress>,
    /// Gantry's: effects that failed for good (a notification to a deleted topic, ...);
    /// none of them blocked the deployment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_effects: Vec<FailedEffectInfo>,
    /// Gantry's: reports refused because their host did not send them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub forged_reports: u64,
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

impl DeploymentInfo {
    /// Whether the deployment has ended: it will not change any more.
    pub fn is_over(&self) -> bool {
        self.status.is_terminal()
    }
}

/// CodeDeploy's `deploymentOverview`: hosts by where they stand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeploymentOverview {
    pub pending: u32,
    pub in_progress: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub skipped: u32,
    pub ready: u32,
}

/// Where a blue/green deployment stands (Gantry's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenProgress {
    pub stage: Stage,
    pub replacement_instances: u32,
    pub original_instances: u32,
    pub installed: u32,
    pub rerouted: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_until: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement_auto_scaling_group: Option<String>,
    #[serde(default)]
    pub original_auto_scaling_groups: Vec<String>,
}

/// An effect that failed for good, as `failedEffects` shows it (Gantry's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedEffectInfo {
    pub effect: String,
    pub reason: String,
    pub failures: u64,
    pub first_time: f64,
    pub last_time: f64,
}

/// CodeDeploy's `relatedDeployments`: the update of instances that launched while a
/// deployment ran (`outdatedInstancesStrategy: UPDATE`), and the deployment it followed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelatedDeployments {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_update_outdated_instances_root_deployment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auto_update_outdated_instances_deployment_ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::reads_and_writes_back;
    use serde_json::json;

    /// As `aws deploy get-deployment` prints an in-place deployment in progress.
    fn codedeploys() -> serde_json::Value {
        json!({
            "applicationName": "web", "deploymentGroupName": "prod",
            "deploymentConfigName": "CodeDeployDefault.HalfAtATime", "deploymentId": "d-ABCDEFGHI",
            "revision": {"revisionType": "S3", "s3Location": {"bucket": "artifacts", "key": "web.zip", "bundleType": "zip"}},
            "status": "InProgress", "createTime": 1764979200.123, "startTime": 1764979201.5,
            "deploymentOverview": {"Pending": 2, "InProgress": 1, "Succeeded": 1, "Failed": 0, "Skipped": 0, "Ready": 0},
            "creator": "user", "ignoreApplicationStopFailures": false,
            "autoRollbackConfiguration": {"enabled": true, "events": ["DEPLOYMENT_FAILURE"]},
            "updateOutdatedInstancesOnly": false,
            "deploymentStyle": {"deploymentType": "IN_PLACE", "deploymentOption": "WITHOUT_TRAFFIC_CONTROL"},
            "fileExistsBehavior": "DISALLOW", "computePlatform": "Server",
            "instanceTerminationWaitTimeStarted": false
        })
    }

    #[test]
    fn codedeploys_deployment_info_reads_and_writes_back_unchanged() {
        let info: DeploymentInfo = serde_json::from_value(codedeploys()).unwrap();
        assert_eq!(info.status, DeploymentStatus::InProgress);
        assert_eq!(info.deployment_overview.in_progress, 1);
        assert!(!info.is_over());
        // Gantry's additions are left out when there is nothing to say.
        assert_eq!(serde_json::to_value(&info).unwrap(), codedeploys());
    }

    #[test]
    fn gantrys_additions_are_read_when_present() {
        let mut given = codedeploys();
        given["status"] = json!("Failed");
        given["errorInformation"] =
            json!({"code": "HEALTH_CONSTRAINTS", "message": "too few healthy hosts"});
        given["forgedReports"] = json!(2);
        given["failedEffects"] = json!([{"effect": "ReleaseLock", "reason": "throttled", "failures": 3, "firstTime": 1.0, "lastTime": 2.0}]);
        let info: DeploymentInfo = serde_json::from_value(given.clone()).unwrap();
        assert!(info.is_over());
        assert_eq!(info.forged_reports, 2);
        assert_eq!(info.failed_effects[0].failures, 3);
        assert_eq!(serde_json::to_value(&info).unwrap(), given);
    }

    #[test]
    fn codedeploys_create_list_and_stop_outputs_read_and_write_back_unchanged() {
        let created: CreateDeploymentOutput =
            reads_and_writes_back(json!({"deploymentId": "d-A1B2C3D4E"}));
        assert_eq!(created.deployment_id, "d-A1B2C3D4E");
        let listed: ListDeploymentsOutput = reads_and_writes_back(json!({
            "deployments": ["d-A1B2C3D4E", "d-B2C3D4E5F", "d-C3D4E5F6G"],
            "nextToken": "642d433344344535463647"
        }));
        assert_eq!(listed.deployments.len(), 3);
        let stopped: StopDeploymentOutput = reads_and_writes_back(json!({
            "status": "Pending",
            "statusMessage": "Deployment d-A1B2C3D4E stopped; 1 instance(s) are finishing their current lifecycle event and skip the rest"
        }));
        assert_eq!(stopped.status, StopStatus::Pending);
    }

    #[test]
    fn a_rollback_names_both_deployments() {
        let started: RollbackOutput = reads_and_writes_back(json!({
            "deploymentId": "d-B2C3D4E5F", "rollbackTriggeringDeploymentId": "d-A1B2C3D4E"
        }));
        assert_eq!(started.rollback_triggering_deployment_id, "d-A1B2C3D4E");
    }
}
