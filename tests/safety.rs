//! Guards before anything runs: reviewed plans, the blast radius, confirmation. Each refusal
//! exits 2 and creates nothing.

mod support;

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
