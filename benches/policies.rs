//! Scheduling policies against the lower bound, on requests as `drover generate request` makes
//! them by default, simulated with the same core that runs restores (workflow estimates as
//! durations). For each mix and policy: makespan ÷ lower bound, and the mean and p95 time until
//! a site is back. Then, per policy, the mean and the worst ratio over every mix.
//!
//! The mixes are not chosen by hand: the four of issue #18, then, for each of two more generated
//! requests, capacities by a rule — *balanced* (each pool's capacity proportional to its work, the
//! largest 32), and for each pool one where it binds (its balanced capacity halved) — and one
//! where only the dependency chain binds (every pool 256).
//!
//! `cargo bench --bench policies`; results are recorded in docs/benchmarks.md.

use std::collections::BTreeMap;
use std::sync::Arc;

use drover::generate::{GenerateOptions, request_toml};
use drover::plan::{Plan, PlanOptions, plan};
use drover::request::Request;
use drover::schedule::Policy;
use drover::sim::{self, Bounds, SimOptions};
use drover::source::Source;
use drover::workflow::Workflow;

struct Mix {
    name: String,
    plan: Arc<Plan>,
    capacity: Vec<u32>,
}

fn request_plan(wf: &Workflow, sites: usize, seed: u64) -> Arc<Plan> {
    let opts = GenerateOptions {
        sites,
        seed,
        ..Default::default()
    };
    let req = Request::parse(
        &Source::new("r.toml", request_toml(&opts)),
        |_| unreachable!(),
    )
    .unwrap();
    Arc::new(
        plan(
            wf,
            &req,
            &PlanOptions {
                pool_capacity: BTreeMap::new(),
            },
        )
        .unwrap(),
    )
}

fn with(plan: &Plan, set: &[(&str, u32)]) -> Vec<u32> {
    plan.pools
        .iter()
        .map(|p| {
            set.iter()
                .find(|(n, _)| *n == p.name)
                .map_or(p.capacity, |&(_, c)| c)
        })
        .collect()
}

/// The rule's mixes for one request.
fn ruled(plan: &Arc<Plan>, label: &str, out: &mut Vec<Mix>) {
    let work: Vec<f64> = plan.pools.iter().map(|p| p.demand.as_secs_f64()).collect();
    let most = work.iter().cloned().fold(0.0, f64::max).max(1e-9);
    let balanced: Vec<u32> = work
        .iter()
        .map(|w| ((w / most * 32.0).round() as u32).max(1))
        .collect();
    let show = |caps: &[u32]| {
        plan.pools
            .iter()
            .zip(caps)
            .map(|(p, c)| format!("{}={c}", p.name))
            .collect::<Vec<_>>()
            .join(" ")
    };
    out.push(Mix {
        name: format!("{label}, balanced {}", show(&balanced)),
        plan: Arc::clone(plan),
        capacity: balanced.clone(),
    });
    for (p, pool) in plan.pools.iter().enumerate() {
        let mut caps = balanced.clone();
        caps[p] = (caps[p] / 2).max(1);
        out.push(Mix {
            name: format!("{label}, {} binds {}", pool.name, show(&caps)),
            plan: Arc::clone(plan),
            capacity: caps,
        });
    }
    out.push(Mix {
        name: format!("{label}, chain binds (every pool 256)"),
        plan: Arc::clone(plan),
        capacity: vec![256; plan.pools.len()],
    });
}

fn main() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/workflows/saas-platform.toml");
    let wf = Workflow::parse(
        &Source::new(path, std::fs::read_to_string(path).unwrap()),
        drover::steps::KNOWN_KINDS,
    )
    .unwrap();
    let mut mixes = Vec::new();
    let p883 = request_plan(&wf, 883, 1);
    let p1500 = request_plan(&wf, 1500, 5);
    for (plan, label, set) in [
        (&p883, "883 sites, seed 1, db=16", &[("db", 16)][..]),
        (
            &p883,
            "883 sites, seed 1, db=12 cpu=6",
            &[("db", 12), ("cpu", 6)],
        ),
        (
            &p1500,
            "1,500 sites, seed 5, db=24 cpu=6 s3=16",
            &[("db", 24), ("cpu", 6), ("s3", 16)],
        ),
        (&p1500, "1,500 sites, seed 5, db=8", &[("db", 8)]),
    ] {
        mixes.push(Mix {
            name: label.to_owned(),
            plan: Arc::clone(plan),
            capacity: with(plan, set),
        });
    }
    ruled(
        &request_plan(&wf, 700, 11),
        "700 sites, seed 11",
        &mut mixes,
    );
    ruled(
        &request_plan(&wf, 2500, 12),
        "2,500 sites, seed 12",
        &mut mixes,
    );

    // Every built-in policy, then `auto` (the default): the one it chose.
    let names: Vec<&str> = Policy::CONCRETE
        .iter()
        .map(|p| p.name())
        .chain(["auto"])
        .collect();
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut site_means: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    println!("ratio = makespan ÷ lower bound; site = mean / p95 time until a site is back");
    for mix in &mixes {
        let ms = fixed_ms(&mix.plan);
        let durations = sim::model::Durations::fixed(&ms);
        let bounds = Bounds::new(&mix.plan, &ms, &mix.capacity);
        let lb = bounds.lower_bound_ms() as f64 / 1000.0;
        println!("\n{} — lower bound {:.0} s", mix.name, lb);
        let parts: Vec<String> = mix
            .plan
            .pools
            .iter()
            .enumerate()
            .map(|(p, pool)| {
                format!(
                    "{} {:.0} s + {:.0} s",
                    pool.name,
                    bounds.pool_ms[p] as f64 / 1000.0,
                    bounds.pool_edges_ms[p] as f64 / 1000.0
                )
            })
            .collect();
        println!(
            "  (work ÷ capacity + edges: {}; critical path {:.0} s)",
            parts.join(", "),
            bounds.critical_path_ms as f64 / 1000.0
        );
        let mut o = SimOptions::for_plan(&mix.plan);
        o.capacity = mix.capacity.clone();
        let outcomes = sim::compare(&mix.plan, &o, &durations);
        let chosen = sim::choose(&outcomes);
        let auto = *outcomes.iter().find(|x| x.policy == chosen).unwrap();
        for (k, out) in outcomes.iter().chain([&auto]).enumerate() {
            let ratio = out.makespan_ms as f64 / 1000.0 / lb;
            ratios[k].push(ratio);
            site_means[k].push(out.site_mean_ms as f64 / 1000.0 / lb);
            println!(
                "  {:<26} ratio {:>6.3}   site {:>7.0} s / {:>7.0} s",
                if k < Policy::CONCRETE.len() {
                    names[k].to_owned()
                } else {
                    format!("auto ({chosen})")
                },
                ratio,
                out.site_mean_ms as f64 / 1000.0,
                out.site_p95_ms as f64 / 1000.0,
            );
            if k < Policy::CONCRETE.len()
                && let Ok(want) = std::env::var("PROFILE")
                && mix.name.contains(&want)
            {
                o.policy = out.policy;
                profile(
                    &mix.plan,
                    &sim::simulate(&mix.plan, &o, &durations),
                    &mix.capacity,
                );
            }
        }
    }
    println!(
        "\nover {} mixes (site = mean time until a site is back ÷ lower bound):",
        mixes.len()
    );
    for (k, name) in names.iter().enumerate() {
        let (r, m) = (&ratios[k], &site_means[k]);
        println!(
            "  {:<22} ratio mean {:.3}  worst {:.3}   site mean {:.3}  worst {:.3}",
            name,
            r.iter().sum::<f64>() / r.len() as f64,
            r.iter().cloned().fold(0.0, f64::max),
            m.iter().sum::<f64>() / m.len() as f64,
            m.iter().cloned().fold(0.0, f64::max)
        );
    }
}

fn fixed_ms(plan: &Plan) -> Vec<u64> {
    plan.steps
        .iter()
        .map(|s| s.estimate.as_millis() as u64)
        .collect()
}

/// Per tenth of the makespan, each pool's use (an aid for finding where a policy loses).
fn profile(plan: &Plan, s: &sim::Schedule, caps: &[u32]) {
    let span = s.makespan.as_millis() as u64;
    let slices = 20u64;
    let mut busy = vec![vec![0u64; plan.pools.len()]; slices as usize];
    for (i, step) in plan.steps.iter().enumerate() {
        let (a, b) = (s.start_ms[i], s.end_ms[i]);
        for &(p, n) in &step.uses {
            for k in 0..slices {
                let (lo, hi) = (span * k / slices, span * (k + 1) / slices);
                let overlap = b.min(hi).saturating_sub(a.max(lo));
                busy[k as usize][p as usize] += overlap * n as u64;
            }
        }
    }
    for (k, row) in busy.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(p, &b)| {
                let width = span / slices * caps[p] as u64;
                format!(
                    "{} {:>3.0}%",
                    plan.pools[p].name,
                    100.0 * b as f64 / width.max(1) as f64
                )
            })
            .collect();
        println!("      {:>2}: {}", k, cells.join("  "));
    }
}
