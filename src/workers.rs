//! Steps run by `drover worker` processes, on any number of machines, through a PostgreSQL
//! ledger (docs/running.md, "Many workers"). The coordinator (`drover run --workers`) keeps the
//! one scheduler every run has (policy order, pool budgets, dependencies, retries, canary,
//! failure budget); instead of running a step it queues it in `drover_work` ([`Dispatcher`]),
//! and a worker claims it with `FOR UPDATE SKIP LOCKED`, runs it with the ordinary step kinds,
//! keeps a lease on it by heartbeat and reports the result ([`work`]).
//!
//! - **Fencing.** The attempt number is the fencing token: a result counts only
//!   `WHERE attempt = $a AND state = 'running' AND worker = $me`. A worker whose lease was taken
//!   (paused, partitioned) changes nothing, and says it was fenced.
//! - **Rescue.** A step whose worker stopped heartbeating is given up when its lease expires, by
//!   the database's clock (`now()`), never for running long; the coordinator's retry runs it
//!   again, elsewhere.
//! - **A deposed coordinator** cannot queue anything: a dispatch is written only while the
//!   ledger's holder is this coordinator.
//! - **Takeover.** A coordinator that resumes a run adopts what the previous one queued: a step
//!   whose work is done is not run again, and one still running on a live worker is waited for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::ledger::LedgerError;
use crate::ledger::postgres::Address;
use crate::steps::{Registry, StepContext, StepError, StepKind, StepOutput};

/// The work queue's table; created with the ledger's schema (`ledger::postgres`).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS drover_work (
    ledger TEXT NOT NULL,
    step TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    kind TEXT NOT NULL,
    ctx TEXT NOT NULL,
    state TEXT NOT NULL,
    worker TEXT,
    lease_until TIMESTAMPTZ,
    output TEXT,
    error TEXT,
    failure TEXT,
    queued_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (ledger, step)
);
CREATE INDEX IF NOT EXISTS drover_work_queued ON drover_work (ledger, queued_at)
    WHERE state = 'queued';
CREATE TABLE IF NOT EXISTS drover_attempts (
    ledger TEXT NOT NULL,
    step TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker TEXT NOT NULL,
    claimed_at BIGINT NOT NULL,
    ended_at BIGINT,
    outcome TEXT,
    PRIMARY KEY (ledger, step, attempt, worker)
);
CREATE TABLE IF NOT EXISTS drover_control (
    ledger TEXT PRIMARY KEY,
    mode TEXT NOT NULL,
    asked_at BIGINT NOT NULL,
    asked_by TEXT NOT NULL
);
";

/// How often the coordinator looks for results, and an idle worker for work.
const POLL: Duration = Duration::from_millis(50);

/// What a worker needs of a step: its context, without the parts that are the worker's own
/// (cancellation, staging).
#[derive(serde::Serialize, serde::Deserialize)]
struct Sent {
    step_id: String,
    site: Option<String>,
    product: Option<String>,
    params: Vec<(String, String)>,
    upstream: std::collections::BTreeMap<String, serde_json::Value>,
    idempotency_key: String,
    attempt: u32,
    estimate_ms: u64,
}

fn pg(at: &Address) -> impl Fn(tokio_postgres::Error) -> LedgerError + '_ {
    move |source| LedgerError::Config {
        state: at.shown().to_owned(),
        reason: format!("the work queue: {source}"),
    }
}

/// Connects with `tokio-postgres`, the connection driven on this runtime.
async fn connect(at: &Address) -> Result<tokio_postgres::Client, LedgerError> {
    let (client, connection) = at
        .async_config()
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(pg(at))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "the work queue's connection ended");
        }
    });
    Ok(client)
}

/// A step awaiting its result: the attempt it awaits, and where the result goes.
type Waiter = (i32, oneshot::Sender<Result<StepOutput, StepError>>);

/// The coordinator's side: queues steps and hands their results back to the scheduler.
pub struct Dispatcher {
    client: tokio_postgres::Client,
    at: Address,
    /// The ledger's holder as recorded (this coordinator), the fence of every dispatch.
    holder: String,
    /// Steps queued and not reported yet: the attempt awaited, and who waits.
    waiting: Mutex<HashMap<String, Waiter>>,
}

impl Dispatcher {
    /// Connects and starts looking for results (until the runtime ends).
    pub async fn start(
        at: &Address,
        holder: &crate::ledger::lock::Holder,
    ) -> Result<Arc<Dispatcher>, LedgerError> {
        let client = connect(at).await?;
        let me = Arc::new(Dispatcher {
            client,
            at: at.clone(),
            holder: serde_json::to_string(holder).expect("holder serializes"),
            waiting: Mutex::default(),
        });
        let poller = Arc::clone(&me);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(POLL).await;
                if let Err(e) = poller.collect().await {
                    tracing::warn!(error = %e, "cannot read the work queue; trying again");
                }
            }
        });
        Ok(me)
    }

    /// Every kind of `base`, run through the work queue instead of here.
    pub fn registry(self: &Arc<Self>, base: &Registry) -> Registry {
        let mut remote = Registry::default();
        for name in base.names() {
            remote.register(
                name,
                Remote {
                    kind: name.to_owned(),
                    dispatcher: Arc::clone(self),
                },
            );
        }
        remote
    }

    /// Queues the step (or adopts the work a previous coordinator queued for it) and waits for
    /// its result.
    async fn dispatch(&self, kind: &str, ctx: &StepContext) -> Result<StepOutput, StepError> {
        let queue_err =
            |e: tokio_postgres::Error| StepError::Retryable(format!("the work queue: {e}"));
        let sent = Sent {
            step_id: ctx.step_id.clone(),
            site: ctx.site.clone(),
            product: ctx.product.clone(),
            params: (&ctx.params)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            upstream: ctx.upstream.clone(),
            idempotency_key: ctx.idempotency_key.clone(),
            attempt: ctx.attempt,
            estimate_ms: crate::limits::millis(ctx.estimate),
        };
        let text = serde_json::to_string(&sent).expect("a step's context serializes");
        let attempt = ctx.attempt as i32;
        let queued = self
            .client
            .query(
                "INSERT INTO drover_work (ledger, step, attempt, kind, ctx, state) \
                 SELECT $1, $2, $3, $4, $5, 'queued' \
                 WHERE EXISTS (SELECT 1 FROM drover_holders WHERE ledger = $1 AND holder = $6) \
                 ON CONFLICT (ledger, step) DO UPDATE SET attempt = EXCLUDED.attempt, \
                 kind = EXCLUDED.kind, ctx = EXCLUDED.ctx, state = 'queued', worker = NULL, \
                 lease_until = NULL, output = NULL, error = NULL, failure = NULL, \
                 queued_at = clock_timestamp() \
                 WHERE drover_work.state NOT IN ('done', 'running') RETURNING attempt",
                &[
                    &self.at.ledger,
                    &ctx.step_id,
                    &attempt,
                    &kind,
                    &text,
                    &self.holder,
                ],
            )
            .await
            .map_err(queue_err)?;
        let awaited = if queued.is_empty() {
            // Done or running already (queued by a coordinator before this one), or this
            // coordinator no longer holds the ledger.
            let row = self
                .client
                .query_opt(
                    "SELECT w.attempt, EXISTS (SELECT 1 FROM drover_holders h \
                     WHERE h.ledger = $1 AND h.holder = $3) FROM drover_work w \
                     WHERE w.ledger = $1 AND w.step = $2",
                    &[&self.at.ledger, &ctx.step_id, &self.holder],
                )
                .await
                .map_err(queue_err)?;
            match row {
                Some(r) if r.get::<_, bool>(1) => r.get::<_, i32>(0),
                _ => {
                    return Err(StepError::Retryable(format!(
                        "this coordinator no longer holds {}: another took the run over; \
                         nothing was queued",
                        self.at.shown()
                    )));
                }
            }
        } else {
            attempt
        };
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ctx.step_id.clone(), (awaited, tx));
        tokio::select! {
            result = rx => result.unwrap_or_else(|_| Err(StepError::Retryable("the coordinator stopped waiting".into()))),
            () = ctx.cancel.cancelled() => {
                self.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&ctx.step_id);
                // The worker sees it at its next heartbeat and stops the step.
                let _ = self
                    .client
                    .execute(
                        "UPDATE drover_work SET state = 'cancelled' WHERE ledger = $1 AND \
                         step = $2 AND attempt = $3 AND state IN ('queued', 'running')",
                        &[&self.at.ledger, &ctx.step_id, &awaited],
                    )
                    .await;
                Err(StepError::Retryable("cancelled".into()))
            }
        }
    }

    /// Withdraws the steps no worker has taken yet (the run drains: "in flight" is what workers
    /// hold, not what waits in the queue); they stay pending for the next session.
    pub async fn withdraw_queued(&self) {
        let rows = self
            .client
            .query(
                "UPDATE drover_work SET state = 'cancelled' WHERE ledger = $1 AND \
                 state = 'queued' RETURNING step, attempt",
                &[&self.at.ledger],
            )
            .await
            .unwrap_or_default();
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        for row in rows {
            let step: String = row.get(0);
            if waiting
                .get(&step)
                .is_some_and(|(a, _)| *a == row.get::<_, i32>(1))
            {
                let (_, tx) = waiting.remove(&step).expect("present");
                let _ = tx.send(Err(StepError::Retryable(
                    "the run drained before a worker took this step".into(),
                )));
            }
        }
    }

    /// Gives up the steps whose worker's lease expired, and hands every finished result to the
    /// step waiting for it.
    async fn collect(&self) -> Result<(), tokio_postgres::Error> {
        let steps: Vec<String> = {
            let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            if waiting.is_empty() {
                return Ok(());
            }
            waiting.keys().cloned().collect()
        };
        self.client
            .execute(
                "UPDATE drover_work SET state = 'expired', failure = 'retryable', \
                 error = 'worker ' || worker || ' stopped heartbeating: its lease expired at ' \
                 || lease_until || '; the step runs again' \
                 WHERE ledger = $1 AND state = 'running' AND lease_until < now()",
                &[&self.at.ledger],
            )
            .await?;
        let rows = self
            .client
            .query(
                "SELECT step, attempt, state, output, error, failure FROM drover_work \
                 WHERE ledger = $1 AND step = ANY($2) AND state IN ('done', 'failed', 'expired')",
                &[&self.at.ledger, &steps],
            )
            .await?;
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        for row in rows {
            let step: String = row.get(0);
            let attempt: i32 = row.get(1);
            if waiting.get(&step).is_none_or(|(a, _)| *a != attempt) {
                continue;
            }
            let (_, tx) = waiting.remove(&step).expect("present");
            let state: &str = row.get(2);
            let error: Option<String> = row.get(4);
            let error = error.unwrap_or_default();
            let result = match (state, row.get::<_, Option<&str>>(5)) {
                ("done", _) => Ok(row
                    .get::<_, Option<&str>>(3)
                    .and_then(|o| serde_json::from_str(o).ok())
                    .unwrap_or(serde_json::Value::Null)),
                (_, Some("permanent")) => Err(StepError::Permanent(error)),
                (_, Some("quarantine")) => Err(StepError::Quarantine(error)),
                _ => Err(StepError::Retryable(error)),
            };
            let _ = tx.send(result);
        }
        Ok(())
    }
}

/// A step kind that the coordinator hands to the work queue.
struct Remote {
    kind: String,
    dispatcher: Arc<Dispatcher>,
}

#[async_trait]
impl StepKind for Remote {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError> {
        self.dispatcher.dispatch(&self.kind, &ctx).await
    }
}

/// How a worker works.
pub struct WorkerOptions {
    /// Steps run at once.
    pub slots: usize,
    /// How long a claim holds without a heartbeat; heartbeats come three times as often.
    pub lease: Duration,
    /// Where the worker's steps stage what they fetch (shared by the workers that share data).
    pub staging: std::path::PathBuf,
}

/// What a worker did, for its exit line.
#[derive(Debug, Default)]
pub struct Worked {
    pub done: usize,
    pub failed: usize,
    /// Results refused because the step was no longer this worker's (lease taken, cancelled).
    pub fenced: usize,
}

/// A worker's own name in the queue: host and process.
pub fn worker_name() -> String {
    format!("{}:{}", crate::ledger::lock::hostname(), std::process::id())
}

/// Claims, runs and reports steps of the ledger at `at` until `stop`; then finishes what it runs.
pub async fn work(
    at: &Address,
    opts: &WorkerOptions,
    kinds: &Registry,
    stop: CancellationToken,
) -> Result<Worked, LedgerError> {
    let client = Arc::new(connect(at).await?);
    let me = worker_name();
    let lease_s = opts.lease.as_secs_f64();
    let mut running: HashMap<String, (i32, CancellationToken)> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut worked = Worked::default();
    let mut heartbeat = tokio::time::interval(opts.lease / 3);
    loop {
        let free = opts.slots.saturating_sub(running.len());
        let mut claimed = 0;
        if free > 0 && !stop.is_cancelled() {
            let rows = client
                .query(
                    "WITH c AS (SELECT step FROM drover_work WHERE ledger = $1 AND \
                     state = 'queued' ORDER BY queued_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
                     UPDATE drover_work w SET state = 'running', worker = $3, \
                     lease_until = now() + make_interval(secs => $4) FROM c \
                     WHERE w.ledger = $1 AND w.step = c.step \
                     RETURNING w.step, w.attempt, w.kind, w.ctx",
                    &[&at.ledger, &(free as i64), &me, &lease_s],
                )
                .await
                .map_err(pg(at))?;
            claimed = rows.len();
            if claimed > 0 {
                // Who runs which attempt, for the audit trail (`drover audit`).
                let steps: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
                let attempts: Vec<i32> = rows.iter().map(|r| r.get(1)).collect();
                client
                    .execute(
                        "INSERT INTO drover_attempts (ledger, step, attempt, worker, claimed_at) \
                         SELECT $1, s, a, $4, $5 FROM unnest($2::text[], $3::int[]) AS t(s, a) \
                         ON CONFLICT DO NOTHING",
                        &[&at.ledger, &steps, &attempts, &me, &crate::ledger::now_ms()],
                    )
                    .await
                    .map_err(pg(at))?;
            }
            for row in rows {
                let step: String = row.get(0);
                let attempt: i32 = row.get(1);
                let kind: &str = row.get(2);
                let sent: Sent = match serde_json::from_str(row.get(3)) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(step, error = %e, "a queued step's context is unreadable");
                        continue;
                    }
                };
                let cancel = stop.child_token();
                let ctx = StepContext {
                    staging: opts
                        .staging
                        .join(crate::schedule::safe_relative_path(&sent.step_id)),
                    step_id: sent.step_id,
                    site: sent.site,
                    product: sent.product,
                    params: crate::plan::Params::from_pairs(
                        sent.params.into_iter().map(|(k, v)| (k.into(), v.into())),
                    ),
                    upstream: sent.upstream,
                    idempotency_key: sent.idempotency_key,
                    attempt: sent.attempt,
                    estimate: Duration::from_millis(sent.estimate_ms),
                    cancel: cancel.clone(),
                };
                let kind = kinds.get(kind);
                running.insert(step.clone(), (attempt, cancel));
                tasks.spawn(async move {
                    let result = match kind {
                        Some(k) => k.run(ctx).await,
                        None => Err(StepError::Permanent(
                            "this worker has no such step kind".into(),
                        )),
                    };
                    (step, attempt, result)
                });
            }
        }
        if stop.is_cancelled() && running.is_empty() {
            return Ok(worked);
        }
        tokio::select! {
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                let Ok((step, attempt, result)) = joined else { continue };
                running.remove(&step);
                let (state, output, error, failure) = match &result {
                    Ok(o) => ("done", Some(o.to_string()), None, None),
                    Err(e) => ("failed", None, Some(e.to_string()), Some(match e {
                        StepError::Retryable(_) => "retryable",
                        StepError::Permanent(_) => "permanent",
                        StepError::Quarantine(_) => "quarantine",
                    })),
                };
                let error = error.map(|e| match &result {
                    // The ledger records a quarantine with its prefix; the coordinator adds it.
                    Err(StepError::Quarantine(m)) => m.clone(),
                    _ => e,
                });
                let n = client
                    .execute(
                        "UPDATE drover_work SET state = $5, output = $6, error = $7, \
                         failure = $8, lease_until = NULL WHERE ledger = $1 AND step = $2 AND \
                         attempt = $3 AND state = 'running' AND worker = $4",
                        &[&at.ledger, &step, &attempt, &me, &state, &output, &error, &failure],
                    )
                    .await
                    .map_err(pg(at))?;
                let outcome = if n == 0 { "fenced" } else { state };
                client
                    .execute(
                        "UPDATE drover_attempts SET ended_at = $5, outcome = $6 WHERE ledger = $1 \
                         AND step = $2 AND attempt = $3 AND worker = $4",
                        &[&at.ledger, &step, &attempt, &me, &crate::ledger::now_ms(), &outcome],
                    )
                    .await
                    .map_err(pg(at))?;
                if n == 0 {
                    worked.fenced += 1;
                    tracing::warn!(step, attempt, "fenced: the step is no longer this worker's (its lease expired or it was cancelled); its result is dropped");
                } else if state == "done" {
                    worked.done += 1;
                } else {
                    worked.failed += 1;
                }
            }
            _ = heartbeat.tick() => {
                if running.is_empty() {
                    continue;
                }
                let kept: Vec<String> = client
                    .query(
                        "UPDATE drover_work SET lease_until = now() + make_interval(secs => $3) \
                         WHERE ledger = $1 AND worker = $2 AND state = 'running' RETURNING step",
                        &[&at.ledger, &me, &lease_s],
                    )
                    .await
                    .map_err(pg(at))?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                for (step, (_, cancel)) in &running {
                    if !kept.contains(step) {
                        // Cancelled by the coordinator, or given up after the lease expired.
                        cancel.cancel();
                    }
                }
            }
            () = tokio::time::sleep(POLL), if claimed == 0 => {}
        }
    }
}
