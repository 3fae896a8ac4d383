//! The `drover-status/1` document: a run's sites, steps, failures and time left, from its
//! ledger records. Described in docs/status-format.md; the CLI prints it as JSON or text.

use serde::Serialize;

use super::{SiteState, count_sites, count_steps, site_states};
use crate::ledger::lock::Holder;
use crate::ledger::{StepRecord, StepState, Stored, format_ms};
use crate::plan::{Owner, Plan};

pub const STATUS_FORMAT: &str = "drover-status/1";

#[derive(Serialize)]
pub struct StatusDoc<'a> {
    pub format: &'static str,
    pub run_id: &'a str,
    pub plan_hash: &'a str,
    pub workflow: &'a str,
    pub request: &'a str,
    pub created_at: String,
    pub holder: Option<HolderDoc>,
    pub all_restored: bool,
    /// Time left if the run proceeds from its recorded state (simulated; null when nothing is
    /// left to run).
    pub eta_s: Option<f64>,
    pub sites_total: usize,
    pub sites: std::collections::BTreeMap<SiteState, usize>,
    pub steps_total: usize,
    pub steps: std::collections::BTreeMap<StepState, usize>,
    pub site_status: Vec<SiteDoc<'a>>,
    pub failures: Vec<FailureDoc<'a>>,
}

#[derive(Serialize)]
pub struct HolderDoc {
    pub pid: u32,
    pub host: String,
    pub user: String,
    pub since: String,
    pub alive: bool,
}

#[derive(Serialize)]
pub struct SiteDoc<'a> {
    pub site: &'a str,
    pub tier: &'a str,
    pub state: SiteState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Serialize)]
pub struct FailureDoc<'a> {
    pub step: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<&'a str>,
    pub kind: &'a str,
    pub attempts: u32,
    pub error: &'a str,
    /// Steps that cannot run until this one is fixed (retried or skipped).
    pub blocked_steps: usize,
}

impl HolderDoc {
    /// The holder as the ledger records it, alive or not at `now` (ms).
    pub fn of((h, since, beat): HolderRecord, now: i64) -> HolderDoc {
        HolderDoc {
            alive: h.is_alive(beat, now),
            pid: h.pid,
            host: h.host,
            user: h.user,
            since: format_ms(since),
        }
    }
}

/// Who holds the ledger, as the ledger records it: the holder, since when, its last heartbeat.
pub type HolderRecord = (Holder, i64, i64);

/// The status document of a run at `now` (Unix milliseconds).
pub fn document(stored: &Stored, holder: Option<HolderRecord>, now: i64) -> StatusDoc<'_> {
    let plan = &stored.plan;
    let states: Vec<StepState> = stored.steps.iter().map(|r| r.state).collect();
    let sites = site_states(plan, &states, |i| stored.steps[i].quarantined());
    let holder = holder.map(|h| HolderDoc::of(h, now));
    let reasons = site_reasons(plan, &stored.steps);
    StatusDoc {
        format: STATUS_FORMAT,
        run_id: &stored.info.run_id,
        plan_hash: &stored.info.plan_hash,
        workflow: &stored.info.workflow_name,
        request: &stored.info.request_name,
        created_at: format_ms(stored.info.created_at),
        holder,
        all_restored: sites.iter().all(|&s| s == SiteState::Restored),
        eta_s: eta_of(stored, now),
        sites_total: sites.len(),
        sites: count_sites(&sites),
        steps_total: states.len(),
        steps: count_steps(&states),
        site_status: plan
            .sites
            .iter()
            .zip(&sites)
            .enumerate()
            .map(|(i, (s, &state))| SiteDoc {
                site: s.id.as_str(),
                tier: &plan.tiers[s.tier],
                state,
                reason: reasons[i].clone(),
            })
            .collect(),
        failures: failures(&stored.plan, &stored.steps),
    }
}

/// Every failed step of `plan` whose records are `steps`, with how many steps wait on it.
pub fn failures<'a>(plan: &'a Plan, steps: &'a [StepRecord]) -> Vec<FailureDoc<'a>> {
    let blocked_by_count = count_blocked(steps);
    steps
        .iter()
        .enumerate()
        .filter(|(_, r)| r.state == StepState::Failed)
        .map(|(i, r)| {
            let step = &plan.steps[i];
            FailureDoc {
                step: &step.id,
                site: site_of(plan, i),
                kind: plan.kind(step),
                attempts: r.attempts,
                error: r.last_error.as_deref().unwrap_or(""),
                blocked_steps: blocked_by_count.get(step.id.as_str()).copied().unwrap_or(0),
            }
        })
        .collect()
}

fn site_of(plan: &Plan, i: usize) -> Option<&str> {
    match plan.steps[i].owner {
        Owner::Site { site, .. } => Some(plan.sites[site as usize].id.as_str()),
        Owner::Shared { .. } => None,
    }
}

/// For each failed step ID, how many steps are blocked by it.
fn count_blocked(steps: &[StepRecord]) -> std::collections::HashMap<&str, usize> {
    let mut counts = std::collections::HashMap::new();
    for r in steps.iter().filter(|r| r.state == StepState::Blocked) {
        if let Some(by) = &r.note {
            *counts.entry(by.as_str()).or_default() += 1;
        }
    }
    counts
}

/// Why each site is not restored: its first failed or blocking step.
pub fn site_reasons(plan: &Plan, steps: &[crate::ledger::StepRecord]) -> Vec<Option<String>> {
    let mut reasons = vec![None; plan.sites.len()];
    for (i, r) in steps.iter().enumerate() {
        let Owner::Site { site, .. } = plan.steps[i].owner else {
            continue;
        };
        let slot = &mut reasons[site as usize];
        match r.state {
            StepState::Failed if plan.kind(&plan.steps[i]) == "notify" => {
                *slot = slot.take().or_else(|| {
                    Some(format!(
                        "back in service, but {} failed: {} (re-send only it: drover retry \
                         --site {}, then drover resume)",
                        plan.steps[i].id,
                        r.last_error.as_deref().unwrap_or(""),
                        plan.sites[site as usize].id
                    ))
                })
            }
            StepState::Failed => {
                *slot = Some(format!(
                    "{} failed: {}",
                    plan.steps[i].id,
                    r.last_error.as_deref().unwrap_or("")
                ))
            }
            StepState::Blocked if slot.is_none() => {
                *slot = Some(format!(
                    "{} blocked by {}",
                    plan.steps[i].id,
                    r.note.as_deref().unwrap_or("a failed step")
                ))
            }
            _ => {}
        }
    }
    reasons
}

/// Simulated time left, with the run's recorded pools and limit.
fn eta_of(stored: &Stored, now: i64) -> Option<f64> {
    let open = stored
        .steps
        .iter()
        .any(|r| matches!(r.state, StepState::Pending | StepState::Running));
    if !open {
        return None;
    }
    let plan = std::sync::Arc::new(stored.plan.clone());
    let opts = sim_options(&plan, &stored.info);
    Some(crate::sim::live::eta(&plan, &stored.steps, &opts, now).as_secs_f64())
}

/// How a simulation of the rest of a run schedules: with the run's recorded pools, limit and
/// policy.
pub fn sim_options(plan: &Plan, info: &crate::ledger::RunInfo) -> crate::sim::SimOptions {
    let mut opts = crate::sim::SimOptions::for_plan(plan);
    for (i, p) in plan.pools.iter().enumerate() {
        if let Some(&c) = info.pools.get(&p.name) {
            opts.capacity[i] = c.max(1);
        }
    }
    opts.max_parallel = info.max_parallel.max(1);
    if let Some(policy) = info.policy {
        opts.policy = policy;
    }
    opts
}
