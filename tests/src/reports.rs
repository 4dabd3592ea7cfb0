//! Agent reports as the host agent sends them, for tests that play a host.

use gantry_core::lifecycle::{self, LifecycleEvent};
use gantry_core::wire::{Diagnostics, ErrorCode, EventStatus, Report, SCHEMA_VERSION};

/// The report bodies one host sends for an in-place deployment: InProgress, then the
/// outcome, for each event in order; with `fail_at`, that event fails and the host
/// stops there, as the agent does.
pub fn host_reports(
    deployment_id: &str,
    host: &str,
    fail_at: Option<LifecycleEvent>,
) -> Vec<String> {
    event_reports(deployment_id, host, &lifecycle::in_place(false), fail_at)
}

/// The report bodies of one command's `events` (a stretch of a load-balanced host's),
/// as [`host_reports`].
pub fn event_reports(
    deployment_id: &str,
    host: &str,
    events: &[LifecycleEvent],
    fail_at: Option<LifecycleEvent>,
) -> Vec<String> {
    let mut bodies = Vec::new();
    // The host's clock, as the agent stamps its reports.
    let mut clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0);
    for &event in events {
        let failing = fail_at == Some(event);
        let report = |status, end_time, diagnostics| Report {
            schema_version: SCHEMA_VERSION,
            deployment_id: deployment_id.to_owned(),
            instance_id: host.to_owned(),
            lifecycle_event: event,
            status,
            start_time: clock,
            end_time,
            diagnostics,
        };
        bodies.push(report(EventStatus::InProgress, None, None).to_json());
        let diagnostics = if failing {
            Diagnostics {
                error_code: ErrorCode::ScriptFailed,
                script_name: "scripts/validate.sh".into(),
                message: "Script at specified location: scripts/validate.sh run as user root failed with exit code 1".into(),
                log_tail: "curl: (7) Failed to connect\n".into(),
            }
        } else {
            Diagnostics {
                error_code: ErrorCode::Success,
                script_name: String::new(),
                message: String::new(),
                log_tail: String::new(),
            }
        };
        let status = if failing {
            EventStatus::Failed
        } else {
            EventStatus::Succeeded
        };
        bodies.push(report(status, Some(clock + 5), Some(diagnostics)).to_json());
        clock += 10;
        if failing {
            break;
        }
    }
    bodies
}
