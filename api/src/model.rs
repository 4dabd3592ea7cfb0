//! CodeDeploy's API shapes for the EC2/on-premises platform (and, so far, the Lambda
//! platform's applications and deployment configurations), as stored and as returned.
//!
//! Field names, enums and nesting follow CodeDeploy's JSON, so that a payload written for
//! `aws deploy` works here and output parses where CodeDeploy's does. Times are epoch
//! seconds as numbers, as the AWS CLI prints them.

use gantry_core::config::{MinimumHealthyHosts, ZonalConfig};
use gantry_core::deployment::{Deployment, DeploymentStatus, Millis};
use gantry_core::lambda::TrafficRouting;
use gantry_core::planner::{TagFilter, TagSet};
use gantry_core::wire::RevisionLocation;
use serde::{Deserialize, Serialize};

/// CodeDeploy's timestamps: seconds since the epoch, with milliseconds.
pub fn seconds(millis: Millis) -> f64 {
    millis as f64 / 1000.0
}

/// An enum's serialized name (`"InProgress"`), as stored and returned; never its Rust
/// `Debug` form.
pub fn serialized_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        other => panic!("{other:?} does not serialize as a name"),
    }
}

/// The CLI skeleton fills fields with empty lists and strings; such a value is "absent".
pub fn is_blank(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => true,
        serde_json::Value::String(text) => text.is_empty(),
        serde_json::Value::Array(items) => items.iter().all(is_blank),
        serde_json::Value::Object(fields) => fields
            .iter()
            .all(|(key, value)| key == "Type" || is_blank(value)),
        _ => false,
    }
}

pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as Millis)
        .unwrap_or(0)
}

/// CodeDeploy's `computePlatform` of EC2 and on-premises instances, the default.
pub const SERVER_PLATFORM: &str = "Server";
/// CodeDeploy's `computePlatform` of AWS Lambda functions.
pub const LAMBDA_PLATFORM: &str = "Lambda";
/// The compute platforms Gantry takes, as errors name them.
pub const COMPUTE_PLATFORMS: &str = "Server or Lambda";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationInfo {
    pub application_id: String,
    pub application_name: String,
    pub create_time: f64,
    pub linked_to_git_hub: bool,
    pub compute_platform: String,
}

/// `{"Key": ..., "Value": ...}`, as on-premises instances carry tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Value", default)]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerConfig {
    pub trigger_name: String,
    pub trigger_target_arn: String,
    #[serde(default)]
    pub trigger_events: Vec<String>,
}

/// The trigger event types CodeDeploy accepts; the `*Ready` ones belong to blue/green
/// waits and are accepted for compatibility.
pub const TRIGGER_EVENTS: [&str; 10] = [
    "DeploymentStart",
    "DeploymentSuccess",
    "DeploymentFailure",
    "DeploymentStop",
    "DeploymentRollback",
    "DeploymentReady",
    "InstanceStart",
    "InstanceSuccess",
    "InstanceFailure",
    "InstanceReady",
];

/// The events that start an automatic rollback.
pub const ROLLBACK_ON_FAILURE: &str = "DEPLOYMENT_FAILURE";
pub const ROLLBACK_ON_ALARM: &str = "DEPLOYMENT_STOP_ON_ALARM";
pub const ROLLBACK_ON_REQUEST: &str = "DEPLOYMENT_STOP_ON_REQUEST";

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoRollbackConfiguration {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub events: Vec<String>,
}

impl AutoRollbackConfiguration {
    pub fn on(&self, event: &str) -> bool {
        self.enabled && self.events.iter().any(|listed| listed == event)
    }

    pub fn validate(&self) -> Result<(), String> {
        for (index, event) in self.events.iter().enumerate() {
            if ![ROLLBACK_ON_FAILURE, ROLLBACK_ON_ALARM, ROLLBACK_ON_REQUEST]
                .contains(&event.as_str())
            {
                return Err(format!(
                    "autoRollbackConfiguration.events[{index}]: {event:?} is not one of {ROLLBACK_ON_FAILURE}, {ROLLBACK_ON_ALARM}, {ROLLBACK_ON_REQUEST}"
                ));
            }
        }
        Ok(())
    }
}

/// CodeDeploy's `alarmConfiguration` (a group's) and `overrideAlarmConfiguration` (one
/// deployment's): the CloudWatch alarms that stop a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlarmConfiguration {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub ignore_poll_alarm_failure: bool,
    #[serde(default)]
    pub alarms: Vec<Alarm>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alarm {
    #[serde(default)]
    pub name: String,
}

/// CodeDeploy's limit of alarms per group or deployment.
pub const MAX_ALARMS: usize = 10;

/// Why an alarm configuration is refused, with CodeDeploy's exception.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlarmConfigError {
    /// AlarmsLimitExceededException.
    TooMany(String),
    /// InvalidAlarmConfigException.
    Invalid(String),
}

impl AlarmConfiguration {
    /// Reads `field` of an API input as CodeDeploy does: a CLI skeleton's blank alarm
    /// (`{"name": ""}`) is no alarm; then checks it.
    pub fn from_input(field: &str, value: serde_json::Value) -> Result<Self, AlarmConfigError> {
        let mut config: Self = serde_json::from_value(value)
            .map_err(|error| AlarmConfigError::Invalid(format!("{field}: {error}")))?;
        if !config.enabled && config.alarms.iter().all(|alarm| alarm.name.is_empty()) {
            config.alarms.clear();
        }
        config.validate(field)?;
        Ok(config)
    }

    pub fn validate(&self, field: &str) -> Result<(), AlarmConfigError> {
        if self.alarms.len() > MAX_ALARMS {
            return Err(AlarmConfigError::TooMany(format!(
                "{field}.alarms: {} alarms named; at most {MAX_ALARMS} are allowed",
                self.alarms.len()
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (index, alarm) in self.alarms.iter().enumerate() {
            let name = &alarm.name;
            if name.is_empty() || name.len() > 255 {
                return Err(AlarmConfigError::Invalid(format!(
                    "{field}.alarms[{index}].name: must be 1 to 255 characters, found {name:?}"
                )));
            }
            if !seen.insert(name) {
                return Err(AlarmConfigError::Invalid(format!(
                    "{field}.alarms[{index}].name: {name:?} is named twice"
                )));
            }
        }
        if self.enabled && self.alarms.is_empty() {
            return Err(AlarmConfigError::Invalid(format!(
                "{field}: enabled, but names no alarm; name up to {MAX_ALARMS} CloudWatch alarms in alarms, or disable it"
            )));
        }
        Ok(())
    }

    /// Whether deployments poll these alarms.
    pub fn watches(&self) -> bool {
        self.enabled && !self.alarms.is_empty()
    }

    pub fn names(&self) -> Vec<String> {
        self.alarms.iter().map(|alarm| alarm.name.clone()).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ec2TagSet {
    #[serde(default)]
    pub ec2_tag_set_list: Vec<Vec<TagFilter>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnPremisesTagSet {
    #[serde(default)]
    pub on_premises_tag_set_list: Vec<Vec<TagFilter>>,
}

/// An Auto Scaling group as DeploymentGroupInfo lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoScalingGroup {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
}

/// Which instances a group (or one deployment's `targetInstances`) deploys to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetSelection {
    #[serde(default)]
    pub ec2_tag_filters: Vec<TagFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec2_tag_set: Option<Ec2TagSet>,
    #[serde(default)]
    pub on_premises_instance_tag_filters: Vec<TagFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_premises_tag_set: Option<OnPremisesTagSet>,
    #[serde(default)]
    pub auto_scaling_groups: Vec<String>,
}

impl TargetSelection {
    /// The EC2 rule: the filter list (any filter) or the tag set (AND of ORs).
    pub fn ec2_rule(&self) -> Option<TagSet> {
        tag_rule(
            &self.ec2_tag_filters,
            self.ec2_tag_set.as_ref().map(|set| &set.ec2_tag_set_list),
        )
    }

    pub fn on_premises_rule(&self) -> Option<TagSet> {
        tag_rule(
            &self.on_premises_instance_tag_filters,
            self.on_premises_tag_set
                .as_ref()
                .map(|set| &set.on_premises_tag_set_list),
        )
    }

    pub fn validate(&self) -> Result<(), String> {
        if !self.ec2_tag_filters.is_empty()
            && self
                .ec2_tag_set
                .as_ref()
                .is_some_and(|set| !set.ec2_tag_set_list.is_empty())
        {
            return Err("ec2TagFilters and ec2TagSet: use one or the other, not both".into());
        }
        if !self.on_premises_instance_tag_filters.is_empty()
            && self
                .on_premises_tag_set
                .as_ref()
                .is_some_and(|set| !set.on_premises_tag_set_list.is_empty())
        {
            return Err(
                "onPremisesInstanceTagFilters and onPremisesTagSet: use one or the other, not both"
                    .into(),
            );
        }
        for (index, filter) in self.ec2_tag_filters.iter().enumerate() {
            filter.validate(&format!("ec2TagFilters[{index}]"))?;
        }
        for (index, filter) in self.on_premises_instance_tag_filters.iter().enumerate() {
            filter.validate(&format!("onPremisesInstanceTagFilters[{index}]"))?;
        }
        if let Some(set) = &self.ec2_tag_set {
            TagSet(set.ec2_tag_set_list.clone()).validate("ec2TagSet.ec2TagSetList")?;
        }
        if let Some(set) = &self.on_premises_tag_set {
            TagSet(set.on_premises_tag_set_list.clone())
                .validate("onPremisesTagSet.onPremisesTagSetList")?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.ec2_rule().is_none()
            && self.on_premises_rule().is_none()
            && self.auto_scaling_groups.is_empty()
    }
}

/// The target fields of CreateDeploymentGroup's and UpdateDeploymentGroup's input, as
/// CodeDeploy reads them for an update: a field left out keeps what the group has, and an
/// empty list (or tag set) removes it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetChanges {
    #[serde(default)]
    pub ec2_tag_filters: Option<Vec<TagFilter>>,
    #[serde(default)]
    pub ec2_tag_set: Option<Ec2TagSet>,
    #[serde(default)]
    pub on_premises_instance_tag_filters: Option<Vec<TagFilter>>,
    #[serde(default)]
    pub on_premises_tag_set: Option<OnPremisesTagSet>,
    #[serde(default)]
    pub auto_scaling_groups: Option<Vec<String>>,
}

impl TargetChanges {
    /// `current` with these changes made (a new group's `current` is empty).
    pub fn applied_to(&self, current: &TargetSelection) -> TargetSelection {
        fn kept<T: Clone>(given: &Option<T>, current: &T) -> T {
            given.clone().unwrap_or_else(|| current.clone())
        }
        TargetSelection {
            ec2_tag_filters: kept(&self.ec2_tag_filters, &current.ec2_tag_filters),
            ec2_tag_set: kept(&self.ec2_tag_set.clone().map(Some), &current.ec2_tag_set)
                .filter(|set| !set.ec2_tag_set_list.is_empty()),
            on_premises_instance_tag_filters: kept(
                &self.on_premises_instance_tag_filters,
                &current.on_premises_instance_tag_filters,
            ),
            on_premises_tag_set: kept(
                &self.on_premises_tag_set.clone().map(Some),
                &current.on_premises_tag_set,
            )
            .filter(|set| !set.on_premises_tag_set_list.is_empty()),
            auto_scaling_groups: kept(&self.auto_scaling_groups, &current.auto_scaling_groups),
        }
    }
}

fn tag_rule(filters: &[TagFilter], set: Option<&Vec<Vec<TagFilter>>>) -> Option<TagSet> {
    if !filters.is_empty() {
        return Some(TagSet(vec![filters.to_vec()]));
    }
    set.filter(|groups| !groups.is_empty())
        .map(|groups| TagSet(groups.clone()))
}

/// A deployment group as stored: the user's settings. Lock, health and history live in
/// other attributes of the same item (in Gantry's store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentGroupSettings {
    pub application_name: String,
    pub deployment_group_id: String,
    pub deployment_group_name: String,
    pub deployment_config_name: String,
    #[serde(flatten)]
    pub targets: TargetSelection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_role_arn: Option<String>,
    #[serde(default)]
    pub trigger_configurations: Vec<TriggerConfig>,
    #[serde(default)]
    pub auto_rollback_configuration: AutoRollbackConfiguration,
    #[serde(default)]
    pub alarm_configuration: AlarmConfiguration,
    /// `UPDATE` or `IGNORE`, for instances launched during a deployment.
    #[serde(default = "default_outdated_strategy")]
    pub outdated_instances_strategy: String,
    #[serde(default)]
    pub deployment_style: DeploymentStyle,
    #[serde(default, skip_serializing_if = "LoadBalancerInfo::is_empty")]
    pub load_balancer_info: LoadBalancerInfo,
    #[serde(default)]
    pub termination_hook_enabled: bool,
    /// Set when `deploymentStyle.deploymentType` is BLUE_GREEN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green_deployment_configuration: Option<BlueGreenConfiguration>,
    /// Its application's: Server (EC2 and on-premises instances) or Lambda.
    #[serde(default = "server_platform")]
    pub compute_platform: String,
}

fn server_platform() -> String {
    SERVER_PLATFORM.to_owned()
}

impl DeploymentGroupSettings {
    /// A group of EC2/on-premises instances replaced by a blue/green deployment (a
    /// Lambda group's BLUE_GREEN style moves an alias instead).
    pub fn is_blue_green(&self) -> bool {
        self.deployment_style.deployment_type == BLUE_GREEN && !self.is_lambda()
    }

    /// A group of a Lambda application: its deployments move an alias's traffic.
    pub fn is_lambda(&self) -> bool {
        self.compute_platform == LAMBDA_PLATFORM
    }

    /// The target groups its in-place deployments take hosts out of and put back into:
    /// those of `loadBalancerInfo`, when `deploymentStyle` asks for traffic control.
    pub fn traffic_target_groups(&self) -> Vec<String> {
        if self.deployment_style.deployment_option != WITH_TRAFFIC_CONTROL {
            return Vec::new();
        }
        self.load_balancer_info
            .target_group_info_list
            .iter()
            .map(|group| group.name.clone())
            .collect()
    }
}

pub const WITH_TRAFFIC_CONTROL: &str = "WITH_TRAFFIC_CONTROL";
pub const WITHOUT_TRAFFIC_CONTROL: &str = "WITHOUT_TRAFFIC_CONTROL";
pub const IN_PLACE: &str = "IN_PLACE";
pub const BLUE_GREEN: &str = "BLUE_GREEN";

/// CodeDeploy's `blueGreenDeploymentConfiguration`, every part filled in (CodeDeploy's
/// defaults where the input left one out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenConfiguration {
    pub terminate_blue_instances_on_deployment_success: BlueInstanceTermination,
    pub deployment_ready_option: DeploymentReadyOption,
    pub green_fleet_provisioning_option: GreenFleetProvisioningOption,
}

/// What becomes of the original instances once traffic left them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueInstanceTermination {
    /// TERMINATE or KEEP_ALIVE.
    pub action: String,
    /// 0 to 2880 (two days); CodeDeploy's default is 60.
    pub termination_wait_time_in_minutes: u32,
}

/// Whether traffic is rerouted as soon as the replacement instances are ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentReadyOption {
    /// CONTINUE_DEPLOYMENT or STOP_DEPLOYMENT (wait for ContinueDeployment).
    pub action_on_timeout: String,
    /// With STOP_DEPLOYMENT: how long to wait before the deployment stops.
    pub wait_time_in_minutes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GreenFleetProvisioningOption {
    /// DISCOVER_EXISTING or COPY_AUTO_SCALING_GROUP.
    pub action: String,
}

pub const TERMINATE: &str = "TERMINATE";
pub const KEEP_ALIVE: &str = "KEEP_ALIVE";
pub const CONTINUE_DEPLOYMENT: &str = "CONTINUE_DEPLOYMENT";
pub const STOP_DEPLOYMENT: &str = "STOP_DEPLOYMENT";
pub const DISCOVER_EXISTING: &str = "DISCOVER_EXISTING";
pub const COPY_AUTO_SCALING_GROUP: &str = "COPY_AUTO_SCALING_GROUP";

/// CodeDeploy's `deploymentStyle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStyle {
    pub deployment_type: String,
    pub deployment_option: String,
}

impl Default for DeploymentStyle {
    fn default() -> Self {
        Self {
            deployment_type: IN_PLACE.into(),
            deployment_option: WITHOUT_TRAFFIC_CONTROL.into(),
        }
    }
}

/// CodeDeploy's `loadBalancerInfo`, for EC2/on-premises: Application or Network Load
/// Balancer target groups (`targetGroupInfoList`). Classic Load Balancers
/// (`elbInfoList`) and ECS pairs are refused where it is read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerInfo {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_group_info_list: Vec<TargetGroupInfo>,
}

impl LoadBalancerInfo {
    pub fn is_empty(&self) -> bool {
        self.target_group_info_list.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroupInfo {
    pub name: String,
}

pub(crate) fn default_outdated_strategy() -> String {
    "UPDATE".to_owned()
}

/// `lastSuccessfulDeployment` / `lastAttemptedDeployment`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastDeploymentInfo {
    pub deployment_id: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<f64>,
    pub create_time: f64,
}

impl LastDeploymentInfo {
    /// A group's `lastSuccessfulDeployment` or `lastAttemptedDeployment`: `state`.
    pub fn of(state: &Deployment) -> Self {
        Self::new(
            &state.deployment_id,
            state.status,
            state.create_time,
            state.complete_time,
        )
    }

    /// The same of a deployment of either platform, by its parts.
    pub fn new(
        deployment_id: &str,
        status: DeploymentStatus,
        create_time: Millis,
        complete_time: Option<Millis>,
    ) -> Self {
        LastDeploymentInfo {
            deployment_id: deployment_id.to_owned(),
            status: serialized_name(&status),
            end_time: complete_time.map(seconds),
            create_time: seconds(create_time),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentConfigInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_config_id: Option<String>,
    pub deployment_config_name: String,
    /// Server configurations only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_healthy_hosts: Option<MinimumHealthyHosts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zonal_config: Option<ZonalConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<f64>,
    pub compute_platform: String,
    /// Lambda configurations only: how traffic moves to the target version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing_config: Option<TrafficRouting>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnPremisesInstance {
    pub instance_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam_session_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam_user_arn: Option<String>,
    pub instance_arn: String,
    pub register_time: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregister_time: Option<f64>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// The `SenderId` its reports must carry, resolved from its IAM ARN at registration.
    /// Gantry's own: left out of API answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_id: Option<String>,
}

/// The tag that gives an on-premises instance an Availability Zone for striping and
/// zonal configurations (on-premises hosts have none of their own).
pub const ZONE_TAG: &str = "gantry:availability-zone";

/// What push learned about a revision; create-deployment uses the hook timeouts to set
/// each event's deadline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRecord {
    pub application_name: String,
    pub revision_location: RevisionLocation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub register_time: f64,
    /// Seconds each event's scripts may run in total, from the appspec.
    #[serde(default)]
    pub event_timeouts: std::collections::BTreeMap<gantry_core::lifecycle::LifecycleEvent, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
}

/// `rollbackInfo` of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_deployment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_triggering_deployment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_message: Option<String>,
}

/// CodeDeploy's limit on a deployment's (and a revision's) description, in characters.
pub const DESCRIPTION_MAX_CHARS: usize = 100;

/// Refuses a description over [`DESCRIPTION_MAX_CHARS`], as CodeDeploy does.
pub fn check_description(description: Option<&str>) -> Result<(), crate::ApiError> {
    let length = description.map_or(0, |text| text.chars().count());
    if length > DESCRIPTION_MAX_CHARS {
        return Err(crate::ApiError::new(
            crate::Exception::DescriptionTooLong,
            format!("description: {length} characters; at most {DESCRIPTION_MAX_CHARS}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_empty_skeleton_target_instances_is_absent() {
        let skeleton = json!({
            "tagFilters": [{"Key": "", "Value": "", "Type": "KEY_ONLY"}],
            "autoScalingGroups": [""],
            "ec2TagSet": {"ec2TagSetList": [[{"Key": "", "Value": "", "Type": "KEY_ONLY"}]]}
        });
        assert!(is_blank(&skeleton));
        let real = json!({"autoScalingGroups": ["green"]});
        assert!(!is_blank(&real));
    }

    fn changes(input: serde_json::Value) -> TargetChanges {
        serde_json::from_value(input).unwrap()
    }

    fn group() -> TargetSelection {
        serde_json::from_value(json!({
            "onPremisesInstanceTagFilters": [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
            "ec2TagSet": {"ec2TagSetList": [[{"Key": "env", "Value": "prod", "Type": "KEY_AND_VALUE"}]]},
            "autoScalingGroups": ["web-asg"],
        }))
        .unwrap()
    }

    #[test]
    fn a_target_field_left_out_is_kept_and_an_empty_one_removes() {
        let current = group();
        assert_eq!(changes(json!({})).applied_to(&current), current);
        let only_ec2 = changes(
            json!({"ec2TagFilters": [{"Key": "app", "Value": "shop", "Type": "KEY_AND_VALUE"}]}),
        )
        .applied_to(&current);
        assert_eq!(only_ec2.ec2_tag_filters.len(), 1);
        assert_eq!(only_ec2.auto_scaling_groups, ["web-asg"]);
        assert_eq!(
            only_ec2.on_premises_instance_tag_filters,
            current.on_premises_instance_tag_filters
        );
        let removed = changes(json!({
            "onPremisesInstanceTagFilters": [],
            "ec2TagSet": {"ec2TagSetList": []},
            "autoScalingGroups": [],
        }))
        .applied_to(&current);
        assert!(removed.is_empty(), "{removed:?}");
        assert_eq!(removed.ec2_tag_set, None);
    }
}
