//! The DynamoDB adapter: one table, string keys `pk` and `sk`, every write conditional.
//!
//! | entity | pk | sk | other attributes |
//! |---|---|---|---|
//! | application | `APPLICATION` | name | `body` (ApplicationInfo JSON), `version` |
//! | deployment group | `GROUP#<application>` | name | `body` (settings), `version`, `activeDeploymentId` (the lock), `health` (map instance → JSON), `lastSuccessful`, `lastAttempted`, `targetRevision` |
//! | deployment config | `CONFIG` | name | `body`, `version` |
//! | revision | `REVISION#<application>` | revision key | `body` (RevisionRecord) |
//! | on-premises instance | `INSTANCE` | name | `body`, `version` |
//! | deployment | `DEPLOYMENT#<id>` | `STATE` | `spec` (immutable), `state` (the state machine's), `status`, `version`, `outbox`, `rollbackClaim` (the rollback's id, reserved before it is created), `rollbackInfo`, `groupKey` + `createTime` (index `by-group`), `activeKey` + `wakeupAt` (index `active`) |
//!
//! Access patterns: get/put by key; list a partition (applications, configs, instances,
//! a group's revisions, an application's groups) with Query; a group's deployments,
//! newest first, on `by-group`; deployments needing a tick (`wakeupAt <= now`) on the
//! sparse index `active`, which only holds deployments that may still change.
//!
//! A lost race comes back as [`StoreError::Conflict`], never as a silent overwrite.
//! The deployment's `outbox` holds the effects of each state write, keyed by the version
//! that wrote them, in the same conditional write: effects survive a crash between the
//! write and their execution, and the tick executes entries left over.
//!
//! The deployment's targets live inside its `state` item: about 1.2 KB per host, plus a
//! failure's diagnostics (bounded by gantry-core: a message of 512 bytes, a log tail
//! sharing 48 KB across hosts), so a deployment holds at most
//! `gantry_core::deployment::MAX_TARGETS` (150) hosts and create-deployment refuses more
//! with a clear error. Splitting targets into their own items is the known next step for
//! larger fleets.

use crate::model::{LastDeploymentInfo, RollbackInfo};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, Put, ScalarAttributeType, TransactWriteItem, Update,
};
use gantry_core::deployment::{Deployment, Effect, Millis};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};

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
const IDLE_TICK_MS: Millis = 60_000;

const ACTIVE_INDEX: &str = "active";
const BY_GROUP_INDEX: &str = "by-group";

pub mod keys {
    pub const APPLICATIONS: &str = "APPLICATION";
    pub const CONFIGS: &str = "CONFIG";
    pub const INSTANCES: &str = "INSTANCE";

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

fn aws<E>(error: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    StoreError::Aws(DisplayErrorContext(error).to_string())
}

/// Maps an SDK error to a domain error: a failed condition is a conflict, not a string.
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
    /// Per instance: its health after the group's last deployment to it.
    pub health: BTreeMap<String, InstanceHealth>,
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
    /// Effects written with each version and not yet confirmed done.
    pub outbox: BTreeMap<u64, OutboxEntry>,
    pub rollback_info: RollbackInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct OutboxEntry {
    pub effects: Vec<Effect>,
    /// When the entry was written.
    pub at: Millis,
}

/// When the tick must next look at a deployment, or None when it never needs to.
fn wakeup(state: &Deployment, outbox_pending: bool, now: Millis) -> Option<Millis> {
    let outbox = outbox_pending.then_some(now + OUTBOX_GRACE_MS);
    let due = state.next_wakeup().into_iter().chain(outbox).min();
    match due {
        Some(at) => Some(at),
        None if state.status.is_terminal() => None,
        None => Some(now + IDLE_TICK_MS),
    }
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
            .global_secondary_indexes(index(BY_GROUP_INDEX, "groupKey", "createTime"))
            .global_secondary_indexes(index(ACTIVE_INDEX, "activeKey", "wakeupAt"))
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
            .item("body", json(value))
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

    /// Stores an entity whether or not it exists (a revision registered again).
    pub async fn put<T: Serialize>(&self, pk: &str, sk: &str, value: &T) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s(sk))
            .item("body", json(value))
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
            .expression_attribute_values(":body", json(value))
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
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(aws)?;
            for item in page.items() {
                let what = text(item, "sk").unwrap_or(pk).to_owned();
                values.push(decode(item, "body", &what)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(values),
            }
        }
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

    // ---- deployment groups ----

    pub async fn create_group<T: Serialize>(
        &self,
        application: &str,
        name: &str,
        settings: &T,
    ) -> Result<(), StoreError> {
        self.put_new(
            &keys::groups(application),
            name,
            settings,
            &[("health", AttributeValue::M(HashMap::new()))],
        )
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
        let mut health = BTreeMap::new();
        if let Some(AttributeValue::M(map)) = item.get("health") {
            for (instance, value) in map {
                if let Ok(raw) = value.as_s()
                    && let Ok(parsed) = serde_json::from_str(raw)
                {
                    health.insert(instance.clone(), parsed);
                }
            }
        }
        Ok(Some(GroupRecord {
            settings: Versioned {
                value: decode(&item, "body", &what)?,
                version: number(&item, "version").unwrap_or(1),
            },
            active_deployment_id: text(&item, "activeDeploymentId").map(str::to_owned),
            health,
            last_successful: decode_optional(&item, "lastSuccessful", &what)?,
            last_attempted: decode_optional(&item, "lastAttempted", &what)?,
            target_revision: decode_optional(&item, "targetRevision", &what)?,
        }))
    }

    /// Records one instance's health in its group. Each instance has its own map entry,
    /// so concurrent writers for different instances never clobber each other.
    pub async fn record_health(
        &self,
        application: &str,
        group: &str,
        instance_id: &str,
        health: &InstanceHealth,
    ) -> Result<(), StoreError> {
        self.set_group_attributes(
            application,
            group,
            "SET health.#instance = :health",
            &[("#instance", instance_id)],
            vec![(":health", json(health))],
        )
        .await
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

    /// Stores a new deployment and takes its group's lock in one transaction: either
    /// both happen or neither. A group already locked by another deployment is a
    /// conflict. `effects` go to the outbox with version 1.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_deployment<S: Serialize>(
        &self,
        application: &str,
        group: &str,
        spec: &S,
        state: &Deployment,
        effects: &[Effect],
        take_lock: bool,
        now: Millis,
    ) -> Result<(), StoreError> {
        let id = &state.deployment_id;
        let mut outbox = HashMap::new();
        if !effects.is_empty() {
            outbox.insert(
                "1".to_owned(),
                json(&OutboxEntry {
                    effects: effects.to_vec(),
                    at: now,
                }),
            );
        }
        let mut put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(keys::deployment(id)))
            .item("sk", s(keys::DEPLOYMENT_SK))
            .item("spec", json(spec))
            .item("state", json(state))
            .item("status", s(format!("{:?}", state.status)))
            .item("version", n(1))
            .item("outbox", AttributeValue::M(outbox))
            .item("groupKey", s(keys::group_key(application, group)))
            .item("createTime", n(state.create_time))
            .condition_expression("attribute_not_exists(pk)");
        if let Some(at) = wakeup(state, !effects.is_empty(), now) {
            put = put.item("activeKey", s("ACTIVE")).item("wakeupAt", n(at));
        }
        let mut request = self.client.transact_write_items().transact_items(
            TransactWriteItem::builder()
                .put(put.build().expect("put fields are set"))
                .build(),
        );
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
            request = request.transact_items(TransactWriteItem::builder().update(lock).build());
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(error) => {
                let cancelled = error
                    .as_service_error()
                    .is_some_and(|e| e.is_transaction_canceled_exception());
                if cancelled {
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
        let item = self
            .get_item(&keys::deployment(id), keys::DEPLOYMENT_SK)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("deployment {id}")))?;
        let what = format!("deployment {id}");
        let mut outbox = BTreeMap::new();
        if let Some(AttributeValue::M(map)) = item.get("outbox") {
            for (key, value) in map {
                let entry = value
                    .as_s()
                    .ok()
                    .and_then(|raw| serde_json::from_str(raw).ok());
                match (key.parse::<u64>(), entry) {
                    (Ok(version), Some(entry)) => {
                        outbox.insert(version, entry);
                    }
                    _ => {
                        return Err(StoreError::Corrupt {
                            what,
                            message: format!("outbox entry {key}"),
                        });
                    }
                }
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
        })
    }

    /// Writes a deployment's new state if it is still at `expected_version`, with the
    /// effects of the change in the outbox under the new version. Returns that version.
    pub async fn save_deployment(
        &self,
        state: &Deployment,
        expected_version: u64,
        effects: &[Effect],
        outbox_pending: bool,
        now: Millis,
    ) -> Result<u64, StoreError> {
        let next = expected_version + 1;
        let mut set = vec!["#state = :state", "#status = :status", "#version = :next"];
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::deployment(&state.deployment_id)))
            .key("sk", s(keys::DEPLOYMENT_SK))
            .condition_expression("#version = :expected")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":state", json(state))
            .expression_attribute_values(":status", s(format!("{:?}", state.status)))
            .expression_attribute_values(":next", n(next))
            .expression_attribute_values(":expected", n(expected_version));
        if !effects.is_empty() {
            set.push("outbox.#entry = :entry");
            request = request
                .expression_attribute_names("#entry", next.to_string())
                .expression_attribute_values(
                    ":entry",
                    json(&OutboxEntry {
                        effects: effects.to_vec(),
                        at: now,
                    }),
                );
        }
        let expression = match wakeup(state, outbox_pending || !effects.is_empty(), now) {
            Some(at) => {
                set.push("activeKey = :active");
                set.push("wakeupAt = :wakeup");
                request = request
                    .expression_attribute_values(":active", s("ACTIVE"))
                    .expression_attribute_values(":wakeup", n(at));
                format!("SET {}", set.join(", "))
            }
            None => format!("SET {} REMOVE activeKey, wakeupAt", set.join(", ")),
        };
        request
            .update_expression(expression)
            .send()
            .await
            .map_err(|error| {
                classify(error, || {
                    format!(
                        "deployment {} changed since version {expected_version}",
                        state.deployment_id
                    )
                })
            })?;
        Ok(next)
    }

    /// Marks an outbox entry done. Removing it twice is harmless.
    pub async fn clear_outbox(&self, id: &str, entry: u64) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::deployment(id)))
            .key("sk", s(keys::DEPLOYMENT_SK))
            .update_expression("REMOVE outbox.#entry")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#entry", entry.to_string())
            .send()
            .await
            .map_err(|error| classify(error, || format!("deployment {id} is gone")))?;
        Ok(())
    }

    /// Moves a deployment's next tick (after a tick that changed nothing), or takes it
    /// off the active index when nothing can change any more.
    pub async fn reschedule(
        &self,
        state: &Deployment,
        version: u64,
        outbox_pending: bool,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::deployment(&state.deployment_id)))
            .key("sk", s(keys::DEPLOYMENT_SK))
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":expected", n(version));
        request = match wakeup(state, outbox_pending, now) {
            Some(at) => request
                .update_expression("SET wakeupAt = :wakeup")
                .expression_attribute_values(":wakeup", n(at)),
            None => request.update_expression("REMOVE activeKey, wakeupAt"),
        };
        match request.send().await {
            Ok(_) => Ok(()),
            // Someone wrote in between; their write scheduled it.
            Err(error) => match classify(error, String::new) {
                StoreError::Conflict(_) => Ok(()),
                other => Err(other),
            },
        }
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
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
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
        let mut ids = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(ACTIVE_INDEX)
                .key_condition_expression("activeKey = :active AND wakeupAt <= :now")
                .expression_attribute_values(":active", s("ACTIVE"))
                .expression_attribute_values(":now", n(now))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(aws)?;
            ids.extend(page.items().iter().filter_map(deployment_id_of));
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(ids),
            }
        }
    }

    /// A group's deployments, newest first.
    pub async fn group_deployments(
        &self,
        application: &str,
        group: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(BY_GROUP_INDEX)
                .key_condition_expression("groupKey = :group")
                .expression_attribute_values(":group", s(keys::group_key(application, group)))
                .scan_index_forward(false)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(aws)?;
            ids.extend(page.items().iter().filter_map(deployment_id_of));
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(ids),
            }
        }
    }
}

fn deployment_id_of(item: &Item) -> Option<String> {
    text(item, "pk")
        .and_then(|pk| pk.strip_prefix("DEPLOYMENT#"))
        .map(str::to_owned)
}

/// What one successful application of inputs did.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied<S> {
    /// The effects of the write that won, and no other; empty when nothing changed.
    pub effects: Vec<Effect>,
    pub record: DeploymentRecord<S>,
    /// The outbox entry holding `effects`, to clear once they are carried out.
    pub outbox_entry: Option<u64>,
}

/// Applies inputs to a stored deployment with optimistic concurrency: load, apply, and
/// write back only if the state changed, on the condition that nobody wrote in between;
/// on a conflict, start over from the fresh state. Concurrent invocations with the same
/// report therefore count it once, and a batch is dispatched once. An input the state
/// machine refuses is skipped and returned, so one bad report does not block the rest.
pub async fn apply<S: DeserializeOwned>(
    store: &DynamoStore,
    deployment_id: &str,
    inputs: &[gantry_core::deployment::Input],
    now: Millis,
    max_attempts: u32,
) -> Result<
    (
        Applied<S>,
        Vec<(usize, gantry_core::deployment::ApplyError)>,
    ),
    StoreError,
> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut record: DeploymentRecord<S> = store.load_deployment(deployment_id).await?;
        let before = record.state.clone();
        let mut effects = Vec::new();
        let mut refused = Vec::new();
        for (index, input) in inputs.iter().enumerate() {
            match record.state.apply(input.clone()) {
                Ok(more) => effects.extend(more),
                Err(error) => refused.push((index, error)),
            }
        }
        if record.state == before {
            return Ok((
                Applied {
                    effects: Vec::new(),
                    record,
                    outbox_entry: None,
                },
                refused,
            ));
        }
        let pending = !record.outbox.is_empty();
        match store
            .save_deployment(&record.state, record.version, &effects, pending, now)
            .await
        {
            Ok(version) => {
                record.version = version;
                let outbox_entry = (!effects.is_empty()).then_some(version);
                if let Some(entry) = outbox_entry {
                    record.outbox.insert(
                        entry,
                        OutboxEntry {
                            effects: effects.clone(),
                            at: now,
                        },
                    );
                }
                return Ok((
                    Applied {
                        effects,
                        record,
                        outbox_entry,
                    },
                    refused,
                ));
            }
            Err(StoreError::Conflict(message)) if attempt < max_attempts => {
                tracing::debug!(%deployment_id, attempt, %message, "lost a write race; retrying");
            }
            Err(error) => return Err(error),
        }
    }
}
