//! An in-memory ledger: the same bookkeeping as SQLite with nothing durable. For tests under
//! paused time, and to measure what durability costs.

use super::{Ledger, LedgerError, NewRun, Op, RunInfo, Snapshot, StepRecord, Stored};
use crate::plan::Plan;

pub struct MemoryLedger {
    info: RunInfo,
    snapshot: Snapshot,
    plan: Plan,
    steps: Vec<StepRecord>,
    /// Every op applied, in order (the equivalent of the events table).
    pub events: Vec<Op>,
}

impl MemoryLedger {
    pub fn new(new: &NewRun) -> MemoryLedger {
        MemoryLedger {
            info: new.info.clone(),
            snapshot: new.snapshot.clone(),
            plan: new.plan.clone(),
            steps: vec![StepRecord::default(); new.plan.steps.len()],
            events: Vec::new(),
        }
    }

    pub fn steps(&self) -> &[StepRecord] {
        &self.steps
    }
}

impl Ledger for MemoryLedger {
    fn apply(&mut self, ops: &[Op]) -> Result<(), LedgerError> {
        for op in ops {
            let step = match op {
                Op::Claim { step, .. }
                | Op::Complete { step, .. }
                | Op::Fail { step, .. }
                | Op::Block { step, .. }
                | Op::Requeue { step, .. }
                | Op::Skip { step, .. } => *step,
                Op::Heartbeat { .. } => continue,
            };
            let plan = &self.plan;
            self.steps[step as usize].apply(op, |by| plan.steps[by as usize].id.clone());
        }
        self.events.extend_from_slice(ops);
        Ok(())
    }

    fn load(&self) -> Result<Stored, LedgerError> {
        Ok(Stored {
            info: self.info.clone(),
            snapshot: self.snapshot.clone(),
            plan: self.plan.clone(),
            steps: self.steps.clone(),
        })
    }
}
