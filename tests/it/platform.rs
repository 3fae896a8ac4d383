//! The reference platform on real SQLite files: build, back up, delete, restore from the backup
//! files, and check that restored sites are bit-for-bit what they were and neighbours untouched.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, TimeZone, Utc};
use drover::backup::manifest::Manifest;
use drover::generate::GenerateOptions;
use drover::platform::{DeleteMode, Platform, PlatformError, SiteRecord, SiteState};
use sha2::{Digest, Sha256};

const SNAPSHOT: &str = "20220405T070000Z";

fn backup_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2022, 4, 5, 7, 0, 0).unwrap()
}

fn incident_time() -> DateTime<Utc> {
    backup_time() + Duration::minutes(30)
}

/// A platform of `sites` sites, backed up into `<tmp>/store`.
fn setup(tmp: &Path, sites: usize) -> Platform {
    let opts = GenerateOptions {
        sites,
        sites_per_shard: 10,
        ..GenerateOptions::default()
    };
    let platform = Platform::build(tmp.join("platform"), &opts).unwrap();
    platform.backup(tmp.join("store"), backup_time()).unwrap();
    platform
}

fn shard_snapshot(store: &Path, site: &SiteRecord, product: &str) -> PathBuf {
    store
        .join(&site.shards[product])
        .join(SNAPSHOT)
        .join("shard.sqlite")
}

/// Permanently deletes the first site that matches, and returns it as it was.
fn delete_one(platform: &Platform, matches: impl Fn(&SiteRecord) -> bool) -> SiteRecord {
    let site = platform
        .sites()
        .unwrap()
        .into_iter()
        .find(|s| matches(s))
        .unwrap();
    platform
        .incident(&[&site.id], DeleteMode::Permanent, incident_time())
        .unwrap();
    site
}

/// Restores one site from the backup files, as the restore steps would, after fetching.
fn restore_site(platform: &Platform, store: &Path, site: &SiteRecord, scratch: &Path) {
    let contacts = store.join(&site.id).join("contacts").join(SNAPSHOT);
    platform
        .restore_contacts(&site.id, contacts.join("contacts.json"))
        .unwrap();
    for product in &site.products {
        let snapshot = shard_snapshot(store, site, product);
        platform
            .restore_tenant(&site.id, product, &snapshot)
            .unwrap();
        let tar = store
            .join(&site.id)
            .join(product)
            .join(SNAPSHOT)
            .join("attachments.tar");
        let unpacked = scratch.join(&site.id).join(product);
        tar::Archive::new(fs::File::open(&tar).unwrap())
            .unpack(&unpacked)
            .unwrap();
        platform
            .restore_attachments(&site.id, product, &unpacked)
            .unwrap();
        platform.rebuild_index(&site.id, product).unwrap();
        platform
            .validate(&site.id, product, &snapshot, incident_time())
            .unwrap();
    }
}

#[test]
fn deleted_sites_restore_exactly_and_neighbours_stay_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let platform = setup(tmp.path(), 50);
    let store = tmp.path().join("store");
    let before = platform.fingerprint_all().unwrap();
    assert_eq!(before.len(), 50);

    let victims: Vec<SiteRecord> = platform.sites().unwrap().into_iter().step_by(5).collect();
    assert_eq!(victims.len(), 10);
    assert!(
        victims
            .iter()
            .any(|s| s.products.iter().any(|p| p == "service-desk"))
    );
    let ids: Vec<&str> = victims.iter().map(|s| s.id.as_str()).collect();
    let report = platform
        .incident(&ids, DeleteMode::Permanent, incident_time())
        .unwrap();
    assert!(report.rows > 0);

    let after = platform.fingerprint_all().unwrap();
    for (id, fp) in &before {
        if ids.contains(&id.as_str()) {
            assert_ne!(&after[id], fp, "{id} was deleted");
            assert!(
                platform.contacts(id).unwrap().is_empty(),
                "{id}: contacts deleted too"
            );
            assert_eq!(platform.site(id).unwrap().state, SiteState::Deleted);
        } else {
            assert_eq!(&after[id], fp, "neighbour {id} changed by the incident");
        }
    }

    let scratch = tmp.path().join("fetched");
    for round in 0..2 {
        for site in &victims {
            restore_site(&platform, &store, site, &scratch.join(round.to_string()));
        }
    }
    for site in &victims {
        assert_eq!(platform.site(&site.id).unwrap().state, SiteState::Validated);
        let again = platform.restore_tenant(
            &site.id,
            &site.products[0],
            shard_snapshot(&store, site, &site.products[0]),
        );
        assert_eq!(
            again.unwrap().inserted,
            0,
            "{}: a repeated restore copies nothing",
            site.id
        );
        platform
            .validate(
                &site.id,
                &site.products[0],
                shard_snapshot(&store, site, &site.products[0]),
                incident_time(),
            )
            .unwrap();
    }
    for _ in 0..2 {
        for site in &victims {
            platform
                .reactivate(&site.id, incident_time() + Duration::hours(1))
                .unwrap();
        }
    }

    assert_eq!(
        platform.fingerprint_all().unwrap(),
        before,
        "restored sites equal their pre-incident selves; neighbours unchanged"
    );
    let reactivated = platform.events(Some("reactivated")).unwrap();
    let mut per_site: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &reactivated {
        *per_site.entry(e.site.as_str()).or_default() += 1;
    }
    assert_eq!(per_site.keys().copied().collect::<Vec<_>>(), ids);
    assert!(per_site.values().all(|n| *n == 1), "{per_site:?}");
    for site in &victims {
        let record = platform.site(&site.id).unwrap();
        assert_eq!(record.state, SiteState::ActiveAgain);
        assert_eq!(
            record.reactivated_at,
            Some((incident_time() + Duration::hours(1)).timestamp())
        );
    }
}

#[test]
fn backups_follow_the_layout_and_manifests_match_their_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let platform = setup(tmp.path(), 12);
    let store = tmp.path().join("store");
    let site = &platform.sites().unwrap()[0];
    // Restoring straight from the store must leave its objects as the manifests describe them.
    platform
        .incident(&[&site.id], DeleteMode::Permanent, incident_time())
        .unwrap();
    platform
        .restore_tenant(
            &site.id,
            "identity",
            shard_snapshot(&store, site, "identity"),
        )
        .unwrap();
    let units = [
        site.shards["identity"].clone(),
        format!("{}/identity", site.id),
        format!("{}/contacts", site.id),
    ];
    for unit in units {
        let dir = store.join(&unit).join(SNAPSHOT);
        let manifest = Manifest::parse(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest.unit, unit);
        assert_eq!(manifest.snapshot_time, backup_time());
        if unit.starts_with("site-") {
            assert_eq!(manifest.site.as_deref(), Some(site.id.as_str()));
        } else {
            assert!(manifest.sites.contains(&site.id), "{:?}", manifest.sites);
        }
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut expected: Vec<String> = manifest.objects.iter().map(|o| o.name.clone()).collect();
        expected.push("manifest.json".into());
        expected.sort();
        assert_eq!(names, expected, "nothing but the objects and the manifest");
        for object in &manifest.objects {
            let bytes = fs::read(dir.join(&object.name)).unwrap();
            assert_eq!(bytes.len() as u64, object.size);
            assert_eq!(hex::encode(Sha256::digest(&bytes)), object.sha256);
        }
    }
    let again = platform.backup(&store, backup_time());
    assert!(
        matches!(again, Err(PlatformError::SnapshotExists { .. })),
        "{again:?}"
    );
}

#[test]
fn soft_delete_keeps_the_data_and_reactivates_once() {
    let tmp = tempfile::tempdir().unwrap();
    let platform = setup(tmp.path(), 10);
    let before = platform.fingerprint_all().unwrap();
    let ids = ["site-0002", "site-0007"];
    platform
        .incident(&ids, DeleteMode::Soft, incident_time())
        .unwrap();

    assert_eq!(platform.fingerprint_all().unwrap(), before);
    let record = platform.site("site-0002").unwrap();
    assert_eq!(record.state, SiteState::SoftDeleted);
    assert_eq!(
        record.retained_until,
        Some((incident_time() + Duration::days(14)).timestamp())
    );
    assert!(platform.reactivate("site-0002", incident_time()).unwrap());
    assert!(!platform.reactivate("site-0002", incident_time()).unwrap());
    assert_eq!(platform.events(Some("reactivated")).unwrap().len(), 1);
}

#[test]
fn validation_catches_a_snapshot_that_differs_from_the_restored_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let platform = setup(tmp.path(), 12);
    let store = tmp.path().join("store");
    let site = delete_one(&platform, |s| s.shards.contains_key("issues"));
    let snapshot = shard_snapshot(&store, &site, "issues");
    platform
        .restore_tenant(&site.id, "issues", &snapshot)
        .unwrap();
    platform.rebuild_index(&site.id, "issues").unwrap();

    let tampered = tmp.path().join("tampered.sqlite");
    fs::copy(&snapshot, &tampered).unwrap();
    let conn = rusqlite::Connection::open(&tampered).unwrap();
    conn.execute(
        "UPDATE issues SET title = 'tampered' WHERE site = ?1 AND id = 1",
        [&site.id],
    )
    .unwrap();
    let reason = validation_failure(&platform, &site.id, &tampered);
    assert!(reason.contains("content checksum"), "{reason}");

    conn.execute(
        "DELETE FROM comments WHERE site = ?1 AND id = 1",
        [&site.id],
    )
    .unwrap();
    let reason = validation_failure(&platform, &site.id, &tampered);
    assert!(
        reason.contains("comments:") && reason.contains("rows live"),
        "{reason}"
    );

    let shard = platform.shard_path(&site.shards["issues"]);
    let live = rusqlite::Connection::open(shard).unwrap();
    live.execute(
        "DELETE FROM fts WHERE site = ?1 AND doc = 'issues/1'",
        [&site.id],
    )
    .unwrap();
    let reason = validation_failure(&platform, &site.id, &snapshot);
    assert!(reason.contains("full-text index"), "{reason}");

    platform.rebuild_index(&site.id, "issues").unwrap();
    platform
        .validate(&site.id, "issues", &snapshot, incident_time())
        .unwrap();
}

fn validation_failure(platform: &Platform, site: &str, snapshot: &Path) -> String {
    match platform.validate(site, "issues", snapshot, incident_time()) {
        Err(PlatformError::Invalid(f)) => {
            assert!(!PlatformError::Invalid(f.clone()).is_retryable());
            f.reason
        }
        other => panic!("expected a validation failure, got {other:?}"),
    }
}

#[test]
fn service_desk_validation_needs_the_sites_issues() {
    let tmp = tempfile::tempdir().unwrap();
    let platform = setup(tmp.path(), 30);
    let store = tmp.path().join("store");
    let site = platform
        .sites()
        .unwrap()
        .into_iter()
        .find(|s| s.shards.contains_key("service-desk"))
        .unwrap();
    platform
        .incident(&[&site.id], DeleteMode::Permanent, incident_time())
        .unwrap();
    let snapshot = shard_snapshot(&store, &site, "service-desk");
    platform
        .restore_tenant(&site.id, "service-desk", &snapshot)
        .unwrap();
    platform.rebuild_index(&site.id, "service-desk").unwrap();
    let err = platform
        .validate(&site.id, "service-desk", &snapshot, incident_time())
        .unwrap_err();
    assert!(
        err.to_string().contains("reference issues missing"),
        "{err}"
    );

    platform
        .restore_tenant(&site.id, "issues", shard_snapshot(&store, &site, "issues"))
        .unwrap();
    platform
        .validate(&site.id, "service-desk", &snapshot, incident_time())
        .unwrap();
}

#[test]
fn restore_refuses_a_live_site_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let platform = setup(tmp.path(), 10);
    let store = tmp.path().join("store");
    let before = platform.fingerprint_all().unwrap();
    let site = platform.site("site-0003").unwrap();
    let err = platform
        .restore_tenant(
            &site.id,
            "identity",
            shard_snapshot(&store, &site, "identity"),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            PlatformError::SiteActive {
                state: SiteState::Active,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("site-0003"), "{err}");
    assert!(platform.rebuild_index(&site.id, "identity").is_err());
    assert!(
        platform
            .quarantine(&site.id, "test", incident_time())
            .is_err()
    );
    assert_eq!(platform.fingerprint_all().unwrap(), before);
    assert_eq!(platform.site("site-0003").unwrap().state, SiteState::Active);
}

#[test]
fn building_is_deterministic_and_notifications_are_sent_once() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = GenerateOptions {
        sites: 8,
        ..GenerateOptions::default()
    };
    let a = Platform::build(tmp.path().join("a"), &opts).unwrap();
    let b = Platform::build(tmp.path().join("b"), &opts).unwrap();
    assert_eq!(a.fingerprint_all().unwrap(), b.fingerprint_all().unwrap());
    assert!(matches!(
        Platform::build(tmp.path().join("a"), &opts),
        Err(PlatformError::AlreadyBuilt { .. })
    ));

    let message = serde_json::json!({"template": "restored"});
    assert!(
        a.notify(
            "site-0001",
            "run-1/site-0001/notify",
            &message,
            incident_time()
        )
        .unwrap()
    );
    assert!(
        !a.notify(
            "site-0001",
            "run-1/site-0001/notify",
            &message,
            incident_time()
        )
        .unwrap()
    );
    assert_eq!(a.outbox().unwrap().len(), 1);
    assert!(matches!(
        a.notify("site-9999", "k", &message, incident_time()),
        Err(PlatformError::UnknownSite { .. })
    ));
}

#[test]
fn a_restore_that_would_change_another_sites_rows_is_rolled_back() {
    let tmp = tempfile::tempdir().unwrap();
    let platform = setup(tmp.path(), 12);
    let store = tmp.path().join("store");
    let site = delete_one(&platform, |s| s.shards.contains_key("issues"));
    let before = platform.fingerprint_all().unwrap();
    // A faulty live shard: every insert also rewrites the other tenants' issues.
    let live = rusqlite::Connection::open(platform.shard_path(&site.shards["issues"])).unwrap();
    live.execute_batch(
        "CREATE TRIGGER meddle AFTER INSERT ON issues BEGIN
             UPDATE issues SET title = title || '!' WHERE site <> NEW.site;
         END;",
    )
    .unwrap();

    let err = platform
        .restore_tenant(&site.id, "issues", shard_snapshot(&store, &site, "issues"))
        .unwrap_err();
    assert!(
        err.to_string().contains("changed other sites' rows")
            && err.to_string().contains("rolled back"),
        "{err}"
    );
    assert_eq!(
        platform.fingerprint_all().unwrap(),
        before,
        "neither the neighbours nor the site changed"
    );
}

#[test]
fn a_quarantine_holds_until_every_product_validated_again() {
    let tmp = tempfile::tempdir().unwrap();
    let platform = setup(tmp.path(), 12);
    let store = tmp.path().join("store");
    let site = delete_one(&platform, |s| s.products.len() >= 2);
    restore_site(&platform, &store, &site, &tmp.path().join("scratch"));
    assert_eq!(platform.site(&site.id).unwrap().state, SiteState::Validated);

    // A later look finds one product's backup bad: the earlier validations stop counting.
    platform
        .quarantine(
            &site.id,
            "attachments backup failed verification",
            incident_time(),
        )
        .unwrap();
    let first = &site.products[0];
    let snapshot = shard_snapshot(&store, &site, first);
    platform.restore_tenant(&site.id, first, &snapshot).unwrap();
    platform.rebuild_index(&site.id, first).unwrap();
    platform
        .validate(&site.id, first, &snapshot, incident_time())
        .unwrap();
    assert_eq!(
        platform.site(&site.id).unwrap().state,
        SiteState::Quarantined,
        "one product validated again is not enough"
    );
    assert!(platform.reactivate(&site.id, incident_time()).is_err());
}
