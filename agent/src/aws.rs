//! The agent's adapters: revisions from S3 (and GitHub), reports to SQS.
//!
//! The runner is synchronous (hooks are processes): the bundle source blocks on the
//! agent's Tokio runtime through a handle, from a blocking thread; reports only queue.

use crate::config::AgentConfig;
use crate::github::GitHubTarballs;
use crate::net::{self, Limits};
use crate::runner::{ReportSink, RevisionSource};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::SdkBody;
use aws_smithy_http_client::Connector;
use aws_smithy_http_client::proxy::ProxyConfig;
use gantry_core::wire::{
    Command, EventStatus, REPORTS_PER_MESSAGE_MAX, Report, RevisionLocation, S3Location,
    reports_to_json,
};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Bundles from S3, and commits from GitHub.
pub struct Revisions {
    pub s3: Arc<S3Bundles>,
    pub github: Arc<GitHubTarballs>,
    pub runtime: Handle,
}

impl RevisionSource for Revisions {
    fn fetch(&self, command: &Command, destination: &Path) -> Result<(), String> {
        match &command.revision {
            RevisionLocation::S3 { s3_location } => self.runtime.block_on(self.s3.fetch(
                s3_location,
                command.bundle_url.as_deref(),
                destination,
            )),
            RevisionLocation::GitHub { git_hub_location } => self
                .runtime
                .block_on(self.github.fetch(
                    &git_hub_location.repository,
                    &git_hub_location.commit_id,
                    destination,
                ))
                .map_err(|error| error.to_string()),
        }
    }
}

/// Bundles from S3, through the presigned link each command carries
/// ([`Command::bundle_url`]): hosts hold no S3 permission, so none reads another
/// application's revisions. Within `s3.timeout_seconds`, `max_bundle_bytes` and
/// `download_deadline_seconds`, through `proxy.url` as AWS requests are.
pub struct S3Bundles {
    /// Built on the first download.
    connector: OnceLock<Connector>,
    proxy: Option<ProxyConfig>,
    limits: Limits,
}

impl S3Bundles {
    pub fn new(config: &AgentConfig) -> Result<Self, String> {
        Ok(Self {
            connector: OnceLock::new(),
            proxy: config.proxy_rules()?,
            limits: Limits {
                max_bytes: config.max_bundle_bytes,
                max_bytes_key: "max_bundle_bytes",
                timeout: Duration::from_secs(config.s3.timeout_seconds.into()),
                timeout_key: "s3.timeout_seconds",
                deadline: Duration::from_secs(config.download_deadline_seconds.into()),
                deadline_key: "download_deadline_seconds",
            },
        })
    }

    fn connector(&self) -> &Connector {
        self.connector
            .get_or_init(|| net::http_connector(self.proxy.as_ref(), self.limits.timeout))
    }

    /// Downloads the bundle at `location` through its link to `destination`, within
    /// the limits. Errors name the bundle by its S3 location, never by the link.
    pub async fn fetch(
        &self,
        location: &S3Location,
        link: Option<&str>,
        destination: &Path,
    ) -> Result<(), String> {
        let name = format!("s3://{}/{}", location.bucket, location.key);
        let link = link.ok_or_else(|| {
            format!("{name}: the command carries no bundleUrl (a control plane older than this agent sent it); deploy again once the control plane is updated")
        })?;
        self.limits
            .whole(
                &name,
                self.fetch_unbounded(&name, location, link, destination),
            )
            .await
    }

    async fn fetch_unbounded(
        &self,
        name: &str,
        location: &S3Location,
        link: &str,
        destination: &Path,
    ) -> Result<(), String> {
        let request = hyper::Request::get(link)
            .header(hyper::header::USER_AGENT, "gantry-agent")
            .body(SdkBody::empty())
            .map_err(|_| format!("{name}: the command's bundleUrl is not a valid URL"))?;
        let response = net::send(self.connector(), &self.limits, name, request).await?;
        match response.status().as_u16() {
            200 => {}
            403 => {
                return Err(format!(
                    "{name}: S3 refused the command's link to it (403): the link expired (the host started long after the command's startBy, the events before DownloadBundle took hours, or the control plane's credentials ended first) or the bucket's policy refuses it; deploy again"
                ));
            }
            404 => {
                return Err(format!(
                    "{name}: not found (404): the object, or its pinned version, was deleted after the revision was registered"
                ));
            }
            status => return Err(format!("{name}: S3 answered {status}")),
        }
        // The ETag recorded when the revision was registered pins its content.
        if let Some(expected) = &location.e_tag {
            let found = response.headers().get("etag").unwrap_or_default();
            if found.trim_matches('"') != expected.trim_matches('"') {
                return Err(format!(
                    "{name} has ETag {found} but the revision was registered with {expected}: the bundle changed after it was pushed"
                ));
            }
        }
        net::save_response(&self.limits, name, response, destination).await
    }
}

/// Reports leave through a background task, so an event never waits on SQS: the
/// runner queues a report and moves on. A report waits at most [`REPORT_LINGER`] for
/// company, then leaves with whatever queued up behind it, up to ten to a message; an
/// event's start report still waiting when its end comes is replaced by it. So a host
/// whose events are quick reports a whole command in one message, and a long event's
/// start still reaches the control plane within the linger. [`SqsReports::all_sent`]
/// sends what waits at once, and says whether any of it could not be sent since it
/// last asked.
#[derive(Clone)]
pub struct SqsReports {
    queue: mpsc::UnboundedSender<Outgoing>,
}

/// How long a queued report waits for the ones after it before it leaves.
pub const REPORT_LINGER: Duration = Duration::from_secs(1);

enum Outgoing {
    Report(Report),
    /// Answered once everything before it was sent: Err if anything failed since the
    /// last flush, which then starts the count again.
    Flush {
        done: oneshot::Sender<Result<(), String>>,
    },
}

/// Sends of one message, each after the SDK's own retries, before its reports are given
/// up on (a redelivered command re-sends its final reports).
const SEND_ATTEMPTS: u32 = 4;

impl SqsReports {
    /// Starts the sending task on the current runtime.
    pub fn start(client: aws_sdk_sqs::Client, queue_url: String) -> Self {
        let (queue, outgoing) = mpsc::unbounded_channel();
        tokio::spawn(send_reports(client, queue_url, outgoing));
        Self { queue }
    }

    /// Sends every report queued so far now, and waits until it left; an error names
    /// what was not sent, since the last call. The agent asks this before it deletes a
    /// command.
    pub async fn all_sent(&self) -> Result<(), String> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Outgoing::Flush { done })
            .map_err(|_| "the report sender stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the report sender stopped".to_owned())?
    }
}

impl ReportSink for SqsReports {
    fn send(&self, report: &Report) -> Result<(), String> {
        self.queue
            .send(Outgoing::Report(report.clone()))
            .map_err(|_| "the report sender stopped".to_owned())
    }
}

async fn send_reports(
    client: aws_sdk_sqs::Client,
    queue_url: String,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
) {
    // Failures since the last flush, told to it.
    let mut failures: Vec<String> = Vec::new();
    let mut ready: Vec<Report> = Vec::new();
    // When the oldest report in `ready` leaves, with or without company.
    let mut due: Option<Instant> = None;
    loop {
        let item = match due {
            None => outgoing.recv().await,
            Some(due_at) => tokio::select! {
                item = outgoing.recv() => item,
                () = tokio::time::sleep_until(due_at) => {
                    send_message(&client, &queue_url, &mut ready, &mut failures).await;
                    due = None;
                    continue;
                }
            },
        };
        match item {
            None => {
                send_message(&client, &queue_url, &mut ready, &mut failures).await;
                return;
            }
            Some(Outgoing::Report(report)) => {
                supersede(&mut ready, report);
                due.get_or_insert_with(|| Instant::now() + REPORT_LINGER);
                if ready.len() == REPORTS_PER_MESSAGE_MAX {
                    send_message(&client, &queue_url, &mut ready, &mut failures).await;
                    due = None;
                }
            }
            Some(Outgoing::Flush { done }) => {
                send_message(&client, &queue_url, &mut ready, &mut failures).await;
                due = None;
                let result = if failures.is_empty() {
                    Ok(())
                } else {
                    Err(failures.join("; "))
                };
                failures.clear();
                let _ = done.send(result);
            }
        }
    }
}

/// Queues `report`, in place of the same event's start report if that has not left yet:
/// the end carries the start time too, and the control plane takes an end it never saw
/// start.
fn supersede(ready: &mut Vec<Report>, report: Report) {
    let started = ready.iter().position(|queued| {
        queued.status == EventStatus::InProgress
            && queued.deployment_id == report.deployment_id
            && queued.instance_id == report.instance_id
            && queued.lifecycle_event == report.lifecycle_event
    });
    match started {
        Some(index) => ready[index] = report,
        None => ready.push(report),
    }
}

/// Sends `reports` as one message and empties it, retrying; a failure is recorded.
async fn send_message(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    reports: &mut Vec<Report>,
    failures: &mut Vec<String>,
) {
    if reports.is_empty() {
        return;
    }
    let body = reports_to_json(reports);
    let mut pause = Duration::from_millis(500);
    for attempt in 1..=SEND_ATTEMPTS {
        let sent = client
            .send_message()
            .queue_url(queue_url)
            .message_body(&body)
            .send()
            .await;
        let Err(error) = sent else {
            break;
        };
        let error = DisplayErrorContext(error).to_string();
        tracing::warn!(reports = reports.len(), attempt, %error, "sending reports failed");
        if attempt == SEND_ATTEMPTS {
            failures.push(format!("{} report(s) not sent: {error}", reports.len()));
        } else {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
    reports.clear();
}
