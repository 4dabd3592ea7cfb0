//! batch-advance: agent reports from the reports queue (the SQS event source, with
//! partial batch failures), and the schedule's tick.
//!
//! A report message holds one report or an array of up to ten. Reports are grouped by
//! deployment and applied in runs that fit one transaction (see [`crate::engine::transition`]);
//! each run's effects are carried out by [`crate::engine`].

use crate::control::ControlPlane;
use crate::engine;
use crate::engine::transition;
use crate::error::{ApiError, Exception};
use crate::model::now_millis;
use crate::store::OUTBOX_GRACE_MS;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use gantry_core::deployment::{ApplyError, Input, Millis};
use gantry_core::wire;
use serde_json::json;
use std::collections::BTreeMap;

/// Applies an SQS batch of report messages; the response names the messages to retry
/// (malformed, refused, or not applied), which SQS dead-letters after its receive limit.
pub async fn handle(control: &ControlPlane, event: SqsEvent) -> SqsBatchResponse {
    let messages = event
        .records
        .into_iter()
        .map(|record| ReportMessage {
            sender: record.attributes.get(SENDER_ID).cloned(),
            id: record.message_id.unwrap_or_default(),
            body: record.body.unwrap_or_default(),
        })
        .collect();
    let failed = apply_reports(control, messages).await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|item_identifier| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = item_identifier;
            failure
        })
        .collect();
    response
}

/// The SQS attribute naming the IAM identity that sent a message; SQS sets it, so a
/// sender cannot choose it (see [`gantry_core::identity`]).
pub const SENDER_ID: &str = "SenderId";

/// One message from the reports queue.
pub struct ReportMessage {
    pub id: String,
    pub body: String,
    /// Its `SenderId`.
    pub sender: Option<String>,
}

/// batch-advance for agent reports: applies each deployment's reports in one write
/// and returns the ids of messages to retry (malformed, or not applied for now); SQS
/// dead-letters them after its receive limit. A message may carry several reports; it
/// is retried if any of them was not applied (applying again is a no-op for the rest).
///
/// What can never apply is dropped, never retried, and counted in the log
/// (`reports dropped`): a message without a `SenderId` of the shape SQS gives, before
/// any read; a report for a deployment that does not exist, or for an instance that is
/// not its target; a report its host did not send (also counted on the deployment).
/// Any host may send to the reports queue, so a flood of such reports costs at most one
/// read each, and an honest deployment's reports wait behind no retries.
async fn apply_reports(control: &ControlPlane, messages: Vec<ReportMessage>) -> Vec<String> {
    let now = now_millis();
    let mut failed = Vec::new();
    let mut by_deployment: BTreeMap<String, Vec<(String, Input)>> = BTreeMap::new();
    let message_count = messages.len();
    for message in messages {
        let sender = message.sender.as_deref();
        if !sender.is_some_and(gantry_core::identity::is_sender_id) {
            dropped(1, "no SenderId of the shape SQS gives", None);
            tracing::warn!(message_id = %message.id, ?sender, "report message without a plausible SenderId: dropped");
            continue;
        }
        match wire::reports_from_json(&message.body) {
            Ok(reports) => {
                for report in reports {
                    by_deployment
                        .entry(report.deployment_id.clone())
                        .or_default()
                        .push((
                            message.id.clone(),
                            Input::Report {
                                report,
                                sender: message.sender.clone(),
                                now,
                            },
                        ));
                }
            }
            Err(error) => {
                let message_id = &message.id;
                tracing::warn!(%message_id, %error, "malformed report; leaving it for the dead-letter queue");
                failed.push(message.id);
            }
        }
    }
    // The bench reads this: reports per message, and writes (one per deployment).
    tracing::info!(
        messages = message_count,
        reports = by_deployment.values().map(Vec::len).sum::<usize>(),
        deployments = by_deployment.len(),
        "reports received"
    );
    for (deployment_id, reports) in by_deployment {
        let inputs: Vec<Input> = reports.iter().map(|(_, input)| input.clone()).collect();
        let mut offset = 0;
        for run in transition::chunks(&inputs) {
            let messages = &reports[offset..offset + run.len()];
            offset += run.len();
            // Boxed, as every advance here: inlined, their futures would grow this one
            // past a debug build's thread stack.
            let result = Box::pin(engine::step(control, &deployment_id, run)).await;
            // Not for lost races (applying them one by one would race all the more), nor
            // for a deployment that does not exist, only for what the store refused.
            let refused = result.as_ref().is_err_and(|error| {
                !matches!(
                    error.code,
                    Exception::ConcurrentModification | Exception::ResourceNotFound
                )
            });
            if refused && run.len() > 1 {
                // One report a store call refuses must not hold back its neighbours:
                // each is applied alone, and only those that fail alone are retried.
                tracing::warn!(%deployment_id, reports = run.len(), "a run of reports was not applied; applying each alone");
                for (single, message) in run.chunks(1).zip(messages.chunks(1)) {
                    let result = Box::pin(engine::step(control, &deployment_id, single)).await;
                    Box::pin(settle(
                        control,
                        &deployment_id,
                        result,
                        message,
                        &mut failed,
                    ))
                    .await;
                }
            } else {
                Box::pin(settle(
                    control,
                    &deployment_id,
                    result,
                    messages,
                    &mut failed,
                ))
                .await;
            }
        }
    }
    failed.sort();
    failed.dedup();
    failed
}

/// Records how a run of reports went: reports their host did not send are dropped and
/// counted; the messages of those refused otherwise, or of a run not applied, are retried.
async fn settle(
    control: &ControlPlane,
    deployment_id: &str,
    result: Result<transition::Applied<crate::model::DeploymentSpec>, ApiError>,
    messages: &[(String, Input)],
    failed: &mut Vec<String>,
) {
    let applied = match result {
        Ok(applied) => applied,
        Err(error) if error.code == Exception::ResourceNotFound => {
            // The deployment does not exist (reads are consistent, and a host hears of a
            // deployment only after it is stored): nothing would ever apply them.
            dropped(
                messages.len(),
                "deployment does not exist",
                Some(deployment_id),
            );
            return;
        }
        Err(error) => {
            tracing::warn!(%deployment_id, %error, "reports not applied; they will be retried");
            failed.extend(messages.iter().map(|(id, _)| id.clone()));
            return;
        }
    };
    let mut forged = 0;
    for (index, error) in applied.refused {
        if let ApplyError::ForeignSender {
            instance_id,
            expected,
            found,
        } = &error
        {
            forged += 1;
            tracing::warn!(
                %deployment_id,
                %instance_id,
                %expected,
                sender = %found,
                message_id = %messages[index].0,
                "report not sent by its host: dropped"
            );
        } else if let ApplyError::UnknownInstance(instance_id) = &error {
            tracing::warn!(%deployment_id, %instance_id, message_id = %messages[index].0, "report for an instance that is not a target: dropped");
            dropped(
                1,
                "instance is not a target of the deployment",
                Some(deployment_id),
            );
        } else {
            failed.push(messages[index].0.clone());
        }
    }
    if forged > 0 {
        dropped(
            forged as usize,
            "not sent by the host it is for",
            Some(deployment_id),
        );
    }
    if forged > 0
        && let Err(error) = control
            .store
            .count_forged_reports(deployment_id, forged)
            .await
    {
        tracing::warn!(%deployment_id, %error, "could not count dropped reports");
    }
}

/// Counts reports dropped because they can never apply: the metric filter of the
/// template's alarm on dropped reports reads this line.
fn dropped(reports: usize, reason: &str, deployment_id: Option<&str>) {
    tracing::warn!(
        dropped_reports = reports,
        reason,
        deployment_id = deployment_id.unwrap_or("-"),
        "reports dropped"
    );
}

/// How long a deployment whose tick was fanned out is left to its message: longer than
/// the schedule's minute and a lifecycle queue that is a little behind, so that the next
/// ticks do not post it again meanwhile; short enough that a message lost costs a few
/// minutes at most.
const FANNED_OUT_LEASE_MS: Millis = 3 * 60_000;

/// The schedule: fails silent hosts, opens the next zone, and runs outbox entries
/// whose writer did not finish them, or whose retry is due. One deployment due is
/// served here; several are fanned out, a `{"gantryTick": ..}` message each on the
/// lifecycle queue ([`tick_one`] there), so that no invocation's work grows with the
/// number of deployments due and a slow one delays no other. Each is leased first, so
/// the next tick does not post it again while its message waits. Returns how many
/// deployments were due.
pub async fn tick(control: &ControlPlane) -> Result<usize, ApiError> {
    let now = now_millis();
    serve_lambda_deployments(control, now).await;
    let due = control.store.due_deployments(now).await?;
    let queue = control.settings.lifecycle_queue_url.as_deref();
    let (Some(queue), true) = (queue, due.len() > 1) else {
        serve_due(control, &due, now).await;
        return Ok(due.len());
    };
    let mut bodies = Vec::with_capacity(due.len());
    for deployment_id in &due {
        // One not leased is left for the next tick; the others go out.
        if let Err(error) = control
            .store
            .lease(deployment_id, now + FANNED_OUT_LEASE_MS)
            .await
        {
            tracing::warn!(%deployment_id, %error, "not leased; the next tick looks at it");
            continue;
        }
        bodies.push(json!({"gantryTick": {"deploymentId": deployment_id}}).to_string());
    }
    control.queues.send_batch(queue, &bodies).await?;
    tracing::info!(deployments = due.len(), "tick fanned out");
    Ok(due.len())
}

/// The schedule as it runs at `now`, serving every deployment due in this invocation
/// (tests move `now` ahead to see what the schedule does).
pub async fn tick_at(control: &ControlPlane, now: Millis) -> Result<usize, ApiError> {
    serve_lambda_deployments(control, now).await;
    let due = control.store.due_deployments(now).await?;
    serve_due(control, &due, now).await;
    Ok(due.len())
}

/// The Lambda platform's deployments due (see [`crate::lambda_deployments::tick`]).
async fn serve_lambda_deployments(control: &ControlPlane, now: Millis) {
    if let Err(error) = crate::lambda_deployments::tick(control, now).await {
        tracing::warn!(%error, "Lambda deployments not looked at; the next tick does");
    }
}

async fn serve_due(control: &ControlPlane, due: &[String], now: Millis) {
    for deployment_id in due {
        if let Err(error) = tick_one(control, deployment_id, now).await {
            tracing::warn!(%deployment_id, %error, "tick failed; the next one retries");
        }
    }
}

/// One deployment's tick at `now`: the schedule's, or the lifecycle function's for a
/// fanned-out `gantryTick`.
pub async fn tick_one(
    control: &ControlPlane,
    deployment_id: &str,
    now: Millis,
) -> Result<(), ApiError> {
    // Hold it for a while first: if this invocation dies here (a timeout), the next
    // tick looks at other deployments before coming back to this one.
    control
        .store
        .lease(deployment_id, now + OUTBOX_GRACE_MS)
        .await?;
    // Hosts waiting on the load balancer past their deadline get a last look first.
    let mut inputs = crate::traffic_steps::last_looks(control, deployment_id, now).await?;
    inputs.push(Input::Tick { now });
    // Each round fails up to a transaction's worth of silent hosts.
    let mut applied = Box::pin(engine::step(control, deployment_id, &inputs)).await?;
    while applied.hosts_written > 0 {
        applied = Box::pin(engine::step(control, deployment_id, &[Input::Tick { now }])).await?;
    }
    // A blue/green copy still provisioning is looked at (a fleet check may be lost).
    let state = &applied.record.state;
    if state.provisioning() && !state.status.is_terminal() {
        if let Err(error) = Box::pin(engine::look_at_copy(control, deployment_id, false)).await {
            tracing::warn!(%deployment_id, %error, "could not look at the replacement fleet; the next tick does");
        }
        applied = Box::pin(engine::step(control, deployment_id, &[Input::Tick { now }])).await?;
    }
    let record = &applied.record;
    // A launch waits on its lifecycle hook while it is deployed to: each look tells Auto
    // Scaling so, or a deployment longer than the hook's heartbeat timeout would have the
    // instance abandoned under it.
    if let Some(action) = &record.spec.lifecycle_action
        && !record.state.status.is_terminal()
        && let Err(error) = control.lifecycle.heartbeat(action).await
    {
        tracing::warn!(%deployment_id, %error, "launch heartbeat not recorded; the next tick tries again");
    }
    // Effects not carried out keep the deployment on the tick, whatever its status:
    // a lock not yet released, a rollback not yet started.
    let mut retry_at = (!applied.effects_done).then_some(now + OUTBOX_GRACE_MS);
    for (key, pending) in &record.outbox {
        if Some(key) == applied.outbox_entry.as_ref() {
            continue;
        }
        let next = if now < pending.due() {
            Some(pending.due())
        } else {
            tracing::info!(%deployment_id, entry = %key, attempts = pending.attempts, "running effects left in the outbox");
            let entry = engine::Entry {
                key: key.clone(),
                attempts: pending.attempts,
                late: true,
            };
            engine::execute(control, record, &pending.effects, Some(entry)).await
        };
        retry_at = retry_at.into_iter().chain(next).min();
    }
    // The exact next wakeup, now that the overdue hosts are failed: the earliest
    // deadline left, a zone wait, leftover effects, or an idle look while running.
    let state = &record.state;
    let settled = state.status.is_terminal() && state.counts.in_progress == 0;
    let next = if settled && retry_at.is_none() {
        None
    } else {
        let deadline = control.store.earliest_deadline(deployment_id).await?;
        [
            deadline.map(|at| at + 1),
            state.next_wakeup(),
            retry_at,
            crate::store::idle_look(state, now),
        ]
        .into_iter()
        .flatten()
        .min()
    };
    control
        .store
        .reschedule(deployment_id, record.version, next)
        .await?;
    Ok(())
}
