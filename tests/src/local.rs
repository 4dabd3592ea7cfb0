//! A gantry-local process for tests: started against a moto server, stopped with SIGTERM
//! (then SIGKILL if it does not exit) when the fixture is dropped.

use crate::moto::Moto;
use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct GantryLocal {
    child: Child,
    endpoint: String,
}

impl GantryLocal {
    /// Starts `binary` (the gantry-local executable) with moto's SDK environment and
    /// `args`, and waits for its "listening on" line.
    pub fn start(binary: &Path, moto: &Moto, args: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .args(["--port", "0"])
            .args(args)
            .envs(moto.sdk_env())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        // The first line names the endpoint; gantry-local prints it once it is ready.
        let read = BufReader::new(stdout).read_line(&mut line);
        let endpoint = line
            .trim()
            .strip_prefix("gantry-local listening on ")
            .map(str::to_owned);
        match (read, endpoint) {
            (Ok(_), Some(endpoint)) => Ok(Self { child, endpoint }),
            (result, _) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("gantry-local did not start: {result:?}, first line {line:?}")
            }
        }
    }

    /// `http://127.0.0.1:PORT`, for `--endpoint-url` and the SDK's Lambda client.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit; returns its status.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM)?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("gantry-local did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for GantryLocal {
    fn drop(&mut self) {
        if self.terminate(Duration::from_secs(10)).is_err() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
