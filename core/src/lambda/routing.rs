//! How traffic moves from the current version to the target version: CodeDeploy's
//! `trafficRoutingConfig` ([`TrafficRouting`]), its predefined Lambda configurations
//! ([`predefined`]) and users' own ([`LambdaDeploymentConfig::custom`]), and the
//! schedule of weights a routing makes ([`TrafficRouting::steps`]).

use crate::config::{ConfigError, check_name};
use crate::deployment::Millis;
use serde::{Deserialize, Serialize};

pub const LAMBDA_CANARY_10_PERCENT_5_MINUTES: &str =
    "CodeDeployDefault.LambdaCanary10Percent5Minutes";
pub const LAMBDA_CANARY_10_PERCENT_10_MINUTES: &str =
    "CodeDeployDefault.LambdaCanary10Percent10Minutes";
pub const LAMBDA_CANARY_10_PERCENT_15_MINUTES: &str =
    "CodeDeployDefault.LambdaCanary10Percent15Minutes";
pub const LAMBDA_CANARY_10_PERCENT_30_MINUTES: &str =
    "CodeDeployDefault.LambdaCanary10Percent30Minutes";
pub const LAMBDA_LINEAR_10_PERCENT_EVERY_1_MINUTE: &str =
    "CodeDeployDefault.LambdaLinear10PercentEvery1Minute";
pub const LAMBDA_LINEAR_10_PERCENT_EVERY_2_MINUTES: &str =
    "CodeDeployDefault.LambdaLinear10PercentEvery2Minutes";
pub const LAMBDA_LINEAR_10_PERCENT_EVERY_3_MINUTES: &str =
    "CodeDeployDefault.LambdaLinear10PercentEvery3Minutes";
pub const LAMBDA_LINEAR_10_PERCENT_EVERY_10_MINUTES: &str =
    "CodeDeployDefault.LambdaLinear10PercentEvery10Minutes";
pub const LAMBDA_ALL_AT_ONCE: &str = "CodeDeployDefault.LambdaAllAtOnce";

/// The predefined Lambda configurations' names, in the order of CodeDeploy's user guide
/// ("Deployment configurations on an AWS Lambda compute platform").
pub const PREDEFINED_NAMES: [&str; 9] = [
    LAMBDA_CANARY_10_PERCENT_5_MINUTES,
    LAMBDA_CANARY_10_PERCENT_10_MINUTES,
    LAMBDA_CANARY_10_PERCENT_15_MINUTES,
    LAMBDA_CANARY_10_PERCENT_30_MINUTES,
    LAMBDA_LINEAR_10_PERCENT_EVERY_1_MINUTE,
    LAMBDA_LINEAR_10_PERCENT_EVERY_2_MINUTES,
    LAMBDA_LINEAR_10_PERCENT_EVERY_3_MINUTES,
    LAMBDA_LINEAR_10_PERCENT_EVERY_10_MINUTES,
    LAMBDA_ALL_AT_ONCE,
];

/// The longest interval Gantry accepts between two steps, in minutes: two days.
/// CodeDeploy documents no maximum; Gantry caps it so that a typo (minutes taken for
/// seconds, say) cannot hold an alias half-shifted for weeks, and so that offsets stay
/// far from overflowing even with a hundred steps.
pub const MAX_INTERVAL_MINUTES: u32 = 2880;

use super::MINUTE_MS;

/// `timeBasedCanary`: `canaryPercentage` percent of the traffic first, the rest
/// `canaryInterval` minutes later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeBasedCanary {
    pub canary_percentage: u32,
    pub canary_interval: u32,
}

/// `timeBasedLinear`: `linearPercentage` percent more of the traffic every
/// `linearInterval` minutes, the first step at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeBasedLinear {
    pub linear_percentage: u32,
    pub linear_interval: u32,
}

/// A valid traffic routing configuration. Serialized in CodeDeploy's
/// `trafficRoutingConfig` shape (see [`TrafficRoutingConfig`]), and checked as it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TrafficRoutingConfig", into = "TrafficRoutingConfig")]
pub enum TrafficRouting {
    TimeBasedCanary(TimeBasedCanary),
    TimeBasedLinear(TimeBasedLinear),
    AllAtOnce,
}

/// CodeDeploy's `trafficRoutingConfig` as a request carries it, not yet checked: `type`
/// names which of the two sub-objects must be present. [`TrafficRouting::try_from`]
/// checks it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficRoutingConfig {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_based_canary: Option<TimeBasedCanary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_based_linear: Option<TimeBasedLinear>,
}

/// Why a `trafficRoutingConfig` is refused. Each message names the field and says what
/// is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    #[error(
        "trafficRoutingConfig.type: must be TimeBasedCanary, TimeBasedLinear or AllAtOnce, found {0:?}"
    )]
    Type(Option<String>),
    #[error("trafficRoutingConfig.{field}: required when type is {kind}")]
    Missing {
        field: &'static str,
        kind: &'static str,
    },
    #[error("trafficRoutingConfig.{field}: must be absent when type is {kind}")]
    Unexpected {
        field: &'static str,
        kind: &'static str,
    },
    /// A linear step of 100 percent is AllAtOnce, and a canary of 100 percent too.
    #[error("trafficRoutingConfig.{field}: must be 1 to 99, found {found}")]
    Percentage { field: &'static str, found: u32 },
    #[error(
        "trafficRoutingConfig.{field}: must be 1 to {MAX_INTERVAL_MINUTES} minutes, found {found}"
    )]
    Interval { field: &'static str, found: u32 },
}

impl RoutingError {
    /// CodeDeploy's exception for it. CreateDeploymentConfig answers a bad
    /// `trafficRoutingConfig` with InvalidTrafficRoutingConfigurationException (its
    /// documented errors list it; InvalidInputException is not among them).
    pub fn exception(&self) -> &'static str {
        "InvalidTrafficRoutingConfigurationException"
    }
}

const CANARY: &str = "TimeBasedCanary";
const LINEAR: &str = "TimeBasedLinear";
const ALL_AT_ONCE: &str = "AllAtOnce";

fn check_percentage(field: &'static str, found: u32) -> Result<(), RoutingError> {
    if (1..=99).contains(&found) {
        Ok(())
    } else {
        Err(RoutingError::Percentage { field, found })
    }
}

fn check_interval(field: &'static str, found: u32) -> Result<(), RoutingError> {
    if (1..=MAX_INTERVAL_MINUTES).contains(&found) {
        Ok(())
    } else {
        Err(RoutingError::Interval { field, found })
    }
}

impl TryFrom<TrafficRoutingConfig> for TrafficRouting {
    type Error = RoutingError;

    fn try_from(config: TrafficRoutingConfig) -> Result<Self, RoutingError> {
        let TrafficRoutingConfig {
            kind,
            time_based_canary,
            time_based_linear,
        } = config;
        let kind_name = match kind.as_deref() {
            Some(CANARY) => CANARY,
            Some(LINEAR) => LINEAR,
            Some(ALL_AT_ONCE) => ALL_AT_ONCE,
            _ => return Err(RoutingError::Type(kind)),
        };
        let unexpected = |field| RoutingError::Unexpected {
            field,
            kind: kind_name,
        };
        let missing = |field| RoutingError::Missing {
            field,
            kind: kind_name,
        };
        if kind_name != CANARY && time_based_canary.is_some() {
            return Err(unexpected("timeBasedCanary"));
        }
        if kind_name != LINEAR && time_based_linear.is_some() {
            return Err(unexpected("timeBasedLinear"));
        }
        match kind_name {
            CANARY => {
                let canary = time_based_canary.ok_or_else(|| missing("timeBasedCanary"))?;
                check_percentage("timeBasedCanary.canaryPercentage", canary.canary_percentage)?;
                check_interval("timeBasedCanary.canaryInterval", canary.canary_interval)?;
                Ok(Self::TimeBasedCanary(canary))
            }
            LINEAR => {
                let linear = time_based_linear.ok_or_else(|| missing("timeBasedLinear"))?;
                check_percentage("timeBasedLinear.linearPercentage", linear.linear_percentage)?;
                check_interval("timeBasedLinear.linearInterval", linear.linear_interval)?;
                Ok(Self::TimeBasedLinear(linear))
            }
            _ => Ok(Self::AllAtOnce),
        }
    }
}

impl From<TrafficRouting> for TrafficRoutingConfig {
    fn from(routing: TrafficRouting) -> Self {
        let (kind, time_based_canary, time_based_linear) = match routing {
            TrafficRouting::TimeBasedCanary(canary) => (CANARY, Some(canary), None),
            TrafficRouting::TimeBasedLinear(linear) => (LINEAR, None, Some(linear)),
            TrafficRouting::AllAtOnce => (ALL_AT_ONCE, None, None),
        };
        Self {
            kind: Some(kind.to_owned()),
            time_based_canary,
            time_based_linear,
        }
    }
}

/// One step of the schedule: from `offset_ms` after shifting starts, the target version
/// gets `percent` of the traffic and the current version the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub percent: u32,
    pub offset_ms: Millis,
}

impl TrafficRouting {
    /// A canary of `percentage` percent, the rest `interval_minutes` later, checked.
    pub fn canary(percentage: u32, interval_minutes: u32) -> Result<Self, RoutingError> {
        Self::try_from(TrafficRoutingConfig::from(Self::TimeBasedCanary(
            TimeBasedCanary {
                canary_percentage: percentage,
                canary_interval: interval_minutes,
            },
        )))
    }

    /// `percentage` percent more every `interval_minutes`, checked.
    pub fn linear(percentage: u32, interval_minutes: u32) -> Result<Self, RoutingError> {
        Self::try_from(TrafficRoutingConfig::from(Self::TimeBasedLinear(
            TimeBasedLinear {
                linear_percentage: percentage,
                linear_interval: interval_minutes,
            },
        )))
    }

    /// The weights the target version gets and when, from the start of shifting. The
    /// first step is at offset 0; weights and offsets strictly increase; the last step
    /// is 100 percent.
    ///
    /// - Canary p over n minutes: p at once, 100 after n minutes.
    /// - Linear p every n minutes: p, 2p, ... n minutes apart, the last capped at 100
    ///   (30 every minute: 30, 60, 90, 100), so ceil(100 / p) steps.
    /// - AllAtOnce: 100 at once.
    ///
    /// A value built without the checks (a percentage outside 1-99, an interval of 0)
    /// still gives a schedule that keeps these rules: a percentage of 0 counts as 1, one
    /// of 100 or more is a single step of 100, and an interval of 0 counts as 1 minute.
    pub fn steps(&self) -> Vec<Step> {
        match *self {
            Self::TimeBasedCanary(TimeBasedCanary {
                canary_percentage,
                canary_interval,
            }) => {
                if canary_percentage >= 100 {
                    return vec![full_at_once()];
                }
                vec![
                    Step {
                        percent: canary_percentage.max(1),
                        offset_ms: 0,
                    },
                    Step {
                        percent: 100,
                        offset_ms: minutes(canary_interval),
                    },
                ]
            }
            Self::TimeBasedLinear(TimeBasedLinear {
                linear_percentage,
                linear_interval,
            }) => {
                let increment = linear_percentage.clamp(1, 100);
                let count = 100u32.div_ceil(increment);
                (0..count)
                    .map(|index| Step {
                        percent: ((index + 1) * increment).min(100),
                        offset_ms: minutes(linear_interval) * Millis::from(index),
                    })
                    .collect()
            }
            Self::AllAtOnce => vec![full_at_once()],
        }
    }
}

fn full_at_once() -> Step {
    Step {
        percent: 100,
        offset_ms: 0,
    }
}

fn minutes(count: u32) -> Millis {
    Millis::from(count.max(1)) * MINUTE_MS
}

/// A predefined Lambda configuration's routing, by its CodeDeploy name.
pub fn predefined(name: &str) -> Option<TrafficRouting> {
    let canary = |minutes| {
        TrafficRouting::TimeBasedCanary(TimeBasedCanary {
            canary_percentage: 10,
            canary_interval: minutes,
        })
    };
    let linear = |minutes| {
        TrafficRouting::TimeBasedLinear(TimeBasedLinear {
            linear_percentage: 10,
            linear_interval: minutes,
        })
    };
    Some(match name {
        LAMBDA_CANARY_10_PERCENT_5_MINUTES => canary(5),
        LAMBDA_CANARY_10_PERCENT_10_MINUTES => canary(10),
        LAMBDA_CANARY_10_PERCENT_15_MINUTES => canary(15),
        LAMBDA_CANARY_10_PERCENT_30_MINUTES => canary(30),
        LAMBDA_LINEAR_10_PERCENT_EVERY_1_MINUTE => linear(1),
        LAMBDA_LINEAR_10_PERCENT_EVERY_2_MINUTES => linear(2),
        LAMBDA_LINEAR_10_PERCENT_EVERY_3_MINUTES => linear(3),
        LAMBDA_LINEAR_10_PERCENT_EVERY_10_MINUTES => linear(10),
        LAMBDA_ALL_AT_ONCE => TrafficRouting::AllAtOnce,
        _ => return None,
    })
}

/// A deployment configuration of the Lambda compute platform: its name and routing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaDeploymentConfig {
    #[serde(rename = "deploymentConfigName")]
    pub name: String,
    pub traffic_routing_config: TrafficRouting,
}

/// Why CreateDeploymentConfig refuses a Lambda configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LambdaConfigError {
    #[error(transparent)]
    Name(ConfigError),
    #[error(transparent)]
    Routing(RoutingError),
}

impl LambdaConfigError {
    /// CodeDeploy's exception for it.
    pub fn exception(&self) -> &'static str {
        match self {
            Self::Name(_) => "InvalidDeploymentConfigNameException",
            Self::Routing(error) => error.exception(),
        }
    }
}

impl LambdaDeploymentConfig {
    pub fn predefined(name: &str) -> Option<Self> {
        Some(Self {
            name: name.to_owned(),
            traffic_routing_config: predefined(name)?,
        })
    }

    pub fn all_predefined() -> Vec<Self> {
        PREDEFINED_NAMES
            .into_iter()
            .filter_map(Self::predefined)
            .collect()
    }

    /// A user's configuration, checked as CreateDeploymentConfig checks it: the name
    /// first, then the routing.
    pub fn custom(name: &str, routing: TrafficRoutingConfig) -> Result<Self, LambdaConfigError> {
        check_name(name).map_err(LambdaConfigError::Name)?;
        let traffic_routing_config =
            TrafficRouting::try_from(routing).map_err(LambdaConfigError::Routing)?;
        Ok(Self {
            name: name.to_owned(),
            traffic_routing_config,
        })
    }
}
