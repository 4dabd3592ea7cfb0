//! CodePipeline: a job's input artifact, read from the pipeline's artifact store with the
//! job's own temporary credentials and copied into the bundle bucket, and the job's result
//! (PutJobSuccessResult with or without a continuation token, PutJobFailureResult).

use super::aws_failure;
use crate::error::ApiError;
use gantry_core::bundle::{self, BundleType};
use std::future::Future;
use std::io::Write;

/// At most this much of an execution summary (CodePipeline's limit for
/// `executionDetails.summary`).
pub const SUMMARY_CHARS: usize = 2048;
/// At most this much of a failure's message (CodePipeline's limit for
/// `failureDetails.message`).
pub const FAILURE_CHARS: usize = 5000;

/// Why a job failed, as CodePipeline's `FailureType` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The deployment failed or stopped, or the artifact is not a deployable bundle.
    JobFailed,
    /// The action's UserParameters, or what they name, are wrong.
    ConfigurationError,
    /// The job's credentials could not read its artifact.
    PermissionError,
    /// The input artifact is missing.
    RevisionUnavailable,
}

impl FailureKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::JobFailed => "JobFailed",
            Self::ConfigurationError => "ConfigurationError",
            Self::PermissionError => "PermissionError",
            Self::RevisionUnavailable => "RevisionUnavailable",
        }
    }
}

/// What a job is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobAnswer {
    /// The deployment runs: success with the first job's id as the continuation token, so
    /// that CodePipeline invokes the function again with it.
    Continue {
        token: String,
        deployment_id: String,
        summary: String,
    },
    /// The deployment succeeded: success without a token, the action is done.
    Succeeded {
        deployment_id: String,
        summary: String,
    },
    Failed {
        kind: FailureKind,
        message: String,
        deployment_id: Option<String>,
    },
}

/// Where a job's result goes: CodePipeline in Lambda, a recording in unit tests.
pub trait JobResults: Sync {
    /// Sends the answer. A job that has ended already (CodePipeline's
    /// InvalidJobStateException: an earlier delivery answered it) is not an error.
    fn answer(
        &self,
        job_id: &str,
        answer: &JobAnswer,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}

/// The credentials a job carries for its artifact store (`artifactCredentials`).
#[derive(Clone)]
pub struct ArtifactCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// The secret and the session token stay out of logs and messages.
impl std::fmt::Debug for ArtifactCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// An artifact copied into the bundle bucket.
#[derive(Debug, Clone)]
pub struct Copied {
    pub bundle_type: BundleType,
    pub version: Option<String>,
    pub e_tag: Option<String>,
    pub size: u64,
}

/// Why an artifact could not be copied: the job's fault (answered as a failure), or
/// ours (the invocation fails without answering; a retry finds what it did).
#[derive(Debug)]
pub enum CopyError {
    Job(FailureKind, String),
    Internal(ApiError),
}

/// CodePipeline's job results, and the S3 clients that copy a job's artifact.
pub struct PipelineJobs {
    codepipeline: aws_sdk_codepipeline::Client,
    /// The function's own: writes (and, for an artifact refused, deletes) the copy.
    s3: aws_sdk_s3::Client,
    /// What a job's artifact-store client is built from, with the job's credentials.
    config: aws_config::SdkConfig,
}

fn truncated(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars.saturating_sub(1)) {
        Some((end, _)) if text.chars().count() > chars => format!("{}…", &text[..end]),
        _ => text.to_owned(),
    }
}

impl PipelineJobs {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            codepipeline: aws_sdk_codepipeline::Client::new(config),
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(config)
                    .force_path_style(true)
                    .build(),
            ),
            config: config.clone(),
        }
    }

    /// Copies `s3://from_bucket/from_key` (read with the job's credentials) to
    /// `s3://to_bucket/to_key` (written with the function's), through a scratch file:
    /// the two are different principals, so no CopyObject can do it. The bundle type is
    /// what the archive is (CodePipeline's artifacts are zip files).
    pub async fn copy_artifact(
        &self,
        credentials: &ArtifactCredentials,
        (from_bucket, from_key): (&str, &str),
        (to_bucket, to_key): (&str, &str),
    ) -> Result<Copied, CopyError> {
        let named = format!("s3://{from_bucket}/{from_key}");
        let artifacts = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&self.config)
                .credentials_provider(aws_sdk_s3::config::Credentials::new(
                    &credentials.access_key_id,
                    &credentials.secret_access_key,
                    credentials.session_token.clone(),
                    None,
                    "codepipeline-job",
                ))
                .force_path_style(true)
                .build(),
        );
        let got = artifacts
            .get_object()
            .bucket(from_bucket)
            .key(from_key)
            .send()
            .await
            .map_err(
                |error| match error.raw_response().map(|r| r.status().as_u16()) {
                    Some(404) => CopyError::Job(
                        FailureKind::RevisionUnavailable,
                        format!("inputArtifacts[0]: {named} does not exist"),
                    ),
                    Some(403) => CopyError::Job(
                        FailureKind::PermissionError,
                        format!(
                            "inputArtifacts[0]: the job's artifact credentials may not read {named}"
                        ),
                    ),
                    _ => CopyError::Internal(aws_failure("S3 GetObject (artifact store)", error)),
                },
            )?;
        let size = got.content_length().unwrap_or(0).max(0) as u64;
        if size > bundle::MAX_VALIDATED_ARCHIVE_BYTES {
            return Err(CopyError::Job(
                FailureKind::JobFailed,
                format!(
                    "inputArtifacts[0]: {named} is {size} bytes; Gantry checks a bundle before deploying it and takes bundles of up to {} MiB",
                    bundle::MAX_VALIDATED_ARCHIVE_BYTES >> 20
                ),
            ));
        }
        let internal = |what: &str, error: &dyn std::fmt::Display| {
            CopyError::Internal(ApiError::internal(format!("{what}: {error}")))
        };
        let scratch = tempfile::NamedTempFile::new()
            .map_err(|error| internal("cannot create a scratch file", &error))?;
        let mut file = scratch.as_file();
        let mut body = got.body;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|error| internal(&format!("reading {named}"), &error))?
        {
            file.write_all(&chunk)
                .map_err(|error| internal("cannot write the artifact", &error))?;
        }
        file.flush()
            .map_err(|error| internal("cannot write the artifact", &error))?;
        let bundle_type = BundleType::detect(scratch.path())
            .ok()
            .flatten()
            .unwrap_or(BundleType::Zip);
        let body = aws_sdk_s3::primitives::ByteStream::from_path(scratch.path())
            .await
            .map_err(|error| internal("cannot read the scratch file", &error))?;
        let put = self
            .s3
            .put_object()
            .bucket(to_bucket)
            .key(to_key)
            .body(body)
            .send()
            .await
            .map_err(|error| {
                CopyError::Internal(aws_failure("S3 PutObject (bundle bucket)", error))
            })?;
        Ok(Copied {
            bundle_type,
            version: put.version_id().map(str::to_owned),
            e_tag: put.e_tag().map(|tag| tag.trim_matches('"').to_owned()),
            size,
        })
    }

    /// Deletes a copy that turned out not to be a deployable bundle (its version, in a
    /// versioned bucket), so that the bundle bucket keeps only revisions.
    pub async fn delete_copy(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<(), ApiError> {
        self.s3
            .delete_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_owned))
            .send()
            .await
            .map_err(|error| aws_failure("S3 DeleteObject (bundle bucket)", error))?;
        Ok(())
    }
}

impl JobResults for PipelineJobs {
    async fn answer(&self, job_id: &str, answer: &JobAnswer) -> Result<(), ApiError> {
        use aws_sdk_codepipeline::types::{ExecutionDetails, FailureDetails, FailureType};
        let sent = match answer {
            JobAnswer::Continue {
                deployment_id,
                summary,
                ..
            }
            | JobAnswer::Succeeded {
                deployment_id,
                summary,
            } => self
                .codepipeline
                .put_job_success_result()
                .job_id(job_id)
                .set_continuation_token(match answer {
                    JobAnswer::Continue { token, .. } => Some(token.clone()),
                    _ => None,
                })
                .execution_details(
                    ExecutionDetails::builder()
                        .summary(truncated(summary, SUMMARY_CHARS))
                        .external_execution_id(deployment_id)
                        .build(),
                )
                .send()
                .await
                .map(drop)
                .map_err(|error| {
                    let ended = error
                        .as_service_error()
                        .is_some_and(|e| e.is_invalid_job_state_exception());
                    (
                        ended,
                        aws_failure("CodePipeline PutJobSuccessResult", error),
                    )
                }),
            JobAnswer::Failed {
                kind,
                message,
                deployment_id,
            } => {
                let details = FailureDetails::builder()
                    .r#type(FailureType::from(kind.name()))
                    .message(truncated(message, FAILURE_CHARS))
                    .set_external_execution_id(deployment_id.clone())
                    .build()
                    .map_err(|error| ApiError::internal(format!("failureDetails: {error}")))?;
                self.codepipeline
                    .put_job_failure_result()
                    .job_id(job_id)
                    .failure_details(details)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|error| {
                        let ended = error
                            .as_service_error()
                            .is_some_and(|e| e.is_invalid_job_state_exception());
                        (
                            ended,
                            aws_failure("CodePipeline PutJobFailureResult", error),
                        )
                    })
            }
        };
        match sent {
            Ok(()) => Ok(()),
            Err((true, error)) => {
                tracing::info!(%job_id, %error, "the job was answered already");
                Ok(())
            }
            Err((false, error)) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_to_codepipelines_limits() {
        assert_eq!(truncated("short", 10), "short");
        let long = "é".repeat(6000);
        let cut = truncated(&long, FAILURE_CHARS);
        assert_eq!(cut.chars().count(), FAILURE_CHARS);
        assert!(cut.ends_with('…'));
    }
}
