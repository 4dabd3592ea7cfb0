//! Deployment configurations as GetDeploymentConfig and ListDeploymentConfigs return
//! them.

use crate::model::DeploymentConfigInfo;
use crate::paging::page_of;
use serde::{Deserialize, Serialize};

/// GetDeploymentConfig's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetDeploymentConfigOutput {
    pub deployment_config_info: DeploymentConfigInfo,
}

/// ListDeploymentConfigs' output: the predefined configurations' names, then the
/// account's, a page at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDeploymentConfigsOutput {
    pub deployment_configs_list: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

page_of!(ListDeploymentConfigsOutput, deployment_configs_list: String);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::reads_and_writes_back;
    use gantry_core::config::MinimumHealthyHosts;
    use serde_json::json;

    #[test]
    fn codedeploys_get_deployment_config_reads_and_writes_back_unchanged() {
        let got: GetDeploymentConfigOutput = reads_and_writes_back(json!({
            "deploymentConfigInfo": {
                "deploymentConfigId": "bf6b390b-61d3-4f24-8911-a1664EXAMPLE",
                "deploymentConfigName": "ThreeQuartersHealthy",
                "minimumHealthyHosts": {"type": "FLEET_PERCENT", "value": 75},
                "createTime": 1764979200.123,
                "computePlatform": "Server"
            }
        }));
        assert_eq!(
            got.deployment_config_info.minimum_healthy_hosts,
            Some(MinimumHealthyHosts::FleetPercent(75))
        );
        // A predefined configuration has no id and no creation time.
        let predefined: GetDeploymentConfigOutput = reads_and_writes_back(json!({
            "deploymentConfigInfo": {
                "deploymentConfigName": "CodeDeployDefault.OneAtATime",
                "minimumHealthyHosts": {"type": "MOST_CONCURRENCY", "value": 1},
                "computePlatform": "Server"
            }
        }));
        assert_eq!(predefined.deployment_config_info.create_time, None);
    }

    #[test]
    fn codedeploys_lambda_deployment_config_reads_and_writes_back_unchanged() {
        // A Lambda configuration has a traffic routing and no minimum of healthy hosts.
        let canary: GetDeploymentConfigOutput = reads_and_writes_back(json!({
            "deploymentConfigInfo": {
                "deploymentConfigName": "CodeDeployDefault.LambdaCanary10Percent5Minutes",
                "computePlatform": "Lambda",
                "trafficRoutingConfig": {
                    "type": "TimeBasedCanary",
                    "timeBasedCanary": {"canaryPercentage": 10, "canaryInterval": 5}
                }
            }
        }));
        assert_eq!(
            canary.deployment_config_info.traffic_routing_config,
            gantry_core::lambda::predefined("CodeDeployDefault.LambdaCanary10Percent5Minutes")
        );
        assert_eq!(canary.deployment_config_info.minimum_healthy_hosts, None);
        let custom: GetDeploymentConfigOutput = reads_and_writes_back(json!({
            "deploymentConfigInfo": {
                "deploymentConfigId": "bf6b390b-61d3-4f24-8911-a1664EXAMPLE",
                "deploymentConfigName": "Linear25Every3",
                "createTime": 1764979200.123,
                "computePlatform": "Lambda",
                "trafficRoutingConfig": {
                    "type": "TimeBasedLinear",
                    "timeBasedLinear": {"linearPercentage": 25, "linearInterval": 3}
                }
            }
        }));
        assert_eq!(
            custom.deployment_config_info.traffic_routing_config,
            Some(gantry_core::lambda::TrafficRouting::linear(25, 3).unwrap())
        );
        reads_and_writes_back::<GetDeploymentConfigOutput>(json!({
            "deploymentConfigInfo": {
                "deploymentConfigName": "CodeDeployDefault.LambdaAllAtOnce",
                "computePlatform": "Lambda",
                "trafficRoutingConfig": {"type": "AllAtOnce"}
            }
        }));
    }

    #[test]
    fn codedeploys_list_deployment_configs_reads_and_writes_back_unchanged() {
        let listed: ListDeploymentConfigsOutput = reads_and_writes_back(json!({
            "deploymentConfigsList": [
                "ThreeQuartersHealthy", "CodeDeployDefault.AllAtOnce",
                "CodeDeployDefault.HalfAtATime", "CodeDeployDefault.OneAtATime"
            ]
        }));
        assert_eq!(listed.deployment_configs_list.len(), 4);
    }
}
