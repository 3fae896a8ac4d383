//! The command line: argument parsing, rendering and exit codes. The only code that prints.
//!
//! Everything printed goes through [`outln!`] / [`errln!`] or a [`Printable`] writer, which
//! escape control characters: output quotes input (IDs, errors, reasons), and input must not
//! be able to rewrite the operator's terminal. JSON documents are printed as serde writes them.

/// `println!` with control characters escaped (`util::printable`).
macro_rules! outln {
    () => { println!() };
    ($($arg:tt)*) => { println!("{}", $crate::util::printable(&format!($($arg)*))) };
}

/// `eprintln!` with control characters escaped (`util::printable`).
macro_rules! errln {
    () => { eprintln!() };
    ($($arg:tt)*) => { eprintln!("{}", $crate::util::printable(&format!($($arg)*))) };
}

mod audit;
mod backups;
mod clean;
mod demo;
mod drill;
mod estimate;
mod generate;
mod plan;
mod progress;
mod report;
mod retry;
mod run;
mod serve;
mod shared;
mod status;
mod stop;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::diag::{Location, Problem, ProblemKind};
use crate::ledger::LedgerError;

const EXIT_CODES: &str = "\
Exit codes:
  0    success (for run/resume: every site restored)
  1    internal error (a bug or an environment failure; the message says which)
  2    invalid input (the message names the file, the entry and the fix); nothing was executed
  3    the run finished with failed, blocked or quarantined sites (see `drover status`);
       a drill failed its target
  4    the ledger is held by another live drover process (the message names its PID and host)
  130  interrupted (Ctrl-C); continue with `drover resume`";

/// Disaster-recovery orchestration: plan, run, checkpoint, resume and forecast the restore of
/// hundreds or thousands of multi-product sites.
#[derive(Parser, Debug)]
#[command(name = "drover", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// The whole story on embedded defaults: build a SaaS platform, back it up, delete its sites
    /// as the 2022 script did (in April 2022 a vendor's maintenance script, run in the wrong mode
    /// with the wrong IDs, deleted 883 customer sites), restore them with drover, verify every
    /// site. Stages: init, incident, verify.
    Demo(demo::DemoArgs),
    /// Expand a workflow and a restore request into a reviewable plan: validate everything,
    /// rank steps by critical path, bound the restore time and print the plan hash.
    Plan(plan::PlanArgs),
    /// Plan and execute a restore, recording every step transition in a ledger (--state) so an
    /// interrupted or crashed run can be resumed. First Ctrl-C drains, second stops at once.
    Run(run::RunArgs),
    /// Continue a run from its ledger: finished steps are never run again; steps that were
    /// running when drover stopped run again with the same idempotency key.
    Resume(run::ResumeArgs),
    /// Show per-site and per-step state of a run, and every failure with its error.
    Status(status::StatusArgs),
    /// Serve a run's ledger over HTTP while it goes and after: a live status page, its JSON API,
    /// Prometheus metrics (/metrics) and health endpoints. Read-only. docs/serve.md.
    Serve(serve::ServeArgs),
    /// Run steps of a run whose coordinator hands them out (`run --workers` on a PostgreSQL
    /// ledger): claim, run, heartbeat, report; on as many machines as you like.
    Worker(worker::WorkerArgs),
    /// Ask a run on a PostgreSQL ledger to stop, from any machine: no new steps start (--now:
    /// steps in flight are cancelled too). `resume` continues it.
    Stop(stop::StopArgs),
    /// Draw a run from its ledger: an HTML report (Gantt chart, restore time per site, failures)
    /// and a JSON timeline of every step.
    Report(report::ReportArgs),
    /// Forecast a restore: simulate it with the same scheduler, over virtual time. How long,
    /// which pool is the bottleneck, what capacity meets a target RTO (--sweep).
    Estimate(estimate::EstimateArgs),
    /// Re-queue failed and blocked steps (all, one site's, or one step's); then `resume`.
    Retry(retry::RetryArgs),
    /// Mark a failed step skipped, with a recorded reason, releasing its dependents; then `resume`.
    Skip(retry::SkipArgs),
    /// Who did what to a run (user, host, command line, plan hash, input digests) and every
    /// state change, from its ledger.
    Audit(audit::AuditArgs),
    /// Free the staging area: remove fetched backup data that no unfinished step needs. Only
    /// what the ledger records as fetched there; recorded in the audit trail.
    Clean(clean::CleanArgs),
    /// Rehearse a restore on an isolated copy of the platform (production is only read), measure
    /// every site's RTO against --target-rto, print PASS or FAIL, record it, clean up.
    Drill(drill::DrillArgs),
    /// The history of drills, oldest first, with the RTO trend.
    Drills(drill::DrillsArgs),
    /// Backup stores: list snapshots; fetch one unit's snapshot, verified.
    #[command(subcommand)]
    Backups(backups::BackupsCommand),
    /// Generate synthetic input (a restore request) for benchmarks, drills and what-if planning.
    #[command(subcommand)]
    Generate(generate::GenerateCommand),
}

/// How a command that did its job ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Done {
    Ok,
    /// Finished with sites not restored: exit 3.
    Unfinished,
    /// Stopped by Ctrl-C: exit 130.
    Interrupted,
}

/// How a command failed, which decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// The operator's input is wrong: exit 2.
    Input(Vec<Problem>),
    /// Another live process holds the ledger: exit 4.
    Held(String),
    /// Anything else: exit 1.
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Internal(e)
    }
}

impl From<Vec<Problem>> for Failure {
    fn from(p: Vec<Problem>) -> Self {
        Failure::Input(p)
    }
}

impl From<crate::platform::PlatformError> for Failure {
    fn from(e: crate::platform::PlatformError) -> Self {
        use crate::platform::PlatformError::{AlreadyBuilt, NotAPlatform};
        match &e {
            NotAPlatform { dir } | AlreadyBuilt { dir } => refuse(
                dir,
                "--dir",
                e.to_string(),
                "give the directory `drover demo init` built, or a new one to build into",
            ),
            _ => Failure::Internal(anyhow::Error::new(e)),
        }
    }
}

impl From<LedgerError> for Failure {
    fn from(e: LedgerError) -> Self {
        let input = |path: &str, fix: &str| {
            Failure::Input(vec![Problem::new(
                Location::file(path),
                "--state",
                ProblemKind::Invalid {
                    message: e.to_string(),
                    fix: fix.into(),
                },
            )])
        };
        match &e {
            LedgerError::Held { .. } | LedgerError::Deposed { .. } => Failure::Held(e.to_string()),
            LedgerError::DifferentPlan { path, .. } => input(
                path,
                "give this plan a new --state file, or continue the recorded run with `drover resume --state <file>`",
            ),
            LedgerError::Missing { path } => input(
                path,
                "check the --state path; `drover run` creates the ledger",
            ),
            LedgerError::Incompatible { path, .. } => {
                input(path, "check that --state names a drover ledger")
            }
            LedgerError::Config { state, .. } => input(
                state,
                "give --state a SQLite file, or postgres://user@host:port/db?ledger=<name> \
                 (the password in PGPASSWORD)",
            ),
            _ => Failure::Internal(e.into()),
        }
    }
}

/// Every message that quotes input goes through this before it reaches a terminal or a log.
pub(crate) use crate::util::printable;

/// A writer for text output that escapes control characters in what it is given (as
/// [`outln!`] does); formatted text arrives as whole UTF-8 pieces, bytes that are not UTF-8
/// pass unchanged.
pub(crate) struct Printable<W: std::io::Write>(pub W);

impl<W: std::io::Write> std::io::Write for Printable<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(printable(text).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// `drover audit … | head` closes standard output early, and `println!` then panics with
/// "failed printing to stdout: Broken pipe". That is the reader's choice, not a bug: exit quietly
/// with 141 (128 + SIGPIPE), as other Unix tools do. (Restoring SIGPIPE's default action instead
/// would also kill the process on a socket write to a closed peer.)
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload().downcast_ref::<String>();
        if message
            .is_some_and(|m| m.contains("failed printing to stdout") && m.contains("Broken pipe"))
        {
            std::process::exit(141);
        }
        default(info)
    }));
}

/// A refusal of one input, with the fix: exit 2, nothing done.
pub(crate) fn refuse(at: &std::path::Path, entry: &str, message: String, fix: &str) -> Failure {
    Failure::Input(vec![Problem::new(
        Location::file(&at.display().to_string()),
        entry,
        ProblemKind::Invalid {
            message,
            fix: fix.into(),
        },
    )])
}

/// Prints a document as indented JSON on standard output.
pub(crate) fn print_json(doc: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(doc).map_err(anyhow::Error::from)?;
    println!("{text}");
    Ok(())
}

/// How a command prints its result: for people, or as JSON for programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

/// Runs one command (also how `drover demo` runs its stages).
pub(crate) fn execute(command: Command) -> Result<Done, Failure> {
    match command {
        Command::Demo(args) => demo::run(args),
        Command::Plan(args) => plan::run(args).map(|()| Done::Ok),
        Command::Run(args) => run::run(args),
        Command::Resume(args) => run::resume(args),
        Command::Status(args) => status::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Worker(args) => worker::run(args),
        Command::Stop(args) => stop::run(args),
        Command::Report(args) => report::run(args),
        Command::Estimate(args) => estimate::run(args),
        Command::Retry(args) => retry::retry(args),
        Command::Skip(args) => retry::skip(args),
        Command::Audit(args) => audit::run(args),
        Command::Clean(args) => clean::run(args),
        Command::Drill(args) => drill::drill(args),
        Command::Drills(args) => drill::drills(args),
        Command::Backups(cmd) => backups::run(cmd),
        Command::Generate(cmd) => generate::run(cmd).map(|()| Done::Ok),
    }
}

/// Parses the command line, runs the command and returns its exit code.
pub fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let result = execute(Cli::parse().command);
    match result {
        Ok(Done::Ok) => ExitCode::SUCCESS,
        Ok(Done::Unfinished) => ExitCode::from(3),
        Ok(Done::Interrupted) => ExitCode::from(130),
        Err(Failure::Input(problems)) => {
            print_problems(&problems);
            ExitCode::from(2)
        }
        Err(Failure::Held(message)) => {
            eprintln!("error: {}", printable(&message));
            eprintln!(
                "    fix: wait for it to finish, or stop it (Ctrl-C) and then `drover resume`"
            );
            ExitCode::from(4)
        }
        Err(Failure::Internal(e)) if closed_stdout(&e) => ExitCode::from(141),
        Err(Failure::Internal(e)) => {
            eprintln!("error: {}", printable(&chain(&e)));
            ExitCode::from(1)
        }
    }
}

/// An error and its sources, `outer: inner: innermost`, leaving out a source whose text the
/// message before it already quotes (many errors show their source in their own message).
fn chain(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for source in e.chain().skip(1) {
        let s = source.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
    }
    text
}

/// The reader of our output went away (`drover plan | head`): see [`quiet_on_broken_pipe`].
/// Only for errors in writing output (their context says "writing"); a broken pipe anywhere else
/// (a socket) is a real error and is reported.
fn closed_stdout(e: &anyhow::Error) -> bool {
    e.to_string().starts_with("writing")
        && e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        })
}

/// How many problems are printed in full; the rest are counted.
const SHOWN_PROBLEMS: usize = 50;

fn print_problems(problems: &[Problem]) {
    let n = problems.len();
    eprintln!(
        "error: {n} problem{} in the input; nothing was executed",
        if n == 1 { "" } else { "s" }
    );
    let groups = crate::diag::grouped(problems);
    for g in groups.iter().take(SHOWN_PROBLEMS) {
        eprintln!("{}", printable(&g.to_string()));
    }
    if groups.len() > SHOWN_PROBLEMS {
        let rest: usize = groups[SHOWN_PROBLEMS..]
            .iter()
            .map(|g| g.sites.len().max(1))
            .sum();
        eprintln!("… and {rest} more; fix the ones above and run again");
    }
    let sites: std::collections::BTreeSet<&str> = problems
        .iter()
        .flat_map(|p| p.refuses.iter().map(String::as_str))
        .collect();
    if !sites.is_empty() && problems.iter().all(|p| !p.refuses.is_empty()) {
        eprintln!(
            "each problem concerns only the sites it names ({} in all): to restore the others \
             now, run `drover plan` or `drover run` again with --exclude-refused (the sites left \
             out are listed and recorded)",
            sites.len()
        );
    }
}

/// Warns about credentials written into a workflow instead of referenced.
pub(crate) fn warn_secrets(check: &crate::preflight::SecretCheck) {
    for place in &check.literal {
        eprintln!(
            "warning: {place} holds a literal credential; it is stored in the plan and the \
             ledger. Write it as {{env:NAME}} and export NAME: docs/security.md"
        );
    }
}

/// Refuses a secret reference in a param whose kind would send it as text (exit 2).
pub(crate) fn refuse_unresolved_secrets(
    check: &crate::preflight::SecretCheck,
    workflow: &std::path::Path,
) -> Result<(), Failure> {
    let Some(place) = check.unresolved.first() else {
        return Ok(());
    };
    Err(refuse(
        workflow,
        place,
        "holds a {env:NAME} secret reference, but this kind of step does not resolve secrets \
         there: it would receive the reference as text"
            .into(),
        "reference secrets only in http url and header.*, notify webhook and header.*, or exec \
         env.* (pass a secret to a command through env.NAME)",
    ))
}

/// `name=N,name=N` as used by `--pools`.
pub(crate) fn parse_pools(s: &str) -> Result<std::collections::BTreeMap<String, u32>, String> {
    let mut pools = std::collections::BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, n) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}' is not name=capacity (e.g. db=8)"))?;
        let n: u32 = n
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=crate::limits::MAX_CAPACITY).contains(n))
            .ok_or_else(|| {
                format!(
                    "'{n}' in '{part}' is not a whole number from 1 to {}",
                    crate::limits::MAX_CAPACITY
                )
            })?;
        pools.insert(name.trim().to_owned(), n);
    }
    Ok(pools)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// The help of `run` states the default parallelism in words (clap cannot format a
    /// constant into a doc comment); this keeps those words the scheduler's one value.
    #[test]
    fn the_help_states_the_default_parallelism_the_scheduler_uses() {
        let mut cli = super::Cli::command();
        for command in ["run", "resume"] {
            let help = cli
                .find_subcommand_mut(command)
                .unwrap()
                .render_long_help()
                .to_string();
            let default = format!("[default: {},", crate::dispatch::DEFAULT_MAX_PARALLEL);
            assert!(help.contains(&default), "{command}: {help}");
        }
    }
}
