//! When a deployment is looked at next: its tick's wake-up, its lease, and the
//! query for the ones due.

use super::codec::{deployment_id_of, done_unless_failed, n, s};
use super::{ACTIVE_INDEX, DynamoStore, StoreError, keys};
use gantry_core::deployment::{Deployment, Millis};

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

impl DynamoStore {
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
}
