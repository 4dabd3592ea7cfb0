//! Deployment configurations for the EC2/on-premises platform and their rules.
//!
//! A configuration says how many instances must stay healthy while a deployment runs
//! (the *minimum healthy hosts*). From it follow how many instances are deployed at once
//! (the fleet minus the minimum) and when the deployment as a whole succeeds
//! (at least the minimum, and never fewer than one, instances deployed successfully).

use serde::{Deserialize, Serialize};

pub const ONE_AT_A_TIME: &str = "CodeDeployDefault.OneAtATime";
pub const HALF_AT_A_TIME: &str = "CodeDeployDefault.HalfAtATime";
pub const ALL_AT_ONCE: &str = "CodeDeployDefault.AllAtOnce";

/// How many instances must remain healthy. Serialized in CodeDeploy's
/// `{"type": ..., "value": ...}` shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MinimumHealthyHosts {
    /// An absolute number of instances.
    HostCount(u32),
    /// A percentage of the fleet, 0-99, rounded up to whole instances.
    FleetPercent(u32),
    /// CodeDeployDefault.OneAtATime: every instance but one stays healthy. CodeDeploy
    /// reports it as `MOST_CONCURRENCY` with value 1; users cannot create it.
    MostConcurrency(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("minimumHealthyHosts.value: FLEET_PERCENT must be between 0 and 99, found {0}")]
    PercentOutOfRange(u32),
    #[error("minimumHealthyHosts.type: must be HOST_COUNT or FLEET_PERCENT")]
    ReservedType,
    #[error(
        "zonalConfig.minimumHealthyHostsPerZone.value: FLEET_PERCENT must be between 0 and 99, found {0}"
    )]
    ZonePercentOutOfRange(u32),
    #[error("zonalConfig.minimumHealthyHostsPerZone.type: must be HOST_COUNT or FLEET_PERCENT")]
    ZoneReservedType,
    #[error("deploymentConfigName: {0:?} is reserved for CodeDeploy's predefined configurations")]
    ReservedName(String),
    #[error("deploymentConfigName: must be 1 to 100 characters, found {0}")]
    NameLength(usize),
}

/// Why a deployment cannot start with this configuration and fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// CodeDeploy's HEALTH_CONSTRAINTS_INVALID: the minimum leaves no instance to deploy to.
    #[error(
        "HEALTH_CONSTRAINTS_INVALID: the deployment configuration requires {minimum} healthy instances, which leaves none of the {fleet} to deploy to"
    )]
    HealthConstraintsInvalid { minimum: u32, fleet: u32 },
    /// CodeDeploy's NO_INSTANCES: the deployment group matched no instance.
    #[error("NO_INSTANCES: the deployment group matched no instances")]
    NoInstances,
}

impl StartError {
    /// CodeDeploy's `errorInformation.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::HealthConstraintsInvalid { .. } => "HEALTH_CONSTRAINTS_INVALID",
            Self::NoInstances => "NO_INSTANCES",
        }
    }
}

impl MinimumHealthyHosts {
    /// The minimum number of healthy instances for a fleet of `fleet` instances.
    pub fn minimum(self, fleet: u32) -> u32 {
        match self {
            Self::HostCount(count) => count,
            Self::FleetPercent(percent) => {
                (u64::from(fleet) * u64::from(percent)).div_ceil(100) as u32
            }
            Self::MostConcurrency(_) => fleet.saturating_sub(1),
        }
    }

    fn check_user_value(self) -> Result<(), u32> {
        match self {
            Self::FleetPercent(percent) if percent > 99 => Err(percent),
            _ => Ok(()),
        }
    }
}

/// Deploy one Availability Zone at a time, waiting between zones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZonalConfig {
    /// Wait after the first zone; `monitorDurationInSeconds` when absent.
    #[serde(
        rename = "firstZoneMonitorDurationInSeconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub first_zone_monitor_duration_secs: Option<u64>,
    /// Wait after each zone before the next.
    #[serde(
        rename = "monitorDurationInSeconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub monitor_duration_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_healthy_hosts_per_zone: Option<MinimumHealthyHosts>,
}

impl ZonalConfig {
    /// How long to wait after finishing the zone at `zone_index` (0 is the first).
    pub fn monitor_after(&self, zone_index: usize) -> u64 {
        let regular = self.monitor_duration_secs.unwrap_or(0);
        if zone_index == 0 {
            self.first_zone_monitor_duration_secs.unwrap_or(regular)
        } else {
            regular
        }
    }

    /// How many instances of a zone of `zone_size` may be deployed at once.
    ///
    /// CodeDeploy does not document what happens when the per-zone minimum is not below
    /// the zone's size. Gantry then deploys that zone one instance at a time: the most
    /// cautious pace that still lets small zones make progress.
    pub fn zone_batch_size(&self, zone_size: u32) -> u32 {
        let minimum = self
            .minimum_healthy_hosts_per_zone
            .map(|rule| rule.minimum(zone_size))
            .unwrap_or(0);
        zone_size.saturating_sub(minimum).max(1)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentConfig {
    #[serde(rename = "deploymentConfigName")]
    pub name: String,
    pub minimum_healthy_hosts: MinimumHealthyHosts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zonal_config: Option<ZonalConfig>,
}

/// The numbers a deployment runs by, fixed when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthPlan {
    pub fleet: u32,
    /// Instances that must stay healthy at every moment.
    pub minimum_healthy: u32,
    /// Most instances deployed at once.
    pub batch_size: u32,
    /// Successful instances needed for the deployment to succeed.
    pub required_successes: u32,
}

impl HealthPlan {
    /// The plan of a launching instance's deployment, whatever the group's configuration:
    /// the instance is not in service yet, so no minimum applies, and it goes into service
    /// only if it succeeds.
    pub fn launch() -> Self {
        Self {
            fleet: 1,
            minimum_healthy: 0,
            batch_size: 1,
            required_successes: 1,
        }
    }
}

impl DeploymentConfig {
    pub fn predefined(name: &str) -> Option<Self> {
        let rule = match name {
            ONE_AT_A_TIME => MinimumHealthyHosts::MostConcurrency(1),
            HALF_AT_A_TIME => MinimumHealthyHosts::FleetPercent(50),
            ALL_AT_ONCE => MinimumHealthyHosts::FleetPercent(0),
            _ => return None,
        };
        Some(Self {
            name: name.to_owned(),
            minimum_healthy_hosts: rule,
            zonal_config: None,
        })
    }

    pub fn all_predefined() -> Vec<Self> {
        [ONE_AT_A_TIME, HALF_AT_A_TIME, ALL_AT_ONCE]
            .into_iter()
            .filter_map(Self::predefined)
            .collect()
    }

    /// A user's configuration, checked as CreateDeploymentConfig checks it.
    pub fn custom(
        name: &str,
        minimum_healthy_hosts: MinimumHealthyHosts,
        zonal_config: Option<ZonalConfig>,
    ) -> Result<Self, ConfigError> {
        check_name(name)?;
        if matches!(
            minimum_healthy_hosts,
            MinimumHealthyHosts::MostConcurrency(_)
        ) {
            return Err(ConfigError::ReservedType);
        }
        minimum_healthy_hosts
            .check_user_value()
            .map_err(ConfigError::PercentOutOfRange)?;
        if let Some(zone_rule) = zonal_config.and_then(|zonal| zonal.minimum_healthy_hosts_per_zone)
        {
            if matches!(zone_rule, MinimumHealthyHosts::MostConcurrency(_)) {
                return Err(ConfigError::ZoneReservedType);
            }
            zone_rule
                .check_user_value()
                .map_err(ConfigError::ZonePercentOutOfRange)?;
        }
        Ok(Self {
            name: name.to_owned(),
            minimum_healthy_hosts,
            zonal_config,
        })
    }

    /// Fixes the numbers for a fleet, or says why the deployment cannot start.
    pub fn health_plan(&self, fleet: u32) -> Result<HealthPlan, StartError> {
        if fleet == 0 {
            return Err(StartError::NoInstances);
        }
        let minimum = self.minimum_healthy_hosts.minimum(fleet);
        if minimum >= fleet {
            return Err(StartError::HealthConstraintsInvalid { minimum, fleet });
        }
        Ok(HealthPlan {
            fleet,
            minimum_healthy: minimum,
            batch_size: fleet - minimum,
            // At least one instance must succeed, even when the minimum is zero. For
            // OneAtATime this is the "last instance" exception: fleet - 1 successes
            // suffice, except that a single instance must succeed.
            required_successes: minimum.max(1),
        })
    }
}

/// A user's configuration name, checked as CreateDeploymentConfig checks it, whatever
/// the compute platform: 1 to 100 characters, and not in CodeDeploy's own namespace.
pub fn check_name(name: &str) -> Result<(), ConfigError> {
    let length = name.chars().count();
    if length == 0 || length > 100 {
        return Err(ConfigError::NameLength(length));
    }
    if name.starts_with("CodeDeployDefault.") {
        return Err(ConfigError::ReservedName(name.to_owned()));
    }
    Ok(())
}

impl HealthPlan {
    /// Whether a finished deployment with `succeeded` successful instances succeeded.
    pub fn is_success(&self, succeeded: u32) -> bool {
        succeeded >= self.required_successes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(rule: MinimumHealthyHosts, fleet: u32) -> Result<HealthPlan, StartError> {
        DeploymentConfig::custom("c", rule, None)
            .unwrap_or_else(|_| DeploymentConfig {
                name: "c".into(),
                minimum_healthy_hosts: rule,
                zonal_config: None,
            })
            .health_plan(fleet)
    }

    fn predefined(name: &str, fleet: u32) -> Result<HealthPlan, StartError> {
        DeploymentConfig::predefined(name)
            .unwrap()
            .health_plan(fleet)
    }

    #[test]
    fn documented_host_count_example() {
        // Nine instances, HOST_COUNT 6: up to three at a time, six must succeed.
        let plan = plan(MinimumHealthyHosts::HostCount(6), 9).unwrap();
        assert_eq!(plan.batch_size, 3);
        assert_eq!(plan.required_successes, 6);
        assert!(plan.is_success(6));
        assert!(!plan.is_success(5));
    }

    #[test]
    fn documented_fleet_percent_example() {
        // Nine instances, FLEET_PERCENT 40: minimum 4 (3.6 rounded up), five at a time.
        let plan = plan(MinimumHealthyHosts::FleetPercent(40), 9).unwrap();
        assert_eq!(plan.minimum_healthy, 4);
        assert_eq!(plan.batch_size, 5);
        assert!(plan.is_success(4));
        assert!(!plan.is_success(3));
    }

    #[test]
    fn documented_half_at_a_time_example() {
        // Nine instances: up to four at a time; succeeds with five or more.
        let plan = predefined(HALF_AT_A_TIME, 9).unwrap();
        assert_eq!(plan.batch_size, 4);
        assert!(plan.is_success(5));
        assert!(!plan.is_success(4));
    }

    #[test]
    fn documented_all_at_once_example() {
        // Nine instances: all nine at once; succeeds if any one succeeds.
        let plan = predefined(ALL_AT_ONCE, 9).unwrap();
        assert_eq!(plan.batch_size, 9);
        assert!(plan.is_success(1));
        assert!(!plan.is_success(0));
    }

    #[test]
    fn documented_one_at_a_time_rules() {
        let plan = predefined(ONE_AT_A_TIME, 9).unwrap();
        assert_eq!(plan.batch_size, 1);
        assert_eq!(plan.minimum_healthy, 8);
        // The last-instance exception: eight of nine is a success.
        assert!(plan.is_success(8));
        assert!(!plan.is_success(7));
        // A single-instance group needs that instance to succeed.
        let single = predefined(ONE_AT_A_TIME, 1).unwrap();
        assert_eq!(single.batch_size, 1);
        assert!(!single.is_success(0));
        assert!(single.is_success(1));
    }

    #[test]
    fn documented_eighty_five_percent_example() {
        // 85% of ten: minimum 9, so one instance at a time and a single failure is fatal.
        let plan = plan(MinimumHealthyHosts::FleetPercent(85), 10).unwrap();
        assert_eq!(plan.minimum_healthy, 9);
        assert_eq!(plan.batch_size, 1);
    }

    #[test]
    fn health_constraints_invalid_when_minimum_is_not_below_fleet() {
        assert_eq!(
            plan(MinimumHealthyHosts::HostCount(3), 3),
            Err(StartError::HealthConstraintsInvalid {
                minimum: 3,
                fleet: 3
            })
        );
        assert_eq!(
            predefined(HALF_AT_A_TIME, 1),
            Err(StartError::HealthConstraintsInvalid {
                minimum: 1,
                fleet: 1
            })
        );
        assert_eq!(
            plan(MinimumHealthyHosts::FleetPercent(99), 50)
                .unwrap_err()
                .code(),
            "HEALTH_CONSTRAINTS_INVALID"
        );
        assert!(plan(MinimumHealthyHosts::FleetPercent(99), 101).is_ok());
        assert_eq!(predefined(ALL_AT_ONCE, 0), Err(StartError::NoInstances));
    }

    #[test]
    fn percent_rounds_up() {
        let rule = MinimumHealthyHosts::FleetPercent(50);
        assert_eq!(rule.minimum(1), 1);
        assert_eq!(rule.minimum(2), 1);
        assert_eq!(rule.minimum(3), 2);
        assert_eq!(MinimumHealthyHosts::FleetPercent(0).minimum(7), 0);
        assert_eq!(MinimumHealthyHosts::FleetPercent(1).minimum(1000), 10);
        assert_eq!(MinimumHealthyHosts::FleetPercent(1).minimum(1001), 11);
    }

    #[test]
    fn custom_configs_are_checked() {
        assert_eq!(
            DeploymentConfig::custom("c", MinimumHealthyHosts::FleetPercent(100), None),
            Err(ConfigError::PercentOutOfRange(100))
        );
        assert_eq!(
            DeploymentConfig::custom("c", MinimumHealthyHosts::MostConcurrency(1), None),
            Err(ConfigError::ReservedType)
        );
        assert!(matches!(
            DeploymentConfig::custom(ONE_AT_A_TIME, MinimumHealthyHosts::HostCount(1), None),
            Err(ConfigError::ReservedName(_))
        ));
        assert_eq!(
            DeploymentConfig::custom("", MinimumHealthyHosts::HostCount(1), None),
            Err(ConfigError::NameLength(0))
        );
        let zonal = ZonalConfig {
            minimum_healthy_hosts_per_zone: Some(MinimumHealthyHosts::FleetPercent(120)),
            ..Default::default()
        };
        assert_eq!(
            DeploymentConfig::custom("c", MinimumHealthyHosts::HostCount(1), Some(zonal)),
            Err(ConfigError::ZonePercentOutOfRange(120))
        );
    }

    #[test]
    fn zonal_monitor_durations_and_batches() {
        let zonal = ZonalConfig {
            first_zone_monitor_duration_secs: Some(600),
            monitor_duration_secs: Some(60),
            minimum_healthy_hosts_per_zone: Some(MinimumHealthyHosts::FleetPercent(50)),
        };
        assert_eq!(zonal.monitor_after(0), 600);
        assert_eq!(zonal.monitor_after(1), 60);
        assert_eq!(zonal.zone_batch_size(4), 2);
        assert_eq!(
            zonal.zone_batch_size(1),
            1,
            "small zones still make progress"
        );
        let plain = ZonalConfig {
            monitor_duration_secs: Some(30),
            ..Default::default()
        };
        assert_eq!(plain.monitor_after(0), 30);
        assert_eq!(plain.zone_batch_size(5), 5);
    }

    #[test]
    fn serializes_in_codedeploy_shape() {
        let config = DeploymentConfig::custom(
            "Gantry.TwoAtATime",
            MinimumHealthyHosts::HostCount(2),
            Some(ZonalConfig {
                first_zone_monitor_duration_secs: None,
                monitor_duration_secs: Some(60),
                minimum_healthy_hosts_per_zone: Some(MinimumHealthyHosts::FleetPercent(50)),
            }),
        )
        .unwrap();
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "deploymentConfigName": "Gantry.TwoAtATime",
                "minimumHealthyHosts": {"type": "HOST_COUNT", "value": 2},
                "zonalConfig": {
                    "monitorDurationInSeconds": 60,
                    "minimumHealthyHostsPerZone": {"type": "FLEET_PERCENT", "value": 50}
                }
            })
        );
        let one =
            serde_json::to_value(DeploymentConfig::predefined(ONE_AT_A_TIME).unwrap()).unwrap();
        assert_eq!(
            one["minimumHealthyHosts"],
            serde_json::json!({"type": "MOST_CONCURRENCY", "value": 1})
        );
        let back: DeploymentConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, config);
    }
}
