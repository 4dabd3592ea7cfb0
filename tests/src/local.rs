//! A gantry-local process for tests: started against a moto server, stopped with SIGTERM
//! (then SIGKILL if it does not exit) when the fixture is dropped.

use crate::moto::Moto;
use anyhow::{Context, bail};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct GantryLocal {
    child: Child,
    endpoint: String,
    /// Its tracing output: kept out of the test output, shown when a test fails.
    log: tempfile::NamedTempFile,
}

impl GantryLocal {
    /// Starts `binary` (the gantry-local executable) with moto's SDK environment and
    /// `args`, and waits for its "listening on" line.
    pub fn start(binary: &Path, moto: &Moto, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_env(binary, moto, args, &[])
    }

    /// [`Self::start`], with `env` added to its environment (the functions' settings, as
    /// template.yaml gives them in Lambda: `GANTRY_BUNDLE_BUCKET` and the like).
    pub fn start_with_env(
        binary: &Path,
        moto: &Moto,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let log = tempfile::NamedTempFile::new().context("creating gantry-local's log file")?;
        let mut child = Command::new(binary)
            .args(["--port", "0"])
            .args(args)
            .envs(moto.sdk_env())
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.reopen()?)
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
            (Ok(_), Some(endpoint)) => Ok(Self {
                child,
                endpoint,
                log,
            }),
            (result, _) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "gantry-local did not start: {result:?}, first line {line:?}\n{}",
                    std::fs::read_to_string(log.path()).unwrap_or_default()
                )
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
        crate::process::terminate(&mut self.child, timeout)
    }
}

impl Drop for GantryLocal {
    fn drop(&mut self) {
        crate::process::stop(&mut self.child, Duration::from_secs(10));
        // The harness shows a failing test's output, so this lands next to the panic.
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(200).collect();
            eprintln!("--- gantry-local's last {} log lines ---", tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// `aws lambda invoke --endpoint-url ENDPOINT` with the stock AWS CLI from `.venv`, as a
/// user would type it, writing the response to `out`. Returns the response, which must
/// not be a function error.
pub fn aws_lambda_invoke(
    moto: &Moto,
    endpoint: &str,
    function: &str,
    payload: &Value,
    out: &Path,
) -> Value {
    let output = Command::new(crate::workspace_root().join(".venv/bin/aws"))
        .args(["lambda", "invoke", "--endpoint-url", endpoint])
        .args(["--function-name", function])
        .args(["--payload", &payload.to_string()])
        .arg(out)
        .envs(moto.sdk_env())
        // The AWS CLI would send every service there; only Lambda goes to gantry-local.
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .expect("the stock AWS CLI runs");
    assert!(
        output.status.success(),
        "aws lambda invoke failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let meta: Value = serde_json::from_slice(&output.stdout).expect("aws prints JSON");
    assert_eq!(meta["StatusCode"], 200, "{meta}");
    let body: Value = serde_json::from_slice(&std::fs::read(out).expect("aws wrote the response"))
        .expect("the response is JSON");
    assert!(
        meta.get("FunctionError").is_none(),
        "{function} failed: {body}"
    );
    body
}
