//! The planner: workflow × request → one DAG of step instances, validated, ranked and hashed.
//!
//! Pure and synchronous: no tokio, no IO. petgraph is used only inside this module.
//! - `expand`: instances, their parameters, dependencies and pool use;
//! - `graph`: cycle detection with the cycle's path;
//! - `rank`: topological order, upward rank, critical path, makespan lower bound;
//! - `hash`: the canonical plan hash;
//! - `params`: a step's rendered parameters, shared where equal;
//! - `doc`: the JSON documents `drover plan` prints and writes.

pub mod doc;
mod expand;
mod graph;
mod hash;
mod params;
pub mod rank;

pub use params::Params;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::diag::Problem;
use crate::ids::SiteId;
use crate::request::Request;
use crate::workflow::{Retry, Workflow};

/// Index of a step in [`Plan::steps`].
pub type StepIdx = u32;

/// An executable plan.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    pub workflow: String,
    pub request: String,
    /// RFC 3339, as given in the request.
    pub point_in_time: String,
    pub pools: Vec<PoolPlan>,
    pub tiers: Vec<String>,
    /// Product names; `Step::product` indexes this.
    pub products: Vec<String>,
    /// Template names and kinds; `Step::template` indexes this.
    pub templates: Vec<TemplateInfo>,
    /// Sites in ID order.
    pub sites: Vec<SitePlan>,
    /// Steps, grouped by site in ID order; `deps` always point at other entries here.
    #[serde(deserialize_with = "presized")]
    pub steps: Vec<Step>,
    /// Step indices along the critical path, first to last.
    pub critical_path: Vec<StepIdx>,
    /// max(critical path, busiest pool's demand ÷ capacity).
    pub lower_bound: Duration,
    /// SHA-256 of the canonical serialization, lowercase hex.
    pub hash: String,
    /// Successor lists, made on first use and shared by everything that walks the plan forward
    /// (each simulated policy, the scheduler, bounds): 5 million edges take 0.3 s to invert.
    /// A plan's dependencies never change once it is made.
    #[serde(skip)]
    successors: std::sync::OnceLock<std::sync::Arc<rank::Successors>>,
    /// Per step, the little the scheduler reads on its hot path, made on first use: each
    /// simulation built it again from step records of hundreds of bytes each.
    #[serde(skip)]
    facts: std::sync::OnceLock<std::sync::Arc<StepFacts>>,
}

/// Per step of a plan, its site and its pool use, in flat arrays: what the scheduler and the
/// simulator read for every step, instead of the step records.
#[derive(Debug)]
pub struct StepFacts {
    /// Per step: its site, or [`StepFacts::NO_SITE`] for a shared step.
    pub site_of: Box<[u32]>,
    /// Per step: its pool use, as an index into `signatures`.
    pub signature: Box<[u16]>,
    /// The distinct pool uses of the plan's steps.
    pub signatures: Box<[Vec<(u16, u32)>]>,
}

impl StepFacts {
    pub const NO_SITE: u32 = u32::MAX;

    fn of(plan: &Plan) -> StepFacts {
        let n = plan.steps.len();
        let mut signatures: Vec<Vec<(u16, u32)>> = Vec::new();
        let mut signature = Vec::with_capacity(n);
        let mut site_of = Vec::with_capacity(n);
        for step in &plan.steps {
            let sig = match signatures.iter().position(|s| *s == step.uses) {
                Some(i) => i,
                None => {
                    signatures.push(step.uses.clone());
                    signatures.len() - 1
                }
            };
            signature.push(sig as u16);
            site_of.push(match step.owner {
                Owner::Site { site, .. } => site,
                Owner::Shared { .. } => StepFacts::NO_SITE,
            });
        }
        StepFacts {
            site_of: site_of.into(),
            signature: signature.into(),
            signatures: signatures.into(),
        }
    }

    /// Step `i`'s pool units.
    pub fn uses(&self, i: usize) -> &[(u16, u32)] {
        &self.signatures[self.signature[i] as usize]
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PoolPlan {
    pub name: String,
    pub capacity: u32,
    /// Σ estimate × units over every step that uses the pool.
    pub demand: Duration,
    /// The least time before the pool's first step can start plus after its last one ends
    /// (`rank::pool_edges`); zero in plans stored before it was computed.
    #[serde(default)]
    pub edges: Duration,
}

impl PoolPlan {
    /// The time this pool alone needs: demand ÷ capacity, between its edges.
    pub fn bound(&self) -> Duration {
        self.demand / self.capacity.max(1) + self.edges
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TemplateInfo {
    pub name: String,
    pub kind: String,
    /// The template's `when` condition, described (`state is not soft-deleted`).
    pub when: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SitePlan {
    pub id: SiteId,
    pub tier: usize,
    /// Indices into `Plan::products`.
    pub products: Vec<u16>,
}

/// What one step instance is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Owner {
    /// A step of one site (and maybe one of its products).
    Site { site: u32, product: Option<u16> },
    /// A step of a shared unit that many sites need: attribute name, unit value, and the
    /// product the unit belongs to.
    Shared {
        attribute: String,
        unit: String,
        product: u16,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    /// Stable, readable: `site-0042/wiki/rebuild`, `site-0042/reactivate`, `shard/wiki-3/fetch-shard`.
    pub id: String,
    pub template: u16,
    pub owner: Owner,
    pub params: Params,
    pub deps: Vec<StepIdx>,
    /// Pool index and units held while running.
    pub uses: Vec<(u16, u32)>,
    pub estimate: Duration,
    pub timeout: Duration,
    pub retry: Retry,
    /// Longest estimate-weighted path from this step to a sink, itself included.
    pub rank: Duration,
    /// Most urgent tier among the sites that need this step.
    pub tier: usize,
}

/// Options that change how a plan is made (not what it restores).
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// Pool capacity overrides, e.g. from `--pools db=8`.
    pub pool_capacity: BTreeMap<String, u32>,
}

impl Plan {
    pub fn kind(&self, step: &Step) -> &str {
        &self.templates[step.template as usize].kind
    }

    /// Σ of every step's estimate: the time one worker would need.
    pub fn total_work(&self) -> Duration {
        self.steps
            .iter()
            .fold(Duration::ZERO, |sum, s| sum.saturating_add(s.estimate))
    }

    pub fn critical_path_length(&self) -> Duration {
        self.critical_path
            .first()
            .map_or(Duration::ZERO, |&s| self.steps[s as usize].rank)
    }

    /// Successor lists of every step (computed once per plan).
    pub fn successors(&self) -> std::sync::Arc<rank::Successors> {
        self.successors
            .get_or_init(|| std::sync::Arc::new(rank::successors(self)))
            .clone()
    }

    /// Every step's site and pool use in flat arrays (computed once per plan).
    pub fn facts(&self) -> std::sync::Arc<StepFacts> {
        self.facts
            .get_or_init(|| std::sync::Arc::new(StepFacts::of(self)))
            .clone()
    }

    pub fn edge_count(&self) -> usize {
        self.steps.iter().map(|s| s.deps.len()).sum()
    }
}

/// Reads the steps into a vector with room for all of them: serde's default grows it by
/// doubling, and for a stored plan of 2 million steps that copied and faulted in gigabytes
/// (half a resume's time). The length a damaged ledger claims is trusted only as far as it can
/// be reserved.
fn presized<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Step>, D::Error> {
    struct Steps;
    impl<'de> serde::de::Visitor<'de> for Steps {
        type Value = Vec<Step>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of steps")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<Step>, A::Error> {
            const MOST: usize = 1 << 24;
            let mut steps = Vec::new();
            // Reserving may fail (a claimed length beyond memory): then the vector grows.
            let _ = steps.try_reserve_exact(seq.size_hint().unwrap_or(0).min(MOST));
            while let Some(step) = seq.next_element()? {
                steps.push(step);
            }
            Ok(steps)
        }
    }
    d.deserialize_seq(Steps)
}

/// Expands, validates, ranks and hashes. Reports every problem found, not just the first.
pub fn plan(wf: &Workflow, req: &Request, opts: &PlanOptions) -> Result<Plan, Vec<Problem>> {
    let mut problems = graph::check_workflow(wf);
    problems.extend(check_overrides(wf, opts));
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut plan = expand::expand(wf, req, opts)?;
    // The hash reads nothing that ranking computes, so the two share the machine's cores: on a
    // 2-million-step plan each takes about a second.
    let (hash, ranked) = std::thread::scope(|scope| {
        let hashing = scope.spawn(|| hash::hash(&plan));
        let succ = plan.successors();
        let order = rank::topological_order(&plan, &succ);
        let ranked = (order.len() == plan.steps.len()).then(|| rank::ranks(&plan, &succ, &order));
        let hash = hashing
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        (hash, ranked)
    });
    let Some(ranked) = ranked else {
        return Err(graph::cycles_among_steps(&plan));
    };
    rank::apply(&mut plan, ranked);
    plan.hash = hash;
    Ok(plan)
}

/// Recomputes the hash of a plan (e.g. one read back from a ledger or a file).
pub fn rehash(plan: &Plan) -> String {
    hash::hash(plan)
}

fn check_overrides(wf: &Workflow, opts: &PlanOptions) -> Vec<Problem> {
    use crate::diag::{Location, ProblemKind};
    let known: Vec<String> = wf.pools.iter().map(|p| p.name.clone()).collect();
    let mut problems = Vec::new();
    for (name, &cap) in &opts.pool_capacity {
        let at = Location::file("--pools");
        if !known.contains(name) {
            let kind = ProblemKind::Unknown {
                what: "pool",
                name: name.clone(),
                known: known.clone(),
            };
            problems.push(Problem::new(at, name.clone(), kind));
        } else if cap == 0 {
            problems.push(Problem::new(
                at,
                name.clone(),
                ProblemKind::ZeroCapacity { pool: name.clone() },
            ));
        } else if cap > crate::limits::MAX_CAPACITY {
            let kind = ProblemKind::OutOfRange {
                value: format!("{name}={cap}"),
                reason: "more than a pool's largest capacity".into(),
                range: format!("1 to {}", crate::limits::MAX_CAPACITY),
            };
            problems.push(Problem::new(at, name.clone(), kind));
        }
    }
    problems
}

#[cfg(test)]
mod tests;
