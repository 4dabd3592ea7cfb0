//! CreateDeployment: the input checked against the group, the hosts and fleets found,
//! the plan made by gantry-core, and the deployment stored with the group's lock.

use super::gather::{
    bind_instance_roles, current_revision, deadlines, revision_record, standing,
    traffic_target_groups,
};
use super::{CreateDeploymentInput, Created, Origin, alarm_error, new_deployment_id};
use crate::adapters::{Host, revision_key};
use crate::control::ControlPlane;
use crate::error::{ApiError, Exception};
use crate::model::{
    AlarmConfiguration, DeploymentGroupSettings, DeploymentSpec, LastDeploymentInfo,
    ROLLBACK_ON_ALARM, ROLLBACK_ON_FAILURE, ROLLBACK_ON_REQUEST, RevisionRecord, RollbackInfo,
    is_blank, now_millis,
};
use crate::store::{DeploymentRecord, StoreError, keys};
use gantry_core::appspec::FileExistsBehavior;
use gantry_core::config::ONE_AT_A_TIME;
use gantry_core::deployment::{
    AlarmPolicy, BlueGreenPlan, Effect, NotificationEvent, Plan, Planned,
};
use gantry_core::identity::Sender;
use gantry_core::planner::{Standing, Target};
use gantry_core::wire::Creator;
use gantry_core::{deployment, lifecycle};
use std::collections::BTreeMap;
use tracing::Instrument;

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|value| !value.is_empty())
}

/// CreateDeployment. Validates everything before writing anything; then stores the
/// deployment, its ordered targets and the group's lock in one transaction.
pub async fn create(
    control: &ControlPlane,
    input: CreateDeploymentInput,
    creator: Creator,
    origin: Origin,
) -> Result<Created, ApiError> {
    let group = control
        .load_group(&input.application_name, &input.deployment_group_name)
        .await?;
    let settings = &group.settings.value;
    crate::model::check_description(input.description.as_deref())?;
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
    let config = control.deployment_config(&config_name).await?;
    let revision = input.revision.clone().ok_or_else(|| {
        ApiError::new(
            Exception::RevisionRequired,
            "revision: is required (revisionType S3 with s3Location {bucket, key, bundleType})",
        )
    })?;
    let record = revision_record(control, &input.application_name, &revision).await?;
    let revision = record.revision_location.clone();
    let previous = match &group.target_revision {
        Some(last) => control
            .store
            .get::<RevisionRecord>(
                &keys::revisions(&input.application_name),
                &revision_key(last),
            )
            .await?
            .map(|found| found.value),
        None => None,
    };

    let deployment_id = origin
        .deployment_id
        .clone()
        .unwrap_or_else(new_deployment_id);
    let fleets = Box::pin(blue_green_fleets(
        control,
        &group,
        &input,
        &origin,
        &deployment_id,
    ))
    .await?;
    let provisioning = fleets.as_ref().is_some_and(|fleets| fleets.provisioning);
    let mut hosts = match (&origin.launch, &origin.hosts, &fleets) {
        (Some((host, _)), _, _) => vec![host.clone()],
        (None, Some(hosts), _) => hosts.clone(),
        // Both fleets' reports are bound to their senders alike: the originals follow.
        (None, None, Some(fleets)) => [&fleets.replacement[..], &fleets.original].concat(),
        (None, None, None) => {
            control
                .fleet
                .matching(&control.store, &settings.targets)
                .await?
        }
    };
    // Boxed, as every call here that awaits AWS: inlined, their state would grow
    // create's future, which rollbacks and launches already nest (a debug build's test
    // threads overflowed their stack).
    Box::pin(bind_instance_roles(control, &mut hosts)).await?;
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
    let health = control
        .store
        .group_health(&input.application_name, &input.deployment_group_name)
        .await?;
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
        standing: if host.stopped {
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
    let now = now_millis();
    let launch = origin.launch.is_some();
    let target_groups = Box::pin(traffic_target_groups(control, settings)).await?;
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
    // The first batch is a batch boundary: no host is touched while an alarm fires.
    // A provisioning deployment's alarms were polled by its ticks all along (an alarm
    // stops it and removes its copy); planned over the copy, it starts as they left it.
    let first_alarm_check = match alarm_policy {
        Some(_) if origin.provisioned.is_none() => {
            Some(Box::pin(control.alarms.check(&alarms.names())).await)
        }
        _ => None,
    };
    let deadlines = deadlines(
        control,
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
            alarm_policy,
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
            rollback_on_failure: auto_rollback.on(ROLLBACK_ON_FAILURE),
            rollback_on_stop: auto_rollback.on(ROLLBACK_ON_REQUEST),
            alarms: alarm_policy,
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
        deployment_group_id: settings.deployment_group_id.clone(),
        deployment_config_name: config.name.clone(),
        revision: revision.clone(),
        previous_revision: group.target_revision.clone(),
        creator,
        description: input.description.clone().filter(|d| !d.is_empty()),
        ignore_application_stop_failures: input.ignore_application_stop_failures,
        file_exists_behavior,
        auto_rollback_configuration: auto_rollback.clone(),
        update_outdated_instances_only: input.update_outdated_instances_only,
        trigger_configurations: settings.trigger_configurations.clone(),
        lifecycle_events: events.clone(),
        rollback_triggering_deployment_id: origin.rollback_of.clone(),
        lifecycle_action: origin.launch.as_ref().map(|(_, action)| action.clone()),
        alarm_configuration: alarms,
        override_alarm_configuration: override_alarms,
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
    let span = tracing::info_span!("create_deployment", deployment_id = %deployment_id);
    async {
        let created = match &origin.provisioned {
            None => Box::pin(control.store.create_deployment(
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
            Some(provisioned) => match Box::pin(control.store.replace_provisioning(
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
        record_stopped(control, &deployment_id, &ordered, &state, now).await;
        tracing::info!(hosts = ordered.len(), config = %config.name, provisioning, "deployment created");
        let record = DeploymentRecord {
            spec,
            state,
            version,
            outbox: BTreeMap::new(),
            rollback_info: RollbackInfo::default(),
            wakeup_at: None,
        };
        // The deployment exists and holds the lock: failing the call now would have
        // the caller retry into DeploymentLimitExceeded. The end records it again.
        if !launch
            && let Err(error) = control
                .store
                .record_attempt(
                    &record.spec.application_name,
                    &record.spec.deployment_group_name,
                    &LastDeploymentInfo::of(&record.state),
                )
                .await
        {
            tracing::warn!(%error, "could not record the group's last attempted deployment");
        }
        Ok(Created { record, effects })
    }
    .instrument(span)
    .await
}

/// A blue/green deployment's fleets: provisioned for a new deployment of a BLUE_GREEN
/// group, or swapped from the failed deployment for its rollback. None in place, and for
/// a launching or terminating instance's deployment, which is in place whatever the
/// group's style.
async fn blue_green_fleets(
    control: &ControlPlane,
    group: &crate::store::GroupRecord<DeploymentGroupSettings>,
    input: &CreateDeploymentInput,
    origin: &Origin,
    deployment_id: &str,
) -> Result<Option<crate::blue_green::Fleets>, ApiError> {
    if origin.launch.is_some() || origin.hosts.is_some() {
        return Ok(None);
    }
    if let Some(failed) = &origin.rollback_of {
        let failed = control
            .store
            .load_deployment::<DeploymentSpec>(failed)
            .await?;
        return match failed.spec.blue_green.clone() {
            Some(spec) => Ok(Some(
                crate::blue_green::rollback_fleets(control, &failed, &spec).await?,
            )),
            None => Ok(None),
        };
    }
    let settings = &group.settings.value;
    let Some(config) = settings
        .blue_green_deployment_configuration
        .as_ref()
        .filter(|_| settings.is_blue_green())
    else {
        if origin.provisioned.is_some() {
            return Err(ApiError::new(
                Exception::InvalidDeploymentStyle,
                format!(
                    "deployment group {}: no longer blue/green; it changed while the deployment's replacement fleet was provisioned",
                    settings.deployment_group_name
                ),
            ));
        }
        return Ok(None);
    };
    // Refused before a copy is made, rather than after (its own lock a provisioned
    // deployment holds already).
    if let Some(active) = group
        .active_deployment_id
        .as_ref()
        .filter(|active| origin.provisioned.is_none() || *active != deployment_id)
    {
        return Err(ApiError::new(
            Exception::DeploymentLimitExceeded,
            format!(
                "deployment group {} already has an active deployment ({active}); wait for it to finish or stop it",
                settings.deployment_group_name
            ),
        ));
    }
    crate::blue_green::provision(
        control,
        settings,
        config,
        input.target_instances.as_ref(),
        deployment_id,
        origin
            .provisioned
            .as_ref()
            .map(|provisioned| provisioned.replacement.as_slice()),
    )
    .await
    .map(Some)
}

/// Writes the records of the deployment's stopped instances, failed as it started, so
/// that they read as every host record does. Readers derive the same record for a host
/// without one, so a write that fails is only logged.
async fn record_stopped(
    control: &ControlPlane,
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
    if let Err(error) = control.store.create_targets(deployment_id, stopped).await {
        tracing::warn!(%error, "stopped instances' records not written");
    }
}
