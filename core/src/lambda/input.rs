//! What happens to a Lambda deployment ([`Input`]) and why an input could not apply
//! ([`ApplyError`]).

use crate::deployment::{DeploymentStatus, Millis};
use crate::wire::EventStatus;

/// Something that happens to a Lambda deployment, at `now` by the control plane's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Start {
        now: Millis,
    },
    /// A hook function's answer (PutLifecycleEventHookExecutionStatus): `Succeeded`, or
    /// `Failed` when `succeeded` is false. Only a running hook's first answer counts; a
    /// repeat of the outcome recorded is accepted and changes nothing, and any other
    /// answer is refused.
    HookStatus {
        execution_id: String,
        succeeded: bool,
        now: Millis,
    },
    /// Time passes: a step that is due is applied; a hook past its deadline fails.
    Tick {
        now: Millis,
    },
    /// These CloudWatch alarms of the deployment group are in ALARM: a running deployment
    /// stops. Before the start, after the end, or with no names, nothing happens.
    AlarmFired {
        names: Vec<String>,
        now: Millis,
    },
    /// The group's alarms could not be read, and the group does not ignore that
    /// (`ignorePollAlarmFailure` false, CodeDeploy's default): a running deployment stops.
    AlarmsUnreadable {
        reason: String,
        now: Millis,
    },
    /// StopDeployment.
    Stop {
        now: Millis,
    },
    /// The alias could not be moved and will not be (Lambda refused the update: the
    /// function, alias or version is gone, or the stack may not update it): a running
    /// deployment fails with CodeDeploy's error `code`, and the alias goes back.
    AliasFailed {
        code: String,
        message: String,
        now: Millis,
    },
}

impl Input {
    /// When the input happened.
    pub fn now(&self) -> Millis {
        match self {
            Self::Start { now }
            | Self::HookStatus { now, .. }
            | Self::Tick { now }
            | Self::AlarmFired { now, .. }
            | Self::AlarmsUnreadable { now, .. }
            | Self::Stop { now }
            | Self::AliasFailed { now, .. } => *now,
        }
    }
}

/// Why an input could not apply: a caller's mistake or a late or foreign answer, never a
/// panic. [`ApplyError::exception`] names the exception CodeDeploy answers it with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("deployment {0} has already started")]
    AlreadyStarted(String),
    /// Not an id this deployment gave a hook it invoked: a foreign or mistyped id, or the
    /// id of a hook not invoked yet.
    #[error(
        "lifecycleEventHookExecutionId: {:?} is not a hook execution of deployment {deployment_id} that has started",
        shown(execution_id)
    )]
    UnknownHookExecution {
        deployment_id: String,
        execution_id: String,
    },
    /// The hook already has a different outcome: it answered otherwise before, it timed
    /// out, or the deployment ended while it ran.
    #[error(
        "lifecycleEventHookExecutionId: the hook execution {:?} has already completed ({status:?})",
        shown(execution_id)
    )]
    HookAlreadyCompleted {
        execution_id: String,
        status: EventStatus,
    },
    /// StopDeployment on a deployment that succeeded or failed.
    #[error("deployment {deployment_id} has already completed ({status:?})")]
    AlreadyCompleted {
        deployment_id: String,
        status: DeploymentStatus,
    },
}

impl ApplyError {
    /// CodeDeploy's exception for it (the API's `errorType`).
    pub fn exception(&self) -> &'static str {
        match self {
            Self::AlreadyStarted(_) => "DeploymentAlreadyStartedException",
            Self::UnknownHookExecution { .. } => "InvalidLifecycleEventHookExecutionIdException",
            Self::HookAlreadyCompleted { .. } => "LifecycleEventAlreadyCompletedException",
            Self::AlreadyCompleted { .. } => "DeploymentAlreadyCompletedException",
        }
    }
}

/// An execution id as messages and logs show it: its deployment and event, never the
/// secret after them (see [`super::hook_execution_id`]).
fn shown(execution_id: &str) -> String {
    let mut parts = execution_id.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(deployment), Some(event), Some(_)) => format!("{deployment}.{event}.…"),
        _ => execution_id.to_owned(),
    }
}
