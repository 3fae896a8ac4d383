//! Live time remaining: every few seconds, the steps still to do are simulated with the same core,
//! their durations corrected by how long finished steps of the same kind and product really took
//! compared with their estimates.

use std::collections::HashMap;

use tokio::time::Instant;

use super::core::Core;
use crate::ledger::{StepRecord, StepState};
use crate::plan::{Owner, Plan, StepIdx};
use crate::sim::{self, model::expected_ms};

type Group = (u16, Option<u16>);

pub struct Tracker {
    /// Per (template, product): Σ actual ms and Σ expected ms of finished steps.
    seen: HashMap<Group, (f64, f64)>,
    started: HashMap<StepIdx, Instant>,
}

impl Tracker {
    /// Starts from the durations recorded in the ledger (a resumed run keeps what it learned).
    pub fn new(plan: &Plan, records: &[StepRecord]) -> Tracker {
        let mut t = Tracker {
            seen: HashMap::new(),
            started: HashMap::new(),
        };
        for (i, r) in records.iter().enumerate() {
            if let (StepState::Succeeded, Some(s), Some(e)) = (r.state, r.started_at, r.ended_at) {
                t.learn(plan, i as StepIdx, (e - s).max(0) as f64);
            }
        }
        t
    }

    pub fn started(&mut self, idx: StepIdx) {
        self.started.insert(idx, Instant::now());
    }

    /// A step's attempt ended.
    pub fn finished(&mut self, idx: StepIdx) {
        self.started.remove(&idx);
    }

    fn learn(&mut self, plan: &Plan, idx: StepIdx, actual_ms: f64) {
        let e = self.seen.entry(group(plan, idx)).or_default();
        e.0 += actual_ms;
        e.1 += expected_ms(plan, idx) as f64;
    }

    /// Records the real duration of a finished step (called before `finished`).
    pub fn observe(&mut self, plan: &Plan, idx: StepIdx) {
        if let Some(t) = self.started.get(&idx) {
            let ms = t.elapsed().as_millis() as f64;
            self.learn(plan, idx, ms);
        }
    }

    /// Time remaining, by simulating what is left from the core's current state.
    /// `retrying` are steps waiting out a retry backoff.
    pub fn estimate(&self, core: &Core, retrying: &[StepIdx]) -> Option<std::time::Duration> {
        let plan = &core.plan;
        let ratio = |g: &Group| {
            self.seen
                .get(g)
                .filter(|(_, e)| *e > 0.0)
                .map_or(1.0, |(a, e)| a / e)
        };
        let durations: Vec<u64> = (0..plan.steps.len() as StepIdx)
            .map(|i| (expected_ms(plan, i) as f64 * ratio(&group(plan, i))) as u64)
            .collect();
        let running: Vec<(StepIdx, u64)> = core
            .state
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == StepState::Running)
            .map(|(i, _)| {
                // A step whose task already ended (its success awaits the ledger) has nothing left.
                let left = self.started.get(&(i as StepIdx)).map_or(0, |t| {
                    durations[i].saturating_sub(t.elapsed().as_millis() as u64)
                });
                (i as StepIdx, left)
            })
            .collect();
        let schedule = sim::run(core.clone(), &durations, &running, retrying);
        Some(schedule.makespan)
    }
}

fn group(plan: &Plan, idx: StepIdx) -> Group {
    let step = &plan.steps[idx as usize];
    let product = match step.owner {
        Owner::Site { product, .. } => product,
        Owner::Shared { product, .. } => Some(product),
    };
    (step.template, product)
}
