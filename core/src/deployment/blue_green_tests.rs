//! The blue/green stages, driven through `plan` and `apply` with the hosts' records kept
//! in memory as the store keeps them.

use super::effect::notify;
use super::*;
use crate::config::DeploymentConfig;
use crate::identity::Sender;
use crate::lifecycle;
use crate::planner::Standing;
use crate::wire::{EventStatus, Report, SCHEMA_VERSION};
use std::collections::BTreeMap;

const ID: &str = "d-BLUEGREEN";
const MINUTE: Millis = 60_000;

fn hosts(prefix: &str, count: usize) -> Vec<Target> {
    (0..count)
        .map(|index| Target {
            instance_id: format!("i-{prefix}{index}"),
            zone: Some(format!("az-{}", index % 2)),
            standing: Standing::Unknown,
            sender: Sender::InstanceRoleOf("AROAHOSTROLE".into()),
        })
        .collect()
}

struct Run {
    d: Deployment,
    ordered: Vec<Target>,
    records: BTreeMap<String, TargetState>,
    /// Every command sent, per host: the events it was asked to run.
    commands: Vec<(String, Vec<LifecycleEvent>)>,
    /// Load balancer steps started, per host.
    traffic: Vec<(String, LifecycleEvent)>,
    effects: Vec<Effect>,
}

struct Options {
    config: &'static str,
    green: usize,
    blue: usize,
    ready_wait_ms: Option<Millis>,
    original_fleet: OriginalFleet,
    rollback: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            config: "CodeDeployDefault.HalfAtATime",
            green: 4,
            blue: 4,
            ready_wait_ms: None,
            original_fleet: OriginalFleet::Terminate {
                wait_ms: 5 * MINUTE,
            },
            rollback: true,
        }
    }
}

impl Run {
    fn new(options: Options) -> Self {
        Self::with_events(options, lifecycle::blue_green_replacement())
    }

    fn with_events(options: Options, events: Vec<LifecycleEvent>) -> Self {
        let config = DeploymentConfig::predefined(options.config).unwrap();
        let planned = plan(Plan {
            deployment_id: ID.into(),
            config: &config,
            targets: hosts("g", options.green),
            launch: false,
            update_outdated_only: false,
            deadlines: Deadlines::default(),
            events: &events,
            rollback_on_failure: options.rollback,
            rollback_on_stop: false,
            alarms: None,
            first_alarm_check: None,
            blue_green: Some(BlueGreenPlan {
                original: hosts("b", options.blue),
                original_events: lifecycle::blue_green_original(),
                ready_wait_ms: options.ready_wait_ms,
                original_fleet: options.original_fleet,
            }),
            now: 0,
        })
        .unwrap();
        let mut run = Self {
            d: planned.state,
            ordered: planned.ordered,
            records: BTreeMap::new(),
            commands: Vec::new(),
            traffic: Vec::new(),
            effects: Vec::new(),
        };
        run.carry_out(planned.effects, 0);
        run
    }

    fn carry_out(&mut self, effects: Vec<Effect>, now: Millis) {
        for effect in &effects {
            match effect {
                Effect::Dispatch { first, count } => {
                    for index in *first..first + count {
                        let target = self.ordered[index as usize].clone();
                        let record = self.d.dispatched_target(target, index, now);
                        let id = record.target.instance_id.clone();
                        self.commands
                            .push((id.clone(), self.d.first_stretch(index)));
                        assert!(self.records.insert(id, record).is_none());
                    }
                }
                Effect::Reroute { first, count } => {
                    for index in *first..first + count {
                        let id = self.ordered[index as usize].instance_id.clone();
                        let record = self.records.remove(&id).expect("installed first");
                        assert_eq!(record.status, TargetStatus::Ready);
                        let record = self.d.rerouted_target(record, now);
                        let events: Vec<LifecycleEvent> =
                            record.events.iter().map(|r| r.event).collect();
                        let from = events
                            .iter()
                            .position(|&e| e == LifecycleEvent::BeforeAllowTraffic)
                            .unwrap();
                        self.commands
                            .push((id.clone(), lifecycle::stretch(&events, from).to_vec()));
                        self.records.insert(id, record);
                    }
                }
                Effect::Resume {
                    instance_id,
                    events,
                    ..
                } => self.commands.push((instance_id.clone(), events.clone())),
                Effect::Traffic { instance_id, event } => {
                    self.traffic.push((instance_id.clone(), *event))
                }
                _ => {}
            }
        }
        self.effects.extend(effects);
    }

    fn apply(&mut self, input: Input, now: Millis) -> Result<Vec<Effect>, ApplyError> {
        let mut touched: Vec<TargetState> = match &input {
            Input::Report { report, .. } => self
                .records
                .get(&report.instance_id)
                .cloned()
                .into_iter()
                .collect(),
            Input::Traffic { instance_id, .. } => {
                self.records.get(instance_id).cloned().into_iter().collect()
            }
            Input::Tick { .. } => self.records.values().cloned().collect(),
            _ => Vec::new(),
        };
        let effects = self.d.apply(input, &mut touched)?;
        for record in touched {
            self.records
                .insert(record.target.instance_id.clone(), record);
        }
        self.carry_out(effects.clone(), now);
        Ok(effects)
    }

    /// The host runs every event of its latest command, and the control plane's
    /// traffic steps succeed, until the host has nothing left to do.
    fn run_host(&mut self, id: &str, now: Millis, fail: Option<LifecycleEvent>) {
        loop {
            let pending_traffic = self.traffic.iter().position(|(host, _)| host == id);
            if let Some(position) = pending_traffic {
                let (_, event) = self.traffic.remove(position);
                let outcome = match fail == Some(event) {
                    true => TrafficOutcome::Failed {
                        message: "unhealthy".into(),
                    },
                    false => TrafficOutcome::Done,
                };
                self.apply(
                    Input::Traffic {
                        instance_id: id.into(),
                        event,
                        outcome,
                        now,
                    },
                    now,
                )
                .unwrap();
                continue;
            }
            let Some(position) = self.commands.iter().position(|(host, _)| host == id) else {
                return;
            };
            let (_, events) = self.commands.remove(position);
            for event in events {
                let failed = fail == Some(event);
                let report = Report {
                    schema_version: SCHEMA_VERSION,
                    deployment_id: ID.into(),
                    instance_id: id.into(),
                    lifecycle_event: event,
                    status: if failed {
                        EventStatus::Failed
                    } else {
                        EventStatus::Succeeded
                    },
                    start_time: now,
                    end_time: Some(now),
                    diagnostics: None,
                };
                let sender = Some(format!("AROAHOSTROLE:{id}"));
                self.apply(
                    Input::Report {
                        report,
                        sender,
                        now,
                    },
                    now,
                )
                .unwrap();
                if failed {
                    return;
                }
            }
        }
    }

    fn run_all(&mut self, prefix: &str, now: Millis) {
        let ids: Vec<String> = self
            .ordered
            .iter()
            .map(|t| t.instance_id.clone())
            .filter(|id| id.starts_with(&format!("i-{prefix}")))
            .collect();
        for id in ids {
            self.run_host(&id, now, None);
        }
    }

    fn stage(&self) -> Stage {
        self.d.blue_green.as_ref().unwrap().stage
    }

    fn status_of(&self, id: &str) -> Option<TargetStatus> {
        self.records.get(id).map(|r| r.status)
    }

    fn has(&self, wanted: impl Fn(&Effect) -> bool) -> bool {
        self.effects.iter().any(wanted)
    }
}

#[test]
fn replacement_installs_all_at_once_and_stops_before_traffic() {
    let run = Run::new(Options::default());
    let sent: Vec<&String> = run.commands.iter().map(|(id, _)| id).collect();
    assert_eq!(sent, ["i-g0", "i-g1", "i-g2", "i-g3"]);
    for (_, events) in &run.commands {
        assert_eq!(events.first(), Some(&LifecycleEvent::ApplicationStop));
        assert_eq!(events.last(), Some(&LifecycleEvent::ValidateService));
    }
    assert_eq!(run.stage(), Stage::Installing);
    // No original host is touched before traffic moves.
    assert!(run.records.keys().all(|id| id.starts_with("i-g")));
}

#[test]
fn a_full_run_reroutes_in_batches_then_blocks_then_terminates_after_the_wait() {
    let mut run = Run::new(Options::default());
    for id in ["i-g0", "i-g1", "i-g2"] {
        run.run_host(id, 10, None);
        assert_eq!(run.status_of(id), Some(TargetStatus::Ready));
    }
    assert_eq!(run.stage(), Stage::Installing, "waits for the whole fleet");
    run.run_host("i-g3", 10, None);
    assert_eq!(run.stage(), Stage::Rerouting);
    assert!(run.has(|e| matches!(
        e,
        Effect::Notify {
            event: NotificationEvent::InstanceReady,
            ..
        }
    )));
    // HalfAtATime of 4: two replacement hosts get traffic at a time.
    let rerouted: Vec<&String> = run.commands.iter().map(|(id, _)| id).collect();
    assert_eq!(rerouted, ["i-g0", "i-g1"]);
    assert_eq!(run.commands[0].1, [LifecycleEvent::BeforeAllowTraffic]);
    run.run_host("i-g0", 20, None);
    assert_eq!(run.status_of("i-g0"), Some(TargetStatus::Succeeded));
    assert!(
        run.commands.iter().any(|(id, _)| id == "i-g2"),
        "the next one goes"
    );
    run.run_all("g", 30);
    assert_eq!(run.stage(), Stage::BlockingOriginal);
    let blocks: Vec<&(String, Vec<LifecycleEvent>)> = run.commands.iter().collect();
    assert_eq!(blocks.len(), 4, "every original host is blocked at once");
    assert!(
        blocks
            .iter()
            .all(|(_, events)| events == &[LifecycleEvent::BeforeBlockTraffic])
    );
    run.run_all("b", 40);
    assert_eq!(run.stage(), Stage::TerminationWait);
    assert_eq!(run.d.status, DeploymentStatus::InProgress);
    assert_eq!(run.d.next_wakeup(), Some(40 + 5 * MINUTE));
    run.apply(Input::Tick { now: 41 }, 41).unwrap();
    assert!(
        !run.has(|e| *e == Effect::TerminateOriginal),
        "not before the wait"
    );
    run.apply(
        Input::Tick {
            now: 40 + 5 * MINUTE,
        },
        40 + 5 * MINUTE,
    )
    .unwrap();
    assert_eq!(run.d.status, DeploymentStatus::Succeeded);
    let ends: Vec<&Effect> = run
        .effects
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::TerminateOriginal
                    | Effect::AdoptReplacement
                    | Effect::RecordLastSuccessful
                    | Effect::ReleaseLock
            )
        })
        .collect();
    assert_eq!(
        ends,
        [
            &Effect::TerminateOriginal,
            &Effect::AdoptReplacement,
            &Effect::RecordLastSuccessful,
            &Effect::ReleaseLock
        ]
    );
    assert!(!run.has(|e| *e == Effect::UpdateOutdated));
    // Only the replacement fleet's health is recorded: the original never ran the revision.
    let healthy: Vec<&String> = run
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::RecordHealth { instance_id, .. } => Some(instance_id),
            _ => None,
        })
        .collect();
    assert_eq!(healthy.len(), 4);
    assert!(healthy.iter().all(|id| id.starts_with("i-g")));
}

#[test]
fn skip_wait_terminates_at_once_and_keep_alive_ends_when_blocked() {
    let mut run = Run::new(Options::default());
    run.run_all("g", 10);
    run.run_all("g", 20);
    run.run_all("b", 30);
    assert_eq!(
        run.apply(
            Input::Continue {
                wait: WaitType::ReadyWait,
                now: 31
            },
            31
        ),
        Err(ApplyError::NotWaiting(WaitType::ReadyWait))
    );
    run.apply(
        Input::Continue {
            wait: WaitType::TerminationWait,
            now: 32,
        },
        32,
    )
    .unwrap();
    assert_eq!(run.d.status, DeploymentStatus::Succeeded);
    assert!(run.has(|e| *e == Effect::TerminateOriginal));

    let mut kept = Run::new(Options {
        original_fleet: OriginalFleet::KeepAlive,
        ..Options::default()
    });
    kept.run_all("g", 10);
    kept.run_all("g", 20);
    kept.run_all("b", 30);
    assert_eq!(kept.d.status, DeploymentStatus::Succeeded);
    assert!(!kept.has(|e| *e == Effect::TerminateOriginal));
}

#[test]
fn ready_wait_holds_traffic_until_continued_and_stops_when_nobody_does() {
    let options = || Options {
        ready_wait_ms: Some(10 * MINUTE),
        ..Options::default()
    };
    let mut run = Run::new(options());
    run.run_all("g", 10);
    assert_eq!(run.stage(), Stage::Ready);
    assert!(
        run.commands.is_empty(),
        "no traffic before ContinueDeployment"
    );
    assert!(run.has(|e| matches!(
        e,
        Effect::Notify {
            event: NotificationEvent::DeploymentReady,
            ..
        }
    )));
    run.apply(Input::Tick { now: 100 }, 100).unwrap();
    assert_eq!(run.stage(), Stage::Ready);
    run.apply(
        Input::Continue {
            wait: WaitType::ReadyWait,
            now: 200,
        },
        200,
    )
    .unwrap();
    assert_eq!(run.stage(), Stage::Rerouting);
    assert_eq!(run.commands.len(), 2);

    let mut late = Run::new(options());
    late.run_all("g", 10);
    late.apply(
        Input::Tick {
            now: 10 + 10 * MINUTE,
        },
        10 + 10 * MINUTE,
    )
    .unwrap();
    assert_eq!(late.d.status, DeploymentStatus::Stopped);
    assert_eq!(late.d.error.as_ref().unwrap().code, TIMEOUT);
    assert!(late.commands.is_empty());
}

#[test]
fn a_failed_install_fails_before_any_traffic_moves_and_rolls_back() {
    let mut run = Run::new(Options::default());
    run.run_host("i-g0", 10, None);
    run.run_host("i-g1", 10, Some(LifecycleEvent::ValidateService));
    assert_eq!(run.d.status, DeploymentStatus::Failed);
    assert!(run.has(|e| *e == Effect::StartRollback));
    assert!(run.has(|e| *e == Effect::CancelHosts));
    assert!(run.traffic.is_empty());
    assert!(!run.has(|e| matches!(e, Effect::Reroute { .. })));
    assert!(run.records.keys().all(|id| id.starts_with("i-g")));
    assert!(!run.has(|e| *e == Effect::TerminateOriginal));
}

#[test]
fn a_replacement_host_failing_allow_traffic_fails_the_deployment() {
    let mut run = Run::new(Options::default());
    run.run_all("g", 10);
    run.run_host("i-g0", 20, Some(LifecycleEvent::AllowTraffic));
    assert_eq!(run.d.status, DeploymentStatus::Failed);
    assert!(run.d.error.as_ref().unwrap().message.contains("rerouted"));
    assert!(run.has(|e| *e == Effect::StartRollback));
    assert!(
        !run.records.keys().any(|id| id.starts_with("i-b")),
        "originals untouched"
    );
}

#[test]
fn a_rollback_gives_traffic_back_without_installing() {
    // The rollback's replacement fleet is the failed deployment's original one.
    let mut run = Run::with_events(
        Options {
            original_fleet: OriginalFleet::Terminate { wait_ms: 0 },
            ..Options::default()
        },
        lifecycle::blue_green_rollback_original(),
    );
    assert_eq!(run.stage(), Stage::Rerouting);
    let sent: Vec<&String> = run.commands.iter().map(|(id, _)| id).collect();
    assert_eq!(sent, ["i-g0", "i-g1"]);
    assert_eq!(run.commands[0].1, [LifecycleEvent::BeforeAllowTraffic]);
    run.run_all("g", 10);
    run.run_all("g", 10);
    assert_eq!(run.stage(), Stage::BlockingOriginal);
    run.run_all("b", 20);
    assert_eq!(run.d.status, DeploymentStatus::Succeeded);
    assert!(run.has(|e| *e == Effect::TerminateOriginal));
}

#[test]
fn an_alarm_during_the_termination_wait_stops_and_rolls_back() {
    let mut run = Run::new(Options::default());
    run.d.alarms = Some(AlarmPolicy {
        ignore_poll_failure: false,
        rollback: true,
    });
    run.run_all("g", 10);
    run.run_all("g", 20);
    run.run_all("b", 30);
    run.apply(
        Input::Alarm {
            now: 40,
            check: AlarmCheck::Active {
                alarms: vec!["errors".into()],
            },
        },
        40,
    )
    .unwrap();
    assert_eq!(run.d.status, DeploymentStatus::Stopped);
    assert!(run.has(|e| *e == Effect::StartRollback));
    assert!(!run.has(|e| *e == Effect::TerminateOriginal));
    assert_eq!(run.d.next_wakeup(), None);
}

#[test]
fn a_stored_summary_reads_back() {
    let run = Run::new(Options::default());
    let json = serde_json::to_string(&run.d).unwrap();
    let back: Deployment = serde_json::from_str(&json).unwrap();
    assert_eq!(back, run.d);
    // An in-place summary stored before blue/green reads as in place.
    let mut value = serde_json::to_value(&run.d).unwrap();
    value.as_object_mut().unwrap().remove("blueGreen");
    let old: Deployment = serde_json::from_value(value).unwrap();
    assert_eq!(old.blue_green, None);
}

/// A deployment stored while its copy launches: it has no hosts, starts nothing but the
/// copy, and ending it any way before the copy is ready removes the copy and starts no
/// rollback (nothing was changed to roll back).
#[test]
fn provisioning_ends_by_removing_the_copy_never_by_a_rollback() {
    let alarms = Some(AlarmPolicy {
        ignore_poll_failure: false,
        rollback: true,
    });
    let until = 10 * MINUTE;
    let (d, effects) =
        Deployment::new_provisioning(ID.into(), Deadlines::default(), alarms, 0, until);
    assert_eq!(d.status, DeploymentStatus::InProgress);
    assert!(d.provisioning());
    assert_eq!(
        effects,
        vec![
            notify(NotificationEvent::DeploymentStart, None),
            Effect::ProvisionFleet
        ]
    );
    assert_eq!(
        d.next_wakeup(),
        Some(until),
        "the tick looks at its deadline"
    );

    // Time passes: nothing happens before the deadline, the deployment fails at it.
    let mut waiting = d.clone();
    assert!(
        waiting
            .apply(Input::Tick { now: until - 1 }, &mut [])
            .unwrap()
            .is_empty()
    );
    assert_eq!(waiting.status, DeploymentStatus::InProgress);
    let ends = [
        Input::Tick { now: until },
        Input::Stop {
            now: 5,
            rollback: true,
        },
        Input::Alarm {
            now: 5,
            check: AlarmCheck::Active {
                alarms: vec!["errors".into()],
            },
        },
        Input::ProvisioningFailed {
            now: 5,
            message: "the copy's instances are gone".into(),
        },
    ];
    for input in ends {
        let mut ended = d.clone();
        let effects = ended.apply(input.clone(), &mut []).unwrap();
        assert!(ended.status.is_terminal(), "{input:?}");
        assert!(
            effects.contains(&Effect::RemoveReplacement),
            "{input:?}: {effects:?}"
        );
        assert!(
            effects.contains(&Effect::ReleaseLock),
            "{input:?}: {effects:?}"
        );
        assert!(
            !effects.contains(&Effect::StartRollback),
            "{input:?}: {effects:?}"
        );
        assert!(
            !effects.contains(&Effect::CancelHosts),
            "{input:?}: {effects:?}"
        );
    }
    let mut failed = d.clone();
    failed
        .apply(
            Input::ProvisioningFailed {
                now: 5,
                message: "why".into(),
            },
            &mut [],
        )
        .unwrap();
    assert_eq!(failed.status, DeploymentStatus::Failed);
    assert_eq!(failed.error.as_ref().unwrap().code, PROVISIONING_ERROR);
    // Only while provisioning: a planned deployment ignores it.
    let mut run = Run::new(Options::default());
    let effects = run
        .d
        .apply(
            Input::ProvisioningFailed {
                now: 5,
                message: "late".into(),
            },
            &mut [],
        )
        .unwrap();
    assert!(effects.is_empty());
    assert_eq!(run.d.status, DeploymentStatus::InProgress);
    // The stored form reads back.
    let stored = serde_json::to_string(&d).unwrap();
    assert_eq!(serde_json::from_str::<Deployment>(&stored).unwrap(), d);
}
