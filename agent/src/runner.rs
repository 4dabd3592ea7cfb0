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

use crate::hooks::{self, ScriptRun};
use crate::install::{self, Install};
use gantry_core::appspec::AppSpec;
use gantry_core::bundle::{self, Limits};
use gantry_core::lifecycle::{LifecycleEvent, Performer};
use gantry_core::wire::{
    Cancel, Command, Diagnostics, ErrorCode, EventStatus, Report, RevisionLocation, SCHEMA_VERSION,
};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Fetches a revision's bundle to a local file.
pub trait RevisionSource {
    fn fetch(&self, revision: &RevisionLocation, destination: &Path) -> Result<(), String>;
}

/// Sends reports to the control plane.
pub trait ReportSink {
    /// Sends a report, or queues it to be sent.
    fn send(&self, report: &Report) -> Result<(), String>;
    /// Waits until every report given so far has left.
    fn flush(&self) -> Result<(), String>;
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

/// Notes that a deployment ended, for the command running it (which skips the events it
/// has not started) or one still to come, a later command of a deployment whose earlier
/// command finished included (which runs nothing). A command already finished is not
/// changed: a redelivery of it re-sends its reports.
pub fn cancel(host: &Host<'_>, cancel: &Cancel) -> Result<(), String> {
    if cancel.instance_id != host.instance_id {
        tracing::error!(intended = %cancel.instance_id, this = %host.instance_id, "cancel for another instance ignored");
        return Ok(());
    }
    crate::private::own_dir(&host.instructions())
        .map_err(|error| format!("creating {}: {error}", host.instructions().display()))?;
    tracing::info!(deployment_id = %cancel.deployment_id, "the deployment ended; events not started will be skipped");
    // An empty file needs no atomic write.
    let marker = host.cancelled_file(&cancel.deployment_id);
    crate::private::create(&marker)
        .map_err(|error| format!("writing {}: {error}", marker.display()))?;
    crate::private::sync_parent(&marker);
    Ok(())
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
            run_event(host, command, event, &mut spec, source, reports)
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

/// The final reports this host recorded for a deployment's events, in the order they
/// ended; none when it finished no command of it.
fn recorded_reports(host: &Host<'_>, deployment_id: &str) -> Result<Vec<Report>, String> {
    let path = host.reports_file(deployment_id);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(format!("reading {}: {error}", path.display())),
    };
    text.lines()
        .map(|line| Report::from_json(line).map_err(|error| format!("{}: {error}", path.display())))
        .collect()
}

/// Adds final reports to the deployment's record, rewriting it whole so that a crash
/// leaves the old record or the new one.
fn append_reports(host: &Host<'_>, deployment_id: &str, ended: &[Report]) -> Result<(), String> {
    let path = host.reports_file(deployment_id);
    let mut text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(format!("reading {}: {error}", path.display())),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    for report in ended {
        text.push_str(&report.to_json());
        text.push('\n');
    }
    write_atomically(&path, &text)
}

/// How long a deployment's records (its final reports, its cancel marker) are kept after
/// their last change. SQS keeps a message 14 days at most (the command queues are made
/// with that retention), and no command of a deployment is sent once it ended or after
/// its reports came in, so by then no message can arrive that needs them.
const DEPLOYMENT_RECORDS_KEPT: Duration = Duration::from_secs(14 * 24 * 3600);

/// Removes the records of deployments older than [`DEPLOYMENT_RECORDS_KEPT`], so that
/// those of every past deployment, and the cancel markers of deployments that never came
/// back (stopped after this host finished, or before it started), do not pile up.
fn prune_deployment_records(host: &Host<'_>) {
    let suffixes = [
        format!("-{}.reports", host.instance_id),
        format!("-{}.cancelled", host.instance_id),
    ];
    let Ok(entries) = fs::read_dir(host.instructions()) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !suffixes
            .iter()
            .any(|suffix| name.ends_with(suffix.as_str()))
        {
            continue;
        }
        let Some(modified) = entry.metadata().ok().and_then(|meta| meta.modified().ok()) else {
            continue;
        };
        if now
            .duration_since(modified)
            .is_ok_and(|age| age > DEPLOYMENT_RECORDS_KEPT)
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// After a restart: every command that was running when the agent stopped gets its
/// interrupted event reported as failed (unless its final report was recorded before the
/// stop), so no deployment waits on it. Returns the deployment ids it reported on. When the
/// command is delivered again, [`run`] re-sends that final report and runs nothing.
pub fn recover(host: &Host<'_>, reports: &dyn ReportSink) -> Result<Vec<String>, String> {
    let suffix = format!("-{}.running", host.instance_id);
    let Ok(entries) = fs::read_dir(host.instructions()) else {
        return Ok(Vec::new());
    };
    let mut recovered = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(&suffix) {
            continue;
        }
        let running_file = entry.path();
        let text = fs::read_to_string(&running_file)
            .map_err(|error| format!("reading {name}: {error}"))?;
        let Ok(interrupted) = Report::from_json(&text) else {
            // Unreadable state cannot name a deployment to report on.
            tracing::warn!(file = %name, "ignoring an unreadable running-event record");
            let _ = fs::remove_file(&running_file);
            continue;
        };
        let recorded = recorded_reports(host, &interrupted.deployment_id)?;
        if !recorded
            .iter()
            .any(|report| report.lifecycle_event == interrupted.lifecycle_event)
        {
            let failed = Report {
                status: EventStatus::Failed,
                end_time: Some(now_ms().max(interrupted.start_time)),
                diagnostics: Some(Diagnostics {
                    error_code: ErrorCode::UnknownError,
                    script_name: String::new(),
                    message: format!(
                        "the agent stopped while {} was running (restart or crash); the event did not complete",
                        interrupted.lifecycle_event
                    ),
                    log_tail: String::new(),
                }),
                ..interrupted.clone()
            };
            reports.send(&failed)?;
            append_reports(host, &interrupted.deployment_id, &[failed])?;
            recovered.push(interrupted.deployment_id);
        }
        let _ = fs::remove_file(&running_file);
    }
    Ok(recovered)
}

fn run_event(
    host: &Host<'_>,
    command: &Command,
    event: LifecycleEvent,
    spec: &mut Option<AppSpec>,
    source: &dyn RevisionSource,
    reports: &dyn ReportSink,
) -> Result<(), Diagnostics> {
    let deployment_dir = &host.deployment_dir(command);
    let archive = &host.archive_dir(command);
    match event {
        LifecycleEvent::DownloadBundle => {
            announce_start(reports);
            *spec = Some(download(command, deployment_dir, archive, source)?);
            Ok(())
        }
        LifecycleEvent::Install => {
            let Some(spec) = this_deployments_spec(spec, archive)? else {
                return Err(not_on_this_host(host, command, event, None));
            };
            install::install(&Install {
                spec: &spec,
                revision: archive,
                install_root: host.install_root,
                file_exists_behavior: command.file_exists_behavior,
                cleanup_file: &host
                    .instructions()
                    .join(format!("{}-cleanup", command.deployment_group_id)),
            })
            .map(|_| ())
            .map_err(|error| agent_failure(error.to_string()))
        }
        event if event.uses_last_successful_revision() => {
            // Scripts that stop what runs now come from the revision that runs now.
            let Some(previous) = last_successful_archive(host, &command.deployment_group_id) else {
                return Ok(()); // first deployment to this host: nothing to stop
            };
            match bundle::check_revision_on_host(&previous) {
                Ok(previous_spec) => {
                    run_scripts(host, command, event, &previous_spec, &previous, reports)
                }
                // The old revision was pruned or damaged: there is nothing it can stop.
                Err(_) => Ok(()),
            }
        }
        event => match this_deployments_spec(spec, archive)? {
            Some(spec) => run_scripts(host, command, event, &spec, archive, reports),
            None => {
                let (installed_spec, installed) = installed_copy(host, command, event)?;
                run_scripts(host, command, event, &installed_spec, &installed, reports)
            }
        },
    }
}

/// The appspec of the revision this deployment downloaded here: in this command, or in
/// an earlier one (events split across commands). None when no DownloadBundle of this
/// deployment ran on this host.
fn this_deployments_spec(
    spec: &Option<AppSpec>,
    archive: &Path,
) -> Result<Option<AppSpec>, Diagnostics> {
    if let Some(spec) = spec {
        return Ok(Some(spec.clone()));
    }
    if !archive.exists() {
        return Ok(None);
    }
    bundle::check_revision_on_host(archive)
        .map(Some)
        .map_err(|problems| agent_failure(problems.to_string()))
}

/// For a deployment that did not download its revision here: the group's last
/// successful install on this host, when it is that same revision. A blue/green
/// rollback sends the original instances, which kept the revision an earlier deployment
/// installed, only BeforeAllowTraffic and AfterAllowTraffic of it; their scripts run
/// from that install. Any other revision's bundle is not here, and the event fails.
fn installed_copy(
    host: &Host<'_>,
    command: &Command,
    event: LifecycleEvent,
) -> Result<(AppSpec, PathBuf), Diagnostics> {
    let Some(archive) = last_successful_archive(host, &command.deployment_group_id) else {
        return Err(not_on_this_host(host, command, event, None));
    };
    let installed = installed_revision(&archive)
        .map_err(|why| not_on_this_host(host, command, event, Some(why)))?;
    if !same_revision(&installed, &command.revision) {
        return Err(not_on_this_host(
            host,
            command,
            event,
            Some(format!("is of another revision, {}", describe(&installed))),
        ));
    }
    let spec = bundle::check_revision_on_host(&archive).map_err(|problems| {
        agent_failure(format!(
            "{event} runs the scripts of {}, which an earlier deployment installed here, from {}, which is no longer a valid revision: {problems}",
            describe(&command.revision),
            archive.display()
        ))
    })?;
    tracing::info!(%event, archive = %archive.display(), "an earlier deployment installed this revision here; the event's scripts run from its archive");
    Ok((spec, archive))
}

/// Why an event that needs the deployment's revision cannot run: its bundle is not on
/// this host. `last_install` says what is wrong with the group's last successful install
/// here, when there is one.
fn not_on_this_host(
    host: &Host<'_>,
    command: &Command,
    event: LifecycleEvent,
    last_install: Option<String>,
) -> Diagnostics {
    let group = &command.deployment_group_id;
    let last = match last_install {
        Some(problem) => format!(
            "the last successful install for deployment group {group} on this host {problem}"
        ),
        None => format!("there is no successful install for deployment group {group} on this host"),
    };
    agent_failure(format!(
        "{event} needs the bundle of revision {}, which is not on this host ({}): deployment {} did not download it here (no DownloadBundle of it ran on this host), and {last}",
        describe(&command.revision),
        host.instance_id,
        command.deployment_id,
    ))
}

fn download(
    command: &Command,
    deployment_dir: &Path,
    archive: &Path,
    source: &dyn RevisionSource,
) -> Result<AppSpec, Diagnostics> {
    // A retried command starts from a fresh download; the logs stay.
    let _ = fs::remove_dir_all(archive);
    // Root's alone: a bundle may hold secrets the appspec's permissions protect only
    // once installed.
    for dir in [deployment_dir.parent(), Some(deployment_dir)]
        .into_iter()
        .flatten()
    {
        crate::private::own_dir(dir)
            .map_err(|error| agent_failure(format!("creating {}: {error}", dir.display())))?;
    }
    let bundle_file = deployment_dir.join("bundle");
    source
        .fetch(&command.revision, &bundle_file)
        .map_err(agent_failure)?;
    fs::set_permissions(
        &bundle_file,
        fs::Permissions::from_mode(crate::private::FILE_MODE),
    )
    .map_err(|error| agent_failure(format!("{}: {error}", bundle_file.display())))?;
    let bundle_type = match &command.revision {
        RevisionLocation::S3 { s3_location } => s3_location.bundle_type,
        // GitHub serves tarballs.
        RevisionLocation::GitHub { .. } => bundle::BundleType::Tgz,
    };
    bundle::unpack(&bundle_file, bundle_type, archive, &Limits::default())
        .map_err(|error| agent_failure(error.to_string()))?;
    fs::set_permissions(
        archive,
        fs::Permissions::from_mode(crate::private::DIR_MODE),
    )
    .map_err(|error| agent_failure(format!("{}: {error}", archive.display())))?;
    bundle::check_revision_on_host(archive).map_err(|problems| agent_failure(problems.to_string()))
}

fn run_scripts(
    host: &Host<'_>,
    command: &Command,
    event: LifecycleEvent,
    spec: &AppSpec,
    revision: &Path,
    reports: &dyn ReportSink,
) -> Result<(), Diagnostics> {
    let env = environment(command, event);
    let log = host.deployment_dir(command).join("logs/scripts.log");
    if !spec.scripts(event).is_empty() {
        announce_start(reports);
    }
    // The event's scripts share CodeDeploy's hour: each gets its own timeout or what is
    // left of the event's, whichever ends first.
    let event_deadline =
        std::time::Instant::now() + Duration::from_secs(spec.event_limit_secs(event));
    for script in spec.scripts(event) {
        let Some(relative) = gantry_core::appspec::revision_relative(&script.location) else {
            return Err(agent_failure(format!(
                "{} leaves the revision",
                script.location
            )));
        };
        if let Some(runas) = &script.runas {
            let_in(host.root_dir, revision, runas).map_err(agent_failure)?;
        }
        let left = event_deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            // Not started only to be killed at once.
            return Err(Diagnostics {
                error_code: ErrorCode::ScriptTimedOut,
                script_name: script.location.clone(),
                message: format!(
                    "Script at specified location: {} was not started: the event's scripts used up CodeDeploy's {} s per lifecycle event",
                    script.location,
                    gantry_core::appspec::MAX_EVENT_SCRIPT_SECS
                ),
                log_tail: String::new(),
            });
        }
        let outcome = hooks::run_script(&ScriptRun {
            path: &revision.join(relative),
            script_name: &script.location,
            event: event.name(),
            timeout: Duration::from_secs(script.timeout_secs).min(left),
            term_grace: host.term_grace,
            abort: host.abort,
            runas: script.runas.as_deref(),
            env: &env,
            working_dir: revision,
            log: &log,
        });
        if outcome.error_code != ErrorCode::Success {
            return Err(Diagnostics {
                error_code: outcome.error_code,
                script_name: script.location.clone(),
                message: outcome.message,
                log_tail: outcome.log_tail,
            });
        }
    }
    Ok(())
}

/// The variables CodeDeploy's agent gives every hook.
fn environment(command: &Command, event: LifecycleEvent) -> Vec<(String, String)> {
    let mut env = vec![
        ("LIFECYCLE_EVENT".to_owned(), event.name().to_owned()),
        ("DEPLOYMENT_ID".to_owned(), command.deployment_id.clone()),
        (
            "APPLICATION_NAME".to_owned(),
            command.application_name.clone(),
        ),
        (
            "DEPLOYMENT_GROUP_NAME".to_owned(),
            command.deployment_group_name.clone(),
        ),
        (
            "DEPLOYMENT_GROUP_ID".to_owned(),
            command.deployment_group_id.clone(),
        ),
    ];
    match &command.revision {
        RevisionLocation::S3 { s3_location } => {
            env.push(("BUNDLE_BUCKET".to_owned(), s3_location.bucket.clone()));
            env.push(("BUNDLE_KEY".to_owned(), s3_location.key.clone()));
            env.push((
                "BUNDLE_VERSION".to_owned(),
                s3_location.version.clone().unwrap_or_default(),
            ));
            env.push((
                "BUNDLE_ETAG".to_owned(),
                s3_location.e_tag.clone().unwrap_or_default(),
            ));
        }
        RevisionLocation::GitHub { git_hub_location } => {
            env.push((
                "BUNDLE_COMMIT".to_owned(),
                git_hub_location.commit_id.clone(),
            ));
        }
    }
    env
}

/// Before work that may take long (a download, a script), the event's start report
/// leaves: the control plane's deadlines and anyone watching learn the event started,
/// even if this host dies during it. Not sending it does not fail the event: the
/// command is kept until all its reports are sent.
fn announce_start(reports: &dyn ReportSink) {
    if let Err(error) = reports.flush() {
        tracing::warn!(%error, "the event's start report was not sent; going on");
    }
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

/// The archive of the group's last successful install on this host; None before its
/// first.
fn last_successful_archive(host: &Host<'_>, group_id: &str) -> Option<PathBuf> {
    let text = fs::read_to_string(host.last_successful_file(group_id)).ok()?;
    Some(PathBuf::from(text.trim()))
}

/// The revision an archive of a successful install holds; when it is not known, why not
/// (an install recorded by an agent from before revisions were recorded, or a damaged
/// record), as the end of a sentence about that install.
fn installed_revision(archive: &Path) -> Result<RevisionLocation, String> {
    let record = revision_record(archive);
    match fs::read_to_string(&record) {
        Ok(text) => serde_norway::from_str(&text).map_err(|error| {
            format!(
                "has a damaged record of its revision ({}: {error})",
                record.display()
            )
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Err("has no record of its revision (an older agent installed it)".to_owned())
        }
        Err(error) => Err(format!(
            "has an unreadable record of its revision ({}: {error})",
            record.display()
        )),
    }
}

/// Beside a deployment's archive: which revision it holds (YAML, CodeDeploy's
/// RevisionLocation shape). Written with the last successful install, so that a later
/// deployment of the same revision can use it.
fn revision_record(archive: &Path) -> PathBuf {
    archive.with_file_name("revision.yml")
}

/// Records the install: first the revision beside its archive (that archive's alone, so
/// a crash between the two writes leaves each record true), then the group's pointer.
fn record_last_successful(
    host: &Host<'_>,
    group_id: &str,
    archive: &Path,
    revision: &RevisionLocation,
) -> Result<(), String> {
    let yaml = serde_norway::to_string(revision)
        .map_err(|error| format!("recording the installed revision: {error}"))?;
    write_atomically(&revision_record(archive), &yaml)?;
    write_atomically(
        &host.last_successful_file(group_id),
        &format!("{}\n", archive.display()),
    )
}

/// Whether two locations name the same revision, as the control plane keys revisions
/// (`gantry_functions::adapters::revision_key`): the same S3 object (bucket, key, version
/// and ETag; the bundle type describes it, it does not name it), or the same commit of
/// the same GitHub repository.
fn same_revision(a: &RevisionLocation, b: &RevisionLocation) -> bool {
    match (a, b) {
        (RevisionLocation::S3 { s3_location: a }, RevisionLocation::S3 { s3_location: b }) => {
            a.bucket == b.bucket && a.key == b.key && a.version == b.version && a.e_tag == b.e_tag
        }
        (
            RevisionLocation::GitHub {
                git_hub_location: a,
            },
            RevisionLocation::GitHub {
                git_hub_location: b,
            },
        ) => a.repository == b.repository && a.commit_id == b.commit_id,
        _ => false,
    }
}

/// A revision as a diagnostics message names it.
fn describe(revision: &RevisionLocation) -> String {
    match revision {
        RevisionLocation::S3 { s3_location } => {
            let mut text = format!("s3://{}/{}", s3_location.bucket, s3_location.key);
            if let Some(version) = &s3_location.version {
                text.push_str(&format!(" version {version}"));
            }
            if let Some(e_tag) = &s3_location.e_tag {
                text.push_str(&format!(" ETag {e_tag}"));
            }
            text
        }
        RevisionLocation::GitHub { git_hub_location } => format!(
            "GitHub {} commit {}",
            git_hub_location.repository, git_hub_location.commit_id
        ),
    }
}

/// Keeps `max_revisions` deployments of the group: the current one and the newest
/// others, and always the last successful one, whose scripts the next ApplicationStop runs.
fn prune_revisions(host: &Host<'_>, group_id: &str, current: &Path) {
    let group_dir = host.root_dir.join(group_id);
    let last_successful = last_successful_archive(host, group_id);
    let Ok(entries) = fs::read_dir(&group_dir) else {
        return;
    };
    let mut others: Vec<(SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path() != current)
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
        .collect();
    others.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, dir) in others
        .into_iter()
        .skip(host.max_revisions.saturating_sub(1))
    {
        let is_last_successful = last_successful
            .as_ref()
            .is_some_and(|kept| kept.starts_with(&dir));
        if !is_last_successful {
            let _ = fs::remove_dir_all(&dir);
        }
    }
}

/// A script run as another user reads its revision, as with CodeDeploy's agent: the
/// user's group may enter the revision (0750), and the agent's directories above it let
/// others pass through (0751) but not list them; nothing else in them is theirs to read.
fn let_in(root_dir: &Path, revision: &Path, runas: &str) -> Result<(), String> {
    let Ok(Some(user)) = nix::unistd::User::from_name(runas) else {
        return Ok(()); // the script's run names the unknown user
    };
    let me = nix::unistd::geteuid();
    if user.uid == me || !me.is_root() {
        return Ok(()); // nothing to share, or the script's run says root is needed
    }
    for dir in revision.ancestors().skip(1) {
        if !dir.starts_with(root_dir) {
            break;
        }
        let meta = fs::metadata(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
        if meta.uid() == me.as_raw() && meta.mode() & 0o001 == 0 {
            fs::set_permissions(
                dir,
                fs::Permissions::from_mode(meta.mode() & 0o7777 | 0o001),
            )
            .map_err(|error| format!("{}: {error}", dir.display()))?;
        }
    }
    nix::unistd::chown(revision, None, Some(user.gid)).map_err(|error| {
        format!(
            "{}: giving {runas}'s group the revision: {error}",
            revision.display()
        )
    })?;
    fs::set_permissions(
        revision,
        fs::Permissions::from_mode(crate::private::DIR_MODE),
    )
    .map_err(|error| format!("{}: {error}", revision.display()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::appspec::FileExistsBehavior;
    use gantry_core::bundle::BundleType;
    use gantry_core::lifecycle;
    use gantry_core::wire::{Creator, S3Location};
    use gantry_tests::archive::{self, Entry};
    use std::cell::RefCell;

    /// Serves bundles from a local directory, keyed by S3 key: a real file copy.
    struct LocalBundles(PathBuf);

    impl RevisionSource for LocalBundles {
        fn fetch(&self, revision: &RevisionLocation, destination: &Path) -> Result<(), String> {
            let RevisionLocation::S3 { s3_location } = revision else {
                return Err("only S3 revisions here".to_owned());
            };
            fs::copy(self.0.join(&s3_location.key), destination)
                .map(|_| ())
                .map_err(|error| error.to_string())
        }
    }

    #[derive(Default)]
    struct Collected(RefCell<Vec<Report>>);

    impl ReportSink for Collected {
        fn send(&self, report: &Report) -> Result<(), String> {
            report.validate().map_err(|error| error.to_string())?;
            self.0.borrow_mut().push(report.clone());
            Ok(())
        }

        fn flush(&self) -> Result<(), String> {
            Ok(())
        }
    }

    struct Fixture {
        dir: tempfile::TempDir,
    }

    const APPSPEC: &str = "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/app\nhooks:\n  ApplicationStop:\n    - location: stop.sh\n  AfterInstall:\n    - location: after.sh\n  ValidateService:\n    - location: validate.sh\n";

    impl Fixture {
        fn new() -> Self {
            let fixture = Self {
                dir: tempfile::tempdir().unwrap(),
            };
            fs::create_dir_all(fixture.path("bundles")).unwrap();
            fs::create_dir_all(fixture.path("host")).unwrap();
            fixture
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// A revision whose hooks leave traces in `<dir>/marks`.
        fn bundle(&self, key: &str, version: &str, validate_exit: u8) -> String {
            let marks = self.path("marks");
            let entries = vec![
                Entry::file("appspec.yml", APPSPEC.as_bytes()),
                Entry::file("site/index.html", version.as_bytes()),
                Entry::file_with_mode("stop.sh", format!("#!/bin/sh\necho \"stop {version} for $DEPLOYMENT_ID\" >> {}\n", marks.display()).as_bytes(), 0o755),
                Entry::file_with_mode("after.sh", format!("#!/bin/sh\necho \"after $LIFECYCLE_EVENT $APPLICATION_NAME $BUNDLE_KEY\" >> {}\n", marks.display()).as_bytes(), 0o755),
                Entry::file_with_mode("validate.sh", format!("#!/bin/sh\necho checking {version}\nexit {validate_exit}\n").as_bytes(), 0o755),
            ];
            fs::write(self.path("bundles").join(key), archive::tgz(&entries)).unwrap();
            key.to_owned()
        }

        fn command(&self, deployment_id: &str, key: &str) -> Command {
            Command {
                schema_version: SCHEMA_VERSION,
                deployment_id: deployment_id.to_owned(),
                deployment_group_id: "g-1".to_owned(),
                deployment_group_name: "web".to_owned(),
                application_name: "shop".to_owned(),
                instance_id: "host-1".to_owned(),
                revision: RevisionLocation::S3 {
                    s3_location: S3Location {
                        bucket: "bundles".to_owned(),
                        key: key.to_owned(),
                        bundle_type: BundleType::Tgz,
                        version: None,
                        e_tag: None,
                    },
                },
                lifecycle_events: lifecycle::in_place(false),
                file_exists_behavior: FileExistsBehavior::Disallow,
                ignore_application_stop_failures: false,
                creator: Creator::User,
                start_by: None,
            }
        }

        fn cancel(&self, deployment_id: &str) {
            let host = Host {
                instance_id: "host-1",
                root_dir: &self.path("host/root"),
                install_root: &self.path("host/fs"),
                max_revisions: 5,
                term_grace: Duration::from_millis(200),
                abort: &AtomicBool::new(false),
            };
            let cancel = Cancel {
                deployment_id: deployment_id.to_owned(),
                instance_id: "host-1".to_owned(),
            };
            super::cancel(&host, &cancel).unwrap();
        }

        fn run(&self, command: &Command, max_revisions: usize) -> (Outcome, Vec<Report>) {
            let host = Host {
                instance_id: "host-1",
                root_dir: &self.path("host/root"),
                install_root: &self.path("host/fs"),
                max_revisions,
                term_grace: Duration::from_millis(200),
                abort: &AtomicBool::new(false),
            };
            let sink = Collected::default();
            let outcome = run(&host, command, &LocalBundles(self.path("bundles")), &sink).unwrap();
            (outcome, sink.0.into_inner())
        }

        fn marks(&self) -> String {
            fs::read_to_string(self.path("marks")).unwrap_or_default()
        }

        /// A revision with the same script on every hook a load-balanced in-place
        /// deployment has; each run leaves `<event> <version> <deployment>` in `marks`.
        fn load_balanced_bundle(&self, key: &str, version: &str) -> String {
            let hooks: String = LOAD_BALANCED_HOOKS
                .iter()
                .map(|event| format!("  {event}:\n    - location: hook.sh\n"))
                .collect();
            let appspec = format!(
                "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/app\nhooks:\n{hooks}"
            );
            let hook = format!(
                "#!/bin/sh\necho \"$LIFECYCLE_EVENT {version} $DEPLOYMENT_ID\" >> {}\n",
                self.path("marks").display()
            );
            let entries = vec![
                Entry::file("appspec.yml", appspec.as_bytes()),
                Entry::file("site/index.html", version.as_bytes()),
                Entry::file_with_mode("hook.sh", hook.as_bytes(), 0o755),
            ];
            fs::write(self.path("bundles").join(key), archive::tgz(&entries)).unwrap();
            key.to_owned()
        }

        /// The commands of an in-place deployment behind a load balancer, as the control
        /// plane sends them: the agent's events between BlockTraffic and AllowTraffic.
        fn load_balanced_commands(&self, deployment_id: &str, key: &str) -> [Command; 3] {
            let commands: Vec<Command> = lifecycle::in_place(true)
                .split(|event| event.performer() == Performer::ControlPlane)
                .map(|events| Command {
                    lifecycle_events: events.to_vec(),
                    ..self.command(deployment_id, key)
                })
                .collect();
            commands.try_into().unwrap()
        }

        /// The commands a deployment with `events` sends this host, split where the
        /// control plane acts (BlockTraffic, AllowTraffic).
        fn commands(
            &self,
            deployment_id: &str,
            key: &str,
            events: &[LifecycleEvent],
        ) -> Vec<Command> {
            events
                .split(|event| event.performer() == Performer::ControlPlane)
                .filter(|stretch| !stretch.is_empty())
                .map(|stretch| Command {
                    lifecycle_events: stretch.to_vec(),
                    ..self.command(deployment_id, key)
                })
                .collect()
        }

        /// Leaves things as the agent does when it dies while `event` of `command` runs.
        fn interrupted_during(&self, command: &Command, event: LifecycleEvent) {
            let instructions = self.path("host/root/deployment-instructions");
            fs::create_dir_all(&instructions).unwrap();
            let mut interrupted = ended(command, event, 1_000, Ok(()));
            interrupted.status = EventStatus::InProgress;
            interrupted.end_time = None;
            interrupted.diagnostics = None;
            fs::write(
                instructions.join(format!("{}-host-1.running", command.deployment_id)),
                interrupted.to_json(),
            )
            .unwrap();
        }

        /// What the agent does as it starts: the deployments it reported on, and what it sent.
        fn recover(&self) -> (Vec<String>, Vec<Report>) {
            let host = Host {
                instance_id: "host-1",
                root_dir: &self.path("host/root"),
                install_root: &self.path("host/fs"),
                max_revisions: 5,
                term_grace: Duration::from_millis(200),
                abort: &AtomicBool::new(false),
            };
            let sink = Collected::default();
            let recovered = recover(&host, &sink).unwrap();
            (recovered, sink.0.into_inner())
        }

        /// The archive the last successful install came from.
        fn last_successful(&self) -> PathBuf {
            let file = self.path("host/root/deployment-instructions/g-1-last-successful-install");
            PathBuf::from(fs::read_to_string(file).unwrap().trim())
        }

        fn archive_of(&self, deployment_id: &str) -> PathBuf {
            self.path(&format!("host/root/g-1/{deployment_id}/deployment-archive"))
        }

        /// The final reports recorded for a deployment.
        fn recorded(&self, deployment_id: &str) -> Vec<Report> {
            let file = self.path(&format!(
                "host/root/deployment-instructions/{deployment_id}-host-1.reports"
            ));
            fs::read_to_string(file)
                .unwrap()
                .lines()
                .map(|line| Report::from_json(line).unwrap())
                .collect()
        }
    }

    const LOAD_BALANCED_HOOKS: [LifecycleEvent; 9] = [
        LifecycleEvent::BeforeBlockTraffic,
        LifecycleEvent::AfterBlockTraffic,
        LifecycleEvent::ApplicationStop,
        LifecycleEvent::BeforeInstall,
        LifecycleEvent::AfterInstall,
        LifecycleEvent::ApplicationStart,
        LifecycleEvent::ValidateService,
        LifecycleEvent::BeforeAllowTraffic,
        LifecycleEvent::AfterAllowTraffic,
    ];

    /// What `load_balanced_bundle`'s hooks leave in `marks` when `runs` run, in order.
    fn hook_marks(deployment_id: &str, runs: &[(LifecycleEvent, &str)]) -> String {
        runs.iter()
            .map(|(event, version)| format!("{event} {version} {deployment_id}\n"))
            .collect()
    }

    fn finals(reports: Vec<Report>) -> Vec<Report> {
        reports
            .into_iter()
            .filter(|r| r.status != EventStatus::InProgress)
            .collect()
    }

    /// A first load-balanced deployment of v1 (whose traffic and stop hooks have no
    /// earlier revision to run), then the commands of d-AAAAAAAA2 deploying v2.
    fn after_a_load_balanced_v1(fixture: &Fixture) -> [Command; 3] {
        use LifecycleEvent::*;
        let v1 = fixture.load_balanced_bundle("v1.tgz", "v1");
        for command in fixture.load_balanced_commands("d-AAAAAAAA1", &v1) {
            assert_eq!(fixture.run(&command, 5).0, Outcome::Succeeded);
        }
        assert_eq!(
            fixture.marks(),
            hook_marks(
                "d-AAAAAAAA1",
                &[
                    (BeforeInstall, "v1"),
                    (AfterInstall, "v1"),
                    (ApplicationStart, "v1"),
                    (ValidateService, "v1"),
                    (BeforeAllowTraffic, "v1"),
                    (AfterAllowTraffic, "v1"),
                ]
            )
        );
        assert_eq!(fixture.last_successful(), fixture.archive_of("d-AAAAAAAA1"));
        fs::remove_file(fixture.path("marks")).unwrap();
        let v2 = fixture.load_balanced_bundle("v2.tgz", "v2");
        fixture.load_balanced_commands("d-AAAAAAAA2", &v2)
    }

    fn statuses(reports: &[Report]) -> Vec<(LifecycleEvent, EventStatus)> {
        reports
            .iter()
            .map(|r| (r.lifecycle_event, r.status))
            .collect()
    }

    #[test]
    fn a_cancelled_deployment_skips_the_events_not_started() {
        let fixture = Fixture::new();
        let instructions = fixture.path("host/root/deployment-instructions");
        // AfterInstall's script stands in for the cancel arriving while it runs.
        let entries = vec![
            Entry::file("appspec.yml", APPSPEC.as_bytes()),
            Entry::file("site/index.html", b"v1"),
            Entry::file_with_mode("stop.sh", b"#!/bin/sh\n", 0o755),
            Entry::file_with_mode(
                "after.sh",
                format!(
                    "#!/bin/sh\ntouch {}/d-AAAAAAAA1-host-1.cancelled\n",
                    instructions.display()
                )
                .as_bytes(),
                0o755,
            ),
            Entry::file_with_mode(
                "validate.sh",
                format!(
                    "#!/bin/sh\necho validated >> {}\n",
                    fixture.path("marks").display()
                )
                .as_bytes(),
                0o755,
            ),
        ];
        fs::write(fixture.path("bundles/v1.tgz"), archive::tgz(&entries)).unwrap();
        let command = fixture.command("d-AAAAAAAA1", "v1.tgz");
        let (outcome, reports) = fixture.run(&command, 5);
        assert_eq!(outcome, Outcome::Cancelled);
        let events = lifecycle::in_place(false);
        let after = events
            .iter()
            .position(|&event| event == LifecycleEvent::AfterInstall)
            .unwrap();
        let finals: Vec<(LifecycleEvent, EventStatus)> = statuses(&reports)
            .into_iter()
            .filter(|(_, status)| *status != EventStatus::InProgress)
            .collect();
        let expected: Vec<(LifecycleEvent, EventStatus)> = events
            .iter()
            .enumerate()
            .map(|(index, &event)| {
                let status = if index <= after {
                    EventStatus::Succeeded
                } else {
                    EventStatus::Skipped
                };
                (event, status)
            })
            .collect();
        assert_eq!(
            finals, expected,
            "the event running finishes; the rest are skipped"
        );
        assert_eq!(fixture.marks(), "", "ValidateService never ran");
        assert!(
            instructions.join("d-AAAAAAAA1-host-1.cancelled").exists(),
            "kept: a later command of the deployment runs nothing either"
        );
        assert!(
            !instructions.join("g-1-last-successful-install").exists(),
            "a cut-short install is not the last successful one"
        );
    }

    #[test]
    fn a_command_cancelled_before_it_came_runs_nothing_and_one_past_its_start_by_says_nothing() {
        let fixture = Fixture::new();
        let key = fixture.bundle("v1.tgz", "v1", 0);
        fixture.cancel("d-AAAAAAAA1");
        let (outcome, reports) = fixture.run(&fixture.command("d-AAAAAAAA1", &key), 5);
        assert_eq!(outcome, Outcome::Cancelled);
        assert!(
            reports.iter().all(|r| r.status == EventStatus::Skipped),
            "{reports:?}"
        );
        assert_eq!(reports.len(), 7);
        assert!(!fixture.path("host/fs/srv/app/index.html").exists());

        let mut late = fixture.command("d-AAAAAAAA2", &key);
        late.start_by = Some(now_ms() - 1);
        let (outcome, reports) = fixture.run(&late, 5);
        assert_eq!(outcome, Outcome::Expired);
        assert!(
            reports.is_empty(),
            "the control plane has failed the host already"
        );
        assert!(!fixture.path("host/fs/srv/app/index.html").exists());

        // A cancel for a finished command changes nothing.
        let (outcome, _) = fixture.run(&fixture.command("d-AAAAAAAA3", &key), 5);
        assert_eq!(outcome, Outcome::Succeeded);
        fixture.cancel("d-AAAAAAAA3");
        let (outcome, reports) = fixture.run(&fixture.command("d-AAAAAAAA3", &key), 5);
        assert_eq!(outcome, Outcome::AlreadyDone);
        assert!(reports.iter().all(|r| r.status != EventStatus::Skipped));
    }

    #[test]
    fn a_first_deployment_runs_every_event_and_reports_each_twice() {
        let fixture = Fixture::new();
        let key = fixture.bundle("v1.tgz", "v1", 0);
        let (outcome, reports) = fixture.run(&fixture.command("d-AAAAAAAA1", &key), 5);
        assert_eq!(outcome, Outcome::Succeeded);
        assert_eq!(reports.len(), 14);
        for (pair, event) in reports.chunks(2).zip(lifecycle::in_place(false)) {
            assert_eq!(
                statuses(pair),
                vec![
                    (event, EventStatus::InProgress),
                    (event, EventStatus::Succeeded)
                ]
            );
        }
        assert_eq!(
            fs::read_to_string(fixture.path("host/fs/srv/app/index.html")).unwrap(),
            "v1"
        );
        assert_eq!(
            fixture.marks(),
            "after AfterInstall shop v1.tgz\n",
            "no ApplicationStop on a first deployment"
        );
        let log =
            fs::read_to_string(fixture.path("host/root/g-1/d-AAAAAAAA1/logs/scripts.log")).unwrap();
        assert!(log.contains("checking v1"), "{log}");
        let instructions = fixture.path("host/root/deployment-instructions");
        assert!(!instructions.join("d-AAAAAAAA1-host-1.running").exists());
        assert!(instructions.join("d-AAAAAAAA1-host-1.reports").exists());
    }

    #[test]
    fn application_stop_runs_the_last_successful_revisions_script() {
        let fixture = Fixture::new();
        let v1 = fixture.bundle("v1.tgz", "v1", 0);
        let v2 = fixture.bundle("v2.tgz", "v2", 0);
        fixture.run(&fixture.command("d-AAAAAAAA1", &v1), 5);
        let (outcome, _) = fixture.run(&fixture.command("d-AAAAAAAA2", &v2), 5);
        assert_eq!(outcome, Outcome::Succeeded);
        assert!(
            fixture.marks().contains("stop v1 for d-AAAAAAAA2"),
            "{}",
            fixture.marks()
        );
        assert_eq!(
            fs::read_to_string(fixture.path("host/fs/srv/app/index.html")).unwrap(),
            "v2"
        );
    }

    #[test]
    fn a_failing_hook_ends_the_run_with_its_diagnostics() {
        let fixture = Fixture::new();
        let key = fixture.bundle("bad.tgz", "bad", 7);
        let (outcome, reports) = fixture.run(&fixture.command("d-AAAAAAAA1", &key), 5);
        assert_eq!(outcome, Outcome::Failed);
        let last = reports.last().unwrap();
        assert_eq!(
            (last.lifecycle_event, last.status),
            (LifecycleEvent::ValidateService, EventStatus::Failed)
        );
        let diagnostics = last.diagnostics.as_ref().unwrap();
        assert_eq!(diagnostics.error_code, ErrorCode::ScriptFailed);
        assert_eq!(diagnostics.script_name, "validate.sh");
        assert!(diagnostics.message.contains("exit code 7"));
        assert_eq!(diagnostics.log_tail, "checking bad\n");
        assert!(
            !fixture
                .path("host/root/deployment-instructions/g-1-last-successful-install")
                .exists()
        );
    }

    #[test]
    fn a_redelivered_command_resends_its_final_reports_and_runs_nothing() {
        let fixture = Fixture::new();
        let key = fixture.bundle("v1.tgz", "v1", 0);
        let command = fixture.command("d-AAAAAAAA1", &key);
        let (_, first) = fixture.run(&command, 5);
        let marks = fixture.marks();
        let (outcome, again) = fixture.run(&command, 5);
        assert_eq!(outcome, Outcome::AlreadyDone);
        let finals: Vec<Report> = first
            .into_iter()
            .filter(|r| r.status != EventStatus::InProgress)
            .collect();
        assert_eq!(again, finals);
        assert_eq!(fixture.marks(), marks, "no hook ran again");
    }

    #[test]
    fn a_command_for_another_host_is_refused_and_not_reported() {
        let fixture = Fixture::new();
        let key = fixture.bundle("v1.tgz", "v1", 0);
        let mut command = fixture.command("d-AAAAAAAA1", &key);
        command.instance_id = "host-2".to_owned();
        let (outcome, reports) = fixture.run(&command, 5);
        assert_eq!(outcome, Outcome::Refused);
        assert_eq!(
            reports,
            Vec::new(),
            "no report under another instance's name"
        );
        assert!(
            !fixture.path("host/root/g-1").exists(),
            "nothing was downloaded"
        );
    }

    #[test]
    fn ignored_application_stop_failures_let_the_deployment_go_on() {
        let fixture = Fixture::new();
        let v1 = fixture.bundle("v1.tgz", "v1", 0);
        fixture.run(&fixture.command("d-AAAAAAAA1", &v1), 5);
        // Break the installed revision's stop script.
        let archive = fixture.path("host/root/g-1/d-AAAAAAAA1/deployment-archive");
        fs::write(archive.join("stop.sh"), "#!/bin/sh\nexit 1\n").unwrap();
        let v2 = fixture.bundle("v2.tgz", "v2", 0);
        let (outcome, _) = fixture.run(&fixture.command("d-AAAAAAAA2", &v2), 5);
        assert_eq!(outcome, Outcome::Failed);
        let mut command = fixture.command("d-AAAAAAAA3", &v2);
        command.ignore_application_stop_failures = true;
        let (outcome, reports) = fixture.run(&command, 5);
        assert_eq!(outcome, Outcome::Succeeded);
        assert_eq!(reports[1].status, EventStatus::Succeeded);
    }

    #[test]
    fn a_restart_reports_the_interrupted_event_failed_once() {
        let fixture = Fixture::new();
        let key = fixture.bundle("v1.tgz", "v1", 0);
        let command = fixture.command("d-AAAAAAAA1", &key);
        fixture.interrupted_during(&command, LifecycleEvent::AfterInstall);
        let (recovered, sent) = fixture.recover();
        assert_eq!(recovered, vec!["d-AAAAAAAA1".to_owned()]);
        assert_eq!(
            statuses(&sent),
            vec![(LifecycleEvent::AfterInstall, EventStatus::Failed)]
        );
        assert!(
            sent[0]
                .diagnostics
                .as_ref()
                .unwrap()
                .message
                .contains("agent stopped")
        );
        assert_eq!(fixture.recover(), (Vec::new(), Vec::new()), "reported once");

        // The redelivered command re-sends that final report and runs nothing.
        let (outcome, resent) = fixture.run(&command, 5);
        assert_eq!(outcome, Outcome::AlreadyDone);
        assert_eq!(resent, sent);
        assert_eq!(fixture.marks(), "");
    }

    #[test]
    fn old_revisions_are_pruned_but_the_last_successful_is_kept() {
        let fixture = Fixture::new();
        let good = fixture.bundle("good.tgz", "good", 0);
        let bad = fixture.bundle("bad.tgz", "bad", 1);
        fixture.run(&fixture.command("d-AAAAAAAA1", &good), 1);
        fixture.run(&fixture.command("d-AAAAAAAA2", &bad), 1);
        fixture.run(&fixture.command("d-AAAAAAAA3", &bad), 1);
        let group = fixture.path("host/root/g-1");
        assert!(
            group.join("d-AAAAAAAA1").exists(),
            "the last successful revision stays"
        );
        assert!(
            !group.join("d-AAAAAAAA2").exists(),
            "older failed revisions go"
        );
        assert!(group.join("d-AAAAAAAA3").exists());
    }

    #[test]
    fn a_load_balanced_deployment_runs_each_hook_once_across_its_three_commands() {
        use LifecycleEvent::*;
        let fixture = Fixture::new();
        let [block, install, allow] = after_a_load_balanced_v1(&fixture);
        assert_eq!(block.lifecycle_events, vec![BeforeBlockTraffic]);
        assert_eq!(
            install.lifecycle_events,
            vec![
                AfterBlockTraffic,
                ApplicationStop,
                DownloadBundle,
                BeforeInstall,
                Install,
                AfterInstall,
                ApplicationStart,
                ValidateService,
                BeforeAllowTraffic
            ]
        );
        assert_eq!(allow.lifecycle_events, vec![AfterAllowTraffic]);

        let (outcome, block_reports) = fixture.run(&block, 5);
        assert_eq!(outcome, Outcome::Succeeded);
        assert_eq!(
            statuses(&block_reports),
            vec![
                (BeforeBlockTraffic, EventStatus::InProgress),
                (BeforeBlockTraffic, EventStatus::Succeeded)
            ]
        );
        let mut runs = vec![(BeforeBlockTraffic, "v1")];
        assert_eq!(fixture.marks(), hook_marks("d-AAAAAAAA2", &runs));
        assert_eq!(
            fixture.last_successful(),
            fixture.archive_of("d-AAAAAAAA1"),
            "v2 is not even downloaded yet"
        );

        let (outcome, install_reports) = fixture.run(&install, 5);
        assert_eq!(outcome, Outcome::Succeeded);
        let install_finals = finals(install_reports);
        assert_eq!(
            statuses(&install_finals),
            install
                .lifecycle_events
                .iter()
                .map(|&event| (event, EventStatus::Succeeded))
                .collect::<Vec<_>>()
        );
        runs.extend([
            (AfterBlockTraffic, "v1"),
            (ApplicationStop, "v1"),
            (BeforeInstall, "v2"),
            (AfterInstall, "v2"),
            (ApplicationStart, "v2"),
            (ValidateService, "v2"),
            (BeforeAllowTraffic, "v2"),
        ]);
        assert_eq!(fixture.marks(), hook_marks("d-AAAAAAAA2", &runs));
        assert_eq!(
            fs::read_to_string(fixture.path("host/fs/srv/app/index.html")).unwrap(),
            "v2"
        );
        assert_eq!(fixture.last_successful(), fixture.archive_of("d-AAAAAAAA2"));

        // Redeliveries of either finished command re-send their own reports only.
        let (outcome, again) = fixture.run(&install, 5);
        assert_eq!(outcome, Outcome::AlreadyDone);
        assert_eq!(again, install_finals);
        let (outcome, again) = fixture.run(&block, 5);
        assert_eq!(outcome, Outcome::AlreadyDone);
        assert_eq!(again, finals(block_reports));
        assert_eq!(fixture.marks(), hook_marks("d-AAAAAAAA2", &runs));

        let (outcome, _) = fixture.run(&allow, 5);
        assert_eq!(outcome, Outcome::Succeeded);
        runs.push((AfterAllowTraffic, "v2"));
        assert_eq!(fixture.marks(), hook_marks("d-AAAAAAAA2", &runs));
        assert_eq!(fixture.last_successful(), fixture.archive_of("d-AAAAAAAA2"));
        assert_eq!(
            statuses(&fixture.recorded("d-AAAAAAAA2")),
            [
                block.lifecycle_events,
                install.lifecycle_events,
                allow.lifecycle_events
            ]
            .concat()
            .into_iter()
            .map(|event| (event, EventStatus::Succeeded))
            .collect::<Vec<_>>(),
            "one record across the deployment's commands"
        );
    }

    #[test]
    fn a_restart_during_the_install_command_fails_the_interrupted_event_once() {
        use LifecycleEvent::*;
        let fixture = Fixture::new();
        let [block, install, _] = after_a_load_balanced_v1(&fixture);
        assert_eq!(fixture.run(&block, 5).0, Outcome::Succeeded);
        fixture.interrupted_during(&install, AfterInstall);

        let (recovered, sent) = fixture.recover();
        assert_eq!(recovered, vec!["d-AAAAAAAA2".to_owned()]);
        assert_eq!(
            statuses(&sent),
            vec![(AfterInstall, EventStatus::Failed)],
            "the first command's record does not hide the interrupted event"
        );
        assert_eq!(fixture.recover(), (Vec::new(), Vec::new()), "reported once");

        let (outcome, resent) = fixture.run(&install, 5);
        assert_eq!(outcome, Outcome::AlreadyDone);
        assert_eq!(resent, sent);
        assert_eq!(
            fixture.marks(),
            hook_marks("d-AAAAAAAA2", &[(BeforeBlockTraffic, "v1")]),
            "nothing ran again"
        );
        assert_eq!(fixture.last_successful(), fixture.archive_of("d-AAAAAAAA1"));
        assert_eq!(
            statuses(&fixture.recorded("d-AAAAAAAA2")),
            vec![
                (BeforeBlockTraffic, EventStatus::Succeeded),
                (AfterInstall, EventStatus::Failed)
            ]
        );

        // Stopped after an event's report was recorded but before its running record
        // went: that event is not reported again.
        fixture.interrupted_during(&block, BeforeBlockTraffic);
        assert_eq!(fixture.recover(), (Vec::new(), Vec::new()));
        assert!(
            !fixture
                .path("host/root/deployment-instructions/d-AAAAAAAA2-host-1.running")
                .exists()
        );
        assert_eq!(fixture.recorded("d-AAAAAAAA2").len(), 2);
    }

    #[test]
    fn a_cancel_after_the_first_command_skips_every_event_of_the_later_ones() {
        use LifecycleEvent::*;
        let fixture = Fixture::new();
        let [block, install, allow] = after_a_load_balanced_v1(&fixture);
        assert_eq!(fixture.run(&block, 5).0, Outcome::Succeeded);
        fixture.cancel("d-AAAAAAAA2");

        let (outcome, reports) = fixture.run(&install, 5);
        assert_eq!(outcome, Outcome::Cancelled);
        assert_eq!(
            statuses(&reports),
            install
                .lifecycle_events
                .iter()
                .map(|&event| (event, EventStatus::Skipped))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            fixture.marks(),
            hook_marks("d-AAAAAAAA2", &[(BeforeBlockTraffic, "v1")]),
            "no hook ran"
        );
        assert_eq!(
            fs::read_to_string(fixture.path("host/fs/srv/app/index.html")).unwrap(),
            "v1"
        );
        assert!(!fixture.archive_of("d-AAAAAAAA2").exists());
        assert_eq!(fixture.last_successful(), fixture.archive_of("d-AAAAAAAA1"));

        let (outcome, again) = fixture.run(&install, 5);
        assert_eq!(outcome, Outcome::AlreadyDone);
        assert_eq!(again, reports);
        let (outcome, reports) = fixture.run(&allow, 5);
        assert_eq!(outcome, Outcome::Cancelled);
        assert_eq!(
            statuses(&reports),
            vec![(AfterAllowTraffic, EventStatus::Skipped)]
        );
    }

    #[test]
    fn records_of_deployments_past_the_queues_retention_are_pruned() {
        let fixture = Fixture::new();
        let key = fixture.bundle("v1.tgz", "v1", 0);
        fixture.run(&fixture.command("d-AAAAAAAA1", &key), 5);
        fixture.cancel("d-AAAAAAAA8");
        fixture.cancel("d-AAAAAAAA9");
        let instructions = fixture.path("host/root/deployment-instructions");
        let long_ago = SystemTime::now() - DEPLOYMENT_RECORDS_KEPT - Duration::from_secs(60);
        for old in ["d-AAAAAAAA1-host-1.reports", "d-AAAAAAAA8-host-1.cancelled"] {
            fs::File::options()
                .write(true)
                .open(instructions.join(old))
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }

        fixture.run(&fixture.command("d-AAAAAAAA2", &key), 5);
        assert!(!instructions.join("d-AAAAAAAA1-host-1.reports").exists());
        assert!(!instructions.join("d-AAAAAAAA8-host-1.cancelled").exists());
        for kept in [
            "d-AAAAAAAA2-host-1.reports",
            "d-AAAAAAAA9-host-1.cancelled",
            "g-1-last-successful-install",
            "g-1-cleanup",
        ] {
            assert!(instructions.join(kept).exists(), "{kept}");
        }
    }

    /// What a blue/green rollback sends an original instance, which still runs the
    /// revision an earlier deployment installed: that revision's BeforeAllowTraffic and
    /// AfterAllowTraffic, with no DownloadBundle.
    #[test]
    fn a_blue_green_rollback_runs_the_installed_revisions_traffic_hooks_without_downloading_it() {
        use LifecycleEvent::*;
        let fixture = Fixture::new();
        after_a_load_balanced_v1(&fixture);
        let v1 = "v1.tgz";
        // The blue/green deployment of v2: this original instance is blocked with the
        // running revision's scripts, and never gets v2.
        for command in fixture.commands("d-AAAAAAAA2", "v2.tgz", &lifecycle::blue_green_original())
        {
            assert_eq!(fixture.run(&command, 5).0, Outcome::Succeeded);
        }
        // Its rollback gives the instance traffic back: the revision is v1, installed
        // by d-AAAAAAAA1.
        let rollback = fixture.commands(
            "d-AAAAAAAA3",
            v1,
            &lifecycle::blue_green_rollback_original(),
        );
        assert_eq!(rollback.len(), 2);
        let mut sent = Vec::new();
        for command in &rollback {
            let (outcome, reports) = fixture.run(command, 5);
            assert_eq!(outcome, Outcome::Succeeded, "{reports:?}");
            sent.extend(finals(reports));
        }
        assert_eq!(
            statuses(&sent),
            vec![
                (BeforeAllowTraffic, EventStatus::Succeeded),
                (AfterAllowTraffic, EventStatus::Succeeded)
            ]
        );
        assert_eq!(
            fixture.marks(),
            [
                hook_marks(
                    "d-AAAAAAAA2",
                    &[(BeforeBlockTraffic, "v1"), (AfterBlockTraffic, "v1")]
                ),
                hook_marks(
                    "d-AAAAAAAA3",
                    &[(BeforeAllowTraffic, "v1"), (AfterAllowTraffic, "v1")]
                ),
            ]
            .concat(),
            "v1's scripts, from d-AAAAAAAA1's archive"
        );
        assert!(
            !fixture.archive_of("d-AAAAAAAA3").exists(),
            "nothing downloaded"
        );
        assert!(
            !fixture.path("host/root/g-1/d-AAAAAAAA3/bundle").exists(),
            "nothing downloaded"
        );
        assert_eq!(fixture.last_successful(), fixture.archive_of("d-AAAAAAAA1"));
        assert_eq!(
            fs::read_to_string(fixture.path("host/fs/srv/app/index.html")).unwrap(),
            "v1"
        );

        // Redelivered, the commands re-send their reports and run nothing.
        let marks = fixture.marks();
        for command in &rollback {
            assert_eq!(fixture.run(command, 5).0, Outcome::AlreadyDone);
        }
        assert_eq!(fixture.marks(), marks);
    }

    /// An event that needs the deployment's revision, on a host where no DownloadBundle of
    /// it ran and the last successful install is not that revision (or none, or one whose
    /// revision is not known), fails saying so; no script runs.
    #[test]
    fn an_event_whose_revision_is_not_on_this_host_fails_saying_why() {
        use LifecycleEvent::*;
        let fixture = Fixture::new();
        let v1 = fixture.load_balanced_bundle("v1.tgz", "v1");
        let fails = |command: &Command, expected: &[&str]| {
            let (outcome, reports) = fixture.run(command, 5);
            assert_eq!(outcome, Outcome::Failed);
            let last = reports.last().unwrap();
            assert_eq!(
                (last.lifecycle_event, last.status),
                (command.lifecycle_events[0], EventStatus::Failed),
                "{reports:?}"
            );
            let diagnostics = last.diagnostics.as_ref().unwrap();
            assert_eq!(diagnostics.error_code, ErrorCode::UnknownError);
            for part in expected {
                assert!(
                    diagnostics.message.contains(part),
                    "{part:?} not in {:?}",
                    diagnostics.message
                );
            }
            assert_eq!(
                statuses(&finals(reports)).len(),
                1,
                "the command stops there"
            );
        };
        let events = |events: &[LifecycleEvent], id: &str, key: &str| Command {
            lifecycle_events: events.to_vec(),
            ..fixture.command(id, key)
        };

        // Nothing installed here yet.
        fails(
            &events(&[BeforeAllowTraffic], "d-AAAAAAAA1", &v1),
            &[
                "BeforeAllowTraffic needs the bundle of revision s3://bundles/v1.tgz",
                "not on this host (host-1)",
                "deployment d-AAAAAAAA1 did not download it here",
                "there is no successful install for deployment group g-1 on this host",
            ],
        );

        for command in fixture.load_balanced_commands("d-AAAAAAAA2", &v1) {
            assert_eq!(fixture.run(&command, 5).0, Outcome::Succeeded);
        }
        fs::remove_file(fixture.path("marks")).unwrap();
        let v2 = fixture.load_balanced_bundle("v2.tgz", "v2");
        // Another revision is installed.
        for (n, event) in [
            BeforeAllowTraffic,
            AfterAllowTraffic,
            ValidateService,
            AfterInstall,
        ]
        .into_iter()
        .enumerate()
        {
            fails(
                &events(&[event], &format!("d-AAAAAAAC{n}"), &v2),
                &[
                    &format!("{event} needs the bundle of revision s3://bundles/v2.tgz"),
                    "the last successful install for deployment group g-1 on this host is of another revision, s3://bundles/v1.tgz",
                ],
            );
        }
        // The same key, another object.
        let mut other_object = events(&[BeforeAllowTraffic], "d-AAAAAAAB1", &v1);
        let RevisionLocation::S3 { s3_location } = &mut other_object.revision else {
            unreachable!()
        };
        s3_location.e_tag = Some("\"0123\"".to_owned());
        fails(
            &other_object,
            &[
                "revision s3://bundles/v1.tgz ETag \"0123\"",
                "is of another revision, s3://bundles/v1.tgz",
            ],
        );
        // Install, too, needs this deployment's own download.
        fails(
            &events(&[Install, AfterInstall], "d-AAAAAAAB2", &v1),
            &["Install needs the bundle of revision s3://bundles/v1.tgz"],
        );
        // An install recorded before revisions were.
        fs::remove_file(fixture.path("host/root/g-1/d-AAAAAAAA2/revision.yml")).unwrap();
        fails(
            &events(&[AfterAllowTraffic], "d-AAAAAAAB3", &v1),
            &["has no record of its revision (an older agent installed it)"],
        );
        assert_eq!(fixture.marks(), "", "no script ran");
        assert_eq!(fixture.last_successful(), fixture.archive_of("d-AAAAAAAA2"));
    }

    #[test]
    fn revisions_are_the_same_when_they_name_the_same_object_or_commit() {
        use gantry_core::wire::GitHubLocation;
        let s3 = |key: &str, bundle_type, version: Option<&str>, e_tag: Option<&str>| {
            RevisionLocation::S3 {
                s3_location: S3Location {
                    bucket: "bundles".to_owned(),
                    key: key.to_owned(),
                    bundle_type,
                    version: version.map(str::to_owned),
                    e_tag: e_tag.map(str::to_owned),
                },
            }
        };
        let github = |repository: &str, commit: &str| RevisionLocation::GitHub {
            git_hub_location: GitHubLocation {
                repository: repository.to_owned(),
                commit_id: commit.to_owned(),
            },
        };
        let pinned = s3("a.tgz", BundleType::Tgz, Some("v1"), Some("\"e1\""));
        assert!(same_revision(&pinned, &pinned.clone()));
        assert!(same_revision(
            &pinned,
            &s3("a.tgz", BundleType::Tar, Some("v1"), Some("\"e1\""))
        ));
        for other in [
            s3("b.tgz", BundleType::Tgz, Some("v1"), Some("\"e1\"")),
            s3("a.tgz", BundleType::Tgz, Some("v2"), Some("\"e1\"")),
            s3("a.tgz", BundleType::Tgz, Some("v1"), Some("\"e2\"")),
            s3("a.tgz", BundleType::Tgz, None, Some("\"e1\"")),
            s3("a.tgz", BundleType::Tgz, Some("v1"), None),
            github("o/a", "0123456789abcdef"),
        ] {
            assert!(!same_revision(&pinned, &other), "{other:?}");
            assert!(!same_revision(&other, &pinned), "{other:?}");
        }
        let commit = github("o/a", "0123456789abcdef");
        assert!(same_revision(&commit, &github("o/a", "0123456789abcdef")));
        assert!(!same_revision(&commit, &github("o/b", "0123456789abcdef")));
        assert!(!same_revision(&commit, &github("o/a", "fedcba9876543210")));

        // The record beside an archive reads back as written.
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("deployment-archive");
        for revision in [pinned, commit] {
            let yaml = serde_norway::to_string(&revision).unwrap();
            fs::write(revision_record(&archive), yaml).unwrap();
            assert_eq!(installed_revision(&archive), Ok(revision));
        }
        fs::write(revision_record(&archive), "revisionType: Zip\n").unwrap();
        assert!(
            installed_revision(&archive)
                .unwrap_err()
                .starts_with("has a damaged record of its revision")
        );
    }
}
