//! The `exec` and `http` step kinds against real things: local commands, and an HTTP server on
//! loopback — success, retryable and permanent failures, idempotency keys.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use support::{drover, write};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn request(sites: &[&str]) -> String {
    let mut out =
        String::from("[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"p\"]\n");
    for s in sites {
        out.push_str(&format!("[[sites]]\nid = \"{s}\"\n"));
    }
    out
}

fn status(dir: &Path) -> Value {
    support::status_json(&dir.join("s.db"))
}

fn site_state(doc: &Value, site: &str) -> Value {
    doc["site_status"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == site)
        .unwrap()
        .clone()
}

#[test]
fn exec_runs_commands_with_the_idempotency_key_and_classifies_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "ok.sh",
        "echo \"site=$1 key=$DROVER_IDEMPOTENCY_KEY\"\necho \"$DROVER_IDEMPOTENCY_KEY $DROVER_ATTEMPT\" >> keys.log\n",
    );
    // Fails with 75 (try again) on the first attempt of each site, then succeeds.
    write(
        d,
        "flaky.sh",
        "n=$(cat \"tries-$1\" 2>/dev/null || echo 0); echo $((n + 1)) > \"tries-$1\"\n[ \"$n\" -ge 1 ] || { echo 'lock busy'; exit 75; }\n",
    );
    write(
        d,
        "check.sh",
        "[ \"$1\" = site-2 ] && { echo 'row count mismatch' >&2; exit 3; }\necho \"$GREETING $1\"\n",
    );
    let wf = format!(
        r#"
[workflow]
name = "exec"
[products.p]
[steps.a]
scope = "product"
kind = "exec"
params = {{ command = "sh", args = "{d}/ok.sh {{site}}" }}
estimate = "1s"
[steps.b]
scope = "product"
kind = "exec"
after = ["a"]
params = {{ command = "sh", args = "{d}/flaky.sh {{site}}" }}
estimate = "1s"
retry = {{ attempts = 3, initial_backoff = "10ms", max_backoff = "10ms" }}
[steps.c]
scope = "product"
kind = "exec"
after = ["b"]
params = {{ command = "sh", args = "{d}/check.sh {{site}}", "env.GREETING" = "hello" }}
estimate = "1s"
"#,
        d = d.display()
    );
    write(d, "wf.toml", wf);
    write(d, "r.toml", request(&["site-1", "site-2"]));
    let out = drover()
        .current_dir(d)
        .args([
            "run",
            "--yes",
            "--max-sites",
            "100000",
            "-w",
            "wf.toml",
            "-r",
            "r.toml",
            "--state",
            "s.db",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = status(d);
    assert_eq!(site_state(&doc, "site-1")["state"], "restored");
    let failed = site_state(&doc, "site-2");
    assert_eq!(failed["state"], "failed");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("'sh' exited 3: row count mismatch"),
        "{failed}"
    );
    for site in ["site-1", "site-2"] {
        assert_eq!(
            std::fs::read_to_string(d.join(format!("tries-{site}")))
                .unwrap()
                .trim(),
            "2",
            "75 was retried once for {site}"
        );
    }
    let keys = std::fs::read_to_string(d.join("keys.log")).unwrap();
    let run_id = doc["run_id"].as_str().unwrap();
    assert!(keys.contains(&format!("{run_id}/site-1/p/a 1")), "{keys}");
    let log = std::fs::read_to_string(d.join("s.db.staging/site-1/p/c/output.log")).unwrap();
    assert_eq!(
        log.trim(),
        "hello site-1",
        "env.* params reach the command, output goes to the log"
    );
}

/// A minimal HTTP/1.1 server: answers by path, records each request's idempotency key.
async fn serve(keys: Arc<Mutex<HashMap<String, u32>>>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let keys = Arc::clone(&keys);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap_or(0));
                while buf.len() < head_end + len {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let key = head
                    .lines()
                    .find_map(|l| l.strip_prefix("idempotency-key:"))
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                let seen = {
                    let mut k = keys.lock().unwrap();
                    let n = k.entry(key).or_default();
                    *n += 1;
                    *n
                };
                let (status, body) = if path.ends_with("/bad") {
                    ("400 Bad Request", "{\"error\":\"unknown site\"}")
                } else if path.ends_with("/flaky") && seen == 1 {
                    ("503 Service Unavailable", "busy")
                } else {
                    ("200 OK", "{\"accepted\":true}")
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_posts_json_and_classifies_statuses() {
    let keys = Arc::new(Mutex::new(HashMap::new()));
    let addr = serve(Arc::clone(&keys)).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let wf = format!(
        r#"
[workflow]
name = "http"
[products.p]
[steps.hook]
scope = "product"
kind = "http"
params = {{ url = "http://{addr}/{{site}}/{{path}}" }}
estimate = "1s"
retry = {{ attempts = 3, initial_backoff = "10ms", max_backoff = "10ms" }}
"#
    );
    write(&d, "wf.toml", wf);
    let req = "[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"p\"]\n[[sites]]\nid = \"site-ok\"\nattrs = { path = \"ok\" }\n[[sites]]\nid = \"site-flaky\"\nattrs = { path = \"flaky\" }\n[[sites]]\nid = \"site-bad\"\nattrs = { path = \"bad\" }\n";
    write(&d, "r.toml", req);
    let dd = d.clone();
    let out = tokio::task::spawn_blocking(move || {
        drover()
            .current_dir(&dd)
            .args([
                "run",
                "--yes",
                "--max-sites",
                "100000",
                "-w",
                "wf.toml",
                "-r",
                "r.toml",
                "--state",
                "s.db",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dd = d.clone();
    let doc = tokio::task::spawn_blocking(move || status(&dd))
        .await
        .unwrap();
    assert_eq!(site_state(&doc, "site-ok")["state"], "restored");
    assert_eq!(
        site_state(&doc, "site-flaky")["state"],
        "restored",
        "503 was retried"
    );
    let bad = site_state(&doc, "site-bad");
    assert_eq!(bad["state"], "failed");
    assert!(
        bad["reason"].as_str().unwrap().contains("HTTP 400"),
        "{bad}"
    );
    let run_id = doc["run_id"].as_str().unwrap().to_owned();
    let keys = keys.lock().unwrap();
    assert_eq!(
        keys.get(&format!("{run_id}/site-flaky/p/hook").to_lowercase()),
        Some(&2),
        "the retry carried the same idempotency key: {keys:?}"
    );
    assert_eq!(
        keys.get(&format!("{run_id}/site-bad/p/hook").to_lowercase()),
        Some(&1),
        "a 400 is not retried"
    );
}
