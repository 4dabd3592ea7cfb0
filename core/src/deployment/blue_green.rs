//! Blue/green deployments: a replacement fleet installs the revision, traffic moves to it
//! through the load balancer, the original fleet leaves the load balancer and is then
//! terminated (or kept).
//!
//! The ordered target list holds the replacement (green) hosts first and the original
//! (blue) hosts after them, and the deployment goes through [`Stage`]s over it:
//! 0. Provisioning (a copy of the group's Auto Scaling group): the deployment is stored
//!    with no hosts yet while the copy launches its instances
//!    ([`Deployment::new_provisioning`]); once they are in service the control plane plans
//!    it in full and it starts installing. Ending before that (a stop, an alarm, the
//!    copy not ready by its deadline) removes the copy: nothing else changed.
//! 1. Installing: every replacement host runs its install events at once. They serve no
//!    traffic yet, so there is nothing to keep healthy by batching; each then waits,
//!    Ready, before BeforeAllowTraffic.
//! 2. Ready (with `deploymentReadyOption` STOP_DEPLOYMENT): the deployment waits for
//!    ContinueDeployment, and stops if nobody continues in time.
//! 3. Rerouting: replacement hosts run BeforeAllowTraffic, AllowTraffic and
//!    AfterAllowTraffic in batches of the deployment configuration's size.
//! 4. BlockingOriginal: every original host runs BeforeBlockTraffic, BlockTraffic and
//!    AfterBlockTraffic, once the whole replacement fleet serves.
//! 5. TerminationWait (TERMINATE): the original fleet is terminated when the wait ends,
//!    or at ContinueDeployment / SkipWaitTimeForInstanceTermination; the deployment
//!    succeeds then. With KEEP_ALIVE it succeeds once the original fleet is blocked.
//!
//! Any host failing fails the deployment: traffic goes to a whole replacement fleet or
//! not at all. A rollback is a blue/green deployment too, with the roles swapped: the
//! failed deployment's original hosts (still on the previous revision) get traffic back
//! (no install events), and its replacement hosts are blocked and removed.

use super::effect::notify;
use super::{
    AlarmPolicy, Deadlines, Deployment, DeploymentStatus, Effect, ErrorInformation,
    HEALTH_CONSTRAINTS, Millis, NotificationEvent, TargetState, TargetStatus,
};
use crate::lifecycle::LifecycleEvent;
use serde::{Deserialize, Serialize};

/// Where a blue/green deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    Provisioning,
    Installing,
    Ready,
    Rerouting,
    BlockingOriginal,
    TerminationWait,
}

/// What becomes of the original fleet once it is blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OriginalFleet {
    /// Terminated this long after it was blocked.
    Terminate { wait_ms: Millis },
    /// Left running, out of the load balancer.
    KeepAlive,
}

/// Which wait ContinueDeployment ends (CodeDeploy's `deploymentWaitType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WaitType {
    ReadyWait,
    TerminationWait,
}

/// A blue/green deployment's second fleet and its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreen {
    /// Hosts `0..replacement` of the ordered list are the replacement fleet; the rest
    /// are the original fleet.
    pub replacement: u32,
    /// How many original hosts follow them.
    pub original: u32,
    /// The original hosts' events ([`Deployment::events`] are the replacement hosts').
    pub original_events: Vec<LifecycleEvent>,
    pub stage: Stage,
    /// Replacement hosts that finished their install events.
    pub installed: u32,
    /// Replacement hosts `0..rerouted` were sent their traffic events.
    pub rerouted: u32,
    /// With STOP_DEPLOYMENT: how long the deployment waits, Ready, for ContinueDeployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_wait_ms: Option<Millis>,
    pub original_fleet: OriginalFleet,
    /// When the current wait (Ready, TerminationWait) ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_until: Option<Millis>,
}

/// How a blue/green deployment is planned (see [`super::Plan::blue_green`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlueGreenPlan {
    /// The original fleet's hosts; the plan's `targets` are the replacement fleet.
    pub original: Vec<crate::planner::Target>,
    pub original_events: Vec<LifecycleEvent>,
    pub ready_wait_ms: Option<Millis>,
    pub original_fleet: OriginalFleet,
}

/// CodeDeploy's error code for a deployment nobody continued within its ready wait.
pub const TIMEOUT: &str = "TIMEOUT";

/// CodeDeploy's error code for a replacement fleet that could not be provisioned.
pub const PROVISIONING_ERROR: &str = "AUTO_SCALING_CONFIGURATION";

impl BlueGreen {
    pub fn new(replacement: u32, plan: &BlueGreenPlan) -> Self {
        Self {
            replacement,
            original: plan.original.len() as u32,
            original_events: plan.original_events.clone(),
            stage: Stage::Installing,
            installed: 0,
            rerouted: 0,
            ready_wait_ms: plan.ready_wait_ms,
            original_fleet: plan.original_fleet,
            wait_until: None,
        }
    }

    /// Whether the host at `index` belongs to the replacement fleet.
    pub fn is_replacement(&self, index: u32) -> bool {
        index < self.replacement
    }
}

/// The replacement hosts' first event after their install: where they wait for traffic.
const TRAFFIC_START: LifecycleEvent = LifecycleEvent::BeforeAllowTraffic;

impl Deployment {
    /// A blue/green deployment stored before its replacement fleet exists: no hosts
    /// yet, in progress, provisioning until `until`. Its effects: DeploymentStart, and
    /// making the copy.
    pub fn new_provisioning(
        deployment_id: String,
        deadlines: Deadlines,
        alarms: Option<AlarmPolicy>,
        now: Millis,
        until: Millis,
    ) -> (Self, Vec<Effect>) {
        let health = super::HealthPlan {
            fleet: 0,
            minimum_healthy: 0,
            batch_size: 0,
            required_successes: 0,
        };
        let mut state = Self::new(
            deployment_id,
            health,
            None,
            deadlines,
            &[],
            &[],
            false,
            false,
            now,
        );
        state.status = DeploymentStatus::InProgress;
        state.start_time = Some(now);
        state.alarms = alarms;
        state.blue_green = Some(BlueGreen {
            replacement: 0,
            original: 0,
            original_events: Vec::new(),
            stage: Stage::Provisioning,
            installed: 0,
            rerouted: 0,
            ready_wait_ms: None,
            original_fleet: OriginalFleet::KeepAlive,
            wait_until: Some(until),
        });
        let effects = vec![
            notify(NotificationEvent::DeploymentStart, None),
            Effect::ProvisionFleet,
        ];
        (state, effects)
    }

    /// Whether this is a blue/green deployment provisioning its replacement fleet.
    pub fn provisioning(&self) -> bool {
        self.blue_green
            .as_ref()
            .is_some_and(|bg| bg.stage == Stage::Provisioning)
    }

    /// The events of the host at `index` of the ordered list.
    pub fn events_at(&self, index: u32) -> &[LifecycleEvent] {
        match &self.blue_green {
            Some(bg) if !bg.is_replacement(index) => &bg.original_events,
            _ => &self.events,
        }
    }

    /// The events the host at `index` runs in its first command: up to the first event
    /// the control plane performs, and for a replacement host that installs, up to its
    /// wait for traffic.
    pub fn first_stretch(&self, index: u32) -> Vec<LifecycleEvent> {
        let events = crate::lifecycle::stretch(self.events_at(index), 0);
        let installs = self
            .blue_green
            .as_ref()
            .is_some_and(|bg| bg.is_replacement(index) && self.installs());
        let end = match installs {
            true => events
                .iter()
                .position(|&event| event == TRAFFIC_START)
                .unwrap_or(events.len()),
            false => events.len(),
        };
        events[..end].to_vec()
    }

    /// Whether the replacement hosts install the revision (a rollback's do not: they
    /// run it already).
    fn installs(&self) -> bool {
        self.events
            .first()
            .is_some_and(|&event| event != TRAFFIC_START)
    }

    /// The event a host waits before, its install done, while the deployment is
    /// installing: the replacement hosts' start of traffic.
    pub(super) fn hold_before(&self, target: &TargetState) -> Option<LifecycleEvent> {
        let bg = self.blue_green.as_ref()?;
        (bg.stage == Stage::Installing && bg.is_replacement(target.index)).then_some(TRAFFIC_START)
    }

    /// A replacement host finished its install events: it waits, Ready.
    pub(super) fn host_ready(
        &mut self,
        target: &mut TargetState,
        now: Millis,
        effects: &mut Vec<Effect>,
    ) {
        let Some(bg) = self.blue_green.as_mut() else {
            return;
        };
        target.status = TargetStatus::Ready;
        target.deadline = None;
        bg.installed += 1;
        effects.push(notify(
            NotificationEvent::InstanceReady,
            Some(&target.target.instance_id),
        ));
        self.advance(now, effects);
    }

    /// The record of a Ready replacement host as it is sent its traffic events.
    pub fn rerouted_target(&self, mut state: TargetState, now: Millis) -> TargetState {
        if state.status == TargetStatus::Ready {
            state.status = TargetStatus::InProgress;
            state.deadline = Some(now.saturating_add(self.deadlines.start_ms));
        }
        state
    }

    /// Ends a wait early: ContinueDeployment (READY_WAIT, TERMINATION_WAIT) or
    /// SkipWaitTimeForInstanceTermination (TERMINATION_WAIT). Returns whether the
    /// deployment was in that wait.
    pub(super) fn end_wait(
        &mut self,
        wait: WaitType,
        now: Millis,
        effects: &mut Vec<Effect>,
    ) -> bool {
        let Some(bg) = self.blue_green.as_mut() else {
            return false;
        };
        let waiting = match wait {
            WaitType::ReadyWait => Stage::Ready,
            WaitType::TerminationWait => Stage::TerminationWait,
        };
        if self.status != DeploymentStatus::InProgress || bg.stage != waiting {
            return false;
        }
        bg.wait_until = Some(now);
        if wait == WaitType::ReadyWait {
            bg.stage = Stage::Rerouting;
            bg.wait_until = None;
        }
        self.advance(now, effects);
        true
    }

    /// [`Deployment::advance`] for a blue/green deployment: moves it through its stages
    /// as far as the hosts' progress allows.
    pub(super) fn advance_blue_green(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        if self.counts.failed > 0 {
            return self.fail_blue_green(now, effects);
        }
        let installs = self.installs();
        let batch = self.plan.batch_size.max(1);
        loop {
            let bg = self.blue_green.as_mut().expect("a blue/green deployment");
            let replacement = bg.replacement;
            let total = replacement + bg.original;
            match bg.stage {
                Stage::Provisioning => {
                    if bg.wait_until.is_some_and(|until| now >= until) {
                        let error = ErrorInformation {
                            code: PROVISIONING_ERROR.to_owned(),
                            message: "The deployment failed: the replacement fleet's Auto Scaling group did not have the original group's number of instances in service in time; check its launch template, subnets and capacity".to_owned(),
                        };
                        self.finish(DeploymentStatus::Failed, now, Some(error), effects);
                    }
                    return;
                }
                Stage::Installing if !installs => bg.stage = Stage::Rerouting,
                Stage::Installing if self.dispatched == 0 => {
                    self.dispatched = replacement;
                    self.counts.pending -= replacement;
                    self.counts.in_progress += replacement;
                    self.batches_dispatched += 1;
                    self.start_time.get_or_insert(now);
                    effects.push(Effect::Dispatch {
                        first: 0,
                        count: replacement,
                    });
                    return;
                }
                Stage::Installing if bg.installed < replacement => return,
                Stage::Installing => match bg.ready_wait_ms {
                    Some(wait_ms) => {
                        bg.stage = Stage::Ready;
                        bg.wait_until = Some(now.saturating_add(wait_ms));
                        effects.push(notify(NotificationEvent::DeploymentReady, None));
                        return;
                    }
                    None => bg.stage = Stage::Rerouting,
                },
                Stage::Ready => {
                    if bg.wait_until.is_some_and(|until| now >= until) {
                        self.skip_pending();
                        let error = ErrorInformation {
                            code: TIMEOUT.to_owned(),
                            message: "The deployment was stopped: traffic was not rerouted to the replacement instances within the deployment group's deploymentReadyOption.waitTimeInMinutes (call ContinueDeployment with READY_WAIT to reroute)".to_owned(),
                        };
                        self.finish(DeploymentStatus::Stopped, now, Some(error), effects);
                        self.start_rollback(self.rollback_on_stop, effects);
                    }
                    return;
                }
                Stage::Rerouting if self.counts.succeeded >= replacement => {
                    bg.stage = Stage::BlockingOriginal
                }
                Stage::Rerouting => {
                    let in_flight = bg.rerouted - self.counts.succeeded;
                    let count = batch
                        .saturating_sub(in_flight)
                        .min(replacement - bg.rerouted);
                    if count > 0 {
                        let first = bg.rerouted;
                        bg.rerouted += count;
                        self.batches_dispatched += 1;
                        if installs {
                            effects.push(Effect::Reroute { first, count });
                        } else {
                            self.dispatched += count;
                            self.counts.pending -= count;
                            self.counts.in_progress += count;
                            self.start_time.get_or_insert(now);
                            effects.push(Effect::Dispatch { first, count });
                        }
                    }
                    return;
                }
                Stage::BlockingOriginal if self.dispatched < total => {
                    let count = total - self.dispatched;
                    let first = self.dispatched;
                    self.dispatched = total;
                    self.counts.pending -= count;
                    self.counts.in_progress += count;
                    self.batches_dispatched += 1;
                    effects.push(Effect::Dispatch { first, count });
                    return;
                }
                Stage::BlockingOriginal if self.counts.succeeded < total => return,
                Stage::BlockingOriginal => match bg.original_fleet {
                    OriginalFleet::Terminate { wait_ms } => {
                        bg.stage = Stage::TerminationWait;
                        bg.wait_until = Some(now.saturating_add(wait_ms));
                    }
                    OriginalFleet::KeepAlive => {
                        return self.finish(DeploymentStatus::Succeeded, now, None, effects);
                    }
                },
                Stage::TerminationWait => {
                    if bg.wait_until.is_some_and(|until| now >= until) {
                        bg.wait_until = None;
                        effects.push(Effect::TerminateOriginal);
                        self.finish(DeploymentStatus::Succeeded, now, None, effects);
                    }
                    return;
                }
            }
        }
    }

    /// A host failed: the deployment fails, whichever fleet the host was in.
    fn fail_blue_green(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        let stage = self.blue_green.as_ref().map(|bg| bg.stage);
        let message = match stage {
            Some(Stage::Installing | Stage::Ready) => {
                "The deployment failed: a replacement instance failed to install the revision, so no traffic was rerouted; the original instances still serve"
            }
            Some(Stage::Rerouting) => {
                "The deployment failed while traffic was rerouted: a replacement instance did not take traffic; the original instances are still registered"
            }
            _ => {
                "The deployment failed: an original instance could not be taken out of the load balancer"
            }
        };
        self.skip_pending();
        let error = ErrorInformation {
            code: HEALTH_CONSTRAINTS.to_owned(),
            message: format!("{message}."),
        };
        self.finish(DeploymentStatus::Failed, now, Some(error), effects);
        self.start_rollback(self.rollback_on_failure, effects);
    }

    /// When the current blue/green wait ends, for the tick.
    pub(super) fn blue_green_wakeup(&self) -> Option<Millis> {
        self.blue_green
            .as_ref()
            .filter(|_| self.status == DeploymentStatus::InProgress)
            .and_then(|bg| bg.wait_until)
    }
}
