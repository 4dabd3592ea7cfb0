//! The control plane's deployment work: create a deployment, apply reports and ticks,
//! stop, roll back, and carry out the state machine's effects.

use crate::adapters::{Bundles, CommandQueues, Fleet, Host, Notifier, register, revision_key};
use crate::advance::{self, Applied};
use crate::error::ApiError;
use crate::lifecycle::LifecycleHooks;
use crate::model::{
    AutoRollbackConfiguration, DeploymentConfigInfo, DeploymentGroupSettings, DeploymentSpec,
    LastDeploymentInfo, LifecycleAction, ROLLBACK_ON_FAILURE, ROLLBACK_ON_REQUEST, RevisionRecord,
    RollbackInfo, now_millis, seconds,
};
use crate::store::{
    DeploymentRecord, DynamoStore, GroupRecord, IDLE_TICK_MS, InstanceHealth, OUTBOX_GRACE_MS,
    StoreError, keys,
};
use gantry_core::appspec::FileExistsBehavior;
use gantry_core::config::{DeploymentConfig, ONE_AT_A_TIME, StartError};
use gantry_core::deployment::{
    Deadlines, Deployment, DeploymentStatus, Effect, ErrorInformation, Input, MAX_TARGETS, Millis,
    NotificationEvent, TargetState,
};
use gantry_core::lifecycle::{self, LifecycleEvent, Performer};
use gantry_core::planner::{self, Standing, Target};
use gantry_core::wire::{self, Command, Creator, RevisionLocation, SCHEMA_VERSION};
use serde::Deserialize;
use std::collections::BTreeMap;
use tracing::Instrument;

/// How a deployment's lost races are retried before the caller is told to try again.
const MAX_APPLY_ATTEMPTS: u32 = 12;

/// What the control plane is configured with (from the environment in Lambda).
#[derive(Debug, Clone)]
pub struct Settings {
    pub table: String,
    pub command_queue_prefix: String,
    pub region: String,
    pub account_id: String,
    /// How long a host has to start after its command is sent (default 5 minutes).
    pub host_start_timeout_ms: Millis,
    /// Added to each event's hook timeouts before a silent host is failed.
    pub event_slack_ms: Millis,
    /// The limit for DownloadBundle and Install, which run no scripts.
    pub agent_event_ms: Millis,
    /// The lifecycle queue (Auto Scaling launch notifications, finished launches): its
    /// URL to post to, its ARN and the role Auto Scaling uses to notify it. Optional: a
    /// Gantry without them refuses Auto Scaling groups.
    pub lifecycle_queue_url: Option<String>,
    pub lifecycle_queue_arn: Option<String>,
    pub lifecycle_role_arn: Option<String>,
}

impl Settings {
    /// Every variable `from_env` reads. template.yaml sets exactly these for each function
    /// (but AWS_REGION, which Lambda sets); local/tests/template.rs keeps them equal.
    pub const VARIABLES: [&'static str; 10] = [
        "GANTRY_TABLE",
        "GANTRY_COMMAND_QUEUE_PREFIX",
        "AWS_REGION",
        "GANTRY_ACCOUNT_ID",
        "GANTRY_HOST_START_TIMEOUT_SECONDS",
        "GANTRY_EVENT_SLACK_SECONDS",
        "GANTRY_AGENT_EVENT_SECONDS",
        "GANTRY_LIFECYCLE_QUEUE_URL",
        "GANTRY_LIFECYCLE_QUEUE_ARN",
        "GANTRY_LIFECYCLE_ROLE_ARN",
    ];

    /// Reads [`Self::VARIABLES`]; the timeouts are optional.
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| {
            debug_assert!(
                Self::VARIABLES.contains(&name),
                "{name} is not in VARIABLES"
            );
            std::env::var(name).ok().filter(|value| !value.is_empty())
        };
        let seconds = |name: &str, default: u64| -> Result<Millis, String> {
            match var(name) {
                None => Ok(default * 1000),
                Some(raw) => raw.parse::<u64>().map(|secs| secs * 1000).map_err(|_| {
                    format!("{name}: must be a whole number of seconds, found {raw:?}")
                }),
            }
        };
        Ok(Self {
            table: var("GANTRY_TABLE").unwrap_or_else(|| "gantry".into()),
            command_queue_prefix: var("GANTRY_COMMAND_QUEUE_PREFIX")
                .unwrap_or_else(|| "gantry-commands-".into()),
            region: var("AWS_REGION").unwrap_or_else(|| "us-east-1".into()),
            account_id: var("GANTRY_ACCOUNT_ID").unwrap_or_else(|| "000000000000".into()),
            host_start_timeout_ms: seconds("GANTRY_HOST_START_TIMEOUT_SECONDS", 300)?,
            event_slack_ms: seconds("GANTRY_EVENT_SLACK_SECONDS", 60)?,
            agent_event_ms: seconds("GANTRY_AGENT_EVENT_SECONDS", 600)?,
            lifecycle_queue_url: var("GANTRY_LIFECYCLE_QUEUE_URL"),
            lifecycle_queue_arn: var("GANTRY_LIFECYCLE_QUEUE_ARN"),
            lifecycle_role_arn: var("GANTRY_LIFECYCLE_ROLE_ARN"),
        })
    }
}

/// Every AWS client the handlers use, built once per process.
pub struct ControlPlane {
    pub store: DynamoStore,
    pub queues: CommandQueues,
    pub notifier: Notifier,
    pub bundles: Bundles,
    pub fleet: Fleet,
    pub lifecycle: LifecycleHooks,
    pub settings: Settings,
}

/// CreateDeployment's input, in CodeDeploy's shape.
#[derive(Debug, Clone, Default, Deserialize)]
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

/// Who asked for a deployment, beyond the input: a user, or a rollback of another.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub rollback_of: Option<String>,
    /// A fixed id (a rollback's, claimed before it is created).
    pub deployment_id: Option<String>,
    /// A launching instance: the only target, whatever the group's selection matches.
    pub launch: Option<(Host, LifecycleAction)>,
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
fn standing(health: Option<&InstanceHealth>, revision: &RevisionLocation) -> Standing {
    match health {
        None => Standing::Unknown,
        Some(health) if !health.healthy => Standing::Unhealthy,
        Some(health) if revision_key(&health.revision) == revision_key(revision) => {
            Standing::Current
        }
        Some(_) => Standing::Old,
    }
}

impl ControlPlane {
    pub fn new(config: &aws_config::SdkConfig, settings: Settings) -> Self {
        Self {
            store: DynamoStore::new(aws_sdk_dynamodb::Client::new(config), &settings.table),
            queues: CommandQueues::new(
                aws_sdk_sqs::Client::new(config),
                &settings.command_queue_prefix,
            ),
            notifier: Notifier::new(aws_sdk_sns::Client::new(config)),
            bundles: Bundles::new(aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(config)
                    .force_path_style(true)
                    .build(),
            )),
            fleet: Fleet::new(
                aws_sdk_ec2::Client::new(config),
                aws_sdk_autoscaling::Client::new(config),
            ),
            lifecycle: LifecycleHooks::new(aws_sdk_autoscaling::Client::new(config)),
            settings,
        }
    }

    pub async fn load_group(
        &self,
        application: &str,
        group: &str,
    ) -> Result<GroupRecord<DeploymentGroupSettings>, ApiError> {
        if application.is_empty() {
            return Err(ApiError::new(
                "ApplicationNameRequiredException",
                "applicationName: is required",
            ));
        }
        if group.is_empty() {
            return Err(ApiError::new(
                "DeploymentGroupNameRequiredException",
                "deploymentGroupName: is required",
            ));
        }
        self.store
            .get::<serde_json::Value>(keys::APPLICATIONS, application)
            .await?
            .ok_or_else(|| ApiError::application_missing(application))?;
        self.store
            .load_group(application, group)
            .await?
            .ok_or_else(|| ApiError::group_missing(application, group))
    }

    pub async fn deployment_config(&self, name: &str) -> Result<DeploymentConfig, ApiError> {
        if let Some(config) = DeploymentConfig::predefined(name) {
            return Ok(config);
        }
        let stored = self
            .store
            .get::<DeploymentConfigInfo>(keys::CONFIGS, name)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    "DeploymentConfigDoesNotExistException",
                    format!("deploymentConfigName: no deployment configuration named {name:?}"),
                )
            })?
            .value;
        Ok(DeploymentConfig {
            name: stored.deployment_config_name,
            minimum_healthy_hosts: stored.minimum_healthy_hosts,
            zonal_config: stored.zonal_config,
        })
    }

    /// RegisterApplicationRevision: validates the bundle and records it.
    pub async fn register_revision(
        &self,
        application: &str,
        revision: &RevisionLocation,
        description: Option<String>,
    ) -> Result<RevisionRecord, ApiError> {
        if application.is_empty() {
            return Err(ApiError::new(
                "ApplicationNameRequiredException",
                "applicationName: is required",
            ));
        }
        self.store
            .get::<serde_json::Value>(keys::APPLICATIONS, application)
            .await?
            .ok_or_else(|| ApiError::application_missing(application))?;
        register(
            &self.bundles,
            &self.store,
            application,
            revision,
            description,
            now_millis(),
        )
        .await
    }

    /// The registered record of a revision, registering (and validating) it first if it
    /// was not, as CodeDeploy registers revisions deployed without a push.
    async fn revision_record(
        &self,
        application: &str,
        revision: &RevisionLocation,
    ) -> Result<RevisionRecord, ApiError> {
        let pinned = match revision {
            RevisionLocation::S3 { s3_location } => RevisionLocation::S3 {
                s3_location: self.bundles.pin(s3_location).await?.0,
            },
            other => other.clone(),
        };
        let known = self
            .store
            .get::<RevisionRecord>(&keys::revisions(application), &revision_key(&pinned))
            .await?;
        match known {
            Some(record) => Ok(record.value),
            None => self.register_revision(application, &pinned, None).await,
        }
    }

    /// CreateDeployment. Validates everything before writing anything; then stores the
    /// deployment and takes the group's lock in one transaction, and starts it.
    pub async fn create_deployment(
        &self,
        input: CreateDeploymentInput,
        creator: Creator,
        origin: Origin,
    ) -> Result<String, ApiError> {
        let group = self
            .load_group(&input.application_name, &input.deployment_group_name)
            .await?;
        let settings = &group.settings.value;
        if let Some(targets) = &input.target_instances
            && !is_blank(targets)
        {
            return Err(ApiError::new(
                "InvalidTargetInstancesException",
                "targetInstances: names the replacement environment of a blue/green deployment; this deployment group deploys in place, so leave it out",
            ));
        }
        let file_exists_behavior = match non_empty(&input.file_exists_behavior) {
            None => FileExistsBehavior::Disallow,
            Some(name) => FileExistsBehavior::parse(name).ok_or_else(|| {
                ApiError::new(
                    "InvalidFileExistsBehaviorException",
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
            .map_err(|message| ApiError::new("InvalidAutoRollbackConfigException", message))?;
        let config_name = non_empty(&input.deployment_config_name)
            .unwrap_or(if settings.deployment_config_name.is_empty() {
                ONE_AT_A_TIME
            } else {
                &settings.deployment_config_name
            })
            .to_owned();
        let config = self.deployment_config(&config_name).await?;
        let revision = input.revision.clone().ok_or_else(|| {
            ApiError::new(
                "RevisionRequiredException",
                "revision: is required (revisionType S3 with s3Location {bucket, key, bundleType})",
            )
        })?;
        let record = self
            .revision_record(&input.application_name, &revision)
            .await?;
        let revision = record.revision_location.clone();

        let hosts = match &origin.launch {
            Some((host, _)) => vec![host.clone()],
            None => self.resolve_hosts(settings).await?,
        };
        let health = self
            .store
            .group_health(&input.application_name, &input.deployment_group_name)
            .await?;
        let mut targets: Vec<Target> = hosts
            .into_iter()
            .map(|host| Target {
                standing: standing(health.get(&host.instance_id), &revision),
                instance_id: host.instance_id,
                zone: host.zone,
            })
            .collect();
        if input.update_outdated_instances_only {
            targets.retain(|target| target.standing != Standing::Current);
        }
        check_fleet_size(&input.deployment_group_name, targets.len())?;
        let ordered = if config.zonal_config.is_some() {
            planner::order_by_zone(targets)
        } else {
            planner::order(targets)
        };

        let now = now_millis();
        let deployment_id = origin
            .deployment_id
            .clone()
            .unwrap_or_else(new_deployment_id);
        let events = lifecycle::in_place(false);
        let deadlines = self.deadlines(&record, &events);
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
        };
        let (state, effects, take_lock) = match config.health_plan(ordered.len() as u32) {
            Ok(plan) => {
                let mut state = Deployment::new(
                    deployment_id.clone(),
                    plan,
                    config.zonal_config,
                    deadlines,
                    &ordered,
                    &events,
                    auto_rollback.on(ROLLBACK_ON_FAILURE),
                    auto_rollback.on(ROLLBACK_ON_REQUEST),
                    now,
                );
                state.completes_launch = origin.launch.is_some();
                let effects = state
                    .apply(Input::Start { now }, &mut [])
                    .map_err(|error| {
                        ApiError::internal(format!("starting {deployment_id}: {error}"))
                    })?;
                (state, effects, true)
            }
            // CodeDeploy creates such a deployment and fails it at once; so does Gantry,
            // so that `get-deployment` explains why.
            Err(error) => {
                let state = refused_deployment(&deployment_id, &error, now);
                let mut effects = vec![Effect::Notify {
                    event: NotificationEvent::DeploymentFailure,
                    instance_id: None,
                }];
                if origin.launch.is_some() {
                    effects.push(Effect::CompleteLaunch { proceed: false });
                }
                (state, effects, false)
            }
        };
        let span = tracing::info_span!("create_deployment", deployment_id = %deployment_id);
        async {
            self.store
                .create_deployment(
                    &spec.application_name,
                    &spec.deployment_group_name,
                    &spec,
                    &state,
                    // A deployment refused at creation has no hosts to list.
                    if take_lock { &ordered } else { &[] },
                    &effects,
                    take_lock,
                    now,
                )
                .await
                .map_err(|error| match error {
                    StoreError::Conflict(_) => ApiError::new(
                        "DeploymentLimitExceededException",
                        format!(
                            "deployment group {} already has an active deployment ({}); wait for it to finish or stop it",
                            spec.deployment_group_name,
                            group.active_deployment_id.as_deref().unwrap_or("another deployment")
                        ),
                    ),
                    other => other.into(),
                })?;
            tracing::info!(hosts = ordered.len(), config = %config.name, "deployment created");
            let record = DeploymentRecord {
                spec,
                state,
                version: 1,
                outbox: BTreeMap::new(),
                rollback_info: RollbackInfo::default(),
                wakeup_at: None,
            };
            let last = LastDeploymentInfo {
                deployment_id: deployment_id.clone(),
                status: format!("{:?}", record.state.status),
                end_time: record.state.complete_time.map(seconds),
                create_time: seconds(now),
            };
            self.store
                .record_attempt(&record.spec.application_name, &record.spec.deployment_group_name, &last)
                .await?;
            self.finish_effects(&record, &effects, (!effects.is_empty()).then_some(1))
                .await;
            Ok(deployment_id.clone())
        }
        .instrument(span)
        .await
    }

    fn deadlines(&self, record: &RevisionRecord, events: &[LifecycleEvent]) -> Deadlines {
        let event_ms = events
            .iter()
            .filter(|event| event.performer() != Performer::ControlPlane)
            .map(|event| {
                let limit = if event.accepts_hooks() {
                    record.event_timeouts.get(event).copied().unwrap_or(0) * 1000
                } else {
                    self.settings.agent_event_ms
                };
                (*event, limit)
            })
            .collect();
        Deadlines {
            start_ms: self.settings.host_start_timeout_ms,
            event_ms,
            default_event_ms: self.settings.agent_event_ms,
            slack_ms: self.settings.event_slack_ms,
        }
    }

    async fn resolve_hosts(
        &self,
        settings: &DeploymentGroupSettings,
    ) -> Result<Vec<Host>, ApiError> {
        let selection = &settings.targets;
        let mut hosts = Vec::new();
        if let Some(rule) = selection.on_premises_rule() {
            hosts.extend(self.fleet.on_premises(&self.store, &rule).await?);
        }
        if let Some(rule) = selection.ec2_rule() {
            hosts.extend(self.fleet.ec2(&rule).await?);
        }
        hosts.extend(
            self.fleet
                .auto_scaling(&selection.auto_scaling_groups)
                .await?,
        );
        // An instance matched twice (a tag and an Auto Scaling group) is one target.
        let mut seen = std::collections::HashSet::new();
        hosts.retain(|host| seen.insert(host.instance_id.clone()));
        Ok(hosts)
    }

    /// Carries out effects, then marks their outbox entry done. A failure is logged
    /// and left in the outbox, where the tick finds it.
    async fn finish_effects(
        &self,
        record: &DeploymentRecord<DeploymentSpec>,
        effects: &[Effect],
        outbox_entry: Option<u64>,
    ) {
        match self.carry_out(record, effects).await {
            Ok(()) => {
                if let Some(entry) = outbox_entry
                    && let Err(error) = self
                        .store
                        .clear_outbox(&record.state.deployment_id, entry)
                        .await
                {
                    tracing::warn!(%error, entry, "could not clear an outbox entry; the tick will run it again");
                }
            }
            Err(error) => {
                tracing::error!(%error, "carrying out effects failed; the tick will retry them");
            }
        }
    }

    /// Executes the state machine's effects in order.
    async fn carry_out(
        &self,
        record: &DeploymentRecord<DeploymentSpec>,
        effects: &[Effect],
    ) -> Result<(), ApiError> {
        let spec = &record.spec;
        let started = std::time::Instant::now();
        // Commands first: hosts wait on them, while notifications and health records
        // wait on nobody. (Dispatch and ReleaseLock never come from the same change.)
        let (dispatches, others): (Vec<&Effect>, Vec<&Effect>) = effects
            .iter()
            .partition(|effect| matches!(effect, Effect::Dispatch { .. }));
        for effect in dispatches.into_iter().chain(others) {
            match effect {
                Effect::Dispatch { first, count } => {
                    self.dispatch(record, *first, *count).await?;
                    tracing::info!(
                        hosts = count,
                        after_write_ms = started.elapsed().as_secs_f64() * 1000.0,
                        "batch dispatched"
                    );
                }
                Effect::Notify { event, instance_id } => {
                    let target = match instance_id {
                        Some(id) if crate::notify::wanted(spec, *event) => self
                            .store
                            .load_targets(&spec.deployment_id, std::slice::from_ref(id))
                            .await?
                            .remove(id)
                            .map(|versioned| versioned.value),
                        _ => None,
                    };
                    crate::notify::publish(
                        self,
                        record,
                        *event,
                        instance_id.as_deref(),
                        target.as_ref(),
                    )
                    .await?;
                }
                Effect::RecordHealth {
                    instance_id,
                    healthy,
                } => {
                    let health = InstanceHealth {
                        healthy: *healthy,
                        deployment_id: spec.deployment_id.clone(),
                        revision: spec.revision.clone(),
                    };
                    self.store
                        .record_health(
                            &spec.application_name,
                            &spec.deployment_group_name,
                            instance_id,
                            &health,
                        )
                        .await?;
                }
                Effect::HostTimedOut { instance_id } => {
                    tracing::warn!(%instance_id, "host went silent past its deadline and was failed");
                }
                Effect::RecordLastSuccessful => {
                    let last = last_info(&record.state);
                    self.store
                        .record_success(
                            &spec.application_name,
                            &spec.deployment_group_name,
                            &last,
                            &spec.revision,
                        )
                        .await?;
                }
                Effect::ReleaseLock => {
                    self.store
                        .record_attempt(
                            &spec.application_name,
                            &spec.deployment_group_name,
                            &last_info(&record.state),
                        )
                        .await?;
                    self.store
                        .unlock_group(
                            &spec.application_name,
                            &spec.deployment_group_name,
                            &spec.deployment_id,
                        )
                        .await?;
                    tracing::info!(status = ?record.state.status, "deployment finished");
                }
                Effect::StartRollback => {
                    self.start_rollback(record).await?;
                }
                Effect::CompleteLaunch { .. } => {
                    self.launch_finished(&spec.deployment_id).await?;
                }
            }
        }
        Ok(())
    }

    /// Sends the deployment's command to the hosts at `first..first + count` of its
    /// ordered list: their records first (so that their reports find them, and the tick
    /// their deadlines), then the commands, then InstanceStart. Running it again creates
    /// nothing twice and sends the commands again, which hosts ignore.
    async fn dispatch(
        &self,
        record: &DeploymentRecord<DeploymentSpec>,
        first: u32,
        count: u32,
    ) -> Result<(), ApiError> {
        let spec = &record.spec;
        let now = now_millis();
        let targets = self
            .store
            .plan_slice(&spec.deployment_id, first, count)
            .await?;
        let records: Vec<TargetState> = targets
            .into_iter()
            .zip(first..)
            .map(|(target, index)| record.state.dispatched_target(target, index, now))
            .collect();
        self.store
            .create_targets(&spec.deployment_id, records.clone())
            .await?;
        let commands = records
            .iter()
            .map(|target| command(spec, &target.target.instance_id))
            .collect();
        self.queues.send_all(commands).await?;
        if crate::notify::wanted(spec, NotificationEvent::InstanceStart) {
            for target in &records {
                crate::notify::publish(
                    self,
                    record,
                    NotificationEvent::InstanceStart,
                    Some(&target.target.instance_id),
                    Some(target),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Applies inputs to one deployment and carries out what they caused.
    pub async fn advance(
        &self,
        deployment_id: &str,
        inputs: &[Input],
    ) -> Result<Applied<DeploymentSpec>, ApiError> {
        let span = tracing::info_span!("advance", %deployment_id);
        async {
            let started = std::time::Instant::now();
            let now = now_millis();
            let applied =
                advance::apply(&self.store, deployment_id, inputs, now, MAX_APPLY_ATTEMPTS).await?;
            let written_ms = started.elapsed().as_secs_f64() * 1000.0;
            for (index, error) in &applied.refused {
                tracing::warn!(input = index, %error, "input refused by the state machine");
            }
            if !applied.effects.is_empty() {
                self.finish_effects(&applied.record, &applied.effects, applied.outbox_entry)
                    .await;
                let dispatched = applied
                    .effects
                    .iter()
                    .any(|effect| matches!(effect, Effect::Dispatch { .. }));
                // The bench reads these: input received to state written, and to effects done.
                tracing::info!(
                    inputs = inputs.len(),
                    hosts_written = applied.hosts_written,
                    dispatched,
                    written_ms,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "advanced"
                );
            }
            Ok(applied)
        }
        .instrument(span)
        .await
    }

    /// batch-advance for agent reports: applies each deployment's reports in one write
    /// and returns the ids of messages to retry (malformed, unknown, or not applied);
    /// SQS dead-letters them after its receive limit. A message may carry several
    /// reports; it is retried if any of them was not applied (applying again is a no-op
    /// for the rest).
    pub async fn handle_reports(&self, messages: Vec<(String, String)>) -> Vec<String> {
        let now = now_millis();
        let mut failed = Vec::new();
        let mut by_deployment: BTreeMap<String, Vec<(String, Input)>> = BTreeMap::new();
        let message_count = messages.len();
        for (message_id, body) in messages {
            match wire::reports_from_json(&body) {
                Ok(reports) => {
                    for report in reports {
                        by_deployment
                            .entry(report.deployment_id.clone())
                            .or_default()
                            .push((message_id.clone(), Input::Report { report, now }));
                    }
                }
                Err(error) => {
                    tracing::warn!(%message_id, %error, "malformed report; leaving it for the dead-letter queue");
                    failed.push(message_id);
                }
            }
        }
        // The bench reads this: reports per message, and writes (one per deployment).
        tracing::info!(
            messages = message_count,
            reports = by_deployment.values().map(Vec::len).sum::<usize>(),
            deployments = by_deployment.len(),
            "reports received"
        );
        for (deployment_id, reports) in by_deployment {
            let inputs: Vec<Input> = reports.iter().map(|(_, input)| input.clone()).collect();
            let mut offset = 0;
            for run in advance::chunks(&inputs) {
                let messages = &reports[offset..offset + run.len()];
                offset += run.len();
                match self.advance(&deployment_id, run).await {
                    Ok(applied) => {
                        failed.extend(
                            applied
                                .refused
                                .into_iter()
                                .map(|(index, _)| messages[index].0.clone()),
                        );
                    }
                    Err(error) => {
                        tracing::warn!(%deployment_id, %error, "reports not applied; they will be retried");
                        failed.extend(messages.iter().map(|(id, _)| id.clone()));
                    }
                }
            }
        }
        failed.sort();
        failed.dedup();
        failed
    }

    /// The schedule: fails silent hosts, opens the next zone, and runs outbox entries
    /// whose writer did not finish them. Returns how many deployments it looked at.
    pub async fn tick(&self) -> Result<usize, ApiError> {
        let now = now_millis();
        let due = self.store.due_deployments(now).await?;
        for deployment_id in &due {
            let result = self.tick_one(deployment_id, now).await;
            if let Err(error) = result {
                tracing::warn!(%deployment_id, %error, "tick failed; the next one retries");
            }
        }
        Ok(due.len())
    }

    async fn tick_one(&self, deployment_id: &str, now: Millis) -> Result<(), ApiError> {
        // Each round fails up to a transaction's worth of silent hosts.
        let mut applied = self.advance(deployment_id, &[Input::Tick { now }]).await?;
        while applied.hosts_written > 0 {
            applied = self.advance(deployment_id, &[Input::Tick { now }]).await?;
        }
        let record = &applied.record;
        let mut leftover = false;
        for (entry, pending) in &record.outbox {
            if Some(*entry) == applied.outbox_entry {
                continue;
            }
            if now.saturating_sub(pending.at) < OUTBOX_GRACE_MS {
                leftover = true;
                continue;
            }
            tracing::info!(%deployment_id, entry, "running effects left in the outbox");
            self.finish_effects(record, &pending.effects, Some(*entry))
                .await;
        }
        // The exact next wakeup, now that the overdue hosts are failed: the earliest
        // deadline left, a zone wait, leftover effects, or an idle look while running.
        let state = &record.state;
        let settled = state.status.is_terminal() && state.counts.in_progress == 0;
        let next = if settled && !leftover {
            None
        } else {
            let deadline = self.store.earliest_deadline(deployment_id).await?;
            [
                deadline.map(|at| at + 1),
                state.next_wakeup(),
                leftover.then_some(now + OUTBOX_GRACE_MS),
                (!settled).then_some(now + IDLE_TICK_MS),
            ]
            .into_iter()
            .flatten()
            .min()
        };
        self.store
            .reschedule(deployment_id, record.version, next)
            .await?;
        Ok(())
    }

    /// StopDeployment. Returns CodeDeploy's `{status, statusMessage}`.
    pub async fn stop(
        &self,
        deployment_id: &str,
        auto_rollback_enabled: Option<bool>,
    ) -> Result<serde_json::Value, ApiError> {
        let record: DeploymentRecord<DeploymentSpec> = self
            .store
            .load_deployment(deployment_id)
            .await
            .map_err(|error| match error {
                StoreError::NotFound(_) => ApiError::deployment_missing(deployment_id),
                other => other.into(),
            })?;
        if record.state.status.is_terminal() {
            return Err(ApiError::new(
                "DeploymentAlreadyCompletedException",
                format!(
                    "deployment {deployment_id} already ended with status {:?}",
                    record.state.status
                ),
            ));
        }
        let rollback = auto_rollback_enabled.unwrap_or(false);
        self.advance(
            deployment_id,
            &[Input::Stop {
                now: now_millis(),
                rollback,
            }],
        )
        .await?;
        Ok(serde_json::json!({
            "status": "Succeeded",
            "statusMessage": format!(
                "Deployment {deployment_id} stopped{}",
                if rollback { "; rolling back to the last successful revision" } else { "" }
            ),
        }))
    }

    /// Redeploys the group's last successful revision, replacing `record`'s deployment.
    /// Safe to run twice: the first call claims the rollback's id on the original.
    async fn start_rollback(
        &self,
        record: &DeploymentRecord<DeploymentSpec>,
    ) -> Result<(), ApiError> {
        let spec = &record.spec;
        let original = &spec.deployment_id;
        let group = self
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
        let Some((last, revision)) = target.filter(|(last, _)| &last.deployment_id != original)
        else {
            let info = no_rollback("there is no earlier successful deployment to roll back to");
            self.store.link_rollback(original, &info).await?;
            tracing::warn!("no successful deployment to roll back to");
            return Ok(());
        };
        // Whoever claims first decides the rollback's id; the original links to it only
        // once it exists, so nobody following the link finds nothing.
        let rollback_id = self
            .store
            .claim_rollback(original, &new_deployment_id())
            .await?;
        let link = RollbackInfo {
            rollback_deployment_id: Some(rollback_id.clone()),
            ..RollbackInfo::default()
        };
        match self
            .store
            .load_deployment::<DeploymentSpec>(&rollback_id)
            .await
        {
            Ok(_) => {
                // Created by an earlier call that may have stopped before linking.
                self.store.link_rollback(original, &link).await?;
                return Ok(());
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
            file_exists_behavior: Some(
                match spec.file_exists_behavior {
                    FileExistsBehavior::Disallow => "DISALLOW",
                    FileExistsBehavior::Overwrite => "OVERWRITE",
                    FileExistsBehavior::Retain => "RETAIN",
                }
                .to_owned(),
            ),
            ..CreateDeploymentInput::default()
        };
        let origin = Origin {
            rollback_of: Some(original.clone()),
            deployment_id: Some(rollback_id.clone()),
            launch: None,
        };
        // Boxed: creating a deployment can carry out effects that start a rollback.
        let created = Box::pin(self.create_deployment(input, Creator::CodeDeployRollback, origin));
        match created.await {
            Ok(_) => {
                self.store.link_rollback(original, &link).await?;
                crate::notify::publish(
                    self,
                    record,
                    NotificationEvent::DeploymentRollback,
                    None,
                    None,
                )
                .await?;
                tracing::info!(%rollback_id, "rollback deployment created");
                Ok(())
            }
            Err(error) if error.code == "DeploymentLimitExceededException" => {
                tracing::warn!(%error, "rollback not started: another deployment took the group");
                let info = no_rollback("another deployment started first");
                self.store.link_rollback(original, &info).await?;
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// The `rollback` handler: stops the group's active deployment, if any, and
    /// redeploys its last successful revision.
    pub async fn rollback(
        &self,
        application: &str,
        group_name: &str,
    ) -> Result<serde_json::Value, ApiError> {
        let group = self.load_group(application, group_name).await?;
        let latest = match &group.active_deployment_id {
            Some(active) => {
                let applied = self
                    .advance(
                        active,
                        &[Input::Stop {
                            now: now_millis(),
                            rollback: true,
                        }],
                    )
                    .await?;
                applied.record
            }
            None => {
                let last = group.last_attempted.as_ref().ok_or_else(|| {
                    ApiError::new(
                        "DeploymentDoesNotExistException",
                        format!("deployment group {group_name} has no deployment to roll back"),
                    )
                })?;
                let record = self.store.load_deployment(&last.deployment_id).await?;
                self.start_rollback(&record).await?;
                record
            }
        };
        let record: DeploymentRecord<DeploymentSpec> = self
            .store
            .load_deployment(&latest.state.deployment_id)
            .await?;
        match (
            record.rollback_info.rollback_deployment_id,
            record.rollback_info.rollback_message,
        ) {
            (Some(id), _) => Ok(serde_json::json!({
                "deploymentId": id,
                "rollbackTriggeringDeploymentId": record.state.deployment_id,
            })),
            (None, message) => Err(ApiError::new(
                "RevisionDoesNotExistException",
                message.unwrap_or_else(|| {
                    format!(
                        "deployment {} was already rolled back or cannot be",
                        record.state.deployment_id
                    )
                }),
            )),
        }
    }
}

/// The command for one host.
pub fn command(spec: &DeploymentSpec, instance_id: &str) -> Command {
    Command {
        schema_version: SCHEMA_VERSION,
        deployment_id: spec.deployment_id.clone(),
        deployment_group_id: spec.deployment_group_id.clone(),
        deployment_group_name: spec.deployment_group_name.clone(),
        application_name: spec.application_name.clone(),
        instance_id: instance_id.to_owned(),
        revision: spec.revision.clone(),
        lifecycle_events: spec
            .lifecycle_events
            .iter()
            .copied()
            .filter(|event| event.performer() != Performer::ControlPlane)
            .collect(),
        file_exists_behavior: spec.file_exists_behavior,
        ignore_application_stop_failures: spec.ignore_application_stop_failures,
        creator: spec.creator,
    }
}

fn last_info(state: &Deployment) -> LastDeploymentInfo {
    LastDeploymentInfo {
        deployment_id: state.deployment_id.clone(),
        status: format!("{:?}", state.status),
        end_time: state.complete_time.map(seconds),
        create_time: seconds(state.create_time),
    }
}

/// A deployment that fails as it is created (no instances, impossible health rules).
fn refused_deployment(id: &str, error: &StartError, now: Millis) -> Deployment {
    let plan = gantry_core::config::HealthPlan {
        fleet: 0,
        minimum_healthy: 0,
        batch_size: 0,
        required_successes: 0,
    };
    let mut state = Deployment::new(
        id.to_owned(),
        plan,
        None,
        Deadlines::default(),
        &[],
        &[],
        false,
        false,
        now,
    );
    state.status = DeploymentStatus::Failed;
    state.complete_time = Some(now);
    state.error = Some(ErrorInformation {
        code: error.code().to_owned(),
        message: error.to_string(),
    });
    state
}

/// Refuses a deployment of more hosts than one deployment holds, naming both numbers.
fn check_fleet_size(group: &str, hosts: usize) -> Result<(), ApiError> {
    if hosts <= MAX_TARGETS {
        return Ok(());
    }
    Err(ApiError::new(
        "InstanceLimitExceededException",
        format!(
            "deployment group {group} resolves to {hosts} instances; one deployment holds at most {MAX_TARGETS}. Narrow the group's tags or split it into several groups"
        ),
    ))
}

/// The CLI skeleton fills fields with empty lists and strings; such a value is "absent".
pub fn is_blank(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => true,
        serde_json::Value::String(text) => text.is_empty(),
        serde_json::Value::Array(items) => items.iter().all(is_blank),
        serde_json::Value::Object(fields) => fields
            .iter()
            .all(|(key, value)| key == "Type" || is_blank(value)),
        _ => false,
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
    fn a_fleet_above_the_limit_is_refused_naming_the_count_and_the_limit() {
        assert!(check_fleet_size("web", MAX_TARGETS).is_ok());
        let error = check_fleet_size("web", MAX_TARGETS + 1).unwrap_err();
        assert_eq!(error.code, "InstanceLimitExceededException");
        assert!(
            error
                .message
                .contains("resolves to 10001 instances; one deployment holds at most 10000"),
            "{}",
            error.message
        );
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

    #[test]
    fn settings_read_only_the_variables_they_list() {
        // from_env's debug assertion fails for a variable missing from VARIABLES; the
        // environment of `cargo test` sets none of the GANTRY_ ones.
        let settings = Settings::from_env().expect("defaults apply");
        assert_eq!(settings.event_slack_ms, 60_000);
    }
}
