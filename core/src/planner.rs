//! Which instances a deployment targets, and in what order it deploys to them.
//!
//! Targets are matched by tags: a list of tag filters matches an instance when any
//! filter does (OR); a tag set is up to three such lists and matches when every list
//! does (AND of ORs), as CodeDeploy's `ec2TagSet` and `onPremisesTagSet`.
//!
//! The order is CodeDeploy's: instances whose last deployment failed (Unhealthy) first,
//! then instances the group never deployed to (Unknown), then those running any other
//! revision (Old), then those running the group's last successful revision (Current;
//! for an update of outdated instances, the revision it deploys). Within
//! that order, consecutive instances alternate between Availability Zones, so that any
//! batch taken from the front of the queue is spread across zones as evenly as they
//! allow. With a zonal configuration the order is instead one zone after another.

use crate::identity::Sender;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The tag filter types of CodeDeploy's `EC2TagFilter` and `TagFilter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TagFilterType {
    KeyOnly,
    ValueOnly,
    KeyAndValue,
}

/// One tag filter, in CodeDeploy's `{"Key", "Value", "Type"}` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagFilter {
    #[serde(rename = "Key", default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(rename = "Value", default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(rename = "Type")]
    pub kind: TagFilterType,
}

impl TagFilter {
    pub fn key_and_value(key: &str, value: &str) -> Self {
        Self {
            key: Some(key.to_owned()),
            value: Some(value.to_owned()),
            kind: TagFilterType::KeyAndValue,
        }
    }

    /// Whether an instance with these tags matches. A filter missing the part its type
    /// needs matches nothing.
    pub fn matches<'t>(&self, tags: impl IntoIterator<Item = (&'t str, &'t str)>) -> bool {
        let key = self.key.as_deref();
        let value = self.value.as_deref();
        tags.into_iter()
            .any(|(tag_key, tag_value)| match self.kind {
                TagFilterType::KeyOnly => key == Some(tag_key),
                TagFilterType::ValueOnly => value == Some(tag_value),
                TagFilterType::KeyAndValue => key == Some(tag_key) && value == Some(tag_value),
            })
    }

    /// Says what is wrong with the filter, naming the field.
    pub fn validate(&self, field: &str) -> Result<(), String> {
        let needs_key = matches!(
            self.kind,
            TagFilterType::KeyOnly | TagFilterType::KeyAndValue
        );
        let needs_value = matches!(
            self.kind,
            TagFilterType::ValueOnly | TagFilterType::KeyAndValue
        );
        if needs_key && self.key.as_deref().is_none_or(str::is_empty) {
            return Err(format!("{field}.Key: is required for Type {:?}", self.kind));
        }
        if needs_value && self.value.is_none() {
            return Err(format!(
                "{field}.Value: is required for Type {:?}",
                self.kind
            ));
        }
        Ok(())
    }
}

/// OR: any filter matches. An empty list matches nothing.
pub fn matches_any<'t>(filters: &[TagFilter], tags: &[(&'t str, &'t str)]) -> bool {
    filters
        .iter()
        .any(|filter| filter.matches(tags.iter().copied()))
}

/// Up to three lists of filters: an instance must match every list (AND), and within a
/// list, any filter (OR).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TagSet(pub Vec<Vec<TagFilter>>);

impl TagSet {
    pub const MAX_GROUPS: usize = 3;

    pub fn matches(&self, tags: &[(&str, &str)]) -> bool {
        !self.0.is_empty() && self.0.iter().all(|group| matches_any(group, tags))
    }

    /// The list with the fewest filters: every instance the set matches matches one of
    /// them, so a search by them alone (a request each) finds a superset to check.
    pub fn narrowest(&self) -> Option<&[TagFilter]> {
        self.0
            .iter()
            .min_by_key(|group| group.len())
            .map(Vec::as_slice)
    }

    pub fn validate(&self, field: &str) -> Result<(), String> {
        if self.0.len() > Self::MAX_GROUPS {
            return Err(format!(
                "{field}: at most {} tag groups are allowed, found {}",
                Self::MAX_GROUPS,
                self.0.len()
            ));
        }
        for (group_index, group) in self.0.iter().enumerate() {
            if group.is_empty() {
                return Err(format!(
                    "{field}[{group_index}]: a tag group needs at least one filter"
                ));
            }
            for (index, filter) in group.iter().enumerate() {
                filter.validate(&format!("{field}[{group_index}][{index}]"))?;
            }
        }
        Ok(())
    }
}

/// Where an instance stands before the deployment, which decides its place in line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Standing {
    /// A stopped EC2 instance (or one without an instance profile, whose reports nothing
    /// could tell from another's): in the deployment and its fleet, as CodeDeploy counts
    /// it, but no agent of its can take part, so it fails as the deployment starts
    /// without being sent its command (`deployment::plan` sets it apart, after every
    /// other host).
    Stopped,
    /// The group's last deployment to it failed.
    Unhealthy,
    /// The group never deployed to it.
    Unknown,
    /// Healthy, running a revision other than the current one.
    Old,
    /// Healthy, running the group's last successful revision (for an update of outdated
    /// instances: the revision being deployed, which it then skips).
    Current,
}

impl Standing {
    /// Whether the instance counts towards the minimum of healthy instances before it
    /// is deployed to. Only a failed or stopped instance does not: an instance never
    /// deployed to is assumed to serve, which is the cautious reading for the minimum.
    pub fn counts_as_healthy(self) -> bool {
        !matches!(self, Self::Unhealthy | Self::Stopped)
    }
}

/// One instance to deploy to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub instance_id: String,
    /// Availability Zone; on-premises instances may have none.
    pub zone: Option<String>,
    pub standing: Standing,
    /// Who may report for it. Targets stored before reports were bound to their host
    /// have none, and admit no report.
    #[serde(default)]
    pub sender: Sender,
}

/// Orders targets by standing, alternating Availability Zones within each standing.
/// Ties break on instance id, so the same fleet always plans the same way.
pub fn order(targets: Vec<Target>) -> Vec<Target> {
    let mut by_standing: BTreeMap<Standing, BTreeMap<Option<String>, Vec<Target>>> =
        BTreeMap::new();
    for target in targets {
        by_standing
            .entry(target.standing)
            .or_default()
            .entry(target.zone.clone())
            .or_default()
            .push(target);
    }
    let mut ordered = Vec::new();
    // The zone that goes first rotates on from where the previous standing stopped,
    // so that a batch spanning two standings is still spread.
    let mut next_zone: Option<Option<String>> = None;
    for (_, zones) in by_standing {
        let mut queues: Vec<(Option<String>, std::vec::IntoIter<Target>)> = zones
            .into_iter()
            .map(|(zone, mut members)| {
                members.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
                (zone, members.into_iter())
            })
            .collect();
        let mut cursor = next_zone
            .as_ref()
            .and_then(|zone| queues.iter().position(|(z, _)| z >= zone))
            .unwrap_or(0);
        let mut remaining: usize = queues.iter().map(|(_, q)| q.len()).sum();
        let zone_count = queues.len();
        while remaining > 0 {
            let (zone, queue) = &mut queues[cursor % zone_count];
            if let Some(target) = queue.next() {
                ordered.push(target);
                remaining -= 1;
                next_zone = Some(zone.clone());
            }
            cursor += 1;
        }
        // Start the next standing after the zone that went last.
        if let Some(last) = &next_zone {
            next_zone = Some(successor_zone(last));
        }
    }
    ordered
}

/// Any zone name that sorts right after `zone`, used as a rotation point.
fn successor_zone(zone: &Option<String>) -> Option<String> {
    Some(match zone {
        None => String::new(),
        Some(name) => format!("{name}\0"),
    })
}

/// Orders targets for a zonal deployment: one zone after another (by zone name), and
/// by standing within each zone.
pub fn order_by_zone(mut targets: Vec<Target>) -> Vec<Target> {
    targets.sort_by(|a, b| {
        (&a.zone, a.standing, &a.instance_id).cmp(&(&b.zone, b.standing, &b.instance_id))
    });
    targets
}

/// Cuts an ordered list into batches of at most `batch_size`, for display and for the
/// static view of a plan. The state machine takes batches from the queue as health
/// allows, which gives these batches when every instance succeeds.
pub fn batches(ordered: &[Target], batch_size: usize) -> Vec<&[Target]> {
    ordered.chunks(batch_size.max(1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_narrowest_list_is_searched() {
        let env = TagFilter::key_and_value("env", "prod");
        let web = TagFilter::key_and_value("role", "web");
        let api = TagFilter::key_and_value("role", "api");
        let set = TagSet(vec![vec![web.clone(), api], vec![env.clone()]]);
        assert_eq!(set.narrowest(), Some(&[env][..]));
        assert_eq!(TagSet::default().narrowest(), None);
    }
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashMap};

    fn target(id: &str, zone: &str, standing: Standing) -> Target {
        Target {
            instance_id: id.to_owned(),
            zone: Some(zone.to_owned()),
            standing,
            sender: Sender::InstanceRole,
        }
    }

    #[test]
    fn tag_filters() {
        let tags = [("Name", "web"), ("Stage", "prod")];
        assert!(TagFilter::key_and_value("Stage", "prod").matches(tags));
        assert!(!TagFilter::key_and_value("Stage", "web").matches(tags));
        let key_only = TagFilter {
            key: Some("Name".into()),
            value: None,
            kind: TagFilterType::KeyOnly,
        };
        assert!(key_only.matches(tags));
        let value_only = TagFilter {
            key: None,
            value: Some("web".into()),
            kind: TagFilterType::ValueOnly,
        };
        assert!(value_only.matches(tags));
        assert!(!value_only.matches([("Name", "api")]));
        assert!(!matches_any(&[], &tags));
        assert!(matches_any(
            &[TagFilter::key_and_value("Stage", "dev"), key_only],
            &tags
        ));
    }

    #[test]
    fn tag_sets_are_and_of_or() {
        let set = TagSet(vec![
            vec![
                TagFilter::key_and_value("Role", "web"),
                TagFilter::key_and_value("Role", "api"),
            ],
            vec![TagFilter::key_and_value("Stage", "prod")],
        ]);
        assert!(set.matches(&[("Role", "api"), ("Stage", "prod")]));
        assert!(set.matches(&[("Role", "web"), ("Stage", "prod")]));
        assert!(!set.matches(&[("Role", "web"), ("Stage", "dev")]));
        assert!(!set.matches(&[("Stage", "prod")]));
        assert!(!TagSet::default().matches(&[("Stage", "prod")]));
    }

    #[test]
    fn tag_sets_are_validated() {
        let filter = TagFilter::key_and_value("a", "b");
        assert!(
            TagSet(vec![vec![filter.clone()]; 3])
                .validate("ec2TagSet")
                .is_ok()
        );
        let four = TagSet(vec![vec![filter.clone()]; 4])
            .validate("ec2TagSet")
            .unwrap_err();
        assert!(four.contains("at most 3"), "{four}");
        assert!(
            TagSet(vec![vec![]])
                .validate("ec2TagSet")
                .unwrap_err()
                .starts_with("ec2TagSet[0]")
        );
        let keyless = TagFilter {
            key: None,
            value: Some("x".into()),
            kind: TagFilterType::KeyAndValue,
        };
        assert_eq!(
            TagSet(vec![vec![filter, keyless]])
                .validate("ec2TagSet")
                .unwrap_err(),
            "ec2TagSet[0][1].Key: is required for Type KeyAndValue"
        );
    }

    #[test]
    fn tag_filter_json_is_codedeploys() {
        let json = serde_json::to_value(TagFilter::key_and_value("Name", "web")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"Key": "Name", "Value": "web", "Type": "KEY_AND_VALUE"})
        );
    }

    #[test]
    fn orders_by_standing_then_stripes_zones() {
        let ordered = order(vec![
            target("c", "az-1", Standing::Current),
            target("o1", "az-1", Standing::Old),
            target("o2", "az-1", Standing::Old),
            target("o3", "az-2", Standing::Old),
            target("o4", "az-2", Standing::Old),
            target("n", "az-2", Standing::Unknown),
            target("u", "az-1", Standing::Unhealthy),
        ]);
        let ids: Vec<_> = ordered.iter().map(|t| t.instance_id.as_str()).collect();
        assert_eq!(ids, vec!["u", "n", "o1", "o3", "o2", "o4", "c"]);
    }

    #[test]
    fn zonal_order_is_zone_by_zone() {
        let ordered = order_by_zone(vec![
            target("b1", "az-b", Standing::Old),
            target("a2", "az-a", Standing::Old),
            target("a1", "az-a", Standing::Unhealthy),
            target("b0", "az-b", Standing::Unhealthy),
        ]);
        let ids: Vec<_> = ordered.iter().map(|t| t.instance_id.as_str()).collect();
        assert_eq!(ids, vec!["a1", "a2", "b0", "b1"]);
    }

    fn arbitrary_targets() -> impl Strategy<Value = Vec<Target>> {
        proptest::collection::vec((0..4u8, 0..4u8), 1..60).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(index, (zone, standing))| Target {
                    instance_id: format!("i-{index:04}"),
                    zone: (zone < 3).then(|| format!("az-{zone}")),
                    standing: [
                        Standing::Unhealthy,
                        Standing::Unknown,
                        Standing::Old,
                        Standing::Current,
                    ][standing as usize],
                    sender: Sender::InstanceRole,
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn every_target_is_planned_exactly_once(targets in arbitrary_targets(), batch in 1usize..10) {
            let expected: BTreeSet<_> = targets.iter().map(|t| t.instance_id.clone()).collect();
            let ordered = order(targets.clone());
            prop_assert_eq!(ordered.len(), targets.len());
            let planned: BTreeSet<_> = batches(&ordered, batch)
                .into_iter()
                .flatten()
                .map(|t| t.instance_id.clone())
                .collect();
            prop_assert_eq!(&planned, &expected);
            let zonal: BTreeSet<_> = order_by_zone(targets).into_iter().map(|t| t.instance_id).collect();
            prop_assert_eq!(zonal, expected);
        }

        /// Static batches cut at the config's batch size never take more instances
        /// offline than the minimum of healthy instances allows.
        #[test]
        fn no_batch_breaks_the_health_minimum(targets in arbitrary_targets(), percent in 0u32..100) {
            use crate::config::{DeploymentConfig, MinimumHealthyHosts};
            let fleet = targets.len() as u32;
            let config = DeploymentConfig::custom("p", MinimumHealthyHosts::FleetPercent(percent), None).unwrap();
            let Ok(plan) = config.health_plan(fleet) else { return Ok(()) };
            let ordered = order(targets);
            for batch in batches(&ordered, plan.batch_size as usize) {
                prop_assert!(fleet - batch.len() as u32 >= plan.minimum_healthy);
            }
        }

        #[test]
        fn standings_come_in_order(targets in arbitrary_targets()) {
            let ordered = order(targets);
            prop_assert!(ordered.windows(2).all(|pair| pair[0].standing <= pair[1].standing));
        }

        /// Within one standing, a batch holds no zone twice more than another zone,
        /// unless that other zone had nothing left to give.
        #[test]
        fn batches_are_spread_across_zones(
            zones in proptest::collection::vec(0..4u8, 1..60),
            batch in 1usize..10,
        ) {
            let targets: Vec<Target> = zones
                .iter()
                .enumerate()
                .map(|(index, zone)| target(&format!("i-{index:04}"), &format!("az-{zone}"), Standing::Old))
                .collect();
            let ordered = order(targets);
            let mut left: HashMap<String, usize> = HashMap::new();
            for t in &ordered {
                *left.entry(t.zone.clone().unwrap()).or_default() += 1;
            }
            for chunk in batches(&ordered, batch) {
                let mut counts: HashMap<String, usize> = left.keys().map(|z| (z.clone(), 0)).collect();
                for t in chunk {
                    *counts.get_mut(t.zone.as_ref().unwrap()).unwrap() += 1;
                }
                for (zone, count) in &counts {
                    for (other, other_count) in &counts {
                        if count >= &(other_count + 2) {
                            prop_assert_eq!(
                                left[other], *other_count,
                                "zone {} got {} while {} got {} with more left", zone, count, other, other_count
                            );
                        }
                    }
                }
                for (zone, count) in counts {
                    *left.get_mut(&zone).unwrap() -= count;
                }
            }
        }
    }
}
