//! Revisions from GitHub: the tarball of a commit, from GitHub's API (or a GitHub
//! Enterprise server: `github.api_url` in the agent's configuration).
//!
//! `GET {api_url}/repos/{owner}/{repo}/tarball/{commit}` answers with a redirect to the
//! archive; the archive wraps the repository in one top-level directory, which
//! `gantry_core::bundle::unpack` hoists as CodeDeploy does.

use crate::config::AgentConfig;
use crate::net::{self, Limits};
use aws_sdk_s3::primitives::SdkBody;
use aws_smithy_http_client::Connector;
use aws_smithy_http_client::proxy::ProxyConfig;
use hyper::header::{ACCEPT, AUTHORIZATION, USER_AGENT};
use hyper::http::uri::{Authority, Scheme};
use hyper::{Request, StatusCode, Uri};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;

pub struct GitHubTarballs {
    /// Through `proxy.url` as AWS requests are; built on the first download.
    connector: OnceLock<Connector>,
    proxy: Option<ProxyConfig>,
    api_url: String,
    /// Sent to the API's host only, over https only (unless `allow_insecure_http`),
    /// never along a redirect to another host or to plain http.
    token: Option<String>,
    allow_insecure_http: bool,
    /// `github.timeout_seconds` for connecting and each wait for bytes, and
    /// `max_bundle_bytes`.
    limits: Limits,
}

impl GitHubTarballs {
    pub fn new(config: &AgentConfig, token: Option<String>) -> Result<Self, String> {
        Ok(Self {
            connector: OnceLock::new(),
            proxy: net::proxy_config(config.proxy.as_ref())?,
            api_url: config.github.api_url.trim_end_matches('/').to_owned(),
            token,
            allow_insecure_http: config.github.allow_insecure_http,
            limits: Limits {
                max_bytes: config.max_bundle_bytes,
                max_bytes_key: "max_bundle_bytes",
                timeout: Duration::from_secs(config.github.timeout_seconds.into()),
                timeout_key: "github.timeout_seconds",
                deadline: Duration::from_secs(config.download_deadline_seconds.into()),
            },
        })
    }

    fn connector(&self) -> &Connector {
        self.connector
            .get_or_init(|| net::http_connector(self.proxy.as_ref(), self.limits.timeout))
    }

    /// Whether the token may go with a request to `uri`.
    fn sends_token(&self, uri: &Uri, api: Option<&Authority>) -> bool {
        let secure = uri.scheme() == Some(&Scheme::HTTPS) || self.allow_insecure_http;
        secure && uri.authority() == api
    }

    /// Downloads the tarball of `repository` (`owner/name`) at `commit` to `destination`,
    /// within the limits (`download_deadline_seconds` for the whole of it, redirects
    /// included).
    pub async fn fetch(
        &self,
        repository: &str,
        commit: &str,
        destination: &Path,
    ) -> Result<(), String> {
        let name = format!("GitHub {repository} at {commit}");
        self.limits
            .whole(
                &name,
                self.fetch_unbounded(&name, repository, commit, destination),
            )
            .await
    }

    async fn fetch_unbounded(
        &self,
        name: &str,
        repository: &str,
        commit: &str,
        destination: &Path,
    ) -> Result<(), String> {
        let first: Uri = format!("{}/repos/{repository}/tarball/{commit}", self.api_url)
            .parse()
            .map_err(|error| format!("{name}: not a valid URL: {error}"))?;
        let api_host = first.authority().cloned();
        let mut uri = first;
        for _ in 0..=MAX_REDIRECTS {
            let mut request = Request::get(uri.clone())
                .header(USER_AGENT, "gantry-agent")
                .header(ACCEPT, "application/vnd.github+json");
            if let Some(token) = &self.token
                && self.sends_token(&uri, api_host.as_ref())
            {
                request = request.header(AUTHORIZATION, format!("Bearer {token}"));
            }
            let request = request
                .body(SdkBody::empty())
                .map_err(|error| format!("{name}: {error}"))?;
            let from = format!("{name} from {uri}");
            let response = net::send(self.connector(), &self.limits, &from, request).await?;
            let status = StatusCode::from_u16(response.status().as_u16())
                .map_err(|error| format!("{from}: {error}"))?;
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get("location")
                    .ok_or_else(|| format!("{name}: {status} without a Location"))?;
                uri = resolve(&uri, location)
                    .map_err(|error| format!("{name}: redirect to {location:?}: {error}"))?;
                continue;
            }
            if !status.is_success() {
                return Err(match status {
                    StatusCode::NOT_FOUND | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                        format!(
                            "{name}: {status}: the repository or commit does not exist, or the agent's token (github.token_file) cannot read it"
                        )
                    }
                    _ => format!("{name}: {uri} answered {status}"),
                });
            }
            return net::save_response(&self.limits, &from, response, destination).await;
        }
        Err(format!("{name}: more than {MAX_REDIRECTS} redirects"))
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
        let mut config = AgentConfig::parse(
            "identity:\n  on_premises_name: web-1\nregion: eu-west-1\nqueue_prefix: q-\nreports_queue: r\n",
        )
        .unwrap();
        config.github.allow_insecure_http = allow_insecure_http;
        GitHubTarballs::new(&config, Some("t".into())).unwrap()
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
