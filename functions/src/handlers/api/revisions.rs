//! Application revisions: Register, Get, BatchGet, List.

use super::applications::get_application;
use super::paging::page;
use super::{application_field, unknown_operation};
use crate::control::ControlPlane;
use crate::error::{ApiError, Exception, parse_input};
use crate::model::revision_key;
use crate::model::{is_blank, seconds};
use crate::store::StoredRevision;
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
            let revisions = store.list_revisions(&request.application_name).await?;
            let found = find_revision(&revisions, &request.revision).ok_or_else(|| {
                ApiError::new(
                    Exception::RevisionDoesNotExist,
                    "revision: this application has no such registered revision",
                )
            })?;
            let targets = store
                .group_target_revisions(&request.application_name)
                .await?;
            Ok(json!({
                "applicationName": request.application_name,
                "revision": found.record.revision_location,
                "revisionInfo": revision_info(found, &targets),
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
            let registered = store.list_revisions(&application).await?;
            let targets = store.group_target_revisions(&application).await?;
            let mut infos = Vec::new();
            let mut missing = Vec::new();
            for (index, wanted) in request.revisions.iter().enumerate() {
                match find_revision(&registered, wanted) {
                    Some(found) => infos.push(RevisionInfo {
                        revision_location: found.record.revision_location.clone(),
                        generic_revision_info: revision_info(found, &targets),
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
            let listing = Listing::of(&input)?;
            get_application(control, &application).await?;
            let mut revisions = store.list_revisions(&application).await?;
            revisions.retain(|revision| listing.in_bucket(&revision.record.revision_location));
            if listing.deployed != "ignore" {
                let targets: Vec<String> = store
                    .group_target_revisions(&application)
                    .await?
                    .into_iter()
                    .filter_map(|(_, target)| target.as_ref().map(revision_key))
                    .collect();
                let wanted = listing.deployed == "include";
                revisions.retain(|revision| {
                    let key = revision_key(&revision.record.revision_location);
                    targets.contains(&key) == wanted
                });
            }
            listing.sort(&mut revisions);
            let locations: Vec<RevisionLocation> = revisions
                .into_iter()
                .map(|revision| revision.record.revision_location)
                .collect();
            let (locations, next) = page(locations, &input, revision_key)?;
            Ok(json!(ListApplicationRevisionsOutput {
                revisions: locations,
                next_token: next,
            }))
        }
        other => Err(unknown_operation(other)),
    }
}

/// ListApplicationRevisions' filters and order, checked as CodeDeploy checks them.
#[derive(Debug, Clone, PartialEq)]
struct Listing {
    /// registerTime, firstUsedTime or lastUsedTime; none: registerTime.
    sort_by: Option<&'static str>,
    descending: bool,
    s3_bucket: Option<String>,
    s3_key_prefix: Option<String>,
    /// include, exclude or ignore.
    deployed: &'static str,
}

const SORT_BY: [&str; 3] = ["registerTime", "firstUsedTime", "lastUsedTime"];
const SORT_ORDERS: [&str; 2] = ["ascending", "descending"];
const DEPLOYED: [&str; 3] = ["include", "exclude", "ignore"];
/// The longest S3 key (and so key prefix), in bytes.
const MAX_KEY_BYTES: usize = 1024;

impl Listing {
    fn of(input: &Value) -> Result<Self, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        #[allow(dead_code)] // read for the names it allows
        struct ListRevisionsInput {
            application_name: Value,
            sort_by: Option<Value>,
            sort_order: Option<Value>,
            s3_bucket: Option<Value>,
            s3_key_prefix: Option<Value>,
            deployed: Option<Value>,
            next_token: Option<Value>,
        }
        let _: ListRevisionsInput = parse_input("ListApplicationRevisions", input.clone())?;
        let sort_by = one_of(input, "sortBy", &SORT_BY, Exception::InvalidSortBy)?;
        let sort_order = one_of(
            input,
            "sortOrder",
            &SORT_ORDERS,
            Exception::InvalidSortOrder,
        )?;
        let deployed = one_of(
            input,
            "deployed",
            &DEPLOYED,
            Exception::InvalidDeployedStateFilter,
        )?
        .unwrap_or("ignore");
        let s3_bucket = match input.get("s3Bucket") {
            None | Some(Value::Null) => None,
            Some(Value::String(bucket)) if is_bucket_name(bucket) => Some(bucket.clone()),
            Some(other) => {
                return Err(ApiError::new(
                    Exception::InvalidBucketNameFilter,
                    format!(
                        "s3Bucket: must be an S3 bucket name (1 to 255 letters, digits, '.', '-' and '_'), found {other}"
                    ),
                ));
            }
        };
        let s3_key_prefix = match input.get("s3KeyPrefix") {
            None | Some(Value::Null) => None,
            Some(Value::String(prefix)) if prefix.len() <= MAX_KEY_BYTES => Some(prefix.clone()),
            Some(Value::String(prefix)) => {
                return Err(ApiError::new(
                    Exception::InvalidKeyPrefixFilter,
                    format!(
                        "s3KeyPrefix: must be at most {MAX_KEY_BYTES} bytes (an S3 key's limit), found {}",
                        prefix.len()
                    ),
                ));
            }
            Some(other) => {
                return Err(ApiError::new(
                    Exception::InvalidKeyPrefixFilter,
                    format!("s3KeyPrefix: must be a string (an S3 key prefix), found {other}"),
                ));
            }
        };
        if s3_key_prefix.is_some() && s3_bucket.is_none() {
            return Err(ApiError::new(
                Exception::BucketNameFilterRequired,
                "s3KeyPrefix: filters the keys of one bucket; give s3Bucket too",
            ));
        }
        Ok(Self {
            sort_by,
            // Ascending unless told, as CodeDeploy documents; with neither given,
            // newest registration first.
            descending: match sort_order {
                Some(order) => order == "descending",
                None => sort_by.is_none(),
            },
            s3_bucket,
            s3_key_prefix,
            deployed,
        })
    }

    /// Whether the filters keep `location`: an S3 revision in `s3Bucket` under
    /// `s3KeyPrefix`, or any revision when no bucket is given.
    fn in_bucket(&self, location: &RevisionLocation) -> bool {
        let Some(bucket) = &self.s3_bucket else {
            return true;
        };
        match location {
            RevisionLocation::S3 { s3_location } => {
                &s3_location.bucket == bucket
                    && self
                        .s3_key_prefix
                        .as_ref()
                        .is_none_or(|prefix| s3_location.key.starts_with(prefix.as_str()))
            }
            RevisionLocation::GitHub { .. } => false,
        }
    }

    /// Orders revisions by `sortBy` in `sortOrder` (ascending unless told). Revisions no
    /// deployment has used come after those used, in either order; ties go newest
    /// registration first, then by key, so that pages follow one order. With neither
    /// given (CodeDeploy's "arbitrary order"), newest registration first.
    fn sort(&self, revisions: &mut [StoredRevision]) {
        let time = |revision: &StoredRevision| -> Option<f64> {
            match self.sort_by {
                Some("firstUsedTime") => revision.first_used.map(seconds),
                Some("lastUsedTime") => revision.last_used.map(seconds),
                _ => Some(revision.record.register_time),
            }
        };
        revisions.sort_by(|a, b| {
            let order = match (time(a), time(b)) {
                (Some(x), Some(y)) if self.descending => y.total_cmp(&x),
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            };
            order
                .then(b.record.register_time.total_cmp(&a.record.register_time))
                .then_with(|| {
                    revision_key(&a.record.revision_location)
                        .cmp(&revision_key(&b.record.revision_location))
                })
        });
    }
}

/// An enum member `field`, if given: one of `allowed`, or `exception` naming them.
fn one_of(
    input: &Value,
    field: &str,
    allowed: &[&'static str],
    exception: Exception,
) -> Result<Option<&'static str>, ApiError> {
    match input.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => allowed
            .iter()
            .find(|name| value.as_str() == Some(**name))
            .map(|name| Some(*name))
            .ok_or_else(|| {
                ApiError::new(
                    exception,
                    format!(
                        "{field}: must be one of {}, found {value}",
                        allowed.join(", ")
                    ),
                )
            }),
    }
}

/// A name S3 has for a bucket (its legacy rules, which allow capitals and `_`).
fn is_bucket_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// The latest registration of `wanted` among an application's revisions.
fn find_revision<'a>(
    revisions: &'a [StoredRevision],
    wanted: &RevisionLocation,
) -> Option<&'a StoredRevision> {
    let matching: Vec<&StoredRevision> = revisions
        .iter()
        .filter(|stored| same_revision(&stored.record.revision_location, wanted))
        .collect();
    // An abbreviated commit id that names two commits names none.
    let commits: std::collections::BTreeSet<String> = matching
        .iter()
        .map(|stored| revision_key(&stored.record.revision_location))
        .collect();
    if matches!(wanted, RevisionLocation::GitHub { .. }) && commits.len() > 1 {
        return None;
    }
    matching
        .into_iter()
        .max_by(|a, b| a.record.register_time.total_cmp(&b.record.register_time))
}

/// CodeDeploy's GenericRevisionInfo of a registered revision: with the groups among
/// `targets` (each group and its target revision) whose target revision it is.
fn revision_info(
    stored: &StoredRevision,
    targets: &[(String, Option<RevisionLocation>)],
) -> GenericRevisionInfo {
    let key = revision_key(&stored.record.revision_location);
    GenericRevisionInfo {
        description: stored.record.description.clone(),
        deployment_groups: targets
            .iter()
            .filter(|(_, target)| target.as_ref().is_some_and(|t| revision_key(t) == key))
            .map(|(group, _)| group.clone())
            .collect(),
        first_used_time: stored.first_used.map(seconds),
        last_used_time: stored.last_used.map(seconds),
        register_time: stored.record.register_time,
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
        // Recorded pinned (the full id, lowercase); asked for as given: GitHub's names
        // ignore case, and an abbreviated id (7 or more digits) names its commit.
        (
            RevisionLocation::GitHub {
                git_hub_location: have,
            },
            RevisionLocation::GitHub {
                git_hub_location: want,
            },
        ) => {
            have.repository.eq_ignore_ascii_case(&want.repository)
                && want.commit_id.len() >= 7
                && have
                    .commit_id
                    .starts_with(&want.commit_id.to_ascii_lowercase())
        }
        (have, want) => have == want,
    }
}
