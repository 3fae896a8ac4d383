//! Guards that involve the target platform: the registry preflight of `plan` and `run` (a live
//! site, an ID of another kind, a site an earlier restore touched, a soft-delete path for a site
//! whose data is gone), and drills, which must leave production exactly as it was.

use crate::support;

use std::path::{Path, PathBuf};

use drover::platform::Platform;
use support::{drover, refused, shipped_workflow};

/// A demo platform of `sites` sites with `deleted` of them permanently deleted. Leaves
/// `all.toml` (a request for every site, written before the incident: all active) and
/// `request.toml` (the deleted ones) in `dir`.
fn platform(dir: &Path, sites: u32, deleted: u32) -> Platform {
    support::demo(dir, "init", sites, &[]);
    std::fs::copy(dir.join("request.toml"), dir.join("all.toml")).unwrap();
    support::demo(dir, "incident", sites, &["--deleted", &deleted.to_string()]);
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
    // One line for the six alike problems, naming every live site.
    assert!(
        stderr.contains("6 sites: site <site>: is active in the registry"),
        "{stderr}"
    );
    for site in p.sites().unwrap() {
        assert_eq!(
            stderr.contains(&site.id),
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
    support::exited(&ok, 0);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        stdout.contains("registry       every site may be restored (2 deleted)"),
        "{stdout}"
    );
}

#[test]
fn registry_and_backup_problems_are_listed_together() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path(), 6, 2);
    let gone = deleted_sites(&p).remove(0);
    std::fs::remove_dir_all(dir.path().join("backups").join(&gone).join("contacts")).unwrap();

    let stderr = refused(&plan(dir.path(), "all.toml", &[]));
    assert!(stderr.contains(": is active in the registry"), "{stderr}");
    assert!(
        stderr.contains(&format!("unit {gone}/contacts")),
        "the missing backup is reported in the same run: {stderr}"
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
    support::exited(&ok, 0);
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

/// SHA-256 of every file under `dir` except SQLite's shared-memory index (`-shm`) and empty
/// write-ahead logs, which any reader (this test's own included) may create or touch.
fn file_digests(dir: &Path) -> std::collections::BTreeMap<PathBuf, String> {
    use sha2::Digest;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.to_string_lossy().ends_with("-shm") {
                let bytes = std::fs::read(&path).unwrap();
                if bytes.is_empty() && path.to_string_lossy().ends_with("-wal") {
                    continue;
                }
                out.insert(path, hex::encode(sha2::Sha256::digest(bytes)));
            }
        }
    }
    out
}

fn drill(dir: &Path, target_rto: &str, state: &str) -> std::process::Output {
    drover()
        .current_dir(dir)
        .arg("drill")
        .arg("-w")
        .arg(shipped_workflow())
        .args([
            "-r",
            "all.toml",
            "--target-rto",
            target_rto,
            "--state",
            state,
        ])
        .args(["--work-dir", "work"])
        .env_remove("USER")
        .env_remove("LOGNAME")
        .output()
        .unwrap()
}

#[test]
fn a_drill_leaves_production_byte_identical_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    // Production: 8 sites, 2 of them deleted; the drill covers all 8 (6 live).
    let p = platform(dir.path(), 8, 2);
    std::fs::create_dir(dir.path().join("work")).unwrap();
    let fingerprints = p.fingerprint_all().unwrap();
    let (sites, events) = (p.sites().unwrap(), p.events(None).unwrap());
    let files = file_digests(p.dir());

    let out = drill(dir.path(), "1h", "drill-1.db");
    let stderr = support::exited(&out, 0);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "PASS",
        "{stderr}"
    );
    assert!(stderr.contains("8 of 8 sites restored"), "{stderr}");

    assert_eq!(p.fingerprint_all().unwrap(), fingerprints);
    assert_eq!(p.sites().unwrap(), sites, "no state changed in production");
    assert_eq!(p.events(None).unwrap(), events, "no event in production");
    assert_eq!(file_digests(p.dir()), files, "production is byte-identical");
    let left: Vec<_> = std::fs::read_dir(dir.path().join("work"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "the copy is gone: {left:?}");
    assert!(
        !dir.path().join("drill-1.db.staging").exists(),
        "staging is gone"
    );

    let audit = drover()
        .current_dir(dir.path())
        .args(["audit", "--state", "drill-1.db", "--format", "json"])
        .output()
        .unwrap();
    let audit: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(audit["sessions"][0]["mode"], "drill");
    let user = audit["sessions"][0]["user"].as_str().unwrap();
    assert!(
        !user.is_empty() && user != "unknown-user",
        "the OS account is recorded, even without USER in the environment: {user}"
    );

    // A drill that misses its target fails, and both stay in the history.
    let out = drill(dir.path(), "1ms", "drill-2.db");
    assert_eq!(out.status.code(), Some(3));
    let verdict = String::from_utf8_lossy(&out.stdout);
    assert!(verdict.starts_with("FAIL: the batch took"), "{verdict}");
    let history = drover()
        .current_dir(dir.path())
        .args(["drills", "--format", "json"])
        .output()
        .unwrap();
    let history: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    let passes: Vec<_> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["sites"].as_u64(),
                d["restored"].as_u64(),
                d["pass"].as_bool(),
            )
        })
        .collect();
    assert_eq!(
        passes,
        [
            (Some(8), Some(8), Some(true)),
            (Some(8), Some(8), Some(false))
        ]
    );
    assert_eq!(file_digests(p.dir()), files, "still byte-identical");
}

/// A drill into a PostgreSQL ledger: production untouched, the copy and staging gone, the
/// ledger kept in the database for audit, and the history naming it; a drill into a ledger
/// that exists is refused before anything runs.
#[test]
fn a_drill_keeps_its_ledger_in_postgres() {
    let url = support::postgres::database("drill");
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path(), 4, 1);
    std::fs::create_dir(dir.path().join("work")).unwrap();
    let files = file_digests(p.dir());
    let state = format!("{url}?ledger=drill-1");

    let out = drill(dir.path(), "1h", &state);
    let stderr = support::exited(&out, 0);
    assert!(stderr.contains("4 of 4 sites restored"), "{stderr}");
    assert_eq!(file_digests(p.dir()), files, "production is byte-identical");
    assert!(
        !dir.path().join("drill-1.staging").exists(),
        "staging is gone"
    );
    let audit = drover()
        .args(["audit", "--state", &state, "--format", "json"])
        .output()
        .unwrap();
    let audit: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(audit["sessions"][0]["mode"], "drill", "{audit}");
    let history = std::fs::read_to_string(dir.path().join("drills.jsonl")).unwrap();
    assert!(history.contains(&state), "{history}");

    let out = drill(dir.path(), "1h", &state);
    let said = support::exited(&out, 2);
    assert!(said.contains("already exists"), "{said}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("drills.jsonl")).unwrap(),
        history,
        "nothing recorded"
    );
}

#[test]
fn a_drill_never_reaches_outside_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    platform(dir.path(), 4, 0);
    std::fs::create_dir(dir.path().join("work")).unwrap();
    let shipped = std::fs::read_to_string(shipped_workflow()).unwrap();
    // Nothing listens on port 1: a webhook that were called would fail the drill.
    let hooked = shipped
        .replace(
            "params = { platform = \"{target}\", point_in_time = \"{point_in_time}\" }",
            "params = { platform = \"{target}\", point_in_time = \"{point_in_time}\", webhook = \"http://127.0.0.1:1/hook\" }",
        )
        .replace(
            "retry = { attempts = 10, initial_backoff = \"5s\", max_backoff = \"5m\" }",
            "retry = { attempts = 1 }",
        );
    assert!(hooked.contains("webhook"), "the fixture edit applied");
    let drill_with = |workflow: &str| {
        std::fs::write(dir.path().join("wf.toml"), workflow).unwrap();
        drover()
            .current_dir(dir.path())
            .args([
                "drill",
                "-w",
                "wf.toml",
                "-r",
                "all.toml",
                "--target-rto",
                "1h",
            ])
            .args([
                "--state",
                &format!("d{}.db", workflow.len()),
                "--work-dir",
                "work",
            ])
            .output()
            .unwrap()
    };
    let out = drill_with(&hooked);
    let stderr = support::exited(&out, 0);
    assert!(stderr.contains("4 steps lose their webhook"), "{stderr}");

    let with_exec = format!(
        "{shipped}\n[steps.page-oncall]\nscope = \"site\"\nkind = \"exec\"\nafter = [\"notify\"]\nparams = {{ command = \"true\" }}\nestimate = \"1s\"\n"
    );
    let stderr = support::exited(&drill_with(&with_exec), 2);
    assert!(
        stderr.contains("a drill cannot run page-oncall (exec)"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path().join("work"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "nothing was copied: {left:?}");
}

/// In an incident of many sites, a few without backups (or listed by mistake) must not hold
/// back the rest: `--exclude-refused` leaves exactly the refused sites out, says which and why,
/// writes them into the reviewed plan and records them in the ledger; the others are restored.
#[test]
fn exclude_refused_restores_the_other_sites_and_records_the_ones_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path(), 8, 4);
    let deleted = deleted_sites(&p);
    let no_backup = &deleted[0];
    std::fs::remove_dir_all(dir.path().join("backups").join(no_backup).join("contacts")).unwrap();
    // A live site listed by mistake beside the deleted ones.
    let live = p
        .sites()
        .unwrap()
        .into_iter()
        .find(|s| s.state.as_str() == "active")
        .unwrap()
        .id;
    let text = std::fs::read_to_string(dir.path().join("all.toml")).unwrap();
    let head = &text[..text.find("[[sites]]").unwrap()];
    let blocks: Vec<&str> = text[head.len()..].split("[[sites]]").skip(1).collect();
    let wanted = |b: &&&str| {
        deleted.iter().any(|d| b.contains(&format!("id = \"{d}\"")))
            || b.contains(&format!("id = \"{live}\""))
    };
    let sites: String = blocks
        .iter()
        .filter(wanted)
        .map(|b| {
            format!(
                "[[sites]]{}",
                b.replace("state = \"active\"", "state = \"deleted\"")
            )
        })
        .collect();
    std::fs::write(dir.path().join("mixed.toml"), format!("{head}{sites}")).unwrap();

    // Without the flag: refused, and the way on is named.
    let stderr = refused(&plan(dir.path(), "mixed.toml", &[]));
    assert!(
        stderr.contains(&format!("site {live}: is active")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("unit {no_backup}/contacts")),
        "{stderr}"
    );
    assert!(
        stderr.contains("each problem concerns only the sites it names (2 in all)")
            && stderr.contains("--exclude-refused"),
        "{stderr}"
    );

    // With it: the plan is of the three other sites, and the two are listed with their reasons.
    let out = plan(
        dir.path(),
        "mixed.toml",
        &[
            "--exclude-refused",
            "--out",
            "plan.json",
            "--format",
            "json",
        ],
    );
    let stderr = support::exited(&out, 0);
    assert!(
        stderr.contains("excluded: 2 sites refused by preflight"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("  {live}: site {live}: is active")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("  {no_backup}: unit {no_backup}/contacts")),
        "{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["sites"], 3, "{summary}");
    let excluded = summary["excluded"].as_object().unwrap();
    assert_eq!(
        excluded.keys().collect::<Vec<_>>(),
        {
            let mut k = vec![live.clone(), no_backup.clone()];
            k.sort();
            k
        }
        .iter()
        .collect::<Vec<_>>()
    );
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("plan.json")).unwrap()).unwrap();
    assert_eq!(file["inputs"]["excluded"], summary["excluded"]);
    let hash = file["hash"].as_str().unwrap().to_owned();

    // Running the reviewed plan restores the three others and leaves the two as they were.
    let before = p.fingerprint_all().unwrap();
    let out = drover()
        .current_dir(dir.path())
        .args(["run", "--plan", "plan.json", "--confirm", &hash[..12]])
        .args(["--state", "s.db"])
        .output()
        .unwrap();
    support::exited(&out, 0);
    for site in p.sites().unwrap() {
        let expected = if deleted.contains(&site.id) && &site.id != no_backup {
            "active-again"
        } else if &site.id == no_backup {
            "deleted"
        } else {
            "active"
        };
        assert_eq!(site.state.as_str(), expected, "{}", site.id);
    }
    let after = p.fingerprint_all().unwrap();
    assert_eq!(after[&live], before[&live], "the live site was not touched");

    // The same request run again on that ledger continues it, leaving the same sites out.
    let out = drover()
        .current_dir(dir.path())
        .arg("run")
        .arg("-w")
        .arg(shipped_workflow())
        .args(["-r", "mixed.toml", "--yes", "--state", "s.db"])
        .output()
        .unwrap();
    let stderr = support::exited(&out, 0);
    assert!(
        stderr.contains("already holds this plan; continuing it"),
        "{stderr}"
    );
    // What the operator confirms is the restore that runs, without the sites left out.
    assert!(stderr.contains("about to restore 3 sites"), "{stderr}");

    // The audit trail says which sites were left out and why.
    let out = drover()
        .args(["audit", "--state"])
        .arg(dir.path().join("s.db"))
        .output()
        .unwrap();
    support::exited(&out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("excluded at the start (--exclude-refused): 2 sites"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("  {no_backup}: unit {no_backup}/contacts")),
        "{stdout}"
    );
}

/// The run ID recorded in a ledger.
fn run_id(ledger: &Path) -> String {
    let out = drover()
        .args(["audit", "--format", "json", "--state"])
        .arg(ledger)
        .output()
        .unwrap();
    support::exited(&out, 0);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["run_id"].as_str().unwrap().to_owned()
}

/// `drover run` of `request` in `dir` into ledger `state`.
fn run_into(dir: &Path, request: &str, state: &str, extra: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("drover"));
    cmd.current_dir(dir)
        .arg("run")
        .arg("-w")
        .arg(shipped_workflow())
        .args(["-r", request, "--yes", "--state", state])
        .args(extra);
    cmd
}

/// Two operators start two runs over the same deleted sites at the same moment, each with its
/// own ledger: exactly one restores them; the other is refused before it runs anything, naming
/// the run that holds them.
#[test]
fn two_runs_started_together_never_restore_the_same_sites() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path(), 24, 20);
    let start = |state: &str| {
        run_into(dir.path(), "request.toml", state, &[])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start("a.db"), start("b.db"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (winner, loser, loser_ledger) = match (a.status.code(), b.status.code()) {
        (Some(0), Some(2)) => ("a.db", b, "b.db"),
        (Some(2), Some(0)) => ("b.db", a, "a.db"),
        other => panic!(
            "exactly one run restores the sites: exits {other:?}\n{}\n{}",
            String::from_utf8_lossy(&a.stderr),
            String::from_utf8_lossy(&b.stderr)
        ),
    };
    let stderr = String::from_utf8_lossy(&loser.stderr);
    let holder = run_id(&dir.path().join(winner));
    assert!(
        stderr.contains(&format!("is being restored by run {holder}")),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was executed"), "{stderr}");
    assert!(!dir.path().join(loser_ledger).exists(), "{stderr}");
    assert_eq!(
        deleted_sites(&p),
        Vec::<String>::new(),
        "the winner restored every site"
    );
}

/// A run that stopped with sites unrestored keeps them: another run is refused, naming it,
/// until it takes them over with --replace-existing; then the first run may not continue them.
#[test]
fn a_stopped_run_keeps_its_sites_until_another_takes_them_over() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path(), 6, 3);
    let deleted = deleted_sites(&p);
    let failing = format!("{}/", deleted[0]);
    let out = run_into(
        dir.path(),
        "request.toml",
        "a.db",
        &["--inject-failure", &failing],
    )
    .output()
    .unwrap();
    support::exited(&out, 3);
    let first = run_id(&dir.path().join("a.db"));

    let out = run_into(dir.path(), "request.toml", "b.db", &[])
        .output()
        .unwrap();
    let stderr = refused(&out);
    assert!(
        stderr.contains(&format!(
            "site {}: is being restored by run {first}",
            deleted[0]
        )),
        "{stderr}"
    );
    assert!(stderr.contains("drover resume --state"), "{stderr}");

    // The sites it did restore are live now: they are left out; the one it held is taken over.
    let out = run_into(
        dir.path(),
        "request.toml",
        "b.db",
        &["--replace-existing", "--exclude-refused"],
    )
    .output()
    .unwrap();
    let stderr = support::exited(&out, 0);
    assert!(
        stderr.contains(&format!("took over {} from run {first}", deleted[0])),
        "{stderr}"
    );
    let second = run_id(&dir.path().join("b.db"));
    assert!(deleted_sites(&p).is_empty());

    // The first run's sites were taken over: it may not continue them.
    let out = drover()
        .args(["resume", "--state"])
        .arg(dir.path().join("a.db"))
        .output()
        .unwrap();
    let stderr = support::exited(&out, 2);
    assert!(
        stderr.contains(&format!(
            "site {}: is no longer this run's ({first}): another run took it over and has finished it",
            deleted[0]
        )),
        "{stderr}"
    );
    let _ = second;
}
