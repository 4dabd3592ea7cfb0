//! CodeDeploy's own protocol on gantry-local ([`gantry_api::protocol`]): each call is the
//! api function's operation, checked against gantry-local's own credentials.

use crate::lambda::{Functions, MAX_PAYLOAD_BYTES, Outcome};
use crate::{Body, json_response};
use gantry_api::protocol::{CONTENT_TYPE, Keys, error_answer, verify};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

/// One CodeDeploy operation in its own protocol: the signature checked, then the api
/// function's operation, answered as the service answers.
pub async fn serve(
    functions: &Functions,
    keys: &Option<Keys>,
    operation: &str,
    request: Request<Incoming>,
) -> Response<Body> {
    let answer = |status: StatusCode, body: &Value| {
        let mut response = json_response(status, body, body["__type"].as_str());
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(CONTENT_TYPE),
        );
        response
    };
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_PAYLOAD_BYTES).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            let (status, body) = error_answer(
                "InvalidInputException",
                &format!("the request body is over {MAX_PAYLOAD_BYTES} bytes or could not be read"),
            );
            return answer(status, &body);
        }
    };
    let Some(keys) = keys else {
        let (status, body) = error_answer(
            "UnrecognizedClientException",
            "gantry-local has no credentials of its own to check signatures against",
        );
        return answer(status, &body);
    };
    if let Err(refusal) = verify(
        keys,
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or_default(),
        &parts.headers,
        &body,
        std::time::SystemTime::now(),
    ) {
        tracing::warn!(%operation, error_type = %refusal.error_type, "CodeDeploy request refused");
        return answer(refusal.status, &refusal.body());
    }
    let input: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(input) => input,
            Err(error) => {
                let (status, body) = error_answer(
                    "SerializationException",
                    &format!("the request body is not JSON: {error}"),
                );
                return answer(status, &body);
            }
        }
    };
    let started = std::time::Instant::now();
    let outcome = functions
        .invoke("api", json!({"operation": operation, "input": input}))
        .await;
    tracing::info!(%operation, elapsed_ms = started.elapsed().as_millis() as u64, ok = matches!(outcome, Outcome::Returned(_)), "CodeDeploy operation");
    match outcome {
        Outcome::Returned(output) => answer(StatusCode::OK, &output),
        Outcome::Failed(error) => {
            let (status, body) = error_answer(error.code.name(), &error.message);
            answer(status, &body)
        }
        Outcome::TimedOut(limit) => {
            let (status, body) = error_answer(
                "InternalFailure",
                &format!("the api function ran out of its {} s", limit.as_secs()),
            );
            answer(status, &body)
        }
    }
}
