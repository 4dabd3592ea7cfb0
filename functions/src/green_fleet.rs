//! Blue/green's replacement ("green") fleet on the AWS side: copying the deployment
//! group's Auto Scaling group as CodeDeploy does (`COPY_AUTO_SCALING_GROUP`), listing the
//! copy's instances, and removing a fleet (deleting a group, terminating instances).
//!
//! Every operation is idempotent, so a retried effect does no harm: a copy that already
//! exists for the same deployment, a group already deleted and instances already gone
//! are all success.

use crate::error::{ApiError, Exception};
use aws_sdk_autoscaling::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_autoscaling::types::{
    AutoScalingGroup, LaunchTemplateSpecification, LifecycleHook, LifecycleHookSpecification,
    MixedInstancesPolicy, Tag, TagDescription,
};

/// The tag a copy carries with the deployment that made it: it tells a retried copy
/// (ours, fine) from someone else's group of the same name (refused).
pub const DEPLOYMENT_TAG: &str = "gantry:deployment-id";

/// Gantry's own lifecycle hooks start with this ([`crate::adapters::HookKind::hook_name`]).
/// They are not copied: Gantry puts its hooks on the copy itself, for the copy.
pub const GANTRY_HOOK_PREFIX: &str = "gantry-";

/// Auto Scaling's longest group name.
pub const MAX_GROUP_NAME: usize = 255;

const COPY_PREFIX: &str = "CodeDeploy_";

/// The Status of a group that is being deleted.
const DELETE_IN_PROGRESS: &str = "Delete in progress";

/// Instance ids per TerminateInstances and DescribeInstances call.
const INSTANCES_PER_CALL: usize = 100;

/// How often TerminateInstances is retried when an instance vanished between looking
/// and terminating.
const TERMINATE_ATTEMPTS: usize = 3;

fn failure(operation: &str, error: impl std::error::Error) -> ApiError {
    ApiError::internal(format!("{operation}: {}", DisplayErrorContext(error)))
}

fn invalid_group(message: String) -> ApiError {
    ApiError::new(Exception::InvalidAutoScalingGroup, message)
}

/// CodeDeploy's name for a deployment's copy of a group:
/// `CodeDeploy_<deployment group name>_<deployment id>`. The deployment group's part is
/// cut (at a character boundary) so the name fits Auto Scaling's 255; the deployment id,
/// which makes the name unique, stays whole. Lengths count bytes, which is never less
/// than characters, so the name fits however Auto Scaling counts.
pub fn copy_name(deployment_group_name: &str, deployment_id: &str) -> String {
    let room = MAX_GROUP_NAME.saturating_sub(COPY_PREFIX.len() + 1 + deployment_id.len());
    let mut cut = deployment_group_name.len().min(room);
    while !deployment_group_name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{COPY_PREFIX}{}_{deployment_id}",
        &deployment_group_name[..cut]
    )
}

/// One instance of a group, as Auto Scaling sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInstance {
    pub instance_id: String,
    pub availability_zone: Option<String>,
    /// Auto Scaling's lifecycle state: `Pending:Wait`, `InService`, `Terminating`, ...
    pub lifecycle_state: String,
}

/// Provisions and removes blue/green fleets.
#[derive(Clone)]
pub struct GreenFleets {
    autoscaling: aws_sdk_autoscaling::Client,
    ec2: aws_sdk_ec2::Client,
}

impl GreenFleets {
    pub fn new(autoscaling: aws_sdk_autoscaling::Client, ec2: aws_sdk_ec2::Client) -> Self {
        Self { autoscaling, ec2 }
    }

    /// Creates `copy`, a copy of the Auto Scaling group `original` for `deployment_id`:
    /// the same launch template (or mixed instances policy, or launch configuration),
    /// sizes, subnets or zones, health check, cooldown, termination policies and
    /// placement settings; the original's tags but AWS's own (`aws:`), with
    /// [`DEPLOYMENT_TAG`]; and the original's lifecycle hooks but Gantry's, created with
    /// the group so that they hold its first instances too.
    ///
    /// Load balancers and target groups are not copied: Gantry registers the replacement
    /// instances itself once they installed the revision, so they take no traffic before.
    ///
    /// A copy that already exists with [`DEPLOYMENT_TAG`] = `deployment_id` is this same
    /// copy, retried: Ok. Any other group of that name is refused.
    pub async fn copy_auto_scaling_group(
        &self,
        original: &str,
        copy: &str,
        deployment_id: &str,
    ) -> Result<(), ApiError> {
        let source = self.group(original).await?.ok_or_else(|| {
            invalid_group(format!(
                "autoScalingGroups: no Auto Scaling group named {original:?} to copy for the replacement fleet"
            ))
        })?;
        let hooks = copied_hooks(&self.hooks(original).await?);
        match self.group(copy).await? {
            Some(existing) => ours(&existing, copy, deployment_id)?,
            None => {
                let created = self
                    .autoscaling
                    .create_auto_scaling_group()
                    .auto_scaling_group_name(copy)
                    .set_launch_template(source.launch_template.clone().map(id_or_name))
                    .set_mixed_instances_policy(
                        source.mixed_instances_policy.clone().map(mixed_id_or_name),
                    )
                    .set_launch_configuration_name(source.launch_configuration_name.clone())
                    .set_min_size(source.min_size)
                    .set_max_size(source.max_size)
                    .set_desired_capacity(source.desired_capacity)
                    .set_desired_capacity_type(source.desired_capacity_type.clone())
                    // The subnets say the zones; giving both asks Auto Scaling to check
                    // they agree, which it may not after subnets changed.
                    .set_vpc_zone_identifier(
                        source.vpc_zone_identifier.clone().filter(|s| !s.is_empty()),
                    )
                    .set_availability_zones(
                        source
                            .vpc_zone_identifier
                            .as_deref()
                            .is_none_or(str::is_empty)
                            .then(|| source.availability_zones.clone())
                            .flatten(),
                    )
                    .set_health_check_type(source.health_check_type.clone())
                    .set_health_check_grace_period(source.health_check_grace_period)
                    .set_default_cooldown(source.default_cooldown)
                    .set_default_instance_warmup(source.default_instance_warmup)
                    .set_termination_policies(source.termination_policies.clone())
                    .set_placement_group(source.placement_group.clone())
                    .set_new_instances_protected_from_scale_in(
                        source.new_instances_protected_from_scale_in,
                    )
                    .set_capacity_rebalance(source.capacity_rebalance)
                    .set_max_instance_lifetime(source.max_instance_lifetime)
                    .set_service_linked_role_arn(source.service_linked_role_arn.clone())
                    .set_tags(Some(copied_tags(source.tags(), copy, deployment_id)))
                    .set_lifecycle_hook_specification_list(
                        (!hooks.is_empty()).then(|| hooks.clone()),
                    )
                    .send()
                    .await;
                match created {
                    Ok(_) => {}
                    // Another attempt of this same effect got there first.
                    Err(error)
                        if error
                            .as_service_error()
                            .is_some_and(|e| e.is_already_exists_fault()) =>
                    {
                        let existing = self
                            .group(copy)
                            .await?
                            .ok_or_else(|| failure("Auto Scaling CreateAutoScalingGroup", error))?;
                        ours(&existing, copy, deployment_id)?;
                    }
                    Err(error) => {
                        return Err(failure("Auto Scaling CreateAutoScalingGroup", error));
                    }
                }
            }
        }
        self.ensure_hooks(copy, &hooks).await
    }

    /// Puts those of `hooks` the group lacks. CreateAutoScalingGroup's
    /// LifecycleHookSpecificationList makes them in AWS, so there this finds nothing to
    /// do; moto ignores that list, and a retry after a crash lands here too.
    async fn ensure_hooks(
        &self,
        group: &str,
        hooks: &[LifecycleHookSpecification],
    ) -> Result<(), ApiError> {
        if hooks.is_empty() {
            return Ok(());
        }
        let present = self.hooks(group).await?;
        for hook in hooks {
            if present
                .iter()
                .any(|p| p.lifecycle_hook_name() == hook.lifecycle_hook_name())
            {
                continue;
            }
            self.autoscaling
                .put_lifecycle_hook()
                .auto_scaling_group_name(group)
                .set_lifecycle_hook_name(hook.lifecycle_hook_name().map(str::to_owned))
                .set_lifecycle_transition(hook.lifecycle_transition().map(str::to_owned))
                .set_notification_metadata(hook.notification_metadata.clone())
                .set_heartbeat_timeout(hook.heartbeat_timeout)
                .set_default_result(hook.default_result.clone())
                .set_notification_target_arn(hook.notification_target_arn.clone())
                .set_role_arn(hook.role_arn.clone())
                .send()
                .await
                .map_err(|error| failure("Auto Scaling PutLifecycleHook", error))?;
        }
        Ok(())
    }

    /// The group's instances, whatever their lifecycle state. A group that does not exist
    /// (never made, or deleted) has none: Ok(empty), not an error.
    pub async fn instances(&self, group: &str) -> Result<Vec<GroupInstance>, ApiError> {
        Ok(self
            .group(group)
            .await?
            .iter()
            .flat_map(|group| group.instances())
            .filter_map(|instance| {
                Some(GroupInstance {
                    instance_id: instance.instance_id()?.to_owned(),
                    availability_zone: instance.availability_zone().map(str::to_owned),
                    lifecycle_state: instance.lifecycle_state()?.as_str().to_owned(),
                })
            })
            .collect())
    }

    /// Deletes the group with ForceDelete: its instances are terminated and its pending
    /// lifecycle actions dropped, without waiting. A group already gone, or already being
    /// deleted, is Ok.
    pub async fn delete_auto_scaling_group(&self, name: &str) -> Result<(), ApiError> {
        let Err(error) = self
            .autoscaling
            .delete_auto_scaling_group()
            .auto_scaling_group_name(name)
            .force_delete(true)
            .send()
            .await
        else {
            return Ok(());
        };
        // Auto Scaling answers a missing group with a plain ValidationError: look rather
        // than read its message.
        match self.group(name).await {
            Ok(None) => {
                tracing::info!(group = name, "Auto Scaling group already gone");
                Ok(())
            }
            Ok(Some(group)) if group.status() == Some(DELETE_IN_PROGRESS) => Ok(()),
            _ => Err(failure("Auto Scaling DeleteAutoScalingGroup", error)),
        }
    }

    /// Terminates the instances. Instances EC2 no longer knows are fine: EC2 refuses the
    /// whole call for one such id, so then the ids still alive are looked up and
    /// terminated.
    pub async fn terminate_instances(&self, ids: &[String]) -> Result<(), ApiError> {
        for chunk in ids.chunks(INSTANCES_PER_CALL) {
            let mut live = chunk.to_vec();
            let mut attempt = 1;
            while !live.is_empty() {
                match self
                    .ec2
                    .terminate_instances()
                    .set_instance_ids(Some(live.clone()))
                    .send()
                    .await
                {
                    Ok(_) => break,
                    Err(error)
                        if error.code() == Some("InvalidInstanceID.NotFound")
                            && attempt < TERMINATE_ATTEMPTS =>
                    {
                        attempt += 1;
                        live = self.live_instances(&live).await?;
                    }
                    Err(error) => return Err(failure("EC2 TerminateInstances", error)),
                }
            }
        }
        Ok(())
    }

    /// Of `ids`, those tagged `gantry:managed=true`: the instances Gantry's role may
    /// terminate.
    pub async fn managed_instances(&self, ids: &[String]) -> Result<Vec<String>, ApiError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let tagged = aws_sdk_ec2::types::Filter::builder()
            .name(format!("tag:{}", crate::adapters::MANAGED_TAG))
            .values("true")
            .build();
        self.instance_ids(ids, tagged).await
    }

    /// Of `ids`, those EC2 knows and has not begun to terminate.
    async fn live_instances(&self, ids: &[String]) -> Result<Vec<String>, ApiError> {
        let live = aws_sdk_ec2::types::Filter::builder()
            .name("instance-state-name")
            .values("pending")
            .values("running")
            .values("stopping")
            .values("stopped")
            .build();
        self.instance_ids(ids, live).await
    }

    /// Of `ids`, those `filter` keeps. (A filter, unlike InstanceIds, does not fail on
    /// ids EC2 does not know.)
    async fn instance_ids(
        &self,
        ids: &[String],
        filter: aws_sdk_ec2::types::Filter,
    ) -> Result<Vec<String>, ApiError> {
        let mut pages = self
            .ec2
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("instance-id")
                    .set_values(Some(ids.to_vec()))
                    .build(),
            )
            .filters(filter)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| failure("EC2 DescribeInstances", error))?;
            found.extend(
                page.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .filter_map(|i| i.instance_id().map(str::to_owned)),
            );
        }
        Ok(found)
    }

    pub async fn group(&self, name: &str) -> Result<Option<AutoScalingGroup>, ApiError> {
        let found = self
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .map_err(|error| failure("Auto Scaling DescribeAutoScalingGroups", error))?;
        Ok(found
            .auto_scaling_groups
            .unwrap_or_default()
            .into_iter()
            .find(|group| group.auto_scaling_group_name() == Some(name)))
    }

    async fn hooks(&self, group: &str) -> Result<Vec<LifecycleHook>, ApiError> {
        Ok(self
            .autoscaling
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(group)
            .send()
            .await
            .map_err(|error| failure("Auto Scaling DescribeLifecycleHooks", error))?
            .lifecycle_hooks
            .unwrap_or_default())
    }
}

/// Ok if `existing` is the copy this deployment made (a retry); an error naming the group
/// otherwise.
fn ours(existing: &AutoScalingGroup, copy: &str, deployment_id: &str) -> Result<(), ApiError> {
    let made_for = existing
        .tags()
        .iter()
        .find(|tag| tag.key() == Some(DEPLOYMENT_TAG))
        .and_then(|tag| tag.value());
    if made_for != Some(deployment_id) {
        return Err(invalid_group(format!(
            "the replacement fleet's Auto Scaling group {copy:?} already exists and was not made for deployment {deployment_id} ({DEPLOYMENT_TAG} is {made_for:?}); delete or rename it"
        )));
    }
    if existing.status() == Some(DELETE_IN_PROGRESS) {
        return Err(invalid_group(format!(
            "the replacement fleet's Auto Scaling group {copy:?} for deployment {deployment_id} is being deleted"
        )));
    }
    Ok(())
}

/// The original's tags for the copy: AWS's own (`aws:`, which nobody may set) and the
/// original's [`DEPLOYMENT_TAG`] (it is a copy itself after an earlier blue/green) left
/// out, this deployment's added.
fn copied_tags(original: &[TagDescription], copy: &str, deployment_id: &str) -> Vec<Tag> {
    let tag = |key: &str| {
        Tag::builder()
            .resource_id(copy)
            .resource_type("auto-scaling-group")
            .key(key)
    };
    original
        .iter()
        .filter_map(|description| {
            let key = description.key()?;
            let reserved = key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:"));
            (!reserved && key != DEPLOYMENT_TAG).then(|| {
                tag(key)
                    .set_value(description.value.clone())
                    .set_propagate_at_launch(description.propagate_at_launch)
                    .build()
            })
        })
        .chain(std::iter::once(
            tag(DEPLOYMENT_TAG)
                .value(deployment_id)
                .propagate_at_launch(false)
                .build(),
        ))
        .collect()
}

/// The original's lifecycle hooks to create with the copy: all but Gantry's own.
fn copied_hooks(hooks: &[LifecycleHook]) -> Vec<LifecycleHookSpecification> {
    hooks
        .iter()
        .filter(|hook| {
            hook.lifecycle_hook_name()
                .is_some_and(|name| !name.starts_with(GANTRY_HOOK_PREFIX))
        })
        .map(|hook| {
            LifecycleHookSpecification::builder()
                .set_lifecycle_hook_name(hook.lifecycle_hook_name.clone())
                .set_lifecycle_transition(hook.lifecycle_transition.clone())
                .set_notification_metadata(hook.notification_metadata.clone())
                .set_heartbeat_timeout(hook.heartbeat_timeout)
                .set_default_result(hook.default_result.clone())
                .set_notification_target_arn(hook.notification_target_arn.clone())
                .set_role_arn(hook.role_arn.clone())
                .build()
        })
        .collect()
}

/// DescribeAutoScalingGroups gives a launch template's id and name; CreateAutoScalingGroup
/// takes only one of them. The id stays right if the template is renamed.
fn id_or_name(mut spec: LaunchTemplateSpecification) -> LaunchTemplateSpecification {
    if spec.launch_template_id.is_some() {
        spec.launch_template_name = None;
    }
    spec
}

fn mixed_id_or_name(mut policy: MixedInstancesPolicy) -> MixedInstancesPolicy {
    if let Some(template) = policy.launch_template.as_mut() {
        template.launch_template_specification = template
            .launch_template_specification
            .take()
            .map(id_or_name);
        for overrides in template.overrides.iter_mut().flatten() {
            overrides.launch_template_specification = overrides
                .launch_template_specification
                .take()
                .map(id_or_name);
        }
    }
    policy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::HookKind;

    #[test]
    fn copy_names_are_codedeploys_and_fit() {
        assert_eq!(copy_name("web", "d-ABC123"), "CodeDeploy_web_d-ABC123");
        let long = copy_name(&"g".repeat(300), "d-ABC123");
        assert_eq!(long.len(), MAX_GROUP_NAME);
        assert!(long.starts_with("CodeDeploy_ggg") && long.ends_with("g_d-ABC123"));
        // A cut never splits a character.
        let wide = copy_name(&"é".repeat(200), "d-ABC123");
        assert!(wide.len() <= MAX_GROUP_NAME && wide.ends_with("é_d-ABC123"));
    }

    #[test]
    fn gantrys_hooks_are_the_ones_left_behind() {
        for kind in HookKind::ALL {
            assert!(kind.hook_name("dg-1").starts_with(GANTRY_HOOK_PREFIX));
        }
        let hook = |name: &str| {
            LifecycleHook::builder()
                .lifecycle_hook_name(name)
                .lifecycle_transition("autoscaling:EC2_INSTANCE_LAUNCHING")
                .heartbeat_timeout(300)
                .default_result("CONTINUE")
                .build()
        };
        let copied = copied_hooks(&[
            hook("warm-cache"),
            hook(&HookKind::Launch.hook_name("dg-1")),
        ]);
        assert_eq!(copied.len(), 1);
        assert_eq!(copied[0].lifecycle_hook_name(), Some("warm-cache"));
        assert_eq!(copied[0].heartbeat_timeout(), Some(300));
        assert_eq!(copied[0].default_result(), Some("CONTINUE"));
    }

    #[test]
    fn tags_lose_aws_and_the_old_deployment() {
        let tag = |key: &str, value: &str, propagate: bool| {
            TagDescription::builder()
                .resource_id("orig")
                .key(key)
                .value(value)
                .propagate_at_launch(propagate)
                .build()
        };
        let copied = copied_tags(
            &[
                tag("Name", "web", true),
                tag("aws:cloudformation:stack-name", "s", false),
                tag("AWS:x", "s", false),
                tag(DEPLOYMENT_TAG, "d-OLD", false),
            ],
            "copy",
            "d-NEW",
        );
        type Seen<'a> = (&'a str, Option<&'a str>, Option<bool>, Option<&'a str>);
        let seen: Vec<Seen> = copied
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default(),
                    t.value(),
                    t.propagate_at_launch(),
                    t.resource_id(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("Name", Some("web"), Some(true), Some("copy")),
                (DEPLOYMENT_TAG, Some("d-NEW"), Some(false), Some("copy")),
            ]
        );
    }

    #[test]
    fn a_template_is_named_once() {
        let both = LaunchTemplateSpecification::builder()
            .launch_template_id("lt-1")
            .launch_template_name("web")
            .version("3")
            .build();
        let one = id_or_name(both);
        assert_eq!(
            (
                one.launch_template_id(),
                one.launch_template_name(),
                one.version()
            ),
            (Some("lt-1"), None, Some("3"))
        );
        let named = LaunchTemplateSpecification::builder()
            .launch_template_name("web")
            .build();
        assert_eq!(id_or_name(named).launch_template_name(), Some("web"));
    }
}
