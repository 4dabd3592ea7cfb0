//! The wiring every Lambda `main` shares: JSON tracing, settings from the environment,
//! one `SdkConfig` and one set of clients per execution environment, then the runtime.

use crate::control::{ControlPlane, Settings};
use crate::error::ApiError;
use crate::handlers;
use std::sync::Arc;

/// A handler's error as the Lambda runtime reports it: CodeDeploy's exception as the
/// `errorType`, the message as the `errorMessage`.
fn diagnostic(error: ApiError) -> lambda_runtime::Diagnostic {
    lambda_runtime::Diagnostic {
        error_type: error.code.to_string(),
        error_message: error.message,
    }
}

/// Runs `function` (one of [`handlers::FUNCTIONS`]) under the Lambda runtime.
pub async fn run(function: &'static str) -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(true)
        .without_time() // CloudWatch stamps each line
        .init();
    let mut settings = Settings::from_env()?;
    settings.fleet_effects_here = handlers::carries_fleet_effects(function);
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let control = Arc::new(ControlPlane::new(&config, settings));
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let control = Arc::clone(&control);
            async move {
                // Boxed: the handler's future is deep enough to exceed the compiler's
                // type layout recursion limit inside the runtime's own futures.
                Box::pin(handlers::invoke(&control, function, event.payload))
                    .await
                    .map_err(diagnostic)
            }
        },
    ))
    .await
}
