//! `sleep`: waits, then succeeds. Params: `duration` (humantime; default the step's estimate) and
//! `scale` (a factor applied to it; default 1), so a synthetic workflow can sleep its estimates
//! at 1/100 speed. Stops early, as a retryable failure, when cancelled. Param `record`: see
//! `record_execution` (written when the sleep starts).

use std::time::Duration;

use async_trait::async_trait;

use super::{StepContext, StepError, StepKind, StepOutput, duration_param, record_execution};

pub struct Sleep;

#[async_trait]
impl StepKind for Sleep {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError> {
        let base = duration_param(&ctx, "duration", crate::limits::MAX_STEP_DURATION)?
            .unwrap_or(ctx.estimate);
        let scale = match ctx.param("scale") {
            None => 1.0,
            Some(s) => s
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .ok_or_else(|| {
                    StepError::Permanent(format!(
                        "param scale = '{s}' is not a non-negative number"
                    ))
                })?,
        };
        let wait = Duration::try_from_secs_f64(base.as_secs_f64() * scale)
            .ok()
            .filter(|w| *w <= crate::limits::MAX_STEP_DURATION)
            .ok_or_else(|| {
                StepError::Permanent(format!(
                    "param scale = {scale} makes the sleep longer than the limit of {}",
                    crate::limits::human(crate::limits::MAX_STEP_DURATION)
                ))
            })?;
        record_execution(&ctx)?;
        tokio::select! {
            _ = tokio::time::sleep(wait) => Ok(serde_json::json!({ "slept_ms": wait.as_millis() as u64 })),
            _ = ctx.cancel.cancelled() => Err(StepError::Retryable("cancelled".into())),
        }
    }
}
