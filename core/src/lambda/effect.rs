//! What the adapters must do for a Lambda deployment ([`Effect`]), and the two hooks a
//! Lambda appspec may name ([`HookEvent`]).

use crate::deployment::NotificationEvent;
use crate::lifecycle::LifecycleEvent;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The lifecycle events of a Lambda deployment that run a hook function: the only two
/// CodeDeploy allows under an AWS Lambda appspec's `hooks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum HookEvent {
    /// Before any traffic moves to the target version.
    BeforeAllowTraffic,
    /// Once all traffic is on the target version.
    AfterAllowTraffic,
}

impl HookEvent {
    pub const ALL: [HookEvent; 2] = [Self::BeforeAllowTraffic, Self::AfterAllowTraffic];

    /// The same event in the EC2/on-premises list, whose names are CodeDeploy's too.
    pub const fn lifecycle_event(self) -> LifecycleEvent {
        match self {
            Self::BeforeAllowTraffic => LifecycleEvent::BeforeAllowTraffic,
            Self::AfterAllowTraffic => LifecycleEvent::AfterAllowTraffic,
        }
    }

    /// CodeDeploy's name for the event.
    pub const fn name(self) -> &'static str {
        self.lifecycle_event().name()
    }
}

impl fmt::Display for HookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The execution id of a deployment's hook: its deployment and event, for tracing an
/// answer, and the deployment's `secret` (random, chosen when it is created), so that
/// only the hook function it is sent to can answer for it: PutLifecycleEventHookExecutionStatus
/// takes no other proof. Fixed when the deployment is created and stored with it, so an
/// input applied twice (a retried write, a redelivered message) never invokes a hook under
/// two ids.
pub fn hook_execution_id(deployment_id: &str, event: HookEvent, secret: &str) -> String {
    format!("{deployment_id}.{event}.{secret}")
}

/// What the adapters must do, in order. Its `Debug` leaves out a hook's execution id,
/// which holds the deployment's hook secret: effects are logged and recorded.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// Invoke the hook function asynchronously with CodeDeploy's payload
    /// (`DeploymentId`, `LifecycleEventHookExecutionId`). It answers through
    /// PutLifecycleEventHookExecutionStatus, which arrives as [`super::Input::HookStatus`];
    /// an invocation Lambda refuses is answered by the adapter as a failure.
    InvokeHook {
        event: HookEvent,
        function: String,
        execution_id: String,
    },
    /// Route `percent` of the alias's traffic to the target version and the rest to the
    /// current version (the alias stays on the current version, with the target version
    /// as its additional version weighted `percent` / 100). Always 0 < percent < 100.
    SetWeight { percent: u32 },
    /// All traffic to the target version: the alias's version becomes the target version
    /// and its additional routing is cleared.
    PointAliasAtTarget,
    /// All traffic back to the current version: the alias's version is the current
    /// version and its additional routing is cleared.
    RollBack,
    /// Publish a trigger notification.
    Notify(NotificationEvent),
    /// The deployment reached its final status (in the state): free the deployment group
    /// for the next one.
    Finished,
}

impl fmt::Debug for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvokeHook {
                event, function, ..
            } => f
                .debug_struct("InvokeHook")
                .field("event", event)
                .field("function", function)
                .finish_non_exhaustive(),
            Self::SetWeight { percent } => f
                .debug_struct("SetWeight")
                .field("percent", percent)
                .finish(),
            Self::PointAliasAtTarget => f.write_str("PointAliasAtTarget"),
            Self::RollBack => f.write_str("RollBack"),
            Self::Notify(event) => f.debug_tuple("Notify").field(event).finish(),
            Self::Finished => f.write_str("Finished"),
        }
    }
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    #[test]
    fn a_hooks_execution_id_stays_out_of_logs() {
        let effect = Effect::InvokeHook {
            event: HookEvent::BeforeAllowTraffic,
            function: "CodeDeployHook_pre".into(),
            execution_id: hook_execution_id("d-A1B2C3D4E", HookEvent::BeforeAllowTraffic, "s3cr3t"),
        };
        let shown = format!("{effect:?}");
        assert!(shown.contains("CodeDeployHook_pre"), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}
