//! The Install event: copy the revision's `files`, apply `permissions`, and remember what
//! was installed so that the next deployment removes it first.
//!
//! Every destination is resolved under the agent's `install_root` (`/` on a real host),
//! and none may climb out of it. The list of installed paths is kept, one per line, in
//! `<root>/deployment-instructions/<group-id>-cleanup`, as CodeDeploy's agent keeps it.
//!
//! The agent runs as root, and neither the appspec's author nor the application's user
//! (who owns files under the destination) may make it change anything but what the
//! revision installs:
//! - every path is reached through [`beneath`]: a symbolic link root did not make is
//!   never followed, when installing, applying permissions or cleaning up;
//! - `permissions` apply to what this deployment installed (as CodeDeploy's agent), and
//!   act on an opened file (`fchown`, `fchmod`), never through a link;
//! - OVERWRITE replaces a directory only when Gantry installed it;
//! - the cleanup list is a journal: each path is written to it before it is created, so
//!   an agent killed during Install leaves nothing the next deployment does not remove.

use crate::beneath::{Dir, Refused};
use gantry_core::appspec::{
    AppSpec, FileExistsBehavior, ObjectType, Permission, revision_relative,
};
use globset::{Glob, GlobMatcher};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

pub struct Install<'a> {
    pub spec: &'a AppSpec,
    /// The unpacked revision.
    pub revision: &'a Path,
    pub install_root: &'a Path,
    /// The deployment's behavior; the appspec's `file_exists_behavior` wins when set.
    pub file_exists_behavior: FileExistsBehavior,
    pub cleanup_file: &'a Path,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(
        "{field}: {path} already exists on the host and was not installed by the previous deployment; file_exists_behavior is DISALLOW (use OVERWRITE or RETAIN to allow it)"
    )]
    FileExists { field: String, path: PathBuf },
    #[error(
        "{field}: {path} is a directory Gantry did not install; OVERWRITE replaces files and directories a previous deployment installed, never other directories (remove it, or install elsewhere)"
    )]
    ForeignDirectory { field: String, path: PathBuf },
    #[error("{field}: {source}")]
    Refused {
        field: String,
        #[source]
        source: Refused,
    },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> InstallError {
    let context = context.into();
    move |source| InstallError::Io { context, source }
}

fn errno_error(context: impl Into<String>) -> impl FnOnce(Errno) -> InstallError {
    let context = context.into();
    move |errno| InstallError::Io {
        context,
        source: errno.into(),
    }
}

fn refused(field: &str) -> impl FnOnce(Refused) -> InstallError {
    let field = field.to_owned();
    move |source| InstallError::Refused { field, source }
}

/// What an install wrote, in the order it wrote it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Installed {
    pub paths: Vec<PathBuf>,
}

/// Removes what the previous install recorded, then installs this revision.
pub fn install(install: &Install<'_>) -> Result<Installed, InstallError> {
    fs::create_dir_all(install.install_root).map_err(io_error(format!(
        "install_root: creating {}",
        install.install_root.display()
    )))?;
    let root = Dir::open(install.install_root).map_err(refused("install_root"))?;
    let previous = remove_previous(install.cleanup_file, &root)?;
    let behavior = install
        .spec
        .file_exists_behavior
        .unwrap_or(install.file_exists_behavior);
    let mut journal = Journal::start(install.cleanup_file)?;
    // Record progress even when a later entry fails, so the next deployment cleans up.
    let result = (|| {
        for (index, mapping) in install.spec.files.iter().enumerate() {
            let field = format!("files[{index}]");
            let source_relative =
                revision_relative(&mapping.source).ok_or_else(|| InstallError::Invalid {
                    field: format!("{field}.source"),
                    message: "leaves the revision".to_owned(),
                })?;
            let source = install.revision.join(source_relative);
            let destination = host_relative(&mapping.destination, &format!("{field}.destination"))?;
            let meta = fs::symlink_metadata(&source)
                .map_err(io_error(format!("{field}.source: {}", mapping.source)))?;
            let mut copy = Copy {
                behavior,
                field: &field,
                previous: &previous,
                journal: &mut journal,
            };
            let dir = copy.make_dirs(&root, &destination)?;
            if meta.is_dir() {
                copy.tree(&source, &dir)?;
            } else {
                let name = source.file_name().ok_or_else(|| InstallError::Invalid {
                    field: format!("{field}.source"),
                    message: "names no file".to_owned(),
                })?;
                copy.entry(&source, &dir, name)?;
            }
        }
        for (index, permission) in install.spec.permissions.iter().enumerate() {
            apply_permission(
                permission,
                &root,
                &journal.paths,
                &format!("permissions[{index}]"),
            )?;
        }
        Ok(())
    })();
    let paths = journal.finish()?;
    result.map(|()| Installed { paths })
}

/// An absolute appspec path as plain components under the install root, refusing `..`
/// that climbs out of it.
fn host_relative(path: &str, field: &str) -> Result<PathBuf, InstallError> {
    let mut resolved = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::Normal(part) => resolved.push(part),
            Component::ParentDir => {
                if !resolved.pop() {
                    return Err(InstallError::Invalid {
                        field: field.to_owned(),
                        message: format!("{path:?} climbs above the root"),
                    });
                }
            }
        }
    }
    Ok(resolved)
}

/// The cleanup list, written as the install goes: a path is appended before it is
/// created, so an agent killed at any point leaves a list naming everything it made
/// (and perhaps one path it did not make, which cleanup skips). Lines are written whole,
/// each with one `write`; the list is synced every [`Journal::SYNC_EVERY`] paths and
/// rewritten in full (then synced and renamed into place) when the install ends.
struct Journal {
    file: fs::File,
    cleanup_file: PathBuf,
    paths: Vec<PathBuf>,
    unsynced: usize,
}

impl Journal {
    const SYNC_EVERY: usize = 256;

    /// Replaces the previous list (already cleaned up) with an empty one.
    fn start(cleanup_file: &Path) -> Result<Self, InstallError> {
        let partial = cleanup_file.with_extension("partial");
        let file = crate::private::create(&partial)
            .map_err(io_error(format!("writing {}", partial.display())))?;
        fs::rename(&partial, cleanup_file)
            .map_err(io_error(format!("writing {}", cleanup_file.display())))?;
        crate::private::sync_parent(cleanup_file);
        Ok(Self {
            file,
            cleanup_file: cleanup_file.to_owned(),
            paths: Vec::new(),
            unsynced: 0,
        })
    }

    /// Records a path the install is about to create.
    fn will_create(&mut self, path: PathBuf, field: &str) -> Result<(), InstallError> {
        if path.as_os_str().as_bytes().contains(&b'\n') {
            return Err(InstallError::Invalid {
                field: field.to_owned(),
                message: format!(
                    "{path:?} has a line break in its name, which the cleanup list cannot hold; rename it in the revision"
                ),
            });
        }
        let mut line = path.as_os_str().as_bytes().to_vec();
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(io_error(format!("writing {}", self.cleanup_file.display())))?;
        self.paths.push(path);
        self.unsynced += 1;
        if self.unsynced >= Self::SYNC_EVERY {
            self.unsynced = 0;
            self.file
                .sync_data()
                .map_err(io_error(format!("writing {}", self.cleanup_file.display())))?;
        }
        Ok(())
    }

    /// The last recorded path was not created after all.
    fn not_created(&mut self) {
        self.paths.pop();
    }

    /// Writes the list of what was created, whole, in place of the journal.
    fn finish(self) -> Result<Vec<PathBuf>, InstallError> {
        let mut text = Vec::new();
        for path in &self.paths {
            text.extend_from_slice(path.as_os_str().as_bytes());
            text.push(b'\n');
        }
        // Write then rename, so a crash never leaves half a list.
        let partial = self.cleanup_file.with_extension("partial");
        let written = crate::private::create(&partial).and_then(|mut file| {
            file.write_all(&text)?;
            file.sync_all()
        });
        written.map_err(io_error(format!("writing {}", partial.display())))?;
        fs::rename(&partial, &self.cleanup_file)
            .map_err(io_error(format!("writing {}", self.cleanup_file.display())))?;
        crate::private::sync_parent(&self.cleanup_file);
        Ok(self.paths)
    }
}

/// One `files` entry being copied.
struct Copy<'a> {
    behavior: FileExistsBehavior,
    field: &'a str,
    /// What the previous deployment installed: OVERWRITE may replace these directories.
    previous: &'a HashSet<PathBuf>,
    journal: &'a mut Journal,
}

impl Copy<'_> {
    /// Opens the destination directory, creating what is missing, under the install root.
    fn make_dirs(&mut self, root: &Dir, relative: &Path) -> Result<Dir, InstallError> {
        let mut dir = root.try_clone().map_err(refused(self.field))?;
        for component in relative.components() {
            if let Component::Normal(name) = component {
                dir = self.make_dir(&dir, name)?;
            }
        }
        Ok(dir)
    }

    fn make_dir(&mut self, parent: &Dir, name: &OsStr) -> Result<Dir, InstallError> {
        if let Some(dir) = parent.child(name).map_err(refused(self.field))? {
            return Ok(dir);
        }
        let path = parent.path().join(name);
        self.journal.will_create(path.clone(), self.field)?;
        if let Err(errno) =
            nix::sys::stat::mkdirat(parent.fd(), name, Mode::from_bits_truncate(0o777))
        {
            self.journal.not_created();
            if errno == Errno::EEXIST {
                return Err(InstallError::Invalid {
                    field: self.field.to_owned(),
                    message: format!(
                        "{} exists but leads to no directory (a link to a missing one?)",
                        path.display()
                    ),
                });
            }
            return Err(errno_error(format!("creating {}", path.display()))(errno));
        }
        parent
            .child(name)
            .map_err(refused(self.field))?
            .ok_or_else(|| InstallError::Io {
                context: format!("creating {}", path.display()),
                source: io::ErrorKind::NotFound.into(),
            })
    }

    fn tree(&mut self, source: &Path, destination: &Dir) -> Result<(), InstallError> {
        let mut children: Vec<_> = fs::read_dir(source)
            .map_err(io_error(format!("reading {}", source.display())))?
            .collect::<Result<_, _>>()
            .map_err(io_error(format!("reading {}", source.display())))?;
        children.sort_by_key(|child| child.file_name());
        for child in children {
            let from = child.path();
            let name = child.file_name();
            let kind = child
                .file_type()
                .map_err(io_error(format!("reading {}", from.display())))?;
            if kind.is_dir() {
                let dir = self.make_dir(destination, &name)?;
                self.tree(&from, &dir)?;
            } else {
                self.entry(&from, destination, &name)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, from: &Path, dir: &Dir, name: &OsStr) -> Result<(), InstallError> {
        let to = dir.path().join(name);
        if let Some(existing) = dir.stat(name).map_err(refused(self.field))? {
            match self.behavior {
                FileExistsBehavior::Disallow => {
                    return Err(InstallError::FileExists {
                        field: self.field.to_owned(),
                        path: to,
                    });
                }
                FileExistsBehavior::Retain => return Ok(()),
                FileExistsBehavior::Overwrite if existing.is_dir() => {
                    if !self.previous.contains(&to) && !self.journal.paths.contains(&to) {
                        return Err(InstallError::ForeignDirectory {
                            field: self.field.to_owned(),
                            path: to,
                        });
                    }
                    // Through the open parent; std's remove_dir_all follows no link below.
                    fs::remove_dir_all(dir.proc_path(name))
                        .map_err(io_error(format!("replacing {}", to.display())))?;
                }
                FileExistsBehavior::Overwrite => {
                    nix::unistd::unlinkat(dir.fd(), name, UnlinkatFlags::NoRemoveDir)
                        .map_err(errno_error(format!("replacing {}", to.display())))?;
                }
            }
        }
        let meta =
            fs::symlink_metadata(from).map_err(io_error(format!("reading {}", from.display())))?;
        self.journal.will_create(to.clone(), self.field)?;
        let created = if meta.file_type().is_symlink() {
            fs::read_link(from)
                .map_err(io_error(format!("reading {}", from.display())))
                .and_then(|target| {
                    nix::unistd::symlinkat(&target, dir.fd(), name)
                        .map_err(errno_error(format!("linking {}", to.display())))
                })
        } else {
            copy_file(from, dir, name, meta.permissions().mode()).map_err(io_error(format!(
                "copying {} to {}",
                from.display(),
                to.display()
            )))
        };
        if created.is_err() {
            self.journal.not_created();
        }
        created
    }
}

/// Copies a file into an open directory as a new file (never through an existing one),
/// with the source's mode, as `std::fs::copy`.
fn copy_file(from: &Path, dir: &Dir, name: &OsStr, mode: u32) -> io::Result<()> {
    let mut source = fs::File::open(from)?;
    let fd = nix::fcntl::openat(
        dir.fd(),
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    let mut target = fs::File::from(fd);
    io::copy(&mut source, &mut target)?;
    target.set_permissions(fs::Permissions::from_mode(mode))
}

/// Removes what the previous install recorded, newest first (files before the
/// directories that hold them), each through [`beneath`]: an entry under a directory
/// that became a link someone else made is left alone. Returns what it recorded.
fn remove_previous(cleanup_file: &Path, root: &Dir) -> Result<HashSet<PathBuf>, InstallError> {
    let bytes = match fs::read(cleanup_file) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(error) => {
            return Err(io_error(format!("reading {}", cleanup_file.display()))(
                error,
            ));
        }
    };
    let mut lines: Vec<&[u8]> = bytes.split(|byte| *byte == b'\n').collect();
    // The last line is whole only when the list ends with a line break (always, unless
    // the agent was killed in the middle of writing it).
    lines.pop();
    let recorded: Vec<PathBuf> = lines
        .into_iter()
        .filter(|line| !line.is_empty())
        .map(|line| PathBuf::from(OsStr::from_bytes(line)))
        .collect();
    for path in recorded.iter().rev() {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        let dir = match parent_dir(root, parent) {
            Ok(Some(dir)) => dir,
            Ok(None) => continue,
            Err(refusal) => {
                tracing::warn!(path = %path.display(), "not removed: {refusal}");
                continue;
            }
        };
        match dir.stat(name) {
            // A directory stays if something else was put in it since.
            Ok(Some(stat)) if stat.is_dir() => {
                let _ = nix::unistd::unlinkat(dir.fd(), name, UnlinkatFlags::RemoveDir);
            }
            Ok(Some(_)) => {
                match nix::unistd::unlinkat(dir.fd(), name, UnlinkatFlags::NoRemoveDir) {
                    Ok(()) | Err(Errno::ENOENT) => {}
                    Err(errno) => {
                        return Err(errno_error(format!("removing {}", path.display()))(errno));
                    }
                }
            }
            Ok(None) => {}
            Err(refusal) => tracing::warn!(path = %path.display(), "not removed: {refusal}"),
        }
    }
    Ok(recorded.into_iter().collect())
}

/// Opens the directory at an absolute path: under the install root when it is there
/// (the root itself is trusted), else from `/`; in both cases through [`beneath`].
fn parent_dir(root: &Dir, path: &Path) -> Result<Option<Dir>, Refused> {
    match path.strip_prefix(root.path()) {
        Ok(relative) => root.descend(relative),
        Err(_) => Dir::open(Path::new("/"))?.descend(path),
    }
}

fn glob(pattern: &str, field: &str) -> Result<GlobMatcher, InstallError> {
    Glob::new(pattern)
        .map(|glob| glob.compile_matcher())
        .map_err(|error| InstallError::Invalid {
            field: field.to_owned(),
            message: format!("{pattern:?} is not a valid pattern: {error}"),
        })
}

/// Applies one `permissions` entry to what this deployment installed, as CodeDeploy's
/// agent does: the object itself, when installed, and everything installed below it
/// that matches `pattern`, is not matched by `except`, and is of a listed `type`.
/// Links are skipped, and each target is changed through an opened file, so a link or a
/// swapped directory never carries a change outside the installed files.
fn apply_permission(
    permission: &Permission,
    root: &Dir,
    installed: &[PathBuf],
    field: &str,
) -> Result<(), InstallError> {
    let object_relative = host_relative(&permission.object, &format!("{field}.object"))?;
    let object = root.path().join(&object_relative);
    let exists = match (object.parent(), object.file_name()) {
        (Some(parent), Some(name)) => parent_dir(root, parent)
            .map_err(refused(&format!("{field}.object")))?
            .map(|dir| dir.stat(name))
            .transpose()
            .map_err(refused(&format!("{field}.object")))?
            .flatten()
            .is_some(),
        _ => true, // the install root itself
    };
    if !exists {
        return Err(InstallError::Invalid {
            field: format!("{field}.object"),
            message: format!(
                "{} does not exist on the host after Install",
                object.display()
            ),
        });
    }
    let pattern = glob(&permission.pattern, &format!("{field}.pattern"))?;
    let except: Vec<GlobMatcher> = permission
        .except
        .iter()
        .enumerate()
        .map(|(index, pattern)| glob(pattern, &format!("{field}.except[{index}]")))
        .collect::<Result<_, _>>()?;
    let wanted = |is_dir: bool| {
        let kind = if is_dir {
            ObjectType::Directory
        } else {
            ObjectType::File
        };
        permission.types.is_empty() || permission.types.contains(&kind)
    };
    let owner = match &permission.owner {
        Some(name) => Some(
            nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| InstallError::Invalid {
                    field: format!("{field}.owner"),
                    message: format!("no user {name:?} on this host"),
                })?
                .uid,
        ),
        None => None,
    };
    let group = match &permission.group {
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| InstallError::Invalid {
                    field: format!("{field}.group"),
                    message: format!("no group {name:?} on this host"),
                })?
                .gid,
        ),
        None => None,
    };
    for target in installed {
        let below = target != &object;
        if below && !target.starts_with(&object) {
            continue;
        }
        let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
            continue;
        };
        let Some(dir) = parent_dir(root, parent).map_err(refused(field))? else {
            continue; // removed since it was installed
        };
        let Some(stat) = dir.stat(name).map_err(refused(field))? else {
            continue;
        };
        if stat.is_symlink() || !(stat.is_dir() || stat.is_file()) {
            continue;
        }
        if !wanted(stat.is_dir()) {
            continue;
        }
        if below {
            let relative = target.strip_prefix(&object).unwrap_or(target);
            let excluded = except
                .iter()
                .any(|matcher| matcher.is_match(relative) || matcher.is_match(target));
            if !pattern.is_match(relative) || excluded {
                continue;
            }
        }
        // O_NOFOLLOW: if it was swapped for a link since, opening it fails.
        let file = match nix::fcntl::openat(
            dir.fd(),
            name,
            OFlag::O_RDONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_NOCTTY
                | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fs::File::from(fd),
            Err(Errno::ELOOP | Errno::ENOENT) => continue,
            Err(errno) => {
                return Err(errno_error(format!(
                    "{field}: opening {}",
                    target.display()
                ))(errno));
            }
        };
        // Owner first: changing it clears set-user-id bits a mode then sets.
        if owner.is_some() || group.is_some() {
            nix::unistd::fchown(&file, owner, group).map_err(errno_error(format!(
                "{field}: changing the owner of {}",
                target.display()
            )))?;
        }
        if let Some(mode) = permission.mode {
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(io_error(format!("{field}.mode: {}", target.display())))?;
        }
        if permission.acls.is_empty() && permission.context.is_none() {
            continue;
        }
        // The tools take a path: give them the opened file's, through /proc, in a
        // descriptor they inherit (a duplicate is not closed on exec).
        let inherited = nix::unistd::dup(&file).map_err(errno_error(format!(
            "{field}: opening {}",
            target.display()
        )))?;
        let by_fd = PathBuf::from(format!("/proc/self/fd/{}", inherited.as_raw_fd()));
        for (index, acl) in permission.acls.iter().enumerate() {
            run_tool(
                "setfacl",
                &["-m", acl],
                &by_fd,
                target,
                &format!("{field}.acls[{index}]"),
                "the acl package",
            )?;
        }
        if let Some(context) = &permission.context {
            let mut args: Vec<&str> = vec!["-t", &context.kind];
            if let Some(user) = &context.user {
                args.extend(["-u", user]);
            }
            if let Some(range) = &context.range {
                args.extend(["-l", range]);
            }
            run_tool(
                "chcon",
                &args,
                &by_fd,
                target,
                &format!("{field}.context"),
                "SELinux tools",
            )?;
        }
    }
    Ok(())
}

/// Runs setfacl or chcon on one opened file (`by_fd`), turning a missing tool into a
/// clear error that names `target`.
fn run_tool(
    tool: &str,
    args: &[&str],
    by_fd: &Path,
    target: &Path,
    field: &str,
    package: &str,
) -> Result<(), InstallError> {
    let output = Command::new(tool)
        .args(args)
        .arg(by_fd)
        .output()
        .map_err(|error| {
            let message = if error.kind() == io::ErrorKind::NotFound {
                format!("needs {tool}, which is not installed on this host (install {package})")
            } else {
                format!("running {tool}: {error}")
            };
            InstallError::Invalid {
                field: field.to_owned(),
                message,
            }
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(InstallError::Invalid {
            field: field.to_owned(),
            message: format!(
                "{tool} failed on {}: {}",
                target.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}

#[cfg(test)]
mod tests;
