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
    /// Back up tenants of a multi-tenant PostgreSQL schema as tenant slices (the pg-snapshot
    /// format that `pg-restore-tenant` restores): per tenant a snapshot of the unit
    /// `<tenant>/<product>` holding its rows of every table with the tenant column (COPY text),
    /// their counts and checksums, and the tables' foreign-key order. Every tenant is read in one
    /// read-only transaction, at the same moment.
    PgSnapshot(PgSnapshotArgs),
}

#[derive(Args, Debug)]
pub struct PgSnapshotArgs {
    /// The database: postgres://user@host:port/db (`sslmode`, `sslrootcert` as libpq). No
    /// password in it: set PGPASSWORD.
    #[arg(long, value_name = "URL")]
    database: String,
    /// The schema holding the tenants' tables.
    #[arg(long)]
    schema: String,
    /// The column naming the tenant in every table to back up (tables without it are left out).
    #[arg(long, default_value = "site")]
    tenant_column: String,
    /// The product the units are named after (`<tenant>/<product>`) [default: the schema].
    #[arg(long)]
    product: Option<String>,
    /// Only these tenants (comma-separated) [default: every tenant in the tables].
    #[arg(long, value_delimiter = ',')]
    tenants: Option<Vec<String>>,
    /// The backup store: a directory, written in drover's layout (docs/backups.md).
    #[arg(long)]
    store: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
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
        BackupsCommand::PgSnapshot(args) => runtime.block_on(pg_snapshot(args)),
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

async fn pg_snapshot(args: PgSnapshotArgs) -> Result<Done, Failure> {
    let refuse = |message: String, fix: &str| {
        super::refuse(
            std::path::Path::new("--database"),
            "--database",
            message,
            fix,
        )
    };
    if crate::redact::has_credentials(&args.database) {
        return Err(refuse(
            "carries a password: command lines are seen by every user of the machine and kept in \
             shell histories"
                .into(),
            "remove it from the URL and set PGPASSWORD in the environment",
        ));
    }
    let db = crate::pgslice::connect(&args.database, "drover backups")
        .await
        .map_err(|e| match e {
            crate::pgslice::SliceError::Config(m) => refuse(m, "give postgres://user@host:port/db"),
            e => Failure::Internal(anyhow::anyhow!("{e}")),
        })?;
    let product = args.product.as_deref().unwrap_or(&args.schema);
    let started = std::time::Instant::now();
    let report = crate::pgslice::back_up(
        &db,
        &args.schema,
        &args.tenant_column,
        product,
        args.tenants.clone(),
        &args.store,
        chrono::Utc::now(),
    )
    .await
    .map_err(|e| match e {
        crate::pgslice::SliceError::Config(m) => super::refuse(
            &args.store,
            "--schema",
            m,
            "check --schema, --tenant-column and --tenants",
        ),
        e => Failure::Internal(anyhow::anyhow!("{e}")),
    })?;
    match args.format {
        Format::Json => super::print_json(&report)?,
        Format::Text => errln!(
            "pg-snapshot: {} tenants of schema {} ({} tables, {} rows, {}) into {} as snapshot {} in {}",
            report.units.len(),
            report.schema,
            report.tables.len(),
            report.rows,
            crate::util::size_text(report.bytes),
            args.store.display(),
            report.snapshot,
            crate::report::human(started.elapsed())
        ),
    }
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
