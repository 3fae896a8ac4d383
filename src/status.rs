//! Per-site status, derived from step states: what `drover status` shows and what decides a run's
//! exit code. `doc`: the `drover-status/1` document.

pub mod customers;
pub mod doc;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ledger::StepState;
use crate::plan::{Owner, Plan};

/// The state of one site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SiteState {
    Pending,
    Running,
    /// Every step of the site succeeded or was skipped.
    Restored,
    /// A step of the site failed.
    Failed,
    /// A step the site needs failed elsewhere (e.g. its shard's fetch).
    Blocked,
    /// The site's data did not validate: it must not be reactivated.
    Quarantined,
    /// Restored and back in service, but telling its contacts failed (a `notify` step failed
    /// for good): a live site, not a failed one. `retry` re-sends only the notification.
    Unnotified,
}

impl SiteState {
    pub const ALL: [SiteState; 7] = [
        SiteState::Pending,
        SiteState::Running,
        SiteState::Restored,
        SiteState::Failed,
        SiteState::Blocked,
        SiteState::Quarantined,
        SiteState::Unnotified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SiteState::Pending => "pending",
            SiteState::Running => "running",
            SiteState::Restored => "restored",
            SiteState::Failed => "failed",
            SiteState::Blocked => "blocked",
            SiteState::Quarantined => "quarantined",
            SiteState::Unnotified => "unnotified",
        }
    }
}

/// The step kind that tells a restored site's contacts.
const NOTIFY: &str = "notify";

/// Every site's state, in plan site order. `quarantined(i)` says whether step `i`, if failed,
/// failed with [`crate::steps::StepError::Quarantine`].
pub fn site_states(
    plan: &Plan,
    states: &[StepState],
    quarantined: impl Fn(usize) -> bool,
) -> Vec<SiteState> {
    #[derive(Default, Clone, Copy)]
    struct Tally {
        quarantined: bool,
        failed: bool,
        unnotified: bool,
        blocked: bool,
        running: bool,
        open: bool,
    }
    let mut tally = vec![Tally::default(); plan.sites.len()];
    for (i, (step, &state)) in plan.steps.iter().zip(states).enumerate() {
        let Owner::Site { site, .. } = step.owner else {
            continue;
        };
        let t = &mut tally[site as usize];
        match state {
            StepState::Failed if quarantined(i) => t.quarantined = true,
            // A notification runs once the site is back in service: its failure leaves a live
            // site, not a failed one.
            StepState::Failed if plan.kind(step) == NOTIFY => t.unnotified = true,
            StepState::Failed => t.failed = true,
            StepState::Blocked => t.blocked = true,
            StepState::Running => t.running = true,
            StepState::Pending => t.open = true,
            StepState::Succeeded | StepState::Skipped => {}
        }
    }
    tally
        .into_iter()
        .map(|t| match t {
            Tally {
                quarantined: true, ..
            } => SiteState::Quarantined,
            Tally { failed: true, .. } => SiteState::Failed,
            Tally { blocked: true, .. } => SiteState::Blocked,
            Tally { running: true, .. } => SiteState::Running,
            Tally { open: true, .. } => SiteState::Pending,
            Tally {
                unnotified: true, ..
            } => SiteState::Unnotified,
            _ => SiteState::Restored,
        })
        .collect()
}

/// How many sites are in each state (every state listed, zeros included).
pub fn count_sites(states: &[SiteState]) -> BTreeMap<SiteState, usize> {
    let mut counts: BTreeMap<SiteState, usize> = SiteState::ALL.iter().map(|&s| (s, 0)).collect();
    for &s in states {
        *counts.entry(s).or_default() += 1;
    }
    counts
}

/// How many steps are in each state (every state listed, zeros included).
pub fn count_steps(states: &[StepState]) -> BTreeMap<StepState, usize> {
    let mut counts: BTreeMap<StepState, usize> = StepState::ALL.iter().map(|&s| (s, 0)).collect();
    for &s in states {
        *counts.entry(s).or_default() += 1;
    }
    counts
}
