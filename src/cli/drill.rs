//! `drover drill` (a restore rehearsed on an isolated copy of the platform, PASS or FAIL against
//! a target RTO) and `drover drills` (the history of drills, for the RTO trend). See
//! `crate::drill` and docs/safety.md.

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::run::{ExecArgs, check_blast_radius, create_ledger, execute};
use super::{Done, Failure, Format};
use crate::drill::{self, DrillRecord};
use crate::plan::{self, PlanOptions};
use crate::platform::Platform;
use crate::report::timeline::{LaneMode, Timeline};

#[derive(Args, Debug)]
pub struct DrillArgs {
    /// Workflow file (TOML), as for `drover run`.
    #[arg(long, short)]
    workflow: PathBuf,
    /// Restore request (TOML) naming the sites to drill and the production platform
    /// (`[target] registry`). Production is only read.
    #[arg(long, short)]
    request: PathBuf,
    /// PASS if every site is restored within this time, e.g. `6h`.
    #[arg(long, value_parser = crate::limits::duration_arg(crate::limits::MAX_RTO))]
    target_rto: Duration,
    /// The drill's ledger, a SQLite file or postgres://…?ledger=<name> (docs/running.md); must
    /// not exist. Kept afterwards for `drover audit`, `drover status`, `drover report` and
    /// `drover estimate --history`.
    #[arg(long, short)]
    state: PathBuf,
    /// The drill history (JSON lines) the result is appended to; `drover drills` lists it.
    #[arg(long, default_value = "drills.jsonl")]
    history: PathBuf,
    /// Where the isolated copy of the platform is made [default: the system temp dir]. The copy
    /// is removed after the drill unless --keep.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the copy (and the fetched backups) for inspection.
    #[arg(long)]
    keep: bool,
    /// Refuse a drill of more sites than this. Drills are meant to grow; raise it deliberately.
    #[arg(long, default_value_t = super::run::DEFAULT_MAX_SITES)]
    max_sites: usize,
    /// A drill environment of your own to restore into, instead of a copy of production: its
    /// registry, written as for `[target] registry` (a platform directory, `postgres://…`,
    /// `https://…`), or `exec:<command> [args…]` for a registry behind a command. Refused when
    /// it is production's registry, however named. With it, exec and http steps may run: they
    /// must act only on this environment (docs/safety.md, "Drills on your own platform").
    #[arg(long, value_name = "REGISTRY")]
    target: Option<String>,
    #[command(flatten)]
    exec: ExecArgs,
}

#[derive(Args, Debug)]
pub struct DrillsArgs {
    /// The drill history written by `drover drill`.
    #[arg(long, default_value = "drills.jsonl")]
    history: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn drill(args: DrillArgs) -> Result<Done, Failure> {
    let started = chrono::Utc::now();
    let mut inputs = super::shared::load(&args.workflow, &args.request)?;
    if let Some(environment) = &args.target {
        return drill_in(&args, &mut inputs, environment, started);
    }
    let Some(target) = inputs.request.target.clone() else {
        return Err(super::refuse(
            &args.request,
            "target.registry",
            "a drill needs the production platform to copy".into(),
            "add [target] registry = \"<platform directory>\" to the request",
        ));
    };
    if crate::target::is_operators(&target) {
        return Err(super::refuse(
            &args.request,
            "target.registry",
            "drover copies only the reference platform for a drill; production here is your own \
             registry"
                .into(),
            "name a separate drill environment with --target (docs/safety.md, drills on your \
             own platform)",
        ));
    }
    let plan_opts = PlanOptions {
        pool_capacity: args.exec_pools(),
    };
    let production = plan::plan(&inputs.workflow, &inputs.request, &plan_opts)?;
    check_blast_radius(&production, args.max_sites)?;
    refuse_external_steps(&production, &args)?;
    refuse_existing_outputs(&args)?;
    // Before copying anything: the sites exist in production (any state) and their backups are
    // there to restore from.
    let checked = crate::preflight::Options {
        drill: true,
        ..Default::default()
    };
    super::shared::preflight(&production, &inputs.request, &args.request, Some(checked))?;
    let dir = copy_dir(&args, started);
    let sites: Vec<String> = production.sites.iter().map(|s| s.id.to_string()).collect();
    let Some(copy) = isolated_copy(&target, sites, &dir, &args, started)? else {
        return Ok(Done::Interrupted);
    };
    let into = crate::request::Target::at(&copy.dir().display().to_string());
    let outcome = rehearse(&args, &mut inputs, &into, true, started);
    if args.keep {
        errln!("drill: kept the copy in {}", dir.display());
    } else {
        clean_up(&dir, &staging_of(&args.state));
    }
    outcome
}

/// A drill in the operator's own drill environment (`--target`): refused before anything runs
/// when that environment is production's registry, however named.
fn drill_in(
    args: &DrillArgs,
    inputs: &mut crate::load::Inputs,
    environment: &str,
    started: chrono::DateTime<chrono::Utc>,
) -> Result<Done, Failure> {
    let Some(production) = inputs.request.target() else {
        return Err(super::refuse(
            &args.request,
            "target.registry",
            "a drill needs production's registry, to check the drilled sites against it and to \
             make sure the drill environment is not production"
                .into(),
            "add [target] registry to the request (docs/request-format.md)",
        ));
    };
    let into = environment_of(environment);
    refuse_production(&production, &into, args)?;
    let plan_opts = PlanOptions {
        pool_capacity: args.exec_pools(),
    };
    let plan = plan::plan(&inputs.workflow, &inputs.request, &plan_opts)?;
    check_blast_radius(&plan, args.max_sites)?;
    refuse_existing_outputs(args)?;
    let checked = crate::preflight::Options {
        drill: true,
        ..Default::default()
    };
    super::shared::preflight(&plan, &inputs.request, &args.request, Some(checked))?;
    errln!(
        "drill: restoring into the drill environment {} (production, {}, is only read)",
        into.registry,
        production.registry
    );
    rehearse(args, inputs, &into, false, started)
}

/// `--target` as a registry: `exec:<command> [args…]`, a URL, or a directory.
fn environment_of(text: &str) -> crate::request::Target {
    if text.starts_with(crate::request::EXEC_PREFIX) {
        return crate::request::Target::parse(text);
    }
    let registry = if text.contains("://") {
        text.to_owned()
    } else {
        std::path::absolute(text).map_or_else(|_| text.to_owned(), |p| p.display().to_string())
    };
    crate::request::Target::at(&registry)
}

/// Refuses a drill environment that is production's registry (the same directory or file, the
/// same PostgreSQL cluster and database, the same endpoint or command), or that cannot be read.
fn refuse_production(
    production: &crate::request::Target,
    into: &crate::request::Target,
    args: &DrillArgs,
) -> Result<(), Failure> {
    let identity = |t: &crate::request::Target, which: &str| {
        crate::target::open(t)
            .and_then(|r| r.identity())
            .map_err(|e| super::refuse(&args.request, which, e.to_string(), &e.fix()))
    };
    let ours = identity(into, "--target")?;
    let theirs = identity(production, "target.registry")?;
    if ours == theirs {
        return Err(super::refuse(
            &args.request,
            "--target",
            format!(
                "the drill environment {} is production's registry ({}, {ours}): a drill never \
                 runs against production",
                into.registry, production.registry
            ),
            "give the registry of a separate drill environment, or drop --target to drill on an \
             isolated copy of the reference platform",
        ));
    }
    Ok(())
}

/// A drill acts only on its copy: steps that reach other systems are refused.
fn refuse_external_steps(production: &crate::plan::Plan, args: &DrillArgs) -> Result<(), Failure> {
    let external: Vec<String> = drill::external_steps(production)
        .into_iter()
        .map(|(name, kind)| format!("{name} ({kind})"))
        .collect();
    if external.is_empty() {
        return Ok(());
    }
    Err(super::refuse(
        &args.workflow,
        "steps",
        format!(
            "a drill cannot run {}: such steps act on systems outside the platform copy",
            external.join(", ")
        ),
        "drill with a workflow without exec or http steps (or with noop in their place)",
    ))
}

/// The drill's ledger and staging must be new, and its history one (or not exist yet):
/// appending a JSON line to a request or a ledger would damage it.
fn refuse_existing_outputs(args: &DrillArgs) -> Result<(), Failure> {
    if crate::ledger::exists(&args.state)? {
        return Err(super::refuse(
            &args.state,
            "--state",
            "that ledger already exists".into(),
            "give each drill a new --state (a new file, or a new ledger=<name>)",
        ));
    }
    let staging = staging_of(&args.state);
    if staging.exists() {
        return Err(super::refuse(
            &staging,
            "--state",
            format!("{} already exists", staging.display()),
            "give each drill a new --state (its staging directory is named after it)",
        ));
    }
    if args.history.exists() {
        drill::read(&args.history).map_err(|e| {
            super::refuse(
                &args.history,
                "--history",
                format!("this is not a drill history: {e}"),
                "give the JSON-lines file earlier drills wrote, or a new path",
            )
        })?;
    }
    Ok(())
}

/// Where this drill's copy goes: a new directory under `--work-dir` (or the temp directory).
fn copy_dir(args: &DrillArgs, started: chrono::DateTime<chrono::Utc>) -> std::path::PathBuf {
    let work = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    work.join(format!(
        "drover-drill-{}-{}",
        started.format("%Y%m%dT%H%M%SZ"),
        std::process::id()
    ))
}

/// The isolated copy of production in `dir`, the drilled sites deleted there as the incident
/// would. `None`: interrupted, and the copy removed.
fn isolated_copy(
    target: &str,
    sites: Vec<String>,
    dir: &Path,
    args: &DrillArgs,
    started: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Platform>, Failure> {
    let platform = Platform::open(target)?;
    errln!(
        "drill: copying the platform {} into {} (production is only read)",
        target,
        dir.display()
    );
    // Only its owner may read the copy: it holds customers' data.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    match prepare(platform, sites, dir.join("platform"), started)? {
        Some(Ok(copy)) => Ok(Some(copy)),
        Some(Err(e)) => {
            clean_up(dir, &staging_of(&args.state));
            Err(Failure::Internal(
                anyhow::Error::new(e).context("preparing the drill copy"),
            ))
        }
        None => {
            errln!("interrupted: the drill's copy is removed; nothing was recorded");
            clean_up(dir, &staging_of(&args.state));
            Ok(None)
        }
    }
}

/// Makes the drill's copy off the main thread, watching for Ctrl-C meanwhile. `None`: the
/// operator interrupted; the copy was let finish (a database copy cannot be stopped half-way
/// cleanly) so that the caller can remove it.
fn prepare(
    platform: Platform,
    sites: Vec<String>,
    dest: PathBuf,
    started: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Result<Platform, crate::platform::PlatformError>>, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(runtime.block_on(async move {
        let mut copying =
            tokio::task::spawn_blocking(move || drill::prepare(&platform, &sites, &dest, started));
        let copied = tokio::select! {
            done = &mut copying => Some(done),
            _ = tokio::signal::ctrl_c() => {
                errln!("\ninterrupted: letting the copy finish, then removing it");
                let _ = copying.await;
                None
            }
        };
        copied.map(|joined| {
            joined.unwrap_or_else(|e| {
                Err(crate::platform::PlatformError::Io {
                    path: PathBuf::from("drill copy"),
                    source: std::io::Error::other(e),
                })
            })
        })
    }))
}

/// Where the drill's steps stage their files (refused when it exists, removed with the copy).
fn staging_of(state: &std::path::Path) -> PathBuf {
    crate::ledger::staging_of(state).unwrap_or_else(|_| crate::staging::dir_for(state))
}

impl DrillArgs {
    fn exec_pools(&self) -> std::collections::BTreeMap<String, u32> {
        self.exec.pools().cloned().unwrap_or_default()
    }
}

/// Plans against the copy, runs, measures and records. Everything it writes is in the copy, the
/// drill's ledger and staging directory, and the history.
fn rehearse(
    args: &DrillArgs,
    inputs: &mut crate::load::Inputs,
    into: &crate::request::Target,
    copy: bool,
    started: chrono::DateTime<chrono::Utc>,
) -> Result<Done, Failure> {
    let request = &mut inputs.request;
    request.target = Some(into.spec());
    request.registry_view = into.registry_view.clone();
    if copy {
        // The copy's drilled sites were deleted as the incident would.
        for site in &mut request.sites {
            site.attrs.insert(
                crate::preflight::STATE_ATTR.into(),
                crate::platform::SiteState::Deleted.as_str().into(),
            );
        }
    }
    let plan_opts = PlanOptions {
        pool_capacity: args.exec_pools(),
    };
    let mut plan = plan::plan(&inputs.workflow, &inputs.request, &plan_opts)?;
    let cut = drill::isolate(&mut plan);
    if cut > 0 {
        errln!("drill: {cut} steps lose their webhook; their messages stay in the copy's outbox");
    }
    // The backups were checked before (the same units); the registry drilled into must now hold
    // every drilled site as deleted.
    crate::preflight::registry(
        &plan,
        &inputs.request,
        &args.request.display().to_string(),
        crate::preflight::Options::default(),
    )?;
    let snapshot = std::mem::take(&mut inputs.snapshot);
    let mut ledger = create_ledger(
        &args.state,
        &plan,
        snapshot,
        &args.exec,
        super::run::NewRunInfo::unclaimed(),
    )?;
    let done = execute(
        ledger.as_mut(),
        crate::ledger::SessionMode::Drill,
        &args.exec,
        Default::default(),
    )?;
    let stored = ledger.load()?;
    let timeline = Timeline::from_run(&stored.plan, &stored.steps, LaneMode::Site);
    let per_site: Vec<(String, Option<Duration>)> = timeline
        .sites
        .iter()
        .map(|s| (s.site.clone(), s.restore_ms.map(Duration::from_millis)))
        .collect();
    let m = drill::measure(&per_site);
    let mut verdict = m.verdict(args.target_rto);
    if done == Done::Interrupted {
        verdict = Err(drill::DrillFailure::Interrupted);
    }
    let state = match args.state.to_str() {
        Some(url) if crate::ledger::postgres::is_url(url) => url.to_owned(),
        _ => std::path::absolute(&args.state)
            .unwrap_or_else(|_| args.state.clone())
            .display()
            .to_string(),
    };
    let record = DrillRecord::new(
        &started,
        &stored.info,
        &state,
        args.target_rto,
        &m,
        &verdict,
    );
    drill::append(&args.history, &record)
        .with_context(|| format!("appending to {}", args.history.display()))?;
    print_result(&m, args.target_rto, &verdict);
    errln!("drill: recorded in {}", args.history.display());
    Ok(match (done, verdict) {
        (Done::Interrupted, _) => Done::Interrupted,
        (_, Ok(())) => Done::Ok,
        (_, Err(_)) => Done::Unfinished,
    })
}

fn print_result(m: &drill::Measured, target: Duration, verdict: &Result<(), drill::DrillFailure>) {
    let h = |d: Option<Duration>| d.map_or("-".into(), crate::report::human);
    errln!(
        "drill: {} of {} sites restored; batch RTO {} (target {}); per site p50 {}, p95 {}, max {}",
        m.restored,
        m.sites,
        h(m.batch),
        crate::report::human(target),
        h(m.p50),
        h(m.p95),
        h(m.max.as_ref().map(|x| x.0)),
    );
    match verdict {
        Ok(()) => outln!("PASS"),
        Err(reason) => outln!("FAIL: {reason}"),
    }
}

/// Removes what the drill created: its copy of the platform and its staging directory. Both
/// were created by this drill (it refuses to start if the staging directory exists).
fn clean_up(dir: &Path, staging: &Path) {
    for path in [dir, staging] {
        match std::fs::remove_dir_all(path) {
            Ok(()) => errln!("drill: removed {}", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errln!("warning: could not remove {}: {e}", path.display()),
        }
    }
}

pub fn drills(args: DrillsArgs) -> Result<Done, Failure> {
    let records = drill::read(&args.history).map_err(|e| {
        super::refuse(
            &args.history,
            "--history",
            format!("cannot read the drill history: {e}"),
            "give the file `drover drill --history` wrote",
        )
    })?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &records).context("writing the history")?;
            writeln!(out).context("writing the history")?;
        }
        Format::Text => {
            print_trend(&mut super::Printable(&mut out), &records).context("writing the history")?
        }
    }
    Ok(Done::Ok)
}

fn print_trend(out: &mut impl Write, records: &[DrillRecord]) -> std::io::Result<()> {
    // The values come from a file a person may have edited: anything odd prints as "-".
    let h = |s: Option<f64>| {
        s.and_then(|s| Duration::try_from_secs_f64(s).ok())
            .map_or("-".into(), crate::report::human)
    };
    writeln!(
        out,
        "{:<21} {:>6} {:>9} {:>12} {:>12} {:>10}  verdict",
        "when", "sites", "restored", "batch RTO", "site p95", "target"
    )?;
    for r in records {
        writeln!(
            out,
            "{:<21} {:>6} {:>9} {:>12} {:>12} {:>10}  {}",
            r.at,
            r.sites,
            r.restored,
            h(r.batch_rto_s),
            h(r.site_rto_p95_s),
            h(Some(r.target_rto_s)),
            if r.pass { "PASS" } else { "FAIL" }
        )?;
    }
    if let [.., prev, last] = records {
        writeln!(
            out,
            "trend: {} → {} sites; batch RTO {} → {}",
            prev.sites,
            last.sites,
            h(prev.batch_rto_s),
            h(last.batch_rto_s)
        )?;
    }
    Ok(())
}
