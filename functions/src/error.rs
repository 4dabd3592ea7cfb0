//! CodeDeploy's exceptions and [`ApiError`] are gantry-api's (shared with the CLI);
//! re-exported here with the input parser every handler uses.

pub use gantry_api::{ApiError, Exception};

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
