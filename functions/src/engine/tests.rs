//! The engine on in-memory ports: whole deployments, from CreateDeployment to the
//! group's unlock, in milliseconds. moto's tests cover the same paths through AWS.

use super::*;
use crate::deploy::memory::{APPLICATION, GROUP, MemoryWorld, hosts, input};
use crate::deploy::{CreateDeploymentInput, Origin};
use crate::ports::{DeploymentLog, GroupLog, Ports};
use gantry_core::deployment::TargetStatus;
use gantry_core::lifecycle::LifecycleEvent;
use gantry_core::wire::{Command, Creator, EventStatus, Report};
use serde_json::json;
use std::sync::Arc;

/// Creates the deployment and runs its start effects, as the create-deployment function does.
async fn deploy(world: &MemoryWorld, input: CreateDeploymentInput) -> String {
    let created = crate::deploy::create(world, input, Creator::User, Origin::default())
        .await
        .expect("created");
    start(world, &created).await;
    created.record.spec.deployment_id
}

fn report(id: &str, instance_id: &str, event: LifecycleEvent, status: EventStatus) -> Input {
    let now = now_millis();
    Input::Report {
        report: Report {
            schema_version: gantry_core::wire::SCHEMA_VERSION,
            deployment_id: id.into(),
            instance_id: instance_id.into(),
            lifecycle_event: event,
            status,
            start_time: now,
            end_time: Some(now),
            diagnostics: None,
        },
        sender: Some(format!("AIDA{}", instance_id.to_uppercase())),
        now,
    }
}

/// The hosts sent a command, in the order they were sent.
fn commanded(world: &MemoryWorld) -> Vec<String> {
    world
        .ports
        .queues
        .commands()
        .into_iter()
        .map(|command| command.instance_id)
        .collect()
}

/// Reports each event of the host's command as `status`, one step each.
async fn run_host(world: &MemoryWorld, id: &str, instance_id: &str, status: EventStatus) {
    let command = world
        .ports
        .queues
        .commands()
        .into_iter()
        .rfind(|command| command.instance_id == instance_id)
        .expect("the host was sent its command");
    for event in command.lifecycle_events {
        step(world, id, &[report(id, instance_id, event, status)])
            .await
            .expect("applied");
        if status == EventStatus::Failed {
            return;
        }
    }
}

async fn summary(world: &MemoryWorld, id: &str) -> DeploymentRecord<DeploymentSpec> {
    world.log().load_deployment(id).await.expect("stored")
}

#[tokio::test]
async fn one_host_at_a_time_to_success_then_the_group_is_unlocked() {
    let world = MemoryWorld::new(json!({}), hosts(3));
    let id = deploy(&world, input()).await;
    assert_eq!(commanded(&world).len(), 1, "one host at a time");
    let group = world.ports.log.group(APPLICATION, GROUP).unwrap();
    assert_eq!(group.active_deployment_id.as_deref(), Some(id.as_str()));
    assert_eq!(group.last_attempted.unwrap().deployment_id, id);

    for turn in 0..3 {
        let sent = commanded(&world);
        assert_eq!(
            sent.len(),
            turn + 1,
            "the next host is sent its command only now"
        );
        run_host(&world, &id, &sent[turn], EventStatus::Succeeded).await;
    }

    let record = summary(&world, &id).await;
    assert_eq!(record.state.status, DeploymentStatus::Succeeded);
    assert_eq!(record.state.counts.succeeded, 3);
    assert!(record.outbox.is_empty(), "every effect was carried out");
    let group = world.ports.log.group(APPLICATION, GROUP).unwrap();
    assert_eq!(group.active_deployment_id, None, "the lock is released");
    assert_eq!(group.last_successful.unwrap().deployment_id, id);
    assert_eq!(group.target_revision, input().revision);
    let health = world.log().group_health(APPLICATION, GROUP).await.unwrap();
    assert_eq!(health.len(), 3);
    assert!(
        health
            .values()
            .all(|health| health.healthy && health.deployment_id == id)
    );
    // Every success asks for the instances that launched during it to be updated.
    assert_eq!(world.asked_of_fleets(), ["UpdateOutdated"]);
}

#[tokio::test]
async fn a_report_delivered_twice_at_once_counts_once() {
    let world = MemoryWorld::new(json!({}), hosts(2));
    let id = deploy(&world, input()).await;
    let first = commanded(&world)[0].clone();
    let install = report(
        &id,
        &first,
        LifecycleEvent::ApplicationStop,
        EventStatus::Succeeded,
    );
    let (one, two) = tokio::join!(
        step(&world, &id, std::slice::from_ref(&install)),
        step(&world, &id, std::slice::from_ref(&install)),
    );
    let (one, two) = (one.unwrap(), two.unwrap());
    assert!(
        one.hosts_written + two.hosts_written == 1,
        "exactly one of the two deliveries changed the host"
    );
    let host = world
        .log()
        .load_targets(&id, std::slice::from_ref(&first))
        .await
        .unwrap();
    let done: Vec<_> = host[&first]
        .value
        .events
        .iter()
        .filter(|event| event.status == EventStatus::Succeeded)
        .collect();
    assert_eq!(done.len(), 1);
}

#[tokio::test]
async fn reports_from_many_hosts_at_once_all_count_through_lost_races() {
    let world = Arc::new(MemoryWorld::new(
        json!({"deploymentConfigName": "CodeDeployDefault.AllAtOnce"}),
        hosts(30),
    ));
    let id = deploy(&world, input()).await;
    let sent = commanded(&world);
    assert_eq!(sent.len(), 30, "all at once");
    let mut tasks = tokio::task::JoinSet::new();
    for instance_id in sent {
        let (world, id) = (Arc::clone(&world), id.clone());
        tasks.spawn(
            async move { run_host(&world, &id, &instance_id, EventStatus::Succeeded).await },
        );
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a host's reports applied");
    }
    let record = summary(&world, &id).await;
    assert_eq!(record.state.status, DeploymentStatus::Succeeded);
    assert_eq!(record.state.counts.succeeded, 30);
    assert!(
        world
            .ports
            .log
            .group(APPLICATION, GROUP)
            .unwrap()
            .active_deployment_id
            .is_none()
    );
}

#[tokio::test]
async fn a_failed_host_fails_the_deployment_and_asks_for_its_rollback() {
    let world = MemoryWorld::new(
        json!({"autoRollbackConfiguration": {"enabled": true, "events": ["DEPLOYMENT_FAILURE"]}}),
        hosts(3),
    );
    let id = deploy(&world, input()).await;
    let first = commanded(&world)[0].clone();
    run_host(&world, &id, &first, EventStatus::Failed).await;

    let record = summary(&world, &id).await;
    assert_eq!(record.state.status, DeploymentStatus::Failed);
    assert_eq!(commanded(&world).len(), 1, "no host after the failed one");
    assert_eq!(world.asked_of_fleets(), ["StartRollback"]);
    let group = world.ports.log.group(APPLICATION, GROUP).unwrap();
    assert_eq!(group.active_deployment_id, None);
    assert_eq!(group.last_attempted.unwrap().status, "Failed");
    assert!(group.last_successful.is_none());
    let health = world.log().group_health(APPLICATION, GROUP).await.unwrap();
    assert!(!health[&first].healthy);
}

#[tokio::test]
async fn the_tick_fails_a_host_that_never_started() {
    let mut world = MemoryWorld::new(json!({}), hosts(2));
    // A host has no time at all to start: it is overdue as soon as it is sent.
    world.ports.settings.host_start_timeout_ms = 0;
    let id = deploy(&world, input()).await;
    let first = commanded(&world)[0].clone();
    let applied = step(
        &world,
        &id,
        &[Input::Tick {
            now: now_millis() + 1,
        }],
    )
    .await
    .unwrap();
    assert!(
        applied.effects.iter().any(
            |effect| matches!(effect, Effect::HostTimedOut { instance_id } if *instance_id == first)
        ),
        "{:?}",
        applied.effects
    );
    let host = world
        .log()
        .load_targets(&id, std::slice::from_ref(&first))
        .await
        .unwrap();
    assert_eq!(host[&first].value.status, TargetStatus::Failed);
    assert_eq!(
        summary(&world, &id).await.state.status,
        DeploymentStatus::Failed
    );
}

#[tokio::test]
async fn a_group_deleted_meanwhile_fails_its_records_for_good_not_forever() {
    let world = MemoryWorld::new(json!({}), hosts(1));
    let id = deploy(&world, input()).await;
    world.ports.log.records().groups.clear();
    run_host(&world, &id, "host-00", EventStatus::Succeeded).await;
    let record = summary(&world, &id).await;
    assert_eq!(record.state.status, DeploymentStatus::Succeeded);
    assert!(
        record.outbox.is_empty(),
        "nothing is retried: {:?}",
        record.outbox
    );
    let records = world.ports.log.records();
    let failed = &records.deployments[&id].failed_effects;
    for kind in ["RecordLastSuccessful", "ReleaseLock"] {
        assert!(failed[kind].reason.contains("does not exist"), "{failed:?}");
    }
}

fn triggered(topic: &str) -> serde_json::Value {
    json!({"triggerConfigurations": [{
        "triggerName": "ops",
        "triggerTargetArn": topic,
        "triggerEvents": ["DeploymentStart", "DeploymentSuccess"],
    }]})
}

#[tokio::test]
async fn notifications_go_to_the_groups_topic() {
    let topic = "arn:aws:sns:us-east-1:000000000000:gantry-ops";
    let world = MemoryWorld::new(triggered(topic), hosts(1));
    let id = deploy(&world, input()).await;
    run_host(&world, &id, "host-00", EventStatus::Succeeded).await;
    let published = world.ports.topics.published.lock().unwrap().clone();
    let subjects: Vec<&str> = published
        .iter()
        .map(|(_, subject, _)| subject.as_str())
        .collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(subjects[0].starts_with("CREATED: "), "{subjects:?}");
    assert!(subjects[1].starts_with("SUCCEEDED: "), "{subjects:?}");
    assert!(
        published
            .iter()
            .all(|(arn, _, message)| arn == topic && message.contains(&id))
    );
}

#[tokio::test]
async fn a_topic_refusing_for_good_is_recorded_and_blocks_nothing() {
    let topic = "arn:aws:sns:us-east-1:000000000000:gantry-deleted";
    let world = MemoryWorld::new(triggered(topic), hosts(1));
    world
        .ports
        .topics
        .refused
        .lock()
        .unwrap()
        .insert(topic.into());
    let id = deploy(&world, input()).await;
    run_host(&world, &id, "host-00", EventStatus::Succeeded).await;
    let record = summary(&world, &id).await;
    assert_eq!(record.state.status, DeploymentStatus::Succeeded);
    assert!(record.outbox.is_empty(), "nothing is retried");
    let records = world.ports.log.records();
    let failed = &records.deployments[&id].failed_effects["Notify#ops"];
    assert_eq!(
        failed.failures, 2,
        "DeploymentStart, then DeploymentSuccess"
    );
    assert!(
        failed.reason.contains("does not exist"),
        "{}",
        failed.reason
    );
}

#[tokio::test]
async fn a_topic_failing_for_now_keeps_its_effect_in_the_outbox_for_the_tick() {
    let topic = "arn:aws:sns:us-east-1:000000000000:gantry-throttled";
    let world = MemoryWorld::new(triggered(topic), hosts(1));
    world
        .ports
        .topics
        .unavailable
        .lock()
        .unwrap()
        .insert(topic.into());
    let id = deploy(&world, input()).await;
    let record = summary(&world, &id).await;
    let pending: Vec<&OutboxEntry> = record.outbox.values().collect();
    assert_eq!(pending.len(), 1, "{:?}", record.outbox);
    assert_eq!(pending[0].attempts, 1);
    assert!(matches!(
        pending[0].effects[..],
        [Effect::Notify {
            event: gantry_core::deployment::NotificationEvent::DeploymentStart,
            ..
        }]
    ));
    assert_eq!(
        commanded(&world).len(),
        1,
        "the hosts did not wait on the topic"
    );

    // SNS is back: the tick's run of the entry publishes and clears it.
    world.ports.topics.unavailable.lock().unwrap().clear();
    let (key, entry) = record.outbox.iter().next().unwrap();
    let entry = Entry {
        key: key.clone(),
        attempts: entry.attempts,
        late: true,
    };
    let retry_at = execute(&world, &record, &pending[0].effects, Some(entry)).await;
    assert_eq!(retry_at, None);
    assert!(summary(&world, &id).await.outbox.is_empty());
    assert_eq!(world.ports.topics.published.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_alarm_firing_at_the_start_stops_the_deployment_before_any_host() {
    let world = MemoryWorld::new(
        json!({"alarmConfiguration": {"enabled": true, "alarms": [{"name": "web-5xx"}]}}),
        hosts(2),
    );
    *world.alarms.lock().unwrap() = AlarmCheck::Active {
        alarms: vec!["web-5xx".into()],
    };
    let id = deploy(&world, input()).await;
    assert!(commanded(&world).is_empty(), "no host is touched");
    let record = summary(&world, &id).await;
    assert!(
        record.state.status.is_terminal(),
        "{:?}",
        record.state.status
    );
    assert!(
        world
            .ports
            .log
            .group(APPLICATION, GROUP)
            .unwrap()
            .active_deployment_id
            .is_none()
    );
}

#[test]
fn a_large_dispatch_is_sliced_without_gaps_or_overlaps() {
    let all = slices("d-AAAAAAAAA", 7, 1_005);
    assert_eq!(all.len(), 41);
    assert!(all.iter().all(|slice| slice.count <= DISPATCH_SLICE));
    let mut next = 7;
    for slice in &all {
        assert_eq!(slice.first, next);
        next += slice.count;
    }
    assert_eq!(next, 7 + 1_005);
    assert_eq!(slices("d-AAAAAAAAA", 0, 10_000).len(), 400);
    assert_eq!(slices("d-AAAAAAAAA", 0, 1).len(), 1);
    assert!(slices("d-AAAAAAAAA", 3, 0).is_empty());
}

/// Issue 27: only the lifecycle function's role may copy, adopt or delete groups and
/// terminate instances. Another function keeps an entry holding a fleet effect in the
/// outbox whole (its order holds: nothing after the fleet effect runs before it) and asks
/// the lifecycle function to run it; the lifecycle function runs it once, and a message
/// for it again (or forged) runs nothing.
#[tokio::test]
async fn entries_with_fleet_effects_are_handed_to_the_lifecycle_function_and_run_there_once() {
    const LIFECYCLE_QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/000000000000/lifecycle";
    let topic = "arn:aws:sns:us-east-1:000000000000:gantry-throttled";
    let mut world = MemoryWorld::new(triggered(topic), hosts(1));
    world.ports.settings.lifecycle_queue_url = Some(LIFECYCLE_QUEUE.into());
    world.ports.settings.fleet_effects_here = false;
    // An entry left in the outbox: its notification failed for now.
    world
        .ports
        .topics
        .unavailable
        .lock()
        .unwrap()
        .insert(topic.into());
    let id = deploy(&world, input()).await;
    world.ports.topics.unavailable.lock().unwrap().clear();
    let record = summary(&world, &id).await;
    let (key, pending) = record.outbox.iter().next().expect("an entry left");
    let mut effects = pending.effects.clone();
    effects.push(Effect::TerminateOriginal);
    let pending = OutboxEntry {
        effects: effects.clone(),
        ..pending.clone()
    };
    world
        .log()
        .rewrite_outbox(&id, key, &pending)
        .await
        .unwrap();
    let entry = Entry {
        key: key.clone(),
        attempts: pending.attempts,
        late: true,
    };

    // Run by batch-advance's tick: nothing runs there, the entry stays whole.
    let retry_at = execute(&world, &record, &effects, Some(entry)).await;
    assert!(retry_at.is_some(), "the handed-off entry stays on the tick");
    assert!(world.asked_of_fleets().is_empty());
    assert!(world.ports.topics.published.lock().unwrap().is_empty());
    let left = summary(&world, &id).await.outbox;
    assert_eq!(left[key].effects, effects);
    assert_eq!(
        left[key].attempts, pending.attempts,
        "handing off is no failure"
    );
    let posted = world.ports.queues.to_queues.lock().unwrap().clone();
    assert_eq!(
        posted,
        [(
            LIFECYCLE_QUEUE.to_owned(),
            json!({"gantryEffects": {"deploymentId": id, "entry": key}}).to_string()
        )]
    );

    // The lifecycle function runs it, in its order, once.
    world.ports.settings.fleet_effects_here = true;
    run_handed_off(&world, &id, key).await.unwrap();
    run_handed_off(&world, &id, key).await.unwrap();
    assert_eq!(world.asked_of_fleets(), ["TerminateOriginal"]);
    assert!(summary(&world, &id).await.outbox.is_empty());
    assert_eq!(world.ports.topics.published.lock().unwrap().len(), 1);
    // For a deployment that does not exist: nothing, and no error to retry.
    run_handed_off(&world, "d-NOTTHERE", key).await.unwrap();
}

/// Reports each event of `command` as `status`, one step each, as its host would.
async fn run_command(world: &MemoryWorld, id: &str, command: &Command, status: EventStatus) {
    for event in &command.lifecycle_events {
        step(
            world,
            id,
            &[report(id, &command.instance_id, *event, status)],
        )
        .await
        .expect("applied");
        if status == EventStatus::Failed {
            return;
        }
    }
}

/// `workers` tasks run the hosts commanded, each command by one task (as SQS hands a
/// message to one batch-advance invocation), until the deployment ends. Each host
/// reports every event as `status`. Returns the hosts commanded, in order.
async fn run_with_workers(
    world: &Arc<MemoryWorld>,
    id: &str,
    workers: usize,
    status: EventStatus,
) -> Vec<String> {
    // Commands not yet taken, and where the next look at the queues starts.
    let queue = Arc::new(std::sync::Mutex::new((0usize, Vec::<Command>::new())));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (world, id, queue) = (Arc::clone(world), id.to_owned(), Arc::clone(&queue));
        tasks.spawn(async move {
            for _ in 0..1_000_000 {
                let next = {
                    let mut queue = queue.lock().unwrap();
                    let (seen, more) = world.ports.queues.commands_from(queue.0);
                    queue.0 = seen;
                    queue.1.extend(more);
                    queue.1.pop()
                };
                match next {
                    Some(command) => run_command(&world, &id, &command, status).await,
                    None if summary(&world, &id).await.state.status.is_terminal() => return,
                    None => tokio::task::yield_now().await,
                }
            }
            panic!("deployment {id} never ended");
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a worker ran its hosts");
    }
    commanded(world)
}

#[tokio::test]
async fn fifty_workers_finish_a_thousand_hosts_without_racing_for_the_summary() {
    let world = Arc::new(MemoryWorld::new(
        json!({"deploymentConfigName": "CodeDeployDefault.AllAtOnce"}),
        hosts(1000),
    ));
    let id = deploy(&world, input()).await;
    let sent = run_with_workers(&world, &id, 50, EventStatus::Succeeded).await;
    assert_eq!(sent.len(), 1000, "each host commanded once");

    let record = summary(&world, &id).await;
    assert_eq!(record.state.status, DeploymentStatus::Succeeded);
    assert_eq!(record.state.counts.succeeded, 1000);
    assert_eq!(record.state.counts.in_progress, 0);
    // Only the deciders raced: the last writers of the batch, at its end. Before
    // tallies, every finished host wrote the summary and lost races in the thousands.
    let conflicts = world.ports.log.records().summary_conflicts;
    assert!(conflicts <= 49, "{conflicts} lost summary writes");
    let health = world.log().group_health(APPLICATION, GROUP).await.unwrap();
    assert_eq!(health.len(), 1000);
    assert!(health.values().all(|health| health.healthy));
    assert!(record.outbox.is_empty(), "every effect was carried out");
    let group = world.ports.log.group(APPLICATION, GROUP).unwrap();
    assert_eq!(
        group.active_deployment_id, None,
        "the lock is released once"
    );
    assert_eq!(group.last_successful.unwrap().deployment_id, id);
}

#[tokio::test]
async fn fifty_workers_keep_half_the_fleet_healthy_and_command_each_host_once() {
    let world = Arc::new(MemoryWorld::new(
        json!({"deploymentConfigName": "CodeDeployDefault.HalfAtATime"}),
        hosts(200),
    ));
    let id = deploy(&world, input()).await;
    let sent = run_with_workers(&world, &id, 50, EventStatus::Succeeded).await;
    let unique: std::collections::BTreeSet<&String> = sent.iter().collect();
    assert_eq!((sent.len(), unique.len()), (200, 200), "each host once");

    let record = summary(&world, &id).await;
    assert_eq!(record.state.status, DeploymentStatus::Succeeded);
    assert_eq!(record.state.counts.succeeded, 200);
    // HalfAtATime keeps 100 of 200 healthy: no write ever had more running, whatever
    // finishes a worker had not yet seen.
    assert_eq!(world.ports.log.records().most_in_progress, 100);
}

#[tokio::test]
async fn fifty_workers_fail_a_deployment_once_with_every_host_counted() {
    let world = Arc::new(MemoryWorld::new(
        json!({
            "deploymentConfigName": "CodeDeployDefault.AllAtOnce",
            "autoRollbackConfiguration": {"enabled": true, "events": ["DEPLOYMENT_FAILURE"]}
        }),
        hosts(300),
    ));
    let id = deploy(&world, input()).await;
    run_with_workers(&world, &id, 50, EventStatus::Failed).await;

    let record = summary(&world, &id).await;
    assert_eq!(record.state.status, DeploymentStatus::Failed);
    let counts = record.state.counts;
    assert_eq!(
        (counts.failed, counts.in_progress, counts.pending),
        (300, 0, 0)
    );
    assert_eq!(world.asked_of_fleets(), ["StartRollback"], "one rollback");
    let health = world.log().group_health(APPLICATION, GROUP).await.unwrap();
    assert!(health.len() == 300 && health.values().all(|health| !health.healthy));
}

/// Two AllAtOnce hosts: the first ran to its end, the second's last report (returned)
/// is written by an invocation that has not yet seen the first's tally (hidden for the
/// while), so it only tallies and asks for a recount that has not happened.
async fn an_end_written_unseen(world: &MemoryWorld) -> (String, Input) {
    let id = deploy(world, input()).await;
    let commands = world.ports.queues.commands();
    let (first, second) = (&commands[0], &commands[1]);
    run_command(world, &id, first, EventStatus::Succeeded).await;
    let (last, before_last) = second.lifecycle_events.split_last().unwrap();
    for event in before_last {
        let report = report(&id, &second.instance_id, *event, EventStatus::Succeeded);
        step(world, &id, &[report]).await.unwrap();
    }
    let hide = |by: i64| {
        let mut records = world.ports.log.records();
        let tallied = &mut records.deployments.get_mut(&id).unwrap().tallied;
        tallied.succeeded = (i64::from(tallied.succeeded) + by) as u32;
    };
    hide(-1);
    let last_report = report(&id, &second.instance_id, *last, EventStatus::Succeeded);
    let written = transition::apply::<DeploymentSpec>(
        world.log(),
        &id,
        std::slice::from_ref(&last_report),
        now_millis(),
        5,
    )
    .await
    .unwrap();
    assert!(written.recount && written.hosts_written == 1);
    hide(1);
    assert_eq!(
        summary(world, &id).await.state.status,
        DeploymentStatus::InProgress,
        "nobody decided"
    );
    (id, last_report)
}

#[tokio::test]
async fn a_repeated_end_recounts_when_its_first_writer_died_before_deciding() {
    let world = MemoryWorld::new(
        json!({"deploymentConfigName": "CodeDeployDefault.AllAtOnce"}),
        hosts(2),
    );
    // The invocation that wrote the second host's end died before its recount.
    let (id, last_report) = an_end_written_unseen(&world).await;
    // The same report from another host's identity is refused, and recounts nothing.
    let Input::Report { report: forged, .. } = last_report.clone() else {
        unreachable!()
    };
    let forged = Input::Report {
        report: forged,
        sender: Some("AIDAANOTHERHOST".into()),
        now: now_millis(),
    };
    let refused = transition::apply::<DeploymentSpec>(world.log(), &id, &[forged], now_millis(), 5)
        .await
        .unwrap();
    assert_eq!((refused.refused.len(), refused.recount), (1, false));
    // SQS delivers the report again: a duplicate, but the deployment is decided.
    let again = step(&world, &id, &[last_report]).await.unwrap();
    assert_eq!(again.hosts_written, 0);
    assert_eq!(again.record.state.status, DeploymentStatus::Succeeded);
    assert_eq!(again.record.state.counts.succeeded, 2);
}

#[tokio::test]
async fn of_several_recounts_that_find_a_batch_complete_the_one_that_claims_it_decides() {
    let world = MemoryWorld::new(
        json!({"deploymentConfigName": "CodeDeployDefault.AllAtOnce"}),
        hosts(2),
    );
    let (id, _) = an_end_written_unseen(&world).await;
    // Another invocation, recounting too, claimed this version's decision first.
    let version = summary(&world, &id).await.version;
    let now = now_millis();
    assert!(world.log().claim_decision(&id, version, now).await.unwrap());
    let stepped_aside =
        transition::recount::<DeploymentSpec, _>(world.log(), &id, now, 5, &transition::NoPrecheck)
            .await
            .unwrap();
    assert_eq!(stepped_aside, None);
    let record = summary(&world, &id).await;
    assert_eq!(
        (record.version, record.state.status),
        (version, DeploymentStatus::InProgress),
        "the claimant decides, not this one"
    );
    assert_eq!(world.ports.log.records().claims_lost, 1);
    // A claimant that died lets the next recount decide once its claim expires.
    let later = now + crate::store::DECISION_CLAIM_EXPIRES_MS + 1;
    let decided = transition::recount::<DeploymentSpec, _>(
        world.log(),
        &id,
        later,
        5,
        &transition::NoPrecheck,
    )
    .await
    .unwrap()
    .expect("a decision");
    assert_eq!(decided.record.state.status, DeploymentStatus::Succeeded);
    assert_eq!(decided.record.version, version + 1);
}

#[tokio::test]
async fn a_claimant_whose_write_meets_another_writes_again_under_its_own_claim() {
    let world = MemoryWorld::new(
        json!({"deploymentConfigName": "CodeDeployDefault.AllAtOnce"}),
        hosts(2),
    );
    let (id, _) = an_end_written_unseen(&world).await;
    let version = summary(&world, &id).await.version;
    // Its first write is cancelled as DynamoDB cancels one that meets another
    // transaction: the version has not moved, and the claim is this recount's own.
    world.ports.log.records().transaction_conflicts = 1;
    let decided = transition::recount::<DeploymentSpec, _>(
        world.log(),
        &id,
        now_millis(),
        5,
        &transition::NoPrecheck,
    )
    .await
    .unwrap()
    .expect("the claimant decides on its second attempt");
    assert_eq!(decided.record.state.status, DeploymentStatus::Succeeded);
    assert_eq!(decided.record.version, version + 1);
    assert_eq!(world.ports.log.records().claims_lost, 0);
}
