//! S3: revision bundles, pinned to a version and ETag, checked in ranges; and the
//! registration of a revision.

use super::aws_failure;
use super::github::GitHubRevisions;
use crate::error::{ApiError, Exception};
use crate::model::{RevisionRecord, seconds};
use crate::store::DynamoStore;
use gantry_api::lambda::AppSpecLocation;
use gantry_core::bundle::{self, BundleType, Limits};
use gantry_core::lifecycle::LifecycleEvent;
use gantry_core::wire::{RevisionLocation, S3Location};
use std::collections::BTreeMap;

/// A bundle is downloaded in ranges of this size (S3's guidelines suggest 8 or 16 MB),
const RANGE_BYTES: i64 = 8 * 1024 * 1024;
/// this many at a time: 64 MiB in memory at most.
const RANGES_AT_ONCE: usize = 8;

/// Reads revision bundles from S3 and validates them with gantry-core.
#[derive(Clone)]
pub struct Bundles {
    client: aws_sdk_s3::Client,
    pub(super) limits: Limits,
}

fn invalid_revision(message: impl Into<String>) -> ApiError {
    ApiError::new(Exception::InvalidRevision, message)
}

impl Bundles {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self {
            client,
            limits: Limits::default(),
        }
    }

    /// A presigned GET of the bundle at `location` (its version, if pinned), valid for
    /// `valid_for`: signing is local, no request. Signed with the function's temporary
    /// credentials, the link ends when they do if that comes first.
    pub async fn link(
        &self,
        location: &S3Location,
        valid_for: std::time::Duration,
    ) -> Result<String, ApiError> {
        let presigning = aws_sdk_s3::presigning::PresigningConfig::expires_in(valid_for)
            .map_err(|error| ApiError::internal(format!("presigning: {error}")))?;
        let request = self
            .client
            .get_object()
            .bucket(&location.bucket)
            .key(&location.key)
            .set_version_id(location.version.clone())
            .presigned(presigning)
            .await
            .map_err(|error| aws_failure("S3", error))?;
        Ok(request.uri().to_owned())
    }

    /// Pins an S3 revision to the object as it is now: its ETag and version. A given
    /// ETag or version must match. A missing object is RevisionDoesNotExistException.
    pub async fn pin(&self, location: &S3Location) -> Result<(S3Location, i64), ApiError> {
        let head = self
            .client
            .head_object()
            .bucket(&location.bucket)
            .key(&location.key)
            .set_version_id(location.version.clone())
            .send()
            .await
            .map_err(|error| {
                let missing = error.as_service_error().is_some_and(|e| e.is_not_found())
                    || error
                        .raw_response()
                        .is_some_and(|r| r.status().as_u16() == 404 || r.status().as_u16() == 400);
                if missing {
                    ApiError::new(
                        Exception::RevisionDoesNotExist,
                        format!(
                            "revision.s3Location: s3://{}/{}{} does not exist",
                            location.bucket,
                            location.key,
                            location
                                .version
                                .as_deref()
                                .map(|v| format!(" (version {v})"))
                                .unwrap_or_default()
                        ),
                    )
                } else {
                    aws_failure("S3 HeadObject", error)
                }
            })?;
        let etag = head.e_tag().map(|tag| tag.trim_matches('"').to_owned());
        if let (Some(wanted), Some(found)) = (location.e_tag.as_deref(), etag.as_deref())
            && wanted.trim_matches('"') != found
        {
            return Err(invalid_revision(format!(
                "revision.s3Location.eTag: the object's ETag is {found}, not {wanted}; the object changed since that ETag was taken"
            )));
        }
        let size = head.content_length().unwrap_or(0);
        let pinned = S3Location {
            bucket: location.bucket.clone(),
            key: location.key.clone(),
            bundle_type: location.bundle_type,
            version: location
                .version
                .clone()
                .or(head.version_id().map(str::to_owned)),
            e_tag: etag,
        };
        Ok((pinned, size))
    }

    /// Reads a Lambda deployment's AppSpec file (at most `max_bytes`) at the version and
    /// ETag given, or the newest: its text and its location pinned to what was read.
    pub async fn read_appspec(
        &self,
        location: &AppSpecLocation,
        max_bytes: usize,
    ) -> Result<(String, AppSpecLocation), ApiError> {
        let named = format!("s3://{}/{}", location.bucket, location.key);
        let got = self
            .client
            .get_object()
            .bucket(&location.bucket)
            .key(&location.key)
            .set_version_id(location.version.clone())
            .set_if_match(
                location
                    .e_tag
                    .as_ref()
                    .map(|tag| format!("\"{}\"", tag.trim_matches('"'))),
            )
            .send()
            .await
            .map_err(|error| {
                let status = error.raw_response().map(|r| r.status().as_u16());
                match status {
                    Some(404 | 400) => ApiError::new(
                        Exception::RevisionDoesNotExist,
                        format!("revision.s3Location: {named} does not exist"),
                    ),
                    Some(412) => invalid_revision(format!(
                        "revision.s3Location.eTag: {named} is no longer the object with that ETag"
                    )),
                    Some(403) => invalid_revision(format!(
                        "revision.s3Location.key: {named} cannot be read by Gantry (access denied); put the AppSpec file in the bundle bucket under the revision prefix"
                    )),
                    _ => aws_failure("S3 GetObject", error),
                }
            })?;
        if got.content_length().unwrap_or(0) as usize > max_bytes {
            return Err(invalid_revision(format!(
                "revision.s3Location: {named} is {} bytes; an AppSpec file has at most {max_bytes}",
                got.content_length().unwrap_or(0)
            )));
        }
        let pinned = AppSpecLocation {
            version: location
                .version
                .clone()
                .or(got.version_id().map(str::to_owned)),
            e_tag: got.e_tag().map(|tag| tag.trim_matches('"').to_owned()),
            ..location.clone()
        };
        let body = got
            .body
            .collect()
            .await
            .map_err(|error| ApiError::internal(format!("reading {named}: {error}")))?
            .into_bytes();
        if body.len() > max_bytes {
            return Err(invalid_revision(format!(
                "revision.s3Location: {named} is over {max_bytes} bytes; an AppSpec file has at most that"
            )));
        }
        let text = String::from_utf8(body.to_vec()).map_err(|_| {
            invalid_revision(format!("revision.s3Location: {named} is not UTF-8 text"))
        })?;
        Ok((text, pinned))
    }

    /// Downloads a pinned bundle and checks it as the agent would: a safe archive of the
    /// declared type, a valid appspec, every referenced file present. Returns the hook
    /// timeouts per event, or every problem found.
    pub async fn validate(
        &self,
        location: &S3Location,
        size: i64,
    ) -> Result<BTreeMap<LifecycleEvent, u64>, ApiError> {
        if size as u64 > bundle::MAX_VALIDATED_ARCHIVE_BYTES {
            return Err(invalid_revision(format!(
                "revision.s3Location: the bundle is {size} bytes; Gantry checks a bundle before \
                 deploying it and takes bundles of up to {} MiB",
                bundle::MAX_VALIDATED_ARCHIVE_BYTES >> 20
            )));
        }
        let scratch = tempfile::tempdir().map_err(|error| {
            ApiError::internal(format!("cannot create a scratch directory: {error}"))
        })?;
        let archive = scratch.path().join("bundle");
        self.download(location, size, &archive).await?;
        let named = format!("s3://{}/{}", location.bucket, location.key);
        check_bundle(&archive, location.bundle_type, &named, self.limits).await
    }
}

/// Checks a downloaded bundle (`archive`, in a scratch directory of its own) as the agent
/// would: a safe archive of the declared type, a valid appspec, every referenced file
/// present. Returns the hook timeouts per event, or every problem found, as an
/// InvalidRevision naming the revision (`named`).
pub(super) async fn check_bundle(
    archive: &std::path::Path,
    declared: BundleType,
    named: &str,
    limits: Limits,
) -> Result<BTreeMap<LifecycleEvent, u64>, ApiError> {
    let archive = archive.to_owned();
    let root = archive
        .parent()
        .ok_or_else(|| ApiError::internal("the bundle has no scratch directory"))?
        .to_owned();
    let checked = tokio::task::spawn_blocking(move || {
        let sniffed = BundleType::detect(&archive).ok().flatten();
        if let Some(actual) = sniffed
            && actual != declared
            && !(actual == BundleType::Tar && declared == BundleType::Tgz)
        {
            return Ok(Err(format!(
                "revision.s3Location.bundleType: the object is a {} archive, not {}",
                actual.name(),
                declared.name()
            )));
        }
        bundle::check_archive(&archive, declared, &root, &limits).map(|result| {
            result.map_err(|problems| {
                problems
                    .0
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        })
    })
    .await
    .map_err(|error| ApiError::internal(error.to_string()))?
    .map_err(|error| ApiError::internal(format!("checking the bundle: {error}")))?;
    let spec = checked.map_err(|problems| {
        invalid_revision(format!("{named} is not a deployable revision: {problems}"))
    })?;
    Ok(spec
        .hooks
        .iter()
        .map(|(event, _)| (*event, spec.event_limit_secs(*event)))
        .collect())
}

impl Bundles {
    /// Downloads a pinned bundle of `size` bytes to `path` in byte ranges fetched
    /// [`RANGES_AT_ONCE`] at a time, as S3's performance guidelines advise for large
    /// objects: one GET stream would spend most of the function's time on a large bundle.
    /// Every range names the pinned version and ETag, so a bundle replaced meanwhile fails
    /// (PreconditionFailed) rather than mixing two objects.
    async fn download(
        &self,
        location: &S3Location,
        size: i64,
        path: &std::path::Path,
    ) -> Result<(), ApiError> {
        let cannot_write =
            |error: std::io::Error| ApiError::internal(format!("cannot write the bundle: {error}"));
        let file = std::sync::Arc::new(std::fs::File::create(path).map_err(cannot_write)?);
        let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(RANGES_AT_ONCE));
        let mut ranges = tokio::task::JoinSet::new();
        for start in (0..size).step_by(RANGE_BYTES as usize) {
            let end = (start + RANGE_BYTES).min(size) - 1;
            let request = self
                .client
                .get_object()
                .bucket(&location.bucket)
                .key(&location.key)
                .range(format!("bytes={start}-{end}"))
                .set_version_id(location.version.clone())
                .set_if_match(location.e_tag.as_ref().map(|tag| format!("\"{tag}\"")));
            let (file, permits) = (
                std::sync::Arc::clone(&file),
                std::sync::Arc::clone(&permits),
            );
            ranges.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let body = request
                    .send()
                    .await
                    .map_err(|error| aws_failure("S3 GetObject", error))?
                    .body
                    .collect()
                    .await
                    .map_err(|error| aws_failure("S3 GetObject body", error))?
                    .into_bytes();
                if body.len() as i64 != end - start + 1 {
                    return Err(ApiError::internal(format!(
                        "S3 GetObject: {} bytes for bytes {start}-{end} of a {size}-byte bundle",
                        body.len()
                    )));
                }
                tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt;
                    file.write_all_at(&body, start as u64).map_err(cannot_write)
                })
                .await
                .map_err(|error| ApiError::internal(error.to_string()))?
            });
        }
        while let Some(range) = ranges.join_next().await {
            range.map_err(|error| ApiError::internal(error.to_string()))??;
        }
        Ok(())
    }
}

/// Pins a revision (an S3 bundle to its version and ETag, a GitHub commit to its full
/// id) and checks it, for the record push keeps.
pub async fn register(
    bundles: &Bundles,
    github: &GitHubRevisions,
    store: &DynamoStore,
    application: &str,
    location: &RevisionLocation,
    description: Option<String>,
    now: gantry_core::deployment::Millis,
) -> Result<RevisionRecord, ApiError> {
    let (pinned, size, event_timeouts) = match location {
        RevisionLocation::S3 { s3_location } => {
            let (pinned, size) = bundles.pin(s3_location).await?;
            let event_timeouts = bundles.validate(&pinned, size).await?;
            let pinned = RevisionLocation::S3 {
                s3_location: pinned,
            };
            (pinned, size, event_timeouts)
        }
        RevisionLocation::GitHub { git_hub_location } => {
            let pinned = github.pin(git_hub_location).await?;
            let (event_timeouts, size) = github.validate(&pinned, bundles.limits).await?;
            let pinned = RevisionLocation::GitHub {
                git_hub_location: pinned,
            };
            (pinned, size, event_timeouts)
        }
    };
    let record = RevisionRecord {
        application_name: application.to_owned(),
        revision_location: pinned,
        description,
        register_time: seconds(now),
        event_timeouts,
        size_bytes: Some(size),
    };
    store.put_revision(application, &record).await?;
    Ok(record)
}
