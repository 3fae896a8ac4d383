//! `rebuild-index`: rebuilds a site's full-text entries for one product from its restored data.
//! Params: `platform`.

use async_trait::async_trait;

use super::platform_common::{error, on_platform, product, site};
use super::{StepContext, StepError, StepKind, StepOutput};

pub struct RebuildIndex;

#[async_trait]
impl StepKind for RebuildIndex {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError> {
        on_platform(&ctx, |platform, ctx| {
            let entries = platform
                .rebuild_index(site(&ctx)?, product(&ctx)?)
                .map_err(error)?;
            Ok(serde_json::json!({ "index_entries": entries }))
        })
        .await
    }
}
