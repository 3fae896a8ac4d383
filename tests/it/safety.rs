//! Guards before anything runs: reviewed plans, the blast radius, confirmation. Each refusal
//! exits 2 and creates nothing.

use crate::support;

use std::path::Path;

use support::{drover, write};

const WF: &str = r#"
[workflow]
name = "guarded"
[products.p]
[steps.work]
scope = "product"
kind = "noop"
estimate = "1s"
"#;

fn request(n: usize) -> String {
    let sites: String = (1..=n)
        .map(|i| format!("[[sites]]\nid = \"site-{i:04}\"\n"))
        .collect();
    format!("[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"p\"]\n{sites}")
}

/// Writes the plan for `n` sites and returns its hash.
fn reviewed_plan(dir: &Path, n: usize) -> String {
    write(dir, "wf.toml", WF);
    write(dir, "r.toml", request(n));
    let out = drover()
        .current_dir(dir)
        .args([
            "plan",
            "-w",
            "wf.toml",
            "-r",
            "r.toml",
            "--format",
            "json",
            "--out",
            "plan.json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["hash"].as_str().unwrap().to_owned()
}

fn refused(dir: &Path, args: &[&str], needle: &str) {
    let out = drover().current_dir(dir).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(needle),
        "stderr lacks {needle:?}:\n{stderr}"
    );
    assert!(!dir.join("s.db").exists(), "nothing was created");
}

#[test]
fn a_reviewed_plan_runs_exactly_as_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let hash = reviewed_plan(dir.path(), 3);
    refused(
        dir.path(),
        &[
            "run",
            "--plan",
            "plan.json",
            "--confirm",
            "000000000000",
            "--state",
            "s.db",
        ],
        "does not match the plan's hash",
    );
    refused(
        dir.path(),
        &[
            "run",
            "--plan",
            "plan.json",
            "--confirm",
            &hash[..6],
            "--state",
            "s.db",
        ],
        "first 12 hex digits",
    );
    drover()
        .current_dir(dir.path())
        .args([
            "run",
            "--plan",
            "plan.json",
            "--confirm",
            &hash[..12],
            "--state",
            "s.db",
        ])
        .assert()
        .code(0);
}

#[test]
fn an_edited_plan_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hash = reviewed_plan(dir.path(), 3);
    let text = std::fs::read_to_string(dir.path().join("plan.json")).unwrap();
    let edited = text.replacen("\"estimate_ms\":1000", "\"estimate_ms\":1", 1);
    assert_ne!(edited, text);
    write(dir.path(), "plan.json", edited);
    refused(
        dir.path(),
        &[
            "run",
            "--plan",
            "plan.json",
            "--confirm",
            &hash[..12],
            "--state",
            "s.db",
        ],
        "the plan file was edited: step \"site-0001/p/work\" differs",
    );
}

#[test]
fn a_plan_whose_request_changed_since_review_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hash = reviewed_plan(dir.path(), 3);
    write(dir.path(), "r.toml", request(4));
    refused(
        dir.path(),
        &[
            "run",
            "--plan",
            "plan.json",
            "--confirm",
            &hash[..12],
            "--state",
            "s.db",
        ],
        "the workflow or the request changed since the review",
    );
}

#[test]
fn more_sites_than_the_blast_radius_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    reviewed_plan(dir.path(), 101);
    refused(
        dir.path(),
        &[
            "run", "--yes", "-w", "wf.toml", "-r", "r.toml", "--state", "s.db",
        ],
        "the request restores 101 sites, more than --max-sites 100",
    );
    drover()
        .current_dir(dir.path())
        .args([
            "run",
            "--yes",
            "--max-sites",
            "101",
            "-w",
            "wf.toml",
            "-r",
            "r.toml",
            "--state",
            "s.db",
        ])
        .assert()
        .code(0);
}

#[test]
fn a_run_off_a_terminal_without_yes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    reviewed_plan(dir.path(), 2);
    refused(
        dir.path(),
        &["run", "-w", "wf.toml", "-r", "r.toml", "--state", "s.db"],
        "not on a terminal",
    );
}

#[test]
fn the_audit_holds_who_ran_what_and_every_state_change() {
    let dir = tempfile::tempdir().unwrap();
    let hash = reviewed_plan(dir.path(), 3);
    drover()
        .current_dir(dir.path())
        .args([
            "run",
            "--plan",
            "plan.json",
            "--confirm",
            &hash[..12],
            "--state",
            "s.db",
        ])
        .assert()
        .code(0);
    drover()
        .current_dir(dir.path())
        .args(["resume", "--state", "s.db"])
        .assert()
        .code(0);
    let out = drover()
        .current_dir(dir.path())
        .args(["audit", "--state", "s.db", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["plan_hash"], hash);
    let sessions = doc["sessions"].as_array().unwrap();
    let modes: Vec<&str> = sessions
        .iter()
        .map(|s| s["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["run", "resume"]);
    let run = &sessions[0];
    assert!(
        run["argv"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--confirm"),
        "the command line is recorded: {run}"
    );
    assert_eq!(run["plan_hash"], hash);
    assert!(!run["user"].as_str().unwrap().is_empty() && !run["host"].as_str().unwrap().is_empty());
    let events = doc["events"].as_array().unwrap();
    for site in ["site-0001", "site-0002", "site-0003"] {
        let step = format!("{site}/p/work");
        let ops: Vec<&str> = events
            .iter()
            .filter(|e| e["step"] == step.as_str())
            .map(|e| e["op"].as_str().unwrap())
            .collect();
        assert_eq!(ops, ["claim", "complete"], "{step}");
    }
    let inputs = doc["inputs"].as_object().unwrap();
    assert_eq!(inputs.len(), 2, "workflow and request digests: {inputs:?}");
}

/// Per-product `check` fails for sites whose `bad` attribute is "yes"; site sizes set the
/// canary order.
const GUARDED: &str = r#"
[workflow]
name = "guarded"
[pools.db]
capacity = 1
[products.p]
[steps.work]
scope = "product"
kind = "sleep"
params = { duration = "20ms" }
uses = { db = 1 }
estimate = "1s"
scale = { attribute = "gb", per = "1s" }
[steps.check]
scope = "product"
kind = "fail"
after = ["work"]
estimate = "1s"
when = { attribute = "bad", is = ["yes"], default = "no" }
[steps.done]
scope = "site"
kind = "noop"
after = ["work", "check"]
estimate = "1s"
"#;

fn guarded(dir: &Path, bad: &[usize], n: usize) {
    write(dir, "wf.toml", GUARDED);
    let sites: String = (1..=n).map(|i| format!("[[sites]]\nid = \"site-{i:04}\"\ntier = \"standard\"\nattrs = {{ gb = {i}, bad = \"{}\" }}\n", if bad.contains(&i) { "yes" } else { "no" })).collect();
    write(
        dir,
        "r.toml",
        format!("[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"p\"]\n{sites}"),
    );
}

fn started_sites(dir: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(dir.join("s.db")).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT id FROM steps WHERE id LIKE '%/p/work' AND started_at IS NOT NULL ORDER BY id",
        )
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap().replace("/p/work", ""))
        .collect()
}

#[test]
fn a_failing_canary_stops_the_fan_out() {
    let dir = tempfile::tempdir().unwrap();
    // The smallest site is the canary, and it fails its check.
    guarded(dir.path(), &[1], 10);
    let out = drover()
        .current_dir(dir.path())
        .args([
            "run", "--yes", "--canary", "1", "-w", "wf.toml", "-r", "r.toml", "--state", "s.db",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("canary site site-0001 failed"), "{stderr}");
    assert_eq!(
        started_sites(dir.path()),
        ["site-0001"],
        "no other site started"
    );
    // A passing canary releases the rest.
    let dir = tempfile::tempdir().unwrap();
    guarded(dir.path(), &[], 10);
    let out = drover()
        .current_dir(dir.path())
        .args([
            "run", "--yes", "--canary", "20%", "-w", "wf.toml", "-r", "r.toml", "--state", "s.db",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("all 2 canary sites restored"));
    assert_eq!(started_sites(dir.path()).len(), 10);
}

#[test]
fn an_exceeded_failure_budget_stops_new_sites() {
    let dir = tempfile::tempdir().unwrap();
    // With one db slot and critical-path order the largest sites go first: make the two largest
    // fail, so the budget of 1 is exceeded while most sites have not started.
    guarded(dir.path(), &[20, 19], 20);
    let out = drover()
        .current_dir(dir.path())
        .args([
            "run",
            "--yes",
            "--failure-budget",
            "1",
            "-w",
            "wf.toml",
            "-r",
            "r.toml",
            "--state",
            "s.db",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("failure budget exceeded: 2 sites failed, the budget allows 1"),
        "{stderr}"
    );
    let started = started_sites(dir.path()).len();
    assert!(
        started < 20,
        "new sites stopped starting ({started} of 20 started)"
    );
    let doc: serde_json::Value = serde_json::from_slice(
        &drover()
            .current_dir(dir.path())
            .args(["status", "--state", "s.db", "--format", "json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(doc["sites"]["failed"], 2);
    assert!(
        doc["sites"]["pending"].as_u64().unwrap() > 0,
        "sites not started stay pending for a later resume"
    );
}

#[test]
fn the_demo_incident_refuses_a_platform_the_demo_did_not_make() {
    let dir = tempfile::tempdir().unwrap();
    let opts = drover::generate::GenerateOptions {
        sites: 4,
        ..Default::default()
    };
    let platform = drover::platform::Platform::build(dir.path().join("platform"), &opts).unwrap();
    let before = platform.fingerprint_all().unwrap();
    let out = drover()
        .args(["demo", "incident", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = support::exited(&out, 2);
    assert!(
        stderr.contains("was not made by `drover demo init`"),
        "{stderr}"
    );
    assert_eq!(
        platform.fingerprint_all().unwrap(),
        before,
        "no site was deleted"
    );
}
