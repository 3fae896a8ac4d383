//! Malformed input: every case exits 2 with a message naming the file, the entry and the fix,
//! and never panics.

use crate::support;

use std::path::Path;

use support::{REQUEST, WORKFLOW, drover, write};

/// Plans `workflow` × `request` and returns stderr, asserting exit 2 and no panic.
fn refused(workflow: &str, request: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let wf = write(dir.path(), "wf.toml", workflow);
    let req = write(dir.path(), "req.toml", request);
    refused_paths(&wf, &req)
}

fn refused_paths(wf: &Path, req: &Path) -> String {
    let out = drover()
        .args(["plan", "--workflow"])
        .arg(wf)
        .arg("--request")
        .arg(req)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit 2, got {:?}; stderr:\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing is printed as a plan");
    assert!(
        stderr.contains("fix:"),
        "every problem says how to fix it:\n{stderr}"
    );
    stderr
}

fn has(stderr: &str, needles: &[&str]) {
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}:\n{stderr}");
    }
}

#[test]
fn step_cycle_is_printed_as_a_path() {
    let wf = WORKFLOW.replace(
        "after = [\"fetch-shard\"]",
        "after = [\"fetch-shard\", \"validate\"]",
    );
    let err = refused(&wf, REQUEST);
    has(
        &err,
        &[
            "wf.toml",
            "dependency cycle",
            "step rebuild -> step validate -> step rebuild",
        ],
    );
}

#[test]
fn product_cycle_is_printed_as_a_path() {
    let wf = WORKFLOW.replace(
        "[products.identity]",
        "[products.identity]\nafter = [\"wiki\"]",
    );
    let err = refused(&wf, REQUEST);
    has(
        &err,
        &[
            "wf.toml:11",
            "dependency cycle",
            "product identity -> product wiki -> product identity",
        ],
    );
}

#[test]
fn app_id_in_place_of_a_site_id_is_named() {
    let req = REQUEST.replace("id = \"site-0002\"", "id = \"app-7f3a9c\"");
    let err = refused(WORKFLOW, &req);
    has(
        &err,
        &[
            "req.toml:13:6",
            "'app-7f3a9c' is an app (product instance) ID, not a site ID",
        ],
    );
}

#[test]
fn customer_id_in_a_csv_list_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write(dir.path(), "wf.toml", WORKFLOW);
    write(
        dir.path(),
        "sites.csv",
        "id,size_gb,identity.shard\nsite-0001,1,identity-1\ncust-0042,1,identity-1\n",
    );
    let req = write(
        dir.path(),
        "req.toml",
        "[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"identity\"]\nsites_csv = \"sites.csv\"\n",
    );
    let err = refused_paths(&wf, &req);
    has(&err, &["sites.csv:3", "a customer ID, not a site ID"]);
}

#[test]
fn unknown_product_in_a_site() {
    let req = REQUEST.replace(
        "products = [\"identity\"]",
        "products = [\"identity\", \"jira\"]",
    );
    let err = refused(WORKFLOW, &req);
    has(
        &err,
        &["unknown product 'jira'", "use one of: identity, wiki"],
    );
}

#[test]
fn unknown_step_in_after() {
    let wf = WORKFLOW.replace("after = [\"rebuild\"]", "after = [\"rebuld\"]");
    let err = refused(&wf, REQUEST);
    has(&err, &["steps.validate.after", "unknown step 'rebuld'"]);
}

#[test]
fn unknown_step_kind() {
    let wf = WORKFLOW.replace("kind = \"validate\"", "kind = \"validat\"");
    let err = refused(&wf, REQUEST);
    has(
        &err,
        &["steps.validate.kind", "unknown step kind 'validat'"],
    );
}

#[test]
fn unknown_pool() {
    let wf = WORKFLOW.replace("uses = { db = 1 }", "uses = { database = 1 }");
    let err = refused(&wf, REQUEST);
    has(&err, &["unknown pool 'database'", "use one of: db, s3"]);
}

#[test]
fn missing_site_attribute() {
    let req = REQUEST.replace("attrs = { size_gb = 2, ", "attrs = { ");
    let err = refused(WORKFLOW, &req);
    has(
        &err,
        &["site attribute 'size_gb' is not set for site site-0002"],
    );
}

#[test]
fn step_needs_more_units_than_its_pool_has() {
    let wf = WORKFLOW.replace("uses = { db = 1 }", "uses = { db = 3 }");
    let err = refused(&wf, REQUEST);
    has(
        &err,
        &[
            "steps.rebuild.uses.db",
            "needs 3 units of pool 'db', which has only 2",
        ],
    );
}

#[test]
fn zero_capacity_pool() {
    let wf = WORKFLOW.replace("[pools.db]\ncapacity = 2", "[pools.db]\ncapacity = 0");
    let err = refused(&wf, REQUEST);
    has(&err, &["pools.db.capacity", "capacity 0"]);
}

#[test]
fn duplicate_site_names_the_first_occurrence() {
    let req = REQUEST.replace("id = \"site-0003\"", "id = \"site-0001\"");
    let err = refused(WORKFLOW, &req);
    has(
        &err,
        &["site site-0001 is listed twice (first at", "req.toml:8:6"],
    );
}

#[test]
fn request_without_sites() {
    let req = REQUEST.split("[[sites]]").next().unwrap();
    let err = refused(WORKFLOW, req);
    has(&err, &["the request lists no sites"]);
}

#[test]
fn bad_duration_names_the_field() {
    let wf = WORKFLOW.replace("estimate = \"5s\"", "estimate = \"five seconds\"");
    let err = refused(&wf, REQUEST);
    has(
        &err,
        &[
            "steps.validate.estimate",
            "'five seconds' is not a duration",
            "\"15m\"",
        ],
    );
}

#[test]
fn bad_timestamp() {
    let req = REQUEST.replace("2022-04-05T07:38:00Z", "5 April 2022");
    let err = refused(WORKFLOW, &req);
    has(
        &err,
        &[
            "req.toml:4",
            "request.point_in_time",
            "not an RFC 3339 timestamp",
        ],
    );
}

#[test]
fn misspelt_field_is_refused_not_ignored() {
    let wf = WORKFLOW.replace("estimate = \"1s\"", "estimate = \"1s\"\ntimout = \"5m\"");
    let err = refused(&wf, REQUEST);
    has(&err, &["wf.toml:", "unknown field `timout`"]);
}

#[test]
fn empty_files() {
    let err = refused("", REQUEST);
    has(&err, &["wf.toml", "the file is empty"]);
    let err = refused(WORKFLOW, "  \n\n");
    has(&err, &["req.toml", "the file is empty"]);
}

#[test]
fn non_utf8_bytes_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write(dir.path(), "wf.toml", WORKFLOW);
    let mut bytes = REQUEST.as_bytes().to_vec();
    bytes.extend_from_slice(b"\n# caf\xe9\n");
    let req = write(dir.path(), "req.toml", bytes);
    let err = refused_paths(&wf, &req);
    has(&err, &["req.toml:", "not UTF-8"]);
}

#[test]
fn fifty_megabytes_of_junk() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write(dir.path(), "wf.toml", WORKFLOW);
    let junk: Vec<u8> = (0..50u32 * 1024 * 1024)
        .map(|i| b"a=[{\"x\n]"[(i as usize * 7919) % 8])
        .collect();
    let req = write(dir.path(), "junk.toml", junk);
    let err = refused_paths(&wf, &req);
    has(&err, &["junk.toml"]);
}

#[test]
fn deeply_nested_toml_does_not_overflow_the_stack() {
    let deep = format!("x = {}{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = refused(WORKFLOW, &deep);
    has(&err, &["req.toml"]);
    let deep_tables = format!("x = {}1{}", "{ a = ".repeat(10_000), " }".repeat(10_000));
    refused(&deep_tables, REQUEST);
}

#[test]
fn csv_row_with_wrong_field_count() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write(dir.path(), "wf.toml", WORKFLOW);
    write(
        dir.path(),
        "sites.csv",
        "id,size_gb\nsite-0001,1\nsite-0002,1,extra\n",
    );
    let req = write(
        dir.path(),
        "req.toml",
        "[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"identity\"]\nsites_csv = \"sites.csv\"\n",
    );
    let err = refused_paths(&wf, &req);
    has(
        &err,
        &["sites.csv:3", "this row has 3 fields; the header has 2"],
    );
}

#[test]
fn missing_csv_file_is_named() {
    let req = REQUEST.replace(
        "products = [\"identity\", \"wiki\"]",
        "products = [\"identity\", \"wiki\"]\nsites_csv = \"nope.csv\"",
    );
    let err = refused(WORKFLOW, &req);
    has(&err, &["nope.csv", "cannot read the file"]);
}

#[test]
fn missing_input_file() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write(dir.path(), "wf.toml", WORKFLOW);
    let err = refused_paths(&wf, &dir.path().join("absent.toml"));
    has(&err, &["absent.toml", "cannot read the file"]);
}

#[test]
fn product_without_its_dependency() {
    let req = REQUEST.replace("products = [\"identity\"]", "products = [\"wiki\"]");
    let err = refused(WORKFLOW, &req);
    has(
        &err,
        &[
            "site site-0003 has product 'wiki', which needs 'identity'",
            "add 'identity' to the site's products",
        ],
    );
}

#[test]
fn unknown_tier() {
    let req = REQUEST.replace("tier = \"enterprise\"", "tier = \"platinum\"");
    let err = refused(WORKFLOW, &req);
    has(
        &err,
        &[
            "unknown tier 'platinum'",
            "enterprise, premium, standard, free",
        ],
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let wf = WORKFLOW
        .replace("kind = \"validate\"", "kind = \"validat\"")
        .replace("estimate = \"1s\"", "estimate = \"soon\"");
    let req = REQUEST
        .replace("id = \"site-0002\"", "id = \"app-1\"")
        .replace("tier = \"enterprise\"", "tier = \"gold\"");
    let err = refused(&wf, &req);
    has(
        &err,
        &["error: 4 problems", "validat", "soon", "app-1", "gold"],
    );
}

#[test]
fn bad_pool_override() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write(dir.path(), "wf.toml", WORKFLOW);
    let req = write(dir.path(), "req.toml", REQUEST);
    let out = drover()
        .args(["plan", "--pools", "dbx=4", "--workflow"])
        .arg(&wf)
        .arg("--request")
        .arg(&req)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    has(
        &String::from_utf8_lossy(&out.stderr),
        &["--pools", "unknown pool 'dbx'"],
    );
    let out = drover()
        .args(["plan", "--pools", "db=lots", "--workflow"])
        .arg(&wf)
        .arg("--request")
        .arg(&req)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap's usage errors also exit 2"
    );
}

#[test]
fn a_when_condition_needs_exactly_one_of_is_and_is_not() {
    let wf = WORKFLOW.replace(
        "estimate = \"1s\"",
        "estimate = \"1s\"\nwhen = { attribute = \"state\" }",
    );
    let err = refused(&wf, REQUEST);
    has(
        &err,
        &["steps.reactivate.when", "exactly one of `is` or `is_not`"],
    );
}

#[test]
fn a_missing_required_field_says_which_field_to_add() {
    let wf = WORKFLOW.replacen("estimate = \"20s\"\n", "", 1);
    assert_ne!(wf, WORKFLOW, "the fixture has the line this test removes");
    let err = refused(&wf, REQUEST);
    has(
        &err,
        &[
            "wf.toml:",
            "missing field `estimate`",
            "fix: add `estimate = …`",
        ],
    );
}

/// Issue #11, class 1: numbers that are well-formed but huge are refused with their range,
/// never a panic (exit 101).
#[test]
fn huge_numbers_are_refused_with_their_range() {
    let years = "500000000000years";
    for (from, to, needles) in [
        (
            "estimate = \"20s\"",
            format!("estimate = \"{years}\""),
            vec!["steps.rebuild.estimate", "limit of"],
        ),
        (
            "per = \"10s\"",
            format!("per = \"{years}\""),
            vec!["scale.per", "limit of"],
        ),
        (
            "estimate = \"5s\"",
            format!("estimate = \"5s\"\ntimeout = \"{years}\""),
            vec!["timeout", "limit of"],
        ),
        (
            "[pools.db]\ncapacity = 2",
            "[pools.db]\ncapacity = 4294967296".to_owned(),
            vec!["capacity", "1 to 1000000"],
        ),
    ] {
        let wf = WORKFLOW.replacen(from, &to, 1);
        assert_ne!(wf, WORKFLOW, "{from}");
        has(&refused(&wf, REQUEST), &needles);
    }
    let wf = WORKFLOW.replacen(
        "[steps.rebuild]",
        "[defaults]\nretry = { attempts = 2, initial_backoff = \"2days\" }\n\n[steps.rebuild]",
        1,
    );
    has(
        &refused(&wf, REQUEST),
        &["defaults.retry.initial_backoff", "at most 1day"],
    );
    for size in ["1e300", "9223372036854775807", "1e13"] {
        let req = REQUEST.replacen("size_gb = 2", &format!("size_gb = {size}"), 1);
        has(
            &refused(WORKFLOW, &req),
            &["site site-0002", "size_gb", "range"],
        );
    }
    let req = format!("{REQUEST}\n[backups]\nsource = \"b\"\nwindow = \"300000years\"\n");
    has(
        &refused(WORKFLOW, &req),
        &["backups.window", "at most 100years"],
    );
}

/// Class 1 on the command line: flags with a range say it, exit 2.
#[test]
fn huge_flag_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write(dir.path(), "wf.toml", WORKFLOW);
    let req = write(dir.path(), "req.toml", REQUEST);
    for args in [
        vec!["plan", "--offline", "--pools", "db=4294967295"],
        vec!["estimate", "--target-rto", "18446744073709551615s"],
        vec!["estimate", "--trials", "100001"],
    ] {
        let out = drover()
            .args(&args)
            .arg("-w")
            .arg(&wf)
            .arg("-r")
            .arg(&req)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// Class 2: an endless input (a device, a FIFO) is refused at the size limit.
#[test]
fn endless_input_is_refused_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let req = write(dir.path(), "req.toml", REQUEST);
    let err = refused_paths(Path::new("/dev/zero"), &req);
    has(&err, &["/dev/zero", "larger than drover's limit of 64 MiB"]);
}

/// Class 3: each row of the ID table in docs/request-format.md is named for what it is.
#[test]
fn every_id_kind_is_named_for_what_it_is() {
    for (id, kind) in [
        ("123e4567-e89b-42d3-a456-426614174000", "a bare UUID"),
        ("wiki-3", "a database shard ID"),
        ("shard-9", "a database shard ID"),
        ("app-7f3a9c", "an app (product instance) ID"),
        ("product-wiki", "an app (product instance) ID"),
        ("cust-0042", "a customer ID"),
        ("customer-acme", "a customer ID"),
    ] {
        let req = REQUEST.replacen("site-0002", id, 1);
        has(&refused(WORKFLOW, &req), &[id, kind]);
    }
}

/// Class 4: control characters in input are escaped in every message, never sent raw.
#[test]
fn control_characters_in_input_are_escaped() {
    // TOML's own escapes put raw control characters into the value.
    let req = REQUEST.replacen("site-0002", "site-\\u001b]0;owned\\u0007\\u001b[2J", 1);
    let err = refused(WORKFLOW, &req);
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    has(&err, &["\\x1b]0;owned\\x07\\x1b[2J"]);
    let wf = WORKFLOW.replacen(
        "[pools.db]",
        "[pools.\"d\\u001b[31mb\"]\ncapacity = 1\n\n[pools.db]",
        1,
    );
    let err = refused(&wf, REQUEST);
    assert!(!err.contains('\u{1b}'), "{err:?}");
    has(&err, &["is not a valid name"]);
}

/// Class 9: a file of the wrong kind is named for what it is, exit 2.
#[test]
fn a_file_of_the_wrong_kind_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write(dir.path(), "wf.toml", WORKFLOW);
    let req = write(dir.path(), "req.toml", REQUEST);
    has(
        &refused_paths(&req, &wf),
        &["this is a restore request", "-r/--request"],
    );
    for command in ["status", "audit", "report", "clean", "resume"] {
        let out = drover()
            .args([command, "--state"])
            .arg(&req)
            .args(if command == "report" {
                &["--html", "r.html"][..]
            } else {
                &[]
            })
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        assert!(stderr.contains("a restore request"), "{command}: {stderr}");
    }
    let out = drover()
        .args(["run", "--confirm", "0123456789ab", "--state"])
        .arg(dir.path().join("never-created.db"))
        .arg("--plan")
        .arg(&req)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("this is a restore request"), "{stderr}");
    let before = std::fs::read(&req).unwrap();
    let out = drover()
        .args(["estimate", "--history"])
        .arg(&req)
        .arg("-w")
        .arg(&wf)
        .arg("-r")
        .arg(&req)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&req).unwrap(),
        before,
        "the file was not changed"
    );
}

fn plan_offline(workflow: &Path, request: &Path) -> std::process::Output {
    drover()
        .args(["plan", "--offline", "-w"])
        .arg(workflow)
        .arg("-r")
        .arg(request)
        .output()
        .unwrap()
}

/// Secrets are referenced only where a step kind resolves them, and never from a site's data.
#[test]
fn secret_references_only_where_resolved_and_never_in_site_data() {
    // A site attribute naming a secret: templated into a webhook it would send the variable.
    let req = REQUEST.replacen("size_gb = 2,", "size_gb = 2, owner = \"{env:HOME}\",", 1);
    has(
        &refused(WORKFLOW, &req),
        &["attrs.owner", "secret reference"],
    );
    // A reference in a param the kind does not resolve would reach the step as text.
    let wf = format!(
        "{WORKFLOW}\n[steps.hook]\nscope = \"site\"\nkind = \"exec\"\nafter = [\"validate\"]\n\
         params = {{ command = \"true\", args = \"--token {{env:HOME}}\" }}\nestimate = \"1s\"\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let w = write(dir.path(), "wf.toml", &wf);
    let r = write(dir.path(), "req.toml", REQUEST);
    let out = plan_offline(&w, &r);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("does not resolve secrets there"),
        "{stderr}"
    );
    // An ordinary value that starts with "env:" is just text.
    let wf = wf.replace("--token {env:HOME}", "env:staging");
    std::fs::write(&w, wf).unwrap();
    let out = plan_offline(&w, &r);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_progress_threshold_that_is_not_a_duration_is_refused_with_its_entry() {
    let wf = WORKFLOW.replace(
        "kind = \"validate\"",
        "kind = \"notify\"\nparams = { progress_moves = \"when it changes\" }",
    );
    let err = refused(&wf, REQUEST);
    has(
        &err,
        &[
            "wf.toml",
            "steps.validate.params.progress_moves",
            "'when it changes' is not a duration",
            "\"30m\"",
        ],
    );
}
