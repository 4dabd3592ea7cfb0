//! Auto Scaling: the lifecycle hooks Gantry puts on a group's Auto Scaling groups, and
//! completing their actions.

use super::fleet::Host;
use crate::error::ApiError;
use crate::model::LifecycleAction;
use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use gantry_core::identity::Sender;
use std::collections::BTreeMap;

/// The launch transition lifecycle hooks watch.
pub const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";
pub const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";

/// The tag an Auto Scaling group carries (`true`) for Gantry to put its lifecycle hooks on
/// it and complete their actions: the template allows those calls on such groups only,
/// so Gantry's functions cannot hook or release instances of groups nobody gave it.
pub const MANAGED_TAG: &str = "gantry:managed";

/// The lifecycle hooks Gantry puts on a deployment group's Auto Scaling groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// Deploys to launching instances.
    Launch,
    /// Stops the application of terminating instances (`terminationHookEnabled`).
    Termination,
}

impl HookKind {
    pub const ALL: [HookKind; 2] = [HookKind::Launch, HookKind::Termination];

    pub fn transition(self) -> &'static str {
        match self {
            Self::Launch => LAUNCHING,
            Self::Termination => TERMINATING,
        }
    }

    /// What Auto Scaling does when nobody answers: an instance nobody deployed to must
    /// not go into service; a terminating one goes whatever happens.
    pub fn default_result(self) -> &'static str {
        match self {
            Self::Launch => "ABANDON",
            Self::Termination => "CONTINUE",
        }
    }

    /// The hook's name for a deployment group: one of each kind per group, so that
    /// several groups may share an Auto Scaling group.
    pub fn hook_name(self, deployment_group_id: &str) -> String {
        match self {
            Self::Launch => format!("gantry-{deployment_group_id}"),
            Self::Termination => format!("gantry-termination-{deployment_group_id}"),
        }
    }
}

/// Auto Scaling's side: hooks, the launching instance, completing the action.
#[derive(Clone)]
pub struct LifecycleHooks {
    client: aws_sdk_autoscaling::Client,
}

fn autoscaling_failure(operation: &str, error: impl std::error::Error) -> ApiError {
    ApiError::internal(format!(
        "Auto Scaling {operation}: {}",
        DisplayErrorContext(error)
    ))
}

impl LifecycleHooks {
    pub fn new(client: aws_sdk_autoscaling::Client) -> Self {
        Self { client }
    }

    /// Puts (or updates) a hook of `kind`, named `hook`, notifying `target_arn`.
    pub async fn put(
        &self,
        auto_scaling_group: &str,
        kind: HookKind,
        hook: &str,
        target_arn: &str,
        role_arn: &str,
        metadata: &str,
    ) -> Result<(), ApiError> {
        self.client
            .put_lifecycle_hook()
            .auto_scaling_group_name(auto_scaling_group)
            .lifecycle_hook_name(hook)
            .lifecycle_transition(kind.transition())
            .notification_target_arn(target_arn)
            .role_arn(role_arn)
            .notification_metadata(metadata)
            .heartbeat_timeout(3600)
            .default_result(kind.default_result())
            .send()
            .await
            .map_err(|error| autoscaling_failure("PutLifecycleHook", error))?;
        Ok(())
    }

    /// Of `names`, the Auto Scaling groups that do not exist, and those that exist
    /// without [`MANAGED_TAG`] `= true`.
    pub async fn unusable(&self, names: &[String]) -> Result<(Vec<String>, Vec<String>), ApiError> {
        let mut found = BTreeMap::new();
        for chunk in names.chunks(100) {
            let described = self
                .client
                .describe_auto_scaling_groups()
                .set_auto_scaling_group_names(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|error| autoscaling_failure("DescribeAutoScalingGroups", error))?;
            for group in described.auto_scaling_groups() {
                let managed = group
                    .tags()
                    .iter()
                    .any(|tag| tag.key() == Some(MANAGED_TAG) && tag.value() == Some("true"));
                found.insert(
                    group
                        .auto_scaling_group_name()
                        .unwrap_or_default()
                        .to_owned(),
                    managed,
                );
            }
        }
        let missing = names
            .iter()
            .filter(|name| !found.contains_key(*name))
            .cloned()
            .collect();
        let untagged = names
            .iter()
            .filter(|name| found.get(*name) == Some(&false))
            .cloned()
            .collect();
        Ok((missing, untagged))
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
            Err(error) => Err(autoscaling_failure("DeleteLifecycleHook", error)),
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
            .map_err(|error| autoscaling_failure("DescribeAutoScalingGroups", error))?;
        Ok(found
            .auto_scaling_groups()
            .iter()
            .flat_map(|group| group.instances())
            .find(|instance| instance.instance_id() == Some(instance_id))
            .map(|instance| Host {
                instance_id: instance_id.to_owned(),
                zone: instance.availability_zone().map(str::to_owned),
                sender: Sender::InstanceRole,
                stopped: false,
            }))
    }

    /// CompleteLifecycleAction. An action that is no longer pending (completed before,
    /// or timed out) is done, not an error: there is nothing left to complete.
    /// Tells Auto Scaling a launch is still being deployed to: its hook's heartbeat
    /// timeout (an hour) starts again, up to the global timeout (48 hours). An action no
    /// longer pending (completed, or timed out) is not an error.
    pub async fn heartbeat(&self, action: &LifecycleAction) -> Result<(), ApiError> {
        match self
            .client
            .record_lifecycle_action_heartbeat()
            .auto_scaling_group_name(&action.auto_scaling_group_name)
            .lifecycle_hook_name(&action.lifecycle_hook_name)
            .lifecycle_action_token(&action.lifecycle_action_token)
            .instance_id(&action.instance_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if no_longer_pending(&error) => Ok(()),
            Err(error) => Err(autoscaling_failure("RecordLifecycleActionHeartbeat", error)),
        }
    }

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
            Err(error) if no_longer_pending(&error) => Ok(()),
            Err(error) => Err(autoscaling_failure(
                &format!("CompleteLifecycleAction ({result})"),
                error,
            )),
        }
    }
}

/// Whether Auto Scaling refused a lifecycle action's call because the action is no
/// longer pending (completed, or timed out): logged, and not an error.
fn no_longer_pending<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: &aws_sdk_autoscaling::error::SdkError<E>,
) -> bool {
    let gone = error
        .as_service_error()
        .and_then(|e| e.meta().code())
        .is_some_and(|code| code == "ValidationError");
    if gone {
        tracing::warn!(error = %DisplayErrorContext(error), "lifecycle action no longer pending");
    }
    gone
}
