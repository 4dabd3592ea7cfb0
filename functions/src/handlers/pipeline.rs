//! pipeline: CodePipeline's "Invoke AWS Lambda" action. A job names the application and
//! group in its UserParameters; its input artifact (read from the artifact store with
//! the job's own credentials) is copied into the bundle bucket, registered as a revision
//! (validated as a pushed bundle is), and deployed. The job is answered
//! PutJobSuccessResult with the first job's id as continuation token while the
//! deployment runs; CodePipeline then invokes the function again with the token (a new
//! job), which is answered the same way until the deployment ends: success without a
//! token, or PutJobFailureResult with the deployment's errorInformation.
//!
//! Nothing waits inside an invocation: the continuation is the wait. A job delivered
//! again finds the deployment its first delivery made (its id is derived from the job's,
//! [`deploy::deployment_id_for`]) and creates none.

use crate::adapters::{ArtifactCredentials, CopyError, FailureKind, JobAnswer, JobResults};
use crate::control::ControlPlane;
use crate::deploy::{self, CreateDeploymentInput, Origin};
use crate::engine;
use crate::error::{ApiError, Exception};
use crate::model::DeploymentSpec;
use crate::store::StoreError;
use aws_lambda_events::event::codepipeline_job::{CodePipelineJob, CodePipelineJobEvent};
use gantry_core::deployment::{DeploymentStatus, ErrorInformation};
use gantry_core::wire::{Creator, RevisionLocation, S3Location};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

/// The action's UserParameters: a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserParameters {
    pub application: String,
    pub deployment_group: String,
    #[serde(default)]
    pub deployment_config: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

const PARAMETERS_SHAPE: &str = r#"a JSON object {"application": "...", "deploymentGroup": "...", "deploymentConfig": "..." (optional), "description": "..." (optional)}"#;

/// Parses UserParameters, naming the field that is wrong and what it takes.
pub fn parse_user_parameters(raw: Option<&str>) -> Result<UserParameters, String> {
    let raw = raw
        .map(str::trim)
        .filter(|raw| !raw.is_empty())
        .ok_or_else(|| format!("UserParameters: is required: {PARAMETERS_SHAPE}"))?;
    let mut json = serde_json::Deserializer::from_str(raw);
    let parameters: UserParameters =
        serde_path_to_error::deserialize(&mut json).map_err(|error| {
            let path = error.path().to_string();
            let place = if path == "." {
                "UserParameters".to_owned()
            } else {
                format!("UserParameters.{path}")
            };
            format!(
                "{place}: {}; UserParameters is {PARAMETERS_SHAPE}",
                error.into_inner()
            )
        })?;
    for (field, value) in [
        ("application", Some(&parameters.application)),
        ("deploymentGroup", Some(&parameters.deployment_group)),
        ("deploymentConfig", parameters.deployment_config.as_ref()),
    ] {
        if value.is_some_and(|value| value.trim().is_empty()) {
            return Err(format!(
                "UserParameters.{field}: must not be empty; UserParameters is {PARAMETERS_SHAPE}"
            ));
        }
    }
    Ok(parameters)
}

/// The deployment a job creates: the same for every delivery of the job.
pub fn job_deployment_id(job_id: &str) -> String {
    deploy::deployment_id_for(&format!("codepipeline-job:{job_id}"))
}

/// Where a job's artifact is copied in the bundle bucket: under the revision prefix, one
/// key per job, so a delivery again writes the same key.
pub fn copy_key(revision_prefix: Option<&str>, application: &str, job_id: &str) -> String {
    format!(
        "{}codepipeline/{application}/{job_id}",
        revision_prefix.unwrap_or_default()
    )
}

/// How a job is answered for its deployment as it stands; `token` is the first job's id,
/// the continuation token while the deployment runs.
pub fn answer_for(
    token: &str,
    deployment_id: &str,
    status: DeploymentStatus,
    error: Option<&ErrorInformation>,
) -> JobAnswer {
    match status {
        DeploymentStatus::Created | DeploymentStatus::InProgress => JobAnswer::Continue {
            token: token.to_owned(),
            deployment_id: deployment_id.to_owned(),
            summary: format!(
                "Gantry deployment {deployment_id} is {}",
                status_name(status)
            ),
        },
        DeploymentStatus::Succeeded => JobAnswer::Succeeded {
            deployment_id: deployment_id.to_owned(),
            summary: format!("Gantry deployment {deployment_id} succeeded"),
        },
        DeploymentStatus::Failed | DeploymentStatus::Stopped => JobAnswer::Failed {
            kind: FailureKind::JobFailed,
            message: match error {
                Some(error) => format!(
                    "Gantry deployment {deployment_id} {}: {}: {}",
                    status_name(status),
                    error.code,
                    error.message
                ),
                None => format!("Gantry deployment {deployment_id} {}", status_name(status)),
            },
            deployment_id: Some(deployment_id.to_owned()),
        },
    }
}

fn status_name(status: DeploymentStatus) -> &'static str {
    match status {
        DeploymentStatus::Created => "Created",
        DeploymentStatus::InProgress => "InProgress",
        DeploymentStatus::Succeeded => "Succeeded",
        DeploymentStatus::Failed => "Failed",
        DeploymentStatus::Stopped => "Stopped",
    }
}

/// What the invocation returns (CodePipeline ignores it; logs and tests read it).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    pub job_id: String,
    /// `continue`, `succeeded` or `failed`.
    pub answer: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Output {
    fn of(job_id: &str, answer: &JobAnswer) -> Self {
        let (name, deployment_id, message) = match answer {
            JobAnswer::Continue { deployment_id, .. } => ("continue", Some(deployment_id), None),
            JobAnswer::Succeeded { deployment_id, .. } => ("succeeded", Some(deployment_id), None),
            JobAnswer::Failed {
                message,
                deployment_id,
                ..
            } => ("failed", deployment_id.as_ref(), Some(message.clone())),
        };
        Self {
            job_id: job_id.to_owned(),
            answer: name,
            deployment_id: deployment_id.cloned(),
            message,
        }
    }
}

/// One invocation: the job answered, or an error (a failure of ours, not the job's: the
/// invocation fails without answering, and a retry of it, or the job delivered again,
/// finds what this one did; a job never answered fails when its action times out).
pub async fn handle(
    control: &ControlPlane,
    event: CodePipelineJobEvent,
) -> Result<Output, ApiError> {
    let job = event.code_pipeline_job;
    let job_id = job
        .id
        .clone()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::invalid_input("CodePipeline.job.id: is required"))?;
    let span = tracing::info_span!("codepipeline_job", %job_id);
    let answer = Box::pin(decide(control, &job_id, &job).instrument(span)).await?;
    if let JobAnswer::Failed { kind, message, .. } = &answer {
        tracing::warn!(%job_id, kind = kind.name(), %message, "job failed");
    }
    control.pipeline_jobs.answer(&job_id, &answer).await?;
    Ok(Output::of(&job_id, &answer))
}

fn failed(kind: FailureKind, message: impl Into<String>) -> JobAnswer {
    JobAnswer::Failed {
        kind,
        message: message.into(),
        deployment_id: None,
    }
}

/// The deployment the job `token` (its first delivery's id) made, as it stands, if it
/// exists and deploys to the application and group `parameters` name: a token made up, or
/// taken from another pipeline's job, reports nothing of another group.
async fn deployment_answer(
    control: &ControlPlane,
    token: &str,
    parameters: &UserParameters,
) -> Result<Option<JobAnswer>, ApiError> {
    let id = job_deployment_id(token);
    match control.store.load_deployment::<DeploymentSpec>(&id).await {
        Ok(record)
            if record.spec.application_name == parameters.application
                && record.spec.deployment_group_name == parameters.deployment_group =>
        {
            Ok(Some(answer_for(
                token,
                &id,
                record.state.status,
                record.state.error.as_ref(),
            )))
        }
        Ok(_) | Err(StoreError::NotFound(_)) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// The tag that opens a deployment group to CodePipeline: whoever may invoke the pipeline
/// function deploys to the groups tagged `gantry:codepipeline=allow`, and to no other.
pub const PIPELINE_TAG: &str = "gantry:codepipeline";

/// Whether the group is open to CodePipeline ([`PIPELINE_TAG`]).
async fn open_to_pipelines(
    control: &ControlPlane,
    application: &str,
    group: &str,
) -> Result<bool, ApiError> {
    let tags = control
        .store
        .tags::<crate::model::Tag>(&crate::store::keys::groups(application), group)
        .await?;
    Ok(tags.is_some_and(|tags| {
        tags.value
            .iter()
            .any(|tag| tag.key == PIPELINE_TAG && tag.value == "allow")
    }))
}

async fn decide(
    control: &ControlPlane,
    job_id: &str,
    job: &CodePipelineJob,
) -> Result<JobAnswer, ApiError> {
    let parameters = match parse_user_parameters(
        job.data
            .action_configuration
            .configuration
            .user_parameters
            .as_deref(),
    ) {
        Ok(parameters) => parameters,
        Err(message) => return Ok(failed(FailureKind::ConfigurationError, message)),
    };
    // A continuation: the token is the first job's id, as this function answered it.
    if let Some(token) = job.data.continuation_token.as_deref() {
        return Ok(deployment_answer(control, token, &parameters)
            .await?
            .unwrap_or_else(|| {
                failed(
                    FailureKind::JobFailed,
                    format!(
                        "continuationToken: no job of this function deployed to application {:?}, group {:?} under that token",
                        parameters.application, parameters.deployment_group
                    ),
                )
            }));
    }
    let deployment_id = job_deployment_id(job_id);
    // Delivered again: the deployment the first delivery made, as it stands.
    if let Some(answer) = deployment_answer(control, job_id, &parameters).await? {
        tracing::info!(%deployment_id, "job delivered again: its deployment exists");
        return Ok(answer);
    }
    match control
        .load_group(&parameters.application, &parameters.deployment_group)
        .await
    {
        Ok(group) if group.settings.value.is_lambda() => {
            return Ok(failed(
                FailureKind::ConfigurationError,
                format!(
                    "UserParameters.deploymentGroup: {:?} is a group of the Lambda compute platform; this action deploys bundles to Server groups (EC2 and on-premises instances)",
                    parameters.deployment_group
                ),
            ));
        }
        Ok(_) => {}
        Err(error) => return configuration_error(error),
    }
    if !open_to_pipelines(
        control,
        &parameters.application,
        &parameters.deployment_group,
    )
    .await?
    {
        return Ok(failed(
            FailureKind::ConfigurationError,
            format!(
                "UserParameters.deploymentGroup: {:?} is not open to CodePipeline; tag the group {PIPELINE_TAG}=allow (TagResource on its ARN) to let this action deploy to it",
                parameters.deployment_group
            ),
        ));
    }
    let revision = match Box::pin(copy_and_register(control, job_id, job, &parameters)).await? {
        Ok(revision) => revision,
        Err(answer) => return Ok(answer),
    };
    let input = CreateDeploymentInput {
        application_name: parameters.application.clone(),
        deployment_group_name: parameters.deployment_group.clone(),
        revision: Some(revision),
        deployment_config_name: parameters.deployment_config.clone(),
        description: Some(description(&parameters, job_id)),
        ..CreateDeploymentInput::default()
    };
    let origin = Origin {
        deployment_id: Some(deployment_id.clone()),
        ..Origin::default()
    };
    match Box::pin(deploy::create(control, input, Creator::User, origin)).await {
        Ok(created) => {
            engine::start(control, &created).await;
            tracing::info!(%deployment_id, "deployment created for the job");
            Ok(answer_for(
                job_id,
                &deployment_id,
                created.record.state.status,
                None,
            ))
        }
        // Another delivery of the job created it meanwhile.
        Err(error) if error.code == Exception::DeploymentLimitExceeded => {
            match deployment_answer(control, job_id, &parameters).await? {
                Some(answer) => Ok(answer),
                None => Ok(failed(
                    FailureKind::JobFailed,
                    format!("{}: {}", error.code, error.message),
                )),
            }
        }
        Err(error) => configuration_error(error),
    }
}

fn description(parameters: &UserParameters, job_id: &str) -> String {
    parameters
        .description
        .clone()
        .unwrap_or_else(|| format!("Deployed by CodePipeline job {job_id}"))
}

/// A refusal of what UserParameters name, as the job's failure, named by its
/// UserParameters field; an internal error stays one.
fn configuration_error(error: ApiError) -> Result<JobAnswer, ApiError> {
    let field = match error.code {
        Exception::InternalFailure => return Err(error),
        Exception::ApplicationDoesNotExist | Exception::ApplicationNameRequired => {
            "UserParameters.application"
        }
        Exception::DeploymentGroupDoesNotExist | Exception::DeploymentGroupNameRequired => {
            "UserParameters.deploymentGroup"
        }
        Exception::DeploymentConfigDoesNotExist | Exception::InvalidDeploymentConfigName => {
            "UserParameters.deploymentConfig"
        }
        Exception::DescriptionTooLong => "UserParameters.description",
        _ => {
            return Ok(failed(
                FailureKind::JobFailed,
                format!("{}: {}", error.code, error.message),
            ));
        }
    };
    Ok(failed(
        FailureKind::ConfigurationError,
        format!("{field}: {} ({})", error.message, error.code),
    ))
}

/// The job's one input artifact copied into the bundle bucket and registered (validated
/// as a pushed bundle is); a refused copy is deleted. `Ok(Err(answer))`: the job fails.
async fn copy_and_register(
    control: &ControlPlane,
    job_id: &str,
    job: &CodePipelineJob,
    parameters: &UserParameters,
) -> Result<Result<RevisionLocation, JobAnswer>, ApiError> {
    let artifacts = &job.data.input_artifacts;
    let [artifact] = artifacts.as_slice() else {
        return Ok(Err(failed(
            FailureKind::ConfigurationError,
            format!(
                "inputArtifacts: the action takes exactly one input artifact (the bundle: an archive with appspec.yml at its top), found {}",
                artifacts.len()
            ),
        )));
    };
    let location = &artifact.location.s3_location;
    let (Some(from_bucket), Some(from_key)) = (
        location.bucket_name.as_deref(),
        location.object_key.as_deref(),
    ) else {
        return Ok(Err(failed(
            FailureKind::RevisionUnavailable,
            "inputArtifacts[0].location.s3Location: needs bucketName and objectKey",
        )));
    };
    let Some(bucket) = control.settings.bundle_bucket.clone() else {
        return Ok(Err(failed(
            FailureKind::ConfigurationError,
            "GANTRY_BUNDLE_BUCKET: the stack names no bundle bucket to copy the artifact into",
        )));
    };
    let credentials = &job.data.artifact_credentials;
    let (Some(access_key_id), Some(secret_access_key)) = (
        credentials.access_key_id.clone(),
        credentials.secret_access_key.clone(),
    ) else {
        return Ok(Err(failed(
            FailureKind::PermissionError,
            "artifactCredentials: needs accessKeyId and secretAccessKey",
        )));
    };
    let credentials = ArtifactCredentials {
        access_key_id,
        secret_access_key,
        session_token: credentials.session_token.clone(),
    };
    let key = copy_key(
        control.settings.revision_prefix.as_deref(),
        &parameters.application,
        job_id,
    );
    let copied = match control
        .pipeline_jobs
        .copy_artifact(&credentials, (from_bucket, from_key), (&bucket, &key))
        .await
    {
        Ok(copied) => copied,
        Err(CopyError::Job(kind, message)) => return Ok(Err(failed(kind, message))),
        Err(CopyError::Internal(error)) => return Err(error),
    };
    let revision = RevisionLocation::S3 {
        s3_location: S3Location {
            bucket: bucket.clone(),
            key: key.clone(),
            bundle_type: copied.bundle_type,
            version: copied.version.clone(),
            e_tag: copied.e_tag.clone(),
        },
    };
    tracing::info!(%key, size = copied.size, "artifact copied into the bundle bucket");
    match control
        .register_revision(
            &parameters.application,
            &revision,
            Some(description(parameters, job_id)),
        )
        .await
    {
        Ok(record) => Ok(Ok(record.revision_location)),
        Err(error)
            if matches!(
                error.code,
                Exception::InvalidRevision | Exception::RevisionDoesNotExist
            ) =>
        {
            if let Err(delete) = control
                .pipeline_jobs
                .delete_copy(&bucket, &key, copied.version.as_deref())
                .await
            {
                tracing::warn!(%delete, %key, "the refused copy was not deleted");
            }
            Ok(Err(failed(
                FailureKind::JobFailed,
                format!(
                    "inputArtifacts[0] ({}): not a deployable bundle: {}",
                    artifact.name.as_deref().unwrap_or("unnamed"),
                    error.message
                ),
            )))
        }
        Err(error) => configuration_error(error).map(Err),
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
