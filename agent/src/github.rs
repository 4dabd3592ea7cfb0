//! Revisions from GitHub: the tarball of a commit, from GitHub's API (or a GitHub
//! Enterprise server: `github.api_url` in the agent's configuration).
//!
//! `GET {api_url}/repos/{owner}/{repo}/tarball/{commit}` answers with a redirect to the
//! archive; the archive wraps the repository in one top-level directory, which
//! `gantry_core::bundle::unpack` hoists as CodeDeploy does.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, LOCATION, USER_AGENT};
use hyper::http::uri::{Authority, Scheme};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;
/// The largest archive downloaded: what the unpacker would accept unpacked.
const MAX_DOWNLOAD_BYTES: u64 = 4 * 1024 * 1024 * 1024;

pub struct GitHubTarballs {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    api_url: String,
    /// Sent to the API's host only, over https only (unless `allow_insecure_http`),
    /// never along a redirect to another host or to plain http.
    token: Option<String>,
    allow_insecure_http: bool,
    /// Connecting, and each wait for bytes, fail past this.
    timeout: Duration,
}

impl GitHubTarballs {
    pub fn new(config: &crate::config::GitHub, token: Option<String>) -> Result<Self, String> {
        let timeout = Duration::from_secs(config.timeout_seconds.into());
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|error| format!("loading the system's root certificates: {error}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            api_url: config.api_url.trim_end_matches('/').to_owned(),
            token,
            allow_insecure_http: config.allow_insecure_http,
            timeout,
        })
    }

    /// Whether the token may go with a request to `uri`.
    fn sends_token(&self, uri: &Uri, api: Option<&Authority>) -> bool {
        let secure = uri.scheme() == Some(&Scheme::HTTPS) || self.allow_insecure_http;
        secure && uri.authority() == api
    }

    /// Downloads the tarball of `repository` (`owner/name`) at `commit` to `destination`.
    pub async fn fetch(
        &self,
        repository: &str,
        commit: &str,
        destination: &Path,
    ) -> Result<(), String> {
        let name = format!("GitHub {repository} at {commit}");
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
                .body(Empty::new())
                .map_err(|error| format!("{name}: {error}"))?;
            let stalled = || {
                format!(
                    "downloading {name} from {uri}: nothing received for {} s (github.timeout_seconds)",
                    self.timeout.as_secs()
                )
            };
            let response = tokio::time::timeout(self.timeout, self.client.request(request))
                .await
                .map_err(|_| stalled())?
                .map_err(|error| format!("downloading {name} from {uri}: {error}"))?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|value| value.to_str().ok())
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
            let too_large = || {
                format!(
                    "{name}: the archive is larger than {MAX_DOWNLOAD_BYTES} bytes, the most a revision may hold"
                )
            };
            let declared = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok());
            if declared.is_some_and(|length| length > MAX_DOWNLOAD_BYTES) {
                return Err(too_large());
            }
            let mut file = tokio::fs::File::create(destination)
                .await
                .map_err(|error| format!("creating {}: {error}", destination.display()))?;
            let mut body = response.into_body();
            let mut received: u64 = 0;
            while let Some(frame) = tokio::time::timeout(self.timeout, body.frame())
                .await
                .map_err(|_| stalled())?
            {
                let frame = frame.map_err(|error| format!("downloading {name}: {error}"))?;
                if let Ok(chunk) = frame.into_data() {
                    received += chunk.len() as u64;
                    if received > MAX_DOWNLOAD_BYTES {
                        return Err(too_large());
                    }
                    file.write_all(&chunk)
                        .await
                        .map_err(|error| format!("writing {}: {error}", destination.display()))?;
                }
            }
            return file
                .flush()
                .await
                .map_err(|error| format!("writing {}: {error}", destination.display()));
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
        let config = crate::config::GitHub {
            allow_insecure_http,
            ..crate::config::GitHub::default()
        };
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
