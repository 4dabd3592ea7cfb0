//! Adapters for SQS (host command queues), SNS (trigger notifications), S3 (revision
//! bundles), the fleet (on-premises instances, EC2 tags, Auto Scaling groups) and Auto
//! Scaling lifecycle hooks.
//! Each maps SDK errors to [`ApiError`]s that say what failed.

use crate::error::{ApiError, Exception};
use crate::model::{
    LifecycleAction, OnPremisesInstance, RevisionRecord, TargetSelection, ZONE_TAG, seconds,
};
use crate::store::{DynamoStore, keys};
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_sqs::types::QueueAttributeName;
use gantry_core::bundle::{self, BundleType, Limits};
use gantry_core::identity::{IamIdentity, Sender};
use gantry_core::lifecycle::LifecycleEvent;
use gantry_core::planner::TagSet;
use gantry_core::wire::{Command, RevisionLocation, S3Location};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

fn aws_failure(service: &str, error: impl std::error::Error) -> ApiError {
    ApiError::internal(format!("{service}: {}", DisplayErrorContext(error)))
}

/// Commands in flight at once while a batch is dispatched.
const SENDS_AT_ONCE: usize = 64;

/// How long a host's queue keeps a message: a command is worth nothing after its
/// `startBy` (minutes), a cancel after the command it cancels. A day leaves room for a
/// host start timeout raised far above its default.
pub const COMMAND_RETENTION_SECONDS: u32 = 86_400;
/// Receives after which a message no agent could handle leaves for the dead-letter queue.
pub const COMMAND_MAX_RECEIVES: u32 = 10;

/// One command queue per host, named `<prefix><instance id>`, created on first use with
/// a retention period and, when one is configured, a dead-letter queue.
#[derive(Clone)]
pub struct CommandQueues {
    client: aws_sdk_sqs::Client,
    prefix: String,
    dead_letter_arn: Option<String>,
    /// `arn:<partition>:ec2:<region>:<account>:instance/`: an EC2 instance's ARN is this
    /// and its id.
    instance_arn_prefix: String,
    urls: std::sync::Arc<Mutex<HashMap<String, String>>>,
}

/// The tag on an EC2 instance's command queue that names the instance, by ARN. The
/// template's Ec2HostPolicy lets instance-role credentials use a command queue only when
/// this tag equals the request's `ec2:SourceInstanceARN`, which EC2 sets on requests
/// signed with an instance's role credentials.
pub const INSTANCE_ARN_TAG: &str = "gantry:instance-arn";

impl CommandQueues {
    pub fn new(
        client: aws_sdk_sqs::Client,
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
            prefix: prefix.into(),
            dead_letter_arn,
            instance_arn_prefix: format!("arn:{partition}:ec2:{region}:{account_id}:instance/"),
            urls: Default::default(),
        }
    }

    /// The tags a host's queue carries: an EC2 instance's names it (see
    /// [`INSTANCE_ARN_TAG`]); an on-premises instance's needs none, its IAM user's name
    /// being the queue's.
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

    /// Sends each command to its host's queue, a bounded number at a time.
    pub async fn send_all(&self, commands: Vec<Command>) -> Result<(), ApiError> {
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

/// Publishes trigger messages to SNS topics.
#[derive(Clone)]
pub struct Notifier {
    client: aws_sdk_sns::Client,
}

impl Notifier {
    pub fn new(client: aws_sdk_sns::Client) -> Self {
        Self { client }
    }

    /// Publishes one message. SNS refusing it (the topic is gone, or not ours to
    /// publish to, or the message is not acceptable) is [`PublishError::Refused`]: trying
    /// again would not help. Anything else may pass on a later try.
    pub async fn publish(
        &self,
        topic_arn: &str,
        subject: &str,
        message: &str,
    ) -> Result<(), PublishError> {
        let result = self
            .client
            .publish()
            .topic_arn(topic_arn)
            .subject(sns_subject(subject))
            .message(message)
            .send()
            .await;
        let Err(error) = result else {
            return Ok(());
        };
        let refused = error.as_service_error().is_some_and(|refusal| {
            let throttled = refusal
                .meta()
                .code()
                .is_some_and(|code| code.starts_with("Throttl"));
            !(throttled
                || refusal.is_internal_error_exception()
                || refusal.is_kms_throttling_exception())
        });
        let failure = aws_failure("SNS Publish", error);
        Err(if refused {
            PublishError::Refused(failure.message)
        } else {
            PublishError::Unavailable(failure)
        })
    }
}

/// Why a notification was not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// For good: the topic does not exist, or refuses the message.
    #[error("{0}")]
    Refused(String),
    /// For now: SNS could not be reached, or throttled.
    #[error(transparent)]
    Unavailable(ApiError),
}

/// A subject SNS accepts: fewer than 100 characters, none of them a line break or
/// other control character.
fn sns_subject(subject: &str) -> String {
    subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(99)
        .collect()
}

/// A bundle is downloaded in ranges of this size (S3's guidelines suggest 8 or 16 MB),
const RANGE_BYTES: i64 = 8 * 1024 * 1024;
/// this many at a time: 64 MiB in memory at most.
const RANGES_AT_ONCE: usize = 8;

/// Reads revision bundles from S3 and validates them with gantry-core.
#[derive(Clone)]
pub struct Bundles {
    client: aws_sdk_s3::Client,
    limits: Limits,
}

fn invalid_revision(message: impl Into<String>) -> ApiError {
    ApiError::new(Exception::InvalidRevision, message)
}

/// A stable key for a revision: the same object version always gets the same key.
pub fn revision_key(location: &RevisionLocation) -> String {
    match location {
        RevisionLocation::S3 { s3_location } => format!(
            "s3://{}/{}#{}#{}",
            s3_location.bucket,
            s3_location.key,
            s3_location.version.as_deref().unwrap_or(""),
            s3_location.e_tag.as_deref().unwrap_or("")
        ),
        RevisionLocation::GitHub { git_hub_location } => format!(
            "github:{}@{}",
            git_hub_location.repository, git_hub_location.commit_id
        ),
    }
}

impl Bundles {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self {
            client,
            limits: Limits::default(),
        }
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
        let declared = location.bundle_type;
        let limits = self.limits;
        let root = scratch.path().to_owned();
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
            invalid_revision(format!(
                "s3://{}/{} is not a deployable revision: {problems}",
                location.bucket, location.key
            ))
        })?;
        Ok(spec
            .hooks
            .iter()
            .map(|(event, _)| (*event, spec.event_limit_secs(*event)))
            .collect())
    }
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

/// A host a deployment can target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub instance_id: String,
    pub zone: Option<String>,
    /// Who may report for it.
    pub sender: Sender,
    /// A stopped (or stopping) EC2 instance: in the deployment, but it fails at once.
    pub stopped: bool,
}

impl Fleet {
    /// The instance profile (ARN) of each of these EC2 instances that has one.
    pub async fn instance_profiles(
        &self,
        instance_ids: &[String],
    ) -> Result<HashMap<String, String>, ApiError> {
        let mut profiles = HashMap::new();
        for chunk in instance_ids.chunks(1000) {
            let mut pages = self
                .ec2
                .describe_instances()
                .set_instance_ids(Some(chunk.to_vec()))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|error| aws_failure("EC2 DescribeInstances", error))?;
                for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                    if let (Some(id), Some(arn)) = (
                        instance.instance_id(),
                        instance.iam_instance_profile().and_then(|p| p.arn()),
                    ) {
                        profiles.insert(id.to_owned(), arn.to_owned());
                    }
                }
            }
        }
        Ok(profiles)
    }
}

/// Resolves the IAM identity an on-premises instance is registered with to the
/// `SenderId` SQS will stamp its reports with (see [`gantry_core::identity`]).
#[derive(Clone)]
pub struct Identities {
    iam: aws_sdk_iam::Client,
}

impl Identities {
    pub fn new(iam: aws_sdk_iam::Client) -> Self {
        Self { iam }
    }

    /// The unique id of the role in the instance profile `arn`
    /// (`arn:aws:iam::<account>:instance-profile[/path]/<name>`); None when the profile
    /// is gone or holds no role.
    pub async fn instance_profile_role(&self, arn: &str) -> Result<Option<String>, ApiError> {
        let Some(name) = arn.rsplit('/').next().filter(|name| !name.is_empty()) else {
            return Ok(None);
        };
        match self
            .iam
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
        {
            Ok(output) => Ok(output
                .instance_profile()
                .and_then(|profile| profile.roles().first())
                .map(|role| role.role_id().to_owned())),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_no_such_entity_exception()) =>
            {
                Ok(None)
            }
            Err(error) => Err(aws_failure("IAM GetInstanceProfile", error)),
        }
    }

    /// `arn` is the ARN `identity` was parsed from; the user or role must exist.
    pub async fn sender_id(&self, identity: &IamIdentity, arn: &str) -> Result<String, ApiError> {
        let unique_id = match identity {
            IamIdentity::User { name, .. } => {
                let found = self.iam.get_user().user_name(name).send().await;
                let missing = || {
                    ApiError::new(
                        Exception::InvalidIamUserArn,
                        format!("iamUserArn: IAM has no user {arn}"),
                    )
                };
                match found {
                    Ok(output) => {
                        let user = output.user().ok_or_else(missing)?;
                        // The name matched; a different path is a different user.
                        if user.arn() != arn {
                            return Err(missing());
                        }
                        user.user_id().to_owned()
                    }
                    Err(error)
                        if error
                            .as_service_error()
                            .is_some_and(|e| e.is_no_such_entity_exception()) =>
                    {
                        return Err(missing());
                    }
                    Err(error) => return Err(aws_failure("IAM GetUser", error)),
                }
            }
            IamIdentity::Session { role, .. } => {
                let found = self.iam.get_role().role_name(role).send().await;
                let missing = || {
                    ApiError::new(
                        Exception::InvalidIamSessionArn,
                        format!("iamSessionArn: IAM has no role {role:?} for {arn}"),
                    )
                };
                match found {
                    Ok(output) => output.role().ok_or_else(missing)?.role_id().to_owned(),
                    Err(error)
                        if error
                            .as_service_error()
                            .is_some_and(|e| e.is_no_such_entity_exception()) =>
                    {
                        return Err(missing());
                    }
                    Err(error) => return Err(aws_failure("IAM GetRole", error)),
                }
            }
        };
        Ok(identity.sender_id(&unique_id))
    }
}

/// Finds the instances a group's target selection matches.
#[derive(Clone)]
pub struct Fleet {
    ec2: aws_sdk_ec2::Client,
    autoscaling: aws_sdk_autoscaling::Client,
}

impl Fleet {
    pub fn new(ec2: aws_sdk_ec2::Client, autoscaling: aws_sdk_autoscaling::Client) -> Self {
        Self { ec2, autoscaling }
    }

    /// The instances `selection` matches now (on-premises ones from `store`).
    pub async fn matching(
        &self,
        store: &DynamoStore,
        selection: &TargetSelection,
    ) -> Result<Vec<Host>, ApiError> {
        let mut hosts = Vec::new();
        if let Some(rule) = selection.on_premises_rule() {
            hosts.extend(self.on_premises(store, &rule).await?);
        }
        if let Some(rule) = selection.ec2_rule() {
            hosts.extend(self.ec2(&rule).await?);
        }
        hosts.extend(self.auto_scaling(&selection.auto_scaling_groups).await?);
        // An instance matched twice (a tag and an Auto Scaling group) is one target.
        let mut seen = std::collections::HashSet::new();
        hosts.retain(|host| seen.insert(host.instance_id.clone()));
        Ok(hosts)
    }

    /// Registered (not deregistered) on-premises instances whose tags match.
    pub async fn on_premises(
        &self,
        store: &DynamoStore,
        rule: &TagSet,
    ) -> Result<Vec<Host>, ApiError> {
        let instances: Vec<OnPremisesInstance> = store.list(keys::INSTANCES).await?;
        Ok(instances
            .into_iter()
            .filter(|instance| instance.deregister_time.is_none())
            .filter(|instance| {
                let tags: Vec<(&str, &str)> = instance
                    .tags
                    .iter()
                    .map(|tag| (tag.key.as_str(), tag.value.as_str()))
                    .collect();
                rule.matches(&tags)
            })
            .map(|instance| Host {
                zone: instance
                    .tags
                    .iter()
                    .find(|tag| tag.key == ZONE_TAG)
                    .map(|tag| tag.value.clone()),
                // Registered before identities were required: its reports cannot be
                // told from anyone's, so none counts (create-deployment says so).
                sender: Sender::Principal(instance.sender_id.unwrap_or_default()),
                instance_id: instance.instance_name,
                stopped: false,
            })
            .collect())
    }

    /// EC2 instances whose tags match: running ones, and, as CodeDeploy includes them,
    /// stopped and stopping ones (marked `stopped`). Terminated and shutting-down
    /// instances stay out.
    pub async fn ec2(&self, rule: &TagSet) -> Result<Vec<Host>, ApiError> {
        let mut hosts = Vec::new();
        let mut pages = self
            .ec2
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("instance-state-name")
                    .values("running")
                    .values("stopping")
                    .values("stopped")
                    .build(),
            )
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| aws_failure("EC2 DescribeInstances", error))?;
            for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                let tags: Vec<(&str, &str)> = instance
                    .tags()
                    .iter()
                    .map(|tag| (tag.key().unwrap_or(""), tag.value().unwrap_or("")))
                    .collect();
                if let Some(id) = instance.instance_id()
                    && rule.matches(&tags)
                {
                    hosts.push(Host {
                        instance_id: id.to_owned(),
                        sender: Sender::InstanceRole,
                        zone: instance
                            .placement()
                            .and_then(|p| p.availability_zone())
                            .map(str::to_owned),
                        stopped: instance.state().and_then(|state| state.name())
                            != Some(&aws_sdk_ec2::types::InstanceStateName::Running),
                    });
                }
            }
        }
        Ok(hosts)
    }

    /// In-service instances of the named Auto Scaling groups.
    pub async fn auto_scaling(&self, groups: &[String]) -> Result<Vec<Host>, ApiError> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let found = self
            .autoscaling
            .describe_auto_scaling_groups()
            .set_auto_scaling_group_names(Some(groups.to_vec()))
            .send()
            .await
            .map_err(|error| aws_failure("Auto Scaling DescribeAutoScalingGroups", error))?;
        let mut hosts = Vec::new();
        for group in found.auto_scaling_groups() {
            for instance in group.instances() {
                let in_service = instance.lifecycle_state()
                    == Some(&aws_sdk_autoscaling::types::LifecycleState::InService);
                if in_service && let Some(id) = instance.instance_id() {
                    hosts.push(Host {
                        instance_id: id.to_owned(),
                        sender: Sender::InstanceRole,
                        zone: instance.availability_zone().map(str::to_owned),
                        stopped: false,
                    });
                }
            }
        }
        Ok(hosts)
    }
}

/// Pins a revision for the record push keeps, after validating an S3 bundle.
pub async fn register(
    bundles: &Bundles,
    store: &DynamoStore,
    application: &str,
    location: &RevisionLocation,
    description: Option<String>,
    now: gantry_core::deployment::Millis,
) -> Result<RevisionRecord, ApiError> {
    let RevisionLocation::S3 { s3_location } = location else {
        return Err(invalid_revision(
            "revision.revisionType: GitHub revisions cannot be fetched by Gantry yet; upload the bundle to S3 and use revisionType S3",
        ));
    };
    let (pinned, size) = bundles.pin(s3_location).await?;
    let event_timeouts = bundles.validate(&pinned, size).await?;
    let record = RevisionRecord {
        application_name: application.to_owned(),
        revision_location: RevisionLocation::S3 {
            s3_location: pinned,
        },
        description,
        register_time: seconds(now),
        event_timeouts,
        size_bytes: Some(size),
    };
    store
        .put(
            &keys::revisions(application),
            &revision_key(&record.revision_location),
            &record,
        )
        .await?;
    Ok(record)
}

/// The launch transition lifecycle hooks watch.
pub const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";
pub const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";

/// The tag an Auto Scaling group carries (`true`) for Gantry to put its lifecycle hooks on
/// it and complete their actions: the template allows those calls on such groups only,
/// so Gantry's functions cannot hook or release instances of groups nobody gave it.
pub const MANAGED_TAG: &str = "gantry:managed";

/// The lifecycle hooks Gantry puts on a deployment group's Auto Scaling groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// Deploys to launching instances.
    Launch,
    /// Stops the application of terminating instances (`terminationHookEnabled`).
    Termination,
}

impl HookKind {
    pub const ALL: [HookKind; 2] = [HookKind::Launch, HookKind::Termination];

    pub fn transition(self) -> &'static str {
        match self {
            Self::Launch => LAUNCHING,
            Self::Termination => TERMINATING,
        }
    }

    /// What Auto Scaling does when nobody answers: an instance nobody deployed to must
    /// not go into service; a terminating one goes whatever happens.
    pub fn default_result(self) -> &'static str {
        match self {
            Self::Launch => "ABANDON",
            Self::Termination => "CONTINUE",
        }
    }

    /// The hook's name for a deployment group: one of each kind per group, so that
    /// several groups may share an Auto Scaling group.
    pub fn hook_name(self, deployment_group_id: &str) -> String {
        match self {
            Self::Launch => format!("gantry-{deployment_group_id}"),
            Self::Termination => format!("gantry-termination-{deployment_group_id}"),
        }
    }
}

/// Auto Scaling's side: hooks, the launching instance, completing the action.
#[derive(Clone)]
pub struct LifecycleHooks {
    client: aws_sdk_autoscaling::Client,
}

fn autoscaling_failure(operation: &str, error: impl std::error::Error) -> ApiError {
    ApiError::internal(format!(
        "Auto Scaling {operation}: {}",
        DisplayErrorContext(error)
    ))
}

impl LifecycleHooks {
    pub fn new(client: aws_sdk_autoscaling::Client) -> Self {
        Self { client }
    }

    /// Puts (or updates) a hook of `kind`, named `hook`, notifying `target_arn`.
    pub async fn put(
        &self,
        auto_scaling_group: &str,
        kind: HookKind,
        hook: &str,
        target_arn: &str,
        role_arn: &str,
        metadata: &str,
    ) -> Result<(), ApiError> {
        self.client
            .put_lifecycle_hook()
            .auto_scaling_group_name(auto_scaling_group)
            .lifecycle_hook_name(hook)
            .lifecycle_transition(kind.transition())
            .notification_target_arn(target_arn)
            .role_arn(role_arn)
            .notification_metadata(metadata)
            .heartbeat_timeout(3600)
            .default_result(kind.default_result())
            .send()
            .await
            .map_err(|error| autoscaling_failure("PutLifecycleHook", error))?;
        Ok(())
    }

    /// Of `names`, the Auto Scaling groups that do not exist, and those that exist
    /// without [`MANAGED_TAG`] `= true`.
    pub async fn unusable(&self, names: &[String]) -> Result<(Vec<String>, Vec<String>), ApiError> {
        let mut found = BTreeMap::new();
        for chunk in names.chunks(100) {
            let described = self
                .client
                .describe_auto_scaling_groups()
                .set_auto_scaling_group_names(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|error| autoscaling_failure("DescribeAutoScalingGroups", error))?;
            for group in described.auto_scaling_groups() {
                let managed = group
                    .tags()
                    .iter()
                    .any(|tag| tag.key() == Some(MANAGED_TAG) && tag.value() == Some("true"));
                found.insert(
                    group
                        .auto_scaling_group_name()
                        .unwrap_or_default()
                        .to_owned(),
                    managed,
                );
            }
        }
        let missing = names
            .iter()
            .filter(|name| !found.contains_key(*name))
            .cloned()
            .collect();
        let untagged = names
            .iter()
            .filter(|name| found.get(*name) == Some(&false))
            .cloned()
            .collect();
        Ok((missing, untagged))
    }

    /// Deletes the hook; one already gone is fine.
    pub async fn delete(&self, auto_scaling_group: &str, hook: &str) -> Result<(), ApiError> {
        match self
            .client
            .delete_lifecycle_hook()
            .auto_scaling_group_name(auto_scaling_group)
            .lifecycle_hook_name(hook)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .raw_response()
                    .is_some_and(|r| r.status().as_u16() == 400) =>
            {
                tracing::info!(auto_scaling_group, hook, "lifecycle hook already gone");
                Ok(())
            }
            Err(error) => Err(autoscaling_failure("DeleteLifecycleHook", error)),
        }
    }

    /// The instance in its Auto Scaling group, whatever its lifecycle state (a launching
    /// one is Pending:Wait), or None when it is gone.
    pub async fn instance(
        &self,
        auto_scaling_group: &str,
        instance_id: &str,
    ) -> Result<Option<Host>, ApiError> {
        let found = self
            .client
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(auto_scaling_group)
            .send()
            .await
            .map_err(|error| autoscaling_failure("DescribeAutoScalingGroups", error))?;
        Ok(found
            .auto_scaling_groups()
            .iter()
            .flat_map(|group| group.instances())
            .find(|instance| instance.instance_id() == Some(instance_id))
            .map(|instance| Host {
                instance_id: instance_id.to_owned(),
                zone: instance.availability_zone().map(str::to_owned),
                sender: Sender::InstanceRole,
                stopped: false,
            }))
    }

    /// CompleteLifecycleAction. An action that is no longer pending (completed before,
    /// or timed out) is done, not an error: there is nothing left to complete.
    pub async fn complete(&self, action: &LifecycleAction, result: &str) -> Result<(), ApiError> {
        match self
            .client
            .complete_lifecycle_action()
            .auto_scaling_group_name(&action.auto_scaling_group_name)
            .lifecycle_hook_name(&action.lifecycle_hook_name)
            .lifecycle_action_token(&action.lifecycle_action_token)
            .instance_id(&action.instance_id)
            .lifecycle_action_result(result)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .and_then(|e| e.meta().code())
                    .is_some_and(|code| code == "ValidationError") =>
            {
                tracing::warn!(error = %DisplayErrorContext(&error), "lifecycle action no longer pending");
                Ok(())
            }
            Err(error) => Err(autoscaling_failure(
                &format!("CompleteLifecycleAction ({result})"),
                error,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_fit_what_sns_accepts() {
        let long = format!("SUCCEEDED: Gantry d-1 in us-east-1 to {}", "a".repeat(100));
        assert_eq!(sns_subject(&long).chars().count(), 99);
        assert_eq!(sns_subject("two\nlines\t"), "two lines ");
    }
}

/// CloudWatch alarms, polled while a deployment that watches them runs.
#[derive(Clone)]
pub struct Alarms {
    client: aws_sdk_cloudwatch::Client,
}

impl Alarms {
    pub fn new(client: aws_sdk_cloudwatch::Client) -> Self {
        Self { client }
    }

    /// Polls the named alarms (metric and composite; at most CodeDeploy's 10): those in
    /// ALARM, or why their state could not be had (CloudWatch failed, or an alarm does
    /// not exist). An alarm in ALARM wins over one missing.
    pub async fn check(&self, names: &[String]) -> gantry_core::deployment::AlarmCheck {
        use aws_sdk_cloudwatch::types::{AlarmType, StateValue};
        use gantry_core::deployment::AlarmCheck;
        let answer = self
            .client
            .describe_alarms()
            .set_alarm_names(Some(names.to_vec()))
            .alarm_types(AlarmType::MetricAlarm)
            .alarm_types(AlarmType::CompositeAlarm)
            .send()
            .await;
        let output = match answer {
            Ok(output) => output,
            Err(error) => {
                return AlarmCheck::Failed {
                    reason: format!("CloudWatch DescribeAlarms: {}", DisplayErrorContext(error)),
                };
            }
        };
        let states: BTreeMap<&str, Option<&StateValue>> = output
            .metric_alarms()
            .iter()
            .map(|alarm| (alarm.alarm_name(), alarm.state_value()))
            .chain(
                output
                    .composite_alarms()
                    .iter()
                    .map(|alarm| (alarm.alarm_name(), alarm.state_value())),
            )
            .filter_map(|(name, state)| Some((name?, state)))
            .collect();
        let firing: Vec<String> = names
            .iter()
            .filter(|name| states.get(name.as_str()) == Some(&Some(&StateValue::Alarm)))
            .cloned()
            .collect();
        if !firing.is_empty() {
            return AlarmCheck::Active { alarms: firing };
        }
        let missing: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|name| !states.contains_key(name))
            .collect();
        if !missing.is_empty() {
            return AlarmCheck::Failed {
                reason: format!("no CloudWatch alarm named {}", missing.join(", ")),
            };
        }
        AlarmCheck::Clear
    }
}
