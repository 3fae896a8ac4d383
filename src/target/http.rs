//! A registry behind an HTTP endpoint (`[target] registry = "https://…"`): drover POSTs
//! `{"ids": [...]}` (at most `BATCH` IDs a request) and reads `{"entries": [...]}`, one entry
//! per ID the registry knows (`entries::Entry`). A bearer token comes from the environment
//! (`DROVER_REGISTRY_TOKEN`), never from the request. Plain `http://` is accepted only to a
//! loopback address. Busy or failing answers are retried a few times; then it is a clear error,
//! never a pass.

use std::collections::HashMap;
use std::time::Duration;

use super::entries::{self, Entry};
use super::{Identity, RegistryError, SiteRecord, SiteRegistry};

/// The environment variable holding the bearer token, if the endpoint wants one.
pub const TOKEN_ENV: &str = "DROVER_REGISTRY_TOKEN";
/// IDs per request.
const BATCH: usize = 1000;
/// One request's time limit.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts per batch, for connection failures and 429/5xx answers.
const ATTEMPTS: u32 = 3;

/// Whether a `[target] registry` names an HTTP endpoint.
pub fn is_url(registry: &str) -> bool {
    registry.starts_with("https://") || registry.starts_with("http://")
}

pub struct HttpRegistry {
    url: reqwest::Url,
    token: Option<String>,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

#[derive(serde::Deserialize)]
struct Answer {
    entries: Vec<Entry>,
}

impl HttpRegistry {
    pub fn new(url: &str) -> Result<HttpRegistry, RegistryError> {
        let config = |m: String| RegistryError::Config(m);
        let url = reqwest::Url::parse(url)
            .map_err(|e| config(format!("[target] registry '{url}' is not a URL: {e}")))?;
        if !url.password().unwrap_or("").is_empty() || !url.username().is_empty() {
            return Err(config(format!(
                "[target] registry carries credentials: a request is shared and kept; remove \
                 them from the URL and set {TOKEN_ENV} in the environment instead"
            )));
        }
        let host = url.host_str().unwrap_or("");
        let loopback = host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if url.scheme() == "http" && !loopback {
            return Err(config(format!(
                "[target] registry '{url}' is plain http to another machine: use https"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| config(format!("cannot set up an HTTP client: {e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| config(format!("cannot start an HTTP runtime: {e}")))?;
        Ok(HttpRegistry {
            url,
            token: std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()),
            client,
            runtime,
        })
    }

    fn failed(&self, reason: String) -> RegistryError {
        RegistryError::Unreachable {
            registry: self.url.to_string(),
            reason,
        }
    }

    /// The entries for `ids`, batch by batch.
    fn lookup(&self, ids: &[&str]) -> Result<Vec<Entry>, RegistryError> {
        let mut out = Vec::new();
        for batch in ids.chunks(BATCH) {
            // On a thread of its own: preflight may be called where a runtime already runs.
            let answer = std::thread::scope(|s| {
                s.spawn(|| self.runtime.block_on(self.batch(batch)))
                    .join()
                    .unwrap_or_else(|_| Err(self.failed("the lookup panicked".into())))
            })?;
            out.extend(answer);
        }
        Ok(out)
    }

    async fn batch(&self, ids: &[&str]) -> Result<Vec<Entry>, RegistryError> {
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            if attempt > 1 {
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt - 2))).await;
            }
            let mut request = self
                .client
                .post(self.url.clone())
                .json(&serde_json::json!({ "ids": ids }));
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = crate::redact::text(&e.to_string());
                    continue;
                }
            };
            let status = response.status();
            if status.is_server_error() || status.as_u16() == 429 {
                last = format!("it answered {status}");
                continue;
            }
            if !status.is_success() {
                let hint = if status.as_u16() == 401 || status.as_u16() == 403 {
                    format!(" (is {TOKEN_ENV} set to a token it accepts?)")
                } else {
                    String::new()
                };
                return Err(self.failed(format!("it answered {status}{hint}")));
            }
            let answer: Answer = response.json().await.map_err(|e| {
                self.failed(format!(
                    "its answer is not {{\"entries\": [...]}} (docs/request-format.md): {e}"
                ))
            })?;
            return Ok(answer.entries);
        }
        Err(self.failed(format!("{last}, {ATTEMPTS} times")))
    }
}

impl SiteRegistry for HttpRegistry {
    fn describe(&self) -> String {
        self.url.to_string()
    }

    fn identity(&self) -> Result<String, RegistryError> {
        let mut url = self.url.clone();
        url.set_query(None);
        url.set_fragment(None);
        Ok(format!(
            "endpoint {}://{}:{}{}",
            url.scheme(),
            url.host_str().unwrap_or("").to_ascii_lowercase(),
            url.port_or_known_default().unwrap_or(0),
            url.path().trim_end_matches('/')
        ))
    }

    fn sites(&self, ids: &[&str]) -> Result<HashMap<String, SiteRecord>, RegistryError> {
        let wanted: std::collections::HashSet<&str> = ids.iter().copied().collect();
        let entries: Vec<Entry> = self
            .lookup(ids)?
            .into_iter()
            .filter(|e| wanted.contains(e.id.as_str()))
            .collect();
        entries::sites(&entries, &self.describe())
    }

    fn identify(&self, id: &str) -> Result<Identity, RegistryError> {
        match self.lookup(&[id])?.into_iter().find(|e| e.id == id) {
            Some(e) => e.identity(&self.describe()),
            None => Ok(Identity::Unknown),
        }
    }
}
