//! In-memory ports for unit tests: the records in maps behind a mutex, with DynamoDB's
//! conditions (a summary or host record written at a version that moved on is a
//! conflict, a group's lock is taken only when free, outbox entries and host records
//! are created once), messages and notifications kept in lists to be read back.

use super::{DeploymentLog, GroupLog, HostQueues, Ports, Topics};
use crate::adapters::PublishError;
use crate::control::Settings;
use crate::error::ApiError;
use crate::model::{DeploymentGroupSettings, LastDeploymentInfo, RollbackInfo};
use crate::store::{
    DECISION_CLAIM_EXPIRES_MS, DeploymentRecord, FailedEffect, GroupRecord, InstanceHealth,
    OutboxEntry, StoreError, Versioned, dispatches, keys, wakeup,
};
use gantry_core::deployment::{Deployment, Effect, Finished, Millis, TargetState, TargetStatus};
use gantry_core::planner::Target;
use gantry_core::wire::{Command, RevisionLocation};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

/// One deployment's records.
#[derive(Debug, Clone)]
pub struct StoredDeployment {
    pub spec: serde_json::Value,
    /// The summary as stored: without `tallied`.
    pub state: Deployment,
    pub version: u64,
    /// Hosts' ends counted apart from the summary (DynamoDB spreads them over shards).
    pub tallied: Finished,
    pub outbox: BTreeMap<String, OutboxEntry>,
    pub wakeup_at: Option<Millis>,
    pub plan: Vec<Target>,
    pub targets: BTreeMap<String, Versioned<TargetState>>,
    pub failed_effects: BTreeMap<String, FailedEffect>,
    /// The summary version whose decision is claimed, and when.
    pub decision_claim: Option<(u64, Millis)>,
}

#[derive(Debug, Default)]
pub struct Records {
    pub deployments: BTreeMap<String, StoredDeployment>,
    /// Groups by (application, group).
    pub groups: BTreeMap<(String, String), GroupRecord<DeploymentGroupSettings>>,
    pub health: BTreeMap<(String, String), BTreeMap<String, InstanceHealth>>,
    /// Revisions' (first, last) use by (application, revision key).
    pub revision_uses: BTreeMap<(String, String), (Millis, Millis)>,
    /// Summary writes refused because the summary had moved on (lost races).
    pub summary_conflicts: u64,
    /// Decisions left to the invocation that claimed them first.
    pub claims_lost: u64,
    /// Writes still to be cancelled as DynamoDB cancels a transaction that meets another
    /// on an item (`TransactionConflict`): nothing written, no version moved.
    pub transaction_conflicts: u32,
    /// The most hosts any write left running in one deployment.
    pub most_in_progress: u32,
}

/// The deployment and group records.
#[derive(Debug, Default)]
pub struct MemoryLog {
    records: Mutex<Records>,
}

fn conflict(message: impl Into<String>) -> StoreError {
    StoreError::Conflict(message.into())
}

fn group_key(application: &str, group: &str) -> (String, String) {
    (application.to_owned(), group.to_owned())
}

impl MemoryLog {
    /// The records, to arrange a test or read its outcome.
    pub fn records(&self) -> MutexGuard<'_, Records> {
        self.records
            .lock()
            .expect("no test thread panicked holding it")
    }

    /// A group, as CreateDeploymentGroup stores it.
    pub fn add_group(&self, application: &str, settings: DeploymentGroupSettings) {
        let key = group_key(application, &settings.deployment_group_name);
        self.records().groups.insert(
            key,
            GroupRecord {
                settings: Versioned {
                    value: settings,
                    version: 1,
                },
                active_deployment_id: None,
                last_successful: None,
                last_attempted: None,
                target_revision: None,
            },
        );
    }

    pub fn group(
        &self,
        application: &str,
        group: &str,
    ) -> Option<GroupRecord<DeploymentGroupSettings>> {
        self.records()
            .groups
            .get(&group_key(application, group))
            .cloned()
    }

    fn with_deployment<T>(
        &self,
        id: &str,
        change: impl FnOnce(&mut StoredDeployment) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut records = self.records();
        let stored = records
            .deployments
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(format!("deployment {id}")))?;
        change(stored)
    }

    #[allow(clippy::too_many_arguments)]
    fn write_deployment<S: Serialize>(
        &self,
        application: &str,
        group: &str,
        spec: &S,
        state: &Deployment,
        ordered: &[Target],
        effects: &[Effect],
        take_lock: bool,
        replacing: Option<u64>,
        now: Millis,
    ) -> Result<u64, StoreError> {
        let id = &state.deployment_id;
        let spec =
            serde_json::to_value(spec).map_err(|error| StoreError::Aws(error.to_string()))?;
        if spec.to_string().len() > crate::store::MAX_SPEC_BYTES {
            return Err(StoreError::TooLarge(format!("deployment {id}'s spec")));
        }
        let mut records = self.records();
        match (replacing, records.deployments.get(id)) {
            (None, Some(_)) => return Err(conflict(format!("deployment {id} exists"))),
            (Some(expected), Some(stored)) if stored.version != expected => {
                return Err(conflict(format!("deployment {id} changed")));
            }
            (Some(_), None) => return Err(conflict(format!("deployment {id} is gone"))),
            _ => {}
        }
        if take_lock {
            let group = records
                .groups
                .get_mut(&group_key(application, group))
                .ok_or_else(|| conflict(format!("deployment group {group} is gone")))?;
            match &group.active_deployment_id {
                Some(active) if active != id => {
                    return Err(conflict(format!(
                        "deployment group {} already has an active deployment",
                        group.settings.value.deployment_group_name
                    )));
                }
                _ => group.active_deployment_id = Some(id.clone()),
            }
        }
        let version = replacing.map_or(1, |version| version + 1);
        let mut outbox = BTreeMap::new();
        if !effects.is_empty() {
            outbox.insert(
                keys::summary_entry(version),
                OutboxEntry::new(effects.to_vec(), now),
            );
        }
        let stored = StoredDeployment {
            spec,
            state: state.clone(),
            version,
            tallied: Finished::default(),
            outbox,
            wakeup_at: wakeup(state, None, !effects.is_empty(), dispatches(effects), now),
            plan: ordered.to_vec(),
            targets: BTreeMap::new(),
            failed_effects: BTreeMap::new(),
            decision_claim: None,
        };
        records.deployments.insert(id.clone(), stored);
        Ok(version)
    }
}

impl DeploymentLog for MemoryLog {
    async fn load_deployment<S: DeserializeOwned + Send>(
        &self,
        id: &str,
    ) -> Result<DeploymentRecord<S>, StoreError> {
        // A read is a network round trip in DynamoDB: concurrent tasks get their turn
        // here, so that their writes race as they do there.
        tokio::task::yield_now().await;
        self.with_deployment(id, |stored| {
            Ok(DeploymentRecord {
                spec: serde_json::from_value(stored.spec.clone()).map_err(|error| {
                    StoreError::Corrupt {
                        what: format!("deployment {id}"),
                        message: error.to_string(),
                    }
                })?,
                state: stored.tallied.compose(&stored.state),
                tallied: stored.tallied,
                version: stored.version,
                outbox: stored.outbox.clone(),
                rollback_info: RollbackInfo::default(),
                outdated_updates: Vec::new(),
                wakeup_at: stored.wakeup_at,
            })
        })
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
        self.write_deployment(
            application,
            group,
            spec,
            state,
            ordered,
            effects,
            take_lock,
            None,
            now,
        )
        .map(|_| ())
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
        self.write_deployment(
            application,
            group,
            spec,
            state,
            ordered,
            effects,
            true,
            Some(version),
            now,
        )
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
        let id = &record.state.deployment_id;
        let mut records = self.records();
        let Records {
            deployments,
            summary_conflicts,
            most_in_progress,
            transaction_conflicts,
            ..
        } = &mut *records;
        let stored = deployments
            .get_mut(id.as_str())
            .ok_or_else(|| StoreError::NotFound(format!("deployment {id}")))?;
        if *transaction_conflicts > 0 {
            *transaction_conflicts -= 1;
            return Err(conflict(format!(
                "deployment {id}: another transaction met this one (TransactionConflict)"
            )));
        }
        {
            let expected = record.version;
            // Every condition first, as one transaction: all of it or nothing.
            if summary_changed && stored.version != expected {
                *summary_conflicts += 1;
                return Err(conflict(format!(
                    "deployment {id} changed since version {expected}"
                )));
            }
            for (target, version) in targets {
                let instance_id = &target.target.instance_id;
                if stored.targets.get(instance_id).map(|host| host.version) != Some(*version) {
                    return Err(conflict(format!(
                        "host {instance_id} of deployment {id} changed since version {version}"
                    )));
                }
            }
            let mut next = expected;
            let mut entry = None;
            if summary_changed {
                next = expected + 1;
                if !effects.is_empty() {
                    entry = Some(keys::summary_entry(next));
                }
                let pending = !record.outbox.is_empty() || !effects.is_empty();
                stored.wakeup_at = wakeup(
                    &record.state,
                    record.wakeup_at,
                    pending,
                    dispatches(effects),
                    now,
                );
                stored.state = (record.tallied + *finished).decompose(&record.state);
                stored.version = next;
            } else if let (false, Some((host, version))) = (effects.is_empty(), targets.first()) {
                entry = Some(keys::hosts_entry(
                    expected,
                    &host.target.instance_id,
                    version + 1,
                ));
            }
            if let Some(key) = &entry {
                if stored.outbox.contains_key(key) {
                    return Err(conflict(format!("outbox entry {key} exists")));
                }
                stored
                    .outbox
                    .insert(key.clone(), OutboxEntry::new(effects.to_vec(), now));
            }
            for (target, version) in targets {
                stored.targets.insert(
                    target.target.instance_id.clone(),
                    Versioned {
                        value: (*target).clone(),
                        version: version + 1,
                    },
                );
            }
            stored.tallied = stored.tallied + *finished;
            let running = stored.tallied.compose(&stored.state).counts.in_progress;
            *most_in_progress = (*most_in_progress).max(running);
            Ok((next, entry))
        }
    }

    async fn claim_decision(
        &self,
        id: &str,
        version: u64,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut records = self.records();
        let Records {
            deployments,
            claims_lost,
            ..
        } = &mut *records;
        let stored = deployments
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(format!("deployment {id}")))?;
        let free = stored.decision_claim.is_none_or(|(claimed, at)| {
            claimed < version || at < now.saturating_sub(DECISION_CLAIM_EXPIRES_MS)
        });
        if free {
            stored.decision_claim = Some((version, now));
        } else {
            *claims_lost += 1;
        }
        Ok(free)
    }

    async fn overdue_targets(
        &self,
        id: &str,
        now: Millis,
        limit: i32,
    ) -> Result<Vec<String>, StoreError> {
        self.with_deployment(id, |stored| {
            Ok(stored
                .targets
                .values()
                .filter(|host| host.value.status == TargetStatus::InProgress)
                .filter(|host| host.value.deadline.is_some_and(|deadline| deadline <= now))
                .map(|host| host.value.target.instance_id.clone())
                .take(limit.max(0) as usize)
                .collect())
        })
    }

    async fn load_targets(
        &self,
        id: &str,
        instance_ids: &[String],
    ) -> Result<BTreeMap<String, Versioned<TargetState>>, StoreError> {
        let wanted: BTreeSet<&String> = instance_ids.iter().collect();
        self.with_deployment(id, |stored| {
            Ok(stored
                .targets
                .iter()
                .filter(|(instance_id, _)| wanted.contains(instance_id))
                .map(|(instance_id, host)| (instance_id.clone(), host.clone()))
                .collect())
        })
    }

    async fn plan_slice(
        &self,
        id: &str,
        first: u32,
        count: u32,
    ) -> Result<Vec<Target>, StoreError> {
        self.with_deployment(id, |stored| {
            Ok(stored
                .plan
                .iter()
                .skip(first as usize)
                .take(count as usize)
                .cloned()
                .collect())
        })
    }

    async fn create_targets(&self, id: &str, records: Vec<TargetState>) -> Result<(), StoreError> {
        self.with_deployment(id, |stored| {
            for record in records {
                stored
                    .targets
                    .entry(record.target.instance_id.clone())
                    .or_insert(Versioned {
                        value: record,
                        version: 1,
                    });
            }
            Ok(())
        })
    }

    async fn deploying_hosts(&self, id: &str) -> Result<Vec<String>, StoreError> {
        self.with_deployment(id, |stored| {
            Ok(stored
                .targets
                .values()
                .filter(|host| {
                    host.value.status == TargetStatus::InProgress && host.value.deadline.is_some()
                })
                .map(|host| host.value.target.instance_id.clone())
                .collect())
        })
    }

    async fn rewrite_outbox(
        &self,
        id: &str,
        entry: &str,
        pending: &OutboxEntry,
    ) -> Result<(), StoreError> {
        self.with_deployment(id, |stored| {
            if let Some(existing) = stored.outbox.get_mut(entry) {
                *existing = pending.clone();
            }
            Ok(())
        })
    }

    async fn clear_outbox(&self, id: &str, entry: &str) -> Result<(), StoreError> {
        self.with_deployment(id, |stored| {
            stored.outbox.remove(entry);
            Ok(())
        })
    }

    async fn record_failed_effect(
        &self,
        id: &str,
        key: &str,
        effect: &str,
        reason: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        self.with_deployment(id, |stored| {
            let failed = stored
                .failed_effects
                .entry(key.to_owned())
                .or_insert(FailedEffect {
                    effect: String::new(),
                    reason: String::new(),
                    first_time: now,
                    last_time: now,
                    failures: 0,
                });
            failed.effect = effect.to_owned();
            failed.reason = reason.to_owned();
            failed.last_time = now;
            failed.failures += 1;
            Ok(())
        })
    }
}

impl MemoryLog {
    fn with_group(
        &self,
        application: &str,
        group: &str,
        change: impl FnOnce(&mut GroupRecord<DeploymentGroupSettings>),
    ) -> Result<(), StoreError> {
        let mut records = self.records();
        let found = records
            .groups
            .get_mut(&group_key(application, group))
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "deployment group {group} of application {application}"
                ))
            })?;
        change(found);
        Ok(())
    }
}

impl GroupLog for MemoryLog {
    async fn record_health(
        &self,
        application: &str,
        group: &str,
        instance_id: &str,
        health: &InstanceHealth,
    ) -> Result<(), StoreError> {
        self.records()
            .health
            .entry(group_key(application, group))
            .or_default()
            .insert(instance_id.to_owned(), health.clone());
        Ok(())
    }

    async fn group_health(
        &self,
        application: &str,
        group: &str,
    ) -> Result<BTreeMap<String, InstanceHealth>, StoreError> {
        Ok(self
            .records()
            .health
            .get(&group_key(application, group))
            .cloned()
            .unwrap_or_default())
    }

    async fn record_success(
        &self,
        application: &str,
        group: &str,
        last: &LastDeploymentInfo,
        revision: &RevisionLocation,
    ) -> Result<(), StoreError> {
        self.with_group(application, group, |found| {
            found.last_successful = Some(last.clone());
            found.target_revision = Some(revision.clone());
        })
    }

    async fn record_attempt(
        &self,
        application: &str,
        group: &str,
        last: &LastDeploymentInfo,
    ) -> Result<(), StoreError> {
        self.with_group(application, group, |found| {
            found.last_attempted = Some(last.clone())
        })
    }

    async fn record_revision_use(
        &self,
        application: &str,
        revision: &RevisionLocation,
        now: Millis,
    ) -> Result<(), StoreError> {
        let key = (application.to_owned(), crate::model::revision_key(revision));
        let mut records = self.records();
        let used = records.revision_uses.entry(key).or_insert((now, now));
        used.1 = used.1.max(now);
        Ok(())
    }

    async fn unlock_group(
        &self,
        application: &str,
        group: &str,
        deployment_id: &str,
    ) -> Result<bool, StoreError> {
        let mut records = self.records();
        let Some(found) = records.groups.get_mut(&group_key(application, group)) else {
            return Ok(false);
        };
        if found.active_deployment_id.as_deref() != Some(deployment_id) {
            return Ok(false);
        }
        found.active_deployment_id = None;
        Ok(true)
    }
}

/// Messages sent, in order: to a host's queue (`(instance id, body)`), or to a queue by
/// URL (`(url, body)`).
#[derive(Debug, Default)]
pub struct MemoryQueues {
    pub to_hosts: Mutex<Vec<(String, String)>>,
    pub to_queues: Mutex<Vec<(String, String)>>,
}

impl MemoryQueues {
    /// The commands sent, in order.
    pub fn commands(&self) -> Vec<Command> {
        self.commands_from(0).1
    }

    /// The commands among the messages sent to hosts from message `first` on, and how
    /// many messages were sent in all (where the next look starts).
    pub fn commands_from(&self, first: usize) -> (usize, Vec<Command>) {
        let sent = self.to_hosts.lock().expect("unpoisoned");
        let commands = sent
            .get(first..)
            .unwrap_or_default()
            .iter()
            .filter_map(|(_, body)| serde_json::from_str(body).ok())
            .collect();
        (sent.len(), commands)
    }
}

impl HostQueues for MemoryQueues {
    async fn send_all(&self, commands: Vec<Command>) -> Result<(), ApiError> {
        let messages = commands
            .into_iter()
            .map(|command| (command.instance_id.clone(), command.to_json()))
            .collect();
        self.send_to_hosts(messages).await
    }

    async fn send_to_hosts(&self, messages: Vec<(String, String)>) -> Result<(), ApiError> {
        self.to_hosts.lock().expect("unpoisoned").extend(messages);
        Ok(())
    }

    async fn send_to_queue(&self, url: &str, body: String) -> Result<(), ApiError> {
        self.to_queues
            .lock()
            .expect("unpoisoned")
            .push((url.to_owned(), body));
        Ok(())
    }

    async fn send_batch(&self, url: &str, bodies: &[String]) -> Result<(), ApiError> {
        let mut sent = self.to_queues.lock().expect("unpoisoned");
        sent.extend(bodies.iter().map(|body| (url.to_owned(), body.clone())));
        Ok(())
    }
}

/// Notifications published, `(topic, subject, message)`. A topic in `refused` refuses
/// for good (deleted); one in `unavailable` fails for now (throttled).
#[derive(Debug, Default)]
pub struct MemoryTopics {
    pub published: Mutex<Vec<(String, String, String)>>,
    pub refused: Mutex<BTreeSet<String>>,
    pub unavailable: Mutex<BTreeSet<String>>,
}

impl Topics for MemoryTopics {
    async fn publish(
        &self,
        topic_arn: &str,
        subject: &str,
        message: &str,
    ) -> Result<(), PublishError> {
        if self.refused.lock().expect("unpoisoned").contains(topic_arn) {
            return Err(PublishError::Refused(format!(
                "topic {topic_arn} does not exist"
            )));
        }
        if self
            .unavailable
            .lock()
            .expect("unpoisoned")
            .contains(topic_arn)
        {
            return Err(PublishError::Unavailable(ApiError::internal(format!(
                "SNS Publish: throttled on {topic_arn}"
            ))));
        }
        self.published.lock().expect("unpoisoned").push((
            topic_arn.to_owned(),
            subject.to_owned(),
            message.to_owned(),
        ));
        Ok(())
    }
}

/// The in-memory ports together, under default settings.
pub struct MemoryPorts {
    pub log: MemoryLog,
    pub queues: MemoryQueues,
    pub topics: MemoryTopics,
    pub settings: Settings,
}

impl Default for MemoryPorts {
    fn default() -> Self {
        Self {
            log: MemoryLog::default(),
            queues: MemoryQueues::default(),
            topics: MemoryTopics::default(),
            settings: Settings::from_env().expect("the defaults apply"),
        }
    }
}

impl Ports for MemoryPorts {
    type Log = MemoryLog;
    type Queues = MemoryQueues;
    type Topics = MemoryTopics;

    fn log(&self) -> &MemoryLog {
        &self.log
    }

    fn queues(&self) -> &MemoryQueues {
        &self.queues
    }

    fn topics(&self) -> &MemoryTopics {
        &self.topics
    }

    fn settings(&self) -> &Settings {
        &self.settings
    }
}
