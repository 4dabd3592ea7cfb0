//! The agent's AWS adapters: bundles from S3, reports to SQS.
//!
//! The runner is synchronous (hooks are processes), so these adapters block on the
//! agent's Tokio runtime through a handle; they are only called from blocking threads.

use crate::runner::{ReportSink, RevisionSource};
use aws_sdk_s3::error::DisplayErrorContext;
use gantry_core::wire::{Report, RevisionLocation, S3Location};
use std::path::Path;
use tokio::io::AsyncWriteExt;
use tokio::runtime::Handle;

pub struct S3Revisions {
    pub client: aws_sdk_s3::Client,
    pub runtime: Handle,
}

impl RevisionSource for S3Revisions {
    fn fetch(&self, revision: &RevisionLocation, destination: &Path) -> Result<(), String> {
        match revision {
            RevisionLocation::S3 { s3_location } => self
                .runtime
                .block_on(self.fetch_s3(s3_location, destination)),
            RevisionLocation::GitHub { .. } => Err(
                "GitHub revisions are not supported by this agent yet; register the revision in S3"
                    .to_owned(),
            ),
        }
    }
}

impl S3Revisions {
    async fn fetch_s3(&self, location: &S3Location, destination: &Path) -> Result<(), String> {
        let name = format!("s3://{}/{}", location.bucket, location.key);
        let mut request = self
            .client
            .get_object()
            .bucket(&location.bucket)
            .key(&location.key);
        if let Some(version) = &location.version {
            request = request.version_id(version);
        }
        let object = request
            .send()
            .await
            .map_err(|error| format!("downloading {name}: {}", DisplayErrorContext(error)))?;
        // The ETag recorded when the revision was registered pins its content.
        if let Some(expected) = &location.e_tag {
            let found = object.e_tag().unwrap_or_default();
            if found.trim_matches('"') != expected.trim_matches('"') {
                return Err(format!(
                    "{name} has ETag {found} but the revision was registered with {expected}: the bundle changed after it was pushed"
                ));
            }
        }
        let mut file = tokio::fs::File::create(destination)
            .await
            .map_err(|error| format!("creating {}: {error}", destination.display()))?;
        let mut body = object.body;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|error| format!("downloading {name}: {error}"))?
        {
            file.write_all(&chunk)
                .await
                .map_err(|error| format!("writing {}: {error}", destination.display()))?;
        }
        file.flush()
            .await
            .map_err(|error| format!("writing {}: {error}", destination.display()))
    }
}

pub struct SqsReports {
    pub client: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub runtime: Handle,
}

impl ReportSink for SqsReports {
    fn send(&self, report: &Report) -> Result<(), String> {
        self.runtime
            .block_on(
                self.client
                    .send_message()
                    .queue_url(&self.queue_url)
                    .message_body(report.to_json())
                    .send(),
            )
            .map(|_| ())
            .map_err(|error| format!("sending a report: {}", DisplayErrorContext(error)))
    }
}
