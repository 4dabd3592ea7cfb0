//! The agent's configuration file (`/etc/gantry/agent.yml` by default).
//!
//! A bad file stops the agent at start with a message that names the key.

use aws_smithy_http_client::proxy::ProxyConfig;
use gantry_fetch::github::GitHubSource;
use gantry_fetch::net::Limits;
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/etc/gantry/agent.yml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// How the agent knows which host it is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "IdentityKeys")]
pub enum Identity {
    /// A registered on-premises instance name.
    OnPremisesName(String),
    /// An EC2 instance: the id comes from the instance metadata service (IMDSv2).
    Ec2 { metadata_endpoint: String },
}

/// The `identity` section as written: exactly one of its keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityKeys {
    on_premises_name: Option<String>,
    ec2: Option<Ec2Keys>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ec2Keys {
    #[serde(default = "default_metadata_endpoint")]
    metadata_endpoint: String,
}

impl TryFrom<IdentityKeys> for Identity {
    type Error = String;

    fn try_from(keys: IdentityKeys) -> Result<Self, String> {
        match (keys.on_premises_name, keys.ec2) {
            (Some(name), None) => Ok(Self::OnPremisesName(name)),
            (None, Some(ec2)) => Ok(Self::Ec2 {
                metadata_endpoint: ec2.metadata_endpoint,
            }),
            _ => Err("identity: set exactly one of on_premises_name or ec2".to_owned()),
        }
    }
}

fn default_metadata_endpoint() -> String {
    "http://169.254.169.254".to_owned()
}

pub use gantry_fetch::redacted;

/// Whether a URL's credentials, if any, end where a URL parser ends them: one `@` at
/// most, inside the authority (before any `/`, `?` or `#`).
fn plain_authority(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let ats = rest
        .match_indices('@')
        .map(|(at, _)| at)
        .collect::<Vec<_>>();
    match ats.as_slice() {
        [] => true,
        [at] => *at < end,
        _ => false,
    }
}

/// Credentials stay out of logs and messages.
impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("url", &redacted(&self.url))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// An HTTP proxy for every request to AWS (S3 and SQS) and GitHub, as CodeDeploy's
/// agent has `:proxy_uri:`. The instance metadata service is always reached directly.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proxy {
    /// `http://host:port`, with `user:password@` before the host if the proxy asks.
    pub url: String,
    /// Hosts reached directly, comma-separated, as in NO_PROXY: `.internal,10.0.0.1`.
    #[serde(default)]
    pub no_proxy: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub identity: Identity,
    pub region: String,
    /// Command queues are named this prefix plus the instance id.
    pub queue_prefix: String,
    /// Name of the queue reports go to.
    pub reports_queue: String,
    #[serde(default = "default_root_dir")]
    pub root_dir: PathBuf,
    #[serde(default = "default_log_dir")]
    pub log_dir: PathBuf,
    #[serde(default = "default_max_revisions")]
    pub max_revisions: u32,
    /// Every appspec destination is resolved under this directory.
    #[serde(default = "default_install_root")]
    pub install_root: PathBuf,
    #[serde(default = "default_poll_wait_seconds")]
    pub poll_wait_seconds: u32,
    /// On SIGTERM, how long a running deployment may go on before its hook is stopped
    /// and its event reported as interrupted. Below systemd's TimeoutStopSec (90 s).
    #[serde(default = "default_stop_grace_seconds")]
    pub stop_grace_seconds: u32,
    #[serde(default)]
    pub proxy: Option<Proxy>,
    #[serde(default)]
    pub github: GitHub,
    #[serde(default)]
    pub s3: S3,
    /// The largest bundle downloaded, from S3 or GitHub: at most what the unpacker
    /// accepts (4 GiB), the default.
    #[serde(default = "default_max_bundle_bytes")]
    pub max_bundle_bytes: u64,
    /// The longest a bundle download (from S3 or GitHub, every request and byte of it)
    /// may take, however steadily bytes arrive, before DownloadBundle fails: CodeDeploy's
    /// hour per lifecycle event by default.
    #[serde(default = "default_download_deadline_seconds")]
    pub download_deadline_seconds: u32,
}

fn default_download_deadline_seconds() -> u32 {
    gantry_core::appspec::MAX_EVENT_SCRIPT_SECS as u32
}

/// The longest `download_deadline_seconds` may be: a day.
const MAX_DOWNLOAD_DEADLINE_SECONDS: u32 = 86_400;

/// How bundles come from S3.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3 {
    /// How long a download may go without receiving a byte (and connecting may take)
    /// before DownloadBundle fails.
    #[serde(default = "default_download_timeout_seconds")]
    pub timeout_seconds: u32,
}

impl Default for S3 {
    fn default() -> Self {
        Self {
            timeout_seconds: default_download_timeout_seconds(),
        }
    }
}

fn default_max_bundle_bytes() -> u64 {
    gantry_core::bundle::Limits::default().max_bytes
}

/// Where GitHub revisions come from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHub {
    /// GitHub's API, or a GitHub Enterprise server's (`https://github.example.com/api/v3`).
    #[serde(default = "default_github_api_url")]
    pub api_url: String,
    /// A file holding a token that can read the repositories (private ones need it).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Or the ARN of a Secrets Manager secret or SSM parameter holding it, read with the
    /// host's own credentials (the stack's `GitHubTokenSecret`).
    #[serde(default)]
    pub token_secret: Option<String>,
    /// Allows an `http://` api_url, and the token over it: for test servers only.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// How long a download may go without receiving a byte (and connecting may take)
    /// before DownloadBundle fails.
    #[serde(default = "default_download_timeout_seconds")]
    pub timeout_seconds: u32,
}

fn default_download_timeout_seconds() -> u32 {
    60
}

impl Default for GitHub {
    fn default() -> Self {
        Self {
            api_url: default_github_api_url(),
            token_file: None,
            token_secret: None,
            allow_insecure_http: false,
            timeout_seconds: default_download_timeout_seconds(),
        }
    }
}

fn default_github_api_url() -> String {
    "https://api.github.com".to_owned()
}

fn default_root_dir() -> PathBuf {
    PathBuf::from("/opt/gantry-agent/deployment-root")
}
fn default_log_dir() -> PathBuf {
    PathBuf::from("/var/log/gantry-agent")
}
fn default_max_revisions() -> u32 {
    5
}
fn default_install_root() -> PathBuf {
    PathBuf::from("/")
}
fn default_poll_wait_seconds() -> u32 {
    20
}
fn default_stop_grace_seconds() -> u32 {
    60
}

/// SQS queue names: at most 80 characters of letters, digits, `-` and `_`.
const MAX_QUEUE_NAME: usize = 80;

impl AgentConfig {
    /// The proxy's rules, if the configuration has a proxy.
    pub fn proxy_rules(&self) -> Result<Option<ProxyConfig>, String> {
        self.proxy
            .as_ref()
            .map(|proxy| gantry_fetch::net::proxy_config(&proxy.url, proxy.no_proxy.as_deref()))
            .transpose()
    }

    /// Where GitHub revisions come from, with `token` (read from `github.token_file` or
    /// `github.token_secret`).
    pub fn github_source(&self, token: Option<String>) -> Result<GitHubSource, String> {
        Ok(GitHubSource {
            api_url: self.github.api_url.clone(),
            token,
            token_source: if self.github.token_secret.is_some() {
                "github.token_secret"
            } else {
                "github.token_file"
            },
            allow_insecure_http: self.github.allow_insecure_http,
            proxy: self.proxy_rules()?,
            limits: Limits {
                max_bytes: self.max_bundle_bytes,
                max_bytes_key: "max_bundle_bytes",
                timeout: std::time::Duration::from_secs(self.github.timeout_seconds.into()),
                timeout_key: "github.timeout_seconds",
                deadline: std::time::Duration::from_secs(self.download_deadline_seconds.into()),
                deadline_key: "download_deadline_seconds",
            },
            user_agent: "gantry-agent",
        })
    }
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses and checks a configuration; the error names the key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = serde_norway::from_str(text).map_err(|error| error.to_string())?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if let Identity::OnPremisesName(name) = &self.identity {
            check_queue_part("identity.on_premises_name", name)?;
        }
        if self.region.trim().is_empty() {
            return Err("region: must name an AWS region, such as us-east-1".to_owned());
        }
        check_queue_part("queue_prefix", &self.queue_prefix)?;
        check_queue_part("reports_queue", &self.reports_queue)?;
        for (key, path) in [
            ("root_dir", &self.root_dir),
            ("log_dir", &self.log_dir),
            ("install_root", &self.install_root),
        ] {
            if !path.is_absolute() {
                return Err(format!(
                    "{key}: must be an absolute path, found {}",
                    path.display()
                ));
            }
        }
        if self.max_revisions == 0 {
            return Err("max_revisions: must be at least 1".to_owned());
        }
        if !(1..=20).contains(&self.poll_wait_seconds) {
            return Err(format!(
                "poll_wait_seconds: must be 1 to 20 (SQS long polling), found {}",
                self.poll_wait_seconds
            ));
        }
        let insecure_allowed =
            self.github.allow_insecure_http && self.github.api_url.starts_with("http://");
        if !(self.github.api_url.starts_with("https://") || insecure_allowed) {
            return Err(format!(
                "github.api_url: must be an https URL such as https://api.github.com (the token goes to it; http only with allow_insecure_http: true, for tests), found {:?}",
                self.github.api_url
            ));
        }
        for (key, seconds) in [
            ("github.timeout_seconds", self.github.timeout_seconds),
            ("s3.timeout_seconds", self.s3.timeout_seconds),
        ] {
            if !(1..=3600).contains(&seconds) {
                return Err(format!("{key}: must be 1 to 3600, found {seconds}"));
            }
        }
        if !(1..=MAX_DOWNLOAD_DEADLINE_SECONDS).contains(&self.download_deadline_seconds) {
            return Err(format!(
                "download_deadline_seconds: must be 1 to {MAX_DOWNLOAD_DEADLINE_SECONDS}, found {}",
                self.download_deadline_seconds
            ));
        }
        let most = default_max_bundle_bytes();
        if !(1..=most).contains(&self.max_bundle_bytes) {
            return Err(format!(
                "max_bundle_bytes: must be 1 to {most} (what the unpacker accepts), found {}",
                self.max_bundle_bytes
            ));
        }
        if self.github.token_file.is_some() && self.github.token_secret.is_some() {
            return Err(
                "github.token_secret: give the token in a file (token_file) or a secret (token_secret), not both"
                    .to_owned(),
            );
        }
        if let Some(arn) = &self.github.token_secret {
            gantry_fetch::secret::store_of("github.token_secret", arn)?;
        }
        if let Some(path) = &self.github.token_file
            && !path.is_absolute()
        {
            return Err(format!(
                "github.token_file: must be an absolute path, found {}",
                path.display()
            ));
        }
        if self.stop_grace_seconds > 3600 {
            return Err(format!(
                "stop_grace_seconds: must be at most 3600, found {}",
                self.stop_grace_seconds
            ));
        }
        if let Some(proxy) = &self.proxy
            && !(proxy.url.starts_with("http://") || proxy.url.starts_with("https://"))
        {
            return Err(format!(
                "proxy.url: must be a URL such as http://proxy:3128, found {:?}",
                redacted(&proxy.url)
            ));
        }
        if let Some(proxy) = &self.proxy
            && !plain_authority(&proxy.url)
        {
            return Err(format!(
                "proxy.url: {:?} has a `/`, `?`, `#` or `@` in its user or password: percent-encode them (/ as %2F, ? as %3F, # as %23, @ as %40), or the URL names another host",
                redacted(&proxy.url)
            ));
        }
        Ok(())
    }

    /// The command queue of the instance with this id.
    pub fn command_queue(&self, instance_id: &str) -> Result<String, String> {
        let name = format!("{}{}", self.queue_prefix, instance_id);
        if name.len() > MAX_QUEUE_NAME {
            return Err(format!(
                "queue_prefix: with instance id {instance_id:?} the queue name is {} characters; SQS allows {MAX_QUEUE_NAME}",
                name.len()
            ));
        }
        check_queue_part("instance id", instance_id)?;
        Ok(name)
    }
}

fn check_queue_part(key: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{key}: must not be empty"));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "{key}: {value:?} has {bad:?}; queue names allow letters, digits, '-' and '_'"
        ));
    }
    if value.len() > MAX_QUEUE_NAME {
        return Err(format!(
            "{key}: must be at most {MAX_QUEUE_NAME} characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "identity:\n  on_premises_name: web-1\nregion: eu-west-1\nqueue_prefix: gantry-cmd-\nreports_queue: gantry-reports\n";

    #[test]
    fn defaults_fill_the_rest() {
        let config = AgentConfig::parse(MINIMAL).unwrap();
        assert_eq!(config.identity, Identity::OnPremisesName("web-1".into()));
        assert_eq!(
            config.root_dir,
            PathBuf::from("/opt/gantry-agent/deployment-root")
        );
        assert_eq!(config.max_revisions, 5);
        assert_eq!(config.install_root, PathBuf::from("/"));
        assert_eq!(config.poll_wait_seconds, 20);
        assert_eq!(config.stop_grace_seconds, 60);
        assert_eq!(config.github.api_url, "https://api.github.com");
        assert_eq!(config.s3.timeout_seconds, 60);
        assert_eq!(config.max_bundle_bytes, 4 * 1024 * 1024 * 1024);
        assert_eq!(config.download_deadline_seconds, 3600);
        assert_eq!(config.command_queue("web-1").unwrap(), "gantry-cmd-web-1");
    }

    #[test]
    fn ec2_identity_uses_the_metadata_service() {
        let text = MINIMAL.replace("  on_premises_name: web-1\n", "  ec2: {}\n");
        let config = AgentConfig::parse(&text).unwrap();
        assert_eq!(
            config.identity,
            Identity::Ec2 {
                metadata_endpoint: "http://169.254.169.254".into()
            }
        );
    }

    #[test]
    fn proxy_credentials_are_redacted() {
        assert_eq!(
            redacted("http://alice:s3cret@proxy:3128/x"),
            "http://***@proxy:3128/x"
        );
        assert_eq!(redacted("alice:s3cret@proxy:3128"), "***@proxy:3128");
        assert_eq!(redacted("http://proxy:3128"), "http://proxy:3128");
        // Unencoded `/`, `@`, `:`, `?` and `#` in the password (issue 27).
        for (url, shown) in [
            ("http://alice:pa/ss@proxy:3128", "http://***@proxy:3128"),
            ("http://alice:p@ss@proxy:3128/", "http://***@proxy:3128/"),
            ("http://alice:a:b/c@d@proxy", "http://***@proxy"),
            ("https://al/ice:x?y#z@proxy:8080", "https://***@proxy:8080"),
            ("alice:x://y/z@proxy:3128", "***@proxy:3128"),
        ] {
            assert_eq!(redacted(url), shown, "{url}");
        }
        for (url, secret) in [
            ("http://alice:pa/ss@proxy:3128", "pa/ss"),
            ("http://alice:p@ss@proxy:3128", "p@ss"),
            ("ftp://alice:p@ss/w:rd@proxy:3128", "w:rd"),
        ] {
            let error =
                AgentConfig::parse(&format!("{MINIMAL}proxy:\n  url: \"{url}\"\n")).unwrap_err();
            assert!(error.starts_with("proxy.url"), "{error}");
            assert!(
                !error.contains(secret) && !error.contains("alice"),
                "{error}"
            );
        }
        let percent_encoded = "http://alice:pa%2Fss%40w%3Ard@proxy:3128";
        let config =
            AgentConfig::parse(&format!("{MINIMAL}proxy:\n  url: \"{percent_encoded}\"\n"))
                .unwrap();
        assert!(!format!("{config:?}").contains("pa%2Fss"));
        let proxy = Proxy {
            url: "http://alice:s3cret@proxy:3128".into(),
            no_proxy: None,
        };
        assert!(!format!("{proxy:?}").contains("s3cret"));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (format!("{MINIMAL}max_revisions: 0\n"), "max_revisions"),
            (
                format!("{MINIMAL}poll_wait_seconds: 30\n"),
                "poll_wait_seconds",
            ),
            (
                format!("{MINIMAL}stop_grace_seconds: 7200\n"),
                "stop_grace_seconds",
            ),
            (
                format!("{MINIMAL}github:\n  api_url: api.github.com\n"),
                "github.api_url",
            ),
            (
                format!("{MINIMAL}github:\n  token_file: token\n"),
                "github.token_file",
            ),
            (
                format!("{MINIMAL}github:\n  api_url: http://github.internal/api/v3\n"),
                "github.api_url",
            ),
            (
                format!("{MINIMAL}github:\n  timeout_seconds: 0\n"),
                "github.timeout_seconds",
            ),
            (
                format!("{MINIMAL}s3:\n  timeout_seconds: 3601\n"),
                "s3.timeout_seconds",
            ),
            (
                format!("{MINIMAL}max_bundle_bytes: 4294967297\n"),
                "max_bundle_bytes",
            ),
            (
                format!("{MINIMAL}download_deadline_seconds: 0\n"),
                "download_deadline_seconds",
            ),
            (format!("{MINIMAL}root_dir: relative/dir\n"), "root_dir"),
            (format!("{MINIMAL}install_root: here\n"), "install_root"),
            (format!("{MINIMAL}proxy:\n  url: proxy:3128\n"), "proxy.url"),
            (
                format!("{MINIMAL}proxy:\n  url: http://alice:pa/ss@proxy:3128\n"),
                "proxy.url",
            ),
            (
                format!("{MINIMAL}proxy:\n  url: http://alice:p@ss@proxy:3128\n"),
                "proxy.url",
            ),
            (format!("{MINIMAL}max_revisons: 3\n"), "max_revisons"),
            (MINIMAL.replace("gantry-cmd-", "gantry cmd"), "queue_prefix"),
            (MINIMAL.replace("region: eu-west-1\n", ""), "region"),
            (
                MINIMAL.replace("web-1", "web/1"),
                "identity.on_premises_name",
            ),
        ];
        for (text, key) in cases {
            let error = AgentConfig::parse(&text).unwrap_err();
            assert!(error.contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn long_queue_names_are_refused() {
        let config = AgentConfig::parse(MINIMAL).unwrap();
        let error = config.command_queue(&"x".repeat(80)).unwrap_err();
        assert!(error.starts_with("queue_prefix"), "{error}");
    }

    #[test]
    fn load_names_the_file() {
        let error = AgentConfig::load(Path::new("/nonexistent/agent.yml")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/agent.yml"));
    }
}
