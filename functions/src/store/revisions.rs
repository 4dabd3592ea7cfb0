//! Registered revisions: their records, and when deployments used them.
//!
//! A revision's item holds its record (`body`) and, beside it, `firstUsedTime` and
//! `lastUsedTime` (epoch milliseconds): set by the deployments that use it, one
//! conditional update each, and kept when the revision is registered again.

use super::codec::{aws, body, classify, decode, n, number, s, text};
use super::{DynamoStore, StoreError, keys};
use crate::model::RevisionRecord;
use gantry_core::deployment::Millis;

/// A registered revision and when deployments used it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRevision {
    pub record: RevisionRecord,
    /// Epoch milliseconds; none if no deployment has used it.
    pub first_used: Option<Millis>,
    pub last_used: Option<Millis>,
}

impl DynamoStore {
    /// Registers a revision (again): its record replaces the one under its key, and
    /// what deployments recorded of its use stays.
    pub async fn put_revision(
        &self,
        application: &str,
        record: &RevisionRecord,
    ) -> Result<(), StoreError> {
        let sk = crate::model::revision_key(&record.revision_location);
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::revisions(application)))
            .key("sk", s(&sk))
            .update_expression("SET body = :body, #version = :one")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":body", body(record, &sk)?)
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(aws)?;
        Ok(())
    }

    /// Records that a deployment used the revision stored under `revision_key` at `now`:
    /// `firstUsedTime` if it has none, `lastUsedTime` unless a later use is recorded.
    /// Returns false if the revision is not registered, or a later use is recorded.
    pub async fn record_revision_use(
        &self,
        application: &str,
        revision_key: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::revisions(application)))
            .key("sk", s(revision_key))
            .update_expression(
                "SET firstUsedTime = if_not_exists(firstUsedTime, :now), lastUsedTime = :now",
            )
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(lastUsedTime) OR lastUsedTime < :now)",
            )
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) => match classify(error, || revision_key.to_owned()) {
                StoreError::Conflict(_) => Ok(false),
                other => Err(other),
            },
        }
    }

    /// Every revision registered to an application, in key order, with its use.
    pub async fn list_revisions(
        &self,
        application: &str,
    ) -> Result<Vec<StoredRevision>, StoreError> {
        let mut revisions = Vec::new();
        self.query_pages(&keys::revisions(application), "", |item| {
            let what = text(item, "sk").unwrap_or("revision");
            revisions.push(StoredRevision {
                record: decode(item, "body", what)?,
                first_used: number(item, "firstUsedTime"),
                last_used: number(item, "lastUsedTime"),
            });
            Ok(())
        })
        .await?;
        Ok(revisions)
    }
}
