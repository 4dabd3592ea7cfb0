//! push: RegisterApplicationRevision. Checks the bundle exists (HeadObject, ETag),
//! downloads it and validates its appspec, and records the revision pinned to the
//! object's ETag and version. A bad bundle records nothing.

use crate::control::ControlPlane;
use crate::error::ApiError;
use gantry_api::revision::RegisterApplicationRevisionOutput;
use gantry_core::wire::RevisionLocation;
use serde::Deserialize;

/// RegisterApplicationRevision's input, in CodeDeploy's shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterRevisionInput {
    pub application_name: String,
    pub revision: RevisionLocation,
    #[serde(default)]
    pub description: Option<String>,
}

pub async fn handle(
    control: &ControlPlane,
    input: RegisterRevisionInput,
) -> Result<RegisterApplicationRevisionOutput, ApiError> {
    let record = control
        .register_revision(&input.application_name, &input.revision, input.description)
        .await?;
    Ok(RegisterApplicationRevisionOutput {
        revision: record.revision_location,
    })
}
