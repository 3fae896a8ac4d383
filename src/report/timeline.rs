//! The timeline model: plain data that `report::html` draws without knowing where it came from.
//! A run's ledger records become one through `Timeline::from_run`; a simulated schedule becomes
//! one the same way — a `Bar` per step that ran, in the lane `Lanes` gives it, times in ms from
//! the start.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::ledger::{StepRecord, StepState, format_ms};
use crate::plan::{Owner, Plan, Step};
use crate::status::{SiteState, count_sites, site_states};

use super::human_ms;

/// What one lane of the chart stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LaneMode {
    /// A lane per site, after a lane per shared unit (`shard/wiki-3`).
    Site,
    /// A lane per pool; a step is drawn in the first pool it uses, or in `(no pool)`.
    Pool,
}

impl LaneMode {
    /// Up to this many sites, a lane per site stays legible.
    pub const MAX_SITE_LANES: usize = 300;

    /// A lane per site for up to [`Self::MAX_SITE_LANES`] sites, else a lane per pool.
    pub fn auto(plan: &Plan) -> LaneMode {
        if plan.sites.len() <= Self::MAX_SITE_LANES {
            LaneMode::Site
        } else {
            LaneMode::Pool
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LaneMode::Site => "site",
            LaneMode::Pool => "pool",
        }
    }
}

/// The lane of a step that holds no pool, in [`LaneMode::Pool`].
pub const NO_POOL: &str = "(no pool)";

/// The lanes of a plan's chart, and the lane of each of its steps.
#[derive(Clone, Debug)]
pub struct Lanes {
    pub names: Vec<String>,
    /// By step index: an index into `names`.
    pub of_step: Vec<usize>,
}

impl Lanes {
    pub fn new(plan: &Plan, mode: LaneMode) -> Lanes {
        match mode {
            LaneMode::Site => by_site(plan),
            LaneMode::Pool => by_pool(plan),
        }
    }
}

/// Shared units first, in plan order (their steps usually run first), then sites in plan order.
fn by_site(plan: &Plan) -> Lanes {
    let mut names = Vec::new();
    let mut units = HashMap::new();
    for step in &plan.steps {
        if let Owner::Shared {
            attribute, unit, ..
        } = &step.owner
        {
            units.entry((attribute, unit)).or_insert_with(|| {
                names.push(format!("{attribute}/{unit}"));
                names.len() - 1
            });
        }
    }
    let first_site = names.len();
    names.extend(plan.sites.iter().map(|s| s.id.to_string()));
    let of_step = plan
        .steps
        .iter()
        .map(|step| match &step.owner {
            Owner::Site { site, .. } => first_site + *site as usize,
            Owner::Shared {
                attribute, unit, ..
            } => units[&(attribute, unit)],
        })
        .collect();
    Lanes { names, of_step }
}

fn by_pool(plan: &Plan) -> Lanes {
    let mut names: Vec<String> = plan.pools.iter().map(|p| p.name.clone()).collect();
    let none = names.len();
    let of_step: Vec<usize> = plan
        .steps
        .iter()
        .map(|s| s.uses.first().map_or(none, |&(pool, _)| pool as usize))
        .collect();
    if of_step.contains(&none) {
        names.push(NO_POOL.to_owned());
    }
    Lanes { names, of_step }
}

/// Everything a report draws. Times are milliseconds from the start (the first step's start).
#[derive(Clone, Debug, Serialize)]
pub struct Timeline {
    pub title: String,
    pub subtitle: String,
    pub lane_mode: LaneMode,
    pub lanes: Vec<String>,
    /// Products in plan order: the legend, and the order colours are given in.
    pub products: Vec<String>,
    /// One per step that started; steps that never did (pending, blocked) have none.
    pub bars: Vec<Bar>,
    /// From the start to the last recorded end.
    pub span_ms: u64,
    /// The wall-clock time of 0 ms (RFC 3339), when the timeline is of a real run.
    pub origin: Option<String>,
    /// Step IDs along the critical path, first to last: for a real run the chain that actually
    /// ended last (see [`actual_critical_path`]); for a forecast the plan's critical path.
    pub critical: Vec<String>,
    /// Every site, slowest first: those not restored, then by restore time.
    pub sites: Vec<SiteRow>,
    pub failures: Vec<FailureRow>,
    /// For a forecast (`drover estimate --html`): pool use over time and per-site ranges,
    /// drawn instead of the run's outcomes and failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastView>,
}

/// What a forecast shows that a run does not.
#[derive(Clone, Debug, Serialize)]
pub struct ForecastView {
    pub pools: Vec<PoolUse>,
    /// Slowest p90 first.
    pub ranges: Vec<SiteRange>,
    pub trials: u32,
}

/// One pool's units in use over the simulated time.
#[derive(Clone, Debug, Serialize)]
pub struct PoolUse {
    pub name: String,
    pub capacity: u32,
    /// `(ms, units in use from then)`, in time order.
    pub steps: Vec<(u64, u32)>,
}

/// A site's forecast restore time, p50 and p90 over the trials.
#[derive(Clone, Debug, Serialize)]
pub struct SiteRange {
    pub site: String,
    pub tier: String,
    pub p50_ms: u64,
    pub p90_ms: u64,
}

/// One step's time in its lane.
#[derive(Clone, Debug, Serialize)]
pub struct Bar {
    pub step: String,
    /// Index into `Timeline::lanes`.
    pub lane: usize,
    pub start_ms: u64,
    pub end_ms: u64,
    pub product: Option<String>,
    pub kind: String,
    /// The step's state: `succeeded`, `failed`, `skipped`, `running`, …
    pub outcome: String,
    /// On `Timeline::critical`.
    pub critical: bool,
    /// Shown on hover: the error of a failed step, the reason of a skipped one.
    pub note: Option<String>,
}

/// One site's restore time.
#[derive(Clone, Debug, Serialize)]
pub struct SiteRow {
    pub site: String,
    pub tier: String,
    pub state: SiteState,
    /// When the site's last step ended, from the start; only for restored sites.
    pub restore_ms: Option<u64>,
    /// Why it is not restored: its failed step and error, or the step blocking it.
    pub reason: Option<String>,
}

/// A step that failed for good, and what waits on it.
#[derive(Clone, Debug, Serialize)]
pub struct FailureRow {
    pub step: String,
    /// `None` for a shared unit's step.
    pub site: Option<String>,
    pub kind: String,
    pub attempts: u32,
    pub error: String,
    /// Steps blocked by this failure.
    pub blocks: Vec<String>,
}

impl Timeline {
    /// The timeline of a run from its plan and ledger records (`steps[i]` is `plan.steps[i]`'s).
    pub fn from_run(plan: &Plan, steps: &[StepRecord], mode: LaneMode) -> Timeline {
        let clock = Clock::new(steps);
        let lanes = Lanes::new(plan, mode);
        let states: Vec<StepState> = steps.iter().map(|r| r.state).collect();
        let sites = site_states(plan, &states, |i| steps[i].quarantined());
        let critical = actual_critical_path(plan, steps, &clock);
        Timeline {
            title: format!("Restore {} — workflow {}", plan.request, plan.workflow),
            subtitle: subtitle(plan, &clock, &sites),
            lane_mode: mode,
            products: plan.products.clone(),
            bars: bars(plan, steps, &lanes, &clock, &critical),
            lanes: lanes.names,
            span_ms: clock.span_ms(),
            origin: clock.origin.map(format_ms),
            critical: critical.iter().map(|&i| plan.steps[i].id.clone()).collect(),
            sites: site_rows(plan, steps, &sites, &clock),
            failures: failure_rows(plan, steps),
            forecast: None,
        }
    }
}

/// Ledger times (ms since the epoch) made relative to the run's first step start.
pub(crate) struct Clock {
    pub(crate) origin: Option<i64>,
    /// The latest time recorded: where the bars of steps still running end.
    last: i64,
}

impl Clock {
    pub(crate) fn new(steps: &[StepRecord]) -> Clock {
        let origin = steps.iter().filter_map(|r| r.started_at).min();
        let last = steps
            .iter()
            .flat_map(|r| [r.started_at, r.ended_at])
            .flatten()
            .max();
        Clock {
            origin,
            last: last.unwrap_or(0),
        }
    }

    /// Milliseconds from the start.
    pub(crate) fn rel(&self, at: i64) -> u64 {
        (at - self.origin.unwrap_or(at)).max(0) as u64
    }

    fn span_ms(&self) -> u64 {
        self.rel(self.last)
    }
}

/// When a step's last attempt ended; `None` while it runs (or before it ran).
pub(crate) fn end_of(r: &StepRecord) -> Option<i64> {
    let start = r.started_at?;
    r.ended_at
        .filter(|&end| r.state != StepState::Running && end >= start)
}

pub(crate) fn product_of<'p>(plan: &'p Plan, step: &Step) -> Option<&'p str> {
    let product = match step.owner {
        Owner::Site { product, .. } => product?,
        Owner::Shared { product, .. } => product,
    };
    Some(&plan.products[product as usize])
}

pub(crate) fn site_of<'p>(plan: &'p Plan, step: &Step) -> Option<&'p str> {
    match step.owner {
        Owner::Site { site, .. } => Some(plan.sites[site as usize].id.as_str()),
        Owner::Shared { .. } => None,
    }
}

/// The run's actual critical path, first step to last: the chain that ends at the step that
/// ended last (a step still running counts as ending now), going back each time to the
/// dependency that ended latest — the one that held the step back. A dependency with no recorded
/// times (skipped before it ran) is looked through, to its own dependencies. Ties go to the
/// lower step index, so the path is deterministic. Empty when no step has started.
pub(crate) fn actual_critical_path(plan: &Plan, steps: &[StepRecord], clock: &Clock) -> Vec<usize> {
    let end = |i: usize| {
        let r = &steps[i];
        r.started_at?;
        Some(end_of(r).unwrap_or(clock.last))
    };
    let latest = |candidates: &mut dyn Iterator<Item = usize>| {
        candidates
            .filter_map(|i| Some((end(i)?, Reverse(i))))
            .max()
            .map(|(_, Reverse(i))| i)
    };
    let mut path = Vec::new();
    let mut cur = latest(&mut (0..steps.len()));
    while let Some(i) = cur {
        path.push(i);
        cur = latest(&mut timed_deps(plan, steps, i).into_iter());
    }
    path.reverse();
    path
}

/// The dependencies of step `i` that have recorded times, looking through those that do not.
fn timed_deps(plan: &Plan, steps: &[StepRecord], i: usize) -> Vec<usize> {
    let mut seen = HashSet::new();
    let mut todo: Vec<usize> = plan.steps[i].deps.iter().map(|&d| d as usize).collect();
    let mut timed = Vec::new();
    while let Some(d) = todo.pop() {
        if !seen.insert(d) {
            continue;
        }
        if steps[d].started_at.is_some() {
            timed.push(d);
        } else {
            todo.extend(plan.steps[d].deps.iter().map(|&d| d as usize));
        }
    }
    timed
}

fn bars(
    plan: &Plan,
    steps: &[StepRecord],
    lanes: &Lanes,
    clock: &Clock,
    critical: &[usize],
) -> Vec<Bar> {
    let critical: HashSet<usize> = critical.iter().copied().collect();
    let bar = |i: usize, r: &StepRecord| {
        let step = &plan.steps[i];
        let start_ms = clock.rel(r.started_at?);
        Some(Bar {
            step: step.id.clone(),
            lane: lanes.of_step[i],
            start_ms,
            end_ms: clock.rel(end_of(r).unwrap_or(clock.last)).max(start_ms),
            product: product_of(plan, step).map(str::to_owned),
            kind: plan.kind(step).to_owned(),
            outcome: r.state.as_str().to_owned(),
            critical: critical.contains(&i),
            note: note(r),
        })
    };
    steps
        .iter()
        .enumerate()
        .filter_map(|(i, r)| bar(i, r))
        .collect()
}

fn note(r: &StepRecord) -> Option<String> {
    let note = r.note.as_deref().unwrap_or("");
    match r.state {
        StepState::Succeeded => None,
        StepState::Skipped => Some(format!("skipped: {note}")),
        StepState::Blocked => Some(format!("blocked by {note}")),
        StepState::Failed | StepState::Pending | StepState::Running => r.last_error.clone(),
    }
}

fn subtitle(plan: &Plan, clock: &Clock, sites: &[SiteState]) -> String {
    let counts: Vec<String> = count_sites(sites)
        .into_iter()
        .filter(|&(_, n)| n > 0)
        .map(|(state, n)| format!("{n} {}", state.as_str()))
        .collect();
    let when = match clock.origin {
        Some(origin) => format!(
            "started {} · took {}",
            format_ms(origin),
            human_ms(clock.span_ms())
        ),
        None => "no step has started".to_owned(),
    };
    format!(
        "{when} · {} sites: {} · {} steps",
        sites.len(),
        counts.join(", "),
        plan.steps.len()
    )
}

fn site_rows(
    plan: &Plan,
    steps: &[StepRecord],
    states: &[SiteState],
    clock: &Clock,
) -> Vec<SiteRow> {
    let mut last_end: Vec<Option<i64>> = vec![None; plan.sites.len()];
    let mut reasons: Vec<Option<String>> = vec![None; plan.sites.len()];
    for (step, r) in plan.steps.iter().zip(steps) {
        let Owner::Site { site, .. } = step.owner else {
            continue;
        };
        let site = site as usize;
        last_end[site] = last_end[site].max(end_of(r));
        match r.state {
            StepState::Failed => {
                let error = r.last_error.as_deref().unwrap_or("");
                reasons[site] = Some(format!("{} failed: {error}", step.id));
            }
            StepState::Blocked if reasons[site].is_none() => {
                let by = r.note.as_deref().unwrap_or("a failed step");
                reasons[site] = Some(format!("{} blocked by {by}", step.id));
            }
            _ => {}
        }
    }
    let mut rows: Vec<SiteRow> = plan
        .sites
        .iter()
        .enumerate()
        .map(|(i, site)| SiteRow {
            site: site.id.to_string(),
            tier: plan.tiers[site.tier].clone(),
            state: states[i],
            restore_ms: last_end[i]
                .filter(|_| states[i] == SiteState::Restored)
                .map(|end| clock.rel(end)),
            reason: reasons[i].take(),
        })
        .collect();
    rows.sort_by_key(|row| Reverse(row.restore_ms.unwrap_or(u64::MAX)));
    rows
}

fn failure_rows(plan: &Plan, steps: &[StepRecord]) -> Vec<FailureRow> {
    let mut blocked: HashMap<&str, Vec<String>> = HashMap::new();
    for (step, r) in plan.steps.iter().zip(steps) {
        if let (StepState::Blocked, Some(by)) = (r.state, &r.note) {
            blocked.entry(by).or_default().push(step.id.clone());
        }
    }
    plan.steps
        .iter()
        .zip(steps)
        .filter(|(_, r)| r.state == StepState::Failed)
        .map(|(step, r)| FailureRow {
            step: step.id.clone(),
            site: site_of(plan, step).map(str::to_owned),
            kind: plan.kind(step).to_owned(),
            attempts: r.attempts,
            error: r.last_error.clone().unwrap_or_default(),
            blocks: blocked.remove(step.id.as_str()).unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
mod tests;
