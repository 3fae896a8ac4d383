//! Live time remaining: every few seconds, the steps still to do are simulated with the same core
//! (`sim::live`), with durations corrected by how long this run's finished steps really took.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;

use crate::dispatch::Core;
use crate::ledger::StepRecord;
use crate::plan::{Plan, StepIdx};
use crate::sim::live::Calibration;
use crate::sim::model::DurationModel;

pub struct Tracker {
    calibration: Calibration,
    /// When each running step started, what ran then (itself included), what its shared unit
    /// held, and what the history model said it would take.
    started: HashMap<StepIdx, (Instant, Vec<f32>, f64, f64)>,
    /// What each shared unit holds now (`sim::model::Units`).
    fill: Vec<f64>,
}

impl Tracker {
    /// Starts from `model` and the durations recorded in the ledger.
    pub fn new(plan: &Plan, model: Arc<DurationModel>, records: &[StepRecord]) -> Tracker {
        let calibration = Calibration::new(plan, model, records);
        let states: Vec<crate::ledger::StepState> = records.iter().map(|r| r.state).collect();
        Tracker {
            fill: calibration.units.filled(&states),
            calibration,
            started: HashMap::new(),
        }
    }

    pub fn started(&mut self, idx: StepIdx, now: &crate::events::Progress) {
        let held = self.calibration.units.now(idx, &self.fill);
        let said = self.calibration.said(idx, now, &self.fill);
        self.started.insert(
            idx,
            (Instant::now(), DurationModel::load_now(now), held, said),
        );
    }

    /// A step's attempt ended.
    pub fn finished(&mut self, idx: StepIdx) {
        self.started.remove(&idx);
    }

    /// Records the real duration of a step that succeeded (called before `finished`).
    pub fn observe(&mut self, plan: &Plan, idx: StepIdx) {
        if let Some((t, load, held, said)) = self.started.get(&idx) {
            let ms = t.elapsed().as_millis() as f64;
            self.calibration.observe(plan, idx, ms, load, *held, *said);
        }
        self.calibration.units.add(idx, &mut self.fill);
    }

    /// Time remaining, by simulating what is left from the core's current state.
    /// `retrying` are steps waiting out a retry backoff.
    pub fn estimate(&self, core: &Core, retrying: &[StepIdx]) -> Option<std::time::Duration> {
        let running: Vec<(StepIdx, u64)> = core
            .state
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == crate::ledger::StepState::Running)
            .map(|(i, _)| {
                // A step whose task already ended (its success awaits the ledger) has nothing
                // left: it counts as having run forever.
                let ran = self
                    .started
                    .get(&(i as StepIdx))
                    .map_or(u64::MAX, |(t, ..)| t.elapsed().as_millis() as u64);
                (i as StepIdx, ran)
            })
            .collect();
        Some(self.calibration.time_left(core, &running, retrying))
    }
}
