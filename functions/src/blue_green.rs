//! Blue/green deployments on the control plane's side: which hosts make each fleet when
//! one is created (a copy of the group's Auto Scaling group, or instances named by
//! `targetInstances`), and the effects that only blue/green has: provisioning and
//! removing a copy, rerouting Ready hosts, terminating the original fleet, and the
//! group adopting the replacement fleet. The stages themselves are decided in
//! `gantry_core::deployment` (its `blue_green`).
//!
//! A copy is never waited for inside an invocation. CreateDeployment stores the
//! deployment, provisioning, and returns; the copy is made by the stored effect
//! ProvisionFleet, and looked at again (a fleet check on the lifecycle queue, and the
//! tick) until its instances exist, when the deployment is planned over both fleets
//! (`crate::deploy::finish_provisioning`, called by `crate::engine::look_at_copy`). From the moment the copy may exist, the
//! deployment owns it: any end before the plan removes it (RemoveReplacement), and a
//! ProvisionFleet run late deletes what it finds instead of making it.

use crate::adapters::Host;
use crate::control::ControlPlane;
use crate::error::{ApiError, Exception};
use crate::model::{
    BlueGreenConfiguration, BlueGreenSpec, COPY_AUTO_SCALING_GROUP, DeploymentGroupSettings,
    DeploymentSpec, KEEP_ALIVE, STOP_DEPLOYMENT, TargetSelection, now_millis,
};
use crate::store::DeploymentRecord;
use gantry_core::deployment::OriginalFleet;
use gantry_core::identity::Sender;
use gantry_core::lifecycle::{self, LifecycleEvent};
use serde::Deserialize;

/// A blue/green deployment's two fleets, as CreateDeployment resolves them. A copy not
/// yet provisioned has no replacement hosts (`provisioning`).
pub struct Fleets {
    pub provisioning: bool,
    pub replacement: Vec<Host>,
    pub original: Vec<Host>,
    pub replacement_events: Vec<LifecycleEvent>,
    pub original_events: Vec<LifecycleEvent>,
    pub ready_wait_ms: Option<u64>,
    pub original_fleet: OriginalFleet,
    pub spec: BlueGreenSpec,
}

/// How long a copied group has to launch its instances before the deployment fails.
pub const PROVISIONING_LIMIT_MS: u64 = 10 * 60 * 1000;

/// How often a provisioning copy is looked at.
pub const FLEET_CHECK_DELAY_SECONDS: i32 = 5;

fn invalid_targets(message: impl Into<String>) -> ApiError {
    ApiError::new(Exception::InvalidTargetInstances, message)
}

/// The fleets of a new blue/green deployment of `settings`' group: the original is what
/// the group deploys to now; the replacement is a copy of its Auto Scaling group (none
/// yet, until `copied` gives the copy's instances), or the instances `targetInstances`
/// names.
pub async fn provision(
    control: &ControlPlane,
    settings: &DeploymentGroupSettings,
    config: &BlueGreenConfiguration,
    target_instances: Option<&serde_json::Value>,
    deployment_id: &str,
    copied: Option<&[Host]>,
) -> Result<Fleets, ApiError> {
    let original = control
        .fleet
        .matching(&control.store, &settings.targets)
        .await?;
    let copy = config.green_fleet_provisioning_option.action == COPY_AUTO_SCALING_GROUP;
    let given = target_instances.filter(|value| !crate::model::is_blank(value));
    if copied.is_some() && !copy {
        return Err(ApiError::new(
            Exception::InvalidBlueGreenDeploymentConfiguration,
            "greenFleetProvisioningOption: no longer COPY_AUTO_SCALING_GROUP; the deployment group changed while the deployment's replacement fleet was provisioned",
        ));
    }
    let (replacement, spec) = if copy {
        if given.is_some() {
            return Err(invalid_targets(
                "targetInstances: the deployment group copies its Auto Scaling group for the replacement fleet (greenFleetProvisioningOption COPY_AUTO_SCALING_GROUP); leave targetInstances out",
            ));
        }
        let [source] = settings.targets.auto_scaling_groups.as_slice() else {
            return Err(ApiError::new(
                Exception::InvalidAutoScalingGroup,
                "autoScalingGroups: COPY_AUTO_SCALING_GROUP copies the deployment group's one Auto Scaling group; it has none or several",
            ));
        };
        // Refused now rather than when the copy is made.
        if control.green_fleets.group(source).await?.is_none() {
            return Err(ApiError::new(
                Exception::InvalidAutoScalingGroup,
                format!("autoScalingGroups: {source} does not exist; there is nothing to copy"),
            ));
        }
        let name = crate::green_fleet::copy_name(&settings.deployment_group_name, deployment_id);
        let spec = BlueGreenSpec {
            original_auto_scaling_groups: vec![source.clone()],
            replacement_auto_scaling_group: Some(name),
            configuration: Some(config.clone()),
            ..BlueGreenSpec::default()
        };
        (copied.map(<[Host]>::to_vec).unwrap_or_default(), spec)
    } else {
        let Some(value) = given else {
            return Err(invalid_targets(
                "targetInstances: is required: the deployment group discovers its replacement fleet (greenFleetProvisioningOption DISCOVER_EXISTING); give the replacement instances by tagFilters, ec2TagSet or autoScalingGroups",
            ));
        };
        let selection = replacement_selection(value)?;
        let hosts = control.fleet.matching(&control.store, &selection).await?;
        let spec = BlueGreenSpec {
            configuration: Some(config.clone()),
            target_instances: Some(value.clone()),
            ..BlueGreenSpec::default()
        };
        (hosts, spec)
    };
    let provisioning = copy && copied.is_none();
    if replacement.is_empty() && !provisioning {
        return Err(invalid_targets(
            "targetInstances: matched no running instance; the replacement fleet needs at least one",
        ));
    }
    if let Some(both) = replacement
        .iter()
        .find(|host| original.iter().any(|o| o.instance_id == host.instance_id))
    {
        return Err(invalid_targets(format!(
            "targetInstances: instance {} is in the deployment group already; the replacement fleet must be other instances",
            both.instance_id
        )));
    }
    let termination = &config.terminate_blue_instances_on_deployment_success;
    Ok(Fleets {
        provisioning,
        replacement,
        original,
        replacement_events: lifecycle::blue_green_replacement(),
        original_events: lifecycle::blue_green_original(),
        ready_wait_ms: (config.deployment_ready_option.action_on_timeout == STOP_DEPLOYMENT)
            .then_some(u64::from(config.deployment_ready_option.wait_time_in_minutes) * 60_000),
        original_fleet: if termination.action == KEEP_ALIVE {
            OriginalFleet::KeepAlive
        } else {
            OriginalFleet::Terminate {
                wait_ms: u64::from(termination.termination_wait_time_in_minutes) * 60_000,
            }
        },
        spec,
    })
}

/// The fleets of a rollback of `failed`, a blue/green deployment: its original hosts
/// (still on the previous revision) take traffic back, and its replacement hosts are
/// blocked, then removed with their copied group. Discovered replacement instances are
/// kept: Gantry did not make them.
pub async fn rollback_fleets(
    control: &ControlPlane,
    failed: &DeploymentRecord<DeploymentSpec>,
    failed_fleets: &BlueGreenSpec,
) -> Result<Fleets, ApiError> {
    let id = &failed.spec.deployment_id;
    let Some(bg) = &failed.state.blue_green else {
        return Err(ApiError::internal(format!(
            "deployment {id} has no blue/green fleets to roll back"
        )));
    };
    let total = bg.replacement + bg.original;
    let ordered = control.store.plan_slice(id, 0, total).await?;
    let host = |target: &gantry_core::planner::Target| Host {
        instance_id: target.instance_id.clone(),
        zone: target.zone.clone(),
        sender: target.sender.clone(),
        stopped: false,
    };
    let (green, blue) = ordered.split_at(bg.replacement as usize);
    let copied = failed_fleets.replacement_auto_scaling_group.clone();
    Ok(Fleets {
        provisioning: false,
        replacement: blue.iter().map(host).collect(),
        original: green.iter().map(host).collect(),
        replacement_events: lifecycle::blue_green_rollback_original(),
        original_events: lifecycle::blue_green_rollback_replacement(),
        ready_wait_ms: None,
        original_fleet: match &copied {
            Some(_) => OriginalFleet::Terminate { wait_ms: 0 },
            None => OriginalFleet::KeepAlive,
        },
        spec: BlueGreenSpec {
            original_auto_scaling_groups: copied.into_iter().collect(),
            configuration: failed_fleets.configuration.clone(),
            ..BlueGreenSpec::default()
        },
    })
}

/// CreateDeployment's `targetInstances` (tagFilters, ec2TagSet, autoScalingGroups), as
/// a selection of EC2 instances.
fn replacement_selection(value: &serde_json::Value) -> Result<TargetSelection, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct TargetInstances {
        #[serde(default)]
        tag_filters: Vec<gantry_core::planner::TagFilter>,
        #[serde(default)]
        auto_scaling_groups: Vec<String>,
        #[serde(default)]
        ec2_tag_set: Option<crate::model::Ec2TagSet>,
    }
    let given: TargetInstances =
        serde_path_to_error::deserialize(value.clone()).map_err(|error| {
            invalid_targets(format!(
                "targetInstances.{}: {}",
                error.path(),
                error.inner()
            ))
        })?;
    let selection = TargetSelection {
        ec2_tag_filters: given.tag_filters,
        ec2_tag_set: given.ec2_tag_set,
        auto_scaling_groups: given.auto_scaling_groups,
        ..TargetSelection::default()
    };
    selection
        .validate()
        .map_err(|message| invalid_targets(format!("targetInstances: {message}")))?;
    if selection.is_empty() {
        return Err(invalid_targets(
            "targetInstances: give tagFilters, ec2TagSet or autoScalingGroups",
        ));
    }
    Ok(selection)
}

/// One look at a provisioning copy: its instances once it has as many as the original
/// group has (Auto Scaling launches them within seconds to minutes), or None yet.
pub async fn copy_instances(
    control: &ControlPlane,
    source: &str,
    copy: &str,
) -> Result<Option<Vec<Host>>, ApiError> {
    let wanted = control
        .fleet
        .auto_scaling(&[source.to_owned()])
        .await?
        .len()
        .max(1);
    let instances: Vec<Host> = control
        .green_fleets
        .instances(copy)
        .await?
        .into_iter()
        .filter(|instance| !instance.lifecycle_state.starts_with("Terminat"))
        .map(|instance| Host {
            instance_id: instance.instance_id,
            zone: instance.availability_zone,
            sender: Sender::InstanceRole,
            stopped: false,
        })
        .collect();
    tracing::info!(
        copy,
        instances = instances.len(),
        wanted,
        "looked at the replacement fleet"
    );
    Ok((instances.len() >= wanted).then_some(instances))
}

/// Carries out `Effect::ProvisionFleet`: makes the copy (an existing one made for this
/// deployment counts), then has it looked at shortly. A deployment that ended meanwhile
/// (its RemoveReplacement may have run before the copy existed) gets its copy deleted
/// instead, so a late or repeated run never leaves one behind.
pub async fn provision_fleet(
    control: &ControlPlane,
    record: &DeploymentRecord<DeploymentSpec>,
) -> Result<(), ApiError> {
    let id = &record.spec.deployment_id;
    let fleets = record.spec.blue_green.clone().unwrap_or_default();
    let (Some(copy), [source]) = (
        fleets.replacement_auto_scaling_group.as_deref(),
        fleets.original_auto_scaling_groups.as_slice(),
    ) else {
        return Err(ApiError::new(
            Exception::InvalidBlueGreenDeploymentConfiguration,
            format!("deployment {id} has no Auto Scaling group to copy"),
        ));
    };
    match ended_provisioning(control, id).await? {
        None => return Ok(()),
        Some(false) => {
            let made = control
                .green_fleets
                .copy_auto_scaling_group(source, copy, id)
                .await;
            // Looked at again whether or not the copy was made, even partly: a stop may
            // have removed the copy meanwhile, before this run made it again.
            match ended_provisioning(control, id).await? {
                Some(false) => {
                    made?;
                    return post_fleet_check(control, id, FLEET_CHECK_DELAY_SECONDS).await;
                }
                None => return made,
                Some(true) => {}
            }
        }
        Some(true) => {}
    }
    tracing::info!(%id, copy, "the deployment ended while it provisioned its copy: deleting the copy");
    control.green_fleets.delete_auto_scaling_group(copy).await
}

/// Where a deployment stands as to its copy: still provisioning (`Some(false)`), ended
/// while it was (`Some(true)`: the copy is its to delete), or planned over the copy
/// (`None`: the copy is its replacement fleet now, never to be touched here).
async fn ended_provisioning(control: &ControlPlane, id: &str) -> Result<Option<bool>, ApiError> {
    let state = control
        .store
        .load_deployment::<DeploymentSpec>(id)
        .await?
        .state;
    Ok(state.provisioning().then_some(state.status.is_terminal()))
}

/// Carries out `Effect::RemoveReplacement`: deletes the copy of a deployment that ended
/// while provisioning it (deleting one that is gone, or never was, is done).
pub async fn remove_replacement(
    control: &ControlPlane,
    spec: &DeploymentSpec,
) -> Result<(), ApiError> {
    let copy = spec
        .blue_green
        .as_ref()
        .and_then(|fleets| fleets.replacement_auto_scaling_group.as_deref());
    match copy {
        Some(copy) => control.green_fleets.delete_auto_scaling_group(copy).await,
        None => Ok(()),
    }
}

/// A look at a provisioning copy: `{"gantryFleetCheck": {"deploymentId": ..}}` on the
/// lifecycle queue, `delay` seconds on.
pub async fn post_fleet_check(
    control: &ControlPlane,
    deployment_id: &str,
    delay: i32,
) -> Result<(), ApiError> {
    let Some(queue_url) = control.settings.lifecycle_queue_url.as_deref() else {
        // The tick looks at it too.
        return Ok(());
    };
    let body = serde_json::json!({"gantryFleetCheck": {"deploymentId": deployment_id}});
    control
        .queues
        .send_delayed(queue_url, body.to_string(), delay)
        .await
}

/// Carries out `Effect::Reroute`: the Ready replacement hosts at `first..first + count`
/// are marked deploying again and sent their traffic events. Run again, it finds them
/// deploying already and only sends the commands again, which hosts ignore.
pub async fn reroute(
    control: &ControlPlane,
    record: &DeploymentRecord<DeploymentSpec>,
    first: u32,
    count: u32,
) -> Result<(), ApiError> {
    let spec = &record.spec;
    let id = &spec.deployment_id;
    let now = now_millis();
    let ids: Vec<String> = control
        .store
        .plan_slice(id, first, count)
        .await?
        .into_iter()
        .map(|target| target.instance_id)
        .collect();
    let mut found = control.store.load_targets(id, &ids).await?;
    let mut commands = Vec::new();
    for instance_id in &ids {
        let Some(versioned) = found.remove(instance_id) else {
            return Err(ApiError::internal(format!(
                "replacement host {instance_id} has no record to reroute"
            )));
        };
        let rerouted = record.state.rerouted_target(versioned.value.clone(), now);
        if rerouted != versioned.value {
            control
                .store
                .replace_target(id, &rerouted, versioned.version)
                .await?;
        }
        let events: Vec<LifecycleEvent> = rerouted.events.iter().map(|r| r.event).collect();
        let from = events
            .iter()
            .position(|&event| event == LifecycleEvent::BeforeAllowTraffic)
            .unwrap_or(0);
        let mut command = spec.command(instance_id, rerouted.deadline);
        command.lifecycle_events = lifecycle::stretch(&events, from).to_vec();
        commands.push(command);
    }
    control.queues.send_all(commands).await?;
    Ok(())
}

/// Carries out `Effect::TerminateOriginal`: deletes the original fleet's Auto Scaling
/// groups, which terminates their instances; a discovered fleet (no group of its own)
/// has its instances terminated one by one.
pub async fn terminate_original(
    control: &ControlPlane,
    record: &DeploymentRecord<DeploymentSpec>,
) -> Result<(), ApiError> {
    let Some(bg) = &record.state.blue_green else {
        return Ok(());
    };
    let fleets = record.spec.blue_green.clone().unwrap_or_default();
    if !fleets.original_auto_scaling_groups.is_empty() {
        tracing::info!(groups = ?fleets.original_auto_scaling_groups, "deleting the original fleet's groups");
        for group in &fleets.original_auto_scaling_groups {
            control
                .green_fleets
                .delete_auto_scaling_group(group)
                .await?;
        }
        return Ok(());
    }
    let originals: Vec<String> = control
        .store
        .plan_slice(&record.spec.deployment_id, bg.replacement, bg.original)
        .await?
        .into_iter()
        .map(|target| target.instance_id)
        .collect();
    // Only instances tagged for Gantry, as its role allows: one it may not terminate
    // would fail this effect on every retry.
    let managed = control.green_fleets.managed_instances(&originals).await?;
    let kept: Vec<&String> = originals
        .iter()
        .filter(|id| !managed.contains(id))
        .collect();
    if !kept.is_empty() {
        tracing::warn!(
            ?kept,
            "original instances not tagged gantry:managed=true are left running, out of the load balancer"
        );
    }
    tracing::info!(
        instances = managed.len(),
        "terminating the original instances"
    );
    control.green_fleets.terminate_instances(&managed).await
}

/// Carries out `Effect::AdoptReplacement`: the deployment group deploys to the copied
/// Auto Scaling group instead of the original one, with Gantry's hooks put on it first.
pub async fn adopt_replacement(
    control: &ControlPlane,
    record: &DeploymentRecord<DeploymentSpec>,
) -> Result<(), ApiError> {
    let spec = &record.spec;
    let fleets = spec.blue_green.clone().unwrap_or_default();
    let Some(copy) = fleets.replacement_auto_scaling_group else {
        return Ok(());
    };
    let group = control
        .load_group(&spec.application_name, &spec.deployment_group_name)
        .await?;
    let mut settings = group.settings.value.clone();
    let groups = &mut settings.targets.auto_scaling_groups;
    groups.retain(|name| !fleets.original_auto_scaling_groups.contains(name));
    if !groups.contains(&copy) {
        groups.push(copy.clone());
    }
    if settings == group.settings.value {
        return Ok(());
    }
    crate::group_hooks::put_group_hooks(control, &settings, std::slice::from_ref(&copy)).await?;
    control
        .store
        .update_body(
            &crate::store::keys::groups(&spec.application_name),
            &spec.deployment_group_name,
            &settings,
            group.settings.version,
        )
        .await?;
    tracing::info!(auto_scaling_group = %copy, "deployment group adopted the replacement fleet");
    Ok(())
}
