//! Deployment configs: Create, Get, List, Delete.

use super::groups::all_groups;
use super::paging::page;
use super::{check_name, name_field, unknown_operation};
use crate::control::ControlPlane;
use crate::error::{ApiError, Exception, parse_input};
use crate::model::{
    COMPUTE_PLATFORMS, DeploymentConfigInfo, LAMBDA_PLATFORM, SERVER_PLATFORM, is_blank,
    now_millis, seconds,
};
use crate::store::{StoreError, keys};
use gantry_api::config::{GetDeploymentConfigOutput, ListDeploymentConfigsOutput};
use gantry_core::config::{ConfigError, DeploymentConfig, MinimumHealthyHosts, ZonalConfig};
use gantry_core::lambda::{self, LambdaConfigError, LambdaDeploymentConfig, TrafficRoutingConfig};
use serde::Deserialize;
use serde_json::{Value, json};

/// CreateDeploymentConfig's input.
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

/// Deployment configurations.
pub(super) async fn deployment_configs(
    control: &ControlPlane,
    name: &str,
    input: Value,
) -> Result<Value, ApiError> {
    let store = &control.store;
    match name {
        "CreateDeploymentConfig" => {
            let request: ConfigInput = parse_input(name, input)?;
            check_name("deploymentConfigName", &request.deployment_config_name)?;
            let info = match request.compute_platform.as_deref() {
                None | Some(SERVER_PLATFORM) => server_config(request)?,
                Some(LAMBDA_PLATFORM) => lambda_config(request)?,
                Some(other) => {
                    return Err(ApiError::new(
                        Exception::InvalidComputePlatform,
                        format!(
                            "computePlatform: {other:?}; Gantry's deployment configurations are for the {COMPUTE_PLATFORMS} platform"
                        ),
                    ));
                }
            };
            let config_name = info.deployment_config_name.clone();
            store
                .put_new(keys::CONFIGS, &config_name, &info, &[])
                .await
                .map_err(|error| match error {
                    StoreError::Conflict(_) => ApiError::new(
                        Exception::DeploymentConfigAlreadyExists,
                        format!("deploymentConfigName: {config_name:?} already exists"),
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
            let info = control.deployment_config_info(&config_name).await?;
            Ok(json!(GetDeploymentConfigOutput {
                deployment_config_info: info
            }))
        }
        "ListDeploymentConfigs" => {
            // Every platform's predefined configurations, as CodeDeploy lists them.
            let mut names: Vec<String> = DeploymentConfig::all_predefined()
                .into_iter()
                .map(|c| c.name)
                .chain(lambda::PREDEFINED_NAMES.map(str::to_owned))
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
            if DeploymentConfig::predefined(&config_name).is_some()
                || lambda::predefined(&config_name).is_some()
            {
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

/// A Server configuration: how many hosts stay healthy, perhaps one zone at a time.
fn server_config(request: ConfigInput) -> Result<DeploymentConfigInfo, ApiError> {
    if request
        .traffic_routing_config
        .as_ref()
        .is_some_and(|v| !is_blank(v))
    {
        return Err(ApiError::new(
            Exception::InvalidTrafficRoutingConfiguration,
            "trafficRoutingConfig: applies to the Lambda platform (computePlatform \"Lambda\"), not to the Server platform",
        ));
    }
    let rule = request.minimum_healthy_hosts.ok_or_else(|| {
        ApiError::new(
            Exception::InvalidMinimumHealthyHostValue,
            "minimumHealthyHosts: is required ({\"type\": \"HOST_COUNT\" or \"FLEET_PERCENT\", \"value\": n})",
        )
    })?;
    let config =
        DeploymentConfig::custom(&request.deployment_config_name, rule, request.zonal_config)
            .map_err(|error| {
                let code = match error {
                    ConfigError::ReservedName(_) | ConfigError::NameLength(_) => {
                        Exception::InvalidDeploymentConfigName
                    }
                    ConfigError::ZonePercentOutOfRange(_) | ConfigError::ZoneReservedType => {
                        Exception::InvalidZonalDeploymentConfiguration
                    }
                    _ => Exception::InvalidMinimumHealthyHostValue,
                };
                ApiError::new(code, error.to_string())
            })?;
    Ok(DeploymentConfigInfo {
        deployment_config_id: Some(uuid::Uuid::new_v4().to_string()),
        deployment_config_name: config.name,
        minimum_healthy_hosts: Some(config.minimum_healthy_hosts),
        zonal_config: config.zonal_config,
        create_time: Some(seconds(now_millis())),
        compute_platform: SERVER_PLATFORM.into(),
        traffic_routing_config: None,
    })
}

/// A Lambda configuration: how an alias's traffic moves to the target version. It has
/// no hosts, so the Server platform's fields are refused rather than ignored.
fn lambda_config(request: ConfigInput) -> Result<DeploymentConfigInfo, ApiError> {
    if request.minimum_healthy_hosts.is_some() {
        return Err(ApiError::new(
            Exception::InvalidMinimumHealthyHostValue,
            "minimumHealthyHosts: applies to the Server platform; a Lambda configuration gives trafficRoutingConfig only",
        ));
    }
    if request.zonal_config.is_some() {
        return Err(ApiError::new(
            Exception::InvalidZonalDeploymentConfiguration,
            "zonalConfig: applies to the Server platform; a Lambda configuration gives trafficRoutingConfig only",
        ));
    }
    let routing = match request.traffic_routing_config {
        Some(value) if !is_blank(&value) => serde_json::from_value::<TrafficRoutingConfig>(value)
            .map_err(|error| {
            ApiError::new(
                Exception::InvalidTrafficRoutingConfiguration,
                format!("trafficRoutingConfig: {error}"),
            )
        })?,
        _ => {
            return Err(ApiError::new(
                Exception::InvalidTrafficRoutingConfiguration,
                "trafficRoutingConfig: is required for the Lambda platform ({\"type\": \"TimeBasedCanary\", \"TimeBasedLinear\" or \"AllAtOnce\", with timeBasedCanary or timeBasedLinear to match)",
            ));
        }
    };
    let config = LambdaDeploymentConfig::custom(&request.deployment_config_name, routing)
        .map_err(lambda_config_error)?;
    Ok(DeploymentConfigInfo {
        deployment_config_id: Some(uuid::Uuid::new_v4().to_string()),
        deployment_config_name: config.name,
        minimum_healthy_hosts: None,
        zonal_config: None,
        create_time: Some(seconds(now_millis())),
        compute_platform: LAMBDA_PLATFORM.into(),
        traffic_routing_config: Some(config.traffic_routing_config),
    })
}

/// The exception core names for a refused Lambda configuration, as an [`Exception`].
fn lambda_config_error(error: LambdaConfigError) -> ApiError {
    let code = match &error {
        LambdaConfigError::Name(_) => Exception::InvalidDeploymentConfigName,
        LambdaConfigError::Routing(_) => Exception::InvalidTrafficRoutingConfiguration,
    };
    debug_assert_eq!(code.name(), error.exception());
    ApiError::new(code, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_config_errors_keep_the_exceptions_core_names() {
        let bad_name = LambdaDeploymentConfig::custom(
            "CodeDeployDefault.Mine",
            TrafficRoutingConfig::from(lambda::TrafficRouting::AllAtOnce),
        )
        .unwrap_err();
        let bad_routing =
            LambdaDeploymentConfig::custom("Mine", TrafficRoutingConfig::default()).unwrap_err();
        for error in [bad_name, bad_routing] {
            let name = error.exception();
            assert_eq!(lambda_config_error(error).code.name(), name);
        }
    }
}
