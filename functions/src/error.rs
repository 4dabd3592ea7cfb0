//! Errors as callers see them: CodeDeploy's exception names with one clear sentence.

use crate::store::StoreError;
use serde::Serialize;

/// An error a handler returns. `code` is CodeDeploy's exception name (the Lambda
/// `errorType`), `message` says what was wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    #[serde(rename = "errorType")]
    pub code: String,
    #[serde(rename = "errorMessage")]
    pub message: String,
}

impl ApiError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// Input that does not have the documented shape.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new("InvalidInputException", message)
    }

    pub fn application_missing(name: &str) -> Self {
        Self::new(
            "ApplicationDoesNotExistException",
            format!("applicationName: no application named {name:?}"),
        )
    }

    pub fn group_missing(application: &str, name: &str) -> Self {
        Self::new(
            "DeploymentGroupDoesNotExistException",
            format!(
                "deploymentGroupName: application {application:?} has no deployment group named {name:?}"
            ),
        )
    }

    pub fn deployment_missing(id: &str) -> Self {
        Self::new(
            "DeploymentDoesNotExistException",
            format!("deploymentId: no deployment {id}"),
        )
    }

    /// Something went wrong on our side or AWS's; the caller may retry.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("InternalFailure", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(message) => Self::new("ConcurrentModificationException", message),
            StoreError::NotFound(what) => Self::new(
                "ResourceNotFoundException",
                format!("{what} does not exist"),
            ),
            other => Self::internal(other.to_string()),
        }
    }
}

/// Parses a handler's input, naming the field that is wrong (`revision.s3Location.bundleType:
/// unknown variant ...`).
pub fn parse_input<T: serde::de::DeserializeOwned>(
    operation: &str,
    input: serde_json::Value,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(input).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." {
            ApiError::invalid_input(format!("{operation}: {inner}"))
        } else {
            ApiError::invalid_input(format!("{operation}: {path}: {inner}"))
        }
    })
}
