//! The JSON answers of `drover serve` (`drover-serve/1`, docs/serve.md), built from a
//! [`Snapshot`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::snapshot::{Snapshot, site_of};
use crate::ledger::{StepState, format_ms};
use crate::status::SiteState;

pub const FORMAT: &str = "drover-serve/1";

#[derive(Serialize)]
pub struct Summary<'a> {
    pub format: &'static str,
    pub run_id: &'a str,
    pub plan_hash: &'a str,
    pub workflow: &'a str,
    pub request: &'a str,
    pub created_at: String,
    pub read_at: String,
    pub running: bool,
    pub holder: Option<crate::status::doc::HolderDoc>,
    pub all_restored: bool,
    pub sites_total: usize,
    pub sites: BTreeMap<SiteState, usize>,
    pub steps_total: usize,
    pub steps: BTreeMap<StepState, usize>,
    pub progress: f64,
    pub eta_s: Option<f64>,
    pub eta_p50_s: Option<f64>,
    pub eta_p90_s: Option<f64>,
    pub pools: Vec<PoolUse<'a>>,
    pub failures_total: usize,
    pub tiers: &'a [String],
    pub customers: &'a [String],
}

#[derive(Serialize)]
pub struct PoolUse<'a> {
    pub name: &'a str,
    pub capacity: u32,
    /// Units held by running steps.
    pub running: u64,
    /// Steps whose dependencies are done, waiting to start.
    pub waiting: usize,
}

pub fn summary(s: &Snapshot) -> Summary<'_> {
    let plan = s.plan();
    let info = &s.fixed.info;
    let states: Vec<StepState> = s.steps.iter().map(|r| r.state).collect();
    let holder = s
        .holder
        .clone()
        .map(|h| crate::status::doc::HolderDoc::of(h, s.read_at));
    let done = states
        .iter()
        .filter(|s| matches!(s, StepState::Succeeded | StepState::Skipped))
        .count();
    let range = s.range();
    Summary {
        format: FORMAT,
        run_id: &info.run_id,
        plan_hash: &info.plan_hash,
        workflow: &info.workflow_name,
        request: &info.request_name,
        created_at: format_ms(info.created_at),
        read_at: format_ms(s.read_at),
        running: holder.as_ref().is_some_and(|h| h.alive),
        holder,
        all_restored: s.sites.iter().all(|&x| x == SiteState::Restored),
        sites_total: s.sites.len(),
        sites: crate::status::count_sites(&s.sites),
        steps_total: states.len(),
        steps: crate::status::count_steps(&states),
        progress: if states.is_empty() {
            1.0
        } else {
            done as f64 / states.len() as f64
        },
        eta_s: range.map(|r| r.0),
        eta_p50_s: range.map(|r| r.0),
        eta_p90_s: range.map(|r| r.1),
        pools: pools(s),
        failures_total: states.iter().filter(|&&x| x == StepState::Failed).count(),
        tiers: &plan.tiers,
        customers: &s.fixed.customer_names,
    }
}

/// Each pool's capacity, units in use and backlog.
pub fn pools(s: &Snapshot) -> Vec<PoolUse<'_>> {
    let plan = s.plan();
    let capacity = crate::status::doc::sim_options(plan, &s.fixed.info).capacity;
    let mut out: Vec<PoolUse> = plan
        .pools
        .iter()
        .zip(capacity)
        .map(|(p, capacity)| PoolUse {
            name: &p.name,
            capacity,
            running: 0,
            waiting: 0,
        })
        .collect();
    for (i, step) in plan.steps.iter().enumerate() {
        let state = s.steps[i].state;
        let ready = state == StepState::Pending && is_ready(s, i);
        for &(pool, units) in &step.uses {
            let p = &mut out[pool as usize];
            if state == StepState::Running {
                p.running += u64::from(units);
            } else if ready {
                p.waiting += 1;
            }
        }
    }
    out
}

/// Whether every step that step `i` needs is done.
pub fn is_ready(s: &Snapshot, i: usize) -> bool {
    s.plan().steps[i].deps.iter().all(|&d| {
        matches!(
            s.steps[d as usize].state,
            StepState::Succeeded | StepState::Skipped
        )
    })
}

#[derive(Serialize)]
pub struct SiteRow<'a> {
    pub site: &'a str,
    pub tier: &'a str,
    pub customer: Option<&'a str>,
    pub state: SiteState,
    pub reason: Option<&'a str>,
    pub current_step: Option<&'a str>,
    pub steps_done: usize,
    pub steps_total: usize,
    pub eta_p50_s: Option<f64>,
    pub eta_p90_s: Option<f64>,
}

/// Per site: its steps (indices), in plan order.
pub fn steps_by_site(s: &Snapshot) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); s.sites.len()];
    for i in 0..s.plan().steps.len() {
        if let Some(site) = site_of(s.plan(), i) {
            out[site].push(i);
        }
    }
    out
}

pub fn site_row<'a>(s: &'a Snapshot, site: usize, steps: &[usize]) -> SiteRow<'a> {
    let plan = s.plan();
    let p = &plan.sites[site];
    let range = s.site_range(site);
    SiteRow {
        site: p.id.as_str(),
        tier: &plan.tiers[p.tier],
        customer: s.fixed.customers[site].as_deref(),
        state: s.sites[site],
        reason: s.reasons[site].as_deref(),
        current_step: steps
            .iter()
            .find(|&&i| s.steps[i].state == StepState::Running)
            .map(|&i| plan.steps[i].id.as_str()),
        steps_done: steps
            .iter()
            .filter(|&&i| s.steps[i].state.is_done())
            .count(),
        steps_total: steps.len(),
        eta_p50_s: range.map(|r| r.0),
        eta_p90_s: range.map(|r| r.1),
    }
}

/// `/api/v1/sites` filters (docs/serve.md).
#[derive(Debug, Default, serde::Deserialize)]
pub struct SiteQuery {
    pub state: Option<String>,
    pub tier: Option<String>,
    pub customer: Option<String>,
    pub q: Option<String>,
    pub offset: Option<usize>,
    pub limit: Option<usize>,
}

/// Rows per page by default, and at most.
const PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

#[derive(Serialize)]
pub struct SitePage<'a> {
    pub format: &'static str,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub sites: Vec<SiteRow<'a>>,
}

pub fn sites<'a>(s: &'a Snapshot, by_site: &[Vec<usize>], q: &SiteQuery) -> SitePage<'a> {
    let plan = s.plan();
    let needle =
        q.q.as_deref()
            .map(str::to_lowercase)
            .filter(|n| !n.is_empty());
    let matching: Vec<usize> = (0..s.sites.len())
        .filter(|&i| {
            let site = &plan.sites[i];
            let customer = s.fixed.customers[i].as_deref();
            q.state.as_deref().is_none_or(|x| x == s.sites[i].as_str())
                && q.tier.as_deref().is_none_or(|x| x == plan.tiers[site.tier])
                && q.customer.as_deref().is_none_or(|x| Some(x) == customer)
                && needle.as_deref().is_none_or(|n| {
                    site.id.as_str().contains(n)
                        || customer.is_some_and(|c| c.to_lowercase().contains(n))
                })
        })
        .collect();
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(PAGE).clamp(1, MAX_PAGE);
    SitePage {
        format: FORMAT,
        total: matching.len(),
        offset,
        limit,
        sites: matching
            .iter()
            .skip(offset)
            .take(limit)
            .map(|&i| site_row(s, i, &by_site[i]))
            .collect(),
    }
}

/// `/api/v1/customers`: `customer` (exact) and `q` (part of the name or a site ID) filter.
#[derive(serde::Deserialize)]
pub struct CustomerQuery {
    pub customer: Option<String>,
    pub q: Option<String>,
    pub offset: Option<usize>,
    pub limit: Option<usize>,
}

#[derive(Serialize)]
pub struct CustomerPage<'a> {
    pub format: &'static str,
    pub as_of: &'a str,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub customers: Vec<&'a crate::status::customers::CustomerDoc>,
}

pub fn customers<'a>(s: &'a Snapshot, q: &CustomerQuery) -> CustomerPage<'a> {
    let doc = s.customers();
    let needle =
        q.q.as_deref()
            .map(str::to_lowercase)
            .filter(|n| !n.is_empty());
    let matching: Vec<&crate::status::customers::CustomerDoc> = doc
        .customers
        .iter()
        .filter(|c| {
            let name = c.customer.as_deref();
            q.customer.as_deref().is_none_or(|x| Some(x) == name)
                && needle.as_deref().is_none_or(|n| {
                    name.is_some_and(|c| c.to_lowercase().contains(n))
                        || c.sites.iter().any(|s| s.site.contains(n))
                })
        })
        .collect();
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(PAGE).clamp(1, MAX_PAGE);
    CustomerPage {
        format: FORMAT,
        as_of: &doc.as_of,
        total: matching.len(),
        offset,
        limit,
        customers: matching.into_iter().skip(offset).take(limit).collect(),
    }
}

#[derive(Serialize)]
pub struct SiteDetail<'a> {
    pub format: &'static str,
    #[serde(flatten)]
    pub row: SiteRow<'a>,
    pub steps: Vec<StepRow<'a>>,
}

#[derive(Serialize)]
pub struct StepRow<'a> {
    pub step: &'a str,
    pub kind: &'a str,
    pub state: StepState,
    pub attempts: u32,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub error: Option<&'a str>,
}

pub fn site<'a>(s: &'a Snapshot, site: usize, steps: &[usize]) -> SiteDetail<'a> {
    let plan = s.plan();
    SiteDetail {
        format: FORMAT,
        row: site_row(s, site, steps),
        steps: steps
            .iter()
            .map(|&i| {
                let r = &s.steps[i];
                StepRow {
                    step: &plan.steps[i].id,
                    kind: plan.kind(&plan.steps[i]),
                    state: r.state,
                    attempts: r.attempts,
                    started_at: r.started_at.map(format_ms),
                    ended_at: r.ended_at.map(format_ms),
                    error: (r.state == StepState::Failed)
                        .then_some(r.last_error.as_deref())
                        .flatten(),
                }
            })
            .collect(),
    }
}

#[derive(Serialize)]
pub struct Failures<'a> {
    pub format: &'static str,
    pub failures: Vec<Failure<'a>>,
}

#[derive(Serialize)]
pub struct Failure<'a> {
    #[serde(flatten)]
    pub failure: crate::status::doc::FailureDoc<'a>,
    pub next_action: String,
}

pub fn failures<'a>(s: &'a Snapshot, ledger: &std::path::Path) -> Failures<'a> {
    let ledger = ledger.display();
    Failures {
        format: FORMAT,
        failures: crate::status::doc::failures(s.plan(), &s.steps)
            .into_iter()
            .map(|failure| Failure {
                next_action: format!(
                    "once the cause is fixed: drover retry --state {ledger} --step {id} \
                     && drover resume --state {ledger}; to give up on it: drover skip \
                     --state {ledger} --step {id} --reason '…'",
                    id = failure.step
                ),
                failure,
            })
            .collect(),
    }
}
