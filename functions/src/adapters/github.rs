//! GitHub revisions, checked before any host sees them, as S3 bundles are: the commit
//! resolved to its full id (the revision is pinned to it), its tarball downloaded with
//! the agent's own code (gantry-fetch) and checked. A private repository's token is read
//! from the stack's secret (`GitHubTokenSecret`) with the function's credentials, kept
//! a few minutes, and never put in a message, a log or a command.

use super::bundles::check_bundle;
use crate::error::{ApiError, Exception};
use gantry_core::bundle::{self, BundleType, Limits};
use gantry_core::lifecycle::LifecycleEvent;
use gantry_core::wire::GitHubLocation;
use gantry_fetch::github::{GitHubError, GitHubErrorKind, GitHubSource, GitHubTarballs};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a token read from the secret is used before it is read again (a rotated
/// token takes over within this).
const TOKEN_KEPT: Duration = Duration::from_secs(300);
/// How long GitHub may go silent (connecting included), how long resolving a commit may
/// take, and a whole download: together well within a function's 30 s, with time left
/// to check the bundle.
const SILENCE: Duration = Duration::from_secs(5);
const RESOLVE_DEADLINE: Duration = Duration::from_secs(5);
const DOWNLOAD_DEADLINE: Duration = Duration::from_secs(15);

/// GitHub's API (or a GitHub Enterprise server's) and the secret holding a token that can
/// read private repositories (the stack's `GitHubApiUrl` and `GitHubTokenSecret`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubSettings {
    pub api_url: String,
    /// The ARN of a Secrets Manager secret or SSM parameter: the token itself is read
    /// when needed and never kept in settings, messages or logs.
    pub token_secret: Option<String>,
}

impl GitHubSettings {
    /// Checked: the API over https (plain http only on a loopback address, for a test
    /// server), the secret an ARN of either store.
    pub fn new(api_url: Option<String>, token_secret: Option<String>) -> Result<Self, String> {
        let api_url = api_url.unwrap_or_else(|| Self::default().api_url);
        let secure = api_url.starts_with("https://") && !api_url.contains('@');
        if !(secure || gantry_fetch::github::is_loopback_http(&api_url)) {
            return Err(format!(
                "GANTRY_GITHUB_API_URL: must be an https:// URL such as https://api.github.com or https://github.example.com/api/v3 (no user information), found {api_url:?}"
            ));
        }
        if let Some(arn) = &token_secret {
            gantry_fetch::secret::store_of("GANTRY_GITHUB_TOKEN_SECRET", arn)?;
        }
        Ok(Self {
            api_url,
            token_secret,
        })
    }
}

impl Default for GitHubSettings {
    fn default() -> Self {
        Self {
            api_url: "https://api.github.com".to_owned(),
            token_secret: None,
        }
    }
}

pub struct GitHubRevisions {
    config: aws_config::SdkConfig,
    settings: GitHubSettings,
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl GitHubRevisions {
    pub fn new(config: &aws_config::SdkConfig, settings: GitHubSettings) -> Self {
        Self {
            config: config.clone(),
            settings,
            token: tokio::sync::Mutex::new(None),
        }
    }

    /// The token, if the stack has a secret for one: read when first needed, then kept
    /// for [`TOKEN_KEPT`].
    async fn token(&self) -> Result<Option<String>, ApiError> {
        let Some(arn) = &self.settings.token_secret else {
            return Ok(None);
        };
        let mut kept = self.token.lock().await;
        if let Some((token, read)) = kept.as_ref()
            && read.elapsed() < TOKEN_KEPT
        {
            return Ok(Some(token.clone()));
        }
        let token = gantry_fetch::secret::read(&self.config, "GitHubTokenSecret", arn)
            .await
            .map_err(ApiError::internal)?;
        *kept = Some((token.clone(), Instant::now()));
        Ok(Some(token))
    }

    async fn tarballs(&self, deadline: Duration) -> Result<GitHubTarballs, ApiError> {
        let api_url = &self.settings.api_url;
        Ok(GitHubTarballs::new(GitHubSource {
            api_url: api_url.clone(),
            token: self.token().await?,
            token_source: "the stack's GitHubTokenSecret",
            // GitHubSettings takes plain http only on a loopback address (a test server).
            allow_insecure_http: api_url.starts_with("http://"),
            proxy: None,
            limits: gantry_fetch::net::Limits {
                max_bytes: bundle::MAX_VALIDATED_ARCHIVE_BYTES,
                max_bytes_key: "the largest bundle Gantry checks",
                timeout: SILENCE,
                timeout_key: "the control plane's GitHub timeout",
                deadline,
                deadline_key: "the control plane's GitHub deadline",
            },
            user_agent: "gantry",
        }))
    }

    /// `location` pinned: its commit resolved to the full id GitHub knows it by.
    pub async fn pin(&self, location: &GitHubLocation) -> Result<GitHubLocation, ApiError> {
        if location.is_pinned() {
            return Ok(location.clone());
        }
        let commit = self
            .tarballs(RESOLVE_DEADLINE)
            .await?
            .resolve_commit(&location.repository, &location.commit_id)
            .await
            .map_err(refused)?;
        Ok(GitHubLocation {
            repository: location.repository.clone(),
            commit_id: commit,
        })
    }

    /// Downloads a pinned commit's tarball and checks it as the agent would: the hook
    /// timeouts per event, and the tarball's size.
    pub async fn validate(
        &self,
        location: &GitHubLocation,
        limits: Limits,
    ) -> Result<(BTreeMap<LifecycleEvent, u64>, i64), ApiError> {
        let scratch = tempfile::tempdir().map_err(|error| {
            ApiError::internal(format!("cannot create a scratch directory: {error}"))
        })?;
        let archive = scratch.path().join("bundle");
        self.tarballs(DOWNLOAD_DEADLINE)
            .await?
            .fetch(&location.repository, &location.commit_id, &archive)
            .await
            .map_err(refused)?;
        let size = std::fs::metadata(&archive)
            .map_err(|error| ApiError::internal(format!("reading the tarball: {error}")))?
            .len();
        let named = format!("GitHub {} at {}", location.repository, location.commit_id);
        let timeouts = check_bundle(&archive, BundleType::Tgz, &named, limits).await?;
        Ok((timeouts, size as i64))
    }
}

/// GitHub's refusal as CodeDeploy's exception: a missing repository or commit is
/// RevisionDoesNotExistException, a refused token InvalidRevisionException, the rate
/// limit ThrottlingException (the caller may retry later).
fn refused(error: GitHubError) -> ApiError {
    let message = format!("revision.gitHubLocation: {}", error.message);
    match error.kind {
        GitHubErrorKind::NotFound => ApiError::new(Exception::RevisionDoesNotExist, message),
        GitHubErrorKind::Denied => ApiError::new(Exception::InvalidRevision, message),
        GitHubErrorKind::RateLimited => ApiError::new(Exception::Throttling, message),
        GitHubErrorKind::Other => ApiError::internal(message),
    }
}
