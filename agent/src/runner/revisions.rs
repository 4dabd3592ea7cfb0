//! The revisions of a deployment group on this host: the record of its last successful
//! install (which archive, holding which revision), telling revisions apart and naming
//! them, and pruning the group's old deployments.

use super::{Host, write_atomically};
use gantry_core::wire::RevisionLocation;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The archive of the group's last successful install on this host; None before its
/// first.
pub(super) fn last_successful_archive(host: &Host<'_>, group_id: &str) -> Option<PathBuf> {
    let text = fs::read_to_string(host.last_successful_file(group_id)).ok()?;
    Some(PathBuf::from(text.trim()))
}

/// The revision an archive of a successful install holds; when it is not known, why not
/// (an install recorded by an agent from before revisions were recorded, or a damaged
/// record), as the end of a sentence about that install.
pub(super) fn installed_revision(archive: &Path) -> Result<RevisionLocation, String> {
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
pub(super) fn revision_record(archive: &Path) -> PathBuf {
    archive.with_file_name("revision.yml")
}

/// Records the install: first the revision beside its archive (that archive's alone, so
/// a crash between the two writes leaves each record true), then the group's pointer.
pub(super) fn record_last_successful(
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
pub(super) fn same_revision(a: &RevisionLocation, b: &RevisionLocation) -> bool {
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
pub(super) fn describe(revision: &RevisionLocation) -> String {
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
pub(super) fn prune_revisions(host: &Host<'_>, group_id: &str, current: &Path) {
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
