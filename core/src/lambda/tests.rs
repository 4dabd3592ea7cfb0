use super::*;
use crate::deployment::{ALARM_ACTIVE, NotificationEvent, TIMEOUT};
use crate::lifecycle::LifecycleEvent;

const ID: &str = "d-LAMBDA0001";
pub(super) const MIN: Millis = 60 * 1000;
const SEC: Millis = 1000;
pub(super) const T0: Millis = 1_765_000_000_000;

use HookEvent::{AfterAllowTraffic as After, BeforeAllowTraffic as Before};

fn alias() -> AliasShift {
    AliasShift {
        function_name: "orders".into(),
        alias: "live".into(),
        current_version: "3".into(),
        target_version: "4".into(),
    }
}

pub(super) fn hooks(before: bool, after: bool) -> Hooks {
    Hooks {
        before_allow_traffic: before.then(|| "orders-before".to_owned()),
        after_allow_traffic: after.then(|| "orders-after".to_owned()),
    }
}

pub(super) fn deployment(routing: TrafficRouting, hooks: &Hooks) -> LambdaDeployment {
    LambdaDeployment::new(ID.into(), alias(), routing, hooks, SECRET, T0 - SEC)
}

fn named(config: &str, hooks: &Hooks) -> LambdaDeployment {
    deployment(predefined(config).unwrap(), hooks)
}

/// The deployment's hook secret in these tests.
const SECRET: &str = "7f3a9c";

pub(super) fn id(event: HookEvent) -> String {
    hook_execution_id(ID, event, SECRET)
}

fn invoke(event: HookEvent) -> Effect {
    let function = match event {
        Before => "orders-before",
        After => "orders-after",
    };
    Effect::InvokeHook {
        event,
        function: function.into(),
        execution_id: id(event),
    }
}

pub(super) fn start(d: &mut LambdaDeployment) -> Vec<Effect> {
    d.apply(Input::Start { now: T0 }).unwrap()
}

fn answer(
    d: &mut LambdaDeployment,
    event: HookEvent,
    succeeded: bool,
    now: Millis,
) -> Result<Vec<Effect>, ApplyError> {
    d.apply(Input::HookStatus {
        execution_id: id(event),
        succeeded,
        now,
    })
}

fn tick(d: &mut LambdaDeployment, now: Millis) -> Vec<Effect> {
    d.apply(Input::Tick { now }).unwrap()
}

fn notify(event: NotificationEvent) -> Effect {
    Effect::Notify(event)
}

fn success() -> Vec<Effect> {
    vec![
        notify(NotificationEvent::DeploymentSuccess),
        Effect::Finished,
    ]
}

fn failure() -> Vec<Effect> {
    vec![
        notify(NotificationEvent::DeploymentFailure),
        Effect::Finished,
    ]
}

fn stopped() -> Vec<Effect> {
    vec![notify(NotificationEvent::DeploymentStop), Effect::Finished]
}

fn with_rollback(mut end: Vec<Effect>) -> Vec<Effect> {
    end.insert(0, Effect::RollBack);
    end
}

/// Runs a deployment without hooks to its end, ticking exactly when it asks to: each
/// effect with the time it came, as an offset from the start.
fn run_by_wakeups(mut d: LambdaDeployment) -> Vec<(Millis, Effect)> {
    let mut seen: Vec<(Millis, Effect)> = start(&mut d).into_iter().map(|e| (0, e)).collect();
    while let Some(at) = d.next_wakeup() {
        seen.extend(tick(&mut d, at).into_iter().map(|e| (at - T0, e)));
    }
    assert_eq!(d.stage, Stage::Succeeded);
    seen
}

#[test]
fn canary_10_percent_5_minutes_with_both_hooks() {
    let mut d = named(LAMBDA_CANARY_10_PERCENT_5_MINUTES, &hooks(true, true));
    assert_eq!(d.next_wakeup(), None);
    assert_eq!(
        start(&mut d),
        [notify(NotificationEvent::DeploymentStart), invoke(Before)]
    );
    assert_eq!(d.stage, Stage::BeforeAllowTraffic);
    assert_eq!(d.status(), DeploymentStatus::InProgress);
    assert_eq!(d.next_wakeup(), Some(T0 + HOOK_TIMEOUT_MS));
    // Traffic moves only once the hook says so.
    assert_eq!(tick(&mut d, T0 + 30 * MIN), []);
    let t1 = T0 + 40 * MIN;
    assert_eq!(
        answer(&mut d, Before, true, t1).unwrap(),
        [Effect::SetWeight { percent: 10 }]
    );
    assert_eq!(d.stage, Stage::Shifting);
    assert_eq!(d.weight, 10);
    assert_eq!(d.next_wakeup(), Some(t1 + 5 * MIN));
    assert_eq!(tick(&mut d, t1 + 4 * MIN + 59 * SEC), []);
    assert_eq!(
        tick(&mut d, t1 + 5 * MIN),
        [Effect::PointAliasAtTarget, invoke(After)]
    );
    assert_eq!(d.stage, Stage::AfterAllowTraffic);
    assert_eq!(d.weight, 100);
    assert_eq!(d.next_wakeup(), Some(t1 + 5 * MIN + HOOK_TIMEOUT_MS));
    let t2 = t1 + 6 * MIN;
    assert_eq!(answer(&mut d, After, true, t2).unwrap(), success());
    assert_eq!(d.stage, Stage::Succeeded);
    assert_eq!(d.status(), DeploymentStatus::Succeeded);
    assert_eq!(d.complete_time, Some(t2));
    assert_eq!(d.start_time, Some(T0));
    assert_eq!(d.error, None);
    assert_eq!(d.next_wakeup(), None);
    let before = d.hook(Before).unwrap();
    assert_eq!(
        (before.status, before.start_time, before.end_time),
        (EventStatus::Succeeded, Some(T0), Some(t1))
    );
}

#[test]
fn every_canary_config_shifts_10_percent_then_the_rest() {
    for (config, minutes) in [
        (LAMBDA_CANARY_10_PERCENT_5_MINUTES, 5),
        (LAMBDA_CANARY_10_PERCENT_10_MINUTES, 10),
        (LAMBDA_CANARY_10_PERCENT_15_MINUTES, 15),
        (LAMBDA_CANARY_10_PERCENT_30_MINUTES, 30),
    ] {
        let mut expected = vec![
            (0, notify(NotificationEvent::DeploymentStart)),
            (0, Effect::SetWeight { percent: 10 }),
            (minutes * MIN, Effect::PointAliasAtTarget),
        ];
        expected.extend(success().into_iter().map(|e| (minutes * MIN, e)));
        assert_eq!(
            run_by_wakeups(named(config, &Hooks::default())),
            expected,
            "{config}"
        );
    }
}

#[test]
fn every_linear_config_shifts_10_percent_at_each_interval() {
    for (config, minutes) in [
        (LAMBDA_LINEAR_10_PERCENT_EVERY_1_MINUTE, 1),
        (LAMBDA_LINEAR_10_PERCENT_EVERY_2_MINUTES, 2),
        (LAMBDA_LINEAR_10_PERCENT_EVERY_3_MINUTES, 3),
        (LAMBDA_LINEAR_10_PERCENT_EVERY_10_MINUTES, 10),
    ] {
        let mut expected = vec![(0, notify(NotificationEvent::DeploymentStart))];
        for step in 0..9u32 {
            expected.push((
                Millis::from(step) * minutes * MIN,
                Effect::SetWeight {
                    percent: (step + 1) * 10,
                },
            ));
        }
        let end = 9 * minutes * MIN;
        expected.push((end, Effect::PointAliasAtTarget));
        expected.extend(success().into_iter().map(|e| (end, e)));
        assert_eq!(
            run_by_wakeups(named(config, &Hooks::default())),
            expected,
            "{config}"
        );
    }
}

#[test]
fn all_at_once_points_the_alias_as_it_starts() {
    let mut d = named(LAMBDA_ALL_AT_ONCE, &Hooks::default());
    let mut expected = vec![
        notify(NotificationEvent::DeploymentStart),
        Effect::PointAliasAtTarget,
    ];
    expected.extend(success());
    assert_eq!(start(&mut d), expected);
    assert_eq!(d.stage, Stage::Succeeded);
    assert_eq!(d.weight, 100);
    assert_eq!(d.steps_applied, 1);
}

#[test]
fn all_at_once_with_hooks_runs_both_around_the_switch() {
    let mut d = named(LAMBDA_ALL_AT_ONCE, &hooks(true, true));
    start(&mut d);
    assert_eq!(
        answer(&mut d, Before, true, T0 + SEC).unwrap(),
        [Effect::PointAliasAtTarget, invoke(After)]
    );
    assert_eq!(
        answer(&mut d, After, true, T0 + 2 * SEC).unwrap(),
        success()
    );
}

#[test]
fn only_an_after_hook() {
    let mut d = named(LAMBDA_CANARY_10_PERCENT_5_MINUTES, &hooks(false, true));
    assert_eq!(
        start(&mut d),
        [
            notify(NotificationEvent::DeploymentStart),
            Effect::SetWeight { percent: 10 }
        ]
    );
    assert!(d.hook(Before).is_none());
    assert_eq!(
        tick(&mut d, T0 + 5 * MIN),
        [Effect::PointAliasAtTarget, invoke(After)]
    );
    assert_eq!(
        answer(&mut d, After, true, T0 + 6 * MIN).unwrap(),
        success()
    );
}

#[test]
fn only_a_before_hook() {
    let mut d = named(LAMBDA_CANARY_10_PERCENT_5_MINUTES, &hooks(true, false));
    start(&mut d);
    assert!(d.hook(After).is_none());
    answer(&mut d, Before, true, T0 + SEC).unwrap();
    let mut expected = vec![Effect::PointAliasAtTarget];
    expected.extend(success());
    assert_eq!(tick(&mut d, T0 + SEC + 5 * MIN), expected);
}

#[test]
fn a_failed_before_hook_fails_without_moving_traffic() {
    let mut d = named(LAMBDA_CANARY_10_PERCENT_5_MINUTES, &hooks(true, true));
    start(&mut d);
    assert_eq!(answer(&mut d, Before, false, T0 + SEC).unwrap(), failure());
    assert_eq!(d.stage, Stage::Failed);
    assert_eq!(d.status(), DeploymentStatus::Failed);
    let error = d.error.clone().unwrap();
    assert_eq!(error.code, HOOK_EXECUTION_FAILURE);
    assert!(
        error
            .message
            .contains("BeforeAllowTraffic hook orders-before")
    );
    assert_eq!(d.shifting_start, None);
    assert_eq!(d.hook(Before).unwrap().status, EventStatus::Failed);
    // The hook that never ran is skipped, and its id was never given out.
    let after = d.hook(After).unwrap();
    assert_eq!(
        (after.status, after.start_time),
        (EventStatus::Skipped, None)
    );
    assert!(matches!(
        answer(&mut d, After, true, T0 + 2 * SEC),
        Err(ApplyError::UnknownHookExecution { .. })
    ));
}

#[test]
fn a_failed_after_hook_rolls_the_alias_back() {
    let mut d = named(LAMBDA_CANARY_10_PERCENT_5_MINUTES, &hooks(true, true));
    start(&mut d);
    answer(&mut d, Before, true, T0).unwrap();
    tick(&mut d, T0 + 5 * MIN);
    assert_eq!(
        answer(&mut d, After, false, T0 + 6 * MIN).unwrap(),
        with_rollback(failure())
    );
    assert_eq!(d.weight, 0);
    assert_eq!(d.error.unwrap().code, HOOK_EXECUTION_FAILURE);
}

#[test]
fn a_silent_before_hook_times_out_after_one_hour() {
    let mut d = named(LAMBDA_LINEAR_10_PERCENT_EVERY_1_MINUTE, &hooks(true, true));
    start(&mut d);
    assert_eq!(tick(&mut d, T0 + HOOK_TIMEOUT_MS - 1), []);
    assert_eq!(d.stage, Stage::BeforeAllowTraffic);
    assert_eq!(tick(&mut d, T0 + HOOK_TIMEOUT_MS), failure());
    assert_eq!(d.stage, Stage::Failed);
    let error = d.error.clone().unwrap();
    assert_eq!(error.code, TIMEOUT);
    assert!(
        error.message.contains("within one hour"),
        "{}",
        error.message
    );
    let before = d.hook(Before).unwrap();
    assert_eq!(
        (before.status, before.end_time, before.deadline),
        (EventStatus::Failed, Some(T0 + HOOK_TIMEOUT_MS), None)
    );
    // Its late answer: the same outcome changes nothing; the other is refused.
    assert_eq!(
        answer(&mut d, Before, false, T0 + 2 * HOOK_TIMEOUT_MS).unwrap(),
        []
    );
    let late = answer(&mut d, Before, true, T0 + 2 * HOOK_TIMEOUT_MS).unwrap_err();
    assert_eq!(
        late,
        ApplyError::HookAlreadyCompleted {
            execution_id: id(Before),
            status: EventStatus::Failed
        }
    );
    assert_eq!(late.exception(), "LifecycleEventAlreadyCompletedException");
}

#[test]
fn a_silent_after_hook_times_out_and_rolls_back() {
    let mut d = named(LAMBDA_ALL_AT_ONCE, &hooks(false, true));
    start(&mut d);
    assert_eq!(d.next_wakeup(), Some(T0 + HOOK_TIMEOUT_MS));
    assert_eq!(
        tick(&mut d, T0 + HOOK_TIMEOUT_MS + 5 * MIN),
        with_rollback(failure())
    );
    assert_eq!(d.error.unwrap().code, TIMEOUT);
}

#[test]
fn an_answer_that_beats_the_timeout_tick_counts() {
    let mut d = named(LAMBDA_ALL_AT_ONCE, &hooks(true, false));
    start(&mut d);
    let late = T0 + HOOK_TIMEOUT_MS + SEC;
    let mut expected = vec![Effect::PointAliasAtTarget];
    expected.extend(success());
    assert_eq!(answer(&mut d, Before, true, late).unwrap(), expected);
}

#[test]
fn an_alarm_while_shifting_stops_and_rolls_back() {
    let mut d = named(LAMBDA_LINEAR_10_PERCENT_EVERY_1_MINUTE, &Hooks::default());
    start(&mut d);
    tick(&mut d, T0 + 2 * MIN);
    assert_eq!(d.weight, 30);
    let effects = d
        .apply(Input::AlarmFired {
            names: vec!["orders-errors".into(), "orders-latency".into()],
            now: T0 + 2 * MIN + 30 * SEC,
        })
        .unwrap();
    assert_eq!(effects, with_rollback(stopped()));
    assert_eq!(d.stage, Stage::Stopped);
    assert_eq!(d.status(), DeploymentStatus::Stopped);
    assert_eq!(d.weight, 0);
    let error = d.error.clone().unwrap();
    assert_eq!(error.code, ALARM_ACTIVE);
    assert!(error.message.contains("orders-errors, orders-latency"));
    assert_eq!(d.next_wakeup(), None);
    // Nothing more happens to it.
    assert_eq!(tick(&mut d, T0 + 10 * MIN), []);
    assert_eq!(
        d.apply(Input::AlarmFired {
            names: vec!["orders-errors".into()],
            now: T0 + 11 * MIN
        })
        .unwrap(),
        []
    );
}

#[test]
fn an_alarm_during_the_before_hook_stops_without_moving_traffic() {
    let mut d = named(LAMBDA_CANARY_10_PERCENT_5_MINUTES, &hooks(true, true));
    start(&mut d);
    let effects = d
        .apply(Input::AlarmFired {
            names: vec!["orders-errors".into()],
            now: T0 + MIN,
        })
        .unwrap();
    assert_eq!(effects, stopped());
    let before = d.hook(Before).unwrap();
    assert_eq!(
        (before.status, before.end_time),
        (EventStatus::Skipped, Some(T0 + MIN))
    );
    // The hook answers regardless: too late.
    assert_eq!(
        answer(&mut d, Before, true, T0 + 2 * MIN),
        Err(ApplyError::HookAlreadyCompleted {
            execution_id: id(Before),
            status: EventStatus::Skipped
        })
    );
}

#[test]
fn an_alarm_list_that_is_empty_or_before_the_start_changes_nothing() {
    let mut d = named(LAMBDA_CANARY_10_PERCENT_5_MINUTES, &Hooks::default());
    let alarm = |now| Input::AlarmFired {
        names: vec!["orders-errors".into()],
        now,
    };
    assert_eq!(d.apply(alarm(T0 - 1)).unwrap(), []);
    assert_eq!(d.stage, Stage::Created);
    start(&mut d);
    let before = d.clone();
    assert_eq!(
        d.apply(Input::AlarmFired {
            names: vec![],
            now: T0 + MIN
        })
        .unwrap(),
        []
    );
    assert_eq!(d, before);
}

#[test]
fn stop_while_shifting_rolls_back() {
    let mut d = named(LAMBDA_CANARY_10_PERCENT_30_MINUTES, &hooks(false, true));
    start(&mut d);
    assert_eq!(
        d.apply(Input::Stop { now: T0 + MIN }).unwrap(),
        with_rollback(stopped())
    );
    assert_eq!(d.stage, Stage::Stopped);
    assert_eq!(
        d.error.as_ref().map(|e| e.code.as_str()),
        Some("MANUAL_STOP")
    );
    assert_eq!(d.complete_time, Some(T0 + MIN));
    // The after hook never ran.
    assert_eq!(d.hook(After).unwrap().status, EventStatus::Skipped);
    // A repeated stop changes nothing.
    let stored = d.clone();
    assert_eq!(d.apply(Input::Stop { now: T0 + 2 * MIN }).unwrap(), []);
    assert_eq!(d, stored);
}

#[test]
fn stop_during_the_after_hook_rolls_back_from_the_target() {
    let mut d = named(LAMBDA_ALL_AT_ONCE, &hooks(false, true));
    start(&mut d);
    assert_eq!(d.weight, 100);
    assert_eq!(
        d.apply(Input::Stop { now: T0 + MIN }).unwrap(),
        with_rollback(stopped())
    );
}

#[test]
fn stop_before_the_start() {
    let mut d = named(LAMBDA_CANARY_10_PERCENT_5_MINUTES, &hooks(true, true));
    assert_eq!(d.apply(Input::Stop { now: T0 }).unwrap(), stopped());
    assert_eq!(d.stage, Stage::Stopped);
    let refused = d.apply(Input::Start { now: T0 + 1 }).unwrap_err();
    assert_eq!(refused, ApplyError::AlreadyStarted(ID.into()));
    assert_eq!(refused.exception(), "DeploymentAlreadyStartedException");
}

#[test]
fn stop_after_the_end_is_refused() {
    let mut d = named(LAMBDA_ALL_AT_ONCE, &Hooks::default());
    start(&mut d);
    let stored = d.clone();
    let refused = d.apply(Input::Stop { now: T0 + MIN }).unwrap_err();
    assert_eq!(
        refused,
        ApplyError::AlreadyCompleted {
            deployment_id: ID.into(),
            status: DeploymentStatus::Succeeded
        }
    );
    assert_eq!(refused.exception(), "DeploymentAlreadyCompletedException");
    assert_eq!(d, stored);
}

#[test]
fn unknown_and_premature_hook_ids_are_refused() {
    let mut d = named(LAMBDA_CANARY_10_PERCENT_5_MINUTES, &hooks(true, true));
    // Nothing was invoked before the start.
    assert!(matches!(
        answer(&mut d, Before, true, T0 - 1),
        Err(ApplyError::UnknownHookExecution { .. })
    ));
    start(&mut d);
    let stored = d.clone();
    for execution_id in [
        "nonsense".to_owned(),
        hook_execution_id("d-OTHER00001", Before, SECRET),
        // Right deployment and event, without the deployment's secret: a guess.
        hook_execution_id(ID, Before, "guess"),
        format!("{ID}.{Before}"),
        id(After),
    ] {
        let refused = d
            .apply(Input::HookStatus {
                execution_id: execution_id.clone(),
                succeeded: true,
                now: T0 + SEC,
            })
            .unwrap_err();
        assert_eq!(
            refused,
            ApplyError::UnknownHookExecution {
                deployment_id: ID.into(),
                execution_id
            }
        );
        assert_eq!(
            refused.exception(),
            "InvalidLifecycleEventHookExecutionIdException"
        );
        assert_eq!(d, stored);
    }
}

#[test]
fn a_stale_answer_of_an_earlier_hook_is_refused_or_idempotent() {
    let mut d = named(LAMBDA_CANARY_10_PERCENT_5_MINUTES, &hooks(true, true));
    start(&mut d);
    answer(&mut d, Before, true, T0 + SEC).unwrap();
    let stored = d.clone();
    // The same answer again (a retried call): nothing happens twice.
    assert_eq!(answer(&mut d, Before, true, T0 + 2 * SEC).unwrap(), []);
    assert_eq!(d, stored);
    // A contradicting answer is refused and changes nothing.
    assert_eq!(
        answer(&mut d, Before, false, T0 + 3 * SEC),
        Err(ApplyError::HookAlreadyCompleted {
            execution_id: id(Before),
            status: EventStatus::Succeeded
        })
    );
    assert_eq!(d, stored);
}

#[test]
fn repeated_inputs_create_nothing_twice() {
    let mut d = named(LAMBDA_CANARY_10_PERCENT_5_MINUTES, &hooks(true, true));
    start(&mut d);
    assert!(matches!(
        d.apply(Input::Start { now: T0 + 1 }),
        Err(ApplyError::AlreadyStarted(_))
    ));
    answer(&mut d, Before, true, T0).unwrap();
    assert_eq!(
        tick(&mut d, T0 + 5 * MIN),
        [Effect::PointAliasAtTarget, invoke(After)]
    );
    let stored = d.clone();
    assert_eq!(tick(&mut d, T0 + 5 * MIN), []);
    assert_eq!(tick(&mut d, T0 + 6 * MIN), []);
    assert_eq!(d, stored);
    answer(&mut d, After, true, T0 + 7 * MIN).unwrap();
    let ended = d.clone();
    assert_eq!(answer(&mut d, After, true, T0 + 8 * MIN).unwrap(), []);
    assert_eq!(tick(&mut d, T0 + 9 * MIN), []);
    assert_eq!(d, ended);
}

#[test]
fn execution_ids_name_the_deployment_and_event_and_hold_its_secret() {
    assert_eq!(id(Before), "d-LAMBDA0001.BeforeAllowTraffic.7f3a9c");
    assert_eq!(id(After), "d-LAMBDA0001.AfterAllowTraffic.7f3a9c");
    let other = LambdaDeployment::new(
        ID.into(),
        alias(),
        predefined(LAMBDA_ALL_AT_ONCE).unwrap(),
        &hooks(true, true),
        "another",
        T0,
    );
    assert_ne!(
        other.hooks[0].execution_id,
        id(Before),
        "another secret, another id"
    );
    let mut one = named(LAMBDA_ALL_AT_ONCE, &hooks(true, true));
    let mut two = one.clone();
    assert_eq!(start(&mut one), start(&mut two));
}

#[test]
fn a_late_tick_goes_straight_to_the_weight_due_now() {
    let mut d = named(LAMBDA_LINEAR_10_PERCENT_EVERY_1_MINUTE, &hooks(false, true));
    start(&mut d);
    assert_eq!(
        tick(&mut d, T0 + 3 * MIN + 30 * SEC),
        [Effect::SetWeight { percent: 40 }]
    );
    assert_eq!(d.steps_applied, 4);
    assert_eq!(d.next_wakeup(), Some(T0 + 4 * MIN));
    assert_eq!(
        tick(&mut d, T0 + 20 * MIN),
        [Effect::PointAliasAtTarget, invoke(After)]
    );
    assert_eq!(d.steps_applied, 10);
}

#[test]
fn custom_linear_30_every_minute() {
    let routing = TrafficRouting::linear(30, 1).unwrap();
    let seen = run_by_wakeups(deployment(routing, &Hooks::default()));
    let shifts: Vec<(Millis, Effect)> = seen
        .into_iter()
        .filter(|(_, e)| matches!(e, Effect::SetWeight { .. } | Effect::PointAliasAtTarget))
        .collect();
    assert_eq!(
        shifts,
        [
            (0, Effect::SetWeight { percent: 30 }),
            (MIN, Effect::SetWeight { percent: 60 }),
            (2 * MIN, Effect::SetWeight { percent: 90 }),
            (3 * MIN, Effect::PointAliasAtTarget),
        ]
    );
}

#[test]
fn the_state_is_stored_in_codedeploys_words_and_reads_back() {
    let mut d = named(LAMBDA_CANARY_10_PERCENT_5_MINUTES, &hooks(true, true));
    start(&mut d);
    answer(&mut d, Before, true, T0 + SEC).unwrap();
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(
        json["routing"],
        serde_json::json!({
            "type": "TimeBasedCanary",
            "timeBasedCanary": {"canaryPercentage": 10, "canaryInterval": 5}
        })
    );
    assert_eq!(json["stage"], "Shifting");
    assert_eq!(json["alias"]["targetVersion"], "4");
    assert_eq!(json["hooks"][0]["executionId"], id(Before));
    assert_eq!(json["hooks"][0]["status"], "Succeeded");
    assert_eq!(json["stepsApplied"], 1);
    let back: LambdaDeployment = serde_json::from_value(json).unwrap();
    assert_eq!(back, d);
    // The stored deployment carries on where it was.
    let mut back = back;
    assert_eq!(
        tick(&mut back, T0 + SEC + 5 * MIN),
        [Effect::PointAliasAtTarget, invoke(After)]
    );
}

#[test]
fn hook_events_are_codedeploys() {
    assert_eq!(Before.to_string(), "BeforeAllowTraffic");
    assert_eq!(After.lifecycle_event(), LifecycleEvent::AfterAllowTraffic);
}

#[test]
fn stop_during_the_before_hook_leaves_the_alias_alone() {
    let mut d = named(LAMBDA_LINEAR_10_PERCENT_EVERY_2_MINUTES, &hooks(true, true));
    start(&mut d);
    assert_eq!(d.apply(Input::Stop { now: T0 + MIN }).unwrap(), stopped());
    assert_eq!(d.weight, 0);
    assert_eq!(d.steps_applied, 0);
    assert_eq!(d.hook(Before).unwrap().status, EventStatus::Skipped);
}

#[test]
fn nothing_is_due_before_the_start() {
    let mut d = named(LAMBDA_ALL_AT_ONCE, &Hooks::default());
    assert_eq!(tick(&mut d, T0 + 60 * MIN), []);
    assert_eq!(d.stage, Stage::Created);
    assert_eq!(d.status(), DeploymentStatus::Created);
}

#[test]
fn a_custom_canary_with_hooks() {
    let routing = TrafficRouting::canary(25, 90).unwrap();
    let mut d = deployment(routing, &hooks(true, true));
    start(&mut d);
    assert_eq!(
        answer(&mut d, Before, true, T0 + SEC).unwrap(),
        [Effect::SetWeight { percent: 25 }]
    );
    assert_eq!(d.next_wakeup(), Some(T0 + SEC + 90 * MIN));
    assert_eq!(tick(&mut d, T0 + 90 * MIN), []);
    assert_eq!(
        tick(&mut d, T0 + SEC + 90 * MIN),
        [Effect::PointAliasAtTarget, invoke(After)]
    );
}

#[test]
fn a_shorter_minute_keeps_the_steps_and_their_weights_and_only_shortens_the_waits() {
    let routing = TrafficRouting::linear(25, 2).unwrap();
    let deployment = LambdaDeployment::new(
        "d-SHORTMIN1".into(),
        AliasShift {
            function_name: "shop".into(),
            alias: "live".into(),
            current_version: "1".into(),
            target_version: "2".into(),
        },
        routing,
        &Hooks::default(),
        "secret",
        0,
    )
    .with_minute_ms(1_000);
    let real = routing.steps();
    let fast = deployment.steps();
    assert_eq!(real.len(), fast.len());
    for (real, fast) in real.iter().zip(&fast) {
        assert_eq!(real.percent, fast.percent);
        assert_eq!(real.offset_ms / 60, fast.offset_ms);
    }
    assert_eq!(fast.last().unwrap().offset_ms, 6_000);
}

#[test]
fn the_next_step_is_known_only_while_traffic_moves() {
    let mut deployment = LambdaDeployment::new(
        "d-NEXTSTEP1".into(),
        AliasShift {
            function_name: "shop".into(),
            alias: "live".into(),
            current_version: "1".into(),
            target_version: "2".into(),
        },
        TrafficRouting::linear(50, 1).unwrap(),
        &Hooks::default(),
        "secret",
        0,
    );
    assert_eq!(deployment.next_step(), None);
    deployment.apply(Input::Start { now: 10 }).unwrap();
    // No hook: the first step (50 %) is applied at once; the next is a minute later.
    assert_eq!(deployment.weight, 50);
    assert_eq!(deployment.next_step(), Some((10 + 60_000, 100)));
    deployment.apply(Input::Tick { now: 10 + 60_000 }).unwrap();
    assert_eq!(deployment.next_step(), None);
}

#[test]
fn an_alias_that_cannot_move_fails_a_running_deployment_and_nothing_after() {
    let mut deployment = LambdaDeployment::new(
        "d-ALIASFAIL".into(),
        AliasShift {
            function_name: "shop".into(),
            alias: "live".into(),
            current_version: "1".into(),
            target_version: "2".into(),
        },
        TrafficRouting::linear(50, 1).unwrap(),
        &Hooks::default(),
        "secret",
        0,
    );
    let failed = |now| Input::AliasFailed {
        code: "INVALID_LAMBDA_FUNCTION".into(),
        message: "alias live of shop: does not exist".into(),
        now,
    };
    assert_eq!(deployment.apply(failed(1)).unwrap(), [], "not started");
    deployment.apply(Input::Start { now: 2 }).unwrap();
    let effects = deployment.apply(failed(3)).unwrap();
    assert_eq!(deployment.status(), DeploymentStatus::Failed);
    assert!(effects.contains(&Effect::RollBack), "{effects:?}");
    assert_eq!(
        deployment.error.as_ref().unwrap().code,
        "INVALID_LAMBDA_FUNCTION"
    );
    assert_eq!(deployment.apply(failed(4)).unwrap(), [], "already over");
}

#[test]
fn refusals_name_an_execution_without_its_secret() {
    let error = ApplyError::HookAlreadyCompleted {
        execution_id: hook_execution_id("d-A1B2C3D4E", HookEvent::AfterAllowTraffic, "s3cr3t"),
        status: EventStatus::Failed,
    };
    let shown = error.to_string();
    assert!(shown.contains("d-A1B2C3D4E.AfterAllowTraffic"), "{shown}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
}
