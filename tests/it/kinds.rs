//! The `exec`, `http` and `notify` step kinds against real things: local commands, an HTTP server
//! on loopback (success, retryable and permanent failures, idempotency keys), and the reference
//! platform's outbox.

use crate::support;

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use support::{drover, write};

fn request(sites: &[&str]) -> String {
    let mut out =
        String::from("[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"p\"]\n");
    for s in sites {
        out.push_str(&format!("[[sites]]\nid = \"{s}\"\n"));
    }
    out
}

fn status(dir: &Path) -> Value {
    support::status_json(&dir.join("s.db"))
}

#[test]
fn exec_runs_commands_with_the_idempotency_key_and_classifies_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "ok.sh",
        "echo \"site=$1 key=$DROVER_IDEMPOTENCY_KEY\"\necho \"$DROVER_IDEMPOTENCY_KEY $DROVER_ATTEMPT\" >> keys.log\n",
    );
    // Fails with 75 (try again) on the first attempt of each site, then succeeds.
    write(
        d,
        "flaky.sh",
        "n=$(cat \"tries-$1\" 2>/dev/null || echo 0); echo $((n + 1)) > \"tries-$1\"\n[ \"$n\" -ge 1 ] || { echo 'lock busy'; exit 75; }\n",
    );
    write(
        d,
        "check.sh",
        "[ \"$1\" = site-2 ] && { echo 'row count mismatch' >&2; exit 3; }\necho \"$GREETING $1\"\n",
    );
    let wf = format!(
        r#"
[workflow]
name = "exec"
[products.p]
[steps.a]
scope = "product"
kind = "exec"
params = {{ command = "sh", args = "{d}/ok.sh {{site}}" }}
estimate = "1s"
[steps.b]
scope = "product"
kind = "exec"
after = ["a"]
params = {{ command = "sh", args = "{d}/flaky.sh {{site}}" }}
estimate = "1s"
retry = {{ attempts = 3, initial_backoff = "10ms", max_backoff = "10ms" }}
[steps.c]
scope = "product"
kind = "exec"
after = ["b"]
params = {{ command = "sh", args = "{d}/check.sh {{site}}", "env.GREETING" = "hello" }}
estimate = "1s"
"#,
        d = d.display()
    );
    write(d, "wf.toml", wf);
    write(d, "r.toml", request(&["site-1", "site-2"]));
    let out = support::run("wf.toml", "r.toml", "s.db")
        .current_dir(d)
        .output()
        .unwrap();
    support::exited(&out, 3);
    let doc = status(d);
    assert_eq!(support::site_status(&doc, "site-1")["state"], "restored");
    let failed = support::site_status(&doc, "site-2");
    assert_eq!(failed["state"], "failed");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("'sh' exited 3: row count mismatch"),
        "{failed}"
    );
    for site in ["site-1", "site-2"] {
        assert_eq!(
            std::fs::read_to_string(d.join(format!("tries-{site}")))
                .unwrap()
                .trim(),
            "2",
            "75 was retried once for {site}"
        );
    }
    let keys = std::fs::read_to_string(d.join("keys.log")).unwrap();
    let run_id = doc["run_id"].as_str().unwrap();
    assert!(keys.contains(&format!("{run_id}/site-1/p/a 1")), "{keys}");
    let log = std::fs::read_to_string(d.join("s.db.staging/site-1/p/c/output.log")).unwrap();
    assert_eq!(
        log.trim(),
        "hello site-1",
        "env.* params reach the command, output goes to the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_posts_json_and_classifies_statuses() {
    let log = support::http::Log::default();
    let addr = support::http::serve(Arc::clone(&log)).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let wf = format!(
        r#"
[workflow]
name = "http"
[products.p]
[steps.hook]
scope = "product"
kind = "http"
params = {{ url = "http://{addr}/{{site}}/{{path}}" }}
estimate = "1s"
retry = {{ attempts = 3, initial_backoff = "10ms", max_backoff = "10ms" }}
"#
    );
    write(&d, "wf.toml", wf);
    let req = "[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"p\"]\n[[sites]]\nid = \"site-ok\"\nattrs = { path = \"ok\" }\n[[sites]]\nid = \"site-flaky\"\nattrs = { path = \"flaky\" }\n[[sites]]\nid = \"site-bad\"\nattrs = { path = \"bad\" }\n";
    write(&d, "r.toml", req);
    let dd = d.clone();
    let out = tokio::task::spawn_blocking(move || {
        support::run("wf.toml", "r.toml", "s.db")
            .current_dir(&dd)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    support::exited(&out, 3);
    let dd = d.clone();
    let doc = tokio::task::spawn_blocking(move || status(&dd))
        .await
        .unwrap();
    assert_eq!(support::site_status(&doc, "site-ok")["state"], "restored");
    assert_eq!(
        support::site_status(&doc, "site-flaky")["state"],
        "restored",
        "503 was retried"
    );
    let bad = support::site_status(&doc, "site-bad");
    assert_eq!(bad["state"], "failed");
    assert!(
        bad["reason"].as_str().unwrap().contains("HTTP 400"),
        "{bad}"
    );
    let run_id = doc["run_id"].as_str().unwrap().to_owned();
    let key = |site: &str| format!("{run_id}/{site}/p/hook").to_lowercase();
    assert_eq!(
        support::http::count(&log, &key("site-flaky")),
        2,
        "the retry carried the same idempotency key"
    );
    assert_eq!(
        support::http::count(&log, &key("site-bad")),
        1,
        "a 400 is not retried"
    );
}

/// A workflow that only reactivates soft-deleted sites and notifies them, with a webhook.
fn notify_workflow(addr: std::net::SocketAddr) -> String {
    let products: String = [
        "identity",
        "issues",
        "wiki",
        "service-desk",
        "alerts",
        "status-page",
    ]
    .iter()
    .map(|p| format!("[products.{p}]\n"))
    .collect();
    format!(
        r#"
[workflow]
name = "notify"
{products}
[steps.reactivate]
scope = "site"
kind = "reactivate"
params = {{ platform = "{{target}}" }}
estimate = "1s"
[steps.notify]
scope = "site"
kind = "notify"
after = ["reactivate"]
params = {{ platform = "{{target}}", point_in_time = "{{point_in_time}}", webhook = "http://{addr}/restored/flaky" }}
estimate = "1s"
retry = {{ attempts = 3, initial_backoff = "10ms", max_backoff = "10ms" }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_writes_the_outbox_once_and_posts_the_same_message_to_the_webhook() {
    let log = support::http::Log::default();
    let addr = support::http::serve(Arc::clone(&log)).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    write(&d, "wf.toml", notify_workflow(addr));
    let dd = d.clone();
    let (out, doc) = tokio::task::spawn_blocking(move || {
        support::demo(&dd, "init", 4, &[]);
        support::demo(&dd, "incident", 4, &["--soft-deleted", "100%"]);
        let out = drover()
            .current_dir(&dd)
            .args([
                "run",
                "--yes",
                "-w",
                "wf.toml",
                "-r",
                "request.toml",
                "--state",
                "s.db",
            ])
            .output()
            .unwrap();
        (out, status(&dd))
    })
    .await
    .unwrap();
    support::exited(&out, 0);

    let platform = drover::platform::Platform::open(d.join("platform")).unwrap();
    let outbox = platform.outbox().unwrap();
    assert_eq!(
        outbox.len(),
        4,
        "one message per site, though each notify ran twice"
    );
    let run_id = doc["run_id"].as_str().unwrap();
    for m in &outbox {
        let key = format!("{run_id}/{}/notify", m.site).to_lowercase();
        let posts: Vec<support::http::Received> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.key == key)
            .cloned()
            .collect();
        assert_eq!(posts.len(), 2, "a 503, then a retry with the same key");
        let stored: Value = serde_json::from_str(&m.message).unwrap();
        for post in &posts {
            let sent: Value = serde_json::from_str(&post.body).unwrap();
            assert_eq!(sent, stored, "the webhook gets the outbox's message");
        }
        let record = platform.site(&m.site).unwrap();
        assert_eq!(stored["products"], serde_json::json!(record.products));
        assert!(stored["point_in_time"].is_string(), "{stored}");
        assert_eq!(
            stored["time_to_restore_s"].as_i64(),
            record
                .reactivated_at
                .zip(record.deleted_at)
                .map(|(r, d)| r - d),
            "{stored}"
        );
        assert!(stored["to"].as_array().is_some_and(|to| !to.is_empty()));
    }
}

/// The outputs a person or a program reads after a run: run, status, audit, report, timeline.
fn every_output(d: &Path, run: &std::process::Output) -> String {
    let mut all = String::from_utf8_lossy(&run.stdout).into_owned();
    all.push_str(&String::from_utf8_lossy(&run.stderr));
    for args in [
        &["status", "--state", "s.db"][..],
        &["status", "--format", "json", "--state", "s.db"],
        &["audit", "--state", "s.db"],
        &["audit", "--format", "json", "--state", "s.db"],
        &[
            "report",
            "--state",
            "s.db",
            "--html",
            "r.html",
            "--timeline",
            "t.json",
        ],
        &[
            "plan",
            "--offline",
            "-w",
            "wf.toml",
            "-r",
            "request.toml",
            "--out",
            "plan.json",
        ],
    ] {
        let out = drover().current_dir(d).args(args).output().unwrap();
        all.push_str(&String::from_utf8_lossy(&out.stdout));
        all.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    for file in ["r.html", "t.json", "plan.json"] {
        all.push_str(&std::fs::read_to_string(d.join(file)).unwrap());
    }
    all
}

/// The ledger's recorded step errors and event details (not its copy of the input files).
fn ledger_errors(state: &Path) -> String {
    let db = rusqlite::Connection::open(state).unwrap();
    let mut all = String::new();
    for sql in [
        "SELECT coalesce(last_error, '') || coalesce(output, '') FROM steps",
        "SELECT coalesce(detail, '') FROM events",
    ] {
        let mut stmt = db.prepare(sql).unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        for row in rows {
            all.push_str(&row.unwrap());
        }
    }
    all
}

/// Issue #11, class 6: a webhook credential by reference (`{env:…}`) appears nowhere drover
/// writes; a literal one only in the ledger's stored copy of the workflow file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_credentials_never_reach_outputs() {
    let log = support::http::Log::default();
    let addr = support::http::serve(Arc::clone(&log)).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let by_ref = "s3cr3t-by-reference";
    let literal = "hunter2-literal";
    let dd = d.clone();
    let outputs = tokio::task::spawn_blocking(move || {
        let mut outputs = Vec::new();
        for (name, hook) in [
            ("ref", format!("http://{addr}/hook/{{env:DROVER_HOOK_TOKEN}}/bad\", \"header.Authorization\" = \"Bearer {{env:DROVER_HOOK_TOKEN}}")),
            ("literal", format!("http://user:{literal}@{addr}/hook/bad")),
        ] {
            // A platform of its own for each case: the first run reactivates its sites.
            let dd = dd.join(name);
            support::demo(&dd, "init", 2, &[]);
            support::demo(&dd, "incident", 2, &["--soft-deleted", "100%"]);
            let wf = notify_workflow(addr).replace(&format!("http://{addr}/restored/flaky"), &hook);
            write(&dd, "wf.toml", wf);
            let out = drover()
                .current_dir(&dd)
                .env("DROVER_HOOK_TOKEN", by_ref)
                .args(["run", "--yes", "-w", "wf.toml", "-r", "request.toml", "--state", "s.db"])
                .output()
                .unwrap();
            support::exited(&out, 3);
            let all = every_output(&dd, &out);
            let errors = ledger_errors(&dd.join("s.db"));
            let ledger = std::fs::read(dd.join("s.db")).unwrap();
            outputs.push((name, out, all, errors, ledger));
        }
        outputs
    })
    .await
    .unwrap();
    for (name, out, all, errors, ledger) in &outputs {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("HTTP 400"),
            "{name}: the webhook failed visibly: {stderr}"
        );
        for secret in [by_ref, literal] {
            assert!(!all.contains(secret), "{name}: an output shows {secret}");
            assert!(
                !errors.contains(secret),
                "{name}: the ledger records {secret}"
            );
        }
        let in_ledger = ledger.windows(by_ref.len()).any(|w| w == by_ref.as_bytes());
        assert!(
            !in_ledger,
            "{name}: the referenced secret is nowhere in the ledger"
        );
    }
    let (_, _, all, _, _) = &outputs[0];
    assert!(
        all.contains("{env:DROVER_HOOK_TOKEN}"),
        "the reference is shown instead"
    );
    let (_, _, all, _, _) = &outputs[1];
    assert!(
        all.contains("literal credential"),
        "plan warns about the literal password"
    );
    let sent = log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path.contains(by_ref))
        .count();
    assert!(
        sent > 0,
        "the reference was resolved for the request itself"
    );
}
