//! The scheduler: one loop that owns every spawned step. It launches ready steps in policy order
//! under per-pool budgets and a global limit, applies timeouts and retries with backoff, isolates
//! failures to their dependents, and records every transition through the journal (group commit).
//! A step's dependents are released only once its success is durable.
//!
//! The scheduling state itself (ready queue, policy order, pool units) is [`crate::dispatch`],
//! shared with the simulator.
//!
//! - `backoff`: retry delays; - `eta`: the live time left (a simulation of what remains);
//! - `journal`: batching transitions into ledger commits.

pub mod backoff;
pub mod eta;
pub mod journal;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::dispatch::Core;
pub use crate::dispatch::policy::{self, Policy};
use crate::events::{EventSink, RunEvent};
use crate::ledger::{LedgerError, Op, StepRecord, StepState, now_ms};
use crate::plan::{Owner, Plan, Step, StepIdx};
use crate::status::{SiteState, count_sites, count_steps, site_states};
use crate::steps::{Registry, StepContext, StepError, StepKind, StepOutput};
pub use journal::Journal;

/// How long a step whose timeout fired may take to wind down (stop its command, roll back its
/// transaction) after it is cancelled, before it is abandoned.
const WIND_DOWN: Duration = Duration::from_secs(10);

/// Runs a step under its timeout. When the timeout fires the step is cancelled and given
/// [`WIND_DOWN`] to stop, so that its next attempt does not start while it is still at work.
async fn run_with_timeout(
    kind: Arc<dyn StepKind>,
    ctx: StepContext,
    timeout: Duration,
) -> Result<StepOutput, StepError> {
    let cancel = ctx.cancel.clone();
    let run = kind.run(ctx);
    tokio::pin!(run);
    if let Ok(result) = tokio::time::timeout(timeout, &mut run).await {
        return result;
    }
    cancel.cancel();
    let _ = tokio::time::timeout(WIND_DOWN, run).await;
    Err(StepError::Retryable(format!(
        "timed out after {}",
        humantime::format_duration(timeout)
    )))
}

/// How to run a plan.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Part of every idempotency key: `<run_id>/<step id>`.
    pub run_id: String,
    /// At most this many steps at once, whatever the pools allow.
    pub max_parallel: usize,
    /// Capacity of each plan pool, in plan pool order.
    pub pool_capacity: Vec<u32>,
    pub policy: Policy,
    /// After the first interrupt, how long in-flight steps may take before they are cancelled.
    pub grace: Duration,
    /// Root of the steps' staging directories.
    pub staging: PathBuf,
    /// Seeds the retry jitter.
    pub seed: u64,
    pub heartbeat_every: Duration,
    pub progress_every: Duration,
    /// How often the time remaining is re-estimated (a simulation of what is left).
    pub eta_every: Duration,
    /// Restore these sites first, through every step, before releasing the others.
    pub canary: Vec<u32>,
    /// When more sites than this have failed, no new site starts.
    pub failure_budget: Option<usize>,
    /// For practice and game days: every attempt of a step whose ID starts with one of these
    /// fails (retryably) in this session, before its kind runs, so it never acts on anything.
    pub inject_failures: Vec<String>,
    /// Durations learned from earlier runs or drills (`--history`), the live ETA's starting point.
    pub model: Arc<crate::sim::model::DurationModel>,
}

pub use crate::dispatch::DEFAULT_MAX_PARALLEL;

impl RunOptions {
    pub fn new(plan: &Plan, run_id: &str, staging: &Path) -> RunOptions {
        RunOptions {
            run_id: run_id.to_owned(),
            max_parallel: DEFAULT_MAX_PARALLEL,
            pool_capacity: plan.pools.iter().map(|p| p.capacity).collect(),
            policy: Policy::default(),
            grace: Duration::from_secs(30),
            staging: staging.to_owned(),
            seed: 0,
            heartbeat_every: Duration::from_secs(10),
            progress_every: Duration::from_millis(250),
            eta_every: Duration::from_secs(5),
            canary: Vec::new(),
            failure_budget: None,
            inject_failures: Vec::new(),
            model: Arc::default(),
        }
    }
}

/// Asks a running scheduler to stop: `drain` (first Ctrl-C) stops launching and lets in-flight
/// steps finish within the grace period; `abort` (second Ctrl-C) stops at once.
#[derive(Clone, Debug, Default)]
pub struct Control {
    drain: CancellationToken,
    abort: CancellationToken,
}

impl Control {
    /// Cancelled once a drain (or an abort) is asked.
    pub fn draining(&self) -> CancellationToken {
        self.drain.clone()
    }

    pub fn drain(&self) {
        self.drain.cancel();
    }

    pub fn abort(&self) {
        self.drain.cancel();
        self.abort.cancel();
    }
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub steps: BTreeMap<StepState, usize>,
    pub sites: BTreeMap<SiteState, usize>,
    /// Stopped by `Control` before every step could finish.
    pub interrupted: bool,
    /// Why a guard stopped the fan-out, if one did.
    pub stopped: Option<String>,
    pub elapsed: Duration,
}

impl RunSummary {
    /// Every site restored.
    pub fn all_restored(&self) -> bool {
        !self.interrupted
            && self
                .sites
                .iter()
                .all(|(&s, &n)| s == SiteState::Restored || n == 0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("step kind '{kind}' (used by step {step}) cannot run in this build")]
    UnknownKind { kind: String, step: String },
    #[error("pool '{pool}' has capacity {capacity}, but step {step} needs {needs}")]
    PoolTooSmall {
        pool: String,
        capacity: u32,
        needs: u32,
        step: String,
    },
}

/// Runs `plan` to completion (or until stopped), starting from the recorded step states.
pub async fn run(
    plan: Arc<Plan>,
    records: &[StepRecord],
    registry: &Registry,
    journal: Journal,
    opts: RunOptions,
    events: &dyn EventSink,
    control: Control,
) -> Result<RunSummary, RunError> {
    let mut s = Scheduler::new(plan, records, registry, journal, opts, events, control)?;
    let started = Instant::now();
    let result = s.run_loop().await;
    s.journal.close();
    let interrupted = result?;
    Ok(RunSummary {
        steps: count_steps(&s.core.state),
        sites: count_sites(&s.site_states()),
        interrupted,
        stopped: s.stopped.clone(),
        elapsed: started.elapsed(),
    })
}

/// What a spawned step returns.
struct Finished {
    idx: StepIdx,
    result: Result<StepOutput, StepError>,
    ended: i64,
}

struct Scheduler<'a> {
    core: Core,
    kinds: Vec<Arc<dyn StepKind>>,
    opts: RunOptions,
    events: &'a dyn EventSink,
    control: Control,
    /// The last attempt number used.
    attempts: Vec<u32>,
    /// Failures in this session (the retry budget).
    failures: Vec<u32>,
    /// Steps whose last permanent failure quarantined their site.
    quarantined: Vec<bool>,
    outputs: Vec<Option<String>>,
    tasks: JoinSet<Finished>,
    task_steps: HashMap<tokio::task::Id, StepIdx>,
    step_cancel: CancellationToken,
    timers: BinaryHeap<Reverse<(Instant, StepIdx)>>,
    journal: Journal,
    pending_ops: Vec<Op>,
    /// Successes in `pending_ops`, released once durable.
    pending_done: Vec<StepIdx>,
    /// Successes in the batch being committed.
    committing: Option<Vec<StepIdx>>,
    rng: ChaCha8Rng,
    started: Instant,
    eta: eta::Tracker,
    /// The last time-left estimate and when it was made.
    eta_at: Option<(Duration, Instant)>,
    /// Canary sites still to restore before the others are released.
    canary_left: Vec<u32>,
    /// Why the fan-out was stopped.
    stopped: Option<String>,
}

impl<'a> Scheduler<'a> {
    fn new(
        plan: Arc<Plan>,
        records: &[StepRecord],
        registry: &Registry,
        journal: Journal,
        opts: RunOptions,
        events: &'a dyn EventSink,
        control: Control,
    ) -> Result<Self, RunError> {
        let kinds = resolve_kinds(&plan, registry)?;
        check_pools(&plan, &opts.pool_capacity)?;
        let succ = plan.successors();
        let priorities = Arc::new(policy::Priorities::new(
            &plan,
            &succ,
            opts.policy,
            &opts.pool_capacity,
        ));
        let mut core = Core::new(
            Arc::clone(&plan),
            succ,
            priorities,
            opts.pool_capacity.clone(),
            opts.max_parallel,
        );
        let states: Vec<StepState> = records.iter().map(|r| r.state).collect();
        let blocked = core.restore(&states);
        let n = plan.steps.len();
        let mut s = Scheduler {
            kinds,
            events,
            control,
            attempts: records.iter().map(|r| r.attempts).collect(),
            failures: vec![0; n],
            quarantined: records.iter().map(StepRecord::quarantined).collect(),
            outputs: records
                .iter()
                .map(|r| {
                    if r.state.is_done() {
                        r.output.clone()
                    } else {
                        None
                    }
                })
                .collect(),
            tasks: JoinSet::new(),
            task_steps: HashMap::new(),
            step_cancel: CancellationToken::new(),
            timers: BinaryHeap::new(),
            journal,
            pending_ops: Vec::new(),
            pending_done: Vec::new(),
            committing: None,
            rng: ChaCha8Rng::seed_from_u64(opts.seed),
            started: Instant::now(),
            canary_left: Vec::new(),
            stopped: None,
            eta: eta::Tracker::new(&plan, Arc::clone(&opts.model), records),
            eta_at: None,
            opts,
            core,
        };
        let at = now_ms();
        for (step, by) in blocked {
            if records[step as usize].state != StepState::Blocked {
                s.pending_ops.push(Op::Block { step, by, at });
            }
        }
        let c = &s.core.counts;
        s.events.emit(&RunEvent::Started {
            steps: n,
            steps_done: c.steps_done,
            sites: plan.sites.len(),
            sites_done: c.sites_restored,
        });
        s.start_canary();
        s.check_budget();
        Ok(s)
    }

    fn site_states(&self) -> Vec<SiteState> {
        site_states(&self.core.plan, &self.core.state, |i| self.quarantined[i])
    }

    fn plan(&self) -> Arc<Plan> {
        Arc::clone(&self.core.plan)
    }

    /// Holds every site but the canaries not yet restored.
    fn start_canary(&mut self) {
        let restored = self.site_states();
        self.canary_left = self
            .opts
            .canary
            .iter()
            .copied()
            .filter(|&c| restored[c as usize] != SiteState::Restored)
            .collect();
        if self.canary_left.is_empty() {
            return;
        }
        let others: Vec<u32> = (0..self.core.plan.sites.len() as u32)
            .filter(|s| !self.canary_left.contains(s))
            .collect();
        self.core.hold(&others);
    }

    /// A site was restored: the canary wave may be complete.
    fn canary_progress(&mut self, site: u32) {
        if self.canary_left.is_empty() || self.stopped.is_some() {
            return;
        }
        self.canary_left.retain(|&c| c != site);
        if self.canary_left.is_empty() {
            self.core.release();
            self.events.emit(&RunEvent::CanaryPassed {
                sites: self.opts.canary.len(),
            });
        }
    }

    /// After a failure: a failed canary stops the fan-out, and so does an exceeded budget.
    fn after_failure(&mut self, idx: StepIdx) {
        if let Owner::Site { site, .. } = self.core.plan.steps[idx as usize].owner
            && self.canary_left.contains(&site)
            && self.stopped.is_none()
        {
            let reason = format!(
                "canary site {} failed at {}; the other sites were not started",
                self.core.plan.sites[site as usize].id, self.core.plan.steps[idx as usize].id
            );
            self.stop(reason);
        }
        self.check_budget();
    }

    fn check_budget(&mut self) {
        let Some(budget) = self.opts.failure_budget else {
            return;
        };
        let failed = self.core.failed_sites();
        if failed > budget && self.stopped.is_none() {
            let held = self.core.hold_unstarted();
            let reason = format!(
                "failure budget exceeded: {failed} sites failed, the budget allows {budget}; {held} sites not started"
            );
            self.stop(reason);
        }
    }

    fn stop(&mut self, reason: String) {
        self.events.emit(&RunEvent::FanOutStopped {
            reason: reason.clone(),
        });
        self.stopped = Some(reason);
    }

    /// The loop. Returns whether the run was interrupted.
    async fn run_loop(&mut self) -> Result<bool, RunError> {
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let mut heartbeat = tokio::time::interval(self.opts.heartbeat_every);
        let mut progress = tokio::time::interval(self.opts.progress_every);
        let mut reestimate = tokio::time::interval(self.opts.eta_every);
        let mut draining = false;
        let mut grace_end: Option<Instant> = None;
        loop {
            if !draining {
                self.launch();
            }
            self.flush()?;
            if self.is_finished(draining) {
                if !draining {
                    // Nothing left that this run will start.
                    self.eta_at = Some((Duration::ZERO, Instant::now()));
                }
                self.emit_progress();
                return Ok(draining);
            }
            let next_timer = self.timers.peek().map(|Reverse((t, _))| *t);
            tokio::select! {
                biased;
                _ = self.control.abort.cancelled() => {
                    self.abort().await?;
                    return Ok(true);
                }
                ack = self.journal.durable(), if self.committing.is_some() => self.on_durable(ack)?,
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => self.on_joined(joined, draining),
                _ = sleep_until(next_timer.unwrap_or(far)), if next_timer.is_some() && !draining => self.fire_timers(),
                _ = self.control.drain.cancelled(), if !draining => {
                    draining = true;
                    self.core.clear_ready();
                    self.timers.clear();
                    grace_end = Some(Instant::now().checked_add(self.opts.grace).unwrap_or(far));
                    self.events.emit(&RunEvent::Draining { in_flight: self.tasks.len(), grace: self.opts.grace });
                }
                _ = sleep_until(grace_end.unwrap_or(far)), if grace_end.is_some() => {
                    grace_end = None;
                    self.step_cancel.cancel();
                    self.events.emit(&RunEvent::Cancelling { in_flight: self.tasks.len() });
                }
                _ = heartbeat.tick() => self.pending_ops.push(Op::Heartbeat { at: now_ms() }),
                _ = reestimate.tick() => {
                    let retrying: Vec<StepIdx> = self.timers.iter().map(|Reverse((_, i))| *i).collect();
                    self.eta_at = self.eta.estimate(&self.core, &retrying).map(|e| (e, Instant::now()));
                }
                _ = progress.tick() => self.emit_progress(),
            }
        }
    }

    fn is_finished(&self, draining: bool) -> bool {
        let idle = self.tasks.is_empty()
            && self.committing.is_none()
            && self
                .pending_ops
                .iter()
                .all(|op| matches!(op, Op::Heartbeat { .. }));
        idle && (draining || (self.core.nothing_ready() && self.timers.is_empty()))
    }

    /// Starts ready steps while pools and the global limit allow.
    fn launch(&mut self) {
        while let Some(idx) = self.core.start_next() {
            self.start(idx);
        }
    }

    fn start(&mut self, idx: StepIdx) {
        let i = idx as usize;
        let plan = self.plan();
        let step = &plan.steps[i];
        self.attempts[i] += 1;
        let attempt = self.attempts[i];
        self.pending_ops.push(Op::Claim {
            step: idx,
            attempt,
            at: now_ms(),
        });
        self.eta.started(idx, &self.core.counts);
        let ctx = self.context(idx, attempt);
        let kind = Arc::clone(&self.kinds[step.template as usize]);
        let timeout = step.timeout;
        let injected = self
            .opts
            .inject_failures
            .iter()
            .any(|p| step.id.starts_with(p));
        let handle = self.tasks.spawn(async move {
            if injected {
                let why = "injected failure (--inject-failure): the step did not run";
                return Finished {
                    idx,
                    result: Err(StepError::Retryable(why.into())),
                    ended: now_ms(),
                };
            }
            let result = run_with_timeout(kind, ctx, timeout).await;
            Finished {
                idx,
                result,
                ended: now_ms(),
            }
        });
        self.task_steps.insert(handle.id(), idx);
        self.events
            .emit(&RunEvent::StepStarted { step: idx, attempt });
    }

    fn context(&self, idx: StepIdx, attempt: u32) -> StepContext {
        let plan = &self.core.plan;
        let step = &plan.steps[idx as usize];
        let (site, product) = owner_names(plan, step);
        let upstream = step
            .deps
            .iter()
            .filter_map(|&d| {
                let text = self.outputs[d as usize].as_deref()?;
                Some((
                    plan.steps[d as usize].id.clone(),
                    serde_json::from_str(text).ok()?,
                ))
            })
            .collect();
        StepContext {
            step_id: step.id.clone(),
            site,
            product,
            params: step.params.clone(),
            upstream,
            idempotency_key: format!("{}/{}", self.opts.run_id, step.id),
            attempt,
            estimate: step.estimate,
            cancel: self.step_cancel.child_token(),
            staging: self.opts.staging.join(safe_relative_path(&step.id)),
        }
    }

    /// A step's task ended: record its success, or retry or fail it.
    fn on_joined(
        &mut self,
        joined: Result<(tokio::task::Id, Finished), tokio::task::JoinError>,
        draining: bool,
    ) {
        let (id, idx, result, ended) = match joined {
            Ok((id, f)) => (id, f.idx, f.result, f.ended),
            Err(e) => {
                let Some(&idx) = self.task_steps.get(&e.id()) else {
                    return;
                };
                let why = if e.is_panic() {
                    "the step panicked (a bug in its kind)"
                } else {
                    "the step was cancelled"
                };
                (e.id(), idx, Err(StepError::Permanent(why.into())), now_ms())
            }
        };
        self.task_steps.remove(&id);
        self.core.finished(idx);
        if result.is_ok() {
            self.eta.observe(&self.core.plan, idx); // before `finished` forgets when it started
        }
        self.eta.finished(idx);
        match result {
            Ok(output) => self.succeeded(idx, output, ended),
            Err(e) => self.attempt_failed(idx, e, ended, draining),
        }
    }

    /// Records a success; dependents are released once it is durable.
    fn succeeded(&mut self, idx: StepIdx, output: StepOutput, ended: i64) {
        let output = (!output.is_null()).then(|| output.to_string());
        self.outputs[idx as usize] = output.clone();
        self.pending_ops.push(Op::Complete {
            step: idx,
            attempt: self.attempts[idx as usize],
            at: ended,
            output,
        });
        self.pending_done.push(idx);
    }

    /// An attempt failed: another follows after a backoff, or the step fails for good.
    fn attempt_failed(&mut self, idx: StepIdx, e: StepError, ended: i64, draining: bool) {
        // The one place a step's error enters the ledger and the events: credentials a message
        // quotes (a URL's password, a token) never get further.
        let message = crate::redact::text(&e.to_string());
        self.failures[idx as usize] += 1;
        let budget_left =
            self.failures[idx as usize] < self.plan().steps[idx as usize].retry.attempts;
        if e.is_retryable() && (budget_left || draining) {
            self.retry_later(idx, message, ended, draining);
            return;
        }
        let attempt = self.attempts[idx as usize];
        let error = if e.is_retryable() {
            format!("{message} (gave up after {attempt} attempts)")
        } else {
            message
        };
        self.quarantined[idx as usize] = matches!(e, StepError::Quarantine(_));
        self.failed_for_good(idx, error, ended);
    }

    fn retry_later(&mut self, idx: StepIdx, error: String, ended: i64, draining: bool) {
        let attempt = self.attempts[idx as usize];
        self.core.will_retry(idx);
        self.pending_ops.push(Op::Fail {
            step: idx,
            attempt,
            at: ended,
            error: error.clone(),
            retryable: true,
        });
        if draining {
            return;
        }
        let plan = self.plan();
        let retry = &plan.steps[idx as usize].retry;
        let delay = backoff::delay(retry, self.failures[idx as usize], &mut self.rng);
        let at = Instant::now() + delay.min(crate::limits::MAX_BACKOFF);
        self.timers.push(Reverse((at, idx)));
        self.events.emit(&RunEvent::StepRetrying {
            step: idx,
            attempt,
            delay,
            error,
        });
    }

    /// Records the failure and blocks every step that depends on it.
    fn failed_for_good(&mut self, idx: StepIdx, error: String, ended: i64) {
        self.pending_ops.push(Op::Fail {
            step: idx,
            attempt: self.attempts[idx as usize],
            at: ended,
            error: error.clone(),
            retryable: false,
        });
        let blocked = self.core.failed(idx);
        let at = now_ms();
        self.pending_ops.extend(blocked.iter().map(|&s| Op::Block {
            step: s,
            by: idx,
            at,
        }));
        self.events.emit(&RunEvent::StepFailed {
            step: idx,
            error,
            blocked: blocked.len(),
        });
        self.after_failure(idx);
    }

    /// Sends accumulated transitions to the ledger unless a commit is already in flight.
    fn flush(&mut self) -> Result<(), RunError> {
        if self.committing.is_some() || self.pending_ops.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending_ops);
        self.committing = Some(std::mem::take(&mut self.pending_done));
        if let Some(result) = self.journal.submit(batch) {
            self.on_durable(result)?;
        }
        Ok(())
    }

    /// A batch is durable: its successes count, and their dependents may start.
    fn on_durable(&mut self, ack: Result<(), LedgerError>) -> Result<(), RunError> {
        ack?;
        for idx in self.committing.take().unwrap_or_default() {
            let site = self.core.succeeded(idx);
            self.events.emit(&RunEvent::StepSucceeded { step: idx });
            if let Some(site) = site {
                self.events.emit(&RunEvent::SiteRestored { site });
                self.canary_progress(site);
            }
        }
        Ok(())
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((t, idx))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            self.core.requeue(idx);
        }
    }

    /// Second interrupt: stop every step now and commit what is known. Steps that were running
    /// stay recorded as running and run again, with the same idempotency key, on resume.
    async fn abort(&mut self) -> Result<(), RunError> {
        self.step_cancel.cancel();
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        if self.committing.is_some() {
            let ack = self.journal.durable().await;
            self.on_durable(ack)?;
        }
        self.pending_done.clear();
        self.pending_ops
            .retain(|op| !matches!(op, Op::Complete { .. }));
        self.flush()?;
        if self.committing.is_some() {
            let ack = self.journal.durable().await;
            self.on_durable(ack)?;
        }
        Ok(())
    }

    fn emit_progress(&mut self) {
        self.core.counts.elapsed = self.started.elapsed();
        // The last estimate, counted down since it was made.
        self.core.counts.eta = self
            .eta_at
            .map(|(eta, at)| eta.saturating_sub(at.elapsed()));
        self.events
            .emit(&RunEvent::Progress(self.core.counts.clone()));
    }
}

fn resolve_kinds(plan: &Plan, registry: &Registry) -> Result<Vec<Arc<dyn StepKind>>, RunError> {
    plan.templates
        .iter()
        .enumerate()
        .map(|(t, info)| {
            registry.get(&info.kind).ok_or_else(|| {
                let step = plan
                    .steps
                    .iter()
                    .find(|s| s.template as usize == t)
                    .map_or_else(|| info.name.clone(), |s| s.id.clone());
                RunError::UnknownKind {
                    kind: info.kind.clone(),
                    step,
                }
            })
        })
        .collect()
}

fn check_pools(plan: &Plan, capacity: &[u32]) -> Result<(), RunError> {
    for step in &plan.steps {
        for &(pool, n) in &step.uses {
            let cap = capacity[pool as usize];
            if n > cap {
                return Err(RunError::PoolTooSmall {
                    pool: plan.pools[pool as usize].name.clone(),
                    capacity: cap,
                    needs: n,
                    step: step.id.clone(),
                });
            }
        }
    }
    Ok(())
}

/// The site and product a step belongs to, as its context names them.
pub(crate) fn owner_names(plan: &Plan, step: &Step) -> (Option<String>, Option<String>) {
    match &step.owner {
        Owner::Site { site, product } => (
            Some(plan.sites[*site as usize].id.to_string()),
            product.map(|p| plan.products[p as usize].clone()),
        ),
        Owner::Shared { product, .. } => (None, Some(plan.products[*product as usize].clone())),
    }
}

/// A step ID as a relative path: `site-0042/wiki/fetch`, with anything that could escape the
/// staging root (`..`, empty components, odd characters) replaced.
pub(crate) fn safe_relative_path(id: &str) -> PathBuf {
    id.split('/')
        .map(|part| {
            let clean: String = part
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if clean.is_empty() || clean.chars().all(|c| c == '.') {
                "_".to_owned()
            } else {
                clean
            }
        })
        .collect()
}
