//! Items by key: conditional puts, gets, lists, deletes and tags, for the entities
//! with no module of their own (applications, configs, instances, revisions, claims).

use super::codec::{
    aws, body, classify, decode, decode_optional, done_unless_failed, json, n, number, s, text,
};
use super::{DynamoStore, Item, StoreError, Versioned, keys};
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use serde::Serialize;
use serde::de::DeserializeOwned;

impl DynamoStore {
    /// Stores a new entity at version 1; a conflict if the key is taken.
    pub async fn put_new<T: Serialize>(
        &self,
        pk: &str,
        sk: &str,
        value: &T,
        extra: &[(&str, AttributeValue)],
    ) -> Result<(), StoreError> {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s(sk))
            .item("body", body(value, sk)?)
            .item("version", n(1))
            .condition_expression("attribute_not_exists(pk)");
        for (name, value) in extra {
            request = request.item(*name, value.clone());
        }
        request
            .send()
            .await
            .map_err(|error| classify(error, || format!("{pk}/{sk} already exists")))?;
        Ok(())
    }

    /// Stores an entity and claims `claim` for it in one transaction (`CLAIM`/`<claim>`,
    /// naming the entity): something only one entity may have, such as an IAM identity.
    /// The entity must be new, or (`replacing`) still at that version. A conflict means
    /// the entity or the claim was there.
    pub async fn put_claiming<T: Serialize>(
        &self,
        pk: &str,
        sk: &str,
        value: &T,
        replacing: Option<u64>,
        claim: &str,
    ) -> Result<(), StoreError> {
        let entity = Put::builder()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s(sk))
            .item("body", body(value, sk)?)
            .item("version", n(replacing.unwrap_or(0) + 1));
        let entity = match replacing {
            None => entity.condition_expression("attribute_not_exists(pk)"),
            Some(version) => entity
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", n(version)),
        }
        .build()
        .expect("put fields are set");
        let claimed = Put::builder()
            .table_name(&self.table)
            .item("pk", s(keys::CLAIMS))
            .item("sk", s(claim))
            .item("owner", s(format!("{pk}/{sk}")))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .expect("put fields are set");
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(entity).build())
            .transact_items(TransactWriteItem::builder().put(claimed).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_transaction_canceled_exception()) =>
            {
                Err(StoreError::Conflict(format!(
                    "{pk}/{sk} or the claim on {claim} exists"
                )))
            }
            Err(error) => Err(aws(error)),
        }
    }

    /// The entity (`pk/sk`) holding `claim`, if any.
    pub async fn claim_owner(&self, claim: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .get_item(keys::CLAIMS, claim)
            .await?
            .and_then(|item| text(&item, "owner").map(str::to_owned)))
    }

    /// Gives up `claim` if `pk/sk` holds it.
    pub async fn release_claim(&self, claim: &str, pk: &str, sk: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(keys::CLAIMS))
            .key("sk", s(claim))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(format!("{pk}/{sk}")))
            .send()
            .await;
        // Someone else's, or nobody's.
        done_unless_failed(result)
    }

    /// Stores an entity whether or not it exists (a revision registered again).
    pub async fn put<T: Serialize>(&self, pk: &str, sk: &str, value: &T) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s(sk))
            .item("body", body(value, sk)?)
            .item("version", n(1))
            .send()
            .await
            .map_err(aws)?;
        Ok(())
    }

    /// Replaces an entity's body if it is still at `expected_version`.
    pub async fn update_body<T: Serialize>(
        &self,
        pk: &str,
        sk: &str,
        value: &T,
        expected_version: u64,
    ) -> Result<u64, StoreError> {
        let next = expected_version + 1;
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression("SET body = :body, #version = :next")
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":body", body(value, sk)?)
            .expression_attribute_values(":next", n(next))
            .expression_attribute_values(":expected", n(expected_version))
            .send()
            .await
            .map_err(|error| classify(error, || format!("{sk} changed since it was read")))?;
        Ok(next)
    }

    pub(super) async fn get_item(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(aws)?
            .item)
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        pk: &str,
        sk: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        let Some(item) = self.get_item(pk, sk).await? else {
            return Ok(None);
        };
        Ok(Some(Versioned {
            value: decode(&item, "body", sk)?,
            version: number(&item, "version").unwrap_or(1),
        }))
    }

    /// Every entity in a partition, in key order.
    pub async fn list<T: DeserializeOwned>(&self, pk: &str) -> Result<Vec<T>, StoreError> {
        let mut values = Vec::new();
        self.query_pages(pk, "", |item| {
            let what = text(item, "sk").unwrap_or(pk);
            values.push(decode(item, "body", what)?);
            Ok(())
        })
        .await?;
        Ok(values)
    }

    /// Deletes an entity; `condition` (if any) must hold, or it is a conflict.
    pub async fn delete(
        &self,
        pk: &str,
        sk: &str,
        condition: Option<&str>,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .set_condition_expression(condition.map(str::to_owned))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|error| classify(error, || format!("{sk} cannot be deleted now")))?;
        Ok(result.attributes.is_some_and(|old| !old.is_empty()))
    }

    // ---- resource tags: `tags` (JSON) and `tagsVersion` beside an entity's body, so
    // they go when the entity goes, and change without touching its `version` ----

    /// The attributes that give a new entity `tags` (`put_new`'s `extra`).
    pub fn tag_attributes<T: Serialize>(tags: &[T]) -> Vec<(&'static str, AttributeValue)> {
        if tags.is_empty() {
            return Vec::new();
        }
        vec![("tags", json(&tags)), ("tagsVersion", n(1))]
    }

    /// An entity's tags and their version (0 if it was never tagged); `None` if there is
    /// no such entity.
    pub async fn tags<T: DeserializeOwned>(
        &self,
        pk: &str,
        sk: &str,
    ) -> Result<Option<Versioned<Vec<T>>>, StoreError> {
        let Some(item) = self.get_item(pk, sk).await? else {
            return Ok(None);
        };
        Ok(Some(Versioned {
            value: decode_optional(&item, "tags", sk)?.unwrap_or_default(),
            version: number(&item, "tagsVersion").unwrap_or(0),
        }))
    }

    /// Replaces an entity's tags if they are still at `expected_version` (from
    /// [`Self::tags`]); a conflict if they changed or the entity is gone.
    pub async fn set_tags<T: Serialize>(
        &self,
        pk: &str,
        sk: &str,
        tags: &[T],
        expected_version: u64,
    ) -> Result<u64, StoreError> {
        let next = expected_version + 1;
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression("SET #tags = :tags, #tagsVersion = :next")
            .expression_attribute_names("#tags", "tags")
            .expression_attribute_names("#tagsVersion", "tagsVersion")
            .expression_attribute_values(":tags", json(&tags))
            .expression_attribute_values(":next", n(next));
        let request = if expected_version == 0 {
            request
                .condition_expression("attribute_exists(pk) AND attribute_not_exists(#tagsVersion)")
        } else {
            request
                .condition_expression("#tagsVersion = :expected")
                .expression_attribute_values(":expected", n(expected_version))
        };
        request.send().await.map_err(|error| {
            classify(error, || {
                format!("{pk}/{sk} or its tags changed since they were read")
            })
        })?;
        Ok(next)
    }

    // ---- deployment groups ----
}
