//! Deployment groups: their settings, lock, last deployments and instance health.

use super::codec::{classify, decode, decode_optional, deployment_id_of, json, n, number, s, text};
use super::{BY_GROUP_INDEX, DynamoStore, StoreError, Versioned, keys};
use crate::model::LastDeploymentInfo;
use aws_sdk_dynamodb::types::AttributeValue;
use gantry_core::deployment::Millis;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// A deployment group as stored: settings plus what the control plane keeps on it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRecord<T> {
    pub settings: Versioned<T>,
    pub active_deployment_id: Option<String>,
    pub last_successful: Option<LastDeploymentInfo>,
    pub last_attempted: Option<LastDeploymentInfo>,
    pub target_revision: Option<gantry_core::wire::RevisionLocation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceHealth {
    pub healthy: bool,
    pub deployment_id: String,
    /// The revision the instance runs (after a success) or was given (after a failure).
    pub revision: gantry_core::wire::RevisionLocation,
}

impl DynamoStore {
    pub async fn create_group<T: Serialize>(
        &self,
        application: &str,
        name: &str,
        settings: &T,
    ) -> Result<(), StoreError> {
        self.put_new(&keys::groups(application), name, settings, &[])
            .await
    }

    /// A new group with its resource tags.
    pub async fn create_tagged_group<T: Serialize, U: Serialize>(
        &self,
        application: &str,
        name: &str,
        settings: &T,
        tags: &[U],
    ) -> Result<(), StoreError> {
        let tags = Self::tag_attributes(tags);
        self.put_new(&keys::groups(application), name, settings, &tags)
            .await
    }

    pub async fn load_group<T: DeserializeOwned>(
        &self,
        application: &str,
        name: &str,
    ) -> Result<Option<GroupRecord<T>>, StoreError> {
        let Some(item) = self.get_item(&keys::groups(application), name).await? else {
            return Ok(None);
        };
        let what = format!("deployment group {name}");
        Ok(Some(GroupRecord {
            settings: Versioned {
                value: decode(&item, "body", &what)?,
                version: number(&item, "version").unwrap_or(1),
            },
            active_deployment_id: text(&item, "activeDeploymentId").map(str::to_owned),
            last_successful: decode_optional(&item, "lastSuccessful", &what)?,
            last_attempted: decode_optional(&item, "lastAttempted", &what)?,
            target_revision: decode_optional(&item, "targetRevision", &what)?,
        }))
    }

    /// Each of an application's deployment groups with its target revision (its last
    /// successful deployment's), in name order: one query.
    pub async fn group_target_revisions(
        &self,
        application: &str,
    ) -> Result<Vec<(String, Option<gantry_core::wire::RevisionLocation>)>, StoreError> {
        let mut groups = Vec::new();
        self.query_pages(&keys::groups(application), "", |item| {
            let name = text(item, "sk").unwrap_or_default().to_owned();
            let target = decode_optional(item, "targetRevision", &name)?;
            groups.push((name, target));
            Ok(())
        })
        .await?;
        Ok(groups)
    }

    /// Records one instance's health in its group, in the instance's own item.
    pub async fn record_health(
        &self,
        application: &str,
        group: &str,
        instance_id: &str,
        health: &InstanceHealth,
    ) -> Result<(), StoreError> {
        self.put(&keys::health(application, group), instance_id, health)
            .await
    }

    /// Every instance's health in a group, by instance id.
    pub async fn group_health(
        &self,
        application: &str,
        group: &str,
    ) -> Result<BTreeMap<String, InstanceHealth>, StoreError> {
        let mut health = BTreeMap::new();
        self.query_pages(&keys::health(application, group), "", |item| {
            let instance = text(item, "sk").unwrap_or_default().to_owned();
            health.insert(instance, decode(item, "body", "instance health")?);
            Ok(())
        })
        .await?;
        Ok(health)
    }

    /// Records the group's last successful deployment and its revision.
    pub async fn record_success(
        &self,
        application: &str,
        group: &str,
        last: &LastDeploymentInfo,
        revision: &gantry_core::wire::RevisionLocation,
    ) -> Result<(), StoreError> {
        self.set_group_attributes(
            application,
            group,
            "SET lastSuccessful = :last, targetRevision = :revision",
            &[],
            vec![(":last", json(last)), (":revision", json(revision))],
        )
        .await
    }

    /// Records the group's last successful deployment alone: a Lambda deployment's,
    /// whose AppSpec is no instance revision to deploy again.
    pub async fn record_last_successful(
        &self,
        application: &str,
        group: &str,
        last: &LastDeploymentInfo,
    ) -> Result<(), StoreError> {
        self.set_group_attributes(
            application,
            group,
            "SET lastSuccessful = :last",
            &[],
            vec![(":last", json(last))],
        )
        .await
    }

    /// Records how the group's latest deployment ended (or that it started).
    pub async fn record_attempt(
        &self,
        application: &str,
        group: &str,
        last: &LastDeploymentInfo,
    ) -> Result<(), StoreError> {
        self.set_group_attributes(
            application,
            group,
            "SET lastAttempted = :last",
            &[],
            vec![(":last", json(last))],
        )
        .await
    }

    /// Sets attributes the control plane keeps on a group item, if the group still exists:
    /// a group deleted (or its application renamed) meanwhile is NotFound, which no
    /// retry changes.
    async fn set_group_attributes(
        &self,
        application: &str,
        group: &str,
        expression: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<(), StoreError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::groups(application)))
            .key("sk", s(group))
            .update_expression(expression)
            .condition_expression("attribute_exists(pk)");
        for (name, value) in names {
            request = request.expression_attribute_names(*name, *value);
        }
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        match request
            .send()
            .await
            .map_err(|error| classify(error, String::new))
        {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict(_)) => Err(StoreError::NotFound(format!(
                "deployment group {group} of application {application}"
            ))),
            Err(other) => Err(other),
        }
    }

    /// Releases the group's lock if this deployment holds it. Returns whether it did;
    /// releasing twice, or after another deployment took the lock, changes nothing.
    pub async fn unlock_group(
        &self,
        application: &str,
        group: &str,
        deployment_id: &str,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::groups(application)))
            .key("sk", s(group))
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

    // ---- deployments ----

    /// A group's deployments, newest first.
    /// A group's deployments created within `created` (inclusive), newest first, with
    /// their create times.
    pub async fn group_deployments(
        &self,
        application: &str,
        group: &str,
        created: std::ops::RangeInclusive<Millis>,
    ) -> Result<Vec<(String, Millis)>, StoreError> {
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_GROUP_INDEX)
            .key_condition_expression("groupKey = :group AND createTime BETWEEN :from AND :to")
            .expression_attribute_values(":group", s(keys::group_key(application, group)))
            .expression_attribute_values(":from", n(*created.start()))
            .expression_attribute_values(":to", n(*created.end()))
            .scan_index_forward(false);
        Ok(Self::query_all(request)
            .await?
            .iter()
            .filter_map(|item| Some((deployment_id_of(item)?, number(item, "createTime")?)))
            .collect())
    }
}
