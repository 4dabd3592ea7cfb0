use super::effect::notify;
use super::*;
use crate::config::{DeploymentConfig, MinimumHealthyHosts};
use crate::identity::Sender;
use crate::lifecycle;
use crate::planner::{self, Standing};
use crate::wire::{Diagnostics, ErrorCode, EventStatus, Report, SCHEMA_VERSION};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const ID: &str = "d-TEST00001";

fn targets(count: usize, zones: usize, standing: Standing) -> Vec<Target> {
    (0..count)
        .map(|index| Target {
            instance_id: format!("i-{index:03}"),
            zone: Some(format!("az-{}", index % zones.max(1))),
            standing,
            sender: Sender::InstanceRoleOf("AROAHOSTROLE".into()),
        })
        .collect()
}

/// A report as its own host's instance role sends it.
fn from_host(report: Report, now: Millis) -> Input {
    let sender = Some(format!("AROAHOSTROLE:{}", report.instance_id));
    Input::Report {
        report,
        sender,
        now,
    }
}

/// A deployment with its hosts' records kept in memory, as the store keeps them in
/// DynamoDB: the summary, the ordered list, and a record for each host sent its command.
#[derive(Debug, Clone, PartialEq)]
struct Sim {
    d: Deployment,
    plan: Vec<Target>,
    records: BTreeMap<String, TargetState>,
}

impl Sim {
    fn new(d: Deployment, plan: Vec<Target>) -> Self {
        Self {
            d,
            plan,
            records: BTreeMap::new(),
        }
    }

    /// Applies an input with the records it concerns, and carries out dispatches.
    fn apply(&mut self, input: Input) -> Result<Vec<Effect>, ApplyError> {
        let now = match &input {
            Input::Start { now }
            | Input::Report { now, .. }
            | Input::Tick { now }
            | Input::Recount { now }
            | Input::Stop { now, .. }
            | Input::Traffic { now, .. }
            | Input::Alarm { now, .. }
            | Input::Continue { now, .. }
            | Input::ProvisioningFailed { now, .. } => *now,
        };
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
        for effect in &effects {
            if let Effect::Dispatch { first, count } = effect {
                for index in *first..first + count {
                    let target = self.plan[index as usize].clone();
                    let record = self.d.dispatched_target(target, index, now);
                    let id = record.target.instance_id.clone();
                    assert!(
                        self.records.insert(id.clone(), record).is_none(),
                        "{id} dispatched twice"
                    );
                }
            }
        }
        Ok(effects)
    }

    /// The instance ids a list of effects sends commands to.
    fn dispatched(&self, effects: &[Effect]) -> Vec<String> {
        effects
            .iter()
            .flat_map(|effect| match effect {
                Effect::Dispatch { first, count } => self.plan
                    [*first as usize..(first + count) as usize]
                    .iter()
                    .map(|t| t.instance_id.clone())
                    .collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// A host's record as readers see it.
    fn target(&self, instance_id: &str) -> TargetState {
        self.records.get(instance_id).cloned().unwrap_or_else(|| {
            let index = self
                .plan
                .iter()
                .position(|t| t.instance_id == instance_id)
                .expect("a target of the deployment");
            TargetState::waiting(
                self.plan[index].clone(),
                index as u32,
                &self.d.events,
                self.d.status,
            )
        })
    }

    fn all_targets(&self) -> Vec<TargetState> {
        self.plan
            .iter()
            .map(|t| self.target(&t.instance_id))
            .collect()
    }

    /// The earliest deadline among the hosts' records, or the summary's own wakeup.
    fn next_wakeup(&self) -> Option<Millis> {
        self.records
            .values()
            .filter_map(|t| t.deadline)
            .map(|deadline| deadline + 1)
            .chain(self.d.next_wakeup())
            .min()
    }

    fn start(&mut self, now: Millis) -> Vec<String> {
        let effects = self.apply(Input::Start { now }).unwrap();
        self.dispatched(&effects)
    }

    fn deliver(&mut self, reports: Vec<Report>) -> Vec<Effect> {
        let mut effects = Vec::new();
        for report in reports {
            let now = report.end_time.unwrap_or(report.start_time);
            effects.extend(self.apply(from_host(report, now)).unwrap());
        }
        effects
    }
}

fn new_deployment(config: &DeploymentConfig, ordered: &[Target]) -> Deployment {
    Deployment::new(
        ID.into(),
        config.health_plan(ordered.len() as u32).unwrap(),
        config.zonal_config,
        Deadlines::default(),
        ordered,
        &lifecycle::in_place(false),
        true,
        false,
        0,
    )
}

fn deployment(config: &str, targets: Vec<Target>) -> Sim {
    let config = DeploymentConfig::predefined(config).unwrap();
    let ordered = planner::order(targets);
    Sim::new(new_deployment(&config, &ordered), ordered)
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

fn has(effects: &[Effect], wanted: &Effect) -> bool {
    effects.contains(wanted)
}

#[test]
fn half_at_a_time_on_nine_hosts_goes_in_batches_of_four() {
    let mut d = deployment(crate::config::HALF_AT_A_TIME, targets(9, 1, Standing::Old));
    let effects = d.apply(Input::Start { now: 0 }).unwrap();
    assert_eq!(effects[0], notify(NotificationEvent::DeploymentStart, None));
    let first = d.dispatched(&effects);
    assert_eq!(first.len(), 4);
    let mut sizes = vec![first.len()];
    let mut running = first;
    while !running.is_empty() {
        let mut next = Vec::new();
        for id in running {
            let effects = d.deliver(host_reports(&id, None, 100));
            next.extend(d.dispatched(&effects));
        }
        if !next.is_empty() {
            sizes.push(next.len());
        }
        running = next;
    }
    assert_eq!(d.d.status, DeploymentStatus::Succeeded);
    assert_eq!(d.d.counts().succeeded, 9);
    assert_eq!(sizes.iter().sum::<usize>(), 9);
    assert!(sizes.iter().all(|&size| size <= 4), "{sizes:?}");
}

#[test]
fn success_records_the_revision_and_releases_the_lock() {
    let mut d = deployment(crate::config::ALL_AT_ONCE, targets(1, 1, Standing::Unknown));
    let ids = d.start(0);
    let effects = d.deliver(host_reports(&ids[0], None, 1));
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
    assert!(has(&effects, &Effect::UpdateOutdated));
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::CompleteLaunch { .. })),
        "only a launch's deployment answers a lifecycle action"
    );
    assert_eq!(d.d.batches_dispatched, 1);
    assert_eq!(d.d.start_time, Some(0));
}

#[test]
fn a_launch_deployment_answers_its_lifecycle_action() {
    for (fail, proceed) in [(None, true), (Some(3), false)] {
        let mut d = deployment(
            crate::config::ONE_AT_A_TIME,
            targets(1, 1, Standing::Unknown),
        );
        d.d.completes_launch = true;
        let ids = d.start(0);
        let effects = d.deliver(host_reports(&ids[0], fail, 1));
        assert!(
            has(&effects, &Effect::CompleteLaunch { proceed }),
            "{effects:?}"
        );
        // It holds no lock, and a launch never changes the group's revision.
        for other in [
            Effect::ReleaseLock,
            Effect::RecordLastSuccessful,
            Effect::UpdateOutdated,
        ] {
            assert!(!has(&effects, &other), "{effects:?}");
        }
    }
    let mut d = deployment(
        crate::config::ONE_AT_A_TIME,
        targets(2, 1, Standing::Unknown),
    );
    d.d.completes_launch = true;
    d.start(0);
    let effects = d
        .apply(Input::Stop {
            now: 1,
            rollback: false,
        })
        .unwrap();
    assert!(has(&effects, &Effect::CompleteLaunch { proceed: false }));
}

#[test]
fn one_at_a_time_fails_on_the_first_failure_and_rolls_back() {
    let mut d = deployment(crate::config::ONE_AT_A_TIME, targets(3, 1, Standing::Old));
    let ids = d.start(0);
    assert_eq!(ids.len(), 1);
    let effects = d.deliver(host_reports(&ids[0], Some(4), 1));
    assert_eq!(d.d.status, DeploymentStatus::Failed);
    assert_eq!(d.d.error.as_ref().unwrap().code, "HEALTH_CONSTRAINTS");
    assert!(d.dispatched(&effects).is_empty());
    assert!(has(&effects, &Effect::StartRollback));
    assert!(has(&effects, &Effect::ReleaseLock));
    assert!(!has(&effects, &Effect::RecordLastSuccessful));
    assert_eq!(d.d.counts().skipped, 2);
    let failed = d.target(&ids[0]);
    assert_eq!(failed.events[4].status, EventStatus::Failed);
    assert!(
        failed.events[5..]
            .iter()
            .all(|e| e.status == EventStatus::Skipped)
    );
    let never_sent = d
        .all_targets()
        .into_iter()
        .filter(|t| t.target.instance_id != ids[0]);
    for target in never_sent {
        assert_eq!(target.status, TargetStatus::Skipped);
        assert!(
            target
                .events
                .iter()
                .all(|e| e.status == EventStatus::Skipped)
        );
    }
}

#[test]
fn one_at_a_time_succeeds_when_only_the_last_instance_fails() {
    let mut d = deployment(crate::config::ONE_AT_A_TIME, targets(3, 1, Standing::Old));
    let mut next = d.start(0);
    for round in 0..3 {
        let fail = (round == 2).then_some(6);
        let effects = d.deliver(host_reports(&next[0], fail, 1));
        next = d.dispatched(&effects);
        if round < 2 {
            assert_eq!(next.len(), 1);
        }
    }
    assert_eq!(d.d.status, DeploymentStatus::Succeeded);
    assert_eq!(d.d.counts().failed, 1);
}

#[test]
fn single_host_one_at_a_time_needs_that_host() {
    let mut d = deployment(crate::config::ONE_AT_A_TIME, targets(1, 1, Standing::Old));
    let ids = d.start(0);
    d.deliver(host_reports(&ids[0], Some(0), 1));
    assert_eq!(d.d.status, DeploymentStatus::Failed);
}

#[test]
fn all_at_once_succeeds_if_any_host_succeeds() {
    let mut d = deployment(crate::config::ALL_AT_ONCE, targets(4, 2, Standing::Old));
    let ids = d.start(0);
    assert_eq!(ids.len(), 4);
    for (index, id) in ids.iter().enumerate() {
        d.deliver(host_reports(id, (index > 0).then_some(2), 1));
    }
    assert_eq!(d.d.status, DeploymentStatus::Succeeded);
    assert_eq!(d.d.counts().failed, 3);
}

#[test]
fn unhealthy_hosts_go_first() {
    let mut fleet = targets(4, 1, Standing::Old);
    fleet[3].standing = Standing::Unhealthy;
    let mut d = deployment(crate::config::ONE_AT_A_TIME, fleet);
    assert_eq!(d.start(0), vec!["i-003"]);
}

#[test]
fn duplicates_change_nothing() {
    let mut d = deployment(crate::config::ALL_AT_ONCE, targets(2, 1, Standing::Old));
    let ids = d.start(0);
    let reports = host_reports(&ids[0], None, 1);
    d.deliver(reports.clone());
    let before = d.clone();
    assert!(d.deliver(reports).is_empty());
    assert_eq!(d, before);
}

#[test]
fn foreign_reports_are_errors() {
    let mut d = deployment(crate::config::ALL_AT_ONCE, targets(1, 1, Standing::Old));
    d.start(0);
    let mut report = host_reports("i-000", None, 1).remove(0);
    report.instance_id = "i-999".into();
    assert_eq!(
        d.apply(from_host(report.clone(), 1)),
        Err(ApplyError::UnknownInstance("i-999".into()))
    );
    report.deployment_id = "d-OTHER0001".into();
    assert!(matches!(
        d.apply(from_host(report, 1)),
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
    d.start(0);
    d.deliver(host_reports("i-000", None, 1));
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
        d.d.status,
        DeploymentStatus::Succeeded,
        "AllAtOnce needs one success"
    );
    let silent = d.target("i-001");
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
    d.deliver(host_reports("i-001", None, start + 2));
    assert_eq!(d.target("i-001").status, TargetStatus::Failed);
    assert_eq!(d.d.status, DeploymentStatus::Succeeded);
    assert_eq!(d.d.counts().failed, 1);
}

#[test]
fn reports_count_only_from_their_own_host() {
    let mut plan = targets(2, 1, Standing::Old);
    plan[1].sender = Sender::Principal("AIDAHOSTONE".into());
    let mut d = deployment(crate::config::ALL_AT_ONCE, plan);
    d.start(0);
    let before = d.clone();
    // i-000's role session speaks for i-001, and i-001's user for i-000.
    for (host, sender) in [("i-001", "AROAHOSTROLE:i-000"), ("i-000", "AIDAHOSTONE")] {
        for report in host_reports(host, None, 1) {
            let refused = d.apply(Input::Report {
                report,
                sender: Some(sender.into()),
                now: 1,
            });
            assert!(
                matches!(&refused, Err(ApplyError::ForeignSender { instance_id, found, .. })
                    if instance_id == host && found == sender),
                "{refused:?}"
            );
        }
    }
    // And no report counts without a sender.
    let unsigned = Input::Report {
        report: host_reports("i-000", None, 1).remove(0),
        sender: None,
        now: 1,
    };
    assert!(matches!(
        d.apply(unsigned),
        Err(ApplyError::ForeignSender { .. })
    ));
    assert_eq!(d, before);
    let effects = d.apply(Input::Report {
        report: host_reports("i-001", None, 1).remove(0),
        sender: Some("AIDAHOSTONE".into()),
        now: 1,
    });
    assert!(effects.is_ok(), "{effects:?}");
}

#[test]
fn running_events_get_their_hook_timeout() {
    let mut d = deployment(crate::config::ALL_AT_ONCE, targets(1, 1, Standing::Old));
    d.d.deadlines
        .event_ms
        .insert(LifecycleEvent::ApplicationStop, 7_000);
    d.start(0);
    let first = host_reports("i-000", None, 100).remove(0);
    d.apply(from_host(first, 100)).unwrap();
    assert_eq!(
        d.target("i-000").deadline,
        Some(100 + 7_000 + d.d.deadlines.slack_ms)
    );
}

#[test]
fn a_host_clock_far_behind_does_not_fail_the_host() {
    let mut d = deployment(crate::config::ALL_AT_ONCE, targets(1, 1, Standing::Old));
    let now = 10 * 3600 * 1000;
    d.start(now);
    // The host's clock says 1970; the control plane heard it just now.
    let first = host_reports("i-000", None, 5).remove(0);
    d.apply(from_host(first, now)).unwrap();
    let limit = d.d.deadlines.default_event_ms + d.d.deadlines.slack_ms;
    assert_eq!(d.target("i-000").deadline, Some(now + limit));
    let effects = d.apply(Input::Tick { now: now + limit }).unwrap();
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(d.target("i-000").status, TargetStatus::InProgress);
}

#[test]
fn stop_skips_pending_hosts_and_may_roll_back() {
    let mut d = deployment(crate::config::ONE_AT_A_TIME, targets(3, 1, Standing::Old));
    d.start(0);
    let effects = d
        .apply(Input::Stop {
            now: 5,
            rollback: true,
        })
        .unwrap();
    assert_eq!(d.d.status, DeploymentStatus::Stopped);
    assert!(has(
        &effects,
        &notify(NotificationEvent::DeploymentStop, None)
    ));
    assert!(has(&effects, &Effect::StartRollback));
    assert_eq!(d.d.counts().skipped, 2);
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
    assert!(d.all_targets().iter().all(|t| t.status.is_terminal()));
    assert_eq!(d.d.counts().in_progress, 0);
    assert_eq!(d.d.status, DeploymentStatus::Stopped);
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
    let ordered = planner::order_by_zone(fleet);
    let mut d = Sim::new(new_deployment(&config, &ordered), ordered);
    assert_eq!(d.d.segments.len(), 2);
    let first = d.start(0);
    assert_eq!(first, vec!["i-000", "i-002"], "only the first zone");
    d.deliver(host_reports("i-000", None, 1));
    let effects = d.deliver(host_reports("i-002", None, 1));
    assert!(
        d.dispatched(&effects).is_empty(),
        "the first zone is monitored first"
    );
    let done_at = 1 + 6 * 10 + 5;
    assert_eq!(d.d.zone_wait_until, Some(done_at + 60_000));
    let early = d
        .apply(Input::Tick {
            now: done_at + 59_999,
        })
        .unwrap();
    assert!(d.dispatched(&early).is_empty());
    let effects = d
        .apply(Input::Tick {
            now: done_at + 60_000,
        })
        .unwrap();
    assert_eq!(d.dispatched(&effects), vec!["i-001", "i-003"]);
    assert_eq!(d.d.status, DeploymentStatus::InProgress);
}

#[test]
fn zones_keep_their_own_health_order_and_limits() {
    // Zone a: an unhealthy host then two healthy; zone b: three healthy. At least two
    // hosts per zone stay healthy, so each zone goes one host at a time.
    let mut fleet = targets(6, 2, Standing::Old);
    fleet[4].standing = Standing::Unhealthy;
    let config = DeploymentConfig::custom(
        "zonal-strict",
        MinimumHealthyHosts::FleetPercent(0),
        Some(ZonalConfig {
            first_zone_monitor_duration_secs: None,
            monitor_duration_secs: None,
            minimum_healthy_hosts_per_zone: Some(MinimumHealthyHosts::HostCount(2)),
        }),
    )
    .unwrap();
    let ordered = planner::order_by_zone(fleet);
    let mut d = Sim::new(new_deployment(&config, &ordered), ordered);
    assert_eq!(d.d.segments[0].unhealthy, 1);
    let mut order = Vec::new();
    let mut running = d.start(0);
    while !running.is_empty() {
        assert_eq!(running.len(), 1, "one host of a zone at a time");
        order.extend(running.clone());
        let effects = d.deliver(host_reports(&running[0], None, 1));
        running = d.dispatched(&effects);
    }
    assert_eq!(
        order,
        vec!["i-004", "i-000", "i-002", "i-001", "i-003", "i-005"]
    );
    assert_eq!(d.d.status, DeploymentStatus::Succeeded);
}

#[test]
fn the_summary_stays_small_for_the_largest_deployment() {
    // Real EC2 ids and zone names: the summary holds counters and one segment per zone,
    // never a list of hosts.
    let hosts: Vec<Target> = (0..MAX_TARGETS)
        .map(|index| Target {
            instance_id: format!("i-{index:017x}"),
            zone: Some(format!("us-east-1{}", ["a", "b", "c"][index % 3])),
            standing: Standing::Old,
            sender: Sender::InstanceRoleOf("AROAHOSTROLE".into()),
        })
        .collect();
    let mut d = deployment(crate::config::ALL_AT_ONCE, hosts);
    assert_eq!(d.start(0).len(), MAX_TARGETS);
    let ids: Vec<String> = d.records.keys().cloned().collect();
    for id in &ids {
        d.deliver(host_reports(id, Some(6), 1_764_000_000_000));
    }
    assert_eq!(d.d.status, DeploymentStatus::Failed);
    assert_eq!(d.d.counts().failed, MAX_TARGETS as u32);
    let stored = serde_json::to_string(&d.d).unwrap().len();
    assert!(stored < 2 * 1024, "the summary is {stored} bytes");
}

#[test]
fn a_host_keeps_its_whole_log_tail_and_a_bounded_message() {
    let mut d = deployment(crate::config::ALL_AT_ONCE, targets(3, 1, Standing::Old));
    d.start(0);
    let mut reports = host_reports("i-000", Some(2), 10);
    let tail = "x".repeat(crate::wire::LOG_TAIL_MAX_BYTES);
    let diagnostics = reports.last_mut().unwrap().diagnostics.as_mut().unwrap();
    diagnostics.log_tail = tail.clone();
    diagnostics.message = "m".repeat(5000);
    d.deliver(reports);
    let kept = &d.target("i-000").events[2];
    let diagnostics = kept.diagnostics.as_ref().unwrap();
    assert_eq!(diagnostics.log_tail, tail);
    assert_eq!(diagnostics.message.len(), MESSAGE_MAX_BYTES);
}

#[test]
fn a_hosts_record_is_bounded_by_what_its_strings_take_stored() {
    // Control characters take six bytes each once JSON-escaped: a 4 KiB tail of them
    // would be 24 KiB stored, per event.
    let mut d = deployment(crate::config::ALL_AT_ONCE, targets(3, 1, Standing::Old));
    d.start(0);
    let mut reports = host_reports("i-000", None, 10);
    for report in reports.iter_mut() {
        if let Some(diagnostics) = report.diagnostics.as_mut() {
            diagnostics.log_tail = "\u{1b}".repeat(crate::wire::LOG_TAIL_MAX_BYTES);
            diagnostics.message = "\u{7}".repeat(5000);
            diagnostics.script_name = "s".repeat(100_000);
        }
    }
    d.deliver(reports);
    let host = d.target("i-000");
    assert_eq!(host.status, TargetStatus::Succeeded);
    for record in &host.events {
        let diagnostics = record.diagnostics.as_ref().unwrap();
        let stored = |text: &str| serde_json::to_string(text).unwrap().len() - 2;
        assert!(stored(&diagnostics.log_tail) <= crate::wire::LOG_TAIL_MAX_BYTES);
        assert!(stored(&diagnostics.log_tail) > crate::wire::LOG_TAIL_MAX_BYTES - 6);
        assert!(stored(&diagnostics.message) <= MESSAGE_MAX_BYTES);
        assert_eq!(diagnostics.script_name.len(), SCRIPT_NAME_MAX_BYTES);
    }
    let item = serde_json::to_string(&host).unwrap().len();
    assert!(item < 80_000, "a host's record takes {item} bytes stored");
}

#[derive(Debug, Clone)]
struct Scenario {
    standings: Vec<Standing>,
    zones: usize,
    /// Deploy one zone after another.
    zonal: bool,
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
            any::<bool>(),
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
            .prop_map(
                |(standings, zones, zonal, rule, outcomes, choices)| Scenario {
                    standings,
                    zones,
                    zonal,
                    rule,
                    outcomes,
                    choices,
                },
            )
    })
}

fn start(s: &Scenario) -> Option<Sim> {
    let fleet: Vec<Target> = s
        .standings
        .iter()
        .enumerate()
        .map(|(index, &standing)| Target {
            instance_id: format!("i-{index:03}"),
            zone: Some(format!("az-{}", index % s.zones)),
            standing,
            sender: Sender::InstanceRoleOf("AROAHOSTROLE".into()),
        })
        .collect();
    let zonal = s.zonal.then_some(ZonalConfig {
        first_zone_monitor_duration_secs: None,
        monitor_duration_secs: None,
        minimum_healthy_hosts_per_zone: None,
    });
    let config = DeploymentConfig {
        name: "p".into(),
        minimum_healthy_hosts: s.rule,
        zonal_config: zonal,
    };
    let plan = config.health_plan(fleet.len() as u32).ok()?;
    let ordered = if s.zonal {
        planner::order_by_zone(fleet)
    } else {
        planner::order(fleet)
    };
    let d = Deployment::new(
        ID.into(),
        plan,
        zonal,
        Deadlines::default(),
        &ordered,
        &lifecycle::in_place(false),
        true,
        false,
        0,
    );
    Some(Sim::new(d, ordered))
}

fn outcome_of(s: &Scenario, instance_id: &str) -> Option<usize> {
    s.outcomes[instance_id[2..].parse::<usize>().unwrap()]
}

/// Runs a deployment to its end, delivering reports as `order` picks them from those
/// sent so far (a picked report stays deliverable, so it may come again). Checks the
/// invariants after every step and returns the final state.
fn run(s: &Scenario, mut d: Sim, shuffle: bool) -> Result<Sim, TestCaseError> {
    let mut outbox: Vec<Report> = Vec::new();
    let mut delivered: Vec<Report> = Vec::new();
    let mut ever_dispatched = BTreeSet::new();
    let mut choices = s.choices.iter().cycle();
    let mut effects = d.apply(Input::Start { now: 0 }).unwrap();
    let mut step = 0u64;
    loop {
        let sent = d.dispatched(&effects);
        // The counters agree with the hosts' records.
        let targets = d.all_targets();
        let count = |status| targets.iter().filter(|t| t.status == status).count() as u32;
        let counts = d.d.counts();
        prop_assert_eq!(counts.in_progress, count(TargetStatus::InProgress));
        prop_assert_eq!(counts.succeeded, count(TargetStatus::Succeeded));
        prop_assert_eq!(counts.failed, count(TargetStatus::Failed));
        prop_assert_eq!(
            counts.pending + counts.skipped,
            count(TargetStatus::Pending) + count(TargetStatus::Skipped)
        );
        if !sent.is_empty() {
            prop_assert!(
                counts.in_progress <= d.d.plan.batch_size,
                "batch size broken"
            );
            let healthy = targets
                .iter()
                .filter(|t| match t.status {
                    TargetStatus::Succeeded => true,
                    TargetStatus::Pending | TargetStatus::Skipped => {
                        t.target.standing.counts_as_healthy()
                    }
                    _ => false,
                })
                .count() as u32;
            let any_healthy_sent = targets.iter().any(|t| {
                sent.contains(&t.target.instance_id) && t.target.standing.counts_as_healthy()
            });
            prop_assert!(
                !any_healthy_sent || healthy >= d.d.plan.minimum_healthy,
                "minimum broken"
            );
            if s.zonal {
                let zones: BTreeSet<_> = targets
                    .iter()
                    .filter(|t| t.status == TargetStatus::InProgress)
                    .map(|t| t.target.zone.clone())
                    .collect();
                prop_assert!(zones.len() <= 1, "two zones at once: {:?}", zones);
            }
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
        let before = d.d.clone();
        // The control plane's clock: each host's reports are all received at one time,
        // so that delivery order alone differs between runs.
        let now = report.start_time / 100 * 100 + 99;
        effects = d.apply(from_host(report, now)).unwrap();
        if effects.is_empty() && before.status == d.d.status {
            prop_assert_eq!(before.counts(), d.d.counts());
        }
    }
    Ok(d)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    /// Whatever the order and duplication of reports, the deployment ends, never sends
    /// a host two commands, never deploys past the batch size or the health minimum,
    /// keeps its counters equal to its hosts' records, and succeeds exactly by the
    /// config's rule.
    #[test]
    fn deployments_end_and_keep_their_rules(s in scenario()) {
        let Some(d) = start(&s) else { return Ok(()) };
        let d = run(&s, d, true)?;
        prop_assert!(d.d.status.is_terminal());
        prop_assert!(d.all_targets().iter().all(|t| t.status.is_terminal()));
        let succeeded = d.d.counts().succeeded;
        if d.d.status == DeploymentStatus::Succeeded {
            prop_assert!(d.d.plan.is_success(succeeded));
        }
        if s.outcomes.iter().all(Option::is_none) && !s.zonal {
            prop_assert_eq!(d.d.status, DeploymentStatus::Succeeded);
            prop_assert_eq!(succeeded, d.d.plan.fleet);
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

fn plan_request<'a>(
    config: &'a DeploymentConfig,
    targets: Vec<Target>,
    events: &'a [LifecycleEvent],
) -> Plan<'a> {
    Plan {
        deployment_id: ID.into(),
        config,
        targets,
        launch: false,
        update_outdated_only: false,
        deadlines: Deadlines::default(),
        events,
        rollback_on_failure: true,
        rollback_on_stop: false,
        alarms: None,
        first_alarm_check: None,
        blue_green: None,
        now: 7,
    }
}

#[test]
fn planning_orders_the_hosts_starts_the_deployment_and_takes_the_lock() {
    let events = lifecycle::in_place(false);
    let config = DeploymentConfig::predefined(crate::config::ONE_AT_A_TIME).unwrap();
    let mut fleet = targets(4, 2, Standing::Old);
    fleet[2].standing = Standing::Unhealthy;
    fleet[3].standing = Standing::Current;
    let planned = plan(plan_request(&config, fleet.clone(), &events)).unwrap();
    assert_eq!(planned.ordered[0].instance_id, "i-002", "unhealthy first");
    assert_eq!(planned.ordered.len(), 4);
    assert!(planned.takes_lock);
    assert_eq!(planned.state.status, DeploymentStatus::InProgress);
    assert_eq!(
        planned.effects.last(),
        Some(&Effect::Dispatch { first: 0, count: 1 })
    );

    let mut outdated_only = plan_request(&config, fleet, &events);
    outdated_only.update_outdated_only = true;
    let planned = plan(outdated_only).unwrap();
    assert!(
        planned.ordered.iter().all(|t| t.instance_id != "i-003"),
        "a host already on the revision is left out"
    );
}

#[test]
fn a_plan_that_cannot_start_is_a_failed_deployment_without_the_lock() {
    let events = lifecycle::in_place(false);
    let half = DeploymentConfig::predefined(crate::config::HALF_AT_A_TIME).unwrap();
    let none = plan(plan_request(&half, Vec::new(), &events)).unwrap();
    assert_eq!(none.state.status, DeploymentStatus::Failed);
    assert_eq!(none.state.error.as_ref().unwrap().code, "NO_INSTANCES");
    assert!(!none.takes_lock);
    assert_eq!(
        none.effects,
        vec![notify(NotificationEvent::DeploymentFailure, None)]
    );
    let one = plan(plan_request(&half, targets(1, 1, Standing::Old), &events)).unwrap();
    assert_eq!(
        one.state.error.as_ref().unwrap().code,
        "HEALTH_CONSTRAINTS_INVALID"
    );
    assert!(
        one.ordered.is_empty(),
        "a refused deployment lists no hosts"
    );
}

#[test]
fn a_launch_is_planned_as_one_host_that_must_succeed_without_the_lock() {
    let events = lifecycle::in_place(false);
    // HalfAtATime could not deploy to one host; a launching host is not in service yet.
    let half = DeploymentConfig::predefined(crate::config::HALF_AT_A_TIME).unwrap();
    let mut request = plan_request(&half, targets(1, 1, Standing::Unknown), &events);
    request.launch = true;
    let planned = plan(request).unwrap();
    assert!(!planned.takes_lock);
    assert!(planned.state.completes_launch);
    assert_eq!(planned.state.plan, HealthPlan::launch());
    assert_eq!(
        planned.effects.last(),
        Some(&Effect::Dispatch { first: 0, count: 1 })
    );
}

#[test]
fn a_plan_above_the_limit_is_refused_naming_both_numbers() {
    let events = lifecycle::in_place(false);
    let config = DeploymentConfig::predefined(crate::config::ALL_AT_ONCE).unwrap();
    let error = plan(plan_request(
        &config,
        targets(MAX_TARGETS + 1, 3, Standing::Old),
        &events,
    ))
    .unwrap_err();
    assert_eq!(
        error,
        PlanError::TooManyTargets {
            hosts: MAX_TARGETS + 1
        }
    );
    assert!(
        error
            .to_string()
            .contains("resolves to 10001 instances; one deployment holds at most 10000"),
        "{error}"
    );
    assert!(
        plan(plan_request(
            &config,
            targets(MAX_TARGETS, 3, Standing::Old),
            &events
        ))
        .is_ok()
    );
}

#[test]
fn a_zonal_plan_has_a_segment_per_zone_and_a_launch_ignores_zones() {
    let events = lifecycle::in_place(false);
    let config = DeploymentConfig::custom(
        "zonal",
        MinimumHealthyHosts::FleetPercent(0),
        Some(ZonalConfig {
            first_zone_monitor_duration_secs: None,
            monitor_duration_secs: None,
            minimum_healthy_hosts_per_zone: None,
        }),
    )
    .unwrap();
    let planned = plan(plan_request(&config, targets(6, 3, Standing::Old), &events)).unwrap();
    assert_eq!(planned.state.segments.len(), 3);
    assert_eq!(
        planned.effects.last(),
        Some(&Effect::Dispatch { first: 0, count: 2 })
    );
    let mut launch = plan_request(&config, targets(1, 1, Standing::Unknown), &events);
    launch.launch = true;
    assert_eq!(plan(launch).unwrap().state.zonal, None);
}

#[test]
fn every_zone_is_watched_even_when_the_one_before_ends_at_once() {
    // Three zones of one host each, a 10 s watch after every zone: the third zone must
    // wait for its own watch of the second, not inherit the first zone's, long past.
    let config = DeploymentConfig::custom(
        "zonal-watch",
        MinimumHealthyHosts::FleetPercent(0),
        Some(ZonalConfig {
            first_zone_monitor_duration_secs: Some(10),
            monitor_duration_secs: Some(10),
            minimum_healthy_hosts_per_zone: None,
        }),
    )
    .unwrap();
    let ordered = planner::order_by_zone(targets(3, 3, Standing::Old));
    let mut d = Sim::new(new_deployment(&config, &ordered), ordered);
    assert_eq!(d.start(0), vec!["i-000"]);
    d.deliver(host_reports("i-000", None, 1));
    let first_done = 1 + 6 * 10 + 5;
    assert_eq!(d.d.zone_wait_until, Some(first_done + 10_000));
    let opened = d
        .apply(Input::Tick {
            now: first_done + 10_000,
        })
        .unwrap();
    assert_eq!(d.dispatched(&opened), vec!["i-001"]);
    // The second zone's host ends within the same second it started.
    let second_start = first_done + 10_001;
    let effects = d.deliver(host_reports("i-001", None, second_start));
    assert!(
        d.dispatched(&effects).is_empty(),
        "the third zone waits for the second to be watched"
    );
    let second_done = second_start + 6 * 10 + 5;
    assert_eq!(d.d.zone_wait_until, Some(second_done + 10_000));
}

#[test]
fn a_stop_tells_deploying_hosts_to_skip_the_rest_and_they_end_skipped() {
    let mut d = deployment(crate::config::ALL_AT_ONCE, targets(3, 1, Standing::Old));
    let ids = d.start(0);
    assert_eq!(ids.len(), 3);
    // i-000 finishes before the stop; i-001 is halfway; i-002 never reports again.
    d.deliver(host_reports("i-000", None, 1));
    let mut halfway = host_reports("i-001", None, 1);
    halfway.truncate(6);
    d.deliver(halfway);
    let effects = d
        .apply(Input::Stop {
            now: 100,
            rollback: false,
        })
        .unwrap();
    assert!(has(&effects, &Effect::CancelHosts), "{effects:?}");
    assert_eq!(d.d.status, DeploymentStatus::Stopped);
    // The agent skips what it had not started.
    let events = lifecycle::in_place(false);
    let skipped: Vec<Report> = events[3..]
        .iter()
        .map(|&event| Report {
            schema_version: SCHEMA_VERSION,
            deployment_id: ID.into(),
            instance_id: "i-001".into(),
            lifecycle_event: event,
            status: EventStatus::Skipped,
            start_time: 110,
            end_time: Some(110),
            diagnostics: None,
        })
        .collect();
    let effects = d.deliver(skipped);
    assert_eq!(d.target("i-001").status, TargetStatus::Skipped);
    assert!(
        has(
            &effects,
            &Effect::RecordHealth {
                instance_id: "i-001".into(),
                healthy: false
            }
        ),
        "{effects:?}"
    );
    assert!(
        !effects
            .iter()
            .any(|effect| matches!(effect, Effect::Notify { .. })),
        "no CodeDeploy trigger event for a host cut short: {effects:?}"
    );
    let counts = d.d.counts();
    assert_eq!(
        (counts.succeeded, counts.skipped, counts.in_progress),
        (1, 1, 1)
    );
}

#[test]
fn a_deployment_that_ends_with_no_host_deploying_cancels_nothing() {
    let mut d = deployment(crate::config::ONE_AT_A_TIME, targets(2, 1, Standing::Old));
    let ids = d.start(0);
    let effects = d.deliver(host_reports(&ids[0], Some(4), 1));
    assert_eq!(d.d.status, DeploymentStatus::Failed);
    assert!(!has(&effects, &Effect::CancelHosts), "{effects:?}");
    let mut d = deployment(crate::config::ONE_AT_A_TIME, targets(2, 1, Standing::Old));
    let ids = d.start(0);
    let effects = d.deliver(host_reports(&ids[0], None, 1));
    let next = d.dispatched(&effects);
    let effects = d.deliver(host_reports(&next[0], None, 200));
    assert_eq!(d.d.status, DeploymentStatus::Succeeded);
    assert!(!has(&effects, &Effect::CancelHosts), "{effects:?}");
}

/// A HalfAtATime deployment of four hosts that watches alarms, started at 0.
fn watching(policy: AlarmPolicy) -> (Sim, Vec<String>) {
    let mut d = deployment(crate::config::HALF_AT_A_TIME, targets(4, 1, Standing::Old));
    d.d.alarms = Some(policy);
    let ids = d.start(0);
    (d, ids)
}

fn alarm(now: Millis, check: AlarmCheck) -> Input {
    Input::Alarm { now, check }
}

fn active(names: &[&str]) -> AlarmCheck {
    AlarmCheck::Active {
        alarms: names.iter().map(|name| name.to_string()).collect(),
    }
}

#[test]
fn an_alarm_firing_before_the_first_batch_stops_the_deployment_before_any_host() {
    let events = lifecycle::in_place(false);
    let config = DeploymentConfig::predefined(crate::config::HALF_AT_A_TIME).unwrap();
    let policy = AlarmPolicy {
        ignore_poll_failure: false,
        rollback: true,
    };
    let request = |check: AlarmCheck| Plan {
        alarms: Some(policy),
        first_alarm_check: Some(check),
        blue_green: None,
        ..plan_request(&config, targets(4, 1, Standing::Old), &events)
    };
    let planned = plan(request(AlarmCheck::Active {
        alarms: vec!["errors".into()],
    }))
    .unwrap();
    assert_eq!(planned.state.status, DeploymentStatus::Stopped);
    assert_eq!(planned.state.error.as_ref().unwrap().code, ALARM_ACTIVE);
    assert_eq!(planned.state.counts().skipped, 4);
    assert!(
        !planned
            .effects
            .iter()
            .any(|e| matches!(e, Effect::Dispatch { .. } | Effect::CancelHosts)),
        "no host touched: {:?}",
        planned.effects
    );
    assert_eq!(
        planned.effects[0],
        notify(NotificationEvent::DeploymentStart, None)
    );
    assert!(has(&planned.effects, &Effect::ReleaseLock));
    assert!(has(&planned.effects, &Effect::StartRollback));

    // A clear check, or a failed poll that is ignored, starts as without alarms.
    let clear = plan(request(AlarmCheck::Clear)).unwrap();
    let ignored = plan(Plan {
        alarms: Some(AlarmPolicy {
            ignore_poll_failure: true,
            rollback: false,
        }),
        ..request(AlarmCheck::Failed {
            reason: "throttled".into(),
        })
    })
    .unwrap();
    for planned in [clear, ignored] {
        assert_eq!(planned.state.status, DeploymentStatus::InProgress);
        assert!(
            planned
                .effects
                .iter()
                .any(|e| matches!(e, Effect::Dispatch { count: 2, .. })),
            "{:?}",
            planned.effects
        );
    }
}

#[test]
fn an_alarm_in_alarm_stops_the_deployment_naming_it_and_rolls_back_when_asked() {
    for rollback in [false, true] {
        let (mut d, ids) = watching(AlarmPolicy {
            ignore_poll_failure: false,
            rollback,
        });
        assert_eq!(ids.len(), 2);
        let effects = d.apply(alarm(5, active(&["errors", "latency"]))).unwrap();
        assert_eq!(d.d.status, DeploymentStatus::Stopped);
        let error = d.d.error.clone().unwrap();
        assert_eq!(error.code, ALARM_ACTIVE);
        assert!(
            error.message.contains("errors, latency"),
            "{}",
            error.message
        );
        assert_eq!(d.d.complete_time, Some(5));
        assert_eq!(d.d.counts().skipped, 2, "the hosts never sent are skipped");
        assert!(has(
            &effects,
            &notify(NotificationEvent::DeploymentStop, None)
        ));
        assert!(has(&effects, &Effect::ReleaseLock));
        assert_eq!(has(&effects, &Effect::StartRollback), rollback);
        // The hosts already running report on; nothing more is sent.
        let effects = d.deliver(host_reports(&ids[0], None, 10));
        assert!(d.dispatched(&effects).is_empty(), "{effects:?}");
        assert_eq!(d.d.status, DeploymentStatus::Stopped);
    }
}

#[test]
fn a_clear_check_changes_nothing_and_the_deployment_goes_on() {
    let (mut d, ids) = watching(AlarmPolicy::default());
    let before = d.clone();
    assert!(d.apply(alarm(5, AlarmCheck::Clear)).unwrap().is_empty());
    assert_eq!(d, before);
    let effects = d.deliver(host_reports(&ids[0], None, 10));
    assert_eq!(d.dispatched(&effects).len(), 1);
}

#[test]
fn a_failed_poll_stops_the_deployment_unless_ignored_and_never_rolls_back() {
    let failed = || AlarmCheck::Failed {
        reason: "alarm \"gone\" does not exist".into(),
    };
    let (mut d, _) = watching(AlarmPolicy {
        ignore_poll_failure: false,
        rollback: true,
    });
    let effects = d.apply(alarm(5, failed())).unwrap();
    assert_eq!(d.d.status, DeploymentStatus::Stopped);
    let error = d.d.error.clone().unwrap();
    assert_eq!(error.code, ALARM_CONFIG);
    assert!(
        error.message.contains("does not exist"),
        "{}",
        error.message
    );
    assert!(!has(&effects, &Effect::StartRollback), "{effects:?}");
    assert!(has(&effects, &Effect::ReleaseLock));

    let (mut d, _) = watching(AlarmPolicy {
        ignore_poll_failure: true,
        rollback: true,
    });
    let before = d.clone();
    assert!(d.apply(alarm(5, failed())).unwrap().is_empty());
    assert_eq!(d, before);
    // An alarm that fires still stops it.
    d.apply(alarm(6, active(&["errors"]))).unwrap();
    assert_eq!(d.d.error.unwrap().code, ALARM_ACTIVE);
}

#[test]
fn alarm_checks_change_nothing_without_alarms_or_once_the_deployment_ended() {
    let mut d = deployment(crate::config::HALF_AT_A_TIME, targets(4, 1, Standing::Old));
    d.start(0);
    let before = d.clone();
    assert!(d.apply(alarm(5, active(&["errors"]))).unwrap().is_empty());
    assert_eq!(d, before, "a deployment without alarms ignores checks");

    let (mut d, _) = watching(AlarmPolicy {
        ignore_poll_failure: false,
        rollback: true,
    });
    d.apply(Input::Stop {
        now: 3,
        rollback: false,
    })
    .unwrap();
    let before = d.clone();
    for check in [
        active(&["errors"]),
        AlarmCheck::Failed {
            reason: "throttled".into(),
        },
    ] {
        assert!(d.apply(alarm(5, check)).unwrap().is_empty());
    }
    assert_eq!(d, before, "an ended deployment keeps its status and error");
    assert_eq!(d.d.error, Some(ErrorInformation::manual_stop()));
}

#[test]
fn planning_keeps_the_alarm_policy() {
    let events = lifecycle::in_place(false);
    let config = DeploymentConfig::predefined(crate::config::ONE_AT_A_TIME).unwrap();
    let policy = AlarmPolicy {
        ignore_poll_failure: true,
        rollback: true,
    };
    let mut request = plan_request(&config, targets(2, 1, Standing::Old), &events);
    request.alarms = Some(policy);
    let planned = plan(request).unwrap();
    assert_eq!(planned.state.alarms, Some(policy));
    let json = serde_json::to_value(&planned.state).unwrap();
    let back: Deployment = serde_json::from_value(json).unwrap();
    assert_eq!(back.alarms, Some(policy));
}

#[cfg(test)]
mod traffic {
    //! In-place deployments behind a load balancer: the agent runs three stretches of
    //! events, and the control plane blocks and allows traffic between them.

    use super::*;
    use lifecycle::LifecycleEvent::*;

    fn load_balanced(config: &str, hosts: usize) -> Sim {
        let config = DeploymentConfig::predefined(config).unwrap();
        let ordered = planner::order(targets(hosts, 1, Standing::Old));
        let d = Deployment::new(
            ID.into(),
            config.health_plan(hosts as u32).unwrap(),
            None,
            Deadlines::default(),
            &ordered,
            &lifecycle::in_place(true),
            false,
            false,
            0,
        );
        Sim::new(d, ordered)
    }

    /// A host starting and finishing each of `events`, from `at`.
    fn ran(instance_id: &str, events: &[LifecycleEvent], at: Millis) -> Vec<Report> {
        events
            .iter()
            .enumerate()
            .flat_map(|(index, &event)| {
                let start = at + index as Millis * 10;
                let base = Report {
                    schema_version: SCHEMA_VERSION,
                    deployment_id: ID.into(),
                    instance_id: instance_id.into(),
                    lifecycle_event: event,
                    status: EventStatus::InProgress,
                    start_time: start,
                    end_time: None,
                    diagnostics: None,
                };
                [
                    base.clone(),
                    Report {
                        status: EventStatus::Succeeded,
                        end_time: Some(start + 5),
                        ..base
                    },
                ]
            })
            .collect()
    }

    fn traffic(
        instance_id: &str,
        event: LifecycleEvent,
        outcome: TrafficOutcome,
        now: Millis,
    ) -> Input {
        Input::Traffic {
            instance_id: instance_id.into(),
            event,
            outcome,
            now,
        }
    }

    fn status_of(d: &Sim, instance_id: &str, event: LifecycleEvent) -> EventStatus {
        d.target(instance_id)
            .events
            .iter()
            .find(|record| record.event == event)
            .expect("the event is in the host's list")
            .status
    }

    #[test]
    fn a_host_is_blocked_installed_and_allowed_in_three_commands() {
        let mut d = load_balanced(crate::config::ONE_AT_A_TIME, 2);
        let first = d.start(0);
        assert_eq!(first, ["i-000"]);
        assert_eq!(
            d.target("i-000").events.len(),
            13,
            "the traffic events are recorded"
        );

        let effects = d.deliver(ran("i-000", &[BeforeBlockTraffic], 10));
        assert_eq!(
            effects,
            [Effect::Traffic {
                instance_id: "i-000".into(),
                event: BlockTraffic
            }]
        );
        assert_eq!(
            status_of(&d, "i-000", BlockTraffic),
            EventStatus::InProgress
        );

        let effects = d
            .apply(traffic("i-000", BlockTraffic, TrafficOutcome::Done, 1_000))
            .unwrap();
        let install = lifecycle::stretch(&lifecycle::in_place(true), 2).to_vec();
        assert_eq!(
            effects,
            [Effect::Resume {
                instance_id: "i-000".into(),
                events: install.clone(),
                start_by: 1_000 + Deadlines::default().start_ms,
            }]
        );
        assert_eq!(status_of(&d, "i-000", BlockTraffic), EventStatus::Succeeded);

        let effects = d.deliver(ran("i-000", &install, 2_000));
        assert_eq!(
            effects,
            [Effect::Traffic {
                instance_id: "i-000".into(),
                event: AllowTraffic
            }]
        );
        let effects = d
            .apply(traffic("i-000", AllowTraffic, TrafficOutcome::Done, 3_000))
            .unwrap();
        assert!(matches!(
            &effects[..],
            [Effect::Resume { events, .. }] if events == &[AfterAllowTraffic]
        ));
        assert_eq!(d.dispatched(&effects), Vec::<String>::new());

        let effects = d.deliver(ran("i-000", &[AfterAllowTraffic], 4_000));
        assert_eq!(d.target("i-000").status, TargetStatus::Succeeded);
        assert_eq!(d.dispatched(&effects), ["i-001"], "the next host goes");
    }

    #[test]
    fn a_repeated_or_stale_traffic_result_changes_nothing() {
        let mut d = load_balanced(crate::config::ONE_AT_A_TIME, 2);
        d.start(0);
        d.deliver(ran("i-000", &[BeforeBlockTraffic], 10));
        let before = d.clone();
        let stale = d
            .apply(traffic("i-000", AllowTraffic, TrafficOutcome::Done, 100))
            .unwrap();
        assert!(stale.is_empty());
        assert_eq!(d, before, "an AllowTraffic result while blocking is stale");
        d.apply(traffic("i-000", BlockTraffic, TrafficOutcome::Done, 200))
            .unwrap();
        let after = d.clone();
        let again = d
            .apply(traffic("i-000", BlockTraffic, TrafficOutcome::Done, 300))
            .unwrap();
        assert!(again.is_empty());
        assert_eq!(d, after);
    }

    #[test]
    fn a_host_cannot_report_the_control_planes_events() {
        let mut d = load_balanced(crate::config::ONE_AT_A_TIME, 2);
        d.start(0);
        d.deliver(ran("i-000", &[BeforeBlockTraffic], 10));
        let forged = ran("i-000", &[BlockTraffic], 20).pop().unwrap();
        assert!(matches!(
            d.apply(from_host(forged, 30)),
            Err(ApplyError::UnexpectedEvent {
                event: BlockTraffic,
                ..
            })
        ));
        assert_eq!(
            status_of(&d, "i-000", BlockTraffic),
            EventStatus::InProgress
        );
    }

    #[test]
    fn a_host_still_draining_at_its_deadline_fails_block_traffic_saying_so() {
        let mut d = load_balanced(crate::config::ONE_AT_A_TIME, 2);
        d.start(0);
        d.deliver(ran("i-000", &[BeforeBlockTraffic], 10));
        let deadline = d.target("i-000").deadline.expect("waiting on ELB");
        assert!(d.apply(Input::Tick { now: deadline }).unwrap().is_empty());
        let effects = d.apply(Input::Tick { now: deadline + 1 }).unwrap();
        assert!(has(
            &effects,
            &Effect::HostTimedOut {
                instance_id: "i-000".into()
            }
        ));
        let host = d.target("i-000");
        assert_eq!(host.status, TargetStatus::Failed);
        let block = &host.events[1];
        assert_eq!(
            (block.event, block.status),
            (BlockTraffic, EventStatus::Failed)
        );
        let message = &block.diagnostics.as_ref().unwrap().message;
        assert!(
            message.contains("BlockTraffic") && message.contains("draining"),
            "{message}"
        );
        assert!(
            host.events[2..]
                .iter()
                .all(|r| r.status == EventStatus::Skipped)
        );
    }

    #[test]
    fn failing_health_checks_fail_allow_traffic_and_skip_what_follows() {
        let mut d = load_balanced(crate::config::ONE_AT_A_TIME, 3);
        d.start(0);
        d.deliver(ran("i-000", &[BeforeBlockTraffic], 10));
        d.apply(traffic("i-000", BlockTraffic, TrafficOutcome::Done, 100))
            .unwrap();
        let install = lifecycle::stretch(&lifecycle::in_place(true), 2).to_vec();
        d.deliver(ran("i-000", &install, 200));
        let message = "unhealthy in target group web: Target.ResponseCodeMismatch".to_owned();
        let effects = d
            .apply(traffic(
                "i-000",
                AllowTraffic,
                TrafficOutcome::Failed {
                    message: message.clone(),
                },
                1_000,
            ))
            .unwrap();
        assert!(has(
            &effects,
            &notify(NotificationEvent::InstanceFailure, Some("i-000"))
        ));
        assert_eq!(
            d.d.status,
            DeploymentStatus::Failed,
            "OneAtATime stops at a failure"
        );
        assert_eq!(status_of(&d, "i-000", AllowTraffic), EventStatus::Failed);
        assert_eq!(
            status_of(&d, "i-000", AfterAllowTraffic),
            EventStatus::Skipped
        );
        let diagnostics = d.target("i-000").events[11].diagnostics.clone().unwrap();
        assert_eq!(diagnostics.message, message);
    }

    #[test]
    fn a_deployment_that_ended_takes_its_hosts_no_further() {
        // Stopped while the first host ran BeforeBlockTraffic: it is not blocked after.
        let mut d = load_balanced(crate::config::ALL_AT_ONCE, 2);
        d.start(0);
        d.apply(Input::Stop {
            now: 5,
            rollback: false,
        })
        .unwrap();
        let effects = d.deliver(ran("i-000", &[BeforeBlockTraffic], 10));
        assert!(
            !effects.iter().any(|e| matches!(e, Effect::Traffic { .. })),
            "{effects:?}"
        );
        assert_eq!(d.target("i-000").status, TargetStatus::Skipped);
        assert_eq!(status_of(&d, "i-000", BlockTraffic), EventStatus::Skipped);

        // Stopped while the second host drained: it gets no further command.
        d.deliver(ran("i-001", &[BeforeBlockTraffic], 10));
        let effects = d
            .apply(traffic("i-001", BlockTraffic, TrafficOutcome::Done, 100))
            .unwrap();
        assert!(
            !effects.iter().any(|e| matches!(e, Effect::Resume { .. })),
            "{effects:?}"
        );
        assert_eq!(d.target("i-001").status, TargetStatus::Skipped);
        assert_eq!(d.d.counts().in_progress, 0);
    }

    #[test]
    fn a_host_that_skipped_its_stretch_skips_the_later_ones() {
        let mut d = load_balanced(crate::config::ALL_AT_ONCE, 2);
        d.start(0);
        let mut reports = ran("i-000", &[BeforeBlockTraffic], 10);
        reports[1].status = EventStatus::Skipped;
        reports.remove(0);
        d.deliver(reports);
        let host = d.target("i-000");
        assert_eq!(host.status, TargetStatus::Skipped);
        assert!(host.events.iter().all(|r| r.status == EventStatus::Skipped));
    }
}

/// The summary holds one segment per zone: a zonal deployment over more zones than
/// `MAX_ZONES` is refused, and one at the limit, with the longest zone names and the
/// most hosts, keeps its summary far below an item's 400 KB.
#[test]
fn a_zonal_summary_stays_small_whatever_the_zones() {
    let config = DeploymentConfig::custom(
        "zonal",
        MinimumHealthyHosts::FleetPercent(50),
        Some(ZonalConfig {
            first_zone_monitor_duration_secs: None,
            monitor_duration_secs: Some(1),
            minimum_healthy_hosts_per_zone: None,
        }),
    )
    .unwrap();
    let fleet = |zones: usize| -> Vec<Target> {
        (0..MAX_TARGETS)
            .map(|index| Target {
                instance_id: format!("host-{index:05}"),
                zone: Some(format!("{:0>256}", index % zones)),
                standing: Standing::Unknown,
                sender: Sender::InstanceRoleOf("AROAHOSTROLE".into()),
            })
            .collect()
    };
    let events = lifecycle::in_place(true);
    let request = |targets: Vec<Target>| Plan {
        deployment_id: ID.into(),
        config: &config,
        targets,
        launch: false,
        update_outdated_only: false,
        deadlines: Deadlines::default(),
        events: &events,
        rollback_on_failure: true,
        rollback_on_stop: true,
        alarms: None,
        first_alarm_check: None,
        blue_green: None,
        now: 0,
    };
    assert_eq!(
        plan(request(fleet(MAX_ZONES + 1))).unwrap_err(),
        PlanError::TooManyZones {
            zones: MAX_ZONES + 1
        }
    );
    let planned = plan(request(fleet(MAX_ZONES))).unwrap();
    assert_eq!(planned.state.segments.len(), MAX_ZONES);
    let stored = serde_json::to_string(&planned.state).unwrap().len();
    assert!(stored < 64 * 1024, "{stored} bytes");
}

/// With hosts' ends tallied apart from the summary ([`Finished`]), what a report leaves
/// to store in the summary is what it was, unless the deployment decided something (a
/// batch, its end); and the summary with the tallies added is the deployment again.
#[test]
fn a_hosts_end_changes_the_stored_summary_only_when_the_deployment_decides() {
    for config in [
        crate::config::ONE_AT_A_TIME,
        crate::config::HALF_AT_A_TIME,
        crate::config::ALL_AT_ONCE,
    ] {
        let mut d = deployment(config, targets(9, 1, Standing::Old));
        let mut running = d.start(0);
        let mut tallied = Finished::default();
        let mut decisions = 0;
        while !running.is_empty() {
            let mut next = Vec::new();
            for id in running {
                // One host in nine fails its Install: OneAtATime ends there.
                let fail_at = id.ends_with('4').then_some(3);
                for report in host_reports(&id, fail_at, 100) {
                    let before = d.clone();
                    let effects = d.apply(from_host(report, 200)).unwrap();
                    let finished: Finished = d
                        .records
                        .iter()
                        .map(|(id, after)| Finished::of_change(before.records.get(id), after))
                        .sum();
                    let stored = (tallied + finished).decompose(&d.d);
                    assert_eq!((tallied + finished).compose(&stored), d.d, "{config}");
                    let decided =
                        !d.dispatched(&effects).is_empty() || d.d.status != before.d.status;
                    assert_eq!(
                        stored != tallied.decompose(&before.d),
                        decided,
                        "{config}: {effects:?}"
                    );
                    decisions += usize::from(decided);
                    tallied = tallied + finished;
                    next.extend(d.dispatched(&effects));
                }
            }
            running = next;
        }
        assert!(d.d.status.is_terminal(), "{config}");
        let ended = d.d.counts.succeeded + d.d.counts.failed;
        assert_eq!(tallied.succeeded + tallied.failed, ended, "{config}");
        if config == crate::config::ALL_AT_ONCE {
            assert_eq!(decisions, 1, "only the end is a decision");
        }
    }
}

#[test]
fn a_change_of_record_adds_only_a_running_hosts_end_or_install() {
    let plan = targets(1, 1, Standing::Old);
    let d = deployment(crate::config::ALL_AT_ONCE, plan.clone()).d;
    let running = d.dispatched_target(plan[0].clone(), 0, 0);
    let with = |status| TargetState {
        status,
        ..running.clone()
    };
    let of = |before: Option<&TargetState>, after| Finished::of_change(before, &with(after));
    assert_eq!(of(Some(&running), TargetStatus::Succeeded).succeeded, 1);
    assert_eq!(of(Some(&running), TargetStatus::Failed).failed, 1);
    assert_eq!(of(Some(&running), TargetStatus::Skipped).skipped, 1);
    assert_eq!(of(Some(&running), TargetStatus::Ready).installed, 1);
    let ready = with(TargetStatus::Ready);
    assert_eq!(of(Some(&ready), TargetStatus::Succeeded).succeeded, 1);
    // A host never sent its command, or decided already, ends nothing again.
    assert!(of(None, TargetStatus::Skipped).is_empty());
    let done = with(TargetStatus::Failed);
    assert!(of(Some(&done), TargetStatus::Failed).is_empty());
    assert!(of(Some(&running), TargetStatus::InProgress).is_empty());
}
