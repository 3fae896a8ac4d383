//! Upward rank (longest estimate-weighted path to a sink), the critical path, and the makespan
//! lower bound max(critical path, busiest pool's demand ÷ capacity).

use super::{Plan, StepIdx};

pub(super) fn rank(plan: &mut Plan, order: &[StepIdx]) {
    let succ = successors(plan);
    for &i in order.iter().rev() {
        let i = i as usize;
        let tail = succ
            .of(i)
            .iter()
            .map(|&s| plan.steps[s as usize].rank)
            .max()
            .unwrap_or_default();
        plan.steps[i].rank = plan.steps[i].estimate.saturating_add(tail);
    }
    plan.critical_path = critical_path(plan, &succ);
    let pool_bound = plan
        .pools
        .iter()
        .map(|p| p.bound())
        .max()
        .unwrap_or_default();
    plan.lower_bound = plan.critical_path_length().max(pool_bound);
}

/// From the highest-ranked step, follow the highest-ranked successor to a sink.
/// Ties go to the lower index, so the path is deterministic.
fn critical_path(plan: &Plan, succ: &Successors) -> Vec<StepIdx> {
    let best = |candidates: &mut dyn Iterator<Item = StepIdx>| {
        candidates.max_by_key(|&i| (plan.steps[i as usize].rank, std::cmp::Reverse(i)))
    };
    let mut path = Vec::new();
    let mut cur = best(&mut (0..plan.steps.len() as StepIdx));
    while let Some(i) = cur {
        path.push(i);
        cur = best(&mut succ.of(i as usize).iter().copied());
    }
    path
}

/// Successor lists in compressed form: `targets[offsets[i]..offsets[i + 1]]`.
pub struct Successors {
    offsets: Vec<u32>,
    targets: Vec<StepIdx>,
}

impl Successors {
    pub fn of(&self, i: usize) -> &[StepIdx] {
        &self.targets[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

pub(crate) fn successors(plan: &Plan) -> Successors {
    let n = plan.steps.len();
    let mut offsets = vec![0u32; n + 1];
    for step in &plan.steps {
        for &d in &step.deps {
            offsets[d as usize + 1] += 1;
        }
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    let mut fill = offsets.clone();
    let mut targets = vec![0; offsets[n] as usize];
    for (i, step) in plan.steps.iter().enumerate() {
        for &d in &step.deps {
            targets[fill[d as usize] as usize] = i as StepIdx;
            fill[d as usize] += 1;
        }
    }
    Successors { offsets, targets }
}
