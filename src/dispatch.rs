//! The scheduling core, [`Core`]: which steps are ready, which may start now (policy order, pool
//! units, the global limit), what a success releases and what a failure blocks. Synchronous and
//! clock-free, so the same code drives real runs (`schedule`) and simulations (`sim`) — a
//! forecast is only as good as its likeness to the real scheduler. Both depend on this module;
//! it depends on neither.
//!
//! - `queue`: ready steps grouped by pool use; - `policy`: the order.

pub mod policy;
pub mod queue;

/// How many steps run at once unless `--max-parallel` says otherwise (runs and forecasts).
pub const DEFAULT_MAX_PARALLEL: usize = 256;

use std::sync::Arc;

use crate::events::Progress;
use crate::ledger::StepState;
use crate::plan::rank::Successors;
use crate::plan::{Owner, Plan, StepFacts, StepIdx};
use policy::Priorities;
use queue::ReadyQueue;

#[derive(Clone)]
pub struct Core {
    pub plan: Arc<Plan>,
    succ: Arc<Successors>,
    priorities: Arc<Priorities>,
    pub state: Vec<StepState>,
    /// Dependencies not yet done.
    waiting: Vec<u32>,
    /// Site-owned steps not yet done, per site.
    site_left: Vec<u32>,
    ready: ReadyQueue,
    seq: u64,
    free: Vec<u32>,
    /// Steps holding pool units (started, attempt not yet ended).
    holds: Vec<bool>,
    /// Sites whose steps may not start yet (canary waves, an exceeded failure budget).
    held: Vec<bool>,
    /// Ready steps of held sites, set aside until their site is released.
    parked: Vec<StepIdx>,
    /// Sites with at least one step started (in this session or before).
    pub site_started: Vec<bool>,
    /// Sites with a step that failed for good.
    pub site_failed: Vec<bool>,
    max_parallel: usize,
    /// Counters for progress displays (steps, sites, running, pools).
    pub counts: Progress,
    /// Per step, its site and pool use: what the hot path reads instead of the plan's steps,
    /// whose records are hundreds of bytes each.
    facts: Arc<StepFacts>,
}

const NO_SITE: u32 = StepFacts::NO_SITE;

impl Core {
    /// Every step pending; call [`Core::restore`] to start from recorded states.
    pub fn new(
        plan: Arc<Plan>,
        succ: Arc<Successors>,
        priorities: Arc<Priorities>,
        capacity: Vec<u32>,
        max_parallel: usize,
    ) -> Core {
        let n = plan.steps.len();
        let counts = Progress {
            steps_total: n,
            sites_total: plan.sites.len(),
            pools_capacity: capacity.clone(),
            pools_in_use: vec![0; plan.pools.len()],
            ..Progress::default()
        };
        let ready = ReadyQueue::new(priorities.by_place());
        Core {
            facts: plan.facts(),
            succ,
            priorities,
            state: vec![StepState::Pending; n],
            waiting: vec![0; n],
            site_left: vec![0; plan.sites.len()],
            ready,
            seq: 0,
            free: capacity,
            holds: vec![false; n],
            held: vec![false; plan.sites.len()],
            parked: Vec::new(),
            site_started: vec![false; plan.sites.len()],
            site_failed: vec![false; plan.sites.len()],
            max_parallel: max_parallel.max(1),
            counts,
            plan,
        }
    }

    pub fn successors(&self) -> &Successors {
        &self.succ
    }

    /// Starts from recorded states: done steps stay done; failed ones stay failed and block their
    /// dependents again; running, blocked and pending ones are pending. Returns the steps that
    /// became blocked, each with the failed step that blocks it.
    pub fn restore(&mut self, recorded: &[StepState]) -> Vec<(StepIdx, StepIdx)> {
        for (i, &s) in recorded.iter().enumerate() {
            self.state[i] = match s {
                StepState::Succeeded | StepState::Skipped | StepState::Failed => s,
                StepState::Pending | StepState::Running | StepState::Blocked => StepState::Pending,
            };
            if self.state[i].is_done() {
                self.counts.steps_done += 1;
            }
        }
        // Counted forward along the successor lists and from the flat per-step facts, not from
        // every step's record (each simulated policy restores a core).
        let n = self.state.len();
        self.waiting.iter_mut().for_each(|w| *w = 0);
        for (j, &was) in recorded.iter().enumerate() {
            let done = self.state[j].is_done();
            if !done {
                for k in 0..self.succ.of(j).len() {
                    let next = self.succ.of(j)[k];
                    self.waiting[next as usize] += 1;
                }
            }
            let site = self.facts.site_of[j];
            if site == NO_SITE {
                continue;
            }
            if !done {
                self.site_left[site as usize] += 1;
            }
            if was != StepState::Pending && was != StepState::Blocked {
                self.site_started[site as usize] = true;
                self.site_failed[site as usize] |= was == StepState::Failed;
            }
        }
        let mut blocked = Vec::new();
        for i in 0..n {
            if self.state[i] == StepState::Failed {
                self.counts.steps_failed += 1;
                blocked.extend(
                    self.block_dependents(i as StepIdx)
                        .into_iter()
                        .map(|s| (s, i as StepIdx)),
                );
            }
        }
        for i in 0..n {
            if self.state[i] == StepState::Pending && self.waiting[i] == 0 {
                self.push_ready(i as StepIdx);
            }
        }
        self.counts.sites_restored = self.site_left.iter().filter(|&&n| n == 0).count();
        blocked
    }

    /// Like [`Core::restore`], but steps recorded running are still running (holding their
    /// pool units) — a live run seen from outside, for forecasting what is left.
    pub fn restore_live(&mut self, recorded: &[StepState]) {
        let as_pending: Vec<StepState> = recorded
            .iter()
            .map(|&s| {
                if s == StepState::Running {
                    StepState::Succeeded
                } else {
                    s
                }
            })
            .collect();
        // Restore as if running steps were done, then undo that for them: dependents must wait.
        self.restore(&as_pending);
        let plan = Arc::clone(&self.plan);
        let succ = Arc::clone(&self.succ);
        let mut reopened = Vec::new();
        for (i, &s) in recorded.iter().enumerate() {
            if s != StepState::Running {
                continue;
            }
            self.state[i] = StepState::Running;
            self.holds[i] = true;
            self.counts.steps_done -= 1;
            self.counts.running += 1;
            for &(pool, n) in &plan.steps[i].uses {
                self.free[pool as usize] = self.free[pool as usize].saturating_sub(n);
                self.counts.pools_in_use[pool as usize] += n;
            }
            if let Owner::Site { site, .. } = plan.steps[i].owner {
                if self.site_left[site as usize] == 0 {
                    self.counts.sites_restored -= 1;
                }
                self.site_left[site as usize] += 1;
            }
            for &next in succ.of(i) {
                self.waiting[next as usize] += 1;
                reopened.push(next);
            }
        }
        if !reopened.is_empty() {
            // Dependents of running steps were queued as if those were done; rebuild the queue.
            self.ready.clear();
            for i in 0..plan.steps.len() {
                if self.state[i] == StepState::Pending && self.waiting[i] == 0 {
                    self.push_ready(i as StepIdx);
                }
            }
        }
    }

    /// The next step that may start now, if any: marked running, its pool units taken.
    pub fn start_next(&mut self) -> Option<StepIdx> {
        if self.counts.running >= self.max_parallel {
            return None;
        }
        let idx = self.ready.pop_fitting(&self.facts.signatures, &self.free)?;
        for &(pool, n) in self.facts.uses(idx as usize) {
            self.free[pool as usize] -= n;
            self.counts.pools_in_use[pool as usize] += n;
        }
        self.state[idx as usize] = StepState::Running;
        self.holds[idx as usize] = true;
        let site = self.facts.site_of[idx as usize];
        if site != NO_SITE {
            self.site_started[site as usize] = true;
        }
        self.counts.running += 1;
        Some(idx)
    }

    /// An attempt ended (however it went): its pool units are free again. A step whose success
    /// is not yet durable stays `Running` but holds nothing; a second call is a no-op.
    pub fn finished(&mut self, idx: StepIdx) {
        if !std::mem::replace(&mut self.holds[idx as usize], false) {
            return;
        }
        for &(pool, n) in self.facts.uses(idx as usize) {
            self.free[pool as usize] += n;
            self.counts.pools_in_use[pool as usize] -= n;
        }
        self.counts.running -= 1;
    }

    /// The step succeeded (durably): its ready dependents are queued. Returns the site it
    /// completed, if it was that site's last step.
    pub fn succeeded(&mut self, idx: StepIdx) -> Option<u32> {
        let i = idx as usize;
        self.state[i] = StepState::Succeeded;
        self.counts.steps_done += 1;
        // By index, not through a clone of the `Arc`: simulations on other threads share it,
        // and its reference count, touched on every step, bounced between their cores.
        for k in 0..self.succ.of(i).len() {
            let next = self.succ.of(i)[k];
            self.waiting[next as usize] -= 1;
            if self.waiting[next as usize] == 0 && self.state[next as usize] == StepState::Pending {
                self.push_ready(next);
            }
        }
        let site = self.facts.site_of[i];
        if site == NO_SITE {
            return None;
        }
        self.site_left[site as usize] -= 1;
        (self.site_left[site as usize] == 0).then(|| {
            self.counts.sites_restored += 1;
            site
        })
    }

    /// The attempt failed and another will follow: pending until [`Core::requeue`].
    pub fn will_retry(&mut self, idx: StepIdx) {
        self.state[idx as usize] = StepState::Pending;
    }

    /// A step waiting for a retry is ready again.
    pub fn requeue(&mut self, idx: StepIdx) {
        self.push_ready(idx);
    }

    /// The step failed for good: every transitive dependent is blocked. Returns them.
    pub fn failed(&mut self, idx: StepIdx) -> Vec<StepIdx> {
        if let Owner::Site { site, .. } = self.plan.steps[idx as usize].owner {
            self.site_failed[site as usize] = true;
        }
        self.state[idx as usize] = StepState::Failed;
        self.counts.steps_failed += 1;
        self.block_dependents(idx)
    }

    fn block_dependents(&mut self, failed: StepIdx) -> Vec<StepIdx> {
        let succ = Arc::clone(&self.succ);
        let mut stack: Vec<StepIdx> = succ.of(failed as usize).to_vec();
        let mut blocked = Vec::new();
        while let Some(s) = stack.pop() {
            if self.state[s as usize] != StepState::Pending {
                continue;
            }
            self.state[s as usize] = StepState::Blocked;
            self.counts.steps_blocked += 1;
            blocked.push(s);
            stack.extend_from_slice(succ.of(s as usize));
        }
        blocked
    }

    /// Stops everything queued from starting (draining).
    pub fn clear_ready(&mut self) {
        self.ready.clear();
    }

    /// Nothing is queued to start.
    pub fn nothing_ready(&self) -> bool {
        self.ready.is_empty()
    }

    /// Holds the given sites: their steps stay pending until [`Core::release`].
    pub fn hold(&mut self, sites: &[u32]) {
        for &s in sites {
            self.held[s as usize] = true;
        }
        for idx in self.ready.drain() {
            self.push_ready(idx);
        }
    }

    /// Holds every site that has not started a step (a failure budget was exceeded).
    pub fn hold_unstarted(&mut self) -> usize {
        let unstarted: Vec<u32> = (0..self.plan.sites.len() as u32)
            .filter(|&s| !self.site_started[s as usize])
            .collect();
        self.hold(&unstarted);
        unstarted.len()
    }

    /// Releases every held site.
    pub fn release(&mut self) {
        self.held.iter_mut().for_each(|h| *h = false);
        for idx in std::mem::take(&mut self.parked) {
            self.push_ready(idx);
        }
    }

    /// Sites that failed (a step of theirs failed for good).
    pub fn failed_sites(&self) -> usize {
        self.site_failed.iter().filter(|&&f| f).count()
    }

    fn push_ready(&mut self, idx: StepIdx) {
        let site = self.facts.site_of[idx as usize];
        if site != NO_SITE && self.held[site as usize] {
            self.parked.push(idx);
            return;
        }
        self.seq += 1;
        let key = self.priorities.key(idx, self.seq);
        self.ready
            .push(self.facts.signature[idx as usize], key, idx);
    }
}
