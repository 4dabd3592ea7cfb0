//! Application revisions: Register, Get, BatchGet, List.

use super::applications::get_application;
use super::paging::page;
use super::{application_field, unknown_operation};
use crate::control::ControlPlane;
use crate::error::{ApiError, Exception, parse_input};
use crate::model::{RevisionRecord, is_blank};
use crate::store::keys;
use gantry_api::revision::{
    BatchGetApplicationRevisionsOutput, GenericRevisionInfo, ListApplicationRevisionsOutput,
    RevisionInfo,
};
use gantry_core::wire::RevisionLocation;
use serde::Deserialize;
use serde_json::{Value, json};

/// Application revisions.
pub(super) async fn revisions(
    control: &ControlPlane,
    name: &str,
    input: Value,
) -> Result<Value, ApiError> {
    let store = &control.store;
    match name {
        "RegisterApplicationRevision" => {
            let output = crate::handlers::push::handle(control, parse_input(name, input)?).await?;
            Ok(json!(output))
        }
        "GetApplicationRevision" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase", deny_unknown_fields)]
            struct GetRevisionInput {
                application_name: String,
                revision: RevisionLocation,
            }
            let request: GetRevisionInput = parse_input(name, input)?;
            get_application(control, &request.application_name).await?;
            let revisions: Vec<RevisionRecord> = store
                .list(&keys::revisions(&request.application_name))
                .await?;
            let found = find_revision(&revisions, &request.revision).ok_or_else(|| {
                ApiError::new(
                    Exception::RevisionDoesNotExist,
                    "revision: this application has no such registered revision",
                )
            })?;
            Ok(json!({
                "applicationName": request.application_name,
                "revision": found.revision_location,
                "revisionInfo": revision_info(found),
            }))
        }
        "BatchGetApplicationRevisions" => {
            let application = application_field(&input)?;
            if input.get("revisions").is_none_or(is_blank) {
                return Err(ApiError::new(
                    Exception::RevisionRequired,
                    "revisions: is required",
                ));
            }
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase", deny_unknown_fields)]
            struct BatchGetRevisionsInput {
                #[serde(rename = "applicationName")]
                _application_name: String,
                revisions: Vec<RevisionLocation>,
            }
            let request: BatchGetRevisionsInput = parse_input(name, input)?;
            if request.revisions.len() > 25 {
                return Err(ApiError::new(
                    Exception::BatchLimitExceeded,
                    format!(
                        "revisions: at most 25 per call, found {}",
                        request.revisions.len()
                    ),
                ));
            }
            get_application(control, &application).await?;
            let registered: Vec<RevisionRecord> =
                store.list(&keys::revisions(&application)).await?;
            let mut infos = Vec::new();
            let mut missing = Vec::new();
            for (index, wanted) in request.revisions.iter().enumerate() {
                match find_revision(&registered, wanted) {
                    Some(found) => infos.push(RevisionInfo {
                        revision_location: found.revision_location.clone(),
                        generic_revision_info: revision_info(found),
                    }),
                    None => missing.push(format!("revisions[{index}]")),
                }
            }
            let output = BatchGetApplicationRevisionsOutput {
                application_name: application,
                revisions: infos,
                error_message: (!missing.is_empty()).then(|| {
                    format!(
                        "{}: this application has no such registered revision",
                        missing.join(", ")
                    )
                }),
            };
            Ok(json!(output))
        }
        "ListApplicationRevisions" => {
            let application = application_field(&input)?;
            get_application(control, &application).await?;
            let mut revisions: Vec<RevisionRecord> =
                store.list(&keys::revisions(&application)).await?;
            revisions.sort_by(|a, b| b.register_time.total_cmp(&a.register_time));
            let locations: Vec<RevisionLocation> =
                revisions.into_iter().map(|r| r.revision_location).collect();
            let (locations, next) = page(locations, &input, crate::adapters::revision_key)?;
            Ok(json!(ListApplicationRevisionsOutput {
                revisions: locations,
                next_token: next,
            }))
        }
        other => Err(unknown_operation(other)),
    }
}

/// The latest registration of `wanted` among an application's revisions.
fn find_revision<'a>(
    revisions: &'a [RevisionRecord],
    wanted: &RevisionLocation,
) -> Option<&'a RevisionRecord> {
    revisions
        .iter()
        .filter(|record| same_revision(&record.revision_location, wanted))
        .max_by(|a, b| a.register_time.total_cmp(&b.register_time))
}

/// CodeDeploy's GenericRevisionInfo of a registered revision.
fn revision_info(record: &RevisionRecord) -> GenericRevisionInfo {
    GenericRevisionInfo {
        description: record.description.clone(),
        register_time: record.register_time,
    }
}

fn same_revision(stored: &RevisionLocation, wanted: &RevisionLocation) -> bool {
    match (stored, wanted) {
        (
            RevisionLocation::S3 { s3_location: have },
            RevisionLocation::S3 { s3_location: want },
        ) => {
            have.bucket == want.bucket
                && have.key == want.key
                && want
                    .version
                    .as_ref()
                    .is_none_or(|v| have.version.as_ref() == Some(v))
                && want
                    .e_tag
                    .as_ref()
                    .is_none_or(|t| have.e_tag.as_ref() == Some(t))
        }
        (have, want) => have == want,
    }
}
