//! `gantry proxy`: CodeDeploy's own protocol ([`gantry_api::protocol`]) on a loopback
//! port, each call forwarded to Gantry's api function with the caller's own AWS
//! credentials, so the stock AWS CLI, boto3 and the SDKs reach a deployed stack with
//! `--endpoint-url`. AWS itself cannot take a request signed for CodeDeploy at a Lambda
//! or API Gateway endpoint (the signature names the service), hence a local proxy.
//!
//! A request must come to a loopback name, from no web page (no `Origin`), signed with
//! the same keys the proxy forwards with: the proxy lends the caller's credentials to no
//! one else on the machine.

use crate::client::Gantry;
use anyhow::Context;
use gantry_api::protocol::{self, CONTENT_TYPE, Keys};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

/// Lambda's limit on a synchronous invocation's payload: no larger request can be
/// forwarded.
const MAX_REQUEST_BYTES: usize = 6 * 1024 * 1024;

/// Serves until interrupted (SIGINT or SIGTERM).
pub async fn run(gantry: Gantry, port: u16) -> anyhow::Result<()> {
    let keys = protocol::signing_keys(gantry.config.credentials_provider())
        .await
        .context("gantry proxy checks each request against your AWS credentials, and found none")?;
    let listener = crate::serve::listen(port).await?;
    // Scripts and tests read this line for the port.
    println!(
        "gantry proxy listening on http://{}",
        listener.local_addr()?
    );
    use std::io::Write;
    std::io::stdout().flush()?;
    let state = Arc::new((gantry, keys));
    crate::serve::serve(listener, move |request| {
        let state = Arc::clone(&state);
        async move { handle(&state.0, &state.1, request).await }
    })
    .await
}

fn answer(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::builder()
        .status(status)
        .header("content-type", CONTENT_TYPE);
    if let Some(error_type) = body["__type"].as_str() {
        response = response.header("x-amzn-errortype", error_type);
    }
    response
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

fn refuse(status: StatusCode, error_type: &str, message: &str) -> Response<Full<Bytes>> {
    answer(status, &json!({"__type": error_type, "message": message}))
}

async fn handle(gantry: &Gantry, keys: &Keys, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let host = request
        .headers()
        .get(hyper::header::HOST)
        .and_then(|value| value.to_str().ok());
    if !host.is_some_and(protocol::is_loopback_host)
        || request.headers().contains_key(hyper::header::ORIGIN)
    {
        return refuse(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            "gantry proxy answers command-line clients and SDKs on this machine only (a loopback Host, no Origin)",
        );
    }
    let operation = protocol::operation(request.headers());
    let Some(operation) =
        operation.filter(|_| request.method() == Method::POST && request.uri().path() == "/")
    else {
        return refuse(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "gantry proxy serves CodeDeploy's protocol: POST / with X-Amz-Target CodeDeploy_20141006.<Operation>",
        );
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = Limited::new(body, MAX_REQUEST_BYTES).collect().await else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "InvalidInputException",
            &format!("the request body is over {MAX_REQUEST_BYTES} bytes or could not be read"),
        );
    };
    let body = body.to_bytes();
    if let Err(refusal) = protocol::verify(
        keys,
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or_default(),
        &parts.headers,
        &body,
        std::time::SystemTime::now(),
    ) {
        return answer(refusal.status, &refusal.body());
    }
    let input: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(input) => input,
            Err(error) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "SerializationException",
                    &format!("the request body is not JSON: {error}"),
                );
            }
        }
    };
    match gantry.api(&operation, input).await {
        Ok(output) => answer(StatusCode::OK, &output),
        Err(error) => {
            let (status, body) = protocol::error_answer(
                error.code.as_deref().unwrap_or("InternalFailure"),
                &error.message,
            );
            answer(status, &body)
        }
    }
}
