//! EC2, Auto Scaling and the store's on-premises instances: the hosts a group's target
//! selection matches.

use super::aws_failure;
use crate::error::ApiError;
use crate::model::{OnPremisesInstance, TargetSelection, ZONE_TAG};
use crate::store::{DynamoStore, keys};
use gantry_core::identity::Sender;
use gantry_core::planner::{TagFilter, TagFilterType, TagSet};
use std::collections::HashMap;

/// A host a deployment can target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub instance_id: String,
    pub zone: Option<String>,
    /// Who may report for it.
    pub sender: Sender,
    /// A stopped (or stopping) EC2 instance: in the deployment, but it fails at once.
    pub stopped: bool,
}

impl Fleet {
    /// The instance profile (ARN) of each of these EC2 instances that has one.
    pub async fn instance_profiles(
        &self,
        instance_ids: &[String],
    ) -> Result<HashMap<String, String>, ApiError> {
        let mut profiles = HashMap::new();
        for chunk in instance_ids.chunks(1000) {
            let mut pages = self
                .ec2
                .describe_instances()
                .set_instance_ids(Some(chunk.to_vec()))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|error| aws_failure("EC2 DescribeInstances", error))?;
                for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                    if let (Some(id), Some(arn)) = (
                        instance.instance_id(),
                        instance.iam_instance_profile().and_then(|p| p.arn()),
                    ) {
                        profiles.insert(id.to_owned(), arn.to_owned());
                    }
                }
            }
        }
        Ok(profiles)
    }
}

/// Finds the instances a group's target selection matches.
#[derive(Clone)]
pub struct Fleet {
    ec2: aws_sdk_ec2::Client,
    autoscaling: aws_sdk_autoscaling::Client,
}

impl Fleet {
    pub fn new(ec2: aws_sdk_ec2::Client, autoscaling: aws_sdk_autoscaling::Client) -> Self {
        Self { ec2, autoscaling }
    }

    /// The instances `selection` matches now (on-premises ones from `store`).
    pub async fn matching(
        &self,
        store: &DynamoStore,
        selection: &TargetSelection,
    ) -> Result<Vec<Host>, ApiError> {
        let mut hosts = Vec::new();
        if let Some(rule) = selection.on_premises_rule() {
            hosts.extend(self.on_premises(store, &rule).await?);
        }
        if let Some(rule) = selection.ec2_rule() {
            hosts.extend(self.ec2(&rule).await?);
        }
        hosts.extend(self.auto_scaling(&selection.auto_scaling_groups).await?);
        // An instance matched twice (a tag and an Auto Scaling group) is one target.
        let mut seen = std::collections::HashSet::new();
        hosts.retain(|host| seen.insert(host.instance_id.clone()));
        Ok(hosts)
    }

    /// Registered (not deregistered) on-premises instances whose tags match.
    pub async fn on_premises(
        &self,
        store: &DynamoStore,
        rule: &TagSet,
    ) -> Result<Vec<Host>, ApiError> {
        let instances: Vec<OnPremisesInstance> = store.list(keys::INSTANCES).await?;
        Ok(instances
            .into_iter()
            .filter(|instance| instance.deregister_time.is_none())
            .filter(|instance| {
                let tags: Vec<(&str, &str)> = instance
                    .tags
                    .iter()
                    .map(|tag| (tag.key.as_str(), tag.value.as_str()))
                    .collect();
                rule.matches(&tags)
            })
            .map(|instance| Host {
                zone: instance
                    .tags
                    .iter()
                    .find(|tag| tag.key == ZONE_TAG)
                    .map(|tag| tag.value.clone()),
                // Registered before identities were required: its reports cannot be
                // told from anyone's, so none counts (create-deployment says so).
                sender: Sender::Principal(instance.sender_id.unwrap_or_default()),
                instance_id: instance.instance_name,
                stopped: false,
            })
            .collect())
    }

    /// EC2 instances whose tags match: running ones, and, as CodeDeploy includes them,
    /// stopped and stopping ones (marked `stopped`). Terminated and shutting-down
    /// instances stay out. EC2 filters by tag, a request for each filter of the set's
    /// narrowest list (any match of the set matches one of them), rather than paging
    /// through every instance of the account; the whole set is checked here.
    pub async fn ec2(&self, rule: &TagSet) -> Result<Vec<Host>, ApiError> {
        // In EC2's order, each instance once (several filters may find it).
        let mut found: Vec<Host> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut searches: Vec<Option<aws_sdk_ec2::types::Filter>> = rule
            .narrowest()
            .unwrap_or_default()
            .iter()
            .map(ec2_tag_filter)
            .collect();
        // A filter EC2 cannot search by (an empty value): one search of all instances.
        if searches.iter().any(Option::is_none) {
            searches = vec![None];
        }
        for tag_filter in searches {
            let states = aws_sdk_ec2::types::Filter::builder()
                .name("instance-state-name")
                .values("running")
                .values("stopping")
                .values("stopped")
                .build();
            let mut pages = self
                .ec2
                .describe_instances()
                .set_filters(Some(
                    [Some(states), tag_filter].into_iter().flatten().collect(),
                ))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|error| aws_failure("EC2 DescribeInstances", error))?;
                for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                    let tags: Vec<(&str, &str)> = instance
                        .tags()
                        .iter()
                        .map(|tag| (tag.key().unwrap_or(""), tag.value().unwrap_or("")))
                        .collect();
                    if let Some(id) = instance.instance_id()
                        && rule.matches(&tags)
                        && seen.insert(id.to_owned())
                    {
                        found.push(Host {
                            instance_id: id.to_owned(),
                            sender: Sender::InstanceRole,
                            zone: instance
                                .placement()
                                .and_then(|p| p.availability_zone())
                                .map(str::to_owned),
                            stopped: instance.state().and_then(|state| state.name())
                                != Some(&aws_sdk_ec2::types::InstanceStateName::Running),
                        });
                    }
                }
            }
        }
        Ok(found)
    }

    /// In-service instances of the named Auto Scaling groups.
    pub async fn auto_scaling(&self, groups: &[String]) -> Result<Vec<Host>, ApiError> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let found = self
            .autoscaling
            .describe_auto_scaling_groups()
            .set_auto_scaling_group_names(Some(groups.to_vec()))
            .send()
            .await
            .map_err(|error| aws_failure("Auto Scaling DescribeAutoScalingGroups", error))?;
        let mut hosts = Vec::new();
        for group in found.auto_scaling_groups() {
            for instance in group.instances() {
                let in_service = instance.lifecycle_state()
                    == Some(&aws_sdk_autoscaling::types::LifecycleState::InService);
                if in_service && let Some(id) = instance.instance_id() {
                    hosts.push(Host {
                        instance_id: id.to_owned(),
                        sender: Sender::InstanceRole,
                        zone: instance.availability_zone().map(str::to_owned),
                        stopped: false,
                    });
                }
            }
        }
        Ok(hosts)
    }
}

/// The EC2 DescribeInstances filter that finds what `filter` matches (a superset where
/// a key or value holds EC2's wildcards `*` or `?`), or None where EC2 cannot search by
/// it (an empty value, or a part the filter lacks).
fn ec2_tag_filter(filter: &TagFilter) -> Option<aws_sdk_ec2::types::Filter> {
    let key = filter.key.as_deref().filter(|key| !key.is_empty());
    let value = filter.value.as_deref().filter(|value| !value.is_empty());
    let (name, value) = match (filter.kind, key, value) {
        (TagFilterType::KeyAndValue, Some(key), Some(value)) => (format!("tag:{key}"), value),
        (TagFilterType::KeyOnly | TagFilterType::KeyAndValue, Some(key), _) => {
            ("tag-key".to_owned(), key)
        }
        (TagFilterType::ValueOnly, _, Some(value)) => ("tag-value".to_owned(), value),
        _ => return None,
    };
    Some(
        aws_sdk_ec2::types::Filter::builder()
            .name(name)
            .values(value)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(
        kind: TagFilterType,
        key: Option<&str>,
        value: Option<&str>,
    ) -> Option<(String, Vec<String>)> {
        let filter = TagFilter {
            key: key.map(str::to_owned),
            value: value.map(str::to_owned),
            kind,
        };
        ec2_tag_filter(&filter).map(|found| {
            (
                found.name().unwrap_or_default().to_owned(),
                found.values().to_vec(),
            )
        })
    }

    #[test]
    fn each_tag_filter_is_an_ec2_search_by_tag() {
        let one = |name: &str, value: &str| Some((name.to_owned(), vec![value.to_owned()]));
        use TagFilterType::*;
        assert_eq!(
            search(KeyAndValue, Some("env"), Some("prod")),
            one("tag:env", "prod")
        );
        assert_eq!(search(KeyOnly, Some("env"), None), one("tag-key", "env"));
        assert_eq!(
            search(ValueOnly, None, Some("prod")),
            one("tag-value", "prod")
        );
        // EC2 searches by no empty value: the key alone finds a superset, checked after.
        assert_eq!(
            search(KeyAndValue, Some("env"), Some("")),
            one("tag-key", "env")
        );
        assert_eq!(search(ValueOnly, None, Some("")), None);
    }
}
