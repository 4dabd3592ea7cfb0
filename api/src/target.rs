//! A deployment's hosts as BatchGetDeploymentTargets (`instanceTarget`) and
//! BatchGetDeploymentInstances (`instanceSummary`) return them, and as
//! ListDeploymentTargets and ListDeploymentInstances list them.

use crate::paging::page_of;
use gantry_core::deployment::TargetStatus;
use gantry_core::wire::{Diagnostics, EventStatus};
use serde::{Deserialize, Serialize};

/// ListDeploymentTargets' output: a deployment's target ids, a page at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDeploymentTargetsOutput {
    pub target_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

page_of!(ListDeploymentTargetsOutput, target_ids: String);

/// ListDeploymentInstances' output: a deployment's instance ids, a page at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDeploymentInstancesOutput {
    pub instances_list: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

page_of!(ListDeploymentInstancesOutput, instances_list: String);

/// BatchGetDeploymentTargets' output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchGetDeploymentTargetsOutput {
    pub deployment_targets: Vec<DeploymentTarget>,
}

/// GetDeploymentTarget's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetDeploymentTargetOutput {
    pub deployment_target: DeploymentTarget,
}

/// One entry of BatchGetDeploymentTargets' `deploymentTargets` (and GetDeploymentTarget's
/// `deploymentTarget`): an instance (EC2/On-premises deployments) or a function's alias
/// (Lambda deployments).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentTarget {
    /// `InstanceTarget` or `LambdaTarget`.
    pub deployment_target_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_target: Option<InstanceTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_target: Option<LambdaTarget>,
}

/// CodeDeploy's `lambdaTarget`: the alias a Lambda deployment moves. Its target id is
/// `function:alias`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaTarget {
    pub deployment_id: String,
    pub target_id: String,
    pub target_arn: String,
    pub status: TargetStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_at: Option<f64>,
    /// BeforeAllowTraffic, AllowTraffic, AfterAllowTraffic.
    pub lifecycle_events: Vec<LifecycleEventInfo>,
    pub lambda_function_info: LambdaFunctionInfo,
}

/// CodeDeploy's `lambdaFunctionInfo`, with Gantry's view of the next step (members
/// CodeDeploy's clients ignore).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaFunctionInfo {
    pub function_name: String,
    pub function_alias: String,
    pub current_version: String,
    pub target_version: String,
    /// The target version's share of the alias's traffic, in percent (0 to 100), as
    /// CodeDeploy documents `targetVersionWeight` ("the percentage of production traffic").
    pub target_version_weight: f64,
    /// Gantry: when the next traffic step is due (epoch seconds), while traffic moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_step_time: Option<f64>,
    /// Gantry: the target version's share after that step, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_step_weight: Option<f64>,
}

/// CodeDeploy's `instanceTarget`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceTarget {
    pub deployment_id: String,
    pub target_id: String,
    pub target_arn: String,
    pub status: TargetStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_at: Option<f64>,
    pub lifecycle_events: Vec<LifecycleEventInfo>,
    /// `Blue` (the original fleet, and every in-place host) or `Green` (a blue/green
    /// deployment's replacement).
    pub instance_label: String,
}

/// CodeDeploy's `instanceSummary` (the older instance operations).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSummary {
    pub deployment_id: String,
    pub instance_id: String,
    pub status: TargetStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_at: Option<f64>,
    pub lifecycle_events: Vec<LifecycleEventInfo>,
    pub instance_type: String,
}

/// One lifecycle event of a host, as `lifecycleEvents` lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleEventInfo {
    pub lifecycle_event_name: String,
    pub status: EventStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<Diagnostics>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::reads_and_writes_back;
    use serde_json::json;

    /// As `aws deploy get-deployment-target` prints a host that failed.
    fn codedeploys_target() -> serde_json::Value {
        json!({
            "deploymentTargetType": "InstanceTarget",
            "instanceTarget": {
                "deploymentId": "d-A1B2C3D4E", "targetId": "i-0a1b2c3d4e5f67890",
                "targetArn": "arn:aws:codedeploy:us-east-1:123456789012:instance/i-0a1b2c3d4e5f67890",
                "status": "Failed", "lastUpdatedAt": 1764979260.25,
                "lifecycleEvents": [
                    {"lifecycleEventName": "ApplicationStop", "status": "Succeeded",
                     "startTime": 1764979201.0, "endTime": 1764979202.5},
                    {"lifecycleEventName": "BeforeInstall", "status": "Failed",
                     "startTime": 1764979203.0, "endTime": 1764979260.25,
                     "diagnostics": {"errorCode": "ScriptFailed", "scriptName": "scripts/install_deps.sh",
                                     "message": "Script at specified location: scripts/install_deps.sh run as user root failed with exit code 1",
                                     "logTail": "[stderr]apt-get: not found"}},
                    {"lifecycleEventName": "Install", "status": "Skipped"}
                ],
                "instanceLabel": "Blue"
            }
        })
    }

    #[test]
    fn codedeploys_get_deployment_target_reads_and_writes_back_unchanged() {
        let got: GetDeploymentTargetOutput =
            reads_and_writes_back(json!({"deploymentTarget": codedeploys_target()}));
        let target = got
            .deployment_target
            .instance_target
            .expect("an instance target");
        assert_eq!(target.status, TargetStatus::Failed);
        assert_eq!(target.lifecycle_events[1].status, EventStatus::Failed);
        let batch: BatchGetDeploymentTargetsOutput =
            reads_and_writes_back(json!({"deploymentTargets": [codedeploys_target()]}));
        assert_eq!(batch.deployment_targets.len(), 1);
    }

    #[test]
    fn codedeploys_target_lists_read_and_write_back_unchanged() {
        let targets: ListDeploymentTargetsOutput = reads_and_writes_back(json!({
            "targetIds": ["i-0a1b2c3d4e5f67890", "i-0f9e8d7c6b5a43210"],
            "nextToken": "692d3066396538643763366235613433323130"
        }));
        assert_eq!(targets.target_ids.len(), 2);
        let instances: ListDeploymentInstancesOutput =
            reads_and_writes_back(json!({"instancesList": ["i-0a1b2c3d4e5f67890"]}));
        assert_eq!(instances.next_token, None);
    }
}
