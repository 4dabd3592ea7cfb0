//! What this host keeps of each deployment in `deployment-instructions/`: the final
//! reports of its finished commands, the event in progress and the cancel marker, and
//! what works on them alone: [`cancel`] writes the marker, [`recover`] reports the
//! events a stop interrupted, and old records are pruned.

use super::{Host, ReportSink, now_ms, write_atomically};
use gantry_core::wire::{Cancel, Diagnostics, ErrorCode, EventStatus, Report};
use std::fs;
use std::time::{Duration, SystemTime};

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

/// The final reports this host recorded for a deployment's events, in the order they
/// ended; none when it finished no command of it.
pub(super) fn recorded_reports(
    host: &Host<'_>,
    deployment_id: &str,
) -> Result<Vec<Report>, String> {
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
pub(super) fn append_reports(
    host: &Host<'_>,
    deployment_id: &str,
    ended: &[Report],
) -> Result<(), String> {
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
pub(super) const DEPLOYMENT_RECORDS_KEPT: Duration = Duration::from_secs(14 * 24 * 3600);

/// Removes the records of deployments older than [`DEPLOYMENT_RECORDS_KEPT`], so that
/// those of every past deployment, and the cancel markers of deployments that never came
/// back (stopped after this host finished, or before it started), do not pile up.
pub(super) fn prune_deployment_records(host: &Host<'_>) {
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
/// command is delivered again, [`run`](super::run) re-sends that final report and runs nothing.
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
