//! A deployment group's input (Create and UpdateDeploymentGroup), checked field by field
//! into the settings stored.

use super::blue_green_config::{BLUE_GREEN_FIELD, blue_green_configuration, blue_green_defaults};
use crate::control::ControlPlane;
use crate::error::{ApiError, Exception};
use crate::model::{
    AutoRollbackConfiguration, DeploymentGroupSettings, DeploymentStyle, IN_PLACE, LAMBDA_PLATFORM,
    LoadBalancerInfo, TRIGGER_EVENTS, TargetChanges, TargetGroupInfo, TriggerConfig,
    WITH_TRAFFIC_CONTROL, WITHOUT_TRAFFIC_CONTROL, is_blank,
};
use serde::Deserialize;
use serde_json::Value;

/// Gantry's bound on a trigger's name (CodeDeploy documents none): it is stored with the
/// group and named in every notification and failure record.
const TRIGGER_NAME_MAX_CHARS: usize = 100;
/// CodeDeploy's quota of triggers per deployment group.
const MAX_TRIGGERS: usize = 10;

/// CreateDeploymentGroup's and UpdateDeploymentGroup's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct GroupInput {
    pub(super) application_name: String,
    #[serde(default)]
    pub(super) deployment_group_name: Option<String>,
    #[serde(default)]
    pub(super) current_deployment_group_name: Option<String>,
    #[serde(default)]
    pub(super) new_deployment_group_name: Option<String>,
    #[serde(default)]
    pub(super) deployment_config_name: Option<String>,
    #[serde(flatten)]
    pub(super) targets: TargetChanges,
    #[serde(default)]
    pub(super) service_role_arn: Option<String>,
    #[serde(default)]
    pub(super) trigger_configurations: Option<Vec<TriggerConfig>>,
    #[serde(default)]
    pub(super) auto_rollback_configuration: Option<AutoRollbackConfiguration>,
    #[serde(default)]
    pub(super) outdated_instances_strategy: Option<String>,
    #[serde(default)]
    pub(super) deployment_style: Option<Value>,
    #[serde(default)]
    pub(super) alarm_configuration: Option<Value>,
    #[serde(default)]
    pub(super) blue_green_deployment_configuration: Option<Value>,
    #[serde(default)]
    pub(super) load_balancer_info: Option<Value>,
    #[serde(default)]
    pub(super) ecs_services: Option<Value>,
    /// CreateDeploymentGroup's resource tags (UpdateDeploymentGroup takes none: they
    /// change through TagResource).
    #[serde(default)]
    pub(super) tags: Option<Value>,
    /// Put a termination hook on the Auto Scaling groups: a terminating instance's
    /// application is stopped (with the traffic blocked first) before it goes.
    #[serde(default)]
    pub(super) termination_hook_enabled: Option<bool>,
    /// Taken only empty: see [`crate::deploy::check_ec2_deployment_options`].
    #[serde(default)]
    pub(super) ec2_deployment_options: Option<Value>,
}

impl GroupInput {
    /// Checks the input and merges it over `current` (for an update). `platform`: the
    /// application's compute platform, Server or Lambda.
    pub(super) async fn settings(
        &self,
        control: &ControlPlane,
        current: Option<&DeploymentGroupSettings>,
        platform: &str,
    ) -> Result<DeploymentGroupSettings, ApiError> {
        let lambda = platform == LAMBDA_PLATFORM;
        crate::deploy::check_ec2_deployment_options(self.ec2_deployment_options.as_ref())?;
        let targets = self
            .targets
            .applied_to(&current.map(|c| c.targets.clone()).unwrap_or_default());
        targets
            .validate()
            .map_err(|message| ApiError::new(Exception::InvalidTag, message))?;
        let (deployment_style, load_balancer_info, blue_green_deployment_configuration) = if lambda
        {
            self.refuse_instance_settings(&targets)?;
            (self.lambda_style()?, LoadBalancerInfo::default(), None)
        } else {
            let (style, info) = self.traffic_settings(control, current)?;
            let blue_green = self.blue_green_settings(&style, &targets, current)?;
            (style, info, blue_green)
        };
        // Left out, the group keeps its alarms; given, it replaces them.
        let alarm_configuration = match &self.alarm_configuration {
            Some(value) => {
                crate::model::AlarmConfiguration::from_input("alarmConfiguration", value.clone())
                    .map_err(crate::deploy::alarm_error)?
            }
            None => current
                .map(|c| c.alarm_configuration.clone())
                .unwrap_or_default(),
        };
        if self.ecs_services.as_ref().is_some_and(|v| !is_blank(v)) {
            return Err(ApiError::invalid_input(
                "ecsServices: not supported; Gantry deploys to EC2 and on-premises instances (compute platform Server)",
            ));
        }
        let config_name = self
            .deployment_config_name
            .clone()
            .filter(|name| !name.is_empty())
            .or_else(|| current.map(|c| c.deployment_config_name.clone()))
            .unwrap_or_else(|| {
                if lambda {
                    gantry_core::lambda::LAMBDA_ALL_AT_ONCE
                } else {
                    gantry_core::config::ONE_AT_A_TIME
                }
                .to_owned()
            });
        if lambda {
            control.lambda_routing(&config_name).await?;
        } else {
            control.deployment_config(&config_name).await?;
        }
        let triggers = self
            .trigger_configurations
            .clone()
            .or_else(|| current.map(|c| c.trigger_configurations.clone()))
            .unwrap_or_default();
        if triggers.len() > MAX_TRIGGERS {
            return Err(ApiError::new(
                Exception::TriggerTargetsLimitExceeded,
                format!(
                    "triggerConfigurations: {} triggers; a deployment group has at most {MAX_TRIGGERS}",
                    triggers.len()
                ),
            ));
        }
        for (index, trigger) in triggers.iter().enumerate() {
            if trigger.trigger_name.chars().count() > TRIGGER_NAME_MAX_CHARS {
                return Err(ApiError::new(
                    Exception::InvalidTriggerConfig,
                    format!(
                        "triggerConfigurations[{index}].triggerName: at most {TRIGGER_NAME_MAX_CHARS} characters"
                    ),
                ));
            }
            if trigger.trigger_name.is_empty() || !trigger.trigger_target_arn.starts_with("arn:") {
                return Err(ApiError::new(
                    Exception::InvalidTriggerConfig,
                    format!(
                        "triggerConfigurations[{index}]: needs a triggerName and an SNS topic ARN as triggerTargetArn"
                    ),
                ));
            }
            if let Some(prefix) = &control.settings.trigger_topic_prefix {
                let settings = &control.settings;
                let allowed = trigger
                    .trigger_target_arn
                    .split(':')
                    .collect::<Vec<_>>()
                    .as_slice()
                    .get(2..6)
                    .is_some_and(|parts| {
                        parts[0] == "sns"
                            && parts[1] == settings.region
                            && parts[2] == settings.account_id
                            && parts[3].starts_with(prefix.as_str())
                    });
                if !allowed {
                    return Err(ApiError::new(
                        Exception::InvalidTriggerConfig,
                        format!(
                            "triggerConfigurations[{index}].triggerTargetArn: {:?} is not a topic this Gantry may publish to: name it {prefix}... in account {} and region {} (the stack's functions may publish only there)",
                            trigger.trigger_target_arn, settings.account_id, settings.region
                        ),
                    ));
                }
            }
            for event in &trigger.trigger_events {
                if !TRIGGER_EVENTS.contains(&event.as_str()) {
                    return Err(ApiError::new(
                        Exception::InvalidTriggerConfig,
                        format!(
                            "triggerConfigurations[{index}].triggerEvents: {event:?} is not one of {}",
                            TRIGGER_EVENTS.join(", ")
                        ),
                    ));
                }
            }
        }
        let auto_rollback = self
            .auto_rollback_configuration
            .clone()
            .or_else(|| current.map(|c| c.auto_rollback_configuration.clone()))
            .unwrap_or_default();
        auto_rollback
            .validate()
            .map_err(|message| ApiError::new(Exception::InvalidAutoRollbackConfig, message))?;
        let strategy = self
            .outdated_instances_strategy
            .clone()
            .or_else(|| current.map(|c| c.outdated_instances_strategy.clone()))
            .unwrap_or_else(|| "UPDATE".into());
        if strategy != "UPDATE" && strategy != "IGNORE" {
            return Err(ApiError::invalid_input(format!(
                "outdatedInstancesStrategy: {strategy:?} is not UPDATE or IGNORE"
            )));
        }
        Ok(DeploymentGroupSettings {
            application_name: self.application_name.clone(),
            deployment_group_id: current
                .map(|c| c.deployment_group_id.clone())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            deployment_group_name: self.deployment_group_name.clone().unwrap_or_default(),
            deployment_config_name: config_name,
            targets,
            service_role_arn: self
                .service_role_arn
                .clone()
                .or_else(|| current.and_then(|c| c.service_role_arn.clone())),
            trigger_configurations: triggers,
            auto_rollback_configuration: auto_rollback,
            alarm_configuration,
            outdated_instances_strategy: strategy,
            deployment_style,
            load_balancer_info,
            termination_hook_enabled: self
                .termination_hook_enabled
                .or_else(|| current.map(|c| c.termination_hook_enabled))
                .unwrap_or(false),
            blue_green_deployment_configuration,
            compute_platform: platform.to_owned(),
        })
    }

    /// A Lambda group deploys to an alias, named by each revision: it selects no
    /// instances and has no load balancer, fleet or Auto Scaling hook.
    fn refuse_instance_settings(
        &self,
        targets: &crate::model::TargetSelection,
    ) -> Result<(), ApiError> {
        let given = |value: &Option<Value>| value.as_ref().is_some_and(|v| !is_blank(v));
        let instance_fields = [
            ("ec2TagFilters", !targets.ec2_tag_filters.is_empty()),
            ("ec2TagSet", targets.ec2_tag_set.is_some()),
            (
                "onPremisesInstanceTagFilters",
                !targets.on_premises_instance_tag_filters.is_empty(),
            ),
            ("onPremisesTagSet", targets.on_premises_tag_set.is_some()),
            ("autoScalingGroups", !targets.auto_scaling_groups.is_empty()),
            ("loadBalancerInfo", given(&self.load_balancer_info)),
            (
                "blueGreenDeploymentConfiguration",
                given(&self.blue_green_deployment_configuration),
            ),
            (
                "terminationHookEnabled",
                self.termination_hook_enabled == Some(true),
            ),
        ];
        if let Some((field, _)) = instance_fields.iter().find(|(_, set)| *set) {
            return Err(ApiError::invalid_input(format!(
                "{field}: a deployment group of a Lambda application moves the traffic of the alias its revision names; it selects no instances, load balancers or Auto Scaling groups, so leave {field} out"
            )));
        }
        Ok(())
    }

    /// A Lambda group's `deploymentStyle`: BLUE_GREEN with WITH_TRAFFIC_CONTROL, the only
    /// style CodeDeploy allows for Lambda, whether given or left out.
    fn lambda_style(&self) -> Result<DeploymentStyle, ApiError> {
        let style = DeploymentStyle {
            deployment_type: crate::model::BLUE_GREEN.to_owned(),
            deployment_option: WITH_TRAFFIC_CONTROL.to_owned(),
        };
        match &self.deployment_style {
            Some(value) if !is_blank(value) => {
                let given: Result<DeploymentStyle, _> = serde_json::from_value(value.clone());
                if given.as_ref().ok() != Some(&style) {
                    return Err(ApiError::new(
                        Exception::InvalidDeploymentStyle,
                        format!(
                            "deploymentStyle: {value}; a Lambda application's group shifts traffic between versions: give deploymentType BLUE_GREEN and deploymentOption WITH_TRAFFIC_CONTROL, or leave deploymentStyle out"
                        ),
                    ));
                }
                Ok(style)
            }
            _ => Ok(style),
        }
    }

    /// `blueGreenDeploymentConfiguration`, as CodeDeploy keeps it. Given, it is read with
    /// CodeDeploy's defaults for what it leaves out (on an update, a part left out keeps the
    /// group's); left out, the group keeps its own. A BLUE_GREEN group always has one: the
    /// defaults when none was ever given. An IN_PLACE group stores one it is given, unused,
    /// as CodeDeploy does. Blue/green replaces EC2 instances only, so a BLUE_GREEN group
    /// selects no on-premises instances; and COPY_AUTO_SCALING_GROUP copies the group's one
    /// Auto Scaling group.
    fn blue_green_settings(
        &self,
        style: &DeploymentStyle,
        targets: &crate::model::TargetSelection,
        current: Option<&DeploymentGroupSettings>,
    ) -> Result<Option<crate::model::BlueGreenConfiguration>, ApiError> {
        use crate::model::{BLUE_GREEN, COPY_AUTO_SCALING_GROUP};
        let kept = current.and_then(|c| c.blue_green_deployment_configuration.as_ref());
        let config = match &self.blue_green_deployment_configuration {
            Some(value) if !is_blank(value) => Some(blue_green_configuration(value, kept)?),
            _ => kept.cloned(),
        };
        if style.deployment_type != BLUE_GREEN {
            return Ok(config);
        }
        let on_premises = if !targets.on_premises_instance_tag_filters.is_empty() {
            Some("onPremisesInstanceTagFilters")
        } else if targets
            .on_premises_tag_set
            .as_ref()
            .is_some_and(|set| !set.on_premises_tag_set_list.is_empty())
        {
            Some("onPremisesTagSet")
        } else {
            None
        };
        if let Some(field) = on_premises {
            return Err(ApiError::new(
                Exception::InvalidDeploymentStyle,
                format!(
                    "deploymentStyle.deploymentType: BLUE_GREEN replaces EC2 instances only, and {field} selects on-premises instances, which cannot be replaced; remove {field} or deploy IN_PLACE"
                ),
            ));
        }
        let config = config.unwrap_or_else(blue_green_defaults);
        let copied = targets.auto_scaling_groups.len();
        if config.green_fleet_provisioning_option.action == COPY_AUTO_SCALING_GROUP && copied != 1 {
            return Err(ApiError::new(
                Exception::InvalidBlueGreenDeploymentConfiguration,
                format!(
                    "{BLUE_GREEN_FIELD}.greenFleetProvisioningOption.action: COPY_AUTO_SCALING_GROUP copies the group's Auto Scaling group, so autoScalingGroups must name exactly one; it names {copied}"
                ),
            ));
        }
        Ok(Some(config))
    }

    /// `deploymentStyle` and `loadBalancerInfo`, each kept from `current` when left out.
    /// With WITH_TRAFFIC_CONTROL, in-place hosts leave and rejoin the ELBv2 target groups
    /// of `targetGroupInfoList` around their install, and blue/green reroutes traffic
    /// through them (BLUE_GREEN needs WITH_TRAFFIC_CONTROL); either needs the lifecycle
    /// queue (it carries the checks of target health).
    fn traffic_settings(
        &self,
        control: &ControlPlane,
        current: Option<&DeploymentGroupSettings>,
    ) -> Result<(DeploymentStyle, LoadBalancerInfo), ApiError> {
        let style = match &self.deployment_style {
            Some(value) if !is_blank(value) => {
                let style: DeploymentStyle = serde_json::from_value(value.clone()).map_err(|error| {
                    ApiError::new(
                        Exception::InvalidDeploymentStyle,
                        format!("deploymentStyle: {error}; give deploymentType IN_PLACE or BLUE_GREEN and deploymentOption WITH_TRAFFIC_CONTROL or WITHOUT_TRAFFIC_CONTROL"),
                    )
                })?;
                if ![IN_PLACE, crate::model::BLUE_GREEN].contains(&style.deployment_type.as_str()) {
                    return Err(ApiError::new(
                        Exception::InvalidDeploymentStyle,
                        format!(
                            "deploymentStyle.deploymentType: {:?} is not IN_PLACE or BLUE_GREEN",
                            style.deployment_type
                        ),
                    ));
                }
                if ![WITH_TRAFFIC_CONTROL, WITHOUT_TRAFFIC_CONTROL]
                    .contains(&style.deployment_option.as_str())
                {
                    return Err(ApiError::new(
                        Exception::InvalidDeploymentStyle,
                        format!(
                            "deploymentStyle.deploymentOption: {:?} is not WITH_TRAFFIC_CONTROL or WITHOUT_TRAFFIC_CONTROL",
                            style.deployment_option
                        ),
                    ));
                }
                style
            }
            _ => current
                .map(|c| c.deployment_style.clone())
                .unwrap_or_default(),
        };
        let info = match &self.load_balancer_info {
            Some(value) if !value.is_null() => {
                for unsupported in ["elbInfoList", "targetGroupPairInfoList"] {
                    if value.get(unsupported).is_some_and(|v| !is_blank(v)) {
                        return Err(ApiError::new(
                            Exception::InvalidLoadBalancerInfo,
                            format!(
                                "loadBalancerInfo.{unsupported}: not supported; give Application or Network Load Balancer target groups in targetGroupInfoList"
                            ),
                        ));
                    }
                }
                let groups = value
                    .get("targetGroupInfoList")
                    .cloned()
                    .unwrap_or(Value::Null);
                let groups: Vec<Value> = serde_json::from_value(groups).unwrap_or_default();
                let mut names = Vec::new();
                for (index, group) in groups.iter().enumerate() {
                    let name = group
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if name.is_empty() {
                        return Err(ApiError::new(
                            Exception::InvalidLoadBalancerInfo,
                            format!(
                                "loadBalancerInfo.targetGroupInfoList[{index}].name: is required (the target group's name)"
                            ),
                        ));
                    }
                    names.push(TargetGroupInfo {
                        name: name.to_owned(),
                    });
                }
                LoadBalancerInfo {
                    target_group_info_list: names,
                }
            }
            _ => current
                .map(|c| c.load_balancer_info.clone())
                .unwrap_or_default(),
        };
        let blue_green = style.deployment_type == crate::model::BLUE_GREEN;
        if blue_green && style.deployment_option != WITH_TRAFFIC_CONTROL {
            return Err(ApiError::new(
                Exception::InvalidDeploymentStyle,
                format!(
                    "deploymentStyle.deploymentOption: deploymentType BLUE_GREEN needs WITH_TRAFFIC_CONTROL, not {:?}: traffic moves from the original instances to their replacements through the target groups of loadBalancerInfo",
                    style.deployment_option
                ),
            ));
        }
        if style.deployment_option == WITH_TRAFFIC_CONTROL {
            if info.is_empty() {
                let why = if blue_green {
                    " (BLUE_GREEN reroutes traffic through them)"
                } else {
                    ""
                };
                return Err(ApiError::new(
                    Exception::InvalidLoadBalancerInfo,
                    format!(
                        "loadBalancerInfo.targetGroupInfoList: deploymentOption WITH_TRAFFIC_CONTROL needs at least one target group{why}"
                    ),
                ));
            }
            if control.settings.lifecycle_queue_url.is_none() {
                return Err(ApiError::new(
                    Exception::InvalidLoadBalancerInfo,
                    "deploymentStyle: WITH_TRAFFIC_CONTROL needs Gantry's lifecycle queue (GANTRY_LIFECYCLE_QUEUE_URL), which carries the checks of target health; this Gantry has none",
                ));
            }
        }
        Ok((style, info))
    }
}
