//! Preflight against an operator's own site registry, through each adapter: in PostgreSQL (a
//! real server, started by `support::postgres`), read through the view the operator writes over
//! their own tables, and behind a command. The same refusals as for the reference platform, a
//! clear error when the registry cannot be read, and one run per site.

use std::path::{Path, PathBuf};

use crate::support::{self, drover, postgres, refused};

/// The operator's schema (their own names for states and kinds) and the view that maps it to
/// drover's columns, as docs/request-format.md shows.
const SCHEMA: &str = r#"
CREATE TABLE customers (id text PRIMARY KEY, name text NOT NULL);
CREATE TABLE sites (
    id text PRIMARY KEY,
    customer_id text NOT NULL REFERENCES customers,
    plan text NOT NULL,
    status text NOT NULL
);
CREATE TABLE apps (id text PRIMARY KEY, site_id text NOT NULL REFERENCES sites, product text NOT NULL);

CREATE VIEW drover_sites AS
    SELECT s.id, 'site' AS kind,
           CASE s.status WHEN 'LIVE' THEN 'active' WHEN 'PURGED' THEN 'deleted'
                         WHEN 'TRASHED' THEN 'soft-deleted' WHEN 'RECOVERING' THEN 'restoring'
                         ELSE lower(s.status) END AS state,
           s.customer_id AS customer, s.plan AS tier,
           (SELECT array_agg(a.product ORDER BY a.product) FROM apps a WHERE a.site_id = s.id) AS products,
           NULL AS site, NULL AS product
      FROM sites s
    UNION ALL
    SELECT c.id, 'customer', NULL, NULL, NULL, NULL, NULL, NULL FROM customers c
    UNION ALL
    SELECT a.id, 'app', NULL, NULL, NULL, NULL, a.site_id, a.product FROM apps a;

-- Reactivation, compare and set from the states drover passes, once per idempotency key.
CREATE TABLE reactivations (site text PRIMARY KEY, key text NOT NULL);
CREATE FUNCTION drover_reactivate(p_site text, p_key text, expected text[]) RETURNS boolean AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM reactivations WHERE site = p_site AND key = p_key) THEN
        RETURN false;
    END IF;
    UPDATE sites SET status = 'LIVE'
     WHERE id = p_site
       AND (CASE status WHEN 'RECOVERING' THEN 'restoring' ELSE lower(status) END) = ANY(expected);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'site % is not in a state to reactivate', p_site;
    END IF;
    INSERT INTO reactivations (site, key) VALUES (p_site, p_key);
    RETURN true;
END $$ LANGUAGE plpgsql;

INSERT INTO customers VALUES ('cust-acme', 'Acme'), ('cust-globex', 'Globex');
INSERT INTO sites VALUES
    ('site-0001', 'cust-acme', 'enterprise', 'PURGED'),
    ('site-0002', 'cust-acme', 'standard', 'PURGED'),
    ('site-0003', 'cust-globex', 'free', 'LIVE'),
    ('site-0004', 'cust-globex', 'free', 'RECOVERING'),
    ('site-0005', 'cust-globex', 'free', 'PURGED');
INSERT INTO apps VALUES
    ('app-0001-wiki', 'site-0001', 'wiki'), ('app-0001-issues', 'site-0001', 'issues'),
    ('app-0002-wiki', 'site-0002', 'wiki'),
    ('app-0003-wiki', 'site-0003', 'wiki'),
    ('app-0004-wiki', 'site-0004', 'wiki'),
    ('app-0005-wiki', 'site-0005', 'wiki');
"#;

/// An operator's restore: their own steps (`sleep` stands in for their commands).
const WORKFLOW: &str = r#"
[workflow]
name = "operator"

[products.wiki]
[products.issues]

[steps.restore]
scope = "product"
kind = "sleep"
params = { scale = "0.001" }
estimate = "1s"
"#;

/// The rows of `table` in the database at `url`.
fn count(url: &str, table: &str) -> i64 {
    let mut client = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .get(0)
}

fn registry() -> String {
    let url = postgres::database("registry");
    let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    client.batch_execute(SCHEMA).unwrap();
    url
}

/// A request for `sites` (`(id, products, state attribute)`) naming `registry`; `extra` goes
/// into `[target]`.
fn request(dir: &Path, registry: &str, extra: &str, sites: &[(&str, &str, &str)]) -> PathBuf {
    request_with(dir, &format!("registry = \"{registry}\"\n{extra}"), sites)
}

/// A request for `sites` whose `[target]` table holds `target`.
fn request_with(dir: &Path, target: &str, sites: &[(&str, &str, &str)]) -> PathBuf {
    let mut text = format!(
        "[request]\nname = \"incident\"\npoint_in_time = \"2022-04-05T07:38:00Z\"\n\n\
         [target]\n{target}\n\n"
    );
    for (id, products, state) in sites {
        text.push_str(&format!(
            "[[sites]]\nid = \"{id}\"\nproducts = {products}\nattrs = {{ state = \"{state}\" }}\n\n"
        ));
    }
    support::write(dir, "request.toml", text)
}

/// The refusals every adapter gives, as the reference platform does, for a registry (named by
/// `target`, the `[target]` table's body, and shown as `at` in messages) that holds sites
/// site-0001 (deleted; wiki and issues), site-0002 (deleted; wiki), site-0003 (active),
/// site-0004 (restoring), site-0005 (deleted), the app app-0001-wiki of site-0001 and the
/// customer cust-globex of site-0003..5. `plan` runs `drover plan` on `dir/request.toml`.
fn gives_the_same_refusals(
    dir: &Path,
    target: &str,
    at: &str,
    plan: &dyn Fn() -> std::process::Output,
) {
    // Deleted sites with their own products: the plan goes ahead, and says what it read.
    request_with(
        dir,
        target,
        &[
            ("site-0001", r#"["wiki", "issues"]"#, "deleted"),
            ("site-0002", r#"["wiki"]"#, "deleted"),
        ],
    );
    let out = plan();
    support::exited(&out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("registry       every site may be restored (2 deleted)"),
        "{stdout}"
    );

    // A live site, a product the site does not have, a site an earlier restore began, a
    // soft-delete path for purged data, and an ID that is no site: all refused at once.
    request_with(
        dir,
        target,
        &[
            ("site-0001", r#"["wiki"]"#, "deleted"),
            ("site-0002", r#"["wiki", "issues"]"#, "deleted"),
            ("site-0003", r#"["wiki"]"#, "deleted"),
            ("site-0004", r#"["wiki"]"#, "deleted"),
            ("site-0005", r#"["wiki"]"#, "soft-deleted"),
            ("site-0099", r#"["wiki"]"#, "deleted"),
        ],
    );
    let stderr = refused(&plan());
    for expected in [
        "site site-0003: is active in the registry: it is serving customers".to_owned(),
        "site site-0002: has no issues in the registry (it has: wiki)".to_owned(),
        "site site-0004: is restoring in the registry: an earlier restore of it began".to_owned(),
        "site site-0005: the request says state = \"soft-deleted\" (un-delete in place, no backup fetched), but the registry says deleted".to_owned(),
        format!("site site-0099: is not in the registry at {at}"),
    ] {
        assert!(stderr.contains(&expected), "missing {expected:?} in {stderr}");
    }
    assert!(!stderr.contains("site site-0001:"), "{stderr}");

    // The 2022 script was handed IDs of other kinds: each is named for what it is.
    request_with(dir, target, &[("app-0001-wiki", r#"["wiki"]"#, "deleted")]);
    let stderr = refused(&plan());
    assert!(
        stderr.contains("'app-0001-wiki' is the wiki instance (app) of site-0001 in the registry"),
        "{stderr}"
    );
    assert!(stderr.contains("fix: list site-0001 instead"), "{stderr}");
    request_with(dir, target, &[("cust-globex", r#"["wiki"]"#, "deleted")]);
    let stderr = refused(&plan());
    assert!(
        stderr.contains("'cust-globex' is a customer in the registry")
            && stderr.contains("site-0003, site-0004, site-0005"),
        "the customer's sites are listed: {stderr}"
    );
}

fn plan(dir: &Path, extra: &[&str]) -> std::process::Output {
    let workflow = support::write(dir, "workflow.toml", WORKFLOW);
    drover()
        .current_dir(dir)
        .arg("plan")
        .arg("-w")
        .arg(workflow)
        .args(["-r", "request.toml"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn a_postgres_registry_gives_the_same_refusals() {
    let url = registry();
    let dir = tempfile::tempdir().unwrap();
    gives_the_same_refusals(
        dir.path(),
        &format!("registry = \"{url}\""),
        "postgres://drover@127.0.0.1:",
        &|| plan(dir.path(), &[]),
    );
    // --replace-existing lets the site an earlier restore began through, never the live one.
    request(
        dir.path(),
        &url,
        "",
        &[("site-0004", r#"["wiki"]"#, "deleted")],
    );
    support::exited(&plan(dir.path(), &["--replace-existing"]), 0);
    request(
        dir.path(),
        &url,
        "",
        &[("site-0003", r#"["wiki"]"#, "deleted")],
    );
    refused(&plan(dir.path(), &["--replace-existing"]));
}

#[test]
fn a_run_against_a_live_site_executes_nothing() {
    let url = registry();
    let dir = tempfile::tempdir().unwrap();
    let workflow = support::write(dir.path(), "workflow.toml", WORKFLOW);
    request(
        dir.path(),
        &url,
        "",
        &[("site-0003", r#"["wiki"]"#, "deleted")],
    );
    let state = dir.path().join("ledger.db");
    let out = support::run(&workflow, dir.path().join("request.toml"), &state)
        .output()
        .unwrap();
    let stderr = refused(&out);
    assert!(
        stderr.contains("site site-0003: is active in the registry"),
        "{stderr}"
    );
    assert!(!state.exists(), "a refused run leaves no ledger");
}

#[test]
fn an_unreadable_registry_is_a_clear_error_never_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let sites = [("site-0001", r#"["wiki"]"#, "deleted")];

    // Nothing listens on the port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    request(
        dir.path(),
        &format!("postgres://drover@127.0.0.1:{port}/registry"),
        "",
        &sites,
    );
    let stderr = refused(&plan(dir.path(), &[]));
    assert!(
        stderr.contains(&format!(
            "cannot reach the registry at postgres://drover@127.0.0.1:{port}/registry"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("fix: check that the server is up"),
        "{stderr}"
    );

    // The server is up, but the operator has not created the view.
    let empty = postgres::database("empty");
    request(dir.path(), &empty, "", &sites);
    let stderr = refused(&plan(dir.path(), &[]));
    assert!(
        stderr.contains("answered the query on drover_sites with an error"),
        "{stderr}"
    );
    assert!(stderr.contains("drover_sites\" does not exist"), "{stderr}");
    assert!(
        stderr.contains("fix: create the view drover_sites"),
        "{stderr}"
    );

    // A state the view does not map.
    let url = registry();
    let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    client
        .batch_execute("UPDATE sites SET status = 'ARCHIVED' WHERE id = 'site-0001'")
        .unwrap();
    request(dir.path(), &url, "", &sites);
    let stderr = refused(&plan(dir.path(), &[]));
    assert!(
        stderr.contains(
            "describes 'site-0001' as a site in state 'archived', which is not one of drover's"
        ),
        "{stderr}"
    );

    // A password written into the request is refused, and not repeated.
    let with_password = url.replace("drover@", "drover:hunter2@");
    request(dir.path(), &with_password, "", &sites);
    let stderr = refused(&plan(dir.path(), &[]));
    assert!(stderr.contains("carries a password"), "{stderr}");
    assert!(stderr.contains("PGPASSWORD"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn the_view_can_be_named_and_a_bad_name_is_refused() {
    let url = registry();
    let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    client
        .batch_execute("ALTER VIEW drover_sites RENAME TO restore_registry")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sites = [("site-0001", r#"["wiki"]"#, "deleted")];
    request(
        dir.path(),
        &url,
        "registry_view = \"public.restore_registry\"",
        &sites,
    );
    support::exited(&plan(dir.path(), &[]), 0);

    // A name that is not a view's is refused before anything is sent to the server.
    request(
        dir.path(),
        &url,
        "registry_view = \"sites; DROP TABLE sites\"",
        &sites,
    );
    let stderr = refused(&plan(dir.path(), &[]));
    assert!(stderr.contains("is not a view name"), "{stderr}");
    assert_eq!(count(&url, "sites"), 5);
}

/// Two runs started at the same moment over the same sites, with their own ledgers: exactly
/// one restores them; the other is refused before it runs anything, naming the run that holds
/// them. The claims are kept beside the operator's registry and released when the run is done.
#[test]
fn two_runs_started_together_never_restore_the_same_sites() {
    let url = registry();
    let dir = tempfile::tempdir().unwrap();
    // Steps of two seconds, so that the first run is still at work when the second starts.
    let workflow = support::write(
        dir.path(),
        "workflow.toml",
        WORKFLOW
            .replace("scale = \"0.001\"", "scale = \"1\"")
            .replace("estimate = \"1s\"", "estimate = \"2s\""),
    );
    request(
        dir.path(),
        &url,
        "",
        &[
            ("site-0001", r#"["wiki"]"#, "deleted"),
            ("site-0002", r#"["wiki"]"#, "deleted"),
        ],
    );
    race(dir.path(), &workflow, &[]);

    // Done: the winner's claims are released.
    assert_eq!(count(&url, "drover_claims"), 0);
}

/// Starts two runs of `workflow` over `dir/request.toml` at the same moment, with their own
/// ledgers (`a.db`, `b.db`) and `env`: exactly one runs and succeeds; the other is refused with
/// exit 2 before anything runs, naming the run that holds the sites.
fn race(dir: &Path, workflow: &Path, env: &[(&str, &str)]) {
    let spawn = |state: &str| {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("drover"));
        cmd.args(["run", "--yes", "-w"])
            .arg(workflow)
            .arg("-r")
            .arg(dir.join("request.toml"))
            .arg("--state")
            .arg(dir.join(state))
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("a.db"), spawn("b.db"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (winner, loser) = match (a.status.code(), b.status.code()) {
        (Some(0), Some(2)) => ("a.db", b),
        (Some(2), Some(0)) => ("b.db", a),
        other => panic!(
            "exactly one run restores the sites: exits {other:?}\n{}\n{}",
            String::from_utf8_lossy(&a.stderr),
            String::from_utf8_lossy(&b.stderr)
        ),
    };
    let audit = drover()
        .args(["audit", "--format", "json", "--state"])
        .arg(dir.join(winner))
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    let holder = doc["run_id"].as_str().unwrap();
    let stderr = String::from_utf8_lossy(&loser.stderr);
    assert!(
        stderr.contains(&format!("is being restored by run {holder}")),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was executed"), "{stderr}");
}

/// An operator's restore through an HTTP registry: their restore endpoint (an `http` step)
/// marks each site restoring after a wait, and the built-in `reactivate` step puts it back in
/// service through the registry.
const THROUGH_HTTP: &str = r#"
[workflow]
name = "operator"

[products.wiki]

[steps.wait]
scope = "product"
kind = "sleep"
params = { scale = "1" }
estimate = "2s"

[steps.restore]
scope = "site"
kind = "http"
after = ["wait"]
params = { url = "RESTORE_URL" }
estimate = "1s"

[steps.reactivate]
scope = "site"
kind = "reactivate"
after = ["restore"]
params = { platform = "{target}" }
estimate = "1s"
"#;

/// Claims and reactivation through an HTTP registry (docs/request-format.md): two runs started
/// together over the same sites, and exactly one restores them; it reactivates each site once
/// through the endpoint and releases its claims; a site that is not restoring is refused and
/// stays as it was.
#[test]
fn an_http_registry_keeps_one_run_per_site_and_reactivates_each_once() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let log = support::http::Log::default();
    let addr = runtime.block_on(support::http::serve(std::sync::Arc::clone(&log)));
    let url = format!("http://{addr}/registry");
    let dir = tempfile::tempdir().unwrap();
    let flow = THROUGH_HTTP.replace("RESTORE_URL", &format!("http://{addr}/restore-site"));
    let workflow = support::write(dir.path(), "workflow.toml", &flow);
    let token = [("DROVER_REGISTRY_TOKEN", "s3cret")];
    let sites = [
        ("site-0001", r#"["wiki"]"#, "deleted"),
        ("site-0002", r#"["wiki"]"#, "deleted"),
    ];
    request(dir.path(), &url, "", &sites);
    race(dir.path(), &workflow, &token);

    // What the registry holds now, as a lookup answers.
    let lookup = || -> serde_json::Value {
        runtime.block_on(async {
            reqwest::Client::new()
                .post(&url)
                .bearer_auth("s3cret")
                .json(&serde_json::json!({ "op": "lookup", "ids": ["site-0001"] }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    };
    let entry = |doc: &serde_json::Value, id: &str| {
        doc["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .unwrap()
            .clone()
    };
    let now = lookup();
    for (site, _, _) in sites {
        let e = entry(&now, site);
        assert_eq!(e["state"], "active-again", "{e}");
        assert!(e.get("held_by").is_none(), "released when done: {e}");
    }
    let reactivations = |site: &str| {
        log.lock()
            .unwrap()
            .iter()
            .filter(|r| r.body.contains("\"op\":\"reactivate\"") && r.body.contains(site))
            .count()
    };
    assert_eq!(
        (reactivations("site-0001"), reactivations("site-0002")),
        (1, 1)
    );

    // Without the restore that marks it restoring, the registry refuses: the step fails for
    // good, with the registry's reason, and the site stays deleted.
    let skipping = support::write(
        dir.path(),
        "skipping.toml",
        flow.replace("kind = \"http\"", "kind = \"noop\""),
    );
    let purged = request(
        dir.path(),
        &url,
        "",
        &[("site-0005", r#"["wiki"]"#, "deleted")],
    );
    let out = support::run(&skipping, &purged, dir.path().join("t.db"))
        .env("DROVER_REGISTRY_TOKEN", "s3cret")
        .output()
        .unwrap();
    let stderr = support::exited(&out, 3);
    assert_eq!(
        entry(&lookup(), "site-0005")["state"],
        "deleted",
        "{stderr}"
    );
    let doc = support::status_json(&dir.path().join("t.db"));
    assert!(
        doc.to_string().contains("it did not reactivate site-0005"),
        "{doc}"
    );
}

/// A registry behind a command (`[target] registry = { exec = [...] }`): the same refusals, from
/// the JSON lines a small shell script answers with; a command that fails is a clear error.
#[test]
fn a_registry_behind_a_command_gives_the_same_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let script = support::write(
        dir.path(),
        "registry.sh",
        r#"#!/bin/sh
# The operator's lookup tool: IDs on stdin, one JSON object per known ID on stdout.
echo called >> "$(dirname "$0")/calls.log"
while read -r id; do
  case "$id" in
    site-0001) echo '{"id":"site-0001","kind":"site","state":"deleted","customer":"cust-acme","products":["wiki","issues"]}' ;;
    site-0002) echo '{"id":"site-0002","kind":"site","state":"deleted","customer":"cust-acme","products":["wiki"]}' ;;
    site-0003) echo '{"id":"site-0003","kind":"site","state":"active","customer":"cust-globex","products":["wiki"]}' ;;
    site-0004) echo '{"id":"site-0004","kind":"site","state":"restoring","customer":"cust-globex","products":["wiki"]}' ;;
    site-0005) echo '{"id":"site-0005","kind":"site","state":"deleted","customer":"cust-globex","products":["wiki"]}' ;;
    app-0001-wiki) echo '{"id":"app-0001-wiki","kind":"app","site":"site-0001","product":"wiki"}' ;;
    cust-globex) echo '{"id":"cust-globex","kind":"customer","sites":["site-0003","site-0004","site-0005"]}' ;;
  esac
done
"#,
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let exec = format!("registry = {{ exec = [\"{}\"] }}", script.display());
    gives_the_same_refusals(dir.path(), &exec, "the command", &|| plan(dir.path(), &[]));

    // A list of IDs of other kinds (the 2022 list) is identified in one run of the command.
    let calls = dir.path().join("calls.log");
    std::fs::remove_file(&calls).unwrap();
    request_with(
        dir.path(),
        &exec,
        &[
            ("app-0001-wiki", r#"["wiki"]"#, "deleted"),
            ("cust-globex", r#"["wiki"]"#, "deleted"),
            ("app-0009-wiki", r#"["wiki"]"#, "deleted"),
        ],
    );
    let stderr = refused(&plan(dir.path(), &[]));
    assert!(
        stderr.contains("'app-0001-wiki' is the wiki instance (app) of site-0001")
            && stderr.contains("'cust-globex' is a customer"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&calls).unwrap().lines().count(), 1);

    // A command that fails is an error with what it said, never a pass.
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'registry is down for maintenance' >&2\nexit 3\n",
    )
    .unwrap();
    request_with(
        dir.path(),
        &exec,
        &[("site-0001", r#"["wiki"]"#, "deleted")],
    );
    let stderr = refused(&plan(dir.path(), &[]));
    assert!(
        stderr.contains("cannot reach the registry at the command")
            && stderr.contains("registry is down for maintenance"),
        "{stderr}"
    );

    // A string is never run as a command; only the list form is.
    request_with(
        dir.path(),
        &format!("registry = \"exec:{}\"", script.display()),
        &[("site-0001", r#"["wiki"]"#, "deleted")],
    );
    let stderr = refused(&plan(dir.path(), &[]));
    assert!(
        stderr.contains("is neither a directory nor a URL")
            && stderr.contains("registry = { exec = [")
            && !stderr.contains("registry is down"),
        "{stderr}"
    );
}

/// A registry behind an HTTP endpoint (`[target] registry = "https://…"`, plain http only to
/// loopback): batched lookups with a bearer token from the environment, the same refusals, and
/// an endpoint that refuses the token or keeps failing is a clear error, never a pass.
#[test]
fn a_registry_behind_an_http_endpoint_gives_the_same_refusals() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let log = support::http::Log::default();
    let addr = runtime.block_on(support::http::serve(std::sync::Arc::clone(&log)));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}/registry");
    let plan_with = |token: Option<&str>| {
        let workflow = support::write(dir.path(), "workflow.toml", WORKFLOW);
        let mut cmd = drover();
        cmd.current_dir(dir.path())
            .arg("plan")
            .arg("-w")
            .arg(workflow)
            .args(["-r", "request.toml"])
            .env_remove("DROVER_REGISTRY_TOKEN");
        if let Some(t) = token {
            cmd.env("DROVER_REGISTRY_TOKEN", t);
        }
        cmd.output().unwrap()
    };

    gives_the_same_refusals(
        dir.path(),
        &format!("registry = \"{url}\""),
        "http://127.0.0.1:",
        &|| plan_with(Some("s3cret")),
    );
    let asked = log
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.body.contains("site-0003"))
        .map(|r| r.body.clone())
        .unwrap_or_default();
    assert!(
        ["site-0001", "site-0002", "site-0003", "site-0099"]
            .iter()
            .all(|id| asked.contains(id)),
        "one batched lookup for the plan's sites: {asked}"
    );

    // Without the token: refused, saying which variable holds it; the token is never printed.
    request(
        dir.path(),
        &url,
        "",
        &[("site-0001", r#"["wiki"]"#, "deleted")],
    );
    let stderr = refused(&plan_with(None));
    assert!(
        stderr.contains("401 Unauthorized") && stderr.contains("DROVER_REGISTRY_TOKEN"),
        "{stderr}"
    );
    // An endpoint that keeps failing: retried, then refused.
    let before = log.lock().unwrap().len();
    request(
        dir.path(),
        &format!("http://{addr}/registry-down"),
        "",
        &[("site-0001", r#"["wiki"]"#, "deleted")],
    );
    let stderr = refused(&plan_with(Some("s3cret")));
    assert!(
        stderr.contains("it answered 503 Service Unavailable, 3 times"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
    assert_eq!(log.lock().unwrap().len() - before, 3);

    // Plain http to another machine is refused before anything is sent.
    request(
        dir.path(),
        "http://registry.example.com/lookup",
        "",
        &[("site-0001", r#"["wiki"]"#, "deleted")],
    );
    let stderr = refused(&plan_with(Some("s3cret")));
    assert!(
        stderr.contains("is plain http to another machine: use https"),
        "{stderr}"
    );
}

/// `drover drill --target <environment>` in `dir`, with the operator's workflow.
fn drill_into(dir: &Path, environment: &str) -> std::process::Output {
    let workflow = support::write(dir, "workflow.toml", WORKFLOW);
    drover()
        .current_dir(dir)
        .arg("drill")
        .arg("-w")
        .arg(workflow)
        .args([
            "-r",
            "request.toml",
            "--target-rto",
            "1h",
            "--state",
            "drill.db",
        ])
        .args(["--target", environment])
        .output()
        .unwrap()
}

/// A drill must never touch production: a drill environment that is production's registry,
/// however it is named, is refused before anything runs, through every adapter; a separate
/// one is drilled into.
#[test]
fn a_drill_pointed_at_production_is_refused_for_every_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let sites = [("site-0001", r#"["wiki"]"#, "deleted")];
    let refused_as_production = |out: &std::process::Output| {
        let stderr = refused(out);
        assert!(
            stderr.contains("is production's registry")
                && stderr.contains("a drill never runs against production"),
            "{stderr}"
        );
        assert!(!dir.path().join("drill.db").exists(), "{stderr}");
        assert!(!dir.path().join("drills.jsonl").exists(), "{stderr}");
    };

    // PostgreSQL: the same database through another name of the same server.
    let url = registry();
    request(dir.path(), &url, "", &sites);
    refused_as_production(&drill_into(
        dir.path(),
        &url.replace("127.0.0.1", "localhost"),
    ));
    // A separate drill environment (another database holding the same sites) is drilled into.
    let environment = registry();
    let out = drill_into(dir.path(), &environment);
    let stderr = support::exited(&out, 0);
    assert!(
        stderr.contains("restoring into the drill environment"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("PASS"));
    std::fs::remove_file(dir.path().join("drill.db")).unwrap();
    std::fs::remove_file(dir.path().join("drills.jsonl")).unwrap();
    let _ = std::fs::remove_dir_all(dir.path().join("drill.db.staging"));

    // An HTTP endpoint: the same URL, written another way.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let addr = runtime.block_on(support::http::serve(support::http::Log::default()));
    request(dir.path(), &format!("http://{addr}/registry"), "", &sites);
    refused_as_production(&drill_into(
        dir.path(),
        &format!("http://{addr}/registry/?ignored=1"),
    ));
    // Without --target, a drill on an operator's registry has nothing it may copy: refused.
    let workflow = support::write(dir.path(), "workflow.toml", WORKFLOW);
    let out = drover()
        .current_dir(dir.path())
        .arg("drill")
        .arg("-w")
        .arg(workflow)
        .args([
            "-r",
            "request.toml",
            "--target-rto",
            "1h",
            "--state",
            "drill.db",
        ])
        .output()
        .unwrap();
    let stderr = refused(&out);
    assert!(
        stderr.contains("drover copies only the reference platform for a drill")
            && stderr.contains("--target"),
        "{stderr}"
    );
    assert!(!dir.path().join("drill.db").exists());

    // A command: the same program through another path.
    let script = support::write(dir.path(), "registry.sh", "#!/bin/sh\ncat >/dev/null\n");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let text = format!(
        "[request]\nname = \"incident\"\npoint_in_time = \"2022-04-05T07:38:00Z\"\n\n\
         [target]\nregistry = {{ exec = [\"{}\"] }}\n\n[[sites]]\nid = \"site-0001\"\nproducts = [\"wiki\"]\n",
        script.display()
    );
    support::write(dir.path(), "request.toml", text);
    let other_path = dir.path().join(".").join("registry.sh");
    refused_as_production(&drill_into(
        dir.path(),
        &format!("exec:{}", other_path.display()),
    ));

    // The reference platform: its directory through a symlink.
    let platform_dir = tempfile::tempdir().unwrap();
    support::demo(platform_dir.path(), "init", 4, &[]);
    let link = dir.path().join("also-production");
    std::os::unix::fs::symlink(platform_dir.path().join("platform"), &link).unwrap();
    // The demo's request names the platform by its absolute path.
    // The demo's request names the platform by its absolute path.
    let text = std::fs::read_to_string(platform_dir.path().join("request.toml")).unwrap();
    support::write(dir.path(), "request.toml", text);
    let out = drover()
        .current_dir(dir.path())
        .arg("drill")
        .arg("-w")
        .arg(support::shipped_workflow())
        .args([
            "-r",
            "request.toml",
            "--target-rto",
            "1h",
            "--state",
            "drill.db",
        ])
        .arg("--target")
        .arg(&link)
        .output()
        .unwrap();
    refused_as_production(&out);
}

/// The exec-platform example (workflows/examples/exec-platform.toml): a platform driven only by
/// commands, its registry a command too, restores a set of sites end to end with preflight on;
/// killed half-way, its sites stay claimed against a second run; resumed, no step that had
/// finished runs again, each site is reactivated once through the registry command, and the
/// claims are released.
#[test]
fn the_exec_platform_example_restores_and_resumes_without_repeating_a_step() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let (platform, backups) = (dir.path().join("platform"), dir.path().join("backups"));
    let restored: Vec<String> = (1..=6).map(|i| format!("site-{i:04}")).collect();
    for i in 1..=7 {
        let site = format!("site-{i:04}");
        let d = platform.join("sites").join(&site);
        std::fs::create_dir_all(&d).unwrap();
        let state = if i == 7 { "active" } else { "deleted" };
        std::fs::write(d.join("state"), format!("{state}\n")).unwrap();
        std::fs::write(d.join("customer"), format!("cust-{i}\n")).unwrap();
        std::fs::write(d.join("products"), "wiki\nissues\n").unwrap();
        std::fs::create_dir_all(backups.join(&site)).unwrap();
        for product in ["wiki", "issues"] {
            let data = format!("{site} {product} data\n").repeat(100 * i);
            let path = backups.join(&site).join(product);
            std::fs::write(&path, &data).unwrap();
            let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data.as_bytes()));
            std::fs::write(path.with_extension("sha256"), format!("{digest}\n")).unwrap();
        }
    }
    let registry = repo.join("workflows/examples/exec-platform/registry.sh");
    let mut text = format!(
        "[request]\nname = \"incident\"\npoint_in_time = \"2022-04-05T07:38:00Z\"\n\n\
         [backups]\nsource = \"{}\"\n\n[target]\nregistry = {{ exec = [\"{}\", \"{}\"] }}\n\n",
        backups.display(),
        registry.display(),
        platform.display()
    );
    for site in &restored {
        text.push_str(&format!(
            "[[sites]]\nid = \"{site}\"\nproducts = [\"wiki\", \"issues\"]\n\n"
        ));
    }
    let request = support::write(dir.path(), "request.toml", &text);
    let state = dir.path().join("s.db");
    let drover_in_repo = |args: &[&str]| {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("drover"));
        cmd.current_dir(repo)
            .args(args)
            .env("PLATFORM_DIR", &platform)
            .env("RESTORE_SECONDS", "0.3")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        cmd
    };
    let workflow = repo.join("workflows/examples/exec-platform.toml");

    // The live site listed by mistake is refused through the registry command.
    let mut with_live = std::fs::read_to_string(&request).unwrap();
    with_live.push_str("[[sites]]\nid = \"site-0007\"\nproducts = [\"wiki\"]\n");
    let wrong = support::write(dir.path(), "wrong.toml", with_live);
    let out = drover_in_repo(&["plan", "-w"])
        .arg(&workflow)
        .arg("-r")
        .arg(&wrong)
        .output()
        .unwrap();
    let stderr = refused(&out);
    assert!(
        stderr.contains("site site-0007: is active in the registry"),
        "{stderr}"
    );

    // Killed once a few steps have finished.
    let mut run = drover_in_repo(&["run", "--yes", "-w"])
        .arg(&workflow)
        .arg("-r")
        .arg(&request)
        .arg("--state")
        .arg(&state)
        .spawn()
        .unwrap();
    let succeeded = || -> Vec<String> {
        let Ok(db) = rusqlite::Connection::open_with_flags(
            &state,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        ) else {
            return Vec::new();
        };
        db.prepare("SELECT id FROM steps WHERE state = 'succeeded'")
            .and_then(|mut s| {
                s.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while succeeded().len() < 8 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    run.kill().unwrap();
    run.wait().unwrap();
    let before = succeeded();
    let total = 6 * 2 * 3 + 6;
    assert!(
        before.len() >= 8 && before.len() < total,
        "killed half-way: {} of {total} steps had finished",
        before.len()
    );

    // The killed run still holds its sites in the registry: a second run over them, with its
    // own ledger, is refused before anything runs, naming the holder.
    let claim = std::fs::read_to_string(platform.join("sites/site-0001/claim")).unwrap();
    let out = drover_in_repo(&["run", "--yes", "-w"])
        .arg(&workflow)
        .arg("-r")
        .arg(&request)
        .arg("--state")
        .arg(dir.path().join("other.db"))
        .output()
        .unwrap();
    let stderr = refused(&out);
    let holder: serde_json::Value = serde_json::from_str(&claim).unwrap();
    assert!(
        stderr.contains(&format!(
            "is being restored by run {} (ledger {}",
            holder["run_id"].as_str().unwrap(),
            state.display()
        )),
        "{stderr}"
    );
    assert!(!dir.path().join("other.db").exists());

    let out = drover_in_repo(&["resume", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    support::exited(&out, 0);

    // The scripts log each step that did its work; the registry each reactivation it was asked
    // for (the `reactivate` step goes through the registry command).
    let log = std::fs::read_to_string(platform.join("steps.log")).unwrap();
    let count = |id: &str| log.lines().filter(|l| *l == id).count();
    let calls = std::fs::read_to_string(platform.join("reactivate-calls.log")).unwrap();
    for id in &before {
        let ran = match id.strip_suffix("/reactivate") {
            Some(site) => calls.lines().filter(|l| *l == site).count(),
            None => count(id),
        };
        assert_eq!(ran, 1, "{id} had finished before the kill and ran again");
    }
    assert_eq!(succeeded().len(), total);
    let reactivated = std::fs::read_to_string(platform.join("reactivations.log")).unwrap();
    for site in &restored {
        let d = platform.join("sites").join(site);
        assert_eq!(
            std::fs::read_to_string(d.join("state")).unwrap(),
            "active-again\n"
        );
        assert_eq!(
            reactivated.lines().filter(|l| l == site).count(),
            1,
            "{site}"
        );
        assert!(!d.join("claim").exists(), "{site}: released when done");
        for product in ["wiki", "issues"] {
            assert_eq!(
                std::fs::read(platform.join("data").join(site).join(product)).unwrap(),
                std::fs::read(backups.join(site).join(product)).unwrap(),
                "{site}/{product}"
            );
        }
    }
    let live = platform.join("sites/site-0007/state");
    assert_eq!(std::fs::read_to_string(live).unwrap(), "active\n");

    // A site deleted again and never restored (every step before `reactivate` skipped): the registry
    // command refuses to reactivate it, the step fails for good with its reason, and the site
    // stays deleted.
    let skipping = support::write(
        dir.path(),
        "skipping.toml",
        "[workflow]\nname = \"skipping\"\n\n[products.wiki]\n[products.issues]\n\n\
         [steps.restore]\nscope = \"product\"\nkind = \"noop\"\nestimate = \"1s\"\n\n\
         [steps.reactivate]\nscope = \"site\"\nkind = \"reactivate\"\nafter = [\"restore\"]\n\
         params = { platform = \"{target}\" }\nestimate = \"1s\"\n",
    );
    let only_one = text.replace(
        &restored[1..]
            .iter()
            .map(|s| format!("[[sites]]\nid = \"{s}\"\nproducts = [\"wiki\", \"issues\"]\n\n"))
            .collect::<String>(),
        "",
    );
    let d = platform.join("sites/site-0001");
    std::fs::write(d.join("state"), "deleted\n").unwrap();
    let request = support::write(dir.path(), "one.toml", only_one);
    let out = drover_in_repo(&["run", "--yes", "-w"])
        .arg(&skipping)
        .arg("-r")
        .arg(&request)
        .arg("--state")
        .arg(dir.path().join("t.db"))
        .output()
        .unwrap();
    support::exited(&out, 3);
    assert_eq!(
        std::fs::read_to_string(d.join("state")).unwrap(),
        "deleted\n"
    );
    let doc = support::status_json(&dir.path().join("t.db"));
    assert!(
        doc.to_string()
            .contains("it did not reactivate site-0001: site-0001 is deleted"),
        "{doc}"
    );
}

/// An operator's restore that ends in the built-in `reactivate` step, through the registry.
/// `mark` (psql standing in for the operator's tooling) marks the site restoring first.
const REACTIVATING: &str = r#"
[workflow]
name = "operator"

[products.wiki]

[steps.mark]
scope = "site"
kind = "exec"
params = { command = "psql", args = "-X -q -v ON_ERROR_STOP=1 {target} -c \"UPDATE sites SET status = 'RECOVERING' WHERE id = '{site}'\"" }
estimate = "1s"

[steps.reactivate]
scope = "site"
kind = "reactivate"
params = { platform = "{target}" }
after = ["mark"]
estimate = "1s"
"#;

/// Reactivation through a PostgreSQL registry: the built-in `reactivate` step calls the
/// registry's `drover_reactivate` (a compare-and-set from restoring or validated), once per site
/// however often the step runs; a site in any other state is refused and stays as it was.
#[test]
fn reactivation_goes_through_the_postgres_registry_once_and_only_from_restoring() {
    let url = registry();
    let dir = tempfile::tempdir().unwrap();
    let sites = [
        ("site-0001", r#"["wiki"]"#, "deleted"),
        ("site-0002", r#"["wiki"]"#, "deleted"),
    ];
    let request = request(dir.path(), &url, "", &sites);
    let workflow = support::write(dir.path(), "reactivating.toml", REACTIVATING);
    let state = dir.path().join("s.db");
    let out = support::run(&workflow, &request, &state).output().unwrap();
    support::exited(&out, 0);
    let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    let status = |client: &mut ::postgres::Client, site: &str| -> String {
        client
            .query_one("SELECT status FROM sites WHERE id = $1", &[&site])
            .unwrap()
            .get(0)
    };
    for (site, ..) in &sites {
        assert_eq!(status(&mut client, site), "LIVE", "{site}");
    }
    assert_eq!(count(&url, "reactivations"), 2);

    // Asked again with the same idempotency key (a retry whose success was not recorded): a
    // no-op that says so, not a second reactivation.
    let again: bool = client
        .query_one(
            "SELECT drover_reactivate('site-0001', key, ARRAY['restoring','validated']) FROM reactivations WHERE site = 'site-0001'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(!again);

    // Without the step that marks it restoring, the compare-and-set refuses: the site stays.
    let only_reactivate = REACTIVATING.replace(
        "[steps.mark]\nscope = \"site\"\nkind = \"exec\"",
        "[steps.mark]\nscope = \"site\"\nkind = \"noop\"",
    );
    let skipping = support::write(dir.path(), "skipping.toml", only_reactivate);
    let purged = request_with(
        dir.path(),
        &format!("registry = \"{url}\""),
        &[("site-0005", r#"["wiki"]"#, "deleted")],
    );
    let out = support::run(&skipping, &purged, dir.path().join("t.db"))
        .output()
        .unwrap();
    let stderr = support::exited(&out, 3);
    assert_eq!(status(&mut client, "site-0005"), "PURGED", "{stderr}");
    let doc = support::status_json(&dir.path().join("t.db"));
    assert!(
        doc.to_string().contains("not in a state to reactivate"),
        "{doc}"
    );
}
