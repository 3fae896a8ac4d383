//! `drover status`: per-site and per-step state of a run, from its ledger. Read-only: safe while
//! the run is going. The JSON document is described in docs/status-format.md.

use std::path::PathBuf;

use super::{Done, Failure, Format};
use crate::ledger::sqlite::SqliteLedger;
use crate::ledger::{Ledger, now_ms};
use crate::status::SiteState;
use crate::status::doc::{SiteDoc, StatusDoc};
use clap::Args;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The run's ledger.
    #[arg(long, short)]
    state: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(args: StatusArgs) -> Result<Done, Failure> {
    let ledger = SqliteLedger::open(&args.state)?;
    let stored = ledger.load()?;
    let doc = crate::status::doc::document(&stored, ledger.holder()?, now_ms());
    match args.format {
        Format::Json => super::print_json(&doc)?,
        Format::Text => print_text(&doc),
    }
    Ok(Done::Ok)
}

// Over 80 lines on purpose: a renderer, one block per section of the status, read top to
// bottom like the output it prints.
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
            crate::report::human(std::time::Duration::from_secs_f64(eta))
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
                SiteState::Failed
                    | SiteState::Blocked
                    | SiteState::Quarantined
                    | SiteState::Unnotified
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
