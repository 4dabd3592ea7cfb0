//! Applying an input to a Lambda deployment ([`LambdaDeployment::apply`]): each kind of
//! input, the moves from stage to stage, and the deployment's end.

use super::{
    ApplyError, Effect, HOOK_EXECUTION_FAILURE, HOOK_TIMEOUT_MS, HookEvent, Input,
    LambdaDeployment, Stage,
};
use crate::deployment::{ALARM_ACTIVE, ErrorInformation, Millis, NotificationEvent, TIMEOUT};
use crate::wire::EventStatus;

impl LambdaDeployment {
    /// Applies one input, returning the effects to carry out in order. An input that
    /// changes nothing (a repeated answer, a tick with nothing due) returns no effect and
    /// leaves the state as it was, which is how callers know there is nothing to write.
    /// An input that is refused leaves the state as it was too.
    ///
    /// Once the deployment has ended:
    /// - Start is refused ([`ApplyError::AlreadyStarted`]), as it is at any time after
    ///   the first.
    /// - A hook's answer is refused ([`ApplyError::HookAlreadyCompleted`]) unless it
    ///   repeats the outcome recorded, which is accepted and changes nothing; an id of a
    ///   hook never invoked is refused as unknown.
    /// - Tick and AlarmFired are ignored: nothing is waited for any more.
    /// - Stop is ignored on a stopped deployment and refused
    ///   ([`ApplyError::AlreadyCompleted`]) on one that succeeded or failed, as
    ///   StopDeployment is.
    pub fn apply(&mut self, input: Input) -> Result<Vec<Effect>, ApplyError> {
        let mut effects = Vec::new();
        match input {
            Input::Start { now } => {
                if self.stage != Stage::Created {
                    return Err(ApplyError::AlreadyStarted(self.deployment_id.clone()));
                }
                self.start_time = Some(now);
                effects.push(Effect::Notify(NotificationEvent::DeploymentStart));
                self.before_allow_traffic(now, &mut effects);
            }
            Input::HookStatus {
                execution_id,
                succeeded,
                now,
            } => self.answer_hook(&execution_id, succeeded, now, &mut effects)?,
            Input::Tick { now } => self.tick(now, &mut effects),
            Input::AlarmFired { names, now } => {
                // Alarms are watched only while the deployment runs; an empty list says
                // no alarm is in ALARM.
                if self.stage.is_terminal() || self.stage == Stage::Created || names.is_empty() {
                    return Ok(effects);
                }
                let error = ErrorInformation {
                    code: ALARM_ACTIVE.to_owned(),
                    message: format!(
                        "The deployment was stopped because one or more of its CloudWatch alarms are in ALARM: {}.",
                        names.join(", ")
                    ),
                };
                self.end(Stage::Stopped, now, Some(error), &mut effects);
            }
            Input::AlarmsUnreadable { reason, now } => {
                if self.stage.is_terminal() || self.stage == Stage::Created {
                    return Ok(effects);
                }
                let error = ErrorInformation {
                    code: ALARM_ACTIVE.to_owned(),
                    message: format!(
                        "The deployment was stopped because its CloudWatch alarms could not be read ({reason}) and the group does not ignore that (ignorePollAlarmFailure)."
                    ),
                };
                self.end(Stage::Stopped, now, Some(error), &mut effects);
            }
            Input::Stop { now } => match self.stage {
                Stage::Stopped => {}
                Stage::Succeeded | Stage::Failed => {
                    return Err(ApplyError::AlreadyCompleted {
                        deployment_id: self.deployment_id.clone(),
                        status: self.status(),
                    });
                }
                _ => self.end(
                    Stage::Stopped,
                    now,
                    Some(ErrorInformation::manual_stop()),
                    &mut effects,
                ),
            },
            Input::AliasFailed { code, message, now } => {
                if self.stage.is_terminal() || self.stage == Stage::Created {
                    return Ok(effects);
                }
                let error = ErrorInformation { code, message };
                self.end(Stage::Failed, now, Some(error), &mut effects);
            }
        }
        Ok(effects)
    }

    /// Runs the BeforeAllowTraffic hook, or shifts at once if the appspec names none.
    fn before_allow_traffic(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        if self.invoke(HookEvent::BeforeAllowTraffic, now, effects) {
            self.stage = Stage::BeforeAllowTraffic;
        } else {
            self.start_shifting(now, effects);
        }
    }

    fn start_shifting(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        self.stage = Stage::Shifting;
        self.shifting_start = Some(now);
        self.shift(now, effects);
    }

    /// Applies the steps that are due. When a tick comes late and several are due, only
    /// the last of them is applied: the alias goes straight to the weight it should have
    /// now, never through weights whose time has passed.
    fn shift(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        let Some(start) = self.shifting_start else {
            return;
        };
        let steps = self.steps();
        let applied = self.steps_applied as usize;
        let due = steps
            .iter()
            .skip(applied)
            .take_while(|step| start.saturating_add(step.offset_ms) <= now)
            .count();
        let Some(step) = due.checked_sub(1).map(|last| steps[applied + last]) else {
            return;
        };
        self.steps_applied = (applied + due) as u32;
        self.weight = step.percent;
        if step.percent >= 100 {
            effects.push(Effect::PointAliasAtTarget);
            self.after_allow_traffic(now, effects);
        } else {
            effects.push(Effect::SetWeight {
                percent: step.percent,
            });
        }
    }

    /// Runs the AfterAllowTraffic hook, or succeeds at once if the appspec names none.
    fn after_allow_traffic(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        if self.invoke(HookEvent::AfterAllowTraffic, now, effects) {
            self.stage = Stage::AfterAllowTraffic;
        } else {
            self.end(Stage::Succeeded, now, None, effects);
        }
    }

    /// Invokes the hook for `event` if the appspec names one; says whether it did.
    fn invoke(&mut self, event: HookEvent, now: Millis, effects: &mut Vec<Effect>) -> bool {
        let Some(hook) = self.hooks.iter_mut().find(|hook| hook.event == event) else {
            return false;
        };
        hook.status = EventStatus::InProgress;
        hook.start_time = Some(now);
        hook.deadline = Some(now.saturating_add(HOOK_TIMEOUT_MS));
        effects.push(Effect::InvokeHook {
            event,
            function: hook.function.clone(),
            execution_id: hook.execution_id.clone(),
        });
        true
    }

    /// A hook's answer. The deadline is the tick's to enforce: an answer that arrives
    /// before the tick that would have failed the hook counts, since the hook did answer
    /// and nothing has acted on its silence yet.
    fn answer_hook(
        &mut self,
        execution_id: &str,
        succeeded: bool,
        now: Millis,
        effects: &mut Vec<Effect>,
    ) -> Result<(), ApplyError> {
        let hook = self
            .hooks
            .iter_mut()
            .find(|hook| hook.execution_id == execution_id && hook.start_time.is_some())
            .ok_or_else(|| ApplyError::UnknownHookExecution {
                deployment_id: self.deployment_id.clone(),
                execution_id: execution_id.to_owned(),
            })?;
        let answer = if succeeded {
            EventStatus::Succeeded
        } else {
            EventStatus::Failed
        };
        if hook.status != EventStatus::InProgress {
            return if hook.status == answer {
                Ok(())
            } else {
                Err(ApplyError::HookAlreadyCompleted {
                    execution_id: execution_id.to_owned(),
                    status: hook.status,
                })
            };
        }
        hook.status = answer;
        hook.end_time = Some(now);
        hook.deadline = None;
        let event = hook.event;
        if succeeded {
            match event {
                HookEvent::BeforeAllowTraffic => self.start_shifting(now, effects),
                HookEvent::AfterAllowTraffic => self.end(Stage::Succeeded, now, None, effects),
            }
        } else {
            let error = ErrorInformation {
                code: HOOK_EXECUTION_FAILURE.to_owned(),
                // Not the execution id: it holds the deployment's hook secret.
                message: format!(
                    "The {event} hook {} reported Failed.",
                    self.hook_function(event)
                ),
            };
            self.end(Stage::Failed, now, Some(error), effects);
        }
        Ok(())
    }

    fn hook_function(&self, event: HookEvent) -> &str {
        self.hook(event).map_or("", |hook| hook.function.as_str())
    }

    /// Time passes: the steps that are due while shifting; a running hook's deadline.
    fn tick(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        match self.stage {
            Stage::Shifting => self.shift(now, effects),
            Stage::BeforeAllowTraffic | Stage::AfterAllowTraffic => {
                let Some(hook) = self
                    .hooks
                    .iter_mut()
                    .find(|hook| hook.status == EventStatus::InProgress)
                else {
                    return;
                };
                if hook.deadline.is_none_or(|deadline| now < deadline) {
                    return;
                }
                hook.status = EventStatus::Failed;
                hook.end_time = Some(now);
                hook.deadline = None;
                let error = ErrorInformation {
                    code: TIMEOUT.to_owned(),
                    message: format!(
                        "The {} hook {} did not report its status within one hour of being invoked.",
                        hook.event, hook.function
                    ),
                };
                self.end(Stage::Failed, now, Some(error), effects);
            }
            _ => {}
        }
    }

    /// Ends the deployment at `stage`: traffic back to the current version unless it
    /// succeeded, hooks it will not run skipped, its notification, and the group freed.
    fn end(
        &mut self,
        stage: Stage,
        now: Millis,
        error: Option<ErrorInformation>,
        effects: &mut Vec<Effect>,
    ) {
        let succeeded = stage == Stage::Succeeded;
        if !succeeded && self.weight > 0 {
            effects.push(Effect::RollBack);
            self.weight = 0;
        }
        for hook in &mut self.hooks {
            if !hook.status.is_terminal() {
                hook.status = EventStatus::Skipped;
                hook.deadline = None;
                if hook.start_time.is_some() {
                    hook.end_time = Some(now);
                }
            }
        }
        self.stage = stage;
        self.error = error;
        self.complete_time = Some(now);
        let event = match stage {
            Stage::Succeeded => NotificationEvent::DeploymentSuccess,
            Stage::Stopped => NotificationEvent::DeploymentStop,
            _ => NotificationEvent::DeploymentFailure,
        };
        effects.push(Effect::Notify(event));
        effects.push(Effect::Finished);
    }
}
