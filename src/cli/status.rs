//! `drover status`: per-site and per-step state of a run, from its ledger. Read-only: safe while
//! the run is going. The JSON document is described in docs/status-format.md.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::{Done, Failure, Format};
use crate::ledger::sqlite::SqliteLedger;
use crate::ledger::{Ledger, StepState, format_ms, now_ms};
use crate::plan::{Owner, Plan};
use crate::status::{SiteState, count_sites, count_steps, site_states};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The run's ledger.
    #[arg(long, short)]
    state: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub const STATUS_FORMAT: &str = "drover-status/1";

#[derive(Serialize)]
struct StatusDoc<'a> {
    format: &'static str,
    run_id: &'a str,
    plan_hash: &'a str,
    workflow: &'a str,
    request: &'a str,
    created_at: String,
    holder: Option<HolderDoc>,
    all_restored: bool,
    /// Time left if the run proceeds from its recorded state (simulated; null when nothing is
    /// left to run).
    eta_s: Option<f64>,
    sites_total: usize,
    sites: std::collections::BTreeMap<SiteState, usize>,
    steps_total: usize,
    steps: std::collections::BTreeMap<StepState, usize>,
    site_status: Vec<SiteDoc<'a>>,
    failures: Vec<FailureDoc<'a>>,
}

#[derive(Serialize)]
struct HolderDoc {
    pid: u32,
    host: String,
    user: String,
    since: String,
    alive: bool,
}

#[derive(Serialize)]
struct SiteDoc<'a> {
    site: &'a str,
    tier: &'a str,
    state: SiteState,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Serialize)]
struct FailureDoc<'a> {
    step: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    site: Option<&'a str>,
    kind: &'a str,
    attempts: u32,
    error: &'a str,
    /// Steps that cannot run until this one is fixed (retried or skipped).
    blocked_steps: usize,
}

pub fn run(args: StatusArgs) -> Result<Done, Failure> {
    let ledger = SqliteLedger::open(&args.state)?;
    let stored = ledger.load()?;
    let plan = &stored.plan;
    let states: Vec<StepState> = stored.steps.iter().map(|r| r.state).collect();
    let sites = site_states(plan, &states, |i| {
        crate::status::is_quarantine(stored.steps[i].last_error.as_deref())
    });
    let holder = ledger.holder()?.map(|(h, since, beat)| HolderDoc {
        alive: h.is_alive(beat, now_ms()),
        pid: h.pid,
        host: h.host,
        user: h.user,
        since: format_ms(since),
    });
    let blocked_by_count = count_blocked(plan, &stored.steps);
    let failures = stored
        .steps
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
        .collect();
    let reasons = site_reasons(plan, &stored.steps);
    let eta = eta_of(&stored);
    let doc = StatusDoc {
        format: STATUS_FORMAT,
        run_id: &stored.info.run_id,
        plan_hash: &stored.info.plan_hash,
        workflow: &stored.info.workflow_name,
        request: &stored.info.request_name,
        created_at: format_ms(stored.info.created_at),
        holder,
        all_restored: sites.iter().all(|&s| s == SiteState::Restored),
        eta_s: eta,
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
        failures,
    };
    match args.format {
        Format::Json => super::print_json(&doc)?,
        Format::Text => print_text(&doc),
    }
    Ok(Done::Ok)
}

fn site_of(plan: &Plan, i: usize) -> Option<&str> {
    match plan.steps[i].owner {
        Owner::Site { site, .. } => Some(plan.sites[site as usize].id.as_str()),
        Owner::Shared { .. } => None,
    }
}

/// For each failed step ID, how many steps are blocked by it.
fn count_blocked<'a>(
    plan: &'a Plan,
    steps: &'a [crate::ledger::StepRecord],
) -> std::collections::HashMap<&'a str, usize> {
    let mut counts = std::collections::HashMap::new();
    for r in steps.iter().filter(|r| r.state == StepState::Blocked) {
        if let Some(by) = &r.note {
            *counts.entry(by.as_str()).or_default() += 1;
        }
    }
    let _ = plan;
    counts
}

/// Why each site is not restored: its first failed or blocking step.
fn site_reasons(plan: &Plan, steps: &[crate::ledger::StepRecord]) -> Vec<Option<String>> {
    let mut reasons = vec![None; plan.sites.len()];
    for (i, r) in steps.iter().enumerate() {
        let Owner::Site { site, .. } = plan.steps[i].owner else {
            continue;
        };
        let slot = &mut reasons[site as usize];
        match r.state {
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

fn print_text(doc: &StatusDoc) {
    outln!(
        "run {} (plan {})",
        doc.run_id,
        &doc.plan_hash[..12.min(doc.plan_hash.len())]
    );
    outln!(
        "  workflow {}, request {}, created {}",
        doc.workflow,
        doc.request,
        doc.created_at
    );
    match &doc.holder {
        Some(h) if h.alive => outln!(
            "  running: process {} on {} since {}",
            h.pid,
            h.host,
            h.since
        ),
        Some(h) => outln!(
            "  not running (process {} on {} is gone; resume takes over)",
            h.pid,
            h.host
        ),
        None => outln!("  not running"),
    }
    outln!(
        "  sites {}: {}",
        doc.sites_total,
        counts_line(doc.sites.iter().map(|(s, n)| (s.as_str(), *n)))
    );
    outln!(
        "  steps {}: {}",
        doc.steps_total,
        counts_line(doc.steps.iter().map(|(s, n)| (s.as_str(), *n)))
    );
    if let Some(eta) = doc.eta_s {
        outln!(
            "  time left      {} (simulated from the recorded state)",
            super::plan::human(std::time::Duration::from_secs_f64(eta))
        );
    }
    if !doc.failures.is_empty() {
        outln!("failures:");
        for f in doc.failures.iter().take(50) {
            outln!(
                "  {} ({} attempts): {}{}",
                f.step,
                f.attempts,
                f.error,
                if f.blocked_steps > 0 {
                    format!(" [blocks {} steps]", f.blocked_steps)
                } else {
                    String::new()
                }
            );
        }
        if doc.failures.len() > 50 {
            outln!(
                "  … and {} more (see --format json)",
                doc.failures.len() - 50
            );
        }
    }
    let unfinished: Vec<&SiteDoc> = doc
        .site_status
        .iter()
        .filter(|s| {
            matches!(
                s.state,
                SiteState::Failed | SiteState::Blocked | SiteState::Quarantined
            )
        })
        .collect();
    if !unfinished.is_empty() {
        outln!("sites needing attention:");
        for s in unfinished.iter().take(50) {
            outln!(
                "  {} {}: {}",
                s.site,
                s.state.as_str(),
                s.reason.as_deref().unwrap_or("")
            );
        }
    }
}

fn counts_line<'a>(counts: impl Iterator<Item = (&'a str, usize)>) -> String {
    counts
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Simulated time left, with the run's recorded pools and limit.
fn eta_of(stored: &crate::ledger::Stored) -> Option<f64> {
    let open = stored
        .steps
        .iter()
        .any(|r| matches!(r.state, StepState::Pending | StepState::Running));
    if !open {
        return None;
    }
    let plan = std::sync::Arc::new(stored.plan.clone());
    let mut opts = crate::sim::SimOptions::for_plan(&plan);
    for (i, p) in plan.pools.iter().enumerate() {
        if let Some(&c) = stored.info.pools.get(&p.name) {
            opts.capacity[i] = c.max(1);
        }
    }
    opts.max_parallel = stored.info.max_parallel.max(1);
    Some(crate::sim::eta(&plan, &stored.steps, &opts, now_ms()).as_secs_f64())
}
