use super::*;
use crate::config::{DeploymentConfig, MinimumHealthyHosts};
use crate::lifecycle;
use crate::planner::{self, Standing};
use crate::wire::SCHEMA_VERSION;
use proptest::prelude::*;
use std::collections::BTreeSet;

const ID: &str = "d-TEST00001";

fn targets(count: usize, zones: usize, standing: Standing) -> Vec<Target> {
    (0..count)
        .map(|index| Target {
            instance_id: format!("i-{index:03}"),
            zone: Some(format!("az-{}", index % zones.max(1))),
            standing,
        })
        .collect()
}

fn deployment(config: &str, targets: Vec<Target>) -> Deployment {
    let config = DeploymentConfig::predefined(config).unwrap();
    let plan = config.health_plan(targets.len() as u32).unwrap();
    Deployment::new(
        ID.into(),
        plan,
        None,
        Deadlines::default(),
        planner::order(targets),
        &lifecycle::in_place(false),
        true,
        false,
        0,
    )
}

/// Every report one host sends: each event starts and ends; `fail_at` fails that event
/// and ends the host's run.
fn host_reports(instance_id: &str, fail_at: Option<usize>, start: Millis) -> Vec<Report> {
    let mut reports = Vec::new();
    for (index, event) in lifecycle::in_place(false).into_iter().enumerate() {
        let at = start + index as Millis * 10;
        let failed = fail_at == Some(index);
        let base = Report {
            schema_version: SCHEMA_VERSION,
            deployment_id: ID.into(),
            instance_id: instance_id.into(),
            lifecycle_event: event,
            status: EventStatus::InProgress,
            start_time: at,
            end_time: None,
            diagnostics: None,
        };
        reports.push(base.clone());
        reports.push(Report {
            status: if failed {
                EventStatus::Failed
            } else {
                EventStatus::Succeeded
            },
            end_time: Some(at + 5),
            diagnostics: Some(Diagnostics {
                error_code: if failed {
                    ErrorCode::ScriptFailed
                } else {
                    ErrorCode::Success
                },
                script_name: String::new(),
                message: String::new(),
                log_tail: String::new(),
            }),
            ..base
        });
        if failed {
            break;
        }
    }
    reports
}

fn dispatched(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .flat_map(|effect| match effect {
            Effect::Dispatch { instance_ids } => instance_ids.clone(),
            _ => Vec::new(),
        })
        .collect()
}

fn has(effects: &[Effect], wanted: &Effect) -> bool {
    effects.contains(wanted)
}

fn deliver(deployment: &mut Deployment, reports: Vec<Report>) -> Vec<Effect> {
    let mut effects = Vec::new();
    for report in reports {
        let now = report.end_time.unwrap_or(report.start_time);
        effects.extend(deployment.apply(Input::Report { report, now }).unwrap());
    }
    effects
}

#[test]
fn half_at_a_time_on_nine_hosts_goes_in_batches_of_four() {
    let mut d = deployment(crate::config::HALF_AT_A_TIME, targets(9, 1, Standing::Old));
    let effects = d.apply(Input::Start { now: 0 }).unwrap();
    assert_eq!(effects[0], notify(NotificationEvent::DeploymentStart, None));
    let first = dispatched(&effects);
    assert_eq!(first.len(), 4);
    let mut sizes = vec![first.len()];
    let mut running = first;
    while !running.is_empty() {
        let mut next = Vec::new();
        for id in running {
            next.extend(dispatched(&deliver(&mut d, host_reports(&id, None, 100))));
        }
        if !next.is_empty() {
            sizes.push(next.len());
        }
        running = next;
    }
    assert_eq!(d.status, DeploymentStatus::Succeeded);
    assert_eq!(d.counts().succeeded, 9);
    assert_eq!(sizes.iter().sum::<usize>(), 9);
    assert!(sizes.iter().all(|&size| size <= 4), "{sizes:?}");
}

#[test]
fn success_records_the_revision_and_releases_the_lock() {
    let mut d = deployment(crate::config::ALL_AT_ONCE, targets(1, 1, Standing::Unknown));
    let ids = dispatched(&d.apply(Input::Start { now: 0 }).unwrap());
    let effects = deliver(&mut d, host_reports(&ids[0], None, 1));
    assert!(has(
        &effects,
        &notify(NotificationEvent::InstanceSuccess, Some("i-000"))
    ));
    assert!(has(
        &effects,
        &Effect::RecordHealth {
            instance_id: "i-000".into(),
            healthy: true
        }
    ));
    assert!(has(
        &effects,
        &notify(NotificationEvent::DeploymentSuccess, None)
    ));
    assert!(has(&effects, &Effect::RecordLastSuccessful));
    assert!(has(&effects, &Effect::ReleaseLock));
    assert!(!has(&effects, &Effect::StartRollback));
    assert_eq!(d.batches_dispatched, 1);
}

#[test]
fn one_at_a_time_fails_on_the_first_failure_and_rolls_back() {
    let mut d = deployment(crate::config::ONE_AT_A_TIME, targets(3, 1, Standing::Old));
    let ids = dispatched(&d.apply(Input::Start { now: 0 }).unwrap());
    assert_eq!(ids.len(), 1);
    let effects = deliver(&mut d, host_reports(&ids[0], Some(4), 1));
    assert_eq!(d.status, DeploymentStatus::Failed);
    assert_eq!(d.error.as_ref().unwrap().code, "HEALTH_CONSTRAINTS");
    assert!(dispatched(&effects).is_empty());
    assert!(has(&effects, &Effect::StartRollback));
    assert!(has(&effects, &Effect::ReleaseLock));
    assert!(!has(&effects, &Effect::RecordLastSuccessful));
    assert_eq!(d.counts().skipped, 2);
    let failed = &d.targets[0];
    assert_eq!(failed.events[4].status, EventStatus::Failed);
    assert!(
        failed.events[5..]
            .iter()
            .all(|e| e.status == EventStatus::Skipped)
    );
}

#[test]
fn one_at_a_time_succeeds_when_only_the_last_instance_fails() {
    let mut d = deployment(crate::config::ONE_AT_A_TIME, targets(3, 1, Standing::Old));
    let mut next = dispatched(&d.apply(Input::Start { now: 0 }).unwrap());
    for round in 0..3 {
        let fail = (round == 2).then_some(6);
        next = dispatched(&deliver(&mut d, host_reports(&next[0], fail, 1)));
        if round < 2 {
            assert_eq!(next.len(), 1);
        }
    }
    assert_eq!(d.status, DeploymentStatus::Succeeded);
    assert_eq!(d.counts().failed, 1);
}

#[test]
fn single_host_one_at_a_time_needs_that_host() {
    let mut d = deployment(crate::config::ONE_AT_A_TIME, targets(1, 1, Standing::Old));
    let ids = dispatched(&d.apply(Input::Start { now: 0 }).unwrap());
    deliver(&mut d, host_reports(&ids[0], Some(0), 1));
    assert_eq!(d.status, DeploymentStatus::Failed);
}

#[test]
fn all_at_once_succeeds_if_any_host_succeeds() {
    let mut d = deployment(crate::config::ALL_AT_ONCE, targets(4, 2, Standing::Old));
    let ids = dispatched(&d.apply(Input::Start { now: 0 }).unwrap());
    assert_eq!(ids.len(), 4);
    for (index, id) in ids.iter().enumerate() {
        deliver(&mut d, host_reports(id, (index > 0).then_some(2), 1));
    }
    assert_eq!(d.status, DeploymentStatus::Succeeded);
    assert_eq!(d.counts().failed, 3);
}

#[test]
fn unhealthy_hosts_go_first() {
    let mut fleet = targets(4, 1, Standing::Old);
    fleet[3].standing = Standing::Unhealthy;
    let mut d = deployment(crate::config::ONE_AT_A_TIME, fleet);
    assert_eq!(
        dispatched(&d.apply(Input::Start { now: 0 }).unwrap()),
        vec!["i-003"]
    );
}

#[test]
fn duplicates_change_nothing() {
    let mut d = deployment(crate::config::ALL_AT_ONCE, targets(2, 1, Standing::Old));
    let ids = dispatched(&d.apply(Input::Start { now: 0 }).unwrap());
    let reports = host_reports(&ids[0], None, 1);
    deliver(&mut d, reports.clone());
    let before = d.clone();
    assert!(deliver(&mut d, reports).is_empty());
    assert_eq!(d, before);
}

#[test]
fn foreign_reports_are_errors() {
    let mut d = deployment(crate::config::ALL_AT_ONCE, targets(1, 1, Standing::Old));
    d.apply(Input::Start { now: 0 }).unwrap();
    let mut report = host_reports("i-000", None, 1).remove(0);
    report.instance_id = "i-999".into();
    assert_eq!(
        d.apply(Input::Report {
            report: report.clone(),
            now: 1
        }),
        Err(ApplyError::UnknownInstance("i-999".into()))
    );
    report.deployment_id = "d-OTHER0001".into();
    assert!(matches!(
        d.apply(Input::Report { report, now: 1 }),
        Err(ApplyError::WrongDeployment { .. })
    ));
    assert_eq!(
        d.apply(Input::Start { now: 1 }),
        Err(ApplyError::AlreadyStarted)
    );
}

#[test]
fn silent_hosts_fail_at_their_deadline() {
    let mut d = deployment(crate::config::ALL_AT_ONCE, targets(2, 1, Standing::Old));
    d.apply(Input::Start { now: 0 }).unwrap();
    deliver(&mut d, host_reports("i-000", None, 1));
    let start = Deadlines::default().start_ms;
    assert_eq!(d.next_wakeup(), Some(start + 1));
    assert!(
        d.apply(Input::Tick { now: start }).unwrap().is_empty(),
        "not yet overdue"
    );
    let effects = d.apply(Input::Tick { now: start + 1 }).unwrap();
    assert!(has(
        &effects,
        &Effect::HostTimedOut {
            instance_id: "i-001".into()
        }
    ));
    assert!(has(
        &effects,
        &Effect::RecordHealth {
            instance_id: "i-001".into(),
            healthy: false
        }
    ));
    assert_eq!(
        d.status,
        DeploymentStatus::Succeeded,
        "AllAtOnce needs one success"
    );
    let silent = &d.targets[1];
    assert_eq!(
        silent.events[0].diagnostics.as_ref().unwrap().error_code,
        ErrorCode::UnknownError
    );
    assert!(
        silent.events[1..]
            .iter()
            .all(|e| e.status == EventStatus::Skipped)
    );
    // A late report from the failed host changes the record, not the outcome.
    deliver(&mut d, host_reports("i-001", None, start + 2));
    assert_eq!(d.targets[1].status, TargetStatus::Failed);
    assert_eq!(d.status, DeploymentStatus::Succeeded);
}

#[test]
fn running_events_get_their_hook_timeout() {
    let mut d = deployment(crate::config::ALL_AT_ONCE, targets(1, 1, Standing::Old));
    d.deadlines
        .event_ms
        .insert(LifecycleEvent::ApplicationStop, 7_000);
    d.apply(Input::Start { now: 0 }).unwrap();
    let first = host_reports("i-000", None, 100).remove(0);
    d.apply(Input::Report {
        report: first,
        now: 100,
    })
    .unwrap();
    assert_eq!(
        d.targets[0].deadline,
        Some(100 + 7_000 + d.deadlines.slack_ms)
    );
}

#[test]
fn a_host_clock_far_behind_does_not_fail_the_host() {
    let mut d = deployment(crate::config::ALL_AT_ONCE, targets(1, 1, Standing::Old));
    let now = 10 * 3600 * 1000;
    d.apply(Input::Start { now }).unwrap();
    // The host's clock says 1970; the control plane heard it just now.
    let first = host_reports("i-000", None, 5).remove(0);
    d.apply(Input::Report { report: first, now }).unwrap();
    let limit = d.deadlines.default_event_ms + d.deadlines.slack_ms;
    assert_eq!(d.targets[0].deadline, Some(now + limit));
    let effects = d.apply(Input::Tick { now: now + limit }).unwrap();
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(d.targets[0].status, TargetStatus::InProgress);
}

#[test]
fn stop_skips_pending_hosts_and_may_roll_back() {
    let mut d = deployment(crate::config::ONE_AT_A_TIME, targets(3, 1, Standing::Old));
    d.apply(Input::Start { now: 0 }).unwrap();
    let effects = d
        .apply(Input::Stop {
            now: 5,
            rollback: true,
        })
        .unwrap();
    assert_eq!(d.status, DeploymentStatus::Stopped);
    assert!(has(
        &effects,
        &notify(NotificationEvent::DeploymentStop, None)
    ));
    assert!(has(&effects, &Effect::StartRollback));
    assert_eq!(d.counts().skipped, 2);
    assert!(
        d.apply(Input::Stop {
            now: 6,
            rollback: true
        })
        .unwrap()
        .is_empty()
    );
    // The host that was deploying when the stop came still gets its deadline.
    let wake = d.next_wakeup().expect("the running host has a deadline");
    let effects = d.apply(Input::Tick { now: wake }).unwrap();
    assert!(has(
        &effects,
        &Effect::HostTimedOut {
            instance_id: "i-000".into()
        }
    ));
    assert!(d.targets.iter().all(|t| t.status.is_terminal()));
    assert_eq!(d.status, DeploymentStatus::Stopped);
    assert_eq!(d.next_wakeup(), None);
}

#[test]
fn zonal_deployments_wait_between_zones() {
    let fleet = targets(4, 2, Standing::Old);
    let config = DeploymentConfig::custom(
        "zonal",
        MinimumHealthyHosts::FleetPercent(0),
        Some(ZonalConfig {
            first_zone_monitor_duration_secs: Some(60),
            monitor_duration_secs: Some(10),
            minimum_healthy_hosts_per_zone: None,
        }),
    )
    .unwrap();
    let mut d = Deployment::new(
        ID.into(),
        config.health_plan(4).unwrap(),
        config.zonal_config,
        Deadlines::default(),
        planner::order_by_zone(fleet),
        &lifecycle::in_place(false),
        false,
        false,
        0,
    );
    let first = dispatched(&d.apply(Input::Start { now: 0 }).unwrap());
    assert_eq!(first, vec!["i-000", "i-002"], "only the first zone");
    deliver(&mut d, host_reports("i-000", None, 1));
    let effects = deliver(&mut d, host_reports("i-002", None, 1));
    assert!(
        dispatched(&effects).is_empty(),
        "the first zone is monitored first"
    );
    let done_at = 1 + 6 * 10 + 5;
    assert_eq!(d.zone_wait_until, Some(done_at + 60_000));
    assert!(
        dispatched(
            &d.apply(Input::Tick {
                now: done_at + 59_999
            })
            .unwrap()
        )
        .is_empty()
    );
    let second = dispatched(
        &d.apply(Input::Tick {
            now: done_at + 60_000,
        })
        .unwrap(),
    );
    assert_eq!(second, vec!["i-001", "i-003"]);
    assert_eq!(d.status, DeploymentStatus::InProgress);
}

#[derive(Debug, Clone)]
struct Scenario {
    standings: Vec<Standing>,
    zones: usize,
    rule: MinimumHealthyHosts,
    /// Per host: the event index that fails, if any.
    outcomes: Vec<Option<usize>>,
    /// Drives delivery order and duplication.
    choices: Vec<u32>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (1usize..16, 1usize..4).prop_flat_map(|(fleet, zones)| {
        (
            proptest::collection::vec(
                prop_oneof![
                    Just(Standing::Unhealthy),
                    Just(Standing::Unknown),
                    Just(Standing::Old),
                    Just(Standing::Current)
                ],
                fleet,
            ),
            Just(zones),
            prop_oneof![
                Just(MinimumHealthyHosts::MostConcurrency(1)),
                (0u32..100).prop_map(MinimumHealthyHosts::FleetPercent),
                (0u32..16).prop_map(MinimumHealthyHosts::HostCount),
            ],
            proptest::collection::vec(
                prop_oneof![3 => Just(None), 1 => (0usize..7).prop_map(Some)],
                fleet,
            ),
            proptest::collection::vec(any::<u32>(), 400),
        )
            .prop_map(|(standings, zones, rule, outcomes, choices)| Scenario {
                standings,
                zones,
                rule,
                outcomes,
                choices,
            })
    })
}

fn start(s: &Scenario) -> Option<Deployment> {
    let fleet: Vec<Target> = s
        .standings
        .iter()
        .enumerate()
        .map(|(index, &standing)| Target {
            instance_id: format!("i-{index:03}"),
            zone: Some(format!("az-{}", index % s.zones)),
            standing,
        })
        .collect();
    let config = DeploymentConfig {
        name: "p".into(),
        minimum_healthy_hosts: s.rule,
        zonal_config: None,
    };
    let plan = config.health_plan(fleet.len() as u32).ok()?;
    Some(Deployment::new(
        ID.into(),
        plan,
        None,
        Deadlines::default(),
        planner::order(fleet),
        &lifecycle::in_place(false),
        true,
        false,
        0,
    ))
}

fn outcome_of(s: &Scenario, instance_id: &str) -> Option<usize> {
    s.outcomes[instance_id[2..].parse::<usize>().unwrap()]
}

/// Runs a deployment to its end, delivering reports as `order` picks them from those
/// sent so far (a picked report stays deliverable, so it may come again). Checks the
/// invariants after every step and returns the final state.
fn run(s: &Scenario, mut d: Deployment, shuffle: bool) -> Result<Deployment, TestCaseError> {
    let mut outbox: Vec<Report> = Vec::new();
    let mut delivered: Vec<Report> = Vec::new();
    let mut ever_dispatched = BTreeSet::new();
    let mut choices = s.choices.iter().cycle();
    let mut effects = d.apply(Input::Start { now: 0 }).unwrap();
    let mut step = 0u64;
    loop {
        let sent = dispatched(&effects);
        if !sent.is_empty() {
            let counts = d.counts();
            prop_assert!(counts.in_progress <= d.plan.batch_size, "batch size broken");
            let healthy = d.targets.iter().filter(|t| t.counts_as_healthy()).count() as u32;
            let any_healthy_sent = d.targets.iter().any(|t| {
                sent.contains(&t.target.instance_id) && t.target.standing.counts_as_healthy()
            });
            prop_assert!(
                !any_healthy_sent || healthy >= d.plan.minimum_healthy,
                "minimum broken"
            );
        }
        for id in sent {
            prop_assert!(
                ever_dispatched.insert(id.clone()),
                "{} dispatched twice",
                id
            );
            let mut reports = host_reports(
                &id,
                outcome_of(s, &id),
                1_000 + 100 * ever_dispatched.len() as Millis,
            );
            if shuffle {
                // Shuffle this host's reports among themselves.
                for i in (1..reports.len()).rev() {
                    let j = *choices.next().unwrap() as usize % (i + 1);
                    reports.swap(i, j);
                }
            }
            outbox.extend(reports);
        }
        if outbox.is_empty() {
            break;
        }
        step += 1;
        prop_assert!(step < 10_000, "deployment does not end");
        let report =
            if shuffle && !delivered.is_empty() && choices.next().unwrap().is_multiple_of(4) {
                // Deliver an old report again.
                delivered[*choices.next().unwrap() as usize % delivered.len()].clone()
            } else {
                outbox.remove(0)
            };
        delivered.push(report.clone());
        let before = d.clone();
        // The control plane's clock: each host's reports are all received at one time,
        // so that delivery order alone differs between runs.
        let now = report.start_time / 100 * 100 + 99;
        effects = d.apply(Input::Report { report, now }).unwrap();
        if effects.is_empty() && before.status == d.status {
            prop_assert_eq!(before.counts(), d.counts());
        }
    }
    Ok(d)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    /// Whatever the order and duplication of reports, the deployment ends, never sends
    /// a host two commands, never deploys past the batch size or the health minimum,
    /// and succeeds exactly by the config's rule.
    #[test]
    fn deployments_end_and_keep_their_rules(s in scenario()) {
        let Some(d) = start(&s) else { return Ok(()) };
        let d = run(&s, d, true)?;
        prop_assert!(d.status.is_terminal());
        prop_assert!(d.targets.iter().all(|t| t.status.is_terminal()));
        let succeeded = d.counts().succeeded;
        if d.status == DeploymentStatus::Succeeded {
            prop_assert!(d.plan.is_success(succeeded));
        }
        if s.outcomes.iter().all(Option::is_none) {
            prop_assert_eq!(d.status, DeploymentStatus::Succeeded);
            prop_assert_eq!(succeeded, d.plan.fleet);
        }
    }

    /// Reports duplicated and reordered reach the same final state as the same reports
    /// delivered once, in order.
    #[test]
    fn duplicated_and_reordered_reports_reach_the_same_state(s in scenario()) {
        let Some(d) = start(&s) else { return Ok(()) };
        let in_order = run(&s, d.clone(), false)?;
        let shuffled = run(&s, d, true)?;
        prop_assert_eq!(shuffled, in_order);
    }
}

#[test]
fn the_largest_deployment_fits_one_item_when_every_host_fails_loudly() {
    // Real EC2 ids and zone names, a long message and a full log tail on every host.
    let hosts = (0..MAX_TARGETS)
        .map(|index| Target {
            instance_id: format!("i-{index:017x}"),
            zone: Some(format!("us-east-1{}", ["a", "b", "c"][index % 3])),
            standing: Standing::Old,
        })
        .collect();
    let mut d = deployment(crate::config::ALL_AT_ONCE, hosts);
    d.apply(Input::Start { now: 0 }).unwrap();
    let ids: Vec<String> = d
        .targets
        .iter()
        .map(|t| t.target.instance_id.clone())
        .collect();
    for id in &ids {
        let mut reports = host_reports(id, Some(6), 1_764_000_000_000);
        let last = reports.last_mut().unwrap().diagnostics.as_mut().unwrap();
        last.message = "m".repeat(5000);
        last.log_tail = "é".repeat(crate::wire::LOG_TAIL_MAX_BYTES / 2);
        deliver(&mut d, reports);
    }
    assert_eq!(d.status, DeploymentStatus::Failed);
    let kept = d.targets[0].events[6].diagnostics.as_ref().unwrap();
    assert_eq!(kept.message.len(), MESSAGE_MAX_BYTES);
    // Its share, less a byte where the cut fell inside a two-byte character.
    let share = LOG_TAIL_BUDGET_BYTES / MAX_TARGETS;
    assert!((share - 1..=share).contains(&kept.log_tail.len()));
    let stored = serde_json::to_string(&d).unwrap().len();
    eprintln!("state of {MAX_TARGETS} failed hosts: {stored} bytes");
    // The rest of the item (spec, outbox, keys) stays well under the remaining 100 KB.
    assert!(
        stored < 300 * 1024,
        "state of {MAX_TARGETS} hosts is {stored} bytes"
    );
}

#[test]
fn a_small_deployment_keeps_whole_log_tails() {
    let mut d = deployment(crate::config::ALL_AT_ONCE, targets(3, 1, Standing::Old));
    d.apply(Input::Start { now: 0 }).unwrap();
    let mut reports = host_reports("i-000", Some(2), 10);
    let tail = "x".repeat(crate::wire::LOG_TAIL_MAX_BYTES);
    reports
        .last_mut()
        .unwrap()
        .diagnostics
        .as_mut()
        .unwrap()
        .log_tail = tail.clone();
    deliver(&mut d, reports);
    let kept = &d
        .targets
        .iter()
        .find(|t| t.target.instance_id == "i-000")
        .unwrap()
        .events[2];
    assert_eq!(kept.diagnostics.as_ref().unwrap().log_tail, tail);
}
