//! Planning benchmark: 10,000 sites × 6 products with the shipped workflow (~200k steps).
//! Parsing the request and the planner itself are measured separately.
//! Whole-process figures (wall time, peak RSS): scripts/bench-plan. Results: docs/benchmarks.md.

use criterion::{Criterion, criterion_group, criterion_main};
use drover::generate::{GenerateOptions, request_toml};
use drover::plan::{PlanOptions, plan};
use drover::request::Request;
use drover::source::Source;
use drover::workflow::Workflow;

fn inputs() -> (Workflow, Source) {
    let wf_path = concat!(env!("CARGO_MANIFEST_DIR"), "/workflows/saas-platform.toml");
    let wf_text = std::fs::read_to_string(wf_path).expect("shipped workflow");
    let wf = Workflow::parse(&Source::new(wf_path, wf_text), drover::steps::KNOWN_KINDS)
        .expect("valid workflow");
    let opts = GenerateOptions {
        sites: 10_000,
        seed: 1,
        all_products: true,
        ..Default::default()
    };
    (wf, Source::new("request.toml", request_toml(&opts)))
}

fn planning(c: &mut Criterion) {
    let (wf, req_source) = inputs();
    let no_csv = |_: &str| -> Result<Source, drover::diag::Problem> { unreachable!("no CSV") };
    let req = Request::parse(&req_source, no_csv).expect("valid request");
    let mut group = c.benchmark_group("plan-10k-sites-6-products");
    group.sample_size(10);
    group.bench_function("parse-request", |b| {
        b.iter(|| Request::parse(&req_source, no_csv).unwrap())
    });
    group.bench_function("plan", |b| {
        b.iter(|| plan(&wf, &req, &PlanOptions::default()).unwrap())
    });
    group.finish();
}

criterion_group!(benches, planning);
criterion_main!(benches);
