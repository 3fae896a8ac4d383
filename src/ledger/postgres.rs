//! The PostgreSQL ledger: a run's record in a database the operators already run (managed,
//! replicated, failed over), for runs that must outlive one machine. The same records as the
//! SQLite ledger, in tables shared by every run of the database and keyed by the ledger's name
//! (`--state postgres://host/db?ledger=<name>`, default `default`). Owns that schema (version
//! 1), created on first use inside a transaction (docs/running.md, "A ledger in PostgreSQL"):
//!
//! - `drover_schema`: the version;
//! - `drover_runs`: one row per ledger: run facts, input snapshots, the plan;
//! - `drover_steps`: one row per plan step (and, for the workers of issue 15, who runs it and
//!   until when: `worker`, `lease_until`);
//! - `drover_events`, `drover_sessions`, `drover_holders`, `drover_updates`: as in SQLite.
//!
//! Credentials are never in the URL (it is printed and recorded): `PGPASSWORD` or a
//! `~/.pgpass` supplies them, and a URL carrying a password is refused.

use std::str::FromStr;
use std::time::Duration;

use postgres::{Client, Config};

use super::lock::Holder;
use super::sqlite::{EventRow, Session, UpdateRow};
use super::{
    Ledger, LedgerError, NewRun, Op, RunInfo, Snapshot, StepRecord, StepState, Store, Stored,
    now_ms,
};
use crate::plan::Plan;

const SCHEMA_VERSION: i32 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS drover_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS drover_runs (
    ledger TEXT PRIMARY KEY,
    info TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    plan BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS drover_steps (
    ledger TEXT NOT NULL REFERENCES drover_runs (ledger),
    idx INTEGER NOT NULL,
    id TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    output TEXT,
    started_at BIGINT,
    ended_at BIGINT,
    note TEXT,
    worker TEXT,
    lease_until TIMESTAMPTZ,
    PRIMARY KEY (ledger, idx)
);
CREATE TABLE IF NOT EXISTS drover_events (
    seq BIGSERIAL PRIMARY KEY,
    ledger TEXT NOT NULL,
    at BIGINT NOT NULL,
    step INTEGER,
    op TEXT NOT NULL,
    attempt INTEGER,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS drover_events_ledger ON drover_events (ledger, seq);
CREATE TABLE IF NOT EXISTS drover_holders (
    ledger TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    acquired_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    lease_until TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS drover_sessions (
    seq BIGSERIAL PRIMARY KEY,
    ledger TEXT NOT NULL,
    at BIGINT NOT NULL,
    mode TEXT NOT NULL,
    \"user\" TEXT NOT NULL,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    argv TEXT NOT NULL,
    plan_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS drover_updates (
    ledger TEXT NOT NULL,
    customer TEXT NOT NULL,
    seq INTEGER NOT NULL,
    key TEXT NOT NULL,
    site TEXT NOT NULL,
    decided_at BIGINT NOT NULL,
    p50_at BIGINT NOT NULL,
    p90_at BIGINT NOT NULL,
    message TEXT NOT NULL,
    delivered_at BIGINT,
    PRIMARY KEY (ledger, customer, seq),
    UNIQUE (ledger, key)
);
";

/// Where a PostgreSQL ledger is: the connection, and the ledger's name in it.
#[derive(Clone)]
pub struct Address {
    /// Settled (`pgtls::settle`); the blocking client's `Config` is made from it.
    config: tokio_postgres::Config,
    /// The URL as given, without `ledger=`: for messages and the audit trail.
    shown: String,
    /// TLS as the URL's `sslmode` asks (crate::pgtls).
    tls: crate::pgtls::Tls,
    pub ledger: String,
}

/// Whether `state` names a PostgreSQL ledger rather than a file.
pub fn is_url(state: &str) -> bool {
    state.starts_with("postgres://") || state.starts_with("postgresql://")
}

impl Address {
    /// Parses `postgres://user@host:port/db?ledger=name&…`; a password in it is refused.
    pub fn parse(url: &str) -> Result<Address, LedgerError> {
        let bad = |reason: String| LedgerError::Config {
            state: crate::redact::text(url),
            reason,
        };
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut ledger = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("ledger", name)) => ledger = Some(name.to_owned()),
                _ => rest.push(pair),
            }
        }
        let ledger = ledger.unwrap_or_else(|| "default".to_owned());
        if ledger.is_empty()
            || ledger.len() > 100
            || !ledger
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(bad(format!(
                "ledger={ledger:?} is not a ledger name: use up to 100 letters, digits, '-', '_' \
                 or '.'"
            )));
        }
        let without = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let (plain, tls) = crate::pgtls::split(&without).map_err(bad)?;
        let mut config = tokio_postgres::Config::from_str(&plain)
            .map_err(|e| bad(format!("not a PostgreSQL URL drover can use: {e}")))?;
        if config.get_password().is_some() {
            return Err(bad(
                "the URL carries a password, and would print and record it: remove it and set \
                 PGPASSWORD in drover's environment instead"
                    .into(),
            ));
        }
        crate::pgtls::settle(&mut config, &tls, "drover");
        // A process paused or cut off inside a transaction would hold its row locks (the
        // ledger's hold among them) until the server noticed: no standby could take over.
        // drover's transactions never wait on their client for long.
        config.options(IDLE_IN_TRANSACTION);
        Ok(Address {
            config,
            shown: format!(
                "{without}{}ledger={ledger}",
                if rest.is_empty() { "?" } else { "&" }
            ),
            tls,
            ledger,
        })
    }

    /// The ledger as messages name it (never with a password).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The same connection settings for `tokio-postgres` (the work queue).
    pub fn async_config(&self) -> tokio_postgres::Config {
        self.config.clone()
    }

    /// Where a run on this ledger stages what it fetches: `<ledger name>.staging` here.
    pub fn staging(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("{}.staging", self.ledger))
    }

    /// The connector that checks the server as `sslmode` asks.
    pub fn tls(&self) -> crate::pgtls::MakeRustlsConnect {
        self.tls.connector.clone()
    }

    fn connect(&self) -> Result<Client, LedgerError> {
        Config::from(self.config.clone())
            .connect(self.tls())
            .map_err(|e| LedgerError::Postgres {
                state: self.shown.clone(),
                source: e,
            })
    }
}

pub struct PostgresLedger {
    /// In a cell: queries need the connection mutably, and reading the ledger takes `&self`
    /// as it does for SQLite.
    client: std::cell::RefCell<Client>,
    at: Address,
    /// This process's holder record, once it took the ledger: every write is fenced by it.
    held: Option<String>,
    /// How long a hold lasts without renewal (every write renews it).
    hold: Duration,
}

/// A transaction left idle this long by its client is ended by the server (its locks freed).
const IDLE_IN_TRANSACTION: &str = "-c idle_in_transaction_session_timeout=5000";

/// How long a hold on a PostgreSQL ledger lasts without renewal, unless the command says.
pub const HOLD: Duration = Duration::from_secs(15);

impl PostgresLedger {
    /// Creates the ledger (and the schema, the first time in this database), every step
    /// pending. Refused when a ledger of that name exists.
    pub fn create(at: &Address, new: &NewRun) -> Result<PostgresLedger, LedgerError> {
        let mut ledger = PostgresLedger {
            client: std::cell::RefCell::new(at.connect()?),
            at: at.clone(),
            held: None,
            hold: HOLD,
        };
        ledger.ensure_schema()?;
        let blob = postcard::to_allocvec(new.plan).map_err(|e| ledger.corrupt(e))?;
        let info = serde_json::to_string(&new.info).expect("run info serializes");
        let snapshot = serde_json::to_string(&new.snapshot).expect("snapshot serializes");
        let name = at.ledger.clone();
        ledger.write_new(&name, &info, &snapshot, &blob, new.plan)?;
        Ok(ledger)
    }

    /// The run's row and its step rows, in one transaction.
    fn write_new(
        &self,
        name: &String,
        info: &String,
        snapshot: &String,
        blob: &Vec<u8>,
        plan: &Plan,
    ) -> Result<(), LedgerError> {
        let err = self.err();
        let at = &self.at;
        let mut client = self.client.borrow_mut();
        let mut tx = client.transaction().map_err(&err)?;
        let exists = tx
            .query_opt("SELECT 1 FROM drover_runs WHERE ledger = $1", &[&name])
            .map_err(&err)?
            .is_some();
        if exists {
            return Err(LedgerError::Incompatible {
                path: at.shown.clone(),
                reason: "a ledger of that name already exists in this database".into(),
            });
        }
        tx.execute(
            "INSERT INTO drover_runs (ledger, info, snapshot, plan) VALUES ($1, $2, $3, $4)",
            &[name, info, snapshot, blob],
        )
        .map_err(&err)?;
        // One COPY for every step row: a statement per row takes minutes at 2 million steps.
        {
            use std::io::Write;
            let mut copy = tx
                .copy_in("COPY drover_steps (ledger, idx, id, state) FROM STDIN")
                .map_err(&err)?;
            let mut line = String::new();
            for (i, step) in plan.steps.iter().enumerate() {
                line.clear();
                line.push_str(&copy_text(name));
                line.push('\t');
                line.push_str(&i.to_string());
                line.push('\t');
                line.push_str(&copy_text(&step.id));
                line.push_str("\tpending\n");
                copy.write_all(line.as_bytes())
                    .map_err(|e| ledger_io(&at.shown, e))?;
            }
            copy.finish().map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }

    /// Opens an existing ledger.
    pub fn open(at: &Address) -> Result<PostgresLedger, LedgerError> {
        let ledger = PostgresLedger {
            client: std::cell::RefCell::new(at.connect()?),
            at: at.clone(),
            held: None,
            hold: HOLD,
        };
        let err = ledger.err();
        let version = ledger
            .client
            .borrow_mut()
            .query_opt(
                "SELECT version FROM drover_schema WHERE to_regclass('drover_schema') IS NOT NULL",
                &[],
            )
            .or_else(|e| {
                // No table at all: a database drover never wrote to.
                if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) {
                    Ok(None)
                } else {
                    Err(e)
                }
            })
            .map_err(&err)?
            .map(|r| r.get::<_, i32>(0));
        match version {
            None => {
                return Err(LedgerError::Missing {
                    path: at.shown.clone(),
                });
            }
            Some(SCHEMA_VERSION) => {}
            Some(v) => {
                return Err(LedgerError::Incompatible {
                    path: at.shown.clone(),
                    reason: format!("schema version {v}, this drover reads {SCHEMA_VERSION}"),
                });
            }
        }
        let exists = ledger
            .client
            .borrow_mut()
            .query_opt("SELECT 1 FROM drover_runs WHERE ledger = $1", &[&at.ledger])
            .map_err(&err)?
            .is_some();
        if !exists {
            return Err(LedgerError::Missing {
                path: at.shown.clone(),
            });
        }
        Ok(ledger)
    }

    /// Creates the tables the first time; concurrent first uses wait on one advisory lock.
    fn ensure_schema(&mut self) -> Result<(), LedgerError> {
        let err = self.err();
        let mut client = self.client.borrow_mut();
        let mut tx = client.transaction().map_err(&err)?;
        tx.execute("SELECT pg_advisory_xact_lock(7172635)", &[])
            .map_err(&err)?;
        tx.batch_execute(SCHEMA).map_err(&err)?;
        tx.batch_execute(crate::workers::SCHEMA).map_err(&err)?;
        let version: Option<i32> = tx
            .query_opt("SELECT version FROM drover_schema", &[])
            .map_err(&err)?
            .map(|r| r.get(0));
        match version {
            None => {
                tx.execute(
                    "INSERT INTO drover_schema (version) VALUES ($1)",
                    &[&SCHEMA_VERSION],
                )
                .map_err(&err)?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(v) => {
                return Err(LedgerError::Incompatible {
                    path: self.at.shown.clone(),
                    reason: format!("schema version {v}, this drover writes {SCHEMA_VERSION}"),
                });
            }
        }
        tx.commit().map_err(&err)
    }

    fn err(&self) -> impl Fn(postgres::Error) -> LedgerError + use<> {
        let state = self.at.shown.clone();
        move |source| LedgerError::Postgres {
            state: state.clone(),
            source,
        }
    }

    fn corrupt(&self, e: impl std::fmt::Display) -> LedgerError {
        LedgerError::Corrupt {
            path: self.at.shown.clone(),
            reason: e.to_string(),
        }
    }

    fn load_stored(&self) -> Result<Stored, LedgerError> {
        let err = self.err();
        let row = self
            .client
            .borrow_mut()
            .query_one(
                "SELECT info, snapshot, plan FROM drover_runs WHERE ledger = $1",
                &[&self.at.ledger],
            )
            .map_err(err)?;
        let info: RunInfo =
            serde_json::from_str(row.get::<_, &str>(0)).map_err(|e| self.corrupt(e))?;
        let snapshot: Snapshot =
            serde_json::from_str(row.get::<_, &str>(1)).map_err(|e| self.corrupt(e))?;
        let plan: Plan =
            postcard::from_bytes(row.get::<_, &[u8]>(2)).map_err(|e| self.corrupt(e))?;
        if crate::plan::rehash(&plan) != info.plan_hash {
            return Err(self.corrupt("the stored plan does not match its recorded hash"));
        }
        let steps = self.step_records()?;
        if steps.len() != plan.steps.len() {
            return Err(self.corrupt(format!(
                "{} step rows for a plan of {} steps",
                steps.len(),
                plan.steps.len()
            )));
        }
        Ok(Stored {
            info,
            snapshot,
            plan,
            steps,
        })
    }
}

impl Ledger for PostgresLedger {
    fn apply(&mut self, ops: &[Op]) -> Result<(), LedgerError> {
        let err = self.err();
        let name = self.at.ledger.clone();
        let mut client = self.client.borrow_mut();
        let mut tx = client.transaction().map_err(&err)?;
        if let Some(me) = &self.held {
            // The fence, and the renewal of the hold: nothing is written unless this process
            // still holds the ledger, by the database's word.
            let renewed = tx
                .execute(
                    "UPDATE drover_holders SET lease_until = now() + make_interval(secs => $3) \
                     WHERE ledger = $1 AND holder = $2",
                    &[&name, me, &self.hold.as_secs_f64()],
                )
                .map_err(&err)?;
            if renewed == 0 {
                return Err(LedgerError::Deposed {
                    state: self.at.shown.clone(),
                });
            }
        }
        // The step transitions, folded into one change per step and written in one statement;
        // the events, in one statement too. A statement per transition held a coordinator to
        // ~1,000 steps/s.
        let mut patches: Patches = Patches::default();
        let mut events = Events::default();
        for op in ops {
            let (step, event, attempt, detail): (Option<u32>, &str, Option<i32>, Option<String>) =
                match op {
                    Op::Claim { step, attempt, at } => {
                        let p = patches.of(*step);
                        p.state = "running";
                        p.attempts = Some(*attempt as i32);
                        p.started_at = Some(*at);
                        p.ended_at = Some(None);
                        (Some(*step), "claim", Some(*attempt as i32), None)
                    }
                    Op::Complete {
                        step,
                        attempt,
                        at,
                        output,
                    } => {
                        let p = patches.of(*step);
                        p.state = "succeeded";
                        p.ended_at = Some(Some(*at));
                        p.output = Some(output.clone());
                        p.last_error = Some(None);
                        (Some(*step), "complete", Some(*attempt as i32), None)
                    }
                    Op::Fail {
                        step,
                        attempt,
                        at,
                        error,
                        retryable,
                    } => {
                        let (state, event) = if *retryable {
                            ("pending", "retry")
                        } else {
                            ("failed", "fail")
                        };
                        let p = patches.of(*step);
                        p.state = state;
                        p.ended_at = Some(Some(*at));
                        p.last_error = Some(Some(error.clone()));
                        (
                            Some(*step),
                            event,
                            Some(*attempt as i32),
                            Some(error.clone()),
                        )
                    }
                    Op::Block { step, by, .. } => {
                        patches.write(&mut tx, &name).map_err(&err)?;
                        let by_id: String = tx
                            .query_one(
                                "SELECT id FROM drover_steps WHERE ledger = $1 AND idx = $2",
                                &[&name, &(*by as i32)],
                            )
                            .map_err(&err)?
                            .get(0);
                        tx.execute(
                            "UPDATE drover_steps SET state = 'blocked', note = $3 \
                             WHERE ledger = $1 AND idx = $2",
                            &[&name, &(*step as i32), &by_id],
                        )
                        .map_err(&err)?;
                        (Some(*step), "block", None, Some(by_id))
                    }
                    Op::Requeue { step, reason, .. } => {
                        patches.write(&mut tx, &name).map_err(&err)?;
                        tx.execute(
                            "UPDATE drover_steps SET state = 'pending', note = NULL \
                             WHERE ledger = $1 AND idx = $2",
                            &[&name, &(*step as i32)],
                        )
                        .map_err(&err)?;
                        (Some(*step), "requeue", None, Some(reason.clone()))
                    }
                    Op::Skip { step, at, reason } => {
                        patches.write(&mut tx, &name).map_err(&err)?;
                        tx.execute(
                            "UPDATE drover_steps SET state = 'skipped', note = $3, ended_at = $4 \
                             WHERE ledger = $1 AND idx = $2",
                            &[&name, &(*step as i32), reason, at],
                        )
                        .map_err(&err)?;
                        (Some(*step), "skip", None, Some(reason.clone()))
                    }
                    Op::Heartbeat { at } => {
                        tx.execute(
                            "UPDATE drover_holders SET heartbeat_at = $2 WHERE ledger = $1",
                            &[&name, at],
                        )
                        .map_err(&err)?;
                        continue;
                    }
                };
            events.at.push(op_at(op));
            events.step.push(step.map(|s| s as i32));
            events.op.push(event);
            events.attempt.push(attempt);
            events.detail.push(detail);
        }
        patches.write(&mut tx, &name).map_err(&err)?;
        events.write(&mut tx, &name).map_err(&err)?;
        tx.commit().map_err(&err)
    }

    fn load(&self) -> Result<Stored, LedgerError> {
        self.load_stored()
    }
}

impl super::Store for PostgresLedger {
    fn shown(&self) -> String {
        self.at.shown.clone()
    }
    fn info(&self) -> Result<RunInfo, LedgerError> {
        let err = self.err();
        let row = self
            .client
            .borrow_mut()
            .query_one(
                "SELECT info FROM drover_runs WHERE ledger = $1",
                &[&self.at.ledger],
            )
            .map_err(err)?;
        serde_json::from_str(row.get::<_, &str>(0)).map_err(|e| self.corrupt(e))
    }

    fn step_records(&self) -> Result<Vec<StepRecord>, LedgerError> {
        let err = self.err();
        let rows = self
            .client
            .borrow_mut()
            .query(
                "SELECT state, attempts, last_error, output, started_at, ended_at, note \
                 FROM drover_steps WHERE ledger = $1 ORDER BY idx",
                &[&self.at.ledger],
            )
            .map_err(err)?;
        Ok(rows
            .iter()
            .map(|r| StepRecord {
                state: StepState::parse(r.get(0)).unwrap_or(StepState::Pending),
                attempts: r.get::<_, i32>(1) as u32,
                last_error: r.get(2),
                output: r.get(3),
                started_at: r.get(4),
                ended_at: r.get(5),
                note: r.get(6),
            })
            .collect())
    }

    /// Takes the single-writer hold, or says who has it. A hold lasts until its lease ends by
    /// the database's clock (renewed by every write); one whose process is gone from this host
    /// ends at once.
    fn acquire(&mut self, me: &Holder) -> Result<(), LedgerError> {
        let err = self.err();
        let name = self.at.ledger.clone();
        let shown = self.at.shown.clone();
        let text = serde_json::to_string(me).expect("holder serializes");
        let mut client = self.client.borrow_mut();
        let mut tx = client.transaction().map_err(&err)?;
        let current = tx
            .query_opt(
                "SELECT holder, acquired_at, heartbeat_at, lease_until > now() \
                 FROM drover_holders WHERE ledger = $1 FOR UPDATE",
                &[&name],
            )
            .map_err(&err)?;
        if let Some(row) = current {
            let holder: Holder =
                serde_json::from_str(row.get::<_, &str>(0)).map_err(|e| LedgerError::Corrupt {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
            let (since, beat): (i64, i64) = (row.get(1), row.get(2));
            let leased = row
                .get::<_, Option<bool>>(3)
                .unwrap_or_else(|| holder.is_alive(beat, now_ms()));
            let here = holder.host == super::lock::hostname();
            let alive = leased && (!here || holder.is_alive(beat, now_ms()));
            if holder != *me && alive {
                return Err(LedgerError::Held {
                    path: shown,
                    pid: holder.pid,
                    host: holder.host,
                    since: super::format_ms(since),
                });
            }
        }
        let now = now_ms();
        tx.execute(
            "INSERT INTO drover_holders (ledger, holder, acquired_at, heartbeat_at, lease_until) \
             VALUES ($1, $2, $3, $3, now() + make_interval(secs => $4)) ON CONFLICT (ledger) \
             DO UPDATE SET holder = $2, acquired_at = $3, heartbeat_at = $3, \
             lease_until = now() + make_interval(secs => $4)",
            &[&name, &text, &now, &self.hold.as_secs_f64()],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        drop(client);
        self.held = Some(text);
        Ok(())
    }

    fn holder(&self) -> Result<Option<(Holder, i64, i64)>, LedgerError> {
        let err = self.err();
        let row = self
            .client
            .borrow_mut()
            .query_opt(
                "SELECT holder, acquired_at, heartbeat_at FROM drover_holders WHERE ledger = $1",
                &[&self.at.ledger],
            )
            .map_err(err)?;
        row.map(|r| {
            serde_json::from_str(r.get::<_, &str>(0))
                .map(|h| (h, r.get(1), r.get(2)))
                .map_err(|e| self.corrupt(e))
        })
        .transpose()
    }

    /// Gives up this process's hold; never another's (taken over after this one lapsed).
    fn release(&mut self) -> Result<(), LedgerError> {
        let err = self.err();
        self.client
            .borrow_mut()
            .execute(
                "DELETE FROM drover_holders WHERE ledger = $1 AND ($2::text IS NULL OR holder = $2)",
                &[&self.at.ledger, &self.held],
            )
            .map(drop)
            .map_err(err)
    }

    fn hold_for(&mut self, lease: Duration) {
        self.hold = lease;
    }

    fn record_policy(
        &mut self,
        policy: crate::dispatch::policy::Policy,
    ) -> Result<(), LedgerError> {
        let mut info = self.info()?;
        info.policy = Some(policy);
        let text = serde_json::to_string(&info).map_err(|e| self.corrupt(e))?;
        let err = self.err();
        self.client
            .borrow_mut()
            .execute(
                "UPDATE drover_runs SET info = $2 WHERE ledger = $1",
                &[&self.at.ledger, &text],
            )
            .map(drop)
            .map_err(err)
    }

    fn record_session(
        &mut self,
        mode: super::SessionMode,
        argv: &[String],
        me: &Holder,
        plan_hash: &str,
    ) -> Result<(), LedgerError> {
        let argv = serde_json::to_string(argv).expect("argv serializes");
        let err = self.err();
        self.client
            .borrow_mut()
            .execute(
                "INSERT INTO drover_sessions (ledger, at, mode, \"user\", host, pid, argv, \
                 plan_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &self.at.ledger,
                    &now_ms(),
                    &mode.as_str(),
                    &me.user,
                    &me.host,
                    &i64::from(me.pid),
                    &argv,
                    &plan_hash,
                ],
            )
            .map(drop)
            .map_err(err)
    }

    fn sessions(&self) -> Result<Vec<Session>, LedgerError> {
        let err = self.err();
        let rows = self
            .client
            .borrow_mut()
            .query(
                "SELECT at, mode, \"user\", host, pid, argv, plan_hash FROM drover_sessions \
                 WHERE ledger = $1 ORDER BY seq",
                &[&self.at.ledger],
            )
            .map_err(err)?;
        Ok(rows
            .iter()
            .map(|r| Session {
                at: r.get(0),
                mode: r.get(1),
                user: r.get(2),
                host: r.get(3),
                pid: r.get::<_, i64>(4) as u32,
                argv: serde_json::from_str(r.get::<_, &str>(5)).unwrap_or_default(),
                plan_hash: r.get(6),
            })
            .collect())
    }

    fn events(&self) -> Result<Vec<EventRow>, LedgerError> {
        let err = self.err();
        let rows = self
            .client
            .borrow_mut()
            .query(
                "SELECT e.seq, e.at, s.id, e.op, e.attempt, e.detail FROM drover_events e \
                 LEFT JOIN drover_steps s ON s.ledger = e.ledger AND s.idx = e.step \
                 WHERE e.ledger = $1 ORDER BY e.seq",
                &[&self.at.ledger],
            )
            .map_err(err)?;
        Ok(rows
            .iter()
            .map(|r| EventRow {
                seq: r.get(0),
                at: r.get(1),
                step: r.get(2),
                op: r.get(3),
                attempt: r.get::<_, Option<i32>>(4).map(|a| a as u32),
                detail: r.get(5),
            })
            .collect())
    }

    fn updates(&self) -> Result<Vec<UpdateRow>, LedgerError> {
        let err = self.err();
        let rows = self
            .client
            .borrow_mut()
            .query(
                "SELECT customer, seq, key, site, decided_at, p50_at, p90_at, message, \
                 delivered_at FROM drover_updates WHERE ledger = $1 ORDER BY customer, seq",
                &[&self.at.ledger],
            )
            .map_err(err)?;
        Ok(rows
            .iter()
            .map(|r| UpdateRow {
                customer: r.get(0),
                seq: r.get::<_, i32>(1) as u32,
                key: r.get(2),
                site: r.get(3),
                decided_at: r.get(4),
                p50_at: r.get(5),
                p90_at: r.get(6),
                message: r.get(7),
                delivered_at: r.get(8),
            })
            .collect())
    }

    fn record_update(&mut self, u: &UpdateRow) -> Result<(), LedgerError> {
        let err = self.err();
        self.client
            .borrow_mut()
            .execute(
                "INSERT INTO drover_updates (ledger, customer, seq, key, site, decided_at, \
                 p50_at, p90_at, message) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &self.at.ledger,
                    &u.customer,
                    &(u.seq as i32),
                    &u.key,
                    &u.site,
                    &u.decided_at,
                    &u.p50_at,
                    &u.p90_at,
                    &u.message,
                ],
            )
            .map(drop)
            .map_err(err)
    }

    fn update_delivered(&mut self, key: &str, at: i64) -> Result<(), LedgerError> {
        let err = self.err();
        self.client
            .borrow_mut()
            .execute(
                "UPDATE drover_updates SET delivered_at = $3 WHERE ledger = $1 AND key = $2",
                &[&self.at.ledger, &key, &at],
            )
            .map(drop)
            .map_err(err)
    }

    fn reopen(&self) -> Result<Box<dyn super::Store>, LedgerError> {
        let mut other = PostgresLedger::open(&self.at)?;
        other.held = self.held.clone();
        other.hold = self.hold;
        Ok(Box::new(other))
    }
    fn staging(&self) -> std::path::PathBuf {
        self.at.staging()
    }
    fn file(&self) -> Option<&std::path::Path> {
        None
    }
    fn postgres(&self) -> Option<&Address> {
        Some(&self.at)
    }
    fn attempts(&self) -> Result<Vec<super::AttemptRow>, LedgerError> {
        let err = self.err();
        let rows = self
            .client
            .borrow_mut()
            .query(
                // An attempt is recorded when it ends (or its worker is given up); one under way
                // is the work queue's running row.
                "SELECT step, attempt, worker, claimed_at, ended_at, outcome FROM drover_attempts \
                 WHERE ledger = $1 UNION ALL SELECT step, attempt, worker, claimed_at, NULL, NULL \
                 FROM drover_work WHERE ledger = $1 AND state = 'running' \
                 ORDER BY 4, 1, 2",
                &[&self.at.ledger],
            )
            .map_err(err)?;
        Ok(rows
            .iter()
            .map(|r| super::AttemptRow {
                step: r.get(0),
                attempt: r.get::<_, i32>(1) as u32,
                worker: r.get(2),
                claimed_at: r.get(3),
                ended_at: r.get(4),
                outcome: r.get(5),
            })
            .collect())
    }
    fn stop_asked(&self) -> Result<Option<super::StopMode>, LedgerError> {
        let err = self.err();
        let row = self
            .client
            .borrow_mut()
            .query_opt(
                "SELECT mode FROM drover_control WHERE ledger = $1",
                &[&self.at.ledger],
            )
            .map_err(err)?;
        Ok(row.map(|r| match r.get::<_, &str>(0) {
            "abort" => super::StopMode::Abort,
            _ => super::StopMode::Drain,
        }))
    }
    fn ask_stop(&mut self, mode: super::StopMode, by: &str) -> Result<(), LedgerError> {
        let err = self.err();
        let mode = match mode {
            super::StopMode::Drain => "drain",
            super::StopMode::Abort => "abort",
        };
        self.client
            .borrow_mut()
            .execute(
                "INSERT INTO drover_control (ledger, mode, asked_at, asked_by) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (ledger) DO UPDATE \
                 SET mode = $2, asked_at = $3, asked_by = $4",
                &[&self.at.ledger, &mode, &now_ms(), &by],
            )
            .map(drop)
            .map_err(err)
    }
    fn clear_stop(&mut self) -> Result<(), LedgerError> {
        let err = self.err();
        self.client
            .borrow_mut()
            .execute(
                "DELETE FROM drover_control WHERE ledger = $1",
                &[&self.at.ledger],
            )
            .map(drop)
            .map_err(err)
    }
}

/// When an op happened.
/// What a batch changes of one step's row; `None`: left as it is (`Some(None)`: set NULL).
struct Patch {
    state: &'static str,
    attempts: Option<i32>,
    started_at: Option<i64>,
    ended_at: Option<Option<i64>>,
    output: Option<Option<String>>,
    last_error: Option<Option<String>>,
}

/// The step changes of a batch not written yet, one per step (a later transition of a step
/// overrides what an earlier one set).
#[derive(Default)]
struct Patches(std::collections::HashMap<u32, Patch>);

impl Patches {
    fn of(&mut self, step: u32) -> &mut Patch {
        self.0.entry(step).or_insert(Patch {
            state: "pending",
            attempts: None,
            started_at: None,
            ended_at: None,
            output: None,
            last_error: None,
        })
    }

    /// Writes every change in one statement, and forgets them.
    fn write(
        &mut self,
        tx: &mut postgres::Transaction<'_>,
        ledger: &str,
    ) -> Result<(), postgres::Error> {
        if self.0.is_empty() {
            return Ok(());
        }
        let n = self.0.len();
        let (mut idx, mut state, mut attempts, mut started) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut set_ended, mut ended, mut set_output, mut output, mut set_error, mut error) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (step, p) in self.0.drain() {
            idx.push(step as i32);
            state.push(p.state);
            attempts.push(p.attempts);
            started.push(p.started_at);
            set_ended.push(p.ended_at.is_some());
            ended.push(p.ended_at.flatten());
            set_output.push(p.output.is_some());
            output.push(p.output.flatten());
            set_error.push(p.last_error.is_some());
            error.push(p.last_error.flatten());
        }
        tx.execute(
            "UPDATE drover_steps s SET state = p.state, \
             attempts = COALESCE(p.attempts, s.attempts), \
             started_at = COALESCE(p.started_at, s.started_at), \
             ended_at = CASE WHEN p.set_ended THEN p.ended_at ELSE s.ended_at END, \
             output = CASE WHEN p.set_output THEN p.output ELSE s.output END, \
             last_error = CASE WHEN p.set_error THEN p.last_error ELSE s.last_error END \
             FROM unnest($2::int[], $3::text[], $4::int[], $5::bigint[], $6::bool[], \
             $7::bigint[], $8::bool[], $9::text[], $10::bool[], $11::text[]) \
             AS p(idx, state, attempts, started_at, set_ended, ended_at, set_output, output, \
             set_error, last_error) \
             WHERE s.ledger = $1 AND s.idx = p.idx",
            &[
                &ledger,
                &idx,
                &state,
                &attempts,
                &started,
                &set_ended,
                &ended,
                &set_output,
                &output,
                &set_error,
                &error,
            ],
        )?;
        Ok(())
    }
}

/// The events of a batch, written in one statement in their order.
#[derive(Default)]
struct Events {
    at: Vec<i64>,
    step: Vec<Option<i32>>,
    op: Vec<&'static str>,
    attempt: Vec<Option<i32>>,
    detail: Vec<Option<String>>,
}

impl Events {
    fn write(
        &self,
        tx: &mut postgres::Transaction<'_>,
        ledger: &str,
    ) -> Result<(), postgres::Error> {
        if self.at.is_empty() {
            return Ok(());
        }
        tx.execute(
            "INSERT INTO drover_events (ledger, at, step, op, attempt, detail) \
             SELECT $1, e.at, e.step, e.op, e.attempt, e.detail \
             FROM unnest($2::bigint[], $3::int[], $4::text[], $5::int[], $6::text[]) \
             WITH ORDINALITY AS e(at, step, op, attempt, detail, n) ORDER BY e.n",
            &[
                &ledger,
                &self.at,
                &self.step,
                &self.op,
                &self.attempt,
                &self.detail,
            ],
        )?;
        Ok(())
    }
}

fn op_at(op: &Op) -> i64 {
    match op {
        Op::Claim { at, .. }
        | Op::Heartbeat { at }
        | Op::Complete { at, .. }
        | Op::Fail { at, .. }
        | Op::Block { at, .. }
        | Op::Requeue { at, .. }
        | Op::Skip { at, .. } => *at,
    }
}

/// A value for COPY's text format: backslash, tab and newlines escaped.
fn copy_text(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

fn ledger_io(state: &str, e: std::io::Error) -> LedgerError {
    LedgerError::Incompatible {
        path: state.to_owned(),
        reason: format!("writing the step rows: {e}"),
    }
}
