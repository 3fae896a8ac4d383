//! `reactivate`: flips a site back to active once every product validated (or, for a
//! soft-deleted site, at once) — exactly once: a repeat is a no-op, not a second reactivation
//! event. Records the time. Params: `platform`.

use async_trait::async_trait;

use super::platform_common::{error, now, on_platform, site};
use super::{StepContext, StepError, StepKind, StepOutput};

pub struct Reactivate;

#[async_trait]
impl StepKind for Reactivate {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError> {
        on_platform(&ctx, |platform, ctx| {
            let first = platform.reactivate(site(&ctx)?, now()).map_err(error)?;
            Ok(serde_json::json!({ "reactivated": first }))
        })
        .await
    }
}
