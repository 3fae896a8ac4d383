//! Live time remaining: every few seconds, the steps still to do are simulated with the same core,
//! their durations corrected by how long finished steps really took compared with their
//! estimates: those of the same template and product, else of the same template, else of the whole
//! run — so a workflow whose estimates are far off (minutes for steps that take milliseconds) is
//! corrected as soon as any step has finished, not only once every kind of step has.

use std::collections::HashMap;

use tokio::time::Instant;

use crate::dispatch::Core;
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
        let ratios = Ratios::new(&self.seen);
        let durations: Vec<u64> = (0..plan.steps.len() as StepIdx)
            .map(|i| (expected_ms(plan, i) as f64 * ratios.of(group(plan, i))) as u64)
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

/// Actual ÷ expected time, by the most specific evidence there is.
struct Ratios<'a> {
    by_group: &'a HashMap<Group, (f64, f64)>,
    by_template: HashMap<u16, (f64, f64)>,
    overall: (f64, f64),
}

impl<'a> Ratios<'a> {
    fn new(seen: &'a HashMap<Group, (f64, f64)>) -> Ratios<'a> {
        let mut by_template: HashMap<u16, (f64, f64)> = HashMap::new();
        let mut overall = (0.0, 0.0);
        for (&(template, _), &(a, e)) in seen {
            let t = by_template.entry(template).or_default();
            t.0 += a;
            t.1 += e;
            overall.0 += a;
            overall.1 += e;
        }
        Ratios {
            by_group: seen,
            by_template,
            overall,
        }
    }

    fn of(&self, g: Group) -> f64 {
        let ratio = |&(a, e): &(f64, f64)| (e > 0.0).then(|| a / e);
        self.by_group
            .get(&g)
            .and_then(ratio)
            .or_else(|| self.by_template.get(&g.0).and_then(ratio))
            .or_else(|| ratio(&self.overall))
            .unwrap_or(1.0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unseen_steps_borrow_the_nearest_evidence() {
        // Template 0 of product 1 ran at a tenth of its estimate; nothing else has finished.
        let seen = HashMap::from([((0, Some(1)), (100.0, 1000.0))]);
        let r = Ratios::new(&seen);
        assert_eq!(r.of((0, Some(1))), 0.1);
        assert_eq!(r.of((0, Some(2))), 0.1, "same template, other product");
        assert_eq!(r.of((3, None)), 0.1, "the whole run's ratio");
        assert_eq!(
            Ratios::new(&HashMap::new()).of((3, None)),
            1.0,
            "no evidence yet"
        );

        let seen = HashMap::from([
            ((0, Some(1)), (100.0, 1000.0)),
            ((1, Some(1)), (3000.0, 1000.0)),
        ]);
        let r = Ratios::new(&seen);
        assert_eq!(
            r.of((1, Some(2))),
            3.0,
            "the template's own ratio beats the run's"
        );
        assert_eq!(r.of((2, None)), 3100.0 / 2000.0);
    }
}
