//! The CLI's one way to reach Gantry: the Lambda Invoke API, against a deployed stack or
//! gantry-local alike.

use aws_sdk_lambda::primitives::Blob;
use gantry_api::FunctionError;
use gantry_api::deployment::{DeploymentInfo, GetDeploymentOutput};
use gantry_api::paging::Page;
use serde::Deserialize;
use serde::de::DeserializeOwned;
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
            return Err(match FunctionError::deserialize(&body) {
                Ok(error) => GantryError {
                    code: Some(error.error_type),
                    message: error.error_message,
                },
                Err(error) => GantryError {
                    code: None,
                    message: format!(
                        "Gantry's {name} function failed, answering {body} ({error}, where an errorType and errorMessage were expected)"
                    ),
                },
            });
        }
        Ok(body)
    }

    /// A function's answer as sent (what `--output json` prints) and read as `T`.
    pub async fn invoke_typed<T: DeserializeOwned>(
        &self,
        function: &str,
        payload: &Value,
    ) -> anyhow::Result<(Value, T)> {
        let answer = self.invoke(function, payload).await?;
        let typed = read(&format!("Gantry's {function} function"), &answer)?;
        Ok((answer, typed))
    }

    /// One CodeDeploy operation's answer as sent (what `--output json` prints) and read
    /// as `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        operation: &str,
        input: Value,
    ) -> anyhow::Result<(Value, T)> {
        let answer = self.api(operation, input).await?;
        let typed = read(operation, &answer)?;
        Ok((answer, typed))
    }

    /// One CodeDeploy operation through the `api` function.
    pub async fn api(&self, operation: &str, input: Value) -> Result<Value, GantryError> {
        self.invoke("api", &json!({"operation": operation, "input": input}))
            .await
    }

    /// GetDeployment's `deploymentInfo`, typed as the control plane renders it.
    pub async fn deployment(&self, id: &str) -> anyhow::Result<DeploymentInfo> {
        let (_, output): (_, GetDeploymentOutput) = self
            .call("GetDeployment", json!({"deploymentId": id}))
            .await?;
        Ok(output.deployment_info)
    }

    /// A List operation followed through every page: the first page's output, holding
    /// the items of all pages and no next token.
    pub async fn list_all<P: Page + DeserializeOwned>(
        &self,
        operation: &str,
        mut input: Value,
    ) -> anyhow::Result<P> {
        let (_, mut output): (_, P) = self.call(operation, input.clone()).await?;
        let mut next = output.take_next_token();
        while let Some(token) = next {
            input[P::TOKEN_FIELD] = json!(token);
            let (_, mut page): (_, P) = self.call(operation, input.clone()).await?;
            next = page.take_next_token();
            output.items_mut().append(page.items_mut());
        }
        Ok(output)
    }
}

/// `answer`, from `from`, read as `T`; one this gantry cannot read is an error that says
/// what was expected and what serde found wrong, naming the field.
fn read<T: DeserializeOwned>(from: &str, answer: &Value) -> anyhow::Result<T> {
    T::deserialize(answer).map_err(|error| {
        let expected = std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or("?");
        anyhow::anyhow!(
            "{from} answered with output this gantry cannot read as {expected}: {error}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_api::group::GetDeploymentGroupOutput;
    use gantry_api::tags::ListTagsForResourceOutput;

    #[test]
    fn an_answer_this_gantry_cannot_read_names_the_operation_the_type_and_the_field() {
        let error = read::<GetDeploymentGroupOutput>("GetDeploymentGroup", &json!({}))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("GetDeploymentGroup answered with output this gantry cannot read as GetDeploymentGroupOutput")
                && error.contains("`deploymentGroupInfo`"),
            "{error}"
        );
        let error = read::<ListTagsForResourceOutput>(
            "ListTagsForResource",
            &json!({"Tags": [{"Value": "x"}]}),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("`Key`"), "{error}");
    }
}
