//! Deployment configs: Create, Get, List, Delete.

use super::groups::all_groups;
use super::paging::page;
use super::{check_name, name_field, unknown_operation};
use crate::control::ControlPlane;
use crate::error::{ApiError, Exception, parse_input};
use crate::model::{DeploymentConfigInfo, is_blank, now_millis, seconds};
use crate::store::{StoreError, keys};
use gantry_api::config::{GetDeploymentConfigOutput, ListDeploymentConfigsOutput};
use gantry_core::config::{DeploymentConfig, MinimumHealthyHosts, ZonalConfig};
use serde::Deserialize;
use serde_json::{Value, json};

/// Deployment configurations.
pub(super) async fn deployment_configs(
    control: &ControlPlane,
    name: &str,
    input: Value,
) -> Result<Value, ApiError> {
    let store = &control.store;
    match name {
        "CreateDeploymentConfig" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase", deny_unknown_fields)]
            struct ConfigInput {
                deployment_config_name: String,
                minimum_healthy_hosts: Option<MinimumHealthyHosts>,
                #[serde(default)]
                zonal_config: Option<ZonalConfig>,
                #[serde(default)]
                compute_platform: Option<String>,
                #[serde(default)]
                traffic_routing_config: Option<Value>,
            }
            let request: ConfigInput = parse_input(name, input)?;
            check_name("deploymentConfigName", &request.deployment_config_name)?;
            if request
                .traffic_routing_config
                .as_ref()
                .is_some_and(|v| !is_blank(v))
            {
                return Err(ApiError::invalid_input(
                    "trafficRoutingConfig: applies to Lambda and ECS deployments, not to the Server platform",
                ));
            }
            if request
                .compute_platform
                .as_deref()
                .is_some_and(|p| p != "Server")
            {
                return Err(ApiError::new(
                    Exception::InvalidComputePlatform,
                    "computePlatform: Gantry's deployment configurations are for the Server platform",
                ));
            }
            let rule = request.minimum_healthy_hosts.ok_or_else(|| {
                ApiError::new(
                    Exception::InvalidMinimumHealthyHostValue,
                    "minimumHealthyHosts: is required ({\"type\": \"HOST_COUNT\" or \"FLEET_PERCENT\", \"value\": n})",
                )
            })?;
            let config = DeploymentConfig::custom(
                &request.deployment_config_name,
                rule,
                request.zonal_config,
            )
            .map_err(|error| {
                let code = match error {
                    gantry_core::config::ConfigError::ReservedName(_)
                    | gantry_core::config::ConfigError::NameLength(_) => {
                        Exception::InvalidDeploymentConfigName
                    }
                    gantry_core::config::ConfigError::ZonePercentOutOfRange(_)
                    | gantry_core::config::ConfigError::ZoneReservedType => {
                        Exception::InvalidZonalDeploymentConfiguration
                    }
                    _ => Exception::InvalidMinimumHealthyHostValue,
                };
                ApiError::new(code, error.to_string())
            })?;
            let info = DeploymentConfigInfo {
                deployment_config_id: Some(uuid::Uuid::new_v4().to_string()),
                deployment_config_name: config.name.clone(),
                minimum_healthy_hosts: config.minimum_healthy_hosts,
                zonal_config: config.zonal_config,
                create_time: Some(seconds(now_millis())),
                compute_platform: "Server".into(),
            };
            store
                .put_new(keys::CONFIGS, &config.name, &info, &[])
                .await
                .map_err(|error| match error {
                    StoreError::Conflict(_) => ApiError::new(
                        Exception::DeploymentConfigAlreadyExists,
                        format!("deploymentConfigName: {:?} already exists", config.name),
                    ),
                    other => other.into(),
                })?;
            Ok(json!({"deploymentConfigId": info.deployment_config_id}))
        }
        "GetDeploymentConfig" => {
            let config_name = name_field(
                &input,
                "deploymentConfigName",
                Exception::DeploymentConfigNameRequired,
            )?;
            let config = control.deployment_config(&config_name).await?;
            let stored = store
                .get::<DeploymentConfigInfo>(keys::CONFIGS, &config_name)
                .await?;
            let info = match stored {
                Some(stored) => stored.value,
                None => DeploymentConfigInfo {
                    deployment_config_id: None,
                    deployment_config_name: config.name,
                    minimum_healthy_hosts: config.minimum_healthy_hosts,
                    zonal_config: config.zonal_config,
                    create_time: None,
                    compute_platform: "Server".into(),
                },
            };
            Ok(json!(GetDeploymentConfigOutput {
                deployment_config_info: info
            }))
        }
        "ListDeploymentConfigs" => {
            let mut names: Vec<String> = DeploymentConfig::all_predefined()
                .into_iter()
                .map(|c| c.name)
                .collect();
            let custom: Vec<DeploymentConfigInfo> = store.list(keys::CONFIGS).await?;
            names.extend(custom.into_iter().map(|c| c.deployment_config_name));
            let (names, next) = page(names, &input, String::clone)?;
            Ok(json!(ListDeploymentConfigsOutput {
                deployment_configs_list: names,
                next_token: next,
            }))
        }
        "DeleteDeploymentConfig" => {
            let config_name = name_field(
                &input,
                "deploymentConfigName",
                Exception::DeploymentConfigNameRequired,
            )?;
            if DeploymentConfig::predefined(&config_name).is_some() {
                return Err(ApiError::new(
                    Exception::InvalidOperation,
                    format!(
                        "deploymentConfigName: {config_name} is predefined and cannot be deleted"
                    ),
                ));
            }
            let users: Vec<String> = all_groups(control)
                .await?
                .into_iter()
                .filter(|group| group.deployment_config_name == config_name)
                .map(|group| format!("{}/{}", group.application_name, group.deployment_group_name))
                .collect();
            if !users.is_empty() {
                return Err(ApiError::new(
                    Exception::DeploymentConfigInUse,
                    format!(
                        "deploymentConfigName: {config_name} is used by deployment group(s) {}; give them another configuration first",
                        users.join(", ")
                    ),
                ));
            }
            store.delete(keys::CONFIGS, &config_name, None).await?;
            Ok(json!({}))
        }
        other => Err(unknown_operation(other)),
    }
}
