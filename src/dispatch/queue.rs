//! The ready queue: steps whose dependencies are done, grouped by the pools they need (their
//! signature, numbered by `Core`). Picking the best step that fits the free pool units costs
//! one look per group, however many steps wait.
//!
//! Every policy but `fifo` orders steps by a key fixed when the plan is ranked, so
//! `Priorities` turns the keys into places `0..n` once, and each group is a set of places: a
//! bitmap with a summary bitmap per 64 words above it, so the best place is found in three
//! or four word reads. A restore of 2 million steps keeps most of them ready at some point;
//! a binary heap of 32-byte keys cost a cache miss per level on every pop and was the
//! simulator's largest cost (docs/benchmarks.md). `fifo` orders by arrival, so its groups are
//! plain queues.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::plan::StepIdx;

#[derive(Clone)]
pub struct ReadyQueue {
    /// For ordered policies, the step at each place; `None`: arrival order.
    by_place: Option<Arc<[StepIdx]>>,
    /// Per signature that has had a step, its group.
    groups: Vec<Option<Group>>,
    len: usize,
}

#[derive(Clone)]
enum Group {
    Places(Places),
    /// (arrival number, step), oldest first.
    Arrivals(VecDeque<(u64, StepIdx)>),
}

impl ReadyQueue {
    /// Steps ordered by their place (`by_place[place]` is the step there), or, without it, by
    /// the arrival number `push` is given.
    pub fn new(by_place: Option<Arc<[StepIdx]>>) -> ReadyQueue {
        ReadyQueue {
            by_place,
            groups: Vec::new(),
            len: 0,
        }
    }

    /// Queues a step whose pool use is signature `sig`: `key` is its place when ordered by
    /// place, else its arrival number (increasing from push to push).
    pub fn push(&mut self, sig: u16, key: u64, idx: StepIdx) {
        let sig = sig as usize;
        if self.groups.len() <= sig {
            self.groups.resize_with(sig + 1, || None);
        }
        let group = self.groups[sig].get_or_insert_with(|| match &self.by_place {
            Some(places) => Group::Places(Places::new(places.len())),
            None => Group::Arrivals(VecDeque::new()),
        });
        match group {
            Group::Places(set) => set.insert(key as usize),
            Group::Arrivals(queue) => queue.push_back((key, idx)),
        }
        self.len += 1;
    }

    /// Removes and returns the highest-priority step whose pool use (`signatures[sig]`) fits
    /// `free`.
    pub fn pop_fitting(&mut self, signatures: &[Vec<(u16, u32)>], free: &[u32]) -> Option<StepIdx> {
        let fits = |sig: usize| signatures[sig].iter().all(|&(p, n)| free[p as usize] >= n);
        let best = self
            .groups
            .iter()
            .enumerate()
            .filter_map(|(sig, group)| Some((sig, group.as_ref()?.first()?)))
            .filter(|&(sig, _)| fits(sig))
            .min_by_key(|&(_, key)| key)?
            .0;
        self.len -= 1;
        match self.groups[best].as_mut()? {
            Group::Places(set) => {
                let place = set.pop_first()?;
                self.by_place.as_ref().map(|p| p[place])
            }
            Group::Arrivals(queue) => queue.pop_front().map(|(_, idx)| idx),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes and returns every queued step.
    pub fn drain(&mut self) -> Vec<StepIdx> {
        let mut out = Vec::with_capacity(self.len);
        for group in self.groups.iter_mut().flatten() {
            match group {
                Group::Places(set) => {
                    while let Some(place) = set.pop_first() {
                        out.extend(self.by_place.as_ref().map(|p| p[place]));
                    }
                }
                Group::Arrivals(queue) => out.extend(queue.drain(..).map(|(_, idx)| idx)),
            }
        }
        self.len = 0;
        out
    }

    /// Drops every queued step (when draining).
    pub fn clear(&mut self) {
        self.groups.clear();
        self.len = 0;
    }
}

impl Group {
    /// The key of the group's best step.
    fn first(&self) -> Option<u64> {
        match self {
            Group::Places(set) => set.first().map(|p| p as u64),
            Group::Arrivals(queue) => queue.front().map(|&(key, _)| key),
        }
    }
}

/// A set of places `0..n`: `levels[0]` has a bit per place, each level above a bit per word of
/// the one below that has any bit set; the top level is one word.
#[derive(Clone)]
struct Places {
    levels: Vec<Vec<u64>>,
}

impl Places {
    fn new(n: usize) -> Places {
        let mut levels = Vec::new();
        let mut words = n.div_ceil(64).max(1);
        loop {
            levels.push(vec![0u64; words]);
            if words == 1 {
                break;
            }
            words = words.div_ceil(64);
        }
        Places { levels }
    }

    fn insert(&mut self, mut place: usize) {
        for level in &mut self.levels {
            let (word, bit) = (place / 64, place % 64);
            let was = level[word];
            level[word] = was | 1 << bit;
            if was != 0 {
                return; // the levels above already know this word is in use
            }
            place = word;
        }
    }

    fn first(&self) -> Option<usize> {
        let mut place = 0;
        for level in self.levels.iter().rev() {
            let word = level[place];
            if word == 0 {
                return None;
            }
            place = place * 64 + word.trailing_zeros() as usize;
        }
        Some(place)
    }

    fn pop_first(&mut self) -> Option<usize> {
        let first = self.first()?;
        let mut place = first;
        for level in &mut self.levels {
            let (word, bit) = (place / 64, place % 64);
            level[word] &= !(1 << bit);
            if level[word] != 0 {
                break; // the word still has places: the levels above stay as they are
            }
            place = word;
        }
        Some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_fitting_step_wins_and_full_pools_do_not_block_others() {
        // Places: step 10 is first, then 20, then 30.
        let by_place: Arc<[StepIdx]> = vec![10, 20, 30].into();
        for mut q in [
            ReadyQueue::new(Some(by_place)),
            ReadyQueue::new(None), // arrival order: the same keys as arrival numbers
        ] {
            let sigs = [vec![(0, 1)], vec![(1, 1)], vec![]];
            q.push(0, 0, 10); // best overall, needs pool 0
            q.push(1, 1, 20);
            q.push(2, 2, 30);
            assert_eq!(
                q.pop_fitting(&sigs, &[0, 1]),
                Some(20),
                "pool 0 is full, so the best fitting step runs"
            );
            assert_eq!(q.pop_fitting(&sigs, &[1, 0]), Some(10));
            assert_eq!(q.pop_fitting(&sigs, &[0, 0]), Some(30));
            assert_eq!(q.pop_fitting(&sigs, &[1, 1]), None);
            assert!(q.is_empty());
        }
    }

    #[test]
    fn places_pop_in_order_across_levels() {
        // Enough places for four levels (4,688 words, 74, 2, 1); inserted out of order.
        let mut set = Places::new(300_000);
        assert_eq!(set.levels.len(), 4);
        let mut places: Vec<usize> = (0..5_000).map(|i| (i * 7_919) % 300_000).collect();
        for &p in &places {
            set.insert(p);
        }
        places.sort_unstable();
        places.dedup();
        let mut popped = Vec::new();
        // Interleave: re-insert a low place midway, as a newly ready step would.
        while let Some(p) = set.pop_first() {
            popped.push(p);
            if popped.len() == 100 {
                set.insert(0);
                places.insert(100, 0);
            }
        }
        assert_eq!(popped, places);
        assert_eq!(set.first(), None);
    }
}
