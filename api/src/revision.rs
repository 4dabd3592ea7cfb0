//! Registered revisions as GetApplicationRevision, BatchGetApplicationRevisions and
//! ListApplicationRevisions return them, and what registering one answers.

use crate::paging::page_of;
use gantry_core::wire::RevisionLocation;
use serde::{Deserialize, Serialize};

/// CodeDeploy's `genericRevisionInfo` (GetApplicationRevision's `revisionInfo`): what
/// Gantry keeps of a registration, and of the revision's use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenericRevisionInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The deployment groups whose current target revision this is (their last
    /// successful deployment's), in name order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployment_groups: Vec<String>,
    /// When a deployment first used it, epoch seconds; none if none has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_used_time: Option<f64>,
    /// When a deployment last used it, epoch seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_time: Option<f64>,
    /// Epoch seconds.
    pub register_time: f64,
}

/// One of BatchGetApplicationRevisions' `revisions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionInfo {
    pub revision_location: RevisionLocation,
    pub generic_revision_info: GenericRevisionInfo,
}

/// BatchGetApplicationRevisions' output: the revisions found, and which were not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchGetApplicationRevisionsOutput {
    pub application_name: String,
    pub revisions: Vec<RevisionInfo>,
    /// Names the revisions asked for that are not registered (`revisions[2], ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// ListApplicationRevisions' output: an application's revisions, newest first, a page
/// at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListApplicationRevisionsOutput {
    pub revisions: Vec<RevisionLocation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

page_of!(ListApplicationRevisionsOutput, revisions: RevisionLocation);

/// RegisterApplicationRevision's output (the `push` function's, and the api's). CodeDeploy
/// answers nothing; Gantry answers the revision as registered: pinned to the bundle's
/// ETag and version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterApplicationRevisionOutput {
    pub revision: RevisionLocation,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::reads_and_writes_back;
    use serde_json::json;

    fn s3(key: &str, e_tag: &str) -> serde_json::Value {
        json!({"revisionType": "S3", "s3Location": {
            "bucket": "CodeDeployDemoBucket", "key": key, "bundleType": "zip",
            "version": "uTecLusvCB_JqHFXtfUcyfV8bEXAMPLE", "eTag": e_tag
        }})
    }

    #[test]
    fn codedeploys_list_application_revisions_reads_and_writes_back_unchanged() {
        let listed: ListApplicationRevisionsOutput = reads_and_writes_back(json!({
            "revisions": [s3("WordPressApp-v2.zip", "8e5d1a9c"), s3("WordPressApp.zip", "dd56cfd5")],
            "nextToken": "4d7953616d706c65"
        }));
        assert_eq!(listed.revisions.len(), 2);
    }

    #[test]
    fn a_registered_revision_reads_and_writes_back_unchanged() {
        let registered: RegisterApplicationRevisionOutput =
            reads_and_writes_back(json!({"revision": s3("WordPressApp.zip", "dd56cfd5")}));
        let RevisionLocation::S3 { s3_location } = registered.revision else {
            panic!("an S3 revision");
        };
        assert_eq!(s3_location.e_tag.as_deref(), Some("dd56cfd5"));
    }

    #[test]
    fn codedeploys_batch_get_application_revisions_reads_and_writes_back_unchanged() {
        let got: BatchGetApplicationRevisionsOutput = reads_and_writes_back(json!({
            "applicationName": "WordPress_App",
            "revisions": [{
                "revisionLocation": s3("WordPressApp.zip", "dd56cfd5"),
                "genericRevisionInfo": {
                    "description": "first", "deploymentGroups": ["web"],
                    "firstUsedTime": 1764979300.5, "lastUsedTime": 1764979400.25,
                    "registerTime": 1764979200.123
                }
            }],
            "errorMessage": "revisions[1]: this application has no such registered revision"
        }));
        let info = &got.revisions[0].generic_revision_info;
        assert_eq!(info.register_time, 1764979200.123);
        assert_eq!(info.deployment_groups, ["web"]);
        assert_eq!(info.last_used_time, Some(1764979400.25));
    }
}
