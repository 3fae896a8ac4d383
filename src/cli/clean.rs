//! `drover clean`: frees the staging area of fetched backup data that no unfinished step needs.
//! Removes only directories the ledger records as fetched by this run, inside its staging area
//! (see `crate::staging`); takes the ledger lock, so it never races a live run, and is recorded
//! in the audit trail.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{Done, Failure};
use crate::ledger::Store;
use crate::ledger::lock::Holder;
use crate::staging;

#[derive(Args, Debug)]
pub struct CleanArgs {
    /// The run's ledger; its staging area is `<ledger file>.staging`, or `<ledger name>.staging`
    /// in the current directory for a PostgreSQL ledger.
    #[arg(long, short)]
    state: PathBuf,
    /// Say what would be removed, and how much; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run, also print each directory that would be removed (step, path).
    #[arg(long, requires = "dry_run")]
    list: bool,
}

pub fn run(args: CleanArgs) -> Result<Done, Failure> {
    let mut ledger = crate::ledger::open(&args.state)?;
    let me = Holder::current();
    ledger.acquire(&me)?;
    let result = clean(ledger.as_mut(), &args, &me);
    ledger.release()?;
    result
}

fn clean(ledger: &mut dyn Store, args: &CleanArgs, me: &Holder) -> Result<Done, Failure> {
    let stored = ledger.load()?;
    let root = ledger.staging();
    let found = staging::cleanable(&stored.plan, &stored.steps, &root);
    if args.dry_run {
        if args.list {
            for r in &found.remove {
                outln!("{}\t{}", r.step, r.dir.display());
            }
        }
        errln!(
            "would remove {} fetched snapshots ({}) from {}; {} still needed by unfinished steps{}",
            found.remove.len(),
            crate::util::size_text(staging::size(&found.remove)),
            root.display(),
            found.still_needed,
            if args.list || found.remove.is_empty() {
                ""
            } else {
                " (--list names them)"
            }
        );
        return Ok(Done::Ok);
    }
    let argv = super::shared::argv();
    ledger.record_session(
        crate::ledger::SessionMode::Clean,
        &argv,
        me,
        &stored.info.plan_hash,
    )?;
    let freed =
        staging::remove(&found.remove).with_context(|| format!("cleaning {}", root.display()))?;
    errln!(
        "removed {} fetched snapshots ({}) from {}; kept {} still needed by unfinished steps",
        found.remove.len(),
        crate::util::size_text(freed),
        root.display(),
        found.still_needed
    );
    Ok(Done::Ok)
}
