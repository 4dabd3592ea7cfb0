//! Carrying out one command: every lifecycle event in order, each reported when it starts
//! and when it ends.
//!
//! The runner is synchronous: hooks are processes and installs are file copies. It
//! reaches the outside world only through two small ports, [`RevisionSource`] (fetch a
//! bundle) and [`ReportSink`] (send a report), so the queue loop can wire it to S3 and
//! SQS and tests can wire it to files.
//!
//! Layout under `root_dir`, as CodeDeploy's agent lays it out:
//! `<group-id>/<deployment-id>/bundle`, `.../deployment-archive` and `.../logs/scripts.log`
//! for each revision (and `.../revision.yml`, naming it, once it installed successfully), and
//! `deployment-instructions/` for the cleanup list, the last successful install and, per
//! deployment, the final reports of its finished commands (so a redelivered command
//! re-sends them and runs nothing again).
//!
//! A deployment may reach a host as several commands, each a contiguous run of its
//! events: behind a load balancer the control plane deregisters the host between
//! BeforeBlockTraffic and AfterBlockTraffic and registers it again between
//! BeforeAllowTraffic and AfterAllowTraffic. Its state here is therefore per event, not
//! per command.
//!
//! This module runs a command's events in order and reports them; `events` carries out
//! one event, `scripts` runs its hooks, `revisions` keeps track of the group's installs
//! here and `records` of each deployment's reports and cancel marker.

mod events;
mod records;
mod revisions;
mod scripts;
#[cfg(test)]
mod tests;

pub use records::{cancel, recover};

use events::run_event;
use gantry_core::appspec::AppSpec;
use gantry_core::lifecycle::{LifecycleEvent, Performer};
use gantry_core::wire::{Command, Diagnostics, ErrorCode, EventStatus, Report, SCHEMA_VERSION};
use records::{append_reports, prune_deployment_records, recorded_reports};
use revisions::{prune_revisions, record_last_successful};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Fetches a command's revision bundle to a local file.
pub trait RevisionSource {
    fn fetch(&self, command: &Command, destination: &Path) -> Result<(), String>;
}

/// Sends reports to the control plane.
pub trait ReportSink {
    /// Sends a report, or queues it to be sent soon: an event's start report need not
    /// leave before the event's work, only before the control plane's deadline for it
    /// matters (see `SqsReports`).
    fn send(&self, report: &Report) -> Result<(), String>;
}

/// Where the agent keeps its state, and how it runs scripts.
pub struct Host<'a> {
    pub instance_id: &'a str,
    pub root_dir: &'a Path,
    pub install_root: &'a Path,
    pub max_revisions: usize,
    pub term_grace: Duration,
    /// Set when the agent is stopping and its grace is over: the running script is
    /// stopped and no further event starts.
    pub abort: &'a AtomicBool,
}

impl Host<'_> {
    fn instructions(&self) -> PathBuf {
        self.root_dir.join("deployment-instructions")
    }

    fn deployment_dir(&self, command: &Command) -> PathBuf {
        self.root_dir
            .join(&command.deployment_group_id)
            .join(&command.deployment_id)
    }

    /// Where the revision is unpacked.
    fn archive_dir(&self, command: &Command) -> PathBuf {
        self.deployment_dir(command).join("deployment-archive")
    }

    /// The final report of every event of the deployment this host finished, one JSON
    /// line each, across all the deployment's commands.
    fn reports_file(&self, deployment_id: &str) -> PathBuf {
        self.instructions()
            .join(format!("{deployment_id}-{}.reports", self.instance_id))
    }

    /// The event in progress, kept so that a restart can report it failed.
    fn running_file(&self, deployment_id: &str) -> PathBuf {
        self.instructions()
            .join(format!("{deployment_id}-{}.running", self.instance_id))
    }

    /// Present once the control plane said the deployment ended (stopped, or failed):
    /// the events not yet started are skipped, in this command and any later one.
    fn cancelled_file(&self, deployment_id: &str) -> PathBuf {
        self.instructions()
            .join(format!("{deployment_id}-{}.cancelled", self.instance_id))
    }

    fn last_successful_file(&self, group_id: &str) -> PathBuf {
        self.instructions()
            .join(format!("{group_id}-last-successful-install"))
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    /// The command was for another host; nothing ran.
    Refused,
    /// The command had run before: its final reports were sent again.
    AlreadyDone,
    /// The deployment ended while the command ran, or before: the events not yet
    /// started were reported Skipped.
    Cancelled,
    /// The command came after its `startBy`, when the control plane had already failed
    /// this host: nothing ran and nothing was reported.
    Expired,
}

/// Runs a command to its end and reports every event. Errors are only failures to
/// report or to record; a failing deployment is an `Outcome`, not an error.
pub fn run(
    host: &Host<'_>,
    command: &Command,
    source: &dyn RevisionSource,
    reports: &dyn ReportSink,
) -> Result<Outcome, String> {
    let span = tracing::info_span!(
        "command",
        deployment_id = %command.deployment_id,
        instance_id = %command.instance_id,
        events = ?command.lifecycle_events
    );
    let _entered = span.enter();
    // The ids name directories and files under root_dir: checked before any path is
    // made of them, whoever built the command (the queue loop parses and checks it too).
    command.validate().map_err(|error| {
        format!("refused the command: {error}; nothing was run, written or reported")
    })?;
    if command.instance_id != host.instance_id {
        // Nothing is reported: a report names its instance, and this host may speak only
        // for itself (the control plane drops reports its sender may not send). The
        // intended host fails by its deadline, and the log says why.
        tracing::error!(
            intended = %command.instance_id,
            this = %host.instance_id,
            "command for another instance reached this one; nothing was run or reported (check queue_prefix and the instance's queue permissions)"
        );
        return Ok(Outcome::Refused);
    }
    crate::private::own_dir(&host.instructions())
        .map_err(|error| format!("creating {}: {error}", host.instructions().display()))?;
    // A command ran before when any of its events has a final report: a run records all
    // its events' reports at once, and recovery records the interrupted one.
    let recorded: Vec<Report> = recorded_reports(host, &command.deployment_id)?
        .into_iter()
        .filter(|report| command.lifecycle_events.contains(&report.lifecycle_event))
        .collect();
    if !recorded.is_empty() {
        for report in &recorded {
            reports.send(report)?;
        }
        return Ok(Outcome::AlreadyDone);
    }

    if command.expired(now_ms()) {
        tracing::warn!(
            start_by = command.start_by,
            "command came after its start deadline: the control plane has failed this host for it; nothing runs"
        );
        return Ok(Outcome::Expired);
    }

    let deployment_dir = host.deployment_dir(command);
    let archive = host.archive_dir(command);
    let mut spec: Option<AppSpec> = None;
    let mut sent: Vec<Report> = Vec::new();
    let mut outcome = Outcome::Succeeded;
    for &event in &command.lifecycle_events {
        if event.performer() == Performer::ControlPlane {
            continue;
        }
        if outcome == Outcome::Cancelled || host.cancelled_file(&command.deployment_id).exists() {
            let now = now_ms();
            let report = Report {
                status: EventStatus::Skipped,
                end_time: Some(now),
                diagnostics: None,
                ..ended(command, event, now, Ok(()))
            };
            reports.send(&report)?;
            sent.push(report);
            outcome = Outcome::Cancelled;
            continue;
        }
        let started = now_ms();
        let mut in_progress = ended(command, event, started, Ok(()));
        in_progress.status = EventStatus::InProgress;
        in_progress.end_time = None;
        in_progress.diagnostics = None;
        write_atomically(
            &host.running_file(&command.deployment_id),
            &in_progress.to_json(),
        )?;
        reports.send(&in_progress)?;

        let result = if host.abort.load(Ordering::SeqCst) {
            Err(agent_failure(format!(
                "{event} did not start: the agent was asked to stop (SIGTERM) and the deployment did not finish within stop_grace_seconds"
            )))
        } else {
            run_event(host, command, event, &mut spec, source)
        };
        let result = match result {
            Err(diagnostics)
                if event == LifecycleEvent::ApplicationStop
                    && command.ignore_application_stop_failures =>
            {
                tracing::warn!(message = %diagnostics.message, "ApplicationStop failed; ignored as the deployment asks");
                Ok(())
            }
            other => other,
        };
        let failed = result.is_err();
        let report = ended(command, event, started, result);
        reports.send(&report)?;
        sent.push(report);
        if failed {
            outcome = Outcome::Failed;
            break;
        }
    }
    // Only the command that installs changes what runs: one with only traffic events
    // (before the new revision is there, or after) leaves the last successful install.
    if outcome == Outcome::Succeeded && command.lifecycle_events.contains(&LifecycleEvent::Install)
    {
        record_last_successful(
            host,
            &command.deployment_group_id,
            &archive,
            &command.revision,
        )?;
    }
    prune_revisions(host, &command.deployment_group_id, &deployment_dir);
    append_reports(host, &command.deployment_id, &sent)?;
    let _ = fs::remove_file(host.running_file(&command.deployment_id));
    // The cancel marker stays: a later command of the deployment runs nothing either.
    prune_deployment_records(host);
    Ok(outcome)
}

fn agent_failure(message: String) -> Diagnostics {
    Diagnostics {
        error_code: ErrorCode::UnknownError,
        script_name: String::new(),
        message,
        log_tail: String::new(),
    }
}

fn ended(
    command: &Command,
    event: LifecycleEvent,
    started: u64,
    result: Result<(), Diagnostics>,
) -> Report {
    let (status, diagnostics) = match result {
        Ok(()) => (
            EventStatus::Succeeded,
            Diagnostics {
                error_code: ErrorCode::Success,
                script_name: String::new(),
                message: "Succeeded".to_owned(),
                log_tail: String::new(),
            },
        ),
        Err(diagnostics) => (EventStatus::Failed, diagnostics),
    };
    Report {
        schema_version: SCHEMA_VERSION,
        deployment_id: command.deployment_id.clone(),
        instance_id: command.instance_id.clone(),
        lifecycle_event: event,
        status,
        start_time: started,
        end_time: Some(now_ms().max(started)),
        diagnostics: Some(diagnostics),
    }
}

fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    crate::private::write_atomically(path, text.as_bytes())
        .map_err(|error| format!("writing {}: {error}", path.display()))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0)
}
