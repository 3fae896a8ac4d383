//! The SQLite ledger: one file per run, WAL mode, `synchronous = FULL` so every committed batch
//! survives a crash of drover or the machine. Owns the on-disk schema (version 1):
//!
//! - `run`: one row — run ID, drover version, plan hash, input snapshots, the plan itself;
//! - `steps`: one row per plan step — state, attempts, last error, output, times;
//! - `events`: append-only, one row per transition;
//! - `holder`: the process that may write (see `lock`);
//! - `sessions`: every command that opened the ledger for writing (run, resume, retry, skip);
//! - `updates`: per-customer progress updates decided, and whether each was delivered
//!   (`crate::updates`); created on first use in ledgers made before it existed.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::lock::Holder;
use super::{
    Ledger, LedgerError, NewRun, Op, RunInfo, Snapshot, StepRecord, StepState, Stored, now_ms,
};
use crate::plan::Plan;

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE run (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    info TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    plan BLOB NOT NULL
);
CREATE TABLE steps (
    idx INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    output TEXT,
    started_at INTEGER,
    ended_at INTEGER,
    note TEXT
);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    step INTEGER,
    op TEXT NOT NULL,
    attempt INTEGER,
    detail TEXT
);
CREATE TABLE holder (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    holder TEXT NOT NULL,
    acquired_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);
CREATE TABLE sessions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    mode TEXT NOT NULL,
    user TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    argv TEXT NOT NULL,
    plan_hash TEXT NOT NULL
);
";

/// Additive: a ledger without it gets it the first time an update is recorded.
const UPDATES_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS updates (
    customer TEXT NOT NULL,
    seq INTEGER NOT NULL,
    key TEXT NOT NULL UNIQUE,
    site TEXT NOT NULL,
    decided_at INTEGER NOT NULL,
    p50_at INTEGER NOT NULL,
    p90_at INTEGER NOT NULL,
    message TEXT NOT NULL,
    delivered_at INTEGER,
    PRIMARY KEY (customer, seq)
);
";

pub struct SqliteLedger {
    conn: Connection,
    path: PathBuf,
    /// Step IDs by index, for event details that name another step; read on first use, since
    /// a ledger of 2 million steps holds 2 million IDs and most opens need none of them.
    ids: std::cell::OnceCell<Vec<String>>,
}

impl SqliteLedger {
    /// Creates a new ledger file holding the plan, every step pending.
    pub fn create(path: &Path, new: &NewRun) -> Result<SqliteLedger, LedgerError> {
        if path.exists() {
            return Err(LedgerError::Incompatible {
                path: path.display().to_string(),
                reason: "the file already exists".into(),
            });
        }
        // Built under a temporary name and renamed into place once complete, so no other
        // command ever sees a half-created ledger.
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(format!(".creating-{}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let _ = std::fs::remove_file(&tmp);
        let result = write_new(&tmp, new).and_then(|()| {
            std::fs::rename(&tmp, path).map_err(|e| LedgerError::Incompatible {
                path: path.display().to_string(),
                reason: format!("cannot move the new ledger into place: {e}"),
            })
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result?;
        SqliteLedger::open(path)
    }

    /// Opens an existing ledger.
    pub fn open(path: &Path) -> Result<SqliteLedger, LedgerError> {
        if !path.exists() {
            return Err(LedgerError::Missing {
                path: path.display().to_string(),
            });
        }
        identify(path)?;
        let conn = connect(path)?;
        Ok(SqliteLedger {
            conn,
            path: path.to_owned(),
            ids: std::cell::OnceCell::new(),
        })
    }

    /// Step IDs by index.
    fn ids(&self) -> Result<&[String], LedgerError> {
        if let Some(ids) = self.ids.get() {
            return Ok(ids);
        }
        let ids: Vec<String> = self
            .conn
            .prepare("SELECT id FROM steps ORDER BY idx")
            .and_then(|mut stmt| stmt.query_map([], |r| r.get(0))?.collect())
            .map_err(sql_err(&self.path))?;
        Ok(self.ids.get_or_init(|| ids))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run's facts, without loading the plan.
    pub fn info(&self) -> Result<RunInfo, LedgerError> {
        let text: String = self
            .conn
            .query_row("SELECT info FROM run", [], |r| r.get(0))
            .map_err(sql_err(&self.path))?;
        serde_json::from_str(&text).map_err(|e| self.corrupt(e))
    }

    /// Takes the single-writer lock, or says who holds it. A holder whose process is gone is
    /// replaced.
    pub fn acquire(&mut self, me: &Holder) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let err = sql_err(&path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let current: Option<(String, i64, i64)> = tx
            .query_row(
                "SELECT holder, acquired_at, heartbeat_at FROM holder",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(&err)?;
        if let Some((text, since, heartbeat)) = current {
            let holder: Holder = serde_json::from_str(&text).map_err(|e| LedgerError::Corrupt {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            if holder != *me && holder.is_alive(heartbeat, now_ms()) {
                return Err(LedgerError::Held {
                    path: path.display().to_string(),
                    pid: holder.pid,
                    host: holder.host,
                    since: super::format_ms(since),
                });
            }
        }
        let text = serde_json::to_string(me).expect("holder serializes");
        let now = now_ms();
        tx.execute(
            "INSERT OR REPLACE INTO holder (id, holder, acquired_at, heartbeat_at) \
             VALUES (1, ?1, ?2, ?2)",
            params![text, now],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)
    }

    /// The current holder, when it took the ledger, and its last heartbeat.
    pub fn holder(&self) -> Result<Option<(Holder, i64, i64)>, LedgerError> {
        let row: Option<(String, i64, i64)> = self
            .conn
            .query_row(
                "SELECT holder, acquired_at, heartbeat_at FROM holder",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(sql_err(&self.path))?;
        row.map(|(text, since, beat)| {
            serde_json::from_str(&text)
                .map(|h| (h, since, beat))
                .map_err(|e| self.corrupt(e))
        })
        .transpose()
    }

    /// Gives the lock up (at the end of a command).
    pub fn release(&mut self) -> Result<(), LedgerError> {
        self.conn
            .execute("DELETE FROM holder", [])
            .map(drop)
            .map_err(sql_err(&self.path))
    }

    /// Records a command that opened the ledger for writing, for the audit trail.
    /// Records the policy this session runs (in the run's facts), for later resumes and status.
    pub fn record_policy(
        &mut self,
        policy: crate::dispatch::policy::Policy,
    ) -> Result<(), LedgerError> {
        let mut info = self.info()?;
        info.policy = Some(policy);
        let text = serde_json::to_string(&info).map_err(|e| self.corrupt(e))?;
        self.conn
            .execute("UPDATE run SET info = ?1", params![text])
            .map(drop)
            .map_err(sql_err(&self.path))
    }

    pub fn record_session(
        &mut self,
        mode: crate::ledger::SessionMode,
        argv: &[String],
        me: &Holder,
        plan_hash: &str,
    ) -> Result<(), LedgerError> {
        let argv = serde_json::to_string(argv).expect("argv serializes");
        self.conn
            .execute(
                "INSERT INTO sessions (at, mode, user, host, pid, argv, plan_hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    now_ms(),
                    mode.as_str(),
                    me.user,
                    me.host,
                    me.pid,
                    argv,
                    plan_hash
                ],
            )
            .map(drop)
            .map_err(sql_err(&self.path))
    }

    /// Every command that opened the ledger for writing, oldest first.
    pub fn sessions(&self) -> Result<Vec<Session>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare("SELECT at, mode, user, host, pid, argv, plan_hash FROM sessions ORDER BY seq")
            .map_err(sql_err(&self.path))?;
        let rows = stmt.query_map([], |r| {
            let argv: String = r.get(5)?;
            Ok(Session {
                at: r.get(0)?,
                mode: r.get(1)?,
                user: r.get(2)?,
                host: r.get(3)?,
                pid: r.get(4)?,
                argv: serde_json::from_str(&argv).unwrap_or_default(),
                plan_hash: r.get(6)?,
            })
        });
        rows.and_then(Iterator::collect)
            .map_err(sql_err(&self.path))
    }

    /// Every recorded transition, oldest first, with step IDs.
    pub fn events(&self) -> Result<Vec<EventRow>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, at, step, op, attempt, detail FROM events ORDER BY seq")
            .map_err(sql_err(&self.path))?;
        let ids = self.ids()?;
        let rows = stmt.query_map([], |r| {
            let step: Option<i64> = r.get(2)?;
            Ok(EventRow {
                seq: r.get(0)?,
                at: r.get(1)?,
                step: step.and_then(|i| ids.get(i as usize).cloned()),
                op: r.get(3)?,
                attempt: r.get(4)?,
                detail: r.get(5)?,
            })
        });
        rows.and_then(Iterator::collect)
            .map_err(sql_err(&self.path))
    }

    /// Every per-customer update decided so far, oldest first per customer.
    pub fn updates(&self) -> Result<Vec<UpdateRow>, LedgerError> {
        let exists: bool = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'updates'",
                [],
                |r| r.get::<_, i64>(0).map(|n| n > 0),
            )
            .map_err(sql_err(&self.path))?;
        if !exists {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT customer, seq, key, site, decided_at, p50_at, p90_at, message, \
                 delivered_at FROM updates ORDER BY customer, seq",
            )
            .map_err(sql_err(&self.path))?;
        let rows = stmt.query_map([], |r| {
            Ok(UpdateRow {
                customer: r.get(0)?,
                seq: r.get(1)?,
                key: r.get(2)?,
                site: r.get(3)?,
                decided_at: r.get(4)?,
                p50_at: r.get(5)?,
                p90_at: r.get(6)?,
                message: r.get(7)?,
                delivered_at: r.get(8)?,
            })
        });
        rows.and_then(Iterator::collect)
            .map_err(sql_err(&self.path))
    }

    /// Records an update decided and not yet delivered. Its `(customer, seq)` and `key` are
    /// unique: a second record of the same update is refused, never a second update.
    pub fn record_update(&mut self, u: &UpdateRow) -> Result<(), LedgerError> {
        let err = sql_err(&self.path);
        self.conn.execute_batch(UPDATES_SCHEMA).map_err(&err)?;
        self.conn
            .execute(
                "INSERT INTO updates (customer, seq, key, site, decided_at, p50_at, p90_at, \
                 message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    u.customer,
                    u.seq,
                    u.key,
                    u.site,
                    u.decided_at,
                    u.p50_at,
                    u.p90_at,
                    u.message
                ],
            )
            .map(drop)
            .map_err(err)
    }

    /// Marks the update `key` delivered at `at`.
    pub fn update_delivered(&mut self, key: &str, at: i64) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "UPDATE updates SET delivered_at = ?2 WHERE key = ?1",
                params![key, at],
            )
            .map(drop)
            .map_err(sql_err(&self.path))
    }

    /// Step records only (for `status`), without decoding the plan.
    pub fn step_records(&self) -> Result<Vec<StepRecord>, LedgerError> {
        self.step_records_for(0)
    }

    /// Step records into a vector with room for `expected` (the plan's steps): collecting 2
    /// million rows into a growing vector copied and faulted in hundreds of megabytes.
    fn step_records_for(&self, expected: usize) -> Result<Vec<StepRecord>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT state, attempts, last_error, output, started_at, ended_at, note \
                 FROM steps ORDER BY idx",
            )
            .map_err(sql_err(&self.path))?;
        let mut out = Vec::new();
        // A claimed length is a hint only; if it cannot be reserved the vector grows.
        let _ = out.try_reserve_exact(expected);
        let rows = stmt
            .query_map([], |r| {
                Ok(StepRecord {
                    state: StepState::parse(r.get_ref(0)?.as_str()?).unwrap_or(StepState::Pending),
                    attempts: r.get(1)?,
                    last_error: r.get(2)?,
                    output: r.get(3)?,
                    started_at: r.get(4)?,
                    ended_at: r.get(5)?,
                    note: r.get(6)?,
                })
            })
            .map_err(sql_err(&self.path))?;
        for row in rows {
            out.push(row.map_err(sql_err(&self.path))?);
        }
        Ok(out)
    }

    fn corrupt(&self, e: impl std::fmt::Display) -> LedgerError {
        LedgerError::Corrupt {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        }
    }
}

impl Ledger for SqliteLedger {
    // Over 80 lines on purpose: one transaction with its prepared statements, and one match arm
    // per kind of transition, each a row update and its event.
    fn apply(&mut self, ops: &[Op]) -> Result<(), LedgerError> {
        if ops.iter().any(|op| matches!(op, Op::Block { .. })) {
            self.ids()?;
        }
        let ids = self.ids.get().map_or(&[][..], Vec::as_slice);
        let path = self.path.clone();
        let err = sql_err(&path);
        let tx = self.conn.transaction().map_err(&err)?;
        {
            let prepare = |sql: &str| tx.prepare_cached(sql).map_err(&err);
            let mut event = prepare(
                "INSERT INTO events (at, step, op, attempt, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut claim = prepare(
                "UPDATE steps SET state = 'running', attempts = ?2, started_at = ?3, \
                 ended_at = NULL WHERE idx = ?1",
            )?;
            let mut complete = prepare(
                "UPDATE steps SET state = 'succeeded', ended_at = ?2, output = ?3, \
                 last_error = NULL WHERE idx = ?1",
            )?;
            let mut fail = tx
                .prepare_cached(
                    "UPDATE steps SET state = ?2, ended_at = ?3, last_error = ?4 WHERE idx = ?1",
                )
                .map_err(&err)?;
            let mut note = prepare(
                "UPDATE steps SET state = ?2, note = ?3, ended_at = COALESCE(?4, ended_at) \
                 WHERE idx = ?1",
            )?;
            let mut heartbeat = tx
                .prepare_cached("UPDATE holder SET heartbeat_at = ?1")
                .map_err(&err)?;
            for op in ops {
                match op {
                    Op::Claim { step, attempt, at } => {
                        claim.execute(params![step, attempt, at]).map_err(&err)?;
                        event
                            .execute(params![at, step, "claim", attempt, None::<String>])
                            .map_err(&err)?;
                    }
                    Op::Complete {
                        step,
                        attempt,
                        at,
                        output,
                    } => {
                        complete.execute(params![step, at, output]).map_err(&err)?;
                        event
                            .execute(params![at, step, "complete", attempt, None::<String>])
                            .map_err(&err)?;
                    }
                    Op::Fail {
                        step,
                        attempt,
                        at,
                        error,
                        retryable,
                    } => {
                        let (state, name) = if *retryable {
                            ("pending", "retry")
                        } else {
                            ("failed", "fail")
                        };
                        fail.execute(params![step, state, at, error])
                            .map_err(&err)?;
                        event
                            .execute(params![at, step, name, attempt, error])
                            .map_err(&err)?;
                    }
                    Op::Block { step, by, at } => {
                        let by_id = ids.get(*by as usize).cloned().unwrap_or_default();
                        note.execute(params![step, "blocked", by_id, None::<i64>])
                            .map_err(&err)?;
                        event
                            .execute(params![at, step, "block", None::<u32>, by_id])
                            .map_err(&err)?;
                    }
                    Op::Requeue { step, at, reason } => {
                        note.execute(params![step, "pending", None::<String>, None::<i64>])
                            .map_err(&err)?;
                        event
                            .execute(params![at, step, "requeue", None::<u32>, reason])
                            .map_err(&err)?;
                    }
                    Op::Skip { step, at, reason } => {
                        note.execute(params![step, "skipped", reason, at])
                            .map_err(&err)?;
                        event
                            .execute(params![at, step, "skip", None::<u32>, reason])
                            .map_err(&err)?;
                    }
                    Op::Heartbeat { at } => {
                        heartbeat.execute(params![at]).map_err(&err)?;
                    }
                }
            }
        }
        tx.commit().map_err(&err)
    }

    fn load(&self) -> Result<Stored, LedgerError> {
        let (info, snapshot, blob): (String, String, Vec<u8>) = self
            .conn
            .query_row("SELECT info, snapshot, plan FROM run", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(sql_err(&self.path))?;
        let info: RunInfo = serde_json::from_str(&info).map_err(|e| self.corrupt(e))?;
        let snapshot: Snapshot = serde_json::from_str(&snapshot).map_err(|e| self.corrupt(e))?;
        let plan: Plan = postcard::from_bytes(&blob).map_err(|e| self.corrupt(e))?;
        drop(blob);
        // The plan is checked against its hash while the step rows are read: each takes about
        // a second for 2 million steps.
        let (hash, steps) = std::thread::scope(|scope| {
            let hashing = scope.spawn(|| crate::plan::rehash(&plan));
            let steps = self.step_records_for(plan.steps.len());
            let hash = hashing
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            (hash, steps)
        });
        if hash != info.plan_hash {
            return Err(self.corrupt("the stored plan does not match its recorded hash"));
        }
        let steps = steps?;
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

impl super::Store for SqliteLedger {
    fn shown(&self) -> String {
        self.path.display().to_string()
    }
    fn info(&self) -> Result<RunInfo, LedgerError> {
        Self::info(self)
    }
    fn step_records(&self) -> Result<Vec<StepRecord>, LedgerError> {
        Self::step_records(self)
    }
    fn holder(&self) -> Result<Option<(Holder, i64, i64)>, LedgerError> {
        Self::holder(self)
    }
    fn acquire(&mut self, me: &Holder) -> Result<(), LedgerError> {
        Self::acquire(self, me)
    }
    fn release(&mut self) -> Result<(), LedgerError> {
        Self::release(self)
    }
    fn record_policy(
        &mut self,
        policy: crate::dispatch::policy::Policy,
    ) -> Result<(), LedgerError> {
        Self::record_policy(self, policy)
    }
    fn record_session(
        &mut self,
        mode: super::SessionMode,
        argv: &[String],
        me: &Holder,
        plan_hash: &str,
    ) -> Result<(), LedgerError> {
        Self::record_session(self, mode, argv, me, plan_hash)
    }
    fn sessions(&self) -> Result<Vec<Session>, LedgerError> {
        Self::sessions(self)
    }
    fn events(&self) -> Result<Vec<EventRow>, LedgerError> {
        Self::events(self)
    }
    fn updates(&self) -> Result<Vec<UpdateRow>, LedgerError> {
        Self::updates(self)
    }
    fn record_update(&mut self, u: &UpdateRow) -> Result<(), LedgerError> {
        Self::record_update(self, u)
    }
    fn update_delivered(&mut self, key: &str, at: i64) -> Result<(), LedgerError> {
        Self::update_delivered(self, key, at)
    }
    fn reopen(&self) -> Result<Box<dyn super::Store>, LedgerError> {
        Ok(Box::new(SqliteLedger::open(&self.path)?))
    }
    fn staging(&self) -> PathBuf {
        crate::staging::dir_for(&self.path)
    }
    fn file(&self) -> Option<&Path> {
        Some(&self.path)
    }
}

/// Writes a complete new ledger at `path` and closes it (checkpointing its WAL into the file).
fn write_new(path: &Path, new: &NewRun) -> Result<(), LedgerError> {
    let mut conn = Connection::open(path).map_err(sql_err(path))?;
    let err = sql_err(path);
    let blob = postcard::to_allocvec(new.plan).map_err(|e| LedgerError::Corrupt {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let tx = conn.transaction().map_err(&err)?;
    tx.execute_batch(SCHEMA).map_err(&err)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(&err)?;
    let info = serde_json::to_string(&new.info).expect("run info serializes");
    let snapshot = serde_json::to_string(&new.snapshot).expect("snapshot serializes");
    tx.execute(
        "INSERT INTO run (id, info, snapshot, plan) VALUES (1, ?1, ?2, ?3)",
        params![info, snapshot, blob],
    )
    .map_err(&err)?;
    {
        let mut insert = tx
            .prepare("INSERT INTO steps (idx, id, state) VALUES (?1, ?2, 'pending')")
            .map_err(&err)?;
        for (i, step) in new.plan.steps.iter().enumerate() {
            insert.execute(params![i as i64, step.id]).map_err(&err)?;
        }
    }
    tx.commit().map_err(&err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(&err)?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(&err)?;
    conn.close().map_err(|(_, e)| err(e))?;
    // Make the file's contents durable before it is renamed into place.
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| LedgerError::Incompatible {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

/// Makes sure `path` is a drover ledger before anything is written to it (opening sets the
/// journal mode, which would change another program's database): a file of another kind is
/// named for what it is.
///
/// The file is looked at through SQLite only. Reading it with a plain file handle would be
/// wrong: closing any handle of a file drops every POSIX lock this process holds on it, and a
/// `run` that opens its ledger a second time would silently lose its own connection's locks.
/// Only a file SQLite refuses as a database is read directly, to say what it is instead.
fn identify(path: &Path) -> Result<(), LedgerError> {
    let incompatible = |reason: String| LedgerError::Incompatible {
        path: path.display().to_string(),
        reason,
    };
    if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
        return Err(incompatible("it is empty".into()));
    }
    // Read-only: another program's database (a hot journal, a WAL) is left exactly as it is.
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(sql_err(path))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sql_err(path))?;
    let version: i64 = match conn.pragma_query_value(None, "user_version", |r| r.get(0)) {
        Ok(v) => v,
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::NotADatabase =>
        {
            drop(conn);
            return Err(incompatible(not_a_database(path)));
        }
        Err(e) => return Err(sql_err(path)(e)),
    };
    let tables = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('steps', 'run')",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(sql_err(path))?;
    if tables < 2 {
        return Err(incompatible(
            "it is a SQLite database without a ledger's tables (a platform registry or shard?)"
                .into(),
        ));
    }
    if version != SCHEMA_VERSION {
        return Err(incompatible(format!(
            "schema version {version}, this drover reads {SCHEMA_VERSION}"
        )));
    }
    Ok(())
}

/// What a file SQLite refused is instead: "it is a restore request (TOML with [request]); …".
fn not_a_database(path: &Path) -> String {
    use std::io::Read;
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(64 * 1024).read_to_end(&mut head));
    match (read, crate::sniff::kind_of(&head)) {
        (Err(e), _) => format!("it is not a SQLite database, and cannot be read: {e}"),
        (Ok(_), crate::sniff::FileKind::Other | crate::sniff::FileKind::Sqlite) => {
            "it is not a SQLite database".into()
        }
        (Ok(_), kind) => format!("it is {}; {}", kind.describe(), kind.usage()),
    }
}

fn connect(path: &Path) -> Result<Connection, LedgerError> {
    let err = sql_err(path);
    let conn = Connection::open(path).map_err(&err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(&err)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(&err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(LedgerError::Incompatible {
            path: path.display().to_string(),
            reason: format!("cannot use WAL journal mode (got {mode})"),
        });
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(&err)?;
    Ok(conn)
}

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
    move |source| LedgerError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

/// One command that wrote to the ledger.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Session {
    pub at: i64,
    pub mode: String,
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub argv: Vec<String>,
    pub plan_hash: String,
}

/// One per-customer progress update (`crate::updates`), as the ledger keeps it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct UpdateRow {
    pub customer: String,
    /// 1 for the customer's first update of this run.
    pub seq: u32,
    /// The idempotency key the outbox and the webhook get: the same for every delivery of it.
    pub key: String,
    /// The site whose `notify` step's params say where it goes (the customer's first).
    pub site: String,
    pub decided_at: i64,
    /// The expected times it announced (ms since the epoch): p50 and p90.
    pub p50_at: i64,
    pub p90_at: i64,
    /// The message as sent (JSON).
    pub message: String,
    pub delivered_at: Option<i64>,
}

/// One recorded transition.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EventRow {
    pub seq: i64,
    pub at: i64,
    pub step: Option<String>,
    pub op: String,
    pub attempt: Option<u32>,
    pub detail: Option<String>,
}
