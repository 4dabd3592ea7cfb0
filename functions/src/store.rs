//! The DynamoDB adapter for deployments and deployment-group locks.
//!
//! One table with string keys `pk` and `sk`. A deployment is the item
//! (`DEPLOYMENT#<id>`, `STATE`) holding the state machine's state as JSON and a `version`
//! number; a group's lock is `activeDeploymentId` on (`GROUP#<id>`, `GROUP`).
//!
//! Every write is conditional. A lost race comes back as [`StoreError::Conflict`], never as
//! a silent overwrite: the caller reloads and applies its input again ([`apply`]).

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use gantry_core::deployment::{Deployment, Effect, Input};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost: someone else changed the item first.
    #[error("{0}")]
    Conflict(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{what} is stored in a form this build cannot read: {message}")]
    Corrupt { what: String, message: String },
    #[error("the state machine refused the input: {0}")]
    Refused(#[from] gantry_core::deployment::ApplyError),
    #[error("DynamoDB: {0}")]
    Aws(String),
}

/// A value with the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

pub struct DynamoStore {
    client: Client,
    table: String,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn deployment_key(id: &str) -> (AttributeValue, AttributeValue) {
    (s(format!("DEPLOYMENT#{id}")), s("STATE"))
}

fn group_key(group_id: &str) -> (AttributeValue, AttributeValue) {
    (s(format!("GROUP#{group_id}")), s("GROUP"))
}

/// Maps an SDK error to a domain error: a failed condition is a conflict, not a string.
fn classify<E>(error: SdkError<E>, conflict: impl FnOnce() -> String) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let SdkError::ServiceError(service) = &error
        && service.err().code() == Some("ConditionalCheckFailedException")
    {
        return StoreError::Conflict(conflict());
    }
    StoreError::Aws(DisplayErrorContext(error).to_string())
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Creates the table as the SAM template declares it (for gantry-local and tests).
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .expect("key schema fields are set")
        };
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute fields are set")
        };
        self.client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .attribute_definitions(attribute("pk"))
            .attribute_definitions(attribute("sk"))
            .send()
            .await
            .map_err(|error| StoreError::Aws(DisplayErrorContext(error).to_string()))?;
        Ok(())
    }

    /// Stores a new deployment at version 1; refuses to replace an existing one.
    pub async fn create_deployment(&self, deployment: &Deployment) -> Result<(), StoreError> {
        let (pk, sk) = deployment_key(&deployment.deployment_id);
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", pk)
            .item("sk", sk)
            .item("state", s(encode(deployment)))
            .item("status", s(format!("{:?}", deployment.status)))
            .item("version", n(1))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|error| {
                classify(error, || {
                    format!("deployment {} already exists", deployment.deployment_id)
                })
            })?;
        Ok(())
    }

    pub async fn load_deployment(&self, id: &str) -> Result<Versioned<Deployment>, StoreError> {
        let (pk, sk) = deployment_key(id);
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", sk)
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| StoreError::Aws(DisplayErrorContext(error).to_string()))?
            .item
            .ok_or_else(|| StoreError::NotFound(format!("deployment {id}")))?;
        let corrupt = |message: String| StoreError::Corrupt {
            what: format!("deployment {id}"),
            message,
        };
        let state = item
            .get("state")
            .and_then(|value| value.as_s().ok())
            .ok_or_else(|| corrupt("no state".to_owned()))?;
        let version = item
            .get("version")
            .and_then(|value| value.as_n().ok())
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| corrupt("no version".to_owned()))?;
        let value = serde_json::from_str(state).map_err(|error| corrupt(error.to_string()))?;
        Ok(Versioned { value, version })
    }

    /// Writes the deployment if it is still at `expected_version`; returns the new version.
    pub async fn save_deployment(
        &self,
        deployment: &Deployment,
        expected_version: u64,
    ) -> Result<u64, StoreError> {
        let (pk, sk) = deployment_key(&deployment.deployment_id);
        let next = expected_version + 1;
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", sk)
            .update_expression("SET #state = :state, #status = :status, #version = :next")
            .condition_expression("#version = :expected")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":state", s(encode(deployment)))
            .expression_attribute_values(":status", s(format!("{:?}", deployment.status)))
            .expression_attribute_values(":next", n(next))
            .expression_attribute_values(":expected", n(expected_version))
            .send()
            .await
            .map_err(|error| {
                classify(error, || {
                    format!(
                        "deployment {} changed since version {expected_version}",
                        deployment.deployment_id
                    )
                })
            })?;
        Ok(next)
    }

    /// Takes the group's lock for a deployment: only one active deployment per group.
    /// Taking it again for the same deployment succeeds, so a retried create is safe.
    pub async fn lock_group(&self, group_id: &str, deployment_id: &str) -> Result<(), StoreError> {
        let (pk, sk) = group_key(group_id);
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", sk)
            .update_expression("SET activeDeploymentId = :deployment")
            .condition_expression(
                "attribute_not_exists(activeDeploymentId) OR activeDeploymentId = :deployment",
            )
            .expression_attribute_values(":deployment", s(deployment_id))
            .send()
            .await
            .map_err(|error| {
                classify(error, || {
                    format!("deployment group {group_id} already has an active deployment")
                })
            })?;
        Ok(())
    }

    /// Releases the group's lock if this deployment holds it. Returns whether it did;
    /// releasing twice, or after another deployment took the lock, changes nothing.
    pub async fn unlock_group(
        &self,
        group_id: &str,
        deployment_id: &str,
    ) -> Result<bool, StoreError> {
        let (pk, sk) = group_key(group_id);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", sk)
            .update_expression("REMOVE activeDeploymentId")
            .condition_expression("activeDeploymentId = :deployment")
            .expression_attribute_values(":deployment", s(deployment_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) => match classify(error, String::new) {
                StoreError::Conflict(_) => Ok(false),
                other => Err(other),
            },
        }
    }
}

fn encode(deployment: &Deployment) -> String {
    serde_json::to_string(deployment).expect("a deployment always serializes")
}

/// What one successful application of an input did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The effects to carry out: those of the attempt whose write won, and no other.
    pub effects: Vec<Effect>,
    pub deployment: Deployment,
    pub version: u64,
}

/// Applies one input to a stored deployment with optimistic concurrency: load, apply,
/// and write back only if the state changed, on the condition that nobody wrote in
/// between; on a conflict, start over from the fresh state. Concurrent invocations with
/// the same report therefore count it once, and a batch is dispatched once.
pub async fn apply(
    store: &DynamoStore,
    deployment_id: &str,
    input: Input,
    max_attempts: u32,
) -> Result<Applied, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Versioned {
            value: mut deployment,
            version,
        } = store.load_deployment(deployment_id).await?;
        let before = deployment.clone();
        let effects = deployment.apply(input.clone())?;
        if deployment == before {
            return Ok(Applied {
                effects,
                deployment,
                version,
            });
        }
        match store.save_deployment(&deployment, version).await {
            Ok(version) => {
                return Ok(Applied {
                    effects,
                    deployment,
                    version,
                });
            }
            Err(StoreError::Conflict(message)) if attempt < max_attempts => {
                tracing::debug!(%deployment_id, attempt, %message, "lost a write race; retrying");
            }
            Err(error) => return Err(error),
        }
    }
}
