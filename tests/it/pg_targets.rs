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

/// An operator's own schema: tenant column `tenant_id`, a foreign key, values COPY must escape.
const APP_SCHEMA: &str = "
CREATE SCHEMA app;
CREATE TABLE app.accounts (tenant_id text NOT NULL, id bigint NOT NULL, name text,
    PRIMARY KEY (tenant_id, id));
CREATE TABLE app.orders (tenant_id text NOT NULL, id bigint NOT NULL, account_id bigint,
    total numeric(12, 2), note text, PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, account_id) REFERENCES app.accounts (tenant_id, id));
INSERT INTO app.accounts SELECT 'site-000' || t, a, 'account ' || a || E' of\\t\"' || t || E'\"\\n'
    FROM generate_series(1, 4) t, generate_series(1, 20) a;
INSERT INTO app.orders SELECT 'site-000' || t, o, 1 + o % 20, o * 1.25,
    CASE WHEN o % 7 = 0 THEN NULL ELSE E'back\\\\slash ' || o END
    FROM generate_series(1, 4) t, generate_series(1, 150) o;
";

/// Every row of a tenant, as text, in key order.
fn tenant_rows(url: &str, tenant: &str) -> Vec<String> {
    let mut out = Vec::new();
    for table in ["accounts", "orders"] {
        let sql =
            format!("SELECT t::text FROM app.{table} t WHERE tenant_id = '{tenant}' ORDER BY id");
        out.extend(rows(url, &sql).iter().map(|r| r.get::<_, String>(0)));
    }
    out
}

#[test]
fn an_operators_schema_restores_by_tenant_and_refuses_what_it_must() {
    let url = database("pg_app");
    let secret = "pw-Kv93mQ";
    let with_password = url.replacen("drover@", &format!("drover:{secret}@"), 1);
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin.batch_execute(APP_SCHEMA).unwrap();
    let before: Vec<Vec<String>> = (1..=4)
        .map(|t| tenant_rows(&url, &format!("site-000{t}")))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // The backup: one slice per tenant, in drover's layout.
    let out = drover()
        .args([
            "backups",
            "pg-snapshot",
            "--database",
            &url,
            "--schema",
            "app",
        ])
        .args([
            "--tenant-column",
            "tenant_id",
            "--format",
            "json",
            "--store",
        ])
        .arg(d.join("store"))
        .output()
        .unwrap();
    exited(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["tables"],
        serde_json::json!(["accounts", "orders"]),
        "parents first"
    );
    assert_eq!(report["units"].as_array().unwrap().len(), 4);
    assert_eq!(report["rows"], 4 * (20 + 150));
    let refused = drover()
        .args([
            "backups",
            "pg-snapshot",
            "--database",
            &with_password,
            "--schema",
            "app",
        ])
        .args(["--store", "elsewhere"])
        .output()
        .unwrap();
    assert!(support::refused(&refused).contains("PGPASSWORD"));

    // The incident: tenants 1, 2 and 3 deleted; tenant 3 already has a new live row; a trigger
    // makes any copy of tenant 2's orders touch tenant 4's rows.
    admin
        .batch_execute(
            "DELETE FROM app.orders WHERE tenant_id IN ('site-0001', 'site-0002', 'site-0003');
             DELETE FROM app.accounts WHERE tenant_id IN ('site-0001', 'site-0002', 'site-0003');
             INSERT INTO app.accounts VALUES ('site-0003', 999, 'made after the incident');
             CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.tenant_id = 'site-0002' THEN
                 UPDATE app.accounts SET name = 'touched' WHERE tenant_id = 'site-0004' AND id = 1;
               END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER touch AFTER INSERT ON app.orders FOR EACH ROW EXECUTE FUNCTION app.touch();",
        )
        .unwrap();

    let workflow = support::write(
        d,
        "workflow.toml",
        r#"
[workflow]
name = "app-tenants"
[pools.db]
capacity = 2
[products.app]
[steps.fetch]
scope = "product"
kind = "fetch"
params = { unit = "{site}/{product}", source = "{backups}", point_in_time = "{point_in_time}" }
estimate = "1s"
[steps.restore]
scope = "product"
kind = "pg-restore-tenant"
after = ["fetch"]
params = { database = "{env:APP_DB}" }
uses = { db = 1 }
retry = { attempts = 1 }
estimate = "1s"
[steps.validate]
scope = "product"
kind = "pg-validate"
after = ["fetch", "restore"]
params = { database = "{env:APP_DB}" }
estimate = "1s"
"#,
    );
    let request = support::write(
        d,
        "request.toml",
        format!(
            "[request]\nname = \"app\"\npoint_in_time = \"{}\"\nproducts = [\"app\"]\n\
             [backups]\nsource = \"{}\"\n\
             [[sites]]\nid = \"site-0001\"\n[[sites]]\nid = \"site-0002\"\n[[sites]]\nid = \"site-0003\"\n",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            d.join("store").display()
        ),
    );
    let out = drover()
        .env("APP_DB", &with_password)
        .args(["run", "--yes", "-w"])
        .arg(&workflow)
        .arg("-r")
        .arg(&request)
        .args(["--state", "s.db"])
        .current_dir(d)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{text}");
    let status = status_json(&d.join("s.db"));
    let state = |site: &str| support::site_status(&status, site);
    // Tenant 1 is back, equal to its backup, and validated.
    assert_eq!(state("site-0001")["state"], "restored", "{status}");
    assert_eq!(tenant_rows(&url, "site-0001"), before[0]);
    // Tenant 3's live row is never overwritten: the site is quarantined, its row kept.
    assert_eq!(state("site-0003")["state"], "quarantined", "{status}");
    let reason = state("site-0003")["reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains("already holds rows of tenant 'site-0003'"),
        "{reason}"
    );
    assert_eq!(tenant_rows(&url, "site-0003").len(), 1);
    // Tenant 2's copy changed a neighbour's row: rolled back whole, the neighbour unchanged.
    assert_eq!(state("site-0002")["state"], "failed", "{status}");
    let reason = state("site-0002")["reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains("changed other tenants' rows of app.accounts")
            || reason.contains("changed other tenants' rows"),
        "{reason}"
    );
    assert!(
        tenant_rows(&url, "site-0002").is_empty(),
        "nothing of the copy stayed"
    );
    assert_eq!(tenant_rows(&url, "site-0004"), before[3]);
    for file in support::files_under(d) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{}",
            file.display()
        );
    }
    assert!(!text.contains(secret));

    // The same idempotency key never copies twice; another key finds live rows and refuses;
    // `existing = replace` replaces them in the same transaction.
    admin
        .batch_execute("DROP TRIGGER touch ON app.orders")
        .unwrap();
    let slice = std::fs::read_dir(d.join("store/site-0002/app"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use drover::pgslice::{Existing, RestoreOptions, SliceError, connect, restore_tenant};
        let mut db = connect(&url, "test").await.unwrap();
        let opts = |key, existing| RestoreOptions {
            schema: None,
            tenant: "site-0002",
            existing,
            skip_neighbour_check: &[],
            key,
        };
        let first = restore_tenant(&mut db, &slice, &opts("k1", Existing::Refuse))
            .await
            .unwrap();
        assert_eq!(first.rows_inserted, 170);
        let again = restore_tenant(&mut db, &slice, &opts("k1", Existing::Refuse))
            .await
            .unwrap();
        assert!(again.already_restored && again.rows_inserted == 0);
        let other = restore_tenant(&mut db, &slice, &opts("k2", Existing::Refuse)).await;
        assert!(matches!(other, Err(SliceError::LiveRows(_))), "{other:?}");
        let replaced = restore_tenant(&mut db, &slice, &opts("k3", Existing::Replace))
            .await
            .unwrap();
        assert_eq!((replaced.rows_replaced, replaced.rows_inserted), (170, 170));
    });
    assert_eq!(tenant_rows(&url, "site-0002"), before[1]);
}

#[test]
fn demo_postgres_without_a_url_says_how_to_start_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let out = drover()
        .args(["demo", "--postgres", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = support::refused(&out);
    assert!(
        text.contains("initdb")
            && text.contains("pg_ctl")
            && text.contains("drover demo --postgres postgres://"),
        "{text}"
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing was made"
    );
}
