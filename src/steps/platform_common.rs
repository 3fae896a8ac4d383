//! What the reference-platform step kinds share: opening the platform named by the `platform`
//! param, finding an upstream fetch's directory, and mapping platform errors to step errors.

use std::path::PathBuf;

use super::{StepContext, StepError};
use crate::platform::{Platform, PlatformError};

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
