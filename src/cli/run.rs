//! `drover run` and `drover resume`: execute a plan against a ledger, with progress, Ctrl-C
//! handling and exit codes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::progress::{LogFormat, Renderer};
use super::{Done, Failure};
use crate::ledger::SessionMode;
use crate::ledger::Store;
use crate::ledger::lock::Holder;
use crate::ledger::{Ledger, LedgerError, NewRun, RunInfo, now_ms};
use crate::plan::doc::{PlanDoc, PlanInputs};
use crate::plan::{self, Plan, PlanOptions};
use crate::schedule::{self, Control, Journal, Policy, RunOptions, RunSummary};
use crate::sim::model::DurationModel;
use crate::sniff::FileKind;
use crate::steps::Registry;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Workflow file (TOML). See docs/workflow-format.md. Not with --plan.
    #[arg(long, short, required_unless_present = "plan", conflicts_with = "plan")]
    workflow: Option<PathBuf>,
    /// Restore request (TOML). See docs/request-format.md. Not with --plan.
    #[arg(long, short, required_unless_present = "plan", conflicts_with = "plan")]
    request: Option<PathBuf>,
    /// Run exactly this reviewed plan (written by `drover plan --out`). Refused if the file was
    /// edited or its workflow and request on disk no longer give the same plan.
    #[arg(long, requires = "confirm")]
    plan: Option<PathBuf>,
    /// With --plan: the first 12 (or more) hex digits of the plan hash, as `drover plan` printed.
    #[arg(long)]
    confirm: Option<String>,
    /// Start without asking. Without --plan, `run` shows what it will restore and asks on a
    /// terminal; off a terminal it refuses unless --yes is given.
    #[arg(long)]
    yes: bool,
    /// Refuse a request of more sites than this (the blast radius). Raise it deliberately for
    /// a larger restore.
    #[arg(long, default_value_t = DEFAULT_MAX_SITES)]
    max_sites: usize,
    /// Preflight: allow sites an earlier restore already touched (restoring, validated,
    /// quarantined) to be restored again from backups. A live site is refused regardless.
    #[arg(long)]
    replace_existing: bool,
    /// Preflight: leave out the sites it refuses (a live site, an ID that is no site, a unit
    /// with no backup in its window…) and restore the others, instead of refusing the run. The
    /// sites left out are listed with their reasons and recorded in the ledger (`drover audit`).
    /// With --plan, the reviewed plan's own exclusions apply instead.
    #[arg(long, conflicts_with = "plan")]
    exclude_refused: bool,
    /// The ledger: a SQLite file, or postgres://user@host:port/db?ledger=<name> (the password
    /// in PGPASSWORD; docs/running.md). Created if absent; an existing one must hold this same
    /// plan (then the run continues where it stopped, like `resume`).
    #[arg(long, short)]
    state: PathBuf,
    #[command(flatten)]
    exec: ExecArgs,
    /// Start the ETA from durations learned from earlier runs or drills (repeatable), as
    /// `drover estimate --history`: a ledger, or a drill history (drills.jsonl). Without it, the
    /// ETA starts from the workflow's estimates and corrects itself as steps finish.
    #[arg(long)]
    history: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// The ledger of the run to continue. Nothing else is needed: the plan is in the ledger.
    #[arg(long, short)]
    state: PathBuf,
    #[command(flatten)]
    exec: ExecArgs,
    /// Start the ETA from durations learned from earlier runs or drills (repeatable), as
    /// `drover estimate --history`: a ledger, or a drill history (drills.jsonl). Without it, the
    /// ETA starts from the workflow's estimates and corrects itself as steps finish.
    #[arg(long)]
    history: Vec<PathBuf>,
    /// Stand by while another process holds the run (its coordinator, say), and take the run
    /// over as soon as that holder is gone: at once when its process is gone from this
    /// machine; otherwise, on a PostgreSQL ledger, once its hold lapsed (its --lease, by the
    /// database's clock), and on a file, once its heartbeat is a minute old.
    #[arg(long)]
    standby: bool,
}

/// Options shared by `run` and `resume`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Coordinate only: hand every step to `drover worker` processes through the PostgreSQL
    /// ledger (--state postgres://…) instead of running it here; pools, retries, canary and
    /// failure budget still apply here, across every worker (docs/running.md, "Many workers").
    #[arg(long)]
    workers: bool,
    /// With a PostgreSQL ledger: how long this process's hold on the run lasts without renewal
    /// (renewed three times as often, by the database's clock). A standby takes the run over
    /// this long after its holder stopped renewing; a coordinator that cannot renew its hold
    /// stops itself before then.
    #[arg(long, default_value = "15s", value_parser = crate::limits::duration_arg(Duration::from_secs(3600)))]
    lease: Duration,
    /// At most this many steps at once, whatever the pools allow [default: 256, or the value
    /// recorded in the ledger on resume].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_parallel: Option<u32>,
    /// Pool capacity overrides, e.g. `db=8,s3=32` [default: the workflow's, or those recorded
    /// in the ledger on resume].
    #[arg(long, value_parser = super::parse_pools)]
    pools: Option<std::collections::BTreeMap<String, u32>>,
    /// Which ready step starts first. `auto` simulates the others on this restore first and
    /// runs the one that finishes soonest (of those within 2 %, the one whose sites are back
    /// soonest on average); `drover estimate` shows them side by side.
    #[arg(long, value_enum, default_value_t = Policy::Auto)]
    policy: Policy,
    /// After the first Ctrl-C, how long in-flight steps may run before they are cancelled.
    #[arg(long, default_value = "30s", value_parser = crate::limits::duration_arg(crate::limits::MAX_GRACE))]
    grace: Duration,
    /// Restore a canary wave first — N sites, or a percentage like `5%`: the smallest site of
    /// each tier, then the smallest others — through every step, before starting any other site.
    /// If a canary site fails, no other site starts.
    #[arg(long, value_parser = parse_amount)]
    canary: Option<Amount>,
    /// Stop starting new sites when more than this many sites (or this percentage, `5%`) have
    /// failed; sites already started finish. Exit 3 with the reason.
    #[arg(long, value_parser = parse_amount)]
    failure_budget: Option<Amount>,
    /// Progress and logs: `text` (bars on a terminal, a line every few seconds otherwise) or
    /// `json` (one JSON log line per event on standard error).
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    log_format: LogFormatArg,
    /// Practice and game days: every step whose ID starts with this (e.g. `site-0042/`) fails
    /// each attempt in this session, before it does anything; repeatable. Then practise
    /// `drover status`, `retry` and `skip`. Recorded in the audit trail with the command line.
    #[arg(long, value_name = "STEP_ID_PREFIX")]
    inject_failure: Vec<String>,
}

impl ExecArgs {
    pub(crate) fn pools(&self) -> Option<&std::collections::BTreeMap<String, u32>> {
        self.pools.as_ref()
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

/// The default blast radius: larger restores need an explicit `--max-sites`.
pub const DEFAULT_MAX_SITES: usize = 100;

pub fn run(args: RunArgs) -> Result<Done, Failure> {
    // Read before any ledger is opened here: a bad --history is refused before anything runs.
    let model = super::shared::learn_history(&args.history)?;
    let (mut inputs, mut plan, workflow, mut excluded) = match &args.plan {
        Some(path) => reviewed(path, args.confirm.as_deref().unwrap_or(""))?,
        None => {
            let (w, r) = (
                args.workflow.clone().expect("clap requires it"),
                args.request.clone().expect("clap requires it"),
            );
            let inputs = super::shared::load(&w, &r)?;
            let pool_capacity = args.exec.pools.clone().unwrap_or_default();
            let plan = plan::plan(
                &inputs.workflow,
                &inputs.request,
                &PlanOptions { pool_capacity },
            )?;
            (inputs, plan, w, Default::default())
        }
    };
    check_blast_radius(&plan, args.max_sites)?;
    check_kinds(&plan, &workflow)?;
    // Refused before a ledger exists; `execute` checks again (and warns) for every session.
    check_secrets(&plan, &workflow, false)?;
    unmatched_injection(&plan, &args.exec.inject_failure)?;
    let continuing = crate::ledger::exists(&args.state)?;
    // A continued run's sites are mid-restore, some already reactivated, by design: the
    // registry check is for new runs (as for `resume`, which does not plan at all).
    let opts = (!continuing).then_some(crate::preflight::Options {
        replace_existing: args.replace_existing,
        ..Default::default()
    });
    let request_path = PathBuf::from(&inputs.snapshot.request_file);
    let options = PlanOptions {
        pool_capacity: plan
            .pools
            .iter()
            .map(|p| (p.name.clone(), p.capacity))
            .collect(),
    };
    if continuing {
        // The run left sites out when it started (--exclude-refused): so does this session.
        let recorded = crate::ledger::open(&args.state)?.info()?.excluded;
        if !recorded.is_empty() {
            super::shared::without(&mut inputs.request, &recorded);
            plan = plan::plan(&inputs.workflow, &inputs.request, &options)?;
        }
    }
    let (plan, checked, left_out) = super::shared::preflight_excluding(
        plan,
        &mut inputs,
        &options,
        &request_path,
        opts,
        args.exclude_refused,
    )?;
    if !left_out.is_empty() {
        super::shared::print_excluded(&left_out);
        excluded = left_out;
    }
    if let Some(r) = &checked.registry {
        errln!(
            "registry: {} sites checked in {}",
            r.by_state.values().sum::<usize>(),
            r.registry
        );
    }
    if let Some((p50, max, site)) = checked.backups.as_ref().and_then(|c| c.rpo_summary(&plan)) {
        errln!(
            "backups: every unit has a snapshot in its window; RPO p50 {}, max {} ({site})",
            crate::report::human(p50),
            crate::report::human(max)
        );
    }
    // Asked once preflight has said what it found and which sites it left out: the operator
    // confirms the restore that will run.
    if args.plan.is_none() {
        confirm(&plan, args.yes)?;
    }
    let mut ledger = if continuing {
        let ledger = crate::ledger::open(&args.state)?;
        let info = ledger.info()?;
        if info.plan_hash != plan.hash {
            return Err(LedgerError::DifferentPlan {
                path: args.state.display().to_string(),
                existing: info.plan_hash,
                new: plan.hash.clone(),
            }
            .into());
        }
        errln!(
            "{} already holds this plan; continuing it",
            args.state.display()
        );
        ledger
    } else {
        let run_id = new_run_id();
        let claimed_in = claim_new(
            &plan,
            &inputs.request,
            &run_id,
            &args.state,
            args.replace_existing,
        )?;
        let created = create_ledger(
            &args.state,
            &plan,
            inputs.snapshot,
            &args.exec,
            NewRunInfo {
                run_id: run_id.clone(),
                excluded: std::mem::take(&mut excluded),
                claimed_in: claimed_in.clone(),
            },
        );
        if created.is_err() {
            release_claims(claimed_in.as_deref(), &run_id);
        }
        created?
    };
    drop(plan);
    execute(ledger.as_mut(), SessionMode::Run, &args.exec, model)
}

/// What a new run records beside its plan and settings.
pub(crate) struct NewRunInfo {
    pub run_id: String,
    /// Sites left out by `--exclude-refused`.
    pub excluded: super::shared::Excluded,
    /// The registry its sites are claimed in.
    pub claimed_in: Option<String>,
}

impl NewRunInfo {
    /// A run that leaves out no site and claims none (a drill, which restores into a copy).
    pub(crate) fn unclaimed() -> NewRunInfo {
        NewRunInfo {
            run_id: new_run_id(),
            excluded: Default::default(),
            claimed_in: None,
        }
    }
}

/// Claims the sites of a new run in the target registry, when the request names one that keeps
/// claims and the workflow restores into it: all or none. Sites another run holds refuse the
/// run (exit 2, naming the holder) unless `take_over` (`--replace-existing`), which takes them
/// over and says from whom. Returns the registry claimed in.
fn claim_new(
    plan: &Plan,
    request: &crate::request::Request,
    run_id: &str,
    ledger: &Path,
    take_over: bool,
) -> Result<Option<String>, Failure> {
    let Some(target) = request.target() else {
        return Ok(None);
    };
    let registry = target.spec();
    if !crate::target::applies(&target, crate::preflight::uses_target(plan, &registry)) {
        return Ok(None);
    }
    let claims = crate::target::claims(&target).map_err(|e| Failure::Internal(e.into()))?;
    let Some(claims) = claims else {
        return Ok(None);
    };
    let sites: Vec<&str> = plan.sites.iter().map(|s| s.id.as_str()).collect();
    let me = claim_of(run_id, ledger);
    let taken = claims
        .claim(&sites, &me, take_over)
        .map_err(|e| claim_failure(e, ledger))?;
    for (site, from) in &taken {
        errln!(
            "took over {site} from run {} (ledger {} on {}): --replace-existing",
            from.run_id,
            from.ledger,
            from.host
        );
    }
    Ok(Some(registry))
}

/// Before a session of a run that claimed its sites: every site it has not finished must still
/// be this run's. One another run took over is refused, naming that run; one whose claim is
/// gone (taken over by a run that has since finished) too: that run restored it. A site whose
/// steps are all done needs no claim (a finished run released them).
fn reclaim(
    info: &RunInfo,
    plan: &Plan,
    steps: &[crate::ledger::StepRecord],
    ledger: &str,
) -> Result<(), Failure> {
    use crate::diag::{Location, Problem, ProblemKind};
    let Some(registry) = &info.claimed_in else {
        return Ok(());
    };
    let target = crate::request::Target::parse(registry);
    let mut unfinished = vec![false; plan.sites.len()];
    for (step, record) in plan.steps.iter().zip(steps) {
        if let crate::plan::Owner::Site { site, .. } = step.owner {
            unfinished[site as usize] |= !record.state.is_done();
        }
    }
    let sites: Vec<&str> = plan
        .sites
        .iter()
        .zip(&unfinished)
        .filter(|(_, u)| **u)
        .map(|(s, _)| s.id.as_str())
        .collect();
    if sites.is_empty() {
        return Ok(());
    }
    let held = crate::target::open(&target)
        .and_then(|r| r.held(&sites))
        .map_err(|e| Failure::Internal(e.into()))?;
    let at = ledger.to_owned();
    let problems: Vec<Problem> = sites
        .iter()
        .filter_map(|&site| {
            let (message, fix) = match held.get(site) {
                Some(c) if c.run_id == info.run_id => return None,
                Some(c) => crate::target::held_refusal(c),
                None => (
                    format!(
                        "is no longer this run's ({}): another run took it over and has \
                         finished it",
                        info.run_id
                    ),
                    format!(
                        "check the site's state in {}; restore it in a new run if it still needs it",
                        target.registry
                    ),
                ),
            };
            Some(Problem::new(
                Location::file(&at),
                format!("site {site}"),
                ProblemKind::Invalid { message, fix },
            ))
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::Input(problems))
    }
}

fn release_claims(registry: Option<&str>, run_id: &str) {
    let Some(registry) = registry else {
        return;
    };
    let released = crate::target::claims(&crate::request::Target::parse(registry))
        .map_err(|e| e.to_string())
        .and_then(|c| c.map_or(Ok(()), |c| c.release(run_id).map_err(|e| e.to_string())));
    if let Err(e) = released {
        errln!("warning: the run's sites stay claimed in {registry}: {e}");
    }
}

fn claim_of(run_id: &str, ledger: &Path) -> crate::target::Claim {
    let me = Holder::current();
    crate::target::Claim {
        run_id: run_id.to_owned(),
        ledger: match ledger
            .to_str()
            .filter(|s| crate::ledger::postgres::is_url(s))
        {
            Some(url) => crate::redact::text(url),
            None => std::path::absolute(ledger)
                .unwrap_or_else(|_| ledger.to_path_buf())
                .display()
                .to_string(),
        },
        host: me.host,
        pid: me.pid,
        at: now_ms(),
    }
}

fn claim_failure(e: crate::target::ClaimError, ledger: &Path) -> Failure {
    use crate::diag::{Location, Problem, ProblemKind};
    match e {
        crate::target::ClaimError::Held(held) => Failure::Input(
            held.into_iter()
                .map(|(site, c)| {
                    let (message, fix) = crate::target::held_refusal(&c);
                    Problem::new(
                        Location::file(&ledger.display().to_string()),
                        format!("site {site}"),
                        ProblemKind::Invalid { message, fix },
                    )
                })
                .collect(),
        ),
        other => Failure::Internal(anyhow::Error::from(other)),
    }
}

/// A new ledger holding `plan`, the input files it came from, and the run's settings.
pub(crate) fn create_ledger(
    state: &Path,
    plan: &Plan,
    snapshot: crate::ledger::Snapshot,
    exec: &ExecArgs,
    new: NewRunInfo,
) -> Result<Box<dyn Store>, Failure> {
    let info = RunInfo {
        run_id: new.run_id,
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
        max_parallel: exec
            .max_parallel
            .map_or(crate::schedule::DEFAULT_MAX_PARALLEL, |m| m as usize),
        policy: None,
        excluded: new.excluded,
        claimed_in: new.claimed_in,
    };
    let new = NewRun {
        info,
        snapshot,
        plan,
    };
    Ok(crate::ledger::create(state, &new)?)
}

pub fn resume(args: ResumeArgs) -> Result<Done, Failure> {
    let model = super::shared::learn_history(&args.history)?;
    let mut ledger = crate::ledger::open(&args.state)?;
    if args.standby {
        hold_for(ledger.as_mut(), &args.exec)?;
        stand_by(ledger.as_mut())?;
    }
    execute(ledger.as_mut(), SessionMode::Resume, &args.exec, model)
}

/// How long a hold on a shared ledger lasts (`--lease`).
fn hold_for(ledger: &mut dyn Store, exec: &ExecArgs) -> Result<(), Failure> {
    if exec.lease < Duration::from_secs(1) {
        return Err(super::refuse(
            Path::new(&ledger.shown()),
            "--lease",
            format!("{} is under a second", crate::limits::human(exec.lease)),
            "give a lease of a second or more (15s by default)",
        ));
    }
    ledger.hold_for(exec.lease);
    Ok(())
}

/// Waits until the ledger can be taken, and takes it.
fn stand_by(ledger: &mut dyn Store) -> Result<(), Failure> {
    let me = Holder::current();
    let mut said = false;
    loop {
        match ledger.acquire(&me) {
            Ok(()) => break,
            Err(LedgerError::Held { pid, host, .. }) => {
                if !said {
                    errln!(
                        "standing by: process {pid} on {host} holds {}",
                        ledger.shown()
                    );
                    said = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            Err(e) => return Err(e.into()),
        }
    }
    errln!("taking over {} (its holder is gone)", ledger.shown());
    Ok(())
}

/// Takes the lock, runs the stored plan from its recorded state, releases the lock.
pub(crate) fn execute(
    ledger: &mut dyn Store,
    mode: SessionMode,
    exec: &ExecArgs,
    model: DurationModel,
) -> Result<Done, Failure> {
    let me = Holder::current();
    hold_for(ledger, exec)?;
    ledger.acquire(&me)?;
    let info = ledger.info()?;
    let result = execute_held(ledger, mode, exec, model, &me);
    if matches!(result, Ok(Done::Ok)) {
        // Every site is restored: no run holds them any more.
        release_claims(info.claimed_in.as_deref(), &info.run_id);
    }
    if let Err(e) = ledger.release() {
        errln!("warning: could not release the ledger lock: {e}");
    }
    result
}

fn execute_held(
    ledger: &mut dyn Store,
    mode: SessionMode,
    exec: &ExecArgs,
    model: DurationModel,
    me: &Holder,
) -> Result<Done, Failure> {
    if exec.workers && ledger.postgres().is_none() {
        return Err(super::refuse(
            Path::new(&ledger.shown()),
            "--workers",
            "workers share a run through a PostgreSQL ledger; this one is a file".into(),
            "give --state postgres://user@host:port/db?ledger=<name>, or run without --workers",
        ));
    }
    let stored = ledger.load()?;
    let plan = Arc::new(stored.plan);
    reclaim(&stored.info, &plan, &stored.steps, &ledger.shown())?;
    check_kinds(&plan, Path::new(&stored.snapshot.workflow_file))?;
    check_secrets(&plan, Path::new(&stored.snapshot.workflow_file), true)?;
    let argv = super::shared::argv();
    ledger.record_session(mode, &argv, me, &stored.info.plan_hash)?;
    // A stop asked of an earlier session is not this one's.
    ledger.clear_stop()?;
    let asked = match ledger.postgres() {
        Some(_) => Some(ledger.reopen()?),
        None => None,
    };
    let mut opts = RunOptions::new(&plan, &stored.info.run_id, &ledger.staging());
    opts.pool_capacity = pool_capacity(&plan, &stored.info.pools, exec.pools.as_ref())?;
    opts.max_parallel = exec
        .max_parallel
        .map_or(stored.info.max_parallel, |m| m as usize);
    for warning in crate::preflight::pools(&plan, &opts.pool_capacity, opts.max_parallel) {
        errln!("warning: {warning}");
    }
    opts.policy = exec.policy;
    opts.grace = exec.grace;
    if ledger.postgres().is_some() {
        // Every ledger write renews the hold; a quiet run writes a heartbeat to keep it.
        opts.heartbeat_every = exec.lease / 3;
    }
    let sites = plan.sites.len();
    opts.canary = exec
        .canary
        .map(|c| crate::schedule::policy::canary_sites(&plan, c.of(sites).max(1)))
        .unwrap_or_default();
    opts.failure_budget = exec.failure_budget.map(|b| b.of(sites));
    opts.inject_failures = injected_failures(&plan, &exec.inject_failure)?;
    opts.seed = now_ms() as u64;
    opts.model = Arc::new(model);
    if opts.policy == Policy::Auto {
        opts.policy = match stored.info.policy {
            // A resume keeps what the run chose: six simulations of what is left would take
            // seconds at scale, and might choose differently halfway through.
            Some(kept) if kept != Policy::Auto => {
                errln!(
                    "policy: auto keeps {kept}, chosen when this run started (--policy to change it)"
                );
                kept
            }
            _ => choose_policy(&plan, &stored.steps, &opts),
        };
    }
    ledger.record_policy(opts.policy)?;
    for e in opts.model.evidence() {
        errln!(
            "eta: starts from the durations of {} steps of the {} in {}",
            e.steps,
            e.kind,
            e.source
        );
    }
    let writer = ledger.reopen()?;
    let journal = Journal::threaded(writer as Box<dyn Ledger>);
    let format = match exec.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    let updates = crate::updates::Updates::open(
        ledger,
        Arc::clone(&plan),
        stored.info.clone(),
        stored.snapshot.clone(),
    )?;
    let renderer = Renderer::new(Arc::clone(&plan), format);
    let runtime = super::shared::runtime()?;
    let dispatcher = match ledger.postgres().filter(|_| exec.workers) {
        Some(at) => {
            let d = runtime.block_on(crate::workers::Dispatcher::start(
                at,
                me,
                exec.lease,
                Arc::clone(&plan),
                &stored.info.run_id,
            ))?;
            errln!(
                "coordinating: every step goes to the workers of {}",
                at.shown()
            );
            Some(d)
        }
        None => None,
    };
    let registry = match &dispatcher {
        Some(d) => d.registry(&Registry::builtin()),
        None => Registry::builtin(),
    };
    let summary = runtime.block_on(async {
        let control = Control::default();
        let signals = tokio::spawn(watch_signals(control.clone(), exec.grace));
        let watched = tokio_util::sync::CancellationToken::new();
        let stops = asked.map(|l| tokio::spawn(watch_stop(l, control.clone(), watched.clone())));
        if let Some(d) = dispatcher.clone() {
            let draining = control.draining();
            tokio::spawn(async move {
                draining.cancelled().await;
                d.withdraw_queued().await;
            });
        }
        let done = tokio_util::sync::CancellationToken::new();
        let run = async {
            let result = schedule::run(
                Arc::clone(&plan),
                &stored.steps,
                &registry,
                journal,
                opts,
                &renderer,
                control,
            )
            .await;
            done.cancel();
            result
        };
        let watch = async {
            if let Some(u) = updates {
                u.watch(&renderer, done.clone()).await;
            }
        };
        let both = async { tokio::join!(run, watch).0 };
        let result = match dispatcher.as_ref().map(|d| (d.deposed(), d)) {
            Some((deposed, d)) => tokio::select! {
                result = both => result,
                () = deposed.cancelled() => {
                    // Nothing more may be queued or recorded by this process; what its workers
                    // run, the coordinator that takes over adopts.
                    errln!(
                        "error: this coordinator no longer holds {}: {}. It stops; the \
                         coordinator that took over (or `drover resume --workers`) continues \
                         the run",
                        ledger.shown(),
                        d.deposed_why()
                    );
                    std::process::exit(4);
                }
            },
            None => both.await,
        };
        // A run that failed because its ledger writes failed may have been taken over while
        // this process was paused or cut off: say so, as deposition.
        let result = match (result, &dispatcher) {
            (Err(e), Some(d)) if d.still_holds().await == Some(false) => {
                tracing::debug!(error = %e, "the run stopped after it was taken over");
                Err(crate::schedule::RunError::Ledger(LedgerError::Deposed {
                    state: ledger.shown(),
                }))
            }
            (result, _) => result,
        };
        signals.abort();
        watched.cancel();
        if let Some(s) = stops {
            let _ = s.await;
        }
        result
    });
    renderer.finish();
    let summary = summary.map_err(|e| match e {
        // Another process took the run over while this one was paused or cut off.
        crate::schedule::RunError::Ledger(e @ LedgerError::Deposed { .. }) => e.into(),
        e => Failure::Internal(anyhow::Error::new(e).context("the run stopped")),
    })?;
    print_summary(&summary, &ledger.shown(), mode);
    Ok(if summary.interrupted {
        Done::Interrupted
    } else if summary.all_restored() {
        Done::Ok
    } else {
        Done::Unfinished
    })
}

/// `--policy auto`: simulates every policy on what is left of this restore (with the durations
/// the ETA starts from) and says which it runs and why.
fn choose_policy(
    plan: &Arc<Plan>,
    steps: &[crate::ledger::StepRecord],
    opts: &RunOptions,
) -> Policy {
    let mut sim = crate::sim::SimOptions::for_plan(plan);
    sim.capacity = opts.pool_capacity.clone();
    sim.max_parallel = opts.max_parallel;
    let states: Vec<crate::ledger::StepState> = steps.iter().map(|r| r.state).collect();
    let durations = opts.model.durations(plan);
    let outcomes = crate::sim::compare_from(plan, &sim, &durations, &states);
    let chosen = crate::sim::choose(&outcomes);
    let h = |ms: u64| crate::report::human(Duration::from_millis(ms));
    let others: Vec<String> = outcomes
        .iter()
        .filter(|o| o.policy != chosen)
        .map(|o| format!("{} {}", o.policy, h(o.makespan_ms)))
        .collect();
    if let Some(c) = outcomes.iter().find(|o| o.policy == chosen) {
        errln!(
            "policy: auto runs {chosen}: simulated {}, mean site {} ({})",
            h(c.makespan_ms),
            h(c.site_mean_ms),
            others.join(", ")
        );
    }
    chosen
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
            errln!(
                "\ninterrupted: no new steps will start; in-flight steps have {} to finish (Ctrl-C again to stop at once)",
                crate::report::human(grace)
            );
            control.drain();
        } else {
            errln!("\nstopping now; steps in flight will run again on resume");
            control.abort();
            return;
        }
    }
}

/// Drains or aborts the run when `drover stop` asks it to, from any machine (looked at twice a
/// second; a ledger that cannot say is looked at again).
/// Looks for `drover stop` twice a second, until `done`.
async fn watch_stop(
    mut ledger: Box<dyn Store>,
    control: Control,
    done: tokio_util::sync::CancellationToken,
) {
    let mut drained = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            () = done.cancelled() => break,
        }
        let (back, asked) = tokio::task::spawn_blocking(move || {
            let asked = ledger.stop_asked();
            (ledger, asked)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        ledger = back;
        match asked {
            Ok(Some(crate::ledger::StopMode::Abort)) => {
                errln!("\nstop --now asked: stopping; steps in flight will run again on resume");
                control.abort();
                break;
            }
            Ok(Some(crate::ledger::StopMode::Drain)) if !drained => {
                errln!("\nstop asked: no new steps will start; those in flight finish");
                control.drain();
                drained = true;
            }
            _ => {}
        }
    }
    // A PostgreSQL connection closes by blocking: not on the runtime's threads.
    let _ = tokio::task::spawn_blocking(move || drop(ledger)).await;
}

fn print_summary(summary: &RunSummary, state: &str, mode: SessionMode) {
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
    errln!("sites: {}", sites.join(", "));
    errln!("steps: {}", steps.join(", "));
    errln!("elapsed: {}", crate::report::human(summary.elapsed));
    if let Some(reason) = &summary.stopped {
        errln!("stopped: {reason}");
    }
    if summary.interrupted && mode == SessionMode::Drill {
        errln!("interrupted: the drill is recorded as failed and its copy removed");
    } else if summary.interrupted {
        errln!("interrupted; continue with: drover resume --state '{state}'",);
    } else if !summary.all_restored() {
        errln!("not every site was restored; see: drover status --state '{state}'",);
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
    // Only a ledger written by another build of drover can hold such a plan.
    let kind = crate::diag::ProblemKind::Invalid {
        message: format!(
            "step kind(s) {} are in the recorded plan but this build of drover cannot run them",
            missing.join(", ")
        ),
        fix: format!(
            "continue with the drover build that made this ledger; this one runs: {}",
            registry.names().join(", ")
        ),
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

fn new_run_id() -> String {
    let t = chrono::Utc::now();
    format!(
        "run-{}-{:04x}",
        t.format("%Y%m%dT%H%M%SZ"),
        std::process::id() & 0xffff
    )
}

/// Loads a reviewed plan file and re-plans its inputs: both must agree, and `confirm` must be the
/// start of the hash.
/// The inputs, the plan, the workflow's path and the plan's exclusions (`--exclude-refused`).
type Reviewed = (crate::load::Inputs, Plan, PathBuf, super::shared::Excluded);

fn reviewed(path: &Path, confirm: &str) -> Result<Reviewed, Failure> {
    let file = read_plan_file(path)?;
    let hash = file["hash"].as_str().unwrap_or_default().to_owned();
    if confirm.len() < 12 || !hash.starts_with(&confirm.to_ascii_lowercase()) {
        return Err(refuse_plan(
            path,
            format!("--confirm '{confirm}' does not match the plan's hash {hash}"),
            "pass the first 12 hex digits of the hash you reviewed",
        ));
    }
    let recorded: PlanInputs = serde_json::from_value(file["inputs"].clone()).map_err(|e| {
        refuse_plan(
            path,
            format!("the plan records no inputs: {e}"),
            "write the plan again with `drover plan --out`",
        )
    })?;
    let w = PathBuf::from(&recorded.workflow);
    let mut inputs = crate::load::inputs(&w, Path::new(&recorded.request))?;
    super::shared::without(&mut inputs.request, &recorded.excluded);
    let pool_capacity = recorded.pools.clone();
    let plan = plan::plan(
        &inputs.workflow,
        &inputs.request,
        &PlanOptions { pool_capacity },
    )?;
    if plan.hash != hash {
        return Err(refuse_plan(
            path,
            format!(
                "{} and {} now give plan {}, not the reviewed {hash}: the workflow or the request changed since the review",
                recorded.workflow, recorded.request, plan.hash
            ),
            "review the new plan (drover plan --out) and confirm its hash",
        ));
    }
    let fresh =
        serde_json::to_value(PlanDoc::new(&plan, &recorded)).map_err(anyhow::Error::from)?;
    if fresh != file {
        return Err(refuse_plan(
            path,
            format!(
                "the plan file was edited: {}",
                first_difference(&fresh, &file)
            ),
            "write the plan again with `drover plan --out` and review that",
        ));
    }
    let excluded = recorded.excluded;
    Ok((inputs, plan, w, excluded))
}

/// The plan file as JSON: bounded, and a file of another kind named for what it is.
fn read_plan_file(path: &Path) -> Result<serde_json::Value, Failure> {
    let wrote = "give the file `drover plan --out` wrote";
    let cannot_read =
        |e: std::io::Error| refuse_plan(path, format!("cannot read the plan: {e}"), wrote);
    let bytes =
        crate::util::read_capped(path, crate::plan::doc::MAX_PLAN_BYTES).map_err(cannot_read)?;
    let kind = crate::sniff::kind_of(&bytes);
    if !matches!(kind, FileKind::Plan | FileKind::Other) {
        return Err(refuse_plan(
            path,
            format!("this is {}, not a plan", kind.describe()),
            &format!(
                "{}; a plan is the file `drover plan --out` wrote",
                kind.usage()
            ),
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| refuse_plan(path, format!("not a plan file: {e}"), wrote))
}

fn refuse_plan(path: &Path, message: String, fix: &str) -> Failure {
    super::refuse(path, "--plan", message, fix)
}

/// Where two plan documents first differ, for the refusal message.
fn first_difference(fresh: &serde_json::Value, file: &serde_json::Value) -> String {
    if let (Some(a), Some(b)) = (fresh["steps"].as_array(), file["steps"].as_array()) {
        if a.len() != b.len() {
            return format!("it lists {} steps; the plan has {}", b.len(), a.len());
        }
        if let Some((x, _)) = a.iter().zip(b).find(|(x, y)| x != y) {
            return format!("step {} differs", x["id"]);
        }
    }
    for key in ["summary", "sites", "tiers", "inputs", "format"] {
        if fresh[key] != file[key] {
            return format!("its '{key}' differs");
        }
    }
    "its content differs".into()
}

pub(crate) fn check_blast_radius(plan: &Plan, max_sites: usize) -> Result<(), Failure> {
    if plan.sites.len() <= max_sites {
        return Ok(());
    }
    let n = plan.sites.len();
    Err(super::refuse(
        Path::new("--max-sites"),
        "blast radius",
        format!("the request restores {n} sites, more than --max-sites {max_sites}"),
        &format!("check the site list; if {n} sites is right, pass --max-sites {n}"),
    ))
}

/// Shows what will be restored; asks on a terminal, refuses off one unless `--yes`.
fn confirm(plan: &Plan, yes: bool) -> Result<(), Failure> {
    use std::io::{BufRead, IsTerminal, Write};
    let shown: Vec<&str> = plan.sites.iter().take(5).map(|s| s.id.as_str()).collect();
    errln!(
        "about to restore {} sites ({}{}) with {} steps; plan {}",
        plan.sites.len(),
        shown.join(", "),
        if plan.sites.len() > 5 { ", …" } else { "" },
        plan.steps.len(),
        &plan.hash[..12]
    );
    if yes {
        return Ok(());
    }
    let refuse = |message: &str| {
        let fix = "review the plan (drover plan --out plan.json) and run it with \
                   --plan plan.json --confirm <hash>, or pass --yes";
        super::refuse(Path::new("--yes"), "confirmation", message.into(), fix)
    };
    if !std::io::stdin().is_terminal() {
        return Err(refuse(
            "not on a terminal, so nobody can confirm the restore",
        ));
    }
    eprint!("type 'yes' to start: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(refuse("not confirmed"))
    }
}

/// A number of sites, or a percentage of them.
#[derive(Clone, Copy, Debug)]
pub enum Amount {
    Sites(usize),
    Percent(f64),
}

impl Amount {
    /// The number of sites out of `total` (a percentage rounds down).
    pub fn of(self, total: usize) -> usize {
        match self {
            Amount::Sites(n) => n,
            Amount::Percent(p) => (total as f64 * p / 100.0).floor() as usize,
        }
    }
}

fn parse_amount(s: &str) -> Result<Amount, String> {
    match s.strip_suffix('%') {
        Some(p) => p
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|p| (0.0..=100.0).contains(p))
            .map(Amount::Percent)
            .ok_or_else(|| format!("'{s}' is not a percentage from 0% to 100%")),
        None => s
            .trim()
            .parse()
            .map(Amount::Sites)
            .map_err(|_| format!("'{s}' is not a number of sites or a percentage like 5%")),
    }
}

/// Every secret the plan references is set in this environment (else nothing runs: exit 2);
/// literal credentials are warned about.
fn check_secrets(plan: &Plan, workflow: &Path, warn: bool) -> Result<(), Failure> {
    let check = crate::preflight::secrets(plan, |name| std::env::var_os(name).is_some());
    if warn {
        super::warn_secrets(&check);
    }
    super::refuse_unresolved_secrets(&check, workflow)?;
    let Some((name, place)) = check.missing.first() else {
        return Ok(());
    };
    let others = check.missing.len() - 1;
    Err(super::refuse(
        workflow,
        place,
        format!(
            "the secret {{env:{name}}} is not set{}",
            match others {
                0 => String::new(),
                n => format!(" (and {n} more)"),
            }
        ),
        &format!("export {name} in this shell before the run; nothing was executed"),
    ))
}

/// The `--inject-failure` prefixes, announced; each must match a step.
fn injected_failures(plan: &Plan, prefixes: &[String]) -> Result<Vec<String>, Failure> {
    unmatched_injection(plan, prefixes)?;
    for prefix in prefixes {
        let matched = matching(plan, prefix);
        errln!(
            "injecting failures: every attempt of the {matched} steps starting with '{prefix}' fails"
        );
    }
    Ok(prefixes.to_vec())
}

/// Refuses an `--inject-failure` prefix that matches no step (a typo), exit 2.
fn unmatched_injection(plan: &Plan, prefixes: &[String]) -> Result<(), Failure> {
    match prefixes
        .iter()
        .find(|p| p.is_empty() || matching(plan, p) == 0)
    {
        Some(prefix) => Err(super::refuse(
            Path::new("--inject-failure"),
            prefix,
            format!("'{prefix}' is the start of no step ID of this plan"),
            "give the start of a step ID, e.g. site-0042/ (drover status lists them)",
        )),
        None => Ok(()),
    }
}

fn matching(plan: &Plan, prefix: &str) -> usize {
    plan.steps
        .iter()
        .filter(|s| s.id.starts_with(prefix))
        .count()
}
