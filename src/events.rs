//! Run events: what the scheduler tells the outside world. The library never prints; progress
//! bars, logs and reports are consumers of these events.

use std::time::Duration;

use crate::plan::StepIdx;

/// Something that happened in a run.
#[derive(Clone, Debug, PartialEq)]
pub enum RunEvent {
    /// The run (or resume) starts: totals, and how much was already done.
    Started {
        steps: usize,
        steps_done: usize,
        sites: usize,
        sites_done: usize,
    },
    StepStarted {
        step: StepIdx,
        attempt: u32,
    },
    /// The success is durable in the ledger; dependents are released.
    StepSucceeded {
        step: StepIdx,
    },
    /// The attempt failed and another follows after `delay`.
    StepRetrying {
        step: StepIdx,
        attempt: u32,
        delay: Duration,
        error: String,
    },
    /// The step failed for good; `blocked` dependents will not run.
    StepFailed {
        step: StepIdx,
        error: String,
        blocked: usize,
    },
    /// Every step of the site succeeded (or was skipped).
    SiteRestored {
        site: u32,
    },
    /// A periodic snapshot for progress displays.
    Progress(Progress),
    /// Ctrl-C: no new steps start; in-flight steps get `grace` to finish.
    Draining {
        in_flight: usize,
        grace: Duration,
    },
    /// The grace period ended; in-flight steps are being cancelled.
    Cancelling {
        in_flight: usize,
    },
    /// A guard stopped the fan-out (a canary site failed, the failure budget was exceeded):
    /// no new sites start; those in flight finish.
    FanOutStopped {
        reason: String,
    },
    /// Every canary site was restored; the other sites are released.
    CanaryPassed {
        sites: usize,
    },
    /// Per-customer progress updates (`crate::updates`) went out, or could not: `failed` are
    /// tried again at the next look; `error` is the first reason.
    CustomerUpdates {
        sent: usize,
        failed: usize,
        error: Option<String>,
    },
}

/// Counters for progress displays.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    pub steps_done: usize,
    pub steps_total: usize,
    pub steps_failed: usize,
    pub steps_blocked: usize,
    pub sites_restored: usize,
    pub sites_total: usize,
    pub running: usize,
    /// Units in use per pool, in plan pool order.
    pub pools_in_use: Vec<u32>,
    pub pools_capacity: Vec<u32>,
    pub elapsed: Duration,
    /// Estimated time remaining, from the plan's estimates corrected by measured durations.
    pub eta: Option<Duration>,
}

/// A consumer of run events. Called on the scheduler's task: keep it cheap.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: &RunEvent);
}

/// Discards events.
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _: &RunEvent) {}
}

/// Collects every event (for tests).
#[derive(Default)]
pub struct CollectEvents(pub std::sync::Mutex<Vec<RunEvent>>);

impl EventSink for CollectEvents {
    fn emit(&self, event: &RunEvent) {
        self.0.lock().expect("event log lock").push(event.clone());
    }
}
