//! Issue #15: one coordinator (`drover run --workers`) and separate `drover worker` processes
//! share a reference-platform restore through a PostgreSQL ledger on the suite's throwaway
//! server; workers die and are fenced, and the run finishes with every site restored once.

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use drover::platform::Platform;

fn drover_bin() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("drover")
}

/// `drover worker` on `state`, in `dir` (so every worker stages in the same place), its stderr
/// in `dir/<name>.err`.
fn worker(dir: &Path, state: &str, name: &str) -> Child {
    Command::new(drover_bin())
        .args(["worker", "--slots", "6", "--lease", "2s", "--state", state])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.err"))).unwrap())
        .spawn()
        .unwrap()
}

fn query(url: &str, sql: &str) -> Vec<postgres::Row> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client.query(sql, &[]).unwrap_or_default()
}

fn wait_for(what: &str, secs: u64, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A 300-site restore by one coordinator and three worker processes, one of them SIGKILLed in
/// the middle of its steps: those steps run again elsewhere after its lease, every site is
/// restored and verified, and each was reactivated and notified exactly once.
#[test]
fn three_workers_restore_300_sites_and_a_killed_worker_s_steps_are_rescued() {
    let url = support::postgres::database("workers");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::demo(d, "init", 300, &[]);
    support::demo(d, "incident", 300, &[]);
    let state = format!("{url}?ledger=w");
    let mut coordinator = Command::new(drover_bin())
        .args(["run", "--yes", "--max-sites", "1000", "--workers", "-w"])
        .arg(support::shipped_workflow())
        .args(["-r", "request.toml", "--state", &state])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("coordinator.err")).unwrap())
        .spawn()
        .unwrap();
    wait_for("the ledger", 120, || {
        !query(&url, "SELECT 1 FROM drover_runs WHERE ledger = 'w'").is_empty()
    });
    let mut workers: Vec<Child> = (0..3)
        .map(|i| worker(d, &state, &format!("w{i}")))
        .collect();
    let victim = format!("%:{}", workers[0].id());

    // Killed while it holds steps, once it has finished some.
    let held = |state: &str| -> usize {
        query(
            &url,
            &format!(
                "SELECT step FROM drover_work WHERE worker LIKE '{victim}' AND state = '{state}'"
            ),
        )
        .len()
    };
    wait_for("the first worker at work", 300, || {
        held("done") >= 20 && held("running") >= 1
    });
    workers[0].kill().unwrap(); // SIGKILL
    workers[0].wait().unwrap();
    let orphans: Vec<String> = query(
        &url,
        &format!("SELECT step FROM drover_work WHERE worker LIKE '{victim}' AND state = 'running'"),
    )
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert!(!orphans.is_empty(), "the worker died holding steps");

    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(s) = coordinator.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the run did not finish");
        std::thread::sleep(Duration::from_millis(100));
    };
    let said = std::fs::read_to_string(d.join("coordinator.err")).unwrap();
    assert!(status.success(), "the coordinator: {said}");
    for w in &mut workers[1..] {
        w.kill().unwrap();
        w.wait().unwrap();
    }

    // Every orphan was finished by another worker.
    for step in &orphans {
        let row = &query(
            &url,
            &format!("SELECT worker, state, attempt FROM drover_work WHERE step = '{step}'"),
        )[0];
        let (by, state, attempt): (String, String, i32) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(state, "done", "{step}");
        assert!(
            !by.ends_with(&victim[1..]),
            "{step} was finished by another worker"
        );
        assert!(attempt >= 2, "{step} ran again under a new attempt");
    }
    let by_worker = query(
        &url,
        "SELECT worker, count(*) FROM drover_work WHERE state = 'done' GROUP BY worker",
    );
    assert_eq!(by_worker.len(), 3, "all three workers did steps");

    // Every site restored as it was, each reactivated and notified exactly once.
    let out = support::drover()
        .args(["demo", "verify", "--format", "json", "--dir"])
        .arg(d)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["all_equal"], true, "{v}");
    assert_eq!(v["one_reactivation_each"], true, "{v}");
    let platform = Platform::open(d.join("platform")).unwrap();
    let mut notified: BTreeMap<String, usize> = BTreeMap::new();
    for m in platform.outbox().unwrap() {
        *notified.entry(m.site).or_default() += 1;
    }
    assert_eq!(notified.len(), 300);
    assert!(notified.values().all(|&n| n == 1), "{notified:?}");
}
