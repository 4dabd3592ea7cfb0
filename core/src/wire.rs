//! The messages between the control plane and the host agent.
//!
//! A [`Command`] travels on a host's command queue and tells the agent what to deploy.
//! A [`Report`] travels on the reports queue and tells the control plane how one
//! lifecycle event went. Both carry a schema version, are parsed strictly (unknown
//! fields are refused) and validated; a message that does not parse is an error value
//! naming the field, never a panic.

use crate::appspec::FileExistsBehavior;
use crate::bundle::BundleType;
use crate::lifecycle::LifecycleEvent;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The schema version this build writes and the newest it reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Most bytes of script output a report carries.
pub const LOG_TAIL_MAX_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message is not valid JSON for this schema: {0}")]
    Malformed(String),
    #[error(
        "schemaVersion {found} is newer than this build understands ({SCHEMA_VERSION}); upgrade it"
    )]
    UnsupportedVersion { found: u32 },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("report {index} of the message: {error}")]
    InReport { index: usize, error: Box<WireError> },
}

fn invalid(field: &'static str, message: impl Into<String>) -> WireError {
    WireError::Invalid {
        field,
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Location {
    pub bucket: String,
    pub key: String,
    pub bundle_type: BundleType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitHubLocation {
    /// `owner/name`.
    pub repository: String,
    pub commit_id: String,
}

/// Where a revision lives, in CodeDeploy's `RevisionLocation` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "revisionType")]
pub enum RevisionLocation {
    #[serde(rename = "S3", rename_all = "camelCase")]
    S3 { s3_location: S3Location },
    #[serde(rename = "GitHub", rename_all = "camelCase")]
    GitHub { git_hub_location: GitHubLocation },
}

impl GitHubLocation {
    /// Whether the commit is named in full (40 hexadecimal digits, lowercase), as a
    /// revision Gantry checked is pinned.
    pub fn is_pinned(&self) -> bool {
        self.commit_id.len() == 40
            && self
                .commit_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

/// Whether `part` is a GitHub owner (letters, digits, `-`; at most 39) or, with
/// `name`, a repository name (also `.` and `_`; at most 100; not `.` or `..`): it goes
/// into a URL path, so nothing else may.
fn github_name(part: &str, name: bool) -> bool {
    let most = if name { 100 } else { 39 };
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || c == '-' || (name && matches!(c, '.' | '_'));
    (1..=most).contains(&part.len()) && part.chars().all(allowed) && part != "." && part != ".."
}

impl RevisionLocation {
    /// Checks the fields a location must have; the error names the field.
    pub fn validate(&self) -> Result<(), WireError> {
        match self {
            Self::S3 { s3_location } => {
                if s3_location.bucket.is_empty() {
                    return Err(invalid("revision.s3Location.bucket", "must not be empty"));
                }
                if s3_location.key.is_empty() {
                    return Err(invalid("revision.s3Location.key", "must not be empty"));
                }
            }
            Self::GitHub { git_hub_location } => {
                let repository = &git_hub_location.repository;
                let named = match repository.split_once('/') {
                    Some((owner, name)) => github_name(owner, false) && github_name(name, true),
                    None => false,
                };
                if !named {
                    return Err(invalid(
                        "revision.gitHubLocation.repository",
                        format!(
                            "must be owner/name (letters, digits, `-`, and in the name `.` and `_`), found {repository:?}"
                        ),
                    ));
                }
                let commit = &git_hub_location.commit_id;
                if !(7..=40).contains(&commit.len())
                    || !commit.chars().all(|c| c.is_ascii_hexdigit())
                {
                    return Err(invalid(
                        "revision.gitHubLocation.commitId",
                        format!(
                            "must be a commit SHA (7 to 40 hexadecimal digits), found {commit:?}"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Who started a deployment, as CodeDeploy's `creator` spells it (its casing varies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Creator {
    User,
    Autoscaling,
    CodeDeployRollback,
    #[serde(rename = "CodeDeploy")]
    CodeDeploy,
    /// The update of instances that launched during a deployment.
    #[serde(rename = "CodeDeployAutoUpdate")]
    CodeDeployAutoUpdate,
    /// An Auto Scaling termination hook's deployment (`terminationHookEnabled`).
    AutoscalingTermination,
}

/// Deploy a revision to one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Command {
    pub schema_version: u32,
    pub deployment_id: String,
    pub deployment_group_id: String,
    pub deployment_group_name: String,
    pub application_name: String,
    pub instance_id: String,
    pub revision: RevisionLocation,
    /// The events the agent runs, in order; events the control plane performs
    /// (BlockTraffic, AllowTraffic) are not in the list.
    pub lifecycle_events: Vec<LifecycleEvent>,
    pub file_exists_behavior: FileExistsBehavior,
    pub ignore_application_stop_failures: bool,
    pub creator: Creator,
    /// When the control plane fails the host for not having started (milliseconds since
    /// the epoch): an agent that receives the command later, back from being offline,
    /// never runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_by: Option<u64>,
    /// An S3 revision's bundle as a presigned GET, valid a little past `start_by`: hosts
    /// read bundles through it and need no S3 permission of their own, so no host can
    /// read another application's revisions. Secret while it lasts: never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_url: Option<String>,
}

impl Command {
    /// Whether the command may no longer start: its host has been failed for silence.
    pub fn expired(&self, now: u64) -> bool {
        self.start_by.is_some_and(|start_by| now > start_by)
    }

    pub fn from_json(text: &str) -> Result<Self, WireError> {
        check_version(text)?;
        let command: Command =
            serde_json::from_str(text).map_err(|error| WireError::Malformed(error.to_string()))?;
        command.validate()?;
        Ok(command)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a command always serializes")
    }

    pub fn validate(&self) -> Result<(), WireError> {
        check_deployment_id(&self.deployment_id)?;
        check_deployment_group_id(&self.deployment_group_id)?;
        require("deploymentGroupName", &self.deployment_group_name)?;
        require("applicationName", &self.application_name)?;
        check_instance_id("instanceId", &self.instance_id)?;
        self.revision.validate()?;
        if let Some(url) = &self.bundle_url {
            check_bundle_url(url)?;
        }
        if self.lifecycle_events.is_empty() {
            return Err(invalid("lifecycleEvents", "must list at least one event"));
        }
        let mut seen = BTreeSet::new();
        for event in &self.lifecycle_events {
            if !seen.insert(*event) {
                return Err(invalid("lifecycleEvents", format!("lists {event} twice")));
            }
            if event.performer() == crate::lifecycle::Performer::ControlPlane {
                return Err(invalid(
                    "lifecycleEvents",
                    format!("{event} is performed by the control plane, not the agent"),
                ));
            }
        }
        Ok(())
    }
}

/// The status a report gives a lifecycle event.
/// Tells a host that a deployment stopped or failed: it skips the events it has not
/// started, and never starts the deployment's command if it had not yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cancel {
    pub deployment_id: String,
    pub instance_id: String,
}

/// What a host's command queue carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMessage {
    Command(Box<Command>),
    Cancel(Cancel),
}

/// A cancel as it travels: `{"schemaVersion": 1, "cancel": {...}}`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CancelMessage {
    schema_version: u32,
    cancel: Cancel,
}

impl HostMessage {
    pub fn from_json(text: &str) -> Result<Self, WireError> {
        check_version(text)?;
        let is_cancel = serde_json::from_str::<serde_json::Value>(text)
            .map_err(|error| WireError::Malformed(error.to_string()))?
            .get("cancel")
            .is_some();
        if !is_cancel {
            return Command::from_json(text).map(|command| Self::Command(Box::new(command)));
        }
        let message: CancelMessage =
            serde_json::from_str(text).map_err(|error| WireError::Malformed(error.to_string()))?;
        check_deployment_id(&message.cancel.deployment_id)?;
        check_instance_id("cancel.instanceId", &message.cancel.instance_id)?;
        Ok(Self::Cancel(message.cancel))
    }
}

impl Cancel {
    pub fn to_json(&self) -> String {
        serde_json::to_string(&CancelMessage {
            schema_version: SCHEMA_VERSION,
            cancel: self.clone(),
        })
        .expect("a cancel always serializes")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventStatus {
    Pending,
    InProgress,
    Succeeded,
    Failed,
    Skipped,
}

impl EventStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Skipped)
    }
}

/// CodeDeploy's `Diagnostics.errorCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    Success,
    ScriptMissing,
    ScriptNotExecutable,
    ScriptTimedOut,
    ScriptFailed,
    UnknownError,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Diagnostics {
    pub error_code: ErrorCode,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub script_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The end of the script's output, at most [`LOG_TAIL_MAX_BYTES`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log_tail: String,
}

/// Most reports one message on the reports queue carries.
pub const REPORTS_PER_MESSAGE_MAX: usize = 10;

/// Reads a message from the reports queue: one report, or a JSON array of 1 to
/// [`REPORTS_PER_MESSAGE_MAX`] reports that an agent had ready at once (fewer messages
/// mean fewer receives and fewer state writes per host).
pub fn reports_from_json(text: &str) -> Result<Vec<Report>, WireError> {
    if !text.trim_start().starts_with('[') {
        return Report::from_json(text).map(|report| vec![report]);
    }
    let items: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|error| WireError::Malformed(error.to_string()))?;
    if items.is_empty() || items.len() > REPORTS_PER_MESSAGE_MAX {
        return Err(invalid(
            "reports",
            format!(
                "a message carries 1 to {REPORTS_PER_MESSAGE_MAX} reports, not {}",
                items.len()
            ),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            Report::from_json(&item.to_string()).map_err(|error| WireError::InReport {
                index,
                error: Box::new(error),
            })
        })
        .collect()
}

/// Writes reports as one message body, the inverse of [`reports_from_json`]: a lone
/// report stays an object, as agents before batching sent it.
pub fn reports_to_json(reports: &[Report]) -> String {
    match reports {
        [one] => one.to_json(),
        many => serde_json::to_string(many).expect("reports always serialize"),
    }
}

/// How one lifecycle event went on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Report {
    pub schema_version: u32,
    pub deployment_id: String,
    pub instance_id: String,
    pub lifecycle_event: LifecycleEvent,
    pub status: EventStatus,
    /// Milliseconds since the Unix epoch.
    pub start_time: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<Diagnostics>,
}

impl Report {
    pub fn from_json(text: &str) -> Result<Self, WireError> {
        check_version(text)?;
        let report: Report =
            serde_json::from_str(text).map_err(|error| WireError::Malformed(error.to_string()))?;
        report.validate()?;
        Ok(report)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serializes")
    }

    pub fn validate(&self) -> Result<(), WireError> {
        check_deployment_id(&self.deployment_id)?;
        check_instance_id("instanceId", &self.instance_id)?;
        if self.status == EventStatus::Pending {
            return Err(invalid(
                "status",
                "must be InProgress, Succeeded, Failed or Skipped",
            ));
        }
        match (self.status.is_terminal(), self.end_time) {
            (true, None) => return Err(invalid("endTime", "is required when the event has ended")),
            (false, Some(_)) => {
                return Err(invalid(
                    "endTime",
                    "must be absent while the event is in progress",
                ));
            }
            (true, Some(end)) if end < self.start_time => {
                return Err(invalid("endTime", "must not be before startTime"));
            }
            _ => {}
        }
        if let Some(diagnostics) = &self.diagnostics {
            if diagnostics.log_tail.len() > LOG_TAIL_MAX_BYTES {
                return Err(invalid(
                    "diagnostics.logTail",
                    format!("must be at most {LOG_TAIL_MAX_BYTES} bytes"),
                ));
            }
            let failed = self.status == EventStatus::Failed;
            let success_code = diagnostics.error_code == ErrorCode::Success;
            if failed == success_code {
                return Err(invalid(
                    "diagnostics.errorCode",
                    "must be Success exactly when the event did not fail",
                ));
            }
        } else if self.status == EventStatus::Failed {
            return Err(invalid("diagnostics", "is required when the event failed"));
        }
        Ok(())
    }
}

/// Keeps the last [`LOG_TAIL_MAX_BYTES`] of `output`, cut on a character boundary.
pub fn log_tail(output: &str) -> &str {
    last_bytes(output, LOG_TAIL_MAX_BYTES)
}

/// The end of `text`, at most `max` bytes, cut on a character boundary.
pub fn last_bytes(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The start of `text`, at most `max` bytes, cut on a character boundary.
pub fn first_bytes(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The bytes `c` takes in a JSON string as serde_json writes it: quote, backslash and
/// the control characters with a short escape take 2, other control characters 6
/// (`\u001b`), everything else its UTF-8 length.
fn json_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// The bytes `text` takes once JSON-escaped, without its quotes: what it costs to store.
pub fn json_len(text: &str) -> usize {
    text.chars().map(json_char_len).sum()
}

/// The longest start of `text` that takes at most `max` bytes once JSON-escaped.
pub fn first_json_bytes(text: &str, max: usize) -> &str {
    let mut used = 0;
    for (index, c) in text.char_indices() {
        used += json_char_len(c);
        if used > max {
            return &text[..index];
        }
    }
    text
}

/// The longest end of `text` that takes at most `max` bytes once JSON-escaped.
pub fn last_json_bytes(text: &str, max: usize) -> &str {
    let mut used = 0;
    for (index, c) in text.char_indices().rev() {
        used += json_char_len(c);
        if used > max {
            return &text[index + c.len_utf8()..];
        }
    }
    text
}

/// Refuses a newer schema before strict parsing, so the error says "upgrade" rather
/// than "unknown field".
fn check_version(text: &str) -> Result<(), WireError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Versioned {
        schema_version: Option<u32>,
    }
    let versioned: Versioned =
        serde_json::from_str(text).map_err(|error| WireError::Malformed(error.to_string()))?;
    match versioned.schema_version {
        None => Err(invalid("schemaVersion", "is required")),
        Some(0) => Err(invalid("schemaVersion", "must be at least 1")),
        Some(found) if found > SCHEMA_VERSION => Err(WireError::UnsupportedVersion { found }),
        Some(_) => Ok(()),
    }
}

/// The longest presigned URL taken: S3's own with a session token is about 1.5 KB.
pub const BUNDLE_URL_MAX: usize = 8192;

/// A bundle URL is http(s), one line, and of a presigned URL's size: the agent sends it
/// as it is, and names the bundle by its S3 location, never by it.
fn check_bundle_url(url: &str) -> Result<(), WireError> {
    let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
    if !scheme_ok || url.len() > BUNDLE_URL_MAX || url.chars().any(char::is_control) {
        return Err(invalid(
            "bundleUrl",
            format!(
                "must be an http(s) URL of at most {BUNDLE_URL_MAX} characters, without control characters"
            ),
        ));
    }
    Ok(())
}

fn require(field: &'static str, value: &str) -> Result<(), WireError> {
    if value.trim().is_empty() {
        Err(invalid(field, "must not be empty"))
    } else {
        Ok(())
    }
}

/// The longest host id: an on-premises instance name names its SQS command queue
/// after the stack's prefix (queue names stop at 80 characters); EC2 ids have 19.
pub const MAX_INSTANCE_ID: usize = 60;

/// Whether `id` can name a host: 1 to [`MAX_INSTANCE_ID`] characters of `A-Z`, `a-z`,
/// `0-9`, `-` and `_`, as RegisterOnPremisesInstance allows and EC2 ids are. It keys
/// the host's records, so a longer one would be refused by DynamoDB too.
pub fn is_instance_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_INSTANCE_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn check_instance_id(field: &'static str, id: &str) -> Result<(), WireError> {
    if is_instance_id(id) {
        Ok(())
    } else {
        let shown: String = id.chars().take(80).collect();
        Err(invalid(
            field,
            format!(
                "{shown:?}{} is not a host id (1 to {MAX_INSTANCE_ID} of A-Z, a-z, 0-9, - and _)",
                if shown.len() < id.len() { "..." } else { "" }
            ),
        ))
    }
}

/// The longest deployment group id: CodeDeploy's are UUIDs (36 characters).
pub const MAX_DEPLOYMENT_GROUP_ID: usize = 64;

/// Deployment group ids look like CodeDeploy's (UUIDs): 1 to
/// [`MAX_DEPLOYMENT_GROUP_ID`] of `A-Z`, `a-z`, `0-9` and `-`. The agent names its
/// directories and records after the id (`<root_dir>/<group-id>/...`), so no `/`, `.`
/// or anything else that could lead a path elsewhere is accepted.
pub fn check_deployment_group_id(id: &str) -> Result<(), WireError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_DEPLOYMENT_GROUP_ID
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(())
    } else {
        let shown: String = id.chars().take(80).collect();
        Err(invalid(
            "deploymentGroupId",
            format!(
                "{shown:?}{} is not a deployment group id (1 to {MAX_DEPLOYMENT_GROUP_ID} of A-Z, a-z, 0-9 and -, as a UUID)",
                if shown.len() < id.len() { "..." } else { "" }
            ),
        ))
    }
}

/// Deployment ids look like CodeDeploy's: `d-` then nine characters of `A-Z0-9`.
pub fn check_deployment_id(id: &str) -> Result<(), WireError> {
    let valid = id.len() == 11
        && id.starts_with("d-")
        && id[2..]
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(invalid(
            "deploymentId",
            format!("{id:?} is not a deployment id (d- followed by 9 of A-Z, 0-9)"),
        ))
    }
}

#[cfg(test)]
mod tests;
