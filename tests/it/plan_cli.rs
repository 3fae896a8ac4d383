//! `drover plan` and `drover generate request` through the real binary.

use crate::support;

use std::path::Path;

use serde_json::Value;
use support::{REQUEST, WORKFLOW, drover, shipped_workflow, write};

/// The plan alone: `--offline`, since these requests name backup stores that do not exist
/// (preflight has its own tests).
fn plan_json(workflow: &Path, request: &Path) -> Value {
    let out = drover()
        .args(["plan", "--offline", "--format", "json", "--workflow"])
        .arg(workflow)
        .arg("--request")
        .arg(request)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("plan --format json prints JSON")
}

fn generate(dir: &Path, sites: u32, seed: u64) -> std::path::PathBuf {
    let path = dir.join(format!("request-{sites}-{seed}.toml"));
    drover()
        .args([
            "generate",
            "request",
            "--sites",
            &sites.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
        ])
        .arg(&path)
        .assert()
        .success();
    path
}

#[test]
fn generated_300_site_request_plans_with_summary() {
    let dir = tempfile::tempdir().unwrap();
    let request = generate(dir.path(), 300, 1);
    let out = drover()
        .args(["plan", "--offline", "--workflow"])
        .arg(shipped_workflow())
        .arg("--request")
        .arg(&request)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "sites          300",
        "critical path",
        "lower bound",
        "pools",
        "db",
        "s3",
        "cpu",
    ] {
        assert!(text.contains(needle), "summary lacks {needle:?}:\n{text}");
    }
    let json = plan_json(&shipped_workflow(), &request);
    assert_eq!(json["sites"], 300);
    assert_eq!(json["hash"].as_str().unwrap().len(), 64);
    assert!(
        json["steps"].as_u64().unwrap() > 300 * 4,
        "every site has at least fetch/rebuild/validate/reactivate"
    );
    assert!(
        !json["critical_path"]["steps"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let cp = json["critical_path"]["length_s"].as_f64().unwrap();
    let lb = json["lower_bound_s"].as_f64().unwrap();
    assert!(
        cp > 0.0 && lb >= cp,
        "lower bound {lb} must be at least the critical path {cp}"
    );
}

#[test]
fn hash_is_stable_and_changes_with_a_sites_products() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write(dir.path(), "wf.toml", WORKFLOW);
    let req = write(dir.path(), "req.toml", REQUEST);
    let first = plan_json(&wf, &req)["hash"].clone();
    let second = plan_json(&wf, &req)["hash"].clone();
    assert_eq!(first, second);
    // site-0003 gains the wiki.
    let changed = REQUEST.replace("products = [\"identity\"]\nattrs = { size_gb = 3, \"identity.shard\" = \"identity-2\" }", "products = [\"identity\", \"wiki\"]\nattrs = { size_gb = 3, \"identity.shard\" = \"identity-2\", \"wiki.shard\" = \"wiki-1\" }");
    assert_ne!(changed, REQUEST);
    let req2 = write(dir.path(), "req2.toml", changed);
    assert_ne!(plan_json(&wf, &req2)["hash"], first);
}

#[test]
fn generated_requests_are_deterministic_per_seed() {
    let dir = tempfile::tempdir().unwrap();
    let a = std::fs::read(generate(dir.path(), 50, 7)).unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let b = std::fs::read(generate(b_dir.path(), 50, 7)).unwrap();
    let c = std::fs::read(generate(dir.path(), 50, 8)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn generate_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "keep.toml", "precious");
    drover()
        .args(["generate", "request", "--sites", "3", "--out"])
        .arg(&path)
        .assert()
        .code(2);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[test]
fn shared_shard_fetch_is_one_step_for_all_its_sites() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write(dir.path(), "wf.toml", WORKFLOW);
    let req = write(dir.path(), "req.toml", REQUEST);
    let out = dir.path().join("plan.json");
    drover()
        .args(["plan", "--offline", "--format", "json", "--workflow"])
        .arg(&wf)
        .arg("--request")
        .arg(&req)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let plan: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let steps = plan["steps"].as_array().unwrap();
    let id = |s: &Value| s["id"].as_str().unwrap().to_owned();
    let wiki_fetches: Vec<String> = steps
        .iter()
        .map(id)
        .filter(|i| i.starts_with("shard/wiki-1/"))
        .collect();
    assert_eq!(wiki_fetches, ["shard/wiki-1/fetch-shard"]);
    for site in ["site-0001", "site-0002"] {
        let rebuild = steps
            .iter()
            .find(|s| s["id"] == format!("{site}/wiki/rebuild"))
            .unwrap();
        let deps: Vec<&str> = rebuild["deps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect();
        assert!(deps.contains(&"shard/wiki-1/fetch-shard"), "{deps:?}");
        // The gate: the wiki's rebuild waits for identity to validate.
        assert!(
            deps.contains(&format!("{site}/identity/validate").as_str()),
            "{deps:?}"
        );
    }
    assert_eq!(plan["hash"], plan["summary"]["hash"]);
}

#[test]
fn pool_override_changes_the_lower_bound_not_the_hash() {
    let dir = tempfile::tempdir().unwrap();
    let request = generate(dir.path(), 200, 3);
    let base = plan_json(&shipped_workflow(), &request);
    let out = drover()
        .args([
            "plan",
            "--offline",
            "--format",
            "json",
            "--pools",
            "db=1",
            "--workflow",
        ])
        .arg(shipped_workflow())
        .arg("--request")
        .arg(&request)
        .output()
        .unwrap();
    let one_slot: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(base["hash"], one_slot["hash"]);
    assert!(one_slot["lower_bound_s"].as_f64() > base["lower_bound_s"].as_f64());
}

#[test]
fn every_shipped_workflow_plans() {
    let dir = tempfile::tempdir().unwrap();
    let request = generate(dir.path(), 40, 1);
    let workflows = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
    let mut planned = 0;
    for entry in std::fs::read_dir(workflows).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let json = plan_json(&path, &request);
            assert!(json["steps"].as_u64().unwrap() > 0, "{}", path.display());
            planned += 1;
        }
    }
    assert!(planned >= 1);
}

#[test]
fn csv_site_list_plans_like_inline_sites() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write(dir.path(), "wf.toml", WORKFLOW);
    write(
        dir.path(),
        "sites.csv",
        "id,tier,products,size_gb,identity.shard,wiki.shard\nsite-0001,enterprise,identity wiki,1,identity-1,wiki-1\nsite-0002,,,2,identity-1,wiki-1\nsite-0003,,identity,3,identity-2,\n",
    );
    let header = REQUEST.split("[[sites]]").next().unwrap();
    let csv_req = write(
        dir.path(),
        "csv.toml",
        format!("{}\nsites_csv = \"sites.csv\"\n", header.trim_end()),
    );
    let inline_req = write(dir.path(), "inline.toml", REQUEST);
    assert_eq!(
        plan_json(&wf, &csv_req)["hash"],
        plan_json(&wf, &inline_req)["hash"]
    );
}

#[test]
fn generated_csv_site_list_is_the_same_request() {
    let dir = tempfile::tempdir().unwrap();
    let inline = generate(dir.path(), 300, 4);
    let (request, csv) = (
        dir.path().join("big.toml"),
        dir.path().join("sites/big.csv"),
    );
    std::fs::create_dir(dir.path().join("sites")).unwrap();
    drover()
        .args([
            "generate", "request", "--sites", "300", "--seed", "4", "--out",
        ])
        .arg(&request)
        .arg("--sites-csv")
        .arg(&csv)
        .assert()
        .success();
    let text = std::fs::read_to_string(&request).unwrap();
    assert!(text.contains("sites_csv = \"sites/big.csv\""), "{text}");
    assert!(!text.contains("[[sites]]"), "{text}");
    assert_eq!(
        plan_json(&shipped_workflow(), &request)["hash"],
        plan_json(&shipped_workflow(), &inline)["hash"]
    );
    // Neither file is overwritten without --force.
    drover()
        .args(["generate", "request", "--sites", "3", "--out"])
        .arg(dir.path().join("new.toml"))
        .arg("--sites-csv")
        .arg(&csv)
        .assert()
        .code(2);
    assert!(!dir.path().join("new.toml").exists());
}

#[test]
fn help_documents_exit_codes() {
    let out = drover().arg("--help").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for code in [
        "0    success",
        "2    invalid input",
        "3    the run finished",
        "4    the ledger is held",
        "130  interrupted",
    ] {
        assert!(text.contains(code), "--help lacks {code:?}:\n{text}");
    }
}

#[test]
fn the_summary_groups_sites_by_restore_path() {
    let dir = tempfile::tempdir().unwrap();
    let site = |id: &str, state: &str| {
        format!(
            "[[sites]]\nid = \"{id}\"\nattrs = {{ state = \"{state}\", shard = \"identity-1\", size_gb = 1 }}\n"
        )
    };
    let request = write(
        dir.path(),
        "r.toml",
        format!(
            "[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"identity\"]\n\
             [backups]\nsource = \"backups\"\n[target]\nregistry = \"platform\"\n{}{}{}",
            site("site-0001", "deleted"),
            site("site-0002", "soft-deleted"),
            site("site-0003", "deleted"),
        ),
    );
    let doc = plan_json(&shipped_workflow(), &request);
    let paths: Vec<(Vec<String>, u64, Vec<String>)> = doc["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let strings = |v: &Value| {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            };
            (
                strings(&g["skips"]),
                g["sites"].as_u64().unwrap(),
                strings(&g["examples"]),
            )
        })
        .collect();
    let soft_skips: Vec<String> = [
        "fetch",
        "fetch-contacts",
        "rebuild-index",
        "restore-contacts",
        "restore-tenant",
        "validate",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(
        paths,
        [
            (
                vec![],
                2,
                vec!["site-0001".to_owned(), "site-0003".to_owned()]
            ),
            (soft_skips, 1, vec!["site-0002".to_owned()]),
        ]
    );
    assert_eq!(doc["conditional_steps"]["fetch"]["steps"], 2);
}
