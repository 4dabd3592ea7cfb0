//! Revisions from GitHub: the tarball of a commit, from GitHub's API (or a GitHub
//! Enterprise server: `github.api_url` in the agent's configuration).
//!
//! `GET {api_url}/repos/{owner}/{repo}/tarball/{commit}` answers with a redirect to the
//! archive; the archive wraps the repository in one top-level directory, which
//! `gantry_core::bundle::unpack` hoists as CodeDeploy does.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, LOCATION, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::path::Path;
use tokio::io::AsyncWriteExt;

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;

pub struct GitHubTarballs {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    api_url: String,
    /// Sent to the API's host only, never along a redirect to another host.
    token: Option<String>,
}

impl GitHubTarballs {
    pub fn new(api_url: &str, token: Option<String>) -> Result<Self, String> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|error| format!("loading the system's root certificates: {error}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            api_url: api_url.trim_end_matches('/').to_owned(),
            token,
        })
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
                && uri.authority() == api_host.as_ref()
            {
                request = request.header(AUTHORIZATION, format!("Bearer {token}"));
            }
            let request = request
                .body(Empty::new())
                .map_err(|error| format!("{name}: {error}"))?;
            let response = self
                .client
                .request(request)
                .await
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
            let mut file = tokio::fs::File::create(destination)
                .await
                .map_err(|error| format!("creating {}: {error}", destination.display()))?;
            let mut body = response.into_body();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|error| format!("downloading {name}: {error}"))?;
                if let Ok(chunk) = frame.into_data() {
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
