//! Running one hook script: the way CodeDeploy's agent does where users rely on it, and
//! better where they complain about it.
//!
//! - A script that is not executable gets its execute bits first, as CodeDeploy does.
//! - The script runs in its own process group, with the deployment's environment, from
//!   the revision's root directory, its output appended to the scripts log.
//! - `runas` drops to that user (its groups, then its group, then its id) in the child
//!   before exec: no `su`, no shell quoting. Such a script starts from an empty
//!   environment: nothing the root agent was started with (AWS credentials, a proxy's
//!   password) reaches it but PATH, the locale ([`runas_environment`]), the user's HOME,
//!   USER, LOGNAME and SHELL, and the deployment's variables. A script without `runas`
//!   runs as root, as the agent does, and inherits the agent's environment, as with
//!   CodeDeploy's agent: it could read all of it anyway.
//! - On timeout the whole group gets SIGTERM, then SIGKILL after a grace period.
//! - The event ends when the script exits, even if a background process it started still
//!   holds its stdout or stderr: output goes to a file, not a pipe the agent must drain.

use gantry_core::wire::{self, ErrorCode};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Gid, Pid, Uid, User};
use std::ffi::{CString, OsString};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often a running script's wait looks at the abort flag.
const ABORT_CHECK: Duration = Duration::from_millis(100);

/// Why a script was stopped before it exited.
enum Stopped {
    TimedOut,
    Aborted,
}

/// How long a timed-out script's process group has between SIGTERM and SIGKILL.
pub const DEFAULT_TERM_GRACE: Duration = Duration::from_secs(5);

/// One script to run.
pub struct ScriptRun<'a> {
    /// The script inside the unpacked revision.
    pub path: &'a Path,
    /// The location as the appspec wrote it, for messages and reports.
    pub script_name: &'a str,
    pub event: &'a str,
    pub timeout: Duration,
    pub term_grace: Duration,
    /// Set when the agent is stopping and its grace is over: the script is stopped as on
    /// a timeout, and its event fails.
    pub abort: &'a AtomicBool,
    pub runas: Option<&'a str>,
    /// Deployment variables (LIFECYCLE_EVENT, DEPLOYMENT_ID, ...), added to the agent's
    /// environment, or (with `runas`) to [`runas_environment`] and the user's own.
    pub env: &'a [(String, String)],
    pub working_dir: &'a Path,
    /// The scripts log the output is appended to.
    pub log: &'a Path,
}

/// How a script went, in CodeDeploy's diagnostics terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOutcome {
    pub error_code: ErrorCode,
    pub message: String,
    /// The end of what the script wrote, at most [`wire::LOG_TAIL_MAX_BYTES`].
    pub log_tail: String,
}

impl ScriptOutcome {
    fn new(error_code: ErrorCode, message: impl Into<String>, log_tail: String) -> Self {
        Self {
            error_code,
            message: message.into(),
            log_tail,
        }
    }
}

/// Runs the script to its end, or until it times out. Never panics on the script's
/// account: every failure becomes an outcome.
pub fn run_script(run: &ScriptRun<'_>) -> ScriptOutcome {
    let name = run.script_name;
    let meta = match fs::metadata(run.path) {
        Ok(meta) if meta.is_file() => meta,
        _ => {
            return ScriptOutcome::new(
                ErrorCode::ScriptMissing,
                format!("Script does not exist at specified location: {name}"),
                String::new(),
            );
        }
    };
    if meta.permissions().mode() & 0o111 == 0 {
        let mode = meta.permissions().mode() | 0o111;
        if let Err(error) = fs::set_permissions(run.path, fs::Permissions::from_mode(mode)) {
            return ScriptOutcome::new(
                ErrorCode::ScriptNotExecutable,
                format!(
                    "Script at specified location: {name} is not executable and could not be made so: {error}"
                ),
                String::new(),
            );
        }
    }
    let user = match run.runas.map(RunAs::lookup).transpose() {
        Ok(user) => user,
        Err(message) => return ScriptOutcome::new(ErrorCode::UnknownError, message, String::new()),
    };

    let (mut log, start) = match open_log(run) {
        Ok(opened) => opened,
        Err(error) => {
            return ScriptOutcome::new(
                ErrorCode::UnknownError,
                format!(
                    "cannot write the scripts log {}: {error}",
                    run.log.display()
                ),
                String::new(),
            );
        }
    };
    let mut command = Command::new(run.path);
    if let Some(user) = &user {
        command
            .env_clear()
            .envs(runas_environment(std::env::vars_os()))
            .env("USER", &user.name)
            .env("LOGNAME", &user.name)
            .env("HOME", &user.home)
            .env("SHELL", &user.shell);
    }
    command
        .current_dir(run.working_dir)
        .envs(run.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .process_group(0);
    match (log.try_clone(), log.try_clone()) {
        (Ok(out), Ok(err)) => {
            command.stdout(out).stderr(err);
        }
        (Err(error), _) | (_, Err(error)) => {
            return ScriptOutcome::new(
                ErrorCode::UnknownError,
                format!("cannot share the scripts log: {error}"),
                String::new(),
            );
        }
    }
    if let Some(user) = user {
        user.apply(&mut command);
    }

    let child = match spawn(&mut command) {
        Ok(child) => child,
        Err(error) => {
            let code = if error.kind() == std::io::ErrorKind::PermissionDenied {
                ErrorCode::ScriptNotExecutable
            } else {
                ErrorCode::ScriptFailed
            };
            return ScriptOutcome::new(
                code,
                format!("Script at specified location: {name} could not start: {error}"),
                String::new(),
            );
        }
    };
    let group = Pid::from_raw(child.id() as i32);
    let (done, finished) = mpsc::channel();
    let mut child = child;
    std::thread::spawn(move || {
        let _ = done.send(child.wait());
    });

    // Wait for the script in short slices, so an abort is seen within one of them.
    // Bounded, so no timeout can overflow the clock (the runner passes at most an hour).
    let limit = run.timeout.min(Duration::from_secs(
        gantry_core::appspec::MAX_EVENT_SCRIPT_SECS,
    ));
    let deadline = Instant::now() + limit;
    let waited = loop {
        let slice = deadline
            .saturating_duration_since(Instant::now())
            .min(ABORT_CHECK);
        match finished.recv_timeout(slice) {
            Ok(exit) => break Ok(exit),
            Err(RecvTimeoutError::Disconnected) => {
                break Ok(Err(std::io::Error::other("its waiting thread stopped")));
            }
            Err(RecvTimeoutError::Timeout) if run.abort.load(Ordering::SeqCst) => {
                break Err(Stopped::Aborted);
            }
            Err(RecvTimeoutError::Timeout) if Instant::now() >= deadline => {
                break Err(Stopped::TimedOut);
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
    };
    if waited.is_err() {
        // The whole group, including anything the script started.
        let _ = killpg(group, Signal::SIGTERM);
        if finished.recv_timeout(run.term_grace).is_err() {
            let _ = killpg(group, Signal::SIGKILL);
            let _ = finished.recv();
        }
    }
    let outcome = match waited {
        Ok(Ok(status)) if status.success() => (ErrorCode::Success, "Succeeded".to_owned()),
        Ok(Ok(status)) => match (status.code(), status.signal()) {
            (Some(code), _) => (
                ErrorCode::ScriptFailed,
                format!("Script at specified location: {name} failed with exit code {code}"),
            ),
            (None, Some(signal)) => (
                ErrorCode::ScriptFailed,
                format!("Script at specified location: {name} was killed by signal {signal}"),
            ),
            (None, None) => (
                ErrorCode::ScriptFailed,
                format!("Script at specified location: {name} failed"),
            ),
        },
        Ok(Err(error)) => (
            ErrorCode::UnknownError,
            format!("waiting for {name}: {error}"),
        ),
        Err(Stopped::TimedOut) => (
            ErrorCode::ScriptTimedOut,
            format!(
                "Script at specified location: {name} did not finish within {} seconds and was stopped",
                limit.as_secs()
            ),
        ),
        Err(Stopped::Aborted) => (
            ErrorCode::UnknownError,
            format!(
                "Script at specified location: {name} was stopped: the agent was asked to stop (SIGTERM) and the deployment did not finish within stop_grace_seconds"
            ),
        ),
    };
    let end = log.seek(SeekFrom::End(0)).unwrap_or(start);
    let _ = writeln!(log, "[{}] {} {name}: {}", timestamp(), run.event, outcome.1);
    ScriptOutcome::new(outcome.0, outcome.1, read_tail(run.log, start, end))
}

fn open_log(run: &ScriptRun<'_>) -> std::io::Result<(fs::File, u64)> {
    // 0640 in a 0750 directory: scripts print secrets too.
    let mut log = crate::private::append(run.log)?;
    writeln!(
        log,
        "[{}] {} {}: started",
        timestamp(),
        run.event,
        run.script_name
    )?;
    let start = log.seek(SeekFrom::End(0))?;
    Ok((log, start))
}

/// What the script wrote between `start` and `end`, cut to the report's limit.
fn read_tail(log: &Path, start: u64, end: u64) -> String {
    let Ok(mut file) = fs::File::open(log) else {
        return String::new();
    };
    // Read a little more than the limit: the cut must land on a character boundary.
    let from = start.max(end.saturating_sub(wire::LOG_TAIL_MAX_BYTES as u64 + 4));
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(from)).is_err()
        || file
            .take(end.saturating_sub(from))
            .read_to_end(&mut bytes)
            .is_err()
    {
        return String::new();
    }
    wire::log_tail(&String::from_utf8_lossy(&bytes)).to_owned()
}

/// PATH for a `runas` script when the agent has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a `runas` script keeps of the agent's environment `vars`: PATH (or
/// [`DEFAULT_PATH`]), LANG and every LC_* variable. Nothing else: the agent's own
/// environment may hold AWS credentials and proxy passwords the script's user must not
/// read.
pub fn runas_environment(
    vars: impl Iterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    let mut kept: Vec<(OsString, OsString)> = vars
        .filter(|(name, _)| {
            let name = name.as_encoded_bytes();
            name == b"PATH" || name == b"LANG" || name.starts_with(b"LC_")
        })
        .collect();
    if !kept.iter().any(|(name, _)| name == "PATH") {
        kept.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    kept
}

fn timestamp() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", since.as_secs(), since.subsec_millis())
}

/// A user to run a script as, resolved before the fork.
struct RunAs {
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    name: String,
    home: std::path::PathBuf,
    shell: std::path::PathBuf,
}

impl RunAs {
    fn lookup(name: &str) -> Result<Self, String> {
        let user = User::from_name(name)
            .map_err(|error| format!("runas {name:?}: looking up the user failed: {error}"))?
            .ok_or_else(|| format!("runas {name:?}: no such user on this host"))?;
        if !Uid::effective().is_root() && Uid::effective() != user.uid {
            return Err(format!(
                "runas {name:?}: the agent must run as root to run scripts as another user"
            ));
        }
        let cname = CString::new(name).map_err(|_| format!("runas {name:?}: not a user name"))?;
        let groups = nix::unistd::getgrouplist(&cname, user.gid).map_err(|error| {
            format!("runas {name:?}: reading the user's groups failed: {error}")
        })?;
        Ok(Self {
            uid: user.uid,
            gid: user.gid,
            groups,
            name: user.name,
            home: user.dir,
            shell: user.shell,
        })
    }

    fn apply(self, command: &mut Command) {
        if Uid::effective() == self.uid {
            return; // already that user: nothing to drop
        }
        let Self {
            uid, gid, groups, ..
        } = self;
        // SAFETY: runs in the forked child before exec; setgroups, setgid and setuid are
        // plain system calls (async-signal-safe) on data prepared before the fork.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || {
                nix::unistd::setgroups(&groups)?;
                nix::unistd::setgid(gid)?;
                nix::unistd::setuid(uid)?;
                Ok(())
            });
        }
    }
}

/// Starts a script. ETXTBSY ("text file busy") is retried briefly: the script was just
/// written (installed, or unpacked), and a process forked elsewhere in the meantime may
/// still hold it open for writing until it execs, which ends in moments.
fn spawn(command: &mut Command) -> std::io::Result<std::process::Child> {
    let mut wait = std::time::Duration::from_millis(5);
    for _ in 0..8 {
        match command.spawn() {
            Err(error) if error.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(wait);
                wait *= 2;
            }
            other => return other,
        }
    }
    command.spawn()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_tests::wait_until;
    use std::path::PathBuf;

    struct Sandbox {
        dir: tempfile::TempDir,
    }

    impl Sandbox {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn script(&self, name: &str, body: &str, mode: u32) -> PathBuf {
            let path = self.dir.path().join(name);
            fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            path
        }

        fn run(&self, script: &Path, timeout: Duration, runas: Option<&str>) -> ScriptOutcome {
            let env = vec![
                ("LIFECYCLE_EVENT".to_owned(), "AfterInstall".to_owned()),
                ("DEPLOYMENT_ID".to_owned(), "d-ABCDEF123".to_owned()),
            ];
            run_script(&ScriptRun {
                path: script,
                script_name: "scripts/test.sh",
                event: "AfterInstall",
                timeout,
                term_grace: Duration::from_millis(500),
                abort: &AtomicBool::new(false),
                runas,
                env: &env,
                working_dir: self.dir.path(),
                log: &self.dir.path().join("logs/scripts.log"),
            })
        }

        fn read(&self, name: &str) -> String {
            fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
        }
    }

    fn alive(pid: i32) -> bool {
        // A zombie has exited; only a running or sleeping process counts.
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                !stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false)
    }

    const LONG: Duration = Duration::from_secs(30);

    #[test]
    fn runs_with_the_deployment_environment_in_the_revision_root() {
        let sandbox = Sandbox::new();
        let script = sandbox.script(
            "ok.sh",
            "echo \"$LIFECYCLE_EVENT $DEPLOYMENT_ID\" > env.txt; echo hello",
            0o755,
        );
        let outcome = sandbox.run(&script, LONG, None);
        assert_eq!(outcome.error_code, ErrorCode::Success, "{outcome:?}");
        assert_eq!(sandbox.read("env.txt"), "AfterInstall d-ABCDEF123\n");
        assert_eq!(outcome.log_tail, "hello\n");
        let log = sandbox.read("logs/scripts.log");
        assert!(
            log.contains("AfterInstall scripts/test.sh: started"),
            "{log}"
        );
        assert!(log.contains("hello\n"), "{log}");
    }

    #[test]
    fn failures_carry_the_exit_code_and_output() {
        let sandbox = Sandbox::new();
        let script = sandbox.script("fail.sh", "echo 'config missing' >&2; exit 3", 0o755);
        let outcome = sandbox.run(&script, LONG, None);
        assert_eq!(outcome.error_code, ErrorCode::ScriptFailed);
        assert!(
            outcome.message.contains("exit code 3"),
            "{}",
            outcome.message
        );
        assert_eq!(outcome.log_tail, "config missing\n");
    }

    #[test]
    fn missing_scripts_are_reported() {
        let sandbox = Sandbox::new();
        let outcome = sandbox.run(&sandbox.dir.path().join("nope.sh"), LONG, None);
        assert_eq!(outcome.error_code, ErrorCode::ScriptMissing);
        assert!(outcome.message.contains("scripts/test.sh"));
    }

    #[test]
    fn non_executable_scripts_get_their_execute_bits() {
        let sandbox = Sandbox::new();
        let script = sandbox.script("plain.sh", "exit 0", 0o644);
        assert_eq!(
            sandbox.run(&script, LONG, None).error_code,
            ErrorCode::Success
        );
        assert_eq!(
            fs::metadata(&script).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }

    #[test]
    fn long_output_is_cut_to_the_report_limit() {
        let sandbox = Sandbox::new();
        let script = sandbox.script(
            "loud.sh",
            "i=0; while [ $i -lt 2000 ]; do echo \"line $i\"; i=$((i+1)); done",
            0o755,
        );
        let outcome = sandbox.run(&script, LONG, None);
        assert!(outcome.log_tail.len() <= wire::LOG_TAIL_MAX_BYTES);
        assert!(
            outcome.log_tail.ends_with("line 1999\n"),
            "{}",
            &outcome.log_tail[outcome.log_tail.len() - 20..]
        );
    }

    #[test]
    fn timeouts_kill_the_whole_process_group() {
        let sandbox = Sandbox::new();
        let script = sandbox.script(
            "slow.sh",
            "sleep 300 & echo $! > child.pid\ntrap '' TERM\nsleep 300",
            0o755,
        );
        let outcome = sandbox.run(&script, Duration::from_secs(1), None);
        assert_eq!(outcome.error_code, ErrorCode::ScriptTimedOut, "{outcome:?}");
        let child: i32 = sandbox.read("child.pid").trim().parse().unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || !alive(child)),
            "the script's background child {child} survived the timeout"
        );
    }

    #[test]
    fn a_background_process_holding_output_does_not_hang_the_event() {
        let sandbox = Sandbox::new();
        let script = sandbox.script(
            "daemon.sh",
            "sleep 300 & echo $! > daemon.pid\necho started",
            0o755,
        );
        let outcome = sandbox.run(&script, Duration::from_secs(20), None);
        assert_eq!(outcome.error_code, ErrorCode::Success, "{outcome:?}");
        let daemon: i32 = sandbox.read("daemon.pid").trim().parse().unwrap();
        assert!(alive(daemon), "the background process keeps running");
        nix::sys::signal::kill(Pid::from_raw(daemon), Signal::SIGKILL).unwrap();
    }

    #[test]
    fn runas_scripts_keep_only_path_and_the_locale_of_the_agents_environment() {
        let vars = |pairs: &[(&str, &str)]| -> Vec<(OsString, OsString)> {
            pairs
                .iter()
                .map(|(name, value)| (OsString::from(name), OsString::from(value)))
                .collect()
        };
        let agent = vars(&[
            ("PATH", "/opt/agent/bin:/usr/bin"),
            ("LANG", "en_GB.UTF-8"),
            ("LC_ALL", "C"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
            ("HTTPS_PROXY", "http://alice:pw@proxy:3128"),
            ("LCX", "not a locale"),
            ("HOME", "/root"),
        ]);
        assert_eq!(
            runas_environment(agent.into_iter()),
            vars(&[
                ("PATH", "/opt/agent/bin:/usr/bin"),
                ("LANG", "en_GB.UTF-8"),
                ("LC_ALL", "C"),
            ])
        );
        assert_eq!(
            runas_environment(vars(&[("USER", "root")]).into_iter()),
            vars(&[("PATH", DEFAULT_PATH)])
        );
    }

    #[test]
    fn unknown_runas_users_are_refused_before_running() {
        let sandbox = Sandbox::new();
        let script = sandbox.script("who.sh", "touch ran", 0o755);
        let outcome = sandbox.run(&script, LONG, Some("no-such-user-gantry"));
        assert_eq!(outcome.error_code, ErrorCode::UnknownError);
        assert!(
            outcome.message.contains("no such user"),
            "{}",
            outcome.message
        );
        assert!(!sandbox.dir.path().join("ran").exists());
    }

    #[test]
    fn runas_drops_to_the_user() {
        if !Uid::effective().is_root() {
            eprintln!("skipped: dropping to another user needs root");
            return;
        }
        let Ok(Some(nobody)) = User::from_name("nobody") else {
            eprintln!("skipped: no user nobody");
            return;
        };
        let sandbox = Sandbox::new();
        fs::set_permissions(sandbox.dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let script = sandbox.script(
            "who.sh",
            "id -u > uid.txt; id -g > gid.txt; echo $HOME > home.txt",
            0o755,
        );
        let outcome = sandbox.run(&script, LONG, Some("nobody"));
        assert_eq!(outcome.error_code, ErrorCode::Success, "{outcome:?}");
        assert_eq!(sandbox.read("uid.txt").trim(), nobody.uid.to_string());
        assert_eq!(sandbox.read("gid.txt").trim(), nobody.gid.to_string());
        assert_eq!(
            sandbox.read("home.txt").trim(),
            nobody.dir.display().to_string()
        );
    }
}
