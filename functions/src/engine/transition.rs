//! Applying inputs to a stored deployment: the one place a deployment's state changes.
//!
//! Load the summary and the records of the hosts the inputs concern, apply the inputs
//! with gantry-core, and write back what changed in one transaction on the condition
//! that nobody wrote it in between; on a conflict, start over from the fresh state.
//! Concurrent invocations with the same report therefore count it once, and a batch is
//! dispatched once. An input the state machine refuses is skipped and returned, so one
//! bad report does not block the rest.
//!
//! A host's end alone does not write the summary: it is added to a tally beside it
//! ([`Finished`]), in the transaction that writes the host's record on its version, so
//! that hosts finishing at once do not all race for the one summary item. The summary
//! is written when a decision changes it (a batch sent, the end), on its version. A
//! write that only added to a tally asks for a recount ([`Applied::recount`]): the
//! tallies read again after it, so that the last host of a batch to finish, whoever
//! wrote it, has the deployment decide. Of several recounts that find the same batch
//! complete, the first to claim the summary's version decides and the others step
//! aside ([`DeploymentLog::claim_decision`]).

use crate::ports::DeploymentLog;
use crate::store::{DeploymentRecord, OutboxEntry, StoreError, Versioned};
use gantry_core::deployment::{
    ApplyError, DeploymentStatus, Effect, Finished, Input, Millis, TargetState, TargetStatus,
};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};

/// Hosts one application may touch: a transaction holds them and the summary, and stays
/// under DynamoDB's 4 MB even when every host's events carry a full log tail.
const HOSTS_PER_APPLICATION: usize = 25;

/// What one successful application of inputs did.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied<S> {
    /// The effects of the write that won, and no other; empty when nothing changed.
    pub effects: Vec<Effect>,
    pub record: DeploymentRecord<S>,
    /// The outbox entry holding `effects`, to clear once they are carried out.
    pub outbox_entry: Option<String>,
    /// Inputs the state machine refused, by index, with why.
    pub refused: Vec<(usize, ApplyError)>,
    /// Host records written.
    pub hosts_written: usize,
    /// Whether `effects` were carried out (set by whoever runs them).
    pub effects_done: bool,
    /// Hosts' ends were added to the tallies without a decision, or with one while
    /// other hosts ran: the deployment must be looked at again ([`Input::Recount`]) in
    /// case another writer's ends, unseen here, complete a batch.
    pub recount: bool,
    /// Whether the summary was written (a decision), effects or not.
    pub summary_written: bool,
}

impl<S> Applied<S> {
    /// Nothing written: `record` as read.
    fn unwritten(
        record: DeploymentRecord<S>,
        refused: Vec<(usize, ApplyError)>,
        recount: bool,
    ) -> Self {
        Applied {
            effects: Vec::new(),
            record,
            outbox_entry: None,
            refused,
            hosts_written: 0,
            effects_done: true,
            recount,
            summary_written: false,
        }
    }
}

/// Whether a write's decision must first be claimed ([`recount`]'s) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decider {
    Any,
    Claimed,
}

/// Whether a write of `finished` ends must be followed by a recount: unless it decided
/// on a view in which no other host was running (then nobody else's end can be missing
/// from its decision), another writer's ends may complete what it did not see.
fn recount_after(
    before: &gantry_core::deployment::Deployment,
    after: &gantry_core::deployment::Deployment,
    finished: &Finished,
    decided: bool,
) -> bool {
    let ended = finished.succeeded + finished.failed + finished.skipped;
    let others_running = before.counts.in_progress > ended;
    after.status == DeploymentStatus::InProgress
        && !finished.is_empty()
        && (!decided || others_running)
}

/// The hosts an input concerns, beyond those a tick finds overdue.
fn reporting_host(input: &Input) -> Option<&str> {
    match input {
        Input::Report { report, .. } => Some(&report.instance_id),
        Input::Traffic { instance_id, .. } => Some(instance_id),
        _ => None,
    }
}

/// Splits inputs into runs that each touch at most [`HOSTS_PER_APPLICATION`] hosts, so
/// that each run's write fits one transaction.
pub fn chunks(inputs: &[Input]) -> Vec<&[Input]> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut hosts = BTreeSet::new();
    for (index, input) in inputs.iter().enumerate() {
        if let Some(host) = reporting_host(input)
            && hosts.insert(host)
            && hosts.len() > HOSTS_PER_APPLICATION
        {
            runs.push(&inputs[start..index]);
            start = index;
            hosts = BTreeSet::from([host]);
        }
    }
    runs.push(&inputs[start..]);
    runs
}

/// What a deployment must learn before some inputs apply to it: the state of its
/// CloudWatch alarms when the inputs reach a batch boundary. It is asked with what the
/// inputs would do (`trial`, applied to a copy); the input it then returns (an alarm
/// check) is applied first, in the same write.
pub trait Precheck<S> {
    fn wanted(&self, record: &DeploymentRecord<S>, inputs: &[Input], trial: &[Effect]) -> bool;
    fn check(
        &self,
        record: &DeploymentRecord<S>,
        now: Millis,
    ) -> impl std::future::Future<Output = Input> + Send;
}

/// Nothing to learn first.
pub struct NoPrecheck;

impl<S: Sync> Precheck<S> for NoPrecheck {
    fn wanted(&self, _: &DeploymentRecord<S>, _: &[Input], _: &[Effect]) -> bool {
        false
    }

    async fn check(&self, _: &DeploymentRecord<S>, now: Millis) -> Input {
        Input::Tick { now }
    }
}

/// Applies `inputs` (touching at most [`HOSTS_PER_APPLICATION`] hosts; see [`chunks`]) to
/// a stored deployment. A tick among them fails up to that many overdue hosts; the caller
/// ticks again while it keeps finding some.
pub async fn apply<S: DeserializeOwned + Send + Sync>(
    store: &impl DeploymentLog,
    deployment_id: &str,
    inputs: &[Input],
    now: Millis,
    max_attempts: u32,
) -> Result<Applied<S>, StoreError> {
    apply_checked(store, deployment_id, inputs, now, max_attempts, &NoPrecheck).await
}

/// What applying inputs in memory gave: their effects, the inputs refused (by index),
/// and the host records changed.
type AppliedInputs = (
    Vec<Effect>,
    Vec<(usize, ApplyError)>,
    BTreeMap<String, TargetState>,
);

/// The inputs' effects on `state`, after `first` (a precheck's input, whose effects come
/// first and which is never refused), with the host records they changed.
fn apply_all(
    state: &mut gantry_core::deployment::Deployment,
    first: Option<&Input>,
    inputs: &[Input],
    overdue: &[String],
    hosts: &BTreeMap<String, Versioned<TargetState>>,
) -> AppliedInputs {
    let mut effects = Vec::new();
    let mut refused = Vec::new();
    let mut changed: BTreeMap<String, TargetState> = BTreeMap::new();
    if let Some(first) = first {
        match state.apply(first.clone(), &mut []) {
            Ok(more) => effects.extend(more),
            Err(error) => tracing::warn!(%error, "precheck input refused"),
        }
    }
    for (index, input) in inputs.iter().enumerate() {
        let ids: Vec<&String> = match input {
            Input::Report { report, .. } => vec![&report.instance_id],
            Input::Traffic { instance_id, .. } => vec![instance_id],
            Input::Tick { .. } => overdue.iter().collect(),
            _ => Vec::new(),
        };
        let mut touched: Vec<TargetState> = ids
            .iter()
            .filter_map(|id| {
                changed
                    .get(*id)
                    .or_else(|| hosts.get(*id).map(|host| &host.value))
                    .cloned()
            })
            .collect();
        match state.apply(input.clone(), &mut touched) {
            Ok(more) => effects.extend(more),
            Err(error) => refused.push((index, error)),
        }
        for target in touched {
            changed.insert(target.target.instance_id.clone(), target);
        }
    }
    (effects, refused, changed)
}

/// [`apply`], first learning what `precheck` wants to know when the inputs call for it.
/// Its answer is had once per call, whatever races are retried.
pub async fn apply_checked<S: DeserializeOwned + Send + Sync, P: Precheck<S>>(
    store: &impl DeploymentLog,
    deployment_id: &str,
    inputs: &[Input],
    now: Millis,
    max_attempts: u32,
    precheck: &P,
) -> Result<Applied<S>, StoreError> {
    apply_as(
        store,
        deployment_id,
        inputs,
        now,
        max_attempts,
        precheck,
        Decider::Any,
    )
    .await
}

/// [`apply_checked`], a decision first claimed when `decider` says so.
async fn apply_as<S: DeserializeOwned + Send + Sync, P: Precheck<S>>(
    store: &impl DeploymentLog,
    deployment_id: &str,
    inputs: &[Input],
    now: Millis,
    max_attempts: u32,
    precheck: &P,
    decider: Decider,
) -> Result<Applied<S>, StoreError> {
    let mut learned: Option<Input> = None;
    let ticks = inputs
        .iter()
        .any(|input| matches!(input, Input::Tick { .. }));
    let mut attempt = 0;
    let mut claimed: Option<u64> = None;
    loop {
        attempt += 1;
        let mut record: DeploymentRecord<S> = store.load_deployment(deployment_id).await?;
        let overdue = if ticks {
            store
                .overdue_targets(deployment_id, now, HOSTS_PER_APPLICATION as i32)
                .await?
        } else {
            Vec::new()
        };
        let wanted: Vec<String> = inputs
            .iter()
            .filter_map(reporting_host)
            .map(str::to_owned)
            .chain(overdue.iter().cloned())
            .collect();
        let mut hosts = store.load_targets(deployment_id, &wanted).await?;
        let before = record.state.clone();
        if learned.is_none() {
            let (trial, _, _) = apply_all(&mut before.clone(), None, inputs, &overdue, &hosts);
            if precheck.wanted(&record, inputs, &trial) {
                learned = Some(precheck.check(&record, now).await);
            }
        }
        let (effects, refused, mut changed) = apply_all(
            &mut record.state,
            learned.as_ref(),
            inputs,
            &overdue,
            &hosts,
        );
        changed.retain(|id, target| hosts.get(id).is_none_or(|host| &host.value != target));
        let finished: Finished = changed
            .iter()
            .map(|(id, target)| Finished::of_change(hosts.get(id).map(|host| &host.value), target))
            .sum();
        // The summary as it would be stored, the tallies left out: only decisions move it.
        let summary_changed = (record.tallied + finished).decompose(&record.state)
            != record.tallied.decompose(&before);
        if !summary_changed && changed.is_empty() {
            // A repeated report of a host's end: its first delivery's write may have
            // been made by an invocation that died before its recount, and nobody
            // else's recount can have seen it. Recount again (a read) rather than
            // leave the batch to the tick.
            // Only an input the state machine took: a refused one (a forged sender)
            // costs no more reads than its own.
            let repeated_end = inputs
                .iter()
                .enumerate()
                .filter(|(index, _)| refused.iter().all(|(refused, _)| refused != index))
                .filter_map(|(_, input)| reporting_host(input))
                .any(|id| {
                    hosts.get(id).is_some_and(|host| {
                        host.value.status.is_terminal() || host.value.status == TargetStatus::Ready
                    })
                });
            let recount = repeated_end && record.state.status == DeploymentStatus::InProgress;
            return Ok(Applied::unwritten(record, refused, recount));
        }
        // Invocations recounting at once may each find the same batch complete. When no
        // host runs in this view, every end is in it, so one decider is as good as
        // another: the first to claim this version decides, and the others step aside
        // having sent a small claim, not the summary and its outbox entry.
        // A claim this call holds already (its write met another and is tried again on
        // the same version) is not asked for again: it would find itself in the way.
        if decider == Decider::Claimed
            && summary_changed
            && changed.is_empty()
            && before.counts.in_progress == 0
            && claimed != Some(record.version)
        {
            if !store
                .claim_decision(deployment_id, record.version, now)
                .await?
            {
                tracing::debug!(%deployment_id, version = record.version, "another invocation decides");
                return Ok(Applied::unwritten(record, refused, false));
            }
            claimed = Some(record.version);
        }
        let writes: Vec<(&TargetState, u64)> = changed
            .values()
            .map(|target| {
                let version = hosts
                    .get(&target.target.instance_id)
                    .map_or(0, |host| host.version);
                (target, version)
            })
            .collect();
        match store
            .save_changes(&record, summary_changed, &effects, &writes, &finished, now)
            .await
        {
            Ok((version, outbox_entry)) => {
                let hosts_written = writes.len();
                record.version = version;
                record.tallied = record.tallied + finished;
                let recount = recount_after(&before, &record.state, &finished, summary_changed);
                if let Some(entry) = &outbox_entry {
                    record
                        .outbox
                        .insert(entry.clone(), OutboxEntry::new(effects.clone(), now));
                }
                for (id, target) in changed {
                    let version = hosts.get(&id).map_or(0, |host| host.version) + 1;
                    hosts.insert(
                        id,
                        Versioned {
                            value: target,
                            version,
                        },
                    );
                }
                return Ok(Applied {
                    effects_done: effects.is_empty(),
                    effects,
                    record,
                    outbox_entry,
                    refused,
                    hosts_written,
                    recount,
                    summary_written: summary_changed,
                });
            }
            Err(StoreError::Conflict(message)) if attempt < max_attempts => {
                tracing::debug!(%deployment_id, attempt, %message, "lost a write race; retrying");
                // Several batch-advance workers race for one summary when many hosts
                // finish at once: wait a random while, longer each time, so that they
                // take turns instead of colliding again.
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// After a write that only tallied hosts' ends ([`Applied::recount`]): the deployment
/// decides on every end tallied so far. Returns what it decided, or None when there was
/// nothing to decide or another invocation claimed the same decision.
pub async fn recount<S: DeserializeOwned + Send + Sync, P: Precheck<S>>(
    store: &impl DeploymentLog,
    deployment_id: &str,
    now: Millis,
    max_attempts: u32,
    precheck: &P,
) -> Result<Option<Applied<S>>, StoreError> {
    let decided = apply_as(
        store,
        deployment_id,
        &[Input::Recount { now }],
        now,
        max_attempts,
        precheck,
        Decider::Claimed,
    )
    .await?;
    Ok((decided.summary_written || !decided.effects.is_empty()).then_some(decided))
}

/// A random wait in [0, min(2^attempt * 4 ms, 250 ms)).
fn backoff(attempt: u32) -> std::time::Duration {
    let ceiling = (4u64 << attempt.min(6)).min(250);
    let random = (uuid::Uuid::new_v4().as_u128() % u128::from(ceiling)) as u64;
    std::time::Duration::from_millis(random)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::lifecycle::LifecycleEvent;
    use gantry_core::wire::{EventStatus, Report, SCHEMA_VERSION};

    fn report(instance: usize) -> Input {
        Input::Report {
            report: Report {
                schema_version: SCHEMA_VERSION,
                deployment_id: "d-CHUNK0001".into(),
                instance_id: format!("i-{instance:03}"),
                lifecycle_event: LifecycleEvent::Install,
                status: EventStatus::Succeeded,
                start_time: 1,
                end_time: Some(2),
                diagnostics: None,
            },
            sender: None,
            now: 3,
        }
    }

    #[test]
    fn runs_touch_at_most_twenty_five_hosts_and_keep_order() {
        // 60 reports from 30 hosts, each host twice in a row.
        let inputs: Vec<Input> = (0..60).map(|i| report(i / 2)).collect();
        let runs = chunks(&inputs);
        assert_eq!(
            runs.iter().map(|run| run.len()).collect::<Vec<_>>(),
            [50, 10]
        );
        assert_eq!(runs.concat(), inputs);
        assert_eq!(chunks(&[Input::Tick { now: 1 }]).len(), 1);
    }
}
