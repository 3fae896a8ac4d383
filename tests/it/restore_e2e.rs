//! End to end on the reference platform: 200 sites built, backed up twice, 180 permanently and 10
//! softly deleted, then restored by `drover run` with workflows/saas-platform.toml. Every restored
//! site must equal its pre-incident fingerprint, neighbours stay untouched, each site is
//! reactivated exactly once and its contacts are told.

use crate::support;

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use drover::generate::{self, GenerateOptions};
use drover::platform::{DeleteMode, Platform};
use support::{drover, write};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn two_hundred_deleted_sites_come_back_identical() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let opts = GenerateOptions {
        sites: 200,
        seed: 5,
        ..Default::default()
    };
    let platform = Platform::build(d.join("platform"), &opts).unwrap();
    let before = platform.fingerprint_all().unwrap();
    platform
        .backup(d.join("backups"), t("2022-04-05T06:00:00Z"))
        .unwrap();
    platform
        .backup(d.join("backups"), t("2022-04-05T07:30:00Z"))
        .unwrap();

    let ids: Vec<String> = before.keys().cloned().collect();
    let (hard, rest) = ids.split_at(180);
    let (soft, neighbours) = rest.split_at(10);
    platform
        .incident(hard, DeleteMode::Permanent, t("2022-04-05T07:38:00Z"))
        .unwrap();
    platform
        .incident(soft, DeleteMode::Soft, t("2022-04-05T07:38:00Z"))
        .unwrap();
    let deleted: Vec<String> = hard.iter().chain(soft).cloned().collect();
    let after_incident = platform.fingerprint_all().unwrap();
    assert!(
        hard.iter().all(|s| after_incident[s] != before[s]),
        "permanent deletion removed data"
    );

    let sizes = generate::sizes(&opts);
    let request = platform
        .restore_request(
            "incident-2022-04-05",
            &deleted,
            &sizes,
            &d.join("backups").display().to_string(),
            t("2022-04-05T07:38:00Z"),
        )
        .unwrap();
    write(d, "request.toml", request);
    let wf = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/saas-platform.toml");
    let out = drover()
        .current_dir(d)
        .args(["run", "--yes", "--max-sites", "1000"])
        .arg("-w")
        .arg(&wf)
        .args(["-r", "request.toml", "--state", "s.db"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let after = platform.fingerprint_all().unwrap();
    for site in &ids {
        assert_eq!(
            after[site], before[site],
            "{site} equals its pre-incident fingerprint"
        );
    }
    let mut reactivations: HashMap<String, usize> = HashMap::new();
    for e in platform.events(Some("reactivated")).unwrap() {
        *reactivations.entry(e.site).or_default() += 1;
    }
    for site in &deleted {
        assert_eq!(
            reactivations.get(site),
            Some(&1),
            "{site} reactivated exactly once"
        );
    }
    for site in neighbours {
        assert_eq!(
            reactivations.get(site),
            None,
            "neighbour {site} was never touched"
        );
    }
    let told: std::collections::HashSet<String> = platform
        .outbox()
        .unwrap()
        .into_iter()
        .map(|m| m.site)
        .collect();
    assert!(
        deleted.iter().all(|s| told.contains(s)),
        "every restored site's contacts were notified"
    );
    // A resume after success changes nothing: no second reactivation, no second message.
    drover()
        .current_dir(d)
        .args(["resume", "--state", "s.db"])
        .assert()
        .code(0);
    assert_eq!(
        platform.events(Some("reactivated")).unwrap().len(),
        deleted.len()
    );
    assert_eq!(platform.outbox().unwrap().len(), deleted.len());
}

#[test]
fn the_demo_restores_and_verifies_every_site() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("demo");
    let out = drover()
        .args(["demo", "--sites", "40", "--soft-deleted", "25%", "--dir"])
        .arg(&d)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("40 of 40 deleted sites equal their pre-incident fingerprint"),
        "{stderr}"
    );
    let out = drover()
        .args(["demo", "verify", "--format", "json", "--dir"])
        .arg(&d)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            doc["all_equal"].as_bool(),
            doc["neighbours_untouched"].as_bool(),
            doc["one_reactivation_each"].as_bool()
        ),
        (Some(true), Some(true), Some(true))
    );
    let request = std::fs::read_to_string(d.join("request.toml")).unwrap();
    assert_eq!(
        request.matches("state = \"soft-deleted\"").count(),
        10,
        "a quarter of the sites take the soft path"
    );
}

/// `drover demo <args> --backups <the server's bucket>` with the server's AWS environment, off
/// the async threads (the server runs on them).
async fn demo_on_s3(server: &support::s3::Server, args: &[&str]) -> std::process::Output {
    let env = server.env();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = drover();
        cmd.arg("demo")
            .args(&args)
            .args(["--backups", "s3://backups/platform?path-style=true"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_with_backups_in_s3_restores_from_s3() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::s3::Server::start(&dir.path().join("s3")).await;
    let d = dir.path().join("demo");
    let out = demo_on_s3(&server, &["--sites", "20", "--dir", d.to_str().unwrap()]).await;
    let stderr = support::exited(&out, 0);
    assert!(
        stderr.contains("20 of 20 deleted sites equal their pre-incident fingerprint"),
        "{stderr}"
    );
    assert!(!d.join("backups").exists(), "no local copy to restore from");
    // The AWS secret from the environment is in no output and no file drover wrote.
    let secret = support::s3::SECRET_KEY.as_bytes();
    let contains = |hay: &[u8]| hay.windows(secret.len()).any(|w| w == secret);
    assert!(!contains(&out.stdout) && !contains(&out.stderr));
    for file in support::files_under(&d) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(!contains(&bytes), "{} holds the AWS secret", file.display());
    }
    let request = std::fs::read_to_string(d.join("request.toml")).unwrap();
    assert!(
        request.contains("source = \"s3://backups/platform?path-style=true\""),
        "{request}"
    );
    let stored = dir.path().join("s3/backups/platform");
    assert!(
        stored.join("site-0001/contacts").is_dir(),
        "the snapshots are in the bucket"
    );

    // A second demo may not write among the first one's backups.
    let again = dir.path().join("again");
    let out = demo_on_s3(
        &server,
        &["init", "--sites", "5", "--dir", again.to_str().unwrap()],
    )
    .await;
    let stderr = support::exited(&out, 2);
    assert!(stderr.contains("already holds"), "{stderr}");
    assert!(!again.join("platform").exists(), "nothing was built");
}
