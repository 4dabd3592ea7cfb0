//! Effects not yet carried out (the outbox), and effects that failed for good.

use super::codec::{aws, classify, done_unless_failed, json, n, number, s, text};
use super::schedule::{OUTBOX_GRACE_MS, idle_look};
use super::{DynamoStore, StoreError, keys};
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use gantry_core::deployment::{Deployment, Effect, Millis};
use serde::Serialize;

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
pub(crate) fn wakeup(
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

pub(crate) fn dispatches(effects: &[Effect]) -> bool {
    effects
        .iter()
        .any(|effect| matches!(effect, Effect::Dispatch { .. }))
}

impl DynamoStore {
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
    pub(super) fn outbox_put(
        &self,
        id: &str,
        entry: &str,
        effects: &[Effect],
        now: Millis,
    ) -> TransactWriteItem {
        self.outbox_item(id, entry, &OutboxEntry::new(effects.to_vec(), now))
    }

    /// An outbox entry's item, of either platform's entries, written only if new.
    pub(super) fn outbox_item<E: serde::Serialize>(
        &self,
        id: &str,
        entry: &str,
        pending: &E,
    ) -> TransactWriteItem {
        let put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(keys::deployment(id)))
            .item("sk", s(keys::outbox(entry)))
            .item("entry", json(pending))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .expect("put fields are set");
        TransactWriteItem::builder().put(put).build()
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
}
