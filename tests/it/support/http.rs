//! A minimal HTTP/1.1 server on loopback for the `http` and `notify` kinds: it records every
//! request and answers by path — `…/bad` 400, `…/flaky` 503 and `…/refuse-once` 400 to the
//! first request with a given idempotency key, anything else 200 with a JSON body.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request as received (path and idempotency key lowercased).
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub key: String,
    pub body: String,
    pub authorization: String,
}

/// What `…/registry` holds (it answers with `authorization: bearer s3cret`; 401 without): a
/// site registry's entries; a lookup answers every one whatever was asked.
pub const REGISTRY_ENTRIES: &str = r#"{"entries": [
 {"id":"site-0001","kind":"site","state":"deleted","customer":"cust-acme","products":["wiki","issues"]},
 {"id":"site-0002","kind":"site","state":"deleted","customer":"cust-acme","products":["wiki"]},
 {"id":"site-0003","kind":"site","state":"active","customer":"cust-globex","products":["wiki"]},
 {"id":"site-0004","kind":"site","state":"restoring","customer":"cust-globex","products":["wiki"]},
 {"id":"site-0005","kind":"site","state":"deleted","customer":"cust-globex","products":["wiki"]},
 {"id":"app-0001-wiki","kind":"app","site":"site-0001","product":"wiki"},
 {"id":"cust-globex","kind":"customer","sites":["site-0003","site-0004","site-0005"]}
]}"#;

pub type Log = Arc<Mutex<Vec<Received>>>;

/// The registry `…/registry` keeps, as an operator's would: its entries, which run holds each
/// site, and the idempotency key of each reactivation.
#[derive(Default)]
struct Registry {
    entries: Vec<serde_json::Value>,
    claims: std::collections::HashMap<String, serde_json::Value>,
    reactivated: std::collections::HashMap<String, String>,
}

impl Registry {
    fn new() -> Registry {
        let doc: serde_json::Value = serde_json::from_str(REGISTRY_ENTRIES).unwrap();
        Registry {
            entries: doc["entries"].as_array().unwrap().clone(),
            ..Default::default()
        }
    }

    fn state(&mut self, site: &str) -> Option<&mut serde_json::Value> {
        self.entries
            .iter_mut()
            .find(|e| e["id"] == site && e["kind"] == "site")
            .map(|e| &mut e["state"])
    }

    /// Marks the site a restore step names restoring, from deleted.
    fn restore(&mut self, body: &str) {
        let ask: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        if let Some(state) = self
            .state(ask["site"].as_str().unwrap_or_default())
            .filter(|s| **s == "deleted")
        {
            *state = serde_json::json!("restoring");
        }
    }

    /// The answer to one operation (docs/request-format.md).
    fn answer(&mut self, body: &str) -> serde_json::Value {
        use serde_json::json;
        let ask: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        match ask["op"].as_str().unwrap_or("lookup") {
            "lookup" => {
                let mut entries = self.entries.clone();
                for e in &mut entries {
                    if let Some(c) = self.claims.get(e["id"].as_str().unwrap_or_default()) {
                        e["held_by"] = c.clone();
                    }
                }
                json!({ "entries": entries })
            }
            "claim" => {
                let run = &ask["run"];
                let sites = strings(&ask["sites"]);
                let others: Vec<serde_json::Value> = sites
                    .iter()
                    .filter_map(|s| {
                        let c = self.claims.get(s)?;
                        (c["run_id"] != run["run_id"]).then(|| {
                            let mut c = c.clone();
                            c["site"] = json!(s);
                            c
                        })
                    })
                    .collect();
                if !others.is_empty() && ask["take_over"] != true {
                    return json!({ "claimed": false, "held": others });
                }
                for s in &sites {
                    self.claims.insert(s.clone(), run.clone());
                }
                json!({ "claimed": true, "taken_over": others })
            }
            "release" => {
                self.claims.retain(|_, c| c["run_id"] != ask["run_id"]);
                json!({})
            }
            "reactivate" => {
                let site = ask["site"].as_str().unwrap_or_default().to_owned();
                let key = ask["key"].as_str().unwrap_or_default().to_owned();
                if self.reactivated.get(&site) == Some(&key) {
                    return json!({ "reactivated": false });
                }
                let expected = strings(&ask["expected"]);
                match self.state(&site) {
                    Some(state) if expected.iter().any(|e| state == e) => {
                        *state = json!("active-again");
                        self.reactivated.insert(site, key);
                        json!({ "reactivated": true })
                    }
                    state => json!({ "refused": format!("{site} is {state:?}") }),
                }
            }
            other => json!({ "error": format!("no operation {other}") }),
        }
    }
}

/// How many requests carried `key`.
pub fn count(log: &Log, key: &str) -> usize {
    log.lock().unwrap().iter().filter(|r| r.key == key).count()
}

/// Serves on 127.0.0.1:0 until the runtime ends; returns the address.
pub async fn serve(log: Log) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let registry = Arc::new(Mutex::new(Registry::new()));
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let log = Arc::clone(&log);
            let registry = Arc::clone(&registry);
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
                let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();

                let authorization = head
                    .lines()
                    .find_map(|l| l.strip_prefix("authorization:"))
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                // Only an authorized request reaches the registry. The operator's restore
                // endpoint (an `http` step's default body names the site) marks it restoring.
                let answer = path.ends_with("/registry").then(|| {
                    (authorization == "bearer s3cret")
                        .then(|| registry.lock().unwrap().answer(&body).to_string())
                });
                if path.ends_with("/restore-site") {
                    registry.lock().unwrap().restore(&body);
                }
                let seen = {
                    let mut log = log.lock().unwrap();
                    log.push(Received {
                        path: path.clone(),
                        key: key.clone(),
                        body,
                        authorization: authorization.clone(),
                    });
                    log.iter().filter(|r| r.key == key).count()
                };
                let (status, body) = if let Some(answer) = &answer {
                    if let Some(answer) = answer {
                        ("200 OK", answer.as_str())
                    } else {
                        ("401 Unauthorized", "{}")
                    }
                } else if path.ends_with("/registry-down") {
                    ("503 Service Unavailable", "down")
                } else if path.ends_with("/bad") {
                    ("400 Bad Request", "{\"error\":\"unknown site\"}")
                } else if path.ends_with("/refuse-once") && seen == 1 {
                    ("400 Bad Request", "{\"error\":\"mailbox full\"}")
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
