//! Planning a new deployment ([`plan`]): its size limits, its targets' order (health
//! first, then zones), its health plan, its stopped instances failed, and its start.

use super::effect::notify;
use super::{
    AlarmCheck, AlarmPolicy, BlueGreen, BlueGreenPlan, Deadlines, Deployment, DeploymentStatus,
    Effect, ErrorInformation, Input, Millis, NotificationEvent,
};
use crate::config::{DeploymentConfig, HealthPlan};
use crate::lifecycle::LifecycleEvent;
use crate::planner::Target;

/// The most hosts one deployment takes. Nothing in the state grows with the fleet but the
/// ordered target list, which is stored in pages beside the summary (see gantry-functions'
/// store); 10,000 is ten times CodeDeploy's limit.
pub const MAX_TARGETS: usize = 10_000;
/// The most Availability Zones a zonal deployment goes through. The summary holds one
/// segment per zone, so this keeps it far below an item's 400 KB whatever the zones are
/// named (an on-premises host's zone is a tag's value, up to 256 characters).
pub const MAX_ZONES: usize = 64;

/// What a new deployment is made from: everything decided before anything is stored.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    pub deployment_id: String,
    pub config: &'a DeploymentConfig,
    /// The hosts the deployment goes to, each with where it stands for the group.
    pub targets: Vec<Target>,
    /// A launching instance's deployment: one host, beside the group's others.
    pub launch: bool,
    /// Leave out hosts that already run the revision.
    pub update_outdated_only: bool,
    pub deadlines: Deadlines,
    pub events: &'a [LifecycleEvent],
    pub rollback_on_failure: bool,
    pub rollback_on_stop: bool,
    /// The CloudWatch alarms' policy, when the deployment watches alarms.
    pub alarms: Option<AlarmPolicy>,
    /// Its alarms' state before the first batch, when it watches alarms: the first batch
    /// is a batch boundary too, and no host should be touched while an alarm fires.
    pub first_alarm_check: Option<AlarmCheck>,
    /// A blue/green deployment: `targets` are its replacement fleet, this its original.
    pub blue_green: Option<BlueGreenPlan>,
    pub now: Millis,
}

/// A planned deployment: its ordered targets, its started state and the effects of its
/// start, and whether it takes the group's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub ordered: Vec<Target>,
    pub state: Deployment,
    pub effects: Vec<Effect>,
    pub takes_lock: bool,
}

/// Why a deployment cannot be planned at all (one that can be planned but not started,
/// for want of instances or healthy hosts, is planned as failed, as CodeDeploy does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "the deployment resolves to {hosts} instances; one deployment holds at most {MAX_TARGETS}"
    )]
    TooManyTargets { hosts: usize },
    #[error(
        "the deployment's instances are in {zones} Availability Zones; a zonal deployment goes through at most {MAX_ZONES}"
    )]
    TooManyZones { zones: usize },
}

/// Plans a deployment: orders its targets (health first, then zones), fixes its health
/// plan and starts it. Pure: the caller resolved the hosts and stores the result.
pub fn plan(request: Plan) -> Result<Planned, PlanError> {
    let mut targets = request.targets;
    if request.update_outdated_only {
        targets.retain(|target| target.standing != crate::planner::Standing::Current);
    }
    let original = request
        .blue_green
        .as_ref()
        .map_or(0, |bg| bg.original.len());
    if targets.len() + original > MAX_TARGETS {
        return Err(PlanError::TooManyTargets {
            hosts: targets.len() + original,
        });
    }
    let zonal = request.config.zonal_config.filter(|_| !request.launch);
    if zonal.is_some() {
        let zones: std::collections::BTreeSet<Option<&str>> = targets
            .iter()
            .map(|target| target.zone.as_deref())
            .collect();
        if zones.len() > MAX_ZONES {
            return Err(PlanError::TooManyZones { zones: zones.len() });
        }
    }
    // Stopped instances go last, outside the stretches commands are sent from.
    let (stopped, targets): (Vec<Target>, Vec<Target>) = targets
        .into_iter()
        .partition(|target| target.standing == crate::planner::Standing::Stopped);
    let mut ordered = if zonal.is_some() {
        crate::planner::order_by_zone(targets)
    } else {
        crate::planner::order(targets)
    };
    let live = ordered.len();
    ordered.extend(crate::planner::order(stopped));
    // A blue/green deployment's original fleet follows its replacement fleet (a stopped
    // replacement instance fails as it starts, which fails the deployment).
    let replacement = ordered.len() as u32;
    if let Some(bg) = &request.blue_green {
        ordered.extend(crate::planner::order(bg.original.clone()));
    }
    let health = if request.launch {
        Ok(HealthPlan::launch())
    } else {
        request.config.health_plan(replacement)
    };
    let now = request.now;
    let planned = match health {
        Ok(health) => {
            let mut state = Deployment::new(
                request.deployment_id,
                health,
                zonal,
                request.deadlines,
                &ordered[..live],
                request.events,
                request.rollback_on_failure,
                request.rollback_on_stop,
                now,
            );
            state.completes_launch = request.launch;
            state.alarms = request.alarms;
            if let Some(bg) = &request.blue_green {
                state.counts.pending += bg.original.len() as u32;
                state.blue_green = Some(BlueGreen::new(replacement, bg));
            }
            let failed = state.fail_stopped(&ordered[live..replacement as usize]);
            let mut effects = match request.first_alarm_check {
                Some(check) if state.alarms.is_some() && check != AlarmCheck::Clear => {
                    // Started and, if the check says so, stopped before any command.
                    state.status = DeploymentStatus::InProgress;
                    let mut effects = vec![notify(NotificationEvent::DeploymentStart, None)];
                    state.check_alarms(now, check, &mut effects);
                    if state.status == DeploymentStatus::InProgress {
                        state.advance(now, &mut effects);
                    }
                    effects
                }
                _ => state
                    .apply(Input::Start { now }, &mut [])
                    .expect("a new deployment starts"),
            };
            announce_after_start(&mut effects, failed);
            Planned {
                ordered,
                state,
                effects,
                takes_lock: !request.launch,
            }
        }
        // CodeDeploy creates such a deployment and fails it at once; so does Gantry, so
        // that GetDeployment explains why.
        Err(error) => {
            let mut state = Deployment::new(
                request.deployment_id,
                HealthPlan {
                    fleet: 0,
                    minimum_healthy: 0,
                    batch_size: 0,
                    required_successes: 0,
                },
                None,
                request.deadlines,
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
            let mut effects = vec![notify(NotificationEvent::DeploymentFailure, None)];
            if request.launch {
                effects.push(Effect::CompleteLaunch { proceed: false });
            }
            Planned {
                ordered: Vec::new(),
                state,
                effects,
                takes_lock: false,
            }
        }
    };
    Ok(planned)
}

impl Deployment {
    /// Counts `stopped` instances as failed before the deployment starts, so the
    /// minimum-healthy rules count them; returns what their failure announces.
    fn fail_stopped(&mut self, stopped: &[Target]) -> Vec<Effect> {
        self.counts.failed += stopped.len() as u32;
        stopped
            .iter()
            .flat_map(|target| {
                let id = &target.instance_id;
                [
                    notify(NotificationEvent::InstanceFailure, Some(id)),
                    Effect::RecordHealth {
                        instance_id: id.clone(),
                        healthy: false,
                    },
                ]
            })
            .collect()
    }
}

/// Puts `failed` right after the start's DeploymentStart, so triggers hear of the start
/// before the instances that failed with it.
fn announce_after_start(effects: &mut Vec<Effect>, failed: Vec<Effect>) {
    let start = effects
        .iter()
        .position(|effect| {
            matches!(
                effect,
                Effect::Notify {
                    event: NotificationEvent::DeploymentStart,
                    ..
                }
            )
        })
        .map_or(0, |index| index + 1);
    effects.splice(start..start, failed);
}
