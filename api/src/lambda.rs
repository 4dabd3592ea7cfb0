//! Lambda deployments (the Lambda compute platform) as CodeDeploy's API shows them: their
//! revisions (the AppSpec as a string, or an S3 object) and `deploymentInfo`.

use crate::deployment::{DeploymentOverview, FailedEffectInfo};
use crate::model::{AlarmConfiguration, AutoRollbackConfiguration, DeploymentStyle};
use gantry_core::deployment::{DeploymentStatus, ErrorInformation};
use gantry_core::wire::Creator;
use serde::{Deserialize, Serialize};

/// A Lambda deployment's revision, in CodeDeploy's `RevisionLocation` shape: the AppSpec
/// as an `AppSpecContent` or (older) `String` revision, or a YAML or JSON AppSpec file in
/// S3. (GitHub revisions are for EC2/On-premises deployments only.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "revisionType")]
pub enum LambdaRevision {
    #[serde(rename = "AppSpecContent", rename_all = "camelCase")]
    AppSpecContent { app_spec_content: RawString },
    #[serde(rename = "String")]
    String { string: RawString },
    #[serde(rename = "S3", rename_all = "camelCase")]
    S3 { s3_location: AppSpecLocation },
}

/// An AppSpec file in S3, as a Lambda deployment's `s3Location` names it: `bundleType`
/// `YAML` or `JSON`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppSpecLocation {
    pub bucket: String,
    pub key: String,
    pub bundle_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
}

/// CodeDeploy's `AppSpecContent` and `RawString`: the AppSpec's text and, optionally,
/// its SHA-256 (hexadecimal), which must match when given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawString {
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A Lambda deployment's `deploymentInfo` (GetDeployment, BatchGetDeployments). Its
/// `deploymentOverview` counts its one target, the alias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaDeploymentInfo {
    pub application_name: String,
    pub deployment_group_name: String,
    pub deployment_config_name: String,
    pub deployment_id: String,
    pub revision: LambdaRevision,
    pub status: DeploymentStatus,
    pub create_time: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_time: Option<f64>,
    pub deployment_overview: DeploymentOverview,
    pub creator: Creator,
    pub auto_rollback_configuration: AutoRollbackConfiguration,
    pub deployment_style: DeploymentStyle,
    /// `Lambda`.
    pub compute_platform: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_alarm_configuration: Option<AlarmConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_information: Option<ErrorInformation>,
    /// Gantry's: effects that failed for good (a hook Lambda could not invoke, a
    /// notification to a deleted topic, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_effects: Vec<FailedEffectInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::reads_and_writes_back;
    use serde_json::json;

    #[test]
    fn codedeploys_lambda_revisions_read_and_write_back_unchanged() {
        let content: LambdaRevision = reads_and_writes_back(json!({
            "revisionType": "AppSpecContent",
            "appSpecContent": {"content": "version: 0.0\n", "sha256": "ab12"}
        }));
        assert!(matches!(content, LambdaRevision::AppSpecContent { .. }));
        let string: LambdaRevision = reads_and_writes_back(json!({
            "revisionType": "String", "string": {"content": "{}"}
        }));
        assert!(matches!(string, LambdaRevision::String { .. }));
        let s3: LambdaRevision = reads_and_writes_back(json!({
            "revisionType": "S3",
            "s3Location": {"bucket": "b", "key": "appspec.yml", "bundleType": "YAML"}
        }));
        assert!(matches!(s3, LambdaRevision::S3 { .. }));
    }
}
