//! The DynamoDB store against a real moto server: conditional writes, group locks, plan
//! pages and host records, and concurrent appliers that must not count a report twice.

use aws_sdk_dynamodb::types::AttributeValue;
use gantry_core::config::{ALL_AT_ONCE, DeploymentConfig};
use gantry_core::deployment::{
    Deadlines, Deployment, DeploymentStatus, Effect, Finished, Input, NotificationEvent,
};
use gantry_core::identity::Sender;
use gantry_core::lifecycle;
use gantry_core::planner::{self, Standing, Target};
use gantry_core::wire::{Diagnostics, ErrorCode, EventStatus, Report, SCHEMA_VERSION};
use gantry_functions::engine::transition;
use gantry_functions::store::{DynamoStore, OutboxEntry, StoreError, keys};
use gantry_tests::moto::Moto;
use std::sync::Arc;

async fn store(moto: &Moto) -> DynamoStore {
    let config = moto.sdk_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), "gantry-test");
    store.create_table().await.expect("table");
    store
}

fn ordered(hosts: usize) -> Vec<Target> {
    let targets: Vec<Target> = (0..hosts)
        .map(|index| Target {
            instance_id: format!("i-{index:03}"),
            zone: Some(format!("az-{}", index % 2)),
            standing: Standing::Old,
            sender: Sender::InstanceRoleOf("AROAHOSTROLE".into()),
        })
        .collect();
    planner::order(targets)
}

fn deployment(id: &str, hosts: usize) -> Deployment {
    let plan = DeploymentConfig::predefined(ALL_AT_ONCE)
        .unwrap()
        .health_plan(hosts as u32)
        .unwrap();
    Deployment::new(
        id.to_owned(),
        plan,
        None,
        Deadlines::default(),
        &ordered(hosts),
        &lifecycle::in_place(false),
        false,
        false,
        0,
    )
}

fn reports(deployment_id: &str, instance_id: &str) -> Vec<Report> {
    lifecycle::in_place(false)
        .into_iter()
        .enumerate()
        .map(|(index, event)| Report {
            schema_version: SCHEMA_VERSION,
            deployment_id: deployment_id.to_owned(),
            instance_id: instance_id.to_owned(),
            lifecycle_event: event,
            status: EventStatus::Succeeded,
            start_time: 100 + index as u64,
            end_time: Some(101 + index as u64),
            diagnostics: Some(Diagnostics {
                error_code: ErrorCode::Success,
                script_name: String::new(),
                message: String::new(),
                log_tail: String::new(),
            }),
        })
        .collect()
}

type Spec = serde_json::Value;

fn spec() -> Spec {
    serde_json::json!({"what": "a deployment"})
}

#[tokio::test(flavor = "multi_thread")]
async fn deployments_are_versioned_and_writes_are_conditional() {
    let moto = Moto::start().unwrap();
    let store = store(&moto).await;
    store
        .create_group("app", "group", &serde_json::json!({}))
        .await
        .unwrap();
    let deployment = deployment("d-STORE0001", 2);
    let plan = ordered(2);
    store
        .create_deployment("app", "group", &spec(), &deployment, &plan, &[], false, 0)
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_deployment("app", "group", &spec(), &deployment, &plan, &[], false, 0)
            .await,
        Err(StoreError::Conflict(_))
    ));

    let loaded = store.load_deployment::<Spec>("d-STORE0001").await.unwrap();
    assert_eq!(loaded.version, 1);
    assert_eq!(loaded.state, deployment);
    assert_eq!(loaded.spec, spec());
    assert_eq!(store.plan("d-STORE0001").await.unwrap(), plan);

    let mut changed = loaded.clone();
    let effects = changed
        .state
        .apply(Input::Start { now: 1 }, &mut [])
        .unwrap();
    assert_eq!(
        store
            .save_changes(&changed, true, &effects, &[], &Finished::default(), 1)
            .await
            .unwrap(),
        (2, Some(keys::summary_entry(2)))
    );
    let stale = store
        .save_changes(&changed, true, &effects, &[], &Finished::default(), 1)
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let reloaded = store.load_deployment::<Spec>("d-STORE0001").await.unwrap();
    assert_eq!(reloaded.state.status, DeploymentStatus::InProgress);
    assert_eq!(
        reloaded.outbox[&keys::summary_entry(2)].effects,
        effects,
        "effects are written with the state"
    );
    let written_at = reloaded.outbox[&keys::summary_entry(2)].at;
    // A writer still at work moves its entry's time on, so the tick leaves it alone;
    // effects that failed stay alone in it, with the count of failures.
    let failed = OutboxEntry {
        effects: effects[..1].to_vec(),
        at: written_at + 25_000,
        attempts: 2,
    };
    store
        .rewrite_outbox("d-STORE0001", &keys::summary_entry(2), &failed)
        .await
        .unwrap();
    let touched = store.load_deployment::<Spec>("d-STORE0001").await.unwrap();
    assert_eq!(touched.outbox[&keys::summary_entry(2)], failed);
    assert_eq!(touched.version, 2, "rewriting is not a change of state");
    store
        .clear_outbox("d-STORE0001", &keys::summary_entry(2))
        .await
        .unwrap();
    // Rewriting an entry done (by the tick, say) does not bring it back.
    store
        .rewrite_outbox(
            "d-STORE0001",
            &keys::summary_entry(2),
            &OutboxEntry::new(effects.clone(), written_at + 50_000),
        )
        .await
        .unwrap();
    assert!(
        store
            .load_deployment::<Spec>("d-STORE0001")
            .await
            .unwrap()
            .outbox
            .is_empty()
    );
    assert!(matches!(
        store.load_deployment::<Spec>("d-NOSUCH001").await,
        Err(StoreError::NotFound(_))
    ));

    // Host records: created once, each write conditional on the version read.
    let host = reloaded.state.dispatched_target(plan[1].clone(), 1, 5);
    store
        .create_targets("d-STORE0001", vec![host.clone()])
        .await
        .unwrap();
    let mut later = host.clone();
    later.dispatched_at = Some(99);
    store
        .create_targets("d-STORE0001", vec![later.clone()])
        .await
        .unwrap();
    let ids = vec![host.target.instance_id.clone()];
    let stored = store.load_targets("d-STORE0001", &ids).await.unwrap();
    assert_eq!(
        stored[&ids[0]].value, host,
        "a dispatch run again keeps the record"
    );
    assert_eq!(stored[&ids[0]].version, 1);
    assert_eq!(
        store
            .overdue_targets("d-STORE0001", 5 + Deadlines::default().start_ms, 10)
            .await
            .unwrap(),
        ids,
        "a deploying host is on the due index at its deadline"
    );
    assert!(
        store
            .overdue_targets("d-STORE0001", 5, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let record = store.load_deployment::<Spec>("d-STORE0001").await.unwrap();
    store
        .save_changes(&record, false, &[], &[(&later, 1)], &Finished::default(), 6)
        .await
        .unwrap();
    let stale = store
        .save_changes(&record, false, &[], &[(&later, 1)], &Finished::default(), 6)
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    assert_eq!(
        store.targets("d-STORE0001").await.unwrap(),
        vec![later.clone()]
    );

    // A write of host records only stores its effects too, in an entry of its own.
    let mut moved = later;
    moved.dispatched_at = Some(100);
    let (version, entry) = store
        .save_changes(
            &record,
            false,
            &effects[..1],
            &[(&moved, 2)],
            &Finished::default(),
            7,
        )
        .await
        .unwrap();
    assert_eq!(version, record.version, "the summary is not written");
    let entry = entry.expect("an outbox entry for the host-only write");
    assert_eq!(
        entry,
        keys::hosts_entry(record.version, &moved.target.instance_id, 3)
    );
    let reloaded = store.load_deployment::<Spec>("d-STORE0001").await.unwrap();
    assert_eq!(reloaded.outbox.len(), 1);
    assert_eq!(reloaded.outbox[&entry].effects, effects[..1].to_vec());
    store.clear_outbox("d-STORE0001", &entry).await.unwrap();
    store.clear_outbox("d-STORE0001", &entry).await.unwrap();
    assert!(
        store
            .load_deployment::<Spec>("d-STORE0001")
            .await
            .unwrap()
            .outbox
            .is_empty(),
        "cleared, twice"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_active_deployment_per_group() {
    let moto = Moto::start().unwrap();
    let store = store(&moto).await;
    store
        .create_group("app", "g-1", &serde_json::json!({}))
        .await
        .unwrap();
    let first = deployment("d-LOCK00001", 1);
    let second = deployment("d-LOCK00002", 1);
    store
        .create_deployment("app", "g-1", &spec(), &first, &ordered(1), &[], true, 0)
        .await
        .unwrap();
    let refused = store
        .create_deployment("app", "g-1", &spec(), &second, &ordered(1), &[], true, 0)
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Conflict(message)) if message.contains("g-1")),
        "{refused:?}"
    );
    assert!(
        matches!(
            store.load_deployment::<Spec>("d-LOCK00002").await,
            Err(StoreError::NotFound(_))
        ),
        "a refused deployment writes nothing"
    );
    assert!(
        !store
            .unlock_group("app", "g-1", "d-LOCK00002")
            .await
            .unwrap(),
        "only the holder releases"
    );
    assert!(
        store
            .unlock_group("app", "g-1", "d-LOCK00001")
            .await
            .unwrap()
    );
    assert!(
        !store
            .unlock_group("app", "g-1", "d-LOCK00001")
            .await
            .unwrap(),
        "releasing twice is a no-op"
    );
    store
        .create_deployment("app", "g-1", &spec(), &second, &ordered(1), &[], true, 0)
        .await
        .unwrap();
    let group = store
        .load_group::<serde_json::Value>("app", "g-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(group.active_deployment_id.as_deref(), Some("d-LOCK00002"));
}

/// Eight appliers deliver every report of six hosts at once, each in its own order.
/// Every transition is written once, so each effect comes out exactly once overall.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_appliers_count_each_report_once() {
    let moto = Moto::start().unwrap();
    let store = Arc::new(store(&moto).await);
    let id = "d-RACE00001";
    let hosts = 6;
    store
        .create_deployment(
            "app",
            "group",
            &spec(),
            &deployment(id, hosts),
            &ordered(hosts),
            &[],
            false,
            0,
        )
        .await
        .unwrap();
    let started = transition::apply::<Spec>(&*store, id, &[Input::Start { now: 1 }], 1, 10)
        .await
        .unwrap();
    assert_eq!(
        started.effects.last(),
        Some(&Effect::Dispatch {
            first: 0,
            count: hosts as u32
        })
    );
    // What the dispatch effect does first: the hosts' records.
    let plan = store.plan_slice(id, 0, hosts as u32).await.unwrap();
    assert_eq!(plan, ordered(hosts));
    let records = plan
        .into_iter()
        .zip(0..)
        .map(|(target, index)| started.record.state.dispatched_target(target, index, 1))
        .collect();
    store.create_targets(id, records).await.unwrap();

    let all: Vec<Report> = (0..hosts)
        .flat_map(|i| reports(id, &format!("i-{i:03}")))
        .collect();
    let mut tasks = Vec::new();
    for worker in 0..8usize {
        let store = Arc::clone(&store);
        let mut mine = all.clone();
        mine.rotate_left(worker * 5 % all.len());
        if worker % 2 == 1 {
            mine.reverse();
        }
        tasks.push(tokio::spawn(async move {
            let mut effects = Vec::new();
            for report in mine {
                let applied = transition::apply::<Spec>(
                    &*store,
                    id,
                    &[Input::Report {
                        sender: Some(format!("AROAHOSTROLE:{}", report.instance_id)),
                        report,
                        now: 200,
                    }],
                    200,
                    50,
                )
                .await
                .expect("apply");
                assert!(applied.refused.is_empty(), "{:?}", applied.refused);
                effects.extend(applied.effects);
                if applied.recount {
                    let decided = transition::recount::<Spec, _>(
                        &*store,
                        id,
                        200,
                        50,
                        &transition::NoPrecheck,
                    )
                    .await
                    .expect("recount");
                    effects.extend(decided.into_iter().flat_map(|decided| decided.effects));
                }
            }
            effects
        }));
    }
    let mut effects = Vec::new();
    for task in tasks {
        effects.extend(task.await.unwrap());
    }
    let count = |wanted: &Effect| effects.iter().filter(|effect| *effect == wanted).count();
    for host in 0..hosts {
        let instance_id = Some(format!("i-{host:03}"));
        let success = Effect::Notify {
            event: NotificationEvent::InstanceSuccess,
            instance_id,
        };
        assert_eq!(count(&success), 1, "{success:?}");
    }
    let finished = Effect::Notify {
        event: NotificationEvent::DeploymentSuccess,
        instance_id: None,
    };
    assert_eq!(count(&finished), 1);
    assert_eq!(count(&Effect::ReleaseLock), 1);
    assert_eq!(count(&Effect::RecordLastSuccessful), 1);
    let stored = store.load_deployment::<Spec>(id).await.unwrap();
    assert_eq!(stored.state.status, DeploymentStatus::Succeeded);
    assert_eq!(stored.state.counts().succeeded, hosts as u32);
    // The hosts' ends are in the tally items, read with the summary, and each once.
    assert_eq!(stored.tallied.succeeded, hosts as u32);
    let client = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    let tallies = client
        .query()
        .table_name("gantry-test")
        .key_condition_expression("pk = :pk AND begins_with(sk, :tally)")
        .expression_attribute_values(":pk", AttributeValue::S(keys::deployment(id)))
        .expression_attribute_values(":tally", AttributeValue::S(keys::TALLY_PREFIX.into()))
        .send()
        .await
        .unwrap();
    let tallied: u64 = tallies
        .items()
        .iter()
        .map(|item| item["succeeded"].as_n().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(tallied, hosts as u64);
    let summary = client
        .get_item()
        .table_name("gantry-test")
        .key("pk", AttributeValue::S(keys::deployment(id)))
        .key("sk", AttributeValue::S(keys::DEPLOYMENT_SK.into()))
        .send()
        .await
        .unwrap();
    let raw: Deployment =
        serde_json::from_str(summary.item().unwrap()["state"].as_s().unwrap()).unwrap();
    assert_eq!(
        (raw.counts.succeeded, raw.counts.in_progress),
        (0, hosts as u32),
        "the summary holds only what decisions did"
    );
    let records = store.targets(id).await.unwrap();
    assert_eq!(records.len(), hosts);
    assert!(
        records
            .iter()
            .all(|t| t.events.iter().all(|e| e.status == EventStatus::Succeeded))
    );
}

/// A deployment running across the upgrade keeps the effects its summary's `outbox`
/// map held: they load as entries, and are rewritten and cleared in the map.
#[tokio::test(flavor = "multi_thread")]
async fn outbox_entries_in_an_older_summary_map_are_carried_out() {
    let moto = Moto::start().unwrap();
    let store = store(&moto).await;
    let state = deployment("d-LEGACY001", 2);
    store
        .create_deployment("app", "group", &spec(), &state, &ordered(2), &[], false, 0)
        .await
        .unwrap();
    let pending = OutboxEntry::new(vec![gantry_core::deployment::Effect::ReleaseLock], 5);
    let client = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    client
        .update_item()
        .table_name("gantry-test")
        .key("pk", AttributeValue::S("DEPLOYMENT#d-LEGACY001".into()))
        .key("sk", AttributeValue::S("STATE".into()))
        .update_expression("SET outbox = :map")
        .expression_attribute_values(
            ":map",
            AttributeValue::M(
                [(
                    "3".to_owned(),
                    AttributeValue::S(serde_json::to_string(&pending).unwrap()),
                )]
                .into(),
            ),
        )
        .send()
        .await
        .unwrap();
    let key = format!("{}3", keys::SUMMARY_MAP_ENTRY);
    let loaded = store.load_deployment::<Spec>("d-LEGACY001").await.unwrap();
    assert_eq!(
        loaded.outbox.get(&key),
        Some(&pending),
        "{:?}",
        loaded.outbox
    );
    let failed = OutboxEntry {
        attempts: 1,
        ..pending.clone()
    };
    store
        .rewrite_outbox("d-LEGACY001", &key, &failed)
        .await
        .unwrap();
    let loaded = store.load_deployment::<Spec>("d-LEGACY001").await.unwrap();
    assert_eq!(loaded.outbox.get(&key), Some(&failed));
    store.clear_outbox("d-LEGACY001", &key).await.unwrap();
    let loaded = store.load_deployment::<Spec>("d-LEGACY001").await.unwrap();
    assert!(loaded.outbox.is_empty(), "{:?}", loaded.outbox);
}

/// DynamoDB cancels a transaction that meets another on an item, which moto never does:
/// a host's end whose tally meets another writer's is written again, once, and a
/// transaction that keeps meeting others is a conflict for the caller to retry.
#[tokio::test(flavor = "multi_thread")]
async fn a_tally_that_meets_another_writer_is_written_again_once() {
    let moto = Moto::start().unwrap();
    let store = store(&moto).await;
    let id = "d-TALLY0001";
    store
        .create_deployment(
            "app",
            "group",
            &spec(),
            &deployment(id, 2),
            &ordered(2),
            &[],
            false,
            0,
        )
        .await
        .unwrap();
    let started = transition::apply::<Spec>(&store, id, &[Input::Start { now: 1 }], 1, 10)
        .await
        .unwrap();
    let records = ordered(2)
        .into_iter()
        .zip(0..)
        .map(|(target, index)| started.record.state.dispatched_target(target, index, 1))
        .collect();
    store.create_targets(id, records).await.unwrap();
    let deliver = |host: &str| -> Vec<Input> {
        reports(id, host)
            .into_iter()
            .map(|report| Input::Report {
                sender: Some(format!("AROAHOSTROLE:{}", report.instance_id)),
                report,
                now: 200,
            })
            .collect()
    };

    moto.conflict_next(keys::TALLY_PREFIX, 2).unwrap();
    let first = transition::apply::<Spec>(&store, id, &deliver("i-000"), 200, 10)
        .await
        .expect("written on the third attempt");
    assert_eq!(first.record.tallied.succeeded, 1);
    assert!(first.recount, "a tally-only write asks for a recount");
    let stored = store.load_deployment::<Spec>(id).await.unwrap();
    assert_eq!(stored.tallied.succeeded, 1, "added once");
    assert_eq!(stored.state.counts.in_progress, 1);

    moto.conflict_next(keys::TALLY_PREFIX, 5).unwrap();
    let lost = transition::apply::<Spec>(&store, id, &deliver("i-001"), 200, 2).await;
    assert!(matches!(lost, Err(StoreError::Conflict(_))), "{lost:?}");
    moto.clear_faults().unwrap();
    let second = transition::apply::<Spec>(&store, id, &deliver("i-001"), 200, 10)
        .await
        .unwrap();
    // It read the first host's end in the tallies: it decides, and needs no recount.
    assert!(!second.recount);
    assert_eq!(second.record.state.status, DeploymentStatus::Succeeded);
    assert_eq!(second.record.state.counts.succeeded, 2);
    let again = transition::recount::<Spec, _>(&store, id, 200, 10, &transition::NoPrecheck)
        .await
        .unwrap();
    assert!(again.is_none(), "nothing left to decide: {again:?}");
}

/// One decision per summary version: the first claim holds until a later version is
/// claimed or it expires (its holder died); a deployment with a claim loads as before.
#[tokio::test(flavor = "multi_thread")]
async fn a_decision_is_claimed_once_per_version_until_the_claim_expires() {
    let moto = Moto::start().unwrap();
    let store = store(&moto).await;
    let id = "d-CLAIM0001";
    store
        .create_deployment(
            "app",
            "group",
            &spec(),
            &deployment(id, 1),
            &ordered(1),
            &[],
            false,
            0,
        )
        .await
        .unwrap();
    let now = 1_000_000;
    assert!(store.claim_decision(id, 3, now).await.unwrap());
    assert!(
        !store.claim_decision(id, 3, now + 1).await.unwrap(),
        "taken"
    );
    assert!(
        !store.claim_decision(id, 2, now + 1).await.unwrap(),
        "an older version"
    );
    assert!(
        store.claim_decision(id, 4, now + 2).await.unwrap(),
        "the next version"
    );
    let expired = now + 2 + gantry_functions::store::DECISION_CLAIM_EXPIRES_MS + 1;
    assert!(!store.claim_decision(id, 4, expired - 2).await.unwrap());
    assert!(
        store.claim_decision(id, 4, expired).await.unwrap(),
        "its holder died"
    );
    let loaded = store.load_deployment::<Spec>(id).await.unwrap();
    assert!(loaded.outbox.is_empty() && loaded.tallied.is_empty());
}

/// A plan page is written once and never changed, so a process reads each page once: a
/// store that wrote or read it answers from what it kept, even with the item gone, and a
/// fresh store reads the table (and says when the page is missing).
#[tokio::test]
async fn a_process_reads_each_plan_page_once() {
    let moto = Moto::start().unwrap();
    let writer = store(&moto).await;
    let id = "d-PAGES0001";
    let hosts = 3;
    writer
        .create_deployment(
            "app",
            "group",
            &spec(),
            &deployment(id, hosts),
            &ordered(hosts),
            &[],
            false,
            0,
        )
        .await
        .unwrap();
    let config = moto.sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let reader = DynamoStore::new(client.clone(), "gantry-test");
    assert_eq!(
        reader.plan_slice(id, 1, 2).await.unwrap(),
        ordered(hosts)[1..]
    );

    client
        .delete_item()
        .table_name("gantry-test")
        .key("pk", AttributeValue::S(keys::deployment(id)))
        .key("sk", AttributeValue::S(keys::plan_page(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        writer.plan_slice(id, 0, 1).await.unwrap(),
        ordered(hosts)[..1]
    );
    assert_eq!(reader.plan_slice(id, 0, 3).await.unwrap(), ordered(hosts));
    let fresh = DynamoStore::new(client, "gantry-test");
    assert!(matches!(
        fresh.plan_slice(id, 0, 1).await,
        Err(StoreError::Corrupt { .. })
    ));
}
