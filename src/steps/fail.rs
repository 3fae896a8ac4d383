//! `fail`: always fails permanently, with param `message` as the error. For tests of failure
//! isolation, `retry` and `skip`.

use async_trait::async_trait;

use super::{StepContext, StepError, StepKind, StepOutput};

pub struct Fail;

#[async_trait]
impl StepKind for Fail {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError> {
        Err(StepError::Permanent(
            ctx.param("message")
                .unwrap_or("fail: this step always fails")
                .to_owned(),
        ))
    }
}
