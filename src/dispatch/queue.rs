//! The ready queue: steps whose dependencies are done, grouped by the pools they need, each
//! group a priority heap. Picking the best step that fits the free pool units costs one look per
//! group, however many steps wait.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::plan::StepIdx;

type Uses = Vec<(u16, u32)>;

/// Min-heap of (priority key, step).
type Heap = BinaryHeap<Reverse<(u128, StepIdx)>>;

#[derive(Clone, Default)]
pub struct ReadyQueue {
    groups: Vec<(Uses, Heap)>,
    by_uses: HashMap<Uses, usize>,
    len: usize,
}

impl ReadyQueue {
    pub fn push(&mut self, uses: &[(u16, u32)], key: u128, idx: StepIdx) {
        let g = match self.by_uses.get(uses) {
            Some(&g) => g,
            None => {
                self.groups.push((uses.to_vec(), BinaryHeap::new()));
                self.by_uses.insert(uses.to_vec(), self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        self.groups[g].1.push(Reverse((key, idx)));
        self.len += 1;
    }

    /// Removes and returns the highest-priority step whose pool use fits `free`.
    pub fn pop_fitting(&mut self, free: &[u32]) -> Option<StepIdx> {
        let fits = |uses: &Uses| uses.iter().all(|&(p, n)| free[p as usize] >= n);
        let best = self
            .groups
            .iter()
            .enumerate()
            .filter(|(_, (uses, heap))| !heap.is_empty() && fits(uses))
            .min_by_key(|(_, (_, heap))| heap.peek().map(|r| r.0))?
            .0;
        self.len -= 1;
        self.groups[best].1.pop().map(|Reverse((_, idx))| idx)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes and returns every queued step.
    pub fn drain(&mut self) -> Vec<StepIdx> {
        let out = self
            .groups
            .iter_mut()
            .flat_map(|(_, heap)| heap.drain().map(|Reverse((_, idx))| idx))
            .collect();
        self.len = 0;
        out
    }

    /// Drops every queued step (when draining).
    pub fn clear(&mut self) {
        for (_, heap) in &mut self.groups {
            heap.clear();
        }
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_fitting_step_wins_and_full_pools_do_not_block_others() {
        let mut q = ReadyQueue::default();
        q.push(&[(0, 1)], 1, 10); // best overall, needs pool 0
        q.push(&[(1, 1)], 5, 20);
        q.push(&[], 9, 30);
        assert_eq!(
            q.pop_fitting(&[0, 1]),
            Some(20),
            "pool 0 is full, so the best fitting step runs"
        );
        assert_eq!(q.pop_fitting(&[1, 0]), Some(10));
        assert_eq!(q.pop_fitting(&[0, 0]), Some(30));
        assert_eq!(q.pop_fitting(&[1, 1]), None);
        assert!(q.is_empty());
    }
}
