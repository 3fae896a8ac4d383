//! `drover estimate` and the simulated time left in `drover status`, through the real binary.

use crate::support;

use std::path::Path;

use serde_json::Value;
use support::{drover, write};

#[path = "../common/ledger.rs"]
mod ledger;
use ledger::measured_makespan_s;

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

/// `dir/r.toml`: a generated request of `sites` sites (seed 1).
fn generated(dir: &Path, sites: &str) {
    drover()
        .current_dir(dir)
        .args([
            "generate", "request", "--sites", sites, "--seed", "1", "--out", "r.toml",
        ])
        .assert()
        .success();
}

#[test]
fn the_forecast_of_a_real_sleep_workload_is_within_10_percent() {
    let dir = tempfile::tempdir().unwrap();
    generated(dir.path(), "300");
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
    let makespan = learned["makespan_s"].as_f64().unwrap();
    assert!(makespan < 5.0, "learned: {makespan}");
    // Bounds come from the same model, not from the workflow's 10 s guesses.
    let bound = learned["lower_bound_s"].as_f64().unwrap();
    assert!(
        bound <= makespan && learned["critical_path"]["length_s"].as_f64().unwrap() <= makespan,
        "lower bound {bound} and critical path against makespan {makespan}"
    );
    let evidence = &learned["evidence"][0];
    assert_eq!(evidence["kind"], "run");
    assert_eq!(evidence["steps"], 16);
    assert!(evidence["age_s"].as_f64().unwrap() < 600.0, "{evidence}");
}

#[test]
fn the_binding_pool_is_named_with_what_would_relieve_it() {
    // The 883-site demo request: with db=16 no pool is 80 % busy, yet cpu bounds the restore.
    let dir = tempfile::tempdir().unwrap();
    generated(dir.path(), "883");
    let wf = support::shipped_workflow();
    let wf = wf.to_str().unwrap();
    let doc = estimate(dir.path(), &["-w", wf, "-r", "r.toml", "--pools", "db=16"]);
    assert_eq!(doc["bottleneck"], "cpu", "{}", doc["bottleneck_detail"]);
    let detail = &doc["bottleneck_detail"];
    assert_eq!(detail["next"], "db");
    assert!(detail["relieved_at"].as_u64().unwrap() > 4, "{detail}");
    let sweep = estimate(
        dir.path(),
        &[
            "-w",
            wf,
            "-r",
            "r.toml",
            "--sweep",
            "db=8..64",
            "--target-rto",
            "2h",
        ],
    );
    let capped = &sweep["sweep"]["capped_from"];
    assert_eq!(
        capped[1], "cpu",
        "more db stops helping once cpu binds: {capped}"
    );
    assert!(sweep["sweep"]["smallest_meeting_target"].is_null());
    // In words too.
    let out = drover()
        .current_dir(dir.path())
        .args([
            "estimate",
            "-w",
            wf,
            "-r",
            "r.toml",
            "--sweep",
            "db=8..64",
            "--target-rto",
            "2h",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bottleneck     pool db") && text.contains("on, cpu bounds the restore"),
        "{text}"
    );
}

#[test]
fn a_drill_history_calibrates_the_forecast() {
    let dir = tempfile::tempdir().unwrap();
    support::demo(dir.path(), "init", 12, &[]);
    let d = dir.path();
    drover()
        .current_dir(d)
        .args([
            "drill",
            "-w",
            "workflow.toml",
            "-r",
            "request.toml",
            "--target-rto",
            "1h",
            "--state",
            "drill.db",
            "--history",
            "drills.jsonl",
        ])
        .assert()
        .success();
    let doc = estimate(
        d,
        &[
            "-w",
            "workflow.toml",
            "-r",
            "request.toml",
            "--history",
            "drills.jsonl",
        ],
    );
    let evidence = &doc["evidence"][0];
    assert_eq!(evidence["kind"], "drill", "{evidence}");
    assert!(evidence["source"].as_str().unwrap().contains("drill.db"));
    // Learned from a restore of these very sites: seconds, not the workflow's hours.
    assert!(
        doc["makespan_s"].as_f64().unwrap() < 120.0,
        "{}",
        doc["makespan_s"]
    );
    // A drill whose ledger is gone is said, and with nothing left to learn from, refused.
    std::fs::remove_file(d.join("drill.db")).unwrap();
    let out = drover()
        .current_dir(d)
        .args([
            "estimate",
            "-w",
            "workflow.toml",
            "-r",
            "request.toml",
            "--history",
            "drills.jsonl",
        ])
        .output()
        .unwrap();
    let err = support::exited(&out, 2);
    assert!(
        err.contains("is gone") && err.contains("no ledger to learn from"),
        "{err}"
    );
}

#[test]
fn trials_give_a_spread_for_the_restore_and_for_each_site() {
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
    // Every site's range, for support to tell each customer.
    let ranges = doc["site_ranges"].as_array().unwrap();
    assert_eq!(ranges.len(), 8, "{ranges:?}");
    for r in ranges {
        let (p50, p90) = (r[1].as_f64().unwrap(), r[2].as_f64().unwrap());
        assert!(p50 > 0.0 && p50 < p90, "{r}");
    }
    let latest = ranges
        .iter()
        .map(|r| r[2].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(
        latest >= p50 * 0.9,
        "the last site's p90 {latest} near the makespan's p50 {p50}"
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
    // A forecast view: how busy each pool is and each site's range; no outcomes or failures.
    assert!(page.contains("Pool use") && page.contains("use of pool db"));
    assert!(page.contains("Forecast restore time per site") && page.contains("site-8"));
    assert!(!page.contains("<h2>Failures") && !page.contains("value=\"outcome\""));
    for external in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(
            !page.contains(external),
            "self-contained: no external fetches ({external})"
        );
    }
}
