//! `validate`: the restored product of a site must match its snapshot — integrity check, row
//! counts, content checksum, the full-text index, cross-product references. On a mismatch the site
//! is quarantined with the reason (it will never be reactivated) and the step fails permanently;
//! the batch carries on. Params: `platform`, `shard`.

use async_trait::async_trait;

use super::platform_common::{error, fetched, now, on_platform, product, site};
use super::{StepContext, StepError, StepKind, StepOutput};
use crate::platform::PlatformError;

pub struct Validate;

#[async_trait]
impl StepKind for Validate {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError> {
        on_platform(&ctx, |platform, ctx| {
            let (site, product) = (site(&ctx)?, product(&ctx)?);
            let shard = ctx
                .param("shard")
                .ok_or_else(|| StepError::Permanent("validate needs the param 'shard'".into()))?;
            let snapshot = fetched(&ctx, shard)?.join("shard.sqlite");
            match platform.validate(site, product, &snapshot, now()) {
                Ok(()) => Ok(serde_json::json!({ "validated": true })),
                Err(PlatformError::Invalid(failure)) => {
                    let reason = failure.to_string();
                    platform.quarantine(site, &reason, now()).map_err(error)?;
                    Err(StepError::Quarantine(reason))
                }
                Err(e) => Err(error(e)),
            }
        })
        .await
    }
}
