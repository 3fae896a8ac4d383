//! `restore-attachments`: the reference platform's attachments of one site's product, from the
//! fetched `{site}/{product}` unit (`attachments.tar`, unpacked by the fetch), into the live
//! attachments directory. Files already there are kept. For platforms whose rows another kind
//! restores (`pg-restore-tenant`); `restore-tenant` does both for SQLite shards.
//! Params: `platform`, `unit` (default `{site}/{product}`).

use async_trait::async_trait;

use super::platform_common::{error, fetched, on_platform, product, site};
use super::{StepContext, StepError, StepKind, StepOutput};

pub struct RestoreAttachments;

#[async_trait]
impl StepKind for RestoreAttachments {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError> {
        on_platform(&ctx, |platform, ctx| {
            let (site, product) = (site(&ctx)?, product(&ctx)?);
            let unit = match ctx.param("unit") {
                Some(u) => u.to_owned(),
                None => format!("{site}/{product}"),
            };
            let files = fetched(&ctx, &unit)?.join("attachments.tar.d");
            let done = platform
                .restore_attachments(site, product, &files)
                .map_err(error)?;
            Ok(serde_json::json!({
                "attachments_copied": done.copied,
                "attachments_present": done.present,
            }))
        })
        .await
    }
}
