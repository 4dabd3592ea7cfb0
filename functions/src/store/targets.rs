//! A deployment's hosts: their records, written alone or with the summary, and the
//! queries for the ones deploying or overdue.

use super::codec::{aws, classify, decode, json, json_name, n, number, s, text};
use super::{DUE_INDEX, DynamoStore, Item, StoreError, TRANSACTION_TARGETS, Versioned, keys};
use aws_sdk_dynamodb::types::{KeysAndAttributes, Put, TransactWriteItem};
use gantry_core::deployment::{Millis, TargetState, TargetStatus};
use std::collections::{BTreeMap, HashMap};

impl DynamoStore {
    /// Every host record of a deployment (the hosts sent their command), by instance id.
    pub async fn targets(&self, id: &str) -> Result<Vec<TargetState>, StoreError> {
        let mut targets = Vec::new();
        self.query_pages(&keys::deployment(id), keys::TARGET_PREFIX, |item| {
            targets.push(decode(item, "state", id)?);
            Ok(())
        })
        .await?;
        Ok(targets)
    }

    /// Runs `each` over the items of a partition whose sort key starts with `prefix`.
    pub(super) async fn query_pages(
        &self,
        pk: &str,
        prefix: &str,
        mut each: impl FnMut(&Item) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut start: Option<Item> = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_values(":pk", s(pk));
            request = if prefix.is_empty() {
                request.key_condition_expression("pk = :pk")
            } else {
                request
                    .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                    .expression_attribute_values(":prefix", s(prefix))
            };
            let page = request
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(aws)?;
            for item in page.items() {
                each(item)?;
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(()),
            }
        }
    }

    /// The records of the given hosts that exist (those sent their command), read
    /// consistently, with their versions.
    pub async fn load_targets(
        &self,
        id: &str,
        instance_ids: &[String],
    ) -> Result<BTreeMap<String, Versioned<TargetState>>, StoreError> {
        let mut found = BTreeMap::new();
        let unique: std::collections::BTreeSet<&String> = instance_ids.iter().collect();
        let unique: Vec<&String> = unique.into_iter().collect();
        for chunk in unique.chunks(100) {
            let mut keys: Vec<Item> = chunk
                .iter()
                .map(|instance| {
                    HashMap::from([
                        ("pk".to_owned(), s(keys::deployment(id))),
                        ("sk".to_owned(), s(keys::target(instance))),
                    ])
                })
                .collect();
            // BatchGetItem may return some keys unprocessed under load: ask again.
            while !keys.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys)))
                    .consistent_read(true)
                    .build()
                    .expect("keys are set");
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(aws)?;
                for item in output
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    let state: TargetState = decode(&item, "state", id)?;
                    let version = number(&item, "version").unwrap_or(1);
                    found.insert(
                        state.target.instance_id.clone(),
                        Versioned {
                            value: state,
                            version,
                        },
                    );
                }
                if let Some(left) = output
                    .unprocessed_keys
                    .and_then(|mut left| left.remove(&self.table))
                {
                    keys = left.keys;
                }
            }
        }
        Ok(found)
    }

    /// Creates the records of hosts being sent their command, a transaction per hundred.
    /// A record that exists already (this dispatch ran before and stopped part way) is
    /// kept as it is.
    pub async fn create_targets(
        &self,
        id: &str,
        records: Vec<TargetState>,
    ) -> Result<(), StoreError> {
        for chunk in records.chunks(TRANSACTION_TARGETS) {
            let items = chunk
                .iter()
                .map(|record| {
                    let put = self
                        .target_put(id, record, None)
                        .build()
                        .expect("put fields are set");
                    TransactWriteItem::builder().put(put).build()
                })
                .collect();
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            match result {
                Ok(_) => continue,
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_transaction_canceled_exception()) => {}
                Err(error) => return Err(aws(error)),
            }
            // Some exist already: create the others one by one.
            for record in chunk {
                let result = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(self.target_item(id, record, 1)))
                    .condition_expression("attribute_not_exists(pk)")
                    .send()
                    .await;
                match result {
                    Ok(_) => {}
                    Err(error) => match classify(error, String::new) {
                        StoreError::Conflict(_) => {}
                        other => return Err(other),
                    },
                }
            }
        }
        Ok(())
    }

    /// Replaces a host record still at `expected_version` (a conflict otherwise).
    pub async fn replace_target(
        &self,
        id: &str,
        record: &TargetState,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.target_item(id, record, expected_version + 1)))
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":expected", n(expected_version))
            .send()
            .await
            .map_err(|error| classify(error, || format!("host {}", record.target.instance_id)))?;
        Ok(())
    }

    /// A host record as stored. A deploying host is listed on the `due` index at its
    /// deadline.
    fn target_item(&self, id: &str, record: &TargetState, version: u64) -> Item {
        let mut item = HashMap::from([
            ("pk".to_owned(), s(keys::deployment(id))),
            ("sk".to_owned(), s(keys::target(&record.target.instance_id))),
            ("state".to_owned(), json(record)),
            ("status".to_owned(), json_name(&record.status)),
            ("version".to_owned(), n(version)),
        ]);
        if let Some(deadline) = record.deadline
            && record.status == TargetStatus::InProgress
        {
            item.insert("dueDeployment".to_owned(), s(id));
            item.insert("dueAt".to_owned(), n(deadline));
        }
        item
    }

    /// A host record's write: new (`expected_version` None) or replacing the version read.
    pub(super) fn target_put(
        &self,
        id: &str,
        record: &TargetState,
        expected_version: Option<u64>,
    ) -> aws_sdk_dynamodb::types::builders::PutBuilder {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.target_item(
                id,
                record,
                expected_version.unwrap_or(0) + 1,
            )));
        match expected_version {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(version) => put
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", n(version)),
        }
    }

    /// Hosts of a deployment whose deadline is at or before `now` (by the `due` index,
    /// which lags writes a little: read the records before acting on them), at most `limit`.
    pub async fn overdue_targets(
        &self,
        id: &str,
        now: Millis,
        limit: i32,
    ) -> Result<Vec<String>, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .key_condition_expression("dueDeployment = :id AND dueAt <= :now")
            .expression_attribute_values(":id", s(id))
            .expression_attribute_values(":now", n(now))
            .limit(limit)
            .send()
            .await
            .map_err(aws)?;
        Ok(page
            .items()
            .iter()
            .filter_map(|item| text(item, "sk")?.strip_prefix(keys::TARGET_PREFIX))
            .map(str::to_owned)
            .collect())
    }

    /// The earliest deadline among a deployment's deploying hosts.
    pub async fn earliest_deadline(&self, id: &str) -> Result<Option<Millis>, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .key_condition_expression("dueDeployment = :id")
            .expression_attribute_values(":id", s(id))
            .limit(1)
            .send()
            .await
            .map_err(aws)?;
        Ok(page.items().first().and_then(|item| number(item, "dueAt")))
    }

    /// The instance ids of a deployment's hosts still deploying (on the `due` index).
    pub async fn deploying_hosts(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .key_condition_expression("dueDeployment = :id")
            .expression_attribute_values(":id", s(id));
        Ok(Self::query_all(request)
            .await?
            .iter()
            .filter_map(|item| {
                text(item, "sk")
                    .and_then(|sk| sk.strip_prefix(keys::TARGET_PREFIX))
                    .map(str::to_owned)
            })
            .collect())
    }

    /// Every item a query finds, page after page.
    pub(super) async fn query_all(
        request: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = request
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(aws)?;
            items.extend(page.items().iter().cloned());
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }
}
