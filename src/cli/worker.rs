//! `drover worker`: runs the steps a coordinator (`drover run --workers`) hands out through a
//! PostgreSQL ledger, until Ctrl-C (then it finishes the steps in hand). docs/running.md.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{Done, Failure};
use crate::ledger::postgres::{Address, PostgresLedger, is_url};

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// The run's ledger, as its coordinator was given it: postgres://user@host:port/db?ledger=<name>
    /// (the password in PGPASSWORD).
    #[arg(long, short, visible_alias = "ledger")]
    state: String,
    /// Steps this worker runs at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    slots: u32,
    /// How long a claimed step stays this worker's without a heartbeat (they come three times
    /// as often). When a worker dies, its steps run again elsewhere this long after its last
    /// heartbeat.
    #[arg(long, default_value = "30s", value_parser = crate::limits::duration_arg(Duration::from_secs(3600)))]
    lease: Duration,
    /// Where steps stage what they fetch [default: <ledger name>.staging here]. Steps that read
    /// a fetch's files may run on another worker: give every worker of a run the same path (a
    /// shared mount across machines).
    #[arg(long)]
    staging: Option<PathBuf>,
}

pub fn run(args: WorkerArgs) -> Result<Done, Failure> {
    if !is_url(&args.state) {
        return Err(super::refuse(
            std::path::Path::new(&args.state),
            "--state",
            "a worker takes its steps from a PostgreSQL ledger".into(),
            "give the coordinator's --state postgres://user@host:port/db?ledger=<name>",
        ));
    }
    if args.lease < Duration::from_secs(1) {
        return Err(super::refuse(
            std::path::Path::new(&args.state),
            "--lease",
            format!("{} is under a second", crate::limits::human(args.lease)),
            "give a lease of a second or more (30s by default)",
        ));
    }
    // What the worker has to say as it goes (a fenced result, a lost connection): on stderr.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
    let at = Address::parse(&args.state)?;
    // Refused at once when there is no such ledger, rather than waiting for work forever.
    PostgresLedger::open(&at)?;
    let opts = crate::workers::WorkerOptions {
        slots: args.slots as usize,
        lease: args.lease,
        // Absolute: a fetch records where its files are, and a step reading them checks there.
        staging: std::path::absolute(args.staging.unwrap_or_else(|| at.staging()))
            .map_err(|e| Failure::Internal(anyhow::Error::new(e).context("the staging path")))?,
    };
    let runtime = super::shared::runtime()?;
    let worked = runtime.block_on(async {
        let stop = tokio_util::sync::CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            on_signal.cancel();
        });
        errln!(
            "worker {}: taking steps of {} ({} at once, lease {}); Ctrl-C stops after the steps in hand",
            crate::workers::worker_name(),
            at.shown(),
            opts.slots,
            crate::limits::human(opts.lease)
        );
        crate::workers::work(&at, &opts, &crate::steps::Registry::builtin(), stop).await
    })?;
    errln!(
        "worker {}: {} steps done, {} failed, {} results fenced (no longer this worker's), \
         {} fetches run again (their files were not here)",
        crate::workers::worker_name(),
        worked.done,
        worked.failed,
        worked.fenced,
        worked.refetched
    );
    Ok(Done::Ok)
}
