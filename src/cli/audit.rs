//! `drover audit`: who did what to a run, and every state change — from the ledger. Read-only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Done, Failure, Format};
use crate::ledger::format_ms;
use crate::ledger::sqlite::{EventRow, Session};

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// The run's ledger.
    #[arg(long, short)]
    state: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Serialize)]
struct AuditDoc {
    format: &'static str,
    run_id: String,
    plan_hash: String,
    drover_version: String,
    /// SHA-256 of every input file's text as recorded when the run was created.
    inputs: BTreeMap<String, String>,
    /// Sites of the request left out by `--exclude-refused`, with why preflight refused each.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    excluded: BTreeMap<String, Vec<String>>,
    sessions: Vec<Session>,
    events: Vec<EventRow>,
    /// Which worker (host:pid) ran each attempt, when `drover worker` processes ran the steps.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attempts: Vec<crate::ledger::AttemptRow>,
}

pub fn run(args: AuditArgs) -> Result<Done, Failure> {
    let ledger = crate::ledger::open(&args.state)?;
    let info = ledger.info()?;
    let stored = ledger.load()?;
    let inputs = stored
        .snapshot
        .files
        .iter()
        .map(|(name, text)| (name.clone(), hex::encode(Sha256::digest(text.as_bytes()))))
        .collect();
    let doc = AuditDoc {
        format: "drover-audit/1",
        run_id: info.run_id,
        plan_hash: info.plan_hash,
        drover_version: info.drover_version,
        inputs,
        excluded: info.excluded,
        sessions: ledger.sessions()?,
        events: ledger.events()?,
        attempts: ledger.attempts()?,
    };
    match args.format {
        Format::Json => super::print_json(&doc)?,
        Format::Text => print_text(&doc),
    }
    Ok(Done::Ok)
}

fn print_text(d: &AuditDoc) {
    outln!(
        "run {} (plan {}, drover {})",
        d.run_id,
        d.plan_hash,
        d.drover_version
    );
    for (file, digest) in &d.inputs {
        outln!("  input {file}: sha256 {digest}");
    }
    if !d.excluded.is_empty() {
        outln!(
            "excluded at the start (--exclude-refused): {} sites",
            d.excluded.len()
        );
        for (site, reasons) in &d.excluded {
            outln!("  {site}: {}", reasons.join("; "));
        }
    }
    outln!("sessions:");
    for s in &d.sessions {
        outln!(
            "  {} {:<7} {}@{} pid {}: {}",
            format_ms(s.at),
            s.mode,
            s.user,
            s.host,
            s.pid,
            s.argv.join(" ")
        );
    }
    if !d.attempts.is_empty() {
        let mut by: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
        for a in &d.attempts {
            *by.entry(a.worker.as_str())
                .or_default()
                .entry(a.outcome.as_deref().unwrap_or("unfinished"))
                .or_default() += 1;
        }
        outln!("workers (host:pid), attempts by outcome (every attempt is in --format json):");
        for (worker, outcomes) in &by {
            let line: Vec<String> = outcomes.iter().map(|(o, n)| format!("{n} {o}")).collect();
            outln!("  {worker}: {}", line.join(", "));
        }
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &d.events {
        *counts.entry(e.op.as_str()).or_default() += 1;
    }
    let line: Vec<String> = counts.iter().map(|(op, n)| format!("{n} {op}")).collect();
    outln!("state changes: {} ({})", d.events.len(), line.join(", "));
    for e in d
        .events
        .iter()
        .filter(|e| !matches!(e.op.as_str(), "claim" | "complete"))
        .take(50)
    {
        outln!(
            "  {} {} {}{}",
            format_ms(e.at),
            e.op,
            e.step.as_deref().unwrap_or("-"),
            e.detail
                .as_deref()
                .map(|x| format!(": {x}"))
                .unwrap_or_default()
        );
    }
    outln!("(every change, claims and completions included: --format json)");
}
