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
}

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
                let seen = {
                    let mut log = log.lock().unwrap();
                    log.push(Received {
                        path: path.clone(),
                        key: key.clone(),
                        body,
                    });
                    log.iter().filter(|r| r.key == key).count()
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
