//! CodeDeploy's own protocol: `POST /` with `X-Amz-Target:
//! CodeDeploy_20141006.<Operation>` and an `application/x-amz-json-1.1` body, signed with
//! Signature Version 4, as the stock AWS CLI, boto3 and the AWS SDKs send it; answers are
//! HTTP 200 with the output, or HTTP 400 with `{"__type": "<Exception>", "message": "..."}`.
//! Served by gantry-local and by `gantry proxy`.
//!
//! A request must be signed with the keys the server holds, as AWS refuses a request
//! signed with keys it does not know (UnrecognizedClientException) or with the wrong
//! secret (InvalidSignatureException).

use aws_sigv4::sign::v4::{calculate_signature, generate_signing_key};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime};

/// The `X-Amz-Target` prefix of CodeDeploy's operations.
pub const TARGET_PREFIX: &str = "CodeDeploy_20141006.";

/// The content type of CodeDeploy's requests and answers.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// How far a request's `X-Amz-Date` may be from now, as AWS allows.
const CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// The keys requests must be signed with.
#[derive(Clone)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// A request refused as the service refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub error_type: String,
    pub message: String,
}

impl Refusal {
    pub fn new(status: StatusCode, error_type: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type: error_type.to_owned(),
            message: message.into(),
        }
    }

    fn signature(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidSignatureException",
            message,
        )
    }

    /// The JSON 1.1 error body.
    pub fn body(&self) -> Value {
        json!({"__type": self.error_type, "message": self.message})
    }
}

/// The operation a request names, if it is one of CodeDeploy's.
pub fn operation(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .and_then(|target| target.strip_prefix(TARGET_PREFIX))
        .filter(|operation| {
            !operation.is_empty() && operation.chars().all(|c| c.is_ascii_alphanumeric())
        })
        .map(str::to_owned)
}

/// An error as CodeDeploy answers it: its exception with HTTP 400, but an internal
/// failure with HTTP 500 (clients retry those).
pub fn error_answer(error_type: &str, message: &str) -> (StatusCode, Value) {
    let status = if error_type == "InternalFailure" {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::BAD_REQUEST
    };
    (status, json!({"__type": error_type, "message": message}))
}

/// The keys requests must be signed with: those of `provider` (the server's own AWS
/// configuration).
pub async fn signing_keys(
    provider: Option<aws_credential_types::provider::SharedCredentialsProvider>,
) -> Option<Keys> {
    use aws_credential_types::provider::ProvideCredentials;
    match provider?.provide_credentials().await {
        Ok(credentials) => Some(Keys {
            access_key_id: credentials.access_key_id().to_owned(),
            secret_access_key: credentials.secret_access_key().to_owned(),
        }),
        Err(error) => {
            tracing::warn!(%error, "no credentials: CodeDeploy's protocol refuses every request");
            None
        }
    }
}

/// Whether a `Host` header names this machine's loopback: `localhost`, `127.x.x.x` or
/// `[::1]`, with or without a port. A loopback server refuses other names: a web page
/// could reach it through a name it rebinds to 127.0.0.1.
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(name, _)| name),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// Checks the request's Signature Version 4 `Authorization` against `keys`: the key id,
/// the signature over the method, path, query, signed headers and body, and the time.
pub fn verify(
    keys: &Keys,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), Refusal> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let Some(authorization) = header("authorization") else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token: sign the request with Signature Version 4",
        ));
    };
    let authorization = Authorization::parse(authorization).ok_or_else(|| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' (AWS4-HMAC-SHA256)",
        )
    })?;
    if authorization.access_key_id != keys.access_key_id {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }
    let amz_date = header("x-amz-date").ok_or_else(|| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "IncompleteSignatureException",
            "the request has no X-Amz-Date header",
        )
    })?;
    let signed_at = parse_amz_date(amz_date)
        .ok_or_else(|| Refusal::signature(format!("X-Amz-Date {amz_date:?} is not a time")))?;
    let skew = now
        .duration_since(signed_at)
        .or_else(|_| signed_at.duration_since(now))
        .unwrap_or_default();
    if skew > CLOCK_SKEW || !amz_date.starts_with(&authorization.date) {
        return Err(Refusal::signature(format!(
            "Signature expired or not yet valid: {amz_date} is more than 15 minutes from now, or not the credential's date"
        )));
    }
    let mut canonical_headers = String::new();
    for name in &authorization.signed_headers {
        let values: Vec<String> = headers
            .get_all(name.as_str())
            .iter()
            .filter_map(|value| value.to_str().ok())
            .map(|value| value.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload_hash = header("x-amz-content-sha256")
        .map(str::to_owned)
        .unwrap_or_else(|| hex(&Sha256::digest(body)));
    let canonical_request = format!(
        "{method}\n{path}\n{}\n{canonical_headers}\n{}\n{payload_hash}",
        canonical_query(query),
        authorization.signed_headers.join(";")
    );
    let scope = format!(
        "{}/{}/{}/aws4_request",
        authorization.date, authorization.region, authorization.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let key = generate_signing_key(
        &keys.secret_access_key,
        signed_at,
        &authorization.region,
        &authorization.service,
    );
    let expected = calculate_signature(key, string_to_sign.as_bytes());
    if expected != authorization.signature {
        return Err(Refusal::signature(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        ));
    }
    Ok(())
}

/// `AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request,
/// SignedHeaders=<a;b;c>, Signature=<hex>`.
struct Authorization {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
}

impl Authorization {
    fn parse(header: &str) -> Option<Self> {
        let rest = header.strip_prefix("AWS4-HMAC-SHA256")?.trim();
        let mut credential = None;
        let mut signed_headers = None;
        let mut signature = None;
        for part in rest.split(',') {
            let (name, value) = part.trim().split_once('=')?;
            match name {
                "Credential" => credential = Some(value),
                "SignedHeaders" => signed_headers = Some(value),
                "Signature" => signature = Some(value),
                _ => {}
            }
        }
        let scope: Vec<&str> = credential?.split('/').collect();
        let [access_key_id, date, region, service, "aws4_request"] = scope.as_slice() else {
            return None;
        };
        Some(Self {
            access_key_id: (*access_key_id).to_owned(),
            date: (*date).to_owned(),
            region: (*region).to_owned(),
            service: (*service).to_owned(),
            signed_headers: signed_headers?
                .split(';')
                .map(str::to_ascii_lowercase)
                .collect(),
            signature: signature?.to_owned(),
        })
    }
}

/// The query string with its parameters sorted, as Signature Version 4 signs it (the
/// client sends them already encoded).
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .collect();
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `20261207T102816Z`, read as the RFC 3339 time it spells.
fn parse_amz_date(value: &str) -> Option<SystemTime> {
    let compact = value.strip_suffix('Z')?;
    let (date, time) = compact.split_once('T')?;
    if !value.is_ascii() || date.len() != 8 || time.len() != 6 {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &date[..4],
        &date[4..6],
        &date[6..],
        &time[..2],
        &time[2..4],
        &time[4..]
    );
    let parsed = aws_smithy_types::DateTime::from_str(
        &rfc3339,
        aws_smithy_types::date_time::Format::DateTime,
    )
    .ok()?;
    SystemTime::try_from(parsed).ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_read_as_the_time_they_name() {
        let time = parse_amz_date("20261207T102816Z").unwrap();
        let seconds = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        // 2026-12-07T10:28:16Z.
        assert_eq!(seconds, 1_796_639_296);
        assert_eq!(
            parse_amz_date("19700101T000000Z"),
            Some(SystemTime::UNIX_EPOCH)
        );
        for bad in [
            "2026-12-07T10:28:16Z",
            "20261307T102816Z",
            "20261207T102816",
            "",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_codedeploys_targets_are_operations() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amz-target",
            "CodeDeploy_20141006.ListApplications".parse().unwrap(),
        );
        assert_eq!(operation(&headers).as_deref(), Some("ListApplications"));
        headers.insert("x-amz-target", "DynamoDB_20120810.Scan".parse().unwrap());
        assert_eq!(operation(&headers), None);
        headers.insert("x-amz-target", "CodeDeploy_20141006.a/b".parse().unwrap());
        assert_eq!(operation(&headers), None);
    }

    #[test]
    fn queries_sign_sorted() {
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query(""), "");
    }
}
