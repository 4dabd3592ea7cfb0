//! CodeDeploy trigger messages: the JSON each subscribed SNS topic receives.
//!
//! Deployment events carry `deploymentOverview` and `status`; instance events carry
//! `instanceId` (the instance's ARN), `instanceStatus` and `lifecycleEvents`. Times and
//! counts are strings, as CodeDeploy sends them. `DeploymentReady` and `InstanceReady`
//! are accepted in a trigger, as CodeDeploy accepts them, and (as there) never sent for
//! an in-place deployment, which has no Ready state.

use crate::adapters::PublishError;
use crate::error::ApiError;
use crate::model::{DeploymentSpec, now_millis, seconds, serialized_name};
use crate::ports::{DeploymentLog, Ports, Topics};
use crate::store::DeploymentRecord;
use gantry_core::deployment::{Deployment, Millis, NotificationEvent, TargetState};
use serde_json::{Value, json};

fn time(millis: Option<Millis>) -> Value {
    millis.map_or(Value::Null, |millis| {
        Value::String(format!("{:.3}", seconds(millis)))
    })
}

/// An instance as CodeDeploy's trigger messages name it: its ARN, an EC2 instance's or
/// an on-premises instance's (`arn:aws:codedeploy:...:instance/<name>`).
fn instance_arn(
    region: &str,
    account_id: &str,
    instance_id: &str,
    target: Option<&TargetState>,
) -> String {
    let ec2 = match target {
        Some(target) => target.target.sender.is_ec2(),
        None => instance_id.starts_with("i-"),
    };
    if ec2 {
        format!("arn:aws:ec2:{region}:{account_id}:instance/{instance_id}")
    } else {
        format!("arn:aws:codedeploy:{region}:{account_id}:instance/{instance_id}")
    }
}

/// CodeDeploy's `status` word in trigger messages and subjects.
fn status_word(event: NotificationEvent) -> &'static str {
    match event {
        NotificationEvent::DeploymentStart => "CREATED",
        NotificationEvent::DeploymentSuccess => "SUCCEEDED",
        NotificationEvent::DeploymentFailure => "FAILED",
        NotificationEvent::DeploymentStop => "STOPPED",
        NotificationEvent::DeploymentRollback => "ROLLBACK",
        NotificationEvent::InstanceStart => "INSTANCE_START",
        NotificationEvent::InstanceSuccess => "INSTANCE_SUCCEEDED",
        NotificationEvent::InstanceFailure => "INSTANCE_FAILED",
        NotificationEvent::DeploymentReady => "READY",
        NotificationEvent::InstanceReady => "INSTANCE_READY",
    }
}

/// The trigger message for one event.
pub fn message(
    region: &str,
    account_id: &str,
    trigger_name: &str,
    spec: &DeploymentSpec,
    state: &Deployment,
    event: NotificationEvent,
    instance: Option<(&str, Option<&TargetState>)>,
) -> Value {
    match instance {
        Some((instance_id, target)) => {
            let events: Vec<Value> = target
                .map(|target| {
                    target
                        .events
                        .iter()
                        .map(|record| {
                            json!({
                                "LifecycleEvent": record.event.name(),
                                "LifecycleEventStatus": serialized_name(&record.status),
                                "StartTime": time(record.start_time),
                                "EndTime": time(record.end_time),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let last_updated = target
                .and_then(TargetState::last_updated)
                .or(Some(state.create_time));
            json!({
                "region": region,
                "accountId": account_id,
                "eventTriggerName": trigger_name,
                "applicationName": spec.application_name,
                "deploymentGroupName": spec.deployment_group_name,
                "deploymentId": spec.deployment_id,
                "instanceId": instance_arn(region, account_id, instance_id, target),
                "lastUpdatedAt": time(last_updated),
                "instanceStatus": target.map(|t| serialized_name(&t.status)).unwrap_or_default(),
                "lifecycleEvents": events,
            })
        }
        None => {
            let counts = state.counts();
            deployment_message(
                region,
                account_id,
                trigger_name,
                DeploymentNames {
                    application: &spec.application_name,
                    group: &spec.deployment_group_name,
                    deployment_id: &spec.deployment_id,
                },
                (state.create_time, state.complete_time),
                [
                    counts.failed,
                    counts.in_progress,
                    counts.pending,
                    counts.skipped,
                    counts.succeeded,
                ],
                event,
                state.error.as_ref(),
            )
        }
    }
}

/// Which deployment a trigger message is about.
pub struct DeploymentNames<'a> {
    pub application: &'a str,
    pub group: &'a str,
    pub deployment_id: &'a str,
}

/// A deployment event's trigger message, of either platform: `overview` counts targets
/// Failed, InProgress, Pending, Skipped and Succeeded; `times` are its create and
/// complete times.
#[allow(clippy::too_many_arguments)]
pub fn deployment_message(
    region: &str,
    account_id: &str,
    trigger_name: &str,
    names: DeploymentNames<'_>,
    times: (Millis, Option<Millis>),
    overview: [u32; 5],
    event: NotificationEvent,
    error: Option<&gantry_core::deployment::ErrorInformation>,
) -> Value {
    let [failed, in_progress, pending, skipped, succeeded] = overview.map(|n| n.to_string());
    let mut message = json!({
        "region": region,
        "accountId": account_id,
        "eventTriggerName": trigger_name,
        "applicationName": names.application,
        "deploymentId": names.deployment_id,
        "deploymentGroupName": names.group,
        "createTime": time(Some(times.0)),
        "completeTime": time(times.1),
        "deploymentOverview": {
            "Failed": failed,
            "InProgress": in_progress,
            "Pending": pending,
            "Skipped": skipped,
            "Succeeded": succeeded,
        },
        "status": status_word(event),
    });
    if let Some(error) = error {
        message["errorInformation"] = json!({
            "ErrorCode": error.code,
            "ErrorMessage": error.message,
        });
    }
    message
}

/// The subject of a trigger message.
pub fn subject(
    event: NotificationEvent,
    deployment_id: &str,
    region: &str,
    application: &str,
) -> String {
    format!(
        "{}: Gantry {deployment_id} in {region} to {application}",
        status_word(event)
    )
}

/// Whether any trigger of the deployment's group asks for the event.
pub fn wanted(spec: &DeploymentSpec, event: NotificationEvent) -> bool {
    spec.trigger_configurations
        .iter()
        .any(|trigger| subscribes(trigger, event))
}

fn subscribes(trigger: &crate::model::TriggerConfig, event: NotificationEvent) -> bool {
    let event_name = format!("{event:?}");
    trigger
        .trigger_events
        .iter()
        .any(|wanted| wanted == &event_name)
}

/// Publishes the event to every trigger of the deployment's group that asks for it. An
/// instance event carries the host's record (`target`), when it has one.
pub async fn publish<P: Ports>(
    control: &P,
    record: &DeploymentRecord<DeploymentSpec>,
    event: NotificationEvent,
    instance_id: Option<&str>,
    target: Option<&TargetState>,
) -> Result<(), ApiError> {
    let spec = &record.spec;
    let settings = control.settings();
    publish_to(
        control,
        &spec.trigger_configurations,
        event,
        &spec.deployment_id,
        &spec.application_name,
        |trigger_name| {
            message(
                &settings.region,
                &settings.account_id,
                trigger_name,
                spec,
                &record.state,
                event,
                instance_id.map(|id| (id, target)),
            )
        },
    )
    .await
}

/// Publishes `message(trigger name)` to each of `triggers` that asks for `event`, for a
/// deployment of either platform.
///
/// A trigger whose topic refuses the message for good (deleted, not ours) is recorded
/// on the deployment and logged, and blocks nothing. One SNS could not take for now is
/// an error after the other triggers had theirs: the effect is retried, and triggers
/// that already got the message may get it again, as SNS delivers at least once anyway.
pub async fn publish_to<P: Ports>(
    control: &P,
    triggers: &[crate::model::TriggerConfig],
    event: NotificationEvent,
    deployment_id: &str,
    application: &str,
    message: impl Fn(&str) -> Value,
) -> Result<(), ApiError> {
    let mut retry = None;
    for trigger in triggers {
        if !subscribes(trigger, event) {
            continue;
        }
        let body = message(&trigger.trigger_name);
        let subject = subject(
            event,
            deployment_id,
            &control.settings().region,
            application,
        );
        match control
            .topics()
            .publish(&trigger.trigger_target_arn, &subject, &body.to_string())
            .await
        {
            Ok(()) => {}
            Err(PublishError::Refused(reason)) => {
                let effect = format!(
                    "{event:?} notification to trigger {} ({})",
                    trigger.trigger_name, trigger.trigger_target_arn
                );
                tracing::warn!(%deployment_id, %effect, %reason, "notification refused for good; it blocks nothing");
                control
                    .log()
                    .record_failed_effect(
                        deployment_id,
                        &format!("Notify#{}", trigger.trigger_name),
                        &effect,
                        &reason,
                        now_millis(),
                    )
                    .await?;
            }
            Err(PublishError::Unavailable(error)) => {
                retry.get_or_insert(error);
            }
        }
    }
    retry.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::deployment::TargetStatus;
    use gantry_core::identity::Sender;
    use gantry_core::planner::{Standing, Target};

    fn target(id: &str, sender: Sender) -> TargetState {
        TargetState {
            target: Target {
                instance_id: id.into(),
                zone: None,
                standing: Standing::Old,
                sender,
            },
            index: 0,
            status: TargetStatus::Succeeded,
            events: Vec::new(),
            dispatched_at: None,
            deadline: None,
        }
    }

    #[test]
    fn instances_are_named_by_their_arn() {
        let ec2 = target("i-0abc", Sender::InstanceRole);
        assert_eq!(
            instance_arn("eu-west-1", "111122223333", "i-0abc", Some(&ec2)),
            "arn:aws:ec2:eu-west-1:111122223333:instance/i-0abc"
        );
        // An on-premises instance may be named like an EC2 one; its record says which.
        let on_premises = target("i-lab-7", Sender::Principal("AIDAHOST".into()));
        assert_eq!(
            instance_arn("eu-west-1", "111122223333", "i-lab-7", Some(&on_premises)),
            "arn:aws:codedeploy:eu-west-1:111122223333:instance/i-lab-7"
        );
    }
}
