//! `http`: a JSON POST — for webhooks and operators' own restore APIs.
//!
//! Params: `url`; `body` (JSON text, templated; default: an object with the step, site, product,
//! attempt, idempotency key and `upstream`, the outputs of the steps it depends on by step ID: a
//! `fetch` names the snapshot it chose); `header.NAME` for extra headers. Every request carries
//! `Idempotency-Key: <key>`, the same for every attempt and resume of the step.
//!
//! 2xx is success (the response body, JSON if it parses, is the output); 429 and 5xx, timeouts
//! and connection failures are retryable; any other status is permanent.
//!
//! Credentials belong in the environment, not the workflow: `url` and `header.NAME` may use
//! `{env:NAME}`, resolved only now. Errors name the URL as the
//! workflow wrote it, with any literal password or token redacted, and hide resolved secrets.

use async_trait::async_trait;

use super::secret::Resolved;
use super::{StepContext, StepError, StepKind, StepOutput};

/// How much of a response body is kept.
const BODY_LIMIT: usize = 4096;

#[derive(Default)]
pub struct Http {
    client: reqwest::Client,
}

#[async_trait]
impl StepKind for Http {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError> {
        let url = ctx
            .param("url")
            .ok_or_else(|| StepError::Permanent("http needs the param 'url'".into()))?;
        let body = match ctx.param("body") {
            Some(text) => serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| StepError::Permanent(format!("param body is not JSON: {e}")))?,
            None => serde_json::json!({
                "step": ctx.step_id,
                "site": ctx.site,
                "product": ctx.product,
                "attempt": ctx.attempt,
                "idempotency_key": ctx.idempotency_key,
                "upstream": ctx.upstream,
            }),
        };
        let (status, body) = post_json(&self.client, &ctx, url, &body).await?;
        Ok(serde_json::json!({ "status": status, "body": body }))
    }
}

/// POSTs `body` to `url` with the step's `Idempotency-Key` and its `header.NAME` params.
/// Returns the status and the response body (JSON if it parses); 429 and 5xx, timeouts and
/// connection failures are retryable errors, any other non-2xx status a permanent one.
pub(crate) async fn post_json(
    client: &reqwest::Client,
    ctx: &StepContext,
    url: &str,
    body: &serde_json::Value,
) -> Result<(u16, serde_json::Value), StepError> {
    let mut secrets = Resolved::default();
    // What messages call this request: the URL as written, credentials redacted.
    let shown = crate::redact::text(url);
    let resolved_url = secrets.resolve(url)?;
    let mut req = client
        .post(&resolved_url)
        .header("Idempotency-Key", &ctx.idempotency_key)
        .json(body);
    for (key, value) in &ctx.params {
        if let Some(name) = key.strip_prefix("header.") {
            req = req.header(name, secrets.resolve(value)?);
        }
    }
    let fail = |what: String| StepError::Retryable(secrets.hide(&crate::redact::text(&what)));
    let resp = tokio::select! {
        // `without_url`: reqwest's message would quote the resolved URL.
        r = req.send() => r.map_err(|e| fail(format!("POST {shown}: {}", e.without_url())))?,
        _ = ctx.cancel.cancelled() => return Err(StepError::Retryable("cancelled".into())),
    };
    let status = resp.status();
    let bytes = read_body(resp).await.map_err(|e| {
        fail(format!(
            "POST {shown}: reading the response: {}",
            e.without_url()
        ))
    })?;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(BODY_LIMIT)]).into_owned();
    let text = secrets.hide(&text);
    if status.is_success() {
        let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(v) => serde_json::from_str(&secrets.hide(&v.to_string())).unwrap_or(v),
            Err(_) => serde_json::Value::String(text),
        };
        return Ok((status.as_u16(), body));
    }
    let message = format!("POST {shown}: HTTP {}: {}", status.as_u16(), text.trim());
    let message = secrets.hide(&crate::redact::text(&message));
    if status.as_u16() == 429 || status.is_server_error() {
        Err(StepError::Retryable(message))
    } else {
        Err(StepError::Permanent(message))
    }
}

/// The largest response body read (a larger one is cut here; only its start is kept anyway).
const READ_LIMIT: usize = 1 << 20;

/// The response body, at most [`READ_LIMIT`] bytes of it.
async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = READ_LIMIT - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= READ_LIMIT {
            break;
        }
    }
    Ok(body)
}
