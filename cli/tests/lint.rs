//! `gantry appspec lint` on good and bad revisions, run as the real binary.

use gantry_tests::archive::{self, Entry};
use gantry_tests::workspace_root;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the binary with its scratch space (TMPDIR) inside `sandbox`, so a test can
/// check that nothing was left behind or written beside it.
fn lint(path: &Path, sandbox: &Path) -> Run {
    let scratch = sandbox.join("tmp");
    std::fs::create_dir_all(&scratch).unwrap();
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["appspec", "lint"])
        .arg(path)
        .env("TMPDIR", &scratch)
        .output()
        .expect("gantry runs");
    Run {
        code: status.code().expect("gantry exits"),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

fn hello() -> PathBuf {
    workspace_root().join("examples/hello")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Every path under `dir`, for checking that nothing was left behind.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        for child in std::fs::read_dir(&current).unwrap() {
            let path = child.unwrap().path();
            if std::fs::symlink_metadata(&path).unwrap().is_dir() {
                stack.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}

#[test]
fn valid_directory_appspec_file_and_bundles_pass() {
    let sandbox = tempfile::tempdir().unwrap();
    let run = lint(&hello(), sandbox.path());
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("valid (1 files entries, 1 permissions entries, 3 hook scripts)"),
        "{}",
        run.stdout
    );

    let run = lint(&hello().join("appspec.yml"), sandbox.path());
    assert_eq!(run.code, 0, "{}", run.stderr);

    let flat = archive::entries_of(&hello(), "").unwrap();
    let wrapped = archive::entries_of(&hello(), "hello-1.0/").unwrap();
    for (name, bytes) in [
        ("hello.zip", archive::zip(&flat)),
        ("hello.tar", archive::tar(&flat)),
        ("hello.tgz", archive::tgz(&flat)),
        (
            "wrapped.tgz",
            archive::tgz(&[vec![Entry::dir("hello-1.0/")], wrapped.clone()].concat()),
        ),
        ("wrapped.zip", archive::zip(&wrapped)),
    ] {
        let bundle = write(sandbox.path(), name, &bytes);
        let run = lint(&bundle, sandbox.path());
        assert_eq!(run.code, 0, "{name}: {}{}", run.stdout, run.stderr);
    }
    assert!(
        tree(&sandbox.path().join("tmp")).is_empty(),
        "scratch space is cleaned up"
    );
}

#[test]
fn invalid_appspec_lists_every_problem_with_its_field() {
    let sandbox = tempfile::tempdir().unwrap();
    let path = write(
        sandbox.path(),
        "appspec.yml",
        b"version: 1.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: a.sh\n      timeout: -5\n  Deploy: []\nfile_exists_behavior: KEEP\n",
    );
    let run = lint(&path, sandbox.path());
    assert_eq!(run.code, 1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    assert!(
        lines[0].starts_with("error: version: must be 0.0"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(
            "error: hooks.AfterInstall[0].timeout: must be a whole number of seconds from 1 to 3600"
        ),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("error: hooks.Deploy: is not a lifecycle event"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3]
            .starts_with("error: file_exists_behavior: must be one of DISALLOW, OVERWRITE, RETAIN"),
        "{}",
        lines[3]
    );
    assert!(run.stderr.contains("4 problems found"), "{}", run.stderr);
}

#[test]
fn missing_files_and_scripts_are_named() {
    let sandbox = tempfile::tempdir().unwrap();
    let revision = sandbox.path().join("rev");
    std::fs::create_dir_all(revision.join("scripts")).unwrap();
    std::fs::write(
        revision.join("appspec.yml"),
        "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv\nhooks:\n  AfterInstall:\n    - location: scripts/setup.sh\n  ValidateService:\n    - location: scripts\n",
    )
    .unwrap();
    let run = lint(&revision, sandbox.path());
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout.lines().collect::<Vec<_>>(),
        vec![
            "error: files[0].source: \"site\" does not exist in the revision",
            "error: hooks.AfterInstall[0].location: \"scripts/setup.sh\" does not exist in the revision",
            "error: hooks.ValidateService[0].location: \"scripts\" is not a file in the revision",
        ]
    );

    let empty = sandbox.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let run = lint(&empty, sandbox.path());
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("no appspec.yml or appspec.yaml"),
        "{}",
        run.stdout
    );
}

#[test]
fn usage_and_io_errors_exit_two() {
    let sandbox = tempfile::tempdir().unwrap();
    let run = lint(&sandbox.path().join("nothing-here"), sandbox.path());
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("cannot read"), "{}", run.stderr);
    let status = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["appspec", "lint"])
        .output()
        .unwrap()
        .status;
    assert_eq!(status.code(), Some(2));
}

#[test]
fn corrupt_archives_are_invalid_not_crashes() {
    let sandbox = tempfile::tempdir().unwrap();
    let mut bytes = archive::tgz(&[Entry::file("appspec.yml", b"version: 0.0\nos: linux\n")]);
    bytes.truncate(bytes.len() / 2);
    let run = lint(&write(sandbox.path(), "cut.tgz", &bytes), sandbox.path());
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.starts_with("error: bundle: "), "{}", run.stdout);
}

/// Each malicious archive is refused, the refused member is named, and nothing is
/// written outside the scratch directory, which is removed.
#[test]
fn unsafe_archives_are_refused_without_writing_outside() {
    let sandbox = tempfile::tempdir().unwrap();
    let outside = sandbox.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let absolute = format!("{}/absolute.txt", outside.display());
    let appspec = Entry::file("appspec.yml", b"version: 0.0\nos: linux\n");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot.tar",
            archive::tar(&[
                appspec.clone(),
                Entry::file("../../../outside/dotdot.txt", b"x"),
            ]),
            "../../../outside/dotdot.txt",
        ),
        (
            "dotdot.tgz",
            archive::tgz(&[Entry::file("a/../../escape.txt", b"x")]),
            "a/../../escape.txt",
        ),
        (
            "absolute.tar",
            archive::tar(&[Entry::file(&absolute, b"x")]),
            &absolute,
        ),
        (
            "symlink-out.tar",
            archive::tar(&[Entry::symlink("link", "../../../outside")]),
            "link",
        ),
        (
            "symlink-abs.tgz",
            archive::tgz(&[Entry::symlink("link", outside.to_str().unwrap())]),
            "link",
        ),
        (
            "through-symlink.tar",
            archive::tar(&[
                Entry::dir("real/"),
                Entry::symlink("alias", "real"),
                Entry::file("alias/file.txt", b"x"),
            ]),
            "alias/file.txt",
        ),
        (
            "symlink-chain.tar",
            archive::tar(&[Entry::symlink("here", "."), Entry::symlink("up", "here/..")]),
            "up",
        ),
        (
            "hardlink-out.tar",
            archive::tar(&[Entry::hard_link("passwd", "../../../../etc/passwd")]),
            "passwd",
        ),
        (
            "hardlink-abs.tar",
            archive::tar(&[Entry::hard_link("hosts", "/etc/hosts")]),
            "hosts",
        ),
        (
            "dotdot.zip",
            archive::zip(&[
                appspec.clone(),
                Entry::file("../../../outside/zip.txt", b"x"),
            ]),
            "../../../outside/zip.txt",
        ),
        (
            "absolute.zip",
            archive::zip(&[Entry::file(&absolute, b"x")]),
            &absolute,
        ),
        (
            "symlink-out.zip",
            archive::zip(&[Entry::symlink("link", "../../outside")]),
            "link",
        ),
    ];
    for (name, bytes, member) in cases {
        let bundle = write(sandbox.path(), name, &bytes);
        let run = lint(&bundle, sandbox.path());
        assert_eq!(run.code, 1, "{name}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stdout
                .contains(&format!("archive member {member:?} refused")),
            "{name}: {}",
            run.stdout
        );
        assert!(
            tree(&outside).is_empty(),
            "{name} wrote outside: {:?}",
            tree(&outside)
        );
        assert!(
            tree(&sandbox.path().join("tmp")).is_empty(),
            "{name} left files behind"
        );
        for stray in ["escape.txt", "dotdot.txt"] {
            assert!(!sandbox.path().join(stray).exists(), "{name} wrote {stray}");
        }
    }
}
