//! Forecasts: a restore simulated with the same scheduling core that runs it, over virtual
//! time, as the `drover-estimate/1` document (docs/estimate.md): how long, the spread over noisy
//! trials, which pool binds, per-site restore times, and what capacity of one pool meets a
//! target. Pure computation on a plan and a duration model; `drover estimate` prints it.

use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use serde::Serialize;

use super::model::DurationModel;
use super::{Schedule, SimOptions, percentile};
use crate::dispatch::policy::Policy;
use crate::plan::Plan;

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
}

/// Simulates `plan` with `model`'s durations under `opts`.
pub fn forecast(
    plan: &Arc<Plan>,
    opts: &SimOptions,
    model: &DurationModel,
    fo: &ForecastOptions,
) -> Result<Forecast, ForecastError> {
    let durations = model.p50_all(plan);
    let schedule = super::simulate(plan, opts, &durations);
    let makespans = trials(plan, opts, model, fo.trials, fo.seed);
    let sweep = match &fo.sweep {
        Some(s) => Some(run_sweep(plan, opts, &durations, s, fo.target_rto)?),
        None => None,
    };
    let doc = document(plan, opts, model, &schedule, &makespans, fo, sweep);
    Ok(Forecast { doc, schedule })
}

pub const ESTIMATE_FORMAT: &str = "drover-estimate/1";

#[derive(Serialize)]
pub struct EstimateDoc {
    pub format: &'static str,
    pub plan_hash: String,
    pub sites: usize,
    pub steps: usize,
    pub policy: Policy,
    pub max_parallel: usize,
    pub model: String,
    pub makespan_s: f64,
    pub trials: u32,
    pub makespan_p50_s: f64,
    pub makespan_p90_s: f64,
    pub lower_bound_s: f64,
    pub critical_path: CriticalPathDoc,
    pub pools: Vec<PoolDoc>,
    pub bottleneck: Option<String>,
    pub site_restore_s: SiteTimes,
    pub latest_sites: Vec<(String, f64)>,
    pub target_rto_s: Option<f64>,
    pub meets_target: Option<bool>,
    pub sweep: Option<SweepDoc>,
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
    pub smallest_meeting_target: Option<u32>,
}

/// Makespans (ms) of `n` noisy trials, sorted; one trial is the p50 model itself.
fn trials(
    plan: &Arc<Plan>,
    opts: &SimOptions,
    model: &DurationModel,
    n: u32,
    seed: u64,
) -> Vec<u64> {
    if n <= 1 {
        return vec![
            super::simulate(plan, opts, &model.p50_all(plan))
                .makespan
                .as_millis() as u64,
        ];
    }
    let mut out: Vec<u64> = parallel((0..n as u64).collect(), |t| {
        let mut rng =
            rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(t));
        let d: Vec<u64> = (0..plan.steps.len() as u32)
            .map(|i| model.sample_ms(plan, i, &mut rng))
            .collect();
        super::simulate(plan, opts, &d)
            .makespan
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX)
    });
    out.sort_unstable();
    out
}

fn run_sweep(
    plan: &Arc<Plan>,
    opts: &SimOptions,
    durations: &[u64],
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
    let points: Vec<(u32, f64)> = parallel((lo..=sweep.hi).collect(), |c| {
        let mut o = opts.clone();
        o.capacity[pool] = c;
        (
            c,
            super::simulate(plan, &o, durations).makespan.as_secs_f64(),
        )
    });
    let smallest = target.and_then(|t| {
        points
            .iter()
            .find(|(_, m)| *m <= t.as_secs_f64())
            .map(|(c, _)| *c)
    });
    Ok(SweepDoc {
        pool: sweep.pool.clone(),
        points,
        smallest_meeting_target: smallest,
    })
}

/// Maps `f` over `items` on every core, keeping the order.
fn parallel<T: Send + Sync + Copy, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len().max(1));
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| s.spawn(|| c.iter().map(|&t| f(t)).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("simulation thread"))
            .collect()
    })
}

fn document(
    plan: &Plan,
    opts: &SimOptions,
    model: &DurationModel,
    schedule: &Schedule,
    makespans: &[u64],
    fo: &ForecastOptions,
    sweep: Option<SweepDoc>,
) -> EstimateDoc {
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
    let bottleneck = util
        .iter()
        .enumerate()
        .filter(|(_, u)| **u >= 0.8)
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| plan.pools[i].name.clone());
    let makespan = schedule.makespan.as_secs_f64();
    let cp = &plan.critical_path;
    EstimateDoc {
        format: ESTIMATE_FORMAT,
        plan_hash: plan.hash.clone(),
        sites: plan.sites.len(),
        steps: plan.steps.len(),
        policy: opts.policy,
        max_parallel: opts.max_parallel,
        model: if model.is_empty() {
            "workflow estimates".into()
        } else {
            format!("history ({} groups fitted)", model.fits().count())
        },
        makespan_s: makespan,
        trials: fo.trials.max(1),
        makespan_p50_s: secs(percentile(makespans, 50.0)),
        makespan_p90_s: secs(percentile(makespans, 90.0)),
        lower_bound_s: plan.lower_bound.as_secs_f64(),
        critical_path: CriticalPathDoc {
            length_s: plan.critical_path_length().as_secs_f64(),
            first: cp.first().map(|&i| plan.steps[i as usize].id.clone()),
            last: cp.last().map(|&i| plan.steps[i as usize].id.clone()),
        },
        pools: plan
            .pools
            .iter()
            .zip(&opts.capacity)
            .zip(&util)
            .map(|((p, &c), &u)| PoolDoc {
                name: p.name.clone(),
                capacity: c,
                utilization: u,
            })
            .collect(),
        bottleneck,
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
        target_rto_s: fo.target_rto.map(|t| t.as_secs_f64()),
        meets_target: fo.target_rto.map(|t| makespan <= t.as_secs_f64()),
        sweep,
    }
}

/// The simulated schedule as a timeline, drawn like a real run.
pub fn timeline(plan: &Plan, forecast: &Forecast) -> crate::report::timeline::Timeline {
    let (schedule, doc) = (&forecast.schedule, &forecast.doc);
    use crate::report::LaneMode;
    use crate::report::timeline::{Bar, Lanes, SiteRow, Timeline};
    let mode = LaneMode::auto(plan);
    let lanes = Lanes::new(plan, mode);
    let critical: std::collections::HashSet<u32> = plan.critical_path.iter().copied().collect();
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
            crate::report::human(plan.lower_bound),
            doc.policy,
            doc.model
        ),
        lane_mode: mode,
        lanes: lanes.names,
        products: plan.products.clone(),
        bars,
        span_ms: schedule.makespan.as_millis().try_into().unwrap_or(u64::MAX),
        origin: None,
        critical: plan
            .critical_path
            .iter()
            .map(|&i| plan.steps[i as usize].id.clone())
            .collect(),
        sites,
        failures: Vec::new(),
    }
}
