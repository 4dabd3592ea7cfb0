//! The deployment state machine: a pure function from (state, input) to (state, effects).
//!
//! Inputs are what happens to a deployment: it starts, a host reports on a lifecycle
//! event, time passes (a tick), someone asks it to stop. Effects are data that the
//! control plane's adapters carry out: send commands to hosts, publish notifications,
//! record instance health, release the group's lock, start a rollback.
//!
//! Applying an input is idempotent: a report that does not move an event forward (a
//! duplicate, or one overtaken by a later report) changes nothing and yields no effect.
//! Reports of one host may arrive in any order; a host's outcome is decided once its
//! events are all known, or as soon as one fails.

use crate::config::{HealthPlan, ZonalConfig};
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetState {
    pub target: Target,
    pub status: TargetStatus,
    pub events: Vec<EventRecord>,
    pub dispatched_at: Option<Millis>,
    /// When the host is overdue; set while it is deploying.
    pub deadline: Option<Millis>,
}

impl TargetState {
    fn counts_as_healthy(&self) -> bool {
        match self.status {
            TargetStatus::Succeeded => true,
            TargetStatus::Pending | TargetStatus::Skipped => {
                self.target.standing.counts_as_healthy()
            }
            TargetStatus::InProgress | TargetStatus::Failed => false,
        }
    }
}

/// Everything the state machine knows about one deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub deployment_id: String,
    pub status: DeploymentStatus,
    pub plan: HealthPlan,
    pub zonal: Option<ZonalConfig>,
    pub deadlines: Deadlines,
    /// In deployment order.
    pub targets: Vec<TargetState>,
    pub rollback_on_failure: bool,
    pub rollback_on_stop: bool,
    pub error: Option<ErrorInformation>,
    /// Batches sent so far (a batch is every command sent by one input).
    pub batches_dispatched: u32,
    /// With a zonal configuration: no host of the next zone is sent a command before this.
    pub zone_wait_until: Option<Millis>,
    pub create_time: Millis,
    pub complete_time: Option<Millis>,
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
        now: Millis,
    },
    Tick {
        now: Millis,
    },
    Stop {
        now: Millis,
        rollback: bool,
    },
}

/// What the adapters must do, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// Send the deployment's command to each host.
    Dispatch { instance_ids: Vec<String> },
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
}

/// Why an input could not apply. These are bugs or foreign messages, never panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("report for deployment {found} applied to deployment {expected}")]
    WrongDeployment { expected: String, found: String },
    #[error("instance {0} is not a target of this deployment")]
    UnknownInstance(String),
    #[error("instance {instance_id} was not asked to run {event}")]
    UnexpectedEvent {
        instance_id: String,
        event: LifecycleEvent,
    },
    #[error("deployment has already started")]
    AlreadyStarted,
}

const HEALTH_CONSTRAINTS: &str = "HEALTH_CONSTRAINTS";

/// The most hosts one deployment takes. Its state is stored as one DynamoDB item (at
/// most 400 KB), about 1.2 KB per host plus a failure's diagnostics; the test
/// `the_largest_deployment_fits_one_item_when_every_host_fails_loudly` holds this.
pub const MAX_TARGETS: usize = 150;
/// Bytes of script output kept across all of a deployment's hosts: each host's failure
/// keeps the end of its log tail within its share (the host's own scripts.log has it all).
pub const LOG_TAIL_BUDGET_BYTES: usize = 48 * 1024;
/// Bytes of a diagnostics message kept.
pub const MESSAGE_MAX_BYTES: usize = 512;

impl Deployment {
    /// A deployment that has not started. `targets` must be in deployment order
    /// (see [`crate::planner::order`]); `events` are the lifecycle events each host runs.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        deployment_id: String,
        plan: HealthPlan,
        zonal: Option<ZonalConfig>,
        deadlines: Deadlines,
        targets: Vec<Target>,
        events: &[LifecycleEvent],
        rollback_on_failure: bool,
        rollback_on_stop: bool,
        create_time: Millis,
    ) -> Self {
        let agent_events: Vec<LifecycleEvent> = events
            .iter()
            .copied()
            .filter(|event| event.performer() != Performer::ControlPlane)
            .collect();
        let targets = targets
            .into_iter()
            .map(|target| TargetState {
                target,
                status: TargetStatus::Pending,
                events: agent_events
                    .iter()
                    .map(|&event| EventRecord {
                        event,
                        status: EventStatus::Pending,
                        start_time: None,
                        end_time: None,
                        diagnostics: None,
                    })
                    .collect(),
                dispatched_at: None,
                deadline: None,
            })
            .collect();
        Self {
            deployment_id,
            status: DeploymentStatus::Created,
            plan,
            zonal,
            deadlines,
            targets,
            rollback_on_failure,
            rollback_on_stop,
            error: None,
            batches_dispatched: 0,
            zone_wait_until: None,
            create_time,
            complete_time: None,
        }
    }

    /// Applies one input, returning the effects to carry out. An input that changes
    /// nothing (a duplicate report) leaves the state equal to what it was, which is how
    /// callers know there is nothing to write.
    pub fn apply(&mut self, input: Input) -> Result<Vec<Effect>, ApplyError> {
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
            Input::Report { report, now } => {
                self.apply_report(report, now, &mut effects)?;
                if !effects.is_empty() {
                    self.advance(now, &mut effects);
                }
            }
            Input::Tick { now } => {
                self.fail_silent_hosts(now, &mut effects);
                self.advance(now, &mut effects);
            }
            Input::Stop { now, rollback } => {
                if !self.status.is_terminal() {
                    self.skip_pending();
                    self.finish(DeploymentStatus::Stopped, now, None, &mut effects);
                    if rollback || self.rollback_on_stop {
                        effects.push(Effect::StartRollback);
                    }
                }
            }
        }
        Ok(effects)
    }

    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for target in &self.targets {
            match target.status {
                TargetStatus::Pending => counts.pending += 1,
                TargetStatus::InProgress => counts.in_progress += 1,
                TargetStatus::Succeeded => counts.succeeded += 1,
                TargetStatus::Failed => counts.failed += 1,
                TargetStatus::Skipped => counts.skipped += 1,
            }
        }
        counts
    }

    fn apply_report(
        &mut self,
        report: Report,
        now: Millis,
        effects: &mut Vec<Effect>,
    ) -> Result<(), ApplyError> {
        if report.deployment_id != self.deployment_id {
            return Err(ApplyError::WrongDeployment {
                expected: self.deployment_id.clone(),
                found: report.deployment_id,
            });
        }
        let deadlines = self.deadlines.clone();
        let log_tail_share = (LOG_TAIL_BUDGET_BYTES / self.targets.len().max(1))
            .clamp(256, crate::wire::LOG_TAIL_MAX_BYTES);
        let target = self
            .targets
            .iter_mut()
            .find(|t| t.target.instance_id == report.instance_id)
            .ok_or_else(|| ApplyError::UnknownInstance(report.instance_id.clone()))?;
        let index = target
            .events
            .iter()
            .position(|record| record.event == report.lifecycle_event)
            .ok_or_else(|| ApplyError::UnexpectedEvent {
                instance_id: report.instance_id.clone(),
                event: report.lifecycle_event,
            })?;
        // A host that was never sent the command cannot have run it; a report for a
        // host already decided (failed for silence, or skipped) only fills in history.
        if target.status == TargetStatus::Pending {
            return Ok(());
        }
        let record = &mut target.events[index];
        if rank(report.status) <= rank(record.status) {
            return Ok(()); // a duplicate, or overtaken by a later report
        }
        record.status = report.status;
        record.start_time = Some(report.start_time);
        record.end_time = report.end_time;
        record.diagnostics = report.diagnostics.map(|mut diagnostics| {
            diagnostics.message =
                crate::wire::first_bytes(&diagnostics.message, MESSAGE_MAX_BYTES).to_owned();
            diagnostics.log_tail =
                crate::wire::last_bytes(&diagnostics.log_tail, log_tail_share).to_owned();
            diagnostics
        });
        if target.status != TargetStatus::InProgress {
            return Ok(());
        }
        if report.status == EventStatus::Failed {
            for later in &mut target.events[index + 1..] {
                if later.status == EventStatus::Pending {
                    later.status = EventStatus::Skipped;
                }
            }
            finish_target(target, TargetStatus::Failed, effects);
        } else if target
            .events
            .iter()
            .all(|record| record.status.is_terminal())
        {
            finish_target(target, TargetStatus::Succeeded, effects);
        } else {
            target.deadline = Some(next_deadline(target, &deadlines, now));
        }
        Ok(())
    }

    fn fail_silent_hosts(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        for target in &mut self.targets {
            let overdue = target.status == TargetStatus::InProgress
                && target.deadline.is_some_and(|deadline| now > deadline);
            if !overdue {
                continue;
            }
            let instance_id = target.target.instance_id.clone();
            let message = format!(
                "no report from {instance_id} by its deadline; the host or its agent may be down"
            );
            let mut failed_one = false;
            for record in &mut target.events {
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
            effects.push(Effect::HostTimedOut {
                instance_id: instance_id.clone(),
            });
            finish_target(target, TargetStatus::Failed, effects);
        }
    }

    /// Decides the outcome or sends the next commands.
    fn advance(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        if self.status != DeploymentStatus::InProgress {
            return;
        }
        let counts = self.counts();
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
        let dispatched = self.dispatch(now);
        if !dispatched.is_empty() {
            self.batches_dispatched += 1;
            for id in &dispatched {
                effects.push(notify(NotificationEvent::InstanceStart, Some(id)));
            }
            effects.push(Effect::Dispatch {
                instance_ids: dispatched,
            });
        } else if counts.in_progress == 0 && self.zone_wait_until.is_none_or(|until| now >= until) {
            // Nothing running, hosts left, and none may go without breaking the minimum.
            self.fail_for_health(now, effects);
        }
    }

    /// Sends commands to as many hosts from the front of the queue as the health rules
    /// allow, and returns them.
    fn dispatch(&mut self, now: Millis) -> Vec<String> {
        let zone_filter = match self.zonal {
            None => None,
            Some(zonal) => match self.current_zone(now, &zonal) {
                ZoneGate::Open(zone, limit) => Some((zone, limit)),
                ZoneGate::Waiting => return Vec::new(),
            },
        };
        let mut in_progress = self.counts().in_progress;
        let mut zone_in_progress = zone_filter.as_ref().map_or(0, |(zone, _)| {
            self.targets
                .iter()
                .filter(|t| t.status == TargetStatus::InProgress && &t.target.zone == zone)
                .count() as u32
        });
        let healthy = self
            .targets
            .iter()
            .filter(|t| t.counts_as_healthy())
            .count() as u32;
        let mut spare_healthy = healthy.saturating_sub(self.plan.minimum_healthy);
        let deadline = now + self.deadlines.start_ms;
        let mut sent = Vec::new();
        for target in &mut self.targets {
            if target.status != TargetStatus::Pending {
                continue;
            }
            if let Some((zone, limit)) = &zone_filter {
                if &target.target.zone != zone {
                    continue;
                }
                if zone_in_progress >= *limit {
                    break;
                }
            }
            if in_progress >= self.plan.batch_size {
                break;
            }
            if target.target.standing.counts_as_healthy() {
                if spare_healthy == 0 {
                    break;
                }
                spare_healthy -= 1;
            }
            target.status = TargetStatus::InProgress;
            target.dispatched_at = Some(now);
            target.deadline = Some(deadline);
            in_progress += 1;
            zone_in_progress += 1;
            sent.push(target.target.instance_id.clone());
        }
        sent
    }

    /// The zone being deployed, with how many of its hosts may run at once; or a wait
    /// while a finished zone is monitored.
    fn current_zone(&mut self, now: Millis, zonal: &ZonalConfig) -> ZoneGate {
        let mut zones: Vec<&Option<String>> = Vec::new();
        for target in &self.targets {
            if !zones.contains(&&target.target.zone) {
                zones.push(&target.target.zone);
            }
        }
        let zone_done = |zone: &Option<String>| {
            self.targets
                .iter()
                .filter(|t| &t.target.zone == zone)
                .all(|t| t.status.is_terminal())
        };
        let Some(index) = zones.iter().position(|zone| !zone_done(zone)) else {
            return ZoneGate::Waiting;
        };
        let zone = zones[index].clone();
        let started = self
            .targets
            .iter()
            .any(|t| t.target.zone == zone && t.status != TargetStatus::Pending);
        if started {
            self.zone_wait_until = None;
        } else if index > 0 {
            // The zone before was just finished: watch it for the monitor duration.
            let until = *self
                .zone_wait_until
                .get_or_insert(now + zonal.monitor_after(index - 1) * 1000);
            if now < until {
                return ZoneGate::Waiting;
            }
        }
        let size = self
            .targets
            .iter()
            .filter(|t| t.target.zone == zone)
            .count() as u32;
        let limit = zonal.zone_batch_size(size);
        ZoneGate::Open(zone, limit)
    }

    fn skip_pending(&mut self) {
        for target in &mut self.targets {
            if target.status == TargetStatus::Pending {
                target.status = TargetStatus::Skipped;
                for record in &mut target.events {
                    record.status = EventStatus::Skipped;
                }
            }
        }
    }

    fn fail_for_health(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        self.skip_pending();
        let counts = self.counts();
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
        if self.rollback_on_failure {
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
        if status == DeploymentStatus::Succeeded {
            effects.push(Effect::RecordLastSuccessful);
        }
        effects.push(Effect::ReleaseLock);
    }

    /// When the next tick matters: the earliest host deadline or the end of a zone wait.
    /// Hosts still deploying after the deployment ended (it failed or was stopped while
    /// they ran) keep their deadlines, so that none is left InProgress forever.
    pub fn next_wakeup(&self) -> Option<Millis> {
        self.targets
            .iter()
            .filter_map(|t| t.deadline)
            .map(|deadline| deadline + 1)
            .chain(self.zone_wait_until)
            .min()
    }
}

enum ZoneGate {
    Open(Option<String>, u32),
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

/// Ends one host's deployment: its notification and its health in the group.
fn finish_target(target: &mut TargetState, status: TargetStatus, effects: &mut Vec<Effect>) {
    let succeeded = status == TargetStatus::Succeeded;
    target.status = status;
    target.deadline = None;
    let instance_id = target.target.instance_id.clone();
    let event = if succeeded {
        NotificationEvent::InstanceSuccess
    } else {
        NotificationEvent::InstanceFailure
    };
    effects.push(notify(event, Some(&instance_id)));
    effects.push(Effect::RecordHealth {
        instance_id,
        healthy: succeeded,
    });
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
                + deadlines.slack_ms
        })
        .max();
    now + running.unwrap_or(deadlines.start_ms)
}

#[cfg(test)]
mod tests;
