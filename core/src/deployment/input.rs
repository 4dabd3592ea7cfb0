//! What happens to a deployment ([`Input`]), how a host's load balancer step ended
//! ([`TrafficOutcome`]), and why an input could not apply ([`ApplyError`]).

use super::{AlarmCheck, Millis, WaitType};
use crate::lifecycle::LifecycleEvent;
use crate::wire::Report;
use serde::{Deserialize, Serialize};

/// Something that happens to a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Start {
        now: Millis,
    },
    /// A host's report, received at `now` by the control plane's clock.
    Report {
        report: Report,
        /// The IAM identity SQS says sent it (`SenderId`), if it said.
        sender: Option<String>,
        now: Millis,
    },
    /// Hosts' ends counted apart from the summary were read again: the deployment
    /// decides on them (the next batch, its end) as it would have on each report.
    Recount {
        now: Millis,
    },
    /// Time passes: the hosts given with it that are past their deadline fail.
    Tick {
        now: Millis,
    },
    Stop {
        now: Millis,
        rollback: bool,
    },
    /// A host's load balancer step (BlockTraffic or AllowTraffic) ended, as the control
    /// plane found by asking ELB.
    Traffic {
        instance_id: String,
        event: LifecycleEvent,
        outcome: TrafficOutcome,
        now: Millis,
    },
    /// A blue/green deployment's replacement fleet cannot be provisioned (the copy's
    /// instances cannot become its targets): it fails, and the copy is removed.
    ProvisioningFailed {
        now: Millis,
        message: String,
    },
    /// The deployment's CloudWatch alarms were polled (at a batch boundary, or on the
    /// tick): what the poll found.
    Alarm {
        now: Millis,
        check: AlarmCheck,
    },
    /// A blue/green deployment's wait is ended early (ContinueDeployment,
    /// SkipWaitTimeForInstanceTermination).
    Continue {
        wait: WaitType,
        now: Millis,
    },
}

/// How a load balancer step ended for a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrafficOutcome {
    /// Drained from every target group (BlockTraffic), or healthy in every one
    /// (AllowTraffic).
    Done,
    /// ELB refused, or the host failed its health checks: why.
    Failed { message: String },
}

/// Why an input could not apply. These are bugs or foreign messages, never panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("report for deployment {found} applied to deployment {expected}")]
    WrongDeployment { expected: String, found: String },
    #[error("instance {0} is not a target of this deployment, or was not sent its command")]
    UnknownInstance(String),
    #[error("instance {instance_id} was not asked to run {event}")]
    UnexpectedEvent {
        instance_id: String,
        event: LifecycleEvent,
    },
    #[error("report for instance {instance_id} sent by {found}, not by {expected}")]
    ForeignSender {
        instance_id: String,
        expected: String,
        found: String,
    },
    #[error("deployment has already started")]
    AlreadyStarted,
    #[error("the deployment is not waiting ({0:?})")]
    NotWaiting(WaitType),
}
