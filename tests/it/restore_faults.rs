//! The reference platform's restore when things go wrong: a corrupt byte in one site's backup,
//! and a crash (SIGKILL) half-way through. Built with `drover demo init` / `demo incident`, run
//! with the ordinary `drover run` and the shipped workflow.

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use drover::platform::Platform;
use support::{drover, exited, shipped_workflow, status_json};

/// A demo platform of `sites` sites, every one permanently deleted; `request.toml` lists them.
fn deleted_platform(dir: &Path, sites: u32) -> Platform {
    support::demo(dir, "init", sites, &[]);
    support::demo(dir, "incident", sites, &[]);
    Platform::open(dir.join("platform")).unwrap()
}

/// `drover run` of `request.toml` into `s.db`, in the demo directory.
fn run_args() -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = ["run", "--yes", "--max-sites", "1000", "-w"]
        .map(Into::into)
        .to_vec();
    args.push(shipped_workflow().into());
    for a in ["-r", "request.toml", "--state", "s.db"] {
        args.push(a.into());
    }
    args
}

fn verify(dir: &Path) -> serde_json::Value {
    let out = drover()
        .args(["demo", "verify", "--format", "json", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The newest snapshot of one site's product attachments in the demo's backup store.
fn newest_attachments(dir: &Path, site: &str) -> PathBuf {
    let site_dir = dir.join("backups").join(site);
    let product = std::fs::read_dir(&site_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "contacts")
        .min()
        .unwrap();
    let newest = std::fs::read_dir(&product)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    newest.join("attachments.tar")
}

#[test]
fn one_flipped_byte_in_a_sites_backup_quarantines_that_site_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let platform = deleted_platform(d, 12);
    let tar = newest_attachments(d, "site-0003");
    let mut bytes = std::fs::read(&tar).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&tar, bytes).unwrap();

    let out = drover().current_dir(d).args(run_args()).output().unwrap();
    exited(&out, 3);

    let status = status_json(&d.join("s.db"));
    assert_eq!(status["sites"]["quarantined"], 1, "{status}");
    assert_eq!(status["sites"]["restored"], 11, "{status}");
    let site = support::site_status(&status, "site-0003");
    assert_eq!(site["state"], "quarantined");
    let reason = site["reason"].as_str().unwrap();
    assert!(
        reason.contains("quarantined: the backup of site-0003/")
            && reason.contains("checksum mismatch"),
        "{reason}"
    );

    let record = platform.site("site-0003").unwrap();
    assert_eq!(record.state.as_str(), "quarantined", "in the registry too");
    let events = platform.events(Some("quarantined")).unwrap();
    assert_eq!(events.len(), 1);
    assert!(
        events[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("checksum mismatch"),
        "{events:?}"
    );

    let v = verify(d);
    assert_eq!(v["differ"], serde_json::json!(["site-0003"]), "{v}");
    assert_eq!(
        v["reactivation_counts_not_one"],
        serde_json::json!([["site-0003", 0]])
    );
    assert_eq!(v["restored_equal"], 11);
    assert_eq!(v["neighbours_untouched"], true);
    let told: Vec<String> = platform
        .outbox()
        .unwrap()
        .into_iter()
        .map(|m| m.site)
        .collect();
    assert_eq!(told.len(), 11);
    assert!(
        !told.contains(&"site-0003".to_owned()),
        "a quarantined site is not announced"
    );
}

/// What a restore leaves behind, without times: every site's data, state and how many
/// reactivations and notifications it got.
fn final_state(p: &Platform) -> serde_json::Value {
    let mut per_site: BTreeMap<String, (String, usize, usize)> = p
        .sites()
        .unwrap()
        .into_iter()
        .map(|s| (s.id, (s.state.as_str().to_owned(), 0, 0)))
        .collect();
    for e in p.events(Some("reactivated")).unwrap() {
        per_site.get_mut(&e.site).unwrap().1 += 1;
    }
    for m in p.outbox().unwrap() {
        per_site.get_mut(&m.site).unwrap().2 += 1;
    }
    serde_json::json!({
        "fingerprints": p.fingerprint_all().unwrap(),
        "sites": per_site,
    })
}

#[test]
fn sigkill_half_way_then_resume_gives_the_same_final_state_as_an_uninterrupted_run() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sites = 80;

    // Uninterrupted.
    let whole = deleted_platform(a.path(), sites);
    let out = drover()
        .current_dir(a.path())
        .args(run_args())
        .output()
        .unwrap();
    exited(&out, 0);

    // Killed once a quarter of the sites are restored, then resumed.
    let killed = deleted_platform(b.path(), sites);
    let state = b.path().join("s.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .current_dir(b.path())
        .args(run_args())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(state.exists() && status_json(&state)["sites"]["restored"].as_u64() >= Some(20)) {
        assert!(
            Instant::now() < deadline,
            "the run never got a quarter through"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let mid = status_json(&state);
    assert!(
        mid["sites"]["restored"].as_u64().unwrap() < u64::from(sites),
        "killed before the end: {mid}"
    );
    let out = drover()
        .current_dir(b.path())
        .args(["resume", "--state", "s.db"])
        .output()
        .unwrap();
    exited(&out, 0);

    assert_eq!(final_state(&killed), final_state(&whole));
    // `run` again on the same ledger continues it (nothing left to do): the registry preflight,
    // which would refuse the now active sites, is for new runs only.
    let again = drover()
        .current_dir(b.path())
        .args(run_args())
        .output()
        .unwrap();
    exited(&again, 0);
    assert_eq!(final_state(&killed), final_state(&whole));
    let v = verify(b.path());
    assert_eq!(
        (
            &v["all_equal"],
            &v["neighbours_untouched"],
            &v["one_reactivation_each"]
        ),
        (
            &serde_json::json!(true),
            &serde_json::json!(true),
            &serde_json::json!(true)
        ),
        "{v}"
    );
}

/// Issue #11, class 7: a platform step blocked on a locked shard is ended by its `timeout` and
/// retried, and Ctrl-C during such a step drains within the grace period and exits 130. (The
/// SQLite work used to block the step's future, so neither could reach it for 30 s.)
#[test]
fn a_step_blocked_on_a_locked_shard_is_timed_out_retried_and_interruptible() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    deleted_platform(d, 2);
    let workflow = std::fs::read_to_string(shipped_workflow())
        .unwrap()
        .replacen("timeout = \"1h\"", "timeout = \"2s\"", 1);
    let wf = support::write(d, "wf.toml", workflow);
    // Hold the write lock of every shard, as a long transaction of the live platform would.
    let mut locks = Vec::new();
    for entry in std::fs::read_dir(d.join("platform/shards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "db") {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            locks.push(conn);
        }
    }
    let started = Instant::now();
    let child = Command::new(assert_cmd::cargo::cargo_bin("drover"))
        .current_dir(d)
        .args(["run", "--yes", "--grace", "1s", "-w"])
        .arg(&wf)
        .args(["-r", "request.toml", "--state", "s.db"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ledger = d.join("s.db");
    let timed_out = || -> i64 {
        // Read-only: opening it read-write would create the file before drover does.
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let Ok(db) = rusqlite::Connection::open_with_flags(&ledger, flags) else {
            return 0;
        };
        db.query_row(
            "SELECT count(*) FROM events WHERE detail LIKE '%timed out after 2s%'",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0)
    };
    while timed_out() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "no restore-tenant attempt was ended by its 2 s timeout"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The retry is running (and blocked) again: interrupt it.
    std::thread::sleep(Duration::from_secs(3));
    let interrupted = Instant::now();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = exited(&out, 130);
    assert!(
        interrupted.elapsed() < Duration::from_secs(8),
        "drained within the 1 s grace (took {:?}): {stderr}",
        interrupted.elapsed()
    );
    let doc = status_json(&ledger);
    assert_eq!(doc["steps"]["running"], 0, "nothing is left running");
    let db = rusqlite::Connection::open(&ledger).unwrap();
    let attempts: i64 = db
        .query_row(
            "SELECT max(attempts) FROM steps WHERE id LIKE '%/restore-tenant'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(attempts >= 2, "the timed-out step was retried");
    drop(db);

    // Released, the same ledger finishes and every site equals its fingerprint.
    drop(locks);
    let out = drover()
        .current_dir(d)
        .args(["resume", "--state", "s.db"])
        .output()
        .unwrap();
    exited(&out, 0);
    assert_eq!(verify(d)["all_equal"], true);
}

/// The ledger's highest event number and the steps it records succeeded, read directly.
fn ledger_at_kill(state: &Path) -> (i64, std::collections::HashSet<String>) {
    // Read-write without create: after a SIGKILL the WAL may need recovering, which a read-only
    // connection cannot do.
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE;
    let db = rusqlite::Connection::open_with_flags(state, flags).unwrap();
    let seq = db
        .query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))
        .unwrap();
    let mut stmt = db
        .prepare("SELECT id FROM steps WHERE state = 'succeeded'")
        .unwrap();
    let done = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    (seq, done)
}

/// Steps claimed (started) after event `seq`.
fn claimed_after(state: &Path, seq: i64) -> Vec<String> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE;
    let db = rusqlite::Connection::open_with_flags(state, flags).unwrap();
    let mut stmt = db
        .prepare("SELECT s.id FROM events e JOIN steps s ON s.idx = e.step WHERE e.op = 'claim' AND e.seq > ?1")
        .unwrap();
    stmt.query_map([seq], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Issue #11: 50 SIGKILLs at random moments of a 300-site reference-platform restore, resumed
/// after each. Counted from the ledger and the platform, not from drover's summary: every site
/// equals its pre-incident fingerprint, each was reactivated and notified exactly once, and no
/// step recorded succeeded at a kill was started again after it.
#[test]
fn fifty_sigkills_during_a_300_site_restore_lose_and_repeat_nothing() {
    use rand::{RngExt, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let platform = deleted_platform(d, 300);
    let state = d.join("s.db");
    let seed = std::env::var("DROVER_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("kill schedule seed: {seed} (DROVER_CHAOS_SEED={seed} repeats it)");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut kills = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        assert!(Instant::now() < deadline, "the restore never finished");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_drover"));
        cmd.current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if state.exists() {
            cmd.args(["resume", "--state", "s.db"]);
        } else {
            cmd.args(run_args());
        }
        let mut child = cmd.spawn().unwrap();
        if kills.len() == 50 {
            let status = child.wait().unwrap();
            assert_eq!(
                status.code(),
                Some(0),
                "the last resume finished the restore"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(100..900)));
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(
                status.code(),
                Some(0),
                "a run ended on its own only by finishing"
            );
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if state.exists() {
            kills.push(ledger_at_kill(&state));
        }
    }
    assert!(
        kills.len() >= 40,
        "only {} kills landed before the restore finished; it needs a longer run",
        kills.len()
    );
    for (k, (seq, done)) in kills.iter().enumerate() {
        let again: std::collections::BTreeSet<String> = claimed_after(&state, *seq)
            .into_iter()
            .filter(|id| done.contains(id))
            .collect();
        assert!(
            again.is_empty(),
            "after kill {k}, succeeded steps ran again: {again:?}"
        );
    }
    let v = verify(d);
    assert_eq!(v["all_equal"], true, "{v}");
    assert_eq!(v["neighbours_untouched"], true, "{v}");
    let end = final_state(&platform);
    for (site, s) in end["sites"].as_object().unwrap() {
        assert_eq!(s[0], "active-again", "{site}");
        assert_eq!(
            (s[1].as_u64(), s[2].as_u64()),
            (Some(1), Some(1)),
            "{site}: one reactivation and one notification"
        );
    }
}

/// A site whose notification fails for good (the webhook answers 400) is back in service, not
/// failed: status calls it unnotified and says why; `retry` re-sends only the notification.
#[test]
fn a_live_site_whose_notification_failed_is_not_a_failed_site() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let log = support::http::Log::default();
    let addr = runtime.block_on(support::http::serve(std::sync::Arc::clone(&log)));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let platform = deleted_platform(d, 2);
    let shipped = std::fs::read_to_string(shipped_workflow()).unwrap();
    let at = shipped.find("[steps.notify]").unwrap();
    let notify = &shipped[at..];
    let with_webhook = notify.replacen(
        "params = { ",
        &format!("params = {{ webhook = \"http://{addr}/refuse-once\", "),
        1,
    );
    let wf = support::write(d, "wf.toml", format!("{}{with_webhook}", &shipped[..at]));
    let run = |args: &[&str]| {
        let mut cmd = drover();
        cmd.current_dir(d).args(args);
        cmd.output().unwrap()
    };
    let out = run(&[
        "run",
        "--yes",
        "-w",
        wf.to_str().unwrap(),
        "-r",
        "request.toml",
        "--state",
        "s.db",
    ]);
    exited(&out, 3);

    let doc = status_json(&d.join("s.db"));
    assert_eq!(doc["sites"]["unnotified"], 2, "{doc}");
    assert_eq!(doc["sites"]["failed"], 0, "{doc}");
    let reason = doc["site_status"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("back in service, but site-0001/notify failed")
            && reason.contains("400")
            && reason.contains("drover retry --site site-0001"),
        "{reason}"
    );
    for site in platform.sites().unwrap() {
        assert_eq!(site.state.as_str(), "active-again", "{}", site.id);
    }
    let text = run(&["status", "--state", "s.db"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("2 unnotified"), "{text}");

    // Retried: only the notification runs again, and the site is restored.
    exited(
        &run(&["retry", "--state", "s.db", "--site", "site-0001"]),
        0,
    );
    exited(&run(&["resume", "--state", "s.db"]), 3);
    let doc = status_json(&d.join("s.db"));
    assert_eq!(doc["site_status"][0]["state"], "restored", "{doc}");
    assert_eq!(doc["site_status"][1]["state"], "unnotified", "{doc}");
    let ledger = rusqlite::Connection::open(d.join("s.db")).unwrap();
    let attempts = |id: &str| -> i64 {
        ledger
            .query_row("SELECT attempts FROM steps WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap()
    };
    assert_eq!(attempts("site-0001/reactivate"), 1);
    assert_eq!(attempts("site-0001/notify"), 2);
    let sent = log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.body.contains("\"site-0001\""))
        .count();
    assert_eq!(sent, 2, "the notification was sent again, once");

    // For support: each customer with their restored contacts, their sites and a message.
    let out = run(&[
        "status",
        "--state",
        "s.db",
        "--by-customer",
        "--format",
        "json",
    ]);
    exited(&out, 0);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let customers = doc["customers"].as_array().unwrap();
    let listed: Vec<&str> = customers
        .iter()
        .flat_map(|c| c["sites"].as_array().unwrap())
        .map(|s| s["site"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 2, "{doc}");
    for c in customers {
        let record = platform
            .site(c["sites"][0]["site"].as_str().unwrap())
            .unwrap();
        assert_eq!(c["customer"], record.customer.as_str());
        let emails: Vec<String> = platform
            .contacts(&record.id.to_string())
            .unwrap()
            .into_iter()
            .map(|p| p.email)
            .collect();
        assert!(!emails.is_empty());
        for e in &emails {
            assert!(c["contacts"].to_string().contains(e.as_str()), "{c}");
        }
        let message = c["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("Hello {}", record.customer))
                && message.contains("back in service")
                && message.contains(&format!("- {}: restored", record.id)),
            "{message}"
        );
    }
    let out = run(&[
        "status",
        "--state",
        "s.db",
        "--by-customer",
        "--format",
        "csv",
    ]);
    let csv = String::from_utf8_lossy(&exited_ok(&out)).into_owned();
    assert_eq!(csv.lines().count(), 3, "a header and a row per site: {csv}");
    assert!(
        csv.lines()
            .any(|l| l.contains("site-0002") && l.contains("unnotified")),
        "{csv}"
    );
}

fn exited_ok(out: &std::process::Output) -> Vec<u8> {
    exited(out, 0);
    out.stdout.clone()
}

/// Issue #17: with `progress_moves` on `notify`, each customer hears "in progress, expected
/// between X and Y" when their time is first known and again only when it moves by more than
/// the threshold, in the outbox and at the webhook, each update once, across a SIGKILL and a
/// resume.
#[test]
fn customers_hear_of_progress_once_per_change_across_a_crash_and_resume() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let log = support::http::Log::default();
    let addr = runtime.block_on(support::http::serve(std::sync::Arc::clone(&log)));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sites = 60;
    let platform = deleted_platform(d, sites);
    let shipped = std::fs::read_to_string(shipped_workflow()).unwrap();
    let at = shipped.find("[steps.notify]").unwrap();
    let notify = shipped[at..].replacen(
        "params = { ",
        &format!(
            "params = {{ webhook = \"http://{addr}/hook\", progress_moves = \"10m\", \
             progress_every = \"1s\", "
        ),
        1,
    );
    let wf = support::write(d, "wf.toml", format!("{}{notify}", &shipped[..at]));
    let state = d.join("s.db");
    let updates = |delivered_only: bool| -> Vec<(String, i64, i64, i64)> {
        let Ok(ledger) = rusqlite::Connection::open(&state) else {
            return Vec::new();
        };
        let sql = format!(
            "SELECT customer, seq, p50_at, p90_at FROM updates {} ORDER BY customer, seq",
            if delivered_only {
                "WHERE delivered_at IS NOT NULL"
            } else {
                ""
            }
        );
        let Ok(mut stmt) = ledger.prepare(&sql) else {
            return Vec::new();
        };
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };

    // Killed once a first round of updates is out and a third of the sites are back.
    let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .current_dir(d)
        .args(["run", "--yes", "--max-parallel", "4", "-w"])
        .arg(&wf)
        .args(["-r", "request.toml", "--state", "s.db"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(state.exists()
        && !updates(true).is_empty()
        && status_json(&state)["sites"]["restored"].as_u64() >= Some(u64::from(sites / 3)))
    {
        assert!(Instant::now() < deadline, "no update went out in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = updates(false);
    let out = drover()
        .current_dir(d)
        .args(["resume", "--state", "s.db"])
        .output()
        .unwrap();
    exited(&out, 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("not delivered"), "{stderr}");

    let after = updates(false);
    assert_eq!(updates(true), after, "every update recorded was delivered");
    for u in &before {
        assert!(after.contains(u), "the resume kept update {u:?} as it was");
    }
    // Each customer's updates: numbered from 1, and each one moved by more than 10 minutes at
    // one end or the other (the first came from the workflow's production-sized estimates,
    // hours; the next from the durations measured here).
    let ten_min = 600_000;
    let mut customers = BTreeMap::new();
    for (c, seq, p50, p90) in &after {
        customers
            .entry(c.clone())
            .or_insert_with(Vec::new)
            .push((*seq, *p50, *p90));
    }
    assert!(customers.len() > 1, "{after:?}");
    for (c, list) in &customers {
        for (i, w) in list.iter().enumerate() {
            assert_eq!(w.0, i as i64 + 1, "{c}: numbered in order: {list:?}");
        }
        for w in list.windows(2) {
            let moved = (w[1].1 - w[0].1).abs().max((w[1].2 - w[0].2).abs());
            assert!(
                moved > ten_min,
                "{c}: sent again without a change: {list:?}"
            );
        }
    }
    assert!(
        customers.values().any(|l| l.len() > 1),
        "a customer heard again when the time moved from hours to seconds: {after:?}"
    );

    // The outbox and the webhook got each update once, under its key.
    let outbox: Vec<serde_json::Value> = platform
        .outbox()
        .unwrap()
        .into_iter()
        .map(|m| serde_json::from_str(&m.message).unwrap())
        .filter(|m: &serde_json::Value| m["kind"] == "progress")
        .collect();
    assert_eq!(outbox.len(), after.len(), "{outbox:?}");
    let hooked: Vec<support::http::Received> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.key.contains("/progress/"))
        .cloned()
        .collect();
    assert_eq!(hooked.len(), after.len(), "each update posted once");
    for m in &outbox {
        let customer = m["customer"].as_str().unwrap();
        let between = m["expected_between"].as_array().unwrap();
        assert_eq!(between.len(), 2, "{m}");
        assert!(between[0].as_str() <= between[1].as_str(), "{m}");
        assert!(m["text"].as_str().unwrap().contains(customer), "{m}");
        let key = format!("/progress/{}/{}", customer, m["update"]).to_lowercase();
        assert_eq!(
            hooked.iter().filter(|r| r.key.ends_with(&key)).count(),
            1,
            "{key}"
        );
    }
}
