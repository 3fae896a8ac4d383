//! Shared helpers for the integration tests: the real binary and small input files.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// The real `drover` binary.
pub fn drover() -> Command {
    Command::cargo_bin("drover").expect("the drover binary is built")
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test input");
    path
}

/// `drover run --yes --max-sites 100000 -w <workflow> -r <request> --state <state>`: a run that
/// neither asks for confirmation nor is held by the blast radius (those guards have their own
/// tests in tests/safety.rs).
pub fn run(
    workflow: impl AsRef<std::ffi::OsStr>,
    request: impl AsRef<std::ffi::OsStr>,
    state: impl AsRef<std::ffi::OsStr>,
) -> Command {
    let mut cmd = drover();
    cmd.args(["run", "--yes", "--max-sites", "100000", "-w"])
        .arg(workflow)
        .arg("-r")
        .arg(request)
        .arg("--state")
        .arg(state);
    cmd
}

/// Asserts the process exited with `code` (showing its stderr if not) and returns its stderr.
pub fn exited(out: &std::process::Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    stderr
}

/// Asserts the process was refused (exit 2) before anything ran; returns its stderr.
pub fn refused(out: &std::process::Output) -> String {
    let stderr = exited(out, 2);
    assert!(stderr.contains("nothing was executed"), "{stderr}");
    stderr
}

/// `drover demo <stage> --dir <dir> <extra…>` (with `--sites <sites>` for `init`, the stage that
/// builds), which must succeed.
pub fn demo(dir: &Path, stage: &str, sites: u32, extra: &[&str]) {
    let mut cmd = drover();
    cmd.args(["demo", stage, "--dir"]).arg(dir).args(extra);
    if stage == "init" {
        cmd.args(["--sites", &sites.to_string()]);
    }
    let out = cmd.output().unwrap();
    exited(&out, 0);
}

/// `drover status --format json` of a ledger, parsed.
pub fn status_json(state: &Path) -> serde_json::Value {
    let out = drover()
        .args(["status", "--format", "json", "--state"])
        .arg(state)
        .output()
        .unwrap();
    exited(&out, 0);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One site's entry in a `status_json` document.
pub fn site_status(doc: &serde_json::Value, site: &str) -> serde_json::Value {
    doc["site_status"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == site)
        .unwrap_or_else(|| panic!("{site} is not in the status: {doc}"))
        .clone()
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out
}

/// The repository's shipped workflow.
pub fn shipped_workflow() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/saas-platform.toml")
}

/// A small valid workflow: two products, a shared shard fetch, per-product and per-site steps.
pub const WORKFLOW: &str = r#"
[workflow]
name = "mini"

[pools.s3]
capacity = 4

[pools.db]
capacity = 2

[products.identity]

[products.wiki]
after = ["identity"]

[gate]
step = "rebuild"
waits_for = "validate"

[steps.fetch-shard]
scope = "shared"
unit = "shard"
kind = "fetch"
params = { unit = "{shard}" }
uses = { s3 = 1 }
estimate = "10s"

[steps.rebuild]
scope = "product"
kind = "restore-tenant"
after = ["fetch-shard"]
params = { site = "{site}", product = "{product}" }
uses = { db = 1 }
estimate = "20s"
scale = { attribute = "size_gb", per = "10s" }

[steps.validate]
scope = "product"
kind = "validate"
after = ["rebuild"]
estimate = "5s"

[steps.reactivate]
scope = "site"
kind = "reactivate"
after = ["validate"]
estimate = "1s"
"#;

/// A small valid request for [`WORKFLOW`]: three sites, two on one wiki shard.
pub const REQUEST: &str = r#"
[request]
name = "mini"
point_in_time = "2022-04-05T07:38:00Z"
products = ["identity", "wiki"]

[[sites]]
id = "site-0001"
tier = "enterprise"
attrs = { size_gb = 1, "identity.shard" = "identity-1", "wiki.shard" = "wiki-1" }

[[sites]]
id = "site-0002"
attrs = { size_gb = 2, "identity.shard" = "identity-1", "wiki.shard" = "wiki-1" }

[[sites]]
id = "site-0003"
products = ["identity"]
attrs = { size_gb = 3, "identity.shard" = "identity-2" }
"#;
pub mod browser;
pub mod http;
pub mod postgres;
pub mod s3;
