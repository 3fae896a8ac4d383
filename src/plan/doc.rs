//! The JSON documents of a plan: the summary `drover plan --format json` prints, and the full plan
//! `--out` writes for review and for `drover run --plan`. Field meanings: docs/plan-format.md.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Owner, Plan, Step};
use crate::workflow::Retry;

pub const SUMMARY_FORMAT: &str = "drover-plan-summary/1";
pub const PLAN_FORMAT: &str = "drover-plan/1";
/// The largest plan file `run --plan` reads (a 2-million-step plan is well under this).
pub const MAX_PLAN_BYTES: u64 = 2 * 1024 * 1024 * 1024;

#[derive(Serialize)]
pub struct Summary<'a> {
    pub format: &'static str,
    pub hash: &'a str,
    pub workflow: &'a str,
    pub request: &'a str,
    pub point_in_time: &'a str,
    pub sites: usize,
    pub sites_by_tier: BTreeMap<&'a str, usize>,
    pub sites_by_product: BTreeMap<&'a str, usize>,
    pub steps: usize,
    pub steps_by_kind: BTreeMap<&'a str, usize>,
    /// Templates with a `when` condition: the condition and how many instances it kept (which
    /// path each site takes).
    pub conditional_steps: BTreeMap<&'a str, Conditional<'a>>,
    /// Sites grouped by the conditional site steps they skip: each group is one restore path.
    /// Empty when the workflow has no conditions.
    pub paths: Vec<PathGroup<'a>>,
    pub edges: usize,
    pub pools: Vec<PoolDoc<'a>>,
    pub critical_path: CriticalPath<'a>,
    pub lower_bound_s: f64,
    pub total_work_s: f64,
}

#[derive(Serialize)]
pub struct Conditional<'a> {
    pub when: &'a str,
    pub steps: usize,
}

#[derive(Serialize)]
pub struct PathGroup<'a> {
    /// Conditional templates with no step for these sites (empty: every step).
    pub skips: Vec<&'a str>,
    pub sites: usize,
    /// The first few of them, in ID order.
    pub examples: Vec<&'a str>,
}

/// How many site IDs a path group shows.
const PATH_EXAMPLES: usize = 5;

/// Groups sites by the conditional templates (with site-owned steps) they have no step of.
fn paths(plan: &Plan) -> Vec<PathGroup<'_>> {
    let conditional: Vec<bool> = plan.templates.iter().map(|t| t.when.is_some()).collect();
    // taken[site][template]: the site has a step of that conditional template.
    let mut taken = vec![vec![false; plan.templates.len()]; plan.sites.len()];
    let mut site_scoped = vec![false; plan.templates.len()];
    for step in &plan.steps {
        let t = step.template as usize;
        if let (Owner::Site { site, .. }, true) = (&step.owner, conditional[t]) {
            taken[*site as usize][t] = true;
            site_scoped[t] = true;
        }
    }
    if !site_scoped.contains(&true) {
        return Vec::new();
    }
    let mut groups: BTreeMap<Vec<&str>, PathGroup> = BTreeMap::new();
    for (site, has) in plan.sites.iter().zip(&taken) {
        let skips: Vec<&str> = (0..plan.templates.len())
            .filter(|&t| site_scoped[t] && !has[t])
            .map(|t| plan.templates[t].name.as_str())
            .collect();
        let g = groups.entry(skips.clone()).or_insert(PathGroup {
            skips,
            sites: 0,
            examples: Vec::new(),
        });
        g.sites += 1;
        if g.examples.len() < PATH_EXAMPLES {
            g.examples.push(site.id.as_str());
        }
    }
    groups.into_values().collect()
}

#[derive(Serialize)]
pub struct PoolDoc<'a> {
    pub name: &'a str,
    pub capacity: u32,
    /// Σ estimate × units, in seconds.
    pub demand_s: f64,
    /// demand ÷ capacity between the pool's edges (`PoolPlan::bound`): the least time this pool
    /// alone needs.
    pub bound_s: f64,
}

#[derive(Serialize)]
pub struct CriticalPath<'a> {
    pub length_s: f64,
    pub steps: Vec<&'a str>,
}

impl<'a> Summary<'a> {
    pub fn new(plan: &'a Plan) -> Summary<'a> {
        let mut sites_by_tier = BTreeMap::new();
        let mut sites_by_product = BTreeMap::new();
        for site in &plan.sites {
            *sites_by_tier
                .entry(plan.tiers[site.tier].as_str())
                .or_default() += 1;
            for &p in &site.products {
                *sites_by_product
                    .entry(plan.products[p as usize].as_str())
                    .or_default() += 1;
            }
        }
        // Counted per template, then named: a plan may have millions of steps.
        let mut per_template = vec![0usize; plan.templates.len()];
        for step in &plan.steps {
            per_template[step.template as usize] += 1;
        }
        let mut steps_by_kind = BTreeMap::new();
        for (t, &n) in plan.templates.iter().zip(&per_template) {
            if n > 0 {
                *steps_by_kind.entry(t.kind.as_str()).or_default() += n;
            }
        }
        let mut conditional_steps: BTreeMap<&str, Conditional> = plan
            .templates
            .iter()
            .filter_map(|t| {
                Some((
                    t.name.as_str(),
                    Conditional {
                        when: t.when.as_deref()?,
                        steps: 0,
                    },
                ))
            })
            .collect();
        for (t, &n) in plan.templates.iter().zip(&per_template) {
            if let Some(c) = conditional_steps.get_mut(t.name.as_str()) {
                c.steps += n;
            }
        }
        Summary {
            format: SUMMARY_FORMAT,
            hash: &plan.hash,
            workflow: &plan.workflow,
            request: &plan.request,
            point_in_time: &plan.point_in_time,
            sites: plan.sites.len(),
            sites_by_tier,
            sites_by_product,
            steps: plan.steps.len(),
            steps_by_kind,
            conditional_steps,
            paths: paths(plan),
            edges: plan.edge_count(),
            pools: plan
                .pools
                .iter()
                .map(|p| PoolDoc {
                    name: &p.name,
                    capacity: p.capacity,
                    demand_s: p.demand.as_secs_f64(),
                    bound_s: p.bound().as_secs_f64(),
                })
                .collect(),
            critical_path: CriticalPath {
                length_s: plan.critical_path_length().as_secs_f64(),
                steps: plan
                    .critical_path
                    .iter()
                    .map(|&i| plan.steps[i as usize].id.as_str())
                    .collect(),
            },
            lower_bound_s: plan.lower_bound.as_secs_f64(),
            total_work_s: plan.total_work().as_secs_f64(),
        }
    }
}

/// The full plan: every step with its dependencies, pool use and rank.
#[derive(Serialize)]
pub struct PlanDoc<'a> {
    pub format: &'static str,
    pub hash: &'a str,
    /// The files and overrides the plan was made from, for `drover run --plan`.
    pub inputs: &'a PlanInputs,
    pub summary: Summary<'a>,
    pub tiers: &'a [String],
    pub sites: Vec<SiteDoc<'a>>,
    pub steps: Vec<StepDoc<'a>>,
}

/// Where a written plan came from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct PlanInputs {
    pub workflow: String,
    pub request: String,
    /// `--pools` overrides in force.
    pub pools: BTreeMap<String, u32>,
    /// Sites of the request left out by `--exclude-refused`, with why preflight refused each.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub excluded: BTreeMap<String, Vec<String>>,
}

#[derive(Serialize)]
pub struct SiteDoc<'a> {
    pub id: &'a str,
    pub tier: &'a str,
    pub products: Vec<&'a str>,
}

#[derive(Serialize)]
pub struct StepDoc<'a> {
    pub id: &'a str,
    pub template: &'a str,
    pub kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<&'a str>,
    /// Literal credentials are redacted: a plan file is for review, and the run re-plans from
    /// the recorded inputs, never from these values.
    #[serde(serialize_with = "redacted")]
    pub params: &'a crate::plan::Params,
    pub deps: Vec<&'a str>,
    pub uses: BTreeMap<&'a str, u32>,
    pub estimate_ms: u64,
    pub timeout_ms: u64,
    pub retry: Retry,
    pub rank_ms: u64,
    pub tier: &'a str,
}

impl<'a> PlanDoc<'a> {
    pub fn new(plan: &'a Plan, inputs: &'a PlanInputs) -> PlanDoc<'a> {
        PlanDoc {
            format: PLAN_FORMAT,
            hash: &plan.hash,
            inputs,
            summary: Summary::new(plan),
            tiers: &plan.tiers,
            sites: plan
                .sites
                .iter()
                .map(|s| SiteDoc {
                    id: s.id.as_str(),
                    tier: &plan.tiers[s.tier],
                    products: s
                        .products
                        .iter()
                        .map(|&p| plan.products[p as usize].as_str())
                        .collect(),
                })
                .collect(),
            steps: plan.steps.iter().map(|s| step_doc(plan, s)).collect(),
        }
    }
}

fn step_doc<'a>(plan: &'a Plan, step: &'a Step) -> StepDoc<'a> {
    let (site, product, unit) = match &step.owner {
        Owner::Site { site, product } => (
            Some(plan.sites[*site as usize].id.as_str()),
            product.map(|p| plan.products[p as usize].as_str()),
            None,
        ),
        Owner::Shared { unit, product, .. } => (
            None,
            Some(plan.products[*product as usize].as_str()),
            Some(unit.as_str()),
        ),
    };
    StepDoc {
        id: &step.id,
        template: &plan.templates[step.template as usize].name,
        kind: plan.kind(step),
        site,
        product,
        unit,
        params: &step.params,
        deps: step
            .deps
            .iter()
            .map(|&d| plan.steps[d as usize].id.as_str())
            .collect(),
        uses: step
            .uses
            .iter()
            .map(|&(p, n)| (plan.pools[p as usize].name.as_str(), n))
            .collect(),
        estimate_ms: crate::limits::millis(step.estimate),
        timeout_ms: crate::limits::millis(step.timeout),
        retry: step.retry,
        rank_ms: crate::limits::millis(step.rank),
        tier: &plan.tiers[step.tier],
    }
}

fn redacted<S: serde::Serializer>(params: &&crate::plan::Params, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(params.iter().map(|(k, v)| (k, crate::redact::text(v))))
}
