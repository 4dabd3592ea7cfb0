//! Running an event's hook scripts: within the event's share of CodeDeploy's hour, with
//! the variables CodeDeploy's agent gives every hook, and readable by the user a script
//! runs as.

use super::{Host, agent_failure};
use crate::hooks::{self, ScriptRun};
use gantry_core::appspec::AppSpec;
use gantry_core::lifecycle::LifecycleEvent;
use gantry_core::wire::{Command, Diagnostics, ErrorCode, RevisionLocation};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

pub(super) fn run_scripts(
    host: &Host<'_>,
    command: &Command,
    event: LifecycleEvent,
    spec: &AppSpec,
    revision: &Path,
) -> Result<(), Diagnostics> {
    let env = environment(command, event);
    let log = host.deployment_dir(command).join("logs/scripts.log");
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

/// A script run as another user reads its revision, as with CodeDeploy's agent: the
/// user's group may enter the revision (0750: read and pass, never write), and the
/// agent's directories above it let others pass through (0751) but not list them;
/// nothing else in them is theirs to read. Nothing in the revision is theirs to change
/// either: the unpacker writes no group or world write bits, and any an older agent's
/// unpack left are taken away before the user is let in, since the revision's scripts
/// and appspec run as root later (the next deployment's ApplicationStop).
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
    no_write_but_root(revision).map_err(|error| {
        format!(
            "{}: taking group and world write away before {runas} may read it: {error}",
            revision.display()
        )
    })?;
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

/// Takes group and world write away from everything under `dir` (links are not
/// followed: their own mode means nothing).
fn no_write_but_root(dir: &Path) -> std::io::Result<()> {
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?; // of the entry itself, not a link's target
            if meta.file_type().is_symlink() {
                continue;
            }
            if meta.mode() & 0o022 != 0 {
                fs::set_permissions(
                    entry.path(),
                    fs::Permissions::from_mode(meta.mode() & 0o7755),
                )?;
            }
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}
