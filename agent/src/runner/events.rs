//! Carrying out one lifecycle event the agent performs: DownloadBundle fetches and
//! unpacks the revision, Install copies its files, and every other event runs its hook
//! scripts from the revision it belongs to (this deployment's, the last successful
//! install's, or an earlier install of the same revision).

use super::revisions::{describe, installed_revision, last_successful_archive, same_revision};
use super::scripts::run_scripts;
use super::{Host, RevisionSource, agent_failure};
use crate::install::{self, Install};
use gantry_core::appspec::AppSpec;
use gantry_core::bundle::{self, Limits};
use gantry_core::lifecycle::LifecycleEvent;
use gantry_core::wire::{Command, Diagnostics, RevisionLocation};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub(super) fn run_event(
    host: &Host<'_>,
    command: &Command,
    event: LifecycleEvent,
    spec: &mut Option<AppSpec>,
    source: &dyn RevisionSource,
) -> Result<(), Diagnostics> {
    let deployment_dir = &host.deployment_dir(command);
    let archive = &host.archive_dir(command);
    match event {
        LifecycleEvent::DownloadBundle => {
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
                Ok(previous_spec) => run_scripts(host, command, event, &previous_spec, &previous),
                // The old revision was pruned or damaged: there is nothing it can stop.
                Err(_) => Ok(()),
            }
        }
        event => match this_deployments_spec(spec, archive)? {
            Some(spec) => run_scripts(host, command, event, &spec, archive),
            None => {
                let (installed_spec, installed) = installed_copy(host, command, event)?;
                run_scripts(host, command, event, &installed_spec, &installed)
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
    source.fetch(command, &bundle_file).map_err(agent_failure)?;
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
