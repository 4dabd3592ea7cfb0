//! Registered revisions as GetApplicationRevision and BatchGetApplicationRevisions
//! return them.

use gantry_core::wire::RevisionLocation;
use serde::{Deserialize, Serialize};

/// CodeDeploy's `genericRevisionInfo` (GetApplicationRevision's `revisionInfo`): what
/// Gantry keeps of a registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenericRevisionInfo {
    pub description: Option<String>,
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
