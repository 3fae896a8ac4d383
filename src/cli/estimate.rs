//! `drover estimate`: forecast a restore by simulating it with the same scheduling core that runs
//! it, over virtual time. Answers how long, which pool is the bottleneck, and what capacity meets
//! a target RTO. The JSON document is described in docs/estimate.md.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use rand::SeedableRng;
use serde::Serialize;

use super::{Done, Failure, Format};
use crate::diag::{Location, Problem, ProblemKind};
use crate::ledger::Ledger;
use crate::ledger::sqlite::SqliteLedger;
use crate::plan::{self, Plan, PlanOptions};
use crate::schedule::Policy;
use crate::sim::model::DurationModel;
use crate::sim::{self, Schedule, SimOptions, percentile};

#[derive(Args, Debug)]
pub struct EstimateArgs {
    /// Workflow file (TOML).
    #[arg(long, short)]
    workflow: PathBuf,
    /// Restore request (TOML).
    #[arg(long, short)]
    request: PathBuf,
    /// Learn step durations from previous runs' ledgers (repeatable) instead of the workflow's
    /// estimates: fitted per step kind and product against the estimate (size), with p50 and p90.
    #[arg(long)]
    history: Vec<PathBuf>,
    /// Pool capacity overrides, e.g. `db=8,s3=32`.
    #[arg(long, value_parser = super::parse_pools)]
    pools: Option<BTreeMap<String, u32>>,
    /// At most this many steps at once (as `drover run --max-parallel`).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_parallel: u32,
    /// Which ready step starts first (as `drover run --policy`).
    #[arg(long, value_enum, default_value_t = Policy::CriticalPath)]
    policy: Policy,
    /// Try every capacity of one pool, e.g. `db=2..32`: the makespan for each.
    #[arg(long, value_parser = parse_sweep)]
    sweep: Option<Sweep>,
    /// The restore time to meet; with --sweep, names the smallest capacity that meets it.
    #[arg(long, value_parser = crate::limits::duration_arg(crate::limits::MAX_RTO))]
    target_rto: Option<Duration>,
    /// Monte Carlo trials with noise around the duration model, for makespan p50/p90.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    trials: u32,
    /// Seed for the trials' noise.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Also draw the forecast schedule as a self-contained HTML page (as `drover report`).
    #[arg(long)]
    html: Option<PathBuf>,
}

/// `pool=lo..hi`.
#[derive(Clone, Debug)]
pub struct Sweep {
    pool: String,
    lo: u32,
    hi: u32,
}

fn parse_sweep(s: &str) -> Result<Sweep, String> {
    let (pool, range) = s
        .split_once('=')
        .ok_or("write pool=lo..hi, e.g. db=2..32")?;
    let (lo, hi) = range
        .split_once("..")
        .ok_or("write pool=lo..hi, e.g. db=2..32")?;
    let lo: u32 = lo
        .trim()
        .parse()
        .map_err(|_| format!("'{lo}' is not a whole number"))?;
    let hi: u32 = hi
        .trim()
        .trim_start_matches('=')
        .parse()
        .map_err(|_| format!("'{hi}' is not a whole number"))?;
    if lo == 0 || hi < lo || hi - lo > 1000 {
        return Err("the range must be 1 ≤ lo ≤ hi, at most 1000 values".into());
    }
    Ok(Sweep {
        pool: pool.trim().to_owned(),
        lo,
        hi,
    })
}

pub const ESTIMATE_FORMAT: &str = "drover-estimate/1";

#[derive(Serialize)]
struct EstimateDoc {
    format: &'static str,
    plan_hash: String,
    sites: usize,
    steps: usize,
    policy: Policy,
    max_parallel: usize,
    model: String,
    makespan_s: f64,
    trials: u32,
    makespan_p50_s: f64,
    makespan_p90_s: f64,
    lower_bound_s: f64,
    critical_path: CriticalPathDoc,
    pools: Vec<PoolDoc>,
    bottleneck: Option<String>,
    site_restore_s: SiteTimes,
    latest_sites: Vec<(String, f64)>,
    target_rto_s: Option<f64>,
    meets_target: Option<bool>,
    sweep: Option<SweepDoc>,
}

#[derive(Serialize)]
struct CriticalPathDoc {
    length_s: f64,
    first: Option<String>,
    last: Option<String>,
}

#[derive(Serialize)]
struct PoolDoc {
    name: String,
    capacity: u32,
    utilization: f64,
}

#[derive(Serialize)]
struct SiteTimes {
    p50: f64,
    p95: f64,
    max: f64,
}

#[derive(Serialize)]
struct SweepDoc {
    pool: String,
    points: Vec<(u32, f64)>,
    smallest_meeting_target: Option<u32>,
}

pub fn run(args: EstimateArgs) -> Result<Done, Failure> {
    let inputs = crate::load::inputs(&args.workflow, &args.request)?;
    let plan = Arc::new(plan::plan(
        &inputs.workflow,
        &inputs.request,
        &PlanOptions {
            pool_capacity: args.pools.clone().unwrap_or_default(),
        },
    )?);
    let model = learn(&args.history)?;
    let mut opts = SimOptions::for_plan(&plan);
    opts.max_parallel = args.max_parallel as usize;
    opts.policy = args.policy;
    let durations = model.p50_all(&plan);
    let schedule = sim::simulate(&plan, &opts, &durations);
    let makespans = trials(&plan, &opts, &model, args.trials, args.seed);
    let sweep = match &args.sweep {
        Some(s) => Some(run_sweep(&plan, &opts, &durations, s, args.target_rto)?),
        None => None,
    };
    let doc = document(&plan, &opts, &model, &schedule, &makespans, &args, sweep);
    if let Some(path) = &args.html {
        let page = crate::report::html(&forecast_timeline(&plan, &schedule, &doc));
        super::report::write_atomically(path, |w| std::io::Write::write_all(w, page.as_bytes()))
            .map_err(Failure::Internal)?;
        errln!("wrote {}", path.display());
    }
    match args.format {
        Format::Json => super::print_json(&doc)?,
        Format::Text => print_text(&doc),
    }
    Ok(Done::Ok)
}

fn learn(history: &[PathBuf]) -> Result<DurationModel, Failure> {
    let mut loaded = Vec::new();
    for path in history {
        loaded.push(SqliteLedger::open(path)?.load()?);
    }
    let pairs: Vec<(&Plan, &[crate::ledger::StepRecord])> = loaded
        .iter()
        .map(|s| (&s.plan, s.steps.as_slice()))
        .collect();
    Ok(DurationModel::learn(&pairs))
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
            sim::simulate(plan, opts, &model.p50_all(plan))
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
        sim::simulate(plan, opts, &d).makespan.as_millis() as u64
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
) -> Result<SweepDoc, Failure> {
    let Some(pool) = plan.pools.iter().position(|p| p.name == sweep.pool) else {
        let known = plan.pools.iter().map(|p| p.name.clone()).collect();
        return Err(Failure::Input(vec![Problem::new(
            Location::file("--sweep"),
            sweep.pool.clone(),
            ProblemKind::Unknown {
                what: "pool",
                name: sweep.pool.clone(),
                known,
            },
        )]));
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
        (c, sim::simulate(plan, &o, durations).makespan.as_secs_f64())
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
    args: &EstimateArgs,
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
        trials: args.trials,
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
        target_rto_s: args.target_rto.map(|t| t.as_secs_f64()),
        meets_target: args.target_rto.map(|t| makespan <= t.as_secs_f64()),
        sweep,
    }
}

fn print_text(d: &EstimateDoc) {
    let h = |s: f64| {
        super::plan::human(Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX))
    };
    outln!(
        "estimate for plan {} ({} sites, {} steps), policy {:?}, model: {}",
        &d.plan_hash[..12],
        d.sites,
        d.steps,
        d.policy,
        d.model
    );
    outln!(
        "  makespan       {}{}",
        h(d.makespan_s),
        if d.trials > 1 {
            format!(
                " (p50 {}, p90 {} over {} trials)",
                h(d.makespan_p50_s),
                h(d.makespan_p90_s),
                d.trials
            )
        } else {
            String::new()
        }
    );
    outln!(
        "  lower bound    {} (makespan is {:.2}× it)",
        h(d.lower_bound_s),
        d.makespan_s / d.lower_bound_s.max(1e-9)
    );
    outln!(
        "  per site       p50 {}, p95 {}, max {}",
        h(d.site_restore_s.p50),
        h(d.site_restore_s.p95),
        h(d.site_restore_s.max)
    );
    let latest: Vec<String> = d
        .latest_sites
        .iter()
        .map(|(s, t)| format!("{s} {}", h(*t)))
        .collect();
    outln!("  latest sites   {}", latest.join(", "));
    outln!("  pools          capacity, utilization");
    for p in &d.pools {
        outln!(
            "    {:<12} {:>5}  {:>5.1}%",
            p.name,
            p.capacity,
            p.utilization * 100.0
        );
    }
    match &d.bottleneck {
        Some(b) => outln!("  bottleneck     pool {b}"),
        None => outln!(
            "  bottleneck     none above 80% use: the dependency chain (critical path) bounds the restore"
        ),
    }
    outln!(
        "  critical path  {}: {} … {}",
        h(d.critical_path.length_s),
        d.critical_path.first.as_deref().unwrap_or("-"),
        d.critical_path.last.as_deref().unwrap_or("-")
    );
    if let (Some(t), Some(ok)) = (d.target_rto_s, d.meets_target) {
        outln!(
            "  target RTO     {}: {}",
            h(t),
            if ok { "met" } else { "NOT met" }
        );
    }
    if let Some(s) = &d.sweep {
        outln!("  sweep of pool {}:", s.pool);
        for (c, m) in &s.points {
            outln!("    {:>5}  {}", c, h(*m));
        }
        match (s.smallest_meeting_target, d.target_rto_s) {
            (Some(c), Some(t)) => outln!("  smallest {} capacity meeting {}: {c}", s.pool, h(t)),
            (None, Some(t)) => outln!("  no {} capacity in the range meets {}", s.pool, h(t)),
            _ => {}
        }
    }
}

/// The simulated schedule as a timeline, drawn like a real run.
fn forecast_timeline(
    plan: &Plan,
    schedule: &Schedule,
    doc: &EstimateDoc,
) -> crate::report::timeline::Timeline {
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
            "simulated makespan {}, lower bound {}, policy {:?}, model: {}",
            super::plan::human(schedule.makespan),
            super::plan::human(plan.lower_bound),
            doc.policy,
            doc.model
        ),
        lane_mode: mode,
        lanes: lanes.names,
        products: plan.products.clone(),
        bars,
        span_ms: schedule.makespan.as_millis() as u64,
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
