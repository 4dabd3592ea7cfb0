//! One module per Lambda function, each with a typed `handle`, and the one table from a
//! function's name to its handler, shared by the Lambda binaries and gantry-local.
//!
//! Request shapes: `push` takes RegisterApplicationRevision's input JSON,
//! `create-deployment` CreateDeployment's, `rollback` `{applicationName,
//! deploymentGroupName}`; `batch-advance` takes the reports queue's SQS event (or, for
//! the schedule's tick, any other event) and `autoscaling` the lifecycle queue's;
//! `api` takes `{"operation": "<CodeDeploy operation name>", "input": {...}}`; `pipeline`
//! takes CodePipeline's job event (`{"CodePipeline.job": {...}}`). Errors are
//! `{"errorType": "<CodeDeploy exception>", "errorMessage": "..."}`.
//!
//! What happens when a host's report arrives: [`batch_advance::handle`] groups the
//! reports by deployment and hands each run to [`crate::engine::step`], which applies
//! them ([`crate::engine::transition::apply_checked`]) and carries out the effects.

pub mod api;
pub mod autoscaling;
pub mod batch_advance;
pub mod create_deployment;
pub mod pipeline;
pub mod push;
pub mod rollback;

use crate::control::ControlPlane;
use crate::error::{ApiError, Exception, parse_input};
use serde::Deserialize;
use serde_json::{Value, json};

/// The Lambda functions, by the names the template and gantry-local give them.
pub const FUNCTIONS: [&str; 7] = [
    "push",
    "create-deployment",
    "batch-advance",
    "rollback",
    "lifecycle",
    "api",
    "pipeline",
];

/// Whether `function` carries out blue/green fleet effects itself: only `lifecycle`,
/// the one function whose role holds the fleet policy (template.yaml's
/// BlueGreenFleetPolicy); the others hand them to it.
pub fn carries_fleet_effects(function: &str) -> bool {
    function == "lifecycle"
}

/// Runs one invocation of a function with its payload: the payload is parsed into the
/// handler's typed input, and its typed output rendered as JSON.
pub async fn invoke(
    control: &ControlPlane,
    function: &str,
    payload: Value,
) -> Result<Value, ApiError> {
    match function {
        "push" => Ok(json!(
            push::handle(control, parse_input(function, payload)?).await?
        )),
        "create-deployment" => Ok(json!(create_deployment::handle(control, payload).await?)),
        "batch-advance" => {
            if payload.get("Records").is_some() {
                let event = parse_input(function, payload)?;
                Ok(json!(Box::pin(batch_advance::handle(control, event)).await))
            } else {
                let checked = batch_advance::tick(control).await?;
                Ok(json!({"deploymentsChecked": checked}))
            }
        }
        // From the lifecycle queue, or from an SNS topic the function subscribes to.
        "lifecycle" if payload["Records"][0]["EventSource"] == "aws:sns" => {
            autoscaling::handle_sns(control, parse_input(function, payload)?).await?;
            Ok(json!({}))
        }
        "lifecycle" => Ok(json!(
            Box::pin(autoscaling::handle(
                control,
                parse_input(function, payload)?
            ))
            .await
        )),
        "pipeline" => Ok(json!(
            Box::pin(pipeline::handle(control, parse_input(function, payload)?)).await?
        )),
        "rollback" => Ok(json!(
            rollback::handle(control, parse_input(function, payload)?).await?
        )),
        "api" => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Request {
                operation: String,
                #[serde(default)]
                input: Value,
            }
            let request: Request = parse_input(function, payload)?;
            let input = if request.input.is_null() {
                json!({})
            } else {
                request.input
            };
            Box::pin(api::operation(control, &request.operation, input)).await
        }
        other => Err(ApiError::new(
            Exception::ResourceNotFound,
            format!(
                "function {other:?} does not exist; the functions are {}",
                FUNCTIONS.join(", ")
            ),
        )),
    }
}
