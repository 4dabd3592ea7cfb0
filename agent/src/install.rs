//! The Install event: copy the revision's `files`, apply `permissions`, and remember what
//! was installed so that the next deployment removes it first.
//!
//! Every destination is resolved under the agent's `install_root` (`/` on a real host),
//! and none may climb out of it. The list of installed paths is kept, one per line, in
//! `<root>/deployment-instructions/<group-id>-cleanup`, as CodeDeploy's agent keeps it.

use gantry_core::appspec::{
    AppSpec, FileExistsBehavior, ObjectType, Permission, revision_relative,
};
use globset::{Glob, GlobMatcher};
use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
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

/// What an install wrote, in the order it wrote it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Installed {
    pub paths: Vec<PathBuf>,
}

/// Removes what the previous install recorded, then installs this revision.
pub fn install(install: &Install<'_>) -> Result<Installed, InstallError> {
    remove_previous(install.cleanup_file)?;
    let behavior = install
        .spec
        .file_exists_behavior
        .unwrap_or(install.file_exists_behavior);
    let mut installed = Installed::default();
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
            let destination = host_path(
                install.install_root,
                &mapping.destination,
                &format!("{field}.destination"),
            )?;
            let meta = fs::symlink_metadata(&source)
                .map_err(io_error(format!("{field}.source: {}", mapping.source)))?;
            if meta.is_dir() {
                make_dirs(&destination, &mut installed)?;
                copy_tree(&source, &destination, behavior, &field, &mut installed)?;
            } else {
                make_dirs(&destination, &mut installed)?;
                let name = source.file_name().ok_or_else(|| InstallError::Invalid {
                    field: format!("{field}.source"),
                    message: "names no file".to_owned(),
                })?;
                copy_entry(
                    &source,
                    &destination.join(name),
                    behavior,
                    &field,
                    &mut installed,
                )?;
            }
        }
        for (index, permission) in install.spec.permissions.iter().enumerate() {
            apply_permission(
                permission,
                install.install_root,
                &format!("permissions[{index}]"),
            )?;
        }
        Ok(())
    })();
    write_cleanup(install.cleanup_file, &installed)?;
    result.map(|()| installed)
}

/// Resolves an absolute appspec path under the install root, refusing `..` that climbs
/// out of it.
fn host_path(install_root: &Path, path: &str, field: &str) -> Result<PathBuf, InstallError> {
    let mut resolved = install_root.to_owned();
    let mut depth = 0usize;
    for component in Path::new(path).components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::Normal(part) => {
                resolved.push(part);
                depth += 1;
            }
            Component::ParentDir => {
                if depth == 0 {
                    return Err(InstallError::Invalid {
                        field: field.to_owned(),
                        message: format!("{path:?} climbs above the root"),
                    });
                }
                resolved.pop();
                depth -= 1;
            }
        }
    }
    Ok(resolved)
}

fn make_dirs(dir: &Path, installed: &mut Installed) -> Result<(), InstallError> {
    let mut missing = Vec::new();
    let mut current = Some(dir);
    while let Some(path) = current {
        if fs::symlink_metadata(path).is_ok() {
            break;
        }
        missing.push(path.to_owned());
        current = path.parent();
    }
    for path in missing.into_iter().rev() {
        fs::create_dir(&path).map_err(io_error(format!("creating {}", path.display())))?;
        installed.paths.push(path);
    }
    Ok(())
}

fn copy_tree(
    source: &Path,
    destination: &Path,
    behavior: FileExistsBehavior,
    field: &str,
    installed: &mut Installed,
) -> Result<(), InstallError> {
    let mut children: Vec<_> = fs::read_dir(source)
        .map_err(io_error(format!("reading {}", source.display())))?
        .collect::<Result<_, _>>()
        .map_err(io_error(format!("reading {}", source.display())))?;
    children.sort_by_key(|child| child.file_name());
    for child in children {
        let from = child.path();
        let to = destination.join(child.file_name());
        let kind = child
            .file_type()
            .map_err(io_error(format!("reading {}", from.display())))?;
        if kind.is_dir() {
            make_dirs(&to, installed)?;
            copy_tree(&from, &to, behavior, field, installed)?;
        } else {
            copy_entry(&from, &to, behavior, field, installed)?;
        }
    }
    Ok(())
}

fn copy_entry(
    from: &Path,
    to: &Path,
    behavior: FileExistsBehavior,
    field: &str,
    installed: &mut Installed,
) -> Result<(), InstallError> {
    if let Ok(existing) = fs::symlink_metadata(to) {
        match behavior {
            FileExistsBehavior::Disallow => {
                return Err(InstallError::FileExists {
                    field: field.to_owned(),
                    path: to.to_owned(),
                });
            }
            FileExistsBehavior::Retain => return Ok(()),
            FileExistsBehavior::Overwrite => {
                let removed = if existing.is_dir() {
                    fs::remove_dir_all(to)
                } else {
                    fs::remove_file(to)
                };
                removed.map_err(io_error(format!("replacing {}", to.display())))?;
            }
        }
    }
    let meta =
        fs::symlink_metadata(from).map_err(io_error(format!("reading {}", from.display())))?;
    if meta.file_type().is_symlink() {
        let target =
            fs::read_link(from).map_err(io_error(format!("reading {}", from.display())))?;
        symlink(&target, to).map_err(io_error(format!("linking {}", to.display())))?;
    } else {
        fs::copy(from, to).map_err(io_error(format!(
            "copying {} to {}",
            from.display(),
            to.display()
        )))?;
    }
    installed.paths.push(to.to_owned());
    Ok(())
}

fn remove_previous(cleanup_file: &Path) -> Result<(), InstallError> {
    let text = match fs::read_to_string(cleanup_file) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => {
            return Err(io_error(format!("reading {}", cleanup_file.display()))(
                error,
            ));
        }
    };
    // Newest first: files before the directories that hold them.
    for line in text.lines().rev().filter(|line| !line.is_empty()) {
        let path = Path::new(line);
        match fs::symlink_metadata(path) {
            // A directory stays if something else was put in it since.
            Ok(meta) if meta.is_dir() => {
                let _ = fs::remove_dir(path);
            }
            Ok(_) => {
                fs::remove_file(path).map_err(io_error(format!("removing {}", path.display())))?
            }
            Err(_) => {}
        }
    }
    fs::remove_file(cleanup_file).map_err(io_error(format!("removing {}", cleanup_file.display())))
}

fn write_cleanup(cleanup_file: &Path, installed: &Installed) -> Result<(), InstallError> {
    if let Some(dir) = cleanup_file.parent() {
        fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
    }
    let mut text = String::new();
    for path in &installed.paths {
        text.push_str(&path.to_string_lossy());
        text.push('\n');
    }
    // Write then rename, so a crash never leaves half a list.
    let partial = cleanup_file.with_extension("partial");
    fs::write(&partial, text).map_err(io_error(format!("writing {}", partial.display())))?;
    fs::rename(&partial, cleanup_file)
        .map_err(io_error(format!("writing {}", cleanup_file.display())))
}

fn glob(pattern: &str, field: &str) -> Result<GlobMatcher, InstallError> {
    Glob::new(pattern)
        .map(|glob| glob.compile_matcher())
        .map_err(|error| InstallError::Invalid {
            field: field.to_owned(),
            message: format!("{pattern:?} is not a valid pattern: {error}"),
        })
}

/// Applies one `permissions` entry. A file object gets it directly; a directory object
/// gets it on itself and on everything below it that matches `pattern`, is not matched
/// by `except`, and is of a listed `type`.
fn apply_permission(
    permission: &Permission,
    install_root: &Path,
    field: &str,
) -> Result<(), InstallError> {
    let object = host_path(install_root, &permission.object, &format!("{field}.object"))?;
    let meta = fs::symlink_metadata(&object).map_err(|_| InstallError::Invalid {
        field: format!("{field}.object"),
        message: format!(
            "{} does not exist on the host after Install",
            object.display()
        ),
    })?;
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
    let mut targets = Vec::new();
    if wanted(meta.is_dir()) {
        targets.push(object.clone());
    }
    if meta.is_dir() {
        let mut stack = vec![object.clone()];
        while let Some(dir) = stack.pop() {
            for child in
                fs::read_dir(&dir).map_err(io_error(format!("reading {}", dir.display())))?
            {
                let path = child
                    .map_err(io_error(format!("reading {}", dir.display())))?
                    .path();
                let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
                if is_dir {
                    stack.push(path.clone());
                }
                let relative = path.strip_prefix(&object).unwrap_or(&path);
                let excluded = except
                    .iter()
                    .any(|matcher| matcher.is_match(relative) || matcher.is_match(&path));
                if wanted(is_dir) && pattern.is_match(relative) && !excluded {
                    targets.push(path);
                }
            }
        }
    }
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
    for target in &targets {
        if let Some(mode) = permission.mode {
            fs::set_permissions(target, fs::Permissions::from_mode(mode))
                .map_err(io_error(format!("{field}.mode: {}", target.display())))?;
        }
        if owner.is_some() || group.is_some() {
            nix::unistd::chown(target.as_path(), owner, group).map_err(|errno| {
                InstallError::Io {
                    context: format!("{field}: changing the owner of {}", target.display()),
                    source: errno.into(),
                }
            })?;
        }
        for (index, acl) in permission.acls.iter().enumerate() {
            run_tool(
                "setfacl",
                &["-m", acl],
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
                target,
                &format!("{field}.context"),
                "SELinux tools",
            )?;
        }
    }
    Ok(())
}

/// Runs setfacl or chcon on one path, turning a missing tool into a clear error.
fn run_tool(
    tool: &str,
    args: &[&str],
    target: &Path,
    field: &str,
    package: &str,
) -> Result<(), InstallError> {
    let output = Command::new(tool)
        .args(args)
        .arg(target)
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
mod tests {
    use super::*;

    struct Host {
        dir: tempfile::TempDir,
    }

    impl Host {
        fn new() -> Self {
            let host = Self {
                dir: tempfile::tempdir().unwrap(),
            };
            fs::create_dir_all(host.root()).unwrap();
            host
        }
        fn root(&self) -> PathBuf {
            self.dir.path().join("root")
        }
        fn cleanup(&self) -> PathBuf {
            self.dir.path().join("instructions/g-1-cleanup")
        }
        fn revision(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
            let revision = self.dir.path().join(name);
            for (path, body) in files {
                let path = revision.join(path);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, body).unwrap();
            }
            revision
        }
        fn install(
            &self,
            appspec: &str,
            revision: &Path,
            behavior: FileExistsBehavior,
        ) -> Result<Installed, InstallError> {
            let spec = AppSpec::parse(appspec).unwrap();
            install(&Install {
                spec: &spec,
                revision,
                install_root: &self.root(),
                file_exists_behavior: behavior,
                cleanup_file: &self.cleanup(),
            })
        }
        fn read(&self, path: &str) -> Option<String> {
            fs::read_to_string(self.root().join(path)).ok()
        }
    }

    const APPSPEC: &str = "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/app\n  - source: conf/app.conf\n    destination: /etc/app\n";

    #[test]
    fn copies_directories_and_single_files_and_records_them() {
        let host = Host::new();
        let revision = host.revision(
            "r1",
            &[
                ("site/index.html", "v1"),
                ("site/css/a.css", "a"),
                ("conf/app.conf", "c"),
            ],
        );
        let installed = host
            .install(APPSPEC, &revision, FileExistsBehavior::Disallow)
            .unwrap();
        assert_eq!(host.read("srv/app/index.html").as_deref(), Some("v1"));
        assert_eq!(host.read("srv/app/css/a.css").as_deref(), Some("a"));
        assert_eq!(host.read("etc/app/app.conf").as_deref(), Some("c"));
        let recorded = fs::read_to_string(host.cleanup()).unwrap();
        assert_eq!(recorded.lines().count(), installed.paths.len());
        assert!(recorded.contains(&host.root().join("srv/app/css").display().to_string()));
    }

    #[test]
    fn the_next_install_removes_the_previous_files_first() {
        let host = Host::new();
        let r1 = host.revision(
            "r1",
            &[
                ("site/index.html", "v1"),
                ("site/old.html", "old"),
                ("conf/app.conf", "c"),
            ],
        );
        host.install(APPSPEC, &r1, FileExistsBehavior::Disallow)
            .unwrap();
        let r2 = host.revision("r2", &[("site/index.html", "v2"), ("conf/app.conf", "c2")]);
        host.install(APPSPEC, &r2, FileExistsBehavior::Disallow)
            .unwrap();
        assert_eq!(host.read("srv/app/index.html").as_deref(), Some("v2"));
        assert_eq!(
            host.read("srv/app/old.html"),
            None,
            "files the new revision dropped are gone"
        );
        assert!(!host.root().join("srv/app/css").exists());
    }

    #[test]
    fn file_exists_behavior_decides_about_foreign_files() {
        for (behavior, expected) in [
            (FileExistsBehavior::Disallow, None),
            (FileExistsBehavior::Overwrite, Some("v1")),
            (FileExistsBehavior::Retain, Some("mine")),
        ] {
            let host = Host::new();
            fs::create_dir_all(host.root().join("srv/app")).unwrap();
            fs::write(host.root().join("srv/app/index.html"), "mine").unwrap();
            let revision =
                host.revision("r1", &[("site/index.html", "v1"), ("conf/app.conf", "c")]);
            let result = host.install(APPSPEC, &revision, behavior);
            match expected {
                None => {
                    let error = result.unwrap_err().to_string();
                    assert!(error.starts_with("files[0]: "), "{error}");
                    assert!(error.contains("srv/app/index.html"), "{error}");
                    assert_eq!(host.read("srv/app/index.html").as_deref(), Some("mine"));
                }
                Some(content) => {
                    result.unwrap();
                    assert_eq!(
                        host.read("srv/app/index.html").as_deref(),
                        Some(content),
                        "{behavior:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_appspec_behavior_wins_over_the_deployments() {
        let host = Host::new();
        fs::create_dir_all(host.root().join("srv/app")).unwrap();
        fs::write(host.root().join("srv/app/index.html"), "mine").unwrap();
        let revision = host.revision("r1", &[("site/index.html", "v1"), ("conf/app.conf", "c")]);
        let appspec = format!("{APPSPEC}file_exists_behavior: RETAIN\n");
        host.install(&appspec, &revision, FileExistsBehavior::Disallow)
            .unwrap();
        assert_eq!(host.read("srv/app/index.html").as_deref(), Some("mine"));
    }

    #[test]
    fn destinations_cannot_climb_out_of_the_install_root() {
        let host = Host::new();
        let revision = host.revision("r1", &[("site/index.html", "v1")]);
        let appspec = "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/../../escape\n";
        let error = host
            .install(appspec, &revision, FileExistsBehavior::Disallow)
            .unwrap_err();
        assert!(
            error.to_string().starts_with("files[0].destination"),
            "{error}"
        );
        assert!(!host.dir.path().join("escape").exists());
    }

    #[test]
    fn permissions_follow_pattern_except_and_type() {
        let host = Host::new();
        let revision = host.revision(
            "r1",
            &[
                ("site/run.sh", "#!/bin/sh"),
                ("site/keep.sh", "#!/bin/sh"),
                ("site/page.html", "p"),
                ("site/sub/x.sh", "x"),
            ],
        );
        let appspec = "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/app\npermissions:\n  - object: /srv/app\n    pattern: \"*.sh\"\n    except: [keep.sh]\n    mode: 750\n    type: [file]\n";
        host.install(appspec, &revision, FileExistsBehavior::Disallow)
            .unwrap();
        let mode = |path: &str| {
            fs::metadata(host.root().join(path))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("srv/app/run.sh"), 0o750);
        assert_eq!(mode("srv/app/sub/x.sh"), 0o750);
        assert_eq!(mode("srv/app/keep.sh"), 0o644);
        assert_eq!(mode("srv/app/page.html"), 0o644);
        assert_ne!(
            mode("srv/app"),
            0o750,
            "type: [file] leaves directories alone"
        );
    }

    #[test]
    fn unknown_owners_and_missing_objects_name_the_field() {
        let host = Host::new();
        let revision = host.revision("r1", &[("site/a", "a")]);
        let base = "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/app\npermissions:\n";
        let error = host
            .install(
                &format!("{base}  - object: /srv/app\n    owner: no-such-user-gantry\n"),
                &revision,
                FileExistsBehavior::Disallow,
            )
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("permissions[0].owner: no user"),
            "{error}"
        );
        let error = host
            .install(
                &format!("{base}  - object: /srv/nothing\n    mode: 600\n"),
                &revision,
                FileExistsBehavior::Disallow,
            )
            .unwrap_err();
        assert!(
            error.to_string().starts_with("permissions[0].object: "),
            "{error}"
        );
    }

    #[test]
    fn owner_and_group_are_applied() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: changing owners needs root");
            return;
        }
        let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
            return;
        };
        let host = Host::new();
        let revision = host.revision("r1", &[("site/a", "a")]);
        let appspec = "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/app\npermissions:\n  - object: /srv/app/a\n    owner: nobody\n";
        host.install(appspec, &revision, FileExistsBehavior::Disallow)
            .unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            fs::metadata(host.root().join("srv/app/a")).unwrap().uid(),
            nobody.uid.as_raw()
        );
    }
}
