//! Simulation: the scheduling core that runs restores (`schedule::core::Core`), driven over
//! virtual time by an event queue — no sleeping, no IO — to forecast how long a restore takes.
//! Deterministic for the same durations.
//!
//! - `model`: how long each step takes (workflow estimates, or learned from previous ledgers);
//! - `forecast`: the `drover-estimate/1` document; `live`: the time left in a run under way.

pub mod forecast;
pub mod live;
pub mod model;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use crate::dispatch::Core;
use crate::dispatch::policy::{Policy, Priorities};
use crate::ledger::StepState;
use crate::plan::{Plan, StepIdx};
use model::Durations;

/// Pools and limits for a simulation.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Capacity per plan pool.
    pub capacity: Vec<u32>,
    pub max_parallel: usize,
    pub policy: Policy,
}

impl SimOptions {
    pub fn for_plan(plan: &Plan) -> SimOptions {
        SimOptions {
            capacity: plan.pools.iter().map(|p| p.capacity).collect(),
            max_parallel: crate::dispatch::DEFAULT_MAX_PARALLEL,
            policy: Policy::default(),
        }
    }
}

/// A simulated schedule. Times are milliseconds from the simulation's start.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// Per step; `u64::MAX` for a step that never ran.
    pub start_ms: Vec<u64>,
    pub end_ms: Vec<u64>,
    pub makespan: Duration,
    /// Per pool: Σ units × time held, in unit-milliseconds.
    pub pool_busy: Vec<f64>,
    /// Per site: when its last step ended (`u64::MAX` if it never finished).
    pub site_done_ms: Vec<u64>,
}

impl Schedule {
    /// Share of each pool's capacity in use over the makespan, 0..=1.
    pub fn utilization(&self, capacity: &[u32]) -> Vec<f64> {
        let span = self.makespan.as_millis().max(1) as f64;
        self.pool_busy
            .iter()
            .zip(capacity)
            .map(|(busy, &cap)| busy / (cap.max(1) as f64 * span))
            .collect()
    }
}

/// Simulates a whole plan from the start with `durations` (which may depend on how many steps
/// run when each starts).
pub fn simulate(plan: &Arc<Plan>, opts: &SimOptions, durations: &Durations) -> Schedule {
    let mut core = new_core(plan, opts);
    core.restore(&vec![StepState::Pending; plan.steps.len()]);
    run(core, durations, &[], &[])
}

/// One policy's simulated restore: when the last site is back, and the mean and p95 time until
/// a site is back.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct PolicyOutcome {
    pub policy: Policy,
    pub makespan_ms: u64,
    pub site_mean_ms: u64,
    pub site_p95_ms: u64,
}

impl PolicyOutcome {
    pub fn of(policy: Policy, schedule: &Schedule) -> PolicyOutcome {
        let mut done: Vec<u64> = schedule
            .site_done_ms
            .iter()
            .copied()
            .filter(|&t| t != u64::MAX)
            .collect();
        done.sort_unstable();
        PolicyOutcome {
            policy,
            makespan_ms: schedule.makespan.as_millis() as u64,
            site_mean_ms: done.iter().sum::<u64>() / done.len().max(1) as u64,
            site_p95_ms: percentile(&done, 95.0),
        }
    }
}

/// How much longer than the fastest policy's makespan `auto` accepts for sites back sooner.
pub const AUTO_MARGIN: f64 = 0.02;

/// Every policy `auto` chooses from, simulated on this plan (one scoped thread each).
pub fn compare(plan: &Arc<Plan>, opts: &SimOptions, durations: &Durations) -> Vec<PolicyOutcome> {
    compare_from(
        plan,
        opts,
        durations,
        &vec![StepState::Pending; plan.steps.len()],
    )
}

/// As [`compare`], keeping each policy's schedule (a forecast draws the one it runs).
pub fn compare_schedules(
    plan: &Arc<Plan>,
    opts: &SimOptions,
    durations: &Durations,
) -> Vec<(PolicyOutcome, Schedule)> {
    let states = vec![StepState::Pending; plan.steps.len()];
    each_policy(plan, opts, &states, |policy, core| {
        let schedule = run(core, durations, &[], &[]);
        (PolicyOutcome::of(policy, &schedule), schedule)
    })
}

/// As [`compare`], for what is left of a run whose steps are in `states` (a resume).
pub fn compare_from(
    plan: &Arc<Plan>,
    opts: &SimOptions,
    durations: &Durations,
    states: &[StepState],
) -> Vec<PolicyOutcome> {
    each_policy(plan, opts, states, |policy, core| {
        PolicyOutcome::of(policy, &run(core, durations, &[], &[]))
    })
}

/// `f` on a core per concrete policy, restored to `states`, in policy order. On a thread per
/// core, each taking the next policy when it is done: six simulations of millions of steps at
/// once on two cores held six sets of arrays at once, and a thread that runs its simulations
/// one after another reuses the memory the last one freed.
fn each_policy<R: Send>(
    plan: &Arc<Plan>,
    opts: &SimOptions,
    states: &[StepState],
    f: impl Fn(Policy, Core) -> R + Sync,
) -> Vec<R> {
    crate::util::on_every_core(Policy::CONCRETE.len(), |i| {
        let policy = Policy::CONCRETE[i];
        let mut o = opts.clone();
        o.policy = policy;
        let mut core = new_core(plan, &o);
        core.restore(states);
        f(policy, core)
    })
}

/// What `auto` runs: the soonest makespan; of the policies within [`AUTO_MARGIN`] of it, the
/// one with the soonest mean time until a site is back.
pub fn choose(outcomes: &[PolicyOutcome]) -> Policy {
    let Some(best) = outcomes.iter().map(|o| o.makespan_ms).min() else {
        return Policy::Flow;
    };
    let limit = best as f64 * (1.0 + AUTO_MARGIN);
    outcomes
        .iter()
        .filter(|o| o.makespan_ms as f64 <= limit)
        .min_by_key(|o| (o.site_mean_ms, o.makespan_ms))
        .map_or(Policy::Flow, |o| o.policy)
}

/// What no schedule can beat, for given durations: the heaviest dependency chain, and each
/// pool's work ÷ its capacity between the least time before its first step and after its last
/// (`plan::rank::pool_edges`).
#[derive(Clone, Debug)]
pub struct Bounds {
    pub critical_path: Vec<StepIdx>,
    pub critical_path_ms: u64,
    /// Per pool: work ÷ capacity.
    pub pool_ms: Vec<u64>,
    /// Per pool: the least time before its first step plus after its last.
    pub pool_edges_ms: Vec<u64>,
}

impl Bounds {
    /// The bounds for the durations `schedule` gave its steps (a step's duration depends on how
    /// busy the machine was when it started), so they never exceed its makespan.
    pub fn of(plan: &Plan, schedule: &Schedule, capacity: &[u32]) -> Bounds {
        let durations: Vec<u64> = schedule
            .start_ms
            .iter()
            .zip(&schedule.end_ms)
            .map(|(&s, &e)| {
                if s == u64::MAX || e == u64::MAX {
                    0
                } else {
                    e - s
                }
            })
            .collect();
        Bounds::new(plan, &durations, capacity)
    }

    pub fn new(plan: &Plan, durations: &[u64], capacity: &[u32]) -> Bounds {
        let succ = plan.successors();
        let order = crate::plan::rank::topological_order(plan, &succ);
        let ranks = crate::plan::rank::longest_to_sink(plan, &succ, &order, |i| durations[i]);
        let critical_path = crate::plan::rank::heaviest_path(&ranks, &succ);
        let mut demand = vec![0.0f64; plan.pools.len()];
        for (step, &d) in plan.steps.iter().zip(durations) {
            for &(pool, units) in &step.uses {
                demand[pool as usize] += units as f64 * d as f64;
            }
        }
        let pool_ms = demand
            .iter()
            .enumerate()
            .map(|(p, &w)| (w / capacity[p].max(1) as f64) as u64)
            .collect();
        Bounds {
            critical_path_ms: critical_path.first().map_or(0, |&i| ranks[i as usize]),
            critical_path,
            pool_ms,
            pool_edges_ms: crate::plan::rank::pool_edges(plan, &order, &ranks, |i| durations[i]),
        }
    }

    /// Pool `p`'s bound: its work ÷ capacity between its edges.
    pub fn pool_bound_ms(&self, p: usize) -> u64 {
        self.pool_ms[p] + self.pool_edges_ms[p]
    }

    pub fn lower_bound_ms(&self) -> u64 {
        (0..self.pool_ms.len())
            .map(|p| self.pool_bound_ms(p))
            .fold(self.critical_path_ms, u64::max)
    }

    /// The pool whose work bounds the restore more than anything else, if one does.
    pub fn binding_pool(&self) -> Option<usize> {
        let (p, ms) = (0..self.pool_ms.len())
            .map(|p| (p, self.pool_bound_ms(p)))
            .max_by_key(|&(i, ms)| (ms, std::cmp::Reverse(i)))?;
        (ms > self.critical_path_ms).then_some(p)
    }
}

/// A fresh scheduling core for a plan, as `drover run` would build it.
pub(crate) fn new_core(plan: &Arc<Plan>, opts: &SimOptions) -> Core {
    let succ = plan.successors();
    let priorities = Arc::new(Priorities::new(plan, &succ, opts.policy, &opts.capacity));
    Core::new(
        Arc::clone(plan),
        succ,
        priorities,
        opts.capacity.clone(),
        opts.max_parallel,
    )
}

/// Continues a core's schedule in virtual time: `running` steps (already marked running in the
/// core) end after their remaining milliseconds; `retrying` steps are queued again at once; every
/// other step takes its duration with the number of steps running once it has started.
pub(crate) fn run(
    mut core: Core,
    durations: &Durations,
    running: &[(StepIdx, u64)],
    retrying: &[StepIdx],
) -> Schedule {
    let plan = Arc::clone(&core.plan);
    let n = plan.steps.len();
    let mut start_ms = vec![u64::MAX; n];
    let mut end_ms = vec![u64::MAX; n];
    let mut events: BinaryHeap<Reverse<(u64, StepIdx)>> = running
        .iter()
        .map(|&(idx, rem)| Reverse((rem, idx)))
        .collect();
    for &(idx, _) in running {
        start_ms[idx as usize] = 0;
    }
    for &idx in retrying {
        core.requeue(idx);
    }
    let mut now = 0u64;
    let mut fill = durations.units.filled(&core.state);
    loop {
        while let Some(idx) = core.start_next() {
            let d = durations.at(idx, &core.counts, &fill);
            start_ms[idx as usize] = now;
            events.push(Reverse((now.saturating_add(d), idx)));
        }
        let Some(Reverse((t, idx))) = events.pop() else {
            break;
        };
        now = t;
        core.finished(idx);
        core.succeeded(idx);
        durations.units.add(idx, &mut fill);
        end_ms[idx as usize] = now;
    }
    let mut pool_busy = vec![0.0; plan.pools.len()];
    let mut site_done_ms = vec![0u64; plan.sites.len()];
    let facts = plan.facts();
    for i in 0..n {
        if start_ms[i] != u64::MAX && end_ms[i] != u64::MAX {
            let held = (end_ms[i] - start_ms[i]) as f64;
            for &(pool, units) in facts.uses(i) {
                pool_busy[pool as usize] += units as f64 * held;
            }
        }
        let site = facts.site_of[i];
        if site != crate::plan::StepFacts::NO_SITE {
            let s = &mut site_done_ms[site as usize];
            *s = if end_ms[i] == u64::MAX || *s == u64::MAX {
                u64::MAX
            } else {
                (*s).max(end_ms[i])
            };
        }
    }
    Schedule {
        start_ms,
        end_ms,
        makespan: Duration::from_millis(now),
        pool_busy,
        site_done_ms,
    }
}

/// A percentile (0..=100) of values, by nearest rank.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PlanOptions;
    use crate::request::Request;
    use crate::source::Source;
    use crate::workflow::Workflow;

    /// The plan of workflow `wf` for a request of product `p` and `sites` (TOML).
    fn plan_of(wf: &str, sites: &str) -> Arc<Plan> {
        let wf =
            Workflow::parse(&Source::new("wf", wf.to_owned()), crate::steps::KNOWN_KINDS).unwrap();
        let text = format!(
            "[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"p\"]\n{sites}"
        );
        let req = Request::parse(&Source::new("r", text), |_| unreachable!()).unwrap();
        Arc::new(crate::plan::plan(&wf, &req, &PlanOptions::default()).unwrap())
    }

    fn numbered(sites: usize) -> String {
        (0..sites)
            .map(|i| format!("[[sites]]\nid = \"site-{i}\"\n"))
            .collect()
    }

    fn plan(capacity: u32, sites: usize) -> Arc<Plan> {
        let wf = format!(
            r#"
[workflow]
name = "t"
[pools.db]
capacity = {capacity}
[products.p]
[steps.a]
scope = "product"
kind = "noop"
uses = {{ db = 1 }}
estimate = "10s"
[steps.b]
scope = "site"
kind = "noop"
after = ["a"]
estimate = "5s"
"#
        );
        plan_of(&wf, &numbered(sites))
    }

    #[test]
    fn pool_bound_work_takes_demand_over_capacity() {
        let p = plan(2, 6);
        let durations: Vec<u64> = p
            .steps
            .iter()
            .map(|s| crate::limits::millis(s.estimate))
            .collect();
        let s = simulate(&p, &SimOptions::for_plan(&p), &Durations::fixed(&durations));
        // Six 10s steps on 2 slots (30s), then the last 5s site step.
        assert_eq!(s.makespan, Duration::from_secs(35));
        assert!((s.utilization(&[2])[0] - 60.0 / 70.0).abs() < 1e-9);
        assert!(s.site_done_ms.iter().all(|&t| t <= 35_000));
    }

    /// Per site: db 1s → cpu 10s → db 1s → cpu 10s, one unit of each pool.
    fn reentrant(sites: usize) -> Arc<Plan> {
        let wf = r#"
[workflow]
name = "t"
[pools.db]
capacity = 1
[pools.cpu]
capacity = 1
[products.p]
[steps.a]
scope = "site"
kind = "noop"
uses = { db = 1 }
estimate = "1s"
[steps.b]
scope = "site"
kind = "noop"
after = ["a"]
uses = { cpu = 1 }
estimate = "10s"
[steps.c]
scope = "site"
kind = "noop"
after = ["b"]
uses = { db = 1 }
estimate = "1s"
[steps.d]
scope = "site"
kind = "noop"
after = ["c"]
uses = { cpu = 1 }
estimate = "10s"
"#;
        plan_of(wf, &numbered(sites))
    }

    #[test]
    fn sites_come_back_one_after_another_under_flow_and_all_at_the_end_under_critical_path() {
        let p = reentrant(20);
        let durations: Vec<u64> = p
            .steps
            .iter()
            .map(|s| crate::limits::millis(s.estimate))
            .collect();
        let outcomes = compare(&p, &SimOptions::for_plan(&p), &Durations::fixed(&durations));
        let of = |policy| *outcomes.iter().find(|o| o.policy == policy).unwrap();
        let (flow, cp) = (of(Policy::Flow), of(Policy::CriticalPath));
        // cpu binds: 400s of work; the bound adds the first db step before it and nothing after.
        let bound = Bounds::new(&p, &durations, &[1, 1]).lower_bound_ms();
        assert_eq!(bound, 401_000);
        assert!(flow.makespan_ms <= 402_000, "{flow:?}");
        // Critical path validates every site's first half before any second half: every site
        // comes back in the last 200s. Flow finishes one site every 20s from the start.
        assert!(cp.site_mean_ms > 290_000, "{outcomes:?}");
        assert!(flow.site_mean_ms < 230_000, "{outcomes:?}");
        assert_eq!(choose(&outcomes), Policy::Flow);
    }

    #[test]
    fn auto_takes_the_soonest_makespan_and_trades_up_to_two_percent_of_it_for_sites_back_sooner() {
        let o = |policy, makespan_ms, site_mean_ms| PolicyOutcome {
            policy,
            makespan_ms,
            site_mean_ms,
            site_p95_ms: makespan_ms,
        };
        let outcomes = [
            o(Policy::CriticalPath, 100_000, 90_000),
            o(Policy::Flow, 101_900, 50_000),
            o(Policy::SmallestSiteFirst, 110_000, 10_000),
        ];
        assert_eq!(choose(&outcomes), Policy::Flow);
        let outcomes = [
            o(Policy::CriticalPath, 100_000, 90_000),
            o(Policy::Flow, 102_100, 50_000),
        ];
        assert_eq!(choose(&outcomes), Policy::CriticalPath);
    }

    #[test]
    fn a_shard_holds_what_was_restored_into_it_before_a_step_starts() {
        let wf = r#"
[workflow]
name = "t"
[pools.db]
capacity = 1
[products.p]
[steps.get]
scope = "shared"
unit = "shard"
kind = "fetch"
estimate = "1s"
[steps.load]
scope = "product"
kind = "restore-tenant"
after = ["get"]
uses = { db = 1 }
estimate = "10s"
scale = { attribute = "gb", per = "1s" }
[steps.check]
scope = "product"
kind = "validate"
after = ["load", "get"]
estimate = "1s"
"#;
        let p = plan_of(
            wf,
            "[[sites]]\nid = \"site-a\"\nattrs = { gb = 1, \"p.shard\" = \"s-1\" }\n\
             [[sites]]\nid = \"site-b\"\nattrs = { gb = 5, \"p.shard\" = \"s-1\" }\n\
             [[sites]]\nid = \"site-c\"\nattrs = { gb = 9, \"p.shard\" = \"s-2\" }\n",
        );
        let idx = |id: &str| p.steps.iter().position(|s| s.id == id).unwrap();
        let units = model::Units::of(&p);
        // A tenant's data is the part of its restore's estimate beyond the smallest one's:
        // b's 15s against a's 11s (c's 19s, in shard s-2). Checks put nothing in; another
        // shard's restores do not count.
        let mut records = vec![crate::ledger::StepRecord::default(); p.steps.len()];
        let mut done = |id: &str, start: i64, end: i64| {
            let r = &mut records[idx(id)];
            (r.state, r.started_at, r.ended_at) = (StepState::Succeeded, Some(start), Some(end));
        };
        done("site-a/p/load", 0, 10);
        done("site-c/p/load", 0, 10);
        done("site-b/p/load", 10, 20);
        done("site-a/p/check", 15, 16);
        done("site-b/p/check", 20, 21);
        let held = units.at_starts(&records);
        assert!(
            held[idx("site-b/p/load")] < 1e-9,
            "a holds only the smallest tenant's data"
        );
        assert!(held[idx("site-a/p/check")] < 1e-9);
        assert_eq!(held[idx("site-b/p/check")], 4_000.0);
        assert_eq!(units.whole(idx("site-a/p/check") as StepIdx), 4_000.0);
        let states: Vec<StepState> = records.iter().map(|r| r.state).collect();
        let fill = units.filled(&states);
        assert_eq!(units.now(idx("site-b/p/check") as StepIdx, &fill), 4_000.0);
        assert_eq!(units.now(idx("site-c/p/check") as StepIdx, &fill), 8_000.0);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v = [10, 20, 30, 40];
        assert_eq!(percentile(&v, 50.0), 20);
        assert_eq!(percentile(&v, 95.0), 40);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
