//! Guards that look at the target platform before anything changes: the registry preflight of
//! `plan` and `run` (a live site, an ID of another kind, a site an earlier restore touched, a
//! soft-delete path for a site whose data is gone).

mod support;

use std::path::{Path, PathBuf};

use drover::platform::Platform;
use support::{drover, shipped_workflow};

/// A demo platform of `sites` sites with `deleted` of them permanently deleted. Leaves
/// `all.toml` (a request for every site, written before the incident: all active) and
/// `request.toml` (the deleted ones) in `dir`.
fn platform(dir: &Path, sites: u32, deleted: u32) -> Platform {
    let demo = |stage: &str, extra: &[&str]| {
        let out = drover()
            .args(["demo", stage, "--dir"])
            .arg(dir)
            .args(["--sites", &sites.to_string()])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    demo("init", &[]);
    std::fs::copy(dir.join("request.toml"), dir.join("all.toml")).unwrap();
    demo("incident", &["--deleted", &deleted.to_string()]);
    Platform::open(dir.join("platform")).unwrap()
}

/// `drover plan` of a request in `dir` with the shipped workflow.
fn plan(dir: &Path, request: &str, extra: &[&str]) -> std::process::Output {
    drover()
        .current_dir(dir)
        .arg("plan")
        .arg("-w")
        .arg(shipped_workflow())
        .args(["-r", request])
        .args(extra)
        .output()
        .unwrap()
}

fn refused(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nothing was executed"), "{stderr}");
    stderr
}

fn deleted_sites(p: &Platform) -> Vec<String> {
    let sites = p.sites().unwrap();
    sites
        .into_iter()
        .filter(|s| s.state.as_str() == "deleted")
        .map(|s| s.id)
        .collect()
}

#[test]
fn an_active_site_is_refused_by_plan_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path(), 8, 2);
    let deleted = deleted_sites(&p);
    assert_eq!(deleted.len(), 2);

    let stderr = refused(&plan(dir.path(), "all.toml", &[]));
    for site in p.sites().unwrap() {
        let line = format!("site {}: is active in the registry", site.id);
        assert_eq!(
            stderr.contains(&line),
            !deleted.contains(&site.id),
            "only the 6 live sites are refused, each by name:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("never restores over a live site"),
        "{stderr}"
    );

    let before = p.fingerprint_all().unwrap();
    let out = drover()
        .current_dir(dir.path())
        .arg("run")
        .arg("-w")
        .arg(shipped_workflow())
        .args(["-r", "all.toml", "--yes", "--state", "s.db"])
        .output()
        .unwrap();
    refused(&out);
    assert!(!dir.path().join("s.db").exists(), "no ledger was created");
    assert_eq!(p.fingerprint_all().unwrap(), before, "nothing changed");

    let ok = plan(dir.path(), "request.toml", &[]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.contains("registry       every site may be restored (2 deleted)"),
        "{stdout}"
    );
}

/// The first app (product instance) ID in the registry, with its site and product.
fn an_app(dir: &Path) -> (String, String, String) {
    let db = rusqlite::Connection::open(dir.join("platform/registry.db")).unwrap();
    db.query_row("SELECT id, site, product FROM apps ORDER BY id", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .unwrap()
}

fn request_for(dir: &Path, id: &str) -> PathBuf {
    let text = std::fs::read_to_string(dir.join("request.toml")).unwrap();
    let head = &text[..text.find("[[sites]]").unwrap()];
    let path = dir.join("wrong.toml");
    std::fs::write(
        &path,
        format!("{head}[[sites]]\nid = \"{id}\"\ntier = \"free\"\nproducts = [\"identity\"]\nattrs = {{ state = \"soft-deleted\" }}\n"),
    )
    .unwrap();
    path
}

#[test]
fn an_id_of_another_kind_is_refused_with_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path(), 8, 2);

    // The 2022 script was handed app IDs: drover says which site each belongs to.
    let (app, site, product) = an_app(dir.path());
    request_for(dir.path(), &app);
    let stderr = refused(&plan(dir.path(), "wrong.toml", &[]));
    assert!(
        stderr.contains(&format!(
            "'{app}' is the {product} instance (app) of {site} in the registry"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("fix: list {site} instead")),
        "{stderr}"
    );

    let customer = p.site(&site).unwrap().customer;
    request_for(dir.path(), &customer);
    let stderr = refused(&plan(dir.path(), "wrong.toml", &[]));
    assert!(
        stderr.contains(&format!("'{customer}' is a customer in the registry")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&site),
        "the customer's sites are listed: {stderr}"
    );

    // Shaped like a site ID, but no such site.
    request_for(dir.path(), "site-9999");
    let stderr = refused(&plan(dir.path(), "wrong.toml", &[]));
    assert!(
        stderr.contains("site site-9999: is not in the registry"),
        "{stderr}"
    );
}

#[test]
fn a_site_an_earlier_restore_touched_needs_replace_existing() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path(), 6, 2);
    let deleted = deleted_sites(&p);
    p.quarantine(
        &deleted[0],
        "validation failed in an earlier run",
        chrono::Utc::now(),
    )
    .unwrap();

    let stderr = refused(&plan(dir.path(), "request.toml", &[]));
    assert!(
        stderr.contains(&format!(
            "site {}: is quarantined in the registry",
            deleted[0]
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--replace-existing"), "{stderr}");
    assert!(!stderr.contains(&deleted[1]), "{stderr}");

    let ok = plan(dir.path(), "request.toml", &["--replace-existing"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn the_soft_delete_path_is_refused_for_a_site_whose_data_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path(), 6, 2);
    let site = deleted_sites(&p).remove(0);
    let path = dir.path().join("request.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let at = text.find(&format!("id = \"{site}\"")).unwrap();
    let (head, tail) = text.split_at(at);
    let tail = tail.replacen("state = \"deleted\"", "state = \"soft-deleted\"", 1);
    std::fs::write(&path, format!("{head}{tail}")).unwrap();

    let stderr = refused(&plan(dir.path(), "request.toml", &[]));
    assert!(
        stderr.contains(&format!(
            "site {site}: the request says state = \"soft-deleted\""
        )),
        "{stderr}"
    );
    assert!(stderr.contains("but the registry says deleted"), "{stderr}");
}
