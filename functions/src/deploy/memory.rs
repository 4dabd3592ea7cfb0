//! An in-memory world for unit tests of CreateDeployment and the engine: the in-memory
//! ports, the hosts a group's selection matches, the alarms as they stand, and a list of
//! what was asked of fleets and load balancers.

use super::create::{Gathered, Request, Sources};
use crate::adapters::Host;
use crate::control::Settings;
use crate::error::{ApiError, Exception};
use crate::model::{DeploymentGroupSettings, RevisionRecord};
use crate::ports::Ports;
use crate::ports::memory::{MemoryLog, MemoryPorts, MemoryQueues, MemoryTopics};
use crate::store::GroupRecord;
use gantry_core::config::DeploymentConfig;
use gantry_core::deployment::AlarmCheck;
use gantry_core::identity::Sender;
use std::sync::Mutex;

pub const APPLICATION: &str = "shop";
pub const GROUP: &str = "web";

/// CreateDeployment's input for [`GROUP`]: a zip bundle's revision, pinned by ETag.
pub fn input() -> super::CreateDeploymentInput {
    super::CreateDeploymentInput {
        application_name: APPLICATION.into(),
        deployment_group_name: GROUP.into(),
        revision: Some(gantry_core::wire::RevisionLocation::S3 {
            s3_location: gantry_core::wire::S3Location {
                bucket: "bundles".into(),
                key: "shop/web.zip".into(),
                bundle_type: gantry_core::bundle::BundleType::Zip,
                version: None,
                e_tag: Some("etag-1".into()),
            },
        }),
        ..Default::default()
    }
}

/// `count` on-premises hosts, `host-00` on.
pub fn hosts(count: usize) -> Vec<Host> {
    (0..count)
        .map(|index| host(&format!("host-{index:02}"), None))
        .collect()
}

pub struct MemoryWorld {
    pub ports: MemoryPorts,
    /// What the group's selection matches.
    pub hosts: Mutex<Vec<Host>>,
    pub alarms: Mutex<AlarmCheck>,
    /// Effects on fleets and load balancers (and those that create deployments), as
    /// asked of [`crate::engine::EnginePorts`], by name.
    pub fleet_effects: Mutex<Vec<String>>,
}

/// An on-premises host registered with an IAM user.
pub fn host(instance_id: &str, zone: Option<&str>) -> Host {
    Host {
        instance_id: instance_id.to_owned(),
        zone: zone.map(str::to_owned),
        sender: Sender::Principal(format!("AIDA{}", instance_id.to_uppercase())),
        stopped: false,
    }
}

/// A deployment group's settings: in place, with the given fields (CodeDeploy's
/// names) over the defaults.
pub fn group_settings(fields: serde_json::Value) -> DeploymentGroupSettings {
    let mut settings = serde_json::json!({
        "applicationName": APPLICATION,
        "deploymentGroupId": "00000000-0000-0000-0000-000000000001",
        "deploymentGroupName": GROUP,
        "deploymentConfigName": "CodeDeployDefault.OneAtATime",
    });
    for (name, value) in fields.as_object().expect("fields are an object") {
        settings[name] = value.clone();
    }
    serde_json::from_value(settings).expect("group settings read")
}

impl Default for MemoryWorld {
    fn default() -> Self {
        Self {
            ports: MemoryPorts::default(),
            hosts: Mutex::default(),
            alarms: Mutex::new(AlarmCheck::Clear),
            fleet_effects: Mutex::default(),
        }
    }
}

impl MemoryWorld {
    /// A world with group [`GROUP`] of [`APPLICATION`] (`fields` over the defaults)
    /// matching `hosts`.
    pub fn new(fields: serde_json::Value, hosts: Vec<Host>) -> Self {
        let world = Self::default();
        world
            .ports
            .log
            .add_group(APPLICATION, group_settings(fields));
        *world.hosts.lock().expect("unpoisoned") = hosts;
        world
    }

    /// Lists what an effect asked of fleets or load balancers.
    pub fn asked(&self, what: String) {
        self.fleet_effects.lock().expect("unpoisoned").push(what);
    }

    pub fn asked_of_fleets(&self) -> Vec<String> {
        self.fleet_effects.lock().expect("unpoisoned").clone()
    }
}

impl Ports for MemoryWorld {
    type Log = MemoryLog;
    type Queues = MemoryQueues;
    type Topics = MemoryTopics;

    fn log(&self) -> &MemoryLog {
        &self.ports.log
    }

    fn queues(&self) -> &MemoryQueues {
        &self.ports.queues
    }

    fn topics(&self) -> &MemoryTopics {
        &self.ports.topics
    }

    fn settings(&self) -> &Settings {
        &self.ports.settings
    }
}

impl Sources for MemoryWorld {
    async fn load_group(
        &self,
        application: &str,
        group: &str,
    ) -> Result<GroupRecord<DeploymentGroupSettings>, ApiError> {
        self.ports
            .log
            .group(application, group)
            .ok_or_else(|| ApiError::group_missing(application, group))
    }

    /// The configuration if predefined, the revision as given (its scripts' limits
    /// unknown), the hosts as matched; no load balancer, no blue/green fleets.
    async fn gather(&self, request: Request<'_>) -> Result<Gathered, ApiError> {
        let Request {
            input,
            origin,
            checked,
            ..
        } = request;
        let config = DeploymentConfig::predefined(&checked.config_name).ok_or_else(|| {
            ApiError::new(
                Exception::DeploymentConfigDoesNotExist,
                format!(
                    "deploymentConfigName: no deployment configuration named {:?}",
                    checked.config_name
                ),
            )
        })?;
        let hosts = match (&origin.launch, &origin.hosts) {
            (Some((host, _)), _) => vec![host.clone()],
            (None, Some(hosts)) => hosts.clone(),
            (None, None) => self.hosts.lock().expect("unpoisoned").clone(),
        };
        Ok(Gathered {
            config,
            revision: RevisionRecord {
                application_name: input.application_name.clone(),
                revision_location: checked.revision.clone(),
                description: None,
                register_time: 0.0,
                event_timeouts: Default::default(),
                size_bytes: None,
            },
            previous: None,
            fleets: None,
            hosts,
            target_groups: Vec::new(),
            first_alarm_check: checked
                .alarm_policy
                .map(|_| self.alarms.lock().expect("unpoisoned").clone()),
        })
    }
}
