//! Hosts' ends counted apart from the summary ([`Finished`]), so that reports from many
//! hosts at once need not all write the one summary item.
//!
//! The stored summary holds what decisions did (dispatch, skipping the hosts never sent
//! their command); finishes are added to tallies beside it. The deployment as readers and
//! the state machine see it is the two composed ([`Finished::compose`]). Because
//! [`Deployment::advance`] only ever does less when it sees fewer finishes (fewer spare
//! healthy hosts, fewer slots free, no end), a state composed from tallies that miss a
//! concurrent finish can delay a decision but never make a wrong one.

use super::{Deployment, TargetState, TargetStatus};
use serde::{Deserialize, Serialize};
use std::ops::Add;

/// Hosts that finished (succeeded, failed or were skipped after their command was sent)
/// and blue/green replacement hosts that installed the revision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finished {
    pub succeeded: u32,
    pub failed: u32,
    pub skipped: u32,
    pub installed: u32,
}

impl Add for Finished {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            succeeded: self.succeeded + other.succeeded,
            failed: self.failed + other.failed,
            skipped: self.skipped + other.skipped,
            installed: self.installed + other.installed,
        }
    }
}

impl std::iter::Sum for Finished {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), Add::add)
    }
}

impl Finished {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    fn ended(&self) -> u32 {
        self.succeeded + self.failed + self.skipped
    }

    /// What one host's record going from `before` (None: not yet written) to `after`
    /// adds: a running host that ended, or a replacement host that became Ready.
    pub fn of_change(before: Option<&TargetState>, after: &TargetState) -> Self {
        let was = before.map_or(TargetStatus::Pending, |state| state.status);
        let running = matches!(was, TargetStatus::InProgress | TargetStatus::Ready);
        let mut finished = Self::default();
        match after.status {
            TargetStatus::Succeeded if running => finished.succeeded = 1,
            TargetStatus::Failed if running => finished.failed = 1,
            TargetStatus::Skipped if running => finished.skipped = 1,
            TargetStatus::Ready if was == TargetStatus::InProgress => finished.installed = 1,
            _ => {}
        }
        finished
    }

    /// `stored` (the summary as decisions left it) with these finishes added.
    pub fn compose(&self, stored: &Deployment) -> Deployment {
        let mut state = stored.clone();
        let counts = &mut state.counts;
        counts.succeeded += self.succeeded;
        counts.failed += self.failed;
        counts.skipped += self.skipped;
        counts.in_progress = counts.in_progress.saturating_sub(self.ended());
        if let Some(bg) = state.blue_green.as_mut() {
            bg.installed += self.installed;
        }
        state
    }

    /// The summary to store for `state` when these finishes are counted in tallies:
    /// the inverse of [`Self::compose`].
    pub fn decompose(&self, state: &Deployment) -> Deployment {
        let mut stored = state.clone();
        let counts = &mut stored.counts;
        counts.succeeded = counts.succeeded.saturating_sub(self.succeeded);
        counts.failed = counts.failed.saturating_sub(self.failed);
        counts.skipped = counts.skipped.saturating_sub(self.skipped);
        counts.in_progress += self.ended();
        if let Some(bg) = stored.blue_green.as_mut() {
            bg.installed = bg.installed.saturating_sub(self.installed);
        }
        stored
    }
}
