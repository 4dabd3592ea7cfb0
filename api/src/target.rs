//! A deployment's hosts as BatchGetDeploymentTargets (`instanceTarget`) and
//! BatchGetDeploymentInstances (`instanceSummary`) return them.

use gantry_core::deployment::TargetStatus;
use gantry_core::wire::{Diagnostics, EventStatus};
use serde::{Deserialize, Serialize};

/// One entry of BatchGetDeploymentTargets' `deploymentTargets` (and GetDeploymentTarget's
/// `deploymentTarget`): on this platform always an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentTarget {
    /// `InstanceTarget`.
    pub deployment_target_type: String,
    pub instance_target: InstanceTarget,
}

/// CodeDeploy's `instanceTarget`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceTarget {
    pub deployment_id: String,
    pub target_id: String,
    pub target_arn: String,
    pub status: TargetStatus,
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
    pub start_time: Option<f64>,
    pub end_time: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<Diagnostics>,
}
