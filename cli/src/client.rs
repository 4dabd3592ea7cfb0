//! The CLI's one way to reach Gantry: the Lambda Invoke API, against a deployed stack or
//! gantry-local alike.

use aws_sdk_lambda::primitives::Blob;
use gantry_api::deployment::{DeploymentInfo, GetDeploymentOutput};
use serde_json::{Value, json};

/// An error a Gantry function returned, or a failure to reach it.
#[derive(Debug)]
pub struct GantryError {
    /// CodeDeploy's exception name, when the function answered.
    pub code: Option<String>,
    pub message: String,
}

impl std::fmt::Display for GantryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} ({code})", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

impl std::error::Error for GantryError {}

pub struct Gantry {
    lambda: aws_sdk_lambda::Client,
    /// Prepended to function names: a stack's functions are `<stack>-api` and so on.
    prefix: String,
    pub config: aws_config::SdkConfig,
}

impl Gantry {
    /// `endpoint` (from `--endpoint-url`) overrides where Lambda is reached; otherwise the
    /// SDK's own configuration applies (`AWS_ENDPOINT_URL_LAMBDA`, `AWS_ENDPOINT_URL`, AWS).
    pub async fn connect(endpoint: Option<&str>, stack: Option<&str>) -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let mut lambda = aws_sdk_lambda::config::Builder::from(&config);
        if let Some(endpoint) = endpoint {
            lambda = lambda.endpoint_url(endpoint);
        }
        Self {
            lambda: aws_sdk_lambda::Client::from_conf(lambda.build()),
            prefix: stack.map(|stack| format!("{stack}-")).unwrap_or_default(),
            config,
        }
    }

    pub async fn invoke(&self, function: &str, payload: &Value) -> Result<Value, GantryError> {
        let name = format!("{}{function}", self.prefix);
        let output = self
            .lambda
            .invoke()
            .function_name(&name)
            .payload(Blob::new(payload.to_string()))
            .send()
            .await
            .map_err(|error| GantryError {
                code: None,
                message: format!(
                    "cannot reach Gantry's {name} function: {}",
                    aws_sdk_lambda::error::DisplayErrorContext(error)
                ),
            })?;
        let body: Value = output
            .payload()
            .map(|payload| serde_json::from_slice(payload.as_ref()).unwrap_or(Value::Null))
            .unwrap_or(Value::Null);
        if output.function_error().is_some() {
            return Err(GantryError {
                code: body["errorType"].as_str().map(str::to_owned),
                message: body["errorMessage"]
                    .as_str()
                    .unwrap_or("the function failed without a message")
                    .to_owned(),
            });
        }
        Ok(body)
    }

    /// One CodeDeploy operation through the `api` function.
    pub async fn api(&self, operation: &str, input: Value) -> Result<Value, GantryError> {
        self.invoke("api", &json!({"operation": operation, "input": input}))
            .await
    }

    /// GetDeployment's `deploymentInfo`, typed as the control plane renders it.
    pub async fn deployment(&self, id: &str) -> anyhow::Result<DeploymentInfo> {
        let output = self
            .api("GetDeployment", json!({"deploymentId": id}))
            .await?;
        let output: GetDeploymentOutput = serde_json::from_value(output).map_err(|error| {
            anyhow::anyhow!(
                "GetDeployment answered with a deploymentInfo this gantry cannot read: {error}"
            )
        })?;
        Ok(output.deployment_info)
    }

    /// A List operation followed through every page: the first page's output, with
    /// `field` holding the items of all pages and no `nextToken`.
    pub async fn list_all(
        &self,
        operation: &str,
        mut input: Value,
        field: &str,
    ) -> Result<Value, GantryError> {
        let mut output = self.api(operation, input.clone()).await?;
        let mut items = output[field].as_array().cloned().unwrap_or_default();
        while let Some(token) = output["nextToken"].as_str().map(str::to_owned) {
            input["nextToken"] = json!(token);
            output = self.api(operation, input.clone()).await?;
            items.extend(output[field].as_array().cloned().unwrap_or_default());
        }
        if let Some(fields) = output.as_object_mut() {
            fields.remove("nextToken");
            fields.insert(field.to_owned(), Value::Array(items));
        }
        Ok(output)
    }
}
