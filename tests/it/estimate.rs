//! `drover estimate` and the simulated time left in `drover status`, through the real binary.

use crate::support;

use std::path::Path;

use serde_json::Value;
use support::{drover, write};

fn estimate(dir: &Path, args: &[&str]) -> Value {
    let out = drover()
        .current_dir(dir)
        .arg("estimate")
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Start of the first step to end of the last, from the ledger.
fn measured_makespan_s(state: &Path) -> f64 {
    let conn = rusqlite::Connection::open(state).unwrap();
    let (start, end): (i64, i64) = conn
        .query_row(
            "SELECT MIN(started_at), MAX(ended_at) FROM steps",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    (end - start) as f64 / 1000.0
}

#[test]
fn the_forecast_of_a_real_sleep_workload_is_within_10_percent() {
    let dir = tempfile::tempdir().unwrap();
    drover()
        .current_dir(dir.path())
        .args([
            "generate", "request", "--sites", "300", "--seed", "1", "--out", "r.toml",
        ])
        .assert()
        .success();
    let wf = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/synthetic.toml");
    let wf = wf.to_str().unwrap();
    let forecast = estimate(dir.path(), &["-w", wf, "-r", "r.toml"])["makespan_s"]
        .as_f64()
        .unwrap();
    assert!(
        (20.0..=30.0).contains(&forecast),
        "the workload is scaled to 20–30 s, forecast {forecast}"
    );
    support::run(wf, "r.toml", "s.db")
        .current_dir(dir.path())
        .assert()
        .code(0);
    let measured = measured_makespan_s(&dir.path().join("s.db"));
    let error = (forecast - measured).abs() / measured;
    eprintln!(
        "forecast {forecast:.2} s, measured {measured:.2} s, error {:.1}%",
        error * 100.0
    );
    assert!(
        error <= 0.10,
        "forecast {forecast:.2} s vs measured {measured:.2} s: {:.1}% off",
        error * 100.0
    );
}

const EIGHT: &str = r#"
[workflow]
name = "eight"
[pools.db]
capacity = 1
[products.p]
[steps.load]
scope = "product"
kind = "noop"
uses = { db = 1 }
estimate = "10s"
[steps.up]
scope = "site"
kind = "noop"
after = ["load"]
estimate = "1s"
"#;

fn eight_sites(dir: &Path) {
    write(dir, "wf.toml", EIGHT);
    let sites: String = (1..=8)
        .map(|i| format!("[[sites]]\nid = \"site-{i}\"\n"))
        .collect();
    write(
        dir,
        "r.toml",
        format!("[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"p\"]\n{sites}"),
    );
}

#[test]
fn a_sweep_names_the_smallest_capacity_meeting_the_target() {
    let dir = tempfile::tempdir().unwrap();
    eight_sites(dir.path());
    // Eight 10 s loads then a 1 s step: with c slots, ceil(8 / c) × 10 s + 1 s.
    let doc = estimate(
        dir.path(),
        &[
            "-w",
            "wf.toml",
            "-r",
            "r.toml",
            "--sweep",
            "db=1..8",
            "--target-rto",
            "25s",
        ],
    );
    let points: Vec<(u64, f64)> = doc["sweep"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()))
        .collect();
    let expected: Vec<(u64, f64)> = (1..=8u64)
        .map(|c| (c, (8u64.div_ceil(c) * 10 + 1) as f64))
        .collect();
    assert_eq!(points, expected);
    assert_eq!(doc["sweep"]["smallest_meeting_target"], 4);
    assert_eq!(doc["bottleneck"], "db");
    assert_eq!(doc["makespan_s"], 81.0, "one slot: 8 × 10 s + 1 s");
    assert_eq!(doc["meets_target"], false);
}

#[test]
fn history_replaces_estimates_with_what_steps_really_took() {
    let dir = tempfile::tempdir().unwrap();
    eight_sites(dir.path());
    let by_estimate = estimate(dir.path(), &["-w", "wf.toml", "-r", "r.toml"]);
    assert_eq!(by_estimate["makespan_s"], 81.0);
    // The noop steps really take milliseconds, not the 10 s the workflow guesses.
    support::run("wf.toml", "r.toml", "h.db")
        .current_dir(dir.path())
        .assert()
        .code(0);
    let learned = estimate(
        dir.path(),
        &["-w", "wf.toml", "-r", "r.toml", "--history", "h.db"],
    );
    assert!(
        learned["model"].as_str().unwrap().starts_with("history"),
        "{}",
        learned["model"]
    );
    assert!(
        learned["makespan_s"].as_f64().unwrap() < 5.0,
        "learned: {}",
        learned["makespan_s"]
    );
}

#[test]
fn trials_give_a_spread() {
    let dir = tempfile::tempdir().unwrap();
    eight_sites(dir.path());
    let doc = estimate(
        dir.path(),
        &[
            "-w", "wf.toml", "-r", "r.toml", "--trials", "50", "--seed", "3",
        ],
    );
    let (p50, p90) = (
        doc["makespan_p50_s"].as_f64().unwrap(),
        doc["makespan_p90_s"].as_f64().unwrap(),
    );
    assert!(
        p50 > 60.0 && p50 < 100.0 && p90 > p50,
        "p50 {p50}, p90 {p90}"
    );
    let again = estimate(
        dir.path(),
        &[
            "-w", "wf.toml", "-r", "r.toml", "--trials", "50", "--seed", "3",
        ],
    );
    assert_eq!(
        doc["makespan_p90_s"], again["makespan_p90_s"],
        "deterministic for a seed"
    );
}

#[test]
fn status_reports_the_time_left_of_an_interrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let wf = r#"
[workflow]
name = "slow"
[pools.db]
capacity = 1
[products.p]
[steps.load]
scope = "product"
kind = "sleep"
params = { duration = "300ms" }
uses = { db = 1 }
estimate = "300ms"
"#;
    write(dir.path(), "wf.toml", wf);
    let sites: String = (1..=10)
        .map(|i| format!("[[sites]]\nid = \"site-{i}\"\n"))
        .collect();
    write(
        dir.path(),
        "r.toml",
        format!("[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"p\"]\n{sites}"),
    );
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("drover"))
        .current_dir(dir.path())
        .args([
            "run",
            "--yes",
            "--max-sites",
            "100000",
            "-w",
            "wf.toml",
            "-r",
            "r.toml",
            "--state",
            "s.db",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let out = drover()
        .current_dir(dir.path())
        .args(["status", "--state", "s.db", "--format", "json"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let left = doc["steps"]["pending"].as_u64().unwrap() as f64;
    let eta = doc["eta_s"].as_f64().unwrap();
    assert!(
        (eta - left * 0.3).abs() < 0.35,
        "{left} steps of ~0.3 s on one slot left, eta {eta}"
    );
    drover()
        .current_dir(dir.path())
        .args(["resume", "--state", "s.db"])
        .assert()
        .code(0);
    let out = drover()
        .current_dir(dir.path())
        .args(["status", "--state", "s.db", "--format", "json"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["eta_s"].is_null(), "nothing left");
}

#[test]
fn estimate_draws_the_forecast_like_a_run() {
    let dir = tempfile::tempdir().unwrap();
    eight_sites(dir.path());
    drover()
        .current_dir(dir.path())
        .args([
            "estimate", "-w", "wf.toml", "-r", "r.toml", "--html", "f.html",
        ])
        .assert()
        .success();
    let page = std::fs::read_to_string(dir.path().join("f.html")).unwrap();
    assert!(
        page.contains("drover-data") && page.contains("Forecast: 8 sites, 16 steps"),
        "a report page for the forecast"
    );
    for external in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(
            !page.contains(external),
            "self-contained: no external fetches ({external})"
        );
    }
}
