//! Stopping what a test started, by pid only: never a process group, a name or -1.

use anyhow::bail;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Sends `child` SIGTERM and waits up to `timeout` for it to exit; returns its status.
pub fn terminate(child: &mut Child, timeout: Duration) -> anyhow::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM)?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            bail!(
                "pid {} did not exit within {timeout:?} of SIGTERM",
                child.id()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`terminate`], then SIGKILL if `child` is still running after `grace`.
pub fn stop(child: &mut Child, grace: Duration) {
    if terminate(child, grace).is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// SIGKILL to every pid recorded in a file of `dir` (one pid per file, as hooks write
/// them for processes they leave running).
pub fn kill_recorded_pids(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let pid = std::fs::read_to_string(entry.path())
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok());
        if let Some(pid) = pid.filter(|pid| *pid > 1) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}
