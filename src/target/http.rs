//! A registry behind an HTTP endpoint (`[target] registry = "https://…"`): drover POSTs
//! `{"op": "lookup", "ids": [...]}` (at most `BATCH` IDs a request) and reads `{"entries":
//! [...]}`, one entry per ID the registry knows (`entries::Entry`); claims and reactivation are
//! POSTed to the same endpoint with their own `op` (`writes`). A bearer token comes from the environment
//! (`DROVER_REGISTRY_TOKEN`), never from the request. Plain `http://` is accepted only to a
//! loopback address. Busy or failing answers are retried a few times; then it is a clear error,
//! never a pass.

use std::time::Duration;

use super::entries::{self, Entry};
use super::{Claim, ClaimError, RegistryError, SiteClaims, SiteRegistry, SiteStates, writes};

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
            let answer: Answer = self.call(serde_json::json!({ "op": "lookup", "ids": batch }))?;
            out.extend(answer.entries);
        }
        Ok(out)
    }

    /// POSTs `body` and reads the answer as a `T`.
    fn call<T: serde::de::DeserializeOwned + Send>(
        &self,
        body: serde_json::Value,
    ) -> Result<T, RegistryError> {
        // On a thread of its own: preflight may be called where a runtime already runs.
        std::thread::scope(|s| {
            s.spawn(|| self.runtime.block_on(self.post(&body)))
                .join()
                .unwrap_or_else(|_| Err(self.failed("the request panicked".into())))
        })
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        body: &serde_json::Value,
    ) -> Result<T, RegistryError> {
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            if attempt > 1 {
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt - 2))).await;
            }
            let mut request = self.client.post(self.url.clone()).json(body);
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
            let op = body["op"].as_str().unwrap_or_default();
            return response.json().await.map_err(|e| {
                self.failed(format!(
                    "its answer to {op} is not what docs/request-format.md says it is: {e}"
                ))
            });
        }
        Err(self.failed(format!("{last}, {ATTEMPTS} times")))
    }
}

impl entries::Lookup for HttpRegistry {
    fn lookup(&self, ids: &[&str]) -> Result<Vec<Entry>, RegistryError> {
        HttpRegistry::lookup(self, ids)
    }

    fn described(&self) -> String {
        self.url.to_string()
    }

    fn identity(&self) -> String {
        let mut url = self.url.clone();
        url.set_query(None);
        url.set_fragment(None);
        format!(
            "endpoint {}://{}:{}{}",
            url.scheme(),
            url.host_str().unwrap_or("").to_ascii_lowercase(),
            url.port_or_known_default().unwrap_or(0),
            url.path().trim_end_matches('/')
        )
    }
}

impl SiteClaims for HttpRegistry {
    fn claim(
        &self,
        sites: &[&str],
        me: &Claim,
        take_over: bool,
    ) -> Result<Vec<(String, Claim)>, ClaimError> {
        let answer: writes::ClaimAnswer = self
            .call(serde_json::json!({
                "op": "claim", "sites": sites, "run": me, "take_over": take_over,
            }))
            .map_err(|e| ClaimError::from_registry(&self.describe(), e))?;
        answer.into_result(&self.describe())
    }

    fn release(&self, run_id: &str) -> Result<(), ClaimError> {
        let _: serde_json::Value = self
            .call(serde_json::json!({ "op": "release", "run_id": run_id }))
            .map_err(|e| ClaimError::from_registry(&self.describe(), e))?;
        Ok(())
    }
}

impl SiteStates for HttpRegistry {
    fn reactivate(&self, site: &str, key: &str) -> Result<bool, RegistryError> {
        let expected: Vec<&str> = super::REACTIVATE_FROM.iter().map(|s| s.as_str()).collect();
        let answer: writes::ReactivateAnswer = self.call(serde_json::json!({
            "op": "reactivate", "site": site, "key": key, "expected": expected,
        }))?;
        answer.checked(self, site)
    }
}
