//! `gantry console` for tests: started against a fleet's gantry-local, stopped by pid
//! when dropped, with its one-session token read from the URL it prints.

use crate::fleet::Fleet;
use crate::http::{Answer, request};
use anyhow::Context;
use std::io::BufRead;
use std::process::{Child, Stdio};
use std::time::Duration;

pub struct Console {
    child: Child,
    /// http://127.0.0.1:PORT
    pub base: String,
    pub token: String,
}

impl Console {
    pub fn start(fleet: &Fleet) -> anyhow::Result<Self> {
        let mut child = fleet
            .gantry_command(&["console"])
            .stdout(Stdio::piped())
            .spawn()
            .context("gantry console starts")?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("its stdout")?).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("gantry console: open ")
            .with_context(|| format!("gantry console said {line:?}"))?;
        let (base, token) = url
            .split_once("/login?token=")
            .with_context(|| format!("no token in {url:?}"))?;
        Ok(Self {
            base: base.to_owned(),
            token: token.to_owned(),
            child,
        })
    }

    /// The URL the user is told to open.
    pub fn login_url(&self) -> String {
        format!("{}/login?token={}", self.base, self.token)
    }

    /// The session cookie `/login` sets, as a `Cookie` header's value.
    pub fn cookie(&self) -> String {
        let port = self.base.rsplit(':').next().unwrap_or_default();
        format!("gantry_console_{port}={}", self.token)
    }

    /// A request with exactly `headers` (and the listener's `Host` unless they name one).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> anyhow::Result<Answer> {
        request(
            &self.base,
            method,
            path,
            headers,
            body,
            Duration::from_secs(30),
        )
    }

    /// A page, as a browser with the session's cookie asks for it.
    pub fn page(&self, path: &str) -> anyhow::Result<Answer> {
        self.send("GET", path, &[("Cookie", &self.cookie())], "")
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
