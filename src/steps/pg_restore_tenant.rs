//! `pg-restore-tenant`: copies one tenant's rows from a fetched tenant slice (the `pg-snapshot`
//! format, `pgslice`) into a live multi-tenant PostgreSQL shard, in one transaction, tables in
//! foreign-key order, proving that no other tenant's row changed, and never twice for one
//! idempotency key.
//!
//! Params: `database` or `database_file` (the shard, by reference); `unit` (the fetched slice,
//! default `{site}/{product}`); `schema` (default the slice's); `tenant` (default `{site}`);
//! `existing` = `refuse` (default: live rows of the tenant quarantine the site) or `replace`;
//! `skip_neighbour_check` (comma-separated tables whose other tenants are not digested);
//! `platform` (the reference platform: the site is moved to `restoring` first, never when live).

use async_trait::async_trait;

use super::pg_common::{cancellable, connect, slice_dir, step_error, tenant, with_platform};
use super::{StepContext, StepError, StepKind, StepOutput};
use crate::pgslice::{self, Existing, RestoreOptions};

pub struct PgRestoreTenant;

#[async_trait]
impl StepKind for PgRestoreTenant {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError> {
        let existing = match ctx.param("existing") {
            None | Some("refuse") => Existing::Refuse,
            Some("replace") => Existing::Replace,
            Some(other) => {
                return Err(StepError::Permanent(format!(
                    "param existing = '{other}': give \"refuse\" (the default) or \"replace\""
                )));
            }
        };
        let skip: Vec<String> = ctx
            .param("skip_neighbour_check")
            .map(|v| {
                v.split(',')
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let dir = slice_dir(&ctx)?;
        let tenant = tenant(&ctx)?;
        with_platform(&ctx, |platform, site, product| {
            platform.begin_product_restore(site, product)
        })
        .await?;
        cancellable(&ctx, async {
            let (mut db, secrets) = connect(&ctx).await?;
            let opts = RestoreOptions {
                schema: ctx.param("schema"),
                tenant: &tenant,
                existing,
                skip_neighbour_check: &skip,
                key: &ctx.idempotency_key,
            };
            let done = pgslice::restore_tenant(&mut db, &dir, &opts)
                .await
                .map_err(|e| step_error(&e, &secrets))?;
            db.release();
            Ok(serde_json::to_value(done).expect("a restore serializes"))
        })
        .await
    }
}
