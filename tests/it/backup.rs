//! Backup stores against real storage: a local directory, and a real S3 server on loopback
//! (s3s + s3s-fs) with and without injected faults. Point-in-time choice, ranged and verified
//! fetches, interrupted fetches, corruption, tenant checks, unsafe archives, `backups list`.

use crate::support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use drover::backup::download::{self, FetchError, FetchOptions, Target};
use drover::backup::local::LocalStore;
use drover::backup::s3::{S3Store, S3Url};
use drover::backup::{BackupStore, StoreError};
use support::s3::{BUCKET, FaultConfig, Obj, Server, data, upload, write_local};
use tokio_util::sync::CancellationToken;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn s3_store(server: &Server, prefix: &str, sdk_attempts: u32) -> S3Store {
    S3Store::with_client(
        server.client(sdk_attempts),
        S3Url {
            bucket: BUCKET.into(),
            prefix: prefix.into(),
            path_style: true,
        },
    )
}

async fn fetch(
    store: &dyn BackupStore,
    unit: &str,
    site: Option<&str>,
    pit: &str,
    dest: &Path,
    opts: &FetchOptions,
) -> Result<download::FetchReport, FetchError> {
    let target = Target {
        unit,
        site,
        point_in_time: t(pit),
    };
    download::fetch(store, &target, dest, opts, &CancellationToken::new()).await
}

/// Three snapshots of a site's wiki: 06:00, 07:30 (the one to pick for 07:38), and 07:35 without a
/// manifest (incomplete: ignored), plus 08:00 (after the target).
async fn populate(write: impl AsyncFnMut(&str, &[Obj<'_>], bool)) {
    let mut write = write;
    for (time, seed, complete) in [
        ("2022-04-05T06:00:00Z", 1, true),
        ("2022-04-05T07:30:00Z", 2, true),
        ("2022-04-05T07:35:00Z", 3, false),
        ("2022-04-05T08:00:00Z", 4, true),
    ] {
        let a = data(10_000, seed);
        let b = data(3_000, seed + 100);
        write(
            time,
            &[
                Obj {
                    name: "attachments/a.bin",
                    data: &a,
                },
                Obj {
                    name: "pages.db",
                    data: &b,
                },
            ],
            complete,
        )
        .await;
    }
}

async fn check_point_in_time(store: &dyn BackupStore, dest: &Path) {
    let snaps = store.list_snapshots(Some("site-0001/wiki")).await.unwrap();
    assert_eq!(snaps.len(), 4);
    assert_eq!(snaps.iter().filter(|s| s.complete).count(), 3);
    let report = fetch(
        store,
        "site-0001/wiki",
        Some("site-0001"),
        "2022-04-05T07:38:00Z",
        dest,
        &FetchOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.snapshot, "20220405T073000Z");
    assert_eq!(report.rpo_s, 8 * 60);
    assert_eq!(
        std::fs::read(dest.join("attachments/a.bin")).unwrap(),
        data(10_000, 2),
        "the 07:30 snapshot's bytes"
    );
    assert_eq!(
        std::fs::read(dest.join("pages.db")).unwrap(),
        data(3_000, 102)
    );
    let again = fetch(
        store,
        "site-0001/wiki",
        Some("site-0001"),
        "2022-04-05T07:38:00Z",
        dest,
        &FetchOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        (again.reused, again.downloaded_bytes),
        (2, 0),
        "a repeated fetch downloads nothing"
    );
    let err = fetch(
        store,
        "site-0001/wiki",
        Some("site-0001"),
        "2022-04-05T05:00:00Z",
        dest,
        &FetchOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("the oldest complete one is 2022-04-05T06:00:00Z"),
        "{err}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn local_store_lists_snapshots_and_picks_the_point_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    populate(async |time: &str, objs: &[Obj<'_>], complete| {
        write_local(
            &root,
            "site-0001/wiki",
            Some("site-0001"),
            time,
            objs,
            complete,
        )
    })
    .await;
    check_point_in_time(&LocalStore::new(root.clone()), &dir.path().join("out")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_lists_snapshots_and_picks_the_point_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("s3")).await;
    let client = server.client(3);
    populate(async |time: &str, objs: &[Obj<'_>], complete| {
        upload(
            &client,
            "prod",
            "site-0001/wiki",
            Some("site-0001"),
            time,
            objs,
            complete,
        )
        .await
    })
    .await;
    check_point_in_time(&s3_store(&server, "prod", 3), &dir.path().join("out")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_object_is_fetched_by_parallel_ranged_gets_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("s3")).await;
    let big = data(100 << 20, 7);
    // Placed on the server's disk directly (s3s-fs serves files in the bucket directory).
    write_local(
        &server.root.join(BUCKET).join("prod"),
        "wiki-3",
        None,
        "2022-04-05T07:00:00Z",
        &[Obj {
            name: "shard.sqlite",
            data: &big,
        }],
        true,
    );
    let store = s3_store(&server, "prod", 1);
    let opts = FetchOptions {
        part_size: 8 << 20,
        concurrency: 8,
        ..Default::default()
    };
    let dest = dir.path().join("out");
    let report = fetch(&store, "wiki-3", None, "2022-04-05T07:38:00Z", &dest, &opts)
        .await
        .unwrap();
    assert_eq!(report.bytes, 100 << 20);
    assert!(
        server.faults.ranged_gets.load(Ordering::Relaxed) >= 13,
        "100 MiB in 8 MiB ranges"
    );
    assert_eq!(std::fs::read(dest.join("shard.sqlite")).unwrap(), big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_local_object_is_fetched_in_parallel_ranges_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    let big = data(100 << 20, 7);
    write_local(
        &root,
        "wiki-3",
        None,
        "2022-04-05T07:00:00Z",
        &[Obj {
            name: "shard.sqlite",
            data: &big,
        }],
        true,
    );
    let dest = dir.path().join("out");
    let opts = FetchOptions {
        part_size: 8 << 20,
        concurrency: 8,
        ..Default::default()
    };
    let report = fetch(
        &LocalStore::new(root),
        "wiki-3",
        None,
        "2022-04-05T07:38:00Z",
        &dest,
        &opts,
    )
    .await
    .unwrap();
    assert_eq!(
        (report.bytes, report.downloaded_bytes),
        (100 << 20, 100 << 20)
    );
    assert_eq!(std::fs::read(dest.join("shard.sqlite")).unwrap(), big);
}

async fn interrupted_then_resumed(store: Arc<dyn BackupStore>, dest: &Path) {
    let opts = FetchOptions {
        part_size: 1 << 20,
        concurrency: 2,
        ..Default::default()
    };
    let cancel = CancellationToken::new();
    let target = Target {
        unit: "wiki-3",
        site: None,
        point_in_time: t("2022-04-05T07:38:00Z"),
    };
    let task = {
        let (store, dest, opts, cancel) = (
            Arc::clone(&store),
            dest.to_path_buf(),
            opts.clone(),
            cancel.clone(),
        );
        tokio::spawn(async move {
            let target = Target {
                unit: "wiki-3",
                site: None,
                point_in_time: t("2022-04-05T07:38:00Z"),
            };
            download::fetch(store.as_ref(), &target, &dest, &opts, &cancel).await
        })
    };
    // Cancel once the small object is in place and the big one is under way.
    while !(dest.join("small.bin").exists() && dest.join("big.bin.drover-part").exists()) {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    cancel.cancel();
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, FetchError::Cancelled), "{err}");
    assert!(
        !dest.join("big.bin").exists(),
        "no partial file under the final name"
    );
    let report = download::fetch(
        store.as_ref(),
        &target,
        dest,
        &opts,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        report.reused, 1,
        "the verified small object is not fetched again"
    );
    assert_eq!(
        std::fs::read(dest.join("big.bin")).unwrap(),
        data(40 << 20, 9)
    );
    assert!(!dest.join("big.bin.drover-part").exists());
}

fn two_objects(root: &Path) {
    let (small, big) = (data(1000, 8), data(40 << 20, 9));
    write_local(
        root,
        "wiki-3",
        None,
        "2022-04-05T07:00:00Z",
        &[
            Obj {
                name: "small.bin",
                data: &small,
            },
            Obj {
                name: "big.bin",
                data: &big,
            },
        ],
        true,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_s3_fetch_resumes_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("s3")).await;
    two_objects(&server.root.join(BUCKET).join("prod"));
    interrupted_then_resumed(
        Arc::new(s3_store(&server, "prod", 1)),
        &dir.path().join("out"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_local_fetch_resumes_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    two_objects(&root);
    interrupted_then_resumed(Arc::new(LocalStore::new(root)), &dir.path().join("out")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_survived() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("s3")).await;
    let objects: Vec<Vec<u8>> = (0..12)
        .map(|i| data(300_000 + i * 7919, i as u64))
        .collect();
    let objs: Vec<Obj> = objects
        .iter()
        .enumerate()
        .map(|(i, d)| Obj {
            name: Box::leak(format!("part-{i}.bin").into_boxed_str()),
            data: d,
        })
        .collect();
    write_local(
        &server.root.join(BUCKET).join("prod"),
        "wiki-3",
        None,
        "2022-04-05T07:00:00Z",
        &objs,
        true,
    );
    // 5% each of 500s, 503 SlowDown, dropped connections, aborted and truncated bodies, flipped bytes.
    server.faults.set(FaultConfig {
        error_500: 50,
        error_503: 50,
        drop_conn: 50,
        flip: 50,
        abort: 50,
        truncate: 50,
    });
    let store = s3_store(&server, "prod", 1);
    let opts = FetchOptions {
        part_size: 64 << 10,
        concurrency: 4,
        ..Default::default()
    };
    let dest = dir.path().join("out");
    let mut result = fetch(&store, "wiki-3", None, "2022-04-05T07:38:00Z", &dest, &opts).await;
    // A step retries transient failures; so does this test, a bounded number of times.
    for _ in 0..5 {
        match &result {
            Err(e) if e.is_retryable() => {
                result = fetch(&store, "wiki-3", None, "2022-04-05T07:38:00Z", &dest, &opts).await
            }
            _ => break,
        }
    }
    let report = result.expect("transient faults are survived");
    assert_eq!(report.objects, 12);
    assert!(
        server.faults.injected.load(Ordering::Relaxed) >= 10,
        "faults were injected: {}",
        server.faults.injected.load(Ordering::Relaxed)
    );
    for (i, d) in objects.iter().enumerate() {
        assert_eq!(
            &std::fs::read(dest.join(format!("part-{i}.bin"))).unwrap(),
            d,
            "object {i} intact"
        );
    }
    assert!(std::fs::read_dir(&dest).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".drover-part")
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_stored_object_fails_permanently_naming_key_and_digests() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("s3")).await;
    let root = server.root.join(BUCKET).join("prod");
    let good = data(200_000, 5);
    write_local(
        &root,
        "wiki-3",
        None,
        "2022-04-05T07:00:00Z",
        &[Obj {
            name: "shard.sqlite",
            data: &good,
        }],
        true,
    );
    // Damage the stored bytes after the manifest recorded their digest.
    let stored = root.join("wiki-3/20220405T070000Z/shard.sqlite");
    let mut bad = good.clone();
    bad[12_345] ^= 0x01;
    std::fs::write(&stored, &bad).unwrap();
    let dest = dir.path().join("out");
    let err = fetch(
        &s3_store(&server, "prod", 1),
        "wiki-3",
        None,
        "2022-04-05T07:38:00Z",
        &dest,
        &FetchOptions::default(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(!err.is_retryable(), "{msg}");
    assert!(
        msg.contains(
            "checksum mismatch for s3://backups/prod/wiki-3/20220405T070000Z/shard.sqlite"
        ),
        "{msg}"
    );
    assert!(
        msg.contains(&support::s3::sha256(&good)) && msg.contains(&support::s3::sha256(&bad)),
        "names both digests: {msg}"
    );
    assert!(
        !dest.join("shard.sqlite").exists() && !dest.join("shard.sqlite.drover-part").exists(),
        "nothing left behind"
    );
}

#[tokio::test]
async fn a_manifest_naming_another_tenant_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    let d = data(100, 1);
    // site-0002's backup stored under site-0001's unit.
    let unit_dir = root.join("site-0001/wiki/20220405T070000Z");
    std::fs::create_dir_all(&unit_dir).unwrap();
    std::fs::write(unit_dir.join("a.bin"), &d).unwrap();
    std::fs::write(
        unit_dir.join("manifest.json"),
        support::s3::manifest(
            "site-0001/wiki",
            Some("site-0002"),
            "2022-04-05T07:00:00Z",
            &[Obj {
                name: "a.bin",
                data: &d,
            }],
        ),
    )
    .unwrap();
    let store = LocalStore::new(root.clone());
    let dest = dir.path().join("out");
    let err = fetch(
        &store,
        "site-0001/wiki",
        Some("site-0001"),
        "2022-04-05T07:38:00Z",
        &dest,
        &FetchOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FetchError::Tenant { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("the manifest is for site site-0002, not site-0001"),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert!(
        !dest.join("a.bin").exists(),
        "no byte of the other tenant's data was written"
    );
    // A manifest for another unit is refused the same way.
    std::fs::write(
        unit_dir.join("manifest.json"),
        support::s3::manifest(
            "site-0009/wiki",
            Some("site-0001"),
            "2022-04-05T07:00:00Z",
            &[Obj {
                name: "a.bin",
                data: &d,
            }],
        ),
    )
    .unwrap();
    let err = fetch(
        &store,
        "site-0001/wiki",
        Some("site-0001"),
        "2022-04-05T07:38:00Z",
        &dest,
        &FetchOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("for unit 'site-0009/wiki'"),
        "{err}"
    );
}

/// A site's object that is a link to another site's object, with a manifest carrying that
/// object's size and SHA-256, must not restore the other site's data into this one.
#[tokio::test]
async fn a_local_object_linked_to_another_tenants_object_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    let secret = data(5_000, 7);
    let victim = root.join("site-0001/wiki/20220405T070000Z");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("pages.db"), &secret).unwrap();
    let objects = [Obj {
        name: "pages.db",
        data: &secret,
    }];
    let manifest = |unit: &str, site: &str| {
        support::s3::manifest(unit, Some(site), "2022-04-05T07:00:00Z", &objects)
    };
    std::fs::write(
        victim.join("manifest.json"),
        manifest("site-0001/wiki", "site-0001"),
    )
    .unwrap();
    let attacker = root.join("site-0002/wiki/20220405T070000Z");
    std::fs::create_dir_all(&attacker).unwrap();
    std::os::unix::fs::symlink(victim.join("pages.db"), attacker.join("pages.db")).unwrap();
    std::fs::write(
        attacker.join("manifest.json"),
        manifest("site-0002/wiki", "site-0002"),
    )
    .unwrap();
    let store = LocalStore::new(root.clone());
    let dest = dir.path().join("out");
    let pit = "2022-04-05T07:38:00Z";
    let opts = FetchOptions::default();
    let err = fetch(
        &store,
        "site-0002/wiki",
        Some("site-0002"),
        pit,
        &dest,
        &opts,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(!err.is_retryable(), "{err}");
    assert!(
        !dest.join("pages.db").exists(),
        "no byte of site-0001 was copied"
    );

    // A linked snapshot directory is refused the same way.
    std::fs::remove_dir_all(root.join("site-0002")).unwrap();
    std::fs::create_dir_all(root.join("site-0002/wiki")).unwrap();
    std::os::unix::fs::symlink(&victim, root.join("site-0002/wiki/20220405T070000Z")).unwrap();
    let got = store
        .read("site-0002/wiki", "20220405T070000Z", "pages.db", None)
        .await
        .unwrap_err();
    assert!(got.to_string().contains("symbolic link"), "{got}");
    // The untouched site still reads normally.
    let ok = fetch(
        &store,
        "site-0001/wiki",
        Some("site-0001"),
        pit,
        &dest,
        &opts,
    )
    .await;
    assert!(ok.is_ok(), "{ok:?}");
}

#[tokio::test]
async fn archives_with_escaping_entries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    let evil = tar_with_entry("../../escaped.txt");
    let good = tar_with_entry("files/ok.txt");
    for (unit, archive) in [("site-0001/wiki", &evil), ("site-0002/wiki", &good)] {
        let snap = root.join(unit).join("20220405T070000Z");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("attachments.tar"), archive).unwrap();
        let site = unit.split('/').next().unwrap();
        let manifest = serde_json::json!({ "format": "drover-backup/1", "unit": unit, "product": "wiki", "site": site, "snapshot_time": "2022-04-05T07:00:00Z",
            "objects": [{ "name": "attachments.tar", "size": archive.len(), "sha256": support::s3::sha256(archive), "unpack": "tar" }] });
        std::fs::write(snap.join("manifest.json"), manifest.to_string()).unwrap();
    }
    let store = LocalStore::new(root);
    let out = dir.path().join("deep/er/out");
    let err = fetch(
        &store,
        "site-0001/wiki",
        Some("site-0001"),
        "2022-04-05T07:38:00Z",
        &out,
        &FetchOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("is absolute or contains '..'"),
        "{err}"
    );
    assert!(
        !dir.path().join("deep/escaped.txt").exists() && !dir.path().join("escaped.txt").exists()
    );
    let ok_out = dir.path().join("ok");
    fetch(
        &store,
        "site-0002/wiki",
        Some("site-0002"),
        "2022-04-05T07:38:00Z",
        &ok_out,
        &FetchOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(ok_out.join("attachments.tar.d/files/ok.txt")).unwrap(),
        "hello"
    );
}

/// A tar archive with one file entry at `path` (written raw, so `..` can be expressed).
fn tar_with_entry(path: &str) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
    header.set_size(5);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(b"hello");
    out.resize(512 * 2, 0);
    out.extend_from_slice(&[0; 1024]);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_list_shows_what_a_third_party_client_uploaded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("s3")).await;
    let client = server.client(3);
    let (a, b) = (data(5000, 1), data(7000, 2));
    upload(
        &client,
        "prod",
        "wiki-3",
        None,
        "2022-04-05T07:00:00Z",
        &[Obj {
            name: "shard.sqlite",
            data: &a,
        }],
        true,
    )
    .await;
    upload(
        &client,
        "prod",
        "site-0042/wiki",
        Some("site-0042"),
        "2022-04-05T07:10:00Z",
        &[Obj {
            name: "attachments/x.png",
            data: &b,
        }],
        false,
    )
    .await;
    let env = server.env();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("drover"));
        cmd.args([
            "backups",
            "list",
            "--source",
            "s3://backups/prod?path-style=true",
            "--format",
            "json",
        ]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let snaps = doc["snapshots"].as_array().unwrap();
    let brief: Vec<(String, String, bool, u64)> = snaps
        .iter()
        .map(|s| {
            (
                s["unit"].as_str().unwrap().into(),
                s["snapshot"].as_str().unwrap().into(),
                s["complete"].as_bool().unwrap(),
                s["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        brief,
        [
            (
                "site-0042/wiki".into(),
                "20220405T071000Z".into(),
                false,
                7000
            ),
            ("wiki-3".into(), "20220405T070000Z".into(), true, 5000)
        ]
    );
}

#[tokio::test]
async fn a_missing_store_is_not_found_not_transient() {
    let store = LocalStore::new("/nonexistent/drover/backups".into());
    let err = store.list_snapshots(None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
}

/// An S3 set-up problem says what to set, for every S3 operation: no credentials, or an endpoint
/// that does not answer.
#[test]
fn s3_set_up_problems_say_what_to_set() {
    let run = |env: &[(&str, &str)]| {
        let mut cmd = support::drover();
        cmd.args(["backups", "list", "--source", "s3://b/p?path-style=true"])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent/drover-test")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/drover-test");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = run(&[]);
    assert!(
        stderr.contains("no AWS credentials were found: set AWS_ACCESS_KEY_ID"),
        "{stderr}"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let endpoint = format!("http://{closed}");
    let stderr = run(&[
        ("AWS_ACCESS_KEY_ID", "x"),
        ("AWS_SECRET_ACCESS_KEY", "y"),
        ("AWS_ENDPOINT_URL", &endpoint),
    ]);
    assert!(
        stderr.contains("cannot connect to the S3 endpoint: check AWS_ENDPOINT_URL"),
        "{stderr}"
    );
}
