//! CreateDeployment on in-memory ports: what it refuses (before writing anything), what
//! it stores, and the lock it takes.

use super::*;
use crate::deploy::memory::{APPLICATION, GROUP, MemoryWorld, host, hosts, input};
use gantry_core::deployment::{DeploymentStatus, TargetStatus};
use serde_json::json;

fn world(count: usize) -> MemoryWorld {
    MemoryWorld::new(json!({}), hosts(count))
}

async fn create_as_user(
    world: &MemoryWorld,
    input: CreateDeploymentInput,
) -> Result<Created, ApiError> {
    create(world, input, Creator::User, Origin::default()).await
}

/// The request was refused with `code`, naming `field`, and nothing was stored.
async fn refused(world: &MemoryWorld, input: CreateDeploymentInput, code: Exception, field: &str) {
    let error = create_as_user(world, input).await.expect_err("refused");
    assert_eq!(error.code, code, "{error}");
    assert!(
        error.message.contains(field),
        "{field} not named in: {error}"
    );
    assert!(
        world.ports.log.records().deployments.is_empty(),
        "nothing is stored"
    );
    let group = world.ports.log.group(APPLICATION, GROUP).unwrap();
    assert_eq!(group.active_deployment_id, None, "the group is not locked");
}

#[tokio::test]
async fn stores_the_plan_and_its_start_and_takes_the_lock() {
    let world = world(3);
    let created = create_as_user(&world, input()).await.unwrap();
    let id = &created.record.spec.deployment_id;
    gantry_core::wire::check_deployment_id(id).unwrap();
    assert_eq!(created.record.version, 1);
    assert_eq!(created.record.state.status, DeploymentStatus::InProgress);
    assert!(
        created
            .effects
            .iter()
            .any(|effect| matches!(effect, Effect::Dispatch { first: 0, count: 1 })),
        "{:?}",
        created.effects
    );
    let records = world.ports.log.records();
    let stored = &records.deployments[id];
    assert_eq!(stored.plan.len(), 3);
    assert_eq!(
        stored.outbox.len(),
        1,
        "the start effects wait in the outbox"
    );
    assert_eq!(stored.spec["revision"]["s3Location"]["eTag"], "etag-1");
    drop(records);
    let group = world.ports.log.group(APPLICATION, GROUP).unwrap();
    assert_eq!(group.active_deployment_id.as_deref(), Some(id.as_str()));
    let attempted = group.last_attempted.expect("the attempt is recorded");
    assert_eq!(attempted.deployment_id, *id);
}

#[tokio::test]
async fn a_group_with_an_active_deployment_refuses_another() {
    let world = world(2);
    let first = create_as_user(&world, input()).await.unwrap();
    let first_id = first.record.spec.deployment_id;
    let error = create_as_user(&world, input()).await.expect_err("refused");
    assert_eq!(error.code, Exception::DeploymentLimitExceeded);
    assert!(error.message.contains(&first_id), "{error}");
    assert_eq!(world.ports.log.records().deployments.len(), 1);
    let group = world.ports.log.group(APPLICATION, GROUP).unwrap();
    assert_eq!(group.active_deployment_id, Some(first_id));
}

#[tokio::test]
async fn bad_input_is_refused_by_field_before_anything_is_written() {
    let world = world(2);
    let mut behavior = input();
    behavior.file_exists_behavior = Some("CLOBBER".into());
    refused(
        &world,
        behavior,
        Exception::InvalidFileExistsBehavior,
        "fileExistsBehavior",
    )
    .await;

    let mut no_revision = input();
    no_revision.revision = None;
    refused(&world, no_revision, Exception::RevisionRequired, "revision").await;

    let mut targets = input();
    targets.target_instances =
        Some(json!({"tagFilters": [{"Key": "color", "Value": "green", "Type": "KEY_AND_VALUE"}]}));
    refused(
        &world,
        targets,
        Exception::InvalidTargetInstances,
        "targetInstances",
    )
    .await;

    let mut config = input();
    config.deployment_config_name = Some("FastestPossible".into());
    refused(
        &world,
        config,
        Exception::DeploymentConfigDoesNotExist,
        "deploymentConfigName",
    )
    .await;

    let mut rollback = input();
    rollback.auto_rollback_configuration = Some(crate::model::AutoRollbackConfiguration {
        enabled: true,
        events: vec!["DEPLOYMENT_EXPLODED".into()],
    });
    refused(
        &world,
        rollback,
        Exception::InvalidAutoRollbackConfig,
        "DEPLOYMENT_EXPLODED",
    )
    .await;

    let mut group = input();
    group.deployment_group_name = "nope".into();
    refused(
        &world,
        group,
        Exception::DeploymentGroupDoesNotExist,
        "deploymentGroupName",
    )
    .await;
}

#[tokio::test]
async fn hosts_registered_without_an_identity_are_refused_by_name() {
    let mut anonymous = host("lab-7", None);
    anonymous.sender = gantry_core::identity::Sender::Principal(String::new());
    let world = MemoryWorld::new(json!({}), vec![host("lab-1", None), anonymous]);
    refused(&world, input(), Exception::IamArnRequired, "lab-7").await;
}

#[tokio::test]
async fn stopped_instances_are_recorded_failed_from_the_start() {
    let mut stopped = host("host-stopped", None);
    stopped.stopped = true;
    let world = MemoryWorld::new(
        json!({"deploymentConfigName": "CodeDeployDefault.AllAtOnce"}),
        vec![host("host-up", None), stopped],
    );
    let created = create_as_user(&world, input()).await.unwrap();
    let records = world.ports.log.records();
    let targets = &records.deployments[&created.record.spec.deployment_id].targets;
    assert_eq!(
        targets.len(),
        1,
        "only the stopped one has a record before dispatch"
    );
    assert_eq!(targets["host-stopped"].value.status, TargetStatus::Failed);
}

#[tokio::test]
async fn hosts_in_many_zones_deploy_under_a_configuration_without_zones() {
    let hosts = (0..40)
        .map(|index| {
            host(
                &format!("host-{index:02}"),
                Some(&format!("zone-{index:02}")),
            )
        })
        .collect();
    let world = MemoryWorld::new(json!({}), hosts);
    let error = create_as_user(&world, input()).await;
    // Only zonal configurations stripe by zone; a predefined one deploys over any number.
    assert!(error.is_ok(), "{:?}", error.err());
}

#[tokio::test]
async fn an_ec2_instance_without_a_profile_fails_at_the_start_naming_why() {
    // Left unbound by gather: no instance profile, so no role its reports must come from.
    let mut unbound = host("i-0aaaaaaaaaaaaaaaa", None);
    unbound.sender = gantry_core::identity::Sender::InstanceRole;
    let mut bound = host("i-0bbbbbbbbbbbbbbbb", None);
    bound.sender = gantry_core::identity::Sender::InstanceRoleOf("AROAWEBHOSTS".into());
    let world = MemoryWorld::new(
        json!({"deploymentConfigName": "CodeDeployDefault.AllAtOnce"}),
        vec![unbound, bound],
    );
    let created = create_as_user(&world, input()).await.unwrap();
    assert!(
        created
            .effects
            .iter()
            .any(|effect| matches!(effect, Effect::Dispatch { first: 0, count: 1 })),
        "only the bound instance is sent its command: {:?}",
        created.effects
    );
    let records = world.ports.log.records();
    let targets = &records.deployments[&created.record.spec.deployment_id].targets;
    let failed = &targets["i-0aaaaaaaaaaaaaaaa"].value;
    assert_eq!(failed.status, TargetStatus::Failed);
    let message = &failed.events[0].diagnostics.as_ref().unwrap().message;
    assert!(message.contains("no instance profile"), "{message}");
}
