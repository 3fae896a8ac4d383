//! Upward rank (longest estimate-weighted path to a sink), the critical path, and the makespan
//! lower bound: the critical path, or a pool's demand ÷ capacity with the least time that must
//! pass before its first step and after its last.

use super::{Plan, StepIdx};

/// What ranking a plan finds; `apply` writes it into the plan.
pub(super) struct Ranked {
    ranks: Vec<u64>,
    critical_path: Vec<StepIdx>,
    edges: Vec<u64>,
}

/// Upward ranks, the critical path and each pool's edges; `order` is topological.
pub(super) fn ranks(plan: &Plan, succ: &Successors, order: &[StepIdx]) -> Ranked {
    let weight = |i: usize| crate::limits::millis(plan.steps[i].estimate);
    let ranks = longest_to_sink(plan, succ, order, weight);
    let critical_path = heaviest_path(&ranks, succ);
    let edges = pool_edges(plan, order, &ranks, weight);
    Ranked {
        ranks,
        critical_path,
        edges,
    }
}

/// Writes ranks, the critical path, pool edges and the lower bound into the plan.
pub(super) fn apply(plan: &mut Plan, ranked: Ranked) {
    for (step, r) in plan.steps.iter_mut().zip(&ranked.ranks) {
        step.rank = std::time::Duration::from_millis(*r);
    }
    plan.critical_path = ranked.critical_path;
    for (pool, ms) in plan.pools.iter_mut().zip(ranked.edges) {
        pool.edges = std::time::Duration::from_millis(ms);
    }
    let pool_bound = plan
        .pools
        .iter()
        .map(|p| p.bound())
        .max()
        .unwrap_or_default();
    plan.lower_bound = plan.critical_path_length().max(pool_bound);
}

/// Per pool, the least time that must pass before any of its steps can start (the shortest of
/// their longest chains of dependencies) plus the least that must follow its last step (the
/// shortest of their longest paths to a sink). Whichever step holds the pool first and last,
/// the pool's work ÷ capacity fits between the two, so this plus that is a lower bound; without
/// it the bound of a pool fed by a long fetch and followed by validations is loose by both.
/// `ranks` from `longest_to_sink` with the same `weight`; `order` is topological.
pub(crate) fn pool_edges(
    plan: &Plan,
    order: &[StepIdx],
    ranks: &[u64],
    weight: impl Fn(usize) -> u64,
) -> Vec<u64> {
    let mut start = vec![0u64; plan.steps.len()];
    for &i in order {
        let i = i as usize;
        start[i] = plan.steps[i]
            .deps
            .iter()
            .map(|&d| start[d as usize].saturating_add(weight(d as usize)))
            .max()
            .unwrap_or_default();
    }
    let mut head = vec![u64::MAX; plan.pools.len()];
    let mut tail = vec![u64::MAX; plan.pools.len()];
    for (i, step) in plan.steps.iter().enumerate() {
        for &(pool, _) in &step.uses {
            let p = pool as usize;
            head[p] = head[p].min(start[i]);
            tail[p] = tail[p].min(ranks[i].saturating_sub(weight(i)));
        }
    }
    head.iter()
        .zip(&tail)
        .map(|(&h, &t)| {
            if h == u64::MAX {
                0
            } else {
                h.saturating_add(t)
            }
        })
        .collect()
}

/// Per step, the heaviest path from it to a sink (itself included), by `weight` in ms;
/// `order` is topological.
pub(crate) fn longest_to_sink(
    plan: &Plan,
    succ: &Successors,
    order: &[StepIdx],
    weight: impl Fn(usize) -> u64,
) -> Vec<u64> {
    let mut ranks = vec![0u64; plan.steps.len()];
    for &i in order.iter().rev() {
        let i = i as usize;
        let tail = succ
            .of(i)
            .iter()
            .map(|&s| ranks[s as usize])
            .max()
            .unwrap_or_default();
        ranks[i] = weight(i).saturating_add(tail);
    }
    ranks
}

/// From the highest-ranked step, follow the highest-ranked successor to a sink.
/// Ties go to the lower index, so the path is deterministic.
pub(crate) fn heaviest_path(ranks: &[u64], succ: &Successors) -> Vec<StepIdx> {
    let best = |candidates: &mut dyn Iterator<Item = StepIdx>| {
        candidates.max_by_key(|&i| (ranks[i as usize], std::cmp::Reverse(i)))
    };
    let mut path = Vec::new();
    let mut cur = best(&mut (0..ranks.len() as StepIdx));
    while let Some(i) = cur {
        path.push(i);
        cur = best(&mut succ.of(i as usize).iter().copied());
    }
    path
}

/// A topological order of the steps (dependencies first), by Kahn's algorithm.
pub(crate) fn topological_order(plan: &Plan, succ: &Successors) -> Vec<StepIdx> {
    let mut waiting: Vec<usize> = plan.steps.iter().map(|s| s.deps.len()).collect();
    let mut order: Vec<StepIdx> = (0..plan.steps.len() as StepIdx)
        .filter(|&i| waiting[i as usize] == 0)
        .collect();
    let mut k = 0;
    while k < order.len() {
        for &s in succ.of(order[k] as usize) {
            waiting[s as usize] -= 1;
            if waiting[s as usize] == 0 {
                order.push(s);
            }
        }
        k += 1;
    }
    order
}

/// Successor lists in compressed form: `targets[offsets[i]..offsets[i + 1]]`.
#[derive(Debug)]
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
