//! Properties of every Lambda deployment, whatever happens to it and in whatever order.

use super::tests::{MIN, T0, deployment, hooks, id, start};
use super::*;
use HookEvent::{AfterAllowTraffic as After, BeforeAllowTraffic as Before};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Move {
    Tick(Millis),
    Answer(HookEvent, bool),
    Alarm,
    Stop,
}

fn any_move() -> impl Strategy<Value = Move> {
    prop_oneof![
        4 => (0..90 * MIN).prop_map(Move::Tick),
        3 => (prop_oneof![Just(Before), Just(After)], proptest::bool::weighted(0.8))
            .prop_map(|(event, ok)| Move::Answer(event, ok)),
        1 => Just(Move::Alarm),
        1 => Just(Move::Stop),
    ]
}

fn any_routing() -> impl Strategy<Value = TrafficRouting> {
    prop_oneof![
        (1u32..=99, 1u32..=30).prop_map(|(p, n)| TrafficRouting::canary(p, n).unwrap()),
        (1u32..=99, 1u32..=30).prop_map(|(p, n)| TrafficRouting::linear(p, n).unwrap()),
        Just(TrafficRouting::AllAtOnce),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    /// Whatever happens and in whatever order: weights stay strictly between 0 and 100
    /// and only rise; the alias is rolled back exactly when traffic had moved and the
    /// deployment did not succeed; it ends once, with Finished last; a refused input
    /// changes nothing; and nothing happens after the end.
    #[test]
    fn deployments_keep_their_rules(
        routing in any_routing(),
        before in any::<bool>(),
        after in any::<bool>(),
        moves in proptest::collection::vec(any_move(), 0..40),
    ) {
        let mut d = deployment(routing, &hooks(before, after));
        let mut all = start(&mut d);
        let mut now = T0;
        let mut last_weight = 0;
        let mut moved = false;
        for step in moves {
            let input = match step {
                Move::Tick(by) => {
                    now += by;
                    Input::Tick { now }
                }
                Move::Answer(event, succeeded) => Input::HookStatus {
                    execution_id: id(event),
                    succeeded,
                    now,
                },
                Move::Alarm => Input::AlarmFired { names: vec!["a".into()], now },
                Move::Stop => Input::Stop { now },
            };
            let stored = d.clone();
            let ended = d.stage.is_terminal();
            match d.apply(input) {
                Ok(effects) => {
                    if ended {
                        prop_assert!(effects.is_empty());
                        prop_assert_eq!(&d, &stored);
                    }
                    all.extend(effects);
                }
                Err(_) => prop_assert_eq!(&d, &stored),
            }
        }
        // Drive it to its end if it has not ended, hooks answering Succeeded.
        for _ in 0..200 {
            if d.stage.is_terminal() {
                break;
            }
            let answer = |event| Input::HookStatus {
                execution_id: id(event),
                succeeded: true,
                now,
            };
            let input = match d.stage {
                Stage::BeforeAllowTraffic => answer(Before),
                Stage::AfterAllowTraffic => answer(After),
                _ => {
                    now = now.max(d.next_wakeup().unwrap());
                    Input::Tick { now }
                }
            };
            all.extend(d.apply(input).unwrap());
        }
        prop_assert!(d.stage.is_terminal());
        for effect in &all {
            match effect {
                Effect::SetWeight { percent } => {
                    prop_assert!(0 < *percent && *percent < 100);
                    prop_assert!(*percent > last_weight);
                    last_weight = *percent;
                    moved = true;
                }
                Effect::PointAliasAtTarget => {
                    last_weight = 100;
                    moved = true;
                }
                _ => {}
            }
        }
        let rollbacks = all.iter().filter(|e| **e == Effect::RollBack).count();
        let succeeded = d.stage == Stage::Succeeded;
        prop_assert_eq!(rollbacks, usize::from(moved && !succeeded));
        prop_assert_eq!(d.weight, if succeeded { 100 } else { 0 });
        prop_assert_eq!(all.iter().filter(|e| **e == Effect::Finished).count(), 1);
        prop_assert_eq!(all.last(), Some(&Effect::Finished));
        prop_assert_eq!(d.next_wakeup(), None);
        for hook in &d.hooks {
            prop_assert!(hook.status.is_terminal() && hook.deadline.is_none());
            prop_assert!(!succeeded || hook.status == EventStatus::Succeeded);
        }
    }

    /// Ticks at any times: no weight is applied before its step is due, a tick before
    /// [`LambdaDeployment::next_wakeup`] does nothing, and the weight applied is always
    /// the latest one due.
    #[test]
    fn steps_apply_on_time_and_never_early(
        routing in any_routing(),
        gaps in proptest::collection::vec(0..20 * MIN, 1..60),
    ) {
        let mut d = deployment(routing, &Hooks::default());
        let steps = routing.steps();
        start(&mut d);
        let mut now = T0;
        for gap in gaps {
            now += gap;
            let wakeup = d.next_wakeup();
            let effects = d.apply(Input::Tick { now }).unwrap();
            if wakeup.is_none_or(|at| now < at) {
                prop_assert!(effects.is_empty());
                continue;
            }
            let latest_due = steps
                .iter()
                .rev()
                .find(|step| T0 + step.offset_ms <= now)
                .unwrap();
            prop_assert_eq!(d.weight, latest_due.percent);
            let expected = if latest_due.percent == 100 {
                Effect::PointAliasAtTarget
            } else {
                Effect::SetWeight { percent: latest_due.percent }
            };
            prop_assert_eq!(effects.first(), Some(&expected));
        }
    }
}
