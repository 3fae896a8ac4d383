//! Issue #15: a run's ledger in PostgreSQL (`--state postgres://…?ledger=<name>`), on the suite's
//! throwaway server: the same run, crash, resume, status, audit and repair as with SQLite.

use crate::run_cli::{crash_workflow, executions, request};
use crate::support;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{drover, exited, write};

/// Step IDs recorded succeeded in ledger `name` of the database at `url`.
fn succeeded(url: &str, name: &str) -> HashSet<String> {
    support::postgres::rows(
        url,
        &format!("SELECT id FROM drover_steps WHERE ledger = '{name}' AND state = 'succeeded'"),
    )
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// A run killed (SIGKILL) part-way and resumed on a PostgreSQL ledger finishes every step, and
/// no step recorded succeeded at the kill runs again; status, audit and report read it; a
/// second ledger in the same database is a run of its own.
#[test]
fn a_run_on_a_postgres_ledger_survives_a_sigkill_and_resumes() {
    let url = support::postgres::database("ledger");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let record = d.join("record.log");
    let wf = write(d, "wf.toml", crash_workflow(&record, "150ms"));
    let req = write(d, "req.toml", request(30));
    let state = format!("{url}?ledger=crash");

    let mut child = Command::new(assert_cmd::cargo::cargo_bin("drover"))
        .args(["run", "--yes", "-w"])
        .arg(&wf)
        .arg("-r")
        .arg(&req)
        .args(["--state", &state])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while executions(&record, 0).len() < 40 {
        assert!(Instant::now() < deadline, "the run never got going");
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done_at_kill = succeeded(&url, "crash");
    let ran_before = std::fs::read_to_string(&record).unwrap().len();
    assert!(!done_at_kill.is_empty(), "some steps were recorded done");

    let status = drover()
        .args(["status", "--format", "json", "--state", &state])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&exited_ok(&status)).unwrap();
    assert_eq!(doc["all_restored"], false, "{doc}");

    let out = drover()
        .args(["resume", "--state", &state])
        .current_dir(d)
        .output()
        .unwrap();
    exited(&out, 0);
    let again: Vec<String> = executions(&record, ran_before);
    for id in &again {
        assert!(
            !done_at_kill.contains(id),
            "{id} was recorded succeeded at the kill and ran again"
        );
    }
    let status = drover()
        .args(["status", "--format", "json", "--state", &state])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&exited_ok(&status)).unwrap();
    assert_eq!(doc["all_restored"], true, "{doc}");
    assert_eq!(doc["sites"]["restored"], 30);

    let audit = drover()
        .args(["audit", "--format", "json", "--state", &state])
        .output()
        .unwrap();
    let audit: serde_json::Value = serde_json::from_slice(&exited_ok(&audit)).unwrap();
    let modes: Vec<&str> = audit["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["run", "resume"]);
    // Every step completed exactly once, and every event names its step.
    let events = audit["events"].as_array().unwrap();
    let completes = events.iter().filter(|e| e["op"] == "complete").count();
    assert_eq!(Some(completes as u64), doc["steps_total"].as_u64());
    assert!(events.iter().all(|e| e["step"].is_string()), "{events:?}");
    let report = d.join("report.html");
    let out = drover()
        .args(["report", "--state", &state, "--html"])
        .arg(&report)
        .output()
        .unwrap();
    exited(&out, 0);
    assert!(std::fs::read_to_string(&report).unwrap().contains("<svg"));

    // `estimate` learns from it as from a file.
    let out = drover()
        .args(["estimate", "-w"])
        .arg(&wf)
        .arg("-r")
        .arg(&req)
        .args(["--history", &state])
        .output()
        .unwrap();
    exited(&out, 0);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("learned from") && said.contains("ledger=crash"),
        "{said}"
    );

    // `drover serve` on it says what `status` says.
    let served = crate::serve::serve(std::path::Path::new(&state), "127.0.0.1:0", &[]);
    let summary = crate::serve::get(&served.addr, "/api/v1/summary");
    for field in ["run_id", "plan_hash", "sites", "steps"] {
        assert_eq!(summary[field], doc[field], "{field}");
    }
    drop(served);

    // Another ledger in the same database: a run of its own, from scratch.
    let other = format!("{url}?ledger=second");
    let out = support::run(&wf, &req, &other)
        .current_dir(d)
        .output()
        .unwrap();
    exited(&out, 0);
    assert_eq!(
        succeeded(&url, "second").len(),
        succeeded(&url, "crash").len()
    );
    // And `run` on the first one again continues it: nothing is left to do.
    let out = support::run(&wf, &req, &state)
        .current_dir(d)
        .output()
        .unwrap();
    exited(&out, 0);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already holds this plan"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A password in the URL would be printed and recorded: refused, without echoing it.
#[test]
fn a_postgres_ledger_url_with_a_password_is_refused_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write(
        dir.path(),
        "wf.toml",
        crash_workflow(&dir.path().join("r"), "1ms"),
    );
    let req = write(dir.path(), "req.toml", request(1));
    let out = support::run(
        &wf,
        &req,
        "postgres://drover:hunter2@127.0.0.1:1/db?ledger=x",
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("PGPASSWORD"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

fn exited_ok(out: &std::process::Output) -> Vec<u8> {
    exited(out, 0);
    out.stdout.clone()
}

/// TLS as the URL's `sslmode` asks: `verify-full` against the server's CA connects (by IP and by
/// name) and the connection is encrypted; a certificate from another CA, or one that does not
/// name the host connected to, is refused under `verify-full` (nothing recorded), while
/// `verify-ca` checks the chain only and `require` nothing; a mode that does not exist is bad
/// input.
#[test]
fn tls_checks_the_server_as_sslmode_asks() {
    let url = support::postgres::database("tls");
    let server = support::postgres::server();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = server.ca();
    let other = support::postgres::make_ca(d, "other");
    let wf = write(d, "wf.toml", crash_workflow(&d.join("r"), "1ms"));
    let req = write(d, "req.toml", request(2));
    let ca = ca.to_str().unwrap();
    let full = format!("{url}?ledger=t&sslmode=verify-full&sslrootcert={ca}");
    let out = support::run(&wf, &req, &full).output().unwrap();
    exited(&out, 0);

    // The same server by name, and through a name its certificate does not carry.
    let port = server.port;
    let db = url.rsplit('/').next().unwrap();
    let named = |host: &str, mode: &str, root: &str| {
        format!(
            "postgres://drover@{host}:{port}/{db}?hostaddr=127.0.0.1&ledger=t&sslmode={mode}&sslrootcert={root}"
        )
    };
    let status = |state: &str| {
        drover()
            .args(["status", "--format", "json", "--state", state])
            .output()
            .unwrap()
    };
    exited(&status(&named("localhost", "verify-full", ca)), 0);
    let out = status(&named("wrong.example", "verify-full", ca));
    assert_ne!(out.status.code(), Some(0));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("certificate"), "{said}");
    exited(&status(&named("wrong.example", "verify-ca", ca)), 0);

    // Another CA's trust is refused under verify-full, and nothing is recorded.
    let out = support::run(
        &wf,
        &req,
        format!(
            "{url}?ledger=u&sslmode=verify-full&sslrootcert={}",
            other.display()
        ),
    )
    .output()
    .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("certificate"), "{said}");
    let ledgers = support::postgres::rows(&url, "SELECT ledger FROM drover_runs ORDER BY 1");
    let ledgers: Vec<String> = ledgers.iter().map(|r| r.get(0)).collect();
    assert_eq!(ledgers, ["t"]);
    exited(&status(&format!("{url}?ledger=t&sslmode=require")), 0);

    // A worker's connections are encrypted (the server says so).
    let mut worker = Command::new(assert_cmd::cargo::cargo_bin("drover"))
        .args(["worker", "--state", &full])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let encrypted = loop {
        let rows = support::postgres::rows(
            &url,
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'drover'",
        );
        if rows.len() >= 2 || Instant::now() > deadline {
            break rows.iter().map(|r| r.get::<_, bool>(0)).collect::<Vec<_>>();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    worker.kill().unwrap();
    worker.wait().unwrap();
    assert!(
        encrypted.len() >= 2 && encrypted.iter().all(|&e| e),
        "{encrypted:?}"
    );

    let out = status(&format!("{url}?ledger=t&sslmode=sometimes"));
    let said = exited(&out, 2);
    assert!(said.contains("sslmode=sometimes"), "{said}");
}
