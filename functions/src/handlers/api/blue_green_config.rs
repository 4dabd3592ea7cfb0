//! A deployment group's `blueGreenDeploymentConfiguration`: parts given, kept or
//! CodeDeploy's defaults, each checked.

use crate::error::{ApiError, Exception};
use serde::Deserialize;
use serde_json::Value;

pub(super) const BLUE_GREEN_FIELD: &str = "blueGreenDeploymentConfiguration";

/// CodeDeploy's longest wait of a blue/green deployment, in minutes (two days).
const MAX_BLUE_GREEN_WAIT_MINUTES: i64 = 2880;

/// `blueGreenDeploymentConfiguration` as given: every part and field may be left out.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BlueGreenInput {
    #[serde(default)]
    terminate_blue_instances_on_deployment_success: Option<BlueInstanceTerminationInput>,
    #[serde(default)]
    deployment_ready_option: Option<DeploymentReadyInput>,
    #[serde(default)]
    green_fleet_provisioning_option: Option<GreenFleetInput>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BlueInstanceTerminationInput {
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    termination_wait_time_in_minutes: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeploymentReadyInput {
    #[serde(default)]
    action_on_timeout: Option<String>,
    #[serde(default)]
    wait_time_in_minutes: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GreenFleetInput {
    #[serde(default)]
    action: Option<String>,
}

/// CodeDeploy's defaults: terminate the original instances an hour after success,
/// reroute as soon as the replacements are ready, and replace with instances the
/// deployment names (DISCOVER_EXISTING).
pub(super) fn blue_green_defaults() -> crate::model::BlueGreenConfiguration {
    use crate::model::{
        BlueGreenConfiguration, BlueInstanceTermination, CONTINUE_DEPLOYMENT, DISCOVER_EXISTING,
        DeploymentReadyOption, GreenFleetProvisioningOption, TERMINATE,
    };
    BlueGreenConfiguration {
        terminate_blue_instances_on_deployment_success: BlueInstanceTermination {
            action: TERMINATE.into(),
            termination_wait_time_in_minutes: 60,
        },
        deployment_ready_option: DeploymentReadyOption {
            action_on_timeout: CONTINUE_DEPLOYMENT.into(),
            wait_time_in_minutes: 0,
        },
        green_fleet_provisioning_option: GreenFleetProvisioningOption {
            action: DISCOVER_EXISTING.into(),
        },
    }
}

/// Reads a given `blueGreenDeploymentConfiguration`. A part it leaves out is `kept`'s
/// (the group's, on an update) or CodeDeploy's default; a field a part leaves out (or
/// leaves blank) is CodeDeploy's default. Errors name the field and say what is allowed.
pub(super) fn blue_green_configuration(
    value: &Value,
    kept: Option<&crate::model::BlueGreenConfiguration>,
) -> Result<crate::model::BlueGreenConfiguration, ApiError> {
    use crate::model::{
        BlueInstanceTermination, CONTINUE_DEPLOYMENT, COPY_AUTO_SCALING_GROUP, DISCOVER_EXISTING,
        DeploymentReadyOption, GreenFleetProvisioningOption, KEEP_ALIVE, STOP_DEPLOYMENT,
        TERMINATE,
    };
    let input: BlueGreenInput =
        serde_path_to_error::deserialize(value.clone()).map_err(|error| {
            let path = error.path().to_string();
            let inner = error.into_inner();
            if path == "." {
                blue_green_invalid(BLUE_GREEN_FIELD, inner)
            } else {
                blue_green_invalid(&format!("{BLUE_GREEN_FIELD}.{path}"), inner)
            }
        })?;
    let defaults = blue_green_defaults();
    let mut config = kept.cloned().unwrap_or_else(|| defaults.clone());
    if let Some(part) = input.terminate_blue_instances_on_deployment_success {
        let field = "terminateBlueInstancesOnDeploymentSuccess";
        config.terminate_blue_instances_on_deployment_success = BlueInstanceTermination {
            action: blue_green_choice(
                &format!("{field}.action"),
                part.action,
                [TERMINATE, KEEP_ALIVE],
            )?,
            termination_wait_time_in_minutes: blue_green_minutes(
                &format!("{field}.terminationWaitTimeInMinutes"),
                part.termination_wait_time_in_minutes,
                defaults
                    .terminate_blue_instances_on_deployment_success
                    .termination_wait_time_in_minutes,
            )?,
        };
    }
    if let Some(part) = input.deployment_ready_option {
        let field = "deploymentReadyOption";
        config.deployment_ready_option = DeploymentReadyOption {
            action_on_timeout: blue_green_choice(
                &format!("{field}.actionOnTimeout"),
                part.action_on_timeout,
                [CONTINUE_DEPLOYMENT, STOP_DEPLOYMENT],
            )?,
            // Only STOP_DEPLOYMENT waits; CodeDeploy keeps the number either way.
            wait_time_in_minutes: blue_green_minutes(
                &format!("{field}.waitTimeInMinutes"),
                part.wait_time_in_minutes,
                defaults.deployment_ready_option.wait_time_in_minutes,
            )?,
        };
    }
    if let Some(part) = input.green_fleet_provisioning_option {
        config.green_fleet_provisioning_option = GreenFleetProvisioningOption {
            action: blue_green_choice(
                "greenFleetProvisioningOption.action",
                part.action,
                [DISCOVER_EXISTING, COPY_AUTO_SCALING_GROUP],
            )?,
        };
    }
    Ok(config)
}

/// InvalidBlueGreenDeploymentConfigurationException about `field` (a path under
/// `blueGreenDeploymentConfiguration`).
fn blue_green_invalid(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        Exception::InvalidBlueGreenDeploymentConfiguration,
        format!("{field}: {message}"),
    )
}

/// One of the two `allowed` values of `field`; left out or blank (a CLI skeleton's ""),
/// the first: CodeDeploy's default.
fn blue_green_choice(
    field: &str,
    given: Option<String>,
    allowed: [&str; 2],
) -> Result<String, ApiError> {
    match given.filter(|given| !given.is_empty()) {
        None => Ok(allowed[0].to_owned()),
        Some(given) if allowed.contains(&given.as_str()) => Ok(given),
        Some(given) => Err(blue_green_invalid(
            &format!("{BLUE_GREEN_FIELD}.{field}"),
            format!("{given:?} is not {} or {}", allowed[0], allowed[1]),
        )),
    }
}

/// A wait of `field`, 0 to 2880 minutes; left out, `default`.
fn blue_green_minutes(field: &str, given: Option<i64>, default: u32) -> Result<u32, ApiError> {
    let Some(given) = given else {
        return Ok(default);
    };
    u32::try_from(given)
        .ok()
        .filter(|&minutes| i64::from(minutes) <= MAX_BLUE_GREEN_WAIT_MINUTES)
        .ok_or_else(|| {
            blue_green_invalid(
                &format!("{BLUE_GREEN_FIELD}.{field}"),
                format!("{given} minutes; give 0 to {MAX_BLUE_GREEN_WAIT_MINUTES} (two days)"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parts_left_out_are_kept_or_codedeploys_defaults() {
        let given = json!({"deploymentReadyOption": {"actionOnTimeout": "STOP_DEPLOYMENT"}});
        let config = blue_green_configuration(&given, None).unwrap();
        let mut expected = blue_green_defaults();
        expected.deployment_ready_option.action_on_timeout = "STOP_DEPLOYMENT".into();
        assert_eq!(config, expected);

        let mut kept = blue_green_defaults();
        kept.green_fleet_provisioning_option.action = "COPY_AUTO_SCALING_GROUP".into();
        kept.deployment_ready_option.wait_time_in_minutes = 30;
        let given = json!({"terminateBlueInstancesOnDeploymentSuccess": {"action": "KEEP_ALIVE"}});
        let config = blue_green_configuration(&given, Some(&kept)).unwrap();
        let mut expected = kept.clone();
        expected
            .terminate_blue_instances_on_deployment_success
            .action = "KEEP_ALIVE".into();
        assert_eq!(config, expected);
    }

    #[test]
    fn errors_name_the_field_and_what_is_allowed() {
        for (given, field, allowed) in [
            (
                json!({"greenFleetProvisioningOption": {"action": "DISCOVER_EXISTING", "size": 3}}),
                "blueGreenDeploymentConfiguration.greenFleetProvisioningOption",
                "unknown field `size`",
            ),
            (
                json!({"deploymentReadyOption": {"waitTimeInMinutes": 1.5}}),
                "blueGreenDeploymentConfiguration.deploymentReadyOption.waitTimeInMinutes",
                "invalid type",
            ),
            (
                json!({"terminateBlueInstancesOnDeploymentSuccess": {"terminationWaitTimeInMinutes": 2881}}),
                "blueGreenDeploymentConfiguration.terminateBlueInstancesOnDeploymentSuccess.terminationWaitTimeInMinutes",
                "give 0 to 2880",
            ),
            (
                json!({"blueGreen": {}}),
                "blueGreenDeploymentConfiguration",
                "unknown field `blueGreen`",
            ),
        ] {
            let error = blue_green_configuration(&given, None).unwrap_err();
            assert_eq!(
                error.code,
                Exception::InvalidBlueGreenDeploymentConfiguration
            );
            assert!(
                error.message.starts_with(field) && error.message.contains(allowed),
                "{given}: {}",
                error.message
            );
        }
    }
}
