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

use crate::config::{DeploymentConfig, HealthPlan, ZonalConfig};
use crate::lifecycle::{LifecycleEvent, Performer};
use crate::planner::Target;
use crate::wire::{Diagnostics, ErrorCode, EventStatus, Report};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

/// CodeDeploy's per-instance target statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TargetStatus {
    Pending,
    InProgress,
    Succeeded,
    Failed,
    Skipped,
    /// A blue/green replacement host that installed the revision and waits for traffic.
    Ready,
}

impl TargetStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Skipped)
    }
}

/// The SNS notification events of CodeDeploy triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NotificationEvent {
    DeploymentStart,
    DeploymentSuccess,
    DeploymentFailure,
    DeploymentStop,
    DeploymentRollback,
    InstanceStart,
    InstanceSuccess,
    InstanceFailure,
    /// A blue/green deployment's replacement fleet installed the revision and waits
    /// for ContinueDeployment.
    DeploymentReady,
    /// A blue/green replacement host installed the revision.
    InstanceReady,
}

/// CodeDeploy's `errorInformation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInformation {
    pub code: String,
    pub message: String,
}

/// Time limits that keep a deployment from hanging on a silent host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deadlines {
    /// How long a host has to report its first event after the command is sent, and
    /// to start its next event after finishing one.
    pub start_ms: Millis,
    /// How long an event may run: the sum of its scripts' timeouts, from the appspec.
    /// Events not listed get `default_event_ms`.
    pub event_ms: BTreeMap<LifecycleEvent, Millis>,
    pub default_event_ms: Millis,
    /// Added to every event's limit for clock skew and queue delay.
    pub slack_ms: Millis,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            start_ms: 5 * 60 * 1000,
            event_ms: BTreeMap::new(),
            default_event_ms: 3600 * 1000,
            slack_ms: 60 * 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    pub event: LifecycleEvent,
    pub status: EventStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<Diagnostics>,
}

/// One host's part in a deployment, from when it is sent its command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetState {
    pub target: Target,
    /// Its place in the deployment's ordered target list.
    pub index: u32,
    pub status: TargetStatus,
    pub events: Vec<EventRecord>,
    pub dispatched_at: Option<Millis>,
    /// When the host is overdue; set while it is deploying.
    pub deadline: Option<Millis>,
}

impl TargetState {
    /// A host that has not been sent its command: Pending while the deployment runs,
    /// Skipped once it has ended.
    pub fn waiting(
        target: Target,
        index: u32,
        events: &[LifecycleEvent],
        deployment: DeploymentStatus,
    ) -> Self {
        if target.standing == crate::planner::Standing::Stopped {
            return Self::stopped(target, index, events, None);
        }
        let (status, event_status) = if deployment.is_terminal() {
            (TargetStatus::Skipped, EventStatus::Skipped)
        } else {
            (TargetStatus::Pending, EventStatus::Pending)
        };
        Self {
            target,
            index,
            status,
            events: events
                .iter()
                .map(|&event| EventRecord {
                    event,
                    status: event_status,
                    start_time: None,
                    end_time: None,
                    diagnostics: None,
                })
                .collect(),
            dispatched_at: None,
            deadline: None,
        }
    }

    /// When the host was last heard of, or sent its command.
    pub fn last_updated(&self) -> Option<Millis> {
        self.events
            .iter()
            .filter_map(|record| record.end_time.or(record.start_time))
            .max()
            .or(self.dispatched_at)
    }

    /// Applies a host's report: what it leads to, if anything.
    fn apply_report(
        &mut self,
        report: Report,
        deadlines: &Deadlines,
        now: Millis,
        ended: bool,
        hold_before: Option<LifecycleEvent>,
    ) -> Result<Step, ApplyError> {
        let index = self
            .events
            .iter()
            .position(|record| record.event == report.lifecycle_event)
            .ok_or_else(|| ApplyError::UnexpectedEvent {
                instance_id: report.instance_id.clone(),
                event: report.lifecycle_event,
            })?;
        // A host that was never sent the command cannot have run it; a report for a
        // host already decided (failed for silence, or skipped) only fills in history.
        if self.status == TargetStatus::Pending {
            return Ok(Step::Nothing);
        }
        // The control plane's own events are its to record.
        if report.lifecycle_event.performer() == Performer::ControlPlane {
            return Err(ApplyError::UnexpectedEvent {
                instance_id: report.instance_id,
                event: report.lifecycle_event,
            });
        }
        let record = &mut self.events[index];
        if rank(report.status) <= rank(record.status) {
            return Ok(Step::Nothing); // a duplicate, or overtaken by a later report
        }
        record.status = report.status;
        record.start_time = Some(report.start_time);
        record.end_time = report.end_time;
        record.diagnostics = report.diagnostics.map(bounded);
        if self.status != TargetStatus::InProgress {
            return Ok(Step::Nothing);
        }
        if report.status == EventStatus::Failed {
            self.skip_after(index);
            return Ok(Step::Decided(TargetStatus::Failed));
        }
        if report.status == EventStatus::Skipped {
            // The agent skips the rest of its command once told the deployment ended;
            // the events of its later commands will never come either.
            self.skip_after(index);
        }
        if self.events.iter().all(|record| record.status.is_terminal()) {
            // A host told that its deployment ended skips the events it had not started:
            // it has not got the revision.
            let skipped = self
                .events
                .iter()
                .any(|record| record.status == EventStatus::Skipped);
            Ok(Step::Decided(if skipped {
                TargetStatus::Skipped
            } else {
                TargetStatus::Succeeded
            }))
        } else if hold_before.is_some() && self.next_pending() == hold_before {
            Ok(Step::Ready)
        } else if let Some(step) = self.traffic_step_due() {
            if ended {
                // The deployment ended while the host ran its stretch: it goes no further.
                self.skip_after(step.saturating_sub(1));
                self.events[step].status = EventStatus::Skipped;
                return Ok(Step::Decided(TargetStatus::Skipped));
            }
            // The agent's stretch is done: the load balancer's turn.
            let record = &mut self.events[step];
            record.status = EventStatus::InProgress;
            record.start_time = Some(now);
            let event = record.event;
            self.deadline = Some(next_deadline(self, deadlines, now));
            Ok(Step::Traffic(event))
        } else {
            self.deadline = Some(next_deadline(self, deadlines, now));
            Ok(Step::Nothing)
        }
    }

    /// Marks the events after `index` not yet started as skipped.
    fn skip_after(&mut self, index: usize) {
        for later in &mut self.events[index + 1..] {
            if later.status == EventStatus::Pending {
                later.status = EventStatus::Skipped;
            }
        }
    }

    /// The next event to run, when every event before it succeeded and it has not started.
    fn next_pending(&self) -> Option<LifecycleEvent> {
        self.events
            .iter()
            .find(|record| record.status != EventStatus::Succeeded)
            .filter(|record| record.status == EventStatus::Pending)
            .map(|record| record.event)
    }

    /// The control-plane event to start now: the first event not yet succeeded, when
    /// every event before it succeeded and it is the control plane's.
    fn traffic_step_due(&self) -> Option<usize> {
        let next = self
            .events
            .iter()
            .position(|record| record.status != EventStatus::Succeeded)?;
        let record = &self.events[next];
        (record.status == EventStatus::Pending
            && record.event.performer() == Performer::ControlPlane)
            .then_some(next)
    }

    /// Takes the result of a load balancer step (BlockTraffic, AllowTraffic) the host is
    /// waiting on. `ended`: the deployment has stopped or failed meanwhile, so the host
    /// goes no further.
    fn apply_traffic(
        &mut self,
        event: LifecycleEvent,
        outcome: TrafficOutcome,
        deadlines: &Deadlines,
        now: Millis,
        ended: bool,
    ) -> Step {
        if self.status != TargetStatus::InProgress {
            return Step::Nothing;
        }
        let Some(index) = self
            .events
            .iter()
            .position(|record| record.event == event && record.status == EventStatus::InProgress)
        else {
            return Step::Nothing; // a repeated or stale result
        };
        let record = &mut self.events[index];
        record.end_time = Some(now);
        if let TrafficOutcome::Failed { message } = outcome {
            record.status = EventStatus::Failed;
            record.diagnostics = Some(Diagnostics {
                error_code: ErrorCode::UnknownError,
                script_name: String::new(),
                message: crate::wire::first_json_bytes(&message, MESSAGE_MAX_BYTES).to_owned(),
                log_tail: String::new(),
            });
            self.skip_after(index);
            return Step::Decided(TargetStatus::Failed);
        }
        record.status = EventStatus::Succeeded;
        if ended {
            self.skip_after(index);
            return Step::Decided(TargetStatus::Skipped);
        }
        if index + 1 == self.events.len() {
            return Step::Decided(TargetStatus::Succeeded);
        }
        let names: Vec<LifecycleEvent> = self.events.iter().map(|record| record.event).collect();
        let events = crate::lifecycle::stretch(&names, index + 1).to_vec();
        self.deadline = Some(now.saturating_add(deadlines.start_ms));
        Step::Resume(events)
    }

    /// Fails a deploying host whose deadline has passed. Returns whether it did.
    fn fail_if_silent(&mut self, now: Millis) -> bool {
        let overdue = self.status == TargetStatus::InProgress
            && self.deadline.is_some_and(|deadline| now > deadline);
        if !overdue {
            return false;
        }
        let waiting_on = self.events.iter().find(|record| {
            record.status == EventStatus::InProgress
                && record.event.performer() == Performer::ControlPlane
        });
        let id = &self.target.instance_id;
        let message = match waiting_on.map(|record| record.event) {
            Some(LifecycleEvent::BlockTraffic) => format!(
                "{id} was still registered or draining in the deployment group's target groups at the BlockTraffic deadline"
            ),
            Some(event) => format!(
                "{id} was not healthy in every target group of the deployment group by the {event} deadline; check the target group's health check and the application"
            ),
            None => {
                format!("no report from {id} by its deadline; the host or its agent may be down")
            }
        };
        let mut failed_one = false;
        for record in &mut self.events {
            match record.status {
                EventStatus::InProgress | EventStatus::Pending if !failed_one => {
                    failed_one = true;
                    record.status = EventStatus::Failed;
                    record.end_time = Some(now);
                    record.diagnostics = Some(Diagnostics {
                        error_code: ErrorCode::UnknownError,
                        script_name: String::new(),
                        message: message.clone(),
                        log_tail: String::new(),
                    });
                }
                EventStatus::InProgress | EventStatus::Pending => {
                    record.status = EventStatus::Skipped
                }
                _ => {}
            }
        }
        true
    }
}

/// What an input did to one host.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Nothing,
    /// The host's outcome is decided.
    Decided(TargetStatus),
    /// The host is to be taken out of, or put back into, its load balancers.
    Traffic(LifecycleEvent),
    /// The host is to run these events next, in a command of their own.
    Resume(Vec<LifecycleEvent>),
    /// A blue/green replacement host installed the revision: it waits for traffic.
    Ready,
}

/// How a load balancer step ended for a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrafficOutcome {
    /// Drained from every target group (BlockTraffic), or healthy in every one
    /// (AllowTraffic).
    Done,
    /// ELB refused, or the host failed its health checks: why.
    Failed { message: String },
}

/// A stretch of the ordered target list: one Availability Zone of a zonal deployment,
/// or the whole list. Its hosts that do not count as healthy come first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Segment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Index of the segment's first host.
    pub start: u32,
    /// One past its last host.
    pub end: u32,
    /// How many of its first hosts do not count as healthy.
    pub unhealthy: u32,
}

impl Segment {
    fn healthy_from(&self) -> u32 {
        self.start + self.unhealthy
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

/// Something that happens to a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Start {
        now: Millis,
    },
    /// A host's report, received at `now` by the control plane's clock.
    Report {
        report: Report,
        /// The IAM identity SQS says sent it (`SenderId`), if it said.
        sender: Option<String>,
        now: Millis,
    },
    /// Time passes: the hosts given with it that are past their deadline fail.
    Tick {
        now: Millis,
    },
    Stop {
        now: Millis,
        rollback: bool,
    },
    /// A host's load balancer step (BlockTraffic or AllowTraffic) ended, as the control
    /// plane found by asking ELB.
    Traffic {
        instance_id: String,
        event: LifecycleEvent,
        outcome: TrafficOutcome,
        now: Millis,
    },
    /// A blue/green deployment's replacement fleet cannot be provisioned (the copy's
    /// instances cannot become its targets): it fails, and the copy is removed.
    ProvisioningFailed {
        now: Millis,
        message: String,
    },
    /// The deployment's CloudWatch alarms were polled (at a batch boundary, or on the
    /// tick): what the poll found.
    Alarm {
        now: Millis,
        check: AlarmCheck,
    },
    /// A blue/green deployment's wait is ended early (ContinueDeployment,
    /// SkipWaitTimeForInstanceTermination).
    Continue {
        wait: WaitType,
        now: Millis,
    },
}

/// What a poll of a deployment's CloudWatch alarms found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlarmCheck {
    /// Every alarm answered, none in ALARM.
    Clear,
    /// These alarms are in ALARM.
    Active { alarms: Vec<String> },
    /// The alarms' state could not be had: CloudWatch refused or failed, or an alarm
    /// does not exist.
    Failed { reason: String },
}

/// How a deployment takes its alarm checks (CodeDeploy's `alarmConfiguration`, and
/// `autoRollbackConfiguration`'s DEPLOYMENT_STOP_ON_ALARM).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmPolicy {
    /// A failed poll leaves the deployment running (`ignorePollAlarmFailure`).
    pub ignore_poll_failure: bool,
    /// An alarm in ALARM rolls the deployment back once it is stopped.
    pub rollback: bool,
}

/// What the adapters must do, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// Send the deployment's command to the hosts at `first..first + count` of the
    /// ordered target list (creating their records, then announcing InstanceStart).
    Dispatch { first: u32, count: u32 },
    /// Take the host out of the deployment group's target groups (BlockTraffic) or put
    /// it back (AllowTraffic), then watch ELB until it is drained or healthy.
    Traffic {
        instance_id: String,
        event: LifecycleEvent,
    },
    /// Send the host a command with the next stretch of its events, which it may start
    /// until `start_by`.
    Resume {
        instance_id: String,
        events: Vec<LifecycleEvent>,
        start_by: Millis,
    },
    Notify {
        event: NotificationEvent,
        instance_id: Option<String>,
    },
    /// Record the host's health in the group: healthy after a success.
    RecordHealth { instance_id: String, healthy: bool },
    /// The host went silent past its deadline and was failed.
    HostTimedOut { instance_id: String },
    /// The deployment succeeded: the group's last successful revision is this one.
    RecordLastSuccessful,
    /// The deployment reached a final status: free the group for the next one.
    ReleaseLock,
    /// Redeploy the group's last successful revision.
    StartRollback,
    /// A launching instance's deployment ended: let Auto Scaling put the instance in
    /// service (`proceed`) or abandon it. Such a deployment holds no lock and leaves the
    /// group's last successful revision as it was.
    CompleteLaunch { proceed: bool },
    /// The deployment stopped or failed while hosts were deploying: tell each of them to
    /// skip the events it has not started.
    CancelHosts,
    /// The deployment succeeded: instances that joined the group's Auto Scaling groups
    /// while it ran get its revision in a deployment of their own (when the group's
    /// outdatedInstancesStrategy is UPDATE).
    UpdateOutdated,
    /// Send the blue/green replacement hosts at `first..first + count`, Ready, their
    /// traffic events.
    Reroute { first: u32, count: u32 },
    /// A blue/green deployment's original fleet waited out its termination wait:
    /// terminate it (its Auto Scaling group with it).
    TerminateOriginal,
    /// A blue/green deployment succeeded: its replacement fleet is the deployment
    /// group's from now on (a copied Auto Scaling group replaces the original there).
    AdoptReplacement,
    /// A blue/green deployment that copies its group's Auto Scaling group was stored:
    /// make the copy (its name follows from the deployment's id), then watch it until
    /// its instances are in service.
    ProvisionFleet,
    /// A blue/green deployment ended while its replacement fleet was being provisioned:
    /// delete the copied Auto Scaling group, whatever it holds by now.
    RemoveReplacement,
}

/// Why an input could not apply. These are bugs or foreign messages, never panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("report for deployment {found} applied to deployment {expected}")]
    WrongDeployment { expected: String, found: String },
    #[error("instance {0} is not a target of this deployment, or was not sent its command")]
    UnknownInstance(String),
    #[error("instance {instance_id} was not asked to run {event}")]
    UnexpectedEvent {
        instance_id: String,
        event: LifecycleEvent,
    },
    #[error("report for instance {instance_id} sent by {found}, not by {expected}")]
    ForeignSender {
        instance_id: String,
        expected: String,
        found: String,
    },
    #[error("deployment has already started")]
    AlreadyStarted,
    #[error("the deployment is not waiting ({0:?})")]
    NotWaiting(WaitType),
}

const HEALTH_CONSTRAINTS: &str = "HEALTH_CONSTRAINTS";
/// CodeDeploy's error codes for a deployment stopped by its alarms.
pub const ALARM_ACTIVE: &str = "ALARM_ACTIVE";
pub const ALARM_CONFIG: &str = "ALARM_CONFIG";

/// The most hosts one deployment takes. Nothing in the state grows with the fleet but the
/// ordered target list, which is stored in pages beside the summary (see gantry-functions'
/// store); 10,000 is ten times CodeDeploy's limit.
pub const MAX_TARGETS: usize = 10_000;
/// The most Availability Zones a zonal deployment goes through. The summary holds one
/// segment per zone, so this keeps it far below an item's 400 KB whatever the zones are
/// named (an on-premises host's zone is a tag's value, up to 256 characters).
pub const MAX_ZONES: usize = 64;
/// Stored (JSON-escaped) bytes of a diagnostics message kept.
pub const MESSAGE_MAX_BYTES: usize = 512;
/// Stored bytes of a diagnostics script name kept.
pub const SCRIPT_NAME_MAX_BYTES: usize = 512;

/// A host's diagnostics as stored: each string cut to what it may take once JSON-escaped
/// (a log tail of control characters is six times longer stored than sent), so that a
/// host's record stays a few tens of KB whatever its host sends, and a transaction of
/// many hosts stays under DynamoDB's 4 MB.
fn bounded(mut diagnostics: Diagnostics) -> Diagnostics {
    use crate::wire::{LOG_TAIL_MAX_BYTES, first_json_bytes, last_json_bytes};
    diagnostics.message = first_json_bytes(&diagnostics.message, MESSAGE_MAX_BYTES).to_owned();
    diagnostics.script_name =
        first_json_bytes(&diagnostics.script_name, SCRIPT_NAME_MAX_BYTES).to_owned();
    diagnostics.log_tail = last_json_bytes(&diagnostics.log_tail, LOG_TAIL_MAX_BYTES).to_owned();
    diagnostics
}

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

    /// Applies one input, returning the effects to carry out. `targets` are the records
    /// of the hosts the input concerns: the reporting host, or for a tick the hosts whose
    /// deadline may have passed; they are changed in place. An input that changes nothing
    /// (a duplicate report) leaves the state and the records as they were, which is how
    /// callers know there is nothing to write.
    pub fn apply(
        &mut self,
        input: Input,
        targets: &mut [TargetState],
    ) -> Result<Vec<Effect>, ApplyError> {
        let mut effects = Vec::new();
        match input {
            Input::Start { now } => {
                if self.status != DeploymentStatus::Created {
                    return Err(ApplyError::AlreadyStarted);
                }
                self.status = DeploymentStatus::InProgress;
                effects.push(notify(NotificationEvent::DeploymentStart, None));
                self.advance(now, &mut effects);
            }
            Input::Report {
                report,
                sender,
                now,
            } => {
                if report.deployment_id != self.deployment_id {
                    return Err(ApplyError::WrongDeployment {
                        expected: self.deployment_id.clone(),
                        found: report.deployment_id,
                    });
                }
                let target = targets
                    .iter_mut()
                    .find(|t| t.target.instance_id == report.instance_id)
                    .ok_or_else(|| ApplyError::UnknownInstance(report.instance_id.clone()))?;
                if !target
                    .target
                    .sender
                    .admits(&report.instance_id, sender.as_deref())
                {
                    return Err(ApplyError::ForeignSender {
                        instance_id: report.instance_id,
                        expected: target.target.sender.to_string(),
                        found: sender.unwrap_or_else(|| "an unknown sender".into()),
                    });
                }
                let ended = self.status.is_terminal();
                let hold_before = self.hold_before(target);
                let step = target.apply_report(report, &self.deadlines, now, ended, hold_before)?;
                self.take_step(target, step, now, &mut effects);
            }
            Input::Traffic {
                instance_id,
                event,
                outcome,
                now,
            } => {
                let target = targets
                    .iter_mut()
                    .find(|t| t.target.instance_id == instance_id)
                    .ok_or_else(|| ApplyError::UnknownInstance(instance_id.clone()))?;
                let ended = self.status.is_terminal();
                let step = target.apply_traffic(event, outcome, &self.deadlines, now, ended);
                self.take_step(target, step, now, &mut effects);
            }
            Input::Tick { now } => {
                for target in targets.iter_mut() {
                    if target.fail_if_silent(now) {
                        effects.push(Effect::HostTimedOut {
                            instance_id: target.target.instance_id.clone(),
                        });
                        self.finish_target(target, TargetStatus::Failed, &mut effects);
                    }
                }
                self.advance(now, &mut effects);
            }
            Input::Stop { now, rollback } => {
                if !self.status.is_terminal() {
                    self.skip_pending();
                    self.finish(DeploymentStatus::Stopped, now, None, &mut effects);
                    self.start_rollback(rollback || self.rollback_on_stop, &mut effects);
                }
            }
            Input::ProvisioningFailed { now, message } => {
                if self.status == DeploymentStatus::InProgress && self.provisioning() {
                    let error = ErrorInformation {
                        code: PROVISIONING_ERROR.to_owned(),
                        message,
                    };
                    self.finish(DeploymentStatus::Failed, now, Some(error), &mut effects);
                }
            }
            Input::Alarm { now, check } => self.check_alarms(now, check, &mut effects),
            Input::Continue { wait, now } => {
                if !self.end_wait(wait, now, &mut effects) {
                    return Err(ApplyError::NotWaiting(wait));
                }
            }
        }
        Ok(effects)
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Carries out what an input did to one host.
    fn take_step(
        &mut self,
        target: &mut TargetState,
        step: Step,
        now: Millis,
        effects: &mut Vec<Effect>,
    ) {
        let instance_id = target.target.instance_id.clone();
        match step {
            Step::Nothing => {}
            Step::Decided(outcome) => {
                self.finish_target(target, outcome, effects);
                self.advance(now, effects);
            }
            Step::Traffic(event) => effects.push(Effect::Traffic { instance_id, event }),
            Step::Resume(events) => effects.push(Effect::Resume {
                instance_id,
                events,
                start_by: target
                    .deadline
                    .unwrap_or(now.saturating_add(self.deadlines.start_ms)),
            }),
            Step::Ready => self.host_ready(target, now, effects),
        }
    }

    /// Ends one host's deployment: the counters, its notification and its health.
    fn finish_target(
        &mut self,
        target: &mut TargetState,
        status: TargetStatus,
        effects: &mut Vec<Effect>,
    ) {
        let succeeded = status == TargetStatus::Succeeded;
        target.status = status;
        target.deadline = None;
        self.counts.in_progress = self.counts.in_progress.saturating_sub(1);
        let instance_id = target.target.instance_id.clone();
        // A blue/green original host leaves the fleet: it never runs the revision.
        let records_health = self
            .blue_green
            .as_ref()
            .is_none_or(|bg| bg.is_replacement(target.index));
        match status {
            TargetStatus::Succeeded => self.counts.succeeded += 1,
            TargetStatus::Skipped => {
                // Cut short by the deployment's end: no trigger event is CodeDeploy's
                // for it, and the host is not on the revision.
                self.counts.skipped += 1;
                if records_health {
                    effects.push(Effect::RecordHealth {
                        instance_id,
                        healthy: false,
                    });
                }
                return;
            }
            _ => self.counts.failed += 1,
        }
        let event = if succeeded {
            NotificationEvent::InstanceSuccess
        } else {
            NotificationEvent::InstanceFailure
        };
        effects.push(notify(event, Some(&instance_id)));
        if records_health {
            effects.push(Effect::RecordHealth {
                instance_id,
                healthy: succeeded,
            });
        }
    }

    /// Decides the outcome or sends the next commands.
    fn advance(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        if self.status != DeploymentStatus::InProgress {
            return;
        }
        if self.blue_green.is_some() {
            return self.advance_blue_green(now, effects);
        }
        let counts = self.counts;
        if counts.pending == 0 && counts.in_progress == 0 {
            if self.plan.is_success(counts.succeeded) {
                self.finish(DeploymentStatus::Succeeded, now, None, effects);
            } else {
                self.fail_for_health(now, effects);
            }
            return;
        }
        // Fail as soon as success is out of reach, rather than deploying on.
        if counts.succeeded + counts.in_progress + counts.pending < self.plan.required_successes {
            self.fail_for_health(now, effects);
            return;
        }
        let count = self.dispatch(now);
        if count > 0 {
            effects.push(Effect::Dispatch {
                first: self.dispatched - count,
                count,
            });
        } else if counts.in_progress == 0 && self.zone_wait_until.is_none_or(|until| now >= until) {
            // Nothing running, hosts left, and none may go without breaking the minimum.
            self.fail_for_health(now, effects);
        }
    }

    /// Hosts not yet sent their command that count as healthy.
    fn pending_healthy(&self) -> u32 {
        self.segments
            .iter()
            .map(|segment| {
                segment
                    .end
                    .saturating_sub(segment.healthy_from().max(self.dispatched))
            })
            .sum()
    }

    /// Moves the cursor over as many hosts as the health rules allow; returns how many.
    fn dispatch(&mut self, now: Millis) -> u32 {
        let (segment, zone_limit) = match self.zonal {
            None => (self.segments.first().cloned(), u32::MAX),
            Some(zonal) => match self.current_zone(now, &zonal) {
                ZoneGate::Open(index, limit) => (Some(self.segments[index].clone()), limit),
                ZoneGate::Waiting => return 0,
            },
        };
        let Some(segment) = segment else { return 0 };
        let healthy = self.counts.succeeded + self.pending_healthy();
        let mut spare_healthy = healthy.saturating_sub(self.plan.minimum_healthy);
        // Earlier zones are finished and later ones not started, so every running host
        // belongs to this segment.
        let limit = self.plan.batch_size.min(zone_limit);
        let mut in_progress = self.counts.in_progress;
        let mut next = self.dispatched.max(segment.start);
        let first = next;
        while next < segment.end && in_progress < limit {
            if next >= segment.healthy_from() {
                if spare_healthy == 0 {
                    break;
                }
                spare_healthy -= 1;
            }
            next += 1;
            in_progress += 1;
        }
        let count = next - first;
        if count > 0 {
            self.dispatched = next;
            self.counts.pending -= count;
            self.counts.in_progress += count;
            self.batches_dispatched += 1;
            self.start_time.get_or_insert(now);
        }
        count
    }

    /// The zone being deployed (its segment), with how many of its hosts may run at
    /// once; or a wait while a finished zone is monitored.
    fn current_zone(&mut self, now: Millis, zonal: &ZonalConfig) -> ZoneGate {
        let in_progress = self.counts.in_progress;
        let dispatched = self.dispatched;
        let zone_done = |segment: &Segment| {
            let running_here =
                in_progress > 0 && dispatched > segment.start && dispatched <= segment.end;
            dispatched >= segment.end && !running_here
        };
        let Some(index) = self.segments.iter().position(|s| !zone_done(s)) else {
            return ZoneGate::Waiting;
        };
        let segment = &self.segments[index];
        let started = dispatched > segment.start;
        let limit = zonal.zone_batch_size(segment.end - segment.start);
        if started {
            self.zone_wait_until = None;
        } else if index > 0 {
            // The zone before was just finished: watch it for the monitor duration.
            let until = *self.zone_wait_until.get_or_insert(
                now.saturating_add(zonal.monitor_after(index - 1).saturating_mul(1000)),
            );
            if now < until {
                return ZoneGate::Waiting;
            }
            // The wait is over and this zone opens: the next zone's wait starts afresh
            // when this one ends (even if it ends within this very input).
            self.zone_wait_until = None;
        }
        ZoneGate::Open(index, limit)
    }

    /// Hosts never sent their command are skipped; readers derive their records.
    fn skip_pending(&mut self) {
        self.counts.skipped += self.counts.pending;
        self.counts.pending = 0;
    }

    /// Takes an alarm poll's result: an alarm in ALARM stops a running deployment (and
    /// rolls it back if its policy says so); a failed poll stops it unless the policy
    /// ignores poll failures. A poll failure never rolls back: it says nothing of the
    /// revision. Without alarms, or once the deployment has ended, nothing changes.
    fn check_alarms(&mut self, now: Millis, check: AlarmCheck, effects: &mut Vec<Effect>) {
        let Some(policy) = self.alarms else { return };
        if self.status != DeploymentStatus::InProgress {
            return;
        }
        let (error, rollback) = match check {
            AlarmCheck::Clear => return,
            AlarmCheck::Active { alarms } => (
                ErrorInformation {
                    code: ALARM_ACTIVE.to_owned(),
                    message: format!(
                        "The deployment was stopped because one or more of its CloudWatch alarms are in ALARM: {}.",
                        alarms.join(", ")
                    ),
                },
                policy.rollback,
            ),
            AlarmCheck::Failed { .. } if policy.ignore_poll_failure => return,
            AlarmCheck::Failed { reason } => (
                ErrorInformation {
                    code: ALARM_CONFIG.to_owned(),
                    message: format!(
                        "The deployment was stopped because the state of its CloudWatch alarms could not be retrieved: {reason} (set ignorePollAlarmFailure to deploy on regardless)."
                    ),
                },
                false,
            ),
        };
        self.skip_pending();
        self.finish(DeploymentStatus::Stopped, now, Some(error), effects);
        self.start_rollback(rollback, effects);
    }

    fn fail_for_health(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        self.skip_pending();
        let counts = self.counts;
        let message = format!(
            "The overall deployment failed: {} of {} instances succeeded and {} failed; {} successes were needed, keeping at least {} instances healthy.",
            counts.succeeded,
            self.plan.fleet,
            counts.failed,
            self.plan.required_successes,
            self.plan.minimum_healthy,
        );
        self.finish(
            DeploymentStatus::Failed,
            now,
            Some(ErrorInformation {
                code: HEALTH_CONSTRAINTS.to_owned(),
                message,
            }),
            effects,
        );
        self.start_rollback(self.rollback_on_failure, effects);
    }

    /// A rollback after an unsuccessful end, when `wanted`: none for a blue/green
    /// deployment still provisioning its replacement fleet, which changed nothing to
    /// roll back (its copy is removed as it ends).
    pub(crate) fn start_rollback(&self, wanted: bool, effects: &mut Vec<Effect>) {
        if wanted && !self.provisioning() {
            effects.push(Effect::StartRollback);
        }
    }

    fn finish(
        &mut self,
        status: DeploymentStatus,
        now: Millis,
        error: Option<ErrorInformation>,
        effects: &mut Vec<Effect>,
    ) {
        self.status = status;
        self.error = error;
        self.complete_time = Some(now);
        self.zone_wait_until = None;
        let event = match status {
            DeploymentStatus::Succeeded => NotificationEvent::DeploymentSuccess,
            DeploymentStatus::Stopped => NotificationEvent::DeploymentStop,
            _ => NotificationEvent::DeploymentFailure,
        };
        effects.push(notify(event, None));
        let succeeded = status == DeploymentStatus::Succeeded;
        if !succeeded && self.provisioning() {
            effects.push(Effect::RemoveReplacement);
        }
        if !succeeded && self.counts.in_progress > 0 {
            effects.push(Effect::CancelHosts);
        }
        if self.completes_launch {
            effects.push(Effect::CompleteLaunch { proceed: succeeded });
            return;
        }
        if succeeded {
            if self.blue_green.is_some() {
                effects.push(Effect::AdoptReplacement);
            }
            effects.push(Effect::RecordLastSuccessful);
        }
        effects.push(Effect::ReleaseLock);
        // A blue/green deployment's instances that launched meanwhile are in its
        // replacement fleet's group, which copied the launch template.
        if succeeded && self.blue_green.is_none() {
            effects.push(Effect::UpdateOutdated);
        }
    }

    /// When the next tick matters for the summary itself: the end of a zone wait. Hosts'
    /// deadlines live in their own records.
    pub fn next_wakeup(&self) -> Option<Millis> {
        self.zone_wait_until.or(self.blue_green_wakeup())
    }
}

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

/// Stopped EC2 instances.
impl TargetState {
    /// A stopped instance's part: it was never sent its command, and failed as the
    /// deployment started (`at`, when known) at its first event, skipping the rest.
    pub fn stopped(
        target: Target,
        index: u32,
        events: &[LifecycleEvent],
        at: Option<Millis>,
    ) -> Self {
        let message = format!(
            "instance {} is stopped, so no agent runs on it: it counts as a failed instance, as in CodeDeploy. Start it, or take it out of the deployment group, and deploy again",
            target.instance_id
        );
        let events = events
            .iter()
            .enumerate()
            .map(|(position, &event)| {
                let first = position == 0;
                EventRecord {
                    event,
                    status: if first {
                        EventStatus::Failed
                    } else {
                        EventStatus::Skipped
                    },
                    start_time: at.filter(|_| first),
                    end_time: at.filter(|_| first),
                    diagnostics: first.then(|| Diagnostics {
                        error_code: ErrorCode::UnknownError,
                        script_name: String::new(),
                        message: message.clone(),
                        log_tail: String::new(),
                    }),
                }
            })
            .collect();
        Self {
            target,
            index,
            status: TargetStatus::Failed,
            events,
            dispatched_at: None,
            deadline: None,
        }
    }
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

/// The segments of an ordered target list: one per zone (in order of appearance) when
/// zonal, else one. Within each, the hosts that do not count as healthy come first.
fn segments(targets: &[Target], zonal: bool) -> Vec<Segment> {
    let mut segments: Vec<Segment> = Vec::new();
    for (index, target) in targets.iter().enumerate() {
        let index = index as u32;
        let zone = zonal.then(|| target.zone.clone()).flatten();
        let same = segments
            .last()
            .is_some_and(|last| !zonal || last.zone == zone);
        if !same {
            segments.push(Segment {
                zone,
                start: index,
                end: index,
                unhealthy: 0,
            });
        }
        let segment = segments.last_mut().expect("pushed above");
        segment.end = index + 1;
        if !target.standing.counts_as_healthy() {
            debug_assert_eq!(
                segment.unhealthy,
                index - segment.start,
                "hosts that do not count as healthy go first"
            );
            segment.unhealthy += 1;
        }
    }
    segments
}

enum ZoneGate {
    Open(usize, u32),
    Waiting,
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

fn notify(event: NotificationEvent, instance_id: Option<&str>) -> Effect {
    Effect::Notify {
        event,
        instance_id: instance_id.map(str::to_owned),
    }
}

/// Event statuses only move forward: Pending, InProgress, then an end.
fn rank(status: EventStatus) -> u8 {
    match status {
        EventStatus::Pending => 0,
        EventStatus::InProgress => 1,
        EventStatus::Succeeded | EventStatus::Failed | EventStatus::Skipped => 2,
    }
}

/// A deploying host's next deadline, counted from `now`, when the control plane heard
/// from it: the running event's limit, or the time to start the next event. The host's
/// own clock (the report's times) is never used, so clock skew cannot fail a host.
fn next_deadline(target: &TargetState, deadlines: &Deadlines, now: Millis) -> Millis {
    let running = target
        .events
        .iter()
        .filter(|record| record.status == EventStatus::InProgress)
        .map(|record| {
            deadlines
                .event_ms
                .get(&record.event)
                .copied()
                .unwrap_or(deadlines.default_event_ms)
                .saturating_add(deadlines.slack_ms)
        })
        .max();
    now.saturating_add(running.unwrap_or(deadlines.start_ms))
}

mod blue_green;
pub use blue_green::{
    BlueGreen, BlueGreenPlan, OriginalFleet, PROVISIONING_ERROR, Stage, TIMEOUT, WaitType,
};

#[cfg(test)]
mod blue_green_tests;
#[cfg(test)]
mod stopped_tests;
#[cfg(test)]
mod tests;
