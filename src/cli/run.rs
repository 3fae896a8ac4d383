//! `drover run` and `drover resume`: execute a plan against a ledger, with progress, Ctrl-C
//! handling and exit codes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::progress::{LogFormat, Renderer};
use super::{Done, Failure};
use crate::ledger::lock::Holder;
use crate::ledger::sqlite::SqliteLedger;
use crate::ledger::{Ledger, LedgerError, NewRun, RunInfo, now_ms};
use crate::plan::{self, Plan, PlanOptions};
use crate::schedule::{self, Control, Journal, Policy, RunOptions, RunSummary};
use crate::steps::Registry;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Workflow file (TOML). See docs/workflow-format.md.
    #[arg(long, short)]
    workflow: PathBuf,
    /// Restore request (TOML). See docs/request-format.md.
    #[arg(long, short)]
    request: PathBuf,
    /// The ledger file (SQLite). Created if absent; an existing one must hold this same plan
    /// (then the run continues where it stopped, like `resume`).
    #[arg(long, short)]
    state: PathBuf,
    #[command(flatten)]
    exec: ExecArgs,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// The ledger of the run to continue. Nothing else is needed: the plan is in the ledger.
    #[arg(long, short)]
    state: PathBuf,
    #[command(flatten)]
    exec: ExecArgs,
}

/// Options shared by `run` and `resume`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// At most this many steps at once, whatever the pools allow [default: 256, or the value
    /// recorded in the ledger on resume].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_parallel: Option<u32>,
    /// Pool capacity overrides, e.g. `db=8,s3=32` [default: the workflow's, or those recorded
    /// in the ledger on resume].
    #[arg(long, value_parser = super::parse_pools)]
    pools: Option<std::collections::BTreeMap<String, u32>>,
    /// Which ready step starts first.
    #[arg(long, value_enum, default_value_t = Policy::CriticalPath)]
    policy: Policy,
    /// After the first Ctrl-C, how long in-flight steps may run before they are cancelled.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// Progress and logs: `text` (bars on a terminal, a line every few seconds otherwise) or
    /// `json` (one JSON log line per event on standard error).
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    log_format: LogFormatArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

pub fn run(args: RunArgs) -> Result<Done, Failure> {
    let inputs = crate::load::inputs(&args.workflow, &args.request)?;
    let overrides = args.exec.pools.clone().unwrap_or_default();
    let plan = plan::plan(
        &inputs.workflow,
        &inputs.request,
        &PlanOptions {
            pool_capacity: overrides,
        },
    )?;
    check_kinds(&plan, &args.workflow)?;
    if plan
        .templates
        .iter()
        .any(|t| t.kind == crate::backup::check::FETCH_KIND)
    {
        let checked = super::plan::check_backups(&plan)?;
        if let Some((p50, max, site)) = checked.rpo_summary(&plan) {
            eprintln!(
                "backups: {} units checked; RPO p50 {}, max {} ({site})",
                checked.units,
                super::plan::human(p50),
                super::plan::human(max)
            );
        }
    }
    let mut ledger = if args.state.exists() {
        let ledger = SqliteLedger::open(&args.state)?;
        let info = ledger.info()?;
        if info.plan_hash != plan.hash {
            return Err(LedgerError::DifferentPlan {
                path: args.state.display().to_string(),
                existing: info.plan_hash,
                new: plan.hash.clone(),
            }
            .into());
        }
        eprintln!(
            "{} already holds this plan; continuing it",
            args.state.display()
        );
        ledger
    } else {
        let info = RunInfo {
            run_id: new_run_id(),
            created_at: now_ms(),
            drover_version: env!("CARGO_PKG_VERSION").into(),
            plan_hash: plan.hash.clone(),
            workflow_name: plan.workflow.clone(),
            request_name: plan.request.clone(),
            pools: plan
                .pools
                .iter()
                .map(|p| (p.name.clone(), p.capacity))
                .collect(),
            max_parallel: args.exec.max_parallel.unwrap_or(256) as usize,
        };
        SqliteLedger::create(
            &args.state,
            &NewRun {
                info,
                snapshot: inputs.snapshot,
                plan: &plan,
            },
        )?
    };
    drop(plan);
    execute(&mut ledger, "run", &args.exec)
}

pub fn resume(args: ResumeArgs) -> Result<Done, Failure> {
    let mut ledger = SqliteLedger::open(&args.state)?;
    execute(&mut ledger, "resume", &args.exec)
}

/// Takes the lock, runs the stored plan from its recorded state, releases the lock.
fn execute(ledger: &mut SqliteLedger, mode: &str, exec: &ExecArgs) -> Result<Done, Failure> {
    let me = Holder::current();
    ledger.acquire(&me)?;
    let result = execute_held(ledger, mode, exec, &me);
    if let Err(e) = ledger.release() {
        eprintln!("warning: could not release the ledger lock: {e}");
    }
    result
}

fn execute_held(
    ledger: &mut SqliteLedger,
    mode: &str,
    exec: &ExecArgs,
    me: &Holder,
) -> Result<Done, Failure> {
    let stored = ledger.load()?;
    let plan = Arc::new(stored.plan);
    check_kinds(&plan, Path::new(&stored.snapshot.workflow_file))?;
    let argv: Vec<String> = std::env::args().collect();
    ledger.record_session(mode, &argv, me, &stored.info.plan_hash)?;
    let mut opts = RunOptions::new(&plan, &stored.info.run_id, &staging_dir(ledger.path()));
    opts.pool_capacity = pool_capacity(&plan, &stored.info.pools, exec.pools.as_ref())?;
    opts.max_parallel = exec
        .max_parallel
        .map_or(stored.info.max_parallel, |m| m as usize);
    opts.policy = exec.policy;
    opts.grace = exec.grace;
    opts.seed = now_ms() as u64;
    let writer = SqliteLedger::open(ledger.path())?;
    let journal = Journal::threaded(Box::new(writer) as Box<dyn Ledger>);
    let format = match exec.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    let renderer = Renderer::new(Arc::clone(&plan), format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let summary = runtime.block_on(async {
        let control = Control::default();
        let signals = tokio::spawn(watch_signals(control.clone(), exec.grace));
        let result = schedule::run(
            Arc::clone(&plan),
            &stored.steps,
            &Registry::builtin(),
            journal,
            opts,
            &renderer,
            control,
        )
        .await;
        signals.abort();
        result
    });
    renderer.finish();
    let summary =
        summary.map_err(|e| Failure::Internal(anyhow::Error::new(e).context("the run stopped")))?;
    print_summary(&summary, ledger.path());
    Ok(if summary.interrupted {
        Done::Interrupted
    } else if summary.all_restored() {
        Done::Ok
    } else {
        Done::Unfinished
    })
}

/// First Ctrl-C (or SIGTERM) drains, the second aborts.
async fn watch_signals(control: Control, grace: Duration) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    let mut count = 0;
    loop {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        count += 1;
        if count == 1 {
            eprintln!(
                "\ninterrupted: no new steps will start; in-flight steps have {} to finish (Ctrl-C again to stop at once)",
                humantime::format_duration(grace)
            );
            control.drain();
        } else {
            eprintln!("\nstopping now; steps in flight will run again on resume");
            control.abort();
            return;
        }
    }
}

fn print_summary(summary: &RunSummary, state: &Path) {
    let sites: Vec<String> = summary
        .sites
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{n} {}", s.as_str()))
        .collect();
    let steps: Vec<String> = summary
        .steps
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{n} {}", s.as_str()))
        .collect();
    eprintln!("sites: {}", sites.join(", "));
    eprintln!("steps: {}", steps.join(", "));
    eprintln!("elapsed: {}", super::plan::human(summary.elapsed));
    if summary.interrupted {
        eprintln!(
            "interrupted; continue with: drover resume --state {}",
            state.display()
        );
    } else if !summary.all_restored() {
        eprintln!(
            "not every site was restored; see: drover status --state {}",
            state.display()
        );
    }
}

/// Refuses, before anything runs, a plan with step kinds this build cannot execute.
fn check_kinds(plan: &Plan, workflow: &Path) -> Result<(), Failure> {
    let registry = Registry::builtin();
    let missing: Vec<&str> = plan
        .templates
        .iter()
        .map(|t| t.kind.as_str())
        .filter(|k| !registry.contains(k))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let kind = crate::diag::ProblemKind::Invalid {
        message: format!("step kind(s) {} are planned but cannot run in this build yet", missing.join(", ")),
        fix: "run a workflow whose steps use runnable kinds (noop, sleep, flaky, fail), e.g. workflows/synthetic.toml".into(),
    };
    Err(Failure::Input(vec![crate::diag::Problem::new(
        crate::diag::Location::file(&workflow.display().to_string()),
        "steps.*.kind",
        kind,
    )]))
}

/// Capacities in plan pool order: recorded ones, with `--pools` overrides.
fn pool_capacity(
    plan: &Plan,
    recorded: &std::collections::BTreeMap<String, u32>,
    overrides: Option<&std::collections::BTreeMap<String, u32>>,
) -> Result<Vec<u32>, Failure> {
    let mut caps: Vec<u32> = plan
        .pools
        .iter()
        .map(|p| recorded.get(&p.name).copied().unwrap_or(p.capacity))
        .collect();
    for (name, &cap) in overrides.into_iter().flatten() {
        let Some(i) = plan.pools.iter().position(|p| &p.name == name) else {
            let known = plan.pools.iter().map(|p| p.name.clone()).collect();
            return Err(Failure::Input(vec![crate::diag::Problem::new(
                crate::diag::Location::file("--pools"),
                name.clone(),
                crate::diag::ProblemKind::Unknown {
                    what: "pool",
                    name: name.clone(),
                    known,
                },
            )]));
        };
        if cap == 0 {
            return Err(Failure::Input(vec![crate::diag::Problem::new(
                crate::diag::Location::file("--pools"),
                name.clone(),
                crate::diag::ProblemKind::ZeroCapacity { pool: name.clone() },
            )]));
        }
        caps[i] = cap;
    }
    Ok(caps)
}

/// Where steps keep their files: beside the ledger, `<state>.staging/`.
pub(crate) fn staging_dir(state: &Path) -> PathBuf {
    let mut name = state.file_name().unwrap_or_default().to_os_string();
    name.push(".staging");
    state.with_file_name(name)
}

fn new_run_id() -> String {
    let t = chrono::Utc::now();
    format!(
        "run-{}-{:04x}",
        t.format("%Y%m%dT%H%M%SZ"),
        std::process::id() & 0xffff
    )
}
