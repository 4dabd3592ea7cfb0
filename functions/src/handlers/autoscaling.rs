//! Auto Scaling lifecycle hooks: deploy to instances as they launch, as CodeDeploy does.
//!
//! Creating or updating a deployment group with Auto Scaling groups puts a launch hook on
//! each (`gantry-<deployment group id>`) whose notifications go to the lifecycle queue,
//! with the group's names as notification metadata. For each launch, the `lifecycle`
//! function deploys the group's last successful revision to that one instance (creator
//! `autoscaling`), then completes the lifecycle action: CONTINUE when the deployment
//! succeeds, ABANDON when it fails, so that Auto Scaling replaces the instance.
//!
//! Deployments end in other functions (batch-advance, api). They post a
//! `{"gantryDeploymentFinished": "<id>"}` message to the same queue, so that only the
//! lifecycle function needs `autoscaling:CompleteLifecycleAction`.

use crate::adapters::{LAUNCHING, TERMINATING};
use crate::control::ControlPlane;
use crate::deploy::{self, CreateDeploymentInput, Origin, deployment_id_for};
use crate::engine;
use crate::error::{ApiError, Exception};
use crate::model::{DeploymentSpec, LifecycleAction};
use crate::store::{DeploymentRecord, StoreError};
use aws_lambda_events::event::sns::SnsEvent;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use gantry_core::deployment::DeploymentStatus;
use gantry_core::wire::Creator;
use serde::Deserialize;
use serde_json::Value;

/// A message on the lifecycle queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleMessage {
    /// Auto Scaling holds a lifecycle action for an instance.
    Transition(Notification),
    /// A deployment for a launching instance ended: complete its lifecycle action.
    DeploymentFinished { deployment_id: String },
    /// `autoscaling:TEST_NOTIFICATION`, sent when a hook is created.
    Test,
    /// Look at a host's load balancer step (see [`crate::traffic_steps`]).
    TrafficCheck(crate::traffic_steps::TrafficCheck),
    /// Look at a provisioning blue/green deployment's copy (see [`crate::blue_green`]).
    FleetCheck { deployment_id: String },
    /// Send one slice of a large dispatch (see [`crate::engine::DISPATCH_SLICE`]).
    DispatchSlice(crate::engine::DispatchSlice),
    /// Run a deployment's outbox entry whose fleet effects another function handed
    /// off (see [`crate::engine::is_fleet_effect`]).
    Effects {
        deployment_id: String,
        entry: String,
    },
    /// One deployment's tick, fanned out by the schedule (see
    /// [`crate::handlers::batch_advance::tick`]).
    Tick { deployment_id: String },
}

/// Auto Scaling's lifecycle notification, as it sends it to SQS.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Notification {
    pub lifecycle_transition: String,
    pub auto_scaling_group_name: String,
    pub lifecycle_hook_name: String,
    pub lifecycle_action_token: String,
    #[serde(rename = "EC2InstanceId")]
    pub ec2_instance_id: String,
    /// What Gantry put on the hook: `{"applicationName": .., "deploymentGroupName": ..}`.
    #[serde(default)]
    pub notification_metadata: Option<String>,
}

/// The hook's metadata: which deployment group a launch belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HookMetadata {
    application_name: String,
    deployment_group_name: String,
}

impl LifecycleMessage {
    pub fn parse(body: &str) -> Result<Self, String> {
        let value: Value =
            serde_json::from_str(body).map_err(|error| format!("not JSON: {error}"))?;
        // Through an SNS topic (subscribed to the queue without raw delivery), Auto
        // Scaling's notification is the envelope's Message.
        if value["Type"] == "Notification"
            && let Some(message) = value["Message"].as_str()
        {
            return Self::parse_notification(message)
                .map_err(|error| format!("SNS Message: {error}"));
        }
        if let Some(check) = value.get("gantryTrafficCheck") {
            return serde_json::from_value(check.clone())
                .map(Self::TrafficCheck)
                .map_err(|error| format!("gantryTrafficCheck: {error}"));
        }
        if let Some(slice) = value.get("gantryDispatch") {
            return serde_json::from_value(slice.clone())
                .map(Self::DispatchSlice)
                .map_err(|error| format!("gantryDispatch: {error}"));
        }
        if let Some(handed) = value.get("gantryEffects") {
            let field = |name: &str| {
                handed[name]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("gantryEffects.{name}: must be a string"))
            };
            return Ok(Self::Effects {
                deployment_id: field("deploymentId")?,
                entry: field("entry")?,
            });
        }
        if let Some(id) = value["gantryTick"]["deploymentId"].as_str() {
            return Ok(Self::Tick {
                deployment_id: id.to_owned(),
            });
        }
        if let Some(id) = value["gantryFleetCheck"]["deploymentId"].as_str() {
            return Ok(Self::FleetCheck {
                deployment_id: id.to_owned(),
            });
        }
        if let Some(id) = value["gantryDeploymentFinished"].as_str() {
            return Ok(Self::DeploymentFinished {
                deployment_id: id.to_owned(),
            });
        }
        Self::notification(value)
    }

    /// An Auto Scaling notification, and nothing else: what an SNS topic may carry.
    /// Gantry's own messages (`gantry*`) are taken only from the queue, which only
    /// Gantry's functions and Auto Scaling may send to, never from a topic, which others
    /// may be allowed to publish to.
    pub fn parse_notification(body: &str) -> Result<Self, String> {
        let value: Value =
            serde_json::from_str(body).map_err(|error| format!("not JSON: {error}"))?;
        Self::notification(value)
    }

    fn notification(value: Value) -> Result<Self, String> {
        if value["Event"] == "autoscaling:TEST_NOTIFICATION" {
            return Ok(Self::Test);
        }
        serde_path_to_error::deserialize(value)
            .map(Self::Transition)
            .map_err(|error| format!("not a lifecycle notification: {error}"))
    }
}

/// Handles an SQS batch from the lifecycle queue; the response names the messages to
/// deliver again.
pub async fn handle(control: &ControlPlane, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let message_id = record.message_id.unwrap_or_default();
        let body = record.body.unwrap_or_default();
        if let Err(error) = handle_message(control, &body).await {
            tracing::warn!(%message_id, %error, "lifecycle message not handled; SQS delivers it again");
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message_id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// The lifecycle function subscribed to an SNS topic directly: each record's Message is
/// a lifecycle message. An error fails the invocation, which Lambda retries.
pub async fn handle_sns(control: &ControlPlane, event: SnsEvent) -> Result<(), ApiError> {
    for record in event.records {
        let message = LifecycleMessage::parse_notification(&record.sns.message)
            .map_err(ApiError::invalid_input)?;
        Box::pin(handle_parsed(control, message)).await?;
    }
    Ok(())
}

/// The lifecycle function: one message from the lifecycle queue. An error leaves
/// the message for SQS to deliver again.
pub async fn handle_message(control: &ControlPlane, body: &str) -> Result<(), ApiError> {
    let message = LifecycleMessage::parse(body).map_err(ApiError::invalid_input)?;
    Box::pin(handle_parsed(control, message)).await
}

async fn handle_parsed(control: &ControlPlane, message: LifecycleMessage) -> Result<(), ApiError> {
    match message {
        LifecycleMessage::Test => Ok(()),
        // Boxed: these futures hold SDK calls and a whole CreateDeployment.
        LifecycleMessage::Transition(notification) => {
            Box::pin(transition(control, notification)).await
        }
        LifecycleMessage::DeploymentFinished { deployment_id } => {
            Box::pin(complete_launch(control, &deployment_id)).await
        }
        LifecycleMessage::TrafficCheck(check) => {
            let deployment_id = check.deployment_id.clone();
            if let Some(input) = crate::traffic_steps::check(control, check).await? {
                Box::pin(crate::engine::step(control, &deployment_id, &[input])).await?;
            }
            Ok(())
        }
        LifecycleMessage::DispatchSlice(slice) => {
            Box::pin(crate::engine::dispatch_slice(control, slice)).await
        }
        LifecycleMessage::FleetCheck { deployment_id } => {
            Box::pin(crate::engine::look_at_copy(control, &deployment_id, true)).await
        }
        LifecycleMessage::Effects {
            deployment_id,
            entry,
        } => {
            Box::pin(crate::engine::run_handed_off(
                control,
                &deployment_id,
                &entry,
            ))
            .await
        }
        LifecycleMessage::Tick { deployment_id } => {
            let now = crate::model::now_millis();
            match Box::pin(super::batch_advance::tick_one(control, &deployment_id, now)).await {
                // Deleted since, or never there (the queue is Gantry's own, but a tick
                // can never apply to it): nothing to retry.
                Err(error) if error.code == Exception::ResourceNotFound => {
                    tracing::warn!(%deployment_id, %error, "tick for a deployment that does not exist; dropped");
                    Ok(())
                }
                other => other,
            }
        }
    }
}

/// An instance held by one of Gantry's hooks, in a deployment of its own that runs beside
/// whatever else the group deploys (it takes no lock), one per lifecycle action even when
/// the notification comes twice; its end completes the action.
/// - A launch gets the group's last successful revision (creator `autoscaling`): CONTINUE
///   when it succeeds, ABANDON when it fails, so that Auto Scaling replaces the instance.
/// - A termination, with `terminationHookEnabled`, has its traffic blocked and its
///   application stopped (creator `autoscalingTermination`; see
///   [`gantry_core::lifecycle::termination`]), then goes whatever the outcome.
async fn transition(control: &ControlPlane, notification: Notification) -> Result<(), ApiError> {
    let terminating = match notification.lifecycle_transition.as_str() {
        LAUNCHING => false,
        TERMINATING => true,
        other => {
            tracing::info!(transition = %other, "not a launch or a termination; ignored");
            return Ok(());
        }
    };
    let action = LifecycleAction {
        auto_scaling_group_name: notification.auto_scaling_group_name.clone(),
        lifecycle_hook_name: notification.lifecycle_hook_name.clone(),
        lifecycle_action_token: notification.lifecycle_action_token.clone(),
        instance_id: notification.ec2_instance_id.clone(),
    };
    let span = tracing::info_span!(
        "lifecycle_action",
        transition = if terminating { "termination" } else { "launch" },
        instance_id = %action.instance_id,
        auto_scaling_group = %action.auto_scaling_group_name,
    );
    let _entered = span.enter();
    let Some(metadata) = notification
        .notification_metadata
        .as_deref()
        .and_then(|text| serde_json::from_str::<HookMetadata>(text).ok())
    else {
        // Not a hook Gantry put: leave its action to whoever owns it.
        tracing::warn!(hook = %action.lifecycle_hook_name, "lifecycle hook without Gantry's metadata; ignored");
        return Ok(());
    };
    let group = match control
        .load_group(&metadata.application_name, &metadata.deployment_group_name)
        .await
    {
        Ok(group) => group,
        Err(error) if error.code == Exception::DeploymentGroupDoesNotExist => {
            tracing::info!("the deployment group is gone; letting the instance go on");
            return control.lifecycle.complete(&action, "CONTINUE").await;
        }
        Err(error) => return Err(error),
    };
    // A termination stops the revision the instance runs, as far as the group knows: its
    // own record, else the group's (its scripts come from the agent's record of its last
    // install anyway). A launch gets the group's last successful revision.
    let own = if terminating {
        control
            .store
            .group_health(&metadata.application_name, &metadata.deployment_group_name)
            .await?
            .remove(&action.instance_id)
            .map(|record| record.revision)
    } else {
        None
    };
    let Some(revision) = own.or_else(|| group.target_revision.clone()) else {
        tracing::info!("nothing deployed to the group yet; letting the instance go on");
        return control.lifecycle.complete(&action, "CONTINUE").await;
    };
    let deployment_id = deployment_id_for(&action.lifecycle_action_token);
    match control
        .store
        .load_deployment::<DeploymentSpec>(&deployment_id)
        .await
    {
        Ok(_) => return Ok(()),
        Err(StoreError::NotFound(_)) => {}
        Err(other) => return Err(other.into()),
    }
    let Some(host) = control
        .lifecycle
        .instance(&action.auto_scaling_group_name, &action.instance_id)
        .await?
    else {
        tracing::info!("the instance is gone; nothing to do");
        return if terminating {
            control.lifecycle.complete(&action, "CONTINUE").await
        } else {
            Ok(())
        };
    };
    let input = CreateDeploymentInput {
        application_name: metadata.application_name,
        deployment_group_name: metadata.deployment_group_name,
        revision: Some(revision),
        // A failed launch is abandoned (Auto Scaling replaces the instance), and a
        // terminating instance goes anyway: rolling the whole group back would answer
        // a problem the group does not have.
        auto_rollback_configuration: Some(Default::default()),
        ..Default::default()
    };
    let origin = Origin {
        deployment_id: Some(deployment_id),
        launch: Some((host, action.clone())),
        ..Origin::default()
    };
    let (creator, when_impossible) = if terminating {
        (Creator::AutoscalingTermination, "CONTINUE")
    } else {
        (Creator::Autoscaling, "ABANDON")
    };
    match Box::pin(deploy::create(control, input, creator, origin)).await {
        Ok(created) => {
            tracing::info!(deployment_id = %created.record.spec.deployment_id, "deploying for a lifecycle action");
            engine::start(control, &created).await;
            Ok(())
        }
        // Worth a retry: SQS delivers the notification again.
        Err(error) if retryable(&error) => Err(error),
        // No deployment can be made (its revision is gone, say): the instance must not
        // wait for the hook's timeout (a launch, to be relaunched and fail again).
        Err(error) => {
            tracing::warn!(%error, result = when_impossible, "cannot deploy for the lifecycle action; completing it");
            control.lifecycle.complete(&action, when_impossible).await
        }
    }
}

/// Errors a later attempt may not meet: a race lost, or AWS failing for a moment.
fn retryable(error: &ApiError) -> bool {
    matches!(
        error.code,
        Exception::InternalFailure
            | Exception::ConcurrentModification
            | Exception::DeploymentLimitExceeded
    )
}

async fn complete_launch(control: &ControlPlane, deployment_id: &str) -> Result<(), ApiError> {
    let record: DeploymentRecord<DeploymentSpec> =
        control.store.load_deployment(deployment_id).await?;
    let Some(action) = &record.spec.lifecycle_action else {
        return Ok(());
    };
    let terminating = record.spec.creator == Creator::AutoscalingTermination;
    let result = match record.state.status {
        // A terminating instance goes whatever its deployment did.
        DeploymentStatus::Succeeded => "CONTINUE",
        status if status.is_terminal() && terminating => "CONTINUE",
        status if status.is_terminal() => "ABANDON",
        _ => {
            return Err(ApiError::internal(format!(
                "deployment {deployment_id} has not ended; its lifecycle action waits"
            )));
        }
    };
    tracing::info!(%deployment_id, instance_id = %action.instance_id, result, "completing the lifecycle action");
    control.lifecycle.complete(action, result).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_auto_scaling_notifications_and_gantry_messages() {
        let launch = r#"{"Origin":"EC2","LifecycleHookName":"gantry-g1","Destination":"AutoScalingGroup","AccountId":"123456789012","RequestId":"r","LifecycleTransition":"autoscaling:EC2_INSTANCE_LAUNCHING","AutoScalingGroupName":"web","Service":"AWS Auto Scaling","Time":"2026-11-23T00:00:00.000Z","EC2InstanceId":"i-0abc","LifecycleActionToken":"t-1","NotificationMetadata":"{\"applicationName\":\"a\",\"deploymentGroupName\":\"g\"}"}"#;
        let LifecycleMessage::Transition(notification) = LifecycleMessage::parse(launch).unwrap()
        else {
            panic!("a transition");
        };
        assert_eq!(notification.ec2_instance_id, "i-0abc");
        assert_eq!(notification.lifecycle_transition, LAUNCHING);

        let test = r#"{"AccountId":"1","RequestId":"r","AutoScalingGroupARN":"arn","AutoScalingGroupName":"web","Service":"AWS Auto Scaling","Event":"autoscaling:TEST_NOTIFICATION","Time":"t"}"#;
        assert_eq!(LifecycleMessage::parse(test), Ok(LifecycleMessage::Test));

        assert_eq!(
            LifecycleMessage::parse(r#"{"gantryDeploymentFinished":"d-ABC"}"#),
            Ok(LifecycleMessage::DeploymentFinished {
                deployment_id: "d-ABC".into()
            })
        );
        let error = LifecycleMessage::parse(r#"{"LifecycleTransition":"x"}"#).unwrap_err();
        assert!(error.contains("AutoScalingGroupName"), "{error}");
    }

    /// A topic may carry Auto Scaling's notifications only: Gantry's own messages (which
    /// run outbox entries, ticks and dispatches) are refused there, whoever published them.
    #[test]
    fn a_topic_carries_auto_scaling_notifications_never_gantrys_own_messages() {
        let envelope = |message: &str| {
            serde_json::json!({"Type": "Notification", "Message": message}).to_string()
        };
        let test = r#"{"Event":"autoscaling:TEST_NOTIFICATION","AutoScalingGroupName":"web"}"#;
        assert_eq!(
            LifecycleMessage::parse(&envelope(test)),
            Ok(LifecycleMessage::Test)
        );
        for own in [
            r#"{"gantryEffects":{"deploymentId":"d-ABC","entry":"00000000000000000001"}}"#,
            r#"{"gantryTick":{"deploymentId":"d-ABC"}}"#,
            r#"{"gantryDeploymentFinished":"d-ABC"}"#,
        ] {
            assert!(LifecycleMessage::parse(own).is_ok(), "{own} from the queue");
            let error = LifecycleMessage::parse(&envelope(own)).unwrap_err();
            assert!(
                error.starts_with("SNS Message: not a lifecycle notification"),
                "{error}"
            );
            assert!(LifecycleMessage::parse_notification(own).is_err(), "{own}");
        }
    }

    #[test]
    fn one_lifecycle_action_gives_one_deployment_id() {
        assert_eq!(deployment_id_for("t-1"), deployment_id_for("t-1"));
        assert_ne!(deployment_id_for("t-1"), deployment_id_for("t-2"));
        assert!(deployment_id_for("t-1").starts_with("d-"));
    }
}
