//! `notify`: tells a site's restored key contacts that it is back — a message in the platform's
//! outbox (once per idempotency key) with the products restored, the data's point in time and the
//! time to restore (deletion to reactivation). Params: `platform`, `point_in_time`, and
//! optionally `webhook`: a URL the same message is POSTed to as JSON, with the step's
//! `Idempotency-Key` and any `header.NAME` params (2xx success; 429 and 5xx retried; any other
//! status fails the step). The message is built from the registry, so every attempt sends the
//! same one.

use async_trait::async_trait;

use super::http::post_json;
use super::platform_common::{error, now, on_platform, site};
use super::{StepContext, StepError, StepKind, StepOutput};
use crate::platform::Platform;

#[derive(Default)]
pub struct Notify {
    client: reqwest::Client,
}

#[async_trait]
impl StepKind for Notify {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError> {
        let (message, contacts, new) = on_platform(&ctx, outbox).await?;
        let webhook = match ctx.param("webhook") {
            Some(url) => Some(post_json(&self.client, &ctx, url, &message).await?.0),
            None => None,
        };
        Ok(serde_json::json!({ "notified": contacts, "new": new, "webhook_status": webhook }))
    }
}

/// Builds the site's message from the registry and puts it in the outbox (once per key).
/// Returns the message, how many contacts it is for, and whether it is new.
fn outbox(
    platform: Platform,
    ctx: StepContext,
) -> Result<(serde_json::Value, usize, bool), StepError> {
    let site = site(&ctx)?;
    let contacts = platform.contacts(site).map_err(error)?;
    let record = platform.site(site).map_err(error)?;
    let at = |t: Option<i64>| {
        t.and_then(|s| chrono::DateTime::from_timestamp(s, 0))
            .map(|t| t.to_rfc3339())
    };
    let message = serde_json::json!({
        "site": site,
        "to": contacts.iter().map(|c| c.email.clone()).collect::<Vec<_>>(),
        "products": record.products,
        "point_in_time": ctx.param("point_in_time"),
        "deleted_at": at(record.deleted_at),
        "restored_at": at(record.reactivated_at),
        "time_to_restore_s": record.deleted_at.zip(record.reactivated_at).map(|(d, r)| r - d),
    });
    let new = platform
        .notify(site, &ctx.idempotency_key, &message, now())
        .map_err(error)?;
    Ok((message, contacts.len(), new))
}
