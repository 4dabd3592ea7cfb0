//! A moto server for tests: started on a free loopback port from the project's `.venv`,
//! stopped by pid when dropped. When `AWS_ENDPOINT_URL` is set, that endpoint is used
//! instead and nothing is started.

use anyhow::{Context, bail};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long moto may take to answer after it starts (it imports a lot of Python).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// An IAM user and its access key.
#[derive(Debug, Clone)]
pub struct IamUser {
    pub arn: String,
    /// Its unique id: the SenderId of the messages it sends.
    pub user_id: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

pub struct Moto {
    endpoint: String,
    child: Option<Child>,
    log: Option<tempfile::NamedTempFile>,
}

impl Moto {
    /// Starts moto (or adopts `AWS_ENDPOINT_URL`) and waits until it answers HTTP.
    pub fn start() -> anyhow::Result<Self> {
        if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL")
            && !endpoint.is_empty()
        {
            let mut moto = Self {
                endpoint,
                child: None,
                log: None,
            };
            moto.wait_until_answering()?;
            return Ok(moto);
        }
        let (binary, launcher) = moto_server_command();
        if !binary.exists() {
            bail!(
                "{} not found; run `make test` (it creates .venv) or set MOTO_SERVER",
                binary.display()
            );
        }
        // Another process may take the port between probe and bind; try a few.
        let mut last_error = None;
        for _ in 0..3 {
            let port = crate::free_port()?;
            let log = tempfile::NamedTempFile::new().context("creating moto's log file")?;
            let child = Command::new(&binary)
                .args(&launcher)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log.reopen()?)
                .stderr(log.reopen()?)
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?;
            let mut moto = Self {
                endpoint: format!("http://127.0.0.1:{port}"),
                child: Some(child),
                log: Some(log),
            };
            match moto.wait_until_answering() {
                Ok(()) => return Ok(moto),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    /// The endpoint to give the SDK (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The process id of the server this fixture started, if it started one.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Environment for a child process that should reach this server through the SDK's
    /// standard variables.
    pub fn sdk_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ]
    }

    /// SDK configuration for this server, for tests that call AWS in-process. (Code under
    /// test gets the same through `sdk_env` and the SDK's standard variables.)
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        use aws_config::{BehaviorVersion, Region};
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new("us-east-1"))
            .test_credentials()
            .load()
            .await
    }

    /// Creates an IAM user with an access key in this server: what an on-premises host's
    /// agent runs as. moto's launcher gives the user's messages its id as SenderId.
    pub fn create_iam_user(&self, name: &str) -> anyhow::Result<IamUser> {
        // Callers may be inside an async test: the SDK gets a runtime of its own, on a
        // thread of its own.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(async {
                        let iam = aws_sdk_iam::Client::new(&self.sdk_config().await);
                        let user = iam
                            .create_user()
                            .user_name(name)
                            .send()
                            .await
                            .with_context(|| format!("IAM CreateUser {name}"))?
                            .user
                            .context("CreateUser answered no user")?;
                        let key = iam
                            .create_access_key()
                            .user_name(name)
                            .send()
                            .await
                            .with_context(|| format!("IAM CreateAccessKey {name}"))?
                            .access_key
                            .context("CreateAccessKey answered no key")?;
                        Ok(IamUser {
                            arn: user.arn,
                            user_id: user.user_id,
                            access_key_id: key.access_key_id,
                            secret_access_key: key.secret_access_key,
                        })
                    })
                })
                .join()
                .map_err(|_| anyhow::anyhow!("creating IAM user {name} panicked"))?
        })
    }

    /// `sdk_env`, signing as `user`.
    pub fn sdk_env_as(&self, user: &IamUser) -> Vec<(&'static str, String)> {
        let mut env = self.sdk_env();
        for (name, value) in &mut env {
            match *name {
                "AWS_ACCESS_KEY_ID" => value.clone_from(&user.access_key_id),
                "AWS_SECRET_ACCESS_KEY" => value.clone_from(&user.secret_access_key),
                _ => {}
            }
        }
        env
    }

    /// Makes the next `count` requests to `target` (an X-Amz-Target, such as
    /// `DynamoDB_20120810.UpdateItem`) whose body contains `contains` fail for now, with
    /// the service's HTTP 500, as AWS does now and then (tests/standin/faults.py). The
    /// SDK retries such an answer (three attempts by default): `count` counts attempts.
    pub fn fail_next(&self, target: &str, contains: &str, count: u32) -> anyhow::Result<()> {
        let query = format!(
            "target={}&contains={}&count={count}",
            query_value(target),
            query_value(contains)
        );
        let status = http(&self.endpoint, "POST", &format!("/_gantry/faults?{query}"))?;
        if status != 200 {
            bail!("arming a fault answered HTTP {status}");
        }
        Ok(())
    }

    /// Cancels the next `count` TransactWriteItems requests whose body contains
    /// `contains` as DynamoDB cancels a transaction that meets another on one of its
    /// items (TransactionConflict for each item holding `contains`), which moto, one
    /// request at a time, never does.
    pub fn conflict_next(&self, contains: &str, count: u32) -> anyhow::Result<()> {
        let query = format!(
            "target={}&contains={}&count={count}&kind=conflict",
            query_value("DynamoDB_20120810.TransactWriteItems"),
            query_value(contains)
        );
        let status = http(&self.endpoint, "POST", &format!("/_gantry/faults?{query}"))?;
        if status != 200 {
            bail!("arming a conflict answered HTTP {status}");
        }
        Ok(())
    }

    /// Disarms every fault [`Self::fail_next`] or [`Self::conflict_next`] armed.
    pub fn clear_faults(&self) -> anyhow::Result<()> {
        let status = http(&self.endpoint, "DELETE", "/_gantry/faults")?;
        if status != 200 {
            bail!("clearing faults answered HTTP {status}");
        }
        Ok(())
    }

    /// The results a CodePipeline job was answered, in order, as the stand-in recorded
    /// them (tests/standin/codepipeline.py): `{"result": "success", "continuationToken",
    /// "executionDetails"}` or `{"result": "failure", "failureDetails": {"type", "message"}}`.
    pub fn job_results(&self, job_id: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let (status, body) = http_body(
            &self.endpoint,
            "GET",
            &format!("/_gantry/codepipeline/jobs/{}", query_value(job_id)),
        )?;
        if status != 200 {
            bail!("reading job {job_id}'s results answered HTTP {status}: {body}");
        }
        let answer: serde_json::Value =
            serde_json::from_str(&body).with_context(|| format!("not JSON: {body}"))?;
        Ok(answer["results"].as_array().cloned().unwrap_or_default())
    }

    /// Plays CodePipeline for one run of an "Invoke AWS Lambda" action
    /// (tests/standin/codepipeline.py): the stand-in invokes the function at
    /// `function_url` (its Invoke URL) with `event`, and again with each continuation
    /// token it is answered, `interval_seconds` later, until a job ends. Returns at once.
    pub fn start_job_run(
        &self,
        function_url: &str,
        event: &serde_json::Value,
        interval_seconds: f64,
    ) -> anyhow::Result<()> {
        let body = serde_json::json!({
            "functionUrl": function_url,
            "event": event,
            "intervalSeconds": interval_seconds,
        });
        let (status, answer) = http_request(
            &self.endpoint,
            "POST",
            "/_gantry/codepipeline/runs",
            &body.to_string(),
        )?;
        if status != 200 {
            bail!("starting a job run answered HTTP {status}: {answer}");
        }
        Ok(())
    }

    /// A run [`Self::start_job_run`] started, by its first job's id: `{"jobs", "results"
    /// (each with its jobId), "ended", "errors"}`.
    pub fn job_run(&self, job_id: &str) -> anyhow::Result<serde_json::Value> {
        let (status, body) = http_body(
            &self.endpoint,
            "GET",
            &format!("/_gantry/codepipeline/runs/{}", query_value(job_id)),
        )?;
        if status != 200 {
            bail!("reading job run {job_id} answered HTTP {status}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("not JSON: {body}"))
    }

    /// Wipes every resource (moto's `POST /moto-api/reset`).
    pub fn reset(&self) -> anyhow::Result<()> {
        let status = http(&self.endpoint, "POST", "/moto-api/reset")?;
        if status != 200 {
            bail!("moto reset answered HTTP {status}");
        }
        Ok(())
    }

    fn wait_until_answering(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if http(&self.endpoint, "GET", "/moto-api/").is_ok() {
                return Ok(());
            }
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "moto_server exited with {status} before answering:\n{}",
                    self.log_text()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "moto_server did not answer on {} within {:?}:\n{}",
                    self.endpoint,
                    STARTUP_TIMEOUT,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|log| std::fs::read_to_string(log.path()).ok())
            .unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill(); // SIGKILL to the pid we started
            let _ = child.wait();
        }
    }
}

/// `MOTO_SERVER` if set; otherwise the venv's Python running `tests/moto_server.py`, which
/// makes moto's conditional writes atomic as DynamoDB's are (see that file).
fn moto_server_command() -> (PathBuf, Vec<PathBuf>) {
    match std::env::var_os("MOTO_SERVER") {
        Some(binary) => (PathBuf::from(binary), Vec::new()),
        None => {
            let root = crate::workspace_root();
            (
                root.join(".venv/bin/python"),
                vec![root.join("tests/moto_server.py")],
            )
        }
    }
}

/// A query string value: letters, digits and `-_.~` as they are, a space as `+`, any
/// other byte percent-encoded.
fn query_value(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            b' ' => "+".to_owned(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A request to moto, enough to ask whether it is up. Returns the status.
fn http(endpoint: &str, method: &str, path: &str) -> anyhow::Result<u16> {
    http_body(endpoint, method, path).map(|(status, _)| status)
}

/// A request to moto: the status and the body.
fn http_body(endpoint: &str, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
    http_request(endpoint, method, path, "")
}

/// A request to moto with a (JSON) body: the status and the body.
fn http_request(
    endpoint: &str,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let headers: &[(&str, &str)] = if body.is_empty() {
        &[]
    } else {
        &[("Content-Type", "application/json")]
    };
    let answer = crate::http::request(
        endpoint,
        method,
        path,
        headers,
        body,
        Duration::from_secs(10),
    )?;
    Ok((answer.status, answer.body))
}
