//! Lambda deployments (the Lambda compute platform): a summary item as an EC2
//! deployment's (`DEPLOYMENT#<id>` / `STATE` with `spec`, `state`, `status`, `version`,
//! `groupKey` + `createTime`, the group's lock taken with it, outbox entries after it),
//! with `platform` "Lambda", the [`LambdaDeployment`] as its `state`, and its own value of
//! the `active` index's key, so that the EC2 tick's query never meets one and
//! [`DynamoStore::due_lambda_deployments`] finds them.

use super::codec::{aws, bounded, decode, json, json_name, n, number, s, text};
use super::{ACTIVE_INDEX, DynamoStore, MAX_SPEC_BYTES, OUTBOX_GRACE_MS, StoreError, keys};
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use gantry_core::deployment::Millis;
use gantry_core::lambda::{Effect, LambdaDeployment};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `platform` of a Lambda deployment's summary.
pub const LAMBDA_PLATFORM: &str = "Lambda";
/// The `active` index's key of Lambda deployments the tick must look at.
const LAMBDA_ACTIVE: &str = "LAMBDA";

/// An alias moved by a deployment is held by it, whichever group it came from: two
/// deployments never move one alias at once. Item `ALIAS#<function:alias>` / `LOCK`
/// with `deploymentId`.
fn alias_lock_key(target_id: &str) -> String {
    format!("ALIAS#{target_id}")
}
const ALIAS_LOCK_SK: &str = "LOCK";

/// Effects a write made and not yet confirmed done, as for EC2 deployments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaOutboxEntry {
    pub effects: Vec<Effect>,
    pub at: Millis,
    #[serde(default)]
    pub attempts: u32,
}

impl LambdaOutboxEntry {
    /// When the tick runs it: after its writer's grace, then after a delay that doubles
    /// with each failure, as EC2 entries (see `OutboxEntry::due`).
    pub fn due(&self) -> Millis {
        super::OutboxEntry {
            effects: Vec::new(),
            at: self.at,
            attempts: self.attempts,
        }
        .due()
    }
}

/// One stored Lambda deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaRecord<S> {
    pub spec: S,
    pub state: LambdaDeployment,
    pub version: u64,
    pub outbox: BTreeMap<String, LambdaOutboxEntry>,
}

/// When the tick must look next: the machine's own wakeup, a new outbox entry's grace,
/// or `also_by` (the earliest entry left from before, an alarm poll), whichever is first.
fn wakeup(
    state: &LambdaDeployment,
    has_effects: bool,
    pending: Option<Millis>,
    now: Millis,
) -> Option<Millis> {
    let grace = has_effects.then_some(now + OUTBOX_GRACE_MS);
    [state.next_wakeup(), grace, pending]
        .into_iter()
        .flatten()
        .min()
}

impl DynamoStore {
    /// Stores a new Lambda deployment with its first effects and takes its group's lock,
    /// in one transaction (`also_by`: as for [`Self::save_lambda_step`]). A group locked
    /// by another deployment is a conflict.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_lambda_deployment<S: Serialize>(
        &self,
        application: &str,
        group: &str,
        spec: &S,
        state: &LambdaDeployment,
        effects: &[Effect],
        also_by: Option<Millis>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let id = &state.deployment_id;
        let mut put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(keys::deployment(id)))
            .item("sk", s(keys::DEPLOYMENT_SK))
            .item("platform", s(LAMBDA_PLATFORM))
            .item("spec", bounded(spec, "the deployment", MAX_SPEC_BYTES)?)
            .item("state", json(state))
            .item("status", json_name(&state.status()))
            .item("version", n(1))
            .item("groupKey", s(keys::group_key(application, group)))
            .item("createTime", n(state.create_time))
            .condition_expression("attribute_not_exists(pk)");
        if let Some(at) = wakeup(state, !effects.is_empty(), also_by, now) {
            put = put
                .item("activeKey", s(LAMBDA_ACTIVE))
                .item("wakeupAt", n(at));
        }
        let mut items = vec![
            TransactWriteItem::builder()
                .put(put.build().expect("put fields are set"))
                .build(),
        ];
        if !effects.is_empty() {
            items.push(self.lambda_outbox_put(id, &keys::summary_entry(1), effects, now));
        }
        items.push(self.group_lock(application, group, id));
        let alias = state.alias.target_id();
        items.push(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .item("pk", s(alias_lock_key(&alias)))
                        .item("sk", s(ALIAS_LOCK_SK))
                        .item("deploymentId", s(id))
                        .condition_expression("attribute_not_exists(pk)")
                        .build()
                        .expect("put fields are set"),
                )
                .build(),
        );
        self.transact(items, || {
            format!("deployment group {group} already has an active deployment, alias {alias} is being moved by another deployment, or deployment {id} exists")
        })
        .await
    }

    /// Frees the alias `target_id` (`function:alias`) that deployment `id` moved, if it
    /// still holds it. Whether it did.
    pub async fn unlock_alias(&self, target_id: &str, id: &str) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(alias_lock_key(target_id)))
            .key("sk", s(ALIAS_LOCK_SK))
            .condition_expression("deploymentId = :deployment")
            .expression_attribute_values(":deployment", s(id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) => match super::codec::classify(error, String::new) {
                StoreError::Conflict(_) => Ok(false),
                other => Err(other),
            },
        }
    }

    /// Stores the state a step made, if the deployment is still at `version`, with the
    /// step's effects as an outbox entry, in one transaction. `also_by`: the tick must look
    /// by then too (the earliest entry already in the outbox, the next alarm poll). Returns
    /// the new version; a conflict means another writer got there first (load and apply
    /// again).
    pub async fn save_lambda_step(
        &self,
        state: &LambdaDeployment,
        version: u64,
        effects: &[Effect],
        also_by: Option<Millis>,
        now: Millis,
    ) -> Result<u64, StoreError> {
        let id = &state.deployment_id;
        let next = version + 1;
        let update = self.summary_update(
            id,
            version,
            json(state),
            json_name(&state.status()),
            LAMBDA_ACTIVE,
            wakeup(state, !effects.is_empty(), also_by, now),
        );
        let mut items = vec![TransactWriteItem::builder().update(update).build()];
        if !effects.is_empty() {
            items.push(self.lambda_outbox_put(id, &keys::summary_entry(next), effects, now));
        }
        self.transact(items, || format!("deployment {id} changed meanwhile"))
            .await?;
        Ok(next)
    }

    /// A Lambda deployment with its outbox. NotFound if there is none; Corrupt if the
    /// deployment is not a Lambda one.
    pub async fn load_lambda_deployment<S: DeserializeOwned>(
        &self,
        id: &str,
    ) -> Result<LambdaRecord<S>, StoreError> {
        let what = format!("deployment {id}");
        let (item, _, outbox) = self.summary_and_outbox::<LambdaOutboxEntry>(id).await?;
        if text(&item, "platform") != Some(LAMBDA_PLATFORM) {
            return Err(StoreError::Corrupt {
                what,
                message: "not a Lambda deployment".into(),
            });
        }
        Ok(LambdaRecord {
            spec: decode(&item, "spec", &what)?,
            state: decode(&item, "state", &what)?,
            version: number(&item, "version").ok_or_else(|| StoreError::Corrupt {
                what: what.clone(),
                message: "no version".into(),
            })?,
            outbox,
        })
    }

    /// Keeps only the effects of an entry that failed for now, for the tick to retry.
    pub async fn rewrite_lambda_outbox(
        &self,
        id: &str,
        entry: &str,
        pending: &LambdaOutboxEntry,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(keys::deployment(id)))
            .item("sk", s(keys::outbox(entry)))
            .item("entry", json(pending))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await
            .map_err(|error| {
                super::codec::classify(error, || format!("{id}'s outbox entry {entry} is gone"))
            })?;
        Ok(())
    }

    /// Whether the deployment `id` is a Lambda one (None: there is no such deployment).
    pub async fn is_lambda_deployment(&self, id: &str) -> Result<Option<bool>, StoreError> {
        Ok(self
            .get_item(&keys::deployment(id), keys::DEPLOYMENT_SK)
            .await?
            .map(|item| text(&item, "platform") == Some(LAMBDA_PLATFORM)))
    }

    /// Ids of Lambda deployments whose next look is due.
    pub async fn due_lambda_deployments(&self, now: Millis) -> Result<Vec<String>, StoreError> {
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(ACTIVE_INDEX)
            .key_condition_expression("activeKey = :active AND wakeupAt <= :now")
            .expression_attribute_values(":active", s(LAMBDA_ACTIVE))
            .expression_attribute_values(":now", n(now));
        Ok(Self::query_all(request)
            .await?
            .iter()
            .filter_map(super::codec::deployment_id_of)
            .collect())
    }

    fn lambda_outbox_put(
        &self,
        id: &str,
        entry: &str,
        effects: &[Effect],
        now: Millis,
    ) -> TransactWriteItem {
        let pending = LambdaOutboxEntry {
            effects: effects.to_vec(),
            at: now,
            attempts: 0,
        };
        self.outbox_item(id, entry, &pending)
    }

    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
        conflict: impl FnOnce() -> String,
    ) -> Result<(), StoreError> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_transaction_canceled_exception()) =>
            {
                Err(StoreError::Conflict(conflict()))
            }
            Err(error) => Err(aws(error)),
        }
    }
}
