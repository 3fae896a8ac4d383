//! `drover run`, `resume`, `status`, `retry` and `skip` through the real binary and real SQLite
//! ledgers: crashes (SIGKILL), interrupts (SIGINT), two processes on one ledger, repairs.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use support::{drover, status_json, write};

/// Products a and b (b after a); per product a short sleep then a noop; per site a final noop.
/// Every execution appends its idempotency key to `record`.
pub(crate) fn crash_workflow(record: &Path, sleep: &str) -> String {
    let r = record.display();
    format!(
        r#"
[workflow]
name = "crash"
[pools.db]
capacity = 16
[products.a]
[products.b]
after = ["a"]
[gate]
step = "load"
waits_for = "load"
[steps.fetch]
scope = "product"
kind = "sleep"
params = {{ duration = "{sleep}", record = "{r}" }}
uses = {{ db = 1 }}
estimate = "1s"
[steps.load]
scope = "product"
kind = "noop"
after = ["fetch"]
params = {{ record = "{r}" }}
estimate = "1s"
[steps.done]
scope = "site"
kind = "noop"
after = ["load"]
params = {{ record = "{r}" }}
estimate = "1s"
"#
    )
}

pub(crate) fn request(sites: usize) -> String {
    let mut out = String::from(
        "[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"a\", \"b\"]\n",
    );
    for i in 1..=sites {
        out.push_str(&format!("[[sites]]\nid = \"site-{i:04}\"\n"));
    }
    out
}

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("drover")
}

fn spawn(args: &[&str]) -> Child {
    Command::new(bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start drover")
}

fn succeeded(state: &Path) -> HashSet<String> {
    // Without create: a missing ledger is an error, never a new empty database.
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE;
    let conn = rusqlite::Connection::open_with_flags(state, flags).unwrap();
    let mut stmt = conn
        .prepare("SELECT id FROM steps WHERE state = 'succeeded'")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Step IDs from the record file's lines `<run id>/<step id> <attempt>`, from byte `from` on.
pub(crate) fn executions(record: &Path, from: usize) -> Vec<String> {
    let text = std::fs::read_to_string(record).unwrap_or_default();
    text[from.min(text.len())..]
        .lines()
        .map(|l| {
            l.split_once('/')
                .unwrap()
                .1
                .rsplit_once(' ')
                .unwrap()
                .0
                .to_owned()
        })
        .collect()
}

#[test]
fn sigkill_at_random_moments_then_resume_redoes_no_finished_step() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("executions.log");
    let wf = write(dir.path(), "wf.toml", crash_workflow(&record, "40ms"));
    let req = write(dir.path(), "req.toml", request(800));
    let state = dir.path().join("ledger.db");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill schedule seed: {seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);

    let mut kills = 0;
    let mut segments: Vec<(usize, HashSet<String>)> = Vec::new(); // (log offset at kill, succeeded at kill)
    let mut first = true;
    loop {
        let (s, w, r) = (
            state.to_str().unwrap(),
            wf.to_str().unwrap(),
            req.to_str().unwrap(),
        );
        let mut child = if first {
            spawn(&[
                "run",
                "--yes",
                "--max-sites",
                "100000",
                "--max-parallel",
                "32",
                "-w",
                w,
                "-r",
                r,
                "--state",
                s,
            ])
        } else {
            spawn(&["resume", "--state", s])
        };
        first = false;
        if kills < 12 {
            std::thread::sleep(Duration::from_millis(rng.random_range(150..500)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                if !state.exists() {
                    // Killed while still planning (a loaded machine): nothing to resume yet.
                    first = true;
                    continue;
                }
                kills += 1;
                let offset = std::fs::metadata(&record).map_or(0, |m| m.len() as usize);
                let done = succeeded(&state);
                assert_dependency_closed(&done);
                // A step starts only once its dependencies' successes are durable.
                let seg_start = segments.last().map_or(0, |s| s.0);
                for id in executions(&record, seg_start) {
                    for need in deps_of(&id) {
                        assert!(
                            done.contains(&need),
                            "{id} started before the success of {need} was durable"
                        );
                    }
                }
                segments.push((offset, done));
                continue;
            }
        }
        let status = child.wait_with_output().unwrap();
        assert_eq!(
            status.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        break;
    }
    assert!(
        kills >= 10,
        "only {kills} kills landed before the run finished; the test needs a longer run"
    );

    let doc = status_json(&state);
    assert_eq!(doc["all_restored"], true);
    let total = doc["steps_total"].as_u64().unwrap() as usize;
    assert_eq!(
        doc["steps"]["succeeded"].as_u64().unwrap() as usize,
        total,
        "every step succeeded"
    );

    let all = executions(&record, 0);
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), total, "every step executed");
    // No step recorded succeeded at a kill ran again after it.
    for (k, (offset, done)) in segments.iter().enumerate() {
        let again: Vec<String> = executions(&record, *offset)
            .into_iter()
            .filter(|id| done.contains(id))
            .collect();
        assert!(
            again.is_empty(),
            "after kill {k}, steps already recorded succeeded ran again: {:?}",
            &again[..again.len().min(5)]
        );
    }
    // Only steps in flight at a kill (executed, not yet recorded succeeded) ran twice.
    let mut counts: HashMap<&String, usize> = HashMap::new();
    for id in &all {
        *counts.entry(id).or_default() += 1;
    }
    let mut start = 0;
    let mut in_flight: HashMap<String, usize> = HashMap::new();
    for (offset, done) in &segments {
        for id in executions(&record, start)
            .into_iter()
            .take(count_lines(&record, start, *offset))
        {
            if !done.contains(&id) {
                *in_flight.entry(id).or_default() += 1;
            }
        }
        start = *offset;
    }
    for (id, n) in counts {
        let allowed = 1 + in_flight.get(id.as_str()).copied().unwrap_or(0);
        assert!(
            n <= allowed,
            "{id} ran {n} times but was in flight at only {} kills",
            allowed - 1
        );
    }
}

/// A step is recorded succeeded only after everything it depends on was (the crash workflow's
/// edges: fetch -> load per product, a's load -> b's load, both loads -> done).
fn assert_dependency_closed(done: &HashSet<String>) {
    for id in done {
        for need in deps_of(id) {
            assert!(
                done.contains(&need),
                "{id} is recorded succeeded but its dependency {need} is not"
            );
        }
    }
}

fn deps_of(id: &str) -> Vec<String> {
    let (site, rest) = id.split_once('/').unwrap();
    match rest {
        "a/load" => vec![format!("{site}/a/fetch")],
        "b/load" => vec![format!("{site}/b/fetch"), format!("{site}/a/load")],
        "done" => vec![format!("{site}/a/load"), format!("{site}/b/load")],
        _ => vec![],
    }
}

fn count_lines(record: &Path, from: usize, to: usize) -> usize {
    let text = std::fs::read_to_string(record).unwrap_or_default();
    text[from.min(text.len())..to.min(text.len())]
        .lines()
        .count()
}

#[test]
fn a_second_process_on_a_held_ledger_is_refused_with_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("x.log");
    let wf = write(dir.path(), "wf.toml", crash_workflow(&record, "2s"));
    let req = write(dir.path(), "req.toml", request(4));
    let state = dir.path().join("ledger.db");
    let (s, w, r) = (
        state.to_str().unwrap(),
        wf.to_str().unwrap(),
        req.to_str().unwrap(),
    );
    let mut first = spawn(&[
        "run",
        "--yes",
        "--max-sites",
        "100000",
        "-w",
        w,
        "-r",
        r,
        "--state",
        s,
    ]);
    wait_for(|| record.exists());
    let out = drover().args(["resume", "--state", s]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains(&format!("process {}", first.id())),
        "names the holder's PID: {stderr}"
    );
    assert!(
        stderr.contains(&drover::ledger::lock::hostname()),
        "names the host: {stderr}"
    );
    let out = drover().args(["retry", "--state", s]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "repairs also wait for the live run"
    );
    assert_eq!(first.wait().unwrap().code(), Some(0));
    // Once the holder is gone, the ledger is free again.
    drover().args(["resume", "--state", s]).assert().code(0);
}

#[test]
fn run_refuses_a_ledger_holding_a_different_plan() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("x.log");
    let wf = write(dir.path(), "wf.toml", crash_workflow(&record, "1ms"));
    let req = write(dir.path(), "req.toml", request(2));
    let other = write(dir.path(), "other.toml", request(3));
    let state = dir.path().join("ledger.db");
    support::run(&wf, &req, &state).assert().code(0);
    let before = std::fs::read(&state).unwrap();
    let out = support::run(&wf, &other, &state).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a different plan"));
    assert_eq!(
        std::fs::read(&state).unwrap(),
        before,
        "the ledger is untouched"
    );
    // The same plan again continues (and finds nothing left to do).
    support::run(&wf, &req, &state).assert().code(0);
}

/// A shared fetch whose unit value doubles as its planned number of failures (a test trick:
/// `flaky` reads it through `{unit}`), and a per-site check that fails as often as the site's
/// `check_failures` attribute says.
const REPAIR: &str = r#"
[workflow]
name = "repair"
[pools.db]
capacity = 4
[products.p]
[steps.fetch]
scope = "shared"
unit = "shard"
kind = "flaky"
params = { failures = "{unit}" }
estimate = "1s"
retry = { attempts = 2, initial_backoff = "10ms", max_backoff = "10ms" }
[steps.check]
scope = "product"
kind = "flaky"
after = ["fetch"]
params = { failures = "{check_failures}" }
estimate = "1s"
retry = { attempts = 2, initial_backoff = "10ms", max_backoff = "10ms" }
[steps.done]
scope = "site"
kind = "noop"
after = ["check"]
estimate = "1s"
"#;

#[test]
fn failures_are_isolated_reported_and_repaired_by_retry_and_skip() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write(dir.path(), "wf.toml", REPAIR);
    // Shard "2" fails twice (its whole budget); shard "1" once (recovers).
    // site-a's check passes; site-b's and site-c's never do.
    let req_text = "[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"p\"]\n\
        [[sites]]\nid = \"site-a\"\nattrs = { shard = \"2\", check_failures = 0 }\n\
        [[sites]]\nid = \"site-b\"\nattrs = { shard = \"2\", check_failures = 99 }\n\
        [[sites]]\nid = \"site-c\"\nattrs = { shard = \"1\", check_failures = 99 }\n";
    let req = write(dir.path(), "req.toml", req_text);
    let state = dir.path().join("ledger.db");
    let out = support::run(&wf, &req, &state).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "finished with failed sites: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("FAILED shard/2/fetch"));

    let doc = status_json(&state);
    assert_eq!(doc["all_restored"], false);
    assert_eq!(
        doc["sites"]["blocked"], 2,
        "both sites on shard 2 are blocked by its fetch"
    );
    assert_eq!(doc["sites"]["failed"], 1, "site-c failed its own check");
    let failures = doc["failures"].as_array().unwrap();
    let fetch = failures
        .iter()
        .find(|f| f["step"] == "shard/2/fetch")
        .unwrap();
    assert!(
        fetch["error"]
            .as_str()
            .unwrap()
            .contains("gave up after 2 attempts"),
        "{fetch}"
    );
    assert_eq!(fetch["blocked_steps"], 4, "two checks and two site steps");
    assert!(failures.iter().any(|f| f["step"] == "site-c/p/check"));
    let site_a = support::site_status(&doc, "site-a");
    assert!(
        site_a["reason"]
            .as_str()
            .unwrap()
            .contains("blocked by shard/2/fetch"),
        "{site_a}"
    );

    // Retrying site-a re-queues the shard fetch that blocks it; its attempt 3 succeeds.
    drover()
        .args(["retry", "--site", "site-a", "--state"])
        .arg(&state)
        .assert()
        .code(0);
    let out = drover()
        .args(["resume", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "site-b's and site-c's checks still fail"
    );
    let doc = status_json(&state);
    assert_eq!(doc["sites"]["blocked"], 0);
    assert_eq!(doc["sites"]["restored"], 1);
    assert_eq!(doc["sites"]["failed"], 2);

    // Skipping a failed check releases its site; a reason is required and kept.
    let out = drover()
        .args([
            "skip",
            "--step",
            "site-b/p/check",
            "--reason",
            " ",
            "--state",
        ])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an empty reason is refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    drover()
        .args([
            "skip",
            "--step",
            "site-b/p/done",
            "--reason",
            "x",
            "--state",
        ])
        .arg(&state)
        .assert()
        .code(2);
    drover()
        .args([
            "skip",
            "--step",
            "site-b/p/check",
            "--reason",
            "verified by hand",
            "--state",
        ])
        .arg(&state)
        .assert()
        .code(0);
    drover()
        .args(["resume", "--state"])
        .arg(&state)
        .assert()
        .code(3);
    let doc = status_json(&state);
    let b = support::site_status(&doc, "site-b");
    assert_eq!(b["state"], "restored", "{b}");
    assert_eq!(doc["steps"]["skipped"], 1);
    assert_eq!(doc["sites"]["failed"], 1);
}

#[test]
fn ctrl_c_drains_in_flight_steps_and_exits_130_then_resume_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("x.log");
    let wf = write(dir.path(), "wf.toml", crash_workflow(&record, "400ms"));
    let req = write(dir.path(), "req.toml", request(40));
    let state = dir.path().join("ledger.db");
    let (s, w, r) = (
        state.to_str().unwrap(),
        wf.to_str().unwrap(),
        req.to_str().unwrap(),
    );
    let child = spawn(&[
        "run",
        "--yes",
        "--max-sites",
        "100000",
        "-w",
        w,
        "-r",
        r,
        "--state",
        s,
        "--max-parallel",
        "8",
    ]);
    wait_for(|| record.exists());
    let started = Instant::now();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("drover resume --state"),
        "says how to continue: {stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "in-flight 400ms steps drained promptly"
    );
    let doc = status_json(&state);
    assert_eq!(
        doc["steps"]["running"], 0,
        "drained steps are not left running"
    );
    assert!(
        doc["steps"]["pending"].as_u64().unwrap() > 0,
        "it stopped before the end"
    );
    let executed_before = executions(&record, 0).len();
    drover().args(["resume", "--state", s]).assert().code(0);
    assert_eq!(status_json(&state)["all_restored"], true);
    let all = executions(&record, 0);
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "a drained run leaves nothing to run twice ({executed_before} ran before the interrupt)"
    );
}

#[test]
fn synthetic_300_sites_killed_half_way_and_resumed_restores_every_site() {
    let dir = tempfile::tempdir().unwrap();
    let req = dir.path().join("r.toml");
    drover()
        .args([
            "generate", "request", "--sites", "300", "--seed", "1", "--out",
        ])
        .arg(&req)
        .assert()
        .success();
    let wf = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/synthetic.toml");
    let state = dir.path().join("ledger.db");
    let (s, w, r) = (
        state.to_str().unwrap(),
        wf.to_str().unwrap(),
        req.to_str().unwrap(),
    );
    let mut child = spawn(&[
        "run",
        "--yes",
        "--max-sites",
        "100000",
        "-w",
        w,
        "-r",
        r,
        "--state",
        s,
    ]);
    // Half-way: wait until about half of the sites are restored, then SIGKILL.
    wait_for(|| {
        state.exists()
            && status_json(&state)["sites"]["restored"]
                .as_u64()
                .unwrap_or(0)
                >= 100
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let mid = status_json(&state);
    assert!(
        mid["sites"]["restored"].as_u64().unwrap() < 300,
        "killed before the end"
    );
    let out = drover().args(["resume", "--state", s]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // The resume keeps the policy the run chose instead of choosing again.
    assert!(
        stderr.contains("policy: auto keeps ") && !stderr.contains("policy: auto runs"),
        "{stderr}"
    );
    let doc = status_json(&state);
    assert_eq!(doc["all_restored"], true);
    assert_eq!(doc["sites"]["restored"], 300);
}

fn wait_for(mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_second_ctrl_c_stops_at_once_and_the_ledger_stays_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("x.log");
    let wf = write(dir.path(), "wf.toml", crash_workflow(&record, "30s"));
    let req = write(dir.path(), "req.toml", request(3));
    let state = dir.path().join("ledger.db");
    let (s, w, r) = (
        state.to_str().unwrap(),
        wf.to_str().unwrap(),
        req.to_str().unwrap(),
    );
    let child = spawn(&[
        "run",
        "--yes",
        "--max-sites",
        "100000",
        "-w",
        w,
        "-r",
        r,
        "--state",
        s,
        "--grace",
        "10m",
    ]);
    wait_for(|| executions(&record, 0).len() >= 6);
    let started = Instant::now();
    let pid = child.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "did not wait for the 30s steps or the 10m grace"
    );
    let doc = status_json(&state);
    assert_eq!(doc["steps"]["succeeded"], 0);
    assert_eq!(
        doc["steps"]["running"], 6,
        "the six aborted fetches are recorded as running, to be run again"
    );
    // Resume runs them again with the same idempotency keys (shortened: the sleeps are 30s, so
    // only check that the resume takes the ledger and relaunches them).
    let mut child = spawn(&["resume", "--state", s]);
    wait_for(|| executions(&record, 0).len() >= 12);
    let keys = executions(&record, 0);
    assert_eq!(
        keys[..6].iter().collect::<HashSet<_>>(),
        keys[6..12].iter().collect::<HashSet<_>>(),
        "the same steps run again"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Issue #11, class 8: with `--log-format json`, every event a terminal shows is a log line:
/// the canary passing, the drain after Ctrl-C and the cancellation after the grace period.
#[test]
fn json_logs_carry_canary_drain_and_cancel_events() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("x.log");
    let wf = write(dir.path(), "wf.toml", crash_workflow(&record, "700ms"));
    let req = write(dir.path(), "req.toml", request(20));
    let state = dir.path().join("ledger.db");
    let mut args = vec![
        "run",
        "--yes",
        "--log-format",
        "json",
        "--canary",
        "1",
        "--grace",
        "100ms",
    ];
    let (w, r, s) = (
        wf.to_str().unwrap(),
        req.to_str().unwrap(),
        state.to_str().unwrap(),
    );
    args.extend(["-w", w, "-r", r, "--state", s, "--max-parallel", "4"]);
    let child = spawn(&args);
    // The canary site takes two 700 ms fetches; after that the others start.
    wait_for(|| executions(&record, 0).len() >= 6);
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let events: Vec<String> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["fields"]["event"].as_str().map(str::to_owned))
        .collect();
    for wanted in ["run_started", "canary_passed", "draining", "cancelling"] {
        assert!(
            events.iter().any(|e| e == wanted),
            "no {wanted} in {events:?}\n{stderr}"
        );
    }
}

/// `--inject-failure` lets an operator practise repairs: the named steps fail without running,
/// the run ends with them failed, and `retry` + `resume` (without injection) restore the site.
#[test]
fn injected_failures_can_be_practised_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("x.log");
    let retry = "retry = { attempts = 2, initial_backoff = \"10ms\", max_backoff = \"10ms\" }";
    let text = crash_workflow(&record, "1ms").replacen(
        "estimate = \"1s\"\n[steps.load]",
        &format!("estimate = \"1s\"\n{retry}\n[steps.load]"),
        1,
    );
    let wf = write(dir.path(), "wf.toml", text);
    let req = write(dir.path(), "req.toml", request(3));
    let state = dir.path().join("s.db");
    let out = support::run(&wf, &req, &state)
        .args(["--inject-failure", "site-0002/a/"])
        .output()
        .unwrap();
    let stderr = support::exited(&out, 3);
    assert!(stderr.contains("injected failure"), "{stderr}");
    let doc = status_json(&state);
    let sites = doc["site_status"].as_array().unwrap();
    let state_of = |id: &str| sites.iter().find(|s| s["site"] == id).unwrap()["state"].clone();
    assert_eq!(state_of("site-0002"), "failed");
    assert_eq!(state_of("site-0001"), "restored");
    let ran: Vec<String> = executions(&record, 0);
    assert!(
        !ran.iter().any(|id| id.starts_with("site-0002/a/")),
        "an injected step never ran: {ran:?}"
    );
    let s = state.to_str().unwrap();
    drover()
        .args(["retry", "--state", s, "--site", "site-0002"])
        .assert()
        .code(0);
    drover().args(["resume", "--state", s]).assert().code(0);
    assert_eq!(status_json(&state)["all_restored"], true);

    // A prefix that names no step is a typo: refused before anything runs.
    let out = support::run(&wf, &req, dir.path().join("t.db"))
        .args(["--inject-failure", "site-9999/"])
        .output()
        .unwrap();
    let stderr = support::exited(&out, 2);
    assert!(stderr.contains("is the start of no step ID"), "{stderr}");
    assert!(
        !dir.path().join("t.db").exists(),
        "refused before a ledger was created"
    );
}
