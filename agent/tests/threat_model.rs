//! The agent's threat model, tested with real files, a real unprivileged user and real
//! processes.
//!
//! The agent runs as root. The appspec's author and the application's user (who owns
//! files under the install destination) are not trusted: neither may make the agent
//! change a file outside what the revision installs, nor read what the agent keeps.
//! The application's user here is `gantry-tm-app`, created with `useradd` when missing;
//! each test says so and passes without checking anything when not run as root.
//!
//! `/etc/shadow` and the like are played by root-owned files in a directory outside the
//! install root.

use gantry_agent::install::{self, Install, InstallError, Installed};
use gantry_agent::runner::{self, Host as RunnerHost, Outcome, ReportSink, RevisionSource};
use gantry_core::appspec::{AppSpec, FileExistsBehavior};
use gantry_core::bundle::BundleType;
use gantry_core::lifecycle;
use gantry_core::wire::{
    Command as Command_, Creator, Report, RevisionLocation, S3Location, SCHEMA_VERSION,
};
use gantry_tests::archive::{self, Entry};
use nix::unistd::{Uid, User};
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

const APP_USER: &str = "gantry-tm-app";

/// The application's user, created once; `None` (and a message) when not root.
fn app_user(test: &str) -> Option<User> {
    if !Uid::effective().is_root() {
        eprintln!("skipped {test}: needs root, to act as the agent and create {APP_USER}");
        return None;
    }
    static USER: OnceLock<User> = OnceLock::new();
    Some(
        USER.get_or_init(|| {
            if User::from_name(APP_USER).unwrap().is_none() {
                let status = Command::new("useradd")
                    .args(["--system", "--no-create-home", "--user-group"])
                    .args(["--shell", "/usr/sbin/nologin", APP_USER])
                    .status()
                    .expect("running useradd");
                assert!(
                    status.success() || User::from_name(APP_USER).unwrap().is_some(),
                    "useradd {APP_USER} failed"
                );
            }
            User::from_name(APP_USER).unwrap().unwrap()
        })
        .clone(),
    )
}

/// Runs a shell command as the application's user: a real, unprivileged process.
fn as_app_user(user: &User, script: &str) -> std::process::Output {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .uid(user.uid.as_raw())
        .gid(user.gid.as_raw())
        .output()
        .unwrap()
}

fn run_as_app_user(user: &User, script: &str) {
    let output = as_app_user(user, script);
    assert!(
        output.status.success(),
        "as {APP_USER}: {script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn chown_to(path: &Path, user: &User) {
    nix::unistd::chown(path, Some(user.uid), Some(user.gid)).unwrap();
}

/// A host: an install root, a directory outside it, the agent's cleanup list.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Others may pass through, as through `/`: only the agent's own checks protect.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let host = Self { dir };
        fs::create_dir_all(host.root()).unwrap();
        fs::create_dir_all(host.outside()).unwrap();
        host
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Root's files the application must never reach.
    fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }

    fn at(&self, path: &str) -> PathBuf {
        self.root().join(path.trim_start_matches('/'))
    }

    fn cleanup(&self) -> PathBuf {
        self.dir
            .path()
            .join("state/deployment-instructions/g-1-cleanup")
    }

    fn revision(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let revision = self.dir.path().join("revisions").join(name);
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
        install_once(appspec, revision, &self.root(), &self.cleanup(), behavior)
    }

    /// A root-owned file outside the install root, as /etc/shadow.
    fn secret(&self, name: &str) -> PathBuf {
        let path = self.outside().join(name);
        fs::write(&path, "root:$6$secret:19000:0:99999:7:::\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// Everything outside, with owner, mode and content: must not change.
    fn outside_state(&self) -> BTreeSet<(PathBuf, u32, u32, Vec<u8>)> {
        tree(&self.outside())
            .into_iter()
            .map(|path| {
                let meta = fs::symlink_metadata(&path).unwrap();
                let body = if meta.is_file() {
                    fs::read(&path).unwrap()
                } else {
                    Vec::new()
                };
                (path, meta.uid(), meta.mode(), body)
            })
            .collect()
    }
}

fn install_once(
    appspec: &str,
    revision: &Path,
    root: &Path,
    cleanup: &Path,
    behavior: FileExistsBehavior,
) -> Result<Installed, InstallError> {
    let spec = AppSpec::parse(appspec).unwrap();
    install::install(&Install {
        spec: &spec,
        revision,
        install_root: root,
        file_exists_behavior: behavior,
        cleanup_file: cleanup,
    })
}

/// Every path below `dir`, not following links.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_dir()) {
                stack.push(path.clone());
            }
            found.insert(path);
        }
    }
    found
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn uid(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().uid()
}

const APP: &str =
    "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /var/www/app\n";

// 1. `permissions` act on what the deployment installed, never through a link.

#[test]
fn permissions_change_only_installed_files_and_never_follow_a_link() {
    let Some(user) = app_user("permissions_change_only_installed_files_and_never_follow_a_link")
    else {
        return;
    };
    let host = Host::new();
    let shadow = host.secret("shadow");
    let before = host.outside_state();
    let appspec = format!(
        "{APP}permissions:\n  - object: /var/www/app\n    owner: {APP_USER}\n    group: {APP_USER}\n  - object: /var/www/app\n    mode: 644\n    type: [file]\n"
    );
    let revision = host.revision(
        "r1",
        &[("site/index.html", "v1"), ("site/uploads/.keep", "")],
    );
    host.install(&appspec, &revision, FileExistsBehavior::Disallow)
        .unwrap();
    let app = host.at("/var/www/app");
    assert_eq!(uid(&app.join("uploads")), user.uid.as_raw());

    // The application's user links /etc/shadow into its uploads, and leaves a file of
    // its own; an administrator leaves a root-only file in the application's directory.
    run_as_app_user(
        &user,
        &format!(
            "ln -s {} {}/uploads/x && echo mine > {app}/uploads/mine.txt && chmod 600 {app}/uploads/mine.txt",
            shadow.display(),
            app.display(),
            app = app.display()
        ),
    );
    fs::write(app.join("local.conf"), "password=1").unwrap();
    fs::set_permissions(app.join("local.conf"), fs::Permissions::from_mode(0o600)).unwrap();

    // The next deployment applies the same permissions.
    host.install(&appspec, &revision, FileExistsBehavior::Disallow)
        .unwrap();
    assert_eq!(
        host.outside_state(),
        before,
        "/etc/shadow's stand-in changed"
    );
    assert_eq!((uid(&shadow), mode(&shadow)), (0, 0o600));
    assert_eq!(
        (uid(&app.join("local.conf")), mode(&app.join("local.conf"))),
        (0, 0o600),
        "a file the deployment did not install keeps its owner and mode"
    );
    assert_eq!(mode(&app.join("uploads/mine.txt")), 0o600);
    assert_eq!(
        (uid(&app.join("index.html")), mode(&app.join("index.html"))),
        (user.uid.as_raw(), 0o644),
        "installed files get the permissions"
    );
}

#[test]
fn acls_go_to_installed_files_only_never_through_a_link() {
    let Some(user) = app_user("acls_go_to_installed_files_only_never_through_a_link") else {
        return;
    };
    if Command::new("setfacl").arg("--version").output().is_err() {
        eprintln!(
            "skipped acls_go_to_installed_files_only_never_through_a_link: no setfacl (install the acl package)"
        );
        return;
    }
    let host = Host::new();
    let shadow = host.secret("shadow");
    let acls = |path: &Path| {
        let output = Command::new("getfacl")
            .args(["--omit-header", "--absolute-names", "--physical"])
            .arg(path)
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap()
    };
    let before = acls(&shadow);
    let appspec = format!(
        "{APP}permissions:\n  - object: /var/www/app\n    owner: {APP_USER}\n  - object: /var/www/app\n    acls: [\"u:nobody:rw\"]\n    type: [file]\n"
    );
    let revision = host.revision(
        "r1",
        &[("site/index.html", "v1"), ("site/uploads/.keep", "")],
    );
    host.install(&appspec, &revision, FileExistsBehavior::Disallow)
        .unwrap();
    let app = host.at("/var/www/app");
    run_as_app_user(
        &user,
        &format!("ln -s {} {}/uploads/x", shadow.display(), app.display()),
    );
    host.install(&appspec, &revision, FileExistsBehavior::Disallow)
        .unwrap();
    assert!(acls(&app.join("index.html")).contains("user:nobody:rw-"));
    assert_eq!(acls(&shadow), before, "/etc/shadow's stand-in got an ACL");
}

// 2. Installing and cleaning up never go through a directory the user swapped for a link.

/// The application's directory and its `static` directory exist before the first
/// deployment (made by the administrator) and belong to the application's user, who
/// swaps `static` for a link to root's directory after the first deployment.
fn a_linked_static_directory(host: &Host, user: &User) -> PathBuf {
    let app = host.at("/var/www/app");
    fs::create_dir_all(app.join("static")).unwrap();
    chown_to(&app, user);
    chown_to(&app.join("static"), user);
    let r1 = host.revision(
        "r1",
        &[("site/index.html", "v1"), ("site/static/a.css", "a1")],
    );
    host.install(APP, &r1, FileExistsBehavior::Disallow)
        .unwrap();
    // Root's own a.css, which cleanup of the recorded static/a.css must not delete.
    fs::write(host.outside().join("a.css"), "root's").unwrap();
    run_as_app_user(
        user,
        &format!(
            "rm -r {app}/static && ln -s {} {app}/static",
            host.outside().display(),
            app = app.display()
        ),
    );
    app
}

#[test]
fn install_refuses_a_destination_directory_swapped_for_a_link() {
    let Some(user) = app_user("install_refuses_a_destination_directory_swapped_for_a_link") else {
        return;
    };
    let host = Host::new();
    let app = a_linked_static_directory(&host, &user);
    let before = host.outside_state();
    let r2 = host.revision(
        "r2",
        &[
            ("site/index.html", "v2"),
            ("site/static/a.css", "a2"),
            ("site/static/b.css", "b2"),
        ],
    );
    let error = host
        .install(APP, &r2, FileExistsBehavior::Overwrite)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(&format!(
            "files[0]: {} is a symbolic link",
            app.join("static").display()
        )),
        "{error}"
    );
    assert!(error.contains("root"), "says what is allowed: {error}");
    assert_eq!(
        host.outside_state(),
        before,
        "nothing written or removed outside"
    );
}

#[test]
fn cleanup_does_not_remove_through_a_directory_swapped_for_a_link() {
    let Some(user) = app_user("cleanup_does_not_remove_through_a_directory_swapped_for_a_link")
    else {
        return;
    };
    let host = Host::new();
    a_linked_static_directory(&host, &user);
    let before = host.outside_state();
    // The next revision has no static files: cleanup alone meets the link.
    let r2 = host.revision("r2", &[("site/index.html", "v2")]);
    host.install(APP, &r2, FileExistsBehavior::Disallow)
        .unwrap();
    assert_eq!(
        fs::read_to_string(host.outside().join("a.css")).unwrap(),
        "root's"
    );
    assert_eq!(host.outside_state(), before);
}

#[test]
fn links_root_made_in_root_only_directories_are_still_followed() {
    let Some(_) = app_user("links_root_made_in_root_only_directories_are_still_followed") else {
        return;
    };
    let host = Host::new();
    // As a host whose /var/www is a link to a data disk, one absolute and one relative.
    fs::create_dir_all(host.at("/data/www")).unwrap();
    fs::create_dir_all(host.at("/var")).unwrap();
    symlink(host.at("/data/www"), host.at("/var/www")).unwrap();
    symlink("data/www", host.at("/srv")).unwrap();
    let appspec = format!("{APP}  - source: site\n    destination: /srv/other\n");
    let revision = host.revision("r1", &[("site/index.html", "v1")]);
    host.install(&appspec, &revision, FileExistsBehavior::Disallow)
        .unwrap();
    assert_eq!(
        fs::read_to_string(host.at("/data/www/app/index.html")).unwrap(),
        "v1"
    );
    assert_eq!(
        fs::read_to_string(host.at("/data/www/other/index.html")).unwrap(),
        "v1"
    );
    // And the next deployment cleans up through them.
    let r2 = host.revision("r2", &[("site/new.html", "v2")]);
    host.install(&appspec, &r2, FileExistsBehavior::Disallow)
        .unwrap();
    assert!(!host.at("/data/www/app/index.html").exists());
    assert!(host.at("/data/www/app/new.html").exists());
}

// 8. OVERWRITE replaces only directories Gantry installed.

#[test]
fn overwrite_refuses_to_remove_a_directory_gantry_did_not_install() {
    let Some(user) = app_user("overwrite_refuses_to_remove_a_directory_gantry_did_not_install")
    else {
        return;
    };
    let host = Host::new();
    let app = host.at("/var/www/app");
    fs::create_dir_all(app.join("index.html")).unwrap();
    fs::write(app.join("index.html/keep.txt"), "keep").unwrap();
    chown_to(&app.join("index.html"), &user);
    let revision = host.revision("r1", &[("site/index.html", "v1")]);
    let error = host
        .install(APP, &revision, FileExistsBehavior::Overwrite)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(&format!(
            "files[0]: {} is a directory Gantry did not install",
            app.join("index.html").display()
        )),
        "{error}"
    );
    assert!(error.contains("OVERWRITE"), "{error}");
    assert_eq!(
        fs::read_to_string(app.join("index.html/keep.txt")).unwrap(),
        "keep"
    );
}

#[test]
fn overwrite_replaces_a_directory_gantry_installed() {
    let Some(user) = app_user("overwrite_replaces_a_directory_gantry_installed") else {
        return;
    };
    let host = Host::new();
    let r1 = host.revision("r1", &[("site/data/x.txt", "x")]);
    host.install(APP, &r1, FileExistsBehavior::Disallow)
        .unwrap();
    // Something the application wrote keeps the directory through cleanup.
    let data = host.at("/var/www/app/data");
    chown_to(&data, &user);
    run_as_app_user(&user, &format!("echo u > {}/user.txt", data.display()));
    let r2 = host.revision("r2", &[("site/data", "now a file")]);
    host.install(APP, &r2, FileExistsBehavior::Overwrite)
        .unwrap();
    assert_eq!(fs::read_to_string(&data).unwrap(), "now a file");
}

// 7. An agent killed during Install leaves a cleanup list the next deployment uses.

const CHILD_ENV: &str = "GANTRY_THREAT_MODEL_INSTALL";
const MANY: &str =
    "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/many\n";

/// Not a test of its own: the body of the child process that
/// `a_killed_install_leaves_a_list_the_next_deployment_cleans_up` starts and kills. It
/// runs one install, as the agent does, when the test passes it a revision.
#[test]
fn install_in_a_child_process() {
    let Ok(arguments) = std::env::var(CHILD_ENV) else {
        return;
    };
    let [revision, root, cleanup]: [&str; 3] = arguments
        .split('\n')
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    install_once(
        MANY,
        Path::new(revision),
        Path::new(root),
        Path::new(cleanup),
        FileExistsBehavior::Disallow,
    )
    .unwrap();
}

/// A revision of `count` files of 16 KiB named `<prefix><number>`: most in `site/`, the
/// last 50 in `site/sub/`.
fn many_files(host: &Host, name: &str, prefix: &str, count: usize) -> (PathBuf, BTreeSet<PathBuf>) {
    let revision = host.dir.path().join("revisions").join(name);
    fs::create_dir_all(revision.join("site/sub")).unwrap();
    let body = name.repeat(16 * 1024 / name.len());
    let mut installed = BTreeSet::new();
    for index in 0..count {
        let relative = if index + 50 >= count {
            format!("sub/{prefix}{index:03}")
        } else {
            format!("{prefix}{index:03}")
        };
        fs::write(revision.join("site").join(&relative), &body).unwrap();
        installed.insert(host.at("/srv/many").join(relative));
    }
    installed.insert(host.at("/srv/many/sub"));
    (revision, installed)
}

#[test]
fn a_killed_install_leaves_a_list_the_next_deployment_cleans_up() {
    let Some(_) = app_user("a_killed_install_leaves_a_list_the_next_deployment_cleans_up") else {
        return;
    };
    // Kill points: how many installed entries the destination holds when SIGKILL is sent
    // (0: at once, before the previous deployment's files are even removed).
    for kill_at in [0usize, 1, 100, 250, 480] {
        let host = Host::new();
        let (r1, _) = many_files(&host, "r1", "p", 300);
        host.install(MANY, &r1, FileExistsBehavior::Disallow)
            .unwrap();
        let (r2, _) = many_files(&host, "r2", "f", 500);
        let destination = host.at("/srv/many");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "install_in_a_child_process", "--nocapture"])
            .env(
                CHILD_ENV,
                format!(
                    "{}\n{}\n{}",
                    r2.display(),
                    host.root().display(),
                    host.cleanup().display()
                ),
            )
            .spawn()
            .unwrap();
        // Wait until r2 has `kill_at` files (or the child ended).
        let deadline = Instant::now() + Duration::from_secs(60);
        let r2_files = |dir: &Path| {
            fs::read_dir(dir).map_or(0, |entries| {
                entries
                    .filter(|entry| {
                        entry
                            .as_ref()
                            .is_ok_and(|entry| entry.file_name().as_encoded_bytes()[0] == b'f')
                    })
                    .count()
            })
        };
        if kill_at > 0 {
            loop {
                if r2_files(&destination) + r2_files(&destination.join("sub")) >= kill_at
                    || child.try_wait().unwrap().is_some()
                    || Instant::now() > deadline
                {
                    break;
                }
            }
        }
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let left = tree(&destination);
        eprintln!(
            "kill_at {kill_at}: the child {} with {} entries under the destination",
            if status.success() {
                "had finished"
            } else {
                "was killed"
            },
            left.len()
        );
        // Everything the killed install made is in the list.
        let recorded: BTreeSet<PathBuf> = fs::read_to_string(host.cleanup())
            .unwrap_or_default()
            .lines()
            .map(PathBuf::from)
            .collect();
        let unrecorded: Vec<_> = left
            .iter()
            .filter(|path| !recorded.contains(*path))
            .collect();
        assert!(
            unrecorded.is_empty(),
            "kill_at {kill_at}: not in the cleanup list: {unrecorded:?}"
        );

        // The agent restarts; the next deployment (DISALLOW) installs r3 over the same
        // names, and nothing of r1 or r2 is left.
        let (r3, expected) = many_files(&host, "r3", "f", 400);
        host.install(MANY, &r3, FileExistsBehavior::Disallow)
            .unwrap_or_else(|error| panic!("kill_at {kill_at}: {error}"));
        assert_eq!(tree(&destination), expected, "kill_at {kill_at}");
        for path in &expected {
            if path.is_file() {
                assert!(fs::read(path).unwrap().starts_with(b"r3"));
            }
        }
    }
}

// 3. What the agent keeps (bundles, unpacked revisions, logs, state) is root's alone.

struct LocalBundles(PathBuf);

impl RevisionSource for LocalBundles {
    fn fetch(&self, command: &Command_, destination: &Path) -> Result<(), String> {
        let RevisionLocation::S3 { s3_location } = &command.revision else {
            return Err("only S3 revisions here".to_owned());
        };
        fs::copy(self.0.join(&s3_location.key), destination)
            .map(|_| ())
            .map_err(|error| error.to_string())
    }
}

struct NoReports;

impl ReportSink for NoReports {
    fn send(&self, report: &Report) -> Result<(), String> {
        report.validate().map_err(|error| error.to_string())
    }
}

/// Deploys a bundle with the runner, as the agent does, under umask 0022.
fn deploy(host: &Host, appspec: &str, extra: &[Entry]) -> Outcome {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let mut entries = vec![
        Entry::file("appspec.yml", appspec.as_bytes()),
        Entry::file("site/config.php", b"db_password=hunter2\n"),
    ];
    entries.extend_from_slice(extra);
    let bundles = host.dir.path().join("bundles");
    fs::create_dir_all(&bundles).unwrap();
    fs::write(bundles.join("app.tgz"), archive::tgz(&entries)).unwrap();
    let command = Command_ {
        schema_version: SCHEMA_VERSION,
        deployment_id: "d-AAAAAAAA1".to_owned(),
        deployment_group_id: "g-1".to_owned(),
        deployment_group_name: "web".to_owned(),
        application_name: "shop".to_owned(),
        instance_id: "host-1".to_owned(),
        revision: RevisionLocation::S3 {
            s3_location: S3Location {
                bucket: "bundles".to_owned(),
                key: "app.tgz".to_owned(),
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
        bundle_url: None,
    };
    let runner_host = RunnerHost {
        instance_id: "host-1",
        root_dir: &host.dir.path().join("state"),
        install_root: &host.root(),
        max_revisions: 5,
        term_grace: Duration::from_millis(200),
        abort: &AtomicBool::new(false),
    };
    runner::run(&runner_host, &command, &LocalBundles(bundles), &NoReports).unwrap()
}

/// Fails unless every attempt, as another local user, is refused.
fn refused_to(user: &User, what: &[String]) {
    for command in what {
        let output = as_app_user(user, command);
        assert!(
            !output.status.success(),
            "as {}: `{command}` succeeded: {}",
            user.name,
            String::from_utf8_lossy(&output.stdout)
        );
    }
}

#[test]
fn the_agents_own_files_are_root_only() {
    let Some(app) = app_user("the_agents_own_files_are_root_only") else {
        return;
    };
    let host = Host::new();
    let hooks = "hooks:\n  ValidateService:\n    - location: check.sh\n";
    let check = Entry::file_with_mode("check.sh", b"#!/bin/sh\necho token=s3cr3t\n", 0o755);
    assert_eq!(
        deploy(&host, &format!("{APP}{hooks}"), &[check]),
        Outcome::Succeeded
    );
    let state = host.dir.path().join("state");
    let deployment = state.join("g-1/d-AAAAAAAA1");
    for dir in [
        state.clone(),
        state.join("deployment-instructions"),
        state.join("g-1"),
        deployment.clone(),
        deployment.join("deployment-archive"),
        deployment.join("logs"),
    ] {
        assert_eq!((uid(&dir), mode(&dir)), (0, 0o750), "{}", dir.display());
    }
    for file in [
        deployment.join("bundle"),
        deployment.join("logs/scripts.log"),
        state.join("deployment-instructions/g-1-cleanup"),
        state.join("deployment-instructions/g-1-last-successful-install"),
        state.join("deployment-instructions/d-AAAAAAAA1-host-1.reports"),
    ] {
        assert_eq!((uid(&file), mode(&file)), (0, 0o640), "{}", file.display());
    }
    let show = |path: PathBuf| format!("cat {}", path.display());
    refused_to(
        &app,
        &[
            show(deployment.join("bundle")),
            show(deployment.join("deployment-archive/site/config.php")),
            show(deployment.join("logs/scripts.log")),
            format!("ls {}", state.display()),
        ],
    );
    // Installed files keep the bundle's modes.
    assert_eq!(mode(&host.at("/var/www/app/config.php")), 0o644);
}

#[test]
fn runas_scripts_still_read_their_revision_and_no_one_else_does() {
    let Some(app) = app_user("runas_scripts_still_read_their_revision_and_no_one_else_does") else {
        return;
    };
    let Ok(Some(nobody)) = User::from_name("nobody") else {
        eprintln!("skipped: no user nobody on this host");
        return;
    };
    let host = Host::new();
    let out = host.dir.path().join("out");
    fs::create_dir_all(&out).unwrap();
    chown_to(&out, &app);
    let hooks = format!(
        "hooks:\n  AfterInstall:\n    - location: scripts/after.sh\n      runas: {APP_USER}\n"
    );
    // By a path relative to the revision, and by its absolute path from $0.
    let script = format!(
        "#!/bin/sh\nset -e\nid -un > {out}/who\ncat site/config.php > {out}/relative\ncat \"$(dirname \"$0\")/../site/config.php\" > {out}/absolute\n",
        out = out.display()
    );
    let after = Entry::file_with_mode("scripts/after.sh", script.as_bytes(), 0o755);
    assert_eq!(
        deploy(&host, &format!("{APP}{hooks}"), &[after]),
        Outcome::Succeeded
    );
    assert_eq!(
        fs::read_to_string(out.join("who")).unwrap(),
        format!("{APP_USER}\n")
    );
    assert_eq!(
        fs::read_to_string(out.join("relative")).unwrap(),
        "db_password=hunter2\n"
    );
    assert_eq!(
        fs::read_to_string(out.join("absolute")).unwrap(),
        "db_password=hunter2\n"
    );
    let deployment = host.dir.path().join("state/g-1/d-AAAAAAAA1");
    let show = |path: PathBuf| format!("cat {}", path.display());
    refused_to(
        &nobody,
        &[
            show(deployment.join("bundle")),
            show(deployment.join("deployment-archive/site/config.php")),
            show(deployment.join("logs/scripts.log")),
            format!("ls {}", host.dir.path().join("state").display()),
            format!("ls {}", deployment.display()),
        ],
    );
    refused_to(
        &app,
        &[
            show(deployment.join("bundle")),
            show(deployment.join("logs/scripts.log")),
        ],
    );
}

#[test]
fn the_agent_log_is_root_only() {
    let Some(app) = app_user("the_agent_log_is_root_only") else {
        return;
    };
    let host = Host::new();
    let log_dir = host.dir.path().join("log");
    let config = host.dir.path().join("agent.yml");
    fs::write(
        &config,
        format!(
            "identity:\n  on_premises_name: web-1\nregion: us-east-1\nqueue_prefix: gantry-cmd-\nreports_queue: gantry-reports\nroot_dir: {}\nlog_dir: {}\n",
            host.dir.path().join("state").display(),
            log_dir.display()
        ),
    )
    .unwrap();
    // No AWS to reach: the agent starts its log, fails to find its queue and exits.
    let output = Command::new(env!("CARGO_BIN_EXE_gantry-agent"))
        .args(["--config", config.to_str().unwrap()])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let log = log_dir.join("gantry-agent.log");
    assert!(
        fs::read_to_string(&log)
            .unwrap()
            .contains("gantry-cmd-web-1")
    );
    assert_eq!((uid(&log_dir), mode(&log_dir)), (0, 0o750));
    assert_eq!((uid(&log), mode(&log)), (0, 0o640));
    refused_to(&app, &[format!("cat {}", log.display())]);
}

// 4. Issue 27: what a `runas` script can see and change.

const ENV_CHILD: &str = "GANTRY_THREAT_MODEL_ENVIRONMENT";

/// Not a test of its own: the agent of `runas_scripts_see_nothing_of_the_agents_environment`,
/// started with the environment a root agent has (AWS credentials, a proxy's password).
/// Deploys a revision whose AfterInstall, run as the application's user, copies its
/// environment to the directory the test passes.
#[test]
fn runas_deploy_in_a_child_process() {
    let Ok(out) = std::env::var(ENV_CHILD) else {
        return;
    };
    let host = Host::new();
    let hooks = format!(
        "hooks:\n  AfterInstall:\n    - location: scripts/env.sh\n      runas: {APP_USER}\n"
    );
    // /proc/$$/environ is what the script was started with, before the shell adds to it.
    let script = format!("#!/bin/sh\ncat /proc/$$/environ > {out}/environ\n");
    let dump = Entry::file_with_mode("scripts/env.sh", script.as_bytes(), 0o755);
    assert_eq!(
        deploy(&host, &format!("{APP}{hooks}"), &[dump]),
        Outcome::Succeeded
    );
}

#[test]
fn runas_scripts_see_nothing_of_the_agents_environment() {
    let Some(app) = app_user("runas_scripts_see_nothing_of_the_agents_environment") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    chown_to(out.path(), &app);
    let secrets = [
        ("AWS_ACCESS_KEY_ID", "AKIAGANTRYTESTKEY"),
        ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-agent-secret"),
        ("AWS_SESSION_TOKEN", "FwoGZXIvYXdz-agent-session"),
        ("HTTPS_PROXY", "http://alice:pr0xy-passw0rd@proxy:3128"),
        ("GANTRY_AGENT_ONLY", "agent-private-value"),
    ];
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "runas_deploy_in_a_child_process", "--nocapture"])
        .env(ENV_CHILD, out.path())
        .envs(secrets)
        .env("LANG", "C.UTF-8")
        .env("LC_TIME", "C")
        .env_remove("PATH")
        .status()
        .unwrap();
    assert!(status.success(), "the child agent's deployment failed");
    let environ = fs::read(out.path().join("environ")).unwrap();
    let vars: Vec<(String, String)> = environ
        .split(|byte| *byte == 0)
        .filter(|var| !var.is_empty())
        .map(|var| {
            let var = String::from_utf8_lossy(var);
            let (name, value) = var.split_once('=').unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect();
    let allowed = [
        "PATH",
        "LANG",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LIFECYCLE_EVENT",
        "DEPLOYMENT_ID",
        "APPLICATION_NAME",
        "DEPLOYMENT_GROUP_NAME",
        "DEPLOYMENT_GROUP_ID",
        "BUNDLE_BUCKET",
        "BUNDLE_KEY",
        "BUNDLE_VERSION",
        "BUNDLE_ETAG",
        "BUNDLE_COMMIT",
    ];
    let unexpected: Vec<&(String, String)> = vars
        .iter()
        .filter(|(name, _)| !allowed.contains(&name.as_str()) && !name.starts_with("LC_"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "the runas script saw the agent's {unexpected:?}"
    );
    for (_, secret) in secrets {
        assert!(
            !vars.iter().any(|(_, value)| value.contains(secret)),
            "the runas script saw {secret}"
        );
    }
    let get = |name: &str| {
        vars.iter()
            .find(|(found, _)| found == name)
            .map(|(_, value)| value.as_str())
    };
    assert_eq!(get("USER"), Some(APP_USER));
    assert_eq!(get("LOGNAME"), Some(APP_USER));
    assert_eq!(get("HOME"), Some(app.dir.to_str().unwrap()));
    assert_eq!(get("SHELL"), Some(app.shell.to_str().unwrap()));
    assert_eq!(get("LANG"), Some("C.UTF-8"));
    assert_eq!(get("LC_TIME"), Some("C"));
    assert_eq!(
        get("PATH"),
        Some(gantry_agent::hooks::DEFAULT_PATH),
        "the agent had no PATH: a safe default"
    );
    assert_eq!(get("LIFECYCLE_EVENT"), Some("AfterInstall"));
    assert_eq!(get("DEPLOYMENT_ID"), Some("d-AAAAAAAA1"));
    assert_eq!(get("DEPLOYMENT_GROUP_ID"), Some("g-1"));
    assert_eq!(get("DEPLOYMENT_GROUP_NAME"), Some("web"));
    assert_eq!(get("APPLICATION_NAME"), Some("shop"));
    assert_eq!(get("BUNDLE_KEY"), Some("app.tgz"));
}

/// `dir` and every path under it (links aside: their mode means nothing) with group or
/// world write, and its mode.
fn writable_by_others(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut all = tree(dir);
    all.insert(dir.to_owned());
    all.into_iter()
        .filter(|path| !fs::symlink_metadata(path).unwrap().file_type().is_symlink())
        .map(|path| {
            let mode = mode(&path);
            (path, mode)
        })
        .filter(|(_, mode)| mode & 0o022 != 0)
        .collect()
}

#[test]
fn a_runas_user_cannot_change_what_root_runs_later() {
    let Some(app) = app_user("a_runas_user_cannot_change_what_root_runs_later") else {
        return;
    };
    let host = Host::new();
    // The archive asks for writable files: the appspec, the root script the next
    // deployment's ApplicationStop runs, a script run as the application's user.
    let hooks = format!(
        "hooks:\n  ApplicationStop:\n    - location: scripts/stop.sh\n  AfterInstall:\n    - location: scripts/after.sh\n      runas: {APP_USER}\n"
    );
    let appspec = format!("{APP}{hooks}");
    let mut entries = vec![
        Entry::file_with_mode("scripts/stop.sh", b"#!/bin/sh\necho stopping\n", 0o777),
        Entry::file_with_mode("scripts/after.sh", b"#!/bin/sh\nexit 0\n", 0o777),
        Entry::file_with_mode("site/shared.txt", b"shared\n", 0o666),
    ];
    // deploy() writes the appspec 0644: add one of 0666 in its place.
    entries.push(Entry::file_with_mode(
        "appspec.yml",
        appspec.as_bytes(),
        0o666,
    ));
    assert_eq!(deploy(&host, &appspec, &entries), Outcome::Succeeded);
    let deployment = host.dir.path().join("state/g-1/d-AAAAAAAA1");
    let archive = deployment.join("deployment-archive");
    // The kept archive (the group's last successful install): root's, written by no one
    // else, though the application's user's group may read it.
    assert_eq!(
        fs::read_to_string(
            host.dir
                .path()
                .join("state/deployment-instructions/g-1-last-successful-install")
        )
        .unwrap()
        .trim(),
        archive.display().to_string()
    );
    assert_eq!(
        writable_by_others(&archive),
        vec![],
        "group- or world-writable in the kept archive"
    );
    assert_eq!(
        (uid(&archive), fs::metadata(&archive).unwrap().gid()),
        (0, app.gid.as_raw()),
        "the user's group may enter the archive"
    );
    assert_eq!(mode(&archive), 0o750, "read and pass through, never write");
    for path in tree(&archive) {
        assert_eq!(uid(&path), 0, "{}", path.display());
    }
    let at = |path: &str| archive.join(path).display().to_string();
    refused_to(
        &app,
        &[
            format!("echo 'touch /tmp/pwned' >> {}", at("scripts/stop.sh")),
            format!("echo 'hooks: {{}}' >> {}", at("appspec.yml")),
            format!("echo x >> {}", at("scripts/after.sh")),
            format!("echo x >> {}", at("site/shared.txt")),
            format!("touch {}", at("new.sh")),
            format!("touch {}", at("scripts/new.sh")),
            format!("mv {} {}", at("scripts/stop.sh"), at("scripts/old.sh")),
        ],
    );
    // The bundle's modes, less group and world write, are what was installed.
    assert_eq!(mode(&host.at("/var/www/app/shared.txt")), 0o644);
}

// 5. Issue 27: what the agent prints of a proxy's password.

#[test]
fn a_proxy_password_never_reaches_a_log_or_an_error() {
    let Some(_) = app_user("a_proxy_password_never_reaches_a_log_or_an_error") else {
        return;
    };
    let host = Host::new();
    let log_dir = host.dir.path().join("log");
    // Passwords with an unencoded `/`, `@` and `:`: a URL parser ends the authority (and
    // the user) early, so a redaction that follows it leaves the rest in the clear.
    for (url, secrets) in [
        (
            "http://alice:pa/ss@w:rd@proxy:3128",
            ["alice", "pa/ss", "w:rd"],
        ),
        (
            "ftp://alice:p@ss/w:rd@proxy:3128",
            ["alice", "p@ss", "/w:rd"],
        ),
    ] {
        let config = host.dir.path().join("agent.yml");
        fs::write(
            &config,
            format!(
                "identity:\n  on_premises_name: web-1\nregion: us-east-1\nqueue_prefix: gantry-cmd-\nreports_queue: gantry-reports\nroot_dir: {}\nlog_dir: {}\nproxy:\n  url: \"{url}\"\n",
                host.dir.path().join("state").display(),
                log_dir.display()
            ),
        )
        .unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_gantry-agent"))
            .args(["--config", config.to_str().unwrap()])
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_MAX_ATTEMPTS", "1")
            .output()
            .unwrap();
        assert!(!output.status.success(), "{url}: the agent started");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            stderr.contains("proxy.url"),
            "{url}: names the key: {stderr}"
        );
        assert!(
            stderr.contains("proxy:3128"),
            "{url}: names the host: {stderr}"
        );
        let log = fs::read_to_string(log_dir.join("gantry-agent.log")).unwrap_or_default();
        for secret in secrets {
            assert!(
                !stderr.contains(secret),
                "{url}: stderr shows {secret}: {stderr}"
            );
            assert!(
                !log.contains(secret),
                "{url}: the log shows {secret}: {log}"
            );
        }
    }
}

// 6. Issue 27: a download that trickles forever.

/// A server that answers one request with a large body, one byte at a time, until the
/// client hangs up or the test ends.
struct Trickle {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Trickle {
    fn start() -> Self {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            // Drop wakes the accept with a connection of its own once `stop` is set.
            while let Ok((stream, _)) = listener.accept() {
                if stopping.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|read| read > 2) {
                    line.clear();
                }
                let mut stream = stream;
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 10000000\r\nETag: \"e\"\r\n\r\n";
                if stream.write_all(head.as_bytes()).is_err() {
                    continue;
                }
                // A byte every 50 ms: never silent for the per-read timeout, never done.
                // The server gives up after 20 s, so an agent without a deadline fails
                // the test instead of hanging it.
                let given_up = Instant::now() + Duration::from_secs(20);
                while !stopping.load(std::sync::atomic::Ordering::SeqCst)
                    && Instant::now() < given_up
                    && stream.write_all(b"x").is_ok()
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn trickle_config(port: u16) -> gantry_agent::config::AgentConfig {
    gantry_agent::config::AgentConfig::parse(&format!(
        "identity:\n  on_premises_name: web-1\nregion: us-east-1\nqueue_prefix: q-\nreports_queue: r\ngithub:\n  api_url: http://127.0.0.1:{port}\n  allow_insecure_http: true\n  timeout_seconds: 30\ns3:\n  timeout_seconds: 30\ndownload_deadline_seconds: 1\n"
    ))
    .unwrap()
}

#[test]
fn a_trickling_github_download_ends_at_the_deadline() {
    let server = Trickle::start();
    let config = trickle_config(server.port);
    let github = gantry_agent::github::GitHubTarballs::new(config.github_source(None).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let error = runtime
        .block_on(github.fetch("owner/repo", "0123456789abcdef", &dir.path().join("bundle")))
        .unwrap_err()
        .message;
    let took = started.elapsed();
    assert!(
        error.contains("not finished within 1 s") && error.contains("download_deadline_seconds"),
        "{error}"
    );
    assert!(
        took < Duration::from_secs(10),
        "the download went on for {took:?}, past its 1 s deadline"
    );
}

#[test]
fn a_trickling_s3_download_ends_at_the_deadline() {
    let server = Trickle::start();
    let config = trickle_config(server.port);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s3 = gantry_agent::aws::S3Bundles::new(&config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let location = S3Location {
        bucket: "bundles".to_owned(),
        key: "app.tgz".to_owned(),
        bundle_type: BundleType::Tgz,
        version: None,
        e_tag: None,
    };
    let link = format!(
        "http://127.0.0.1:{}/bundles/app.tgz?X-Amz-Signature=0",
        server.port
    );
    let started = Instant::now();
    let error = runtime
        .block_on(s3.fetch(&location, Some(&link), &dir.path().join("bundle")))
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        error.contains("not finished within 1 s") && error.contains("download_deadline_seconds"),
        "{error}"
    );
    assert!(
        took < Duration::from_secs(10),
        "the download went on for {took:?}, past its 1 s deadline"
    );
}

// 7. Issue 27: ids from a command never lead a path out of root_dir.

#[test]
fn a_command_whose_group_id_leaves_root_dir_is_refused() {
    let host = Host::new();
    let state = host.dir.path().join("state");
    fs::create_dir_all(&state).unwrap();
    let before = tree(host.dir.path());
    let bundles = host.dir.path().join("bundles");
    let command = |group: &str| Command_ {
        schema_version: SCHEMA_VERSION,
        deployment_id: "d-AAAAAAAA1".to_owned(),
        deployment_group_id: group.to_owned(),
        deployment_group_name: "web".to_owned(),
        application_name: "shop".to_owned(),
        instance_id: "host-1".to_owned(),
        revision: RevisionLocation::S3 {
            s3_location: S3Location {
                bucket: "bundles".to_owned(),
                key: "app.tgz".to_owned(),
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
        bundle_url: None,
    };
    let runner_host = RunnerHost {
        instance_id: "host-1",
        root_dir: &state,
        install_root: &host.root(),
        max_revisions: 5,
        term_grace: Duration::from_millis(200),
        abort: &AtomicBool::new(false),
    };
    for group in ["../../tmp/x", "../outside", "..", "a/b"] {
        let error = runner::run(
            &runner_host,
            &command(group),
            &LocalBundles(bundles.clone()),
            &NoReports,
        )
        .unwrap_err();
        assert!(
            error.contains("deploymentGroupId") && error.contains("A-Z, a-z, 0-9 and -"),
            "{group}: {error}"
        );
        // And as the queue loop reads it.
        let json = command(group).to_json();
        let parsed = gantry_core::wire::HostMessage::from_json(&json).unwrap_err();
        assert!(parsed.to_string().contains("deploymentGroupId"), "{parsed}");
    }
    assert_eq!(
        tree(host.dir.path()),
        before,
        "nothing was written anywhere"
    );
}
