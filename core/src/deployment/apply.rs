//! Applying an input to a deployment ([`Deployment::apply`]): each kind of input (start,
//! report, load balancer step, tick, stop, provisioning failure, alarm poll, continue),
//! then what it did to one host, and that host's end.

use super::effect::notify;
use super::target::Step;
use super::{
    ApplyError, Deployment, DeploymentStatus, Effect, ErrorInformation, Input, Millis,
    NotificationEvent, PROVISIONING_ERROR, TargetState, TargetStatus,
};

impl Deployment {
    /// Applies one input, returning the effects to carry out. `targets` are the records
    /// of the hosts the input concerns: the reporting host, or for a tick the hosts whose
    /// deadline may have passed; they are changed in place. An input that changes nothing
    /// (a duplicate report) leaves the state and the records as they were, which is how
    /// callers know there is nothing to write.
    pub fn apply(
        &mut self,
        input: Input,
        targets: &mut [TargetState],
    ) -> Result<Vec<Effect>, ApplyError> {
        let mut effects = Vec::new();
        match input {
            Input::Start { now } => {
                if self.status != DeploymentStatus::Created {
                    return Err(ApplyError::AlreadyStarted);
                }
                self.status = DeploymentStatus::InProgress;
                effects.push(notify(NotificationEvent::DeploymentStart, None));
                self.advance(now, &mut effects);
            }
            Input::Report {
                report,
                sender,
                now,
            } => {
                if report.deployment_id != self.deployment_id {
                    return Err(ApplyError::WrongDeployment {
                        expected: self.deployment_id.clone(),
                        found: report.deployment_id,
                    });
                }
                let target = targets
                    .iter_mut()
                    .find(|t| t.target.instance_id == report.instance_id)
                    .ok_or_else(|| ApplyError::UnknownInstance(report.instance_id.clone()))?;
                if !target
                    .target
                    .sender
                    .admits(&report.instance_id, sender.as_deref())
                {
                    return Err(ApplyError::ForeignSender {
                        instance_id: report.instance_id,
                        expected: target.target.sender.to_string(),
                        found: sender.unwrap_or_else(|| "an unknown sender".into()),
                    });
                }
                let ended = self.status.is_terminal();
                let hold_before = self.hold_before(target);
                let step = target.apply_report(report, &self.deadlines, now, ended, hold_before)?;
                self.take_step(target, step, now, &mut effects);
            }
            Input::Traffic {
                instance_id,
                event,
                outcome,
                now,
            } => {
                let target = targets
                    .iter_mut()
                    .find(|t| t.target.instance_id == instance_id)
                    .ok_or_else(|| ApplyError::UnknownInstance(instance_id.clone()))?;
                let ended = self.status.is_terminal();
                let step = target.apply_traffic(event, outcome, &self.deadlines, now, ended);
                self.take_step(target, step, now, &mut effects);
            }
            Input::Tick { now } => {
                for target in targets.iter_mut() {
                    if target.fail_if_silent(now) {
                        effects.push(Effect::HostTimedOut {
                            instance_id: target.target.instance_id.clone(),
                        });
                        self.finish_target(target, TargetStatus::Failed, &mut effects);
                    }
                }
                self.advance(now, &mut effects);
            }
            Input::Recount { now } => self.advance(now, &mut effects),
            Input::Stop { now, rollback } => {
                if !self.status.is_terminal() {
                    self.skip_pending();
                    let error = ErrorInformation::manual_stop();
                    self.finish(DeploymentStatus::Stopped, now, Some(error), &mut effects);
                    self.start_rollback(rollback || self.rollback_on_stop, &mut effects);
                }
            }
            Input::ProvisioningFailed { now, message } => {
                if self.status == DeploymentStatus::InProgress && self.provisioning() {
                    let error = ErrorInformation {
                        code: PROVISIONING_ERROR.to_owned(),
                        message,
                    };
                    self.finish(DeploymentStatus::Failed, now, Some(error), &mut effects);
                }
            }
            Input::Alarm { now, check } => self.check_alarms(now, check, &mut effects),
            Input::Continue { wait, now } => {
                if !self.end_wait(wait, now, &mut effects) {
                    return Err(ApplyError::NotWaiting(wait));
                }
            }
        }
        Ok(effects)
    }

    /// Carries out what an input did to one host.
    fn take_step(
        &mut self,
        target: &mut TargetState,
        step: Step,
        now: Millis,
        effects: &mut Vec<Effect>,
    ) {
        let instance_id = target.target.instance_id.clone();
        match step {
            Step::Nothing => {}
            Step::Decided(outcome) => {
                self.finish_target(target, outcome, effects);
                self.advance(now, effects);
            }
            Step::Traffic(event) => effects.push(Effect::Traffic { instance_id, event }),
            Step::Resume(events) => effects.push(Effect::Resume {
                instance_id,
                events,
                start_by: target
                    .deadline
                    .unwrap_or(now.saturating_add(self.deadlines.start_ms)),
            }),
            Step::Ready => self.host_ready(target, now, effects),
        }
    }

    /// Ends one host's deployment: the counters, its notification and its health.
    fn finish_target(
        &mut self,
        target: &mut TargetState,
        status: TargetStatus,
        effects: &mut Vec<Effect>,
    ) {
        let succeeded = status == TargetStatus::Succeeded;
        target.status = status;
        target.deadline = None;
        self.counts.in_progress = self.counts.in_progress.saturating_sub(1);
        let instance_id = target.target.instance_id.clone();
        // A blue/green original host leaves the fleet: it never runs the revision.
        let records_health = self
            .blue_green
            .as_ref()
            .is_none_or(|bg| bg.is_replacement(target.index));
        match status {
            TargetStatus::Succeeded => self.counts.succeeded += 1,
            TargetStatus::Skipped => {
                // Cut short by the deployment's end: no trigger event is CodeDeploy's
                // for it, and the host is not on the revision.
                self.counts.skipped += 1;
                if records_health {
                    effects.push(Effect::RecordHealth {
                        instance_id,
                        healthy: false,
                    });
                }
                return;
            }
            _ => self.counts.failed += 1,
        }
        let event = if succeeded {
            NotificationEvent::InstanceSuccess
        } else {
            NotificationEvent::InstanceFailure
        };
        effects.push(notify(event, Some(&instance_id)));
        if records_health {
            effects.push(Effect::RecordHealth {
                instance_id,
                healthy: succeeded,
            });
        }
    }
}
