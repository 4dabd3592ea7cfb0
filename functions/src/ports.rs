//! The ports the engine and CreateDeployment reach their records and hosts through: a
//! deployment's records ([`DeploymentLog`]), its group's ([`GroupLog`]), the hosts'
//! queues ([`HostQueues`]) and the trigger topics ([`Topics`]), gathered as [`Ports`].
//!
//! In Lambda they are DynamoDB, SQS and SNS ([`crate::control::ControlPlane`]). In unit
//! tests they are the in-memory ones of `memory`, which keep DynamoDB's conditions
//! (a version that moved on is a conflict; a lock held by another deployment is one), so
//! that the engine and CreateDeployment are tested in milliseconds without moto. moto
//! keeps the tests of the adapters themselves, and the end-to-end ones.

use crate::adapters::{CommandQueues, Notifier, PublishError};
use crate::control::{ControlPlane, Settings};
use crate::error::ApiError;
use crate::model::LastDeploymentInfo;
use crate::store::{
    DeploymentRecord, DynamoStore, InstanceHealth, OutboxEntry, StoreError, Versioned,
};
use gantry_core::deployment::{Deployment, Effect, Finished, Millis, TargetState};
use gantry_core::planner::Target;
use gantry_core::wire::{Command, RevisionLocation};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::future::Future;

#[cfg(test)]
pub mod memory;

/// A deployment's records: its summary with the outbox of effects not yet carried out,
/// its ordered plan, and its hosts' records. Every write is conditional, as in
/// [`DynamoStore`], whose methods these are.
pub trait DeploymentLog: Sync {
    fn load_deployment<S: DeserializeOwned + Send>(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<DeploymentRecord<S>, StoreError>> + Send;

    /// A new deployment, its plan and its start effects, taking the group's lock when
    /// `take_lock`: a conflict when the deployment exists or another holds the lock.
    #[allow(clippy::too_many_arguments)]
    fn create_deployment<S: Serialize + Sync>(
        &self,
        application: &str,
        group: &str,
        spec: &S,
        state: &Deployment,
        ordered: &[Target],
        effects: &[Effect],
        take_lock: bool,
        now: Millis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A provisioning deployment planned at last, if still at `version` (a conflict
    /// otherwise). Returns its new version.
    #[allow(clippy::too_many_arguments)]
    fn replace_provisioning<S: Serialize + Sync>(
        &self,
        application: &str,
        group: &str,
        spec: &S,
        state: &Deployment,
        ordered: &[Target],
        effects: &[Effect],
        version: u64,
        now: Millis,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The summary (when `summary_changed`) and host records (each at the version read)
    /// written at once, with the hosts' ends they make added to a tally and `effects`
    /// as a new outbox entry. Returns the summary's version and the entry's key.
    fn save_changes<S: Sync>(
        &self,
        record: &DeploymentRecord<S>,
        summary_changed: bool,
        effects: &[Effect],
        targets: &[(&TargetState, u64)],
        finished: &Finished,
        now: Millis,
    ) -> impl Future<Output = Result<(u64, Option<String>), StoreError>> + Send;

    /// Claims the decision on summary `version` for this invocation: false when another
    /// holds it (a claim expires after a minute, in case its holder died).
    fn claim_decision(
        &self,
        id: &str,
        version: u64,
        now: Millis,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn overdue_targets(
        &self,
        id: &str,
        now: Millis,
        limit: i32,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    fn load_targets(
        &self,
        id: &str,
        instance_ids: &[String],
    ) -> impl Future<Output = Result<BTreeMap<String, Versioned<TargetState>>, StoreError>> + Send;

    fn plan_slice(
        &self,
        id: &str,
        first: u32,
        count: u32,
    ) -> impl Future<Output = Result<Vec<Target>, StoreError>> + Send;

    /// Host records created; one that exists already is kept as it is.
    fn create_targets(
        &self,
        id: &str,
        records: Vec<TargetState>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn deploying_hosts(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    fn rewrite_outbox(
        &self,
        id: &str,
        entry: &str,
        pending: &OutboxEntry,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn clear_outbox(
        &self,
        id: &str,
        entry: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn record_failed_effect(
        &self,
        id: &str,
        key: &str,
        effect: &str,
        reason: &str,
        now: Millis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// What a deployment writes on its group: its hosts' health, how it ended, its lock.
pub trait GroupLog: Sync {
    fn record_health(
        &self,
        application: &str,
        group: &str,
        instance_id: &str,
        health: &InstanceHealth,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn group_health(
        &self,
        application: &str,
        group: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, InstanceHealth>, StoreError>> + Send;

    fn record_success(
        &self,
        application: &str,
        group: &str,
        last: &LastDeploymentInfo,
        revision: &RevisionLocation,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn record_attempt(
        &self,
        application: &str,
        group: &str,
        last: &LastDeploymentInfo,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records that a deployment created at `now` uses `revision` (registered to
    /// `application`): its first and last use times.
    fn record_revision_use(
        &self,
        application: &str,
        revision: &RevisionLocation,
        now: Millis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Releases the lock if `deployment_id` holds it; returns whether it did.
    fn unlock_group(
        &self,
        application: &str,
        group: &str,
        deployment_id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The hosts' command queues, and the control plane's own queues by URL.
pub trait HostQueues: Sync {
    /// Each command to its host's queue.
    fn send_all(&self, commands: Vec<Command>)
    -> impl Future<Output = Result<(), ApiError>> + Send;

    /// Each `(instance id, body)` to that host's queue.
    fn send_to_hosts(
        &self,
        messages: Vec<(String, String)>,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    fn send_to_queue(
        &self,
        url: &str,
        body: String,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    fn send_batch(
        &self,
        url: &str,
        bodies: &[String],
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}

/// The trigger topics a group's notifications go to.
pub trait Topics: Sync {
    fn publish(
        &self,
        topic_arn: &str,
        subject: &str,
        message: &str,
    ) -> impl Future<Output = Result<(), PublishError>> + Send;
}

/// The ports together, with the settings they are used under.
pub trait Ports: Sync {
    type Log: DeploymentLog + GroupLog;
    type Queues: HostQueues;
    type Topics: Topics;
    fn log(&self) -> &Self::Log;
    fn queues(&self) -> &Self::Queues;
    fn topics(&self) -> &Self::Topics;
    fn settings(&self) -> &Settings;
}

impl Ports for ControlPlane {
    type Log = DynamoStore;
    type Queues = CommandQueues;
    type Topics = Notifier;

    fn log(&self) -> &DynamoStore {
        &self.store
    }

    fn queues(&self) -> &CommandQueues {
        &self.queues
    }

    fn topics(&self) -> &Notifier {
        &self.notifier
    }

    fn settings(&self) -> &Settings {
        &self.settings
    }
}

impl DeploymentLog for DynamoStore {
    async fn load_deployment<S: DeserializeOwned + Send>(
        &self,
        id: &str,
    ) -> Result<DeploymentRecord<S>, StoreError> {
        DynamoStore::load_deployment(self, id).await
    }

    async fn create_deployment<S: Serialize + Sync>(
        &self,
        application: &str,
        group: &str,
        spec: &S,
        state: &Deployment,
        ordered: &[Target],
        effects: &[Effect],
        take_lock: bool,
        now: Millis,
    ) -> Result<(), StoreError> {
        DynamoStore::create_deployment(
            self,
            application,
            group,
            spec,
            state,
            ordered,
            effects,
            take_lock,
            now,
        )
        .await
    }

    async fn replace_provisioning<S: Serialize + Sync>(
        &self,
        application: &str,
        group: &str,
        spec: &S,
        state: &Deployment,
        ordered: &[Target],
        effects: &[Effect],
        version: u64,
        now: Millis,
    ) -> Result<u64, StoreError> {
        DynamoStore::replace_provisioning(
            self,
            application,
            group,
            spec,
            state,
            ordered,
            effects,
            version,
            now,
        )
        .await
    }

    async fn save_changes<S: Sync>(
        &self,
        record: &DeploymentRecord<S>,
        summary_changed: bool,
        effects: &[Effect],
        targets: &[(&TargetState, u64)],
        finished: &Finished,
        now: Millis,
    ) -> Result<(u64, Option<String>), StoreError> {
        DynamoStore::save_changes(
            self,
            record,
            summary_changed,
            effects,
            targets,
            finished,
            now,
        )
        .await
    }

    async fn claim_decision(
        &self,
        id: &str,
        version: u64,
        now: Millis,
    ) -> Result<bool, StoreError> {
        DynamoStore::claim_decision(self, id, version, now).await
    }

    async fn overdue_targets(
        &self,
        id: &str,
        now: Millis,
        limit: i32,
    ) -> Result<Vec<String>, StoreError> {
        DynamoStore::overdue_targets(self, id, now, limit).await
    }

    async fn load_targets(
        &self,
        id: &str,
        instance_ids: &[String],
    ) -> Result<BTreeMap<String, Versioned<TargetState>>, StoreError> {
        DynamoStore::load_targets(self, id, instance_ids).await
    }

    async fn plan_slice(
        &self,
        id: &str,
        first: u32,
        count: u32,
    ) -> Result<Vec<Target>, StoreError> {
        DynamoStore::plan_slice(self, id, first, count).await
    }

    async fn create_targets(&self, id: &str, records: Vec<TargetState>) -> Result<(), StoreError> {
        DynamoStore::create_targets(self, id, records).await
    }

    async fn deploying_hosts(&self, id: &str) -> Result<Vec<String>, StoreError> {
        DynamoStore::deploying_hosts(self, id).await
    }

    async fn rewrite_outbox(
        &self,
        id: &str,
        entry: &str,
        pending: &OutboxEntry,
    ) -> Result<(), StoreError> {
        DynamoStore::rewrite_outbox(self, id, entry, pending).await
    }

    async fn clear_outbox(&self, id: &str, entry: &str) -> Result<(), StoreError> {
        DynamoStore::clear_outbox(self, id, entry).await
    }

    async fn record_failed_effect(
        &self,
        id: &str,
        key: &str,
        effect: &str,
        reason: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        DynamoStore::record_failed_effect(self, id, key, effect, reason, now).await
    }
}

impl GroupLog for DynamoStore {
    async fn record_health(
        &self,
        application: &str,
        group: &str,
        instance_id: &str,
        health: &InstanceHealth,
    ) -> Result<(), StoreError> {
        DynamoStore::record_health(self, application, group, instance_id, health).await
    }

    async fn group_health(
        &self,
        application: &str,
        group: &str,
    ) -> Result<BTreeMap<String, InstanceHealth>, StoreError> {
        DynamoStore::group_health(self, application, group).await
    }

    async fn record_success(
        &self,
        application: &str,
        group: &str,
        last: &LastDeploymentInfo,
        revision: &RevisionLocation,
    ) -> Result<(), StoreError> {
        DynamoStore::record_success(self, application, group, last, revision).await
    }

    async fn record_attempt(
        &self,
        application: &str,
        group: &str,
        last: &LastDeploymentInfo,
    ) -> Result<(), StoreError> {
        DynamoStore::record_attempt(self, application, group, last).await
    }

    async fn record_revision_use(
        &self,
        application: &str,
        revision: &RevisionLocation,
        now: Millis,
    ) -> Result<(), StoreError> {
        // False when a later use is recorded already: nothing to do.
        let key = crate::model::revision_key(revision);
        DynamoStore::record_revision_use(self, application, &key, now)
            .await
            .map(drop)
    }

    async fn unlock_group(
        &self,
        application: &str,
        group: &str,
        deployment_id: &str,
    ) -> Result<bool, StoreError> {
        DynamoStore::unlock_group(self, application, group, deployment_id).await
    }
}

impl HostQueues for CommandQueues {
    async fn send_all(&self, commands: Vec<Command>) -> Result<(), ApiError> {
        CommandQueues::send_all(self, commands).await
    }

    async fn send_to_hosts(&self, messages: Vec<(String, String)>) -> Result<(), ApiError> {
        CommandQueues::send_to_hosts(self, messages).await
    }

    async fn send_to_queue(&self, url: &str, body: String) -> Result<(), ApiError> {
        CommandQueues::send_to_queue(self, url, body).await
    }

    async fn send_batch(&self, url: &str, bodies: &[String]) -> Result<(), ApiError> {
        CommandQueues::send_batch(self, url, bodies).await
    }
}

impl Topics for Notifier {
    async fn publish(
        &self,
        topic_arn: &str,
        subject: &str,
        message: &str,
    ) -> Result<(), PublishError> {
        Notifier::publish(self, topic_arn, subject, message).await
    }
}
