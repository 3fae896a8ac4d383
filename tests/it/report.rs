//! `drover report` through the real binary on a real finished run, and its HTML page rendered by a
//! real browser (headless Chromium; `scripts/test-deps` installs it).

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;
use support::browser::{browse, chromium};
use support::{drover, write};

/// Products a, b (b's load after a's) and c; a shard snapshot per product unit, then per product
/// a fetch and a load (20 ms sleeps); product c's `verify` always fails, which blocks its site's
/// final `done`.
const WORKFLOW: &str = r#"
[workflow]
name = "report-test"
[pools.s3]
capacity = 2
[pools.db]
capacity = 4
[products.a]
[products.b]
after = ["a"]
[products.c]
[gate]
step = "load"
waits_for = "load"
[steps.snap]
scope = "shared"
unit = "shard"
kind = "sleep"
params = { duration = "20ms" }
uses = { s3 = 1 }
estimate = "2s"
[steps.fetch]
scope = "product"
kind = "sleep"
after = ["snap"]
params = { duration = "20ms" }
uses = { s3 = 1 }
estimate = "1s"
[steps.load]
scope = "product"
kind = "sleep"
after = ["fetch"]
params = { duration = "20ms" }
uses = { db = 1 }
estimate = "3s"
[steps.verify]
scope = "product"
products = ["c"]
kind = "fail"
after = ["load"]
params = { message = "checksum mismatch in {site}" }
estimate = "1s"
[steps.done]
scope = "site"
kind = "noop"
after = ["load", "verify"]
estimate = "1s"
"#;

/// Two sites on shared shards; site-0003 also has product c, so it fails.
const REQUEST: &str = r#"
[request]
name = "drill"
point_in_time = "2022-04-05T07:38:00Z"
products = ["a", "b"]
[[sites]]
id = "site-0001"
tier = "enterprise"
attrs = { "a.shard" = "a-1", "b.shard" = "b-1" }
[[sites]]
id = "site-0002"
attrs = { "a.shard" = "a-1", "b.shard" = "b-1" }
[[sites]]
id = "site-0003"
products = ["a", "b", "c"]
attrs = { "a.shard" = "a-2", "b.shard" = "b-2", "c.shard" = "c-1" }
"#;

const FAILED_STEP: &str = "site-0003/c/verify";

/// One step as the ledger holds it.
struct Row {
    state: String,
    started: bool,
}

fn ledger_steps(state: &Path) -> BTreeMap<String, Row> {
    let conn = rusqlite::Connection::open(state).unwrap();
    let mut stmt = conn
        .prepare("SELECT id, state, started_at IS NOT NULL FROM steps")
        .unwrap();
    stmt.query_map([], |r| {
        let row = Row {
            state: r.get(1)?,
            started: r.get(2)?,
        };
        Ok((r.get(0)?, row))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// A finished run with one failed and one blocked step, in `dir/ledger.db`.
fn finished_run(dir: &Path) -> PathBuf {
    let wf = write(dir, "wf.toml", WORKFLOW);
    let req = write(dir, "req.toml", REQUEST);
    let state = dir.join("ledger.db");
    let out = support::run(&wf, &req, &state).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "the run finishes with a failed site: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    state
}

#[test]
fn report_writes_a_timeline_of_every_step_and_a_page_a_browser_draws() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let state = finished_run(dir.path());
    let (page, json) = (dir.path().join("out.html"), dir.path().join("t.json"));
    let out = drover()
        .args(["report", "--state"])
        .arg(&state)
        .arg("--html")
        .arg(&page)
        .arg("--timeline")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("wrote"));

    let ledger = ledger_steps(&state);
    let doc: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    check_timeline(&doc, &ledger);
    check_rendered_page(&page, &ledger, &doc);
    eprintln!("report test took {:?}", started.elapsed());
}

/// One entry per ledger step with its outcome, times for started steps only, the failure's error.
fn check_timeline(doc: &Value, ledger: &BTreeMap<String, Row>) {
    assert_eq!(doc["format"], "drover-timeline/1");
    let steps = doc["steps"].as_array().unwrap();
    let outcomes: BTreeMap<String, String> = steps
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().into(),
                s["outcome"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(outcomes.len(), steps.len(), "no step is listed twice");
    let expected: BTreeMap<String, String> = ledger
        .iter()
        .map(|(id, row)| (id.clone(), row.state.clone()))
        .collect();
    assert_eq!(outcomes, expected, "one entry per ledger step, its state");
    for s in steps {
        let started = ledger[s["step"].as_str().unwrap()].started;
        assert_eq!(s["start"].is_string(), started, "{s}");
        assert_eq!(s["start_ms"].is_u64(), started, "{s}");
    }
    let failed = steps.iter().find(|s| s["step"] == FAILED_STEP).unwrap();
    assert_eq!(failed["error"], "checksum mismatch in site-0003");
    assert_eq!(failed["site"], "site-0003");
    assert_eq!(failed["product"], "c");
    let snap = steps
        .iter()
        .find(|s| s["step"] == "shard/a-1/snap")
        .unwrap();
    assert_eq!(
        (&snap["lane"], &snap["unit"], &snap["start_ms"]),
        (
            &Value::from("shard/a-1"),
            &Value::from("shard/a-1"),
            &Value::from(0)
        ),
        "shared units have their own lane; snapshots start the run"
    );
}

/// Chromium loads the page and runs its script: one bar per started step, with its outcome;
/// the critical path marked; the failure listed; a screenshot with something on it.
fn check_rendered_page(page: &Path, ledger: &BTreeMap<String, Row>, doc: &Value) {
    let chromium = chromium();
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.display());
    let dom = browse(&chromium, profile.path(), &["--dump-dom", &url]);
    let svg = dom
        .find("<svg")
        .and_then(|start| Some(&dom[start..start + dom[start..].find("</svg>")?]))
        .unwrap_or_else(|| panic!("no chart was drawn: {dom}"));
    let bars = bars_in(svg);

    let started: BTreeSet<&str> = ledger
        .iter()
        .filter(|(_, row)| row.started)
        .map(|(id, _)| id.as_str())
        .collect();
    let drawn: BTreeSet<&str> = bars.iter().map(|b| b.step.as_str()).collect();
    assert_eq!(drawn, started, "a bar for each step that started, no other");
    assert_eq!(bars.len(), started.len(), "no step drawn twice");
    for bar in &bars {
        assert_eq!(bar.outcome, ledger[&bar.step].state, "{}", bar.step);
    }
    let failed = bars.iter().find(|b| b.step == FAILED_STEP).unwrap();
    assert_eq!(failed.outcome, "failed");

    // The page draws the path the run took (docs/report.md), which the timeline records too.
    let critical_path: BTreeSet<&str> = doc["critical_path_as_run"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let marked: BTreeSet<&str> = bars
        .iter()
        .filter(|b| b.critical)
        .map(|b| b.step.as_str())
        .collect();
    assert!(!marked.is_empty(), "the critical path is highlighted");
    assert_eq!(
        marked, critical_path,
        "exactly the bars of the path the run took are marked"
    );
    assert!(
        dom.contains("checksum mismatch in site-0003"),
        "failure listed"
    );
    assert!(dom.contains("<table id=\"sites\">"), "restore-time table");

    let png = profile.path().join("report.png");
    let shot = format!("--screenshot={}", png.display());
    browse(
        &chromium,
        profile.path(),
        &[&shot, "--window-size=1400,900", &url],
    );
    let size = std::fs::metadata(&png).map_or(0, |m| m.len());
    assert!(
        size > 10_000,
        "the screenshot shows a drawn page ({size} bytes)"
    );
}

/// A `<rect data-step=…>` as Chromium serialized it.
struct DrawnBar {
    step: String,
    outcome: String,
    critical: bool,
}

fn bars_in(dom: &str) -> Vec<DrawnBar> {
    dom.split("<rect")
        .skip(1)
        .map(|rest| &rest[..rest.find('>').unwrap_or(rest.len())])
        .filter_map(|tag| {
            Some(DrawnBar {
                step: attribute(tag, "data-step")?,
                outcome: attribute(tag, "data-outcome").unwrap_or_default(),
                critical: attribute(tag, "class")
                    .is_some_and(|c| c.split_whitespace().any(|c| c == "critical")),
            })
        })
        .collect()
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = tag[start..].find('"')?;
    Some(tag[start..start + len].to_owned())
}
