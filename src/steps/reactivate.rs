//! `reactivate`: flips a site back to active once every product validated (or, for a
//! soft-deleted site, at once) — exactly once: a repeat is a no-op, not a second reactivation
//! event. Records the time. Params: `platform`: the reference platform's directory, or an
//! operator's registry (`{target}`: PostgreSQL, HTTP or a command), which does the
//! compare-and-set itself (`target::SiteStates`) before drover reads the state back.

use async_trait::async_trait;

use super::platform_common::{error, now, on_platform, site};
use super::{StepContext, StepError, StepKind, StepOutput};

pub struct Reactivate;

#[async_trait]
impl StepKind for Reactivate {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError> {
        let target = ctx.param("platform").unwrap_or_default().to_owned();
        if crate::target::keeps_states(&target) {
            let site = site(&ctx)?.to_owned();
            let key = ctx.idempotency_key.clone();
            // The registry's client is blocking and runs its own runtime: on a thread of its own.
            let done = tokio::task::spawn_blocking(move || {
                std::thread::scope(|s| {
                    s.spawn(|| {
                        crate::target::states(&target)?
                            .expect("keeps_states")
                            .reactivate(&site, &key)
                    })
                    .join()
                })
            })
            .await
            .map_err(|e| StepError::Retryable(format!("reactivation ended abnormally: {e}")))?
            .map_err(|_| StepError::Retryable("reactivation panicked".into()))?;
            return match done {
                Ok(first) => Ok(serde_json::json!({ "reactivated": first })),
                // The registry refused (the site is not in a state to reactivate): permanent.
                Err(
                    e @ (crate::target::RegistryError::Query { .. }
                    | crate::target::RegistryError::Refused { .. }),
                ) => Err(StepError::Permanent(e.to_string())),
                Err(e) => Err(StepError::Retryable(e.to_string())),
            };
        }
        on_platform(&ctx, |platform, ctx| {
            let first = platform.reactivate(site(&ctx)?, now()).map_err(error)?;
            Ok(serde_json::json!({ "reactivated": first }))
        })
        .await
    }
}
