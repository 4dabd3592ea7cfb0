//! What the adapters must do ([`Effect`]), among it the trigger notifications
//! ([`NotificationEvent`]).

use super::Millis;
use crate::lifecycle::LifecycleEvent;
use serde::{Deserialize, Serialize};

/// What the adapters must do, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// Send the deployment's command to the hosts at `first..first + count` of the
    /// ordered target list (creating their records, then announcing InstanceStart).
    Dispatch { first: u32, count: u32 },
    /// Take the host out of the deployment group's target groups (BlockTraffic) or put
    /// it back (AllowTraffic), then watch ELB until it is drained or healthy.
    Traffic {
        instance_id: String,
        event: LifecycleEvent,
    },
    /// Send the host a command with the next stretch of its events, which it may start
    /// until `start_by`.
    Resume {
        instance_id: String,
        events: Vec<LifecycleEvent>,
        start_by: Millis,
    },
    Notify {
        event: NotificationEvent,
        instance_id: Option<String>,
    },
    /// Record the host's health in the group: healthy after a success.
    RecordHealth { instance_id: String, healthy: bool },
    /// The host went silent past its deadline and was failed.
    HostTimedOut { instance_id: String },
    /// The deployment succeeded: the group's last successful revision is this one.
    RecordLastSuccessful,
    /// The deployment reached a final status: free the group for the next one.
    ReleaseLock,
    /// Redeploy the group's last successful revision.
    StartRollback,
    /// A launching instance's deployment ended: let Auto Scaling put the instance in
    /// service (`proceed`) or abandon it. Such a deployment holds no lock and leaves the
    /// group's last successful revision as it was.
    CompleteLaunch { proceed: bool },
    /// The deployment stopped or failed while hosts were deploying: tell each of them to
    /// skip the events it has not started.
    CancelHosts,
    /// The deployment succeeded: instances that joined the group's Auto Scaling groups
    /// while it ran get its revision in a deployment of their own (when the group's
    /// outdatedInstancesStrategy is UPDATE).
    UpdateOutdated,
    /// Send the blue/green replacement hosts at `first..first + count`, Ready, their
    /// traffic events.
    Reroute { first: u32, count: u32 },
    /// A blue/green deployment's original fleet waited out its termination wait:
    /// terminate it (its Auto Scaling group with it).
    TerminateOriginal,
    /// A blue/green deployment succeeded: its replacement fleet is the deployment
    /// group's from now on (a copied Auto Scaling group replaces the original there).
    AdoptReplacement,
    /// A blue/green deployment that copies its group's Auto Scaling group was stored:
    /// make the copy (its name follows from the deployment's id), then watch it until
    /// its instances are in service.
    ProvisionFleet,
    /// A blue/green deployment ended while its replacement fleet was being provisioned:
    /// delete the copied Auto Scaling group, whatever it holds by now.
    RemoveReplacement,
}

/// The SNS notification events of CodeDeploy triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NotificationEvent {
    DeploymentStart,
    DeploymentSuccess,
    DeploymentFailure,
    DeploymentStop,
    DeploymentRollback,
    InstanceStart,
    InstanceSuccess,
    InstanceFailure,
    /// A blue/green deployment's replacement fleet installed the revision and waits
    /// for ContinueDeployment.
    DeploymentReady,
    /// A blue/green replacement host installed the revision.
    InstanceReady,
}

pub(super) fn notify(event: NotificationEvent, instance_id: Option<&str>) -> Effect {
    Effect::Notify {
        event,
        instance_id: instance_id.map(str::to_owned),
    }
}
