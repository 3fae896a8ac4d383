//! `drover estimate`: forecast a restore by simulating it with the same scheduling core that runs
//! it, over virtual time. Answers how long, which pool is the bottleneck, and what capacity meets
//! a target RTO. The JSON document is described in docs/estimate.md.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{Done, Failure, Format};
use crate::diag::{Location, Problem, ProblemKind};
use crate::plan::{self, PlanOptions};
use crate::schedule::Policy;
use crate::sim::SimOptions;
use crate::sim::forecast::{self, EstimateDoc, ForecastError, ForecastOptions, Sweep};

#[derive(Args, Debug)]
pub struct EstimateArgs {
    /// Workflow file (TOML).
    #[arg(long, short)]
    workflow: PathBuf,
    /// Restore request (TOML).
    #[arg(long, short)]
    request: PathBuf,
    /// Learn step durations from earlier runs instead of the workflow's estimates (repeatable):
    /// a ledger of a run or a drill, or a drill history (drills.jsonl: every drill's ledger).
    /// Fitted per step kind and product against the estimate (size), and how many units of each
    /// pool really run at full speed. The forecast says which evidence it used and how old it is.
    #[arg(long)]
    history: Vec<PathBuf>,
    /// Pool capacity overrides, e.g. `db=8,s3=32`.
    #[arg(long, value_parser = super::parse_pools)]
    pools: Option<BTreeMap<String, u32>>,
    /// At most this many steps at once (as `drover run --max-parallel`).
    #[arg(
        long,
        default_value_t = crate::schedule::DEFAULT_MAX_PARALLEL as u32,
        value_parser = clap::value_parser!(u32).range(1..=100_000)
    )]
    max_parallel: u32,
    /// Which ready step starts first (as `drover run --policy`). Every policy is simulated
    /// either way; the forecast shows them side by side.
    #[arg(long, value_enum, default_value_t = Policy::Auto)]
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

pub fn run(args: EstimateArgs) -> Result<Done, Failure> {
    let inputs = crate::load::inputs(&args.workflow, &args.request)?;
    let plan = Arc::new(plan::plan(
        &inputs.workflow,
        &inputs.request,
        &PlanOptions {
            pool_capacity: args.pools.clone().unwrap_or_default(),
        },
    )?);
    let model = super::shared::learn_history(&args.history)?;
    let mut opts = SimOptions::for_plan(&plan);
    opts.max_parallel = args.max_parallel as usize;
    opts.policy = args.policy;
    let fo = ForecastOptions {
        trials: args.trials,
        seed: args.seed,
        target_rto: args.target_rto,
        sweep: args.sweep.clone(),
        now_ms: crate::ledger::now_ms(),
    };
    let forecast = forecast::forecast(&plan, &opts, &model, &fo).map_err(|e| match e {
        ForecastError::UnknownPool { pool, known } => Failure::Input(vec![Problem::new(
            Location::file("--sweep"),
            pool.clone(),
            ProblemKind::Unknown {
                what: "pool",
                name: pool,
                known,
            },
        )]),
    })?;
    let doc = &forecast.doc;
    if let Some(path) = &args.html {
        let page = crate::report::html(&forecast::timeline(&plan, &forecast));
        super::shared::write_atomically(path, |w| std::io::Write::write_all(w, page.as_bytes()))
            .map_err(Failure::Internal)?;
        errln!("wrote {}", path.display());
    }
    match args.format {
        Format::Json => super::print_json(doc)?,
        Format::Text => print_text(doc),
    }
    Ok(Done::Ok)
}

// Over 80 lines on purpose: a renderer, one block per line of the forecast, read top to bottom
// like the output it prints.
fn print_text(d: &EstimateDoc) {
    let h = |s: f64| {
        crate::report::human(Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX))
    };
    outln!(
        "estimate for plan {} ({} sites, {} steps), policy {}{}, model: {}",
        &d.plan_hash[..12],
        d.sites,
        d.steps,
        d.policy,
        if d.policy_auto {
            " (chosen by auto)"
        } else {
            ""
        },
        d.model
    );
    for e in &d.evidence {
        outln!(
            "  learned from   {} {}: {} steps{}",
            e.kind,
            e.source,
            e.steps,
            e.age_s
                .map(|a| format!(", ended {} ago", h(a)))
                .unwrap_or_default()
        );
    }
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
    if d.trials > 1 {
        let mut ranges: Vec<&(String, f64, f64)> = d.site_ranges.iter().collect();
        ranges.sort_by(|a, b| b.2.total_cmp(&a.2));
        let widest: Vec<String> = ranges
            .iter()
            .take(5)
            .map(|(s, p50, p90)| format!("{s} {}–{}", h(*p50), h(*p90)))
            .collect();
        outln!(
            "  site ranges    p50–p90 of each site over {} trials (all of them in --format json); latest: {}",
            d.trials,
            widest.join(", ")
        );
    }
    outln!("  policies       last site back, mean and p95 time until a site is back");
    for p in &d.policies {
        outln!(
            "    {:<20} {:>9}  {:>9}  {:>9}{}",
            p.policy.name(),
            h(p.makespan_s),
            h(p.site_mean_s),
            h(p.site_p95_s),
            if p.policy == d.policy {
                "  <- forecast"
            } else {
                ""
            }
        );
    }
    outln!("  pools          capacity, utilization, least time for the pool alone");
    for p in &d.pools {
        outln!(
            "    {:<12} {:>5}  {:>5.1}%  {}",
            p.name,
            p.capacity,
            p.utilization * 100.0,
            h(p.bound_s)
        );
    }
    outln!("  bottleneck     {}", bottleneck_text(d, h));
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
        outln!(
            "  sweep of pool {}: capacity, makespan, what bounds it",
            s.pool
        );
        for ((c, m), b) in s.points.iter().zip(&s.binding) {
            outln!("    {:>5}  {:<10} {b}", c, h(*m));
        }
        if let Some((c, other)) = &s.capped_from {
            outln!(
                "  from {} = {c} on, {other} bounds the restore: more {} gains little",
                s.pool,
                s.pool
            );
        }
        match (s.smallest_meeting_target, d.target_rto_s) {
            (Some(c), Some(t)) => outln!("  smallest {} capacity meeting {}: {c}", s.pool, h(t)),
            (None, Some(t)) => outln!("  no {} capacity in the range meets {}", s.pool, h(t)),
            _ => {}
        }
    }
}

/// What bounds the restore, in words, with what would relieve it.
fn bottleneck_text(d: &EstimateDoc, h: impl Fn(f64) -> String) -> String {
    let b = &d.bottleneck_detail;
    let Some(pool) = &b.pool else {
        return format!(
            "the dependency chain: the critical path ({}) is longer than any pool's work needs",
            h(b.bound_s)
        );
    };
    let mut text = format!("pool {pool}: its work needs {} at least", h(b.bound_s));
    let next = b.next.as_deref().unwrap_or("-");
    if let (Some(c), Some(m)) = (b.relieved_at, b.makespan_relieved_s) {
        if m < 0.95 * d.makespan_s {
            text.push_str(&format!(
                "; {pool} = {c} would cut that to {} (where {next} binds): forecast {} instead of {}",
                h(b.next_bound_s),
                h(m),
                h(d.makespan_s)
            ));
        } else {
            text.push_str(&format!(
                "; yet {pool} = {c} would not help (forecast {}): its steps would only slow each other down",
                h(m)
            ));
        }
    }
    text
}
