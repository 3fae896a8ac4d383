//! `drover status`: per-site and per-step state of a run, from its ledger. Read-only: safe while
//! the run is going. The JSON document is described in docs/status-format.md.

use std::path::PathBuf;

use super::{Done, Failure};
use crate::ledger::now_ms;
use crate::status::SiteState;
use crate::status::doc::{SiteDoc, StatusDoc};
use clap::Args;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The run's ledger.
    #[arg(long, short)]
    state: PathBuf,
    #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
    format: StatusFormat,
    /// Per affected customer, for support: their key contacts, their sites with each one's
    /// state and time left (p50-p90), and a message to send as it stands.
    #[arg(long)]
    by_customer: bool,
    /// With --by-customer: the message's text, with {customer}, {as_of}, {restored}, {total},
    /// {eta} and {sites} filled in (default: a short plain-text update).
    #[arg(long, requires = "by_customer")]
    template: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum StatusFormat {
    Text,
    Json,
    /// One row per site (with --by-customer).
    Csv,
}

pub fn run(args: StatusArgs) -> Result<Done, Failure> {
    let ledger = crate::ledger::open(&args.state)?;
    if args.by_customer {
        let template = match &args.template {
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                super::refuse(
                    path,
                    "--template",
                    format!("cannot read it: {e}"),
                    "give a readable text file",
                )
            })?,
            None => crate::status::customers::DEFAULT_TEMPLATE.to_owned(),
        };
        let doc = crate::status::customers::document(&ledger.load()?, now_ms(), &template);
        match args.format {
            StatusFormat::Json => super::print_json(&doc)?,
            StatusFormat::Csv => print_customers_csv(&doc)?,
            StatusFormat::Text => print_customers(&doc),
        }
        return Ok(Done::Ok);
    }
    if args.format == StatusFormat::Csv {
        return Err(super::refuse(
            &args.state,
            "--format",
            "csv is a list of sites by customer".into(),
            "add --by-customer, or use --format text or json",
        ));
    }
    let stored = ledger.load()?;
    let doc = crate::status::doc::document(&stored, ledger.holder()?, now_ms());
    match args.format {
        StatusFormat::Json => super::print_json(&doc)?,
        _ => print_text(&doc),
    }
    Ok(Done::Ok)
}

fn print_customers(doc: &crate::status::customers::CustomersDoc) {
    outln!("{} customers, as of {}", doc.customers.len(), doc.as_of);
    for c in &doc.customers {
        outln!();
        outln!(
            "{}: {} of {} sites restored",
            c.customer.as_deref().unwrap_or("(customer unknown)"),
            c.restored,
            c.sites_total
        );
        for p in &c.contacts {
            outln!("  contact {} <{}> ({})", p.name, p.email, p.role);
        }
        if let Some(note) = &c.contacts_note {
            outln!("  ({note})");
        }
        outln!("  message:");
        for line in c.message.lines() {
            outln!("    {line}");
        }
    }
}

fn print_customers_csv(doc: &crate::status::customers::CustomersDoc) -> Result<(), Failure> {
    let mut w = csv::Writer::from_writer(std::io::stdout().lock());
    let io = |e: csv::Error| Failure::Internal(e.into());
    w.write_record([
        "customer",
        "contacts",
        "site",
        "state",
        "eta_p50_s",
        "eta_p90_s",
        "reason",
    ])
    .map_err(io)?;
    let n = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.0}"));
    for c in &doc.customers {
        let contacts: Vec<&str> = c.contacts.iter().map(|p| p.email.as_str()).collect();
        for s in &c.sites {
            w.write_record([
                c.customer.as_deref().unwrap_or(""),
                &contacts.join(" "),
                &s.site,
                s.state.as_str(),
                &n(s.eta_p50_s),
                &n(s.eta_p90_s),
                s.reason.as_deref().unwrap_or(""),
            ])
            .map_err(io)?;
        }
    }
    w.flush().map_err(|e| Failure::Internal(e.into()))?;
    Ok(())
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
