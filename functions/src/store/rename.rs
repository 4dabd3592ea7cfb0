//! Renaming an application: the steps that move what its name keys to the new name's
//! keys. Each step is conditional and may run again: a step cut short is finished by
//! running it again, and one that ran already finds nothing left to do. The order of the
//! steps, and what a crash between them leaves, is in `handlers::api::rename`.
//!
//! Marks while a rename runs: the old application's item has `renamingTo` (the new
//! name), the new one's `renamedFrom` (the old name), and a group moved to the new name
//! whose health and history have not followed yet has `renamedFrom` too.

use super::codec::{aws, body, classify, done_unless_failed, n, number, s, text};
use super::{ACTIVE_INDEX, BY_GROUP_INDEX, DynamoStore, Item, StoreError, keys};
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};
use serde::Serialize;
use std::collections::HashMap;

/// Item pairs (a put and a delete) per transaction: DynamoDB takes 100 items.
const PAIRS_PER_TRANSACTION: usize = 50;
/// Attempts at moving one item that keeps changing under the move.
const MOVE_ATTEMPTS: usize = 8;

/// The attributes of a group item that change after it is created, besides its keys: a
/// move's delete requires each as it was read, so that no change made meanwhile is lost.
/// (Every attribute moves; one that can change and is not here could lose a change made
/// during the move: add it.)
const GROUP_ATTRIBUTES: [&str; 8] = [
    "body",
    "version",
    "activeDeploymentId",
    "lastSuccessful",
    "lastAttempted",
    "targetRevision",
    "tags",
    "tagsVersion",
];
/// The same for revisions and instance health (written whole, by a put).
const RECORD_ATTRIBUTES: [&str; 2] = ["body", "version"];

/// An application item's marks of a rename in progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenameMarks {
    /// On the old name's item: the name it is being renamed to.
    pub renaming_to: Option<String>,
    /// On the new name's item: the name it is being renamed from.
    pub renamed_from: Option<String>,
}

/// What moving one deployment group found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupMove {
    Moved,
    /// Not under the old name (moved already, or deleted).
    Gone,
    /// A deployment holds its lock: it stays where it is.
    Locked {
        deployment_id: String,
    },
    /// The new name already has a group of that name (created while the rename ran).
    NameTaken,
}

/// `DeleteItem`'s condition that the item is as it was read: each of `watched` equal to
/// what it was, or still absent.
fn unchanged(
    item: &Item,
    watched: &[&str],
) -> (
    String,
    HashMap<String, String>,
    HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) {
    let mut clauses = Vec::new();
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    for (index, attribute) in watched.iter().enumerate() {
        let name = format!("#w{index}");
        match item.get(*attribute) {
            Some(value) => {
                let placeholder = format!(":w{index}");
                clauses.push(format!("{name} = {placeholder}"));
                values.insert(placeholder, value.clone());
            }
            None => clauses.push(format!("attribute_not_exists({name})")),
        }
        names.insert(name, (*attribute).to_owned());
    }
    (clauses.join(" AND "), names, values)
}

/// `item` under `pk` (same sort key), its body naming `application` if it names one (a
/// group's settings and a revision's record do; instance health does not).
fn moved_item(item: &Item, pk: &str, application: &str) -> Result<Item, StoreError> {
    let mut moved = item.clone();
    moved.insert("pk".to_owned(), s(pk));
    if let Some(raw) = text(item, "body") {
        let mut value: serde_json::Value =
            serde_json::from_str(raw).map_err(|error| StoreError::Corrupt {
                what: format!("{pk}/{}", text(item, "sk").unwrap_or_default()),
                message: format!("body: {error}"),
            })?;
        if let Some(named) = value.get_mut("applicationName") {
            *named = serde_json::Value::String(application.to_owned());
            moved.insert("body".to_owned(), body(&value, "body")?);
        }
    }
    Ok(moved)
}

fn transaction_cancelled<E>(error: &aws_sdk_dynamodb::error::SdkError<E>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    matches!(
        error,
        aws_sdk_dynamodb::error::SdkError::ServiceError(service)
            if service.err().code() == Some("TransactionCanceledException")
    )
}

impl DynamoStore {
    /// The rename marks of an application; None if there is no such application.
    pub async fn rename_marks(&self, application: &str) -> Result<Option<RenameMarks>, StoreError> {
        Ok(self
            .get_item(keys::APPLICATIONS, application)
            .await?
            .map(|item| RenameMarks {
                renaming_to: text(&item, "renamingTo").map(str::to_owned),
                renamed_from: text(&item, "renamedFrom").map(str::to_owned),
            }))
    }

    /// Takes the name `new` for `old`'s rename, in one transaction: `new`'s item (its body
    /// `renamed`, `old`'s tags, marked `renamedFrom`), and `old` marked `renamingTo`. A
    /// conflict when `new` exists, or `old` is gone or being renamed to another name.
    pub async fn reserve_application_name<T: Serialize>(
        &self,
        old: &str,
        new: &str,
        renamed: &T,
    ) -> Result<(), StoreError> {
        let current = self
            .get_item(keys::APPLICATIONS, old)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("application {old}")))?;
        let mut put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(keys::APPLICATIONS))
            .item("sk", s(new))
            .item("body", body(renamed, new)?)
            .item("version", n(1))
            .item("renamedFrom", s(old))
            .condition_expression("attribute_not_exists(pk)");
        for attribute in ["tags", "tagsVersion"] {
            if let Some(value) = current.get(attribute) {
                put = put.item(attribute, value.clone());
            }
        }
        let mark = Update::builder()
            .table_name(&self.table)
            .key("pk", s(keys::APPLICATIONS))
            .key("sk", s(old))
            .update_expression("SET renamingTo = :new")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(renamingTo) OR renamingTo = :new)",
            )
            .expression_attribute_values(":new", s(new))
            .build()
            .expect("update fields are set");
        self.client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .put(put.build().expect("put fields are set"))
                    .build(),
            )
            .transact_items(TransactWriteItem::builder().update(mark).build())
            .send()
            .await
            .map_err(|error| {
                if transaction_cancelled(&error) {
                    StoreError::Conflict(format!(
                        "application {new} exists, or {old} is gone or being renamed to another name"
                    ))
                } else {
                    aws(error)
                }
            })?;
        Ok(())
    }

    /// Moves `old`'s revisions to `new`, their records naming `new`. A revision `new`
    /// has already (registered to it while the rename ran) is newer and stays; `old`'s
    /// copy goes. Returns how many were under `old`.
    pub async fn move_revisions(&self, old: &str, new: &str) -> Result<usize, StoreError> {
        // A deployment's use of a revision while it moves keeps the old copy.
        self.move_partition(
            &keys::revisions(old),
            &keys::revisions(new),
            new,
            &["body", "version", "lastUsedTime"],
        )
        .await
    }

    /// Moves the instance health of `group` from `old`'s keys to `new`'s, as
    /// [`Self::move_revisions`] moves revisions: a record already under `new` was written
    /// by a deployment of the renamed group, so it is newer and stays.
    pub async fn move_group_health(
        &self,
        old: &str,
        new: &str,
        group: &str,
    ) -> Result<usize, StoreError> {
        self.move_partition(
            &keys::health(old, group),
            &keys::health(new, group),
            new,
            &RECORD_ATTRIBUTES,
        )
        .await
    }

    /// Moves every item of partition `from` to `to`: a transaction per 50 items, each
    /// item put under `to` if absent there and deleted from `from` if unchanged since it
    /// was read. A transaction that fails is done again item by item.
    async fn move_partition(
        &self,
        from: &str,
        to: &str,
        application: &str,
        watched: &[&str],
    ) -> Result<usize, StoreError> {
        let mut items = Vec::new();
        self.query_pages(from, "", |item| {
            items.push(item.clone());
            Ok(())
        })
        .await?;
        for chunk in items.chunks(PAIRS_PER_TRANSACTION) {
            let mut writes = Vec::with_capacity(chunk.len() * 2);
            for item in chunk {
                let (put, delete) = self.move_pair(item, to, application, watched)?;
                writes.push(TransactWriteItem::builder().put(put).build());
                writes.push(TransactWriteItem::builder().delete(delete).build());
            }
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(writes))
                .send()
                .await;
            match result {
                Ok(_) => continue,
                Err(error) if transaction_cancelled(&error) => {}
                Err(error) => return Err(aws(error)),
            }
            for item in chunk {
                let sk = text(item, "sk").unwrap_or_default().to_owned();
                self.move_one(from, &sk, to, application, watched).await?;
            }
        }
        Ok(items.len())
    }

    /// The put under `to` (if nothing is there) and the delete (if unchanged) that move
    /// one item.
    fn move_pair(
        &self,
        item: &Item,
        to: &str,
        application: &str,
        watched: &[&str],
    ) -> Result<(Put, Delete), StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(moved_item(item, to, application)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .expect("put fields are set");
        let (condition, names, values) = unchanged(item, watched);
        let delete = Delete::builder()
            .table_name(&self.table)
            .key("pk", item["pk"].clone())
            .key("sk", item["sk"].clone())
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values((!values.is_empty()).then_some(values))
            .build()
            .expect("delete fields are set");
        Ok((put, delete))
    }

    /// Moves one item, read afresh, as [`Self::move_partition`] does.
    async fn move_one(
        &self,
        from: &str,
        sk: &str,
        to: &str,
        application: &str,
        watched: &[&str],
    ) -> Result<(), StoreError> {
        for _ in 0..MOVE_ATTEMPTS {
            let Some(item) = self.get_item(from, sk).await? else {
                return Ok(()); // moved or deleted meanwhile
            };
            let (put, delete) = self.move_pair(&item, to, application, watched)?;
            let taken = self.get_item(to, sk).await?.is_some();
            let result = if taken {
                // The item under `to` is newer: only the old one goes.
                let request = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .key("pk", s(from))
                    .key("sk", s(sk))
                    .condition_expression(delete.condition_expression().unwrap_or_default())
                    .set_expression_attribute_names(delete.expression_attribute_names().cloned())
                    .set_expression_attribute_values(delete.expression_attribute_values().cloned());
                request.send().await.map(|_| ()).map_err(|error| {
                    classify(error, || format!("{from}/{sk} changed while it moved"))
                })
            } else {
                self.client
                    .transact_write_items()
                    .transact_items(TransactWriteItem::builder().put(put).build())
                    .transact_items(TransactWriteItem::builder().delete(delete).build())
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|error| {
                        if transaction_cancelled(&error) {
                            StoreError::Conflict(format!("{from}/{sk} changed while it moved"))
                        } else {
                            aws(error)
                        }
                    })
            };
            match result {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict(_)) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(StoreError::Conflict(format!(
            "{from}/{sk} kept changing while it moved to {to}"
        )))
    }

    /// Moves deployment group `group` from application `old` to `new` in one
    /// transaction: its settings (naming `new`), lock, last successful and attempted
    /// deployments, target revision and tags, marked `renamedFrom` until its health and
    /// history follow ([`Self::finish_group_move`]). Moved only if unchanged since read
    /// and not locked.
    pub async fn move_group(
        &self,
        old: &str,
        new: &str,
        group: &str,
    ) -> Result<GroupMove, StoreError> {
        let (from, to) = (keys::groups(old), keys::groups(new));
        for _ in 0..MOVE_ATTEMPTS {
            let Some(item) = self.get_item(&from, group).await? else {
                return Ok(GroupMove::Gone);
            };
            if let Some(id) = text(&item, "activeDeploymentId") {
                return Ok(GroupMove::Locked {
                    deployment_id: id.to_owned(),
                });
            }
            let mut moved = moved_item(&item, &to, new)?;
            moved.insert("renamedFrom".to_owned(), s(old));
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(moved))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .expect("put fields are set");
            let (condition, names, values) = unchanged(&item, &GROUP_ATTRIBUTES);
            let delete = Delete::builder()
                .table_name(&self.table)
                .key("pk", s(&from))
                .key("sk", s(group))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .build()
                .expect("delete fields are set");
            let result = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put).build())
                .transact_items(TransactWriteItem::builder().delete(delete).build())
                .send()
                .await;
            match result {
                Ok(_) => return Ok(GroupMove::Moved),
                Err(error) if transaction_cancelled(&error) => {
                    // Both cannot come from this move (it is one transaction): the new
                    // name got a group of its own.
                    if self.get_item(&to, group).await?.is_some() {
                        return Ok(GroupMove::NameTaken);
                    }
                    // The group changed since it was read: read it again.
                }
                Err(error) => return Err(aws(error)),
            }
        }
        Err(StoreError::Conflict(format!(
            "deployment group {group} kept changing while it moved to application {new}"
        )))
    }

    /// The groups of `new` moved from `old` whose health and history have not followed.
    pub async fn groups_moved_from(&self, new: &str, old: &str) -> Result<Vec<String>, StoreError> {
        let mut groups = Vec::new();
        self.query_pages(&keys::groups(new), "", |item| {
            if text(item, "renamedFrom") == Some(old)
                && let Some(name) = text(item, "sk")
            {
                groups.push(name.to_owned());
            }
            Ok(())
        })
        .await?;
        Ok(groups)
    }

    /// Takes the `renamedFrom` mark off a moved group once its health and history
    /// followed it. A group not so marked (finished already) is left as it is.
    pub async fn finish_group_move(
        &self,
        new: &str,
        group: &str,
        old: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::groups(new)))
            .key("sk", s(group))
            .update_expression("REMOVE renamedFrom")
            .condition_expression("renamedFrom = :old")
            .expression_attribute_values(":old", s(old))
            .send()
            .await;
        done_unless_failed(result)
    }

    /// Lists `group`'s past deployments under `new` (index `by-group`): each one's
    /// `groupKey` becomes `new#group`. Only the index key changes; what the deployment
    /// records (its applicationName) stays as it was made. Returns how many moved.
    pub async fn rekey_group_deployments(
        &self,
        old: &str,
        new: &str,
        group: &str,
    ) -> Result<usize, StoreError> {
        let (from, to) = (keys::group_key(old, group), keys::group_key(new, group));
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_GROUP_INDEX)
            .key_condition_expression("groupKey = :group")
            .expression_attribute_values(":group", s(&from));
        let mut moved = 0;
        for item in Self::query_all(request).await? {
            let Some(pk) = text(&item, "pk") else {
                continue;
            };
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(pk))
                .key("sk", s(keys::DEPLOYMENT_SK))
                .update_expression("SET groupKey = :to")
                .condition_expression("groupKey = :from")
                .expression_attribute_values(":to", s(&to))
                .expression_attribute_values(":from", s(&from))
                .send()
                .await;
            match result {
                Ok(_) => moved += 1,
                // Moved already (the index lags a little).
                Err(error) => match classify(error, String::new) {
                    StoreError::Conflict(_) => {}
                    other => return Err(other),
                },
            }
        }
        Ok(moved)
    }

    /// Deployments of `application`'s groups on the `active` index: those that may
    /// still change, or whose effects may not all be carried out yet.
    pub async fn active_deployments_of(
        &self,
        application: &str,
    ) -> Result<Vec<String>, StoreError> {
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(ACTIVE_INDEX)
            .key_condition_expression("activeKey = :active")
            .expression_attribute_values(":active", s("ACTIVE"));
        // `#` cannot be in a name, so the prefix names this application alone.
        let prefix = keys::group_key(application, "");
        let mut found = Vec::new();
        for item in Self::query_all(request).await? {
            let Some(pk) = text(&item, "pk") else {
                continue;
            };
            let summary = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(pk))
                .key("sk", s(keys::DEPLOYMENT_SK))
                .projection_expression("groupKey")
                .consistent_read(true)
                .send()
                .await
                .map_err(aws)?;
            let group_key = summary
                .item
                .as_ref()
                .and_then(|item| text(item, "groupKey"));
            if group_key.is_some_and(|key| key.starts_with(&prefix))
                && let Some(id) = pk.strip_prefix("DEPLOYMENT#")
            {
                found.push(id.to_owned());
            }
        }
        Ok(found)
    }

    /// Whether a partition holds no item.
    pub async fn partition_is_empty(&self, pk: &str) -> Result<bool, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(pk))
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(aws)?;
        Ok(page.items().is_empty())
    }

    /// Ends the rename of `old` to `new`, in one transaction: `old`'s item goes, and
    /// `new`'s loses its mark and takes `old`'s tags as they are now (tagged by its old
    /// name while the rename ran, the application keeps those tags). A conflict if
    /// either changed since read, or the rename is not `old`'s to `new`.
    pub async fn finish_application_rename(&self, old: &str, new: &str) -> Result<(), StoreError> {
        let conflict = || StoreError::Conflict(format!("the rename of {old} to {new} changed"));
        let from = self
            .get_item(keys::APPLICATIONS, old)
            .await?
            .ok_or_else(conflict)?;
        let to = self
            .get_item(keys::APPLICATIONS, new)
            .await?
            .ok_or_else(conflict)?;
        let (condition, mut names, mut values) = unchanged(&from, &["tags", "tagsVersion"]);
        names.insert("#to".to_owned(), "renamingTo".to_owned());
        values.insert(":new".to_owned(), s(new));
        let delete = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(keys::APPLICATIONS))
            .key("sk", s(old))
            .condition_expression(format!("#to = :new AND {condition}"))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .expect("delete fields are set");
        let (condition, mut names, mut values) = unchanged(&to, &["tagsVersion"]);
        names.insert("#from".to_owned(), "renamedFrom".to_owned());
        values.insert(":old".to_owned(), s(old));
        let mut expression = String::from("REMOVE #from");
        if from.get("tags") != to.get("tags") {
            let tags = from.get("tags").cloned().unwrap_or_else(|| s("[]"));
            let next = number(&to, "tagsVersion").unwrap_or(0) + 1;
            names.insert("#tags".to_owned(), "tags".to_owned());
            names.insert("#tagsVersion".to_owned(), "tagsVersion".to_owned());
            values.insert(":tags".to_owned(), tags);
            values.insert(":next".to_owned(), n(next));
            expression = format!("SET #tags = :tags, #tagsVersion = :next {expression}");
        }
        let unmark = Update::builder()
            .table_name(&self.table)
            .key("pk", s(keys::APPLICATIONS))
            .key("sk", s(new))
            .update_expression(expression)
            .condition_expression(format!("#from = :old AND {condition}"))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .expect("update fields are set");
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .transact_items(TransactWriteItem::builder().update(unmark).build())
            .send()
            .await
            .map_err(|error| {
                if transaction_cancelled(&error) {
                    conflict()
                } else {
                    aws(error)
                }
            })?;
        Ok(())
    }
}
