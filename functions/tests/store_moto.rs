//! The DynamoDB store against a real moto server: conditional writes, group locks, and
//! concurrent appliers that must not count a report twice.

use gantry_core::config::{ALL_AT_ONCE, DeploymentConfig};
use gantry_core::deployment::{
    Deadlines, Deployment, DeploymentStatus, Effect, Input, NotificationEvent,
};
use gantry_core::lifecycle;
use gantry_core::planner::{self, Standing, Target};
use gantry_core::wire::{Diagnostics, ErrorCode, EventStatus, Report, SCHEMA_VERSION};
use gantry_functions::store::{self, DynamoStore, StoreError};
use gantry_tests::moto::Moto;
use std::sync::Arc;

async fn store(moto: &Moto) -> DynamoStore {
    let config = moto.sdk_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), "gantry-test");
    store.create_table().await.expect("table");
    store
}

fn deployment(id: &str, hosts: usize) -> Deployment {
    let targets: Vec<Target> = (0..hosts)
        .map(|index| Target {
            instance_id: format!("i-{index:03}"),
            zone: Some(format!("az-{}", index % 2)),
            standing: Standing::Old,
        })
        .collect();
    let plan = DeploymentConfig::predefined(ALL_AT_ONCE)
        .unwrap()
        .health_plan(hosts as u32)
        .unwrap();
    Deployment::new(
        id.to_owned(),
        plan,
        None,
        Deadlines::default(),
        planner::order(targets),
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
    store
        .create_deployment("app", "group", &spec(), &deployment, &[], false, 0)
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_deployment("app", "group", &spec(), &deployment, &[], false, 0)
            .await,
        Err(StoreError::Conflict(_))
    ));

    let loaded = store.load_deployment::<Spec>("d-STORE0001").await.unwrap();
    assert_eq!(loaded.version, 1);
    assert_eq!(loaded.state, deployment);
    assert_eq!(loaded.spec, spec());

    let mut changed = loaded.state.clone();
    let effects = changed.apply(Input::Start { now: 1 }).unwrap();
    assert_eq!(
        store
            .save_deployment(&changed, 1, &effects, false, 1)
            .await
            .unwrap(),
        2
    );
    let stale = store.save_deployment(&changed, 1, &effects, false, 1).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let reloaded = store.load_deployment::<Spec>("d-STORE0001").await.unwrap();
    assert_eq!(reloaded.state.status, DeploymentStatus::InProgress);
    assert_eq!(
        reloaded.outbox[&2].effects, effects,
        "effects are written with the state"
    );
    store.clear_outbox("d-STORE0001", 2).await.unwrap();
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
        .create_deployment("app", "g-1", &spec(), &first, &[], true, 0)
        .await
        .unwrap();
    let refused = store
        .create_deployment("app", "g-1", &spec(), &second, &[], true, 0)
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
        .create_deployment("app", "g-1", &spec(), &second, &[], true, 0)
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
            &[],
            false,
            0,
        )
        .await
        .unwrap();
    let (started, _) = store::apply::<Spec>(&store, id, &[Input::Start { now: 1 }], 1, 10)
        .await
        .unwrap();
    let dispatched: Vec<String> = started
        .effects
        .iter()
        .flat_map(|effect| match effect {
            Effect::Dispatch { instance_ids } => instance_ids.clone(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(dispatched.len(), hosts);

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
                let (applied, refused) = store::apply::<Spec>(
                    &store,
                    id,
                    &[Input::Report { report, now: 200 }],
                    200,
                    50,
                )
                .await
                .expect("apply");
                assert!(refused.is_empty());
                effects.extend(applied.effects);
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
}
