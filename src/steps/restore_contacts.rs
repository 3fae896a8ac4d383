//! `restore-contacts`: brings a site's key contacts back first, from its fetched contacts export,
//! so they can be told when the site is back. Params: `platform`.

use async_trait::async_trait;

use super::platform_common::{error, fetched, on_platform, site};
use super::{StepContext, StepError, StepKind, StepOutput};

pub struct RestoreContacts;

#[async_trait]
impl StepKind for RestoreContacts {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError> {
        on_platform(&ctx, |platform, ctx| {
            let site = site(&ctx)?;
            let dir = fetched(&ctx, &format!("{site}/contacts"))?;
            let added = platform
                .restore_contacts(site, dir.join("contacts.json"))
                .map_err(error)?;
            Ok(serde_json::json!({ "contacts_added": added }))
        })
        .await
    }
}
