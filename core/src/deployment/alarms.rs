//! CloudWatch alarms: what a poll found ([`AlarmCheck`]), how a deployment takes its
//! checks ([`AlarmPolicy`]), and the stop an alarm or a failed poll leads to.

use super::{Deployment, DeploymentStatus, Effect, ErrorInformation, Millis};
use serde::{Deserialize, Serialize};

/// What a poll of a deployment's CloudWatch alarms found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlarmCheck {
    /// Every alarm answered, none in ALARM.
    Clear,
    /// These alarms are in ALARM.
    Active { alarms: Vec<String> },
    /// The alarms' state could not be had: CloudWatch refused or failed, or an alarm
    /// does not exist.
    Failed { reason: String },
}

/// How a deployment takes its alarm checks (CodeDeploy's `alarmConfiguration`, and
/// `autoRollbackConfiguration`'s DEPLOYMENT_STOP_ON_ALARM).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmPolicy {
    /// A failed poll leaves the deployment running (`ignorePollAlarmFailure`).
    pub ignore_poll_failure: bool,
    /// An alarm in ALARM rolls the deployment back once it is stopped.
    pub rollback: bool,
}

/// CodeDeploy's error codes for a deployment stopped by its alarms.
pub const ALARM_ACTIVE: &str = "ALARM_ACTIVE";
pub const ALARM_CONFIG: &str = "ALARM_CONFIG";

impl Deployment {
    /// Takes an alarm poll's result: an alarm in ALARM stops a running deployment (and
    /// rolls it back if its policy says so); a failed poll stops it unless the policy
    /// ignores poll failures. A poll failure never rolls back: it says nothing of the
    /// revision. Without alarms, or once the deployment has ended, nothing changes.
    pub(super) fn check_alarms(
        &mut self,
        now: Millis,
        check: AlarmCheck,
        effects: &mut Vec<Effect>,
    ) {
        let Some(policy) = self.alarms else { return };
        if self.status != DeploymentStatus::InProgress {
            return;
        }
        let (error, rollback) = match check {
            AlarmCheck::Clear => return,
            AlarmCheck::Active { alarms } => (
                ErrorInformation {
                    code: ALARM_ACTIVE.to_owned(),
                    message: format!(
                        "The deployment was stopped because one or more of its CloudWatch alarms are in ALARM: {}.",
                        alarms.join(", ")
                    ),
                },
                policy.rollback,
            ),
            AlarmCheck::Failed { .. } if policy.ignore_poll_failure => return,
            AlarmCheck::Failed { reason } => (
                ErrorInformation {
                    code: ALARM_CONFIG.to_owned(),
                    message: format!(
                        "The deployment was stopped because the state of its CloudWatch alarms could not be retrieved: {reason} (set ignorePollAlarmFailure to deploy on regardless)."
                    ),
                },
                false,
            ),
        };
        self.skip_pending();
        self.finish(DeploymentStatus::Stopped, now, Some(error), effects);
        self.start_rollback(rollback, effects);
    }
}
