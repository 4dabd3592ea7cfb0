//! How a deployment ends: its hosts never sent a command skipped, a failure for its health
//! rules, the rollback that may follow, and its final status with the effects that come
//! with it.

use super::effect::notify;
use super::{
    Deployment, DeploymentStatus, Effect, ErrorInformation, HEALTH_CONSTRAINTS, Millis,
    NotificationEvent,
};

impl Deployment {
    /// Hosts never sent their command are skipped; readers derive their records.
    pub(super) fn skip_pending(&mut self) {
        self.counts.skipped += self.counts.pending;
        self.counts.pending = 0;
    }

    pub(super) fn fail_for_health(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        self.skip_pending();
        let counts = self.counts;
        let message = format!(
            "The overall deployment failed: {} of {} instances succeeded and {} failed; {} successes were needed, keeping at least {} instances healthy.",
            counts.succeeded,
            self.plan.fleet,
            counts.failed,
            self.plan.required_successes,
            self.plan.minimum_healthy,
        );
        self.finish(
            DeploymentStatus::Failed,
            now,
            Some(ErrorInformation {
                code: HEALTH_CONSTRAINTS.to_owned(),
                message,
            }),
            effects,
        );
        self.start_rollback(self.rollback_on_failure, effects);
    }

    /// A rollback after an unsuccessful end, when `wanted`: none for a blue/green
    /// deployment still provisioning its replacement fleet, which changed nothing to
    /// roll back (its copy is removed as it ends).
    pub(crate) fn start_rollback(&self, wanted: bool, effects: &mut Vec<Effect>) {
        if wanted && !self.provisioning() {
            effects.push(Effect::StartRollback);
        }
    }

    pub(super) fn finish(
        &mut self,
        status: DeploymentStatus,
        now: Millis,
        error: Option<ErrorInformation>,
        effects: &mut Vec<Effect>,
    ) {
        self.status = status;
        self.error = error;
        self.complete_time = Some(now);
        self.zone_wait_until = None;
        let event = match status {
            DeploymentStatus::Succeeded => NotificationEvent::DeploymentSuccess,
            DeploymentStatus::Stopped => NotificationEvent::DeploymentStop,
            _ => NotificationEvent::DeploymentFailure,
        };
        effects.push(notify(event, None));
        let succeeded = status == DeploymentStatus::Succeeded;
        if !succeeded && self.provisioning() {
            effects.push(Effect::RemoveReplacement);
        }
        if !succeeded && self.counts.in_progress > 0 {
            effects.push(Effect::CancelHosts);
        }
        if self.completes_launch {
            effects.push(Effect::CompleteLaunch { proceed: succeeded });
            return;
        }
        if succeeded {
            if self.blue_green.is_some() {
                effects.push(Effect::AdoptReplacement);
            }
            effects.push(Effect::RecordLastSuccessful);
        }
        effects.push(Effect::ReleaseLock);
        // A blue/green deployment's instances that launched meanwhile are in its
        // replacement fleet's group, which copied the launch template.
        if succeeded && self.blue_green.is_none() {
            effects.push(Effect::UpdateOutdated);
        }
    }
}
