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
    /// Per group: this run's finished steps (kept only without history).
    seen: HashMap<Group, Vec<Point>>,
    /// Σ actual and Σ what the history model said when they started, over the steps this
    /// session finished.
    observed: (f64, f64),
    /// The history model's durations for the plan (empty without history).
    base: super::model::Durations,
}

impl Calibration {
    /// Starts from `model` and the durations already recorded in `records` (a resumed run keeps
    /// what it learned).
    pub fn new(plan: &Plan, model: Arc<DurationModel>, records: &[StepRecord]) -> Calibration {
        let prior = model.for_plan(plan);
        // This run's own points are refitted only without history (`time_left`).
        let mut seen = if prior.is_empty() {
            prior.points_from(plan, records)
        } else {
            HashMap::new()
        };
        seen.values_mut().for_each(super::model::thin);
        Calibration {
            observed: (0.0, 0.0),
            base: if prior.is_empty() {
                super::model::Durations::default()
            } else {
                prior.durations(plan)
            },
            seen,
            units: super::model::Units::of(plan),
            prior: Arc::new(prior),
        }
    }

    /// What the history model says step `idx` takes, starting now with `now` running and its
    /// shards holding `fill` (0 without history).
    pub fn said(&self, idx: StepIdx, now: &crate::events::Progress, fill: &[f64]) -> f64 {
        if self.prior.is_empty() {
            0.0
        } else {
            self.base.at(idx, now, fill) as f64
        }
    }

    /// A step of this run finished after `actual_ms`; `load` ran when it started
    /// (`DurationModel::load_now`), its shared unit held `held` (`Units::now`), and the history
    /// model said it would take `said` ms (`said`).
    pub fn observe(
        &mut self,
        plan: &Plan,
        idx: StepIdx,
        actual_ms: f64,
        load: &[f32],
        held: f64,
        said: f64,
    ) {
        self.observed.0 += actual_ms;
        self.observed.1 += said;
        if !self.prior.is_empty() {
            return;
        }
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
        // With history, its model keeps its shape and this run only says how much slower or
        // faster everything goes here: a refit on a run's first steps bends the model toward
        // them, and a policy that restores the smallest sites first makes those unlike the
        // rest (a refit once put the ETA at 82 s with 28 s left). Without history, the
        // estimates say nothing of this machine: a refit on this run's steps.
        let durations = if self.prior.is_empty() {
            self.model().durations(&core.plan)
        } else {
            let (actual, said) = self.observed;
            let ratio = if said > 0.0 { actual / said } else { 1.0 };
            self.prior.durations_scaled(&core.plan, ratio)
        };
        let fill = durations.units.filled(&core.state);
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

/// The time left in a run and each site's, as ranges over simulated trials.
#[derive(Clone, Debug, Default)]
pub struct Ranges {
    /// p50 and p90 of the time left, ms.
    pub left_ms: (u64, u64),
    /// Per site in plan order: p50 and p90 of the time until it is restored, ms (0 for a site
    /// with nothing left to run).
    pub sites_ms: Vec<(u64, u64)>,
}

/// [`eta`] as ranges: `trials` simulations from the recorded state, the first with the model's
/// durations and the others sampled around them (the spread `estimate --trials` uses).
pub fn ranges(
    plan: &Arc<Plan>,
    records: &[StepRecord],
    opts: &SimOptions,
    now_ms: i64,
    trials: u32,
) -> Ranges {
    use rand::SeedableRng;
    let calibration = Calibration::new(plan, Arc::default(), records);
    let model = calibration.model();
    let states: Vec<StepState> = records.iter().map(|r| r.state).collect();
    let mut core = new_core(plan, opts);
    core.restore_live(&states);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(plan.steps.len() as u64);
    let runs: Vec<super::Schedule> = (0..trials.max(1))
        .map(|t| {
            let durations = if t == 0 {
                model.durations(plan)
            } else {
                model.sample(plan, &mut rng)
            };
            let fill = durations.units.filled(&core.state);
            let running: Vec<(StepIdx, u64)> = records
                .iter()
                .enumerate()
                .filter(|(_, r)| r.state == StepState::Running)
                .map(|(i, r)| {
                    let ran = r.started_at.map_or(0, |s| (now_ms - s).max(0) as u64);
                    let i = i as StepIdx;
                    (i, durations.at(i, &core.counts, &fill).saturating_sub(ran))
                })
                .collect();
            run(core.clone(), &durations, &running, &[])
        })
        .collect();
    let spread = |values: &mut Vec<u64>| {
        values.sort_unstable();
        (
            super::percentile(values, 50.0),
            super::percentile(values, 90.0),
        )
    };
    let mut left: Vec<u64> = runs
        .iter()
        .map(|s| s.makespan.as_millis().try_into().unwrap_or(u64::MAX))
        .collect();
    let mut values = Vec::with_capacity(runs.len());
    let sites_ms = (0..plan.sites.len())
        .map(|s| {
            values.clear();
            values.extend(runs.iter().map(|r| r.site_done_ms[s]));
            spread(&mut values)
        })
        .collect();
    Ranges {
        left_ms: spread(&mut left),
        sites_ms,
    }
}
