//! One host's part in a deployment ([`TargetState`]): the records of its lifecycle events,
//! its deadline, and what a report, the end of a load balancer step, or silence past its
//! deadline does to it; a stopped instance's part; diagnostics as stored.

use super::{ApplyError, DeploymentStatus, Millis, TrafficOutcome};
use crate::lifecycle::{LifecycleEvent, Performer};
use crate::planner::Target;
use crate::wire::{Diagnostics, ErrorCode, EventStatus, Report};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    pub(super) fn apply_report(
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
    pub(super) fn apply_traffic(
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
    pub(super) fn fail_if_silent(&mut self, now: Millis) -> bool {
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
        let message = if target.sender == crate::identity::Sender::InstanceRole {
            format!(
                "instance {} has no instance profile, so its reports could not be told from those of any role session named for it: it counts as a failed instance. Attach an instance profile (its agent reports with the profile's role), or take it out of the deployment group, and deploy again",
                target.instance_id
            )
        } else {
            format!(
                "instance {} is stopped, so no agent runs on it: it counts as a failed instance, as in CodeDeploy. Start it, or take it out of the deployment group, and deploy again",
                target.instance_id
            )
        };
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

/// What an input did to one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
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
