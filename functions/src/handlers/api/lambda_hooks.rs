//! PutLifecycleEventHookExecutionStatus: a Lambda deployment's hook function answers for
//! the hook execution it was invoked with (the Lambda compute platform).

use super::deployments::deployment_id_field;
use super::name_field;
use crate::control::ControlPlane;
use crate::error::{ApiError, Exception};
use crate::lambda_deployments;
use crate::model::now_millis;
use gantry_core::lambda::Input;
use serde_json::{Value, json};

/// The statuses a hook may answer with: CodeDeploy's LifecycleEventStatus has others
/// (Pending, InProgress, Skipped, Unknown), which only CodeDeploy itself sets.
const ANSWERS: [&str; 2] = ["Succeeded", "Failed"];

pub(super) async fn put_hook_status(
    control: &ControlPlane,
    input: &Value,
) -> Result<Value, ApiError> {
    let id = deployment_id_field(input)?;
    let execution_id = name_field(
        input,
        "lifecycleEventHookExecutionId",
        Exception::InvalidLifecycleEventHookExecutionId,
    )?;
    let status = input
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !ANSWERS.contains(&status) {
        return Err(ApiError::new(
            Exception::InvalidLifecycleEventHookExecutionStatus,
            format!(
                "status: {status:?}; a hook answers {}",
                ANSWERS.join(" or ")
            ),
        ));
    }
    match control.store.is_lambda_deployment(&id).await? {
        None => return Err(ApiError::deployment_missing(&id)),
        Some(false) => {
            return Err(ApiError::new(
                Exception::UnsupportedActionForDeploymentType,
                format!(
                    "deploymentId: {id} is an EC2/On-Premises deployment; hook executions are answered for Lambda deployments"
                ),
            ));
        }
        Some(true) => {}
    }
    let answer = Input::HookStatus {
        execution_id: execution_id.clone(),
        succeeded: status == "Succeeded",
        now: now_millis(),
    };
    Box::pin(lambda_deployments::step(control, &id, answer)).await?;
    Ok(json!({"lifecycleEventHookExecutionId": execution_id}))
}
