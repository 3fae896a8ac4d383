//! `flaky`: fails (retryably) on its first `failures` attempts, then succeeds. For tests of
//! retries and backoff. Param `failures` (default 1).

use async_trait::async_trait;

use super::{StepContext, StepError, StepKind, StepOutput};

pub struct Flaky;

#[async_trait]
impl StepKind for Flaky {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError> {
        let failures: u32 = match ctx.param("failures") {
            None => 1,
            Some(v) => v.parse().map_err(|_| {
                StepError::Permanent(format!("param failures = '{v}' is not a whole number"))
            })?,
        };
        if ctx.attempt <= failures {
            return Err(StepError::Retryable(format!(
                "flaky: attempt {} of {} planned failures",
                ctx.attempt, failures
            )));
        }
        Ok(serde_json::json!({ "attempt": ctx.attempt }))
    }
}
