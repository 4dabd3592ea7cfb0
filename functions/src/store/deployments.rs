//! Deployments: the summary, its plan pages, the rollback it claims, and every
//! change the state machine makes in one transaction (`save_changes`).

use super::codec::{
    MAX_SPEC_BYTES, aws, bounded, classify, decode, decode_optional, json, json_name, n, number, s,
    text,
};
use super::outbox::{OutboxEntry, dispatches, wakeup};
use super::{DynamoStore, Item, PLAN_PAGE_SIZE, PLAN_PAGES_KEPT_ON_WRITE, StoreError, keys};
use crate::model::RollbackInfo;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use gantry_core::deployment::{Deployment, Effect, Finished, Millis, TargetState};
use gantry_core::planner::Target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// One stored deployment: what it is, how it goes, and effects not yet carried out.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentRecord<S> {
    pub spec: S,
    /// The deployment as it stands: the stored summary with its tallies added.
    pub state: Deployment,
    pub version: u64,
    /// The hosts' ends read from the tallies, already added to `state`.
    pub tallied: Finished,
    /// Effects written with each write and not yet confirmed done, by entry key (see
    /// [`keys::summary_entry`]), in the order they were written.
    pub outbox: BTreeMap<String, OutboxEntry>,
    pub rollback_info: RollbackInfo,
    /// The updates of instances that launched while it ran (`relatedDeployments`).
    pub outdated_updates: Vec<String>,
    /// When the tick is next due to look at it, as stored.
    pub wakeup_at: Option<Millis>,
}

/// The `active` index's key of EC2/On-premises deployments the tick must look at.
const ACTIVE_KEY: &str = "ACTIVE";

/// How long a decision claim holds: longer than any function that decides may run, so
/// that a claimant that died gives way to the next (a redelivered report, the tick).
pub const DECISION_CLAIM_EXPIRES_MS: Millis = 60_000;

impl DynamoStore {
    /// A deployment summary's step, of either platform, as one conditional update: its
    /// `state` and `status` at version `expected + 1` if it is still at `expected`, on the
    /// `active` index under `active_key` until `wakeup`, or off it when nothing is due.
    pub(super) fn summary_update(
        &self,
        id: &str,
        expected: u64,
        state: AttributeValue,
        status: AttributeValue,
        active_key: &str,
        wakeup: Option<Millis>,
    ) -> Update {
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(keys::deployment(id)))
            .key("sk", s(keys::DEPLOYMENT_SK))
            .condition_expression("#version = :expected")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":state", state)
            .expression_attribute_values(":status", status)
            .expression_attribute_values(":next", n(expected + 1))
            .expression_attribute_values(":expected", n(expected));
        let update = match wakeup {
            Some(at) => update
                .update_expression(
                    "SET #state = :state, #status = :status, #version = :next, activeKey = :active, wakeupAt = :wakeup",
                )
                .expression_attribute_values(":active", s(active_key))
                .expression_attribute_values(":wakeup", n(at)),
            None => update.update_expression(
                "SET #state = :state, #status = :status, #version = :next REMOVE activeKey, wakeupAt",
            ),
        };
        update.build().expect("update fields are set")
    }
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
            put = put.item("activeKey", s(ACTIVE_KEY)).item("wakeupAt", n(at));
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
            items.push(self.group_lock(application, group, id));
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => {
                let mut kept = self.plan_pages.lock().expect("plan pages");
                let first_pages = ordered
                    .chunks(PLAN_PAGE_SIZE)
                    .enumerate()
                    .take(PLAN_PAGES_KEPT_ON_WRITE);
                for (page, targets) in first_pages {
                    kept.keep(id, page, std::sync::Arc::new(targets.to_vec()));
                }
                Ok(version)
            }
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

    /// A deployment's summary item, its tallies and its outbox entries (of either
    /// platform's effects), in one query: they sort right after it.
    pub(super) async fn summary_and_outbox<E: DeserializeOwned>(
        &self,
        id: &str,
    ) -> Result<(Item, Finished, BTreeMap<String, E>), StoreError> {
        let what = format!("deployment {id}");
        let mut summary = None;
        let mut tallied = Finished::default();
        let mut outbox = BTreeMap::new();
        self.query_pages(&keys::deployment(id), keys::DEPLOYMENT_SK, |item| {
            let sk = text(item, "sk").unwrap_or_default();
            if sk == keys::DEPLOYMENT_SK {
                summary = Some(item.clone());
            } else if sk.starts_with(keys::TALLY_PREFIX) {
                tallied = tallied + tally(item);
            } else if let Some(entry) = sk.strip_prefix(keys::OUTBOX_PREFIX) {
                outbox.insert(
                    entry.to_owned(),
                    decode(item, "entry", &format!("{what}'s outbox entry {entry}"))?,
                );
            }
            Ok(())
        })
        .await?;
        let item = summary.ok_or(StoreError::NotFound(what))?;
        Ok((item, tallied, outbox))
    }

    /// Adds hosts' ends to one of a deployment's tallies, picked at random so that
    /// concurrent writers seldom meet on one item. An `ADD` needs no condition: the
    /// host records written in the same transaction make it happen once.
    fn tally_add(&self, id: &str, finished: &Finished) -> TransactWriteItem {
        let shard = (uuid::Uuid::new_v4().as_u128() % u128::from(keys::TALLY_SHARDS)) as u32;
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(keys::deployment(id)))
            .key("sk", s(keys::tally(shard)))
            .update_expression(
                "ADD succeeded :succeeded, failed :failed, skipped :skipped, installed :installed",
            )
            .expression_attribute_values(":succeeded", n(finished.succeeded.into()))
            .expression_attribute_values(":failed", n(finished.failed.into()))
            .expression_attribute_values(":skipped", n(finished.skipped.into()))
            .expression_attribute_values(":installed", n(finished.installed.into()))
            .build()
            .expect("update fields are set");
        TransactWriteItem::builder().update(update).build()
    }

    /// Takes the group's lock for deployment `id`, in a transaction with its summary: a
    /// group locked by another deployment cancels it (this one holding it already does not).
    pub(super) fn group_lock(&self, application: &str, group: &str, id: &str) -> TransactWriteItem {
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
        TransactWriteItem::builder().update(lock).build()
    }

    pub async fn load_deployment<S: DeserializeOwned>(
        &self,
        id: &str,
    ) -> Result<DeploymentRecord<S>, StoreError> {
        let what = format!("deployment {id}");
        let (item, tallied, mut outbox) = self.summary_and_outbox::<OutboxEntry>(id).await?;
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
        let stored: Deployment = decode(&item, "state", &what)?;
        Ok(DeploymentRecord {
            spec: decode(&item, "spec", &what)?,
            state: tallied.compose(&stored),
            tallied,
            version: number(&item, "version").ok_or_else(|| StoreError::Corrupt {
                what: what.clone(),
                message: "no version".into(),
            })?,
            outbox,
            rollback_info: decode_optional(&item, "rollbackInfo", &what)?.unwrap_or_default(),
            outdated_updates: item
                .get("outdatedUpdates")
                .and_then(|value| value.as_ss().ok())
                .cloned()
                .unwrap_or_default(),
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
            let kept = self.plan_pages.lock().expect("plan pages").get(id, page);
            let members = match kept {
                Some(members) => members,
                None => {
                    let item = self
                        .get_item(&keys::deployment(id), &keys::plan_page(page))
                        .await?
                        .ok_or_else(|| StoreError::Corrupt {
                            what: format!("deployment {id}"),
                            message: format!("plan page {page} is missing"),
                        })?;
                    let members: Vec<Target> =
                        decode(&item, "targets", &format!("deployment {id}"))?;
                    let members = std::sync::Arc::new(members);
                    self.plan_pages
                        .lock()
                        .expect("plan pages")
                        .keep(id, page, members.clone());
                    members
                }
            };
            let base = page * PLAN_PAGE_SIZE;
            for (offset, target) in members.iter().enumerate() {
                if (first..end).contains(&(base + offset)) {
                    targets.push(target.clone());
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

    /// Writes what one application of inputs changed, in one transaction: host records
    /// (each if still at the version read), the hosts' ends they make (`finished`, added
    /// to a tally), when it changed the summary (if still at its version), and the
    /// change's effects as an outbox entry. `record.state` is the deployment after the
    /// change with `record.tallied` and `finished` in it; the summary stored leaves
    /// them out. Returns the summary's version after the write, and the outbox entry's
    /// key when there were effects.
    pub async fn save_changes(
        &self,
        record: &DeploymentRecord<impl Sized>,
        summary_changed: bool,
        effects: &[Effect],
        targets: &[(&TargetState, u64)],
        finished: &Finished,
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
        if !finished.is_empty() {
            items.push(self.tally_add(id, finished));
        }
        let expected = record.version;
        let mut next = expected;
        let mut entry = None;
        if summary_changed {
            next = expected + 1;
            if !effects.is_empty() {
                entry = Some(keys::summary_entry(next));
            }
            let pending = !record.outbox.is_empty() || !effects.is_empty();
            let stored = (record.tallied + *finished).decompose(state);
            let update = self.summary_update(
                id,
                expected,
                json(&stored),
                json_name(&state.status),
                ACTIVE_KEY,
                wakeup(state, record.wakeup_at, pending, dispatches(effects), now),
            );
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

    /// Claims the decision on summary `version` of a deployment for this invocation:
    /// true unless another claimed it (or a later version) less than
    /// [`DECISION_CLAIM_EXPIRES_MS`] ago. A small write, so that of several invocations
    /// that would make one decision, the losers send a few hundred bytes instead of the
    /// summary and its outbox entry (about 2 KB).
    pub async fn claim_decision(
        &self,
        id: &str,
        version: u64,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::deployment(id)))
            .key("sk", s(keys::DECISION_CLAIM_SK))
            .update_expression("SET claimedVersion = :version, claimedAt = :now")
            .condition_expression(
                "attribute_not_exists(claimedVersion) OR claimedVersion < :version OR claimedAt < :expired",
            )
            .expression_attribute_values(":version", n(version))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(
                ":expired",
                n(now.saturating_sub(DECISION_CLAIM_EXPIRES_MS)),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) => match classify(error, || format!("deployment {id}")) {
                StoreError::Conflict(_) => Ok(false),
                other => Err(other),
            },
        }
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
    /// Adds `update` to the updates of outdated instances that followed deployment `id`
    /// (a set: adding it again changes nothing).
    pub async fn link_outdated_update(&self, id: &str, update: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::deployment(id)))
            .key("sk", s(keys::DEPLOYMENT_SK))
            .update_expression("ADD outdatedUpdates :update")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":update", AttributeValue::Ss(vec![update.to_owned()]))
            .send()
            .await
            .map(drop)
            .map_err(|error| classify(error, || format!("deployment {id}")))
    }

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
}

/// One tally item's counts (absent ones are 0).
fn tally(item: &Item) -> Finished {
    let count = |name| number(item, name).unwrap_or(0) as u32;
    Finished {
        succeeded: count("succeeded"),
        failed: count("failed"),
        skipped: count("skipped"),
        installed: count("installed"),
    }
}
