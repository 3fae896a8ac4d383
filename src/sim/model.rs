//! How long steps take. By default, the workflow's estimates (for `sleep` steps, the sleep they
//! will actually do). With history — ledgers of earlier runs or drills — each (step kind,
//! product) group is fitted on two things a step's duration depends on:
//!
//! - **its size**: `a + b × expected`, the step's estimate standing for its size (the estimate
//!   is linear in the size attribute, so this is linear in the size with an intercept of the
//!   machine's own); a group without spread in size gets its mean;
//! - **what runs beside it**: steps share the CPU, the disk and the network. On the reference
//!   platform a validation took 1.9× as long beside eight restores as beside none, while 32
//!   fetches beside it cost nothing. So the ratio of each step's duration to its size line is
//!   fitted as `c + Σ d_p × n_p`: `n_p` the units of pool `p` in use when it started (and the
//!   steps holding no pool), recovered from the ledger's start and end times, `d_p ≥ 0`. The
//!   simulator applies it at each step's start, so a forecast at other capacities, or the phase
//!   of a run when the restores have finished and validations have the machine to themselves,
//!   speeds or slows steps as they did.
//!
//! Least squares keeps each group's total: a pool-bound restore takes Σ work ÷ capacity, so the
//! forecast uses the mean, not the median (skewed durations made a median-based forecast 6–12 %
//! short). A group with too little history borrows its kind's fit; a kind with none, the ratio
//! of everything learned to its estimates. Trials draw from the group's own recorded ratios to
//! the fit (its real spread and skew). docs/estimate.md has the measurements.

use std::collections::HashMap;

use rand::{Rng, RngExt};

use crate::events::Progress;
use crate::ledger::{StepRecord, StepState};
use crate::plan::{Owner, Plan, StepIdx};

/// Log-normal noise (σ of ln) for a group without history.
pub const DEFAULT_SIGMA: f64 = 0.15;

/// A group's own fit is used from this many steps on; before, its kind's.
const MIN_SAMPLES: usize = 3;

/// Steps per coefficient of a load line.
const MIN_PER_COEFFICIENT: usize = 20;

/// Points a group keeps for its fit: evenly thinned beyond this, so that refitting a large run's
/// ETA every few seconds stays cheap.
pub(crate) const MAX_FIT_POINTS: usize = 4096;

/// Recorded ratios kept per group for trials.
const KEPT_RATIOS: usize = 256;

/// (step kind, product)
pub type Group = (String, Option<String>);

/// The load coordinate of the steps holding no pool.
pub const NO_POOL: &str = "(no pool)";

/// One finished step: expected ms, actual ms, and what ran when it started.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub expected: f64,
    /// What the shared unit the step works in (its shard) held when it started, in expected
    /// ms of the data restored into it (`Units`); 0 if none.
    pub shared: f64,
    pub actual: f64,
    /// Per load coordinate (`DurationModel::coordinates`): units in use when it started.
    pub load: Vec<f32>,
    /// Recorded by a drill: a sample of sites restored beside every other tenant of their
    /// shards, so `shared` (what the drill restored into the shard) under-counts the shard.
    pub sampled: bool,
    /// For a drill's step, its shard (the shared step's id): the drill ran beside the whole
    /// shard, so what the shard held is taken from the request being forecast, by this name.
    pub unit: Option<std::sync::Arc<str>>,
}

#[derive(Clone, Debug, Default)]
pub struct DurationModel {
    /// Load coordinates: pool names, and `NO_POOL`.
    coordinates: Vec<String>,
    /// Per group, at most `MAX_FIT_POINTS` points, evenly thinned.
    points: HashMap<Group, Vec<Point>>,
    /// Per group, how many steps the points stand for.
    counts: HashMap<Group, usize>,
    groups: HashMap<Group, Fit>,
    /// Per step kind, over every product: for a group without history of its own.
    kinds: HashMap<String, Fit>,
    /// Σ actual ÷ Σ expected over everything: for a kind without history.
    overall: Option<f64>,
    evidence: Vec<Evidence>,
    /// Drill points already resolved against a plan's shards (`resolved_for`).
    resolved: bool,
}

/// One group's fit: mean duration = (a + b × expected + s × shard) × (c + Σ d_p × n_p).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Fit {
    pub samples: usize,
    /// ms
    pub intercept: f64,
    pub slope: f64,
    /// ms per expected ms of data its shared unit holds when it starts (its shard: integrity
    /// checks, full-text scans and neighbour digests read the whole live shard, not the site).
    pub shared_slope: f64,
    /// The most the shard term counts. With points from drills, the fullest shard seen: never
    /// extrapolated beyond. From runs, twice that: a larger platform has fuller shards than its
    /// history saw, and they cost more (a 1.5x larger one had a shard of 262 GB against 182 GB),
    /// but a line fitted on one run is not trusted far beyond its data (one fitted slope once
    /// forecast a 1.5x larger restore 89 % long).
    pub shared_max: f64,
    /// Learned from drills (some of its points came from one).
    pub drilled: bool,
    /// `[c, d per load coordinate…]`.
    pub load: Vec<f64>,
    /// The factors the load line gave the steps it was fitted on: never extrapolated beyond
    /// (a line fitted while one pool was always full is not trusted where it never was).
    pub factor_range: (f64, f64),
    /// Actual ÷ fitted of the recorded steps, sorted (a sample of at most `KEPT_RATIOS`).
    #[serde(skip)]
    pub ratios: Vec<f64>,
}

/// One ledger that a model learned from.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Evidence {
    /// Where it came from (the ledger's path, as given).
    pub source: String,
    /// `run` or `drill`.
    pub kind: &'static str,
    /// Succeeded steps with their times.
    pub steps: usize,
    /// When its last step ended, ms since the epoch.
    pub ended_at_ms: Option<i64>,
}

/// A ledger to learn from.
pub struct History<'a> {
    pub source: String,
    pub kind: &'static str,
    pub plan: &'a Plan,
    pub records: &'a [StepRecord],
}

/// Step durations for a simulation of one plan: step `i` takes `(base_ms[i] + c × what its
/// shared unit holds) × noise[i]` (`c` and its cap from its fit) × its load line's factor for
/// what runs when it starts.
#[derive(Clone, Debug, Default)]
pub struct Durations {
    base_ms: Vec<f64>,
    noise: Vec<f32>,
    line: Vec<u32>,
    /// `[c, d per plan pool…, d for steps holding no pool]`; line 0 is the constant 1.
    lines: Vec<Vec<f64>>,
    /// Per line, the factors it may give (`Fit::factor_range`).
    ranges: Vec<(f64, f64)>,
    /// Per line: ms per expected ms its unit holds, the most it counts (`Fit::shared_max`),
    /// and whether it was learned from drills (`Fit::drilled`).
    shared: Vec<(f64, f64, bool)>,
    pub units: Units,
}

impl Durations {
    /// Durations that do not depend on what runs beside them.
    pub fn fixed(ms: &[u64]) -> Durations {
        Durations {
            base_ms: ms.iter().map(|&m| m as f64).collect(),
            noise: vec![1.0; ms.len()],
            line: vec![0; ms.len()],
            lines: vec![vec![1.0]],
            ranges: vec![(1.0, 1.0)],
            shared: vec![(0.0, 0.0, false)],
            units: Units::default(),
        }
    }

    /// Step `idx`'s duration when it starts with `now` running (itself included) and its
    /// shared unit holding what `fill` says.
    pub fn at(&self, idx: StepIdx, now: &Progress, fill: &[f64]) -> u64 {
        let i = idx as usize;
        let line = self.line[i] as usize;
        let l = &self.lines[line];
        let mut factor = l[0];
        let mut pooled = 0usize;
        for (p, &units) in now.pools_in_use.iter().enumerate() {
            factor += l.get(1 + p).copied().unwrap_or(0.0) * units as f64;
            pooled += units as usize;
        }
        let free = now.running.saturating_sub(pooled);
        factor += l.get(1 + now.pools_in_use.len()).copied().unwrap_or(0.0) * free as f64;
        let (lo, hi) = self.ranges[line];
        let (per, cap, drilled) = self.shared[line];
        let held = if per == 0.0 {
            0.0
        } else if drilled {
            // A drill's steps ran beside whole shards: from a drill alone, the part of their
            // cost that follows what a shard holds cannot be told from the part that follows
            // its file (the pages an integrity check reads, deleted tenants' free ones too).
            // Half of each.
            (0.5 * (self.units.now(idx, fill) + self.units.whole(idx))).min(cap)
        } else {
            self.units.now(idx, fill).min(cap)
        };
        let size = (self.base_ms[i] + per * held).max(1.0) * self.noise[i] as f64;
        (size * factor.clamp(lo, hi)) as u64
    }
}

/// The load factor never falls below this (a fitted line is not trusted to zero).
const MIN_FACTOR: f64 = 0.05;

impl DurationModel {
    /// Learns from finished steps of earlier runs or drills.
    pub fn learn(history: &[History<'_>]) -> DurationModel {
        let mut model = DurationModel::default();
        for h in history {
            model.add_coordinates(h.plan);
            let mut points = model.points_from(h.plan, h.records);
            if h.kind == "drill" {
                let names = Units::of(h.plan).names(h.plan);
                let mut named = model.points_from_named(h.plan, h.records, &names);
                named.values_mut().flatten().for_each(|p| p.sampled = true);
                points = named;
            }
            model.evidence.push(Evidence {
                source: h.source.clone(),
                kind: h.kind,
                steps: points.values().map(Vec::len).sum(),
                ended_at_ms: h
                    .records
                    .iter()
                    .filter(|r| r.state == StepState::Succeeded)
                    .filter_map(|r| r.ended_at)
                    .max(),
            });
            model.add(points);
        }
        model.fitted()
    }

    /// Adds points, thinning each group to `MAX_FIT_POINTS`.
    fn add(&mut self, points: HashMap<Group, Vec<Point>>) {
        for (g, pts) in points {
            *self.counts.entry(g.clone()).or_default() += pts.len();
            let kept = self.points.entry(g).or_default();
            kept.extend(pts);
            thin(kept);
        }
    }

    /// Adds the load coordinates of `plan`'s pools (and of steps holding none).
    fn add_coordinates(&mut self, plan: &Plan) {
        for p in &plan.pools {
            if !self.coordinates.contains(&p.name) {
                self.coordinates.push(p.name.clone());
            }
        }
        if !self.coordinates.iter().any(|c| c == NO_POOL) {
            self.coordinates.push(NO_POOL.to_owned());
        }
    }

    /// This model, able to take points of `plan` (its pools are load coordinates).
    pub fn for_plan(&self, plan: &Plan) -> DurationModel {
        let mut m = self.clone();
        m.add_coordinates(plan);
        m
    }

    /// The succeeded steps of `records` (of `plan`, whose pools must be coordinates) as points.
    pub fn points_from(&self, plan: &Plan, records: &[StepRecord]) -> HashMap<Group, Vec<Point>> {
        self.points_from_named(plan, records, &[])
    }

    /// As `points_from`, each point naming its shard from `names` (per step; empty: none).
    fn points_from_named(
        &self,
        plan: &Plan,
        records: &[StepRecord],
        names: &[Option<std::sync::Arc<str>>],
    ) -> HashMap<Group, Vec<Point>> {
        let loads = loads_at_starts(plan, records);
        let shared = Units::of(plan).at_starts(records);
        let mut out: HashMap<Group, Vec<Point>> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            let (Some(start), Some(end)) = (r.started_at, r.ended_at) else {
                continue;
            };
            if r.state != StepState::Succeeded || end < start {
                continue;
            }
            out.entry(group(plan, i as StepIdx))
                .or_default()
                .push(Point {
                    unit: names.get(i).cloned().flatten(),
                    ..self.point(
                        plan,
                        i as StepIdx,
                        shared[i],
                        (end - start) as f64,
                        &loads[i],
                    )
                });
        }
        out
    }

    /// What runs at a moment of a run of `plan` (`Progress` of its core), as load per plan pool
    /// then the steps holding no pool.
    pub fn load_now(now: &Progress) -> Vec<f32> {
        let pooled: u32 = now.pools_in_use.iter().sum();
        now.pools_in_use
            .iter()
            .map(|&u| u as f32)
            .chain(std::iter::once(
                now.running.saturating_sub(pooled as usize) as f32
            ))
            .collect()
    }

    /// A finished step of `plan` that took `actual_ms`, with `load` (per plan pool, then the
    /// steps holding none) when it started.
    pub fn point(
        &self,
        plan: &Plan,
        idx: StepIdx,
        shared: f64,
        actual_ms: f64,
        load: &[f32],
    ) -> Point {
        let mut l = vec![0.0f32; self.coordinates.len()];
        for (p, &units) in load.iter().enumerate() {
            let name = plan.pools.get(p).map_or(NO_POOL, |pool| pool.name.as_str());
            if let Some(c) = self.coordinates.iter().position(|c| c == name) {
                l[c] += units;
            }
        }
        Point {
            expected: expected_ms(plan, idx) as f64,
            shared,
            actual: actual_ms,
            load: l,
            sampled: false,
            unit: None,
        }
    }

    /// This model with more evidence: steps of a run under way (made by `point` on a model
    /// from `for_plan`). How `drover run` corrects its ETA as steps finish: one fit over the
    /// history and the run's own steps.
    pub fn with(&self, extra: &HashMap<Group, Vec<Point>>) -> DurationModel {
        let mut m = DurationModel {
            coordinates: self.coordinates.clone(),
            points: self.points.clone(),
            counts: self.counts.clone(),
            evidence: self.evidence.clone(),
            ..DurationModel::default()
        };
        m.add(extra.clone());
        m.fitted()
    }

    /// Fits every group, every kind, and the overall ratio from `points`.
    fn fitted(mut self) -> DurationModel {
        let n = self.coordinates.len();
        for pts in self.points.values_mut() {
            for p in pts {
                p.load.resize(n, 0.0);
            }
        }
        let mut by_kind: HashMap<String, Vec<Point>> = HashMap::new();
        let (mut actual, mut expected) = (0.0, 0.0);
        for ((kind, _), pts) in &self.points {
            by_kind
                .entry(kind.clone())
                .or_default()
                .extend_from_slice(pts);
            for p in pts {
                expected += p.expected;
                actual += p.actual;
            }
        }
        // A kind's steps slow down alike beside the same work, whatever their product: one load
        // line per kind, and a size line per group under it.
        self.groups.clear();
        self.kinds.clear();
        for (kind, pts) in &by_kind {
            let groups: Vec<(&Group, &Vec<Point>)> =
                self.points.iter().filter(|(g, _)| g.0 == *kind).collect();
            let (kind_fit, group_fits) = fit_kind(&groups, pts, n);
            self.kinds.insert(kind.clone(), kind_fit);
            for (g, mut fit) in group_fits {
                fit.samples = self.counts.get(&g).copied().unwrap_or(fit.samples);
                self.groups.insert(g, fit);
            }
        }
        self.overall = (expected > 0.0).then(|| actual / expected);
        self
    }

    /// The group of step `idx` of `plan`.
    pub fn group_of(plan: &Plan, idx: StepIdx) -> Group {
        group(plan, idx)
    }

    pub fn fits(&self) -> impl Iterator<Item = (&Group, &Fit)> {
        self.groups.iter()
    }

    /// The load coordinates a fit's `load[1..]` refer to.
    pub fn coordinates(&self) -> &[String] {
        &self.coordinates
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The ledgers learned from.
    pub fn evidence(&self) -> &[Evidence] {
        &self.evidence
    }

    /// The fit for a step of group `g`: the group's, else its kind's over other products.
    fn fit_of_group(&self, g: &Group) -> Option<&Fit> {
        self.groups
            .get(g)
            .filter(|f| f.samples >= MIN_SAMPLES)
            .or_else(|| self.kinds.get(&g.0))
    }

    /// Every step's mean duration, for a simulation: by its group's fit, else its kind's, else
    /// the workflow's estimate scaled by how everything learned compares with its estimates.
    pub fn durations(&self, plan: &Plan) -> Durations {
        self.durations_with(plan, |_, _| 1.0)
    }

    /// `durations` with every step `ratio` times as long.
    pub fn durations_scaled(&self, plan: &Plan, ratio: f64) -> Durations {
        self.durations_with(plan, |_, _| ratio)
    }

    /// Random durations around the mean: a recorded ratio of the step's group, or log-normal
    /// noise with the same mean for a group without history. For Monte Carlo trials.
    pub fn sample(&self, plan: &Plan, rng: &mut impl Rng) -> Durations {
        self.durations_with(plan, |fit, _| match fit {
            Some(f) if !f.ratios.is_empty() => f.ratios[rng.random_range(0..f.ratios.len())],
            _ => {
                let z = crate::generate::normal(rng);
                (DEFAULT_SIGMA * z - DEFAULT_SIGMA * DEFAULT_SIGMA / 2.0).exp()
            }
        })
    }

    /// Drill points ran beside whole shards: what their shard held is the whole shard as
    /// `plan`'s request sees it (by the shard's name; a shard it does not name keeps what the
    /// drill restored). Refitted; `None` if there are no drill points.
    fn resolved_for(&self, plan: &Plan) -> Option<DurationModel> {
        if self.resolved || !self.points.values().flatten().any(|p| p.unit.is_some()) {
            return None;
        }
        let units = Units::of(plan);
        let whole: HashMap<std::sync::Arc<str>, f64> = units
            .names(plan)
            .into_iter()
            .enumerate()
            .filter_map(|(i, name)| Some((name?, units.whole(i as StepIdx))))
            .collect();
        let mut m = self.clone();
        for p in m.points.values_mut().flatten() {
            if let Some(w) = p.unit.as_ref().and_then(|u| whole.get(u)) {
                p.shared = *w;
            }
        }
        let mut m = m.fitted();
        m.resolved = true;
        Some(m)
    }

    fn durations_with(
        &self,
        plan: &Plan,
        mut noise: impl FnMut(Option<&Fit>, StepIdx) -> f64,
    ) -> Durations {
        if let Some(m) = self.resolved_for(plan) {
            return m.durations_with(plan, noise);
        }
        // Each fit's load line, in plan pool order (then the steps holding no pool).
        let mut lines: Vec<Vec<f64>> = vec![vec![1.0]];
        let mut ranges: Vec<(f64, f64)> = vec![(1.0, 1.0)];
        let mut shared: Vec<(f64, f64, bool)> = vec![(0.0, 0.0, false)];
        let mut line_of: HashMap<*const Fit, u32> = HashMap::new();
        let coordinate = |name: &str| self.coordinates.iter().position(|c| c == name);
        let columns: Vec<Option<usize>> = plan
            .pools
            .iter()
            .map(|p| coordinate(&p.name))
            .chain(std::iter::once(coordinate(NO_POOL)))
            .collect();
        let n = plan.steps.len();
        let mut out = Durations {
            base_ms: Vec::with_capacity(n),
            noise: Vec::with_capacity(n),
            line: Vec::with_capacity(n),
            ..Durations::default()
        };
        // A step's group is its template's kind and its product: looked up once per pair, not
        // once per step (a group is two strings; 2.8 million lookups took half a second).
        let mut fits: HashMap<(u16, Option<u16>), Option<&Fit>> = HashMap::new();
        for i in 0..n as StepIdx {
            let expected = expected_ms(plan, i) as f64;
            let step = &plan.steps[i as usize];
            let fit = *fits
                .entry((step.template, product_of(step)))
                .or_insert_with(|| self.fit_of_group(&group(plan, i)));
            let (base, line) = match fit {
                Some(f) => {
                    let line =
                        *line_of.entry(f as *const Fit).or_insert_with(|| {
                            let mut l = vec![f.load[0]];
                            l.extend(columns.iter().map(|c| {
                                c.and_then(|c| f.load.get(1 + c)).copied().unwrap_or(0.0)
                            }));
                            lines.push(l);
                            ranges.push(f.factor_range);
                            shared.push((f.shared_slope, f.shared_max, f.drilled));
                            (lines.len() - 1) as u32
                        });
                    (f.intercept + f.slope * expected, line)
                }
                None => (expected * self.overall.unwrap_or(1.0), 0),
            };
            out.base_ms.push(base);
            out.noise.push(noise(fit, i) as f32);
            out.line.push(line);
        }
        // What the shards hold is tracked only for a model with a shard term (a fit learned
        // from history): with none, no duration depends on it, and finding every step's shard
        // in 2.8 million steps takes half a second.
        if shared.iter().any(|&(per, _, _)| per != 0.0) {
            out.units = Units::of(plan);
        }
        out.lines = lines;
        out.ranges = ranges;
        out.shared = shared;
        out
    }
}

impl Fit {
    /// The size part: mean duration at load factor 1.
    fn size(&self, expected: f64, shared: f64) -> f64 {
        let shared = shared.min(self.shared_max);
        (self.intercept + self.slope * expected + self.shared_slope * shared).max(1.0)
    }

    fn factor(&self, load: &[f32]) -> f64 {
        let f = self.load[0]
            + load
                .iter()
                .zip(&self.load[1..])
                .map(|(&n, d)| n as f64 * d)
                .sum::<f64>();
        f.clamp(self.factor_range.0, self.factor_range.1)
    }

    fn at(&self, p: &Point) -> f64 {
        self.size(p.expected, p.shared) * self.factor(&p.load)
    }
}

/// Keeps at most `MAX_FIT_POINTS` of `points`, evenly spaced.
pub(crate) fn thin(points: &mut Vec<Point>) {
    if points.len() > MAX_FIT_POINTS {
        let step = points.len() as f64 / MAX_FIT_POINTS as f64;
        *points = (0..MAX_FIT_POINTS)
            .map(|k| points[(k as f64 * step) as usize].clone())
            .collect();
    }
}

/// For each record, the units of each of `plan`'s pools in use when it started (itself
/// included), then the steps holding no pool.
fn loads_at_starts(plan: &Plan, records: &[StepRecord]) -> Vec<Vec<f32>> {
    let pools = plan.pools.len();
    // (time, +1 start / -1 end, step)
    let mut changes: Vec<(i64, i8, usize)> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if let (Some(s), Some(e)) = (r.started_at, r.ended_at) {
            changes.push((s, 1, i));
            changes.push((e, -1, i));
        }
    }
    // Ends before starts at the same instant: a step that ended as another started was not
    // running beside it.
    changes.sort_unstable();
    let mut level = vec![0f32; pools + 1];
    let mut out = vec![Vec::new(); records.len()];
    for &(_, d, i) in &changes {
        let uses = &plan.steps[i].uses;
        if uses.is_empty() {
            level[pools] += d as f32;
        }
        for &(p, units) in uses {
            level[p as usize] += d as f32 * units as f32;
        }
        if d > 0 {
            out[i] = level.clone();
        }
    }
    out
}

/// `duration = (a + b × expected) × (c + Σ d_p × n_p)` for one kind's `groups` (`all`: their
/// points together): by turns, each group's size line by least squares under the kind's load
/// line, and the kind's load line (non-negative coefficients) on the ratios to the size lines.
/// Returns the kind's own fit (one size line over every product, for a group without history)
/// and each group's.
fn fit_kind(
    groups: &[(&Group, &Vec<Point>)],
    all: &[Point],
    coordinates: usize,
) -> (Fit, Vec<(Group, Fit)>) {
    // A load line needs many steps per coefficient, or it fits the noise of the first few.
    let load_fitted = all.len() >= MIN_PER_COEFFICIENT * (coordinates + 1);
    let mut load = vec![0.0; coordinates + 1];
    load[0] = 1.0;
    let factor = |load: &[f64], p: &Point| {
        let f = load[0]
            + p.load
                .iter()
                .zip(&load[1..])
                .map(|(&n, d)| n as f64 * d)
                .sum::<f64>();
        f.max(MIN_FACTOR)
    };
    // Each group's size line: its own size, and what its shared unit (its shard) held when it
    // started. A group of few steps from drills takes its kind's shard slope (`shard`): a
    // drill's steps all count as holding their whole shard, so a drill of ten sites gives each
    // group ten points over a handful of values, and a slope fitted on those swung the demo's
    // forecast from 0.6x to 1.4x its restore. A run's steps see their shard fill, so a group
    // of a run has a slope of its own.
    let size_line = |pts: &[Point], load: &[f64], shard: Option<f64>| -> [f64; 3] {
        let rows: Vec<(Vec<f64>, f64)> = pts
            .iter()
            .map(|p| {
                let y = p.actual / factor(load, p) - shard.map_or(0.0, |c| c * p.shared);
                (vec![1.0, p.expected, p.shared], y)
            })
            .collect();
        match shard {
            None => {
                let x = nonnegative_least_squares(&rows, &[false, true, true]);
                [x[0], x[1], x[2]]
            }
            Some(c) => {
                let rows: Vec<(Vec<f64>, f64)> = rows
                    .into_iter()
                    .map(|(x, y)| (x[..2].to_vec(), y))
                    .collect();
                let x = nonnegative_least_squares(&rows, &[false, true]);
                [x[0], x[1], c]
            }
        }
    };
    let mut lines: Vec<[f64; 3]> = vec![[1.0, 0.0, 0.0]; groups.len()];
    let mut kind_line = [1.0, 0.0, 0.0];
    for _ in 0..4 {
        kind_line = size_line(all, &load, None);
        for (line, (_, pts)) in lines.iter_mut().zip(groups) {
            let own = pts.len() >= MIN_PER_COEFFICIENT * 3 || !pts.iter().any(|p| p.sampled);
            *line = size_line(pts, &load, (!own).then_some(kind_line[2]));
        }
        let rows: Vec<(Vec<f64>, f64)> = lines
            .iter()
            .zip(groups)
            .flat_map(|(&[a, b, c], (_, pts))| {
                pts.iter().map(move |p| {
                    let mut x = Vec::with_capacity(coordinates + 1);
                    x.push(1.0);
                    x.extend(p.load.iter().map(|&n| n as f64));
                    (x, p.actual / (a + b * p.expected + c * p.shared).max(1.0))
                })
            })
            .collect();
        if load_fitted {
            let mut constrained = vec![true; coordinates + 1];
            constrained[0] = false;
            load = nonnegative_least_squares(&rows, &constrained);
        } else {
            load[0] = rows.iter().map(|r| r.1).sum::<f64>() / rows.len().max(1) as f64;
        }
    }
    let range = all
        .iter()
        .map(|p| factor(&load, p))
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), f| {
            (lo.min(f), hi.max(f))
        });
    let range = if range.0 <= range.1 {
        range
    } else {
        (1.0, 1.0)
    };
    let finish = |pts: &[Point], line: [f64; 3]| {
        let mut f = finish(pts, line, &load);
        f.factor_range = range;
        // Least squares keeps the total; a fit that does not has failed numerically (or on a
        // degenerate group): its mean instead.
        let (fitted, actual) = pts
            .iter()
            .fold((0.0, 0.0), |(f_, a), p| (f_ + f.at(p), a + p.actual));
        if !(actual <= 0.0 || (0.67..=1.5).contains(&(fitted / actual))) {
            let mean = pts.iter().map(|p| p.actual / factor(&load, p)).sum::<f64>()
                / pts.len().max(1) as f64;
            f = finish(pts, [mean, 0.0, 0.0], &load);
            f.factor_range = range;
        }
        f
    };
    let kind = finish(all, kind_line);
    let fits = groups
        .iter()
        .zip(lines)
        .map(|((g, pts), line)| ((*g).clone(), finish(pts, line)))
        .collect();
    (kind, fits)
}

/// A fit from its lines, with the recorded ratios to it for trials.
fn finish(points: &[Point], [intercept, slope, shared_slope]: [f64; 3], load: &[f64]) -> Fit {
    let mut f = Fit {
        samples: points.len(),
        intercept,
        slope,
        shared_slope,
        drilled: points.iter().any(|p| p.sampled),
        shared_max: {
            let most = points.iter().map(|p| p.shared).fold(0.0, f64::max);
            if points.iter().any(|p| p.sampled) {
                most
            } else {
                2.0 * most
            }
        },
        load: load.to_vec(),
        factor_range: (MIN_FACTOR, f64::INFINITY),
        ratios: Vec::new(),
    };
    let mut ratios: Vec<f64> = points
        .iter()
        .map(|p| p.actual / f.at(p).max(1.0))
        .filter(|r| r.is_finite() && *r > 0.0)
        .collect();
    ratios.sort_by(f64::total_cmp);
    if ratios.len() > KEPT_RATIOS {
        // Evenly spaced quantiles keep the distribution's shape.
        let step = ratios.len() as f64 / KEPT_RATIOS as f64;
        ratios = (0..KEPT_RATIOS)
            .map(|k| ratios[((k as f64 + 0.5) * step) as usize])
            .collect();
    }
    // Drawing these keeps the mean only if they average 1.
    let mean = ratios.iter().sum::<f64>() / ratios.len().max(1) as f64;
    if mean > 0.0 {
        ratios.iter_mut().for_each(|r| *r /= mean);
    }
    f.ratios = ratios;
    f
}

/// Least squares `y ≈ Σ c_k × x_k`, the coefficients marked `constrained` kept ≥ 0 (a variable
/// whose coefficient would be negative is dropped and the rest refitted). A variable without
/// spread, or too few rows, leaves the mean in the first (unconstrained intercept) coefficient.
fn nonnegative_least_squares(rows: &[(Vec<f64>, f64)], constrained: &[bool]) -> Vec<f64> {
    let k = constrained.len();
    let mut active: Vec<usize> = (0..k).collect();
    let mut out = vec![0.0; k];
    if rows.len() < 3 {
        out[0] = rows.iter().map(|r| r.1).sum::<f64>() / rows.len().max(1) as f64;
        return out;
    }
    // Every column (and y) scaled to a root mean square of 1: estimates in ms squared reach
    // 10^12, and normal equations of such columns lose every digit of the small ones.
    let rms = |v: &mut dyn Iterator<Item = f64>| {
        let (sum, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x * x, n + 1));
        let r = (sum / n.max(1) as f64).sqrt();
        if r > 0.0 && r.is_finite() { r } else { 1.0 }
    };
    let col_scale: Vec<f64> = (0..k)
        .map(|j| rms(&mut rows.iter().map(|r| r.0.get(j).copied().unwrap_or(0.0))))
        .collect();
    let y_scale = rms(&mut rows.iter().map(|r| r.1));
    let scaled: Vec<(Vec<f64>, f64)> = rows
        .iter()
        .map(|(x, y)| {
            let x = (0..k)
                .map(|j| x.get(j).copied().unwrap_or(0.0) / col_scale[j])
                .collect();
            (x, y / y_scale)
        })
        .collect();
    let rows = &scaled;
    loop {
        let Some(c) = solve_normal(rows, &active) else {
            // Singular: drop the last variable (never the intercept) and try again.
            if active.len() <= 1 {
                out[0] = rows.iter().map(|r| r.1).sum::<f64>() / rows.len() as f64 * y_scale;
                return out;
            }
            active.pop();
            continue;
        };
        let negative: Vec<usize> = active
            .iter()
            .zip(&c)
            .filter(|(v, c)| constrained[**v] && **c < 0.0)
            .map(|(v, _)| *v)
            .collect();
        if negative.is_empty() {
            out.iter_mut().for_each(|o| *o = 0.0);
            for (v, c) in active.iter().zip(c) {
                out[*v] = c * y_scale / col_scale[*v];
            }
            return out;
        }
        active.retain(|v| !negative.contains(v));
    }
}

/// Solves the normal equations of `rows` over the variables `vars`, by Gaussian elimination with
/// partial pivoting; `None` when they are (nearly) singular.
fn solve_normal(rows: &[(Vec<f64>, f64)], vars: &[usize]) -> Option<Vec<f64>> {
    let k = vars.len();
    let mut a = vec![vec![0.0; k + 1]; k];
    for (x, y) in rows {
        for (i, &vi) in vars.iter().enumerate() {
            let xi = x.get(vi).copied().unwrap_or(0.0);
            for (j, &vj) in vars.iter().enumerate() {
                a[i][j] += xi * x.get(vj).copied().unwrap_or(0.0);
            }
            a[i][k] += xi * y;
        }
    }
    let scale = a
        .iter()
        .map(|r| r[..k].iter().fold(0.0f64, |m, v| m.max(v.abs())))
        .fold(0.0, f64::max);
    for col in 0..k {
        let pivot = (col..k).max_by(|&r, &s| a[r][col].abs().total_cmp(&a[s][col].abs()))?;
        if a[pivot][col].abs() <= 1e-9 * scale.max(1e-300) {
            return None;
        }
        a.swap(col, pivot);
        let pivot_row = a[col].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != col {
                let m = row[col] / pivot_row[col];
                for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                    *x -= m * p;
                }
            }
        }
    }
    Some((0..k).map(|i| a[i][k] / a[i][i]).collect())
}

/// What a step is expected to take before any history: its estimate, or for `sleep` steps the
/// sleep its params ask for.
pub fn expected_ms(plan: &Plan, idx: StepIdx) -> u64 {
    let step = &plan.steps[idx as usize];
    let estimate = crate::limits::millis(step.estimate);
    if plan.kind(step) != "sleep" {
        return estimate;
    }
    let base = step
        .params
        .get("duration")
        .and_then(|d| humantime::parse_duration(d).ok())
        .map_or(estimate, crate::limits::millis);
    let scale = step
        .params
        .get("scale")
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.0);
    (base as f64 * scale) as u64
}

/// The shared units (shards) steps work in, and what each holds as a run goes on. A unit holds
/// what the first step of each of its chains restored into it (that step's expected ms: a
/// tenant's restore). On the reference platform a restore's neighbour digest and a validation's
/// integrity check read the whole live shard, so they cost what the shard holds *when they
/// start*: with sites in turn a shard fills as its sites come back; with every restore first,
/// every validation reads a full shard. Measured: the same 240-site restore took 32 s with
/// sites in turn and 43 s in ready order.
#[derive(Clone, Debug, Default)]
pub struct Units {
    /// Per step: its unit (dense index), or `NO_UNIT`. A step works in the unit of the shared
    /// step it depends on directly (the largest, if several) or of its site's earlier steps.
    unit: Vec<u32>,
    /// Per step: what it adds to its unit when it succeeds (0: nothing).
    adds: Vec<f64>,
    /// Per unit: Σ adds.
    total: Vec<f64>,
    /// The shared step of each unit → the unit.
    shared_unit: HashMap<StepIdx, u32>,
    count: usize,
}

const NO_UNIT: u32 = u32::MAX;

impl Units {
    pub fn of(plan: &Plan) -> Units {
        let succ = plan.successors();
        let order = crate::plan::rank::topological_order(plan, &succ);
        let n = plan.steps.len();
        let mut dense: HashMap<StepIdx, u32> = HashMap::new();
        let (mut unit, mut adds) = (vec![NO_UNIT; n], vec![0.0f64; n]);
        for &i in &order {
            let step = &plan.steps[i as usize];
            if matches!(step.owner, Owner::Shared { .. }) {
                continue;
            }
            let is_shared =
                |d: &&StepIdx| matches!(plan.steps[**d as usize].owner, Owner::Shared { .. });
            let direct = step
                .deps
                .iter()
                .filter(is_shared)
                .max_by_key(|&&d| (expected_ms(plan, d), std::cmp::Reverse(d)));
            let u = match direct {
                Some(&d) => {
                    let next = dense.len() as u32;
                    *dense.entry(d).or_insert(next)
                }
                None => step
                    .deps
                    .iter()
                    .map(|&d| unit[d as usize])
                    .find(|&u| u != NO_UNIT)
                    .unwrap_or(NO_UNIT),
            };
            unit[i as usize] = u;
            // The first step of its chain in this unit puts the tenant in; later ones read it.
            let first = direct.is_some()
                && !step.deps.iter().any(|&d| {
                    matches!(plan.steps[d as usize].owner, Owner::Site { .. })
                        && unit[d as usize] == u
                });
            if first {
                adds[i as usize] = expected_ms(plan, i) as f64;
            }
        }
        // What a tenant puts in a shard is its data: the part of its restore's estimate that
        // grows with its size, i.e. beyond the smallest of its template's (counting the fixed
        // part would make forty small tenants look like a full shard).
        let mut least: HashMap<u16, f64> = HashMap::new();
        for (i, &a) in adds.iter().enumerate() {
            if a > 0.0 {
                let t = plan.steps[i].template;
                let m = least.entry(t).or_insert(a);
                *m = m.min(a);
            }
        }
        for (i, a) in adds.iter_mut().enumerate() {
            if *a > 0.0 {
                *a = (*a - least[&plan.steps[i].template]).max(f64::MIN_POSITIVE);
            }
        }
        let mut total = vec![0.0; dense.len()];
        for (i, &u) in unit.iter().enumerate() {
            if u != NO_UNIT {
                total[u as usize] += adds[i];
            }
        }
        Units {
            unit,
            adds,
            total,
            count: dense.len(),
            shared_unit: dense,
        }
    }

    /// Per step, the name of its unit (the shared step's id), if it works in one.
    pub fn names(&self, plan: &Plan) -> Vec<Option<std::sync::Arc<str>>> {
        let mut by_unit: Vec<Option<std::sync::Arc<str>>> = vec![None; self.count];
        for (i, step) in plan.steps.iter().enumerate() {
            if let Owner::Shared { .. } = step.owner
                && let Some(&u) = self.shared_unit.get(&(i as StepIdx))
            {
                by_unit[u as usize] = Some(std::sync::Arc::from(step.id.as_str()));
            }
        }
        self.unit
            .iter()
            .map(|&u| {
                (u != NO_UNIT)
                    .then(|| by_unit[u as usize].clone())
                    .flatten()
            })
            .collect()
    }

    /// Everything step `idx`'s unit will hold once every step of the plan is done.
    pub fn whole(&self, idx: StepIdx) -> f64 {
        match self.unit.get(idx as usize) {
            Some(&u) if u != NO_UNIT => self.total[u as usize],
            _ => 0.0,
        }
    }

    /// What each unit holds once the succeeded steps of `states` are done.
    pub fn filled(&self, states: &[StepState]) -> Vec<f64> {
        let mut fill = vec![0.0; self.count];
        for (i, s) in states.iter().enumerate() {
            if *s == StepState::Succeeded {
                self.add(i as StepIdx, &mut fill);
            }
        }
        fill
    }

    /// Step `idx` succeeded.
    pub fn add(&self, idx: StepIdx, fill: &mut [f64]) {
        if let Some(&u) = self.unit.get(idx as usize)
            && u != NO_UNIT
        {
            fill[u as usize] += self.adds[idx as usize];
        }
    }

    /// What step `idx`'s unit holds now (0 for a step of no unit).
    pub fn now(&self, idx: StepIdx, fill: &[f64]) -> f64 {
        match self.unit.get(idx as usize) {
            Some(&u) if u != NO_UNIT => fill[u as usize],
            _ => 0.0,
        }
    }

    /// Per recorded step, what its unit held when it started: the steps that added to it and
    /// had ended by then.
    pub fn at_starts(&self, records: &[StepRecord]) -> Vec<f64> {
        let mut ends: Vec<Vec<(i64, f64)>> = vec![Vec::new(); self.count];
        for (i, r) in records.iter().enumerate() {
            if let (Some(&u), Some(end)) = (self.unit.get(i), r.ended_at)
                && u != NO_UNIT
                && r.state == StepState::Succeeded
                && self.adds[i] > 0.0
            {
                ends[u as usize].push((end, self.adds[i]));
            }
        }
        for e in &mut ends {
            e.sort_by_key(|&(t, _)| t);
            let mut sum = 0.0;
            for x in e.iter_mut() {
                sum += x.1;
                x.1 = sum;
            }
        }
        records
            .iter()
            .enumerate()
            .map(|(i, r)| match (self.unit.get(i), r.started_at) {
                (Some(&u), Some(start)) if u != NO_UNIT => {
                    let e = &ends[u as usize];
                    let k = e.partition_point(|&(t, _)| t <= start);
                    if k == 0 { 0.0 } else { e[k - 1].1 }
                }
                _ => 0.0,
            })
            .collect()
    }
}

fn group(plan: &Plan, idx: StepIdx) -> Group {
    let step = &plan.steps[idx as usize];
    (
        plan.kind(step).to_owned(),
        product_of(step).map(|p| plan.products[p as usize].clone()),
    )
}

fn product_of(step: &crate::plan::Step) -> Option<u16> {
    match step.owner {
        Owner::Site { product, .. } => product,
        Owner::Shared { product, .. } => Some(product),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(expected: f64, actual: f64, load: &[f32]) -> Point {
        Point {
            expected,
            shared: 0.0,
            actual,
            load: load.to_vec(),
            sampled: false,
            unit: None,
        }
    }

    #[test]
    fn size_and_what_runs_beside_are_recovered() {
        // 50 ms + 2 ms per expected second; each unit of the first pool in use adds an eighth,
        // the second pool's units add nothing.
        let pts: Vec<Point> = (1..=60)
            .map(|i| {
                let x = (i % 10) as f64 * 1000.0;
                let (a, b) = ((i % 3) as f32 * 4.0, (i % 5) as f32 * 8.0);
                let factor = 1.0 + 0.125 * a as f64;
                point(x, (50.0 + 0.002 * x) * factor, &[a, b])
            })
            .collect();
        let g: Group = ("k".into(), None);
        let f = fit_kind(&[(&g, &pts)], &pts, 2).0;
        let at = |x: f64, a: f32, b: f32| f.at(&point(x, 0.0, &[a, b]));
        assert!((at(5000.0, 0.0, 0.0) - 60.0).abs() < 0.5, "{f:?}");
        assert!((at(5000.0, 8.0, 0.0) - 120.0).abs() < 1.0, "{f:?}");
        assert!((at(5000.0, 8.0, 32.0) - 120.0).abs() < 1.0, "{f:?}");
    }

    #[test]
    fn skewed_durations_are_forecast_at_their_mean_not_their_median() {
        // Nine steps take 100 ms and one 1,100 ms: ten of them take 2,000 ms of a pool's time.
        let pts: Vec<Point> = (0..10)
            .map(|i| point(1000.0, if i == 9 { 1100.0 } else { 100.0 }, &[4.0]))
            .collect();
        let g: Group = ("k".into(), None);
        let f = fit_kind(&[(&g, &pts)], &pts, 1).0;
        assert!(
            (f.at(&point(1000.0, 0.0, &[4.0])) - 200.0).abs() < 1e-6,
            "{f:?}"
        );
    }

    #[test]
    fn a_coefficient_that_would_be_negative_is_dropped() {
        // y falls as x grows: no negative slope, the mean instead.
        let rows: Vec<(Vec<f64>, f64)> = (0..10)
            .map(|i| (vec![1.0, i as f64], 100.0 - i as f64))
            .collect();
        let c = nonnegative_least_squares(&rows, &[false, true]);
        assert_eq!(c[1], 0.0);
        assert!((c[0] - 95.5).abs() < 1e-9, "{c:?}");
    }
}
