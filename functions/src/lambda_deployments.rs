//! Lambda deployments: the engine of the Lambda compute platform (issue 28, in progress).
//!
//! The same shape as the EC2 engine, over [`gantry_core::lambda`]'s state machine: every
//! change is a step (load, apply, one conditional write of the new state with its effects
//! in an outbox entry, then carry the effects out, then clear the entry); effects that fail
//! for now stay in the outbox for the tick; waits are the machine's `next_wakeup`, on the
//! `active` index, never slept. The alias moves through [`crate::adapters::Aliases`].
//!
//! CreateDeployment of a Lambda application's group comes in through [`request`];
//! PutLifecycleEventHookExecutionStatus and StopDeployment are [`step`]s; the tick of
//! batch-advance runs [`tick`].

mod request;
pub use request::{MAX_APPSPEC_BYTES, create_deployment};

use crate::control::ControlPlane;
use crate::error::{ApiError, Exception};
use crate::model::{AutoRollbackConfiguration, TriggerConfig, now_millis};
use crate::store::{ALARM_LOOK_MS, LambdaOutboxEntry, LambdaRecord, StoreError, keys};
use gantry_api::lambda::LambdaRevision;
use gantry_api::model::LastDeploymentInfo;
use gantry_core::deployment::{AlarmCheck, DeploymentStatus, Millis};
use gantry_core::lambda::{
    AliasShift, ApplyError, Effect, Hooks, Input, LambdaDeployment, TrafficRouting,
};
use gantry_core::wire::Creator;
use serde::{Deserialize, Serialize};

/// Attempts of a step that keeps losing the race for the summary before the caller is
/// told to try again.
const MAX_STEP_ATTEMPTS: u32 = 10;

/// What a Lambda deployment is, fixed when it is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaSpec {
    pub deployment_id: String,
    pub application_name: String,
    pub deployment_group_name: String,
    pub deployment_config_name: String,
    /// The group's CloudWatch alarms, polled while the deployment waits; none: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
    /// The AppSpec as given (an S3 file pinned to the version read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<LambdaRevision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "user")]
    pub creator: Creator,
    /// As GetDeployment shows it. A Lambda deployment that fails or stops always puts
    /// the alias back; there is nothing else to roll back.
    #[serde(default)]
    pub auto_rollback_configuration: AutoRollbackConfiguration,
    /// Go on when the alarms cannot be read (`ignorePollAlarmFailure`); otherwise such a
    /// deployment stops, as CodeDeploy's.
    #[serde(default)]
    pub ignore_poll_alarm_failure: bool,
    /// The group's triggers when the deployment was created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trigger_configurations: Vec<TriggerConfig>,
    /// CreateDeployment's `overrideAlarmConfiguration`, as given (GetDeployment shows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_alarm_configuration: Option<crate::model::AlarmConfiguration>,
}

fn user() -> Creator {
    Creator::User
}

/// A refused input as the API answers it, with CodeDeploy's exception.
fn refused(error: ApplyError) -> ApiError {
    let code = match error {
        ApplyError::AlreadyStarted(_) => Exception::DeploymentAlreadyStarted,
        ApplyError::UnknownHookExecution { .. } => Exception::InvalidLifecycleEventHookExecutionId,
        ApplyError::HookAlreadyCompleted { .. } => Exception::LifecycleEventAlreadyCompleted,
        ApplyError::AlreadyCompleted { .. } => Exception::DeploymentAlreadyCompleted,
    };
    ApiError::new(code, error.to_string())
}

/// Creates a Lambda deployment, started: its group locked, its first effects (the
/// BeforeAllowTraffic hook, or the first weight) stored and then carried out. Refused
/// while the group has another active deployment (DeploymentLimitExceeded).
pub async fn create(
    control: &ControlPlane,
    spec: LambdaSpec,
    alias: AliasShift,
    routing: TrafficRouting,
    hooks: &Hooks,
) -> Result<LambdaRecord<LambdaSpec>, ApiError> {
    let now = now_millis();
    // Only the hook functions invoked learn it, in their execution ids.
    let hook_secret = uuid::Uuid::new_v4().simple().to_string();
    let mut state = LambdaDeployment::new(
        spec.deployment_id.clone(),
        alias,
        routing,
        hooks,
        &hook_secret,
        now,
    )
    .with_minute_ms(control.settings.lambda_minute_ms);
    let effects = state.apply(Input::Start { now }).map_err(refused)?;
    let record = LambdaRecord {
        spec,
        state,
        version: 1,
        outbox: Default::default(),
    };
    let spec = &record.spec;
    control
        .store
        .create_lambda_deployment(
            &spec.application_name,
            &spec.deployment_group_name,
            spec,
            &record.state,
            &effects,
            look_by(&record, now),
            now,
        )
        .await
        .map_err(|error| match error {
            StoreError::Conflict(message) => {
                ApiError::new(Exception::DeploymentLimitExceeded, message)
            }
            other => other.into(),
        })?;
    // The deployment exists and holds the locks: the group's last attempt is only shown,
    // so failing to record it is logged, not answered (the end records it again).
    if let Err(error) = control
        .store
        .record_attempt(
            &spec.application_name,
            &spec.deployment_group_name,
            &last_deployment(&record),
        )
        .await
    {
        tracing::warn!(%error, "could not record the group's last attempted deployment");
    }
    Box::pin(execute(
        control,
        &record,
        &effects,
        &keys::summary_entry(1),
        0,
    ))
    .await;
    Ok(record)
}

/// Applies `input` to the deployment and stores the result, loading again after a lost
/// race; then carries out the effects. A refused input is the caller's error, with
/// CodeDeploy's exception (a hook's answer to PutLifecycleEventHookExecutionStatus).
pub async fn step(
    control: &ControlPlane,
    id: &str,
    input: Input,
) -> Result<LambdaRecord<LambdaSpec>, ApiError> {
    for _ in 0..MAX_STEP_ATTEMPTS {
        let mut record = control
            .store
            .load_lambda_deployment::<LambdaSpec>(id)
            .await?;
        let effects = record.state.apply(input.clone()).map_err(refused)?;
        let also_by = look_by(&record, input.now());
        let saved = control
            .store
            .save_lambda_step(
                &record.state,
                record.version,
                &effects,
                also_by,
                input.now(),
            )
            .await;
        match saved {
            Ok(version) => {
                record.version = version;
                if !effects.is_empty() {
                    let entry = keys::summary_entry(version);
                    Box::pin(execute(control, &record, &effects, &entry, 0)).await;
                }
                return Ok(record);
            }
            Err(StoreError::Conflict(_)) => continue,
            Err(other) => return Err(other.into()),
        }
    }
    Err(ApiError::new(
        Exception::ConcurrentModification,
        format!("deployment {id} kept changing; try again"),
    ))
}

/// When the tick must look at a deployment besides its own wakeup: effects left in its
/// outbox from before, and, while it runs, its alarms to poll.
fn look_by(record: &LambdaRecord<LambdaSpec>, now: Millis) -> Option<Millis> {
    let pending = record.outbox.values().map(LambdaOutboxEntry::due).min();
    let running = !record.state.status().is_terminal();
    let alarm_look = (running && !record.spec.alarms.is_empty()).then_some(now + ALARM_LOOK_MS);
    pending.into_iter().chain(alarm_look).min()
}

/// The tick's look at one Lambda deployment at `now`: effects left in its outbox that
/// are due, then the machine's tick (a step due, a hook past its hour), then its alarms.
pub async fn tick_one(control: &ControlPlane, id: &str, now: Millis) -> Result<(), ApiError> {
    let record = control
        .store
        .load_lambda_deployment::<LambdaSpec>(id)
        .await?;
    for (key, pending) in &record.outbox {
        if pending.due() <= now {
            tracing::info!(deployment_id = %id, entry = %key, attempts = pending.attempts, "running effects left in the outbox");
            Box::pin(execute(
                control,
                &record,
                &pending.effects,
                key,
                pending.attempts,
            ))
            .await;
        }
    }
    let record = Box::pin(step(control, id, Input::Tick { now })).await?;
    let waiting = !record.state.status().is_terminal();
    if waiting && !record.spec.alarms.is_empty() {
        match control.alarms.check(&record.spec.alarms).await {
            AlarmCheck::Active { alarms } => {
                tracing::warn!(deployment_id = %id, ?alarms, "alarms in ALARM: the deployment stops and rolls back");
                Box::pin(step(control, id, Input::AlarmFired { names: alarms, now })).await?;
            }
            AlarmCheck::Failed { reason } if record.spec.ignore_poll_alarm_failure => {
                tracing::warn!(deployment_id = %id, %reason, "alarms could not be read; ignored (ignorePollAlarmFailure), looked at again next tick");
            }
            AlarmCheck::Failed { reason } => {
                tracing::warn!(deployment_id = %id, %reason, "alarms could not be read: the deployment stops and rolls back");
                Box::pin(step(control, id, Input::AlarmsUnreadable { reason, now })).await?;
            }
            AlarmCheck::Clear => {}
        }
    }
    Ok(())
}

/// The schedule for Lambda deployments: each one due, served in turn (one invocation of
/// the tick; few Lambda deployments run at once). Returns how many were due.
pub async fn tick(control: &ControlPlane, now: Millis) -> Result<usize, ApiError> {
    let due = control.store.due_lambda_deployments(now).await?;
    for id in &due {
        if let Err(error) = tick_one(control, id, now).await {
            tracing::warn!(deployment_id = %id, %error, "tick failed; the next one retries");
        }
    }
    Ok(due.len())
}

/// Carries out an outbox entry's effects in order, then clears the entry, or keeps in
/// it only those that failed for now, for the tick. One that fails does not stop the
/// others; one that fails for good is recorded on the deployment.
async fn execute(
    control: &ControlPlane,
    record: &LambdaRecord<LambdaSpec>,
    effects: &[Effect],
    entry: &str,
    attempts: u32,
) {
    let id = &record.spec.deployment_id;
    let mut retry = Vec::new();
    let mut alias_synced = false;
    for effect in effects {
        let result = if is_alias_effect(effect) {
            // One look at the alias does for every alias effect of the entry.
            if alias_synced {
                continue;
            }
            alias_synced = true;
            Box::pin(sync_alias(control, id)).await
        } else {
            Box::pin(carry_out(control, record, effect)).await
        };
        let Err(error) = result else {
            continue;
        };
        if matches!(
            error.code,
            Exception::InternalFailure | Exception::ConcurrentModification
        ) {
            tracing::warn!(deployment_id = %id, ?effect, %error, "an effect failed for now; the tick retries it");
            retry.push(effect.clone());
            continue;
        }
        tracing::error!(deployment_id = %id, ?effect, %error, "an effect failed for good");
        let recorded = control
            .store
            .record_failed_effect(
                id,
                effect_kind(effect),
                &format!("{effect:?}"),
                &error.to_string(),
                now_millis(),
            )
            .await;
        if let Err(error) = recorded {
            tracing::warn!(deployment_id = %id, %error, "could not record the failed effect");
            retry.push(effect.clone());
        }
        let failure = match effect {
            // A hook Lambda will never run fails its event, rather than waiting its hour.
            Effect::InvokeHook { execution_id, .. } => Some(Input::HookStatus {
                execution_id: execution_id.clone(),
                succeeded: false,
                now: now_millis(),
            }),
            // An alias that cannot be moved fails a running deployment (which puts it
            // back); putting it back is tried again and again, with the outbox's backoff:
            // a half-shifted alias is never left behind for good.
            _ if is_alias_effect(effect) => {
                if !retry.contains(effect) {
                    retry.push(effect.clone());
                }
                Some(Input::AliasFailed {
                    code: alias_error_code(&error).to_owned(),
                    message: format!(
                        "Alias {} of {} could not be updated: {}",
                        record.state.alias.alias, record.state.alias.function_name, error.message
                    ),
                    now: now_millis(),
                })
            }
            _ => None,
        };
        if let Some(failure) = failure
            && let Err(error) = Box::pin(step(control, id, failure)).await
        {
            tracing::warn!(deployment_id = %id, %error, "the failure was not recorded; the tick tries again");
        }
    }
    let settled = if retry.is_empty() {
        control.store.clear_outbox(id, entry).await
    } else {
        let pending = LambdaOutboxEntry {
            effects: retry,
            at: now_millis(),
            attempts: attempts + 1,
        };
        control
            .store
            .rewrite_lambda_outbox(id, entry, &pending)
            .await
    };
    if let Err(error) = settled {
        tracing::warn!(deployment_id = %id, %entry, %error, "outbox entry not settled; the tick runs it again");
    }
}

/// Effects that move the alias: each is carried out as "make the alias what the
/// deployment says now" ([`sync_alias`]).
fn is_alias_effect(effect: &Effect) -> bool {
    matches!(
        effect,
        Effect::SetWeight { .. } | Effect::PointAliasAtTarget | Effect::RollBack
    )
}

/// CodeDeploy's error code for an alias Lambda will not update.
fn alias_error_code(error: &ApiError) -> &'static str {
    if error.code == Exception::ResourceNotFound {
        "INVALID_LAMBDA_FUNCTION"
    } else if error.message.contains("AccessDenied") {
        "IAM_ROLE_PERMISSIONS"
    } else {
        "INVALID_LAMBDA_CONFIGURATION"
    }
}

/// Makes the alias route as the deployment stands now, in its latest stored state, not
/// as it stood when the effect was written: an effect run late from the outbox, or one
/// racing a newer step (a stop, an alarm), never puts back a weight the deployment has
/// left. After the update it looks again: if a newer step was stored meanwhile, whose
/// own update may have come first, it makes the alias match that one.
async fn sync_alias(control: &ControlPlane, id: &str) -> Result<(), ApiError> {
    for _ in 0..MAX_STEP_ATTEMPTS {
        let record = control
            .store
            .load_lambda_deployment::<LambdaSpec>(id)
            .await?;
        let state = &record.state;
        match state.weight {
            0 => control.aliases.roll_back(&state.alias).await?,
            100.. => control.aliases.point_at_target(&state.alias).await?,
            percent => control.aliases.set_weight(&state.alias, percent).await?,
        }
        let after = control
            .store
            .load_lambda_deployment::<LambdaSpec>(id)
            .await?;
        if after.version == record.version {
            return Ok(());
        }
    }
    Err(ApiError::new(
        Exception::ConcurrentModification,
        format!("deployment {id} kept changing while its alias was moved; the tick tries again"),
    ))
}

/// A deployment keeps one record of failure per kind of effect.
fn effect_kind(effect: &Effect) -> &'static str {
    match effect {
        Effect::InvokeHook { .. } => "InvokeHook",
        Effect::SetWeight { .. } => "SetWeight",
        Effect::PointAliasAtTarget => "PointAliasAtTarget",
        Effect::RollBack => "RollBack",
        Effect::Notify(_) => "Notify",
        Effect::Finished => "Finished",
    }
}

/// Carries out one effect.
async fn carry_out(
    control: &ControlPlane,
    record: &LambdaRecord<LambdaSpec>,
    effect: &Effect,
) -> Result<(), ApiError> {
    let spec = &record.spec;
    match effect {
        Effect::InvokeHook {
            function,
            execution_id,
            ..
        } => {
            control
                .aliases
                .invoke_hook(function, &spec.deployment_id, execution_id)
                .await
        }
        Effect::SetWeight { .. } | Effect::PointAliasAtTarget | Effect::RollBack => {
            Box::pin(sync_alias(control, &spec.deployment_id)).await
        }
        Effect::Notify(event) => notify(control, record, *event).await,
        Effect::Finished => {
            // The group's last deployments are only shown: the locks are released
            // whatever becomes of them, and a failure is retried with the effect.
            let last = last_deployment(record);
            let store = &control.store;
            let (application, group) = (&spec.application_name, &spec.deployment_group_name);
            let recorded = match record.state.status() {
                DeploymentStatus::Succeeded => {
                    store
                        .record_last_successful(application, group, &last)
                        .await
                }
                _ => Ok(()),
            };
            let attempted = store.record_attempt(application, group, &last).await;
            store
                .unlock_alias(&record.state.alias.target_id(), &spec.deployment_id)
                .await?;
            store
                .unlock_group(application, group, &spec.deployment_id)
                .await?;
            recorded?;
            attempted?;
            Ok(())
        }
    }
}

/// The deployment as its group's `lastAttemptedDeployment` or `lastSuccessfulDeployment`.
fn last_deployment(record: &LambdaRecord<LambdaSpec>) -> LastDeploymentInfo {
    let state = &record.state;
    LastDeploymentInfo::new(
        &record.spec.deployment_id,
        state.status(),
        state.create_time,
        state.complete_time,
    )
}

/// Publishes a deployment event to the triggers of the group that ask for it, as for
/// EC2 deployments ([`crate::notify::publish_to`]): its one target counted in
/// `deploymentOverview`.
async fn notify(
    control: &ControlPlane,
    record: &LambdaRecord<LambdaSpec>,
    event: gantry_core::deployment::NotificationEvent,
) -> Result<(), ApiError> {
    let spec = &record.spec;
    let state = &record.state;
    let settings = &control.settings;
    let overview = overview(state.status());
    crate::notify::publish_to(
        control,
        &spec.trigger_configurations,
        event,
        &spec.deployment_id,
        &spec.application_name,
        |trigger_name| {
            crate::notify::deployment_message(
                &settings.region,
                &settings.account_id,
                trigger_name,
                crate::notify::DeploymentNames {
                    application: &spec.application_name,
                    group: &spec.deployment_group_name,
                    deployment_id: &spec.deployment_id,
                },
                (state.create_time, state.complete_time),
                [
                    overview.failed,
                    overview.in_progress,
                    overview.pending,
                    overview.skipped,
                    overview.succeeded,
                ],
                event,
                state.error.as_ref(),
            )
        },
    )
    .await
}

/// A Lambda deployment's one target (the alias), counted as `deploymentOverview` counts
/// instances.
pub fn overview(
    status: gantry_core::deployment::DeploymentStatus,
) -> gantry_api::deployment::DeploymentOverview {
    use gantry_core::deployment::DeploymentStatus as S;
    let mut overview = gantry_api::deployment::DeploymentOverview::default();
    match status {
        S::Created => overview.pending = 1,
        S::InProgress => overview.in_progress = 1,
        S::Succeeded => overview.succeeded = 1,
        S::Failed | S::Stopped => overview.failed = 1,
    }
    overview
}
