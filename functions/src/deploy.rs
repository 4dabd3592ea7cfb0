//! Making deployments: CreateDeployment's validation and planning, and the rollback that
//! replaces a failed or stopped deployment. Both store the new deployment with its start
//! effects in its outbox and return it; the caller carries the effects out (see
//! [`crate::effects`]).

use crate::adapters::{Host, revision_key};
use crate::control::ControlPlane;
use crate::error::{ApiError, Exception};
use crate::model::{
    AlarmConfiguration, AutoRollbackConfiguration, DeploymentGroupSettings, DeploymentSpec,
    LastDeploymentInfo, LifecycleAction, ROLLBACK_ON_ALARM, ROLLBACK_ON_FAILURE,
    ROLLBACK_ON_REQUEST, RevisionRecord, RollbackInfo, is_blank, now_millis,
};
use crate::store::{DeploymentRecord, InstanceHealth, StoreError, keys};
use crate::traffic::{TargetGroupRef, TrafficError};
use gantry_core::appspec::FileExistsBehavior;
use gantry_core::config::ONE_AT_A_TIME;
use gantry_core::deployment::{
    self, AlarmPolicy, BlueGreenPlan, Deadlines, Effect, NotificationEvent, Plan, Planned,
};
use gantry_core::identity::Sender;
use gantry_core::lifecycle::{self, LifecycleEvent, Performer};
use gantry_core::planner::{Standing, Target};
use gantry_core::wire::{Creator, RevisionLocation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tracing::Instrument;

/// A deployment just stored, with the effects of its start (in its outbox as version 1).
#[derive(Debug)]
pub struct Created {
    pub record: DeploymentRecord<DeploymentSpec>,
    pub effects: Vec<Effect>,
}

/// CreateDeployment's input, in CodeDeploy's shape.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDeploymentInput {
    pub application_name: String,
    #[serde(default)]
    pub deployment_group_name: String,
    #[serde(default)]
    pub revision: Option<RevisionLocation>,
    #[serde(default)]
    pub deployment_config_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub ignore_application_stop_failures: bool,
    #[serde(default)]
    pub target_instances: Option<serde_json::Value>,
    #[serde(default)]
    pub auto_rollback_configuration: Option<AutoRollbackConfiguration>,
    #[serde(default)]
    pub update_outdated_instances_only: bool,
    #[serde(default)]
    pub file_exists_behavior: Option<String>,
    #[serde(default)]
    pub override_alarm_configuration: Option<serde_json::Value>,
}

/// An alarm configuration refused, as CodeDeploy's exception.
pub fn alarm_error(error: crate::model::AlarmConfigError) -> ApiError {
    match error {
        crate::model::AlarmConfigError::TooMany(message) => {
            ApiError::new(Exception::AlarmsLimitExceeded, message)
        }
        crate::model::AlarmConfigError::Invalid(message) => {
            ApiError::new(Exception::InvalidAlarmConfig, message)
        }
    }
}

/// Who asked for a deployment, beyond the input: a user, a rollback of another, an
/// instance launching, or the update of instances that launched during another.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub rollback_of: Option<String>,
    /// A fixed id (a rollback's, claimed before it is created).
    pub deployment_id: Option<String>,
    /// A launching (or, with creator `autoscalingTermination`, terminating) instance: the
    /// only target, whatever the group's selection matches. Such a deployment runs
    /// beside the group's others: it takes no lock.
    pub launch: Option<(Host, LifecycleAction)>,
    /// The targets, instead of what the group's selection matches.
    pub hosts: Option<Vec<Host>>,
    /// A blue/green deployment stored while its copy was provisioned, now planned over
    /// the copy's instances.
    pub provisioned: Option<ProvisionedFleet>,
}

/// A provisioning deployment's copy, ready: its instances, and the deployment as stored.
#[derive(Debug, Clone)]
pub struct ProvisionedFleet {
    pub replacement: Vec<Host>,
    pub version: u64,
    pub create_time: deployment::Millis,
}

/// What a look at a provisioning deployment's copy found.
#[derive(Debug)]
pub enum Provisioned {
    /// The copy has not all its instances yet.
    Waiting,
    /// The deployment is planned over both fleets: its start is to be carried out.
    Planned(Box<Created>),
    /// It cannot be planned (why): it is to fail.
    Refused(ApiError),
    /// It is not provisioning (any more): planned, or ended, by someone else.
    Over,
}

/// One look at a provisioning deployment: once its copy's instances exist, plans it over
/// both fleets from CreateDeployment's input as given (everything is checked again, as
/// it may have changed meanwhile) and stores it in place of the provisioning record.
pub async fn finish_provisioning(
    control: &ControlPlane,
    deployment_id: &str,
) -> Result<Provisioned, ApiError> {
    let record = control
        .store
        .load_deployment::<DeploymentSpec>(deployment_id)
        .await?;
    if record.state.status.is_terminal() || !record.state.provisioning() {
        return Ok(Provisioned::Over);
    }
    let fleets = record.spec.blue_green.clone().unwrap_or_default();
    let (Some(copy), [source], Some(input)) = (
        fleets.replacement_auto_scaling_group.as_deref(),
        fleets.original_auto_scaling_groups.as_slice(),
        fleets.provisioning_input.clone(),
    ) else {
        return Ok(Provisioned::Refused(ApiError::internal(format!(
            "deployment {deployment_id} is provisioning without its copy's names or input"
        ))));
    };
    let Some(replacement) = crate::blue_green::copy_instances(control, source, copy).await? else {
        return Ok(Provisioned::Waiting);
    };
    let input: CreateDeploymentInput = match serde_json::from_value(input) {
        Ok(input) => input,
        Err(error) => {
            return Ok(Provisioned::Refused(ApiError::internal(format!(
                "deployment {deployment_id}'s stored input: {error}"
            ))));
        }
    };
    let origin = Origin {
        deployment_id: Some(deployment_id.to_owned()),
        provisioned: Some(ProvisionedFleet {
            replacement,
            version: record.version,
            create_time: record.state.create_time,
        }),
        ..Origin::default()
    };
    match Box::pin(create(control, input, record.spec.creator, origin)).await {
        Ok(created) => Ok(Provisioned::Planned(Box::new(created))),
        // Planned, stopped or failed meanwhile: whoever changed it saw to it.
        Err(error) if error.code == Exception::ConcurrentModification => Ok(Provisioned::Over),
        // Tried again at the next look.
        Err(error) if error.code == Exception::InternalFailure => Err(error),
        Err(error) => Ok(Provisioned::Refused(error)),
    }
}

/// A new deployment id in CodeDeploy's form: `d-` and nine of `A-Z0-9`.
pub fn new_deployment_id() -> String {
    deployment_id_from(uuid::Uuid::new_v4())
}

/// The same id every time for the same `name`: a redelivered message that creates a
/// deployment finds the one it created before.
pub fn deployment_id_for(name: &str) -> String {
    deployment_id_from(uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        name.as_bytes(),
    ))
}

fn deployment_id_from(uuid: uuid::Uuid) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut value = uuid.as_u128();
    let mut id = String::from("d-");
    for _ in 0..9 {
        id.push(ALPHABET[(value % 36) as usize] as char);
        value /= 36;
    }
    id
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|value| !value.is_empty())
}

/// Where an instance stands for the group, from its recorded health.
/// Where an instance stands, from its health record: `current` is the revision that
/// counts as current (see [`current_revision`]).
fn standing(health: Option<&InstanceHealth>, current: Option<&RevisionLocation>) -> Standing {
    match health {
        None => Standing::Unknown,
        Some(health) if !health.healthy => Standing::Unhealthy,
        Some(health)
            if current
                .is_some_and(|current| revision_key(&health.revision) == revision_key(current)) =>
        {
            Standing::Current
        }
        Some(_) => Standing::Old,
    }
}

/// The revision an instance is current on. For ordering, as CodeDeploy orders: the
/// group's last successful revision, so that instances on older revisions go before
/// those on the last good one (none is current before a first success). For an update
/// of outdated instances only: the revision it deploys, which they need not get twice.
fn current_revision<'a>(
    update_outdated_only: bool,
    deploying: &'a RevisionLocation,
    last_successful: Option<&'a RevisionLocation>,
) -> Option<&'a RevisionLocation> {
    if update_outdated_only {
        Some(deploying)
    } else {
        last_successful
    }
}

/// The registered record of a revision, registering (and validating) it first if it
/// was not, as CodeDeploy registers revisions deployed without a push.
async fn revision_record(
    control: &ControlPlane,
    application: &str,
    revision: &RevisionLocation,
) -> Result<RevisionRecord, ApiError> {
    control.check_revision_location(revision)?;
    let pinned = match revision {
        RevisionLocation::S3 { s3_location } => RevisionLocation::S3 {
            s3_location: control.bundles.pin(s3_location).await?.0,
        },
        other => other.clone(),
    };
    let known = control
        .store
        .get::<RevisionRecord>(&keys::revisions(application), &revision_key(&pinned))
        .await?;
    match known {
        Some(record) => Ok(record.value),
        None => control.register_revision(application, &pinned, None).await,
    }
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

/// Each event's limit: its scripts' timeouts, from the revision whose scripts run (the
/// group's last successful one for ApplicationStop and the BlockTraffic hooks, which
/// stop what runs now; with none, they run nothing), or the agent's own limit.
fn deadlines(
    control: &ControlPlane,
    record: &RevisionRecord,
    previous: Option<&RevisionRecord>,
    events: &[LifecycleEvent],
    target_groups: &[TargetGroupRef],
) -> Deadlines {
    // BlockTraffic waits out the longest deregistration delay; both traffic steps get
    // the agent's own events' limit on top, for ELB's health checks and API calls.
    let drain_ms = target_groups
        .iter()
        .map(|group| u64::from(group.deregistration_delay_seconds) * 1000)
        .max()
        .unwrap_or(0);
    let event_ms = events
        .iter()
        .map(|event| {
            if event.performer() == Performer::ControlPlane {
                let drain = if *event == LifecycleEvent::BlockTraffic {
                    drain_ms
                } else {
                    0
                };
                return (*event, drain + control.settings.agent_event_ms);
            }
            let scripts_from = if event.uses_last_successful_revision() {
                previous
            } else {
                Some(record)
            };
            let limit = if event.accepts_hooks() {
                scripts_from
                    .and_then(|revision| revision.event_timeouts.get(event))
                    .copied()
                    .unwrap_or(0)
                    // Revisions recorded before the limit may hold more.
                    .min(gantry_core::appspec::MAX_EVENT_SCRIPT_SECS)
                    * 1000
            } else {
                control.settings.agent_event_ms
            };
            (*event, limit)
        })
        .collect();
    Deadlines {
        start_ms: control.settings.host_start_timeout_ms,
        event_ms,
        default_event_ms: control.settings.agent_event_ms,
        slack_ms: control.settings.event_slack_ms,
    }
}

/// Binds each EC2 instance with an instance profile to its profile's role: its reports
/// then count only from that role's session named for it, not from any role's session a
/// principal could name so (an on-premises host registered with a role session could).
/// An instance without a profile keeps the session-name rule: it has no role
/// credentials to report with anyway, unless its agent was given keys of its own.
async fn bind_instance_roles(control: &ControlPlane, hosts: &mut [Host]) -> Result<(), ApiError> {
    let ids: Vec<String> = hosts
        .iter()
        .filter(|host| host.sender == Sender::InstanceRole)
        .map(|host| host.instance_id.clone())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let profiles = control.fleet.instance_profiles(&ids).await?;
    let mut roles: BTreeMap<&str, Option<String>> = BTreeMap::new();
    for arn in profiles.values() {
        if !roles.contains_key(arn.as_str()) {
            let role = control.identities.instance_profile_role(arn).await?;
            roles.insert(arn, role);
        }
    }
    for host in hosts.iter_mut() {
        let role = profiles
            .get(&host.instance_id)
            .and_then(|arn| roles.get(arn.as_str()).cloned().flatten());
        if let Some(role_id) = role {
            host.sender = Sender::InstanceRoleOf(role_id);
        }
    }
    Ok(())
}

/// The target groups the group's deployments block and allow traffic through, resolved
/// now so that a deleted or misnamed group fails CreateDeployment, not every host.
async fn traffic_target_groups(
    control: &ControlPlane,
    settings: &DeploymentGroupSettings,
) -> Result<Vec<TargetGroupRef>, ApiError> {
    let names = settings.traffic_target_groups();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    control
        .load_balancers
        .resolve(&names)
        .await
        .map_err(|error| match error {
            TrafficError::Refused(message) => ApiError::new(
                Exception::InvalidLoadBalancerInfo,
                format!("loadBalancerInfo.targetGroupInfoList: {message}"),
            ),
            TrafficError::Unavailable(message) => ApiError::internal(message),
        })
}

/// Redeploys the group's last successful revision, replacing `record`'s deployment, and
/// returns the rollback (None when there is nothing to roll back to, another deployment
/// took the group, or an earlier call created it). Safe to run twice: the first call
/// claims the rollback's id on the original.
pub async fn start_rollback(
    control: &ControlPlane,
    record: &DeploymentRecord<DeploymentSpec>,
) -> Result<Option<Created>, ApiError> {
    let spec = &record.spec;
    let original = &spec.deployment_id;
    let group = control
        .load_group(&spec.application_name, &spec.deployment_group_name)
        .await?;
    let target = group
        .last_successful
        .as_ref()
        .zip(group.target_revision.clone());
    let no_rollback = |why: &str| RollbackInfo {
        rollback_message: Some(format!(
            "No rollback: {why} in deployment group {}.",
            spec.deployment_group_name
        )),
        ..RollbackInfo::default()
    };
    let Some((last, revision)) = target.filter(|(last, _)| &last.deployment_id != original) else {
        let info = no_rollback("there is no earlier successful deployment to roll back to");
        control.store.link_rollback(original, &info).await?;
        tracing::warn!("no successful deployment to roll back to");
        return Ok(None);
    };
    let restored = match control
        .store
        .load_deployment::<DeploymentSpec>(&last.deployment_id)
        .await
    {
        Ok(found) => found.spec,
        // Its record is gone (deleted by hand): the failed deployment's options stand in.
        Err(StoreError::NotFound(_)) => spec.clone(),
        Err(error) => return Err(error.into()),
    };
    // Whoever claims first decides the rollback's id; the original links to it only
    // once it exists, so nobody following the link finds nothing.
    let rollback_id = control
        .store
        .claim_rollback(original, &new_deployment_id())
        .await?;
    let link = RollbackInfo {
        rollback_deployment_id: Some(rollback_id.clone()),
        ..RollbackInfo::default()
    };
    match control
        .store
        .load_deployment::<DeploymentSpec>(&rollback_id)
        .await
    {
        Ok(_) => {
            // Created by an earlier call that may have stopped before linking.
            control.store.link_rollback(original, &link).await?;
            return Ok(None);
        }
        Err(StoreError::NotFound(_)) => {}
        Err(error) => return Err(error.into()),
    }
    let input = CreateDeploymentInput {
        application_name: spec.application_name.clone(),
        deployment_group_name: spec.deployment_group_name.clone(),
        revision: Some(revision),
        deployment_config_name: Some(spec.deployment_config_name.clone()),
        description: Some(format!(
            "Rollback of {original} to {} (the last successful deployment)",
            last.deployment_id
        )),
        ignore_application_stop_failures: spec.ignore_application_stop_failures,
        // A rollback never rolls itself back.
        auto_rollback_configuration: Some(AutoRollbackConfiguration::default()),
        // The content option of the deployment whose revision comes back, as CodeDeploy
        // applies it (the failed deployment's may have been DISALLOW, say, where the
        // good one overwrote).
        file_exists_behavior: Some(restored.file_exists_behavior.name().to_owned()),
        ..CreateDeploymentInput::default()
    };
    let origin = Origin {
        rollback_of: Some(original.clone()),
        deployment_id: Some(rollback_id.clone()),
        ..Origin::default()
    };
    match Box::pin(create(control, input, Creator::CodeDeployRollback, origin)).await {
        Ok(created) => {
            control.store.link_rollback(original, &link).await?;
            // Best effort, as every notification: the rollback's start must not wait on it.
            if let Err(error) = crate::notify::publish(
                control,
                record,
                NotificationEvent::DeploymentRollback,
                None,
                None,
            )
            .await
            {
                tracing::warn!(%error, "DeploymentRollback notification not sent");
            }
            tracing::info!(%rollback_id, "rollback deployment created");
            Ok(Some(created))
        }
        Err(error) if error.code == Exception::DeploymentLimitExceeded => {
            tracing::warn!(%error, "rollback not started: another deployment took the group");
            let info = no_rollback("another deployment started first");
            control.store.link_rollback(original, &info).await?;
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// The deployment that brings instances up to `record`'s revision when they joined the
/// group's Auto Scaling groups while it ran (launched during it, so given the revision
/// before), if the group's outdatedInstancesStrategy is UPDATE. None when there are none,
/// or another deployment took the group first (it deploys to them anyway).
pub async fn update_outdated(
    control: &ControlPlane,
    record: &DeploymentRecord<DeploymentSpec>,
) -> Result<Option<Created>, ApiError> {
    let spec = &record.spec;
    let group = control
        .load_group(&spec.application_name, &spec.deployment_group_name)
        .await?;
    let settings = &group.settings.value;
    let groups = &settings.targets.auto_scaling_groups;
    if settings.outdated_instances_strategy != "UPDATE" || groups.is_empty() {
        return Ok(None);
    }
    let deployed: std::collections::HashSet<String> = control
        .store
        .plan(&spec.deployment_id)
        .await?
        .into_iter()
        .map(|target| target.instance_id)
        .collect();
    // Instances already on the revision are not outdated: without this, the update's
    // own success would send the revision again to those the deployment before it
    // reached, and so on, back and forth.
    let health = control
        .store
        .group_health(&spec.application_name, &spec.deployment_group_name)
        .await?;
    let outdated: Vec<Host> = control
        .fleet
        .auto_scaling(groups)
        .await?
        .into_iter()
        .filter(|host| !deployed.contains(&host.instance_id))
        .filter(|host| {
            standing(health.get(&host.instance_id), Some(&spec.revision)) != Standing::Current
        })
        .collect();
    if outdated.is_empty() {
        return Ok(None);
    }
    tracing::info!(
        instances = outdated.len(),
        "updating instances that launched during the deployment"
    );
    let input = CreateDeploymentInput {
        application_name: spec.application_name.clone(),
        deployment_group_name: spec.deployment_group_name.clone(),
        revision: Some(spec.revision.clone()),
        deployment_config_name: Some(spec.deployment_config_name.clone()),
        description: Some(format!(
            "Update of instances that launched during {}",
            spec.deployment_id
        )),
        ignore_application_stop_failures: spec.ignore_application_stop_failures,
        auto_rollback_configuration: Some(AutoRollbackConfiguration::default()),
        file_exists_behavior: Some(spec.file_exists_behavior.name().to_owned()),
        ..CreateDeploymentInput::default()
    };
    let origin = Origin {
        hosts: Some(outdated),
        ..Origin::default()
    };
    match Box::pin(create(
        control,
        input,
        Creator::CodeDeployAutoUpdate,
        origin,
    ))
    .await
    {
        Ok(created) => Ok(Some(created)),
        Err(error) if error.code == Exception::DeploymentLimitExceeded => {
            tracing::info!(%error, "outdated instances left to the deployment that took the group");
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_ids_look_like_codedeploys() {
        for _ in 0..200 {
            let id = new_deployment_id();
            gantry_core::wire::check_deployment_id(&id).unwrap();
        }
    }

    #[test]
    fn an_empty_skeleton_target_instances_is_absent() {
        let skeleton = serde_json::json!({
            "tagFilters": [{"Key": "", "Value": "", "Type": "KEY_ONLY"}],
            "autoScalingGroups": [""],
            "ec2TagSet": {"ec2TagSetList": [[{"Key": "", "Value": "", "Type": "KEY_ONLY"}]]}
        });
        assert!(is_blank(&skeleton));
        let real = serde_json::json!({"autoScalingGroups": ["green"]});
        assert!(!is_blank(&real));
    }
}
