//! gantry-local: the whole Gantry control plane in one process, against whatever
//! `AWS_ENDPOINT_URL` names (the moto server in tests and the demo).
//!
//! It creates the resources the SAM template would (table, reports queue and its
//! dead-letter queue, topic, bucket), serves the Lambda Invoke API so the CLI, the SDK
//! and `aws lambda invoke --endpoint-url` reach the same handlers as in AWS, and plays
//! the event sources: it long-polls the reports queue into batch-advance (with partial
//! batch failures, as Lambda's SQS event source) and fires the schedule tick. Every
//! invocation runs under its function's limits from template.yaml ([`lambda`]).

mod codedeploy;
mod lambda;

use anyhow::Context;
use clap::Parser;
use gantry_functions::control::Settings;
use gantry_functions::handlers;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use lambda::{Functions, MAX_PAYLOAD_BYTES, Outcome, Template};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(name = "gantry-local", version, about)]
struct Args {
    /// Loopback port for the Lambda Invoke API (0 picks a free one).
    #[arg(long, env = "GANTRY_LOCAL_PORT", default_value_t = 0)]
    port: u16,
    /// DynamoDB table.
    #[arg(long, env = "GANTRY_TABLE", default_value = "gantry")]
    table: String,
    /// The queue agents send reports to.
    #[arg(long, env = "GANTRY_REPORTS_QUEUE", default_value = "gantry-reports")]
    reports_queue: String,
    /// Where reports go after `max_receives` failed attempts.
    #[arg(
        long,
        env = "GANTRY_DEAD_LETTER_QUEUE",
        default_value = "gantry-reports-dlq"
    )]
    dead_letter_queue: String,
    /// Command queues are `<prefix><instance name>`.
    #[arg(
        long,
        env = "GANTRY_COMMAND_QUEUE_PREFIX",
        default_value = "gantry-commands-"
    )]
    command_queue_prefix: String,
    /// The queue Auto Scaling lifecycle notifications go to (and finished launches).
    #[arg(
        long,
        env = "GANTRY_LIFECYCLE_QUEUE",
        default_value = "gantry-lifecycle"
    )]
    lifecycle_queue: String,
    /// The role Auto Scaling assumes to notify the lifecycle queue (the template creates
    /// one; moto does not check it).
    #[arg(
        long,
        env = "GANTRY_LIFECYCLE_ROLE_ARN",
        default_value = "arn:aws:iam::000000000000:role/gantry-lifecycle"
    )]
    lifecycle_role_arn: String,
    /// The SNS topic created for trigger notifications.
    #[arg(long, env = "GANTRY_TOPIC", default_value = "gantry-notifications")]
    topic: String,
    /// The S3 bucket created for revisions.
    #[arg(long, env = "GANTRY_BUCKET", default_value = "gantry-revisions")]
    bucket: String,
    /// How often the schedule tick fires, in milliseconds.
    #[arg(long, env = "GANTRY_TICK_MS", default_value_t = 1000)]
    tick_ms: u64,
    /// Receives of a report before it is dead-lettered (template.yaml's maxReceiveCount).
    #[arg(long, env = "GANTRY_MAX_RECEIVES", default_value_t = 5)]
    max_receives: u32,
    /// How long a host has to start after its command is sent.
    #[arg(long, env = "GANTRY_HOST_START_TIMEOUT_SECONDS", default_value_t = 300)]
    host_start_timeout_seconds: u64,
    /// Added to each event's hook timeouts before a silent host is failed.
    #[arg(long, env = "GANTRY_EVENT_SLACK_SECONDS", default_value_t = 60)]
    event_slack_seconds: u64,
    /// Let handlers run past their template Timeout. For debugging only: in AWS they
    /// are cut off, and so they are here by default.
    #[arg(long, env = "GANTRY_LOCAL_NO_TIMEOUTS")]
    no_timeouts: bool,
}

/// The runtime's worker threads' stack: a debug build (the tests' and the demo's) keeps
/// the locals of every future a handler awaits inline in one poll frame, about 1.6 MB
/// for a rollback created by the effect executor; tokio's default is 2 MiB.
const WORKER_STACK_BYTES: usize = 16 * 1024 * 1024;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(WORKER_STACK_BYTES)
        .build()
        .context("starting the runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let template = Template::parse(lambda::TEMPLATE).context("reading template.yaml")?;
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let mut settings = Settings::from_env().map_err(anyhow::Error::msg)?;
    settings.table = args.table.clone();
    settings.command_queue_prefix = args.command_queue_prefix.clone();
    settings.host_start_timeout_ms = args.host_start_timeout_seconds * 1000;
    settings.event_slack_ms = args.event_slack_seconds * 1000;
    if let Some(region) = config.region() {
        settings.region = region.to_string();
    }
    // ARNs name the caller's account, as AWS's do, unless one is configured.
    if std::env::var("GANTRY_ACCOUNT_ID").is_err() {
        let identity = aws_sdk_sts::Client::new(&config)
            .get_caller_identity()
            .send()
            .await
            .context(
                "reading this account's id (STS GetCallerIdentity); set GANTRY_ACCOUNT_ID to skip",
            )?;
        if let Some(account) = identity.account() {
            settings.account_id = account.to_owned();
        }
    }
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queues = create_resources(&args, &template, &config, &sqs).await?;
    settings.lifecycle_queue_url = Some(queues.lifecycle_url.clone());
    settings.lifecycle_queue_arn = Some(queues.lifecycle_arn.clone());
    settings.lifecycle_role_arn = Some(args.lifecycle_role_arn.clone());
    if args.no_timeouts {
        tracing::warn!(
            "--no-timeouts: handlers may run past their template Timeout, as they cannot in AWS"
        );
    }
    let functions = Arc::new(Functions::new(
        &config,
        &settings,
        template,
        !args.no_timeouts,
    )?);
    functions
        .control("api")
        .context("the api function")?
        .store
        .create_table()
        .await
        .context("creating the table")?;

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let address = listener.local_addr()?;
    // Tests and the demo read this line to find the port.
    println!("gantry-local listening on http://{address}");

    let (stop_sender, stop) = watch::channel(false);
    let keys = Arc::new(gantry_api::protocol::signing_keys(config.credentials_provider()).await);
    let server = tokio::spawn(serve(listener, Arc::clone(&functions), keys, stop.clone()));
    let poller = tokio::spawn(poll_queue(
        Arc::clone(&functions),
        sqs.clone(),
        queues.reports_url,
        "batch-advance",
        stop.clone(),
    ));
    let lifecycle_poller = tokio::spawn(poll_queue(
        Arc::clone(&functions),
        sqs.clone(),
        queues.lifecycle_url,
        "lifecycle",
        stop.clone(),
    ));
    let ticker = tokio::spawn(tick(Arc::clone(&functions), args.tick_ms, stop.clone()));

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_sender.send(true);
    for task in [server, poller, lifecycle_poller, ticker] {
        let _ = tokio::time::timeout(Duration::from_secs(25), task).await;
    }
    // The benchmarks read this line: each function's invocation times against its limits.
    tracing::info!(summary = %functions.summary(), "invocations");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The queues gantry-local feeds to its functions, as the template's event sources do.
struct Queues {
    reports_url: String,
    lifecycle_url: String,
    lifecycle_arn: String,
}

/// A queue whose messages go to `<name>-dlq` after `max_receives` receives, with the
/// template's visibility timeout; returns its URL and ARN.
async fn queue_with_dead_letter(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    dead_letter: &str,
    max_receives: u32,
    visibility_timeout: u64,
) -> anyhow::Result<(String, String)> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let arn_of = |url: String| async move {
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .with_context(|| format!("reading the ARN of {url}"))?
            .attributes
            .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn).cloned())
            .with_context(|| format!("no ARN for {url}"))?;
        anyhow::Ok((url, arn))
    };
    let dead_letter_url = sqs
        .create_queue()
        .queue_name(dead_letter)
        .send()
        .await
        .with_context(|| format!("creating {dead_letter}"))?
        .queue_url
        .with_context(|| format!("no URL for {dead_letter}"))?;
    let (_, dead_letter_arn) = arn_of(dead_letter_url).await?;
    let redrive = json!({
        "deadLetterTargetArn": dead_letter_arn,
        "maxReceiveCount": max_receives.to_string(),
    });
    let url = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        // As template.yaml. A batch whose invocation timed out comes back after it, as
        // with Lambda's event source; a failed message after 1 s (ChangeMessageVisibility).
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout.to_string(),
        )
        .send()
        .await
        .with_context(|| format!("creating {name}"))?
        .queue_url
        .with_context(|| format!("no URL for {name}"))?;
    arn_of(url).await
}

/// Creates what the template creates (but the table), if missing.
async fn create_resources(
    args: &Args,
    template: &Template,
    config: &aws_config::SdkConfig,
    sqs: &aws_sdk_sqs::Client,
) -> anyhow::Result<Queues> {
    let (reports_url, _) = queue_with_dead_letter(
        sqs,
        &args.reports_queue,
        &args.dead_letter_queue,
        args.max_receives,
        template.visibility_timeout("ReportsQueue")?,
    )
    .await?;
    let (lifecycle_url, lifecycle_arn) = queue_with_dead_letter(
        sqs,
        &args.lifecycle_queue,
        &format!("{}-dlq", args.lifecycle_queue),
        args.max_receives,
        template.visibility_timeout("LifecycleQueue")?,
    )
    .await?;
    aws_sdk_sns::Client::new(config)
        .create_topic()
        .name(&args.topic)
        .send()
        .await
        .context("creating the topic")?;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    );
    if s3.head_bucket().bucket(&args.bucket).send().await.is_err() {
        s3.create_bucket()
            .bucket(&args.bucket)
            .send()
            .await
            .context("creating the bucket")?;
    }
    Ok(Queues {
        reports_url,
        lifecycle_url,
        lifecycle_arn,
    })
}

type Body = Full<Bytes>;

fn json_response(status: StatusCode, body: &Value, error_type: Option<&str>) -> Response<Body> {
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(error_type) = error_type {
        response = response.header("x-amzn-errortype", error_type);
    }
    response
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

/// The Lambda Invoke API: `POST /2015-03-31/functions/{name}/invocations`. A handler
/// error is HTTP 200 with `X-Amz-Function-Error: Unhandled`, as Lambda answers. And
/// CodeDeploy's own protocol, `POST /` with `X-Amz-Target` ([`codedeploy`]).
async fn handle(
    functions: Arc<Functions>,
    keys: &Option<gantry_api::protocol::Keys>,
    request: Request<Incoming>,
) -> Response<Body> {
    if let Some(refused) = refuse_foreign(&request) {
        return refused;
    }
    let path = request.uri().path().to_owned();
    if request.method() == Method::POST
        && path == "/"
        && let Some(operation) = gantry_api::protocol::operation(request.headers())
    {
        return codedeploy::serve(&functions, keys, &operation, request).await;
    }
    if path == INVOCATIONS_PATH && request.method() == Method::GET {
        return json_response(StatusCode::OK, &functions.summary(), None);
    }
    let function = path
        .strip_prefix("/2015-03-31/functions/")
        .and_then(|rest| rest.strip_suffix("/invocations"))
        .map(|name| {
            // Accept ARNs and `name:qualifier` as Lambda does.
            let name = name.replace("%3A", ":").replace("%3a", ":");
            let after = name
                .rsplit_once("function:")
                .map_or(name.as_str(), |(_, rest)| rest);
            after.split(':').next().unwrap_or(after).to_owned()
        });
    let Some(function) = function.filter(|_| request.method() == Method::POST) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"message": format!("no route for {} {path}; invoke POST /2015-03-31/functions/<name>/invocations", request.method())}),
            Some("ResourceNotFoundException"),
        );
    };
    let function = resolve_function(&function);
    if !handlers::FUNCTIONS.contains(&function.as_str()) {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({
                "Type": "User",
                "message": format!("Function not found: {function}; gantry-local serves {}", handlers::FUNCTIONS.join(", ")),
            }),
            Some("ResourceNotFoundException"),
        );
    }
    let body = match Limited::new(request.into_body(), MAX_PAYLOAD_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(error) if error.is::<LengthLimitError>() => {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({"Type": "User", "message": format!("the request payload is over Lambda's limit of {MAX_PAYLOAD_BYTES} bytes")}),
                Some("RequestTooLargeException"),
            );
        }
        Err(error) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({"message": format!("cannot read the request body: {error}")}),
                Some("InvalidRequestContentException"),
            );
        }
    };
    let payload: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(payload) => payload,
            Err(error) => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"Type": "User", "message": format!("Could not parse request body into json: {error}")}),
                    Some("InvalidRequestContentException"),
                );
            }
        }
    };
    let started = std::time::Instant::now();
    let outcome = functions.invoke(&function, payload).await;
    tracing::info!(%function, elapsed_ms = started.elapsed().as_millis() as u64, ok = matches!(outcome, Outcome::Returned(_)), "invoked");
    let function_error = |body: &Value| {
        let mut response = json_response(StatusCode::OK, body, None);
        response.headers_mut().insert(
            "x-amz-function-error",
            hyper::header::HeaderValue::from_static("Unhandled"),
        );
        response
    };
    match outcome {
        Outcome::Returned(output) => {
            let size = output.to_string().len();
            if size > MAX_PAYLOAD_BYTES {
                return function_error(&json!({
                    "errorType": "Function.ResponseSizeTooLarge",
                    "errorMessage": format!("Response payload size ({size} bytes) exceeded maximum allowed payload size ({MAX_PAYLOAD_BYTES} bytes)."),
                }));
            }
            json_response(StatusCode::OK, &output, None)
        }
        Outcome::Failed(error) => {
            function_error(&serde_json::to_value(&error).expect("errors serialize"))
        }
        Outcome::TimedOut(limit) => function_error(&Outcome::timed_out_error(limit)),
    }
}

/// Each function's invocation count and times so far (GET), for the benchmarks.
const INVOCATIONS_PATH: &str = "/gantry-local/invocations";

/// gantry-local listens on loopback, but a web page the operator visits can still
/// reach loopback: directly (a cross-site POST, which browsers mark with `Origin`) or
/// through a name it rebinds to 127.0.0.1 (whose `Host` is then that name). Clients of
/// the Invoke API send neither, so both are refused.
fn refuse_foreign<B>(request: &Request<B>) -> Option<Response<Body>> {
    let host = request
        .headers()
        .get(hyper::header::HOST)
        .and_then(|value| value.to_str().ok());
    if !host.is_some_and(gantry_api::protocol::is_loopback_host) {
        return Some(json_response(
            StatusCode::FORBIDDEN,
            &json!({"message": format!("Host {host:?} is not a loopback address: gantry-local answers only requests addressed to 127.0.0.1, ::1 or localhost")}),
            Some("AccessDeniedException"),
        ));
    }
    if request.headers().contains_key(hyper::header::ORIGIN) {
        return Some(json_response(
            StatusCode::FORBIDDEN,
            &json!({"message": "requests from web pages (with an Origin header) are refused: gantry-local serves command-line clients and SDKs"}),
            Some("AccessDeniedException"),
        ));
    }
    None
}

/// Function names may carry the stack's prefix (`gantry-create-deployment`) as the
/// template names them; both forms reach the same handler.
fn resolve_function(name: &str) -> String {
    let trimmed = name.strip_prefix("gantry-").unwrap_or(name);
    trimmed.to_owned()
}

async fn serve(
    listener: tokio::net::TcpListener,
    functions: Arc<Functions>,
    keys: Arc<Option<gantry_api::protocol::Keys>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let functions = Arc::clone(&functions);
                let keys = Arc::clone(&keys);
                let mut stop = stop.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let functions = Arc::clone(&functions);
                        let keys = Arc::clone(&keys);
                        async move { Ok::<_, std::convert::Infallible>(handle(functions, &keys, request).await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
                    tokio::pin!(connection);
                    let result = tokio::select! {
                        result = connection.as_mut() => result,
                        _ = stop.changed() => {
                            // Finish the request in flight, then close (idle keep-alives at once).
                            connection.as_mut().graceful_shutdown();
                            connection.await
                        }
                    };
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                });
            }
        }
    }
    // Let invocations in flight finish.
    while tokio::time::timeout(Duration::from_secs(20), connections.join_next())
        .await
        .ok()
        .flatten()
        .is_some()
    {}
}

/// Lambda's SQS event source: receive up to 10 messages, invoke `function`, delete what
/// it processed. Failed messages come back after a short backoff and, after
/// `max_receives` receives, SQS moves them to the dead-letter queue. A batch whose
/// invocation timed out is left alone: it comes back after the queue's visibility
/// timeout, as Lambda's event source leaves it.
async fn poll_queue(
    functions: Arc<Functions>,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    function: &'static str,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let received = tokio::select! {
            _ = stop.changed() => return,
            received = sqs
                .receive_message()
                .queue_url(&queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(5)
                // As the event source does: SenderId among them, which batch-advance
                // checks reports against.
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send() => received,
        };
        let messages = match received {
            Ok(output) => output.messages.unwrap_or_default(),
            Err(error) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&error), function, "receiving messages failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|message| {
                let attributes: serde_json::Map<String, Value> = message
                    .attributes()
                    .into_iter()
                    .flatten()
                    .map(|(name, value)| (name.as_str().to_owned(), json!(value)))
                    .collect();
                json!({
                    "messageId": message.message_id(),
                    "receiptHandle": message.receipt_handle(),
                    "body": message.body(),
                    "attributes": attributes,
                    "eventSource": "aws:sqs",
                })
            })
            .collect();
        let failed: Vec<String> = match functions
            .invoke(function, json!({"Records": records}))
            .await
        {
            Outcome::TimedOut(limit) => {
                tracing::warn!(
                    function,
                    timeout_s = limit.as_secs(),
                    messages = messages.len(),
                    "the invocation timed out; its batch comes back after the queue's visibility timeout"
                );
                continue;
            }
            Outcome::Returned(response) => response["batchItemFailures"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| item["itemIdentifier"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            Outcome::Failed(error) => {
                tracing::warn!(%error, function, "the function failed; the whole batch will be retried");
                messages
                    .iter()
                    .filter_map(|m| m.message_id().map(str::to_owned))
                    .collect()
            }
        };
        let mut done = Vec::new();
        for message in &messages {
            let (Some(id), Some(handle)) = (message.message_id(), message.receipt_handle()) else {
                continue;
            };
            if failed.iter().any(|failed| failed == id) {
                // Back off briefly rather than a whole visibility timeout.
                let backoff = sqs
                    .change_message_visibility()
                    .queue_url(&queue_url)
                    .receipt_handle(handle)
                    .visibility_timeout(1)
                    .send()
                    .await;
                if let Err(error) = backoff {
                    tracing::warn!(message_id = id, error = %aws_sdk_sqs::error::DisplayErrorContext(error), "could not back off a failed report");
                }
            } else {
                done.push(
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(id)
                        .receipt_handle(handle)
                        .build()
                        .expect("entry fields are set"),
                );
            }
        }
        if !done.is_empty() {
            let deleted = sqs
                .delete_message_batch()
                .queue_url(&queue_url)
                .set_entries(Some(done))
                .send()
                .await;
            if let Err(error) = deleted {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(error), "could not delete processed reports; they will be applied again, harmlessly");
            }
        }
    }
}

/// The schedule: batch-advance's tick, every `period_ms`.
async fn tick(functions: Arc<Functions>, period_ms: u64, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(Duration::from_millis(period_ms.max(50)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = interval.tick() => {
                match functions.invoke("batch-advance", json!({"source": "aws.events", "detail-type": "Scheduled Event"})).await {
                    Outcome::Returned(_) => {}
                    Outcome::Failed(error) => tracing::warn!(%error, "tick failed"),
                    Outcome::TimedOut(_) => tracing::warn!("tick timed out"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_api::protocol::is_loopback_host;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::post("/2015-03-31/functions/api/invocations");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn only_loopback_hosts_are_answered() {
        for host in [
            "127.0.0.1:9000",
            "127.0.0.1",
            "localhost:9000",
            "LOCALHOST",
            "[::1]:9000",
            "127.1.2.3:80",
        ] {
            assert!(is_loopback_host(host), "{host}");
            assert!(
                refuse_foreign(&request(&[("host", host)])).is_none(),
                "{host}"
            );
        }
        for host in [
            "evil.example:9000",
            "10.0.0.5:9000",
            "127.0.0.1.evil.example",
            "[::2]:9000",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
            let refused = refuse_foreign(&request(&[("host", host)])).expect(host);
            assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        }
        let refused = refuse_foreign(&request(&[])).expect("no Host");
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn requests_from_web_pages_are_refused() {
        let refused = refuse_foreign(&request(&[
            ("host", "127.0.0.1:9000"),
            ("origin", "https://evil.example"),
        ]))
        .expect("an Origin");
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    }
}
