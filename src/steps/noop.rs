//! `noop`: succeeds at once. For benchmarks of the scheduler and ledger. Param `record`: see
//! `record_execution`.

use async_trait::async_trait;

use super::{StepContext, StepError, StepKind, StepOutput, record_execution};

pub struct Noop;

#[async_trait]
impl StepKind for Noop {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError> {
        record_execution(&ctx)?;
        Ok(StepOutput::Null)
    }
}
