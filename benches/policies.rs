//! Scheduling policies against the planner's lower bound: makespan ÷ lower bound for each policy
//! on reference mixes of the shipped workflow (heterogeneous site sizes, three pools, shared shard
//! fetches), simulated with the same core that runs restores. Goal: critical-path ≤ 1.05.
//! Prints a table; results are recorded in docs/benchmarks.md. `cargo bench --bench policies`.

use std::collections::BTreeMap;
use std::sync::Arc;

use drover::generate::{GenerateOptions, request_toml};
use drover::plan::{PlanOptions, plan};
use drover::request::Request;
use drover::schedule::Policy;
use drover::sim::{self, SimOptions};
use drover::source::Source;
use drover::workflow::Workflow;

/// Name, number of sites, pool capacity overrides.
type Mix = (&'static str, usize, &'static [(&'static str, u32)]);

fn main() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/workflows/saas-platform.toml");
    let wf = Workflow::parse(
        &Source::new(path, std::fs::read_to_string(path).unwrap()),
        drover::steps::KNOWN_KINDS,
    )
    .unwrap();
    let mixes: [Mix; 4] = [
        ("db-bound: 2,000 sites, db=8", 2000, &[]),
        (
            "balanced: 2,000 sites, s3=8 db=24 cpu=12",
            2000,
            &[("s3", 8), ("db", 24), ("cpu", 12)],
        ),
        (
            "chain-bound: 500 sites, every pool 256",
            500,
            &[("s3", 256), ("db", 256), ("cpu", 256)],
        ),
        (
            "skewed: 883 sites, 10 per shard, db=16 cpu=8",
            883,
            &[("db", 16), ("cpu", 8)],
        ),
    ];
    println!(
        "{:<46} {:>12} {:>8} {:>8} {:>8} {:>8}",
        "mix", "lower bound", "cp", "fifo", "tier", "small"
    );
    for (name, sites, pools) in mixes {
        let per_shard = if name.starts_with("skewed") { 10 } else { 40 };
        let opts = GenerateOptions {
            sites,
            seed: 7,
            sites_per_shard: per_shard,
            ..Default::default()
        };
        let req = Request::parse(
            &Source::new("r.toml", request_toml(&opts)),
            |_| unreachable!(),
        )
        .unwrap();
        let caps: BTreeMap<String, u32> = pools.iter().map(|(p, c)| (p.to_string(), *c)).collect();
        let plan = Arc::new(
            plan(
                &wf,
                &req,
                &PlanOptions {
                    pool_capacity: caps,
                },
            )
            .unwrap(),
        );
        let durations: Vec<u64> = plan
            .steps
            .iter()
            .map(|s| s.estimate.as_millis() as u64)
            .collect();
        let lb = plan.lower_bound.as_secs_f64();
        let ratio = |policy| {
            let mut o = SimOptions::for_plan(&plan);
            o.policy = policy;
            sim::simulate(&plan, &o, &sim::model::Durations::fixed(&durations))
                .makespan
                .as_secs_f64()
                / lb
        };
        println!(
            "{:<46} {:>11.0}s {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
            name,
            lb,
            ratio(Policy::CriticalPath),
            ratio(Policy::Fifo),
            ratio(Policy::TierFirst),
            ratio(Policy::SmallestSiteFirst)
        );
    }
}
