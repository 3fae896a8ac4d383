//! `notify`: tells a site's restored key contacts that it is back — a message in the platform's
//! outbox (once per idempotency key), with the products restored and the data's point in time.
//! Params: `platform`, `point_in_time`, optional `products`.

use async_trait::async_trait;

use super::platform_common::{error, now, open, site};
use super::{StepContext, StepError, StepKind, StepOutput};

pub struct Notify;

#[async_trait]
impl StepKind for Notify {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError> {
        let site = site(&ctx)?;
        let platform = open(&ctx)?;
        let contacts = platform.contacts(site).map_err(error)?;
        let record = platform.site(site).map_err(error)?;
        let message = serde_json::json!({
            "site": site,
            "to": contacts.iter().map(|c| c.email.clone()).collect::<Vec<_>>(),
            "products": record.products,
            "point_in_time": ctx.param("point_in_time"),
            "restored_at": now().to_rfc3339(),
        });
        let sent = platform
            .notify(site, &ctx.idempotency_key, &message, now())
            .map_err(error)?;
        Ok(serde_json::json!({ "notified": contacts.len(), "new": sent }))
    }
}
