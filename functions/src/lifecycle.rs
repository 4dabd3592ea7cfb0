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

use crate::adapters::Host;
use crate::control::{ControlPlane, CreateDeploymentInput, Origin, deployment_id_for};
use crate::error::ApiError;
use crate::model::{DeploymentSpec, LifecycleAction};
use crate::store::{DeploymentRecord, StoreError};
use aws_sdk_dynamodb::error::DisplayErrorContext;
use gantry_core::deployment::DeploymentStatus;
use gantry_core::wire::Creator;
use serde::Deserialize;
use serde_json::{Value, json};

pub const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";

/// A message on the lifecycle queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleMessage {
    /// Auto Scaling holds a lifecycle action for an instance.
    Transition(Notification),
    /// A deployment for a launching instance ended: complete its lifecycle action.
    DeploymentFinished { deployment_id: String },
    /// `autoscaling:TEST_NOTIFICATION`, sent when a hook is created.
    Test,
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
        if value["Event"] == "autoscaling:TEST_NOTIFICATION" {
            return Ok(Self::Test);
        }
        if let Some(id) = value["gantryDeploymentFinished"].as_str() {
            return Ok(Self::DeploymentFinished {
                deployment_id: id.to_owned(),
            });
        }
        serde_path_to_error::deserialize(value)
            .map(Self::Transition)
            .map_err(|error| format!("not a lifecycle notification: {error}"))
    }
}

/// The name of a group's launch hook on each of its Auto Scaling groups.
pub fn hook_name(deployment_group_id: &str) -> String {
    format!("gantry-{deployment_group_id}")
}

/// Auto Scaling's side: hooks, the launching instance, completing the action.
#[derive(Clone)]
pub struct LifecycleHooks {
    client: aws_sdk_autoscaling::Client,
}

fn failure(operation: &str, error: impl std::error::Error) -> ApiError {
    ApiError::internal(format!(
        "Auto Scaling {operation}: {}",
        DisplayErrorContext(error)
    ))
}

impl LifecycleHooks {
    pub fn new(client: aws_sdk_autoscaling::Client) -> Self {
        Self { client }
    }

    /// Puts (or updates) the launch hook. ABANDON is the default result: an instance
    /// nobody deployed to must not go into service.
    pub async fn put(
        &self,
        auto_scaling_group: &str,
        hook: &str,
        queue_arn: &str,
        role_arn: &str,
        metadata: &str,
    ) -> Result<(), ApiError> {
        self.client
            .put_lifecycle_hook()
            .auto_scaling_group_name(auto_scaling_group)
            .lifecycle_hook_name(hook)
            .lifecycle_transition(LAUNCHING)
            .notification_target_arn(queue_arn)
            .role_arn(role_arn)
            .notification_metadata(metadata)
            .heartbeat_timeout(3600)
            .default_result("ABANDON")
            .send()
            .await
            .map_err(|error| failure("PutLifecycleHook", error))?;
        Ok(())
    }

    /// Deletes the hook; one already gone is fine.
    pub async fn delete(&self, auto_scaling_group: &str, hook: &str) -> Result<(), ApiError> {
        match self
            .client
            .delete_lifecycle_hook()
            .auto_scaling_group_name(auto_scaling_group)
            .lifecycle_hook_name(hook)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .raw_response()
                    .is_some_and(|r| r.status().as_u16() == 400) =>
            {
                tracing::info!(auto_scaling_group, hook, "lifecycle hook already gone");
                Ok(())
            }
            Err(error) => Err(failure("DeleteLifecycleHook", error)),
        }
    }

    /// The instance in its Auto Scaling group, whatever its lifecycle state (a launching
    /// one is Pending:Wait), or None when it is gone.
    pub async fn instance(
        &self,
        auto_scaling_group: &str,
        instance_id: &str,
    ) -> Result<Option<Host>, ApiError> {
        let found = self
            .client
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(auto_scaling_group)
            .send()
            .await
            .map_err(|error| failure("DescribeAutoScalingGroups", error))?;
        Ok(found
            .auto_scaling_groups()
            .iter()
            .flat_map(|group| group.instances())
            .find(|instance| instance.instance_id() == Some(instance_id))
            .map(|instance| Host {
                instance_id: instance_id.to_owned(),
                zone: instance.availability_zone().map(str::to_owned),
            }))
    }

    /// CompleteLifecycleAction. An action that is no longer pending (completed before,
    /// or timed out) is done, not an error: there is nothing left to complete.
    pub async fn complete(&self, action: &LifecycleAction, result: &str) -> Result<(), ApiError> {
        match self
            .client
            .complete_lifecycle_action()
            .auto_scaling_group_name(&action.auto_scaling_group_name)
            .lifecycle_hook_name(&action.lifecycle_hook_name)
            .lifecycle_action_token(&action.lifecycle_action_token)
            .instance_id(&action.instance_id)
            .lifecycle_action_result(result)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .and_then(|e| e.meta().code())
                    .is_some_and(|code| code == "ValidationError") =>
            {
                tracing::warn!(error = %DisplayErrorContext(&error), "lifecycle action no longer pending");
                Ok(())
            }
            Err(error) => Err(failure("CompleteLifecycleAction", error)),
        }
    }
}

impl ControlPlane {
    /// Puts the group's launch hook on each of its Auto Scaling groups, and removes it
    /// from those it no longer lists.
    pub async fn sync_launch_hooks(
        &self,
        application: &str,
        group: &str,
        deployment_group_id: &str,
        auto_scaling_groups: &[String],
        previous: &[String],
    ) -> Result<(), ApiError> {
        let hook = hook_name(deployment_group_id);
        for gone in previous.iter().filter(|g| !auto_scaling_groups.contains(g)) {
            self.lifecycle.delete(gone, &hook).await?;
        }
        if auto_scaling_groups.is_empty() {
            return Ok(());
        }
        let (Some(queue), Some(role)) = (
            self.settings.lifecycle_queue_arn.as_deref(),
            self.settings.lifecycle_role_arn.as_deref(),
        ) else {
            return Err(ApiError::invalid_input(
                "autoScalingGroups: this Gantry has no lifecycle queue configured (GANTRY_LIFECYCLE_QUEUE_ARN and GANTRY_LIFECYCLE_ROLE_ARN), so it cannot deploy to instances as they launch",
            ));
        };
        let metadata =
            json!({"applicationName": application, "deploymentGroupName": group}).to_string();
        for auto_scaling_group in auto_scaling_groups {
            self.lifecycle
                .put(auto_scaling_group, &hook, queue, role, &metadata)
                .await?;
        }
        Ok(())
    }

    /// The lifecycle function: one message from the lifecycle queue. An error leaves
    /// the message for SQS to deliver again.
    pub async fn handle_lifecycle_message(&self, body: &str) -> Result<(), ApiError> {
        match LifecycleMessage::parse(body).map_err(ApiError::invalid_input)? {
            LifecycleMessage::Test => Ok(()),
            // Boxed: these futures hold SDK calls and a whole CreateDeployment.
            LifecycleMessage::Transition(notification) => {
                Box::pin(self.launching(notification)).await
            }
            LifecycleMessage::DeploymentFinished { deployment_id } => {
                Box::pin(self.complete_launch(&deployment_id)).await
            }
        }
    }

    async fn launching(&self, notification: Notification) -> Result<(), ApiError> {
        if notification.lifecycle_transition != LAUNCHING {
            tracing::info!(transition = %notification.lifecycle_transition, "not a launch; ignored");
            return Ok(());
        }
        let action = LifecycleAction {
            auto_scaling_group_name: notification.auto_scaling_group_name.clone(),
            lifecycle_hook_name: notification.lifecycle_hook_name.clone(),
            lifecycle_action_token: notification.lifecycle_action_token.clone(),
            instance_id: notification.ec2_instance_id.clone(),
        };
        let span = tracing::info_span!("launch", instance_id = %action.instance_id, auto_scaling_group = %action.auto_scaling_group_name);
        let _entered = span.enter();
        let metadata: HookMetadata = match notification
            .notification_metadata
            .as_deref()
            .map(serde_json::from_str)
        {
            Some(Ok(metadata)) => metadata,
            _ => {
                // Not a hook Gantry put: leave its action to whoever owns it.
                tracing::warn!(hook = %action.lifecycle_hook_name, "lifecycle hook without Gantry's metadata; ignored");
                return Ok(());
            }
        };
        let group = match self
            .load_group(&metadata.application_name, &metadata.deployment_group_name)
            .await
        {
            Ok(group) => group,
            Err(error) if error.code == "DeploymentGroupDoesNotExistException" => {
                tracing::info!("the deployment group is gone; letting the instance launch");
                return self.lifecycle.complete(&action, "CONTINUE").await;
            }
            Err(error) => return Err(error),
        };
        let Some(revision) = group.target_revision.clone() else {
            tracing::info!(
                "the group has no successful deployment yet; letting the instance launch"
            );
            return self.lifecycle.complete(&action, "CONTINUE").await;
        };
        // One deployment per lifecycle action, even when the notification comes twice.
        let deployment_id = deployment_id_for(&action.lifecycle_action_token);
        match self
            .store
            .load_deployment::<DeploymentSpec>(&deployment_id)
            .await
        {
            Ok(_) => return Ok(()),
            Err(StoreError::NotFound(_)) => {}
            Err(other) => return Err(other.into()),
        }
        let Some(host) = self
            .lifecycle
            .instance(&action.auto_scaling_group_name, &action.instance_id)
            .await?
        else {
            tracing::info!("the instance is gone; nothing to deploy");
            return Ok(());
        };
        let input = CreateDeploymentInput {
            application_name: metadata.application_name,
            deployment_group_name: metadata.deployment_group_name,
            revision: Some(revision),
            // A failed launch is abandoned (Auto Scaling replaces the instance); rolling
            // the whole group back would answer a problem the group does not have.
            auto_rollback_configuration: Some(Default::default()),
            ..Default::default()
        };
        let origin = Origin {
            rollback_of: None,
            deployment_id: Some(deployment_id),
            launch: Some((host, action)),
        };
        // Boxed: create_deployment's future is large (see start_rollback).
        Box::pin(self.create_deployment(input, Creator::Autoscaling, origin))
            .await
            .map(|id| tracing::info!(deployment_id = %id, "deploying to a launching instance"))
    }

    async fn complete_launch(&self, deployment_id: &str) -> Result<(), ApiError> {
        let record: DeploymentRecord<DeploymentSpec> =
            self.store.load_deployment(deployment_id).await?;
        let Some(action) = &record.spec.lifecycle_action else {
            return Ok(());
        };
        let result = match record.state.status {
            DeploymentStatus::Succeeded => "CONTINUE",
            status if status.is_terminal() => "ABANDON",
            _ => {
                return Err(ApiError::internal(format!(
                    "deployment {deployment_id} has not ended; its lifecycle action waits"
                )));
            }
        };
        tracing::info!(%deployment_id, instance_id = %action.instance_id, result, "completing the lifecycle action");
        self.lifecycle.complete(action, result).await
    }

    /// Tells the lifecycle function that a launch's deployment ended.
    pub(crate) async fn launch_finished(&self, deployment_id: &str) -> Result<(), ApiError> {
        let Some(queue_url) = self.settings.lifecycle_queue_url.as_deref() else {
            return Err(ApiError::internal(
                "GANTRY_LIFECYCLE_QUEUE_URL is not set: cannot complete a launch's lifecycle action",
            ));
        };
        self.queues
            .send_to_queue(
                queue_url,
                json!({"gantryDeploymentFinished": deployment_id}).to_string(),
            )
            .await
    }
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

    #[test]
    fn one_lifecycle_action_gives_one_deployment_id() {
        assert_eq!(deployment_id_for("t-1"), deployment_id_for("t-1"));
        assert_ne!(deployment_id_for("t-1"), deployment_id_for("t-2"));
        assert!(deployment_id_for("t-1").starts_with("d-"));
    }
}
