//! Sending commands: the [`Segment`]s of the ordered target list, and how far down it
//! the next batch goes, within the health rules and a zonal deployment's zones and waits.

use super::{Deployment, DeploymentStatus, Effect, Millis};
use crate::config::ZonalConfig;
use crate::planner::Target;
use serde::{Deserialize, Serialize};

/// A stretch of the ordered target list: one Availability Zone of a zonal deployment,
/// or the whole list. Its hosts that do not count as healthy come first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Segment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Index of the segment's first host.
    pub start: u32,
    /// One past its last host.
    pub end: u32,
    /// How many of its first hosts do not count as healthy.
    pub unhealthy: u32,
}

impl Segment {
    fn healthy_from(&self) -> u32 {
        self.start + self.unhealthy
    }
}

impl Deployment {
    /// Decides the outcome or sends the next commands.
    pub(super) fn advance(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        if self.status != DeploymentStatus::InProgress {
            return;
        }
        if self.blue_green.is_some() {
            return self.advance_blue_green(now, effects);
        }
        let counts = self.counts;
        if counts.pending == 0 && counts.in_progress == 0 {
            if self.plan.is_success(counts.succeeded) {
                self.finish(DeploymentStatus::Succeeded, now, None, effects);
            } else {
                self.fail_for_health(now, effects);
            }
            return;
        }
        // Fail as soon as success is out of reach, rather than deploying on.
        if counts.succeeded + counts.in_progress + counts.pending < self.plan.required_successes {
            self.fail_for_health(now, effects);
            return;
        }
        let count = self.dispatch(now);
        if count > 0 {
            effects.push(Effect::Dispatch {
                first: self.dispatched - count,
                count,
            });
        } else if counts.in_progress == 0 && self.zone_wait_until.is_none_or(|until| now >= until) {
            // Nothing running, hosts left, and none may go without breaking the minimum.
            self.fail_for_health(now, effects);
        }
    }

    /// Hosts not yet sent their command that count as healthy.
    fn pending_healthy(&self) -> u32 {
        self.segments
            .iter()
            .map(|segment| {
                segment
                    .end
                    .saturating_sub(segment.healthy_from().max(self.dispatched))
            })
            .sum()
    }

    /// Moves the cursor over as many hosts as the health rules allow; returns how many.
    fn dispatch(&mut self, now: Millis) -> u32 {
        let (segment, zone_limit) = match self.zonal {
            None => (self.segments.first().cloned(), u32::MAX),
            Some(zonal) => match self.current_zone(now, &zonal) {
                ZoneGate::Open(index, limit) => (Some(self.segments[index].clone()), limit),
                ZoneGate::Waiting => return 0,
            },
        };
        let Some(segment) = segment else { return 0 };
        let healthy = self.counts.succeeded + self.pending_healthy();
        let mut spare_healthy = healthy.saturating_sub(self.plan.minimum_healthy);
        // Earlier zones are finished and later ones not started, so every running host
        // belongs to this segment.
        let limit = self.plan.batch_size.min(zone_limit);
        let mut in_progress = self.counts.in_progress;
        let mut next = self.dispatched.max(segment.start);
        let first = next;
        while next < segment.end && in_progress < limit {
            if next >= segment.healthy_from() {
                if spare_healthy == 0 {
                    break;
                }
                spare_healthy -= 1;
            }
            next += 1;
            in_progress += 1;
        }
        let count = next - first;
        if count > 0 {
            self.dispatched = next;
            self.counts.pending -= count;
            self.counts.in_progress += count;
            self.batches_dispatched += 1;
            self.start_time.get_or_insert(now);
        }
        count
    }

    /// The zone being deployed (its segment), with how many of its hosts may run at
    /// once; or a wait while a finished zone is monitored.
    fn current_zone(&mut self, now: Millis, zonal: &ZonalConfig) -> ZoneGate {
        let in_progress = self.counts.in_progress;
        let dispatched = self.dispatched;
        let zone_done = |segment: &Segment| {
            let running_here =
                in_progress > 0 && dispatched > segment.start && dispatched <= segment.end;
            dispatched >= segment.end && !running_here
        };
        let Some(index) = self.segments.iter().position(|s| !zone_done(s)) else {
            return ZoneGate::Waiting;
        };
        let segment = &self.segments[index];
        let started = dispatched > segment.start;
        let limit = zonal.zone_batch_size(segment.end - segment.start);
        if started {
            self.zone_wait_until = None;
        } else if index > 0 {
            // The zone before was just finished: watch it for the monitor duration.
            let until = *self.zone_wait_until.get_or_insert(
                now.saturating_add(zonal.monitor_after(index - 1).saturating_mul(1000)),
            );
            if now < until {
                return ZoneGate::Waiting;
            }
            // The wait is over and this zone opens: the next zone's wait starts afresh
            // when this one ends (even if it ends within this very input).
            self.zone_wait_until = None;
        }
        ZoneGate::Open(index, limit)
    }
}

enum ZoneGate {
    Open(usize, u32),
    Waiting,
}

/// The segments of an ordered target list: one per zone (in order of appearance) when
/// zonal, else one. Within each, the hosts that do not count as healthy come first.
pub(super) fn segments(targets: &[Target], zonal: bool) -> Vec<Segment> {
    let mut segments: Vec<Segment> = Vec::new();
    for (index, target) in targets.iter().enumerate() {
        let index = index as u32;
        let zone = zonal.then(|| target.zone.clone()).flatten();
        let same = segments
            .last()
            .is_some_and(|last| !zonal || last.zone == zone);
        if !same {
            segments.push(Segment {
                zone,
                start: index,
                end: index,
                unhealthy: 0,
            });
        }
        let segment = segments.last_mut().expect("pushed above");
        segment.end = index + 1;
        if !target.standing.counts_as_healthy() {
            debug_assert_eq!(
                segment.unhealthy,
                index - segment.start,
                "hosts that do not count as healthy go first"
            );
            segment.unhealthy += 1;
        }
    }
    segments
}
