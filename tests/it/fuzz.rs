//! Seeded mutation fuzzing of every parser drover has: workflow, request, CSV site list, plan
//! JSON, backup manifest and ledger. Each case must end in a value or a typed error: never a
//! panic, never a hang. Inputs that pass the parsers are planned and simulated, so the numbers
//! in them reach the planner's and the simulator's arithmetic too.
//!
//! The normal test run tries 10,000+ cases in well under 30 s. A long campaign:
//!
//! ```sh
//! DROVER_FUZZ_CASES=2000000 DROVER_FUZZ_SEED=$RANDOM cargo test --release --test it fuzz:: -- --nocapture
//! ```
//!
//! A failing case prints its seed and input; save the input under `tests/it/fuzz/regressions/`
//! (named `<anything>.<workflow|request|csv|plan|manifest>`) and it is replayed on every run.

use crate::support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover::diag::Problem;
use drover::plan::PlanOptions;
use drover::request::Request;
use drover::source::Source;
use drover::workflow::Workflow;
use rand::{Rng, RngExt, SeedableRng};
use support::{REQUEST, WORKFLOW};

/// Values that are well-formed but hostile: huge, negative, odd units, control characters,
/// traversal, IDs of other kinds, template syntax.
const TOKENS: &[&str] = &[
    "500000000000years",
    "18446744073709551615",
    "9223372036854775807",
    "-1",
    "1e300",
    "NaN",
    "inf",
    "0",
    "0s",
    "300000years",
    "4294967296",
    "1e13",
    "\u{1b}[2J",
    "\u{7}",
    "\\u0000",
    "\u{202e}",
    "../../etc/passwd",
    "/",
    "{",
    "}",
    "{env:HOME}",
    "{site}",
    "{nope}",
    "123e4567-e89b-42d3-a456-426614174000",
    "app-7f3a",
    "wiki-3",
    "site-",
    "[[sites]]",
    "[steps.x]",
    "\"",
    "'",
    ",",
    "=",
    "\n",
    "é",
    "𝕏",
];

/// How many mutated cases each corpus gets (scaled by `DROVER_FUZZ_CASES`).
fn cases() -> usize {
    std::env::var("DROVER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12_000)
}

fn seed() -> u64 {
    std::env::var("DROVER_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_d20e)
}

/// One random edit of `text`: replace a token-sized span, insert a token, delete or duplicate
/// a line, flip a byte, or truncate.
fn mutate(text: &str, rng: &mut impl Rng) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..rng.random_range(1..=3) {
        let at = rng.random_range(0..=bytes.len());
        match rng.random_range(0..7) {
            0 | 1 => {
                // Replace the value after an `=` (or a random span) with a hostile token.
                let token = TOKENS[rng.random_range(0..TOKENS.len())].as_bytes();
                let end = (at + rng.random_range(0..12)).min(bytes.len());
                bytes.splice(at..end, token.iter().copied());
            }
            2 => {
                let token = TOKENS[rng.random_range(0..TOKENS.len())].as_bytes();
                bytes.splice(at..at, token.iter().copied());
            }
            3 => {
                let end = (at + rng.random_range(1..40)).min(bytes.len());
                bytes.drain(at..end);
            }
            4 => {
                let end = (at + rng.random_range(1..80)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            5 if !bytes.is_empty() => {
                let i = rng.random_range(0..bytes.len());
                bytes[i] ^= 1 << rng.random_range(0..8);
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

/// Runs one case, turning a panic into a test failure that shows the input.
fn check(what: &str, input: &[u8], case: impl FnOnce()) {
    let started = Instant::now();
    if catch_unwind(AssertUnwindSafe(case)).is_err() {
        panic!(
            "{what} panicked (seed {}) on input:\n{}",
            seed(),
            String::from_utf8_lossy(input)
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{what} took {:?} (a hang) on input:\n{}",
        started.elapsed(),
        String::from_utf8_lossy(input)
    );
}

fn source(name: &str, bytes: &[u8]) -> Result<Source, Problem> {
    Source::from_bytes(name.to_owned(), bytes.to_vec())
}

fn kinds() -> Vec<&'static str> {
    drover::steps::KNOWN_KINDS.to_vec()
}

/// Parses, and where both inputs hold, plans and simulates.
fn plan_and_simulate(workflow: &[u8], request: &[u8], csv: &[u8]) {
    let Ok(wf) = source("wf.toml", workflow)
        .map_err(|_| ())
        .and_then(|s| Workflow::parse(&s, &kinds()).map_err(|_| ()))
    else {
        return;
    };
    let Ok(req_source) = source("req.toml", request) else {
        return;
    };
    let Ok(req) = Request::parse(&req_source, |name| source(name, csv)) else {
        return;
    };
    let Ok(plan) = drover::plan::plan(&wf, &req, &PlanOptions::default()) else {
        return;
    };
    let plan = Arc::new(plan);
    let inputs = drover::plan::doc::PlanInputs::default();
    let _ = serde_json::to_string(&drover::plan::doc::PlanDoc::new(&plan, &inputs));
    let opts = drover::sim::SimOptions::for_plan(&plan);
    // The whole forecast: simulation, bounds, bottleneck, a few noisy trials.
    let fo = drover::sim::forecast::ForecastOptions {
        trials: 3,
        ..Default::default()
    };
    let model = drover::sim::model::DurationModel::default();
    let _ = drover::sim::forecast::forecast(&plan, &opts, &model, &fo);
}

/// The corpus: the test fixtures and the shipped workflows.
fn workflows() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
    let mut out = vec![WORKFLOW.to_owned()];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            out.push(std::fs::read_to_string(path).unwrap());
        }
    }
    out
}

const CSV: &str = "id,tier,products,size_gb,identity.shard,wiki.shard\nsite-0004,enterprise,identity wiki,12,identity-1,wiki-1\nsite-0005,,,3.5,identity-2,wiki-1\n";

fn request_with_csv() -> String {
    REQUEST.replacen(
        "products = [\"identity\", \"wiki\"]",
        "products = [\"identity\", \"wiki\"]\nsites_csv = \"sites.csv\"",
        1,
    )
}

/// Case `i`: the workflow, the request or the site list mutated in turn, the others intact.
fn one_mutated(i: usize, workflow: &str, request: &str, rng: &mut impl Rng) -> [Vec<u8>; 3] {
    let intact = |s: &str| s.as_bytes().to_vec();
    match i % 3 {
        0 => [mutate(workflow, rng), intact(request), intact(CSV)],
        1 => [intact(WORKFLOW), mutate(request, rng), intact(CSV)],
        _ => [intact(WORKFLOW), intact(request), mutate(CSV, rng)],
    }
}

#[test]
fn workflows_requests_and_site_lists_never_panic() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed());
    let workflows = workflows();
    let request = request_with_csv();
    let n = cases();
    for i in 0..n {
        let wf = &workflows[i % workflows.len()];
        let [w, r, c] = one_mutated(i, wf, &request, &mut rng);
        let input = [&w[..], b"\n----\n", &r[..], b"\n----\n", &c[..]].concat();
        check("plan", &input, || plan_and_simulate(&w, &r, &c));
    }
}

fn manifest_corpus() -> String {
    serde_json::json!({
        "format": "drover-backup/1",
        "unit": "site-0001/wiki",
        "product": "wiki",
        "site": "site-0001",
        "snapshot_time": "2022-04-05T07:30:00Z",
        "objects": [
            { "name": "attachments.tar", "size": 10240, "sha256": "a".repeat(64), "unpack": "tar" },
            { "name": "pages/p.db", "size": 3, "sha256": "b".repeat(64) }
        ]
    })
    .to_string()
}

#[test]
fn manifests_and_plan_documents_never_panic() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed() ^ 1);
    let manifest = manifest_corpus();
    let src = source("wf.toml", WORKFLOW.as_bytes()).unwrap();
    let wf = Workflow::parse(&src, &kinds()).unwrap();
    let req = Request::parse(&source("req.toml", REQUEST.as_bytes()).unwrap(), |n| {
        source(n, b"")
    })
    .unwrap();
    let plan = drover::plan::plan(&wf, &req, &PlanOptions::default()).unwrap();
    let inputs = drover::plan::doc::PlanInputs::default();
    let plan_doc = serde_json::to_string(&drover::plan::doc::PlanDoc::new(&plan, &inputs)).unwrap();
    for _ in 0..cases() / 3 {
        let m = mutate(&manifest, &mut rng);
        check("manifest", &m, || {
            let _ = drover::backup::Manifest::parse(&m);
        });
        let p = mutate(&plan_doc, &mut rng);
        check("plan document", &p, || {
            let _ = drover::sniff::kind_of(&p);
            let _ = serde_json::from_slice::<serde_json::Value>(&p);
        });
    }
}

/// A ledger file with bytes damaged: opening and loading it is an error, never a panic.
#[test]
fn damaged_ledgers_are_refused_not_panicked_on() {
    let dir = tempfile::tempdir().unwrap();
    let wf = "[workflow]\nname = \"n\"\n[products.p]\n[steps.s]\nscope = \"product\"\nkind = \"noop\"\nestimate = \"1s\"\n";
    let req = "[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"p\"]\n[[sites]]\nid = \"site-1\"\n[[sites]]\nid = \"site-2\"\n";
    let wf = support::write(dir.path(), "wf.toml", wf);
    let req = support::write(dir.path(), "req.toml", req);
    let state = dir.path().join("s.db");
    let out = support::run(&wf, &req, &state).output().unwrap();
    support::exited(&out, 0);
    let good = std::fs::read(&state).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed() ^ 2);
    let damaged = dir.path().join("damaged.db");
    for _ in 0..(cases() / 60).max(50) {
        let mut bytes = good.clone();
        for _ in 0..rng.random_range(1..=16) {
            let i = rng.random_range(0..bytes.len());
            bytes[i] = rng.random();
        }
        if rng.random_bool(0.2) {
            bytes.truncate(rng.random_range(0..bytes.len()));
        }
        std::fs::write(&damaged, &bytes).unwrap();
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.path().join(format!("damaged.db{suffix}")));
        }
        check("ledger", b"(binary ledger)", || {
            if let Ok(ledger) = drover::ledger::sqlite::SqliteLedger::open(&damaged) {
                use drover::ledger::Ledger;
                let _ = ledger.load();
            }
        });
    }
}

/// Every input that ever failed is replayed.
#[test]
fn regressions_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fuzz/regressions");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        let name = path.display().to_string();
        check(&name, &bytes, || match ext {
            "workflow" => plan_and_simulate(&bytes, request_with_csv().as_bytes(), CSV.as_bytes()),
            "request" => plan_and_simulate(WORKFLOW.as_bytes(), &bytes, CSV.as_bytes()),
            "csv" => plan_and_simulate(WORKFLOW.as_bytes(), request_with_csv().as_bytes(), &bytes),
            "manifest" => {
                let _ = drover::backup::Manifest::parse(&bytes);
            }
            other => panic!("{name}: unknown regression kind '{other}'"),
        });
        replayed += 1;
    }
    assert!(
        replayed >= 5,
        "the regression corpus is in tests/it/fuzz/regressions"
    );
}

/// The binary itself on mutated inputs: `plan` and `estimate` exit 0 or 2, never 101 (a panic)
/// and never hang. Fewer cases than in-process (each starts a process).
#[test]
fn the_binary_exits_0_or_2_on_mutated_inputs() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed() ^ 3);
    let dir = tempfile::tempdir().unwrap();
    let request = request_with_csv();
    for i in 0..(cases() / 40).max(100) {
        let [w, r, c] = one_mutated(i, WORKFLOW, &request, &mut rng);
        let wf = support::write(dir.path(), "wf.toml", &w);
        let req = support::write(dir.path(), "req.toml", &r);
        support::write(dir.path(), "sites.csv", &c);
        let command = if i % 2 == 0 {
            &["plan", "--offline"][..]
        } else {
            &["estimate"][..]
        };
        let started = Instant::now();
        let out = support::drover()
            .args(command)
            .arg("-w")
            .arg(&wf)
            .arg("-r")
            .arg(&req)
            .timeout(Duration::from_secs(20))
            .output()
            .unwrap();
        let code = out.status.code();
        assert!(
            matches!(code, Some(0 | 2)),
            "{command:?} exited {code:?} after {:?} on:\n{}\n----\n{}\n----\n{}\nstderr: {}",
            started.elapsed(),
            String::from_utf8_lossy(&w),
            String::from_utf8_lossy(&r),
            String::from_utf8_lossy(&c),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
