//! Sending a batch's commands: each host's record, then its command, then its
//! InstanceStart notification, a chunk at a time; a batch larger than a slice fans out
//! to the lifecycle queue, one message a slice, so no invocation's work grows with the
//! fleet.

use super::EnginePorts;
use super::Entry;
use crate::error::ApiError;
use crate::model::{DeploymentSpec, now_millis};
use crate::ports::{DeploymentLog, HostQueues};
use crate::store::{DeploymentRecord, OutboxEntry};
use gantry_core::deployment::{Effect, NotificationEvent, TargetState};
use gantry_core::wire::Cancel;
use serde_json::json;

/// Hosts sent their command between two heartbeats of a dispatch: well within the
/// tick's grace even where SQS is slow (moto: about 10 s).
const DISPATCH_CHUNK: usize = 250;

/// The most hosts one slice sends its command to: one transaction of their records. A
/// larger `Dispatch` fans out: a message a slice on the lifecycle queue, carried out by
/// the lifecycle function (Lambda runs as many at once as the queue holds), so that no
/// invocation's work grows with the fleet. An invocation takes up to ten messages (the
/// event source's batch): 250 hosts. With slices of 100, moto's 4 to 8 s a slice ran a
/// batch of ten past the function's 30 s in `make bench-scale` at 1,000 hosts.
pub const DISPATCH_SLICE: u32 = 25;

/// One slice of a fanned-out dispatch: `{"gantryDispatch": {..}}` on the lifecycle queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchSlice {
    pub deployment_id: String,
    pub first: u32,
    pub count: u32,
}

/// The slices of hosts `first..first + count`, each at most [`DISPATCH_SLICE`].
pub fn slices(deployment_id: &str, first: u32, count: u32) -> Vec<DispatchSlice> {
    let end = first.saturating_add(count);
    (first..end)
        .step_by(DISPATCH_SLICE as usize)
        .map(|start| DispatchSlice {
            deployment_id: deployment_id.to_owned(),
            first: start,
            count: DISPATCH_SLICE.min(end - start),
        })
        .collect()
}

/// Carries out a large `Dispatch` by posting its slices (ten to a request). Posted, the
/// effect is done: SQS keeps each slice until an invocation carried it out.
pub(super) async fn fan_out<P: EnginePorts>(
    control: &P,
    queue_url: &str,
    deployment_id: &str,
    first: u32,
    count: u32,
) -> Result<(), ApiError> {
    let bodies: Vec<String> = slices(deployment_id, first, count)
        .into_iter()
        .map(|slice| json!({ "gantryDispatch": slice }).to_string())
        .collect();
    tracing::info!(hosts = count, slices = bodies.len(), "dispatch fanned out");
    control.queues().send_batch(queue_url, &bodies).await
}

/// The lifecycle function: one slice of a fanned-out dispatch, as [`dispatch`] sends it
/// (run again, it creates nothing twice and sends commands hosts ignore).
pub async fn dispatch_slice<P: EnginePorts>(
    control: &P,
    slice: DispatchSlice,
) -> Result<(), ApiError> {
    let record = match control
        .log()
        .load_deployment::<DeploymentSpec>(&slice.deployment_id)
        .await
    {
        Ok(record) => record,
        Err(crate::store::StoreError::NotFound(_)) => {
            tracing::warn!(deployment_id = %slice.deployment_id, "dispatch slice of a deployment that does not exist; dropped");
            return Ok(());
        }
        Err(error) => return Err(error.into()),
    };
    let count = slice.count.min(DISPATCH_SLICE);
    Box::pin(dispatch(control, &record, slice.first, count, None)).await?;
    tracing::info!(deployment_id = %slice.deployment_id, first = slice.first, hosts = count, "dispatch slice sent");
    // Stopped or failed before or while the slice went out: its hosts were not among
    // those told to skip the rest, so they are told now, after their command (a host
    // reads both and skips every event, which settles the deployment's count).
    let ended = control
        .log()
        .load_deployment::<DeploymentSpec>(&slice.deployment_id)
        .await?
        .state
        .status
        .is_terminal();
    if ended {
        let hosts = control
            .log()
            .plan_slice(&slice.deployment_id, slice.first, count)
            .await?;
        let cancels = hosts
            .into_iter()
            .map(|target| {
                let cancel = Cancel {
                    deployment_id: slice.deployment_id.clone(),
                    instance_id: target.instance_id.clone(),
                };
                (target.instance_id, cancel.to_json())
            })
            .collect();
        control.queues().send_to_hosts(cancels).await?;
    }
    Ok(())
}

/// Sends the deployment's command to the hosts at `first..first + count` of its
/// ordered list: their records first (so that their reports find them, and the tick
/// their deadlines), then the commands, then InstanceStart, a chunk at a time. Between
/// chunks it touches its outbox entry, so that the tick does not run a long dispatch
/// again while this one is still sending. Running it again creates nothing twice and
/// sends the commands again, which hosts ignore.
pub(super) async fn dispatch<P: EnginePorts>(
    control: &P,
    record: &DeploymentRecord<DeploymentSpec>,
    first: u32,
    count: u32,
    entry: Option<(&Entry, &[Effect])>,
) -> Result<(), ApiError> {
    let spec = &record.spec;
    let now = now_millis();
    let targets = control
        .log()
        .plan_slice(&spec.deployment_id, first, count)
        .await?;
    let records: Vec<TargetState> = targets
        .into_iter()
        .zip(first..)
        .map(|(target, index)| record.state.dispatched_target(target, index, now))
        .collect();
    let chunks = records.chunks(DISPATCH_CHUNK).count();
    for (number, chunk) in records.chunks(DISPATCH_CHUNK).enumerate() {
        control
            .log()
            .create_targets(&spec.deployment_id, chunk.to_vec())
            .await?;
        let commands = chunk
            .iter()
            .map(|target| {
                let mut command = spec.command(&target.target.instance_id, target.deadline);
                command.lifecycle_events = record.state.first_stretch(target.index);
                command
            })
            .collect();
        control.queues().send_all(commands).await?;
        if crate::notify::wanted(spec, NotificationEvent::InstanceStart) {
            for target in chunk {
                // Best effort, as every notification: the commands are out.
                let instance_id = &target.target.instance_id;
                if let Err(error) = crate::notify::publish(
                    control,
                    record,
                    NotificationEvent::InstanceStart,
                    Some(instance_id),
                    Some(target),
                )
                .await
                {
                    tracing::warn!(%instance_id, %error, "InstanceStart notification not sent");
                }
            }
        }
        if number + 1 < chunks
            && let Some((entry, effects)) = entry
        {
            let pending = OutboxEntry {
                effects: effects.to_vec(),
                at: now_millis(),
                attempts: entry.attempts,
            };
            control
                .log()
                .rewrite_outbox(&spec.deployment_id, &entry.key, &pending)
                .await?;
        }
    }
    Ok(())
}
