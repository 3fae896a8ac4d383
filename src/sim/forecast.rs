//! Forecasts: a restore simulated with the same scheduling core that runs it, over virtual
//! time, as the `drover-estimate/1` document (docs/estimate.md): how long, the spread over noisy
//! trials, which pool binds, per-site restore times, and what capacity of one pool meets a
//! target. Pure computation on a plan and a duration model; `drover estimate` prints it.

use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use serde::Serialize;

use super::model::DurationModel;
use super::model::Durations;
use super::{Bounds, Schedule, SimOptions, percentile};
use crate::dispatch::policy::Policy;
use crate::plan::Plan;
use crate::report::timeline::PoolUse;

/// Try every capacity `lo..=hi` of one pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sweep {
    pub pool: String,
    pub lo: u32,
    pub hi: u32,
}

/// What to forecast beyond the makespan.
#[derive(Clone, Debug, Default)]
pub struct ForecastOptions {
    /// Monte Carlo trials with noise around the model (1: the model alone).
    pub trials: u32,
    pub seed: u64,
    pub target_rto: Option<Duration>,
    pub sweep: Option<Sweep>,
    /// Now, ms since the epoch: how old the evidence is.
    pub now_ms: i64,
}

/// Why a forecast cannot be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForecastError {
    #[error("unknown pool '{pool}' to sweep")]
    UnknownPool { pool: String, known: Vec<String> },
}

/// A forecast: the document, and the simulated schedule it describes (for drawing).
pub struct Forecast {
    pub doc: EstimateDoc,
    pub schedule: Schedule,
    pub bounds: Bounds,
}

/// Simulates `plan` with `model`'s durations under `opts`.
pub fn forecast(
    plan: &Arc<Plan>,
    opts: &SimOptions,
    model: &DurationModel,
    fo: &ForecastOptions,
) -> Result<Forecast, ForecastError> {
    let durations = model.durations(plan);
    // Every policy is simulated for the trade-off table; `auto` runs the one `choose` picks,
    // and the forecast is that simulation.
    let mut compared = super::compare_schedules(plan, opts, &durations);
    let policies: Vec<_> = compared.iter().map(|(o, _)| *o).collect();
    let mut resolved = opts.clone();
    let auto_chosen = opts.policy == Policy::Auto;
    if auto_chosen {
        resolved.policy = super::choose(&policies);
    }
    let opts = &resolved;
    let at = policies
        .iter()
        .position(|o| o.policy == opts.policy)
        .unwrap_or_default();
    let schedule = compared.swap_remove(at).1;
    drop(compared);
    let bounds = Bounds::of(plan, &schedule, &opts.capacity);
    let trials = match fo.trials {
        // One trial is the mean model itself: the schedule just simulated.
        0 | 1 => vec![Trial {
            makespan: schedule.makespan.as_millis().try_into().unwrap_or(u64::MAX),
            sites: schedule.site_done_ms.clone(),
        }],
        n => trials(plan, opts, model, n, fo.seed),
    };
    let sweep = match &fo.sweep {
        Some(s) => Some(run_sweep(plan, opts, &durations, s, fo.target_rto)?),
        None => None,
    };
    let relief = relief(plan, opts, &durations, &bounds);
    let doc = document(
        plan,
        opts,
        model,
        &Evaluated {
            schedule: &schedule,
            bounds: &bounds,
            trials: &trials,
            relief,
            policies: &policies,
            auto: auto_chosen,
        },
        fo,
        sweep,
    );
    Ok(Forecast {
        doc,
        schedule,
        bounds,
    })
}

pub const ESTIMATE_FORMAT: &str = "drover-estimate/1";

#[derive(Serialize)]
pub struct EstimateDoc {
    pub format: &'static str,
    pub plan_hash: String,
    pub sites: usize,
    pub steps: usize,
    /// The policy forecast: the one `auto` chose, or the one asked for.
    pub policy: Policy,
    /// Whether `auto` chose it.
    pub policy_auto: bool,
    /// Every policy simulated on this restore: the trade-off between the last site and the
    /// typical site.
    pub policies: Vec<PolicyDoc>,
    pub max_parallel: usize,
    pub model: String,
    /// The ledgers the durations were learned from (empty: the workflow's estimates).
    pub evidence: Vec<EvidenceDoc>,
    /// Each (kind, product) group's fit, when learned from history.
    pub fits: Vec<FitDoc>,
    pub makespan_s: f64,
    pub trials: u32,
    pub makespan_p50_s: f64,
    pub makespan_p90_s: f64,
    pub lower_bound_s: f64,
    pub critical_path: CriticalPathDoc,
    pub pools: Vec<PoolDoc>,
    pub bottleneck: Option<String>,
    pub bottleneck_detail: BottleneckDoc,
    pub site_restore_s: SiteTimes,
    pub latest_sites: Vec<(String, f64)>,
    /// Per site, `[site, p50_s, p90_s]` over the trials, in site order.
    pub site_ranges: Vec<(String, f64, f64)>,
    pub target_rto_s: Option<f64>,
    pub meets_target: Option<bool>,
    pub sweep: Option<SweepDoc>,
}

#[derive(Serialize)]
pub struct PolicyDoc {
    pub policy: Policy,
    pub makespan_s: f64,
    /// Mean and p95 time until a site is back.
    pub site_mean_s: f64,
    pub site_p95_s: f64,
}

#[derive(Serialize)]
pub struct EvidenceDoc {
    pub source: String,
    pub kind: &'static str,
    pub steps: usize,
    pub ended_at: Option<String>,
    pub age_s: Option<f64>,
}

/// mean duration = (intercept + slope × expected) × (base + Σ per_unit[p] × units of p in use).
#[derive(Serialize)]
pub struct FitDoc {
    pub kind: String,
    pub product: Option<String>,
    pub samples: usize,
    pub intercept_ms: f64,
    /// ms per ms of the workflow's estimate.
    pub slope: f64,
    /// ms per expected ms of data the shared unit the step works in (its shard) holds when
    /// the step starts.
    pub shared_slope: f64,
    pub load_base: f64,
    /// Per pool (and `(no pool)`): how much each unit in use when the step starts adds.
    pub load_per_unit: std::collections::BTreeMap<String, f64>,
}

#[derive(Serialize)]
pub struct CriticalPathDoc {
    pub length_s: f64,
    pub first: Option<String>,
    pub last: Option<String>,
}

#[derive(Serialize)]
pub struct PoolDoc {
    pub name: String,
    pub capacity: u32,
    pub utilization: f64,
    /// Its work ÷ its capacity: the least time the pool alone needs.
    pub bound_s: f64,
}

/// What bounds the restore and what would relieve it.
#[derive(Serialize)]
pub struct BottleneckDoc {
    /// `pool` or `chain` (the critical path).
    pub kind: &'static str,
    pub pool: Option<String>,
    pub bound_s: f64,
    /// The capacity of the binding pool that would bring its bound down to the next
    /// constraint, if its steps took as long as here (null when a chain binds).
    pub relieved_at: Option<u32>,
    /// The forecast makespan with that capacity: steps slow down on a busier machine, so it
    /// may gain less than the bound says, or nothing.
    pub makespan_relieved_s: Option<f64>,
    /// The next constraint: a pool's name, or `critical path`.
    pub next: Option<String>,
    pub next_bound_s: f64,
}

#[derive(Serialize)]
pub struct SiteTimes {
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

#[derive(Serialize)]
pub struct SweepDoc {
    pub pool: String,
    pub points: Vec<(u32, f64)>,
    /// Per point, what bounds the restore at that capacity (a pool's name, or `critical path`).
    pub binding: Vec<String>,
    /// The smallest capacity from which another constraint caps the gain, and that constraint.
    pub capped_from: Option<(u32, String)>,
    pub smallest_meeting_target: Option<u32>,
}

/// One trial: its makespan and each site's restore time, ms.
struct Trial {
    makespan: u64,
    sites: Vec<u64>,
}

/// Per-site values are kept for at most this many (trials × sites); beyond it, the first trials.
const SITE_SAMPLES: usize = 20_000_000;

/// `n` noisy trials (at least two; one trial is the mean model's schedule).
fn trials(
    plan: &Arc<Plan>,
    opts: &SimOptions,
    model: &DurationModel,
    n: u32,
    seed: u64,
) -> Vec<Trial> {
    let keep_sites = (SITE_SAMPLES / plan.sites.len().max(1)).max(1);
    let trial = |t: u64, durations: &Durations| {
        let s = super::simulate(plan, opts, durations);
        Trial {
            makespan: s.makespan.as_millis().try_into().unwrap_or(u64::MAX),
            sites: if (t as usize) < keep_sites {
                s.site_done_ms
            } else {
                Vec::new()
            },
        }
    };
    crate::util::on_every_core(n as usize, |t| {
        let t = t as u64;
        let mut rng =
            rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(t));
        trial(t, &model.sample(plan, &mut rng))
    })
}

fn run_sweep(
    plan: &Arc<Plan>,
    opts: &SimOptions,
    durations: &Durations,
    sweep: &Sweep,
    target: Option<Duration>,
) -> Result<SweepDoc, ForecastError> {
    let Some(pool) = plan.pools.iter().position(|p| p.name == sweep.pool) else {
        let known = plan.pools.iter().map(|p| p.name.clone()).collect();
        return Err(ForecastError::UnknownPool {
            pool: sweep.pool.clone(),
            known,
        });
    };
    let needs = plan
        .steps
        .iter()
        .flat_map(|s| s.uses.iter())
        .filter(|(p, _)| *p as usize == pool)
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0);
    let lo = sweep.lo.max(needs);
    let capacities: Vec<u32> = (lo..=sweep.hi).collect();
    let results: Vec<(u32, f64, String)> = crate::util::on_every_core(capacities.len(), |i| {
        let c = capacities[i];
        let mut o = opts.clone();
        o.capacity[pool] = c;
        let schedule = super::simulate(plan, &o, durations);
        let binding = match Bounds::of(plan, &schedule, &o.capacity).binding_pool() {
            Some(p) => plan.pools[p].name.clone(),
            None => "critical path".to_owned(),
        };
        (c, schedule.makespan.as_secs_f64(), binding)
    });
    let smallest = target.and_then(|t| {
        results
            .iter()
            .find(|(_, m, _)| *m <= t.as_secs_f64())
            .map(|(c, _, _)| *c)
    });
    let capped_from = results
        .iter()
        .find(|(_, _, b)| *b != sweep.pool)
        .map(|(c, _, b)| (*c, b.clone()));
    Ok(SweepDoc {
        pool: sweep.pool.clone(),
        points: results.iter().map(|(c, m, _)| (*c, *m)).collect(),
        binding: results.into_iter().map(|(_, _, b)| b).collect(),
        capped_from,
        smallest_meeting_target: smallest,
    })
}

/// The forecast's simulations and bounds, for the document.
struct Evaluated<'a> {
    schedule: &'a Schedule,
    bounds: &'a Bounds,
    trials: &'a [Trial],
    /// The binding pool's relieving capacity and the makespan with it.
    relief: Option<(u32, f64)>,
    /// Every policy simulated (`super::compare`).
    policies: &'a [super::PolicyOutcome],
    /// `auto` chose the policy.
    auto: bool,
}

fn document(
    plan: &Plan,
    opts: &SimOptions,
    model: &DurationModel,
    ev: &Evaluated<'_>,
    fo: &ForecastOptions,
    sweep: Option<SweepDoc>,
) -> EstimateDoc {
    let (schedule, bounds) = (ev.schedule, ev.bounds);
    let util = schedule.utilization(&opts.capacity);
    let mut done: Vec<(u64, usize)> = schedule
        .site_done_ms
        .iter()
        .copied()
        .enumerate()
        .map(|(i, t)| (t, i))
        .collect();
    done.sort_unstable();
    let times: Vec<u64> = done.iter().map(|d| d.0).collect();
    let secs = |ms: u64| ms as f64 / 1000.0;
    let mut makespans: Vec<u64> = ev.trials.iter().map(|t| t.makespan).collect();
    makespans.sort_unstable();
    let makespan = schedule.makespan.as_secs_f64();
    let cp = &bounds.critical_path;
    EstimateDoc {
        format: ESTIMATE_FORMAT,
        plan_hash: plan.hash.clone(),
        sites: plan.sites.len(),
        steps: plan.steps.len(),
        policy: opts.policy,
        policy_auto: ev.auto,
        policies: ev
            .policies
            .iter()
            .map(|o| PolicyDoc {
                policy: o.policy,
                makespan_s: secs(o.makespan_ms),
                site_mean_s: secs(o.site_mean_ms),
                site_p95_s: secs(o.site_p95_ms),
            })
            .collect(),
        max_parallel: opts.max_parallel,
        model: if model.is_empty() {
            "workflow estimates".into()
        } else {
            format!(
                "history ({} groups fitted from {} ledgers)",
                model.fits().count(),
                model.evidence().len()
            )
        },
        evidence: model
            .evidence()
            .iter()
            .map(|e| EvidenceDoc {
                source: e.source.clone(),
                kind: e.kind,
                steps: e.steps,
                ended_at: e.ended_at_ms.map(crate::ledger::format_ms),
                age_s: e
                    .ended_at_ms
                    .map(|t| (fo.now_ms - t).max(0) as f64 / 1000.0),
            })
            .collect(),
        fits: {
            let mut fits: Vec<FitDoc> = model
                .fits()
                .map(|((kind, product), f)| FitDoc {
                    kind: kind.clone(),
                    product: product.clone(),
                    samples: f.samples,
                    intercept_ms: f.intercept,
                    slope: f.slope,
                    shared_slope: f.shared_slope,
                    load_base: f.load[0],
                    load_per_unit: model
                        .coordinates()
                        .iter()
                        .zip(&f.load[1..])
                        .filter(|(_, d)| **d > 0.0)
                        .map(|(c, d)| (c.clone(), *d))
                        .collect(),
                })
                .collect();
            fits.sort_by(|a, b| (&a.kind, &a.product).cmp(&(&b.kind, &b.product)));
            fits
        },
        makespan_s: makespan,
        trials: fo.trials.max(1),
        makespan_p50_s: secs(percentile(&makespans, 50.0)),
        makespan_p90_s: secs(percentile(&makespans, 90.0)),
        lower_bound_s: secs(bounds.lower_bound_ms()),
        critical_path: CriticalPathDoc {
            length_s: secs(bounds.critical_path_ms),
            first: cp.first().map(|&i| plan.steps[i as usize].id.clone()),
            last: cp.last().map(|&i| plan.steps[i as usize].id.clone()),
        },
        pools: plan
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| PoolDoc {
                name: p.name.clone(),
                capacity: opts.capacity[i],
                utilization: util[i],
                bound_s: secs(bounds.pool_bound_ms(i)),
            })
            .collect(),
        bottleneck: bounds.binding_pool().map(|p| plan.pools[p].name.clone()),
        bottleneck_detail: bottleneck(plan, bounds, ev.relief),
        site_restore_s: SiteTimes {
            p50: secs(percentile(&times, 50.0)),
            p95: secs(percentile(&times, 95.0)),
            max: secs(times.last().copied().unwrap_or(0)),
        },
        latest_sites: done
            .iter()
            .rev()
            .take(5)
            .map(|&(t, i)| (plan.sites[i].id.to_string(), secs(t)))
            .collect(),
        site_ranges: site_ranges(plan, ev.trials),
        target_rto_s: fo.target_rto.map(|t| t.as_secs_f64()),
        meets_target: fo.target_rto.map(|t| makespan <= t.as_secs_f64()),
        sweep,
    }
}

/// The capacity of the binding pool that would hand the bound to the next constraint, and the
/// forecast makespan with it.
fn relief(
    plan: &Arc<Plan>,
    opts: &SimOptions,
    durations: &Durations,
    bounds: &Bounds,
) -> Option<(u32, f64)> {
    let p = bounds.binding_pool()?;
    let next_ms = next_constraint(plan, bounds, p).1;
    // The pool's work is its work bound × its capacity; it must fit between its edges.
    let work_ms = bounds.pool_ms[p] as f64 * opts.capacity[p] as f64;
    let room_ms = next_ms.saturating_sub(bounds.pool_edges_ms[p]).max(1);
    let needed = ((work_ms / room_ms as f64).ceil() as u32)
        .clamp(opts.capacity[p] + 1, crate::limits::MAX_CAPACITY);
    let mut o = opts.clone();
    o.capacity[p] = needed;
    Some((
        needed,
        super::simulate(plan, &o, durations).makespan.as_secs_f64(),
    ))
}

/// The largest bound but pool `p`'s: another pool's, or the critical path's.
fn next_constraint(plan: &Plan, b: &Bounds, p: usize) -> (String, u64) {
    (0..b.pool_ms.len())
        .filter(|&i| i != p)
        .map(|i| (plan.pools[i].name.clone(), b.pool_bound_ms(i)))
        .chain(std::iter::once((
            "critical path".to_owned(),
            b.critical_path_ms,
        )))
        .max_by_key(|(_, ms)| *ms)
        .expect("the critical path is always there")
}

/// What binds, and what more of it would give.
fn bottleneck(plan: &Plan, b: &Bounds, relief: Option<(u32, f64)>) -> BottleneckDoc {
    let secs = |ms: u64| ms as f64 / 1000.0;
    let Some(p) = b.binding_pool() else {
        return BottleneckDoc {
            kind: "chain",
            pool: None,
            bound_s: secs(b.critical_path_ms),
            relieved_at: None,
            makespan_relieved_s: None,
            next: None,
            next_bound_s: 0.0,
        };
    };
    let (next, next_ms) = next_constraint(plan, b, p);
    BottleneckDoc {
        kind: "pool",
        pool: Some(plan.pools[p].name.clone()),
        bound_s: secs(b.pool_bound_ms(p)),
        relieved_at: relief.map(|r| r.0),
        makespan_relieved_s: relief.map(|r| r.1),
        next: Some(next),
        next_bound_s: secs(next_ms),
    }
}

/// Per site, p50 and p90 of its restore time over the trials that kept per-site times.
fn site_ranges(plan: &Plan, trials: &[Trial]) -> Vec<(String, f64, f64)> {
    let kept: Vec<&Trial> = trials.iter().filter(|t| !t.sites.is_empty()).collect();
    let mut values = Vec::with_capacity(kept.len());
    plan.sites
        .iter()
        .enumerate()
        .map(|(s, site)| {
            values.clear();
            values.extend(kept.iter().map(|t| t.sites[s]));
            values.sort_unstable();
            (
                site.id.to_string(),
                percentile(&values, 50.0) as f64 / 1000.0,
                percentile(&values, 90.0) as f64 / 1000.0,
            )
        })
        .collect()
}

/// The simulated schedule as a timeline, drawn like a real run.
pub fn timeline(plan: &Plan, forecast: &Forecast) -> crate::report::timeline::Timeline {
    let (schedule, doc) = (&forecast.schedule, &forecast.doc);
    use crate::report::LaneMode;
    use crate::report::timeline::{Bar, ForecastView, Lanes, SiteRange, SiteRow, Timeline};
    let mode = LaneMode::auto(plan);
    let lanes = Lanes::new(plan, mode);
    let critical: std::collections::HashSet<u32> =
        forecast.bounds.critical_path.iter().copied().collect();
    let bars = plan
        .steps
        .iter()
        .enumerate()
        .filter(|(i, _)| schedule.start_ms[*i] != u64::MAX)
        .map(|(i, step)| Bar {
            step: step.id.clone(),
            lane: lanes.of_step[i],
            start_ms: schedule.start_ms[i],
            end_ms: schedule.end_ms[i],
            product: match step.owner {
                crate::plan::Owner::Site { product, .. } => {
                    product.map(|p| plan.products[p as usize].clone())
                }
                crate::plan::Owner::Shared { product, .. } => {
                    Some(plan.products[product as usize].clone())
                }
            },
            kind: plan.kind(step).to_owned(),
            outcome: "forecast".into(),
            critical: critical.contains(&(i as u32)),
            note: None,
        })
        .collect();
    let mut sites: Vec<SiteRow> = plan
        .sites
        .iter()
        .zip(&schedule.site_done_ms)
        .map(|(s, &t)| SiteRow {
            site: s.id.to_string(),
            tier: plan.tiers[s.tier].clone(),
            state: crate::status::SiteState::Restored,
            restore_ms: Some(t),
            reason: None,
        })
        .collect();
    sites.sort_by_key(|s| std::cmp::Reverse(s.restore_ms));
    Timeline {
        title: format!(
            "Forecast: {} sites, {} steps",
            plan.sites.len(),
            plan.steps.len()
        ),
        subtitle: format!(
            "simulated makespan {}, lower bound {}, policy {}, model: {}",
            crate::report::human(schedule.makespan),
            crate::report::human(Duration::from_millis(forecast.bounds.lower_bound_ms())),
            doc.policy,
            doc.model
        ),
        lane_mode: mode,
        lanes: lanes.names,
        products: plan.products.clone(),
        bars,
        span_ms: schedule.makespan.as_millis().try_into().unwrap_or(u64::MAX),
        origin: None,
        critical: forecast
            .bounds
            .critical_path
            .iter()
            .map(|&i| plan.steps[i as usize].id.clone())
            .collect(),
        sites,
        failures: Vec::new(),
        forecast: Some(ForecastView {
            pools: pool_use(plan, schedule, &doc.pools),
            ranges: {
                let mut r: Vec<SiteRange> = doc
                    .site_ranges
                    .iter()
                    .zip(&plan.sites)
                    .map(|((site, p50, p90), s)| SiteRange {
                        site: site.clone(),
                        tier: plan.tiers[s.tier].clone(),
                        p50_ms: (p50 * 1000.0) as u64,
                        p90_ms: (p90 * 1000.0) as u64,
                    })
                    .collect();
                r.sort_by_key(|s| std::cmp::Reverse(s.p90_ms));
                r
            },
            trials: doc.trials,
        }),
    }
}

/// Each pool's units in use over the simulated schedule.
fn pool_use(plan: &Plan, schedule: &Schedule, pools: &[PoolDoc]) -> Vec<PoolUse> {
    pools
        .iter()
        .enumerate()
        .map(|(p, doc)| {
            let mut changes: Vec<(u64, i64)> = Vec::new();
            for (i, step) in plan.steps.iter().enumerate() {
                let (s, e) = (schedule.start_ms[i], schedule.end_ms[i]);
                if s == u64::MAX || e == u64::MAX {
                    continue;
                }
                for &(pool, units) in &step.uses {
                    if pool as usize == p {
                        changes.push((s, units as i64));
                        changes.push((e, -(units as i64)));
                    }
                }
            }
            changes.sort_unstable();
            let mut steps: Vec<(u64, u32)> = Vec::new();
            let mut level = 0i64;
            for (t, d) in changes {
                level += d;
                match steps.last_mut() {
                    Some(last) if last.0 == t => last.1 = level.max(0) as u32,
                    _ => steps.push((t, level.max(0) as u32)),
                }
            }
            PoolUse {
                name: doc.name.clone(),
                capacity: doc.capacity,
                steps,
            }
        })
        .collect()
}
