//! Time left in a run that is under way: the steps still to do, simulated from the run's current
//! state with the forecast's duration model refitted on the history (if any) together with this
//! run's finished steps — one fit, so a workflow whose estimates are far off (minutes for steps
//! that take milliseconds) is corrected as soon as steps finish, and a step kind not seen yet
//! borrows from the others. `drover run` (the live ETA) and `drover status` (from the ledger)
//! both use it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::model::{DurationModel, Group, Point};
use super::{SimOptions, new_core, run};
use crate::dispatch::Core;
use crate::ledger::{StepRecord, StepState};
use crate::plan::{Plan, StepIdx};

/// The history model, and this run's finished steps.
#[derive(Clone, Debug)]
pub struct Calibration {
    prior: Arc<DurationModel>,
    /// The plan's shared units (`model::Units`).
    pub units: super::model::Units,
    /// Per group: this run's finished steps.
    seen: HashMap<Group, Vec<Point>>,
}

impl Calibration {
    /// Starts from `model` and the durations already recorded in `records` (a resumed run keeps
    /// what it learned).
    pub fn new(plan: &Plan, model: Arc<DurationModel>, records: &[StepRecord]) -> Calibration {
        let prior = model.for_plan(plan);
        let mut seen = prior.points_from(plan, records);
        seen.values_mut().for_each(super::model::thin);
        Calibration {
            seen,
            units: super::model::Units::of(plan),
            prior: Arc::new(prior),
        }
    }

    /// A step of this run finished after `actual_ms`; `load` ran when it started
    /// (`DurationModel::load_now`) and its shared unit held `held` (`Units::now`).
    pub fn observe(&mut self, plan: &Plan, idx: StepIdx, actual_ms: f64, load: &[f32], held: f64) {
        let point = self.prior.point(plan, idx, held, actual_ms, load);
        let seen = self
            .seen
            .entry(DurationModel::group_of(plan, idx))
            .or_default();
        seen.push(point);
        if seen.len() >= 2 * super::model::MAX_FIT_POINTS {
            super::model::thin(seen);
        }
    }

    /// The model refitted with this run's evidence.
    pub fn model(&self) -> DurationModel {
        self.prior.with(&self.seen)
    }

    /// Time left from `core`'s state: `running` steps with the ms they have run so far,
    /// `retrying` steps waiting out a backoff.
    pub fn time_left(
        &self,
        core: &Core,
        running: &[(StepIdx, u64)],
        retrying: &[StepIdx],
    ) -> Duration {
        let model = self.model();
        let durations = model.durations(&core.plan);
        let fill = durations.filled(&core.state);
        let left: Vec<(StepIdx, u64)> = running
            .iter()
            .map(|&(i, ran)| (i, durations.at(i, &core.counts, &fill).saturating_sub(ran)))
            .collect();
        run(core.clone(), &durations, &left, retrying).makespan
    }
}

/// Time left for a run recorded in `records` (running steps still running), at `now_ms`.
pub fn eta(plan: &Arc<Plan>, records: &[StepRecord], opts: &SimOptions, now_ms: i64) -> Duration {
    let calibration = Calibration::new(plan, Arc::default(), records);
    let states: Vec<StepState> = records.iter().map(|r| r.state).collect();
    let mut core = new_core(plan, opts);
    core.restore_live(&states);
    let running: Vec<(StepIdx, u64)> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.state == StepState::Running)
        .map(|(i, r)| {
            let ran = r.started_at.map_or(0, |s| (now_ms - s).max(0) as u64);
            (i as StepIdx, ran)
        })
        .collect();
    calibration.time_left(&core, &running, &[])
}
