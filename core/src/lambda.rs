//! The AWS Lambda compute platform: a deployment moves one alias's traffic from its
//! function's current version to a target version, by a traffic routing configuration.
//!
//! Like [`crate::deployment`], the deployment is a pure state machine:
//! [`LambdaDeployment::apply`] takes an [`Input`] (it starts, a hook answers, time passes,
//! an alarm fires, someone stops it) and returns [`Effect`]s for the adapters (invoke a
//! hook, set the alias's weights, notify, free the group). Nothing here sleeps:
//! [`LambdaDeployment::next_wakeup`] tells the scheduler when the next tick matters.
//!
//! A deployment goes through [`Stage`]s, as CodeDeploy's user guide describes them
//! ("AppSpec 'hooks' section for an AWS Lambda deployment"):
//! 1. BeforeAllowTraffic: the appspec's hook function for it is invoked and must answer
//!    Succeeded before any traffic moves. Skipped when the appspec names none.
//! 2. Shifting: the [`TrafficRouting`]'s [`Step`]s, each due at its offset from the start
//!    of this stage; the last one points the alias at the target version.
//! 3. AfterAllowTraffic: the hook for it, with all traffic on the target version.
//!    Skipped when the appspec names none.
//! 4. Succeeded.
//!
//! A hook that answers Failed or does not answer within [`HOOK_TIMEOUT_MS`] fails the
//! deployment; an alarm in ALARM or StopDeployment stops it. Either way the alias goes
//! back to the current version if any traffic had moved, whatever the group's rollback
//! settings: a half-shifted alias is never left behind, and a Lambda deployment has
//! nothing else to undo. When no traffic had moved, the alias is left alone.
//!
//! The state is one small record ([`LambdaDeployment`]), stored as is: the schedule is
//! recomputed from the routing, and only how many of its steps were applied is kept.

use crate::deployment::{DeploymentStatus, ErrorInformation, Millis};
use crate::wire::EventStatus;
use serde::{Deserialize, Serialize};

mod apply;
mod effect;
mod input;
mod routing;
pub use effect::{Effect, HookEvent, hook_execution_id};
pub use input::{ApplyError, Input};
pub use routing::{
    LAMBDA_ALL_AT_ONCE, LAMBDA_CANARY_10_PERCENT_5_MINUTES, LAMBDA_CANARY_10_PERCENT_10_MINUTES,
    LAMBDA_CANARY_10_PERCENT_15_MINUTES, LAMBDA_CANARY_10_PERCENT_30_MINUTES,
    LAMBDA_LINEAR_10_PERCENT_EVERY_1_MINUTE, LAMBDA_LINEAR_10_PERCENT_EVERY_2_MINUTES,
    LAMBDA_LINEAR_10_PERCENT_EVERY_3_MINUTES, LAMBDA_LINEAR_10_PERCENT_EVERY_10_MINUTES,
    LambdaConfigError, LambdaDeploymentConfig, MAX_INTERVAL_MINUTES, PREDEFINED_NAMES,
    RoutingError, Step, TimeBasedCanary, TimeBasedLinear, TrafficRouting, TrafficRoutingConfig,
    predefined,
};

/// How long a hook function has to answer once it is invoked: one hour. CodeDeploy fails
/// a Lambda deployment whose hook has not reported its status through
/// PutLifecycleEventHookExecutionStatus within one hour of being invoked.
pub const HOOK_TIMEOUT_MS: Millis = 60 * 60 * 1000;

/// CodeDeploy's error code for a deployment whose hook answered Failed.
pub const HOOK_EXECUTION_FAILURE: &str = "HOOK_EXECUTION_FAILURE";

/// Where a Lambda deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stage {
    /// Stored, not started.
    Created,
    BeforeAllowTraffic,
    Shifting,
    AfterAllowTraffic,
    Succeeded,
    Failed,
    Stopped,
}

impl Stage {
    /// The deployment's status as CodeDeploy reports it.
    pub fn status(self) -> DeploymentStatus {
        match self {
            Self::Created => DeploymentStatus::Created,
            Self::BeforeAllowTraffic | Self::Shifting | Self::AfterAllowTraffic => {
                DeploymentStatus::InProgress
            }
            Self::Succeeded => DeploymentStatus::Succeeded,
            Self::Failed => DeploymentStatus::Failed,
            Self::Stopped => DeploymentStatus::Stopped,
        }
    }

    pub fn is_terminal(self) -> bool {
        self.status().is_terminal()
    }
}

/// The alias a deployment moves, as the appspec's `Resources` name it: `Name`, `Alias`,
/// `CurrentVersion`, `TargetVersion`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AliasShift {
    pub function_name: String,
    pub alias: String,
    pub current_version: String,
    pub target_version: String,
}

impl AliasShift {
    /// The alias as CodeDeploy names a Lambda deployment's target: `function:alias`, the
    /// function by its name even when the appspec gives its ARN.
    pub fn target_id(&self) -> String {
        let function = &self.function_name;
        let name = function
            .split(':')
            .skip_while(|part| *part != "function")
            .nth(1)
            .unwrap_or(function);
        format!("{name}:{}", self.alias)
    }
}

/// The appspec's `hooks`: the function to invoke for each event, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hooks {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_allow_traffic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_allow_traffic: Option<String>,
}

impl Hooks {
    pub fn function(&self, event: HookEvent) -> Option<&str> {
        match event {
            HookEvent::BeforeAllowTraffic => self.before_allow_traffic.as_deref(),
            HookEvent::AfterAllowTraffic => self.after_allow_traffic.as_deref(),
        }
    }
}

/// One hook of the deployment: Pending until invoked, InProgress until it answers (or
/// its deadline passes), then Succeeded or Failed; Skipped when the deployment ends
/// before it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookRecord {
    pub event: HookEvent,
    pub function: String,
    pub execution_id: String,
    pub status: EventStatus,
    /// When it was invoked; None if it never was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Millis>,
    /// While it runs: when it fails for not having answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Millis>,
}

/// One Lambda deployment: what it moves, how, and how far it has come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaDeployment {
    pub deployment_id: String,
    pub alias: AliasShift,
    pub routing: TrafficRouting,
    /// The hooks the appspec names, in the order they run.
    pub hooks: Vec<HookRecord>,
    pub stage: Stage,
    /// When shifting started: the steps' offsets count from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shifting_start: Option<Millis>,
    /// Steps `0..steps_applied` of `routing.steps()` were applied.
    pub steps_applied: u32,
    /// The target version's share of the alias's traffic now, in percent: 0 before
    /// shifting and again after a rollback, 100 once the alias points at it.
    pub weight: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInformation>,
    pub create_time: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_time: Option<Millis>,
    /// How long one minute of the routing's intervals lasts: [`MINUTE_MS`], unless a
    /// setting shortens the waits for a test or a demo (the steps and their weights stay
    /// the routing's; only the clock they are read with is faster).
    #[serde(default = "a_minute")]
    pub minute_ms: Millis,
}

/// A minute, in milliseconds.
pub const MINUTE_MS: Millis = 60 * 1000;

fn a_minute() -> Millis {
    MINUTE_MS
}

impl LambdaDeployment {
    /// A deployment that has not started. `hook_secret`: random, chosen by the caller,
    /// part of each hook's execution id (see [`hook_execution_id`]).
    pub fn new(
        deployment_id: String,
        alias: AliasShift,
        routing: TrafficRouting,
        hooks: &Hooks,
        hook_secret: &str,
        create_time: Millis,
    ) -> Self {
        let hooks = HookEvent::ALL
            .into_iter()
            .filter_map(|event| {
                let function = hooks.function(event)?;
                Some(HookRecord {
                    event,
                    function: function.to_owned(),
                    execution_id: hook_execution_id(&deployment_id, event, hook_secret),
                    status: EventStatus::Pending,
                    start_time: None,
                    end_time: None,
                    deadline: None,
                })
            })
            .collect();
        Self {
            deployment_id,
            alias,
            routing,
            hooks,
            stage: Stage::Created,
            shifting_start: None,
            steps_applied: 0,
            weight: 0,
            error: None,
            create_time,
            start_time: None,
            complete_time: None,
            minute_ms: MINUTE_MS,
        }
    }

    /// The same deployment with its intervals read as minutes of `minute_ms` (at least
    /// 1 ms): see [`Self::minute_ms`].
    pub fn with_minute_ms(mut self, minute_ms: Millis) -> Self {
        self.minute_ms = minute_ms.max(1);
        self
    }

    /// The routing's steps, their offsets on this deployment's clock.
    pub fn steps(&self) -> Vec<Step> {
        self.routing
            .steps()
            .into_iter()
            .map(|step| Step {
                percent: step.percent,
                offset_ms: step.offset_ms.saturating_mul(self.minute_ms) / MINUTE_MS,
            })
            .collect()
    }

    /// The next step while traffic moves: when it is due and the target version's share
    /// after it.
    pub fn next_step(&self) -> Option<(Millis, u32)> {
        if self.stage != Stage::Shifting {
            return None;
        }
        let start = self.shifting_start?;
        let step = self.steps().get(self.steps_applied as usize).copied()?;
        Some((start.saturating_add(step.offset_ms), step.percent))
    }

    pub fn status(&self) -> DeploymentStatus {
        self.stage.status()
    }

    /// The record of the hook for `event`, if the appspec names one.
    pub fn hook(&self, event: HookEvent) -> Option<&HookRecord> {
        self.hooks.iter().find(|hook| hook.event == event)
    }

    /// When the next tick matters: the next step of the schedule while shifting, or the
    /// running hook's deadline. None when nothing is waited for by time (not started, or
    /// ended).
    pub fn next_wakeup(&self) -> Option<Millis> {
        match self.stage {
            Stage::Shifting => self.next_step().map(|(due, _)| due),
            Stage::BeforeAllowTraffic | Stage::AfterAllowTraffic => {
                self.hooks.iter().find_map(|hook| hook.deadline)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod property_tests;
#[cfg(test)]
mod routing_tests;
#[cfg(test)]
mod tests;
