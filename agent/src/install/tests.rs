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
        let revision = host.revision("r1", &[("site/index.html", "v1"), ("conf/app.conf", "c")]);
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
    let appspec =
        "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/../../escape\n";
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
