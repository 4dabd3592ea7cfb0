//! The deployment state machine: a pure function from (state, input) to (state, effects).
//!
//! Inputs are what happens to a deployment: it starts, a host reports on a lifecycle
//! event, time passes (a tick), someone asks it to stop. Effects are data that the
//! control plane's adapters carry out: send commands to hosts, publish notifications,
//! record instance health, release the group's lock, start a rollback, answer a launch.
//!
//! The state comes in two kinds of pieces, each stored on its own so that a deployment
//! of thousands of hosts never rewrites one large record:
//! - [`Deployment`], the summary: status, counters, the health plan, and how far down
//!   the ordered target list commands have gone (`dispatched`). Its size does not grow
//!   with the fleet, beyond one short entry per Availability Zone.
//! - [`TargetState`], one per host that was sent its command: its lifecycle events,
//!   diagnostics and deadline. A host not yet sent its command has none; readers see it
//!   as [`TargetState::waiting`].
//!
//! Dispatching is a cursor over the ordered list (see [`crate::planner::order`]): the
//! order puts the hosts that do not count as healthy first (per zone, for a zonal
//! deployment), so how many may go next follows from counters alone.
//!
//! Applying an input is idempotent: a report that does not move an event forward (a
//! duplicate, or one overtaken by a later report) changes nothing and yields no effect.
//! Reports of one host may arrive in any order; a host's outcome is decided once its
//! events are all known, or as soon as one fails.

use crate::config::{HealthPlan, ZonalConfig};
use crate::lifecycle::LifecycleEvent;
use crate::planner::Target;
use dispatch::segments;
use serde::{Deserialize, Serialize};

mod alarms;
mod apply;
mod blue_green;
mod dispatch;
mod effect;
mod ending;
mod input;
mod planning;
mod tallies;
mod target;
pub use alarms::{ALARM_ACTIVE, ALARM_CONFIG, AlarmCheck, AlarmPolicy};
pub use blue_green::{
    BlueGreen, BlueGreenPlan, OriginalFleet, PROVISIONING_ERROR, Stage, TIMEOUT, WaitType,
};
pub use dispatch::Segment;
pub use effect::{Effect, NotificationEvent};
pub use input::{ApplyError, Input, TrafficOutcome};
pub use planning::{MAX_TARGETS, MAX_ZONES, Plan, PlanError, Planned, plan};
pub use tallies::Finished;
pub use target::{
    Deadlines, EventRecord, MESSAGE_MAX_BYTES, SCRIPT_NAME_MAX_BYTES, TargetState, TargetStatus,
};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// CodeDeploy's deployment statuses that apply to this platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeploymentStatus {
    Created,
    InProgress,
    Succeeded,
    Failed,
    Stopped,
}

impl DeploymentStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Stopped)
    }
}

/// CodeDeploy's `errorInformation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInformation {
    pub code: String,
    pub message: String,
}

impl ErrorInformation {
    /// Why a deployment stopped on request (StopDeployment, or a manual rollback of the
    /// deployment in progress), as CodeDeploy names it.
    pub fn manual_stop() -> Self {
        Self {
            code: "MANUAL_STOP".to_owned(),
            message: "The deployment was stopped on request.".to_owned(),
        }
    }
}

/// The summary of one deployment: everything but its hosts' own records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub deployment_id: String,
    pub status: DeploymentStatus,
    pub plan: HealthPlan,
    pub zonal: Option<ZonalConfig>,
    pub deadlines: Deadlines,
    /// The events each host goes through, in order: the agent's, and with a load
    /// balancer the control plane's BlockTraffic and AllowTraffic between them.
    pub events: Vec<LifecycleEvent>,
    /// The ordered target list's zones (one segment unless zonal).
    pub segments: Vec<Segment>,
    /// Hosts `0..dispatched` of the ordered list were sent their command.
    pub dispatched: u32,
    pub counts: Counts,
    pub rollback_on_failure: bool,
    pub rollback_on_stop: bool,
    /// A launching instance's deployment: its end answers the lifecycle action.
    #[serde(default)]
    pub completes_launch: bool,
    /// How CloudWatch alarm checks are taken; None when no alarm is watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarms: Option<AlarmPolicy>,
    pub error: Option<ErrorInformation>,
    /// Batches sent so far (a batch is every command sent by one input).
    pub batches_dispatched: u32,
    /// With a zonal configuration: no host of the next zone is sent a command before this.
    pub zone_wait_until: Option<Millis>,
    pub create_time: Millis,
    /// When the first command was sent.
    #[serde(default)]
    pub start_time: Option<Millis>,
    pub complete_time: Option<Millis>,
    /// A blue/green deployment's fleets and stage; None in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreen>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub pending: u32,
    pub in_progress: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub skipped: u32,
}

const HEALTH_CONSTRAINTS: &str = "HEALTH_CONSTRAINTS";

impl Deployment {
    /// A deployment that has not started. `targets` must be in deployment order
    /// (see [`crate::planner::order`], or [`crate::planner::order_by_zone`] with `zonal`);
    /// `events` are the lifecycle events each host runs.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        deployment_id: String,
        plan: HealthPlan,
        zonal: Option<ZonalConfig>,
        deadlines: Deadlines,
        targets: &[Target],
        events: &[LifecycleEvent],
        rollback_on_failure: bool,
        rollback_on_stop: bool,
        create_time: Millis,
    ) -> Self {
        let events = events.to_vec();
        Self {
            deployment_id,
            status: DeploymentStatus::Created,
            plan,
            segments: segments(targets, zonal.is_some()),
            zonal,
            deadlines,
            events,
            dispatched: 0,
            counts: Counts {
                pending: targets.len() as u32,
                ..Counts::default()
            },
            rollback_on_failure,
            rollback_on_stop,
            completes_launch: false,
            alarms: None,
            error: None,
            batches_dispatched: 0,
            zone_wait_until: None,
            create_time,
            start_time: None,
            complete_time: None,
            blue_green: None,
        }
    }

    /// The record of a host as it is sent its command (at `index` of the ordered list).
    pub fn dispatched_target(&self, target: Target, index: u32, now: Millis) -> TargetState {
        let mut state = TargetState::waiting(
            target,
            index,
            self.events_at(index),
            DeploymentStatus::InProgress,
        );
        state.status = TargetStatus::InProgress;
        state.dispatched_at = Some(now);
        state.deadline = Some(now.saturating_add(self.deadlines.start_ms));
        state
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// When the next tick matters for the summary itself: the end of a zone wait. Hosts'
    /// deadlines live in their own records.
    pub fn next_wakeup(&self) -> Option<Millis> {
        self.zone_wait_until.or(self.blue_green_wakeup())
    }
}

#[cfg(test)]
mod blue_green_tests;
#[cfg(test)]
mod stopped_tests;
#[cfg(test)]
mod tests;
