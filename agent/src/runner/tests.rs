use super::records::DEPLOYMENT_RECORDS_KEPT;
use super::revisions::{installed_revision, revision_record, same_revision};
use super::*;
use gantry_core::appspec::FileExistsBehavior;
use gantry_core::bundle::BundleType;
use gantry_core::lifecycle;
use gantry_core::wire::RevisionLocation;
use gantry_core::wire::{Cancel, Creator, S3Location};
use gantry_tests::archive::{self, Entry};
use std::cell::RefCell;

/// Serves bundles from a local directory, keyed by S3 key: a real file copy.
struct LocalBundles(PathBuf);

impl RevisionSource for LocalBundles {
    fn fetch(&self, command: &Command, destination: &Path) -> Result<(), String> {
        let RevisionLocation::S3 { s3_location } = &command.revision else {
            return Err("only S3 revisions here".to_owned());
        };
        fs::copy(self.0.join(&s3_location.key), destination)
            .map(|_| ())
            .map_err(|error| error.to_string())
    }
}

#[derive(Default)]
struct Collected(RefCell<Vec<Report>>);

impl ReportSink for Collected {
    fn send(&self, report: &Report) -> Result<(), String> {
        report.validate().map_err(|error| error.to_string())?;
        self.0.borrow_mut().push(report.clone());
        Ok(())
    }
}

struct Fixture {
    dir: tempfile::TempDir,
}

const APPSPEC: &str = "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/app\nhooks:\n  ApplicationStop:\n    - location: stop.sh\n  AfterInstall:\n    - location: after.sh\n  ValidateService:\n    - location: validate.sh\n";

impl Fixture {
    fn new() -> Self {
        let fixture = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(fixture.path("bundles")).unwrap();
        fs::create_dir_all(fixture.path("host")).unwrap();
        fixture
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A revision whose hooks leave traces in `<dir>/marks`.
    fn bundle(&self, key: &str, version: &str, validate_exit: u8) -> String {
        let marks = self.path("marks");
        let entries = vec![
            Entry::file("appspec.yml", APPSPEC.as_bytes()),
            Entry::file("site/index.html", version.as_bytes()),
            Entry::file_with_mode("stop.sh", format!("#!/bin/sh\necho \"stop {version} for $DEPLOYMENT_ID\" >> {}\n", marks.display()).as_bytes(), 0o755),
            Entry::file_with_mode("after.sh", format!("#!/bin/sh\necho \"after $LIFECYCLE_EVENT $APPLICATION_NAME $BUNDLE_KEY\" >> {}\n", marks.display()).as_bytes(), 0o755),
            Entry::file_with_mode("validate.sh", format!("#!/bin/sh\necho checking {version}\nexit {validate_exit}\n").as_bytes(), 0o755),
        ];
        fs::write(self.path("bundles").join(key), archive::tgz(&entries)).unwrap();
        key.to_owned()
    }

    fn command(&self, deployment_id: &str, key: &str) -> Command {
        Command {
            schema_version: SCHEMA_VERSION,
            deployment_id: deployment_id.to_owned(),
            deployment_group_id: "g-1".to_owned(),
            deployment_group_name: "web".to_owned(),
            application_name: "shop".to_owned(),
            instance_id: "host-1".to_owned(),
            revision: RevisionLocation::S3 {
                s3_location: S3Location {
                    bucket: "bundles".to_owned(),
                    key: key.to_owned(),
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
        }
    }

    fn cancel(&self, deployment_id: &str) {
        let host = Host {
            instance_id: "host-1",
            root_dir: &self.path("host/root"),
            install_root: &self.path("host/fs"),
            max_revisions: 5,
            term_grace: Duration::from_millis(200),
            abort: &AtomicBool::new(false),
        };
        let cancel = Cancel {
            deployment_id: deployment_id.to_owned(),
            instance_id: "host-1".to_owned(),
        };
        super::cancel(&host, &cancel).unwrap();
    }

    fn run(&self, command: &Command, max_revisions: usize) -> (Outcome, Vec<Report>) {
        let host = Host {
            instance_id: "host-1",
            root_dir: &self.path("host/root"),
            install_root: &self.path("host/fs"),
            max_revisions,
            term_grace: Duration::from_millis(200),
            abort: &AtomicBool::new(false),
        };
        let sink = Collected::default();
        let outcome = run(&host, command, &LocalBundles(self.path("bundles")), &sink).unwrap();
        (outcome, sink.0.into_inner())
    }

    fn marks(&self) -> String {
        fs::read_to_string(self.path("marks")).unwrap_or_default()
    }

    /// A revision with the same script on every hook a load-balanced in-place
    /// deployment has; each run leaves `<event> <version> <deployment>` in `marks`.
    fn load_balanced_bundle(&self, key: &str, version: &str) -> String {
        let hooks: String = LOAD_BALANCED_HOOKS
            .iter()
            .map(|event| format!("  {event}:\n    - location: hook.sh\n"))
            .collect();
        let appspec = format!(
            "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/app\nhooks:\n{hooks}"
        );
        let hook = format!(
            "#!/bin/sh\necho \"$LIFECYCLE_EVENT {version} $DEPLOYMENT_ID\" >> {}\n",
            self.path("marks").display()
        );
        let entries = vec![
            Entry::file("appspec.yml", appspec.as_bytes()),
            Entry::file("site/index.html", version.as_bytes()),
            Entry::file_with_mode("hook.sh", hook.as_bytes(), 0o755),
        ];
        fs::write(self.path("bundles").join(key), archive::tgz(&entries)).unwrap();
        key.to_owned()
    }

    /// The commands of an in-place deployment behind a load balancer, as the control
    /// plane sends them: the agent's events between BlockTraffic and AllowTraffic.
    fn load_balanced_commands(&self, deployment_id: &str, key: &str) -> [Command; 3] {
        let commands: Vec<Command> = lifecycle::in_place(true)
            .split(|event| event.performer() == Performer::ControlPlane)
            .map(|events| Command {
                lifecycle_events: events.to_vec(),
                ..self.command(deployment_id, key)
            })
            .collect();
        commands.try_into().unwrap()
    }

    /// The commands a deployment with `events` sends this host, split where the
    /// control plane acts (BlockTraffic, AllowTraffic).
    fn commands(&self, deployment_id: &str, key: &str, events: &[LifecycleEvent]) -> Vec<Command> {
        events
            .split(|event| event.performer() == Performer::ControlPlane)
            .filter(|stretch| !stretch.is_empty())
            .map(|stretch| Command {
                lifecycle_events: stretch.to_vec(),
                ..self.command(deployment_id, key)
            })
            .collect()
    }

    /// Leaves things as the agent does when it dies while `event` of `command` runs.
    fn interrupted_during(&self, command: &Command, event: LifecycleEvent) {
        let instructions = self.path("host/root/deployment-instructions");
        fs::create_dir_all(&instructions).unwrap();
        let mut interrupted = ended(command, event, 1_000, Ok(()));
        interrupted.status = EventStatus::InProgress;
        interrupted.end_time = None;
        interrupted.diagnostics = None;
        fs::write(
            instructions.join(format!("{}-host-1.running", command.deployment_id)),
            interrupted.to_json(),
        )
        .unwrap();
    }

    /// What the agent does as it starts: the deployments it reported on, and what it sent.
    fn recover(&self) -> (Vec<String>, Vec<Report>) {
        let host = Host {
            instance_id: "host-1",
            root_dir: &self.path("host/root"),
            install_root: &self.path("host/fs"),
            max_revisions: 5,
            term_grace: Duration::from_millis(200),
            abort: &AtomicBool::new(false),
        };
        let sink = Collected::default();
        let recovered = recover(&host, &sink).unwrap();
        (recovered, sink.0.into_inner())
    }

    /// The archive the last successful install came from.
    fn last_successful(&self) -> PathBuf {
        let file = self.path("host/root/deployment-instructions/g-1-last-successful-install");
        PathBuf::from(fs::read_to_string(file).unwrap().trim())
    }

    fn archive_of(&self, deployment_id: &str) -> PathBuf {
        self.path(&format!("host/root/g-1/{deployment_id}/deployment-archive"))
    }

    /// The final reports recorded for a deployment.
    fn recorded(&self, deployment_id: &str) -> Vec<Report> {
        let file = self.path(&format!(
            "host/root/deployment-instructions/{deployment_id}-host-1.reports"
        ));
        fs::read_to_string(file)
            .unwrap()
            .lines()
            .map(|line| Report::from_json(line).unwrap())
            .collect()
    }
}

const LOAD_BALANCED_HOOKS: [LifecycleEvent; 9] = [
    LifecycleEvent::BeforeBlockTraffic,
    LifecycleEvent::AfterBlockTraffic,
    LifecycleEvent::ApplicationStop,
    LifecycleEvent::BeforeInstall,
    LifecycleEvent::AfterInstall,
    LifecycleEvent::ApplicationStart,
    LifecycleEvent::ValidateService,
    LifecycleEvent::BeforeAllowTraffic,
    LifecycleEvent::AfterAllowTraffic,
];

/// What `load_balanced_bundle`'s hooks leave in `marks` when `runs` run, in order.
fn hook_marks(deployment_id: &str, runs: &[(LifecycleEvent, &str)]) -> String {
    runs.iter()
        .map(|(event, version)| format!("{event} {version} {deployment_id}\n"))
        .collect()
}

fn finals(reports: Vec<Report>) -> Vec<Report> {
    reports
        .into_iter()
        .filter(|r| r.status != EventStatus::InProgress)
        .collect()
}

/// A first load-balanced deployment of v1 (whose traffic and stop hooks have no
/// earlier revision to run), then the commands of d-AAAAAAAA2 deploying v2.
fn after_a_load_balanced_v1(fixture: &Fixture) -> [Command; 3] {
    use LifecycleEvent::*;
    let v1 = fixture.load_balanced_bundle("v1.tgz", "v1");
    for command in fixture.load_balanced_commands("d-AAAAAAAA1", &v1) {
        assert_eq!(fixture.run(&command, 5).0, Outcome::Succeeded);
    }
    assert_eq!(
        fixture.marks(),
        hook_marks(
            "d-AAAAAAAA1",
            &[
                (BeforeInstall, "v1"),
                (AfterInstall, "v1"),
                (ApplicationStart, "v1"),
                (ValidateService, "v1"),
                (BeforeAllowTraffic, "v1"),
                (AfterAllowTraffic, "v1"),
            ]
        )
    );
    assert_eq!(fixture.last_successful(), fixture.archive_of("d-AAAAAAAA1"));
    fs::remove_file(fixture.path("marks")).unwrap();
    let v2 = fixture.load_balanced_bundle("v2.tgz", "v2");
    fixture.load_balanced_commands("d-AAAAAAAA2", &v2)
}

fn statuses(reports: &[Report]) -> Vec<(LifecycleEvent, EventStatus)> {
    reports
        .iter()
        .map(|r| (r.lifecycle_event, r.status))
        .collect()
}

#[test]
fn a_cancelled_deployment_skips_the_events_not_started() {
    let fixture = Fixture::new();
    let instructions = fixture.path("host/root/deployment-instructions");
    // AfterInstall's script stands in for the cancel arriving while it runs.
    let entries = vec![
        Entry::file("appspec.yml", APPSPEC.as_bytes()),
        Entry::file("site/index.html", b"v1"),
        Entry::file_with_mode("stop.sh", b"#!/bin/sh\n", 0o755),
        Entry::file_with_mode(
            "after.sh",
            format!(
                "#!/bin/sh\ntouch {}/d-AAAAAAAA1-host-1.cancelled\n",
                instructions.display()
            )
            .as_bytes(),
            0o755,
        ),
        Entry::file_with_mode(
            "validate.sh",
            format!(
                "#!/bin/sh\necho validated >> {}\n",
                fixture.path("marks").display()
            )
            .as_bytes(),
            0o755,
        ),
    ];
    fs::write(fixture.path("bundles/v1.tgz"), archive::tgz(&entries)).unwrap();
    let command = fixture.command("d-AAAAAAAA1", "v1.tgz");
    let (outcome, reports) = fixture.run(&command, 5);
    assert_eq!(outcome, Outcome::Cancelled);
    let events = lifecycle::in_place(false);
    let after = events
        .iter()
        .position(|&event| event == LifecycleEvent::AfterInstall)
        .unwrap();
    let finals: Vec<(LifecycleEvent, EventStatus)> = statuses(&reports)
        .into_iter()
        .filter(|(_, status)| *status != EventStatus::InProgress)
        .collect();
    let expected: Vec<(LifecycleEvent, EventStatus)> = events
        .iter()
        .enumerate()
        .map(|(index, &event)| {
            let status = if index <= after {
                EventStatus::Succeeded
            } else {
                EventStatus::Skipped
            };
            (event, status)
        })
        .collect();
    assert_eq!(
        finals, expected,
        "the event running finishes; the rest are skipped"
    );
    assert_eq!(fixture.marks(), "", "ValidateService never ran");
    assert!(
        instructions.join("d-AAAAAAAA1-host-1.cancelled").exists(),
        "kept: a later command of the deployment runs nothing either"
    );
    assert!(
        !instructions.join("g-1-last-successful-install").exists(),
        "a cut-short install is not the last successful one"
    );
}

#[test]
fn a_command_cancelled_before_it_came_runs_nothing_and_one_past_its_start_by_says_nothing() {
    let fixture = Fixture::new();
    let key = fixture.bundle("v1.tgz", "v1", 0);
    fixture.cancel("d-AAAAAAAA1");
    let (outcome, reports) = fixture.run(&fixture.command("d-AAAAAAAA1", &key), 5);
    assert_eq!(outcome, Outcome::Cancelled);
    assert!(
        reports.iter().all(|r| r.status == EventStatus::Skipped),
        "{reports:?}"
    );
    assert_eq!(reports.len(), 7);
    assert!(!fixture.path("host/fs/srv/app/index.html").exists());

    let mut late = fixture.command("d-AAAAAAAA2", &key);
    late.start_by = Some(now_ms() - 1);
    let (outcome, reports) = fixture.run(&late, 5);
    assert_eq!(outcome, Outcome::Expired);
    assert!(
        reports.is_empty(),
        "the control plane has failed the host already"
    );
    assert!(!fixture.path("host/fs/srv/app/index.html").exists());

    // A cancel for a finished command changes nothing.
    let (outcome, _) = fixture.run(&fixture.command("d-AAAAAAAA3", &key), 5);
    assert_eq!(outcome, Outcome::Succeeded);
    fixture.cancel("d-AAAAAAAA3");
    let (outcome, reports) = fixture.run(&fixture.command("d-AAAAAAAA3", &key), 5);
    assert_eq!(outcome, Outcome::AlreadyDone);
    assert!(reports.iter().all(|r| r.status != EventStatus::Skipped));
}

#[test]
fn a_first_deployment_runs_every_event_and_reports_each_twice() {
    let fixture = Fixture::new();
    let key = fixture.bundle("v1.tgz", "v1", 0);
    let (outcome, reports) = fixture.run(&fixture.command("d-AAAAAAAA1", &key), 5);
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(reports.len(), 14);
    for (pair, event) in reports.chunks(2).zip(lifecycle::in_place(false)) {
        assert_eq!(
            statuses(pair),
            vec![
                (event, EventStatus::InProgress),
                (event, EventStatus::Succeeded)
            ]
        );
    }
    assert_eq!(
        fs::read_to_string(fixture.path("host/fs/srv/app/index.html")).unwrap(),
        "v1"
    );
    assert_eq!(
        fixture.marks(),
        "after AfterInstall shop v1.tgz\n",
        "no ApplicationStop on a first deployment"
    );
    let log =
        fs::read_to_string(fixture.path("host/root/g-1/d-AAAAAAAA1/logs/scripts.log")).unwrap();
    assert!(log.contains("checking v1"), "{log}");
    let instructions = fixture.path("host/root/deployment-instructions");
    assert!(!instructions.join("d-AAAAAAAA1-host-1.running").exists());
    assert!(instructions.join("d-AAAAAAAA1-host-1.reports").exists());
}

#[test]
fn application_stop_runs_the_last_successful_revisions_script() {
    let fixture = Fixture::new();
    let v1 = fixture.bundle("v1.tgz", "v1", 0);
    let v2 = fixture.bundle("v2.tgz", "v2", 0);
    fixture.run(&fixture.command("d-AAAAAAAA1", &v1), 5);
    let (outcome, _) = fixture.run(&fixture.command("d-AAAAAAAA2", &v2), 5);
    assert_eq!(outcome, Outcome::Succeeded);
    assert!(
        fixture.marks().contains("stop v1 for d-AAAAAAAA2"),
        "{}",
        fixture.marks()
    );
    assert_eq!(
        fs::read_to_string(fixture.path("host/fs/srv/app/index.html")).unwrap(),
        "v2"
    );
}

#[test]
fn a_failing_hook_ends_the_run_with_its_diagnostics() {
    let fixture = Fixture::new();
    let key = fixture.bundle("bad.tgz", "bad", 7);
    let (outcome, reports) = fixture.run(&fixture.command("d-AAAAAAAA1", &key), 5);
    assert_eq!(outcome, Outcome::Failed);
    let last = reports.last().unwrap();
    assert_eq!(
        (last.lifecycle_event, last.status),
        (LifecycleEvent::ValidateService, EventStatus::Failed)
    );
    let diagnostics = last.diagnostics.as_ref().unwrap();
    assert_eq!(diagnostics.error_code, ErrorCode::ScriptFailed);
    assert_eq!(diagnostics.script_name, "validate.sh");
    assert!(diagnostics.message.contains("exit code 7"));
    assert_eq!(diagnostics.log_tail, "checking bad\n");
    assert!(
        !fixture
            .path("host/root/deployment-instructions/g-1-last-successful-install")
            .exists()
    );
}

#[test]
fn a_redelivered_command_resends_its_final_reports_and_runs_nothing() {
    let fixture = Fixture::new();
    let key = fixture.bundle("v1.tgz", "v1", 0);
    let command = fixture.command("d-AAAAAAAA1", &key);
    let (_, first) = fixture.run(&command, 5);
    let marks = fixture.marks();
    let (outcome, again) = fixture.run(&command, 5);
    assert_eq!(outcome, Outcome::AlreadyDone);
    let finals: Vec<Report> = first
        .into_iter()
        .filter(|r| r.status != EventStatus::InProgress)
        .collect();
    assert_eq!(again, finals);
    assert_eq!(fixture.marks(), marks, "no hook ran again");
}

#[test]
fn a_command_for_another_host_is_refused_and_not_reported() {
    let fixture = Fixture::new();
    let key = fixture.bundle("v1.tgz", "v1", 0);
    let mut command = fixture.command("d-AAAAAAAA1", &key);
    command.instance_id = "host-2".to_owned();
    let (outcome, reports) = fixture.run(&command, 5);
    assert_eq!(outcome, Outcome::Refused);
    assert_eq!(
        reports,
        Vec::new(),
        "no report under another instance's name"
    );
    assert!(
        !fixture.path("host/root/g-1").exists(),
        "nothing was downloaded"
    );
}

#[test]
fn ignored_application_stop_failures_let_the_deployment_go_on() {
    let fixture = Fixture::new();
    let v1 = fixture.bundle("v1.tgz", "v1", 0);
    fixture.run(&fixture.command("d-AAAAAAAA1", &v1), 5);
    // Break the installed revision's stop script.
    let archive = fixture.path("host/root/g-1/d-AAAAAAAA1/deployment-archive");
    fs::write(archive.join("stop.sh"), "#!/bin/sh\nexit 1\n").unwrap();
    let v2 = fixture.bundle("v2.tgz", "v2", 0);
    let (outcome, _) = fixture.run(&fixture.command("d-AAAAAAAA2", &v2), 5);
    assert_eq!(outcome, Outcome::Failed);
    let mut command = fixture.command("d-AAAAAAAA3", &v2);
    command.ignore_application_stop_failures = true;
    let (outcome, reports) = fixture.run(&command, 5);
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(reports[1].status, EventStatus::Succeeded);
}

#[test]
fn a_restart_reports_the_interrupted_event_failed_once() {
    let fixture = Fixture::new();
    let key = fixture.bundle("v1.tgz", "v1", 0);
    let command = fixture.command("d-AAAAAAAA1", &key);
    fixture.interrupted_during(&command, LifecycleEvent::AfterInstall);
    let (recovered, sent) = fixture.recover();
    assert_eq!(recovered, vec!["d-AAAAAAAA1".to_owned()]);
    assert_eq!(
        statuses(&sent),
        vec![(LifecycleEvent::AfterInstall, EventStatus::Failed)]
    );
    assert!(
        sent[0]
            .diagnostics
            .as_ref()
            .unwrap()
            .message
            .contains("agent stopped")
    );
    assert_eq!(fixture.recover(), (Vec::new(), Vec::new()), "reported once");

    // The redelivered command re-sends that final report and runs nothing.
    let (outcome, resent) = fixture.run(&command, 5);
    assert_eq!(outcome, Outcome::AlreadyDone);
    assert_eq!(resent, sent);
    assert_eq!(fixture.marks(), "");
}

#[test]
fn old_revisions_are_pruned_but_the_last_successful_is_kept() {
    let fixture = Fixture::new();
    let good = fixture.bundle("good.tgz", "good", 0);
    let bad = fixture.bundle("bad.tgz", "bad", 1);
    fixture.run(&fixture.command("d-AAAAAAAA1", &good), 1);
    fixture.run(&fixture.command("d-AAAAAAAA2", &bad), 1);
    fixture.run(&fixture.command("d-AAAAAAAA3", &bad), 1);
    let group = fixture.path("host/root/g-1");
    assert!(
        group.join("d-AAAAAAAA1").exists(),
        "the last successful revision stays"
    );
    assert!(
        !group.join("d-AAAAAAAA2").exists(),
        "older failed revisions go"
    );
    assert!(group.join("d-AAAAAAAA3").exists());
}

#[test]
fn a_load_balanced_deployment_runs_each_hook_once_across_its_three_commands() {
    use LifecycleEvent::*;
    let fixture = Fixture::new();
    let [block, install, allow] = after_a_load_balanced_v1(&fixture);
    assert_eq!(block.lifecycle_events, vec![BeforeBlockTraffic]);
    assert_eq!(
        install.lifecycle_events,
        vec![
            AfterBlockTraffic,
            ApplicationStop,
            DownloadBundle,
            BeforeInstall,
            Install,
            AfterInstall,
            ApplicationStart,
            ValidateService,
            BeforeAllowTraffic
        ]
    );
    assert_eq!(allow.lifecycle_events, vec![AfterAllowTraffic]);

    let (outcome, block_reports) = fixture.run(&block, 5);
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(
        statuses(&block_reports),
        vec![
            (BeforeBlockTraffic, EventStatus::InProgress),
            (BeforeBlockTraffic, EventStatus::Succeeded)
        ]
    );
    let mut runs = vec![(BeforeBlockTraffic, "v1")];
    assert_eq!(fixture.marks(), hook_marks("d-AAAAAAAA2", &runs));
    assert_eq!(
        fixture.last_successful(),
        fixture.archive_of("d-AAAAAAAA1"),
        "v2 is not even downloaded yet"
    );

    let (outcome, install_reports) = fixture.run(&install, 5);
    assert_eq!(outcome, Outcome::Succeeded);
    let install_finals = finals(install_reports);
    assert_eq!(
        statuses(&install_finals),
        install
            .lifecycle_events
            .iter()
            .map(|&event| (event, EventStatus::Succeeded))
            .collect::<Vec<_>>()
    );
    runs.extend([
        (AfterBlockTraffic, "v1"),
        (ApplicationStop, "v1"),
        (BeforeInstall, "v2"),
        (AfterInstall, "v2"),
        (ApplicationStart, "v2"),
        (ValidateService, "v2"),
        (BeforeAllowTraffic, "v2"),
    ]);
    assert_eq!(fixture.marks(), hook_marks("d-AAAAAAAA2", &runs));
    assert_eq!(
        fs::read_to_string(fixture.path("host/fs/srv/app/index.html")).unwrap(),
        "v2"
    );
    assert_eq!(fixture.last_successful(), fixture.archive_of("d-AAAAAAAA2"));

    // Redeliveries of either finished command re-send their own reports only.
    let (outcome, again) = fixture.run(&install, 5);
    assert_eq!(outcome, Outcome::AlreadyDone);
    assert_eq!(again, install_finals);
    let (outcome, again) = fixture.run(&block, 5);
    assert_eq!(outcome, Outcome::AlreadyDone);
    assert_eq!(again, finals(block_reports));
    assert_eq!(fixture.marks(), hook_marks("d-AAAAAAAA2", &runs));

    let (outcome, _) = fixture.run(&allow, 5);
    assert_eq!(outcome, Outcome::Succeeded);
    runs.push((AfterAllowTraffic, "v2"));
    assert_eq!(fixture.marks(), hook_marks("d-AAAAAAAA2", &runs));
    assert_eq!(fixture.last_successful(), fixture.archive_of("d-AAAAAAAA2"));
    assert_eq!(
        statuses(&fixture.recorded("d-AAAAAAAA2")),
        [
            block.lifecycle_events,
            install.lifecycle_events,
            allow.lifecycle_events
        ]
        .concat()
        .into_iter()
        .map(|event| (event, EventStatus::Succeeded))
        .collect::<Vec<_>>(),
        "one record across the deployment's commands"
    );
}

#[test]
fn a_restart_during_the_install_command_fails_the_interrupted_event_once() {
    use LifecycleEvent::*;
    let fixture = Fixture::new();
    let [block, install, _] = after_a_load_balanced_v1(&fixture);
    assert_eq!(fixture.run(&block, 5).0, Outcome::Succeeded);
    fixture.interrupted_during(&install, AfterInstall);

    let (recovered, sent) = fixture.recover();
    assert_eq!(recovered, vec!["d-AAAAAAAA2".to_owned()]);
    assert_eq!(
        statuses(&sent),
        vec![(AfterInstall, EventStatus::Failed)],
        "the first command's record does not hide the interrupted event"
    );
    assert_eq!(fixture.recover(), (Vec::new(), Vec::new()), "reported once");

    let (outcome, resent) = fixture.run(&install, 5);
    assert_eq!(outcome, Outcome::AlreadyDone);
    assert_eq!(resent, sent);
    assert_eq!(
        fixture.marks(),
        hook_marks("d-AAAAAAAA2", &[(BeforeBlockTraffic, "v1")]),
        "nothing ran again"
    );
    assert_eq!(fixture.last_successful(), fixture.archive_of("d-AAAAAAAA1"));
    assert_eq!(
        statuses(&fixture.recorded("d-AAAAAAAA2")),
        vec![
            (BeforeBlockTraffic, EventStatus::Succeeded),
            (AfterInstall, EventStatus::Failed)
        ]
    );

    // Stopped after an event's report was recorded but before its running record
    // went: that event is not reported again.
    fixture.interrupted_during(&block, BeforeBlockTraffic);
    assert_eq!(fixture.recover(), (Vec::new(), Vec::new()));
    assert!(
        !fixture
            .path("host/root/deployment-instructions/d-AAAAAAAA2-host-1.running")
            .exists()
    );
    assert_eq!(fixture.recorded("d-AAAAAAAA2").len(), 2);
}

#[test]
fn a_cancel_after_the_first_command_skips_every_event_of_the_later_ones() {
    use LifecycleEvent::*;
    let fixture = Fixture::new();
    let [block, install, allow] = after_a_load_balanced_v1(&fixture);
    assert_eq!(fixture.run(&block, 5).0, Outcome::Succeeded);
    fixture.cancel("d-AAAAAAAA2");

    let (outcome, reports) = fixture.run(&install, 5);
    assert_eq!(outcome, Outcome::Cancelled);
    assert_eq!(
        statuses(&reports),
        install
            .lifecycle_events
            .iter()
            .map(|&event| (event, EventStatus::Skipped))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        fixture.marks(),
        hook_marks("d-AAAAAAAA2", &[(BeforeBlockTraffic, "v1")]),
        "no hook ran"
    );
    assert_eq!(
        fs::read_to_string(fixture.path("host/fs/srv/app/index.html")).unwrap(),
        "v1"
    );
    assert!(!fixture.archive_of("d-AAAAAAAA2").exists());
    assert_eq!(fixture.last_successful(), fixture.archive_of("d-AAAAAAAA1"));

    let (outcome, again) = fixture.run(&install, 5);
    assert_eq!(outcome, Outcome::AlreadyDone);
    assert_eq!(again, reports);
    let (outcome, reports) = fixture.run(&allow, 5);
    assert_eq!(outcome, Outcome::Cancelled);
    assert_eq!(
        statuses(&reports),
        vec![(AfterAllowTraffic, EventStatus::Skipped)]
    );
}

#[test]
fn records_of_deployments_past_the_queues_retention_are_pruned() {
    let fixture = Fixture::new();
    let key = fixture.bundle("v1.tgz", "v1", 0);
    fixture.run(&fixture.command("d-AAAAAAAA1", &key), 5);
    fixture.cancel("d-AAAAAAAA8");
    fixture.cancel("d-AAAAAAAA9");
    let instructions = fixture.path("host/root/deployment-instructions");
    let long_ago = SystemTime::now() - DEPLOYMENT_RECORDS_KEPT - Duration::from_secs(60);
    for old in ["d-AAAAAAAA1-host-1.reports", "d-AAAAAAAA8-host-1.cancelled"] {
        fs::File::options()
            .write(true)
            .open(instructions.join(old))
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
    }

    fixture.run(&fixture.command("d-AAAAAAAA2", &key), 5);
    assert!(!instructions.join("d-AAAAAAAA1-host-1.reports").exists());
    assert!(!instructions.join("d-AAAAAAAA8-host-1.cancelled").exists());
    for kept in [
        "d-AAAAAAAA2-host-1.reports",
        "d-AAAAAAAA9-host-1.cancelled",
        "g-1-last-successful-install",
        "g-1-cleanup",
    ] {
        assert!(instructions.join(kept).exists(), "{kept}");
    }
}

/// What a blue/green rollback sends an original instance, which still runs the
/// revision an earlier deployment installed: that revision's BeforeAllowTraffic and
/// AfterAllowTraffic, with no DownloadBundle.
#[test]
fn a_blue_green_rollback_runs_the_installed_revisions_traffic_hooks_without_downloading_it() {
    use LifecycleEvent::*;
    let fixture = Fixture::new();
    after_a_load_balanced_v1(&fixture);
    let v1 = "v1.tgz";
    // The blue/green deployment of v2: this original instance is blocked with the
    // running revision's scripts, and never gets v2.
    for command in fixture.commands("d-AAAAAAAA2", "v2.tgz", &lifecycle::blue_green_original()) {
        assert_eq!(fixture.run(&command, 5).0, Outcome::Succeeded);
    }
    // Its rollback gives the instance traffic back: the revision is v1, installed
    // by d-AAAAAAAA1.
    let rollback = fixture.commands(
        "d-AAAAAAAA3",
        v1,
        &lifecycle::blue_green_rollback_original(),
    );
    assert_eq!(rollback.len(), 2);
    let mut sent = Vec::new();
    for command in &rollback {
        let (outcome, reports) = fixture.run(command, 5);
        assert_eq!(outcome, Outcome::Succeeded, "{reports:?}");
        sent.extend(finals(reports));
    }
    assert_eq!(
        statuses(&sent),
        vec![
            (BeforeAllowTraffic, EventStatus::Succeeded),
            (AfterAllowTraffic, EventStatus::Succeeded)
        ]
    );
    assert_eq!(
        fixture.marks(),
        [
            hook_marks(
                "d-AAAAAAAA2",
                &[(BeforeBlockTraffic, "v1"), (AfterBlockTraffic, "v1")]
            ),
            hook_marks(
                "d-AAAAAAAA3",
                &[(BeforeAllowTraffic, "v1"), (AfterAllowTraffic, "v1")]
            ),
        ]
        .concat(),
        "v1's scripts, from d-AAAAAAAA1's archive"
    );
    assert!(
        !fixture.archive_of("d-AAAAAAAA3").exists(),
        "nothing downloaded"
    );
    assert!(
        !fixture.path("host/root/g-1/d-AAAAAAAA3/bundle").exists(),
        "nothing downloaded"
    );
    assert_eq!(fixture.last_successful(), fixture.archive_of("d-AAAAAAAA1"));
    assert_eq!(
        fs::read_to_string(fixture.path("host/fs/srv/app/index.html")).unwrap(),
        "v1"
    );

    // Redelivered, the commands re-send their reports and run nothing.
    let marks = fixture.marks();
    for command in &rollback {
        assert_eq!(fixture.run(command, 5).0, Outcome::AlreadyDone);
    }
    assert_eq!(fixture.marks(), marks);
}

/// An event that needs the deployment's revision, on a host where no DownloadBundle of
/// it ran and the last successful install is not that revision (or none, or one whose
/// revision is not known), fails saying so; no script runs.
#[test]
fn an_event_whose_revision_is_not_on_this_host_fails_saying_why() {
    use LifecycleEvent::*;
    let fixture = Fixture::new();
    let v1 = fixture.load_balanced_bundle("v1.tgz", "v1");
    let fails = |command: &Command, expected: &[&str]| {
        let (outcome, reports) = fixture.run(command, 5);
        assert_eq!(outcome, Outcome::Failed);
        let last = reports.last().unwrap();
        assert_eq!(
            (last.lifecycle_event, last.status),
            (command.lifecycle_events[0], EventStatus::Failed),
            "{reports:?}"
        );
        let diagnostics = last.diagnostics.as_ref().unwrap();
        assert_eq!(diagnostics.error_code, ErrorCode::UnknownError);
        for part in expected {
            assert!(
                diagnostics.message.contains(part),
                "{part:?} not in {:?}",
                diagnostics.message
            );
        }
        assert_eq!(
            statuses(&finals(reports)).len(),
            1,
            "the command stops there"
        );
    };
    let events = |events: &[LifecycleEvent], id: &str, key: &str| Command {
        lifecycle_events: events.to_vec(),
        ..fixture.command(id, key)
    };

    // Nothing installed here yet.
    fails(
        &events(&[BeforeAllowTraffic], "d-AAAAAAAA1", &v1),
        &[
            "BeforeAllowTraffic needs the bundle of revision s3://bundles/v1.tgz",
            "not on this host (host-1)",
            "deployment d-AAAAAAAA1 did not download it here",
            "there is no successful install for deployment group g-1 on this host",
        ],
    );

    for command in fixture.load_balanced_commands("d-AAAAAAAA2", &v1) {
        assert_eq!(fixture.run(&command, 5).0, Outcome::Succeeded);
    }
    fs::remove_file(fixture.path("marks")).unwrap();
    let v2 = fixture.load_balanced_bundle("v2.tgz", "v2");
    // Another revision is installed.
    for (n, event) in [
        BeforeAllowTraffic,
        AfterAllowTraffic,
        ValidateService,
        AfterInstall,
    ]
    .into_iter()
    .enumerate()
    {
        fails(
            &events(&[event], &format!("d-AAAAAAAC{n}"), &v2),
            &[
                &format!("{event} needs the bundle of revision s3://bundles/v2.tgz"),
                "the last successful install for deployment group g-1 on this host is of another revision, s3://bundles/v1.tgz",
            ],
        );
    }
    // The same key, another object.
    let mut other_object = events(&[BeforeAllowTraffic], "d-AAAAAAAB1", &v1);
    let RevisionLocation::S3 { s3_location } = &mut other_object.revision else {
        unreachable!()
    };
    s3_location.e_tag = Some("\"0123\"".to_owned());
    fails(
        &other_object,
        &[
            "revision s3://bundles/v1.tgz ETag \"0123\"",
            "is of another revision, s3://bundles/v1.tgz",
        ],
    );
    // Install, too, needs this deployment's own download.
    fails(
        &events(&[Install, AfterInstall], "d-AAAAAAAB2", &v1),
        &["Install needs the bundle of revision s3://bundles/v1.tgz"],
    );
    // An install recorded before revisions were.
    fs::remove_file(fixture.path("host/root/g-1/d-AAAAAAAA2/revision.yml")).unwrap();
    fails(
        &events(&[AfterAllowTraffic], "d-AAAAAAAB3", &v1),
        &["has no record of its revision (an older agent installed it)"],
    );
    assert_eq!(fixture.marks(), "", "no script ran");
    assert_eq!(fixture.last_successful(), fixture.archive_of("d-AAAAAAAA2"));
}

#[test]
fn revisions_are_the_same_when_they_name_the_same_object_or_commit() {
    use gantry_core::wire::GitHubLocation;
    let s3 =
        |key: &str, bundle_type, version: Option<&str>, e_tag: Option<&str>| RevisionLocation::S3 {
            s3_location: S3Location {
                bucket: "bundles".to_owned(),
                key: key.to_owned(),
                bundle_type,
                version: version.map(str::to_owned),
                e_tag: e_tag.map(str::to_owned),
            },
        };
    let github = |repository: &str, commit: &str| RevisionLocation::GitHub {
        git_hub_location: GitHubLocation {
            repository: repository.to_owned(),
            commit_id: commit.to_owned(),
        },
    };
    let pinned = s3("a.tgz", BundleType::Tgz, Some("v1"), Some("\"e1\""));
    assert!(same_revision(&pinned, &pinned.clone()));
    assert!(same_revision(
        &pinned,
        &s3("a.tgz", BundleType::Tar, Some("v1"), Some("\"e1\""))
    ));
    for other in [
        s3("b.tgz", BundleType::Tgz, Some("v1"), Some("\"e1\"")),
        s3("a.tgz", BundleType::Tgz, Some("v2"), Some("\"e1\"")),
        s3("a.tgz", BundleType::Tgz, Some("v1"), Some("\"e2\"")),
        s3("a.tgz", BundleType::Tgz, None, Some("\"e1\"")),
        s3("a.tgz", BundleType::Tgz, Some("v1"), None),
        github("o/a", "0123456789abcdef"),
    ] {
        assert!(!same_revision(&pinned, &other), "{other:?}");
        assert!(!same_revision(&other, &pinned), "{other:?}");
    }
    let commit = github("o/a", "0123456789abcdef");
    assert!(same_revision(&commit, &github("o/a", "0123456789abcdef")));
    assert!(!same_revision(&commit, &github("o/b", "0123456789abcdef")));
    assert!(!same_revision(&commit, &github("o/a", "fedcba9876543210")));

    // The record beside an archive reads back as written.
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("deployment-archive");
    for revision in [pinned, commit] {
        let yaml = serde_norway::to_string(&revision).unwrap();
        fs::write(revision_record(&archive), yaml).unwrap();
        assert_eq!(installed_revision(&archive), Ok(revision));
    }
    fs::write(revision_record(&archive), "revisionType: Zip\n").unwrap();
    assert!(
        installed_revision(&archive)
            .unwrap_err()
            .starts_with("has a damaged record of its revision")
    );
}
