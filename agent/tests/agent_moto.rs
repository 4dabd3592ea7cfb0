//! The agent binary against a real moto server: commands from its SQS queue, bundles
//! from S3, reports back on the reports queue.

use aws_sdk_s3::primitives::ByteStream;
use gantry_core::appspec::FileExistsBehavior;
use gantry_core::bundle::BundleType;
use gantry_core::lifecycle;
use gantry_core::wire::{
    self, Command, Creator, EventStatus, Report, RevisionLocation, S3Location, SCHEMA_VERSION,
};
use gantry_tests::archive::{self, Entry};
use gantry_tests::moto::Moto;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The agent process, killed by pid when the test ends.
struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Stack {
    moto: Moto,
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    commands: String,
    reports: String,
}

async fn stack() -> Stack {
    let moto = Moto::start().expect("moto starts");
    let config = moto.sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::new(&config);
    s3.create_bucket().bucket("bundles").send().await.unwrap();
    let queue = |name: &'static str| {
        let sqs = sqs.clone();
        async move {
            sqs.create_queue()
                .queue_name(name)
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap()
        }
    };
    let commands = queue("gantry-cmd-host-1").await;
    let reports = queue("gantry-reports").await;
    Stack {
        moto,
        s3,
        sqs,
        commands,
        reports,
    }
}

fn start_agent(stack: &Stack, dir: &Path) -> AgentProcess {
    start_agent_with(stack, dir, "")
}

/// The agent with `extra` configuration lines.
fn start_agent_with(stack: &Stack, dir: &Path, extra: &str) -> AgentProcess {
    start_agent_as(stack, dir, "identity:\n  on_premises_name: host-1\n", extra)
}

/// The agent with this `identity` section and `extra` configuration lines.
fn start_agent_as(stack: &Stack, dir: &Path, identity: &str, extra: &str) -> AgentProcess {
    start_agent_env(stack, dir, identity, extra, &[])
}

/// The agent with `env` on top of moto's.
fn start_agent_env(
    stack: &Stack,
    dir: &Path,
    identity: &str,
    extra: &str,
    env: &[(&str, String)],
) -> AgentProcess {
    let config = dir.join("agent.yml");
    std::fs::write(
        &config,
        format!(
            "{identity}region: us-east-1\nqueue_prefix: gantry-cmd-\nreports_queue: gantry-reports\nroot_dir: {0}/root\nlog_dir: {0}/logs\ninstall_root: {0}/fs\npoll_wait_seconds: 1\n{extra}",
            dir.display()
        ),
    )
    .unwrap();
    let stderr = std::fs::File::create(dir.join("agent.stderr")).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_gantry-agent"))
        .arg("--config")
        .arg(&config)
        .envs(stack.moto.sdk_env())
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("the agent starts");
    AgentProcess(child)
}

fn command(deployment_id: &str, e_tag: &str) -> Command {
    command_for(deployment_id, "shop.tgz", e_tag)
}

fn command_for(deployment_id: &str, key: &str, e_tag: &str) -> Command {
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
                e_tag: Some(e_tag.to_owned()),
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

/// Takes what the reports queue holds (waiting up to a second): the reports of each
/// message, as the agent grouped them.
async fn take_report_messages(stack: &Stack) -> Vec<Vec<Report>> {
    let received = stack
        .sqs
        .receive_message()
        .queue_url(&stack.reports)
        .wait_time_seconds(1)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let mut messages = Vec::new();
    for message in received.messages() {
        messages.push(
            wire::reports_from_json(message.body().unwrap())
                .expect("the agent sends valid reports"),
        );
        stack
            .sqs
            .delete_message()
            .queue_url(&stack.reports)
            .receipt_handle(message.receipt_handle().unwrap())
            .send()
            .await
            .unwrap();
    }
    messages
}

/// Asserts that each in-place event's end was reported once, in order, and its start at
/// most once: the start comes only when the event outlasted the sender's linger.
fn assert_each_event_ended_once(reports: &[Report], context: &str) {
    let ended: Vec<lifecycle::LifecycleEvent> = reports
        .iter()
        .filter(|r| r.status != EventStatus::InProgress)
        .map(|r| r.lifecycle_event)
        .collect();
    assert_eq!(ended, lifecycle::in_place(false), "{context}");
    for event in &ended {
        let starts = reports
            .iter()
            .filter(|r| r.status == EventStatus::InProgress && r.lifecycle_event == *event)
            .count();
        assert!(starts <= 1, "{event:?} started {starts} times: {context}");
    }
}

/// Reports for one deployment, until its last event ends or the deadline passes.
async fn reports_until_done(stack: &Stack, deployment_id: &str, deadline: Duration) -> Vec<Report> {
    let until = Instant::now() + deadline;
    let mut reports = Vec::new();
    while Instant::now() < until {
        reports.extend(
            take_report_messages(stack)
                .await
                .into_iter()
                .flatten()
                .filter(|report| report.deployment_id == deployment_id),
        );
        let ended = reports.iter().any(|r| {
            r.status == EventStatus::Failed
                || (r.lifecycle_event == lifecycle::LifecycleEvent::ValidateService
                    && r.status == EventStatus::Succeeded)
        });
        if ended {
            break;
        }
    }
    reports.sort_by_key(|r| (r.start_time, r.status != EventStatus::InProgress));
    reports
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_deploys_from_its_queue_survives_poison_and_checks_etags() {
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("marks");
    let e_tag = put_bundle(
        &stack,
        "shop.tgz",
        &[
        Entry::file(
            "appspec.yml",
            b"version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/shop\nhooks:\n  AfterInstall:\n    - location: after.sh\n",
        ),
        Entry::file("site/index.html", b"shop v1"),
        Entry::file_with_mode(
            "after.sh",
            format!("#!/bin/sh\necho \"$DEPLOYMENT_ID $BUNDLE_BUCKET $BUNDLE_KEY\" >> {}\n", marks.display()).as_bytes(),
            0o755,
        ),
        ],
    )
    .await;

    let mut agent = start_agent(&stack, dir.path());
    send_body(&stack, "this is not a command".to_owned()).await;
    send_command(&stack, &command("d-AGENT0001", &e_tag)).await;

    let reports = reports_until_done(&stack, "d-AGENT0001", Duration::from_secs(90)).await;
    let stderr = std::fs::read_to_string(dir.path().join("agent.stderr")).unwrap_or_default();
    assert_each_event_ended_once(&reports, &format!("{reports:#?}\nagent said:\n{stderr}"));
    assert!(
        reports.iter().all(|r| r.status != EventStatus::Failed),
        "{reports:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("fs/srv/shop/index.html")).unwrap(),
        "shop v1"
    );
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap(),
        "d-AGENT0001 bundles shop.tgz\n"
    );
    assert!(stderr.contains("refusing a malformed command"), "{stderr}");
    assert!(
        agent.0.try_wait().unwrap().is_none(),
        "the agent survives a poison message"
    );

    // The agent's own log is JSON lines carrying the deployment and instance ids.
    let log = std::fs::read_to_string(dir.path().join("logs/gantry-agent.log")).unwrap();
    let done = log
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("JSON log lines"))
        .find(|line| line["fields"]["message"] == "command done")
        .expect("a 'command done' line");
    assert_eq!(done["span"]["deployment_id"], "d-AGENT0001", "{done}");
    assert_eq!(done["span"]["instance_id"], "host-1", "{done}");

    // A bundle changed after it was registered is refused at DownloadBundle.
    send_command(&stack, &command("d-AGENT0002", "\"0123456789abcdef\"")).await;
    let reports = reports_until_done(&stack, "d-AGENT0002", Duration::from_secs(60)).await;
    let failed = failed_event(&reports);
    assert_eq!(
        failed.lifecycle_event,
        lifecycle::LifecycleEvent::DownloadBundle
    );
    let message = &failed.diagnostics.as_ref().unwrap().message;
    assert!(message.contains("changed after it was pushed"), "{message}");
}

async fn put_bundle(stack: &Stack, key: &str, entries: &[Entry]) -> String {
    stack
        .s3
        .put_object()
        .bucket("bundles")
        .key(key)
        .body(ByteStream::from(archive::tgz(entries)))
        .send()
        .await
        .unwrap()
        .e_tag
        .unwrap()
}

/// Sends `command` as the control plane does: an S3 revision's with a presigned link
/// to its bundle, unless it has one.
async fn send_command(stack: &Stack, command: &Command) {
    send_body(stack, linked(stack, command).await.to_json()).await;
}

/// `command` with a presigned link to its S3 bundle, as the control plane signs it,
/// unless it has one.
async fn linked(stack: &Stack, command: &Command) -> Command {
    let mut command = command.clone();
    if let RevisionLocation::S3 { s3_location } = &command.revision
        && command.bundle_url.is_none()
    {
        let presigning =
            aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(3600))
                .unwrap();
        let link = stack
            .s3
            .get_object()
            .bucket(&s3_location.bucket)
            .key(&s3_location.key)
            .presigned(presigning)
            .await
            .unwrap();
        command.bundle_url = Some(link.uri().to_owned());
    }
    command
}

async fn send_body(stack: &Stack, body: String) {
    stack
        .sqs
        .send_message()
        .queue_url(&stack.commands)
        .message_body(body)
        .send()
        .await
        .unwrap();
}

/// A second install replaces the first, a redelivered command runs nothing twice, and an
/// unsafe bundle fails DownloadBundle with nothing written or installed.
#[tokio::test(flavor = "multi_thread")]
async fn redeliveries_reinstalls_and_unsafe_bundles() {
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("marks");
    let appspec = Entry::file(
        "appspec.yml",
        b"version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/shop\nhooks:\n  AfterInstall:\n    - location: after.sh\n",
    );
    let hook = Entry::file_with_mode(
        "after.sh",
        format!(
            "#!/bin/sh\necho \"$DEPLOYMENT_ID\" >> {}\n",
            marks.display()
        )
        .as_bytes(),
        0o755,
    );
    let v1 = put_bundle(
        &stack,
        "v1.tgz",
        &[
            appspec.clone(),
            hook.clone(),
            Entry::file("site/index.html", b"v1"),
            Entry::file("site/old.html", b"old"),
        ],
    )
    .await;
    let v2 = put_bundle(
        &stack,
        "v2.tgz",
        &[
            appspec.clone(),
            hook.clone(),
            Entry::file("site/index.html", b"v2"),
        ],
    )
    .await;
    let evil = put_bundle(
        &stack,
        "evil.tgz",
        &[
            appspec,
            hook,
            Entry::file("site/index.html", b"evil"),
            Entry::file("../../../escape.txt", b"x"),
        ],
    )
    .await;
    let _agent = start_agent(&stack, dir.path());
    let installed =
        |name: &str| std::fs::read_to_string(dir.path().join("fs/srv/shop").join(name)).ok();

    let first = command_for("d-E2E000001", "v1.tgz", &v1);
    send_command(&stack, &first).await;
    let reports = reports_until_done(&stack, "d-E2E000001", Duration::from_secs(60)).await;
    assert_each_event_ended_once(&reports, &format!("{reports:#?}"));
    assert_eq!(installed("old.html").as_deref(), Some("old"));

    // The same command delivered again: its final reports again, and no hook runs.
    send_command(&stack, &first).await;
    let again = reports_until_done(&stack, "d-E2E000001", Duration::from_secs(60)).await;
    assert_eq!(again.len(), 7, "{again:#?}");
    assert!(again.iter().all(|r| r.status == EventStatus::Succeeded));
    assert_eq!(std::fs::read_to_string(&marks).unwrap(), "d-E2E000001\n");

    send_command(&stack, &command_for("d-E2E000002", "v2.tgz", &v2)).await;
    let reports = reports_until_done(&stack, "d-E2E000002", Duration::from_secs(60)).await;
    assert_each_event_ended_once(&reports, &format!("{reports:#?}"));
    assert_eq!(installed("index.html").as_deref(), Some("v2"));
    assert_eq!(
        installed("old.html"),
        None,
        "the previous install's files are removed"
    );

    send_command(&stack, &command_for("d-E2E000003", "evil.tgz", &evil)).await;
    let reports = reports_until_done(&stack, "d-E2E000003", Duration::from_secs(60)).await;
    let failed = failed_event(&reports);
    assert_eq!(
        failed.lifecycle_event,
        lifecycle::LifecycleEvent::DownloadBundle
    );
    let message = &failed.diagnostics.as_ref().unwrap().message;
    assert!(
        message.contains("\"../../../escape.txt\" refused"),
        "{message}"
    );
    assert_eq!(
        installed("index.html").as_deref(),
        Some("v2"),
        "nothing installed"
    );
    for candidate in ["escape.txt", "root/escape.txt", "root/g-1/escape.txt"] {
        assert!(
            !dir.path().join(candidate).exists(),
            "{candidate} was written"
        );
    }
    assert!(!Path::new("/escape.txt").exists());
}

fn report(n: u64) -> Report {
    Report {
        schema_version: SCHEMA_VERSION,
        deployment_id: "d-QUEUED001".into(),
        instance_id: format!("host-{n}"),
        lifecycle_event: lifecycle::LifecycleEvent::Install,
        status: EventStatus::InProgress,
        start_time: n,
        end_time: None,
        diagnostics: None,
    }
}

// Current-thread: the sender runs only once the test awaits, so all 23 are queued first.
#[tokio::test]
async fn queued_reports_arrive_ten_to_a_message_and_a_flush_tells_what_was_not_sent() {
    use gantry_agent::aws::SqsReports;
    use gantry_agent::runner::ReportSink;
    let stack = stack().await;

    let reports = SqsReports::start(stack.sqs.clone(), stack.reports.clone());
    for n in 0..23 {
        reports.send(&report(n)).unwrap();
    }
    reports.all_sent().await.expect("every report was sent");
    let mut arrived = Vec::new();
    let mut messages = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while arrived.len() < 23 && Instant::now() < deadline {
        for carried in take_report_messages(&stack).await {
            assert!(carried.len() <= wire::REPORTS_PER_MESSAGE_MAX);
            messages += 1;
            arrived.extend(carried.iter().map(|report| report.start_time));
        }
    }
    arrived.sort();
    assert_eq!(arrived, (0..23).collect::<Vec<u64>>());
    // Queued together, so sent together: ten to a message.
    assert_eq!(messages, 3);

    let lost = stack.reports.replace("gantry-reports", "no-such-queue");
    let reports = SqsReports::start(stack.sqs.clone(), lost);
    reports.send(&report(0)).unwrap();
    let error = reports
        .all_sent()
        .await
        .expect_err("the queue does not exist");
    assert!(error.contains("1 report(s) not sent"), "{error}");
    // The failure was told once; what is queued after it starts clean.
    reports.all_sent().await.expect("nothing queued since");
}

// A quick event's start report never leaves: its end replaces it while it waits, and
// what waits leaves after the linger without anyone asking.
#[tokio::test]
async fn a_start_report_still_waiting_is_replaced_by_its_end_and_waiting_reports_leave_unasked() {
    use gantry_agent::aws::SqsReports;
    use gantry_agent::runner::ReportSink;
    let stack = stack().await;

    let reports = SqsReports::start(stack.sqs.clone(), stack.reports.clone());
    let started = report(1);
    let ended = Report {
        status: EventStatus::Succeeded,
        end_time: Some(2),
        ..started.clone()
    };
    let next = Report {
        lifecycle_event: lifecycle::LifecycleEvent::AfterInstall,
        start_time: 3,
        ..started.clone()
    };
    let other_host = report(4);
    for queued in [&started, &ended, &next, &other_host] {
        reports.send(queued).unwrap();
    }
    let mut messages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while messages.is_empty() && Instant::now() < deadline {
        messages = take_report_messages(&stack).await;
    }
    assert_eq!(
        messages,
        vec![vec![ended, next, other_host]],
        "one message, the end in its start's place"
    );
    reports.all_sent().await.expect("nothing failed");
}

/// A process the test must not leave behind, killed by its (positive) pid on drop.
struct Leftover(i32);

impl Drop for Leftover {
    fn drop(&mut self) {
        if self.0 > 1 && alive(self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

/// A bundle whose AfterInstall hook writes its pid to `pid_file`, then runs `then`.
async fn hook_bundle(stack: &Stack, key: &str, pid_file: &Path, then: &str) -> String {
    let appspec = Entry::file(
        "appspec.yml",
        b"version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: hook.sh\n      timeout: 300\n",
    );
    let hook = Entry::file_with_mode(
        "hook.sh",
        format!("#!/bin/sh\necho $$ > {}\n{then}\n", pid_file.display()).as_bytes(),
        0o755,
    );
    put_bundle(stack, key, &[appspec, hook]).await
}

/// Waits for the hook to write its pid, then asks the agent to stop as systemd does.
async fn stop_agent_during_hook(agent: &AgentProcess, pid_file: &Path) -> Leftover {
    let hook = pid_in(pid_file);
    let agent_pid = i32::try_from(agent.0.id()).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent_pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    Leftover(hook)
}

fn wait_for_exit(agent: &mut AgentProcess) -> std::process::ExitStatus {
    let mut status = None;
    assert!(
        gantry_tests::wait_until(Duration::from_secs(30), || {
            status = agent.0.try_wait().unwrap();
            status.is_some()
        }),
        "the agent did not exit after SIGTERM"
    );
    status.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn asked_to_stop_the_agent_lets_the_deployment_finish_within_its_grace() {
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("hook.pid");
    let e_tag = hook_bundle(&stack, "short.tgz", &pid_file, "sleep 3").await;
    let mut agent = start_agent_with(&stack, dir.path(), "stop_grace_seconds: 30\n");
    send_command(&stack, &command_for("d-STOP00001", "short.tgz", &e_tag)).await;
    let _hook = stop_agent_during_hook(&agent, &pid_file).await;
    let asked = Instant::now();

    assert!(wait_for_exit(&mut agent).success());
    // It waited for the hook's three seconds rather than leave at once.
    assert!(asked.elapsed() >= Duration::from_secs(2));
    let reports = reports_until_done(&stack, "d-STOP00001", Duration::from_secs(10)).await;
    assert_each_event_ended_once(&reports, &format!("{reports:#?}"));
    assert!(
        reports
            .iter()
            .all(|r| matches!(r.status, EventStatus::InProgress | EventStatus::Succeeded)),
        "{reports:#?}"
    );
    // Finished and deleted: nothing left to redeliver.
    let attributes = stack
        .sqs
        .get_queue_attributes()
        .queue_url(&stack.commands)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let count = |name| {
        attributes
            .attributes()
            .and_then(|all| all.get(&name))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages),
        "0"
    );
    assert_eq!(
        count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn past_its_grace_the_running_script_is_stopped_and_its_event_fails() {
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("hook.pid");
    let e_tag = hook_bundle(&stack, "long.tgz", &pid_file, "exec sleep 120").await;
    let mut agent = start_agent_with(&stack, dir.path(), "stop_grace_seconds: 1\n");
    send_command(&stack, &command_for("d-STOP00002", "long.tgz", &e_tag)).await;
    let hook = stop_agent_during_hook(&agent, &pid_file).await;

    assert!(wait_for_exit(&mut agent).success());
    assert!(!alive(hook.0), "the stopped script is gone");
    let reports = reports_until_done(&stack, "d-STOP00002", Duration::from_secs(10)).await;
    let failed = failed_event(&reports);
    assert_eq!(
        failed.lifecycle_event,
        lifecycle::LifecycleEvent::AfterInstall
    );
    let diagnostics = failed.diagnostics.as_ref().unwrap();
    assert_eq!(diagnostics.error_code, wire::ErrorCode::UnknownError);
    assert!(
        diagnostics.message.contains("SIGTERM"),
        "{}",
        diagnostics.message
    );
}

/// A forward HTTP proxy, as squid is one: a request in absolute form (`GET http://host/..`)
/// goes to its host, rewritten to origin form, and `CONNECT host:port` opens a tunnel.
/// Records the method and target of the first request of each connection, which only
/// a client sending its requests to a proxy writes that way.
async fn forward_proxy() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match client.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let line = head.lines().next().unwrap_or_default().to_owned();
                let mut parts = line.split(' ');
                let (method, target) = (
                    parts.next().unwrap_or_default(),
                    parts.next().unwrap_or_default(),
                );
                log.lock().unwrap().push(format!("{method} {target}"));
                if method == "CONNECT" {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    let _ = client
                        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                        .await;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    return;
                }
                let Some(rest) = target.strip_prefix("http://") else {
                    let _ = client
                        .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    return;
                };
                let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                let Ok(mut server) = tokio::net::TcpStream::connect(host).await else {
                    let _ = client
                        .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    return;
                };
                let origin_form =
                    head.replacen(target, if path.is_empty() { "/" } else { path }, 1);
                if server.write_all(origin_form.as_bytes()).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_proxy_configured_every_aws_request_goes_through_it() {
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, proxied) = forward_proxy().await;
    let e_tag = put_bundle(
        &stack,
        "plain.tgz",
        &[Entry::file("appspec.yml", b"version: 0.0\nos: linux\n")],
    )
    .await;
    let _agent = start_agent_with(
        &stack,
        dir.path(),
        &format!("proxy:\n  url: http://127.0.0.1:{port}\n"),
    );
    send_command(&stack, &command_for("d-PROXY0001", "plain.tgz", &e_tag)).await;
    let reports = reports_until_done(&stack, "d-PROXY0001", Duration::from_secs(30)).await;
    assert_each_event_ended_once(&reports, &format!("{reports:#?}"));
    assert!(reports.iter().all(|r| r.status != EventStatus::Failed));
    let moto = format!("POST {}/", stack.moto.endpoint());
    let proxied = proxied.lock().unwrap().clone();
    assert!(
        proxied.iter().any(|request| request.starts_with(&moto)),
        "no SQS request reached the proxy: {proxied:?}"
    );
}

/// A one-request-per-connection HTTP server on a free port: `respond` gets each
/// request's head (request line and headers) and returns the whole response.
async fn serve_http(respond: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match socket.read(&mut byte).await {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let response = respond(&String::from_utf8_lossy(&head));
            let _ = socket.write_all(&response).await;
            let _ = socket.shutdown().await;
        }
    });
    port
}

fn header<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
        .map_or("", |(_, value)| value.trim())
}

fn response(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A stand-in for GitHub's API: the tarball URL of `acme/shop` at `commit` redirects to
/// an archive wrapped in one top-level directory, as GitHub's are. Records each
/// request's line and Authorization.
async fn fake_github(
    commit: &'static str,
    archive: Vec<u8>,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let port = std::sync::Arc::new(std::sync::OnceLock::<u16>::new());
    let own_port = port.clone();
    let bound = serve_http(move |head| {
        let line = head.lines().next().unwrap_or_default();
        log.lock()
            .unwrap()
            .push(format!("{line} | {}", header(head, "authorization")));
        let path = line.split(' ').nth(1).unwrap_or_default();
        if path == format!("/repos/acme/shop/tarball/{commit}") {
            let location = format!(
                "Location: http://127.0.0.1:{}/codeload/acme-shop-{commit}.tar.gz\r\n",
                own_port.get().unwrap()
            );
            response("302 Found", &location, b"")
        } else if path.starts_with("/codeload/") {
            response("200 OK", "Content-Type: application/x-gzip\r\n", &archive)
        } else {
            response("404 Not Found", "", b"")
        }
    })
    .await;
    port.set(bound).unwrap();
    (bound, seen)
}

/// A stand-in for the EC2 instance metadata service, IMDSv2 only: a token from PUT
/// /latest/api/token (with its TTL header, which moto's stand-in leaves out), then the
/// instance id for requests that carry it.
async fn fake_imds(instance_id: &'static str) -> u16 {
    serve_http(move |head| {
        let line = head.lines().next().unwrap_or_default();
        if line.starts_with("PUT /latest/api/token ") {
            response(
                "200 OK",
                "x-aws-ec2-metadata-token-ttl-seconds: 21600\r\n",
                b"imds-token",
            )
        } else if line.starts_with("GET /latest/meta-data/instance-id ")
            && header(head, "x-aws-ec2-metadata-token") == "imds-token"
        {
            response("200 OK", "", instance_id.as_bytes())
        } else {
            response("401 Unauthorized", "", b"")
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_github_revision_is_fetched_through_the_api_and_installed() {
    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let top = format!("acme-shop-{}", &COMMIT[..7]);
    let archive = archive::tgz(&[
        Entry::file(
            &format!("{top}/appspec.yml"),
            b"version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/shop\n",
        ),
        Entry::file(&format!("{top}/site/index.html"), b"from github"),
    ]);
    let (port, seen) = fake_github(COMMIT, archive).await;
    std::fs::write(dir.path().join("token"), "secret-token\n").unwrap();
    let _agent = start_agent_with(
        &stack,
        dir.path(),
        &format!(
            "github:\n  api_url: http://127.0.0.1:{port}\n  allow_insecure_http: true\n  token_file: {}/token\n",
            dir.path().display()
        ),
    );
    let mut command = command_for("d-GITHUB001", "unused", "unused");
    command.revision = RevisionLocation::GitHub {
        git_hub_location: wire::GitHubLocation {
            repository: "acme/shop".into(),
            commit_id: COMMIT.into(),
        },
    };
    send_command(&stack, &command).await;
    let reports = reports_until_done(&stack, "d-GITHUB001", Duration::from_secs(30)).await;
    assert_each_event_ended_once(&reports, &format!("{reports:#?}"));
    assert!(
        reports.iter().all(|r| r.status != EventStatus::Failed),
        "{reports:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("fs/srv/shop/index.html")).unwrap(),
        "from github"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            format!("GET /repos/acme/shop/tarball/{COMMIT} HTTP/1.1 | Bearer secret-token"),
            format!("GET /codeload/acme-shop-{COMMIT}.tar.gz HTTP/1.1 | Bearer secret-token"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_proxy_configured_github_downloads_go_through_it() {
    const COMMIT: &str = "4444444444444444444444444444444444444444";
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let top = format!("acme-shop-{}", &COMMIT[..7]);
    let archive = archive::tgz(&[
        Entry::file(
            &format!("{top}/appspec.yml"),
            b"version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/shop\n",
        ),
        Entry::file(&format!("{top}/site/index.html"), b"through the proxy"),
    ]);
    let (github, _) = fake_github(COMMIT, archive).await;
    let (proxy, proxied) = forward_proxy().await;
    let _agent = start_agent_with(
        &stack,
        dir.path(),
        &format!(
            "github:\n  api_url: http://127.0.0.1:{github}\n  allow_insecure_http: true\nproxy:\n  url: http://127.0.0.1:{proxy}\n"
        ),
    );
    let mut command = command_for("d-GITHUB004", "unused", "unused");
    command.revision = RevisionLocation::GitHub {
        git_hub_location: wire::GitHubLocation {
            repository: "acme/shop".into(),
            commit_id: COMMIT.into(),
        },
    };
    send_command(&stack, &command).await;
    let reports = reports_until_done(&stack, "d-GITHUB004", Duration::from_secs(30)).await;
    assert!(
        reports.iter().all(|r| r.status != EventStatus::Failed),
        "{reports:#?}"
    );
    assert_each_event_ended_once(&reports, &format!("{reports:#?}"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("fs/srv/shop/index.html")).unwrap(),
        "through the proxy"
    );
    let proxied = proxied.lock().unwrap().clone();
    let to_github: Vec<&String> = proxied
        .iter()
        .filter(|request| request.contains(&format!("127.0.0.1:{github}")))
        .collect();
    assert_eq!(
        to_github,
        vec![
            &format!("GET http://127.0.0.1:{github}/repos/acme/shop/tarball/{COMMIT}"),
            &format!("GET http://127.0.0.1:{github}/codeload/acme-shop-{COMMIT}.tar.gz"),
        ],
        "{proxied:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_github_revision_that_is_not_there_fails_download_bundle_saying_why() {
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, _) = fake_github("1111111", Vec::new()).await;
    let _agent = start_agent_with(
        &stack,
        dir.path(),
        &format!("github:\n  api_url: http://127.0.0.1:{port}\n  allow_insecure_http: true\n"),
    );
    let mut command = command_for("d-GITHUB002", "unused", "unused");
    command.revision = RevisionLocation::GitHub {
        git_hub_location: wire::GitHubLocation {
            repository: "acme/gone".into(),
            commit_id: "2222222".into(),
        },
    };
    send_command(&stack, &command).await;
    let reports = reports_until_done(&stack, "d-GITHUB002", Duration::from_secs(30)).await;
    let failed = failed_event(&reports);
    assert_eq!(
        failed.lifecycle_event,
        lifecycle::LifecycleEvent::DownloadBundle
    );
    let message = &failed.diagnostics.as_ref().unwrap().message;
    assert!(message.contains("404"), "{message}");
    assert!(message.contains("acme/gone"), "{message}");
}

/// Issue 27: hosts hold no S3 permission and read a bundle through the link its
/// command carries. A link S3 refuses (expired, or not S3's) fails DownloadBundle
/// naming the bundle and why, and never the link, which is a secret while it lasts;
/// a command without a link fails saying so.
#[tokio::test(flavor = "multi_thread")]
async fn a_bundle_link_s3_refuses_fails_download_bundle_without_showing_the_link() {
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let refusing = serve_http(|_| {
        response(
            "403 Forbidden",
            "Content-Type: application/xml\r\n",
            b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
        )
    })
    .await;
    let _agent = start_agent(&stack, dir.path());
    let mut command = command_for("d-LINK00001", "shop.tgz", "\"0\"");
    command.bundle_url = Some(format!(
        "http://127.0.0.1:{refusing}/bundles/shop.tgz?X-Amz-Signature=feedface"
    ));
    send_command(&stack, &command).await;
    let reports = reports_until_done(&stack, "d-LINK00001", Duration::from_secs(30)).await;
    let failed = failed_event(&reports);
    assert_eq!(
        failed.lifecycle_event,
        lifecycle::LifecycleEvent::DownloadBundle
    );
    let message = &failed.diagnostics.as_ref().unwrap().message;
    assert!(message.contains("s3://bundles/shop.tgz"), "{message}");
    assert!(
        message.contains("403") && message.contains("expired"),
        "{message}"
    );
    assert!(!message.contains("feedface"), "the link leaked: {message}");

    // An older control plane's command, without a link.
    let unlinked = command_for("d-LINK00002", "shop.tgz", "\"0\"");
    send_body(&stack, unlinked.to_json()).await;
    let reports = reports_until_done(&stack, "d-LINK00002", Duration::from_secs(30)).await;
    let message = &failed_event(&reports).diagnostics.as_ref().unwrap().message;
    assert!(message.contains("no bundleUrl"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_github_server_that_stalls_fails_download_bundle_by_its_timeout() {
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    // Accepts, sends the head of a large archive, then nothing: the connection stays open.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match socket.read(&mut byte).await {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nabc")
                .await;
            open.push(socket);
        }
    });
    let _agent = start_agent_with(
        &stack,
        dir.path(),
        &format!(
            "github:\n  api_url: http://127.0.0.1:{port}\n  allow_insecure_http: true\n  timeout_seconds: 1\n"
        ),
    );
    let mut command = command_for("d-GITHUB003", "unused", "unused");
    command.revision = RevisionLocation::GitHub {
        git_hub_location: wire::GitHubLocation {
            repository: "acme/slow".into(),
            commit_id: "3333333".into(),
        },
    };
    send_command(&stack, &command).await;
    let reports = reports_until_done(&stack, "d-GITHUB003", Duration::from_secs(30)).await;
    let failed = failed_event(&reports);
    assert_eq!(
        failed.lifecycle_event,
        lifecycle::LifecycleEvent::DownloadBundle
    );
    let message = &failed.diagnostics.as_ref().unwrap().message;
    assert!(message.contains("nothing received for 1 s"), "{message}");
}

/// `len` bytes no compressor shrinks, put as `key`; returns its ETag.
async fn put_noise(stack: &Stack, key: &str, len: usize) -> String {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    stack
        .s3
        .put_object()
        .bucket("bundles")
        .key(key)
        .body(ByteStream::from(noise))
        .send()
        .await
        .unwrap()
        .e_tag
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_bundle_over_max_bundle_bytes_fails_download_bundle_naming_the_limit() {
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let e_tag = put_noise(&stack, "big.tgz", 5000).await;
    let _agent = start_agent_with(&stack, dir.path(), "max_bundle_bytes: 1000\n");
    send_command(&stack, &command_for("d-S3CAP0001", "big.tgz", &e_tag)).await;
    let reports = reports_until_done(&stack, "d-S3CAP0001", Duration::from_secs(30)).await;
    let failed = failed_event(&reports);
    assert_eq!(
        failed.lifecycle_event,
        lifecycle::LifecycleEvent::DownloadBundle
    );
    let message = &failed.diagnostics.as_ref().unwrap().message;
    assert_eq!(
        message,
        "s3://bundles/big.tgz is larger than 1000 bytes, the most a revision may hold (max_bundle_bytes)"
    );
    assert!(
        std::fs::read_dir(dir.path().join("fs"))
            .map_or(true, |mut entries| entries.next().is_none()),
        "nothing installed"
    );
}

/// A relay in front of `upstream` that passes requests whole but only the first `pass`
/// bytes of what comes back, then holds the connection open with nothing more.
async fn stalling_relay(upstream: String, pass: u64) -> u16 {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream.as_str()).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let mut head = tokio::io::AsyncReadExt::take(server_read, pass);
                let _ = tokio::io::copy(&mut head, &mut client_write).await;
                let _ = client_write.flush().await;
                // Open and silent until the test ends.
                std::future::pending::<()>().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_download_that_stalls_fails_download_bundle_by_its_timeout() {
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let e_tag = put_noise(&stack, "stall.tgz", 200_000).await;
    let moto = stack
        .moto
        .endpoint()
        .trim_start_matches("http://")
        .to_owned();
    // The bundle's link (only) through the relay: the response's head and a little of
    // the body arrive.
    let relay = stalling_relay(moto.clone(), 4096).await;
    let _agent = start_agent_env(
        &stack,
        dir.path(),
        "identity:\n  on_premises_name: host-1\n",
        "s3:\n  timeout_seconds: 1\n",
        &[],
    );
    let sent = Instant::now();
    let mut command = linked(&stack, &command_for("d-S3STALL01", "stall.tgz", &e_tag)).await;
    command.bundle_url = command
        .bundle_url
        .map(|link| link.replacen(&moto, &format!("127.0.0.1:{relay}"), 1));
    send_command(&stack, &command).await;
    let reports = reports_until_done(&stack, "d-S3STALL01", Duration::from_secs(30)).await;
    let failed = failed_event(&reports);
    assert_eq!(
        failed.lifecycle_event,
        lifecycle::LifecycleEvent::DownloadBundle
    );
    let message = &failed.diagnostics.as_ref().unwrap().message;
    assert_eq!(
        message,
        "downloading s3://bundles/stall.tgz: nothing received for 1 s (s3.timeout_seconds)"
    );
    // Well before the SDK's own stalled-stream check (20 s) would have ended it.
    assert!(
        sent.elapsed() < Duration::from_secs(15),
        "{:?}",
        sent.elapsed()
    );
}

/// The pid a script wrote to `file`, once it is there.
fn pid_in(file: &Path) -> i32 {
    assert!(
        gantry_tests::wait_until(Duration::from_secs(30), || {
            std::fs::read_to_string(file).is_ok_and(|text| text.trim().parse::<i32>().is_ok())
        }),
        "no pid in {}",
        file.display()
    );
    std::fs::read_to_string(file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn failed_event(reports: &[Report]) -> &Report {
    reports
        .iter()
        .find(|r| r.status == EventStatus::Failed)
        .unwrap_or_else(|| panic!("no failed event in {reports:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn hooks_through_the_binary_see_the_deployment_and_fail_with_their_diagnostics() {
    use std::os::unix::fs::PermissionsExt;
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("marks");
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let script = |name: &str, body: String| {
        Entry::file_with_mode(name, format!("#!/bin/sh\n{body}\n").as_bytes(), 0o755)
    };
    let mark = format!(
        "echo \"$LIFECYCLE_EVENT $DEPLOYMENT_ID $APPLICATION_NAME $DEPLOYMENT_GROUP_NAME $DEPLOYMENT_GROUP_ID $BUNDLE_BUCKET $BUNDLE_KEY\" >> {}",
        marks.display()
    );

    // Every event's environment, in order; a mode applied; a server left running with
    // the script's output does not hold the event.
    let good = put_bundle(
        &stack,
        "good.tgz",
        &[
            Entry::file(
                "appspec.yml",
                b"version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/shop\npermissions:\n  - object: /srv/shop\n    pattern: \"*.html\"\n    mode: 0640\nhooks:\n  ApplicationStop:\n    - location: mark.sh\n  BeforeInstall:\n    - location: mark.sh\n  AfterInstall:\n    - location: mark.sh\n  ApplicationStart:\n    - location: mark.sh\n    - location: serve.sh\n  ValidateService:\n    - location: mark.sh\n",
            ),
            Entry::file("site/index.html", b"v1"),
            script("mark.sh", mark.clone()),
            script(
                "serve.sh",
                format!("sleep 120 &\necho $! > {}/server.pid", run.display()),
            ),
        ],
    )
    .await;
    let mut agent = start_agent(&stack, dir.path());
    send_command(&stack, &command_for("d-HOOKS0001", "good.tgz", &good)).await;
    let reports = reports_until_done(&stack, "d-HOOKS0001", Duration::from_secs(60)).await;
    let server = Leftover(pid_in(&run.join("server.pid")));
    assert!(
        reports.iter().all(|r| r.status != EventStatus::Failed),
        "{reports:#?}"
    );
    assert!(alive(server.0), "the server a hook started keeps running");
    let expected: Vec<String> = [
        "BeforeInstall",
        "AfterInstall",
        "ApplicationStart",
        "ValidateService",
    ]
    .iter()
    .map(|event| format!("{event} d-HOOKS0001 shop web g-1 bundles good.tgz"))
    .collect();
    assert_eq!(
        std::fs::read_to_string(&marks)
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
        expected
    );
    let mode = std::fs::metadata(dir.path().join("fs/srv/shop/index.html"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);

    // A failing script: its exit code and the end of its output come back.
    let failing = put_bundle(
        &stack,
        "failing.tgz",
        &[
            Entry::file(
                "appspec.yml",
                b"version: 0.0\nos: linux\nhooks:\n  ValidateService:\n    - location: check.sh\n",
            ),
            script(
                "check.sh",
                "echo checking the shop\necho broken >&2\nexit 3".into(),
            ),
        ],
    )
    .await;
    send_command(&stack, &command_for("d-HOOKS0002", "failing.tgz", &failing)).await;
    let reports = reports_until_done(&stack, "d-HOOKS0002", Duration::from_secs(60)).await;
    let failed = failed_event(&reports);
    assert_eq!(
        failed.lifecycle_event,
        lifecycle::LifecycleEvent::ValidateService
    );
    let diagnostics = failed.diagnostics.as_ref().unwrap();
    assert_eq!(diagnostics.error_code, wire::ErrorCode::ScriptFailed);
    assert_eq!(diagnostics.script_name, "check.sh");
    assert!(
        diagnostics.message.contains("exit code 3"),
        "{}",
        diagnostics.message
    );
    assert!(
        diagnostics.log_tail.contains("checking the shop"),
        "{}",
        diagnostics.log_tail
    );
    assert!(
        diagnostics.log_tail.contains("broken"),
        "{}",
        diagnostics.log_tail
    );
    // Its ApplicationStop ran the previous revision's script, which has one.
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap().lines().last(),
        Some("ApplicationStop d-HOOKS0002 shop web g-1 bundles failing.tgz")
    );

    // A script past its timeout is stopped with everything it started.
    let slow = put_bundle(
        &stack,
        "slow.tgz",
        &[
            Entry::file(
                "appspec.yml",
                b"version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: slow.sh\n      timeout: 1\n",
            ),
            script(
                "slow.sh",
                format!("sleep 120 &\necho $! > {}/grandchild.pid\nsleep 120", run.display()),
            ),
        ],
    )
    .await;
    send_command(&stack, &command_for("d-HOOKS0003", "slow.tgz", &slow)).await;
    let reports = reports_until_done(&stack, "d-HOOKS0003", Duration::from_secs(60)).await;
    let grandchild = Leftover(pid_in(&run.join("grandchild.pid")));
    let failed = failed_event(&reports);
    assert_eq!(
        failed.lifecycle_event,
        lifecycle::LifecycleEvent::AfterInstall
    );
    assert_eq!(
        failed.diagnostics.as_ref().unwrap().error_code,
        wire::ErrorCode::ScriptTimedOut
    );
    assert!(
        gantry_tests::wait_until(Duration::from_secs(10), || !alive(grandchild.0)),
        "the timed-out script's child was stopped too"
    );

    // DISALLOW: a file the agent did not install is in the way; Install names it.
    std::fs::create_dir_all(dir.path().join("fs/srv/blog")).unwrap();
    std::fs::write(dir.path().join("fs/srv/blog/index.html"), "hand-made").unwrap();
    let blog = put_bundle(
        &stack,
        "blog.tgz",
        &[
            Entry::file(
                "appspec.yml",
                b"version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/blog\n",
            ),
            Entry::file("site/index.html", b"blog"),
        ],
    )
    .await;
    send_command(&stack, &command_for("d-HOOKS0004", "blog.tgz", &blog)).await;
    let reports = reports_until_done(&stack, "d-HOOKS0004", Duration::from_secs(60)).await;
    let failed = failed_event(&reports);
    assert_eq!(failed.lifecycle_event, lifecycle::LifecycleEvent::Install);
    let message = &failed.diagnostics.as_ref().unwrap().message;
    assert!(message.contains("index.html"), "{message}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("fs/srv/blog/index.html")).unwrap(),
        "hand-made"
    );
    // RETAIN keeps it and succeeds; OVERWRITE replaces it.
    for (id, behavior, content) in [
        ("d-HOOKS0014", FileExistsBehavior::Retain, "hand-made"),
        ("d-HOOKS0024", FileExistsBehavior::Overwrite, "blog"),
    ] {
        let mut command = command_for(id, "blog.tgz", &blog);
        command.file_exists_behavior = behavior;
        send_command(&stack, &command).await;
        let reports = reports_until_done(&stack, id, Duration::from_secs(60)).await;
        assert!(
            reports.iter().all(|r| r.status != EventStatus::Failed),
            "{reports:#?}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("fs/srv/blog/index.html")).unwrap(),
            content,
            "{behavior:?}"
        );
    }

    // SIGKILL during a hook, then a restart: the interrupted event is reported failed.
    let hang = put_bundle(
        &stack,
        "hang.tgz",
        &[
            Entry::file(
                "appspec.yml",
                b"version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: hang.sh\n      timeout: 300\n",
            ),
            script("hang.sh", format!("echo $$ > {}/hang.pid\nexec sleep 120", run.display())),
        ],
    )
    .await;
    send_command(&stack, &command_for("d-HOOKS0005", "hang.tgz", &hang)).await;
    let _hook = Leftover(pid_in(&run.join("hang.pid")));
    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    let _restarted = start_agent(&stack, dir.path());
    let reports = reports_until_done(&stack, "d-HOOKS0005", Duration::from_secs(60)).await;
    let failed = failed_event(&reports);
    assert_eq!(
        failed.lifecycle_event,
        lifecycle::LifecycleEvent::AfterInstall
    );
    let diagnostics = failed.diagnostics.as_ref().unwrap();
    assert_eq!(diagnostics.error_code, wire::ErrorCode::UnknownError);
    assert!(
        diagnostics.message.contains("the agent stopped"),
        "{}",
        diagnostics.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ec2_agent_takes_its_instance_id_from_the_metadata_service() {
    let stack = stack().await;
    let imds = fake_imds("i-fake").await;
    let dir = tempfile::tempdir().unwrap();
    let queue = stack
        .sqs
        .create_queue()
        .queue_name("gantry-cmd-i-fake")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let e_tag = put_bundle(
        &stack,
        "plain.tgz",
        &[Entry::file("appspec.yml", b"version: 0.0\nos: linux\n")],
    )
    .await;
    let _agent = start_agent_as(
        &stack,
        dir.path(),
        &format!("identity:\n  ec2:\n    metadata_endpoint: http://127.0.0.1:{imds}\n"),
        "",
    );
    let mut command = linked(&stack, &command_for("d-EC2000001", "plain.tgz", &e_tag)).await;
    command.instance_id = "i-fake".into();
    stack
        .sqs
        .send_message()
        .queue_url(&queue)
        .message_body(command.to_json())
        .send()
        .await
        .unwrap();
    let reports = reports_until_done(&stack, "d-EC2000001", Duration::from_secs(30)).await;
    let said = std::fs::read_to_string(dir.path().join("agent.stderr")).unwrap_or_default();
    assert_each_event_ended_once(&reports, &format!("{reports:#?}\nagent said:\n{said}"));
    assert!(reports.iter().all(|r| r.instance_id == "i-fake"));
    assert!(reports.iter().all(|r| r.status != EventStatus::Failed));
}

/// An instance that boots before its first deployment finds no command queue: the agent
/// waits for Gantry to make it, then deploys from it, instead of exiting.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_started_before_its_queue_exists_waits_for_it() {
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let e_tag = put_bundle(
        &stack,
        "shop.tgz",
        &[
            Entry::file(
                "appspec.yml",
                b"version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/shop\n",
            ),
            Entry::file("site/index.html", b"shop v1"),
        ],
    )
    .await;
    let mut agent = start_agent_as(
        &stack,
        dir.path(),
        "identity:\n  on_premises_name: host-2\n",
        "",
    );
    let log = dir.path().join("logs/gantry-agent.log");
    let until = Instant::now() + Duration::from_secs(30);
    let waiting = loop {
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        if said.contains("waiting for the command queue") || Instant::now() > until {
            break said;
        }
        assert!(
            agent.0.try_wait().unwrap().is_none(),
            "the agent exited: {}",
            std::fs::read_to_string(dir.path().join("agent.stderr")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        waiting.contains("waiting for the command queue"),
        "{waiting}"
    );

    // Gantry makes the queue with the first command.
    let queue = stack
        .sqs
        .create_queue()
        .queue_name("gantry-cmd-host-2")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let mut command = linked(&stack, &command("d-LATEQUEUE", &e_tag)).await;
    command.instance_id = "host-2".into();
    stack
        .sqs
        .send_message()
        .queue_url(&queue)
        .message_body(command.to_json())
        .send()
        .await
        .unwrap();
    let reports = reports_until_done(&stack, "d-LATEQUEUE", Duration::from_secs(90)).await;
    assert_each_event_ended_once(&reports, &format!("{reports:#?}"));
    assert!(reports.iter().all(|r| r.status != EventStatus::Failed));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("fs/srv/shop/index.html")).unwrap(),
        "shop v1"
    );
}

/// The final reports of one deployment's events, until `count` of them came or the
/// deadline passed.
async fn final_reports(
    stack: &Stack,
    deployment_id: &str,
    count: usize,
    deadline: Duration,
) -> Vec<Report> {
    let until = Instant::now() + deadline;
    let mut finals = Vec::new();
    while finals.len() < count && Instant::now() < until {
        finals.extend(
            take_report_messages(stack)
                .await
                .into_iter()
                .flatten()
                .filter(|r| {
                    r.deployment_id == deployment_id && r.status != EventStatus::InProgress
                }),
        );
    }
    finals
}

/// A blue/green rollback gives the original instances traffic back with the revision an
/// earlier deployment installed there: BeforeAllowTraffic and AfterAllowTraffic only, each
/// its own command, no DownloadBundle. Their scripts run from that install. The same
/// events of a revision that is not on the host fail, saying so.
#[tokio::test(flavor = "multi_thread")]
async fn a_blue_green_rollback_runs_the_installed_revisions_traffic_hooks() {
    use lifecycle::LifecycleEvent::{AfterAllowTraffic, BeforeAllowTraffic};
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("marks");
    let bundle = |version: &str| {
        vec![
            Entry::file(
                "appspec.yml",
                b"version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/shop\nhooks:\n  ValidateService:\n    - location: hook.sh\n  BeforeAllowTraffic:\n    - location: hook.sh\n  AfterAllowTraffic:\n    - location: hook.sh\n",
            ),
            Entry::file("site/index.html", version.as_bytes()),
            Entry::file_with_mode(
                "hook.sh",
                format!(
                    "#!/bin/sh\necho \"$LIFECYCLE_EVENT {version} $DEPLOYMENT_ID $BUNDLE_KEY\" >> {}\n",
                    marks.display()
                )
                .as_bytes(),
                0o755,
            ),
        ]
    };
    let v1 = put_bundle(&stack, "v1.tgz", &bundle("v1")).await;
    let v2 = put_bundle(&stack, "v2.tgz", &bundle("v2")).await;
    let _agent = start_agent(&stack, dir.path());

    send_command(&stack, &command_for("d-BLUE00001", "v1.tgz", &v1)).await;
    let reports = reports_until_done(&stack, "d-BLUE00001", Duration::from_secs(60)).await;
    assert_each_event_ended_once(&reports, &format!("{reports:#?}"));
    assert!(reports.iter().all(|r| r.status != EventStatus::Failed));

    for event in [BeforeAllowTraffic, AfterAllowTraffic] {
        let mut rollback = command_for("d-BLUE00002", "v1.tgz", &v1);
        rollback.lifecycle_events = vec![event];
        send_command(&stack, &rollback).await;
        let finals = final_reports(&stack, "d-BLUE00002", 1, Duration::from_secs(30)).await;
        let said = std::fs::read_to_string(dir.path().join("agent.stderr")).unwrap_or_default();
        assert_eq!(finals.len(), 1, "{finals:#?}\nagent said:\n{said}");
        assert_eq!(
            (finals[0].lifecycle_event, finals[0].status),
            (event, EventStatus::Succeeded),
            "{finals:#?}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap(),
        "ValidateService v1 d-BLUE00001 v1.tgz\nBeforeAllowTraffic v1 d-BLUE00002 v1.tgz\nAfterAllowTraffic v1 d-BLUE00002 v1.tgz\n"
    );
    assert!(
        !dir.path().join("root/g-1/d-BLUE00002/bundle").exists(),
        "the rollback downloaded nothing"
    );

    // v2 was never installed here.
    let mut elsewhere = command_for("d-BLUE00003", "v2.tgz", &v2);
    elsewhere.lifecycle_events = vec![BeforeAllowTraffic];
    send_command(&stack, &elsewhere).await;
    let finals = final_reports(&stack, "d-BLUE00003", 1, Duration::from_secs(30)).await;
    let failed = failed_event(&finals);
    assert_eq!(failed.lifecycle_event, BeforeAllowTraffic);
    let diagnostics = failed.diagnostics.as_ref().unwrap();
    assert_eq!(diagnostics.error_code, wire::ErrorCode::UnknownError);
    assert!(
        diagnostics
            .message
            .contains("needs the bundle of revision s3://bundles/v2.tgz"),
        "{}",
        diagnostics.message
    );
    assert!(
        diagnostics
            .message
            .contains("is of another revision, s3://bundles/v1.tgz"),
        "{}",
        diagnostics.message
    );
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap().lines().count(),
        3,
        "no script ran"
    );
}

/// A cancel sent while a command's hook runs reaches the agent as it comes, on the long
/// poll the agent keeps open while it works (it used to look every ten seconds): the
/// hook finishes, and the events after it are skipped.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_sent_while_a_hook_runs_skips_the_events_after_it() {
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("hook.pid");
    // The agent used to look every ten seconds; it listens from a second in.
    let e_tag = hook_bundle(&stack, "held.tgz", &pid_file, "sleep 8").await;
    let _agent = start_agent(&stack, dir.path());
    send_command(&stack, &command_for("d-CANCEL001", "held.tgz", &e_tag)).await;
    let _hook = Leftover(pid_in(&pid_file));
    let cancel = wire::Cancel {
        deployment_id: "d-CANCEL001".to_owned(),
        instance_id: "host-1".to_owned(),
    };
    send_body(&stack, cancel.to_json()).await;

    let mut finals = final_reports(&stack, "d-CANCEL001", 7, Duration::from_secs(30)).await;
    let events = lifecycle::in_place(false);
    finals.sort_by_key(|r| events.iter().position(|event| *event == r.lifecycle_event));
    let statuses: Vec<(lifecycle::LifecycleEvent, EventStatus)> = finals
        .iter()
        .map(|r| (r.lifecycle_event, r.status))
        .collect();
    let expected: Vec<(lifecycle::LifecycleEvent, EventStatus)> = events
        .into_iter()
        .map(|event| {
            let after = matches!(
                event,
                lifecycle::LifecycleEvent::ApplicationStart
                    | lifecycle::LifecycleEvent::ValidateService
            );
            let status = if after {
                EventStatus::Skipped
            } else {
                EventStatus::Succeeded
            };
            (event, status)
        })
        .collect();
    assert_eq!(statuses, expected);
}

/// Commands waiting together are taken together and run one at a time, in order and
/// once each, the waiting ones kept from other receivers while an earlier one runs past
/// the receive's short visibility; a cancel taken with its deployment's command is noted
/// before the command runs, which then runs nothing.
#[tokio::test(flavor = "multi_thread")]
async fn commands_waiting_together_run_once_each_and_a_cancel_with_its_command_runs_nothing() {
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("marks");
    let bundle = |seconds: u32| {
        vec![
            Entry::file(
                "appspec.yml",
                b"version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: hook.sh\n",
            ),
            Entry::file_with_mode(
                "hook.sh",
                format!(
                    "#!/bin/sh\nsleep {seconds}\necho \"$DEPLOYMENT_ID\" >> {}\n",
                    marks.display()
                )
                .as_bytes(),
                0o755,
            ),
        ]
    };
    // Longer than the receive's visibility (5 s).
    let slow = put_bundle(&stack, "slow.tgz", &bundle(7)).await;
    let quick = put_bundle(&stack, "quick.tgz", &bundle(0)).await;
    send_command(&stack, &command_for("d-QUEUE0001", "slow.tgz", &slow)).await;
    send_command(&stack, &command_for("d-QUEUE0002", "quick.tgz", &quick)).await;
    send_command(&stack, &command_for("d-QUEUE0003", "quick.tgz", &quick)).await;
    let agent = start_agent(&stack, dir.path());

    let mut finals: Vec<Report> = Vec::new();
    let until = Instant::now() + Duration::from_secs(60);
    while finals.len() < 21 && Instant::now() < until {
        finals.extend(
            take_report_messages(&stack)
                .await
                .into_iter()
                .flatten()
                .filter(|r| r.status != EventStatus::InProgress),
        );
    }
    // What a redelivery would have re-sent would come by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    finals.extend(
        take_report_messages(&stack)
            .await
            .into_iter()
            .flatten()
            .filter(|r| r.status != EventStatus::InProgress),
    );
    let said = std::fs::read_to_string(dir.path().join("agent.stderr")).unwrap_or_default();
    assert_eq!(finals.len(), 21, "{finals:#?}\nagent said:\n{said}");
    assert!(finals.iter().all(|r| r.status == EventStatus::Succeeded));
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap(),
        "d-QUEUE0001\nd-QUEUE0002\nd-QUEUE0003\n",
        "in order, once each"
    );
    assert!(
        !said.contains("AlreadyDone"),
        "no command came twice:\n{said}"
    );

    // A command and its cancel wait together for an agent that starts (the stopped one's
    // last long poll, of a second, is over).
    drop(agent);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cancelled = command_for("d-QUEUE0004", "quick.tgz", &quick);
    let cancel = wire::Cancel {
        deployment_id: "d-QUEUE0004".to_owned(),
        instance_id: "host-1".to_owned(),
    };
    stack
        .sqs
        .send_message_batch()
        .queue_url(&stack.commands)
        .entries(
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id("command")
                .message_body(cancelled.to_json())
                .build()
                .unwrap(),
        )
        .entries(
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id("cancel")
                .message_body(cancel.to_json())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let _agent = start_agent(&stack, dir.path());
    let finals = final_reports(&stack, "d-QUEUE0004", 7, Duration::from_secs(30)).await;
    assert_eq!(finals.len(), 7, "{finals:#?}");
    assert!(
        finals.iter().all(|r| r.status == EventStatus::Skipped),
        "{finals:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap().lines().count(),
        3,
        "nothing ran"
    );
}
