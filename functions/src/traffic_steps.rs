//! The load balancer steps of an in-place deployment, between the agent's commands.
//!
//! With `loadBalancerInfo.targetGroupInfoList` and WITH_TRAFFIC_CONTROL, the state
//! machine stops a host after BeforeBlockTraffic and after BeforeAllowTraffic and asks
//! for a step ([`Effect::Traffic`](gantry_core::deployment::Effect::Traffic)). [`start`]
//! asks ELB for it (deregister, or register) and posts a [`TrafficCheck`] to the
//! lifecycle queue, delayed until the step can first have ended (the deregistration
//! delay, or health checks' interval times their threshold); [`check`] looks at the
//! host's target health and, once it is drained or healthy, feeds the state machine
//! [`Input::Traffic`], which sends the host its next command; until then it looks again
//! every second. So a step ends within about a second of ELB's change, not at a
//! schedule's tick.
//!
//! A check that is lost (a failed send, a queue purged) delays nothing for long: the
//! tick takes a last look at every host whose step is past its deadline
//! ([`last_looks`]) before failing it, and says what ELB last reported.

use crate::control::ControlPlane;
use crate::error::ApiError;
use crate::model::{DeploymentSpec, now_millis};
use crate::store::StoreError;
use crate::traffic::{Progress, TrafficError};
use gantry_core::deployment::{Input, Millis, TargetState, TargetStatus, TrafficOutcome};
use gantry_core::lifecycle::{LifecycleEvent, Performer};
use gantry_core::wire::EventStatus;
use serde::{Deserialize, Serialize};

/// How long after a look that found the host still waiting ELB is asked again. The
/// first look waits for the soonest the step can end (see [`first_look_after`]), so
/// this only paces the last stretch.
pub const CHECK_DELAY_SECONDS: i32 = 1;

/// When to take the first look after asking ELB for a step: when it can first have
/// ended, the longest deregistration delay (BlockTraffic) or the soonest a target can
/// pass its health checks (AllowTraffic), over the groups; at least a second, at most
/// SQS's 15 minutes of delay.
pub fn first_look_after(groups: &[crate::traffic::TargetGroupRef], event: LifecycleEvent) -> i32 {
    let soonest = groups
        .iter()
        .map(|group| match event {
            LifecycleEvent::BlockTraffic => group.deregistration_delay_seconds,
            _ => group.healthy_after_seconds,
        })
        .max()
        .unwrap_or(0);
    i32::try_from(soonest).unwrap_or(900).clamp(1, 900)
}

/// A look to take at one host's traffic step: `{"gantryTrafficCheck": {..}}` on the
/// lifecycle queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficCheck {
    pub deployment_id: String,
    pub instance_id: String,
    pub event: LifecycleEvent,
    /// ELB refused the change itself: the step fails with this, without a look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// Carries out `Effect::Traffic`: asks ELB to take the host out of the deployment's
/// target groups (BlockTraffic) or put it back (AllowTraffic), then schedules the first
/// look. Safe to repeat: both changes are idempotent.
pub async fn start(
    control: &ControlPlane,
    spec: &DeploymentSpec,
    instance_id: &str,
    event: LifecycleEvent,
) -> Result<(), ApiError> {
    let groups = &spec.target_groups;
    let changed = match event {
        LifecycleEvent::BlockTraffic => control.load_balancers.block(groups, instance_id).await,
        LifecycleEvent::AllowTraffic => control.load_balancers.allow(groups, instance_id).await,
        other => {
            return Err(ApiError::internal(format!(
                "{other} is not a load balancer step"
            )));
        }
    };
    let refused = match changed {
        Ok(()) => None,
        Err(TrafficError::Refused(message)) => Some(message),
        Err(TrafficError::Unavailable(message)) => return Err(ApiError::internal(message)),
    };
    tracing::info!(%instance_id, %event, refused = refused.is_some(), "load balancer step asked for");
    let delay = if refused.is_some() {
        0
    } else {
        first_look_after(groups, event)
    };
    let check = TrafficCheck {
        deployment_id: spec.deployment_id.clone(),
        instance_id: instance_id.to_owned(),
        event,
        refused,
    };
    post(control, &check, delay).await
}

async fn post(control: &ControlPlane, check: &TrafficCheck, delay: i32) -> Result<(), ApiError> {
    let Some(queue_url) = control.settings.lifecycle_queue_url.as_deref() else {
        return Err(ApiError::internal(
            "GANTRY_LIFECYCLE_QUEUE_URL is not set: cannot watch a host's load balancer step",
        ));
    };
    let body = serde_json::json!({ "gantryTrafficCheck": check }).to_string();
    control.queues.send_delayed(queue_url, body, delay).await
}

/// The lifecycle function: one look at a host's traffic step. When the step ended,
/// returns the input that tells the state machine, for the caller to apply; when not, the
/// look is posted again until the step's deadline, after which the tick decides.
pub async fn check(control: &ControlPlane, check: TrafficCheck) -> Result<Option<Input>, ApiError> {
    let span = tracing::info_span!(
        "traffic_check",
        deployment_id = %check.deployment_id,
        instance_id = %check.instance_id,
        event = %check.event,
    );
    let _entered = span.enter();
    let record = match control
        .store
        .load_deployment::<DeploymentSpec>(&check.deployment_id)
        .await
    {
        Ok(record) => record,
        Err(StoreError::NotFound(_)) => {
            tracing::warn!("traffic check for a deployment that does not exist; dropped");
            return Ok(None);
        }
        Err(error) => return Err(error.into()),
    };
    let Some(target) = waiting_target(control, &check.deployment_id, &check.instance_id).await?
    else {
        return Ok(None); // the step ended already: a repeated or stale check
    };
    if waiting_on(&target) != Some(check.event) {
        return Ok(None);
    }
    let outcome = match &check.refused {
        Some(message) => Some(TrafficOutcome::Failed {
            message: message.clone(),
        }),
        None => match look(control, &record.spec, &check.instance_id, check.event).await? {
            Ok(Progress::Done) => Some(TrafficOutcome::Done),
            Ok(Progress::Waiting(why)) => {
                tracing::debug!(%why, "still waiting on the load balancer");
                None
            }
            Err(message) => Some(TrafficOutcome::Failed { message }),
        },
    };
    let now = now_millis();
    match outcome {
        Some(outcome) => {
            return Ok(Some(Input::Traffic {
                instance_id: check.instance_id.clone(),
                event: check.event,
                outcome,
                now,
            }));
        }
        // Past the deadline the tick takes the last look, and fails the host if need be.
        None if target.deadline.is_some_and(|deadline| now > deadline) => {}
        None => post(control, &check, CHECK_DELAY_SECONDS).await?,
    }
    Ok(None)
}

/// The tick, before it fails hosts past their deadline: the outcome of each overdue
/// host's traffic step, as ELB reports it now. A host found drained or healthy goes on;
/// one still waiting fails with what ELB says, which says more than "no report".
pub async fn last_looks(
    control: &ControlPlane,
    deployment_id: &str,
    now: Millis,
) -> Result<Vec<Input>, ApiError> {
    let overdue = control
        .store
        .overdue_targets(deployment_id, now, 25)
        .await?;
    if overdue.is_empty() {
        return Ok(Vec::new());
    }
    let targets = control.store.load_targets(deployment_id, &overdue).await?;
    let waiting: Vec<(String, LifecycleEvent)> = targets
        .values()
        .filter_map(|target| {
            let event = waiting_on(&target.value)?;
            Some((target.value.target.instance_id.clone(), event))
        })
        .collect();
    if waiting.is_empty() {
        return Ok(Vec::new());
    }
    let record = control
        .store
        .load_deployment::<DeploymentSpec>(deployment_id)
        .await?;
    let mut inputs = Vec::new();
    for (instance_id, event) in waiting {
        let outcome = match look(control, &record.spec, &instance_id, event).await {
            Ok(Ok(Progress::Done)) => TrafficOutcome::Done,
            Ok(Err(message)) => TrafficOutcome::Failed { message },
            Ok(Ok(Progress::Waiting(why))) => TrafficOutcome::Failed {
                message: match event {
                    LifecycleEvent::BlockTraffic => format!(
                        "{instance_id} did not leave its target groups by the BlockTraffic deadline: {why}"
                    ),
                    _ => format!(
                        "{instance_id} was not healthy in its target groups by the {event} deadline: {why}. Check the target group's health check and the application"
                    ),
                },
            },
            Err(error) => {
                // ELB cannot say: the host fails for its deadline, as any silent one.
                tracing::warn!(%instance_id, %error, "last look at a traffic step failed");
                continue;
            }
        };
        inputs.push(Input::Traffic {
            instance_id,
            event,
            outcome,
            now,
        });
    }
    Ok(inputs)
}

/// Where ELB has got with a host's step; `Err` inside when ELB refuses for good (a
/// target group deleted meanwhile), which fails the step.
async fn look(
    control: &ControlPlane,
    spec: &DeploymentSpec,
    instance_id: &str,
    event: LifecycleEvent,
) -> Result<Result<Progress, String>, ApiError> {
    let groups = &spec.target_groups;
    let progress = match event {
        LifecycleEvent::BlockTraffic => control.load_balancers.blocked(groups, instance_id).await,
        _ => control.load_balancers.allowed(groups, instance_id).await,
    };
    match progress {
        Ok(progress) => Ok(Ok(progress)),
        Err(TrafficError::Refused(message)) => Ok(Err(message)),
        Err(TrafficError::Unavailable(message)) => Err(ApiError::internal(message)),
    }
}

async fn waiting_target(
    control: &ControlPlane,
    deployment_id: &str,
    instance_id: &str,
) -> Result<Option<TargetState>, ApiError> {
    let mut targets = control
        .store
        .load_targets(deployment_id, &[instance_id.to_owned()])
        .await?;
    Ok(targets
        .remove(instance_id)
        .map(|versioned| versioned.value)
        .filter(|target| target.status == TargetStatus::InProgress))
}

/// Whether the host is still in the load balancer step `event` of the deployment.
pub async fn still_waiting(
    control: &ControlPlane,
    deployment_id: &str,
    instance_id: &str,
    event: LifecycleEvent,
) -> Result<bool, ApiError> {
    let target = waiting_target(control, deployment_id, instance_id).await?;
    Ok(target.as_ref().and_then(waiting_on) == Some(event))
}

/// The load balancer step a deploying host is in, if any.
fn waiting_on(target: &TargetState) -> Option<LifecycleEvent> {
    if target.status != TargetStatus::InProgress {
        return None;
    }
    target
        .events
        .iter()
        .find(|record| {
            record.status == EventStatus::InProgress
                && record.event.performer() == Performer::ControlPlane
        })
        .map(|record| record.event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::TargetGroupRef;

    fn group(drain: u32, healthy: u32) -> TargetGroupRef {
        TargetGroupRef {
            name: "web".into(),
            arn: "arn".into(),
            deregistration_delay_seconds: drain,
            healthy_after_seconds: healthy,
        }
    }

    #[test]
    fn the_first_look_waits_for_the_soonest_the_step_can_end() {
        let groups = [group(300, 10), group(5, 150)];
        assert_eq!(first_look_after(&groups, LifecycleEvent::BlockTraffic), 300);
        assert_eq!(first_look_after(&groups, LifecycleEvent::AllowTraffic), 150);
        assert_eq!(
            first_look_after(&[group(0, 0)], LifecycleEvent::AllowTraffic),
            1
        );
        assert_eq!(
            first_look_after(&[group(3600, 0)], LifecycleEvent::BlockTraffic),
            900
        );
    }
}
