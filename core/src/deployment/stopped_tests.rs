//! Stopped EC2 instances: in the deployment and its fleet, failed as it starts, never
//! sent a command.

use super::effect::notify;
use super::*;
use crate::config::{ALL_AT_ONCE, DeploymentConfig, ONE_AT_A_TIME};
use crate::identity::Sender;
use crate::lifecycle;
use crate::planner::Standing;
use crate::wire::EventStatus;

const ID: &str = "d-STOPPED01";

/// `i-0`, `i-1`, ... in two zones, those in `stopped` stopped, the rest never deployed to.
fn fleet(count: usize, stopped: &[usize]) -> Vec<Target> {
    (0..count)
        .map(|index| Target {
            instance_id: format!("i-{index}"),
            zone: Some(format!("az-{}", index % 2)),
            standing: if stopped.contains(&index) {
                Standing::Stopped
            } else {
                Standing::Unknown
            },
            sender: Sender::InstanceRoleOf("AROAHOSTROLE".into()),
        })
        .collect()
}

fn plan_of(config: &str, targets: Vec<Target>) -> Planned {
    let config = DeploymentConfig::predefined(config).unwrap();
    let events = lifecycle::in_place(false);
    plan(Plan {
        deployment_id: ID.into(),
        config: &config,
        targets,
        launch: false,
        update_outdated_only: false,
        deadlines: Deadlines::default(),
        events: &events,
        rollback_on_failure: false,
        rollback_on_stop: false,
        alarms: None,
        first_alarm_check: None,
        blue_green: None,
        now: 7,
    })
    .unwrap()
}

fn failure_of(id: &str) -> [Effect; 2] {
    [
        notify(NotificationEvent::InstanceFailure, Some(id)),
        Effect::RecordHealth {
            instance_id: id.into(),
            healthy: false,
        },
    ]
}

#[test]
fn a_stopped_instance_fails_as_the_deployment_starts_and_is_never_sent_its_command() {
    let planned = plan_of(ALL_AT_ONCE, fleet(3, &[0]));
    // Last, after the hosts commands go to; the fleet counts it.
    let order: Vec<&str> = planned
        .ordered
        .iter()
        .map(|t| t.instance_id.as_str())
        .collect();
    assert_eq!(order, ["i-2", "i-1", "i-0"]);
    assert_eq!(planned.state.plan.fleet, 3);
    let counts = planned.state.counts();
    assert_eq!(
        (counts.pending, counts.in_progress, counts.failed),
        (0, 2, 1)
    );
    let mut expected = vec![notify(NotificationEvent::DeploymentStart, None)];
    expected.extend(failure_of("i-0"));
    expected.push(Effect::Dispatch { first: 0, count: 2 });
    assert_eq!(planned.effects, expected);
    assert_eq!(planned.state.status, DeploymentStatus::InProgress);
}

#[test]
fn stopped_instances_count_against_the_minimum_of_healthy_hosts() {
    // OneAtATime keeps all but one healthy: with one of three stopped, no host may go.
    let planned = plan_of(ONE_AT_A_TIME, fleet(3, &[2]));
    assert_eq!(planned.state.status, DeploymentStatus::Failed);
    let counts = planned.state.counts();
    assert_eq!((counts.failed, counts.skipped), (1, 2));
    let error = planned.state.error.unwrap();
    assert_eq!(error.code, "HEALTH_CONSTRAINTS");
    assert!(
        error
            .message
            .contains("0 of 3 instances succeeded and 1 failed"),
        "{}",
        error.message
    );
    assert_eq!(&planned.effects[1..3], &failure_of("i-2"));
    assert!(
        !planned
            .effects
            .iter()
            .any(|e| matches!(e, Effect::Dispatch { .. }))
    );

    // Every one stopped: nothing can succeed.
    let planned = plan_of(ALL_AT_ONCE, fleet(2, &[0, 1]));
    assert_eq!(planned.state.status, DeploymentStatus::Failed);
    assert_eq!(planned.state.counts().failed, 2);
}

#[test]
fn a_zonal_deployment_sends_no_zone_its_stopped_instances() {
    let mut config = DeploymentConfig::predefined(ALL_AT_ONCE).unwrap();
    config.zonal_config = Some(crate::config::ZonalConfig::default());
    let events = lifecycle::in_place(false);
    let planned = plan(Plan {
        deployment_id: ID.into(),
        config: &config,
        targets: fleet(4, &[1]),
        launch: false,
        update_outdated_only: false,
        deadlines: Deadlines::default(),
        events: &events,
        rollback_on_failure: false,
        rollback_on_stop: false,
        alarms: None,
        first_alarm_check: None,
        blue_green: None,
        now: 7,
    })
    .unwrap();
    let covered: u32 = planned
        .state
        .segments
        .iter()
        .map(|segment| segment.end - segment.start)
        .sum();
    assert_eq!(covered, 3);
    assert_eq!(planned.ordered[3].instance_id, "i-1");
}

#[test]
fn a_stopped_instance_reads_as_failed_at_its_first_event_with_the_reason() {
    let events = Deployment::new(
        ID.into(),
        HealthPlan::launch(),
        None,
        Deadlines::default(),
        &[],
        &lifecycle::in_place(false),
        false,
        false,
        0,
    )
    .events;
    let target = fleet(1, &[0]).remove(0);
    for status in [DeploymentStatus::InProgress, DeploymentStatus::Failed] {
        let state = TargetState::waiting(target.clone(), 3, &events, status);
        assert_eq!(
            state,
            TargetState::stopped(target.clone(), 3, &events, None)
        );
        assert_eq!(state.status, TargetStatus::Failed);
        assert_eq!(state.events[0].status, EventStatus::Failed);
        let message = &state.events[0].diagnostics.as_ref().unwrap().message;
        assert!(message.contains("i-0 is stopped"), "{message}");
        assert!(
            state.events[1..]
                .iter()
                .all(|event| event.status == EventStatus::Skipped)
        );
        assert_eq!(state.dispatched_at, None);
    }
    assert!(!Standing::Stopped.counts_as_healthy());
}
