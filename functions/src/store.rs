//! The DynamoDB adapter: one table, string keys `pk` and `sk`, every write conditional.
//!
//! | entity | pk | sk | other attributes |
//! |---|---|---|---|
//! | application | `APPLICATION` | name | `body` (ApplicationInfo JSON), `version`, `tags` + `tagsVersion`; while renamed, `renamingTo` (on the old name's) or `renamedFrom` (on the new name's) |
//! | deployment group | `GROUP#<application>` | name | `body` (settings), `version`, `activeDeploymentId` (the lock), `lastSuccessful`, `lastAttempted`, `targetRevision`, `tags` + `tagsVersion`; `renamedFrom` while its application's rename brings its health and history after it |
//! | instance health in a group | `HEALTH#<application>#<group>` | instance id | `body` (InstanceHealth) |
//! | deployment config | `CONFIG` | name | `body`, `version` |
//! | revision | `REVISION#<application>` | revision key | `body` (RevisionRecord), `firstUsedTime` + `lastUsedTime` (epoch ms, set by the deployments that use it) |
//! | on-premises instance | `INSTANCE` | name | `body`, `version` |
//! | an identity's instance | `CLAIM` | `SENDER#<SenderId>` | `owner` (`INSTANCE/<name>`) |
//! | deployment (summary) | `DEPLOYMENT#<id>` | `STATE` | `spec` (immutable), `state` (the state machine's summary), `status`, `version`, `rollbackClaim` (the rollback's id, reserved before it is created), `rollbackInfo`, `groupKey` + `createTime` (index `by-group`), `activeKey` + `wakeupAt` (index `active`) |
//! | a Lambda deployment (summary) | `DEPLOYMENT#<id>` | `STATE` | as a deployment's, with `platform` `Lambda` and the Lambda state machine as `state`; `activeKey` `LAMBDA` while the tick must look (module `lambda`) |
//! | an alias a Lambda deployment moves | `ALIAS#<function:alias>` | `LOCK` | `deploymentId`: taken with the deployment, freed when it finishes; no two deployments move one alias |
//! | hosts' ends not yet in the summary (tallies) | `DEPLOYMENT#<id>` | `STATE#COUNT#<shard:02>` | `succeeded`, `failed`, `skipped`, `installed`: numbers only ever added to, by the write that ends a host; the summary's `state` plus every shard is the deployment (see `gantry_core::deployment::Finished`); 32 shards, so that concurrent reports rarely touch one item |
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
//! One module per kind of item: `groups`, `deployments` (the summary, its plan and every
//! change the state machine makes), `targets` (hosts), `outbox`, `schedule` (when the
//! tick looks), `revisions` (registered revisions and their use), `items` (the entities written whole by key), `codec` (attribute values
//! and errors). Renaming an application moves every item its name keys (`rename`).
//!
//! Nothing grows with the fleet in one item: a host's report writes its own record, and
//! the summary only when a host finishes (with the reports of one batch in one
//! transaction). The plan pages are written with the summary and the group's lock in one
//! transaction, which bounds a deployment at 97 pages; gantry-core's `MAX_TARGETS`
//! (10,000, 20 pages) is well inside.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType,
};
use gantry_core::planner::Target;
use std::collections::HashMap;
use std::sync::Arc;

mod codec;
mod deployments;
mod groups;
mod items;
mod lambda;
mod outbox;
mod rename;
mod revisions;
mod schedule;
mod targets;

use codec::aws;
pub use codec::{MAX_BODY_BYTES, MAX_SPEC_BYTES};
pub use deployments::{DECISION_CLAIM_EXPIRES_MS, DeploymentRecord};
pub use groups::{GroupRecord, InstanceHealth};
pub use lambda::{LAMBDA_PLATFORM, LambdaOutboxEntry, LambdaRecord};
pub(crate) use outbox::dispatches;
#[cfg(test)]
pub(crate) use outbox::wakeup;
pub use outbox::{FailedEffect, MAX_RETRY_DELAY_MS, OutboxEntry};
pub use rename::{GroupMove, RenameMarks};
pub use revisions::StoredRevision;
pub use schedule::{ALARM_LOOK_MS, IDLE_TICK_MS, OUTBOX_GRACE_MS, idle_look};

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
    /// A deployment's tallies of hosts' ends: between its summary and its outbox, so
    /// the one query that reads both reads them too.
    pub const TALLY_PREFIX: &str = "STATE#COUNT#";
    /// How many tally items a deployment's finishes are spread over.
    pub const TALLY_SHARDS: u32 = 32;

    pub fn tally(shard: u32) -> String {
        format!("{TALLY_PREFIX}{shard:02}")
    }
    /// The count of a deployment's reports sent by someone other than their host.
    pub const FORGED_REPORTS_SK: &str = "FORGED_REPORTS";
    /// Which invocation decides on a summary version when several recount it at once
    /// (outside the `STATE` range, so the query that loads a deployment skips it).
    pub const DECISION_CLAIM_SK: &str = "DECISION_CLAIM";
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
    /// Plan pages this process wrote or read. A page is written once, with its
    /// deployment, and never changed, so a warm container dispatching a OneAtATime
    /// deployment's hosts one after another reads each page once, not once a host.
    plan_pages: std::sync::Mutex<PlanPages>,
}

/// Plan pages kept per process, by deployment id and page number: at most
/// [`PLAN_PAGES_KEPT`], the least recently used dropped first.
#[derive(Default)]
struct PlanPages(std::collections::VecDeque<(PlanPageKey, Arc<Vec<Target>>)>);

type PlanPageKey = (String, usize);

/// About 100 KB a page of 500 hosts: a few deployments' pages in a megabyte or two.
const PLAN_PAGES_KEPT: usize = 16;
/// Of a plan just written, the pages kept: the first dispatches', not a large plan's
/// last ones in the place of its first.
const PLAN_PAGES_KEPT_ON_WRITE: usize = 4;

impl PlanPages {
    /// The page, if kept; it becomes the last to be dropped.
    fn get(&mut self, id: &str, page: usize) -> Option<Arc<Vec<Target>>> {
        let at = self
            .0
            .iter()
            .position(|((kept, number), _)| kept == id && *number == page)?;
        let entry = self.0.remove(at).expect("found above");
        let targets = entry.1.clone();
        self.0.push_back(entry);
        Some(targets)
    }

    fn keep(&mut self, id: &str, page: usize, targets: Arc<Vec<Target>>) {
        if self.get(id, page).is_some() {
            return;
        }
        if self.0.len() == PLAN_PAGES_KEPT {
            self.0.pop_front();
        }
        self.0.push_back(((id.to_owned(), page), targets));
    }
}

type Item = HashMap<String, AttributeValue>;

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            plan_pages: Default::default(),
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
}
