//! Backups through the real binary: `drover plan`'s preflight against a local store, `drover run`
//! fetching every unit and recording the RPO, and `drover clean` removing only fetched data that
//! no unfinished step needs.

use crate::support;

use std::path::Path;

use support::s3::{Obj, data, write_local};

const FETCH_WORKFLOW: &str = r#"
[workflow]
name = "fetch-test"
[pools.s3]
capacity = 4
[products.wiki]
[steps.fetch-shard]
scope = "shared"
unit = "shard"
kind = "fetch"
params = { unit = "{shard}", source = "{backups}", point_in_time = "{point_in_time}", window = "{backup_window}" }
uses = { s3 = 1 }
estimate = "1s"
[steps.fetch]
scope = "product"
kind = "fetch"
params = { unit = "{site}/{product}", source = "{backups}", point_in_time = "{point_in_time}", window = "{backup_window}" }
uses = { s3 = 1 }
estimate = "1s"
[steps.done]
scope = "site"
kind = "noop"
after = ["fetch", "fetch-shard"]
estimate = "1s"
"#;

const FETCH_REQUEST: &str = r#"
[request]
point_in_time = "2022-04-05T07:38:00Z"
products = ["wiki"]
[backups]
source = "backups"
window = "2h"
[[sites]]
id = "site-0001"
attrs = { "wiki.shard" = "wiki-1" }
[[sites]]
id = "site-0002"
attrs = { "wiki.shard" = "wiki-1" }
"#;

fn fetch_fixture(dir: &Path, site_two_time: &str) {
    let root = dir.join("backups");
    let shard = data(50_000, 1);
    write_local(
        &root,
        "wiki-1",
        None,
        "2022-04-05T07:00:00Z",
        &[Obj {
            name: "shard.sqlite",
            data: &shard,
        }],
        true,
    );
    let a = data(1000, 2);
    write_local(
        &root,
        "site-0001/wiki",
        Some("site-0001"),
        "2022-04-05T07:30:00Z",
        &[Obj {
            name: "attachments/a.bin",
            data: &a,
        }],
        true,
    );
    write_local(
        &root,
        "site-0002/wiki",
        Some("site-0002"),
        site_two_time,
        &[Obj {
            name: "attachments/a.bin",
            data: &a,
        }],
        true,
    );
    std::fs::write(dir.join("wf.toml"), FETCH_WORKFLOW).unwrap();
    std::fs::write(dir.join("req.toml"), FETCH_REQUEST).unwrap();
}

#[test]
fn plan_preflight_refuses_a_unit_without_a_snapshot_in_its_window() {
    let dir = tempfile::tempdir().unwrap();
    // site-0002's only backup is three hours before the point in time: outside the 2h window.
    fetch_fixture(dir.path(), "2022-04-05T04:38:00Z");
    let out = support::drover()
        .current_dir(dir.path())
        .args(["plan", "-w", "wf.toml", "-r", "req.toml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unit site-0002/wiki"), "{stderr}");
    assert!(
        stderr.contains("the newest complete one is 2022-04-05T04:38:00Z"),
        "{stderr}"
    );
    let offline = support::drover()
        .current_dir(dir.path())
        .args(["plan", "-w", "wf.toml", "-r", "req.toml", "--offline"])
        .output()
        .unwrap();
    assert!(
        offline.status.success(),
        "--offline plans without reading the store: {}",
        String::from_utf8_lossy(&offline.stderr)
    );
    let out = support::run("wf.toml", "req.toml", "s.db")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "run checks too, before anything starts"
    );
    assert!(!dir.path().join("s.db").exists(), "nothing was created");
}

#[test]
fn run_fetches_every_unit_and_records_the_rpo() {
    let dir = tempfile::tempdir().unwrap();
    fetch_fixture(dir.path(), "2022-04-05T07:20:00Z");
    let out = support::drover()
        .current_dir(dir.path())
        .args([
            "plan", "-w", "wf.toml", "-r", "req.toml", "--format", "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        plan["backups"]["site_rpo_s"]["site-0002"],
        38 * 60,
        "its own backup is 38 minutes old: its worst unit"
    );
    assert_eq!(
        plan["backups"]["site_rpo_s"]["site-0001"],
        38 * 60,
        "the shard backup (07:00) is older than its own (07:30)"
    );
    let out = support::run("wf.toml", "req.toml", "s.db")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let staging = dir.path().join("s.db.staging");
    assert_eq!(
        std::fs::read(staging.join("shard/wiki-1/fetch-shard/shard.sqlite")).unwrap(),
        data(50_000, 1)
    );
    assert_eq!(
        std::fs::read(staging.join("site-0002/wiki/fetch/attachments/a.bin")).unwrap(),
        data(1000, 2)
    );
    let conn = rusqlite::Connection::open(dir.path().join("s.db")).unwrap();
    let output: String = conn
        .query_row(
            "SELECT output FROM steps WHERE id = 'site-0001/wiki/fetch'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let output: serde_json::Value = serde_json::from_str(&output).unwrap();
    assert_eq!(output["snapshot"], "20220405T073000Z");
    assert_eq!(output["rpo_s"], 8 * 60);
}

#[test]
fn clean_removes_only_fetched_data_that_no_unfinished_step_needs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fetch_fixture(d, "2022-04-05T07:20:00Z");
    // site-0002's last step fails, so the data it reads must stay.
    let wf = FETCH_WORKFLOW.replace(
        "[steps.done]\nscope = \"site\"\nkind = \"noop\"\nafter = [\"fetch\", \"fetch-shard\"]\n",
        "[steps.done]\nscope = \"site\"\nkind = \"noop\"\nafter = [\"fetch\", \"fetch-shard\"]\n\
         when = { attribute = \"outcome\", is_not = [\"fail\"], default = \"ok\" }\nestimate = \"1s\"\n\
         [steps.broken]\nscope = \"site\"\nkind = \"fail\"\nafter = [\"fetch\", \"fetch-shard\"]\n\
         when = { attribute = \"outcome\", is = [\"fail\"], default = \"ok\" }\n",
    );
    std::fs::write(d.join("wf.toml"), wf).unwrap();
    let req = FETCH_REQUEST.replace(
        "id = \"site-0002\"\nattrs = { ",
        "id = \"site-0002\"\nattrs = { outcome = \"fail\", ",
    );
    std::fs::write(d.join("req.toml"), req).unwrap();
    let run = support::drover()
        .current_dir(d)
        .args([
            "run", "--yes", "-w", "wf.toml", "-r", "req.toml", "--state", "s.db",
        ])
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let staging = d.join("s.db.staging");
    std::fs::write(staging.join("operator-notes.txt"), "mine").unwrap();
    let (own, theirs, shard) = (
        staging.join("site-0001/wiki/fetch"),
        staging.join("site-0002/wiki/fetch"),
        staging.join("shard/wiki-1/fetch-shard"),
    );
    assert!(own.is_dir() && theirs.is_dir() && shard.is_dir());

    let clean = || {
        let out = support::drover()
            .current_dir(d)
            .args(["clean", "--state", "s.db"])
            .output()
            .unwrap();
        support::exited(&out, 0)
    };
    // A dry run sums up (paths on request) and removes nothing.
    let dry = |extra: &[&str]| {
        support::drover()
            .current_dir(d)
            .args(["clean", "--state", "s.db", "--dry-run"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = dry(&[]);
    let said = support::exited(&out, 0);
    assert!(
        said.contains("would remove 1 fetched snapshots ("),
        "{said}"
    );
    assert!(said.contains("--list names them"), "{said}");
    assert!(out.stdout.is_empty(), "no path lines without --list");
    let listed = String::from_utf8(dry(&["--list"]).stdout).unwrap();
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains("site-0001/wiki/fetch"), "{listed}");
    assert!(own.is_dir(), "a dry run removes nothing");

    let said = clean();
    assert!(said.contains("removed 1 fetched snapshots"), "{said}");
    assert!(said.contains("kept 2 still needed"), "{said}");
    assert!(!own.exists(), "site-0001 is done with its data");
    assert!(
        theirs.is_dir() && shard.is_dir(),
        "site-0002 still needs them"
    );

    support::drover()
        .current_dir(d)
        .args([
            "skip",
            "--state",
            "s.db",
            "--step",
            "site-0002/broken",
            "--reason",
            "test",
        ])
        .assert()
        .success();
    let said = clean();
    assert!(said.contains("removed 2 fetched snapshots"), "{said}");
    assert!(!theirs.exists() && !shard.exists());
    assert_eq!(
        std::fs::read_to_string(staging.join("operator-notes.txt")).unwrap(),
        "mine",
        "what drover did not fetch stays"
    );
    assert!(
        d.join("backups/wiki-1").is_dir(),
        "the backup store is never touched"
    );
    let audit = support::drover()
        .current_dir(d)
        .args(["audit", "--state", "s.db", "--format", "json"])
        .output()
        .unwrap();
    let audit: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    let modes: Vec<&str> = audit["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["run", "clean", "skip", "clean"]);
}

/// `exec` and `http` steps after a `fetch` learn the snapshot it chose: a command from the JSON
/// file `DROVER_UPSTREAM` names, an endpoint from the default body's `upstream`.
#[test]
fn exec_and_http_steps_learn_the_snapshot_the_fetch_chose() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let log = support::http::Log::default();
    let addr = runtime.block_on(support::http::serve(std::sync::Arc::clone(&log)));
    let dir = tempfile::tempdir().unwrap();
    fetch_fixture(dir.path(), "2022-04-05T07:20:00Z");
    let workflow = FETCH_WORKFLOW.replace(
        "[steps.done]\nscope = \"site\"\nkind = \"noop\"",
        &format!(
            "[steps.tell]\nscope = \"product\"\nkind = \"http\"\nafter = [\"fetch\"]\n\
             params = {{ url = \"http://{addr}/restore\" }}\nestimate = \"1s\"\n\
             [steps.done]\nscope = \"site\"\nkind = \"exec\"\n\
             params = {{ command = \"sh\", args = \"-c \\\"cp $DROVER_UPSTREAM {{site}}.json\\\"\" }}"
        ),
    );
    std::fs::write(dir.path().join("wf.toml"), workflow).unwrap();
    let out = support::run("wf.toml", "req.toml", "s.db")
        .current_dir(dir.path())
        .output()
        .unwrap();
    support::exited(&out, 0);

    let read = |site: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.path().join(format!("{site}.json"))).unwrap())
            .unwrap()
    };
    let one = read("site-0001");
    assert_eq!(one["site-0001/wiki/fetch"]["snapshot"], "20220405T073000Z");
    let shard = one
        .as_object()
        .unwrap()
        .iter()
        .find(|(id, _)| id.ends_with("/fetch-shard"))
        .map(|(_, out)| out["snapshot"].clone());
    assert_eq!(shard, Some("20220405T070000Z".into()), "{one}");
    assert_eq!(
        read("site-0002")["site-0002/wiki/fetch"]["snapshot"],
        "20220405T072000Z"
    );
    let told = log
        .lock()
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str::<serde_json::Value>(&r.body).unwrap())
        .find(|b| b["site"] == "site-0002")
        .unwrap();
    assert_eq!(
        told["upstream"]["site-0002/wiki/fetch"]["snapshot"],
        "20220405T072000Z"
    );
}
