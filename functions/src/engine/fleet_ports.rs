//! What the engine reaches beyond a deployment's records, queues and topics: the alarms
//! it polls, the load balancer steps, the blue/green fleets, and the deployments its
//! effects create (a rollback, the update of outdated instances). In Lambda they are
//! [`ControlPlane`]'s; each method is one effect's work, chosen by
//! [`super::carry_out`], the one `match Effect`.

use crate::control::ControlPlane;
use crate::deploy::{self, Created};
use crate::error::ApiError;
use crate::model::DeploymentSpec;
use crate::ports::Ports;
use crate::store::DeploymentRecord;
use gantry_core::deployment::AlarmCheck;
use gantry_core::lifecycle::LifecycleEvent;
use std::future::Future;

/// The engine's ports: [`Ports`], and what only the engine reaches.
pub trait EnginePorts: Ports {
    fn check_alarms(&self, names: &[String]) -> impl Future<Output = AlarmCheck> + Send;

    /// A host's BlockTraffic or AllowTraffic step started. `late`: asked by the tick
    /// after the writer, so only while the host still waits on it.
    fn traffic_step(
        &self,
        spec: &DeploymentSpec,
        instance_id: &str,
        event: LifecycleEvent,
        late: bool,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// The rollback of a failed or stopped deployment, created (None when another
    /// invocation created it first).
    fn start_rollback(
        &self,
        record: &DeploymentRecord<DeploymentSpec>,
    ) -> impl Future<Output = Result<Option<Created>, ApiError>> + Send;

    /// The deployment of the instances that launched during this one, created.
    fn update_outdated(
        &self,
        record: &DeploymentRecord<DeploymentSpec>,
    ) -> impl Future<Output = Result<Option<Created>, ApiError>> + Send;

    fn reroute(
        &self,
        record: &DeploymentRecord<DeploymentSpec>,
        first: u32,
        count: u32,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    fn terminate_original(
        &self,
        record: &DeploymentRecord<DeploymentSpec>,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    fn adopt_replacement(
        &self,
        record: &DeploymentRecord<DeploymentSpec>,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    fn provision_fleet(
        &self,
        record: &DeploymentRecord<DeploymentSpec>,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    fn remove_replacement(
        &self,
        spec: &DeploymentSpec,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}

// Boxed, each: a rollback's creation or a fleet's API calls are large futures, and
// inlined they would grow every caller's stack frame (a debug build's test threads
// overflowed theirs).
impl EnginePorts for ControlPlane {
    async fn check_alarms(&self, names: &[String]) -> AlarmCheck {
        self.alarms.check(names).await
    }

    async fn traffic_step(
        &self,
        spec: &DeploymentSpec,
        instance_id: &str,
        event: LifecycleEvent,
        late: bool,
    ) -> Result<(), ApiError> {
        let waiting = !late
            || Box::pin(crate::traffic_steps::still_waiting(
                self,
                &spec.deployment_id,
                instance_id,
                event,
            ))
            .await?;
        if waiting {
            Box::pin(crate::traffic_steps::start(self, spec, instance_id, event)).await?;
        }
        Ok(())
    }

    async fn start_rollback(
        &self,
        record: &DeploymentRecord<DeploymentSpec>,
    ) -> Result<Option<Created>, ApiError> {
        Box::pin(deploy::start_rollback(self, record)).await
    }

    async fn update_outdated(
        &self,
        record: &DeploymentRecord<DeploymentSpec>,
    ) -> Result<Option<Created>, ApiError> {
        Box::pin(deploy::update_outdated(self, record)).await
    }

    async fn reroute(
        &self,
        record: &DeploymentRecord<DeploymentSpec>,
        first: u32,
        count: u32,
    ) -> Result<(), ApiError> {
        Box::pin(crate::blue_green::reroute(self, record, first, count)).await
    }

    async fn terminate_original(
        &self,
        record: &DeploymentRecord<DeploymentSpec>,
    ) -> Result<(), ApiError> {
        Box::pin(crate::blue_green::terminate_original(self, record)).await
    }

    async fn adopt_replacement(
        &self,
        record: &DeploymentRecord<DeploymentSpec>,
    ) -> Result<(), ApiError> {
        Box::pin(crate::blue_green::adopt_replacement(self, record)).await
    }

    async fn provision_fleet(
        &self,
        record: &DeploymentRecord<DeploymentSpec>,
    ) -> Result<(), ApiError> {
        Box::pin(crate::blue_green::provision_fleet(self, record)).await
    }

    async fn remove_replacement(&self, spec: &DeploymentSpec) -> Result<(), ApiError> {
        Box::pin(crate::blue_green::remove_replacement(self, spec)).await
    }
}

/// In memory, what is asked of fleets is only listed, by the effect's name, and no
/// effect creates a deployment.
#[cfg(test)]
impl EnginePorts for crate::deploy::memory::MemoryWorld {
    async fn check_alarms(&self, _names: &[String]) -> AlarmCheck {
        self.alarms.lock().expect("unpoisoned").clone()
    }

    async fn traffic_step(
        &self,
        _spec: &DeploymentSpec,
        instance_id: &str,
        event: LifecycleEvent,
        late: bool,
    ) -> Result<(), ApiError> {
        self.asked(format!("Traffic {instance_id} {event} late={late}"));
        Ok(())
    }

    async fn start_rollback(
        &self,
        _record: &DeploymentRecord<DeploymentSpec>,
    ) -> Result<Option<Created>, ApiError> {
        self.asked("StartRollback".into());
        Ok(None)
    }

    async fn update_outdated(
        &self,
        _record: &DeploymentRecord<DeploymentSpec>,
    ) -> Result<Option<Created>, ApiError> {
        self.asked("UpdateOutdated".into());
        Ok(None)
    }

    async fn reroute(
        &self,
        _record: &DeploymentRecord<DeploymentSpec>,
        first: u32,
        count: u32,
    ) -> Result<(), ApiError> {
        self.asked(format!("Reroute {first}+{count}"));
        Ok(())
    }

    async fn terminate_original(
        &self,
        _record: &DeploymentRecord<DeploymentSpec>,
    ) -> Result<(), ApiError> {
        self.asked("TerminateOriginal".into());
        Ok(())
    }

    async fn adopt_replacement(
        &self,
        _record: &DeploymentRecord<DeploymentSpec>,
    ) -> Result<(), ApiError> {
        self.asked("AdoptReplacement".into());
        Ok(())
    }

    async fn provision_fleet(
        &self,
        _record: &DeploymentRecord<DeploymentSpec>,
    ) -> Result<(), ApiError> {
        self.asked("ProvisionFleet".into());
        Ok(())
    }

    async fn remove_replacement(&self, _spec: &DeploymentSpec) -> Result<(), ApiError> {
        self.asked("RemoveReplacement".into());
        Ok(())
    }
}
