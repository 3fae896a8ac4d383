//! `drover serve`: a run's ledger over HTTP (docs/serve.md). Read-only: safe beside a live run,
//! after it, and restarted at will.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{Done, Failure};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The run's ledger (the --state of `drover run`).
    #[arg(long, short)]
    state: PathBuf,
    /// Where to listen. Anything but a loopback address exposes every site's state and errors
    /// to the network, and is warned about. With DROVER_SERVE_TOKEN set, every endpoint wants
    /// `Authorization: Bearer <token>`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

pub fn run(args: ServeArgs) -> Result<Done, Failure> {
    // Refused at once, not on the first request: a wrong path is the usual mistake.
    crate::ledger::open(&args.state)?;
    let token = std::env::var(crate::serve::TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty());
    if !args.listen.ip().is_loopback() {
        errln!(
            "warning: listening on {}: anyone who can reach it sees every site's state and \
             errors{}",
            args.listen,
            if token.is_some() {
                ""
            } else {
                "; set DROVER_SERVE_TOKEN to require a token"
            }
        );
    }
    let runtime = super::shared::runtime()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let at = listener.local_addr().context("the address listened on")?;
        // The first read (the plan decoded, the time left simulated: most of a second for a
        // large run) is made before anyone asks, so no client's first answer waits for it.
        let reader = std::sync::Arc::new(crate::serve::Reader::new(args.state.clone()));
        if let Err(e) = reader.current().await {
            errln!("warning: cannot read the ledger yet ({e}); every answer says why until it can");
        }
        errln!(
            "serving {} on http://{at}/ (metrics at /metrics); Ctrl-C stops",
            args.state.display()
        );
        let router = crate::serve::router(reader, token);
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        crate::serve::serve(listener, router, stop)
            .await
            .context("serving")?;
        Ok::<_, Failure>(Done::Ok)
    })
}
