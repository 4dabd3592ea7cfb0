//! A deployment group's flags, as `group create` and `group update` take them, and the
//! CreateDeploymentGroup and UpdateDeploymentGroup input they make: its settings and
//! targets (tags, tag sets, Auto Scaling groups), and what an update takes out.

use crate::key_value;
use clap::{Args, ValueEnum};
use gantry_api::group::DeploymentGroupInfo;
use gantry_core::planner::TagFilter;
use serde_json::{Value, json};

#[derive(Args)]
pub struct GroupSettings {
    /// Deployment configuration (default CodeDeployDefault.OneAtATime).
    #[arg(long)]
    config: Option<String>,
    /// On-premises instances with this tag, KEY=VALUE (repeat: any matches).
    #[arg(long = "on-prem-tag")]
    on_prem_tags: Vec<String>,
    /// EC2 instances with this tag, KEY=VALUE (repeat: any matches).
    #[arg(long = "ec2-tag")]
    ec2_tags: Vec<String>,
    /// One list of an on-premises tag set: KEY=VALUE[,KEY=VALUE..], any of which matches.
    /// Repeat up to three times; an instance must match every list.
    #[arg(long = "on-prem-tag-set")]
    on_prem_tag_sets: Vec<String>,
    /// One list of an EC2 tag set, as --on-prem-tag-set.
    #[arg(long = "ec2-tag-set")]
    ec2_tag_sets: Vec<String>,
    /// Auto Scaling groups whose instances to deploy to.
    #[arg(long = "asg")]
    auto_scaling_groups: Vec<String>,
    /// Roll back automatically when a deployment fails.
    #[arg(long)]
    auto_rollback: bool,
    /// Notify an SNS topic: NAME=TOPIC_ARN (all events).
    #[arg(long = "trigger")]
    triggers: Vec<String>,
}

/// What `group update` takes out of the group's targets. (Its arguments have ids of
/// their own: clap names an argument by its field, and GroupSettings has the same
/// fields.)
#[derive(Args, Default)]
pub struct GroupRemovals {
    /// Stop deploying to on-premises instances with this tag, KEY=VALUE (repeat); the
    /// group's other on-premises tags stay.
    #[arg(long = "remove-on-prem-tag", id = "remove_on_prem_tags")]
    on_prem_tags: Vec<String>,
    /// Stop deploying to EC2 instances with this tag, KEY=VALUE (repeat).
    #[arg(long = "remove-ec2-tag", id = "remove_ec2_tags")]
    ec2_tags: Vec<String>,
    /// Stop deploying to this Auto Scaling group's instances (repeat); its launch hook
    /// is removed.
    #[arg(long = "remove-asg", id = "remove_auto_scaling_groups")]
    auto_scaling_groups: Vec<String>,
    /// Remove all of one kind of target (repeat): the group is sent an empty list, as
    /// CodeDeploy removes a list given empty.
    #[arg(long = "clear", value_enum)]
    cleared: Vec<TargetList>,
}

/// A list of a group's targets, as `group update --clear` names it.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TargetList {
    /// onPremisesInstanceTagFilters.
    OnPremTags,
    /// ec2TagFilters.
    Ec2Tags,
    /// onPremisesTagSet.
    OnPremTagSets,
    /// ec2TagSet.
    Ec2TagSets,
    /// autoScalingGroups (their launch hooks are removed).
    Asgs,
}

impl TargetList {
    /// The input field, its empty value, and the flag that gives it.
    fn field(self) -> (&'static str, Value, &'static str) {
        match self {
            Self::OnPremTags => ("onPremisesInstanceTagFilters", json!([]), "--on-prem-tag"),
            Self::Ec2Tags => ("ec2TagFilters", json!([]), "--ec2-tag"),
            Self::OnPremTagSets => (
                "onPremisesTagSet",
                json!({"onPremisesTagSetList": []}),
                "--on-prem-tag-set",
            ),
            Self::Ec2TagSets => ("ec2TagSet", json!({"ec2TagSetList": []}), "--ec2-tag-set"),
            Self::Asgs => ("autoScalingGroups", json!([]), "--asg"),
        }
    }
}

impl GroupRemovals {
    pub fn is_empty(&self) -> bool {
        self.on_prem_tags.is_empty()
            && self.ec2_tags.is_empty()
            && self.auto_scaling_groups.is_empty()
    }

    /// Sets each cleared list of `input` empty; one `input` gives (from its flag) is a
    /// contradiction.
    pub fn clear(&self, mut input: Value) -> anyhow::Result<Value> {
        for list in &self.cleared {
            let (field, empty, flag) = list.field();
            if input.get(field).is_some_and(|given| *given != empty) {
                let name = list
                    .to_possible_value()
                    .map(|value| value.get_name().to_owned())
                    .unwrap_or_default();
                anyhow::bail!("--clear {name}: and {flag} both given; give one of them");
            }
            input[field] = empty;
        }
        Ok(input)
    }

    /// Takes the removed items out of `input`'s lists, or, where `input` does not give
    /// a list, out of the group's own (`current`), and gives the list that is left
    /// (empty, if it removes all: CodeDeploy removes a list given empty and keeps one
    /// left out).
    pub fn apply(&self, mut input: Value, current: &DeploymentGroupInfo) -> anyhow::Result<Value> {
        for (field, flag, removed, current_filters) in [
            (
                "onPremisesInstanceTagFilters",
                "--remove-on-prem-tag",
                &self.on_prem_tags,
                &current.on_premises_instance_tag_filters,
            ),
            (
                "ec2TagFilters",
                "--remove-ec2-tag",
                &self.ec2_tags,
                &current.ec2_tag_filters,
            ),
        ] {
            if removed.is_empty() {
                continue;
            }
            let mut filters: Vec<TagFilter> = match input.get(field) {
                Some(given) => serde_json::from_value(given.clone())?,
                None => current_filters.clone(),
            };
            for pair in removed {
                let (key, value) = key_value(flag, pair)?;
                let index = filters
                    .iter()
                    .position(|filter| {
                        filter.key.as_ref() == Some(&key) && filter.value.as_ref() == Some(&value)
                    })
                    .ok_or_else(|| {
                        anyhow::anyhow!("{flag}: the group has no {field} entry {pair}")
                    })?;
                filters.remove(index);
            }
            input[field] = json!(filters);
        }
        if !self.auto_scaling_groups.is_empty() {
            let mut groups: Vec<String> = match input.get("autoScalingGroups") {
                Some(given) => serde_json::from_value(given.clone())?,
                None => current
                    .auto_scaling_groups
                    .iter()
                    .map(|group| group.name.clone())
                    .collect(),
            };
            for removed in &self.auto_scaling_groups {
                let index = groups
                    .iter()
                    .position(|group| group == removed)
                    .ok_or_else(|| {
                        anyhow::anyhow!("--remove-asg: the group does not list {removed}")
                    })?;
                groups.remove(index);
            }
            input["autoScalingGroups"] = json!(groups);
        }
        Ok(input)
    }
}

fn tag_filters(flag: &str, pairs: &[String]) -> anyhow::Result<Value> {
    let filters = pairs
        .iter()
        .map(|pair| {
            key_value(flag, pair)
                .map(|(key, value)| json!({"Key": key, "Value": value, "Type": "KEY_AND_VALUE"}))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Value::Array(filters))
}

/// A tag set: each `lists` entry is a comma-separated list of KEY=VALUE filters.
fn tag_set(flag: &str, lists: &[String]) -> anyhow::Result<Value> {
    lists
        .iter()
        .map(|list| {
            let pairs: Vec<String> = list.split(',').map(str::to_owned).collect();
            tag_filters(flag, &pairs)
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .map(Value::Array)
}

impl GroupSettings {
    pub fn input(&self, mut input: Value) -> anyhow::Result<Value> {
        if let Some(config) = &self.config {
            input["deploymentConfigName"] = json!(config);
        }
        if !self.on_prem_tags.is_empty() {
            input["onPremisesInstanceTagFilters"] =
                tag_filters("--on-prem-tag", &self.on_prem_tags)?;
        }
        if !self.ec2_tags.is_empty() {
            input["ec2TagFilters"] = tag_filters("--ec2-tag", &self.ec2_tags)?;
        }
        if !self.on_prem_tag_sets.is_empty() {
            input["onPremisesTagSet"] = json!({
                "onPremisesTagSetList": tag_set("--on-prem-tag-set", &self.on_prem_tag_sets)?
            });
        }
        if !self.ec2_tag_sets.is_empty() {
            input["ec2TagSet"] =
                json!({"ec2TagSetList": tag_set("--ec2-tag-set", &self.ec2_tag_sets)?});
        }
        if !self.auto_scaling_groups.is_empty() {
            input["autoScalingGroups"] = json!(self.auto_scaling_groups);
        }
        if self.auto_rollback {
            input["autoRollbackConfiguration"] = json!({"enabled": true, "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_REQUEST"]});
        }
        if !self.triggers.is_empty() {
            let triggers = self
                .triggers
                .iter()
                .map(|pair| {
                    key_value("--trigger", pair).map(|(name, arn)| {
                        json!({
                            "triggerName": name,
                            "triggerTargetArn": arn,
                            "triggerEvents": ["DeploymentStart", "DeploymentSuccess", "DeploymentFailure", "DeploymentStop", "DeploymentRollback", "InstanceStart", "InstanceSuccess", "InstanceFailure"],
                        })
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            input["triggerConfigurations"] = Value::Array(triggers);
        }
        Ok(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(key: &str, value: &str) -> Value {
        json!({"Key": key, "Value": value, "Type": "KEY_AND_VALUE"})
    }

    #[test]
    fn group_update_removes_one_tag_and_keeps_what_it_does_not_name() {
        let current: DeploymentGroupInfo = serde_json::from_value(json!({
            "applicationName": "shop", "deploymentGroupId": "g-1", "deploymentGroupName": "web",
            "deploymentConfigName": "CodeDeployDefault.OneAtATime", "computePlatform": "Server",
            "onPremisesInstanceTagFilters": [filter("role", "web"), filter("role", "api")],
            "ec2TagFilters": [filter("env", "prod")],
            "autoScalingGroups": [{"name": "web-asg"}, {"name": "api-asg"}],
        }))
        .unwrap();
        let removals = GroupRemovals {
            on_prem_tags: vec!["role=api".into()],
            ec2_tags: vec!["env=prod".into()],
            auto_scaling_groups: vec!["api-asg".into()],
            ..Default::default()
        };
        let input = removals
            .apply(json!({"currentDeploymentGroupName": "web"}), &current)
            .unwrap();
        assert_eq!(
            input,
            json!({
                "currentDeploymentGroupName": "web",
                "onPremisesInstanceTagFilters": [filter("role", "web")],
                "ec2TagFilters": [],
                "autoScalingGroups": ["web-asg"],
            })
        );
        let nothing = GroupRemovals::default()
            .apply(json!({"currentDeploymentGroupName": "web"}), &current)
            .unwrap();
        assert_eq!(nothing, json!({"currentDeploymentGroupName": "web"}));
        let missing = GroupRemovals {
            on_prem_tags: vec!["role=db".into()],
            ..Default::default()
        }
        .apply(json!({}), &current)
        .unwrap_err();
        assert!(
            missing.to_string().contains("--remove-on-prem-tag"),
            "{missing}"
        );
    }

    #[test]
    fn group_update_clear_sends_an_empty_list_and_refuses_one_given_too() {
        let removals = GroupRemovals {
            cleared: vec![TargetList::OnPremTags, TargetList::Ec2TagSets],
            ..Default::default()
        };
        let input = removals
            .clear(json!({"currentDeploymentGroupName": "web", "onPremisesTagSet": {"onPremisesTagSetList": [[filter("role", "web")]]}}))
            .unwrap();
        assert_eq!(
            input,
            json!({
                "currentDeploymentGroupName": "web",
                "onPremisesTagSet": {"onPremisesTagSetList": [[filter("role", "web")]]},
                "onPremisesInstanceTagFilters": [],
                "ec2TagSet": {"ec2TagSetList": []},
            })
        );
        let both = removals
            .clear(json!({"onPremisesInstanceTagFilters": [filter("role", "web")]}))
            .unwrap_err();
        assert!(
            both.to_string().contains("--clear on-prem-tags")
                && both.to_string().contains("--on-prem-tag"),
            "{both}"
        );
    }
}
