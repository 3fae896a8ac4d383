//! `http`: a JSON POST — for webhooks and operators' own restore APIs.
//!
//! Params: `url`; `body` (JSON text, templated; default: an object with the step, site, product,
//! attempt and idempotency key); `header.NAME` for extra headers. Every request carries
//! `Idempotency-Key: <key>`, the same for every attempt and resume of the step.
//!
//! 2xx is success (the response body, JSON if it parses, is the output); 429 and 5xx, timeouts
//! and connection failures are retryable; any other status is permanent.

use async_trait::async_trait;

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
            None => {
                serde_json::json!({ "step": ctx.step_id, "site": ctx.site, "product": ctx.product, "attempt": ctx.attempt, "idempotency_key": ctx.idempotency_key })
            }
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
    let mut req = client
        .post(url)
        .header("Idempotency-Key", &ctx.idempotency_key)
        .json(body);
    for (key, value) in &ctx.params {
        if let Some(name) = key.strip_prefix("header.") {
            req = req.header(name, value);
        }
    }
    let resp = tokio::select! {
        r = req.send() => r.map_err(|e| StepError::Retryable(format!("POST {url}: {e}")))?,
        _ = ctx.cancel.cancelled() => return Err(StepError::Retryable("cancelled".into())),
    };
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| StepError::Retryable(format!("POST {url}: reading the response: {e}")))?;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(BODY_LIMIT)]).into_owned();
    if status.is_success() {
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::String(text));
        return Ok((status.as_u16(), body));
    }
    let message = format!("POST {url}: HTTP {}: {}", status.as_u16(), text.trim());
    if status.as_u16() == 429 || status.is_server_error() {
        Err(StepError::Retryable(message))
    } else {
        Err(StepError::Permanent(message))
    }
}
