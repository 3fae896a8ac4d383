//! `drover stop`: drains or aborts a run on a PostgreSQL ledger from any machine; its
//! coordinator sees the request within a second, and with it every worker (a cancelled step is
//! cancelled on the worker that runs it).

use std::path::PathBuf;

use clap::Args;

use super::{Done, Failure};
use crate::ledger::StopMode;

#[derive(Args, Debug)]
pub struct StopArgs {
    /// The run's ledger: postgres://user@host:port/db?ledger=<name>.
    #[arg(long, short, visible_alias = "ledger")]
    state: PathBuf,
    /// Cancel the steps in flight too, as a second Ctrl-C does (they run again on resume).
    /// Without it, no new step starts and those in flight finish.
    #[arg(long)]
    now: bool,
}

pub fn run(args: StopArgs) -> Result<Done, Failure> {
    let mut ledger = crate::ledger::open(&args.state)?;
    if ledger.postgres().is_none() {
        let fix = match ledger.holder()? {
            Some((h, _, _)) => format!(
                "stop it where it runs: Ctrl-C, or kill -INT {} on {}",
                h.pid, h.host
            ),
            None => "nothing holds this ledger: no run to stop".to_owned(),
        };
        return Err(super::refuse(
            &args.state,
            "--state",
            "a run on a ledger file is stopped where it runs".into(),
            &fix,
        ));
    }
    let Some((holder, _, _)) = ledger.holder()? else {
        errln!("nothing holds {}: no run to stop", ledger.shown());
        return Ok(Done::Ok);
    };
    let me = crate::ledger::lock::Holder::current();
    let by = format!("{}@{} pid {}", me.user, me.host, me.pid);
    let mode = if args.now {
        StopMode::Abort
    } else {
        StopMode::Drain
    };
    ledger.ask_stop(mode, &by)?;
    errln!(
        "asked the run of process {} on {} to {}; it sees it within a second",
        holder.pid,
        holder.host,
        if args.now {
            "stop now (steps in flight are cancelled and run again on resume)"
        } else {
            "drain (no new steps; those in flight finish)"
        }
    );
    Ok(Done::Ok)
}
