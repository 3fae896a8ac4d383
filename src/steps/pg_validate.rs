//! `pg-validate`: checks a restored tenant in a PostgreSQL shard against its tenant slice: per
//! table the tenant's row count and order-independent checksum, and every foreign key of its
//! rows. A difference quarantines the site (and, with `platform`, in the reference platform's
//! registry too); success there records the product as validated.
//!
//! Params: `database` or `database_file`; `unit` (default `{site}/{product}`); `schema`;
//! `tenant` (default `{site}`); `platform` (optional).

use async_trait::async_trait;

use super::pg_common::{cancellable, connect, slice_dir, step_error, tenant, with_platform};
use super::platform_common::now;
use super::{StepContext, StepError, StepKind, StepOutput};
use crate::pgslice;

pub struct PgValidate;

#[async_trait]
impl StepKind for PgValidate {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError> {
        let dir = slice_dir(&ctx)?;
        let tenant = tenant(&ctx)?;
        let checked = cancellable(&ctx, async {
            let (db, secrets) = connect(&ctx).await?;
            let done = pgslice::validate_tenant(&db, &dir, ctx.param("schema"), &tenant)
                .await
                .map_err(|e| step_error(&e, &secrets))?;
            db.release();
            Ok(done)
        })
        .await;
        match checked {
            Ok(done) => {
                with_platform(&ctx, |platform, site, product| {
                    platform.mark_validated(site, product, now())
                })
                .await?;
                Ok(serde_json::to_value(done).expect("a validation serializes"))
            }
            Err(StepError::Quarantine(reason)) => {
                let why = reason.clone();
                with_platform(&ctx, move |platform, site, _| {
                    platform.quarantine(site, &why, now()).map(|_| ())
                })
                .await?;
                Err(StepError::Quarantine(reason))
            }
            Err(e) => Err(e),
        }
    }
}
