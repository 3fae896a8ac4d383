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
//!   ledger's holder is this coordinator, and so is every ledger write. The coordinator renews
//!   its hold (database time) three times a lease, and stops itself when the hold was taken or
//!   not renewed for two thirds of a lease: before a standby can take the run.
//! - **Takeover.** A coordinator that resumes a run adopts what the previous one queued: a step
//!   whose work is done is not run again, and one still running on a live worker is waited for.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::backup::check::FETCH_KIND;
use crate::ledger::LedgerError;
use crate::ledger::postgres::Address;
use crate::plan::{Plan, StepIdx};
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
    claimed_at BIGINT,
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

/// How often the coordinator looks for results, and an idle worker for work, when no
/// notification woke it first (a notification is lost while its connection is down, and never
/// passes PgBouncer's transaction pooling: polling is the fallback).
const POLL: Duration = Duration::from_millis(100);

/// How often the coordinator gives up steps whose worker's lease expired.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// Channels of the notifications that wake the other side at once (payload: the ledger's name):
/// work was queued (workers listen), results were reported (the coordinator listens).
const QUEUED: &str = "drover_queued";
const REPORTED: &str = "drover_reported";

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
    /// The fetches among its inputs, to run again on a worker that does not have their files.
    #[serde(default)]
    refetch: Vec<Sent>,
}

/// A step's params as they travel in the queue.
fn owned_pairs(params: &crate::plan::Params) -> Vec<(String, String)> {
    params
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

impl Sent {
    /// The context a step runs with on this worker.
    fn into_context(self, staging: &Path, cancel: CancellationToken) -> StepContext {
        StepContext {
            staging: staging.join(crate::schedule::safe_relative_path(&self.step_id)),
            step_id: self.step_id,
            site: self.site,
            product: self.product,
            params: crate::plan::Params::from_pairs(
                self.params.into_iter().map(|(k, v)| (k.into(), v.into())),
            ),
            upstream: self.upstream,
            idempotency_key: self.idempotency_key,
            attempt: self.attempt,
            estimate: Duration::from_millis(self.estimate_ms),
            cancel,
        }
    }
}

fn pg(at: &Address) -> impl Fn(tokio_postgres::Error) -> LedgerError + '_ {
    move |source| LedgerError::Config {
        state: at.shown().to_owned(),
        reason: format!("the work queue: {source}"),
    }
}

/// Connects with `tokio-postgres`, the connection driven on this runtime.
async fn connect(at: &Address) -> Result<tokio_postgres::Client, LedgerError> {
    let (client, connection) = at.async_config().connect(at.tls()).await.map_err(pg(at))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "the work queue's connection ended");
        }
    });
    Ok(client)
}

/// Wakes its owner when a notification for this ledger arrives on a channel. Held for as long
/// as it should listen (the connection closes with it).
struct Wakeups {
    _client: tokio_postgres::Client,
    wake: Arc<tokio::sync::Notify>,
}

impl Wakeups {
    /// Listens on `channel` on a connection of its own. `None` when that cannot start: polling
    /// alone still finds everything, only later.
    async fn listen(at: &Address, channel: &str) -> Option<Wakeups> {
        use futures::StreamExt;
        let (client, mut connection) = match at.async_config().connect(at.tls()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for notifications; polling instead");
                return None;
            }
        };
        let wake = Arc::new(tokio::sync::Notify::new());
        let woken = Arc::clone(&wake);
        let ledger = at.ledger.clone();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) if n.payload() == ledger => {
                        woken.notify_one();
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "notifications stopped; polling instead");
                        break;
                    }
                }
            }
        });
        if let Err(e) = client.batch_execute(&format!("LISTEN {channel}")).await {
            tracing::warn!(error = %e, "cannot listen for notifications; polling instead");
            return None;
        }
        Some(Wakeups {
            _client: client,
            wake,
        })
    }
}

/// Until a notification or the polling interval, whichever comes first.
async fn woken_or_polled(wakeups: Option<&Wakeups>) {
    match wakeups {
        Some(w) => {
            let _ = tokio::time::timeout(POLL, w.wake.notified()).await;
        }
        None => tokio::time::sleep(POLL).await,
    }
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
    /// Steps to queue, written in batches (one statement, one commit for every step that
    /// became ready meanwhile: a commit per step bounded a run to ~300 steps/s with fsync on).
    to_queue: tokio::sync::mpsc::UnboundedSender<ToQueue>,
    /// Cancelled when this coordinator lost its hold on the ledger, or could not renew it in
    /// time; why, in `deposed_why`.
    deposed: CancellationToken,
    deposed_why: Mutex<String>,
    /// The plan, and its fetch steps by ID: a worker is told how to fetch a step's inputs
    /// again when their files are not on its machine.
    plan: Arc<Plan>,
    fetches: HashMap<String, StepIdx>,
    run_id: String,
}

/// A step to queue, and where to say whether it was queued (`false`: its work exists already,
/// done or running, or this coordinator no longer holds the ledger).
struct ToQueue {
    step: String,
    attempt: i32,
    kind: String,
    ctx: String,
    reply: oneshot::Sender<Result<bool, String>>,
}

impl Dispatcher {
    /// Connects and starts looking for results (until the runtime ends).
    /// Renews this coordinator's hold every third of `lease`, and deposes it (see
    /// [`Dispatcher::deposed`]) when the hold was taken, or not renewed for two thirds of it.
    pub async fn start(
        at: &Address,
        holder: &crate::ledger::lock::Holder,
        lease: Duration,
        plan: Arc<Plan>,
        run_id: &str,
    ) -> Result<Arc<Dispatcher>, LedgerError> {
        let client = connect(at).await?;
        let (to_queue, mut batches) = tokio::sync::mpsc::unbounded_channel::<ToQueue>();
        let me = Arc::new(Dispatcher {
            client,
            at: at.clone(),
            holder: serde_json::to_string(holder).expect("holder serializes"),
            waiting: Mutex::default(),
            to_queue,
            deposed: CancellationToken::new(),
            deposed_why: Mutex::default(),
            fetches: plan
                .steps
                .iter()
                .enumerate()
                .filter(|(_, s)| plan.kind(s) == FETCH_KIND)
                .map(|(i, s)| (s.id.clone(), i as StepIdx))
                .collect(),
            plan,
            run_id: run_id.to_owned(),
        });
        let renewer = Arc::clone(&me);
        tokio::spawn(async move { renewer.keep_hold(lease).await });
        let queuer = Arc::clone(&me);
        tokio::spawn(async move {
            while let Some(first) = batches.recv().await {
                let mut batch = vec![first];
                while batch.len() < 5000 {
                    match batches.try_recv() {
                        Ok(q) => batch.push(q),
                        Err(_) => break,
                    }
                }
                queuer.queue(batch).await;
            }
        });
        let poller = Arc::clone(&me);
        let wakeups = Wakeups::listen(at, REPORTED).await;
        tokio::spawn(async move {
            let mut expired_at = tokio::time::Instant::now();
            loop {
                woken_or_polled(wakeups.as_ref()).await;
                let expire = expired_at.elapsed() >= EXPIRE_EVERY;
                if expire {
                    expired_at = tokio::time::Instant::now();
                }
                if let Err(e) = poller.collect(expire).await {
                    tracing::warn!(error = %e, "cannot read the work queue; trying again");
                }
            }
        });
        Ok(me)
    }

    /// Cancelled when this coordinator must stop: another holds the run now, or soon may.
    pub fn deposed(&self) -> CancellationToken {
        self.deposed.clone()
    }

    /// Whether the database still names this coordinator the run's holder (`None`: it cannot
    /// say now).
    pub async fn still_holds(&self) -> Option<bool> {
        let client = connect(&self.at).await.ok()?;
        let row = client
            .query_opt(
                "SELECT holder = $2 FROM drover_holders WHERE ledger = $1",
                &[&self.at.ledger, &self.holder],
            )
            .await
            .ok()?;
        Some(row.is_some_and(|r| r.get::<_, bool>(0)))
    }

    /// Why this coordinator was deposed.
    pub fn deposed_why(&self) -> String {
        self.deposed_why
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Renews the hold until it is lost, on a connection of its own (never queued behind the
    /// work queue's statements). A coordinator stops before its hold can lapse: a standby may
    /// take the run as soon as it has, and two coordinators must never both queue.
    async fn keep_hold(&self, lease: Duration) {
        let secs = lease.as_secs_f64();
        let mut renewed_at = tokio::time::Instant::now();
        let mut client = None;
        let why = loop {
            tokio::time::sleep(lease / 3).await;
            let deadline = renewed_at + lease * 2 / 3;
            if client.is_none() {
                client = tokio::time::timeout_at(deadline, connect(&self.at))
                    .await
                    .ok()
                    .and_then(Result::ok);
            }
            // `None`: the deadline passed before the database answered.
            let renewed: Option<Result<u64, ()>> = match &client {
                Some(c) => {
                    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                        [&self.at.ledger, &self.holder, &secs];
                    let renewal = c.execute(
                        "UPDATE drover_holders SET lease_until = now() + make_interval(secs => $3) \
                         WHERE ledger = $1 AND holder = $2",
                        &params,
                    );
                    match tokio::time::timeout_at(deadline, renewal).await {
                        Ok(done) => Some(done.map_err(drop)),
                        Err(_) => None,
                    }
                }
                None => Some(Err(())),
            };
            match renewed {
                Some(Ok(0)) => break "another process took the run over".to_owned(),
                Some(Ok(_)) => renewed_at = tokio::time::Instant::now(),
                // Connect again, and try until the deadline.
                Some(Err(())) if tokio::time::Instant::now() < deadline => client = None,
                _ => {
                    break format!(
                        "its hold could not be renewed for {:.1} s of its {} lease",
                        renewed_at.elapsed().as_secs_f64(),
                        crate::limits::human(lease)
                    );
                }
            }
        };
        *self.deposed_why.lock().unwrap_or_else(|p| p.into_inner()) = why;
        self.deposed.cancel();
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
            params: owned_pairs(&ctx.params),
            upstream: ctx.upstream.clone(),
            idempotency_key: ctx.idempotency_key.clone(),
            attempt: ctx.attempt,
            estimate_ms: crate::limits::millis(ctx.estimate),
            refetch: ctx
                .upstream
                .keys()
                .filter_map(|id| self.fetches.get(id))
                .map(|&i| self.fetch_of(i))
                .collect(),
        };
        let text = serde_json::to_string(&sent).expect("a step's context serializes");
        let attempt = ctx.attempt as i32;
        let (reply, queued) = oneshot::channel();
        let asked = ToQueue {
            step: ctx.step_id.clone(),
            attempt,
            kind: kind.to_owned(),
            ctx: text,
            reply,
        };
        if self.to_queue.send(asked).is_err() {
            return Err(StepError::Retryable(
                "the work queue's writer stopped".into(),
            ));
        }
        let queued = queued
            .await
            .map_err(|_| StepError::Retryable("the work queue's writer stopped".into()))?
            .map_err(|e| StepError::Retryable(format!("the work queue: {e}")))?;
        let awaited = if !queued {
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
                // The worker sees it at its next heartbeat and stops the step; only while this
                // coordinator holds the run (a successor adopts the step instead).
                let _ = self
                    .client
                    .execute(
                        "UPDATE drover_work SET state = 'cancelled' WHERE ledger = $1 AND \
                         step = $2 AND attempt = $3 AND state IN ('queued', 'running') AND \
                         EXISTS (SELECT 1 FROM drover_holders WHERE ledger = $1 AND holder = $4)",
                        &[&self.at.ledger, &ctx.step_id, &awaited, &self.holder],
                    )
                    .await;
                Err(StepError::Retryable("cancelled".into()))
            }
        }
    }

    /// How to run fetch step `i` again, on a worker that lacks its files.
    fn fetch_of(&self, i: StepIdx) -> Sent {
        let step = &self.plan.steps[i as usize];
        let (site, product) = crate::schedule::owner_names(&self.plan, step);
        Sent {
            step_id: step.id.clone(),
            site,
            product,
            params: owned_pairs(&step.params),
            upstream: Default::default(),
            idempotency_key: format!("{}/{}", self.run_id, step.id),
            attempt: 1,
            estimate_ms: crate::limits::millis(step.estimate),
            refetch: Vec::new(),
        }
    }

    /// Queues a batch in one statement, if this coordinator still holds the ledger, and says
    /// to each step whether it was queued.
    async fn queue(&self, batch: Vec<ToQueue>) {
        let steps: Vec<&str> = batch.iter().map(|q| q.step.as_str()).collect();
        let attempts: Vec<i32> = batch.iter().map(|q| q.attempt).collect();
        let kinds: Vec<&str> = batch.iter().map(|q| q.kind.as_str()).collect();
        let ctxs: Vec<&str> = batch.iter().map(|q| q.ctx.as_str()).collect();
        let queued = self
            .client
            .query(
                "WITH q AS (INSERT INTO drover_work (ledger, step, attempt, kind, ctx, state) \
                 SELECT $1, s, a, k, c, 'queued' \
                 FROM unnest($2::text[], $3::int[], $4::text[], $5::text[]) AS t(s, a, k, c) \
                 WHERE EXISTS (SELECT 1 FROM drover_holders WHERE ledger = $1 AND holder = $6) \
                 ON CONFLICT (ledger, step) DO UPDATE SET attempt = EXCLUDED.attempt, \
                 kind = EXCLUDED.kind, ctx = EXCLUDED.ctx, state = 'queued', worker = NULL, \
                 lease_until = NULL, output = NULL, error = NULL, failure = NULL, \
                 queued_at = clock_timestamp() \
                 WHERE drover_work.state NOT IN ('done', 'running') RETURNING step), \
                 n AS (SELECT pg_notify('drover_queued', $1) FROM (SELECT 1 FROM q LIMIT 1) o) \
                 SELECT step FROM q LEFT JOIN n ON true",
                &[
                    &self.at.ledger,
                    &steps,
                    &attempts,
                    &kinds,
                    &ctxs,
                    &self.holder,
                ],
            )
            .await;
        match queued {
            Ok(rows) => {
                let queued: std::collections::HashSet<&str> =
                    rows.iter().map(|r| r.get::<_, &str>(0)).collect();
                for q in batch {
                    let fresh = queued.contains(q.step.as_str());
                    let _ = q.reply.send(Ok(fresh));
                }
            }
            Err(e) => {
                for q in batch {
                    let _ = q.reply.send(Err(e.to_string()));
                }
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
                 state = 'queued' AND EXISTS (SELECT 1 FROM drover_holders \
                 WHERE ledger = $1 AND holder = $2) RETURNING step, attempt",
                &[&self.at.ledger, &self.holder],
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
    async fn collect(&self, expire: bool) -> Result<(), tokio_postgres::Error> {
        let steps: Vec<String> = {
            let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            if waiting.is_empty() {
                return Ok(());
            }
            waiting.keys().cloned().collect()
        };
        if expire {
            self.expire().await?;
        }
        self.collect_results(steps).await
    }

    /// Gives up the steps whose worker's lease expired, by the database's clock.
    async fn expire(&self) -> Result<(), tokio_postgres::Error> {
        self.client
            .execute(
                "WITH e AS (UPDATE drover_work SET state = 'expired', failure = 'retryable', \
                 error = 'worker ' || worker || ' stopped heartbeating: its lease expired at ' \
                 || lease_until || '; the step runs again' \
                 WHERE ledger = $1 AND state = 'running' AND lease_until < now() \
                 RETURNING step, attempt, worker, claimed_at) \
                 INSERT INTO drover_attempts (ledger, step, attempt, worker, claimed_at) \
                 SELECT $1, step, attempt, worker, COALESCE(claimed_at, 0) FROM e \
                 ON CONFLICT DO NOTHING",
                &[&self.at.ledger],
            )
            .await
            .map(drop)
    }

    /// Hands every finished result of `steps` to the step waiting for it.
    async fn collect_results(&self, steps: Vec<String>) -> Result<(), tokio_postgres::Error> {
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
    /// Fetches run again here because their files were not on this machine.
    pub refetched: usize,
}

/// The fetches this worker ran again, by step ID: one at a time per fetch, and once each while
/// its files stay here. Steps of many sites read the same shard snapshot; fetched again for each
/// of them at once, the copies would write the same files under each other.
#[derive(Default)]
struct Refetched(Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<StepOutput>>>>>);

impl Refetched {
    fn slot(&self, step_id: &str) -> Arc<tokio::sync::Mutex<Option<StepOutput>>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(step_id.to_owned()).or_default().clone()
    }
}

/// The directory a fetch's output names, if it is on this machine.
fn dir_here(output: &StepOutput) -> Option<&Path> {
    output["dir"]
        .as_str()
        .map(Path::new)
        .filter(|dir| dir.is_dir())
}

/// The step's context with every fetched input on this machine. A fetch whose files are not
/// here (it ran on another worker whose staging is not shared with this one, or on one that
/// died and took its staging with it) runs again here first, verified as any fetch is; steps
/// that need the same fetch wait for one another's.
async fn inputs_here(
    mut ctx: StepContext,
    refetch: Vec<Sent>,
    fetch: Option<Arc<dyn StepKind>>,
    staging: &Path,
    refetched: &Refetched,
) -> Result<(StepContext, usize), StepError> {
    let mut again = 0;
    for sent in refetch {
        if ctx.upstream.get(&sent.step_id).and_then(dir_here).is_some() {
            continue;
        }
        let Some(fetch) = &fetch else {
            return Err(StepError::Permanent(
                "this worker has no fetch kind to fetch its inputs again".into(),
            ));
        };
        let id = sent.step_id.clone();
        let slot = refetched.slot(&id);
        let mut done = slot.lock().await;
        if let Some(output) = done.as_ref().filter(|o| dir_here(o).is_some()) {
            ctx.upstream.insert(id, output.clone());
            continue;
        }
        tracing::warn!(
            step = %ctx.step_id,
            fetch = %sent.step_id,
            "the fetched files this step reads are not on this machine (fetched by a worker \
             whose staging is not shared, or one that is gone): fetching them again here"
        );
        let output = fetch
            .run(sent.into_context(staging, ctx.cancel.clone()))
            .await
            .map_err(|e| {
                let again = |m: String| format!("fetching {id} again on this worker: {m}");
                match e {
                    StepError::Retryable(m) => StepError::Retryable(again(m)),
                    StepError::Permanent(m) => StepError::Permanent(again(m)),
                    StepError::Quarantine(m) => StepError::Quarantine(again(m)),
                }
            })?;
        *done = Some(output.clone());
        ctx.upstream.insert(id, output);
        again += 1;
    }
    Ok((ctx, again))
}

/// A step that failed while the fetched files it read went away under it (the worker that
/// fetched them died with its staging) did not fail on its own account: it runs again, and
/// the next attempt fetches its inputs where it runs.
fn unless_inputs_went(
    result: Result<StepOutput, StepError>,
    read: &[String],
) -> Result<StepOutput, StepError> {
    match result {
        Err(StepError::Permanent(m) | StepError::Quarantine(m))
            if read.iter().any(|dir| !Path::new(dir).is_dir()) =>
        {
            Err(StepError::Retryable(format!(
                "{m} (the fetched files it read went away while it ran; it runs again and \
                 fetches them where it runs)"
            )))
        }
        other => other,
    }
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
    let wakeups = Wakeups::listen(at, QUEUED).await;
    let me = worker_name();
    let lease_s = opts.lease.as_secs_f64();
    // Each step in hand: its attempt, how to cancel it, when it was claimed (ms).
    let mut running: HashMap<String, (i32, CancellationToken, i64)> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut worked = Worked::default();
    let refetched = Arc::new(Refetched::default());
    let mut heartbeat = tokio::time::interval(opts.lease / 3);
    loop {
        let free = opts.slots.saturating_sub(running.len());
        if free > 0 && !stop.is_cancelled() {
            // The attempt's record for the audit trail is written once, when it ends (or, for a
            // worker that died, when its lease is given up): a row write per step fewer.
            let claimed_at = crate::ledger::now_ms();
            let rows = client
                .query(
                    "WITH c AS (SELECT step FROM drover_work WHERE ledger = $1 AND \
                     state = 'queued' ORDER BY queued_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
                     UPDATE drover_work w SET state = 'running', worker = $3, \
                     lease_until = now() + make_interval(secs => $4), claimed_at = $5 FROM c \
                     WHERE w.ledger = $1 AND w.step = c.step \
                     RETURNING w.step, w.attempt, w.kind, w.ctx",
                    &[&at.ledger, &(free as i64), &me, &lease_s, &claimed_at],
                )
                .await
                .map_err(pg(at))?;
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
                let mut sent = sent;
                let refetch = std::mem::take(&mut sent.refetch);
                let ctx = sent.into_context(&opts.staging, cancel.clone());
                let kind = kinds.get(kind);
                let fetch = kinds.get(FETCH_KIND);
                let staging = opts.staging.clone();
                let refetched = refetched.clone();
                running.insert(step.clone(), (attempt, cancel, claimed_at));
                tasks.spawn(async move {
                    let (result, again) = match kind {
                        Some(k) => {
                            match inputs_here(ctx, refetch, fetch, &staging, &refetched).await {
                                Ok((ctx, again)) => {
                                    let read: Vec<String> = ctx
                                        .upstream
                                        .values()
                                        .filter_map(|o| o["dir"].as_str().map(str::to_owned))
                                        .collect();
                                    (unless_inputs_went(k.run(ctx).await, &read), again)
                                }
                                Err(e) => (Err(e), 0),
                            }
                        }
                        None => (
                            Err(StepError::Permanent(
                                "this worker has no such step kind".into(),
                            )),
                            0,
                        ),
                    };
                    (step, attempt, result, again)
                });
            }
        }
        if stop.is_cancelled() && running.is_empty() {
            return Ok(worked);
        }
        tokio::select! {
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                // This result and every other one ready now, reported in one statement.
                let mut results = Vec::new();
                let mut next = Some(joined);
                while let Some(joined) = next {
                    if let Ok((step, attempt, result, again)) = joined {
                        worked.refetched += again;
                        let claimed = running.remove(&step).map_or(0, |(_, _, at)| at);
                        results.push((step, attempt, claimed, result));
                    }
                    next = tasks.try_join_next();
                }
                report(&client, at, &me, results, &mut worked).await?;
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
                for (step, (_, cancel, _)) in &running {
                    if !kept.contains(step) {
                        // Cancelled by the coordinator, or given up after the lease expired.
                        cancel.cancel();
                    }
                }
            }
            // A slot is free and the queue had no more for it: wait for more work (a worker
            // that waited for its steps instead ran with free slots while work was queued).
            () = woken_or_polled(wakeups.as_ref()), if running.len() < opts.slots => {}
        }
    }
}

/// Reports finished steps in one statement, each counted only while it is still this worker's
/// claim of that attempt (fenced otherwise), and records how each attempt ended.
async fn report(
    client: &tokio_postgres::Client,
    at: &Address,
    me: &str,
    results: Vec<(String, i32, i64, Result<StepOutput, StepError>)>,
    worked: &mut Worked,
) -> Result<(), LedgerError> {
    let mut steps = Vec::new();
    let mut attempts = Vec::new();
    let mut states = Vec::new();
    let mut outputs: Vec<Option<String>> = Vec::new();
    let mut errors: Vec<Option<String>> = Vec::new();
    let mut failures: Vec<Option<&str>> = Vec::new();
    let mut claimed: Vec<i64> = Vec::new();
    for (step, attempt, claimed_at, result) in &results {
        steps.push(step.as_str());
        attempts.push(*attempt);
        claimed.push(*claimed_at);
        match result {
            Ok(o) => {
                states.push("done");
                outputs.push(Some(o.to_string()));
                errors.push(None);
                failures.push(None);
            }
            Err(e) => {
                states.push("failed");
                outputs.push(None);
                let (message, failure) = match e {
                    StepError::Retryable(m) => (m, "retryable"),
                    StepError::Permanent(m) => (m, "permanent"),
                    // The ledger records a quarantine with its prefix; the coordinator adds it.
                    StepError::Quarantine(m) => (m, "quarantine"),
                };
                errors.push(Some(message.clone()));
                failures.push(Some(failure));
            }
        }
    }
    let counted: std::collections::HashSet<String> = client
        .query(
            "WITH r AS (SELECT * FROM unnest($2::text[], $3::int[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $10::bigint[]) \
             AS r(step, attempt, state, output, error, failure, claimed_at)), \
             u AS (UPDATE drover_work w SET state = r.state, output = r.output, \
             error = r.error, failure = r.failure, lease_until = NULL FROM r \
             WHERE w.ledger = $1 AND w.step = r.step AND w.attempt = r.attempt \
             AND w.state = 'running' AND w.worker = $8 RETURNING w.step), \
             a AS (INSERT INTO drover_attempts (ledger, step, attempt, worker, claimed_at, \
             ended_at, outcome) SELECT $1, r.step, r.attempt, $8, r.claimed_at, $9, CASE WHEN \
             EXISTS (SELECT 1 FROM u WHERE u.step = r.step) THEN r.state ELSE 'fenced' END \
             FROM r ON CONFLICT (ledger, step, attempt, worker) DO UPDATE \
             SET ended_at = EXCLUDED.ended_at, outcome = EXCLUDED.outcome), \
             n AS (SELECT pg_notify('drover_reported', $1) FROM (SELECT 1 FROM u LIMIT 1) o) \
             SELECT step FROM u LEFT JOIN n ON true",
            &[
                &at.ledger,
                &steps,
                &attempts,
                &states,
                &outputs,
                &errors,
                &failures,
                &me,
                &crate::ledger::now_ms(),
                &claimed,
            ],
        )
        .await
        .map_err(pg(at))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (i, (step, attempt, _, _)) in results.iter().enumerate() {
        if !counted.contains(step) {
            worked.fenced += 1;
            tracing::warn!(
                step,
                attempt,
                "fenced: the step is no longer this worker's (its lease expired or it was \
                 cancelled); its result is dropped"
            );
        } else if states[i] == "done" {
            worked.done += 1;
        } else {
            worked.failed += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_that_failed_because_its_fetched_files_went_away_runs_again() {
        let here = tempfile::tempdir().unwrap();
        let gone = here.path().join("gone");
        let failed = || {
            Err(StepError::Permanent(
                "snapshot shard.sqlite: no such file".into(),
            ))
        };
        let read_gone = [
            here.path().display().to_string(),
            gone.display().to_string(),
        ];
        match unless_inputs_went(failed(), &read_gone) {
            Err(StepError::Retryable(m)) => assert!(m.contains("went away"), "{m}"),
            other => panic!("{other:?}"),
        }
        // Its files are all here: the failure is the step's own.
        let read_here = [here.path().display().to_string()];
        assert!(matches!(
            unless_inputs_went(failed(), &read_here),
            Err(StepError::Permanent(_))
        ));
    }
}
