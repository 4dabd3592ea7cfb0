//! Revisions from GitHub: the tarball of a commit, from GitHub's API (or a GitHub
//! Enterprise server's), for the agent that installs it and the control plane that
//! checks it first; and a commit's full id.
//!
//! `GET {api_url}/repos/{owner}/{repo}/tarball/{commit}` answers with a redirect to the
//! archive; the archive wraps the repository in one top-level directory, which
//! `gantry_core::bundle::unpack` hoists as CodeDeploy does.

use crate::net::{self, Limits};
use aws_sdk_s3::primitives::SdkBody;
use aws_smithy_http_client::Connector;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use hyper::header::{ACCEPT, AUTHORIZATION, USER_AGENT};
use hyper::http::uri::{Authority, Scheme};
use hyper::{Request, StatusCode, Uri};
use std::path::Path;
use std::sync::OnceLock;

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;

/// Where a token is configured, named in errors ("github.token_file", "GitHubTokenSecret").
pub type TokenSource = &'static str;

/// How a GitHub request failed, for callers that answer differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitHubErrorKind {
    /// No such repository or commit, or the token cannot see it (GitHub answers 404 for
    /// a private repository it hides).
    NotFound,
    /// The token was refused (401), or it may not read the repository (403).
    Denied,
    /// GitHub's rate limit: try again later, or give a token (60 requests an hour
    /// without one).
    RateLimited,
    /// Anything else: the network, a limit, an unexpected answer.
    Other,
}

/// A failed GitHub request: its kind, and a message naming the repository and commit
/// (never the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GitHubError {
    pub kind: GitHubErrorKind,
    pub message: String,
}

impl GitHubError {
    fn other(message: String) -> Self {
        Self {
            kind: GitHubErrorKind::Other,
            message,
        }
    }
}

/// Where GitHub revisions come from, and how to reach it.
pub struct GitHubSource {
    /// GitHub's API, or a GitHub Enterprise server's (`https://github.example.com/api/v3`).
    pub api_url: String,
    /// Sent to the API's host only, over https only (unless `allow_insecure_http`),
    /// never along a redirect to another host or to plain http.
    pub token: Option<String>,
    /// Where the token is configured, for errors that ask for one.
    pub token_source: TokenSource,
    /// Allows an `http://` api_url, and the token over it: for test servers only.
    pub allow_insecure_http: bool,
    pub proxy: Option<ProxyConfig>,
    /// The size cap, the timeout for connecting and each wait for bytes, and the
    /// deadline for the whole of a download.
    pub limits: Limits,
    /// Who asks (GitHub requires a User-Agent).
    pub user_agent: &'static str,
}

pub struct GitHubTarballs {
    /// Through the proxy as AWS requests are; built on the first request.
    connector: OnceLock<Connector>,
    source: GitHubSource,
}

impl GitHubTarballs {
    pub fn new(mut source: GitHubSource) -> Self {
        source.api_url = source.api_url.trim_end_matches('/').to_owned();
        Self {
            connector: OnceLock::new(),
            source,
        }
    }

    fn connector(&self) -> &Connector {
        self.connector.get_or_init(|| {
            net::http_connector(self.source.proxy.as_ref(), self.source.limits.timeout)
        })
    }

    /// Whether the token may go with a request to `uri`.
    fn sends_token(&self, uri: &Uri, api: Option<&Authority>) -> bool {
        let secure = uri.scheme() == Some(&Scheme::HTTPS) || self.source.allow_insecure_http;
        secure && uri.authority() == api
    }

    /// The full (40-hex, lowercase) id of `commit` (a full or abbreviated id) in
    /// `repository` (`owner/name`), as GitHub resolves it.
    pub async fn resolve_commit(
        &self,
        repository: &str,
        commit: &str,
    ) -> Result<String, GitHubError> {
        let name = format!("GitHub {repository} at {commit}");
        let url = format!(
            "{}/repos/{repository}/commits/{commit}",
            self.source.api_url
        );
        self.within_deadline(&name, async {
            let (response, from) = self.get(&name, &url, "application/vnd.github.sha").await?;
            let body = net::read_small(&self.source.limits, &from, response, 1024)
                .await
                .map_err(GitHubError::other)?;
            let text = String::from_utf8_lossy(&body).trim().to_ascii_lowercase();
            if text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(text)
            } else {
                // Whatever answered (a proxy, a login page) is not repeated.
                Err(GitHubError::other(format!(
                    "{name}: the API answered {} bytes that are not a commit id; is {} GitHub's API?",
                    body.len(),
                    self.source.api_url
                )))
            }
        })
        .await
    }

    /// Downloads the tarball of `repository` (`owner/name`) at `commit` to `destination`,
    /// within the limits (the deadline for the whole of it, redirects included).
    pub async fn fetch(
        &self,
        repository: &str,
        commit: &str,
        destination: &Path,
    ) -> Result<(), GitHubError> {
        let name = format!("GitHub {repository} at {commit}");
        let url = format!(
            "{}/repos/{repository}/tarball/{commit}",
            self.source.api_url
        );
        self.within_deadline(&name, async {
            let (response, from) = self.get(&name, &url, "application/vnd.github+json").await?;
            net::save_response(&self.source.limits, &from, response, destination)
                .await
                .map_err(GitHubError::other)
        })
        .await
    }

    async fn within_deadline<T>(
        &self,
        name: &str,
        work: impl Future<Output = Result<T, GitHubError>>,
    ) -> Result<T, GitHubError> {
        let limits = &self.source.limits;
        tokio::time::timeout(limits.deadline, work)
            .await
            .map_err(|_| GitHubError::other(limits.too_slow(name)))?
    }

    /// GETs `url`, following redirects: the successful response, and what to call it
    /// in errors.
    async fn get(
        &self,
        name: &str,
        url: &str,
        accept: &str,
    ) -> Result<(HttpResponse, String), GitHubError> {
        let first: Uri = url
            .parse()
            .map_err(|error| GitHubError::other(format!("{name}: not a valid URL: {error}")))?;
        let api_host = first.authority().cloned();
        let mut uri = first;
        for _ in 0..=MAX_REDIRECTS {
            let mut request = Request::get(uri.clone())
                .header(USER_AGENT, self.source.user_agent)
                .header(ACCEPT, accept);
            if let Some(token) = &self.source.token
                && self.sends_token(&uri, api_host.as_ref())
            {
                request = request.header(AUTHORIZATION, format!("Bearer {token}"));
            }
            let request = request
                .body(SdkBody::empty())
                .map_err(|error| GitHubError::other(format!("{name}: {error}")))?;
            // A redirect's query may hold a short-lived token (codeload's, for a private
            // repository): never in a message.
            let from = format!("{name} from {}", shown(&uri));
            let response = net::send(self.connector(), &self.source.limits, &from, request)
                .await
                .map_err(GitHubError::other)?;
            let status = StatusCode::from_u16(response.status().as_u16())
                .map_err(|error| GitHubError::other(format!("{from}: {error}")))?;
            if status.is_redirection() {
                let location = response.headers().get("location").ok_or_else(|| {
                    GitHubError::other(format!("{name}: {status} without a Location"))
                })?;
                uri = resolve(&uri, location)
                    .map_err(|error| GitHubError::other(format!("{name}: redirect: {error}")))?;
                continue;
            }
            if !status.is_success() {
                return Err(self.refused(name, status, &response));
            }
            return Ok((response, from));
        }
        Err(GitHubError::other(format!(
            "{name}: more than {MAX_REDIRECTS} redirects"
        )))
    }

    /// What an answer other than success means.
    fn refused(&self, name: &str, status: StatusCode, response: &HttpResponse) -> GitHubError {
        let header = |key: &str| response.headers().get(key).map(str::trim);
        let token = self.source.token_source;
        // The primary limit spent (remaining 0), or a secondary one (retry-after).
        if status == StatusCode::TOO_MANY_REQUESTS
            || (status == StatusCode::FORBIDDEN
                && (header("x-ratelimit-remaining") == Some("0")
                    || header("retry-after").is_some()))
        {
            let until = header("x-ratelimit-reset")
                .map(|reset| format!(" until {reset} (seconds since 1970)"))
                .unwrap_or_default();
            let hint = match self.source.token {
                Some(_) => String::new(),
                None => format!(
                    " or configure a token ({token}): without one GitHub allows 60 requests an hour"
                ),
            };
            return GitHubError {
                kind: GitHubErrorKind::RateLimited,
                message: format!(
                    "{name}: {status}: GitHub's rate limit is spent{until}; try again later{hint}"
                ),
            };
        }
        let (kind, message) = match status {
            StatusCode::NOT_FOUND | StatusCode::UNPROCESSABLE_ENTITY => (
                GitHubErrorKind::NotFound,
                format!(
                    "{name}: {status}: no such repository or commit, or the token ({token}) cannot see it"
                ),
            ),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (
                GitHubErrorKind::Denied,
                format!(
                    "{name}: {status}: GitHub refused the token ({token}), or it may not read the repository"
                ),
            ),
            _ => (
                GitHubErrorKind::Other,
                format!("{name}: GitHub answered {status}"),
            ),
        };
        GitHubError { kind, message }
    }
}

/// Whether `url` is a plain-http URL of a loopback host (a test server), with no user
/// information that could name another host.
pub fn is_loopback_http(url: &str) -> bool {
    let Ok(uri) = url.parse::<Uri>() else {
        return false;
    };
    let Some(authority) = uri.authority() else {
        return false;
    };
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    uri.scheme() == Some(&Scheme::HTTP)
        && !authority.as_str().contains('@')
        && (host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|address| address.is_loopback()))
}

/// `uri` without its query: fit for a message.
fn shown(uri: &Uri) -> String {
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => format!("{scheme}://{authority}{}", uri.path()),
        _ => uri.path().to_owned(),
    }
}

/// A redirect's target: absolute, or a path on the same server.
fn resolve(base: &Uri, location: &str) -> Result<Uri, String> {
    let target: Uri = location.parse().map_err(|error| format!("{error}"))?;
    if target.scheme().is_some() {
        return Ok(target);
    }
    let mut parts = base.clone().into_parts();
    parts.path_and_query = target.path_and_query().cloned();
    Uri::from_parts(parts).map_err(|error| format!("{error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tarballs(allow_insecure_http: bool) -> GitHubTarballs {
        GitHubTarballs::new(GitHubSource {
            api_url: "https://github.internal/api/v3/".into(),
            token: Some("t".into()),
            token_source: "github.token_file",
            allow_insecure_http,
            proxy: None,
            limits: Limits {
                max_bytes: 1 << 20,
                max_bytes_key: "max_bundle_bytes",
                timeout: std::time::Duration::from_secs(5),
                timeout_key: "github.timeout_seconds",
                deadline: std::time::Duration::from_secs(60),
                deadline_key: "download_deadline_seconds",
            },
            user_agent: "gantry-test",
        })
    }

    #[test]
    fn only_plain_loopback_urls_count_as_loopback() {
        for yes in [
            "http://127.0.0.1:8080",
            "http://localhost/api",
            "http://[::1]:9000/x",
        ] {
            assert!(is_loopback_http(yes), "{yes}");
        }
        for no in [
            "http://localhost:80@evil.example",
            "http://evil.example/127.0.0.1",
            "https://127.0.0.1",
            "http://127.0.0.1.evil.example",
            "http://user@127.0.0.1",
        ] {
            assert!(!is_loopback_http(no), "{no}");
        }
    }

    #[test]
    fn messages_never_show_a_query() {
        let uri: Uri = "https://codeload.github.com/a/b/legacy.tar.gz/c?token=SECRET"
            .parse()
            .unwrap();
        assert_eq!(
            shown(&uri),
            "https://codeload.github.com/a/b/legacy.tar.gz/c"
        );
        assert_eq!(
            tarballs(false).source.api_url,
            "https://github.internal/api/v3"
        );
    }

    #[test]
    fn the_token_goes_to_the_api_host_over_https_only() {
        let api: Uri = "https://github.internal/api/v3".parse().unwrap();
        let host = api.authority();
        let strict = tarballs(false);
        let to = |url: &str| url.parse::<Uri>().unwrap();
        assert!(strict.sends_token(&to("https://github.internal/repos/a/b/tarball/c"), host));
        // A redirect to plain http on the same host, or to another host: no token.
        assert!(!strict.sends_token(&to("http://github.internal/archive.tgz"), host));
        assert!(!strict.sends_token(&to("https://codeload.example/archive.tgz"), host));
        // Tests may allow http explicitly.
        assert!(tarballs(true).sends_token(&to("http://github.internal/x"), host));
    }

    #[test]
    fn redirects_resolve_absolute_and_relative() {
        let base: Uri = "https://api.github.com/repos/a/b/tarball/c"
            .parse()
            .unwrap();
        assert_eq!(
            resolve(&base, "https://codeload.github.com/a/b/legacy.tar.gz/c").unwrap(),
            "https://codeload.github.com/a/b/legacy.tar.gz/c"
        );
        assert_eq!(
            resolve(&base, "/archive/c.tar.gz").unwrap(),
            "https://api.github.com/archive/c.tar.gz"
        );
    }
}
