//! `noop`: succeeds at once. For benchmarks of the scheduler and ledger.

use async_trait::async_trait;

use super::{StepContext, StepError, StepKind, StepOutput};

pub struct Noop;

#[async_trait]
impl StepKind for Noop {
    async fn run(&self, _ctx: StepContext) -> Result<StepOutput, StepError> {
        Ok(StepOutput::Null)
    }
}
