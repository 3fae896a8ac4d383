//! `fetch`: downloads the snapshot of a unit (a shard, or a site's product) that the request's
//! point in time calls for into the step's staging directory, verified object by object.
//! Params: `source` (backup store URL), `unit`, `point_in_time` (RFC 3339), and optionally
//! `window` (default 24h), `part_size` (bytes, default 8 MiB), `concurrency` (default 8).
//! For a step that belongs to a site, the manifest must name that site (tenant check).
//! Output: the `FetchReport` (snapshot, RPO, directory, objects, bytes).
//!
//! When a site's own backup is bad (an object fails its checksum, the manifest names another
//! tenant, an archive is broken), the step fails with `StepError::Quarantine`: the site is
//! quarantined, never reactivated, and the batch carries on. With the optional `platform` param
//! the site is also quarantined in that platform's registry, with the reason. A bad shared unit
//! (a shard snapshot) fails permanently and blocks the sites that need it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    StepContext, StepError, StepKind, StepOutput, duration_param, number_param, platform_common,
};
use crate::backup::download::{self, FetchOptions, Target};
use crate::backup::{self, BackupStore};
use crate::limits;

#[derive(Default)]
pub struct Fetch {
    /// One open store per source, shared by every fetch of the run.
    stores: tokio::sync::Mutex<HashMap<String, Arc<dyn BackupStore>>>,
}

impl Fetch {
    async fn store(&self, source: &str) -> Result<Arc<dyn BackupStore>, StepError> {
        let mut stores = self.stores.lock().await;
        if let Some(s) = stores.get(source) {
            return Ok(Arc::clone(s));
        }
        let store = backup::open(source, Path::new("/"))
            .await
            .map_err(|e| StepError::Permanent(e.to_string()))?;
        stores.insert(source.to_owned(), Arc::clone(&store));
        Ok(store)
    }
}

#[async_trait]
impl StepKind for Fetch {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError> {
        let required = |name: &str| {
            ctx.param(name)
                .ok_or_else(|| StepError::Permanent(format!("fetch needs the param '{name}'")))
        };
        let source = required("source")?;
        let unit = required("unit")?;
        let pit = required("point_in_time")?;
        let point_in_time: DateTime<Utc> = DateTime::parse_from_rfc3339(pit)
            .map_err(|e| StepError::Permanent(format!("point_in_time '{pit}': {e}")))?
            .with_timezone(&Utc);
        let mut opts = FetchOptions::default();
        if let Some(w) = duration_param(&ctx, "window", limits::MAX_WINDOW)? {
            opts.window = w;
        }
        if let Some(p) = number_param(&ctx, "part_size", limits::FETCH_PART_SIZE)? {
            opts.part_size = p;
        }
        if let Some(c) = number_param(&ctx, "concurrency", 1..=limits::MAX_FETCH_CONCURRENCY)? {
            opts.concurrency = c;
        }
        let store = self.store(source).await?;
        let target = Target {
            unit,
            site: ctx.site.as_deref(),
            point_in_time,
        };
        match download::fetch(store.as_ref(), &target, &ctx.staging, &opts, &ctx.cancel).await {
            Ok(report) => Ok(serde_json::to_value(report).expect("report serializes")),
            Err(e) if e.is_retryable() => Err(StepError::Retryable(e.to_string())),
            Err(e) if e.is_bad_data() && ctx.site.is_some() => quarantine(&ctx, unit, &e),
            Err(e) => Err(StepError::Permanent(e.to_string())),
        }
    }
}

/// The site's own backup of `unit` is bad: quarantine the site (in the platform too, when the
/// step names one).
fn quarantine(
    ctx: &StepContext,
    unit: &str,
    e: &download::FetchError,
) -> Result<StepOutput, StepError> {
    let reason = format!("the backup of {unit} failed verification: {e}");
    if ctx.param("platform").is_some() {
        let site = platform_common::site(ctx)?;
        platform_common::open(ctx)?
            .quarantine(site, &reason, platform_common::now())
            .map_err(platform_common::error)?;
    }
    Err(StepError::Quarantine(reason))
}
