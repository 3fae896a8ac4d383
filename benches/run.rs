//! Scheduler + ledger throughput: ~100,000 `noop` steps run in-process, once with every
//! transition committed durably to SQLite and once with the in-memory ledger. The ratio is the
//! cost of durability. Whole-process figures: scripts/bench-run. Results: docs/benchmarks.md.

use std::collections::BTreeMap;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use drover::events::NoEvents;
use drover::generate::{GenerateOptions, request_toml};
use drover::ledger::memory::MemoryLedger;
use drover::ledger::sqlite::SqliteLedger;
use drover::ledger::{Ledger, NewRun, RunInfo, Snapshot, StepRecord};
use drover::plan::{Plan, PlanOptions, plan};
use drover::request::Request;
use drover::schedule::{self, Control, Journal, RunOptions};
use drover::source::Source;
use drover::steps::Registry;
use drover::workflow::Workflow;

fn noop_plan() -> Plan {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/fixtures/noop.toml");
    let wf = Workflow::parse(
        &Source::new(path, std::fs::read_to_string(path).unwrap()),
        drover::steps::KNOWN_KINDS,
    )
    .unwrap();
    let opts = GenerateOptions {
        sites: 7700,
        all_products: true,
        ..Default::default()
    };
    let req = Request::parse(
        &Source::new("r.toml", request_toml(&opts)),
        |_| unreachable!(),
    )
    .unwrap();
    plan(&wf, &req, &PlanOptions::default()).unwrap()
}

fn new_run(plan: &Plan) -> NewRun<'_> {
    let info = RunInfo {
        run_id: "bench".into(),
        created_at: 0,
        drover_version: "bench".into(),
        plan_hash: plan.hash.clone(),
        workflow_name: "noop".into(),
        request_name: "bench".into(),
        pools: BTreeMap::new(),
        max_parallel: 256,
        policy: None,
        excluded: Default::default(),
        claimed_in: None,
    };
    NewRun {
        info,
        snapshot: Snapshot::default(),
        plan,
    }
}

fn execute(rt: &tokio::runtime::Runtime, plan: &Arc<Plan>, journal: Journal) {
    let records = vec![StepRecord::default(); plan.steps.len()];
    let opts = RunOptions::new(plan, "bench", std::path::Path::new("/nonexistent"));
    let summary = rt
        .block_on(schedule::run(
            Arc::clone(plan),
            &records,
            &Registry::builtin(),
            journal,
            opts,
            &NoEvents,
            Control::default(),
        ))
        .unwrap();
    assert!(summary.all_restored());
}

fn throughput(c: &mut Criterion) {
    let plan = Arc::new(noop_plan());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group(format!("run-{}-noop-steps", plan.steps.len()));
    group.sample_size(10);
    group.throughput(criterion::Throughput::Elements(plan.steps.len() as u64));
    let n = std::sync::atomic::AtomicUsize::new(0);
    group.bench_function("sqlite-durable", |b| {
        b.iter_batched(
            || {
                let n = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let path = dir.path().join(format!("l{n}.db"));
                Journal::threaded(
                    Box::new(SqliteLedger::create(&path, &new_run(&plan)).unwrap())
                        as Box<dyn Ledger>,
                )
            },
            |journal| execute(&rt, &plan, journal),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("in-memory", |b| {
        b.iter_batched(
            || Journal::inline(Box::new(MemoryLedger::new(&new_run(&plan)))),
            |journal| execute(&rt, &plan, journal),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
