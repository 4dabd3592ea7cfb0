//! The deployment engine: the one driver of every deployment.
//!
//! Every change to a deployment is a [`step`]: apply the inputs and persist the result
//! with its effects in one conditional write ([`transition`]), then [`execute`] the
//! effects the write put in the outbox, then mark them done. [`carry_out`] is the one
//! place an effect becomes AWS calls. A rollback that an effect starts is created there
//! and its own start effects run next in the same loop, not by recursion. An effect that
//! fails for now stays in the outbox, where the tick retries it with a growing delay; one
//! that fails for good is recorded on the deployment. Either way the others go on, so
//! whatever one effect does, the group's lock is released.
//!
//! A report's way to the next batch's SendMessage, in seven hops:
//! `batch_advance::handle` → `apply_reports` → [`step`] → [`execute`] →
//! [`carry_out_all`] → [`carry_out`] → `dispatch::dispatch` → `CommandQueues::send_all`.

use crate::control::ControlPlane;
use crate::deploy::{self, Created};
use crate::error::{ApiError, Exception};
use crate::model::{DeploymentSpec, LastDeploymentInfo, now_millis};
use crate::ports::{DeploymentLog, GroupLog, HostQueues};
use crate::store::{DeploymentRecord, InstanceHealth, OUTBOX_GRACE_MS, OutboxEntry, dispatches};
use gantry_core::deployment::{AlarmCheck, DeploymentStatus, Effect, Input, Millis};
use gantry_core::wire::Cancel;
use serde_json::json;
use tracing::Instrument;

mod dispatch;
mod fleet_ports;
pub mod transition;

pub use fleet_ports::EnginePorts;

pub use dispatch::{DISPATCH_SLICE, DispatchSlice, dispatch_slice, slices};
use dispatch::{dispatch, fan_out};
use transition::Applied;

/// How a deployment's lost races are retried before the caller is told to try again.
/// With the random backoff between attempts, 40 give a writer several seconds to win
/// against dozens of concurrent ones.
const MAX_APPLY_ATTEMPTS: u32 = 40;

/// Where effects wait until they are done: their deployment's outbox entry, and how
/// many times carrying them out failed before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its key in the outbox.
    pub key: String,
    pub attempts: u32,
    /// Run by the tick after its writer: the deployment may have moved on since, so an
    /// effect that is not safe to repeat late checks first (a load balancer step).
    pub late: bool,
}

impl Entry {
    /// The entry a write just made.
    pub fn new(key: String) -> Self {
        Self {
            key,
            attempts: 0,
            late: false,
        }
    }
}

/// One step of a deployment, the way every change to one goes: apply the inputs and
/// persist the new state with its effects in one conditional write
/// ([`transition::apply_checked`]), then carry the effects out ([`execute`]).
pub async fn step<P: EnginePorts>(
    control: &P,
    deployment_id: &str,
    inputs: &[Input],
) -> Result<Applied<DeploymentSpec>, ApiError> {
    let span = tracing::info_span!("step", %deployment_id);
    async {
        let started = std::time::Instant::now();
        let now = now_millis();
        let mut applied = transition::apply_checked(
            control.log(),
            deployment_id,
            inputs,
            now,
            MAX_APPLY_ATTEMPTS,
            &AlarmPoll { control },
        )
        .await?;
        // Hosts' ends were only tallied: decide on every end written so far, this
        // write's and others'. The decision (a batch sent, the end) is stored at once;
        // its effects run after this write's, in the order one write would have them.
        let decided = if applied.recount {
            // Failing here must not keep this write's effects from running: the tick
            // (or a repeated report) decides instead.
            transition::recount(
                control.log(),
                deployment_id,
                now,
                MAX_APPLY_ATTEMPTS,
                &AlarmPoll { control },
            )
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "recount failed; the tick decides");
                None
            })
        } else {
            None
        };
        let written_ms = started.elapsed().as_secs_f64() * 1000.0;
        for (index, error) in &applied.refused {
            tracing::warn!(input = index, %error, "input refused by the state machine");
        }
        if !applied.effects.is_empty() {
            carry_out_written(control, &mut applied).await;
            // The bench reads these: input received to state written, and to effects done.
            tracing::info!(
                inputs = inputs.len(),
                hosts_written = applied.hosts_written,
                dispatched = dispatches(&applied.effects),
                written_ms,
                elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                "advanced"
            );
        }
        if let Some(mut decided) = decided {
            carry_out_written(control, &mut decided).await;
            tracing::info!(
                dispatched = dispatches(&decided.effects),
                elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                "decided on the tallies"
            );
            // The caller sees the deployment as it stands after both writes.
            applied.record = decided.record;
            applied.effects.append(&mut decided.effects);
            applied.effects_done &= decided.effects_done;
            applied.outbox_entry = decided.outbox_entry.or(applied.outbox_entry);
        }
        Ok(applied)
    }
    .instrument(span)
    .await
}

/// Carries out the effects a write just stored, from its outbox entry, and records whether
/// they are all done.
async fn carry_out_written<P: EnginePorts>(control: &P, applied: &mut Applied<DeploymentSpec>) {
    applied.effects_done = execute(
        control,
        &applied.record,
        &applied.effects,
        applied.outbox_entry.clone().map(Entry::new),
    )
    .await
    .is_none();
}

/// Carries out effects (see [`carry_out_all`]), then settles their outbox entry (see
/// [`settle_outbox`]); then does the same for each deployment they created (a
/// rollback), in this loop rather than by recursion. Returns when `record`'s effects
/// left are next due, or None when none is left.
pub async fn execute<P: EnginePorts>(
    control: &P,
    record: &DeploymentRecord<DeploymentSpec>,
    effects: &[Effect],
    entry: Option<Entry>,
) -> Option<Millis> {
    let mut follow_ups = Vec::new();
    // Boxed, as each level here: a debug build's thread stack holds the futures of
    // every level inlined, and a rollback nests a deployment's creation in them.
    let left = Box::pin(carry_out_all(
        control,
        record,
        effects,
        entry.as_ref(),
        &mut follow_ups,
    ))
    .await;
    let retry_at = settle_outbox(control, &record.state.deployment_id, entry, left).await;
    while let Some(created) = follow_ups.pop() {
        let entry = (!created.effects.is_empty())
            .then(|| Entry::new(crate::store::keys::summary_entry(created.record.version)));
        let deployment_id = &created.record.spec.deployment_id;
        let span = tracing::info_span!("effects", %deployment_id);
        let left = Box::pin(
            carry_out_all(
                control,
                &created.record,
                &created.effects,
                entry.as_ref(),
                &mut follow_ups,
            )
            .instrument(span),
        )
        .await;
        settle_outbox(control, deployment_id, entry, left).await;
    }
    retry_at
}

/// Runs the effects a new deployment was stored with.
pub async fn start<P: EnginePorts>(control: &P, created: &Created) {
    let entry = (!created.effects.is_empty())
        .then(|| Entry::new(crate::store::keys::summary_entry(created.record.version)));
    execute(control, &created.record, &created.effects, entry).await;
}

/// What carrying out an entry's effects left to do.
#[derive(Debug, Default)]
struct Left {
    /// Failed for now: retried by the tick after a backoff.
    retry: Vec<Effect>,
    /// An entry with a blue/green fleet effect, which this function does not carry out:
    /// the lifecycle function runs it whole (see [`is_fleet_effect`]).
    handed_off: Vec<Effect>,
}

/// Marks an outbox entry done, or keeps in it only the effects left: those that failed
/// for now, to be retried by the tick after a backoff, and those handed off, which the
/// lifecycle function is then asked to run (the entry rewritten first, so that it runs
/// nothing this function did). Returns when they are due.
async fn settle_outbox<P: EnginePorts>(
    control: &P,
    deployment_id: &str,
    entry: Option<Entry>,
    left: Left,
) -> Option<Millis> {
    let now = now_millis();
    let Some(entry) = entry else {
        if !left.retry.is_empty() {
            tracing::error!(
                retry = ?left.retry,
                "effects failed that were never stored: they are lost"
            );
        }
        return None;
    };
    if left.retry.is_empty() && left.handed_off.is_empty() {
        return match control.log().clear_outbox(deployment_id, &entry.key).await {
            Ok(()) => None,
            Err(error) => {
                tracing::warn!(%error, entry = %entry.key, "could not clear an outbox entry; the tick will run it again");
                Some(now + OUTBOX_GRACE_MS)
            }
        };
    }
    let failed = !left.retry.is_empty();
    let pending = OutboxEntry {
        effects: left.retry.into_iter().chain(left.handed_off).collect(),
        at: now,
        // Handing off is no failure: it does not lengthen the backoff.
        attempts: entry.attempts + u32::from(failed),
    };
    let retry_at = pending.due();
    if failed {
        tracing::warn!(
            effects = ?pending.effects,
            attempts = pending.attempts,
            retry_in_ms = retry_at - now,
            "effects failed for now; the tick retries them"
        );
    }
    if let Err(error) = control
        .log()
        .rewrite_outbox(deployment_id, &entry.key, &pending)
        .await
    {
        // The whole entry stays as it was, and runs again when it was due.
        tracing::warn!(%error, entry = %entry.key, "could not keep the effects left apart");
        return Some(retry_at);
    }
    if pending.effects.iter().any(is_fleet_effect)
        && !control.settings().fleet_effects_here
        && let Err(error) = hand_off(control, deployment_id, &entry.key).await
    {
        tracing::warn!(%error, entry = %entry.key, "fleet effects not handed off; the tick hands them off again");
    }
    Some(retry_at)
}

/// Whether an effect copies, adopts or deletes an Auto Scaling group or terminates
/// instances: only the lifecycle function's role holds the fleet policy that allows it,
/// so the other functions hand an entry holding one to it (`{"gantryEffects": ..}` on
/// the lifecycle queue) rather than carry it out.
pub fn is_fleet_effect(effect: &Effect) -> bool {
    matches!(
        effect,
        Effect::ProvisionFleet
            | Effect::RemoveReplacement
            | Effect::TerminateOriginal
            | Effect::AdoptReplacement
    )
}

/// Asks the lifecycle function to run a deployment's outbox entry. A message naming an
/// entry that is not (or no longer) in the outbox runs nothing, so a forged one can at
/// most run an entry early.
async fn hand_off<P: EnginePorts>(
    control: &P,
    deployment_id: &str,
    entry: &str,
) -> Result<(), ApiError> {
    let Some(queue_url) = control.settings().lifecycle_queue_url.as_deref() else {
        return Err(ApiError::internal(
            "GANTRY_LIFECYCLE_QUEUE_URL is not set: cannot hand fleet effects to the lifecycle function",
        ));
    };
    let body = json!({"gantryEffects": {"deploymentId": deployment_id, "entry": entry}});
    control
        .queues()
        .send_to_queue(queue_url, body.to_string())
        .await?;
    tracing::info!(%deployment_id, %entry, "fleet effects handed to the lifecycle function");
    Ok(())
}

/// The lifecycle function: runs a deployment's outbox entry that another function
/// handed off (see [`is_fleet_effect`]), if it is still there.
pub async fn run_handed_off<P: EnginePorts>(
    control: &P,
    deployment_id: &str,
    key: &str,
) -> Result<(), ApiError> {
    let record = match control
        .log()
        .load_deployment::<DeploymentSpec>(deployment_id)
        .await
    {
        Ok(record) => record,
        Err(crate::store::StoreError::NotFound(_)) => {
            tracing::warn!(%deployment_id, "effects handed off for a deployment that does not exist; dropped");
            return Ok(());
        }
        Err(error) => return Err(error.into()),
    };
    let Some(pending) = record.outbox.get(key) else {
        tracing::info!(%deployment_id, entry = %key, "handed-off effects already carried out");
        return Ok(());
    };
    let entry = Entry {
        key: key.to_owned(),
        attempts: pending.attempts,
        late: true,
    };
    execute(control, &record, &pending.effects, Some(entry)).await;
    Ok(())
}

/// Whether an effect that failed so may pass on a later try: AWS or DynamoDB
/// unavailable, throttled, or a race lost. Anything else (a group or queue that no
/// longer exists, a setting missing) fails the same way every time.
fn may_pass_later(error: &ApiError) -> bool {
    matches!(
        error.code,
        Exception::InternalFailure | Exception::ConcurrentModification
    )
}

/// Executes the state machine's effects in order. One that fails does not stop the
/// others (a notification to a deleted topic must not keep the group locked). Returns
/// those that failed for now, to be tried again (every effect is safe to repeat), and
/// the fleet effects left to the lifecycle function. One that failed for good is
/// logged and recorded on the deployment.
async fn carry_out_all<P: EnginePorts>(
    control: &P,
    record: &DeploymentRecord<DeploymentSpec>,
    effects: &[Effect],
    entry: Option<&Entry>,
    follow_ups: &mut Vec<Created>,
) -> Left {
    let started = std::time::Instant::now();
    let mut left = Left::default();
    // An entry with a fleet effect goes to the lifecycle function whole, unless this is
    // it, or it was never stored (then there is nothing to hand off: tried here). Whole,
    // so that its order holds: a blue/green success releases the group's lock only
    // after its replacement fleet is adopted and its original terminated.
    let hand_off = !control.settings().fleet_effects_here
        && entry.is_some()
        && effects.iter().any(is_fleet_effect);
    if hand_off {
        left.handed_off = effects.to_vec();
        return left;
    }
    let here: Vec<&Effect> = effects.iter().collect();
    // Commands first: hosts wait on them, while notifications and health records
    // wait on nobody. (Dispatch and ReleaseLock never come from the same change.)
    let (dispatches, others): (Vec<&Effect>, Vec<&Effect>) = here
        .into_iter()
        .partition(|effect| matches!(effect, Effect::Dispatch { .. }));
    for effect in dispatches.into_iter().chain(others) {
        let entry = entry.map(|entry| (entry, effects));
        let Err(error) = Box::pin(carry_out(
            control, record, effect, entry, started, follow_ups,
        ))
        .await
        else {
            continue;
        };
        if may_pass_later(&error) {
            tracing::warn!(?effect, %error, "an effect failed for now; the others go on");
            left.retry.push(effect.clone());
            continue;
        }
        tracing::error!(?effect, %error, "an effect failed for good; it blocks nothing");
        let recorded = control
            .log()
            .record_failed_effect(
                &record.state.deployment_id,
                effect_kind(effect),
                &format!("{effect:?}"),
                &error.to_string(),
                now_millis(),
            )
            .await;
        if let Err(error) = recorded {
            // Tried again, until it can be recorded.
            tracing::warn!(%error, "could not record the failed effect");
            left.retry.push(effect.clone());
        }
    }
    left
}

/// An effect's kind: a deployment keeps one record of failure per kind.
fn effect_kind(effect: &Effect) -> &'static str {
    match effect {
        Effect::Dispatch { .. } => "Dispatch",
        Effect::Traffic { .. } => "Traffic",
        Effect::Resume { .. } => "Resume",
        Effect::Notify { .. } => "Notify",
        Effect::RecordHealth { .. } => "RecordHealth",
        Effect::HostTimedOut { .. } => "HostTimedOut",
        Effect::RecordLastSuccessful => "RecordLastSuccessful",
        Effect::ReleaseLock => "ReleaseLock",
        Effect::StartRollback => "StartRollback",
        Effect::UpdateOutdated => "UpdateOutdated",
        Effect::CancelHosts => "CancelHosts",
        Effect::CompleteLaunch { .. } => "CompleteLaunch",
        Effect::Reroute { .. } => "Reroute",
        Effect::TerminateOriginal => "TerminateOriginal",
        Effect::AdoptReplacement => "AdoptReplacement",
        Effect::ProvisionFleet => "ProvisionFleet",
        Effect::RemoveReplacement => "RemoveReplacement",
    }
}

/// Carries out one effect: the only `match Effect`.
async fn carry_out<P: EnginePorts>(
    control: &P,
    record: &DeploymentRecord<DeploymentSpec>,
    effect: &Effect,
    entry: Option<(&Entry, &[Effect])>,
    started: std::time::Instant,
    follow_ups: &mut Vec<Created>,
) -> Result<(), ApiError> {
    let spec = &record.spec;
    match effect {
        Effect::Dispatch { first, count } => {
            match control.settings().lifecycle_queue_url.as_deref() {
                Some(queue) if *count > DISPATCH_SLICE => {
                    fan_out(control, queue, &spec.deployment_id, *first, *count).await?
                }
                _ => Box::pin(dispatch(control, record, *first, *count, entry)).await?,
            }
            tracing::info!(
                hosts = count,
                after_write_ms = started.elapsed().as_secs_f64() * 1000.0,
                "batch dispatched"
            );
        }
        Effect::Traffic { instance_id, event } => {
            // Asked late, the step may be over and the host on to the next: a late
            // BlockTraffic must not take a serving host out of its target groups.
            let late = entry.is_some_and(|(entry, _)| entry.late);
            if record.state.status.is_terminal() {
                tracing::info!(%instance_id, %event, "the deployment ended: its load balancer step is not asked for");
            } else {
                Box::pin(control.traffic_step(spec, instance_id, *event, late)).await?;
            }
        }
        Effect::Resume {
            instance_id,
            events,
            start_by,
        } => {
            let mut next = spec.command(instance_id, Some(*start_by));
            next.lifecycle_events = events.clone();
            control.queues().send_all(vec![next]).await?;
        }
        Effect::Notify { event, instance_id } => {
            let target = match instance_id {
                Some(id) if crate::notify::wanted(spec, *event) => control
                    .log()
                    .load_targets(&spec.deployment_id, std::slice::from_ref(id))
                    .await?
                    .remove(id)
                    .map(|versioned| versioned.value),
                _ => None,
            };
            crate::notify::publish(
                control,
                record,
                *event,
                instance_id.as_deref(),
                target.as_ref(),
            )
            .await?;
        }
        Effect::RecordHealth {
            instance_id,
            healthy,
        } => {
            let health = InstanceHealth {
                healthy: *healthy,
                deployment_id: spec.deployment_id.clone(),
                revision: spec.revision.clone(),
            };
            control
                .log()
                .record_health(
                    &spec.application_name,
                    &spec.deployment_group_name,
                    instance_id,
                    &health,
                )
                .await?;
        }
        Effect::HostTimedOut { instance_id } => {
            tracing::warn!(%instance_id, "host went silent past its deadline and was failed");
        }
        Effect::RecordLastSuccessful => {
            let last = LastDeploymentInfo::of(&record.state);
            control
                .log()
                .record_success(
                    &spec.application_name,
                    &spec.deployment_group_name,
                    &last,
                    &spec.revision,
                )
                .await?;
        }
        Effect::ReleaseLock => {
            // Each part is tried whatever the other did: the lock above all.
            let recorded = control
                .log()
                .record_attempt(
                    &spec.application_name,
                    &spec.deployment_group_name,
                    &LastDeploymentInfo::of(&record.state),
                )
                .await;
            control
                .log()
                .unlock_group(
                    &spec.application_name,
                    &spec.deployment_group_name,
                    &spec.deployment_id,
                )
                .await?;
            recorded?;
            tracing::info!(status = ?record.state.status, "deployment finished");
        }
        Effect::StartRollback => {
            // The rollback is created here; its own effects run after these.
            follow_ups.extend(Box::pin(control.start_rollback(record)).await?);
        }
        Effect::UpdateOutdated => {
            follow_ups.extend(Box::pin(control.update_outdated(record)).await?);
        }
        Effect::CompleteLaunch { .. } => {
            launch_finished(control, &spec.deployment_id).await?;
        }
        Effect::Reroute { first, count } => {
            Box::pin(control.reroute(record, *first, *count)).await?;
            tracing::info!(hosts = count, "traffic rerouting sent");
        }
        Effect::TerminateOriginal => Box::pin(control.terminate_original(record)).await?,
        Effect::AdoptReplacement => Box::pin(control.adopt_replacement(record)).await?,
        Effect::ProvisionFleet => Box::pin(control.provision_fleet(record)).await?,
        Effect::RemoveReplacement => Box::pin(control.remove_replacement(spec)).await?,
        Effect::CancelHosts => {
            let hosts = control.log().deploying_hosts(&spec.deployment_id).await?;
            tracing::info!(
                hosts = hosts.len(),
                "telling deploying hosts to skip the rest"
            );
            let cancels = hosts
                .into_iter()
                .map(|instance_id| {
                    let cancel = Cancel {
                        deployment_id: spec.deployment_id.clone(),
                        instance_id: instance_id.clone(),
                    };
                    (instance_id, cancel.to_json())
                })
                .collect();
            control.queues().send_to_hosts(cancels).await?;
        }
    }
    Ok(())
}

/// A look at a provisioning blue/green deployment's copy (a fleet check, or the tick):
/// once its instances exist, the deployment planned over both fleets starts; one that
/// cannot be planned fails, which removes the copy. `repost`: look again shortly while
/// the copy is not ready.
pub async fn look_at_copy(
    control: &ControlPlane,
    deployment_id: &str,
    repost: bool,
) -> Result<(), ApiError> {
    let looked = Box::pin(deploy::finish_provisioning(control, deployment_id)).await?;
    if repost && matches!(looked, deploy::Provisioned::Waiting) {
        let delay = crate::blue_green::FLEET_CHECK_DELAY_SECONDS;
        crate::blue_green::post_fleet_check(control, deployment_id, delay).await?;
    }
    match looked {
        deploy::Provisioned::Planned(created) => {
            tracing::info!(%deployment_id, hosts = created.record.state.counts.pending, "replacement fleet provisioned: the deployment starts");
            start(control, &created).await;
        }
        deploy::Provisioned::Refused(error) => {
            tracing::warn!(%deployment_id, %error, "the provisioned deployment cannot be planned: it fails");
            let input = Input::ProvisioningFailed {
                now: now_millis(),
                message: format!(
                    "The deployment failed: it could not be planned over its replacement fleet: {}",
                    error.message
                ),
            };
            Box::pin(step(control, deployment_id, &[input])).await?;
        }
        deploy::Provisioned::Waiting | deploy::Provisioned::Over => {}
    }
    Ok(())
}

/// Tells the lifecycle function that a launch's deployment ended: it alone may complete
/// lifecycle actions.
async fn launch_finished<P: EnginePorts>(control: &P, deployment_id: &str) -> Result<(), ApiError> {
    let Some(queue_url) = control.settings().lifecycle_queue_url.as_deref() else {
        return Err(ApiError::internal(
            "GANTRY_LIFECYCLE_QUEUE_URL is not set: cannot complete a launch's lifecycle action",
        ));
    };
    control
        .queues()
        .send_to_queue(
            queue_url,
            json!({"gantryDeploymentFinished": deployment_id}).to_string(),
        )
        .await
}

/// A running deployment that watches CloudWatch alarms polls them at every batch boundary
/// (a host finishes, or a batch is about to be sent) and on every tick; the result is an
/// input to the state machine, applied before the inputs that reached the boundary.
struct AlarmPoll<'a, P> {
    control: &'a P,
}

impl<P: EnginePorts> transition::Precheck<DeploymentSpec> for AlarmPoll<'_, P> {
    fn wanted(
        &self,
        record: &DeploymentRecord<DeploymentSpec>,
        inputs: &[Input],
        trial: &[Effect],
    ) -> bool {
        let boundary = inputs
            .iter()
            .any(|input| matches!(input, Input::Tick { .. }))
            || trial.iter().any(|effect| {
                matches!(
                    effect,
                    Effect::Dispatch { .. } | Effect::RecordHealth { .. }
                )
            });
        boundary
            && record.state.alarms.is_some()
            && record.state.status == DeploymentStatus::InProgress
            && record.spec.alarm_configuration.watches()
    }

    async fn check(&self, record: &DeploymentRecord<DeploymentSpec>, now: Millis) -> Input {
        let names = record.spec.alarm_configuration.names();
        let check = self.control.check_alarms(&names).await;
        if check != AlarmCheck::Clear {
            tracing::warn!(?check, "alarm check stops the deployment unless ignored");
        }
        Input::Alarm { now, check }
    }
}

#[cfg(test)]
mod tests;
