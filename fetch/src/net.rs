//! One HTTP stack, for AWS and GitHub alike: the SDK's own client (rustls), through a
//! proxy when one is configured; and the one way a revision is saved to disk, whatever
//! its source: a silent connection fails after a timeout, and no more than the size cap
//! is ever written.

use aws_sdk_s3::primitives::SdkBody;
use aws_smithy_http_client::{Connector, proxy::ProxyConfig, tls};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorSettings, SharedHttpClient,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use http_body_util::BodyExt;
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The rules for a proxy at `url` (`http://host:port`, with `user:password@` if the
/// proxy asks), bypassed for the hosts in `no_proxy` (comma-separated, as NO_PROXY).
pub fn proxy_config(url: &str, no_proxy: Option<&str>) -> Result<ProxyConfig, String> {
    let mut rules = ProxyConfig::all(url).map_err(|_| {
        format!(
            "proxy.url: {} is not a proxy URL such as http://proxy:3128",
            redacted(url)
        )
    })?;
    if let Some(no_proxy) = no_proxy {
        rules = rules.no_proxy(no_proxy);
    }
    Ok(rules)
}

/// A URL fit to print: any `user:password@` replaced by `***@`. Everything after the
/// scheme up to the last `@` counts as credentials, whatever it holds: a password may
/// hold an unencoded `/`, `@`, `:`, `?` or `#`, where a URL parser would see the end of
/// the authority (or of the user). A URL whose path has an `@` loses more than its
/// credentials, never less.
pub fn redacted(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            (Some(scheme), rest)
        }
        _ => (None, url),
    };
    let rest = match rest.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => rest.to_owned(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{rest}"),
        None => rest,
    }
}

fn connector(
    proxy: Option<&ProxyConfig>,
    settings: Option<HttpConnectorSettings>,
    sleep: Option<aws_sdk_s3::config::SharedAsyncSleep>,
) -> Connector {
    let mut builder = Connector::builder();
    builder.set_proxy_config(proxy.cloned());
    builder.set_connector_settings(settings);
    builder.set_sleep_impl(sleep);
    builder
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .build()
}

/// The HTTP client for the AWS SDK: the SDK's default, through the proxy if any.
pub fn sdk_http_client(rules: Option<ProxyConfig>) -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, components| {
        connector(
            rules.as_ref(),
            settings.cloned(),
            components.and_then(|components| components.sleep_impl()),
        )
    })
}

/// An HTTP connector for requests Gantry makes itself (GitHub): the same stack and
/// proxy rules ([`proxy_config`]) as the SDK's, connecting within `timeout` and
/// waiting for a response's head no longer than that.
pub fn http_connector(proxy: Option<&ProxyConfig>, timeout: Duration) -> Connector {
    let settings = HttpConnectorSettings::builder()
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .build();
    connector(proxy, Some(settings), None)
}

/// Sends one request of a download and waits for its response's head within the
/// timeout. `from` names it in errors: never a presigned URL, which is a secret.
pub async fn send(
    connector: &Connector,
    limits: &Limits,
    from: &str,
    request: hyper::Request<SdkBody>,
) -> Result<HttpResponse, String> {
    let request = HttpRequest::try_from(request).map_err(|error| format!("{from}: {error}"))?;
    limits
        .within(from, connector.call(request))
        .await?
        .map_err(|error| {
            if error.is_timeout() {
                limits.stalled(from)
            } else {
                format!(
                    "downloading {from}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&error)
                )
            }
        })
}

/// Reads a successful response's small body (at most `max_bytes`) into memory.
pub async fn read_small(
    limits: &Limits,
    name: &str,
    response: HttpResponse,
    max_bytes: usize,
) -> Result<Vec<u8>, String> {
    limits
        .read_small(name, response.into_body(), max_bytes)
        .await
}

/// Saves a successful response's body to `destination` within the limits, refusing at
/// once one whose declared length is over the cap.
pub async fn save_response(
    limits: &Limits,
    name: &str,
    response: HttpResponse,
    destination: &Path,
) -> Result<(), String> {
    let declared = response
        .headers()
        .get("content-length")
        .and_then(|value| value.parse::<u64>().ok());
    limits.check_declared(name, declared)?;
    limits.save(name, response.into_body(), destination).await
}

/// How a download may go: the largest revision, how long it may go silent, and how long
/// it may take in all.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    /// The configuration key that sets it, named in the error.
    pub max_bytes_key: &'static str,
    pub timeout: Duration,
    /// The configuration key that sets it, named in the error.
    pub timeout_key: &'static str,
    /// A server that trickles a byte now and then never goes silent: the whole download
    /// ends by this deadline.
    pub deadline: Duration,
    /// The configuration key that sets it, named in the error.
    pub deadline_key: &'static str,
}

impl Limits {
    /// The error for a revision over the cap.
    pub fn too_large(&self, name: &str) -> String {
        format!(
            "{name} is larger than {} bytes, the most a revision may hold ({})",
            self.max_bytes, self.max_bytes_key
        )
    }

    /// The error for a connection silent past the timeout.
    pub fn stalled(&self, name: &str) -> String {
        format!(
            "downloading {name}: nothing received for {} s ({})",
            self.timeout.as_secs_f64(),
            self.timeout_key
        )
    }

    /// The error for a download not finished by the deadline.
    pub fn too_slow(&self, name: &str) -> String {
        format!(
            "downloading {name}: not finished within {} s, the most a download may take ({}); the partial bundle is not used",
            self.deadline.as_secs_f64(),
            self.deadline_key
        )
    }

    /// Runs a whole download (its requests, redirects and every byte) within the
    /// deadline.
    pub async fn whole<T>(
        &self,
        name: &str,
        download: impl Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        tokio::time::timeout(self.deadline, download)
            .await
            .map_err(|_| self.too_slow(name))?
    }

    /// Refuses a revision whose declared length (Content-Length) is over the cap.
    pub fn check_declared(&self, name: &str, length: Option<u64>) -> Result<(), String> {
        match length {
            Some(length) if length > self.max_bytes => Err(self.too_large(name)),
            _ => Ok(()),
        }
    }

    /// Runs `future` (a request, until its response's head) within the timeout.
    pub async fn within<T>(
        &self,
        name: &str,
        future: impl Future<Output = T>,
    ) -> Result<T, String> {
        tokio::time::timeout(self.timeout, future)
            .await
            .map_err(|_| self.stalled(name))
    }

    /// The body's next piece of data (frames without data skipped), waited for within
    /// the timeout; `None` at its end.
    async fn next_chunk(
        &self,
        name: &str,
        body: &mut SdkBody,
    ) -> Result<Option<hyper::body::Bytes>, String> {
        while let Some(frame) = self.within(name, body.frame()).await? {
            let frame = frame.map_err(|error| {
                format!(
                    "downloading {name}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&*error)
                )
            })?;
            if let Ok(chunk) = frame.into_data() {
                return Ok(Some(chunk));
            }
        }
        Ok(None)
    }

    /// Reads a small body (at most `max_bytes`) into memory within the timeout.
    pub async fn read_small(
        &self,
        name: &str,
        mut body: SdkBody,
        max_bytes: usize,
    ) -> Result<Vec<u8>, String> {
        let mut read = Vec::new();
        while let Some(chunk) = self.next_chunk(name, &mut body).await? {
            read.extend_from_slice(&chunk);
            if read.len() > max_bytes {
                return Err(format!("{name}: more than {max_bytes} bytes"));
            }
        }
        Ok(read)
    }

    /// Writes `body` to `destination`: fails when nothing arrives for the timeout, and
    /// stops (leaving a partial file) as soon as more than the cap arrived.
    pub async fn save(
        &self,
        name: &str,
        mut body: SdkBody,
        destination: &Path,
    ) -> Result<(), String> {
        let cannot_write =
            |error: std::io::Error| format!("writing {}: {error}", destination.display());
        let mut file = tokio::fs::File::create(destination)
            .await
            .map_err(|error| format!("creating {}: {error}", destination.display()))?;
        let mut received: u64 = 0;
        while let Some(chunk) = self.next_chunk(name, &mut body).await? {
            received += chunk.len() as u64;
            if received > self.max_bytes {
                return Err(self.too_large(name));
            }
            file.write_all(&chunk).await.map_err(cannot_write)?;
        }
        file.flush().await.map_err(cannot_write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::{Body, Bytes, Frame};
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    fn limits(max_bytes: u64, timeout: Duration) -> Limits {
        Limits {
            max_bytes,
            max_bytes_key: "max_bundle_bytes",
            timeout,
            timeout_key: "s3.timeout_seconds",
            deadline: Duration::from_secs(3600),
            deadline_key: "download_deadline_seconds",
        }
    }

    /// Chunks with no declared length, then the end, or silence if `stall`.
    struct Chunks {
        chunks: VecDeque<&'static [u8]>,
        stall: bool,
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            match self.chunks.pop_front() {
                Some(chunk) => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(chunk))))),
                None if self.stall => Poll::Pending,
                None => Poll::Ready(None),
            }
        }
    }

    fn body(chunks: &[&'static [u8]], stall: bool) -> SdkBody {
        SdkBody::from_body_1_x(Chunks {
            chunks: chunks.iter().copied().collect(),
            stall,
        })
    }

    #[tokio::test]
    async fn a_body_is_saved_whole_within_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bundle");
        let limits = limits(6, Duration::from_secs(5));
        limits
            .save("x", body(&[b"abc", b"def"], false), &file)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"abcdef");
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_cut_off_though_it_declared_no_length() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bundle");
        let limits = limits(5, Duration::from_secs(30));
        // The body never ends: only a check as bytes arrive stops it.
        let error = limits
            .save("s3://b/k", body(&[b"abc", b"def"], true), &file)
            .await
            .unwrap_err();
        assert_eq!(
            error,
            "s3://b/k is larger than 5 bytes, the most a revision may hold (max_bundle_bytes)"
        );
        assert!(limits.check_declared("x", Some(6)).is_err());
        assert!(limits.check_declared("x", Some(5)).is_ok());
        assert!(limits.check_declared("x", None).is_ok());
    }

    #[tokio::test]
    async fn a_body_that_goes_silent_fails_after_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bundle");
        let limits = limits(100, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let error = limits
            .save("s3://b/k", body(&[b"abc"], true), &file)
            .await
            .unwrap_err();
        assert_eq!(
            error,
            "downloading s3://b/k: nothing received for 0.2 s (s3.timeout_seconds)"
        );
        assert!(started.elapsed() >= Duration::from_millis(200));
    }
}
