//! Lambda: the alias a Lambda deployment shifts, and the hook functions it invokes (the
//! Lambda compute platform). Each method carries out one effect of
//! [`gantry_core::lambda`]'s state machine, and is safe to repeat: UpdateAlias sets the
//! whole routing, and a hook invoked twice answers for one execution id.

use super::aws_failure;
use crate::error::{ApiError, Exception};
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{AliasRoutingConfiguration, InvocationType};
use gantry_core::lambda::AliasShift;
use serde_json::json;
use std::collections::HashMap;

/// An alias as Lambda has it now: its version, and the weights of the others it routes to.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasState {
    pub version: String,
    /// Version → share of invocations, 0.0 to 1.0.
    pub weights: HashMap<String, f64>,
}

#[derive(Clone)]
pub struct Aliases {
    client: aws_sdk_lambda::Client,
}

impl Aliases {
    pub fn new(client: aws_sdk_lambda::Client) -> Self {
        Self { client }
    }

    /// `Effect::SetWeight`: the alias stays on the current version and sends `percent` of
    /// its invocations to the target (RoutingConfig's AdditionalVersionWeights).
    pub async fn set_weight(&self, shift: &AliasShift, percent: u32) -> Result<(), ApiError> {
        let share = f64::from(percent.min(100)) / 100.0;
        self.route(
            shift,
            &shift.current_version,
            HashMap::from([(shift.target_version.clone(), share)]),
        )
        .await
    }

    /// `Effect::PointAliasAtTarget`: every invocation goes to the target version.
    pub async fn point_at_target(&self, shift: &AliasShift) -> Result<(), ApiError> {
        self.route(shift, &shift.target_version, HashMap::new())
            .await
    }

    /// `Effect::RollBack`: every invocation goes to the current version again.
    pub async fn roll_back(&self, shift: &AliasShift) -> Result<(), ApiError> {
        self.route(shift, &shift.current_version, HashMap::new())
            .await
    }

    async fn route(
        &self,
        shift: &AliasShift,
        version: &str,
        weights: HashMap<String, f64>,
    ) -> Result<(), ApiError> {
        let routing = AliasRoutingConfiguration::builder()
            .set_additional_version_weights(Some(weights))
            .build();
        self.client
            .update_alias()
            .function_name(&shift.function_name)
            .name(&shift.alias)
            .function_version(version)
            .routing_config(routing)
            .send()
            .await
            .map_err(|error| {
                lambda_failure(
                    &format!("alias {} of {}", shift.alias, shift.function_name),
                    error,
                )
            })?;
        Ok(())
    }

    /// The alias as it is now.
    pub async fn alias(&self, function: &str, alias: &str) -> Result<AliasState, ApiError> {
        let found = self
            .client
            .get_alias()
            .function_name(function)
            .name(alias)
            .send()
            .await
            .map_err(|error| lambda_failure(&format!("alias {alias} of {function}"), error))?;
        Ok(AliasState {
            version: found.function_version().unwrap_or_default().to_owned(),
            weights: found
                .routing_config()
                .and_then(|routing| routing.additional_version_weights())
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// Whether `version` of `function` is published (Lambda knows it).
    pub async fn has_version(&self, function: &str, version: &str) -> Result<bool, ApiError> {
        let found = self
            .client
            .get_function_configuration()
            .function_name(function)
            .qualifier(version)
            .send()
            .await;
        match found {
            Ok(_) => Ok(true),
            Err(error) => {
                let error = lambda_failure(&format!("version {version} of {function}"), error);
                if error.code == Exception::ResourceNotFound {
                    Ok(false)
                } else {
                    Err(error)
                }
            }
        }
    }

    /// `Effect::InvokeHook`: invokes the hook function asynchronously with CodeDeploy's
    /// event, `{"DeploymentId", "LifecycleEventHookExecutionId"}`; the function answers
    /// through PutLifecycleEventHookExecutionStatus.
    pub async fn invoke_hook(
        &self,
        function: &str,
        deployment_id: &str,
        execution_id: &str,
    ) -> Result<(), ApiError> {
        let event = json!({
            "DeploymentId": deployment_id,
            "LifecycleEventHookExecutionId": execution_id,
        });
        self.client
            .invoke()
            .function_name(function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(event.to_string()))
            .send()
            .await
            .map_err(|error| lambda_failure(&format!("hook function {function}"), error))?;
        Ok(())
    }
}

/// A Lambda error as the engine must take it: a function, alias or version that does not
/// exist, or a request Lambda refuses, fails the same way every time (for good); anything
/// else (throttling, an update of the function already under way, Lambda unavailable, a
/// network failure) may pass later.
fn lambda_failure<E>(what: &str, error: SdkError<E>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let refusal = error.as_service_error().and_then(|service| {
        service.code().map(|code| {
            (
                code.to_owned(),
                service.message().unwrap_or_default().to_owned(),
            )
        })
    });
    match refusal {
        Some((code, message)) if code == "ResourceNotFoundException" => ApiError::new(
            Exception::ResourceNotFound,
            format!("{what}: does not exist ({message})"),
        ),
        Some((code, message))
            if matches!(
                code.as_str(),
                "InvalidParameterValueException" | "AccessDeniedException"
            ) =>
        {
            ApiError::invalid_input(format!("{what}: Lambda refused it: {code}: {message}"))
        }
        _ => aws_failure("Lambda", error),
    }
}
