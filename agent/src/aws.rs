//! The agent's AWS adapters: bundles from S3, reports to SQS.
//!
//! The runner is synchronous (hooks are processes): the bundle source blocks on the
//! agent's Tokio runtime through a handle, from a blocking thread; reports only queue.

use crate::runner::{ReportSink, RevisionSource};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use gantry_core::wire::{Report, RevisionLocation, S3Location};
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

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

/// Reports leave through a background task, so an event never waits on SQS: the
/// runner queues a report and moves on, and the task sends what has queued up in
/// batches of up to ten. [`SqsReports::flush`] waits until everything queued before it
/// was sent, and says whether any of it could not be.
#[derive(Clone)]
pub struct SqsReports {
    queue: mpsc::UnboundedSender<Outgoing>,
}

enum Outgoing {
    Report(String),
    Flush(oneshot::Sender<Result<(), String>>),
}

/// SendMessageBatch's limit.
const BATCH_MAX: usize = 10;
/// Sends of one batch, each after the SDK's own retries, before its reports are given up
/// on (a redelivered command re-sends its final reports).
const SEND_ATTEMPTS: u32 = 4;

impl SqsReports {
    /// Starts the sending task on the current runtime.
    pub fn start(client: aws_sdk_sqs::Client, queue_url: String) -> Self {
        let (queue, outgoing) = mpsc::unbounded_channel();
        tokio::spawn(send_reports(client, queue_url, outgoing));
        Self { queue }
    }

    /// Waits until every report queued so far was sent; an error names what was not.
    pub async fn flush(&self) -> Result<(), String> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Outgoing::Flush(done))
            .map_err(|_| "the report sender stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the report sender stopped".to_owned())?
    }
}

impl ReportSink for SqsReports {
    fn send(&self, report: &Report) -> Result<(), String> {
        self.queue
            .send(Outgoing::Report(report.to_json()))
            .map_err(|_| "the report sender stopped".to_owned())
    }
}

async fn send_reports(
    client: aws_sdk_sqs::Client,
    queue_url: String,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
) {
    // Failures since the last flush, told to the next one.
    let mut failures: Vec<String> = Vec::new();
    while let Some(first) = outgoing.recv().await {
        let mut bodies = Vec::new();
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Outgoing::Report(body) => {
                    bodies.push(body);
                    if bodies.len() == BATCH_MAX {
                        send_batch(&client, &queue_url, &mut bodies, &mut failures).await;
                    }
                }
                Outgoing::Flush(done) => {
                    send_batch(&client, &queue_url, &mut bodies, &mut failures).await;
                    let result = if failures.is_empty() {
                        Ok(())
                    } else {
                        Err(std::mem::take(&mut failures).join("; "))
                    };
                    let _ = done.send(result);
                }
            }
            next = outgoing.try_recv().ok();
        }
        send_batch(&client, &queue_url, &mut bodies, &mut failures).await;
    }
}

/// Sends and empties `bodies`, retrying what failed; what still fails is recorded.
async fn send_batch(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    bodies: &mut Vec<String>,
    failures: &mut Vec<String>,
) {
    let mut pause = Duration::from_millis(500);
    for attempt in 1..=SEND_ATTEMPTS {
        if bodies.is_empty() {
            return;
        }
        let entries: Vec<SendMessageBatchRequestEntry> = bodies
            .iter()
            .enumerate()
            .map(|(index, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .message_body(body)
                    .build()
                    .expect("id and body are set")
            })
            .collect();
        let error = match client
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(output) => {
                let Some(first) = output.failed().first() else {
                    bodies.clear();
                    return;
                };
                let error = first.message().unwrap_or(first.code()).to_owned();
                let failed: Vec<usize> = output
                    .failed()
                    .iter()
                    .filter_map(|entry| entry.id().parse().ok())
                    .collect();
                *bodies = std::mem::take(bodies)
                    .into_iter()
                    .enumerate()
                    .filter(|(index, _)| failed.contains(index))
                    .map(|(_, body)| body)
                    .collect();
                error
            }
            Err(error) => DisplayErrorContext(error).to_string(),
        };
        tracing::warn!(reports = bodies.len(), attempt, %error, "sending reports failed");
        if attempt == SEND_ATTEMPTS {
            failures.push(format!("{} report(s) not sent: {error}", bodies.len()));
            bodies.clear();
        } else {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
}
