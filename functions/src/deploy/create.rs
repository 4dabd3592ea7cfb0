//! CreateDeployment, in four steps: the input checked against its group ([`check`]), what
//! the deployment is made of looked up ([`Sources::gather`]: the configuration, the
//! revision, the hosts and fleets, the target groups, the alarms), the plan made by
//! gantry-core ([`plan`]), and the deployment stored with the group's lock ([`store`]).
//! Only gathering and storing reach out, through ports: the rest is tested in memory.

use super::{CreateDeploymentInput, Created, Origin, alarm_error, new_deployment_id};
use crate::adapters::Host;
use crate::blue_green::Fleets;
use crate::control::Settings;
use crate::error::{ApiError, Exception};
use crate::model::{
    AlarmConfiguration, AutoRollbackConfiguration, DeploymentGroupSettings, DeploymentSpec,
    LastDeploymentInfo, ROLLBACK_ON_ALARM, ROLLBACK_ON_FAILURE, ROLLBACK_ON_REQUEST,
    RevisionRecord, RollbackInfo, is_blank, now_millis,
};
use crate::ports::{DeploymentLog, GroupLog, Ports};
use crate::store::{DeploymentRecord, GroupRecord, InstanceHealth, StoreError};
use crate::traffic::TargetGroupRef;
use gantry_core::appspec::FileExistsBehavior;
use gantry_core::config::{DeploymentConfig, ONE_AT_A_TIME};
use gantry_core::deployment::{
    AlarmCheck, AlarmPolicy, BlueGreenPlan, Effect, NotificationEvent, Plan, Planned,
};
use gantry_core::identity::Sender;
use gantry_core::planner::{Standing, Target};
use gantry_core::wire::{Creator, RevisionLocation};
use gantry_core::{deployment, lifecycle};
use std::collections::BTreeMap;
use std::future::Future;
use tracing::Instrument;

use super::gather::{current_revision, deadlines, standing};

/// Where CreateDeployment looks up what a deployment is made of.
pub trait Sources: Ports {
    /// The group, with its application checked to exist.
    fn load_group(
        &self,
        application: &str,
        group: &str,
    ) -> impl Future<Output = Result<GroupRecord<DeploymentGroupSettings>, ApiError>> + Send;

    /// Everything else, for a request already checked. A blue/green deployment's copy is
    /// made here, once nothing else can refuse the request before it.
    fn gather(
        &self,
        request: Request<'_>,
    ) -> impl Future<Output = Result<Gathered, ApiError>> + Send;
}

/// A CreateDeployment request, checked against its group.
pub struct Request<'a> {
    pub input: &'a CreateDeploymentInput,
    pub origin: &'a Origin,
    pub group: &'a GroupRecord<DeploymentGroupSettings>,
    pub checked: &'a Checked,
    pub deployment_id: &'a str,
}

/// What [`check`] made of the input.
#[derive(Debug, Clone)]
pub struct Checked {
    pub revision: RevisionLocation,
    pub config_name: String,
    pub file_exists_behavior: FileExistsBehavior,
    pub auto_rollback: AutoRollbackConfiguration,
    pub override_alarms: Option<AlarmConfiguration>,
    /// The alarms the deployment watches (none for a rollback).
    pub alarms: AlarmConfiguration,
    pub alarm_policy: Option<AlarmPolicy>,
}

/// What a deployment is made of, looked up.
pub struct Gathered {
    pub config: DeploymentConfig,
    /// The revision's registered record, its location pinned to a version.
    pub revision: RevisionRecord,
    /// The group's last successful revision's record: its scripts stop what runs now.
    pub previous: Option<RevisionRecord>,
    pub fleets: Option<Fleets>,
    /// The hosts, each bound to the identity its reports must come from; a blue/green
    /// deployment's replacement hosts first, then its originals.
    pub hosts: Vec<Host>,
    pub target_groups: Vec<TargetGroupRef>,
    /// The alarms as they stand, for a deployment that watches some: no host is
    /// touched while one fires.
    pub first_alarm_check: Option<AlarmCheck>,
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|value| !value.is_empty())
}

/// CreateDeployment. Validates everything before writing anything; then stores the
/// deployment, its ordered targets and the group's lock in one transaction.
pub async fn create<P: Sources>(
    ports: &P,
    input: CreateDeploymentInput,
    creator: Creator,
    origin: Origin,
) -> Result<Created, ApiError> {
    let group = ports
        .load_group(&input.application_name, &input.deployment_group_name)
        .await?;
    let checked = check(&input, &group.settings.value, &origin)?;
    let deployment_id = origin
        .deployment_id
        .clone()
        .unwrap_or_else(new_deployment_id);
    // Boxed: inlined, gathering's AWS calls would grow create's future, which rollbacks
    // and launches already nest (a debug build's test threads overflowed their stack).
    let gathered = Box::pin(ports.gather(Request {
        input: &input,
        origin: &origin,
        group: &group,
        checked: &checked,
        deployment_id: &deployment_id,
    }))
    .await?;
    let health = ports
        .log()
        .group_health(&input.application_name, &input.deployment_group_name)
        .await?;
    let new = plan(
        &input,
        creator,
        &origin,
        &group,
        checked,
        gathered,
        &health,
        deployment_id,
        ports.settings(),
        now_millis(),
    )?;
    Box::pin(store(ports, new, &origin, &group)).await
}

/// Checks the input against its group's settings: everything that needs no lookup.
pub fn check(
    input: &CreateDeploymentInput,
    settings: &DeploymentGroupSettings,
    origin: &Origin,
) -> Result<Checked, ApiError> {
    crate::model::check_description(input.description.as_deref())?;
    super::check_deployment_mode(input.deployment_mode.as_deref())?;
    super::check_ec2_deployment_options(input.ec2_deployment_options.as_ref())?;
    // A Lambda group's deployments move an alias (crate::lambda_deployments); none of
    // the instance paths (rollbacks, launches, provisioning) may deploy to one.
    if settings.is_lambda() {
        return Err(ApiError::new(
            Exception::InvalidComputePlatform,
            format!(
                "deploymentGroupName: {:?} is a group of a Lambda application; its deployments move an alias, not instances",
                settings.deployment_group_name
            ),
        ));
    }
    if let Some(targets) = &input.target_instances
        && !is_blank(targets)
        && !settings.is_blue_green()
    {
        return Err(ApiError::new(
            Exception::InvalidTargetInstances,
            "targetInstances: names the replacement environment of a blue/green deployment; this deployment group deploys in place, so leave it out",
        ));
    }
    let file_exists_behavior = match non_empty(&input.file_exists_behavior) {
        None => FileExistsBehavior::Disallow,
        Some(name) => FileExistsBehavior::parse(name).ok_or_else(|| {
            ApiError::new(
                Exception::InvalidFileExistsBehavior,
                format!(
                    "fileExistsBehavior: {name:?} is not one of {}",
                    FileExistsBehavior::NAMES.join(", ")
                ),
            )
        })?,
    };
    let auto_rollback = input
        .auto_rollback_configuration
        .clone()
        .unwrap_or_else(|| settings.auto_rollback_configuration.clone());
    auto_rollback
        .validate()
        .map_err(|message| ApiError::new(Exception::InvalidAutoRollbackConfig, message))?;
    let override_alarms = match input.override_alarm_configuration.clone() {
        Some(value) if !value.is_null() => Some(
            AlarmConfiguration::from_input("overrideAlarmConfiguration", value)
                .map_err(alarm_error)?,
        ),
        _ => None,
    };
    // A rollback watches no alarms: the alarm that stopped the deployment it replaces is
    // most likely still in ALARM, and would stop the rollback too.
    let alarms = if origin.rollback_of.is_some() {
        AlarmConfiguration::default()
    } else {
        override_alarms
            .clone()
            .unwrap_or_else(|| settings.alarm_configuration.clone())
    };
    let alarm_policy = alarms.watches().then(|| AlarmPolicy {
        ignore_poll_failure: alarms.ignore_poll_alarm_failure,
        rollback: auto_rollback.on(ROLLBACK_ON_ALARM),
    });
    let config_name = non_empty(&input.deployment_config_name)
        .unwrap_or(if settings.deployment_config_name.is_empty() {
            ONE_AT_A_TIME
        } else {
            &settings.deployment_config_name
        })
        .to_owned();
    let revision = input.revision.clone().ok_or_else(|| {
        ApiError::new(
            Exception::RevisionRequired,
            "revision: is required (revisionType S3 with s3Location {bucket, key, bundleType})",
        )
    })?;
    Ok(Checked {
        revision,
        config_name,
        file_exists_behavior,
        auto_rollback,
        override_alarms,
        alarms,
        alarm_policy,
    })
}

/// A deployment planned, to be stored.
pub struct NewDeployment {
    pub spec: DeploymentSpec,
    pub state: deployment::Deployment,
    pub effects: Vec<Effect>,
    pub ordered: Vec<Target>,
    pub takes_lock: bool,
    pub now: deployment::Millis,
}

/// Plans the deployment over what was gathered: each host's standing from its health,
/// the order and batches by gantry-core, and the spec every later step reads.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    input: &CreateDeploymentInput,
    creator: Creator,
    origin: &Origin,
    group: &GroupRecord<DeploymentGroupSettings>,
    checked: Checked,
    gathered: Gathered,
    health: &BTreeMap<String, InstanceHealth>,
    deployment_id: String,
    settings: &Settings,
    now: deployment::Millis,
) -> Result<NewDeployment, ApiError> {
    let group_settings = &group.settings.value;
    let Gathered {
        config,
        revision: record,
        previous,
        fleets,
        mut hosts,
        target_groups,
        first_alarm_check,
    } = gathered;
    let revision = record.revision_location.clone();
    let provisioning = fleets.as_ref().is_some_and(|fleets| fleets.provisioning);
    let unbound: Vec<&str> = hosts
        .iter()
        .filter(|host| host.sender == Sender::Principal(String::new()))
        .map(|host| host.instance_id.as_str())
        .collect();
    if !unbound.is_empty() {
        return Err(ApiError::new(
            Exception::IamArnRequired,
            format!(
                "on-premises instances {} were registered without an IAM identity, so their reports could come from anyone: deregister them and register them again with iamUserArn or iamSessionArn",
                unbound.join(", ")
            ),
        ));
    }
    let current = current_revision(
        input.update_outdated_instances_only,
        &revision,
        group.target_revision.as_ref(),
    );
    let original_hosts = match &fleets {
        Some(fleets) => hosts.split_off(fleets.replacement.len()),
        None => Vec::new(),
    };
    let to_target = |host: Host| Target {
        // A stopped instance runs no agent; an EC2 instance left unbound (no instance
        // profile) has no identity its reports could be told by: both fail at once.
        standing: if host.stopped || host.sender == Sender::InstanceRole {
            Standing::Stopped
        } else {
            standing(health.get(&host.instance_id), current)
        },
        instance_id: host.instance_id,
        zone: host.zone,
        sender: host.sender,
    };
    let blue_green_plan = fleets.as_ref().map(|fleets| BlueGreenPlan {
        original: original_hosts.iter().cloned().map(to_target).collect(),
        original_events: fleets.original_events.clone(),
        ready_wait_ms: fleets.ready_wait_ms,
        original_fleet: fleets.original_fleet,
    });
    let targets: Vec<Target> = hosts.into_iter().map(to_target).collect();
    let launch = origin.launch.is_some();
    let events = if let Some(fleets) = &fleets {
        fleets.replacement_events.clone()
    } else if creator == Creator::AutoscalingTermination {
        lifecycle::termination(!target_groups.is_empty())
    } else {
        lifecycle::in_place(!target_groups.is_empty())
    };
    // Each event's limit, whichever fleet runs it.
    let all_events = match &fleets {
        Some(fleets) => [&events[..], &fleets.original_events].concat(),
        None => events.clone(),
    };
    let deadlines = deadlines(
        settings,
        &record,
        previous.as_ref(),
        &all_events,
        &target_groups,
    );
    let planned = if provisioning {
        // Stored before the copy is made, so that any copy has a deployment to remove it.
        let (state, effects) = deployment::Deployment::new_provisioning(
            deployment_id.clone(),
            deadlines,
            checked.alarm_policy,
            now,
            now + crate::blue_green::PROVISIONING_LIMIT_MS,
        );
        Ok(Planned {
            ordered: Vec::new(),
            state,
            effects,
            takes_lock: true,
        })
    } else {
        deployment::plan(Plan {
            deployment_id: deployment_id.clone(),
            config: &config,
            targets,
            launch,
            update_outdated_only: input.update_outdated_instances_only,
            deadlines,
            events: &events,
            rollback_on_failure: checked.auto_rollback.on(ROLLBACK_ON_FAILURE),
            rollback_on_stop: checked.auto_rollback.on(ROLLBACK_ON_REQUEST),
            alarms: checked.alarm_policy,
            first_alarm_check,
            blue_green: blue_green_plan,
            now,
        })
    };
    let Planned {
        ordered,
        mut state,
        mut effects,
        takes_lock,
    } = planned.map_err(|error| match error {
        deployment::PlanError::TooManyTargets { .. } => ApiError::new(
            Exception::InstanceLimitExceeded,
            format!(
                "deployment group {}: {error}. Narrow the group's tags or split it into several groups",
                input.deployment_group_name
            ),
        ),
        deployment::PlanError::TooManyZones { .. } => ApiError::new(
            Exception::InvalidZonalDeploymentConfiguration,
            format!(
                "deployment group {}: {error}. Tag on-premises instances with fewer gantry:availability-zone values, or deploy without zonalConfig",
                input.deployment_group_name
            ),
        ),
    })?;
    let spec = DeploymentSpec {
        deployment_id: deployment_id.clone(),
        application_name: input.application_name.clone(),
        deployment_group_name: input.deployment_group_name.clone(),
        deployment_group_id: group_settings.deployment_group_id.clone(),
        deployment_config_name: config.name.clone(),
        revision: revision.clone(),
        previous_revision: group.target_revision.clone(),
        creator,
        description: input.description.clone().filter(|d| !d.is_empty()),
        ignore_application_stop_failures: input.ignore_application_stop_failures,
        file_exists_behavior: checked.file_exists_behavior,
        auto_rollback_configuration: checked.auto_rollback.clone(),
        update_outdated_instances_only: input.update_outdated_instances_only,
        trigger_configurations: group_settings.trigger_configurations.clone(),
        lifecycle_events: events.clone(),
        rollback_triggering_deployment_id: origin.rollback_of.clone(),
        outdated_root_deployment_id: origin.outdated_of.clone(),
        lifecycle_action: origin.launch.as_ref().map(|(_, action)| action.clone()),
        alarm_configuration: checked.alarms,
        override_alarm_configuration: checked.override_alarms,
        target_groups,
        blue_green: fleets.map(|mut fleets| {
            if provisioning {
                // Planned later with the revision pinned now, whatever the key holds then.
                let mut pinned = input.clone();
                pinned.revision = Some(revision.clone());
                fleets.spec.provisioning_input = serde_json::to_value(&pinned).ok();
            }
            fleets.spec
        }),
    };
    if let Some(provisioned) = &origin.provisioned {
        // It was created, and announced, when it started provisioning.
        state.create_time = provisioned.create_time;
        // Planned as ended (a health plan the fleets cannot meet): the copy is unused.
        if state.status.is_terminal() {
            effects.push(Effect::RemoveReplacement);
        }
        effects.retain(|effect| {
            !matches!(
                effect,
                Effect::Notify {
                    event: NotificationEvent::DeploymentStart,
                    ..
                }
            )
        });
    }
    Ok(NewDeployment {
        spec,
        state,
        effects,
        ordered,
        takes_lock,
        now,
    })
}

/// Stores a planned deployment: with its group's lock, or in place of its provisioning
/// self. A group locked by another deployment is DeploymentLimitExceeded.
pub async fn store<P: Ports>(
    ports: &P,
    new: NewDeployment,
    origin: &Origin,
    group: &GroupRecord<DeploymentGroupSettings>,
) -> Result<Created, ApiError> {
    let NewDeployment {
        spec,
        state,
        effects,
        ordered,
        takes_lock,
        now,
    } = new;
    let deployment_id = spec.deployment_id.clone();
    let launch = origin.launch.is_some();
    let provisioning = state.provisioning();
    let span = tracing::info_span!("create_deployment", deployment_id = %deployment_id);
    async {
        let created = match &origin.provisioned {
            None => Box::pin(ports.log().create_deployment(
                &spec.application_name,
                &spec.deployment_group_name,
                &spec,
                &state,
                &ordered,
                &effects,
                takes_lock,
                now,
            ))
            .await
            .map(|()| 1),
            Some(provisioned) => match Box::pin(ports.log().replace_provisioning(
                &spec.application_name,
                &spec.deployment_group_name,
                &spec,
                &state,
                &ordered,
                &effects,
                provisioned.version,
                now,
            ))
            .await
            {
                Err(StoreError::Conflict(message)) => {
                    return Err(ApiError::new(Exception::ConcurrentModification, message));
                }
                other => other,
            },
        };
        let version = created.map_err(|error| match error {
                StoreError::Conflict(_) => ApiError::new(
                    Exception::DeploymentLimitExceeded,
                    format!(
                        "deployment group {} already has an active deployment ({}); wait for it to finish or stop it",
                        spec.deployment_group_name,
                        group.active_deployment_id.as_deref().unwrap_or("another deployment")
                    ),
                ),
                other => other.into(),
            })?;
        record_stopped(ports, &deployment_id, &ordered, &state, now).await;
        tracing::info!(hosts = ordered.len(), config = %spec.deployment_config_name, provisioning, "deployment created");
        let record = DeploymentRecord {
            spec,
            state,
            version,
            tallied: Default::default(),
            outbox: BTreeMap::new(),
            rollback_info: RollbackInfo::default(),
            outdated_updates: Vec::new(),
            wakeup_at: None,
        };
        // The deployment exists and holds the lock: failing the call now would have
        // the caller retry into DeploymentLimitExceeded. The end records it again.
        if !launch
            && let Err(error) = ports
                .log()
                .record_attempt(
                    &record.spec.application_name,
                    &record.spec.deployment_group_name,
                    &LastDeploymentInfo::of(&record.state),
                )
                .await
        {
            tracing::warn!(%error, "could not record the group's last attempted deployment");
        }
        // The revision's first and last use (GetApplicationRevision's firstUsedTime and
        // lastUsedTime): once, when the deployment is created (a provisioned one was
        // created when it started provisioning). Only shown, so a failure is logged.
        if origin.provisioned.is_none()
            && let Err(error) = ports
                .log()
                .record_revision_use(&record.spec.application_name, &record.spec.revision, now)
                .await
        {
            tracing::warn!(%error, "could not record the revision's use");
        }
        Ok(Created { record, effects })
    }
    .instrument(span)
    .await
}

/// Writes the records of the deployment's stopped instances, failed as it started, so
/// that they read as every host record does. Readers derive the same record for a host
/// without one, so a write that fails is only logged.
async fn record_stopped<P: Ports>(
    ports: &P,
    deployment_id: &str,
    ordered: &[Target],
    state: &deployment::Deployment,
    now: deployment::Millis,
) {
    let stopped: Vec<deployment::TargetState> = ordered
        .iter()
        .enumerate()
        .filter(|(_, target)| target.standing == Standing::Stopped)
        .map(|(index, target)| {
            deployment::TargetState::stopped(target.clone(), index as u32, &state.events, Some(now))
        })
        .collect();
    if stopped.is_empty() {
        return;
    }
    if let Err(error) = ports.log().create_targets(deployment_id, stopped).await {
        tracing::warn!(%error, "stopped instances' records not written");
    }
}

#[cfg(test)]
#[path = "create_tests.rs"]
mod tests;
