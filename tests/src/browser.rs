//! A headless Chromium for tests, driven through chromedriver's WebDriver HTTP API
//! (W3C WebDriver): Debian's `chromium` and `chromium-driver`, which `make browser`
//! installs. The driver is killed by pid when dropped.

use crate::http::request;
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

pub struct Browser {
    driver: Child,
    endpoint: String,
    session: String,
}

impl Browser {
    /// Starts chromedriver and one headless session (`width` by `height` pixels).
    pub fn start(width: u32, height: u32) -> anyhow::Result<Self> {
        for needed in [CHROMEDRIVER, CHROMIUM] {
            if !Path::new(needed).exists() {
                bail!("{needed} is missing: `make browser` installs chromium and chromium-driver");
            }
        }
        let port = crate::free_port()?;
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let mut browser = Self {
            driver,
            endpoint: format!("http://127.0.0.1:{port}"),
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser.call("GET", "/status", None).is_err() {
            if Instant::now() > deadline {
                bail!("chromedriver did not answer on port {port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                // Root in CI: Chromium's sandbox needs a user namespace it may not have.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         format!("--window-size={width},{height}")],
            },
        }}});
        let created = browser.call("POST", "/session", Some(&capabilities))?;
        browser.session = created["sessionId"]
            .as_str()
            .with_context(|| format!("no session id in {created}"))?
            .to_owned();
        Ok(browser)
    }

    /// One WebDriver command: its `value`, or the error it answered.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("Content-Type", "application/json")]
        };
        let answer = request(
            &self.endpoint,
            method,
            path,
            headers,
            &body,
            Duration::from_secs(60),
        )?;
        let parsed: Value = serde_json::from_str(&answer.body).with_context(|| {
            format!(
                "WebDriver {method} {path} answered {}: {:.200}",
                answer.status, answer.body
            )
        })?;
        if answer.status != 200 {
            bail!(
                "WebDriver {method} {path} answered {}: {}",
                answer.status,
                parsed["value"]
            );
        }
        Ok(parsed["value"].clone())
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(&json!({"url": url})),
        )
        .map(drop)
    }

    /// Runs `script` (a function body; `return` gives its value) in the page.
    pub fn script(&self, script: &str) -> anyhow::Result<Value> {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(&json!({"script": script, "args": []})),
        )
    }

    /// Waits until `script` returns true in the page, at most `timeout`; the last value
    /// it returned otherwise, in the error.
    pub fn wait_until(&self, what: &str, script: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.script(script)?;
            if value == Value::Bool(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let page = self.script("return document.body ? document.body.innerText : ''")?;
                bail!(
                    "timed out waiting for {what}; the page says:\n{}",
                    page.as_str().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves what the window shows as a PNG.
    pub fn screenshot(&self, path: &Path) -> anyhow::Result<PathBuf> {
        let value = self.call("GET", &self.session_path("/screenshot"), None)?;
        let png = aws_smithy_types::base64::decode(value.as_str().context("a base64 PNG")?)
            .context("decoding the screenshot")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png)?;
        Ok(path.to_owned())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &self.session_path(""), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
