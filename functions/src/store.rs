//! The DynamoDB adapter: one table, string keys `pk` and `sk`, every write conditional.
//!
//! | entity | pk | sk | other attributes |
//! |---|---|---|---|
//! | application | `APPLICATION` | name | `body` (ApplicationInfo JSON), `version`, `tags` + `tagsVersion`; while renamed, `renamingTo` (on the old name's) or `renamedFrom` (on the new name's) |
//! | deployment group | `GROUP#<application>` | name | `body` (settings), `version`, `activeDeploymentId` (the lock), `lastSuccessful`, `lastAttempted`, `targetRevision`, `tags` + `tagsVersion`; `renamedFrom` while its application's rename brings its health and history after it |
//! | instance health in a group | `HEALTH#<application>#<group>` | instance id | `body` (InstanceHealth) |
//! | deployment config | `CONFIG` | name | `body`, `version` |
//! | revision | `REVISION#<application>` | revision key | `body` (RevisionRecord) |
//! | on-premises instance | `INSTANCE` | name | `body`, `version` |
//! | an identity's instance | `CLAIM` | `SENDER#<SenderId>` | `owner` (`INSTANCE/<name>`) |
//! | deployment (summary) | `DEPLOYMENT#<id>` | `STATE` | `spec` (immutable), `state` (the state machine's summary), `status`, `version`, `rollbackClaim` (the rollback's id, reserved before it is created), `rollbackInfo`, `groupKey` + `createTime` (index `by-group`), `activeKey` + `wakeupAt` (index `active`) |
//! | an effect entry not yet carried out (the outbox) | `DEPLOYMENT#<id>` | `STATE#OUTBOX#<key>` | `entry` (OutboxEntry); key: the summary version that wrote it, `<version:020>`, or for a write of host records only `<summary version:020>#<host>#<host version:010>` |
//! | a deployment's ordered targets | `DEPLOYMENT#<id>` | `PLAN#<page>` | `targets` (JSON list of up to 500, immutable) |
//! | a deployment's host | `DEPLOYMENT#<id>` | `TARGET#<instance id>` | `state` (TargetState), `status`, `version`, `dueDeployment` + `dueAt` while deploying (index `due`) |
//! | reports its hosts did not send | `DEPLOYMENT#<id>` | `FORGED_REPORTS` | `forgedReports` (a count) |
//! | an effect that failed for good | `DEPLOYMENT#<id>` | `FAILED_EFFECT#<kind>` | `effect`, `reason`, `firstTime`, `lastTime`, `failures` |
//!
//! Access patterns: get/put by key; list a partition (applications, configs, instances,
//! a group's revisions, an application's groups, a group's instance health) with Query;
//! a group's deployments, newest first, on `by-group`; deployments needing a tick
//! (`wakeupAt <= now`) on the sparse index `active`, which only holds deployments that may
//! still change; a deployment's hosts past their deadline on the sparse index `due`.
//!
//! A lost race comes back as [`StoreError::Conflict`], never as a silent overwrite.
//! Every write with effects stores them in an outbox item of their own, in the same
//! transaction: effects survive a crash between the write and their execution, and the
//! tick executes entries left over. The outbox items sort right after the summary
//! (`STATE`, `STATE#OUTBOX#...`), so one query reads both, and the summary never grows
//! with them.
//!
//! Renaming an application moves every item its name keys (see `store/rename.rs`).
//!
//! Nothing grows with the fleet in one item: a host's report writes its own record, and
//! the summary only when a host finishes (with the reports of one batch in one
//! transaction). The plan pages are written with the summary and the group's lock in one
//! transaction, which bounds a deployment at 97 pages; gantry-core's `MAX_TARGETS`
//! (10,000, 20 pages) is well inside.

use crate::model::{LastDeploymentInfo, RollbackInfo};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, KeysAndAttributes, Projection, ProjectionType, Put, ScalarAttributeType,
    TransactWriteItem, Update,
};
use gantry_core::deployment::{Deployment, Effect, Millis, TargetState, TargetStatus};
use gantry_core::planner::Target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};

mod rename;
pub use rename::{GroupMove, RenameMarks};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost: someone else changed the item first.
    #[error("{0}")]
    Conflict(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{what} is stored in a form this build cannot read: {message}")]
    Corrupt { what: String, message: String },
    #[error("the state machine refused the input: {0}")]
    Refused(#[from] gantry_core::deployment::ApplyError),
    #[error("DynamoDB: {0}")]
    Aws(String),
    /// What a caller asked to store does not fit in one DynamoDB item.
    #[error("{0}")]
    TooLarge(String),
}

/// What a caller of the API sees: a lost race is ConcurrentModificationException, a
/// missing item ResourceNotFoundException, an item too large InvalidInputException.
impl From<StoreError> for crate::error::ApiError {
    fn from(error: StoreError) -> Self {
        use crate::error::{ApiError, Exception};
        match error {
            StoreError::Conflict(message) => {
                ApiError::new(Exception::ConcurrentModification, message)
            }
            StoreError::NotFound(what) => ApiError::new(
                Exception::ResourceNotFound,
                format!("{what} does not exist"),
            ),
            StoreError::TooLarge(message) => ApiError::invalid_input(message),
            other => ApiError::internal(other.to_string()),
        }
    }
}

/// A value with the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// How long an outbox entry may wait for the writer that made it before the tick runs it.
pub const OUTBOX_GRACE_MS: Millis = 30_000;
/// A running deployment with no deadline pending is still looked at this often.
pub const IDLE_TICK_MS: Millis = 60_000;
/// A running deployment that watches CloudWatch alarms is looked at (its alarms polled)
/// this often, also while nothing else happens to it (a blue/green termination wait).
pub const ALARM_LOOK_MS: Millis = 10_000;

/// When a running deployment is next looked at if nothing else comes due: sooner when it
/// watches alarms. None once it has settled (ended, and no host still finishing).
pub fn idle_look(state: &Deployment, now: Millis) -> Option<Millis> {
    let settled = state.status.is_terminal() && state.counts.in_progress == 0;
    let every = match state.alarms {
        Some(_) if !state.status.is_terminal() => ALARM_LOOK_MS,
        _ => IDLE_TICK_MS,
    };
    (!settled).then_some(now + every)
}

const ACTIVE_INDEX: &str = "active";
const BY_GROUP_INDEX: &str = "by-group";
const DUE_INDEX: &str = "due";
/// Targets per plan page: 500 EC2 ids with zones make about 40 KB.
const PLAN_PAGE_SIZE: usize = 500;
/// Host records written per transaction (DynamoDB takes 100 items; one is left for the
/// summary).
pub const TRANSACTION_TARGETS: usize = 99;

pub mod keys {
    pub const APPLICATIONS: &str = "APPLICATION";
    pub const CONFIGS: &str = "CONFIG";
    pub const INSTANCES: &str = "INSTANCE";
    /// Things only one entity may hold (an on-premises instance's IAM ARN).
    pub const CLAIMS: &str = "CLAIM";

    pub fn groups(application: &str) -> String {
        format!("GROUP#{application}")
    }

    pub fn revisions(application: &str) -> String {
        format!("REVISION#{application}")
    }

    pub fn deployment(id: &str) -> String {
        format!("DEPLOYMENT#{id}")
    }

    pub const DEPLOYMENT_SK: &str = "STATE";
    /// A deployment's outbox entries: right after its summary in key order.
    pub const OUTBOX_PREFIX: &str = "STATE#OUTBOX#";
    /// The count of a deployment's reports sent by someone other than their host.
    pub const FORGED_REPORTS_SK: &str = "FORGED_REPORTS";
    /// Effects of a deployment that failed for good, one item per kind (a notification:
    /// per trigger), so that however often one fails the deployment keeps a few items.
    pub const FAILED_EFFECT_PREFIX: &str = "FAILED_EFFECT#";
    pub const PLAN_PREFIX: &str = "PLAN#";
    pub const TARGET_PREFIX: &str = "TARGET#";

    pub fn plan_page(page: usize) -> String {
        format!("{PLAN_PREFIX}{page:05}")
    }

    pub fn target(instance_id: &str) -> String {
        format!("{TARGET_PREFIX}{instance_id}")
    }

    pub fn outbox(entry: &str) -> String {
        format!("{OUTBOX_PREFIX}{entry}")
    }

    /// An entry of the `outbox` map that summaries held before the outbox had items of
    /// its own (a deployment running across the upgrade): `<this><version>`.
    pub const SUMMARY_MAP_ENTRY: &str = "summary-map#";

    /// The outbox entry a summary write makes: its new version, so entries sort in
    /// the order they were written.
    pub fn summary_entry(version: u64) -> String {
        format!("{version:020}")
    }

    /// The outbox entry of a write of host records only: the summary version it read,
    /// and the first host's new version, which its conditional put makes unique.
    pub fn hosts_entry(summary_version: u64, instance_id: &str, host_version: u64) -> String {
        format!("{summary_version:020}#{instance_id}#{host_version:010}")
    }

    pub fn health(application: &str, group: &str) -> String {
        format!("HEALTH#{application}#{group}")
    }

    pub fn group_key(application: &str, group: &str) -> String {
        format!("{application}#{group}")
    }
}

pub struct DynamoStore {
    client: Client,
    table: String,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn json<T: Serialize>(value: &T) -> AttributeValue {
    s(serde_json::to_string(value).expect("stored values always serialize"))
}

/// Most a body an API caller shapes (a group's settings, an application, an instance) may
/// take stored: DynamoDB's 400 KB per item, less room for the item's keys and other
/// attributes.
pub const MAX_BODY_BYTES: usize = 350 * 1024;

/// Most a deployment's spec may take stored. It shares the summary item with the state
/// machine's summary and is read with every report, so it is kept far below an item;
/// real ones take a few KB.
pub const MAX_SPEC_BYTES: usize = 64 * 1024;

/// `value` as a stored body, refused when it would not fit in one item; the refusal names
/// its largest field, which is what the caller should shrink.
fn body<T: Serialize>(value: &T, what: &str) -> Result<AttributeValue, StoreError> {
    bounded(value, what, MAX_BODY_BYTES)
}

/// `value` as stored JSON, refused when over `limit` bytes, naming its largest field.
fn bounded<T: Serialize>(
    value: &T,
    what: &str,
    limit: usize,
) -> Result<AttributeValue, StoreError> {
    let text = serde_json::to_string(value).expect("stored values always serialize");
    if text.len() <= limit {
        return Ok(s(text));
    }
    let largest = match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(fields)) => fields
            .iter()
            .map(|(name, field)| (field.to_string().len(), name.clone()))
            .max()
            .map(|(bytes, name)| format!("; its largest field is {name} ({bytes} bytes)")),
        _ => None,
    };
    Err(StoreError::TooLarge(format!(
        "{what}: too large to store ({} bytes; at most {limit}){}",
        text.len(),
        largest.unwrap_or_default()
    )))
}

/// An enum's serialized name (`"InProgress"`), as a plain string attribute.
fn json_name<T: Serialize>(value: &T) -> AttributeValue {
    s(crate::model::serialized_name(value))
}

fn aws<E>(error: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    StoreError::Aws(DisplayErrorContext(error).to_string())
}

/// Maps an SDK error to a domain error: a failed condition is a conflict, not a string.
/// A conditional write whose condition no longer holds has nothing left to do (someone
/// did it, or it no longer applies): done. Other failures are failures.
fn done_unless_failed<T, E>(result: Result<T, SdkError<E>>) -> Result<(), StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result.map_err(|error| classify(error, String::new)) {
        Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(other) => Err(other),
    }
}

fn classify<E>(error: SdkError<E>, conflict: impl FnOnce() -> String) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let SdkError::ServiceError(service) = &error
        && service.err().code() == Some("ConditionalCheckFailedException")
    {
        return StoreError::Conflict(conflict());
    }
    aws(error)
}

type Item = HashMap<String, AttributeValue>;

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|value| value.as_s().ok())
        .map(String::as_str)
}

fn number(item: &Item, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|value| value.as_n().ok())
        .and_then(|value| value.parse().ok())
}

fn decode<T: DeserializeOwned>(item: &Item, name: &str, what: &str) -> Result<T, StoreError> {
    let raw = text(item, name).ok_or_else(|| StoreError::Corrupt {
        what: what.to_owned(),
        message: format!("no {name}"),
    })?;
    serde_json::from_str(raw).map_err(|error| StoreError::Corrupt {
        what: what.to_owned(),
        message: format!("{name}: {error}"),
    })
}

fn decode_optional<T: DeserializeOwned>(
    item: &Item,
    name: &str,
    what: &str,
) -> Result<Option<T>, StoreError> {
    match text(item, name) {
        None => Ok(None),
        Some(_) => decode(item, name, what).map(Some),
    }
}

/// A deployment group as stored: settings plus what the control plane keeps on it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRecord<T> {
    pub settings: Versioned<T>,
    pub active_deployment_id: Option<String>,
    pub last_successful: Option<LastDeploymentInfo>,
    pub last_attempted: Option<LastDeploymentInfo>,
    pub target_revision: Option<gantry_core::wire::RevisionLocation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceHealth {
    pub healthy: bool,
    pub deployment_id: String,
    /// The revision the instance runs (after a success) or was given (after a failure).
    pub revision: gantry_core::wire::RevisionLocation,
}

/// One stored deployment: what it is, how it goes, and effects not yet carried out.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentRecord<S> {
    pub spec: S,
    pub state: Deployment,
    pub version: u64,
    /// Effects written with each write and not yet confirmed done, by entry key (see
    /// [`keys::summary_entry`]), in the order they were written.
    pub outbox: BTreeMap<String, OutboxEntry>,
    pub rollback_info: RollbackInfo,
    /// When the tick is next due to look at it, as stored.
    pub wakeup_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct OutboxEntry {
    pub effects: Vec<Effect>,
    /// When the entry was written, or last failed.
    pub at: Millis,
    /// How many times carrying out the entry has failed.
    #[serde(default)]
    pub attempts: u32,
}

/// An effect of a deployment that failed for good: it blocked nothing, and the
/// deployment shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEffect {
    /// What it was, e.g. "DeploymentSuccess notification to trigger ops (arn:...)".
    pub effect: String,
    /// Why it failed, the last time it did.
    pub reason: String,
    pub first_time: Millis,
    pub last_time: Millis,
    pub failures: u64,
}

/// The longest wait between two attempts at an effect that keeps failing: a group stays
/// locked at most this long after whatever failed recovers.
pub const MAX_RETRY_DELAY_MS: Millis = 600_000;

impl OutboxEntry {
    /// Effects just written, for their writer to carry out.
    pub fn new(effects: Vec<Effect>, now: Millis) -> Self {
        Self {
            effects,
            at: now,
            attempts: 0,
        }
    }

    /// When the tick runs the entry: a new one after the grace its writer has to finish
    /// it, a failed one after a delay that doubles with each failure, up to
    /// [`MAX_RETRY_DELAY_MS`].
    pub fn due(&self) -> Millis {
        let doublings = self.attempts.saturating_sub(1).min(16);
        let delay = OUTBOX_GRACE_MS.saturating_mul(1 << doublings);
        self.at + delay.min(MAX_RETRY_DELAY_MS)
    }
}

/// When the tick must next look at a deployment after a write, or None when it never
/// needs to: the earliest of the wakeup already stored (a tick will set the exact one),
/// the summary's own (a zone wait), an outbox entry's grace, the deadline of hosts sent
/// their command by this write, and an idle look while anything may still change.
fn wakeup(
    state: &Deployment,
    stored: Option<Millis>,
    outbox_pending: bool,
    dispatched: bool,
    now: Millis,
) -> Option<Millis> {
    let settled = state.status.is_terminal() && state.counts.in_progress == 0;
    if settled && !outbox_pending {
        return None;
    }
    let outbox = outbox_pending.then_some(now + OUTBOX_GRACE_MS);
    let hosts = dispatched.then_some(now + state.deadlines.start_ms + 1);
    [
        stored,
        state.next_wakeup(),
        outbox,
        hosts,
        idle_look(state, now),
    ]
    .into_iter()
    .flatten()
    .min()
}

fn dispatches(effects: &[Effect]) -> bool {
    effects
        .iter()
        .any(|effect| matches!(effect, Effect::Dispatch { .. }))
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Creates the table as the SAM template declares it (for gantry-local and tests).
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .expect("key schema fields are set")
        };
        let attribute = |name: &str, kind: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind)
                .build()
                .expect("attribute fields are set")
        };
        let index = |name: &str, hash: &str, range: &str| {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(hash, KeyType::Hash))
                .key_schema(key(range, KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::KeysOnly)
                        .build(),
                )
                .build()
                .expect("index fields are set")
        };
        let result = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .attribute_definitions(attribute("pk", ScalarAttributeType::S))
            .attribute_definitions(attribute("sk", ScalarAttributeType::S))
            .attribute_definitions(attribute("groupKey", ScalarAttributeType::S))
            .attribute_definitions(attribute("createTime", ScalarAttributeType::N))
            .attribute_definitions(attribute("activeKey", ScalarAttributeType::S))
            .attribute_definitions(attribute("wakeupAt", ScalarAttributeType::N))
            .attribute_definitions(attribute("dueDeployment", ScalarAttributeType::S))
            .attribute_definitions(attribute("dueAt", ScalarAttributeType::N))
            .global_secondary_indexes(index(BY_GROUP_INDEX, "groupKey", "createTime"))
            .global_secondary_indexes(index(ACTIVE_INDEX, "activeKey", "wakeupAt"))
            .global_secondary_indexes(index(DUE_INDEX, "dueDeployment", "dueAt"))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                Ok(()) // it exists already
            }
            Err(error) => Err(aws(error)),
        }
    }

    // ---- plain entities: a JSON `body` and a `version` ----

    /// Stores a new entity at version 1; a conflict if the key is taken.
    pub async fn put_new<T: Serialize>(
        &self,
        pk: &str,
        sk: &str,
        value: &T,
        extra: &[(&str, AttributeValue)],
    ) -> Result<(), StoreError> {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s(sk))
            .item("body", body(value, sk)?)
            .item("version", n(1))
            .condition_expression("attribute_not_exists(pk)");
        for (name, value) in extra {
            request = request.item(*name, value.clone());
        }
        request
            .send()
            .await
            .map_err(|error| classify(error, || format!("{pk}/{sk} already exists")))?;
        Ok(())
    }

    /// Stores an entity and claims `claim` for it in one transaction (`CLAIM`/`<claim>`,
    /// naming the entity): something only one entity may have, such as an IAM identity.
    /// The entity must be new, or (`replacing`) still at that version. A conflict means
    /// the entity or the claim was there.
    pub async fn put_claiming<T: Serialize>(
        &self,
        pk: &str,
        sk: &str,
        value: &T,
        replacing: Option<u64>,
        claim: &str,
    ) -> Result<(), StoreError> {
        let entity = Put::builder()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s(sk))
            .item("body", body(value, sk)?)
            .item("version", n(replacing.unwrap_or(0) + 1));
        let entity = match replacing {
            None => entity.condition_expression("attribute_not_exists(pk)"),
            Some(version) => entity
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", n(version)),
        }
        .build()
        .expect("put fields are set");
        let claimed = Put::builder()
            .table_name(&self.table)
            .item("pk", s(keys::CLAIMS))
            .item("sk", s(claim))
            .item("owner", s(format!("{pk}/{sk}")))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .expect("put fields are set");
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(entity).build())
            .transact_items(TransactWriteItem::builder().put(claimed).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_transaction_canceled_exception()) =>
            {
                Err(StoreError::Conflict(format!(
                    "{pk}/{sk} or the claim on {claim} exists"
                )))
            }
            Err(error) => Err(aws(error)),
        }
    }

    /// The entity (`pk/sk`) holding `claim`, if any.
    pub async fn claim_owner(&self, claim: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .get_item(keys::CLAIMS, claim)
            .await?
            .and_then(|item| text(&item, "owner").map(str::to_owned)))
    }

    /// Gives up `claim` if `pk/sk` holds it.
    pub async fn release_claim(&self, claim: &str, pk: &str, sk: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(keys::CLAIMS))
            .key("sk", s(claim))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(format!("{pk}/{sk}")))
            .send()
            .await;
        // Someone else's, or nobody's.
        done_unless_failed(result)
    }

    /// Stores an entity whether or not it exists (a revision registered again).
    pub async fn put<T: Serialize>(&self, pk: &str, sk: &str, value: &T) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s(sk))
            .item("body", body(value, sk)?)
            .item("version", n(1))
            .send()
            .await
            .map_err(aws)?;
        Ok(())
    }

    /// Replaces an entity's body if it is still at `expected_version`.
    pub async fn update_body<T: Serialize>(
        &self,
        pk: &str,
        sk: &str,
        value: &T,
        expected_version: u64,
    ) -> Result<u64, StoreError> {
        let next = expected_version + 1;
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression("SET body = :body, #version = :next")
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":body", body(value, sk)?)
            .expression_attribute_values(":next", n(next))
            .expression_attribute_values(":expected", n(expected_version))
            .send()
            .await
            .map_err(|error| classify(error, || format!("{sk} changed since it was read")))?;
        Ok(next)
    }

    async fn get_item(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(aws)?
            .item)
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        pk: &str,
        sk: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        let Some(item) = self.get_item(pk, sk).await? else {
            return Ok(None);
        };
        Ok(Some(Versioned {
            value: decode(&item, "body", sk)?,
            version: number(&item, "version").unwrap_or(1),
        }))
    }

    /// Every entity in a partition, in key order.
    pub async fn list<T: DeserializeOwned>(&self, pk: &str) -> Result<Vec<T>, StoreError> {
        let mut values = Vec::new();
        self.query_pages(pk, "", |item| {
            let what = text(item, "sk").unwrap_or(pk);
            values.push(decode(item, "body", what)?);
            Ok(())
        })
        .await?;
        Ok(values)
    }

    /// Deletes an entity; `condition` (if any) must hold, or it is a conflict.
    pub async fn delete(
        &self,
        pk: &str,
        sk: &str,
        condition: Option<&str>,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .set_condition_expression(condition.map(str::to_owned))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|error| classify(error, || format!("{sk} cannot be deleted now")))?;
        Ok(result.attributes.is_some_and(|old| !old.is_empty()))
    }

    // ---- resource tags: `tags` (JSON) and `tagsVersion` beside an entity's body, so
    // they go when the entity goes, and change without touching its `version` ----

    /// The attributes that give a new entity `tags` (`put_new`'s `extra`).
    pub fn tag_attributes<T: Serialize>(tags: &[T]) -> Vec<(&'static str, AttributeValue)> {
        if tags.is_empty() {
            return Vec::new();
        }
        vec![("tags", json(&tags)), ("tagsVersion", n(1))]
    }

    /// An entity's tags and their version (0 if it was never tagged); `None` if there is
    /// no such entity.
    pub async fn tags<T: DeserializeOwned>(
        &self,
        pk: &str,
        sk: &str,
    ) -> Result<Option<Versioned<Vec<T>>>, StoreError> {
        let Some(item) = self.get_item(pk, sk).await? else {
            return Ok(None);
        };
        Ok(Some(Versioned {
            value: decode_optional(&item, "tags", sk)?.unwrap_or_default(),
            version: number(&item, "tagsVersion").unwrap_or(0),
        }))
    }

    /// Replaces an entity's tags if they are still at `expected_version` (from
    /// [`Self::tags`]); a conflict if they changed or the entity is gone.
    pub async fn set_tags<T: Serialize>(
        &self,
        pk: &str,
        sk: &str,
        tags: &[T],
        expected_version: u64,
    ) -> Result<u64, StoreError> {
        let next = expected_version + 1;
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression("SET #tags = :tags, #tagsVersion = :next")
            .expression_attribute_names("#tags", "tags")
            .expression_attribute_names("#tagsVersion", "tagsVersion")
            .expression_attribute_values(":tags", json(&tags))
            .expression_attribute_values(":next", n(next));
        let request = if expected_version == 0 {
            request
                .condition_expression("attribute_exists(pk) AND attribute_not_exists(#tagsVersion)")
        } else {
            request
                .condition_expression("#tagsVersion = :expected")
                .expression_attribute_values(":expected", n(expected_version))
        };
        request.send().await.map_err(|error| {
            classify(error, || {
                format!("{pk}/{sk} or its tags changed since they were read")
            })
        })?;
        Ok(next)
    }

    // ---- deployment groups ----

    pub async fn create_group<T: Serialize>(
        &self,
        application: &str,
        name: &str,
        settings: &T,
    ) -> Result<(), StoreError> {
        self.put_new(&keys::groups(application), name, settings, &[])
            .await
    }

    /// A new group with its resource tags.
    pub async fn create_tagged_group<T: Serialize, U: Serialize>(
        &self,
        application: &str,
        name: &str,
        settings: &T,
        tags: &[U],
    ) -> Result<(), StoreError> {
        let tags = Self::tag_attributes(tags);
        self.put_new(&keys::groups(application), name, settings, &tags)
            .await
    }

    pub async fn load_group<T: DeserializeOwned>(
        &self,
        application: &str,
        name: &str,
    ) -> Result<Option<GroupRecord<T>>, StoreError> {
        let Some(item) = self.get_item(&keys::groups(application), name).await? else {
            return Ok(None);
        };
        let what = format!("deployment group {name}");
        Ok(Some(GroupRecord {
            settings: Versioned {
                value: decode(&item, "body", &what)?,
                version: number(&item, "version").unwrap_or(1),
            },
            active_deployment_id: text(&item, "activeDeploymentId").map(str::to_owned),
            last_successful: decode_optional(&item, "lastSuccessful", &what)?,
            last_attempted: decode_optional(&item, "lastAttempted", &what)?,
            target_revision: decode_optional(&item, "targetRevision", &what)?,
        }))
    }

    /// Records one instance's health in its group, in the instance's own item.
    pub async fn record_health(
        &self,
        application: &str,
        group: &str,
        instance_id: &str,
        health: &InstanceHealth,
    ) -> Result<(), StoreError> {
        self.put(&keys::health(application, group), instance_id, health)
            .await
    }

    /// Every instance's health in a group, by instance id.
    pub async fn group_health(
        &self,
        application: &str,
        group: &str,
    ) -> Result<BTreeMap<String, InstanceHealth>, StoreError> {
        let mut health = BTreeMap::new();
        self.query_pages(&keys::health(application, group), "", |item| {
            let instance = text(item, "sk").unwrap_or_default().to_owned();
            health.insert(instance, decode(item, "body", "instance health")?);
            Ok(())
        })
        .await?;
        Ok(health)
    }

    /// Records the group's last successful deployment and its revision.
    pub async fn record_success(
        &self,
        application: &str,
        group: &str,
        last: &LastDeploymentInfo,
        revision: &gantry_core::wire::RevisionLocation,
    ) -> Result<(), StoreError> {
        self.set_group_attributes(
            application,
            group,
            "SET lastSuccessful = :last, targetRevision = :revision",
            &[],
            vec![(":last", json(last)), (":revision", json(revision))],
        )
        .await
    }

    /// Records how the group's latest deployment ended (or that it started).
    pub async fn record_attempt(
        &self,
        application: &str,
        group: &str,
        last: &LastDeploymentInfo,
    ) -> Result<(), StoreError> {
        self.set_group_attributes(
            application,
            group,
            "SET lastAttempted = :last",
            &[],
            vec![(":last", json(last))],
        )
        .await
    }

    /// Sets attributes the control plane keeps on a group item, if the group still exists.
    async fn set_group_attributes(
        &self,
        application: &str,
        group: &str,
        expression: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<(), StoreError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::groups(application)))
            .key("sk", s(group))
            .update_expression(expression)
            .condition_expression("attribute_exists(pk)");
        for (name, value) in names {
            request = request.expression_attribute_names(*name, *value);
        }
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        request
            .send()
            .await
            .map_err(|error| classify(error, || format!("deployment group {group} is gone")))?;
        Ok(())
    }

    /// Releases the group's lock if this deployment holds it. Returns whether it did;
    /// releasing twice, or after another deployment took the lock, changes nothing.
    pub async fn unlock_group(
        &self,
        application: &str,
        group: &str,
        deployment_id: &str,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::groups(application)))
            .key("sk", s(group))
            .update_expression("REMOVE activeDeploymentId")
            .condition_expression("activeDeploymentId = :deployment")
            .expression_attribute_values(":deployment", s(deployment_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) => match classify(error, String::new) {
                StoreError::Conflict(_) => Ok(false),
                other => Err(other),
            },
        }
    }

    // ---- deployments ----

    /// Stores a new deployment (its summary and its ordered targets, in pages) and takes
    /// its group's lock, in one transaction: all of it happens or none. A group already
    /// locked by another deployment is a conflict. `effects` go to the outbox as the
    /// entry of version 1. A spec over [`MAX_SPEC_BYTES`] is refused.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_deployment<S: Serialize>(
        &self,
        application: &str,
        group: &str,
        spec: &S,
        state: &Deployment,
        ordered: &[Target],
        effects: &[Effect],
        take_lock: bool,
        now: Millis,
    ) -> Result<(), StoreError> {
        self.write_deployment(
            application,
            group,
            spec,
            state,
            ordered,
            effects,
            take_lock,
            None,
            now,
        )
        .await
        .map(|_| ())
    }

    /// Replaces a blue/green deployment stored while it provisioned its replacement
    /// fleet, if still at `version`, by the deployment planned over both fleets, as
    /// [`Self::create_deployment`] stores one (the group's lock it holds already). Returns
    /// the new version. A conflict: it changed meanwhile (stopped, or planned already).
    #[allow(clippy::too_many_arguments)]
    pub async fn replace_provisioning<S: Serialize>(
        &self,
        application: &str,
        group: &str,
        spec: &S,
        state: &Deployment,
        ordered: &[Target],
        effects: &[Effect],
        version: u64,
        now: Millis,
    ) -> Result<u64, StoreError> {
        self.write_deployment(
            application,
            group,
            spec,
            state,
            ordered,
            effects,
            true,
            Some(version),
            now,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_deployment<S: Serialize>(
        &self,
        application: &str,
        group: &str,
        spec: &S,
        state: &Deployment,
        ordered: &[Target],
        effects: &[Effect],
        take_lock: bool,
        replacing: Option<u64>,
        now: Millis,
    ) -> Result<u64, StoreError> {
        let id = &state.deployment_id;
        let version = replacing.map_or(1, |version| version + 1);
        let put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(keys::deployment(id)))
            .item("sk", s(keys::DEPLOYMENT_SK))
            .item("spec", bounded(spec, "the deployment", MAX_SPEC_BYTES)?)
            .item("state", json(state))
            .item("status", json_name(&state.status))
            .item("version", n(version))
            .item("groupKey", s(keys::group_key(application, group)))
            .item("createTime", n(state.create_time));
        let mut put = match replacing {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(expected) => put
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", n(expected)),
        };
        if let Some(at) = wakeup(state, None, !effects.is_empty(), dispatches(effects), now) {
            put = put.item("activeKey", s("ACTIVE")).item("wakeupAt", n(at));
        }
        let mut items = vec![
            TransactWriteItem::builder()
                .put(put.build().expect("put fields are set"))
                .build(),
        ];
        if !effects.is_empty() {
            items.push(self.outbox_put(id, &keys::summary_entry(version), effects, now));
        }
        for (page, targets) in ordered.chunks(PLAN_PAGE_SIZE).enumerate() {
            let put = Put::builder()
                .table_name(&self.table)
                .item("pk", s(keys::deployment(id)))
                .item("sk", s(keys::plan_page(page)))
                .item("targets", json(&targets))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .expect("put fields are set");
            items.push(TransactWriteItem::builder().put(put).build());
        }
        if take_lock {
            let lock = Update::builder()
                .table_name(&self.table)
                .key("pk", s(keys::groups(application)))
                .key("sk", s(group))
                .update_expression("SET activeDeploymentId = :deployment")
                .condition_expression(
                    "attribute_exists(pk) AND (attribute_not_exists(activeDeploymentId) OR activeDeploymentId = :deployment)",
                )
                .expression_attribute_values(":deployment", s(id))
                .build()
                .expect("update fields are set");
            items.push(TransactWriteItem::builder().update(lock).build());
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(version),
            Err(error) => {
                let cancelled = error
                    .as_service_error()
                    .is_some_and(|e| e.is_transaction_canceled_exception());
                if cancelled && replacing.is_some() {
                    Err(StoreError::Conflict(format!(
                        "deployment {id} changed while its replacement fleet was provisioned"
                    )))
                } else if cancelled {
                    Err(StoreError::Conflict(format!(
                        "deployment group {group} already has an active deployment, or deployment {id} exists"
                    )))
                } else {
                    Err(aws(error))
                }
            }
        }
    }

    pub async fn load_deployment<S: DeserializeOwned>(
        &self,
        id: &str,
    ) -> Result<DeploymentRecord<S>, StoreError> {
        // One query reads the summary and its outbox entries, which sort right after it.
        let what = format!("deployment {id}");
        let mut summary = None;
        let mut outbox = BTreeMap::new();
        self.query_pages(&keys::deployment(id), keys::DEPLOYMENT_SK, |item| {
            let sk = text(item, "sk").unwrap_or_default();
            if sk == keys::DEPLOYMENT_SK {
                summary = Some(item.clone());
            } else if let Some(entry) = sk.strip_prefix(keys::OUTBOX_PREFIX) {
                outbox.insert(
                    entry.to_owned(),
                    decode(item, "entry", &format!("{what}'s outbox entry {entry}"))?,
                );
            }
            Ok(())
        })
        .await?;
        let item = summary.ok_or_else(|| StoreError::NotFound(format!("deployment {id}")))?;
        // Written before the outbox had items: carried out and cleared all the same.
        if let Some(AttributeValue::M(map)) = item.get("outbox") {
            for (version, value) in map {
                let entry = value
                    .as_s()
                    .ok()
                    .and_then(|raw| serde_json::from_str(raw).ok())
                    .ok_or_else(|| StoreError::Corrupt {
                        what: what.clone(),
                        message: format!("outbox entry {version}"),
                    })?;
                outbox.insert(format!("{}{version}", keys::SUMMARY_MAP_ENTRY), entry);
            }
        }
        Ok(DeploymentRecord {
            spec: decode(&item, "spec", &what)?,
            state: decode(&item, "state", &what)?,
            version: number(&item, "version").ok_or_else(|| StoreError::Corrupt {
                what: what.clone(),
                message: "no version".into(),
            })?,
            outbox,
            rollback_info: decode_optional(&item, "rollbackInfo", &what)?.unwrap_or_default(),
            wakeup_at: number(&item, "wakeupAt"),
        })
    }

    /// The targets at `first..first + count` of a deployment's ordered list.
    pub async fn plan_slice(
        &self,
        id: &str,
        first: u32,
        count: u32,
    ) -> Result<Vec<Target>, StoreError> {
        let (first, end) = (first as usize, (first + count) as usize);
        let mut targets = Vec::with_capacity(end - first);
        for page in first / PLAN_PAGE_SIZE..end.div_ceil(PLAN_PAGE_SIZE) {
            let item = self
                .get_item(&keys::deployment(id), &keys::plan_page(page))
                .await?
                .ok_or_else(|| StoreError::Corrupt {
                    what: format!("deployment {id}"),
                    message: format!("plan page {page} is missing"),
                })?;
            let members: Vec<Target> = decode(&item, "targets", &format!("deployment {id}"))?;
            let base = page * PLAN_PAGE_SIZE;
            for (offset, target) in members.into_iter().enumerate() {
                if (first..end).contains(&(base + offset)) {
                    targets.push(target);
                }
            }
        }
        Ok(targets)
    }

    /// A deployment's whole ordered target list.
    pub async fn plan(&self, id: &str) -> Result<Vec<Target>, StoreError> {
        let mut targets = Vec::new();
        self.query_pages(&keys::deployment(id), keys::PLAN_PREFIX, |item| {
            targets.extend(decode::<Vec<Target>>(item, "targets", id)?);
            Ok(())
        })
        .await?;
        Ok(targets)
    }

    /// Every host record of a deployment (the hosts sent their command), by instance id.
    pub async fn targets(&self, id: &str) -> Result<Vec<TargetState>, StoreError> {
        let mut targets = Vec::new();
        self.query_pages(&keys::deployment(id), keys::TARGET_PREFIX, |item| {
            targets.push(decode(item, "state", id)?);
            Ok(())
        })
        .await?;
        Ok(targets)
    }

    /// Runs `each` over the items of a partition whose sort key starts with `prefix`.
    async fn query_pages(
        &self,
        pk: &str,
        prefix: &str,
        mut each: impl FnMut(&Item) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut start: Option<Item> = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_values(":pk", s(pk));
            request = if prefix.is_empty() {
                request.key_condition_expression("pk = :pk")
            } else {
                request
                    .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                    .expression_attribute_values(":prefix", s(prefix))
            };
            let page = request
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(aws)?;
            for item in page.items() {
                each(item)?;
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(()),
            }
        }
    }

    /// The records of the given hosts that exist (those sent their command), read
    /// consistently, with their versions.
    pub async fn load_targets(
        &self,
        id: &str,
        instance_ids: &[String],
    ) -> Result<BTreeMap<String, Versioned<TargetState>>, StoreError> {
        let mut found = BTreeMap::new();
        let unique: std::collections::BTreeSet<&String> = instance_ids.iter().collect();
        let unique: Vec<&String> = unique.into_iter().collect();
        for chunk in unique.chunks(100) {
            let mut keys: Vec<Item> = chunk
                .iter()
                .map(|instance| {
                    HashMap::from([
                        ("pk".to_owned(), s(keys::deployment(id))),
                        ("sk".to_owned(), s(keys::target(instance))),
                    ])
                })
                .collect();
            // BatchGetItem may return some keys unprocessed under load: ask again.
            while !keys.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys)))
                    .consistent_read(true)
                    .build()
                    .expect("keys are set");
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(aws)?;
                for item in output
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    let state: TargetState = decode(&item, "state", id)?;
                    let version = number(&item, "version").unwrap_or(1);
                    found.insert(
                        state.target.instance_id.clone(),
                        Versioned {
                            value: state,
                            version,
                        },
                    );
                }
                if let Some(left) = output
                    .unprocessed_keys
                    .and_then(|mut left| left.remove(&self.table))
                {
                    keys = left.keys;
                }
            }
        }
        Ok(found)
    }

    /// Creates the records of hosts being sent their command, a transaction per hundred.
    /// A record that exists already (this dispatch ran before and stopped part way) is
    /// kept as it is.
    pub async fn create_targets(
        &self,
        id: &str,
        records: Vec<TargetState>,
    ) -> Result<(), StoreError> {
        for chunk in records.chunks(TRANSACTION_TARGETS) {
            let items = chunk
                .iter()
                .map(|record| {
                    let put = self
                        .target_put(id, record, None)
                        .build()
                        .expect("put fields are set");
                    TransactWriteItem::builder().put(put).build()
                })
                .collect();
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            match result {
                Ok(_) => continue,
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_transaction_canceled_exception()) => {}
                Err(error) => return Err(aws(error)),
            }
            // Some exist already: create the others one by one.
            for record in chunk {
                let result = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(self.target_item(id, record, 1)))
                    .condition_expression("attribute_not_exists(pk)")
                    .send()
                    .await;
                match result {
                    Ok(_) => {}
                    Err(error) => match classify(error, String::new) {
                        StoreError::Conflict(_) => {}
                        other => return Err(other),
                    },
                }
            }
        }
        Ok(())
    }

    /// Replaces a host record still at `expected_version` (a conflict otherwise).
    pub async fn replace_target(
        &self,
        id: &str,
        record: &TargetState,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.target_item(id, record, expected_version + 1)))
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":expected", n(expected_version))
            .send()
            .await
            .map_err(|error| classify(error, || format!("host {}", record.target.instance_id)))?;
        Ok(())
    }

    /// A host record as stored. A deploying host is listed on the `due` index at its
    /// deadline.
    fn target_item(&self, id: &str, record: &TargetState, version: u64) -> Item {
        let mut item = HashMap::from([
            ("pk".to_owned(), s(keys::deployment(id))),
            ("sk".to_owned(), s(keys::target(&record.target.instance_id))),
            ("state".to_owned(), json(record)),
            ("status".to_owned(), json_name(&record.status)),
            ("version".to_owned(), n(version)),
        ]);
        if let Some(deadline) = record.deadline
            && record.status == TargetStatus::InProgress
        {
            item.insert("dueDeployment".to_owned(), s(id));
            item.insert("dueAt".to_owned(), n(deadline));
        }
        item
    }

    /// A host record's write: new (`expected_version` None) or replacing the version read.
    fn target_put(
        &self,
        id: &str,
        record: &TargetState,
        expected_version: Option<u64>,
    ) -> aws_sdk_dynamodb::types::builders::PutBuilder {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.target_item(
                id,
                record,
                expected_version.unwrap_or(0) + 1,
            )));
        match expected_version {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(version) => put
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", n(version)),
        }
    }

    /// Writes what one application of inputs changed, in one transaction: host records
    /// (each if still at the version read), when it changed the summary (if still at its
    /// version), and the change's effects as an outbox entry. Returns the summary's
    /// version after the write, and the outbox entry's key when there were effects.
    pub async fn save_changes(
        &self,
        record: &DeploymentRecord<impl Sized>,
        summary_changed: bool,
        effects: &[Effect],
        targets: &[(&TargetState, u64)],
        now: Millis,
    ) -> Result<(u64, Option<String>), StoreError> {
        let state = &record.state;
        let id = &state.deployment_id;
        let mut items: Vec<TransactWriteItem> = targets
            .iter()
            .map(|(target, version)| {
                let put = self
                    .target_put(id, target, Some(*version))
                    .build()
                    .expect("put fields are set");
                TransactWriteItem::builder().put(put).build()
            })
            .collect();
        let expected = record.version;
        let mut next = expected;
        let mut entry = None;
        if summary_changed {
            next = expected + 1;
            let mut set = vec!["#state = :state", "#status = :status", "#version = :next"];
            let mut update = Update::builder()
                .table_name(&self.table)
                .key("pk", s(keys::deployment(id)))
                .key("sk", s(keys::DEPLOYMENT_SK))
                .condition_expression("#version = :expected")
                .expression_attribute_names("#state", "state")
                .expression_attribute_names("#status", "status")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":state", json(state))
                .expression_attribute_values(":status", json_name(&state.status))
                .expression_attribute_values(":next", n(next))
                .expression_attribute_values(":expected", n(expected));
            if !effects.is_empty() {
                entry = Some(keys::summary_entry(next));
            }
            let pending = !record.outbox.is_empty() || !effects.is_empty();
            let expression =
                match wakeup(state, record.wakeup_at, pending, dispatches(effects), now) {
                    Some(at) => {
                        set.push("activeKey = :active");
                        set.push("wakeupAt = :wakeup");
                        update = update
                            .expression_attribute_values(":active", s("ACTIVE"))
                            .expression_attribute_values(":wakeup", n(at));
                        format!("SET {}", set.join(", "))
                    }
                    None => format!("SET {} REMOVE activeKey, wakeupAt", set.join(", ")),
                };
            let update = update
                .update_expression(expression)
                .build()
                .expect("update fields are set");
            items.push(TransactWriteItem::builder().update(update).build());
        } else if let (false, Some((host, version))) = (effects.is_empty(), targets.first()) {
            // Host records only (a host reaching a load balancer step, or back from one):
            // their effects are stored all the same. The tick finds them: a deploying
            // host keeps its deployment on the tick (see `wakeup`).
            entry = Some(keys::hosts_entry(
                expected,
                &host.target.instance_id,
                version + 1,
            ));
        }
        if let Some(key) = &entry {
            items.push(self.outbox_put(id, key, effects, now));
        }
        if items.is_empty() {
            return Ok((expected, None));
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok((next, entry)),
            Err(error) => match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                    let reasons: Vec<&str> = cancelled
                        .cancellation_reasons()
                        .iter()
                        .filter_map(|reason| reason.code())
                        .filter(|code| *code != "None")
                        .collect();
                    // Only a lost race is worth another try; anything else (an item
                    // too large, say) would fail the same way again.
                    let raced = reasons.iter().all(|code| {
                        matches!(*code, "ConditionalCheckFailed" | "TransactionConflict")
                    });
                    let message = format!(
                        "deployment {id} or one of its hosts changed since version {expected} ({})",
                        reasons.join(", ")
                    );
                    if raced {
                        Err(StoreError::Conflict(message))
                    } else {
                        Err(StoreError::Aws(message))
                    }
                }
                _ => Err(aws(error)),
            },
        }
    }

    /// Hosts of a deployment whose deadline is at or before `now` (by the `due` index,
    /// which lags writes a little: read the records before acting on them), at most `limit`.
    pub async fn overdue_targets(
        &self,
        id: &str,
        now: Millis,
        limit: i32,
    ) -> Result<Vec<String>, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .key_condition_expression("dueDeployment = :id AND dueAt <= :now")
            .expression_attribute_values(":id", s(id))
            .expression_attribute_values(":now", n(now))
            .limit(limit)
            .send()
            .await
            .map_err(aws)?;
        Ok(page
            .items()
            .iter()
            .filter_map(|item| text(item, "sk")?.strip_prefix(keys::TARGET_PREFIX))
            .map(str::to_owned)
            .collect())
    }

    /// The earliest deadline among a deployment's deploying hosts.
    pub async fn earliest_deadline(&self, id: &str) -> Result<Option<Millis>, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .key_condition_expression("dueDeployment = :id")
            .expression_attribute_values(":id", s(id))
            .limit(1)
            .send()
            .await
            .map_err(aws)?;
        Ok(page.items().first().and_then(|item| number(item, "dueAt")))
    }

    /// The instance ids of a deployment's hosts still deploying (on the `due` index).
    pub async fn deploying_hosts(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .key_condition_expression("dueDeployment = :id")
            .expression_attribute_values(":id", s(id));
        Ok(Self::query_all(request)
            .await?
            .iter()
            .filter_map(|item| {
                text(item, "sk")
                    .and_then(|sk| sk.strip_prefix(keys::TARGET_PREFIX))
                    .map(str::to_owned)
            })
            .collect())
    }

    /// Every item a query finds, page after page.
    async fn query_all(
        request: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = request
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(aws)?;
            items.extend(page.items().iter().cloned());
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    /// Rewrites an outbox entry that is still there: its writer is still at work (a long
    /// dispatch, whose entry's time moves on so that the tick leaves it alone for another
    /// grace period), or some of its effects failed and wait to be retried. An entry
    /// already done stays done.
    pub async fn rewrite_outbox(
        &self,
        id: &str,
        entry: &str,
        pending: &OutboxEntry,
    ) -> Result<(), StoreError> {
        let request = self.client.update_item().table_name(&self.table);
        let request = match entry.strip_prefix(keys::SUMMARY_MAP_ENTRY) {
            Some(version) => request
                .key("pk", s(keys::deployment(id)))
                .key("sk", s(keys::DEPLOYMENT_SK))
                .update_expression("SET outbox.#entry = :entry")
                .condition_expression("attribute_exists(outbox.#entry)")
                .expression_attribute_names("#entry", version),
            None => request
                .key("pk", s(keys::deployment(id)))
                .key("sk", s(keys::outbox(entry)))
                .update_expression("SET #entry = :entry")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_names("#entry", "entry"),
        };
        let result = request
            .expression_attribute_values(":entry", json(pending))
            .send()
            .await;
        done_unless_failed(result)
    }

    /// Marks an outbox entry done: its item goes. Done twice is done.
    pub async fn clear_outbox(&self, id: &str, entry: &str) -> Result<(), StoreError> {
        if let Some(version) = entry.strip_prefix(keys::SUMMARY_MAP_ENTRY) {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(keys::deployment(id)))
                .key("sk", s(keys::DEPLOYMENT_SK))
                .update_expression("REMOVE outbox.#entry")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_names("#entry", version)
                .send()
                .await
                .map_err(|error| classify(error, || format!("deployment {id} is gone")))?;
            return Ok(());
        }
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(keys::deployment(id)))
            .key("sk", s(keys::outbox(entry)))
            .send()
            .await
            .map_err(aws)?;
        Ok(())
    }

    /// An outbox entry's item, written only if new.
    fn outbox_put(
        &self,
        id: &str,
        entry: &str,
        effects: &[Effect],
        now: Millis,
    ) -> TransactWriteItem {
        let put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(keys::deployment(id)))
            .item("sk", s(keys::outbox(entry)))
            .item("entry", json(&OutboxEntry::new(effects.to_vec(), now)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .expect("put fields are set");
        TransactWriteItem::builder().put(put).build()
    }

    /// Adds to the count of reports dropped because their host did not send them: an
    /// item of its own beside the summary, so that a flood of forged reports never
    /// contends with the deployment's own writes.
    pub async fn count_forged_reports(&self, id: &str, count: u64) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::deployment(id)))
            .key("sk", s(keys::FORGED_REPORTS_SK))
            .update_expression("ADD forgedReports :count")
            .expression_attribute_values(":count", n(count))
            .send()
            .await
            .map_err(aws)?;
        Ok(())
    }

    /// Reports dropped because their host did not send them.
    pub async fn forged_reports(&self, id: &str) -> Result<u64, StoreError> {
        Ok(self
            .get_item(&keys::deployment(id), keys::FORGED_REPORTS_SK)
            .await?
            .and_then(|item| number(&item, "forgedReports"))
            .unwrap_or(0))
    }

    /// Records that one of a deployment's effects failed for good (a notification to a
    /// deleted topic), under `key`: the first time, the last, how often, and the last
    /// reason.
    pub async fn record_failed_effect(
        &self,
        id: &str,
        key: &str,
        effect: &str,
        reason: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::deployment(id)))
            .key("sk", s(format!("{}{key}", keys::FAILED_EFFECT_PREFIX)))
            .update_expression(
                "SET effect = :effect, reason = :reason, \
                 firstTime = if_not_exists(firstTime, :now), lastTime = :now \
                 ADD failures :one",
            )
            .expression_attribute_values(":effect", s(effect))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(aws)?;
        Ok(())
    }

    /// The deployment's effects that failed for good, oldest kind first.
    pub async fn failed_effects(&self, id: &str) -> Result<Vec<FailedEffect>, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(keys::deployment(id)))
            .expression_attribute_values(":prefix", s(keys::FAILED_EFFECT_PREFIX))
            .send()
            .await
            .map_err(aws)?;
        let mut failed: Vec<FailedEffect> = page
            .items()
            .iter()
            .map(|item| FailedEffect {
                effect: text(item, "effect").unwrap_or_default().to_owned(),
                reason: text(item, "reason").unwrap_or_default().to_owned(),
                first_time: number(item, "firstTime").unwrap_or(0),
                last_time: number(item, "lastTime").unwrap_or(0),
                failures: number(item, "failures").unwrap_or(0),
            })
            .collect();
        failed.sort_by_key(|effect| effect.first_time);
        Ok(failed)
    }

    /// Moves an active deployment's next tick to `until`, whatever else holds.
    pub async fn lease(&self, id: &str, until: Millis) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::deployment(id)))
            .key("sk", s(keys::DEPLOYMENT_SK))
            .update_expression("SET wakeupAt = :until")
            .condition_expression("attribute_exists(activeKey)")
            .expression_attribute_values(":until", n(until))
            .send()
            .await;
        // No longer active: nothing to hold.
        done_unless_failed(result)
    }

    /// Sets a deployment's next tick to `at`, or takes it off the active index (`None`),
    /// unless it was written since `version`: that write scheduled it.
    pub async fn reschedule(
        &self,
        id: &str,
        version: u64,
        at: Option<Millis>,
    ) -> Result<(), StoreError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::deployment(id)))
            .key("sk", s(keys::DEPLOYMENT_SK))
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":expected", n(version));
        request = match at {
            Some(at) => request
                .update_expression("SET activeKey = :active, wakeupAt = :wakeup")
                .expression_attribute_values(":active", s("ACTIVE"))
                .expression_attribute_values(":wakeup", n(at)),
            None => request.update_expression("REMOVE activeKey, wakeupAt"),
        };
        done_unless_failed(request.send().await)
    }

    /// Reserves the id of the rollback that will replace a deployment, apart from its
    /// `rollbackInfo`, so readers never see the id of a rollback not yet created. The
    /// first claim wins; returns the id that stands.
    pub async fn claim_rollback(&self, id: &str, rollback_id: &str) -> Result<String, StoreError> {
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::deployment(id)))
            .key("sk", s(keys::DEPLOYMENT_SK))
            .update_expression("SET rollbackClaim = if_not_exists(rollbackClaim, :id)")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":id", s(rollback_id))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(|error| match classify(error, String::new) {
                StoreError::Conflict(_) => StoreError::NotFound(format!("deployment {id}")),
                other => other,
            })?;
        output
            .attributes()
            .and_then(|item| text(item, "rollbackClaim"))
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Corrupt {
                what: format!("deployment {id}"),
                message: "rollbackClaim missing after claiming it".to_owned(),
            })
    }

    /// Links a deployment to the rollback that replaces it, once that exists (or says
    /// why there is none). The first link wins; returns whether this one did.
    pub async fn link_rollback(&self, id: &str, info: &RollbackInfo) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::deployment(id)))
            .key("sk", s(keys::DEPLOYMENT_SK))
            .update_expression("SET rollbackInfo = :info")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(rollbackInfo)")
            .expression_attribute_values(":info", json(info))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) => match classify(error, String::new) {
                StoreError::Conflict(_) => Ok(false),
                other => Err(other),
            },
        }
    }

    /// Ids of deployments whose next tick is due.
    pub async fn due_deployments(&self, now: Millis) -> Result<Vec<String>, StoreError> {
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(ACTIVE_INDEX)
            .key_condition_expression("activeKey = :active AND wakeupAt <= :now")
            .expression_attribute_values(":active", s("ACTIVE"))
            .expression_attribute_values(":now", n(now));
        Ok(Self::query_all(request)
            .await?
            .iter()
            .filter_map(deployment_id_of)
            .collect())
    }

    /// A group's deployments, newest first.
    /// A group's deployments created within `created` (inclusive), newest first, with
    /// their create times.
    pub async fn group_deployments(
        &self,
        application: &str,
        group: &str,
        created: std::ops::RangeInclusive<Millis>,
    ) -> Result<Vec<(String, Millis)>, StoreError> {
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_GROUP_INDEX)
            .key_condition_expression("groupKey = :group AND createTime BETWEEN :from AND :to")
            .expression_attribute_values(":group", s(keys::group_key(application, group)))
            .expression_attribute_values(":from", n(*created.start()))
            .expression_attribute_values(":to", n(*created.end()))
            .scan_index_forward(false);
        Ok(Self::query_all(request)
            .await?
            .iter()
            .filter_map(|item| Some((deployment_id_of(item)?, number(item, "createTime")?)))
            .collect())
    }
}

fn deployment_id_of(item: &Item) -> Option<String> {
    text(item, "pk")
        .and_then(|pk| pk.strip_prefix("DEPLOYMENT#"))
        .map(str::to_owned)
}
