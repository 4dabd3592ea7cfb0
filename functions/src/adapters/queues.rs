//! SQS: each host's command queue, made on first use, and the messages sent to it.

use super::aws_failure;
use super::bundles::Bundles;
use crate::error::ApiError;
use aws_sdk_sqs::types::QueueAttributeName;
use gantry_core::lifecycle::LifecycleEvent;
use gantry_core::wire::{Command, RevisionLocation};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Commands in flight at once while a batch is dispatched.
const SENDS_AT_ONCE: usize = 64;

/// How long a host's queue keeps a message: a command is worth nothing after its
/// `startBy` (minutes), a cancel after the command it cancels. A day leaves room for a
/// host start timeout raised far above its default.
pub const COMMAND_RETENTION_SECONDS: u32 = 86_400;
/// Receives after which a message no agent could handle leaves for the dead-letter queue.
pub const COMMAND_MAX_RECEIVES: u32 = 10;

/// A bundle link outlives its command's `start_by` by this much. The agent checks
/// `start_by` when it starts the command, and DownloadBundle may come after an
/// ApplicationStop (or, behind a load balancer, BeforeBlockTraffic and AfterBlockTraffic)
/// of up to an hour each, CodeDeploy's longest hook timeout: three such hooks and ten
/// minutes for a host's clock running behind S3's. A download under way is not cut when
/// the link expires.
const LINK_SLACK: Duration = Duration::from_secs(3 * 3600 + 10 * 60);
/// S3 signs for at most seven days.
const LINK_MAX: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long a command's bundle link is valid: until its `start_by` and the slack, or an
/// hour for a command without one.
fn link_lifetime(start_by: Option<u64>, now: u64) -> Duration {
    let until_start = start_by.map_or(Duration::from_secs(3600), |start_by| {
        Duration::from_millis(start_by.saturating_sub(now))
    });
    (until_start + LINK_SLACK).min(LINK_MAX)
}

/// One command queue per host, named `<prefix><instance id>`, created on first use with
/// a retention period and, when one is configured, a dead-letter queue.
#[derive(Clone)]
pub struct CommandQueues {
    client: aws_sdk_sqs::Client,
    /// Signs each S3 command's bundle link (`Command::bundle_url`).
    bundles: Bundles,
    prefix: String,
    dead_letter_arn: Option<String>,
    /// `arn:<partition>:ec2:<region>:<account>:instance/`: an EC2 instance's ARN is this
    /// and its id.
    instance_arn_prefix: String,
    urls: std::sync::Arc<Mutex<HashMap<String, String>>>,
}

/// The tag on an on-premises instance's command queue that names the IAM identity it
/// was registered with, by the `SenderId` its messages carry, which is also what IAM's
/// `${aws:userid}` is for that identity (a user's unique id, or a role's and the session
/// name): the template's OnPremisesHostPolicy lets a host use a command queue only when
/// this tag equals its `${aws:userid}`, the same binding its reports are held to.
pub const SENDER_ID_TAG: &str = "gantry:sender-id";

/// The tag on an EC2 instance's command queue that names the instance, by ARN. The
/// template's Ec2HostPolicy lets instance-role credentials use a command queue only when
/// this tag equals the request's `ec2:SourceInstanceARN`, which EC2 sets on requests
/// signed with an instance's role credentials.
pub const INSTANCE_ARN_TAG: &str = "gantry:instance-arn";

impl CommandQueues {
    pub fn new(
        client: aws_sdk_sqs::Client,
        bundles: Bundles,
        prefix: impl Into<String>,
        dead_letter_arn: Option<String>,
        region: &str,
        account_id: &str,
    ) -> Self {
        let partition = if region.starts_with("cn-") {
            "aws-cn"
        } else if region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        };
        Self {
            client,
            bundles,
            prefix: prefix.into(),
            dead_letter_arn,
            instance_arn_prefix: format!("arn:{partition}:ec2:{region}:{account_id}:instance/"),
            urls: Default::default(),
        }
    }

    /// The tags a host's queue is made with: an EC2 instance's names it (see
    /// [`INSTANCE_ARN_TAG`]); an on-premises instance's is tagged when it registers
    /// ([`Self::bind_sender`]).
    fn tags(&self, instance_id: &str) -> HashMap<String, String> {
        let is_ec2 = instance_id
            .strip_prefix("i-")
            .is_some_and(|hex| !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()));
        if !is_ec2 {
            return HashMap::new();
        }
        HashMap::from([(
            INSTANCE_ARN_TAG.to_owned(),
            format!("{}{instance_id}", self.instance_arn_prefix),
        )])
    }

    pub fn queue_name(&self, instance_id: &str) -> String {
        format!("{}{instance_id}", self.prefix)
    }

    fn attributes(&self) -> HashMap<QueueAttributeName, String> {
        let mut attributes = HashMap::from([(
            QueueAttributeName::MessageRetentionPeriod,
            COMMAND_RETENTION_SECONDS.to_string(),
        )]);
        if let Some(arn) = &self.dead_letter_arn {
            attributes.insert(
                QueueAttributeName::RedrivePolicy,
                json!({"deadLetterTargetArn": arn, "maxReceiveCount": COMMAND_MAX_RECEIVES})
                    .to_string(),
            );
        }
        attributes
    }

    /// The queue's URL; CreateQueue returns the existing queue's URL when it exists with
    /// the same attributes, so one call both finds and creates. A queue made before with
    /// other attributes is given these. URLs are cached for the life of the process.
    pub async fn url(&self, instance_id: &str) -> Result<String, ApiError> {
        if let Some(url) = self.urls.lock().expect("queue cache").get(instance_id) {
            return Ok(url.clone());
        }
        let name = self.queue_name(instance_id);
        let tags = self.tags(instance_id);
        let created = self
            .client
            .create_queue()
            .queue_name(&name)
            .set_attributes(Some(self.attributes()))
            .set_tags((!tags.is_empty()).then(|| tags.clone()))
            .send()
            .await;
        let url = match created {
            Ok(output) => output.queue_url,
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|error| error.is_queue_name_exists()) =>
            {
                let url = self
                    .client
                    .get_queue_url()
                    .queue_name(&name)
                    .send()
                    .await
                    .map_err(|error| aws_failure("SQS GetQueueUrl", error))?
                    .queue_url
                    .ok_or_else(|| ApiError::internal("SQS GetQueueUrl returned no URL"))?;
                self.client
                    .set_queue_attributes()
                    .queue_url(&url)
                    .set_attributes(Some(self.attributes()))
                    .send()
                    .await
                    .map_err(|error| aws_failure("SQS SetQueueAttributes", error))?;
                Some(url)
            }
            Err(error) => return Err(aws_failure("SQS CreateQueue", error)),
        }
        .ok_or_else(|| ApiError::internal("SQS CreateQueue returned no queue URL"))?;
        // CreateQueue does not tag a queue that exists: a queue made before, or by an
        // older Gantry, is tagged here (once per process, as the URL is cached).
        if !tags.is_empty() {
            self.client
                .tag_queue()
                .queue_url(&url)
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(|error| aws_failure("SQS TagQueue", error))?;
        }
        self.urls
            .lock()
            .expect("queue cache")
            .insert(instance_id.to_owned(), url.clone());
        Ok(url)
    }

    /// Makes an on-premises instance's queue its registered identity's alone: created if
    /// need be, and tagged with the identity's `SenderId` ([`SENDER_ID_TAG`]).
    pub async fn bind_sender(&self, instance_id: &str, sender_id: &str) -> Result<(), ApiError> {
        let url = self.url(instance_id).await?;
        self.client
            .tag_queue()
            .queue_url(&url)
            .tags(SENDER_ID_TAG, sender_id)
            .send()
            .await
            .map_err(|error| aws_failure("SQS TagQueue", error))?;
        Ok(())
    }

    /// Takes a deregistered instance's queue from the identity it was registered with.
    pub async fn unbind_sender(&self, instance_id: &str) -> Result<(), ApiError> {
        let url = self.url(instance_id).await?;
        self.client
            .untag_queue()
            .queue_url(&url)
            .tag_keys(SENDER_ID_TAG)
            .send()
            .await
            .map_err(|error| aws_failure("SQS UntagQueue", error))?;
        Ok(())
    }

    /// Sends one message to a queue by URL.
    pub async fn send_to_queue(&self, url: &str, body: String) -> Result<(), ApiError> {
        self.send_delayed(url, body, 0).await
    }

    /// Sends one message to a queue by URL, invisible for its first `delay_seconds`
    /// (at most 900, SQS's limit).
    pub async fn send_delayed(
        &self,
        url: &str,
        body: String,
        delay_seconds: i32,
    ) -> Result<(), ApiError> {
        self.client
            .send_message()
            .queue_url(url)
            .message_body(body)
            .delay_seconds(delay_seconds.clamp(0, 900))
            .send()
            .await
            .map_err(|error| aws_failure("SQS SendMessage", error))?;
        Ok(())
    }

    /// Sends messages to one queue by URL, ten to a request (SQS's limit for a batch).
    pub async fn send_batch(&self, url: &str, bodies: &[String]) -> Result<(), ApiError> {
        for chunk in bodies.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(index, body)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .message_body(body)
                        .build()
                        .expect("entry fields are set")
                })
                .collect();
            let sent = self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|error| aws_failure("SQS SendMessageBatch", error))?;
            if let Some(failed) = sent.failed().first() {
                return Err(ApiError::internal(format!(
                    "SQS SendMessageBatch: {} of {} messages not sent ({}: {})",
                    sent.failed().len(),
                    chunk.len(),
                    failed.code(),
                    failed.message().unwrap_or_default()
                )));
            }
        }
        Ok(())
    }

    /// Sends each command to its host's queue, a bounded number at a time, an S3
    /// revision's that downloads it with a link to its bundle.
    pub async fn send_all(&self, mut commands: Vec<Command>) -> Result<(), ApiError> {
        let now = crate::model::now_millis();
        // Commands sent together share their revision and mostly their start_by.
        let mut signed: HashMap<(String, Option<u64>), String> = HashMap::new();
        for command in &mut commands {
            let RevisionLocation::S3 { s3_location } = &command.revision else {
                continue;
            };
            // Only a stretch that downloads the bundle needs the link.
            if !command
                .lifecycle_events
                .contains(&LifecycleEvent::DownloadBundle)
            {
                continue;
            }
            let signing = (
                crate::model::revision_key(&command.revision),
                command.start_by,
            );
            let url = match signed.get(&signing) {
                Some(url) => url.clone(),
                None => {
                    let valid_for = link_lifetime(command.start_by, now);
                    let url = self.bundles.link(s3_location, valid_for).await?;
                    signed.insert(signing, url.clone());
                    url
                }
            };
            command.bundle_url = Some(url);
        }
        self.send_to_hosts(
            commands
                .into_iter()
                .map(|command| (command.instance_id.clone(), command.to_json()))
                .collect(),
        )
        .await
    }

    /// Sends each message to its host's queue (`(instance id, body)`), a bounded number
    /// at a time.
    pub async fn send_to_hosts(&self, messages: Vec<(String, String)>) -> Result<(), ApiError> {
        let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(SENDS_AT_ONCE));
        let mut tasks = tokio::task::JoinSet::new();
        for (instance_id, body) in messages {
            let queues = self.clone();
            let permits = std::sync::Arc::clone(&permits);
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let url = queues.url(&instance_id).await?;
                queues.send_to_queue(&url, body).await
            });
        }
        let mut first_error = None;
        while let Some(result) = tasks.join_next().await {
            let outcome = result.map_err(|error| ApiError::internal(error.to_string()));
            if let Err(error) = outcome.and_then(|sent| sent) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
