//! Blue/green deployments on the control plane's side: which hosts make each fleet when
//! one is created (a copy of the group's Auto Scaling group, or instances named by
//! `targetInstances`), and the effects that only blue/green has: rerouting Ready hosts,
//! terminating the original fleet, and the group adopting the replacement fleet.
//! The stages themselves are decided in `gantry_core::deployment` (its `blue_green`).

use crate::adapters::Host;
use crate::control::ControlPlane;
use crate::error::{ApiError, Exception};
use crate::model::{
    BlueGreenConfiguration, COPY_AUTO_SCALING_GROUP, DeploymentGroupSettings, DeploymentSpec,
    KEEP_ALIVE, STOP_DEPLOYMENT, TargetSelection, now_millis,
};
use crate::store::DeploymentRecord;
use gantry_core::deployment::OriginalFleet;
use gantry_core::identity::Sender;
use gantry_core::lifecycle::{self, LifecycleEvent};
use serde::{Deserialize, Serialize};

/// What a blue/green deployment keeps of its fleets, beside its ordered hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenSpec {
    /// The Auto Scaling groups deleted with the original fleet (TERMINATE).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub original_auto_scaling_groups: Vec<String>,
    /// The copied Auto Scaling group holding the replacement fleet: the deployment group
    /// deploys to it in place of the original once the deployment succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement_auto_scaling_group: Option<String>,
    /// The group's configuration the deployment was made with, as GetDeployment shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<BlueGreenConfiguration>,
    /// CreateDeployment's `targetInstances`, as given (DISCOVER_EXISTING).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_instances: Option<serde_json::Value>,
}

/// A blue/green deployment's two fleets, as CreateDeployment resolves them.
pub struct Fleets {
    pub replacement: Vec<Host>,
    pub original: Vec<Host>,
    pub replacement_events: Vec<LifecycleEvent>,
    pub original_events: Vec<LifecycleEvent>,
    pub ready_wait_ms: Option<u64>,
    pub original_fleet: OriginalFleet,
    pub spec: BlueGreenSpec,
}

/// How long CreateDeployment waits for a copied group's instances to exist.
const PROVISIONING_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

fn invalid_targets(message: impl Into<String>) -> ApiError {
    ApiError::new(Exception::InvalidTargetInstances, message)
}

/// The fleets of a new blue/green deployment of `settings`' group: the original is what
/// the group deploys to now; the replacement is a copy of its Auto Scaling group, or the
/// instances `targetInstances` names.
pub async fn provision(
    control: &ControlPlane,
    settings: &DeploymentGroupSettings,
    config: &BlueGreenConfiguration,
    target_instances: Option<&serde_json::Value>,
    deployment_id: &str,
) -> Result<Fleets, ApiError> {
    let original = crate::deploy::resolve_hosts(control, &settings.targets).await?;
    let copy = config.green_fleet_provisioning_option.action == COPY_AUTO_SCALING_GROUP;
    let given = target_instances.filter(|value| !crate::deploy::is_blank(value));
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
        let name = crate::green_fleet::copy_name(&settings.deployment_group_name, deployment_id);
        control
            .green_fleets
            .copy_auto_scaling_group(source, &name, deployment_id)
            .await?;
        let hosts = match copied_instances(control, source, &name).await {
            Ok(hosts) => hosts,
            Err(error) => {
                remove_copy(control, &name).await;
                return Err(error);
            }
        };
        let spec = BlueGreenSpec {
            original_auto_scaling_groups: vec![source.clone()],
            replacement_auto_scaling_group: Some(name),
            configuration: Some(config.clone()),
            target_instances: None,
        };
        (hosts, spec)
    } else {
        let Some(value) = given else {
            return Err(invalid_targets(
                "targetInstances: is required: the deployment group discovers its replacement fleet (greenFleetProvisioningOption DISCOVER_EXISTING); give the replacement instances by tagFilters, ec2TagSet or autoScalingGroups",
            ));
        };
        let selection = replacement_selection(value)?;
        let hosts = crate::deploy::resolve_hosts(control, &selection).await?;
        let spec = BlueGreenSpec {
            configuration: Some(config.clone()),
            target_instances: Some(value.clone()),
            ..BlueGreenSpec::default()
        };
        (hosts, spec)
    };
    if replacement.is_empty() {
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

/// The copy's instances once it has as many as the original has in service (Auto
/// Scaling launches them within seconds; a launch that does not come in
/// [`PROVISIONING_LIMIT`] fails the deployment's creation).
async fn copied_instances(
    control: &ControlPlane,
    source: &str,
    copy: &str,
) -> Result<Vec<Host>, ApiError> {
    let wanted = control
        .fleet
        .auto_scaling(&[source.to_owned()])
        .await?
        .len()
        .max(1);
    let started = std::time::Instant::now();
    loop {
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
        if instances.len() >= wanted {
            return Ok(instances);
        }
        if started.elapsed() > PROVISIONING_LIMIT {
            return Err(ApiError::new(
                Exception::InvalidAutoScalingGroup,
                format!(
                    "autoScalingGroups: the replacement fleet's group {copy} had {} of {wanted} instances after {} s; check its launch template and capacity",
                    instances.len(),
                    PROVISIONING_LIMIT.as_secs()
                ),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Best effort: a copy made for a deployment that was not created.
pub async fn remove_copy(control: &ControlPlane, name: &str) {
    if let Err(error) = control.green_fleets.delete_auto_scaling_group(name).await {
        tracing::warn!(%error, name, "copied Auto Scaling group not removed");
    }
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
        let mut command = crate::effects::command(spec, instance_id, rerouted.deadline);
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
    crate::handlers::api::put_group_hooks(control, &settings, std::slice::from_ref(&copy)).await?;
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
