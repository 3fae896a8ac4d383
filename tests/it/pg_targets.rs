//! Tenant-slice restores into live multi-tenant PostgreSQL shards (`pg-restore-tenant`,
//! `pg-validate`, the reference platform on PostgreSQL), on the suite's real server: the whole
//! demo beside a concurrent writer, a corrupt table object, and a SIGKILL in the middle of a
//! tenant's copy.

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use drover::platform::Platform;
use support::postgres::{database, rows};
use support::{drover, exited, status_json};

/// Rows the writer's tenants should hold: (schema, site, id) → title.
type Written = BTreeMap<(String, String, i64), String>;

/// Keeps inserting and updating wiki pages of tenants of its own (`writer-0` … `writer-3`, on
/// the platform's wiki shards, beside the demo's sites) until told to stop; returns what the
/// tables should hold for them, and how many writes it made.
fn concurrent_writer(
    url: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Written, u32)> {
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let mut written = Written::new();
        let (mut writes, mut n) = (0u32, 0i64);
        let mut shards: Vec<String> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if shards.is_empty() || n % 50 == 0 {
                shards = client
                    .query(
                        "SELECT table_schema::text FROM information_schema.tables \
                         WHERE table_name = 'pages' ORDER BY 1",
                        &[],
                    )
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                if shards.is_empty() {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
            n += 1;
            let schema = &shards[n as usize % shards.len()];
            let site = format!("writer-{}", n % 4);
            let update = written
                .keys()
                .find(|(s, t, _)| s == schema && *t == site)
                .cloned()
                .filter(|_| n % 3 == 0);
            let title = format!("written {n}");
            match update {
                Some(key) => {
                    let sql = format!(
                        "UPDATE \"{schema}\".pages SET title = $3 WHERE site = $1 AND id = $2"
                    );
                    client.execute(&sql, &[&key.1, &key.2, &title]).unwrap();
                    written.insert(key, title);
                }
                None => {
                    let sql = format!(
                        "INSERT INTO \"{schema}\".pages (site, id, title, body) VALUES ($1, $2, $3, 'concurrent')"
                    );
                    client.execute(&sql, &[&site, &n, &title]).unwrap();
                    written.insert((schema.clone(), site, n), title);
                }
            }
            writes += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        (written, writes)
    })
}

/// What the writer's tenants hold now.
fn writer_rows(url: &str) -> Written {
    let mut out = Written::new();
    let schemas = rows(
        url,
        "SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'pages'",
    );
    for s in schemas {
        let schema: String = s.get(0);
        let sql =
            format!("SELECT site, id, title FROM \"{schema}\".pages WHERE site LIKE 'writer-%'");
        for r in rows(url, &sql) {
            out.insert((schema.clone(), r.get(0), r.get(1)), r.get(2));
        }
    }
    out
}

#[test]
fn the_300_site_demo_on_postgres_restores_every_site_beside_a_concurrent_writer() {
    let url = database("pg_demo");
    // The test server trusts every local connection, so any password is accepted: it must
    // appear in nothing drover writes or prints, apart from the platform's own 0600 file.
    let secret = "pw-Zq81xT";
    let with_password = url.replacen("drover@", &format!("drover:{secret}@"), 1);
    let dir = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = concurrent_writer(url.clone(), Arc::clone(&stop));

    let out = drover()
        .args([
            "demo",
            "--sites",
            "300",
            "--postgres",
            &with_password,
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let (written, writes) = writer.join().unwrap();
    let text = exited(&out, 0);
    assert!(text.contains("(shards in PostgreSQL)"), "{text}");
    assert!(
        text.contains("verify: 300 of 300 deleted sites equal their pre-incident fingerprint; neighbours untouched; reactivations exactly one per site"),
        "{text}"
    );
    assert!(
        writes >= 200,
        "the writer kept writing through the demo: {writes} writes"
    );

    // Every other tenant's rows are exactly what the concurrent writer wrote.
    assert_eq!(writer_rows(&url), written);
    // Every restored tenant was copied once, and its rows are its snapshot's (demo verify above).
    let copies = rows(
        &url,
        "SELECT count(*), count(DISTINCT key) FROM drover.tenant_restores",
    );
    let (all, distinct): (i64, i64) = (copies[0].get(0), copies[0].get(1));
    assert_eq!(all, distinct);
    assert!(all > 300, "one copy per restored site and product: {all}");

    assert!(!text.contains(secret) && !String::from_utf8_lossy(&out.stdout).contains(secret));
    let url_file = dir.path().join("platform/postgres.url");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&url_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    for file in support::files_under(dir.path()) {
        if file != url_file {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds the password",
                file.display()
            );
        }
    }
}

/// The newest snapshot directory of one site's product unit in the demo's backups.
fn newest_snapshot(dir: &Path, site: &str, product: &str) -> PathBuf {
    let unit = dir.join("backups").join(site).join(product);
    std::fs::read_dir(&unit)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap()
}

/// Backends of drover's steps on the server: (state, wait event type, query).
fn step_backends(url: &str) -> Vec<(String, String, String)> {
    rows(
        url,
        "SELECT coalesce(state, ''), coalesce(wait_event_type, ''), query FROM pg_stat_activity \
         WHERE application_name = 'drover' AND pid <> pg_backend_pid()",
    )
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

#[test]
fn a_corrupt_table_object_quarantines_one_site_and_a_killed_copy_resumes_exactly_once() {
    let url = database("pg_faults");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::demo(d, "init", 12, &["--postgres", &url]);
    support::demo(d, "incident", 12, &[]);
    let platform = Platform::open(d.join("platform")).unwrap();

    // One flipped byte in one table object of site-0003's backup.
    let snapshot = newest_snapshot(d, "site-0003", "identity");
    let object = snapshot.join("users.copy");
    let mut bytes = std::fs::read(&object).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&object, bytes).unwrap();

    // Every copy into site-0005's identity shard waits, inside its transaction, for a lock the
    // test holds; drover is SIGKILLed while one waits.
    let shard = platform
        .site("site-0005")
        .unwrap()
        .shard("identity")
        .unwrap()
        .to_owned();
    let mut locker = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let mut lock = locker.transaction().unwrap();
    lock.batch_execute(&format!("LOCK TABLE \"{shard}\".users IN SHARE MODE"))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .current_dir(d)
        .args([
            "run",
            "--yes",
            "-w",
            "workflow.toml",
            "-r",
            "request.toml",
            "--state",
            "s.db",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !step_backends(&url)
        .iter()
        .any(|(_, wait, query)| wait == "Lock" && query.starts_with("INSERT INTO"))
    {
        assert!(
            Instant::now() < deadline,
            "no copy ever waited for the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL, mid-transaction
    child.wait().unwrap();
    lock.rollback().unwrap();
    // The orphaned backends finish their statement, find the client gone, and roll back.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !step_backends(&url).is_empty() {
        assert!(Instant::now() < deadline, "{:?}", step_backends(&url));
        std::thread::sleep(Duration::from_millis(20));
    }
    let mid = status_json(&d.join("s.db"));
    assert!(
        mid["sites"]["restored"].as_u64().unwrap() < 12,
        "killed before the end: {mid}"
    );

    let out = drover()
        .current_dir(d)
        .args(["resume", "--state", "s.db"])
        .output()
        .unwrap();
    exited(&out, 3);

    let status = status_json(&d.join("s.db"));
    assert_eq!(status["sites"]["quarantined"], 1, "{status}");
    assert_eq!(status["sites"]["restored"], 11, "{status}");
    let quarantined = status["site_status"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["state"] == "quarantined")
        .unwrap();
    assert_eq!(quarantined["site"], "site-0003");
    let reason = quarantined["reason"].as_str().unwrap();
    assert!(
        reason.contains("site-0003/identity") && reason.contains("users.copy"),
        "{reason}"
    );
    assert_eq!(
        platform.site("site-0003").unwrap().state.as_str(),
        "quarantined"
    );

    let out = drover()
        .args(["demo", "verify", "--format", "json", "--dir"])
        .arg(d)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["differ"], serde_json::json!(["site-0003"]), "{v}");
    assert_eq!(v["restored_equal"], 11, "{v}");
    // Each tenant's copy was made once: one record per site and product, none for the
    // quarantined site's identity, and the killed copies were made again under their own keys.
    let copies = rows(
        &url,
        "SELECT tenant, schema_name, count(*) FROM drover.tenant_restores GROUP BY 1, 2 ORDER BY 1, 2",
    );
    assert!(copies.iter().all(|r| r.get::<_, i64>(2) == 1));
    assert!(
        copies
            .iter()
            .any(|r| r.get::<_, String>(0) == "site-0005" && r.get::<_, String>(1) == shard)
    );
    assert!(
        !copies.iter().any(|r| r.get::<_, String>(0) == "site-0003"
            && r.get::<_, String>(1).starts_with("identity"))
    );
}
