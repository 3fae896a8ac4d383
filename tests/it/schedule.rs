//! The scheduler under tokio's paused clock, with the in-memory ledger: retries, backoff,
//! timeouts, pool limits, ordering and failure isolation, deterministic and instant.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use drover::events::{CollectEvents, RunEvent};
use drover::ledger::memory::MemoryLedger;
use drover::ledger::{Ledger, NewRun, RunInfo, Snapshot, StepRecord, StepState};
use drover::plan::{Plan, PlanOptions, plan};
use drover::request::Request;
use drover::schedule::{self, Control, Journal, RunOptions, RunSummary};
use drover::source::Source;
use drover::status::SiteState;
use drover::steps::{Registry, StepContext, StepError, StepKind, StepOutput};
use drover::workflow::Workflow;

/// A workflow with one product `p` whose only step is described by `step`, and a site step.
fn plan_of(workflow: &str, sites: &str) -> Plan {
    let mut kinds = drover::steps::KNOWN_KINDS.to_vec();
    kinds.push("probe");
    let wf = Workflow::parse(&Source::new("wf.toml", workflow), &kinds).expect("valid workflow");
    let req =
        format!("[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"p\"]\n{sites}");
    let req =
        Request::parse(&Source::new("req.toml", req), |_| unreachable!()).expect("valid request");
    plan(&wf, &req, &PlanOptions::default()).expect("plans")
}

fn sites(n: usize, shard_of: impl Fn(usize) -> usize) -> String {
    (1..=n)
        .map(|i| {
            format!(
                "[[sites]]\nid = \"site-{i:03}\"\nattrs = {{ shard = \"p-{}\" }}\n",
                shard_of(i)
            )
        })
        .collect()
}

struct Outcome {
    summary: RunSummary,
    events: Vec<RunEvent>,
    records: Vec<StepRecord>,
    plan: Arc<Plan>,
    elapsed: Duration,
}

impl Outcome {
    fn state(&self, id: &str) -> &StepRecord {
        let i = self
            .plan
            .steps
            .iter()
            .position(|s| s.id == id)
            .unwrap_or_else(|| panic!("no step {id}"));
        &self.records[i]
    }
}

async fn run_plan(
    plan: Plan,
    registry: Registry,
    configure: impl FnOnce(&mut RunOptions),
) -> Outcome {
    let plan = Arc::new(plan);
    let info = RunInfo {
        run_id: "run-test".into(),
        created_at: 0,
        drover_version: "test".into(),
        plan_hash: plan.hash.clone(),
        workflow_name: "t".into(),
        request_name: "t".into(),
        pools: BTreeMap::new(),
        max_parallel: 64,
        policy: None,
        excluded: Default::default(),
        claimed_in: None,
    };
    let ledger = Arc::new(Mutex::new(MemoryLedger::new(&NewRun {
        info,
        snapshot: Snapshot::default(),
        plan: &plan,
    })));
    let mut opts = RunOptions::new(
        &plan,
        "run-test",
        std::path::Path::new("/nonexistent-staging"),
    );
    configure(&mut opts);
    let events = CollectEvents::default();
    let start = tokio::time::Instant::now();
    let records = vec![StepRecord::default(); plan.steps.len()];
    let journal = Journal::inline(Box::new(Shared(Arc::clone(&ledger))));
    let summary = schedule::run(
        Arc::clone(&plan),
        &records,
        &registry,
        journal,
        opts,
        &events,
        Control::default(),
    )
    .await
    .expect("run completes");
    let records = ledger.lock().unwrap().steps().to_vec();
    Outcome {
        summary,
        events: events.0.into_inner().unwrap(),
        records,
        plan,
        elapsed: start.elapsed(),
    }
}

/// Lets the test read the memory ledger after the scheduler consumed its box.
struct Shared(Arc<Mutex<MemoryLedger>>);

impl Ledger for Shared {
    fn apply(&mut self, ops: &[drover::ledger::Op]) -> Result<(), drover::ledger::LedgerError> {
        self.0.lock().unwrap().apply(ops)
    }
    fn load(&self) -> Result<drover::ledger::Stored, drover::ledger::LedgerError> {
        self.0.lock().unwrap().load()
    }
}

const ONE_STEP: &str = r#"
[workflow]
name = "t"
[pools.db]
capacity = 2
[products.p]
[steps.work]
scope = "product"
kind = "KIND"
params = PARAMS
uses = { db = 1 }
estimate = "1m"
timeout = "TIMEOUT"
retry = { attempts = 3, initial_backoff = "10s", max_backoff = "15s" }
[steps.done]
scope = "site"
kind = "noop"
after = ["work"]
estimate = "1s"
"#;

fn one_step(kind: &str, params: &str, timeout: &str) -> String {
    ONE_STEP
        .replace("KIND", kind)
        .replace("PARAMS", params)
        .replace("TIMEOUT", timeout)
}

#[tokio::test(start_paused = true)]
async fn flaky_step_is_retried_with_backoff_then_succeeds() {
    let plan = plan_of(
        &one_step("flaky", "{ failures = \"2\" }", "1h"),
        &sites(1, |_| 1),
    );
    let out = run_plan(plan, Registry::builtin(), |_| {}).await;
    assert!(out.summary.all_restored());
    assert_eq!(out.state("site-001/p/work").attempts, 3);
    let delays: Vec<Duration> = out
        .events
        .iter()
        .filter_map(|e| match e {
            RunEvent::StepRetrying { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(delays.len(), 2);
    // Nominal 10s then 15s (20s capped), each jittered into [50%, 100%].
    assert!(
        delays[0] >= Duration::from_secs(5) && delays[0] <= Duration::from_secs(10),
        "{delays:?}"
    );
    assert!(
        delays[1] >= Duration::from_millis(7500) && delays[1] <= Duration::from_secs(15),
        "{delays:?}"
    );
    assert!(
        out.elapsed >= delays[0] + delays[1],
        "the clock advanced through both backoffs"
    );
}

#[tokio::test(start_paused = true)]
async fn the_live_eta_learns_from_steps_as_they_finish() {
    // Estimated at a minute each, the 20 steps take a second: 10 waves on 2 slots, 10 s in all.
    let plan = plan_of(
        &one_step("probe", "{ sleep = \"1s\" }", "1h"),
        &sites(20, |_| 1),
    );
    let out = run_plan(plan, probe_registry(Probe::default()), |_| {}).await;
    assert!(out.summary.all_restored());
    let etas: Vec<(Duration, Duration)> = out
        .events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Progress(p) => p.eta.map(|eta| (p.elapsed, eta)),
            _ => None,
        })
        .collect();
    let first = etas.first().expect("progress with an ETA").1;
    assert!(
        first >= Duration::from_secs(300),
        "from estimates alone: {first:?}"
    );
    let (at, eta) = *etas
        .iter()
        .find(|(at, _)| *at >= Duration::from_secs(5))
        .expect("progress after 5 s");
    let left = out.elapsed.saturating_sub(at);
    assert!(
        eta <= left + Duration::from_secs(3),
        "at {at:?} with {left:?} really left, the ETA said {eta:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_stop_at_the_attempt_budget_and_block_dependents() {
    let plan = plan_of(
        &one_step("flaky", "{ failures = \"5\" }", "1h"),
        &sites(1, |_| 1),
    );
    let out = run_plan(plan, Registry::builtin(), |_| {}).await;
    let work = out.state("site-001/p/work");
    assert_eq!(work.state, StepState::Failed);
    assert_eq!(work.attempts, 3);
    assert!(
        work.last_error
            .as_deref()
            .unwrap()
            .contains("gave up after 3 attempts"),
        "{work:?}"
    );
    let done = out.state("site-001/done");
    assert_eq!(done.state, StepState::Blocked);
    assert_eq!(
        done.note.as_deref(),
        Some("site-001/p/work"),
        "a blocked step names the step that failed"
    );
    assert_eq!(out.summary.sites[&SiteState::Failed], 1);
}

#[tokio::test(start_paused = true)]
async fn a_step_that_overruns_its_timeout_is_cut_off_and_retried() {
    let plan = plan_of(
        &one_step("sleep", "{ duration = \"10m\" }", "1m"),
        &sites(1, |_| 1),
    );
    let out = run_plan(plan, Registry::builtin(), |_| {}).await;
    let work = out.state("site-001/p/work");
    assert_eq!(work.state, StepState::Failed);
    assert!(
        work.last_error
            .as_deref()
            .unwrap()
            .contains("timed out after 1m"),
        "{work:?}"
    );
    // Three one-minute attempts plus two backoffs of at most 15s, never the ten-minute sleep.
    assert!(
        out.elapsed >= Duration::from_secs(180) && out.elapsed < Duration::from_secs(240),
        "{:?}",
        out.elapsed
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_site_does_not_stop_the_others() {
    let wf = one_step("probe", "{ fail_site = \"site-003\" }", "1h");
    let plan = plan_of(&wf, &sites(6, |_| 1));
    let out = run_plan(plan, probe_registry(Probe::default()), |_| {}).await;
    assert_eq!(out.summary.sites[&SiteState::Restored], 5);
    assert_eq!(out.summary.sites[&SiteState::Failed], 1);
    assert_eq!(out.state("site-003/p/work").state, StepState::Failed);
    assert_eq!(out.state("site-003/done").state, StepState::Blocked);
    assert_eq!(out.state("site-004/done").state, StepState::Succeeded);
}

const SHARED: &str = r#"
[workflow]
name = "t"
[pools.s3]
capacity = 4
[products.p]
[steps.fetch]
scope = "shared"
unit = "shard"
kind = "probe"
params = { fail_unit = "p-2" }
uses = { s3 = 1 }
estimate = "30s"
retry = { attempts = 1 }
[steps.work]
scope = "product"
kind = "noop"
after = ["fetch"]
estimate = "1m"
[steps.done]
scope = "site"
kind = "noop"
after = ["work"]
estimate = "1s"
"#;

#[tokio::test(start_paused = true)]
async fn a_failed_shared_unit_blocks_exactly_the_sites_on_it() {
    // Sites 1–3 on shard p-1, 4–6 on p-2 (whose fetch fails), 7–9 on p-3.
    let plan = plan_of(SHARED, &sites(9, |i| (i - 1) / 3 + 1));
    let out = run_plan(plan, probe_registry(Probe::default()), |_| {}).await;
    assert_eq!(out.state("shard/p-2/fetch").state, StepState::Failed);
    let blocked: Vec<&str> = out.plan.sites.iter().enumerate().filter(|(s, _)| out.records.iter().zip(&out.plan.steps).any(|(r, st)| r.state == StepState::Blocked && matches!(st.owner, drover::plan::Owner::Site { site, .. } if site as usize == *s))).map(|(_, s)| s.id.as_str()).collect();
    assert_eq!(blocked, ["site-004", "site-005", "site-006"]);
    assert_eq!(out.summary.sites[&SiteState::Restored], 6);
    assert_eq!(out.summary.sites[&SiteState::Blocked], 3);
}

#[tokio::test(start_paused = true)]
async fn pool_capacity_and_the_global_limit_are_never_exceeded() {
    let probe = Probe::default();
    let plan = plan_of(
        &one_step("probe", "{ sleep = \"1m\" }", "1h"),
        &sites(20, |_| 1),
    );
    let out = run_plan(plan, probe_registry(probe.clone()), |_| {}).await;
    assert!(out.summary.all_restored());
    assert_eq!(probe.peak.load(Ordering::SeqCst), 2, "db has 2 slots");
    // 20 one-minute steps, 2 at a time: 10 minutes.
    assert!(
        out.elapsed >= Duration::from_secs(600) && out.elapsed < Duration::from_secs(610),
        "{:?}",
        out.elapsed
    );

    let probe = Probe::default();
    let plan = plan_of(
        &one_step("probe", "{ sleep = \"1m\" }", "1h"),
        &sites(20, |_| 1),
    );
    run_plan(plan, probe_registry(probe.clone()), |o| o.max_parallel = 1).await;
    assert_eq!(probe.peak.load(Ordering::SeqCst), 1, "--max-parallel 1");
}

const RANKED: &str = r#"
[workflow]
name = "t"
[pools.db]
capacity = 1
[products.p]
[steps.work]
scope = "product"
kind = "probe"
params = { sleep = "1s" }
uses = { db = 1 }
estimate = "1m"
scale = { attribute = "gb", per = "1m" }
"#;

#[tokio::test(start_paused = true)]
async fn longest_remaining_work_starts_first_then_tier() {
    let probe = Probe::default();
    let sites = "[[sites]]\nid = \"site-a\"\nattrs = { gb = 1 }\n[[sites]]\nid = \"site-b\"\nattrs = { gb = 9 }\n[[sites]]\nid = \"site-c\"\ntier = \"enterprise\"\nattrs = { gb = 1 }\n[[sites]]\nid = \"site-d\"\nattrs = { gb = 5 }\n";
    run_plan(plan_of(RANKED, sites), probe_registry(probe.clone()), |o| {
        o.policy = drover::schedule::Policy::CriticalPath
    })
    .await;
    let order = probe.order.lock().unwrap().clone();
    assert_eq!(
        order,
        [
            "site-b/p/work",
            "site-d/p/work",
            "site-c/p/work",
            "site-a/p/work"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn idempotency_key_is_the_same_for_every_attempt() {
    let probe = Probe::default();
    let plan = plan_of(
        &one_step("probe", "{ fail_attempts = \"2\" }", "1h"),
        &sites(1, |_| 1),
    );
    run_plan(plan, probe_registry(probe.clone()), |_| {}).await;
    let keys = probe.keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 3);
    assert!(
        keys.iter().all(|k| k == "run-test/site-001/p/work"),
        "{keys:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn outputs_reach_dependent_steps() {
    let probe = Probe::default();
    let wf = one_step("probe", "{ }", "1h").replace(
        "[steps.done]\nscope = \"site\"\nkind = \"noop\"",
        "[steps.done]\nscope = \"site\"\nkind = \"probe\"",
    );
    run_plan(
        plan_of(&wf, &sites(1, |_| 1)),
        probe_registry(probe.clone()),
        |_| {},
    )
    .await;
    let seen = probe.upstream.lock().unwrap().clone();
    assert_eq!(
        seen.get("site-001/done").map(String::as_str),
        Some("site-001/p/work=\"ran site-001/p/work\"")
    );
}

/// A test step kind: counts concurrency, records order, keys and upstream outputs, and fails on
/// request.
#[derive(Clone, Default)]
struct Probe {
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    order: Arc<Mutex<Vec<String>>>,
    keys: Arc<Mutex<Vec<String>>>,
    upstream: Arc<Mutex<HashMap<String, String>>>,
}

fn probe_registry(probe: Probe) -> Registry {
    let mut r = Registry::builtin();
    r.register("probe", probe);
    r
}

#[async_trait]
impl StepKind for Probe {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        self.order.lock().unwrap().push(ctx.step_id.clone());
        self.keys.lock().unwrap().push(ctx.idempotency_key.clone());
        let up: Vec<String> = ctx
            .upstream
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        self.upstream
            .lock()
            .unwrap()
            .insert(ctx.step_id.clone(), up.join(","));
        if let Some(d) = ctx.param("sleep") {
            tokio::time::sleep(humantime::parse_duration(d).unwrap()).await;
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        let fail_site = ctx
            .param("fail_site")
            .is_some_and(|s| ctx.site.as_deref() == Some(s));
        let fail_unit = ctx
            .param("fail_unit")
            .is_some_and(|u| ctx.step_id.contains(&format!("/{u}/")));
        if fail_site || fail_unit {
            return Err(StepError::Permanent("probe: told to fail".into()));
        }
        if ctx
            .param("fail_attempts")
            .is_some_and(|n| ctx.attempt <= n.parse().unwrap())
        {
            return Err(StepError::Retryable("probe: transient".into()));
        }
        Ok(serde_json::json!(format!("ran {}", ctx.step_id)))
    }
}

/// A ledger whose commits are slow, to widen the window in which a scheduler that released
/// dependents early would be caught.
struct SlowLedger(Arc<Mutex<MemoryLedger>>);

impl Ledger for SlowLedger {
    fn apply(&mut self, ops: &[drover::ledger::Op]) -> Result<(), drover::ledger::LedgerError> {
        std::thread::sleep(Duration::from_millis(20));
        self.0.lock().unwrap().apply(ops)
    }
    fn load(&self) -> Result<drover::ledger::Stored, drover::ledger::LedgerError> {
        self.0.lock().unwrap().load()
    }
}

/// Checks, as each step starts, that every dependency's success is already in the ledger.
struct DurableDeps {
    ledger: Arc<Mutex<MemoryLedger>>,
    plan: Arc<Mutex<Option<Arc<Plan>>>>,
    violations: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl StepKind for DurableDeps {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError> {
        let plan = self.plan.lock().unwrap().clone().unwrap();
        let i = plan.steps.iter().position(|s| s.id == ctx.step_id).unwrap();
        let ledger = self.ledger.lock().unwrap();
        for &d in &plan.steps[i].deps {
            if ledger.steps()[d as usize].state != StepState::Succeeded {
                self.violations.lock().unwrap().push(format!(
                    "{} started before {} was durable",
                    ctx.step_id, plan.steps[d as usize].id
                ));
            }
        }
        Ok(StepOutput::Null)
    }
}

#[tokio::test]
async fn dependents_start_only_after_their_dependencies_success_is_durable() {
    let wf = r#"
[workflow]
name = "t"
[pools.db]
capacity = 8
[products.p]
[steps.a]
scope = "product"
kind = "probe"
uses = { db = 1 }
estimate = "1s"
[steps.b]
scope = "product"
kind = "probe"
after = ["a"]
estimate = "1s"
[steps.c]
scope = "site"
kind = "probe"
after = ["b"]
estimate = "1s"
"#;
    let plan = Arc::new(plan_of(wf, &sites(30, |_| 1)));
    let info = RunInfo {
        run_id: "r".into(),
        created_at: 0,
        drover_version: "t".into(),
        plan_hash: plan.hash.clone(),
        workflow_name: "t".into(),
        request_name: "t".into(),
        pools: BTreeMap::new(),
        max_parallel: 64,
        policy: None,
        excluded: Default::default(),
        claimed_in: None,
    };
    let ledger = Arc::new(Mutex::new(MemoryLedger::new(&NewRun {
        info,
        snapshot: Snapshot::default(),
        plan: &plan,
    })));
    let violations = Arc::new(Mutex::new(Vec::new()));
    let mut registry = Registry::builtin();
    registry.register(
        "probe",
        DurableDeps {
            ledger: Arc::clone(&ledger),
            plan: Arc::new(Mutex::new(Some(Arc::clone(&plan)))),
            violations: Arc::clone(&violations),
        },
    );
    let journal = Journal::threaded(Box::new(SlowLedger(Arc::clone(&ledger))));
    let opts = RunOptions::new(&plan, "r", std::path::Path::new("/nonexistent"));
    let records = vec![StepRecord::default(); plan.steps.len()];
    let summary = schedule::run(
        Arc::clone(&plan),
        &records,
        &registry,
        journal,
        opts,
        &drover::events::NoEvents,
        Control::default(),
    )
    .await
    .unwrap();
    assert!(summary.all_restored());
    let v = violations.lock().unwrap();
    assert!(v.is_empty(), "{} violations, e.g. {:?}", v.len(), v.first());
}
