//! Deployment groups as GetDeploymentGroup and ListDeploymentGroups return them.

use crate::model::{
    AlarmConfiguration, AutoRollbackConfiguration, AutoScalingGroup, BlueGreenConfiguration,
    DeploymentGroupSettings, DeploymentStyle, Ec2TagSet, LastDeploymentInfo, LoadBalancerInfo,
    OnPremisesTagSet, TriggerConfig, default_outdated_strategy,
};
use crate::paging::page_of;
use gantry_core::planner::TagFilter;
use gantry_core::wire::RevisionLocation;
use serde::{Deserialize, Serialize};

/// GetDeploymentGroup's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetDeploymentGroupOutput {
    pub deployment_group_info: DeploymentGroupInfo,
}

/// ListDeploymentGroups' output: an application's group names, a page at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDeploymentGroupsOutput {
    pub application_name: String,
    pub deployment_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

page_of!(ListDeploymentGroupsOutput, deployment_groups: String);

/// CodeDeploy's `deploymentGroupInfo`: a group's settings ([`DeploymentGroupSettings`],
/// its Auto Scaling groups as objects) with what its deployments left: the revision it
/// deploys and its last deployments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentGroupInfo {
    pub application_name: String,
    pub deployment_group_id: String,
    pub deployment_group_name: String,
    pub deployment_config_name: String,
    #[serde(default)]
    pub ec2_tag_filters: Vec<TagFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec2_tag_set: Option<Ec2TagSet>,
    #[serde(default)]
    pub on_premises_instance_tag_filters: Vec<TagFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_premises_tag_set: Option<OnPremisesTagSet>,
    #[serde(default)]
    pub auto_scaling_groups: Vec<AutoScalingGroup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_role_arn: Option<String>,
    #[serde(default)]
    pub trigger_configurations: Vec<TriggerConfig>,
    #[serde(default)]
    pub auto_rollback_configuration: AutoRollbackConfiguration,
    #[serde(default)]
    pub alarm_configuration: AlarmConfiguration,
    #[serde(default = "default_outdated_strategy")]
    pub outdated_instances_strategy: String,
    #[serde(default)]
    pub deployment_style: DeploymentStyle,
    #[serde(default, skip_serializing_if = "LoadBalancerInfo::is_empty")]
    pub load_balancer_info: LoadBalancerInfo,
    #[serde(default)]
    pub termination_hook_enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green_deployment_configuration: Option<BlueGreenConfiguration>,
    pub compute_platform: String,
    /// The revision the group deploys: its last deployment's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_revision: Option<RevisionLocation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_deployment: Option<LastDeploymentInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_deployment: Option<LastDeploymentInfo>,
}

impl DeploymentGroupInfo {
    /// A group as CodeDeploy shows it: its `settings`, and what its deployments left.
    pub fn new(
        settings: DeploymentGroupSettings,
        target_revision: Option<RevisionLocation>,
        last_successful_deployment: Option<LastDeploymentInfo>,
        last_attempted_deployment: Option<LastDeploymentInfo>,
    ) -> Self {
        let targets = settings.targets;
        Self {
            application_name: settings.application_name,
            deployment_group_id: settings.deployment_group_id,
            deployment_group_name: settings.deployment_group_name,
            deployment_config_name: settings.deployment_config_name,
            ec2_tag_filters: targets.ec2_tag_filters,
            ec2_tag_set: targets.ec2_tag_set,
            on_premises_instance_tag_filters: targets.on_premises_instance_tag_filters,
            on_premises_tag_set: targets.on_premises_tag_set,
            auto_scaling_groups: targets
                .auto_scaling_groups
                .into_iter()
                .map(|name| AutoScalingGroup { name, hook: None })
                .collect(),
            service_role_arn: settings.service_role_arn,
            trigger_configurations: settings.trigger_configurations,
            auto_rollback_configuration: settings.auto_rollback_configuration,
            alarm_configuration: settings.alarm_configuration,
            outdated_instances_strategy: settings.outdated_instances_strategy,
            deployment_style: settings.deployment_style,
            load_balancer_info: settings.load_balancer_info,
            termination_hook_enabled: settings.termination_hook_enabled,
            blue_green_deployment_configuration: settings.blue_green_deployment_configuration,
            compute_platform: settings.compute_platform,
            target_revision,
            last_successful_deployment,
            last_attempted_deployment,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::reads_and_writes_back;
    use serde_json::json;

    /// As `aws deploy get-deployment-group` prints an EC2 group that has deployed once.
    fn codedeploys() -> serde_json::Value {
        json!({
            "deploymentGroupInfo": {
                "applicationName": "WordPress_App",
                "deploymentGroupId": "cdac3220-0e64-4d63-bb50-e68faEXAMPLE",
                "deploymentGroupName": "WordPress_DG",
                "deploymentConfigName": "CodeDeployDefault.OneAtATime",
                "ec2TagFilters": [{"Key": "Name", "Value": "CodeDeployDemo", "Type": "KEY_AND_VALUE"}],
                "onPremisesInstanceTagFilters": [],
                "autoScalingGroups": [{"name": "web-asg", "hook": "CodeDeploy-managed-automatic-launch-deployment-hook-WordPress_DG-1a2b"}],
                "serviceRoleArn": "arn:aws:iam::123456789012:role/CodeDeployDemoRole",
                "triggerConfigurations": [{
                    "triggerName": "failures",
                    "triggerTargetArn": "arn:aws:sns:us-east-1:123456789012:deploy-events",
                    "triggerEvents": ["DeploymentFailure"]
                }],
                "autoRollbackConfiguration": {"enabled": true, "events": ["DEPLOYMENT_FAILURE"]},
                "alarmConfiguration": {"enabled": false, "ignorePollAlarmFailure": false, "alarms": []},
                "outdatedInstancesStrategy": "UPDATE",
                "deploymentStyle": {"deploymentType": "IN_PLACE", "deploymentOption": "WITHOUT_TRAFFIC_CONTROL"},
                "terminationHookEnabled": false,
                "computePlatform": "Server",
                "targetRevision": {"revisionType": "S3", "s3Location": {"bucket": "CodeDeployDemoBucket", "key": "WordPressApp.zip", "bundleType": "zip", "eTag": "dd56cfd59d434b8e768f9d77fEXAMPLE"}},
                "lastSuccessfulDeployment": {"deploymentId": "d-QA4G4F9EX", "status": "Succeeded", "endTime": 1764979320.5, "createTime": 1764979200.123},
                "lastAttemptedDeployment": {"deploymentId": "d-QA4G4F9EX", "status": "Succeeded", "endTime": 1764979320.5, "createTime": 1764979200.123}
            }
        })
    }

    #[test]
    fn codedeploys_deployment_group_info_reads_and_writes_back_unchanged() {
        let got: GetDeploymentGroupOutput = reads_and_writes_back(codedeploys());
        let info = got.deployment_group_info;
        assert_eq!(info.auto_scaling_groups[0].name, "web-asg");
        assert_eq!(
            info.last_successful_deployment.unwrap().deployment_id,
            "d-QA4G4F9EX"
        );
    }

    #[test]
    fn a_group_shows_its_settings_with_auto_scaling_groups_as_objects() {
        let info = codedeploys()["deploymentGroupInfo"].clone();
        let mut settings = info.clone();
        settings["autoScalingGroups"] = json!(["web-asg"]);
        let settings: DeploymentGroupSettings = serde_json::from_value(settings).unwrap();
        let shown = DeploymentGroupInfo::new(settings, None, None, None);
        assert_eq!(
            serde_json::to_value(&shown.auto_scaling_groups).unwrap(),
            json!([{"name": "web-asg"}])
        );
        assert_eq!(shown.ec2_tag_filters.len(), 1);
        assert_eq!(shown.compute_platform, "Server");
        assert_eq!(shown.last_attempted_deployment, None);
    }

    #[test]
    fn codedeploys_list_deployment_groups_reads_and_writes_back_unchanged() {
        let listed: ListDeploymentGroupsOutput = reads_and_writes_back(json!({
            "applicationName": "WordPress_App",
            "deploymentGroups": ["WordPress_DG", "WordPress_Beta_DG"],
            "nextToken": "V29yZFByZXNzX0JldGFfREc="
        }));
        assert_eq!(listed.deployment_groups.len(), 2);
    }
}
