//! What a new deployment is made of, looked up in AWS ([`Sources`] for the control
//! plane): the configuration, the revision's record, the hosts and fleets, each host's
//! reporting role, the group's target groups and the alarms; and what is derived from
//! them: each host's standing and each event's deadline.

use super::create::{Gathered, Request, Sources};
use super::{CreateDeploymentInput, Origin};
use crate::adapters::Host;
use crate::control::{ControlPlane, Settings};
use crate::error::{ApiError, Exception};
use crate::model::DeploymentSpec;
use crate::model::revision_key;
use crate::model::{DeploymentGroupSettings, RevisionRecord};
use crate::store::{GroupRecord, InstanceHealth, keys};
use crate::traffic::{TargetGroupRef, TrafficError};
use gantry_core::deployment::Deadlines;
use gantry_core::identity::Sender;
use gantry_core::lifecycle::{LifecycleEvent, Performer};
use gantry_core::planner::Standing;
use gantry_core::wire::RevisionLocation;
use std::collections::BTreeMap;

impl Sources for ControlPlane {
    async fn load_group(
        &self,
        application: &str,
        group: &str,
    ) -> Result<GroupRecord<DeploymentGroupSettings>, ApiError> {
        ControlPlane::load_group(self, application, group).await
    }

    async fn gather(&self, request: Request<'_>) -> Result<Gathered, ApiError> {
        let Request {
            input,
            origin,
            group,
            checked,
            deployment_id,
        } = request;
        let config = self.deployment_config(&checked.config_name).await?;
        let revision = revision_record(self, &input.application_name, &checked.revision).await?;
        let previous = match &group.target_revision {
            Some(last) => self
                .store
                .get::<RevisionRecord>(
                    &keys::revisions(&input.application_name),
                    &revision_key(last),
                )
                .await?
                .map(|found| found.value),
            None => None,
        };
        // Boxed, as every call here that awaits AWS: inlined, their state would grow
        // create's future, which rollbacks and launches already nest.
        let fleets = Box::pin(blue_green_fleets(self, group, input, origin, deployment_id)).await?;
        let mut hosts = match (&origin.launch, &origin.hosts, &fleets) {
            (Some((host, _)), _, _) => vec![host.clone()],
            (None, Some(hosts), _) => hosts.clone(),
            // Both fleets' reports are bound to their senders alike: the originals follow.
            (None, None, Some(fleets)) => [&fleets.replacement[..], &fleets.original].concat(),
            (None, None, None) => {
                self.fleet
                    .matching(&self.store, &group.settings.value.targets)
                    .await?
            }
        };
        Box::pin(bind_instance_roles(self, &mut hosts)).await?;
        let target_groups = Box::pin(traffic_target_groups(self, &group.settings.value)).await?;
        // The first batch is a batch boundary: no host is touched while an alarm fires.
        // A provisioning deployment's alarms were polled by its ticks all along (an alarm
        // stops it and removes its copy); planned over the copy, it starts as they left it.
        let first_alarm_check = match checked.alarm_policy {
            Some(_) if origin.provisioned.is_none() => {
                Some(Box::pin(self.alarms.check(&checked.alarms.names())).await)
            }
            _ => None,
        };
        Ok(Gathered {
            config,
            revision,
            previous,
            fleets,
            hosts,
            target_groups,
            first_alarm_check,
        })
    }
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

/// Where an instance stands for the group, from its recorded health.
/// Where an instance stands, from its health record: `current` is the revision that
/// counts as current (see [`current_revision`]).
pub(super) fn standing(
    health: Option<&InstanceHealth>,
    current: Option<&RevisionLocation>,
) -> Standing {
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
pub(super) fn current_revision<'a>(
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
pub(super) async fn revision_record(
    control: &ControlPlane,
    application: &str,
    revision: &RevisionLocation,
) -> Result<RevisionRecord, ApiError> {
    control.check_revision_location(revision)?;
    let pinned = match revision {
        RevisionLocation::S3 { s3_location } => RevisionLocation::S3 {
            s3_location: control.bundles.pin(s3_location).await?.0,
        },
        // A full commit id is pinned already: no request to GitHub.
        RevisionLocation::GitHub { git_hub_location } => RevisionLocation::GitHub {
            git_hub_location: control.github.pin(git_hub_location).await?,
        },
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

/// Each event's limit: its scripts' timeouts, from the revision whose scripts run (the
/// group's last successful one for ApplicationStop and the BlockTraffic hooks, which
/// stop what runs now; with none, they run nothing), or the agent's own limit.
pub(super) fn deadlines(
    settings: &Settings,
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
                return (*event, drain + settings.agent_event_ms);
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
                settings.agent_event_ms
            };
            (*event, limit)
        })
        .collect();
    Deadlines {
        start_ms: settings.host_start_timeout_ms,
        event_ms,
        default_event_ms: settings.agent_event_ms,
        slack_ms: settings.event_slack_ms,
    }
}

/// Binds each EC2 instance with an instance profile to its profile's role: its reports
/// then count only from that role's session named for it, not from any role's session a
/// principal could name so (an on-premises host registered with a role session could).
/// An instance without a profile (or whose profile has no role) stays unbound, and the
/// plan fails it at the start (see [`super::create::plan`]): nothing could tell its
/// reports from those of any role session named for it.
pub(super) async fn bind_instance_roles(
    control: &ControlPlane,
    hosts: &mut [Host],
) -> Result<(), ApiError> {
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
pub(super) async fn traffic_target_groups(
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
