//! The command line: argument parsing, rendering and exit codes. The only code that prints.

mod generate;
mod plan;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::diag::Problem;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  internal error (a bug or an environment failure; the message says which)
  2  invalid input (the message names the file, the entry and the fix); nothing was executed";

/// Disaster-recovery orchestration: plan, run, checkpoint, resume and forecast the restore of
/// hundreds or thousands of multi-product sites.
#[derive(Parser, Debug)]
#[command(name = "drover", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Expand a workflow and a restore request into a reviewable plan: validate everything,
    /// rank steps by critical path, bound the restore time and print the plan hash.
    Plan(plan::PlanArgs),
    /// Generate synthetic input (a restore request) for benchmarks, drills and what-if planning.
    #[command(subcommand)]
    Generate(generate::GenerateCommand),
}

/// How a command failed, which decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// The operator's input is wrong: exit 2.
    Input(Vec<Problem>),
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

/// Parses the command line, runs the command and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plan(args) => plan::run(args),
        Command::Generate(cmd) => generate::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(problems)) => {
            print_problems(&problems);
            ExitCode::from(2)
        }
        Err(Failure::Internal(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// How many problems are printed in full; the rest are counted.
const SHOWN_PROBLEMS: usize = 50;

fn print_problems(problems: &[Problem]) {
    let n = problems.len();
    eprintln!(
        "error: {n} problem{} in the input; nothing was executed",
        if n == 1 { "" } else { "s" }
    );
    for p in problems.iter().take(SHOWN_PROBLEMS) {
        eprintln!("{p}");
    }
    if n > SHOWN_PROBLEMS {
        eprintln!(
            "… and {} more; fix the ones above and run again",
            n - SHOWN_PROBLEMS
        );
    }
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
            .map_err(|_| format!("'{n}' in '{part}' is not a whole number"))?;
        pools.insert(name.trim().to_owned(), n);
    }
    Ok(pools)
}
