//! `restore-tenant`: copies exactly one site's rows for one product from the fetched shard
//! snapshot into the live shard, in one transaction, touching no other site's rows, then its
//! attachments from the fetched archive. Running it twice gives the identical result.
//! Params: `platform`, `shard` (the unit of the shard fetch).

use async_trait::async_trait;

use super::platform_common::{error, fetched, on_platform, product, site};
use super::{StepContext, StepError, StepKind, StepOutput};

pub struct RestoreTenant;

#[async_trait]
impl StepKind for RestoreTenant {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError> {
        on_platform(&ctx, |platform, ctx| {
            let (site, product) = (site(&ctx)?, product(&ctx)?);
            let shard = ctx.param("shard").ok_or_else(|| {
                StepError::Permanent("restore-tenant needs the param 'shard'".into())
            })?;
            let snapshot = fetched(&ctx, shard)?.join("shard.sqlite");
            let rows = platform
                .restore_tenant(site, product, &snapshot)
                .map_err(error)?;
            let files = fetched(&ctx, &format!("{site}/{product}"))?.join("attachments.tar.d");
            let attachments = platform
                .restore_attachments(site, product, &files)
                .map_err(error)?;
            Ok(serde_json::json!({
                "rows_inserted": rows.inserted,
                "rows_present": rows.present,
                "attachments_copied": attachments.copied,
                "attachments_present": attachments.present,
            }))
        })
        .await
    }
}
