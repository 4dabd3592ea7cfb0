//! What every handler shares: the settings (from the environment in Lambda), the AWS
//! clients built once per process, and the lookups most handlers start with.

use crate::adapters::{
    Alarms, Bundles, CommandQueues, Fleet, Identities, LifecycleHooks, Notifier, register,
};
use crate::error::{ApiError, Exception};
use crate::model::{
    DeploymentConfigInfo, DeploymentGroupSettings, LAMBDA_PLATFORM, RevisionRecord,
    SERVER_PLATFORM, now_millis,
};
use crate::store::{DynamoStore, GroupRecord, keys};
use crate::traffic;
use gantry_core::config::DeploymentConfig;
use gantry_core::deployment::Millis;
use gantry_core::lambda::{LambdaDeploymentConfig, TrafficRouting};
use gantry_core::wire::RevisionLocation;

pub use crate::adapters::GitHubSettings;

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
    /// The bundle bucket and the key prefix revisions must be under: the functions may
    /// read (and sign hosts' links to) only there (the template's policies), so a revision
    /// elsewhere is refused when it is registered or deployed rather than failing on
    /// every host. Optional: without them any location is taken.
    pub bundle_bucket: Option<String>,
    /// Trigger topics must be this account's and region's, named with this prefix: the
    /// template lets the functions publish only to such topics. Optional: without it
    /// any topic ARN is taken.
    pub trigger_topic_prefix: Option<String>,
    pub revision_prefix: Option<String>,
    /// An SNS topic subscribed to the lifecycle queue: when set, lifecycle hooks notify
    /// it rather than the queue (Auto Scaling's "SNS lifecycle notifications"); the
    /// queue receives them in SNS's envelope.
    pub lifecycle_topic_arn: Option<String>,
    /// Where a host's command queue moves a message no agent could handle (received
    /// [`crate::adapters::COMMAND_MAX_RECEIVES`] times). Optional: without it, such a
    /// message stays until its retention ends.
    pub command_dead_letter_arn: Option<String>,
    /// Whether this function carries out blue/green fleet effects (copying, adopting
    /// and deleting Auto Scaling groups, terminating instances) itself, or hands them
    /// to the lifecycle function, whose role alone holds the fleet policy
    /// ([`crate::engine::is_fleet_effect`]). Set for each function by its name
    /// ([`crate::handlers::carries_fleet_effects`]), not from the environment; true
    /// from `from_env`, for a process that is all the functions at once.
    pub fleet_effects_here: bool,
    /// Lambda deployments invoke only hook functions whose names start with this: the
    /// template lets the functions invoke nothing else (as CodeDeploy's
    /// AWSCodeDeployRoleForLambdaLimited allows only `CodeDeployHook_*`). `from_env`
    /// always sets one (`CodeDeployHook_` by default); tests may leave it out.
    pub lambda_hook_prefix: Option<String>,
    /// How long a minute of a Lambda deployment's traffic routing lasts, in
    /// milliseconds: 60,000, shortened only for tests and demos.
    pub lambda_minute_ms: Millis,
    /// Where GitHub revisions come from, checked before any host sees them.
    pub github: GitHubSettings,
}

impl Settings {
    /// Every variable `from_env` reads. template.yaml sets exactly these for each function
    /// (but AWS_REGION, which Lambda sets); local/tests/template.rs keeps them equal.
    pub const VARIABLES: [&'static str; 19] = [
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
        "GANTRY_LIFECYCLE_TOPIC_ARN",
        "GANTRY_BUNDLE_BUCKET",
        "GANTRY_REVISION_PREFIX",
        "GANTRY_TRIGGER_TOPIC_PREFIX",
        "GANTRY_COMMAND_DEAD_LETTER_ARN",
        "GANTRY_LAMBDA_HOOK_PREFIX",
        "GANTRY_LAMBDA_MINUTE_MS",
        "GANTRY_GITHUB_API_URL",
        "GANTRY_GITHUB_TOKEN_SECRET",
    ];

    /// Reads [`Self::VARIABLES`]; the timeouts are optional.
    pub fn from_env() -> Result<Self, String> {
        Self::from_variables(|name| std::env::var(name).ok())
    }

    /// Every setting at its default: what [`Self::from_env`] reads from an environment
    /// that sets none of [`Self::VARIABLES`] (tests change what they need).
    pub fn defaults() -> Self {
        Self::from_variables(|_| None).expect("the defaults are valid")
    }

    /// Reads [`Self::VARIABLES`] through `lookup`; an empty value is an unset one.
    pub fn from_variables(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |name: &str| {
            debug_assert!(
                Self::VARIABLES.contains(&name),
                "{name} is not in VARIABLES"
            );
            lookup(name).filter(|value| !value.is_empty())
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
            lifecycle_topic_arn: var("GANTRY_LIFECYCLE_TOPIC_ARN"),
            bundle_bucket: var("GANTRY_BUNDLE_BUCKET"),
            revision_prefix: var("GANTRY_REVISION_PREFIX"),
            trigger_topic_prefix: var("GANTRY_TRIGGER_TOPIC_PREFIX"),
            command_dead_letter_arn: var("GANTRY_COMMAND_DEAD_LETTER_ARN"),
            fleet_effects_here: true,
            // Unset is CodeDeploy's own prefix, never "any function".
            lambda_hook_prefix: Some(
                var("GANTRY_LAMBDA_HOOK_PREFIX").unwrap_or_else(|| "CodeDeployHook_".into()),
            ),
            lambda_minute_ms: match var("GANTRY_LAMBDA_MINUTE_MS") {
                None => gantry_core::lambda::MINUTE_MS,
                Some(raw) => raw.parse::<Millis>().ok().filter(|ms| *ms > 0).ok_or_else(|| {
                    format!("GANTRY_LAMBDA_MINUTE_MS: must be a positive whole number of milliseconds, found {raw:?}")
                })?,
            },
            github: GitHubSettings::new(
                var("GANTRY_GITHUB_API_URL"),
                var("GANTRY_GITHUB_TOKEN_SECRET"),
            )?,
        })
    }
}

/// When the predefined deployment configurations were "created", as GetDeploymentConfig
/// shows them: CodeDeploy's launch, 2014-11-12T00:00:00Z, in epoch seconds. Fixed, so
/// that every Gantry and every call shows the same.
pub const PREDEFINED_CONFIG_CREATE_TIME: f64 = 1_415_750_400.0;

/// A predefined deployment configuration's `deploymentConfigId`: a UUID (as a created
/// configuration's) derived from its name, so it is the same in every Gantry and never
/// one a created configuration has (those are random, version 4).
pub fn predefined_config_id(name: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("gantry:predefined-deployment-config:{name}").as_bytes(),
    )
    .to_string()
}

/// Every AWS client the handlers use, built once per process.
pub struct ControlPlane {
    pub store: DynamoStore,
    pub queues: CommandQueues,
    pub notifier: Notifier,
    pub bundles: Bundles,
    pub github: crate::adapters::GitHubRevisions,
    pub fleet: Fleet,
    pub lifecycle: LifecycleHooks,
    pub identities: Identities,
    pub alarms: Alarms,
    /// Lambda deployments' aliases and hook functions.
    pub aliases: crate::adapters::Aliases,
    pub load_balancers: traffic::LoadBalancers,
    pub green_fleets: crate::green_fleet::GreenFleets,
    /// CodePipeline's job results, and the copy of a job's artifact (the `pipeline` function).
    pub pipeline_jobs: crate::adapters::PipelineJobs,
    pub settings: Settings,
}

impl ControlPlane {
    pub fn new(config: &aws_config::SdkConfig, settings: Settings) -> Self {
        let bundles = Bundles::new(aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(config)
                .force_path_style(true)
                .build(),
        ));
        Self {
            store: DynamoStore::new(aws_sdk_dynamodb::Client::new(config), &settings.table),
            queues: CommandQueues::new(
                aws_sdk_sqs::Client::new(config),
                bundles.clone(),
                &settings.command_queue_prefix,
                settings.command_dead_letter_arn.clone(),
                &settings.region,
                &settings.account_id,
            ),
            notifier: Notifier::new(aws_sdk_sns::Client::new(config)),
            bundles,
            github: crate::adapters::GitHubRevisions::new(config, settings.github.clone()),
            fleet: Fleet::new(
                aws_sdk_ec2::Client::new(config),
                aws_sdk_autoscaling::Client::new(config),
            ),
            lifecycle: LifecycleHooks::new(aws_sdk_autoscaling::Client::new(config)),
            identities: Identities::new(aws_sdk_iam::Client::new(config)),
            alarms: Alarms::new(aws_sdk_cloudwatch::Client::new(config)),
            aliases: crate::adapters::Aliases::new(aws_sdk_lambda::Client::new(config)),
            load_balancers: traffic::LoadBalancers::new(
                aws_sdk_elasticloadbalancingv2::Client::new(config),
            ),
            green_fleets: crate::green_fleet::GreenFleets::new(
                aws_sdk_autoscaling::Client::new(config),
                aws_sdk_ec2::Client::new(config),
            ),
            pipeline_jobs: crate::adapters::PipelineJobs::new(config),
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
                Exception::ApplicationNameRequired,
                "applicationName: is required",
            ));
        }
        if group.is_empty() {
            return Err(ApiError::new(
                Exception::DeploymentGroupNameRequired,
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

    /// A Server deployment configuration, as deployment groups and deployments use it.
    ///
    /// A Lambda configuration's name is refused with InvalidDeploymentConfigNameException
    /// rather than InvalidComputePlatformException: the caller gave no computePlatform
    /// to be wrong, the name it gave is what a Server group or deployment cannot take,
    /// and CodeDeploy answers a configuration it cannot use by that name's exception.
    pub async fn deployment_config(&self, name: &str) -> Result<DeploymentConfig, ApiError> {
        if let Some(config) = DeploymentConfig::predefined(name) {
            return Ok(config);
        }
        let info = self.deployment_config_info(name).await?;
        match info.minimum_healthy_hosts {
            Some(minimum_healthy_hosts) if info.compute_platform == SERVER_PLATFORM => {
                Ok(DeploymentConfig {
                    name: info.deployment_config_name,
                    minimum_healthy_hosts,
                    zonal_config: info.zonal_config,
                })
            }
            _ => Err(ApiError::new(
                Exception::InvalidDeploymentConfigName,
                format!(
                    "deploymentConfigName: {name:?} is a configuration of the {} compute platform; this needs one of the {SERVER_PLATFORM} platform (EC2 and on-premises instances)",
                    info.compute_platform
                ),
            )),
        }
    }

    /// A Lambda deployment configuration's traffic routing, as Lambda deployment groups
    /// and deployments use it; a Server configuration's name is refused as
    /// [`Self::deployment_config`] refuses a Lambda one.
    pub async fn lambda_routing(&self, name: &str) -> Result<TrafficRouting, ApiError> {
        let info = self.deployment_config_info(name).await?;
        match info.traffic_routing_config {
            Some(routing) if info.compute_platform == LAMBDA_PLATFORM => Ok(routing),
            _ => Err(ApiError::new(
                Exception::InvalidDeploymentConfigName,
                format!(
                    "deploymentConfigName: {name:?} is a configuration of the {} compute platform; this needs one of the {LAMBDA_PLATFORM} platform (a trafficRoutingConfig, such as CodeDeployDefault.LambdaAllAtOnce)",
                    info.compute_platform
                ),
            )),
        }
    }

    /// Any deployment configuration as GetDeploymentConfig shows it: a predefined one of
    /// either platform, or one of the account's.
    pub async fn deployment_config_info(
        &self,
        name: &str,
    ) -> Result<DeploymentConfigInfo, ApiError> {
        if let Some(config) = DeploymentConfig::predefined(name) {
            return Ok(DeploymentConfigInfo {
                deployment_config_id: Some(predefined_config_id(&config.name)),
                deployment_config_name: config.name,
                minimum_healthy_hosts: Some(config.minimum_healthy_hosts),
                zonal_config: config.zonal_config,
                create_time: Some(PREDEFINED_CONFIG_CREATE_TIME),
                compute_platform: SERVER_PLATFORM.into(),
                traffic_routing_config: None,
            });
        }
        if let Some(config) = LambdaDeploymentConfig::predefined(name) {
            return Ok(DeploymentConfigInfo {
                deployment_config_id: Some(predefined_config_id(&config.name)),
                deployment_config_name: config.name,
                minimum_healthy_hosts: None,
                zonal_config: None,
                create_time: Some(PREDEFINED_CONFIG_CREATE_TIME),
                compute_platform: LAMBDA_PLATFORM.into(),
                traffic_routing_config: Some(config.traffic_routing_config),
            });
        }
        Ok(self
            .store
            .get::<DeploymentConfigInfo>(keys::CONFIGS, name)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    Exception::DeploymentConfigDoesNotExist,
                    format!("deploymentConfigName: no deployment configuration named {name:?}"),
                )
            })?
            .value)
    }

    /// Refuses an S3 revision outside the bundle bucket's revision prefix, which the
    /// functions may not read, nor sign hosts' links to; and a GitHub revision that names
    /// no repository or commit as GitHub names them.
    pub fn check_revision_location(&self, revision: &RevisionLocation) -> Result<(), ApiError> {
        revision
            .validate()
            .map_err(|error| ApiError::new(Exception::InvalidRevision, error.to_string()))?;
        match revision {
            RevisionLocation::S3 { s3_location } => {
                self.check_s3_revision(&s3_location.bucket, &s3_location.key)
            }
            RevisionLocation::GitHub { .. } => Ok(()),
        }
    }

    /// An S3 revision (a bundle, or a Lambda AppSpec file) must be in the bundle bucket
    /// under the revision prefix: the functions may read nothing else.
    pub fn check_s3_revision(&self, bucket: &str, key: &str) -> Result<(), ApiError> {
        if let Some(ours) = &self.settings.bundle_bucket
            && bucket != ours
        {
            return Err(ApiError::new(
                Exception::InvalidRevision,
                format!(
                    "revision.s3Location.bucket: {bucket:?} is not this Gantry's bundle bucket {ours:?}; Gantry reads and serves revisions only from there"
                ),
            ));
        }
        if let Some(prefix) = &self.settings.revision_prefix
            && !key.starts_with(prefix.as_str())
        {
            return Err(ApiError::new(
                Exception::InvalidRevision,
                format!(
                    "revision.s3Location.key: {key:?} is not under {prefix:?}; Gantry reads and serves revisions only under that prefix (the stack's RevisionPrefix)"
                ),
            ));
        }
        Ok(())
    }

    /// RegisterApplicationRevision: validates the bundle and records it.
    pub async fn register_revision(
        &self,
        application: &str,
        revision: &RevisionLocation,
        description: Option<String>,
    ) -> Result<RevisionRecord, ApiError> {
        crate::model::check_description(description.as_deref())?;
        self.check_revision_location(revision)?;
        if application.is_empty() {
            return Err(ApiError::new(
                Exception::ApplicationNameRequired,
                "applicationName: is required",
            ));
        }
        self.store
            .get::<serde_json::Value>(keys::APPLICATIONS, application)
            .await?
            .ok_or_else(|| ApiError::application_missing(application))?;
        register(
            &self.bundles,
            &self.github,
            &self.store,
            application,
            revision,
            description,
            now_millis(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_only_the_variables_they_list() {
        // from_env's debug assertion fails for a variable missing from VARIABLES; the
        // environment of `cargo test` sets none of the GANTRY_ ones.
        let settings = Settings::from_env().expect("defaults apply");
        assert_eq!(settings.event_slack_ms, 60_000);
    }
}
