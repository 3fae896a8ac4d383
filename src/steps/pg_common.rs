//! What the PostgreSQL step kinds (`pg-restore-tenant`, `pg-validate`) share: the database named
//! by reference (`database = "{env:NAME}"`, or `database_file`), the fetched tenant slice, the
//! optional reference-platform registry, and how a slice's errors become step errors.

use std::path::PathBuf;

use super::platform_common::fetched;
use super::secret::Resolved;
use super::{StepContext, StepError};
use crate::pgslice::{self, Pooled, SliceError};

/// Connects to the step's database: `database` (a URL, usually `{env:NAME}` so that it is never
/// stored) or `database_file` (a file holding the URL). The password comes from the URL so
/// named or `PGPASSWORD`; it is never recorded or shown.
pub(crate) async fn connect(ctx: &StepContext) -> Result<(Pooled, Resolved), StepError> {
    let mut secrets = Resolved::default();
    let url = match (ctx.param("database"), ctx.param("database_file")) {
        (Some(value), None) => secrets.resolve(value)?,
        (None, Some(file)) => read_url(file)?,
        _ => {
            return Err(StepError::Permanent(format!(
                "{} needs exactly one of the params 'database' (a postgres:// URL, best \
                 \"{{env:NAME}}\") and 'database_file' (a file holding the URL)",
                ctx.step_id
            )));
        }
    };
    let db = pgslice::pooled(&url, "drover")
        .await
        .map_err(|e| step_error(&e, &secrets))?;
    Ok((db, secrets))
}

fn read_url(file: &str) -> Result<String, StepError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| StepError::Permanent(format!("database_file {file}: cannot read it: {e}")))?;
    pgslice::url_in(&text).map(str::to_owned).ok_or_else(|| {
        StepError::Permanent(format!(
            "database_file {file} holds no URL: write one postgres:// URL in it"
        ))
    })
}

/// The directory of the upstream fetch of the slice: the `unit` param, by default
/// `<site>/<product>`.
pub(crate) fn slice_dir(ctx: &StepContext) -> Result<PathBuf, StepError> {
    let unit = match ctx.param("unit") {
        Some(u) => u.to_owned(),
        None => format!(
            "{}/{}",
            super::platform_common::site(ctx)?,
            super::platform_common::product(ctx)?
        ),
    };
    fetched(ctx, &unit)
}

/// The tenant restored: the `tenant` param, by default the site.
pub(crate) fn tenant(ctx: &StepContext) -> Result<String, StepError> {
    match ctx.param("tenant") {
        Some(t) => Ok(t.to_owned()),
        None => super::platform_common::site(ctx).map(str::to_owned),
    }
}

/// A slice error as the step's: bad or differing data quarantines the site, a broken
/// connection is worth another attempt, the rest is permanent. Secrets are hidden again.
pub(crate) fn step_error(e: &SliceError, secrets: &Resolved) -> StepError {
    let text = secrets.hide(&e.to_string());
    if e.quarantines() {
        StepError::Quarantine(text)
    } else if e.is_retryable() {
        StepError::Retryable(text)
    } else {
        StepError::Permanent(text)
    }
}

/// Runs `work` with the reference platform named by the `platform` param, when there is one, on
/// a blocking thread (the registry is SQLite).
pub(crate) async fn with_platform<F>(ctx: &StepContext, work: F) -> Result<(), StepError>
where
    F: FnOnce(&crate::platform::Platform, &str, &str) -> Result<(), crate::platform::PlatformError>
        + Send
        + 'static,
{
    if ctx.param("platform").is_none() {
        return Ok(());
    }
    let platform = super::platform_common::open(ctx)?;
    let site = super::platform_common::site(ctx)?.to_owned();
    let product = super::platform_common::product(ctx)?.to_owned();
    tokio::task::spawn_blocking(move || work(&platform, &site, &product))
        .await
        .map_err(|e| StepError::Retryable(format!("the registry work ended abnormally: {e}")))?
        .map_err(super::platform_common::error)
}

/// Runs `work` until it ends or the step is cancelled. Cancelling drops the connection, and
/// the server rolls back whatever transaction it held.
pub(crate) async fn cancellable<T>(
    ctx: &StepContext,
    work: impl std::future::Future<Output = Result<T, StepError>>,
) -> Result<T, StepError> {
    tokio::select! {
        done = work => done,
        () = ctx.cancel.cancelled() => Err(StepError::Retryable("cancelled".into())),
    }
}
