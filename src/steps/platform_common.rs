//! What the reference-platform step kinds share: running platform work off the async threads
//! where the step's timeout and the run's cancellation reach it, opening the platform named by
//! the `platform` param, finding an upstream fetch's directory, and mapping platform errors.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{StepContext, StepError};
use crate::platform::{Platform, PlatformError};

/// Runs synchronous platform work (SQLite, files) on a blocking thread and waits for it beside
/// the step's cancellation (Ctrl-C, or its `timeout`: the scheduler cancels the step and waits
/// for it to wind down). Then the work is told to stop — a wait for a busy shard or a long query
/// ends at its next check and its transaction rolls back — and is awaited, so no attempt is
/// still at work when the next one starts.
pub(crate) async fn on_platform<T, F>(ctx: &StepContext, work: F) -> Result<T, StepError>
where
    T: Send + 'static,
    F: FnOnce(Platform, StepContext) -> Result<T, StepError> + Send + 'static,
{
    let mut platform = open(ctx)?;
    let stop = StopOnDrop(platform.stop_flag());
    let owned = ctx.clone();
    let mut handle = tokio::task::spawn_blocking(move || work(platform, owned));
    let ended = |e: tokio::task::JoinError| {
        StepError::Retryable(format!(
            "{}: the platform work ended abnormally: {e}",
            ctx.step_id
        ))
    };
    tokio::select! {
        joined = &mut handle => joined.map_err(ended)?,
        () = ctx.cancel.cancelled() => {
            stop.0.store(true, Ordering::Relaxed);
            // It stops within one poll of SQLite's busy wait or query; its result is dropped.
            let _ = handle.await;
            Err(StepError::Retryable("cancelled".into()))
        }
    }
}

/// Sets the stop flag when dropped: on every way out of [`on_platform`], including a timeout.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The platform directory from the `platform` param.
pub(crate) fn open(ctx: &StepContext) -> Result<Platform, StepError> {
    let dir = ctx.param("platform").ok_or_else(|| {
        StepError::Permanent(
            "the step needs the param 'platform' (the platform directory, usually {target})".into(),
        )
    })?;
    Platform::open(dir).map_err(error)
}

/// The site this step belongs to.
pub(crate) fn site(ctx: &StepContext) -> Result<&str, StepError> {
    ctx.site
        .as_deref()
        .ok_or_else(|| StepError::Permanent(format!("{} is not a site's step", ctx.step_id)))
}

pub(crate) fn product(ctx: &StepContext) -> Result<&str, StepError> {
    ctx.product
        .as_deref()
        .ok_or_else(|| StepError::Permanent(format!("{} is not a product's step", ctx.step_id)))
}

/// The directory an upstream `fetch` of `unit` filled (from its recorded output).
pub(crate) fn fetched(ctx: &StepContext, unit: &str) -> Result<PathBuf, StepError> {
    ctx.upstream
        .values()
        .find(|o| o["unit"] == unit)
        .and_then(|o| o["dir"].as_str())
        .map(PathBuf::from)
        .ok_or_else(|| {
            StepError::Permanent(format!(
                "{} needs a fetch of unit '{unit}' before it (add it to `after`)",
                ctx.step_id
            ))
        })
}

pub(crate) fn error(e: PlatformError) -> StepError {
    if e.is_retryable() {
        StepError::Retryable(e.to_string())
    } else {
        StepError::Permanent(e.to_string())
    }
}

pub(crate) fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}
