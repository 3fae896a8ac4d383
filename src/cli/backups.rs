//! `drover backups list` and `drover backups fetch`: what a backup store holds, and a verified
//! download of one unit's snapshot (the same code as the `fetch` step).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::{Done, Failure, Format};
use crate::backup::download::{self, FetchOptions, Target};
use crate::backup::{self, SnapshotEntry};

#[derive(Subcommand, Debug)]
pub enum BackupsCommand {
    /// List the snapshots in a backup store: unit, time, objects, size, completeness.
    List(ListArgs),
    /// Download one unit's snapshot for a point in time into a directory, verifying every object.
    Fetch(FetchArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// `s3://bucket/prefix` (standard AWS configuration; add `?path-style=true` for most
    /// S3-compatible servers), `file:///path`, or a directory.
    #[arg(long)]
    source: String,
    /// Only this unit, e.g. `wiki-3` or `site-0042/wiki`.
    #[arg(long)]
    unit: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    #[arg(long)]
    source: String,
    #[arg(long)]
    unit: String,
    /// Restore to the newest complete snapshot at or before this time (RFC 3339).
    #[arg(long)]
    point_in_time: String,
    /// How far before the point in time a snapshot may be.
    #[arg(long, default_value = "24h", value_parser = crate::limits::duration_arg(crate::limits::MAX_WINDOW))]
    window: Duration,
    /// The site being restored, if the unit is a site's own: its manifest must name it.
    #[arg(long)]
    site: Option<String>,
    /// Where to put the objects (created if missing). Verified objects already there are kept.
    #[arg(long)]
    dest: PathBuf,
    /// Range size for large objects, in bytes (1 KiB to 1 GiB).
    #[arg(long, default_value_t = 8 << 20, value_parser = clap::value_parser!(u64).range(1024..=(1 << 30)))]
    part_size: u64,
    /// Reads in flight at once (1 to 1024).
    #[arg(long, default_value_t = 8, value_parser = parse_concurrency)]
    concurrency: usize,
}

#[derive(Serialize)]
struct ListDoc<'a> {
    format: &'static str,
    source: &'a str,
    snapshots: &'a [SnapshotEntry],
}

pub fn run(cmd: BackupsCommand) -> Result<Done, Failure> {
    let runtime = super::shared::runtime()?;
    match cmd {
        BackupsCommand::List(args) => runtime.block_on(list(args)),
        BackupsCommand::Fetch(args) => runtime.block_on(fetch(args)),
    }
}

async fn list(args: ListArgs) -> Result<Done, Failure> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let store = backup::open(&args.source, &cwd)
        .await
        .map_err(|e| input(&args.source, e.to_string()))?;
    let snapshots = store
        .list_snapshots(args.unit.as_deref())
        .await
        .map_err(anyhow::Error::new)?;
    match args.format {
        Format::Json => super::print_json(&ListDoc {
            format: "drover-backups/1",
            source: &args.source,
            snapshots: &snapshots,
        })?,
        Format::Text => {
            outln!(
                "{:<32} {:<18} {:>8} {:>14}  complete",
                "unit",
                "snapshot",
                "objects",
                "bytes"
            );
            for s in &snapshots {
                outln!(
                    "{:<32} {:<18} {:>8} {:>14}  {}",
                    s.unit,
                    s.snapshot,
                    s.objects,
                    s.bytes,
                    if s.complete {
                        "yes"
                    } else {
                        "no (no manifest)"
                    }
                );
            }
            outln!("{} snapshots in {}", snapshots.len(), store.describe());
        }
    }
    Ok(Done::Ok)
}

async fn fetch(args: FetchArgs) -> Result<Done, Failure> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let store = backup::open(&args.source, &cwd)
        .await
        .map_err(|e| input(&args.source, e.to_string()))?;
    let pit = chrono::DateTime::parse_from_rfc3339(&args.point_in_time)
        .map_err(|e| {
            input(
                "--point-in-time",
                format!("'{}' is not an RFC 3339 time: {e}", args.point_in_time),
            )
        })?
        .with_timezone(&chrono::Utc);
    let target = Target {
        unit: &args.unit,
        site: args.site.as_deref(),
        point_in_time: pit,
    };
    let opts = FetchOptions {
        part_size: args.part_size.max(1),
        concurrency: args.concurrency.max(1),
        window: args.window,
        ..FetchOptions::default()
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let started = std::time::Instant::now();
    let report = download::fetch(store.as_ref(), &target, &args.dest, &opts, &cancel)
        .await
        .map_err(|e| Failure::Internal(anyhow::anyhow!("fetching {}: {e}", args.unit)))?;
    let secs = started.elapsed().as_secs_f64();
    errln!(
        "fetched {} ({}): {} objects, {} bytes ({} reused), {:.2} s, {:.1} MiB/s, RPO {}",
        report.unit,
        report.snapshot,
        report.objects,
        report.bytes,
        report.reused,
        secs,
        report.downloaded_bytes as f64 / (1 << 20) as f64 / secs.max(1e-9),
        crate::report::human(Duration::from_secs(report.rpo_s))
    );
    // JSON as serde writes it (escaping is JSON's own).
    println!(
        "{}",
        serde_json::to_string(&report).map_err(anyhow::Error::from)?
    );
    Ok(Done::Ok)
}

fn input(what: &str, message: String) -> Failure {
    let fix = "check the source: s3://bucket/prefix, file:///path or a directory";
    super::refuse(std::path::Path::new(what), "--source", message, fix)
}

fn parse_concurrency(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|n| (1..=crate::limits::MAX_FETCH_CONCURRENCY).contains(n))
        .ok_or_else(|| {
            format!(
                "give a whole number from 1 to {}",
                crate::limits::MAX_FETCH_CONCURRENCY
            )
        })
}
