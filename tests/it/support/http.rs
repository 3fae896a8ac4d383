//! A minimal HTTP/1.1 server on loopback for the `http` and `notify` kinds: it records every
//! request and answers by path — `…/bad` 400, `…/flaky` 503 to the first request with a given
//! idempotency key, anything else 200 with a JSON body.

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

/// What `…/registry` answers (with `authorization: bearer s3cret`; 401 without): a site
/// registry's entries, every one whatever was asked.
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

/// How many requests carried `key`.
pub fn count(log: &Log, key: &str) -> usize {
    log.lock().unwrap().iter().filter(|r| r.key == key).count()
}

/// Serves on 127.0.0.1:0 until the runtime ends; returns the address.
pub async fn serve(log: Log) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let log = Arc::clone(&log);
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
                let (status, body) = if path.ends_with("/registry") {
                    if authorization == "bearer s3cret" {
                        ("200 OK", REGISTRY_ENTRIES)
                    } else {
                        ("401 Unauthorized", "{}")
                    }
                } else if path.ends_with("/registry-down") {
                    ("503 Service Unavailable", "down")
                } else if path.ends_with("/bad") {
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
