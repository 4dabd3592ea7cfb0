//! Lifecycle events of the EC2/on-premises platform, and the order they run in.
//!
//! The lists follow CodeDeploy's "AppSpec hooks section" for EC2/on-premises:
//! in-place deployments with and without a load balancer, blue/green replacement and
//! original instances, and blue/green rollbacks. An in-place rollback is an ordinary
//! in-place deployment of the previous revision, so it uses the in-place list.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One lifecycle event. The serialized names are CodeDeploy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LifecycleEvent {
    BeforeBlockTraffic,
    BlockTraffic,
    AfterBlockTraffic,
    ApplicationStop,
    DownloadBundle,
    BeforeInstall,
    Install,
    AfterInstall,
    ApplicationStart,
    ValidateService,
    BeforeAllowTraffic,
    AllowTraffic,
    AfterAllowTraffic,
}

/// Who carries out an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Performer {
    /// The agent runs the appspec's scripts for the event, if it has any.
    Scripts,
    /// The agent does the work itself (download, install); appspec hooks are not allowed.
    Agent,
    /// The control plane does the work (load balancer registration); appspec hooks are
    /// not allowed and the agent is not involved.
    ControlPlane,
}

impl LifecycleEvent {
    pub const ALL: [LifecycleEvent; 13] = [
        Self::BeforeBlockTraffic,
        Self::BlockTraffic,
        Self::AfterBlockTraffic,
        Self::ApplicationStop,
        Self::DownloadBundle,
        Self::BeforeInstall,
        Self::Install,
        Self::AfterInstall,
        Self::ApplicationStart,
        Self::ValidateService,
        Self::BeforeAllowTraffic,
        Self::AllowTraffic,
        Self::AfterAllowTraffic,
    ];

    /// CodeDeploy's name for the event.
    pub const fn name(self) -> &'static str {
        match self {
            Self::BeforeBlockTraffic => "BeforeBlockTraffic",
            Self::BlockTraffic => "BlockTraffic",
            Self::AfterBlockTraffic => "AfterBlockTraffic",
            Self::ApplicationStop => "ApplicationStop",
            Self::DownloadBundle => "DownloadBundle",
            Self::BeforeInstall => "BeforeInstall",
            Self::Install => "Install",
            Self::AfterInstall => "AfterInstall",
            Self::ApplicationStart => "ApplicationStart",
            Self::ValidateService => "ValidateService",
            Self::BeforeAllowTraffic => "BeforeAllowTraffic",
            Self::AllowTraffic => "AllowTraffic",
            Self::AfterAllowTraffic => "AfterAllowTraffic",
        }
    }

    pub const fn performer(self) -> Performer {
        match self {
            Self::DownloadBundle | Self::Install => Performer::Agent,
            Self::BlockTraffic | Self::AllowTraffic => Performer::ControlPlane,
            _ => Performer::Scripts,
        }
    }

    /// Whether an appspec may attach scripts to this event.
    pub const fn accepts_hooks(self) -> bool {
        matches!(self.performer(), Performer::Scripts)
    }

    /// Events whose scripts come from the last revision that deployed successfully to
    /// the instance, not from the revision being deployed: they stop or drain what is
    /// running now, which only the old revision knows how to do. On a first deployment
    /// there is no such revision and the event does nothing.
    pub const fn uses_last_successful_revision(self) -> bool {
        matches!(
            self,
            Self::ApplicationStop | Self::BeforeBlockTraffic | Self::AfterBlockTraffic
        )
    }

    /// The names an appspec may use under `hooks`, for error messages.
    pub fn hook_names() -> Vec<&'static str> {
        Self::ALL
            .iter()
            .filter(|event| event.accepts_hooks())
            .map(|event| event.name())
            .collect()
    }
}

impl fmt::Display for LifecycleEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown lifecycle event {0:?}")]
pub struct UnknownEvent(pub String);

impl FromStr for LifecycleEvent {
    type Err = UnknownEvent;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|event| event.name() == name)
            .ok_or_else(|| UnknownEvent(name.to_owned()))
    }
}

use LifecycleEvent::*;

const BLOCK_TRAFFIC: [LifecycleEvent; 3] = [BeforeBlockTraffic, BlockTraffic, AfterBlockTraffic];
const ALLOW_TRAFFIC: [LifecycleEvent; 3] = [BeforeAllowTraffic, AllowTraffic, AfterAllowTraffic];
const INSTALL: [LifecycleEvent; 7] = [
    ApplicationStop,
    DownloadBundle,
    BeforeInstall,
    Install,
    AfterInstall,
    ApplicationStart,
    ValidateService,
];

/// The events of an in-place deployment (and of an in-place rollback, which is an
/// in-place deployment of the previous revision). With a load balancer the instance is
/// taken out of service first and put back last.
pub fn in_place(with_load_balancer: bool) -> Vec<LifecycleEvent> {
    if with_load_balancer {
        [&BLOCK_TRAFFIC[..], &INSTALL, &ALLOW_TRAFFIC].concat()
    } else {
        INSTALL.to_vec()
    }
}

/// The stretch of `events` the agent runs in one command, from `from` up to the next
/// event the control plane performs: with a load balancer a host gets three commands,
/// split by BlockTraffic and AllowTraffic.
pub fn stretch(events: &[LifecycleEvent], from: usize) -> &[LifecycleEvent] {
    let rest = events.get(from..).unwrap_or_default();
    let end = rest
        .iter()
        .position(|event| event.performer() == Performer::ControlPlane)
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The events of an Auto Scaling termination deployment (a group with
/// `terminationHookEnabled`): the terminating instance is taken out of service and its
/// application stopped before it goes, all with the last successful revision's scripts.
pub fn termination(with_load_balancer: bool) -> Vec<LifecycleEvent> {
    if with_load_balancer {
        [&BLOCK_TRAFFIC[..], &[ApplicationStop]].concat()
    } else {
        vec![BeforeBlockTraffic, AfterBlockTraffic, ApplicationStop]
    }
}

/// The events on a blue/green deployment's replacement (green) instances: install the
/// revision, then register them with the load balancer.
pub fn blue_green_replacement() -> Vec<LifecycleEvent> {
    [&INSTALL[..], &ALLOW_TRAFFIC].concat()
}

/// The events on a blue/green deployment's original (blue) instances: take them out of
/// the load balancer once the replacement instances serve traffic.
pub fn blue_green_original() -> Vec<LifecycleEvent> {
    BLOCK_TRAFFIC.to_vec()
}

/// A blue/green rollback after traffic was rerouted: the original instances get traffic
/// back and the replacement instances lose it.
pub fn blue_green_rollback_original() -> Vec<LifecycleEvent> {
    ALLOW_TRAFFIC.to_vec()
}

/// See [`blue_green_rollback_original`].
pub fn blue_green_rollback_replacement() -> Vec<LifecycleEvent> {
    BLOCK_TRAFFIC.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_from_str_and_serde() {
        for event in LifecycleEvent::ALL {
            assert_eq!(event.name().parse::<LifecycleEvent>(), Ok(event));
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(json, format!("\"{}\"", event.name()));
        }
        assert!("Start".parse::<LifecycleEvent>().is_err());
        assert!("applicationstop".parse::<LifecycleEvent>().is_err());
    }

    #[test]
    fn in_place_without_load_balancer_matches_codedeploy() {
        assert_eq!(
            in_place(false),
            vec![
                ApplicationStop,
                DownloadBundle,
                BeforeInstall,
                Install,
                AfterInstall,
                ApplicationStart,
                ValidateService
            ]
        );
    }

    #[test]
    fn in_place_with_load_balancer_wraps_install_in_traffic_events() {
        let events = in_place(true);
        assert_eq!(events.len(), 13);
        assert_eq!(
            &events[..3],
            &[BeforeBlockTraffic, BlockTraffic, AfterBlockTraffic]
        );
        assert_eq!(&events[3..10], &in_place(false)[..]);
        assert_eq!(
            &events[10..],
            &[BeforeAllowTraffic, AllowTraffic, AfterAllowTraffic]
        );
    }

    #[test]
    fn a_load_balanced_host_runs_three_stretches_split_by_the_traffic_events() {
        let events = in_place(true);
        assert_eq!(stretch(&events, 0), &[BeforeBlockTraffic]);
        assert_eq!(stretch(&events, 1), &[] as &[LifecycleEvent]);
        assert_eq!(stretch(&events, 2).first(), Some(&AfterBlockTraffic));
        assert_eq!(stretch(&events, 2).last(), Some(&BeforeAllowTraffic));
        assert_eq!(stretch(&events, 2).len(), 9);
        assert_eq!(stretch(&events, 12), &[AfterAllowTraffic]);
        assert_eq!(stretch(&events, 13), &[] as &[LifecycleEvent]);
        assert_eq!(stretch(&in_place(false), 0), &in_place(false)[..]);
    }

    #[test]
    fn a_termination_runs_only_what_stops_the_old_revision() {
        for with_load_balancer in [false, true] {
            let events = termination(with_load_balancer);
            assert_eq!(events.last(), Some(&ApplicationStop));
            assert!(
                events.iter().all(|e| e.uses_last_successful_revision()
                    || e.performer() == Performer::ControlPlane)
            );
            assert_eq!(events.contains(&BlockTraffic), with_load_balancer);
        }
        assert_eq!(
            stretch(&termination(true), 2),
            &[AfterBlockTraffic, ApplicationStop]
        );
    }

    #[test]
    fn blue_green_lists_split_install_and_traffic() {
        assert_eq!(blue_green_replacement().len(), 10);
        assert_eq!(blue_green_replacement().last(), Some(&AfterAllowTraffic));
        assert!(!blue_green_replacement().contains(&BlockTraffic));
        assert_eq!(
            blue_green_original(),
            vec![BeforeBlockTraffic, BlockTraffic, AfterBlockTraffic]
        );
        assert_eq!(
            blue_green_rollback_original(),
            vec![BeforeAllowTraffic, AllowTraffic, AfterAllowTraffic]
        );
        assert_eq!(blue_green_rollback_replacement(), blue_green_original());
    }

    #[test]
    fn performers_and_old_revision_events() {
        let agent: Vec<_> = LifecycleEvent::ALL
            .into_iter()
            .filter(|e| e.performer() == Performer::Agent)
            .collect();
        assert_eq!(agent, vec![DownloadBundle, Install]);
        let control: Vec<_> = LifecycleEvent::ALL
            .into_iter()
            .filter(|e| e.performer() == Performer::ControlPlane)
            .collect();
        assert_eq!(control, vec![BlockTraffic, AllowTraffic]);
        let old: Vec<_> = LifecycleEvent::ALL
            .into_iter()
            .filter(|e| e.uses_last_successful_revision())
            .collect();
        assert_eq!(
            old,
            vec![BeforeBlockTraffic, AfterBlockTraffic, ApplicationStop]
        );
        assert_eq!(LifecycleEvent::hook_names().len(), 9);
    }
}
