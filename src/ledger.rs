//! The ledger: the durable record of a run — what was planned, and every step transition — from
//! which a crashed or interrupted run resumes without redoing finished work.
//!
//! The scheduler speaks to it only through [`Ledger`], in batches of [`Op`]s, each batch one
//! atomic, durable commit (group commit). The operations are named for a future shared ledger
//! where several workers claim steps with leases: `Claim`, `Heartbeat`, `Complete`, `Fail`.
//!
//! - `sqlite`: the embedded default (one file, WAL, single writer guarded by `lock`).
//! - `memory`: nothing durable; for tests under paused time and to measure the cost of durability.

pub mod lock;
pub mod memory;
pub mod postgres;
pub mod sqlite;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plan::{Plan, StepIdx};

/// The state of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Blocked,
    Skipped,
}

impl StepState {
    pub const ALL: [StepState; 6] = [
        StepState::Pending,
        StepState::Running,
        StepState::Succeeded,
        StepState::Failed,
        StepState::Blocked,
        StepState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::Blocked => "blocked",
            StepState::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<StepState> {
        StepState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Succeeded or skipped: its dependents may run.
    pub fn is_done(self) -> bool {
        matches!(self, StepState::Succeeded | StepState::Skipped)
    }
}

/// One recorded transition. Times are milliseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// The step starts its `attempt`.
    Claim {
        step: StepIdx,
        attempt: u32,
        at: i64,
    },
    /// The holder is alive (and, for a shared ledger, keeps its leases).
    Heartbeat { at: i64 },
    /// The step succeeded, with its output (JSON) if any.
    Complete {
        step: StepIdx,
        attempt: u32,
        at: i64,
        output: Option<String>,
    },
    /// The attempt failed; `retryable` means another attempt follows (the step stays pending).
    Fail {
        step: StepIdx,
        attempt: u32,
        at: i64,
        error: String,
        retryable: bool,
    },
    /// The step cannot run because `by` failed.
    Block { step: StepIdx, by: StepIdx, at: i64 },
    /// An operator re-queued a failed or blocked step (`drover retry`), or a resume found it
    /// running when drover died.
    Requeue {
        step: StepIdx,
        at: i64,
        reason: String,
    },
    /// An operator skipped a failed step (`drover skip`), releasing its dependents.
    Skip {
        step: StepIdx,
        at: i64,
        reason: String,
    },
}

/// What the ledger holds for one step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepRecord {
    pub state: StepState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub output: Option<String>,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    /// For blocked steps, the step that failed; for skipped ones, the reason.
    pub note: Option<String>,
}

impl Default for StepRecord {
    fn default() -> Self {
        StepRecord {
            state: StepState::Pending,
            attempts: 0,
            last_error: None,
            output: None,
            started_at: None,
            ended_at: None,
            note: None,
        }
    }
}

impl StepRecord {
    /// Whether this step failed with [`crate::steps::StepError::Quarantine`]: its site's data
    /// is wrong and the site must not be reactivated.
    pub fn quarantined(&self) -> bool {
        self.state == StepState::Failed
            && self
                .last_error
                .as_deref()
                .is_some_and(|e| e.starts_with(QUARANTINE_PREFIX))
    }

    /// Applies one op to this record (the same rule in every ledger implementation).
    pub fn apply(&mut self, op: &Op, blocked_by: impl FnOnce(StepIdx) -> String) {
        match op {
            Op::Claim { attempt, at, .. } => {
                self.state = StepState::Running;
                self.attempts = *attempt;
                self.started_at = Some(*at);
                self.ended_at = None;
            }
            Op::Complete { at, output, .. } => {
                self.state = StepState::Succeeded;
                self.ended_at = Some(*at);
                self.output = output.clone();
                self.last_error = None;
            }
            Op::Fail {
                at,
                error,
                retryable,
                ..
            } => {
                self.state = if *retryable {
                    StepState::Pending
                } else {
                    StepState::Failed
                };
                self.ended_at = Some(*at);
                self.last_error = Some(error.clone());
            }
            Op::Block { by, .. } => {
                self.state = StepState::Blocked;
                self.note = Some(blocked_by(*by));
            }
            Op::Requeue { .. } => {
                // Attempt numbers keep counting across retries: the audit trail shows attempt 3,
                // not a second attempt 1. The retry budget is per session.
                self.state = StepState::Pending;
                self.note = None;
            }
            Op::Skip { at, reason, .. } => {
                self.state = StepState::Skipped;
                self.ended_at = Some(*at);
                self.note = Some(reason.clone());
            }
            Op::Heartbeat { .. } => {}
        }
    }
}

/// Facts about the run, recorded when the ledger is created.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    pub created_at: i64,
    pub drover_version: String,
    pub plan_hash: String,
    pub workflow_name: String,
    pub request_name: String,
    /// Pool capacities in force (the workflow's, with `--pools` overrides).
    pub pools: BTreeMap<String, u32>,
    pub max_parallel: usize,
    /// The policy the latest session ran (`auto` resolved); `None` in ledgers written before
    /// it was recorded, or before a session chose one. A resume under `auto` keeps it, and
    /// `status` forecasts with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::dispatch::policy::Policy>,
    /// Sites of the request left out by `--exclude-refused`, with why preflight refused each.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub excluded: BTreeMap<String, Vec<String>>,
    /// The registry this run's sites are claimed in (`target::SiteClaims`): every session
    /// claims them again before it runs, and they are released once every site is restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_in: Option<String>,
}

/// The inputs the plan was made from, so `resume` needs nothing but the ledger.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// File name → text: the workflow, the request and any CSV site list.
    pub files: BTreeMap<String, String>,
    pub workflow_file: String,
    pub request_file: String,
}

/// What a new ledger starts with.
pub struct NewRun<'a> {
    pub info: RunInfo,
    pub snapshot: Snapshot,
    pub plan: &'a Plan,
}

/// Everything a resume needs.
pub struct Stored {
    pub info: RunInfo,
    pub snapshot: Snapshot,
    pub plan: Plan,
    pub steps: Vec<StepRecord>,
}

/// Ledger failures.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error(
        "ledger {path} is held by process {pid} on host {host} (since {since}); it is still running"
    )]
    Held {
        path: String,
        pid: u32,
        host: String,
        since: String,
    },
    #[error("ledger {path} already holds a different plan (hash {existing}; this one is {new})")]
    DifferentPlan {
        path: String,
        existing: String,
        new: String,
    },
    #[error("ledger {path} does not exist")]
    Missing { path: String },
    #[error("ledger {path} is not a drover ledger, or is from an incompatible version: {reason}")]
    Incompatible { path: String, reason: String },
    #[error("the ledger writer stopped; transitions can no longer be recorded")]
    WriterStopped,
    #[error("ledger {path}: the stored plan is damaged: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("ledger {state}: {source}")]
    Postgres {
        state: String,
        source: ::postgres::Error,
    },
    #[error("--state {state}: {reason}")]
    Config { state: String, reason: String },
    /// This process's hold on a shared ledger lapsed and another took it: it must write nothing.
    #[error(
        "ledger {state}: this process no longer holds it (its hold lapsed and another process \
         took the run over); nothing more was recorded"
    )]
    Deposed { state: String },
}

/// Why a command opened a ledger for writing, as its audit trail records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionMode {
    Run,
    Resume,
    Drill,
    Retry,
    Skip,
    Clean,
}

impl SessionMode {
    /// The name stored in the ledger's `sessions.mode` and shown by `drover audit`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionMode::Run => "run",
            SessionMode::Resume => "resume",
            SessionMode::Drill => "drill",
            SessionMode::Retry => "retry",
            SessionMode::Skip => "skip",
            SessionMode::Clean => "clean",
        }
    }
}

/// How the recorded error of a step that quarantined its site begins: the ledger's encoding of
/// [`crate::steps::StepError::Quarantine`] (its `Display`). Read only through
/// [`StepRecord::quarantined`].
pub const QUARANTINE_PREFIX: &str = "quarantined: ";

/// A durable (or, for tests, in-memory) record of one run.
pub trait Ledger: Send {
    /// Records a batch of transitions as one atomic commit; when this returns Ok, they are
    /// durable.
    fn apply(&mut self, ops: &[Op]) -> Result<(), LedgerError>;
    /// The run, its inputs, its plan and every step's record.
    fn load(&self) -> Result<Stored, LedgerError>;
}

/// Everything a command does with a run's ledger, whichever database keeps it: a SQLite file
/// (`sqlite`) or a PostgreSQL database (`postgres`). The scheduler sees only [`Ledger`].
pub trait Store: Ledger {
    /// The ledger as messages name it: a path, or a URL without a password.
    fn shown(&self) -> String;
    /// The run's facts, without loading the plan.
    fn info(&self) -> Result<RunInfo, LedgerError>;
    /// Step records only, without decoding the plan.
    fn step_records(&self) -> Result<Vec<StepRecord>, LedgerError>;
    /// The current holder, when it took the ledger, and its last heartbeat.
    fn holder(&self) -> Result<Option<(lock::Holder, i64, i64)>, LedgerError>;
    /// Takes the single-writer lock, or says who holds it.
    fn acquire(&mut self, me: &lock::Holder) -> Result<(), LedgerError>;
    /// Gives the lock up.
    fn release(&mut self) -> Result<(), LedgerError>;
    /// How long this process's hold lasts without renewal, where the ledger is shared by
    /// machines (PostgreSQL); a file's holder is judged by its process instead.
    fn hold_for(&mut self, _lease: std::time::Duration) {}
    /// Records the policy this session runs.
    fn record_policy(&mut self, policy: crate::dispatch::policy::Policy)
    -> Result<(), LedgerError>;
    /// Records a command that opened the ledger for writing.
    fn record_session(
        &mut self,
        mode: SessionMode,
        argv: &[String],
        me: &lock::Holder,
        plan_hash: &str,
    ) -> Result<(), LedgerError>;
    fn sessions(&self) -> Result<Vec<sqlite::Session>, LedgerError>;
    fn events(&self) -> Result<Vec<sqlite::EventRow>, LedgerError>;
    /// Per-customer updates (`crate::updates`).
    fn updates(&self) -> Result<Vec<sqlite::UpdateRow>, LedgerError>;
    fn record_update(&mut self, u: &sqlite::UpdateRow) -> Result<(), LedgerError>;
    fn update_delivered(&mut self, key: &str, at: i64) -> Result<(), LedgerError>;
    /// Another connection to the same ledger (the run's writer thread has its own).
    fn reopen(&self) -> Result<Box<dyn Store>, LedgerError>;
    /// Where the run's fetched backups are staged: beside a SQLite file
    /// (`restore.db.staging`), or `<ledger name>.staging` in the current directory.
    fn staging(&self) -> std::path::PathBuf;
    /// The SQLite file, for what reads one directly.
    fn file(&self) -> Option<&std::path::Path>;
    /// The PostgreSQL ledger's address, for the work queue of `drover worker`.
    fn postgres(&self) -> Option<&postgres::Address> {
        None
    }
    /// Which worker ran each attempt, when workers ran the steps (`crate::workers`); empty
    /// when the ledger's holder ran them all (its sessions say who that was).
    fn attempts(&self) -> Result<Vec<AttemptRow>, LedgerError> {
        Ok(Vec::new())
    }
    /// Whether `drover stop` asked the run to stop (a ledger shared between machines only).
    fn stop_asked(&self) -> Result<Option<StopMode>, LedgerError> {
        Ok(None)
    }
    /// Asks the run's holder, wherever it runs, to stop (`drover stop`).
    fn ask_stop(&mut self, _mode: StopMode, _by: &str) -> Result<(), LedgerError> {
        Err(LedgerError::Config {
            state: self.shown(),
            reason: "only a run on a PostgreSQL ledger is stopped this way".into(),
        })
    }
    /// Forgets a stop asked of an earlier session (a new session starts).
    fn clear_stop(&mut self) -> Result<(), LedgerError> {
        Ok(())
    }
}

/// One attempt of a step on a worker (`drover_attempts`).
#[derive(Clone, Debug, Serialize)]
pub struct AttemptRow {
    pub step: String,
    pub attempt: u32,
    /// `host:pid`.
    pub worker: String,
    pub claimed_at: i64,
    pub ended_at: Option<i64>,
    /// `done`, `failed`, `fenced` (the result came after the step stopped being this worker's),
    /// or `null` while it runs (or when the worker died).
    pub outcome: Option<String>,
}

/// How `drover stop` asks a run to stop: as a first Ctrl-C does (no new steps; those in flight
/// finish), or as a second one does (those in flight are cancelled too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    Drain,
    Abort,
}

/// Whether `--state` names an existing ledger.
pub fn exists(state: &std::path::Path) -> Result<bool, LedgerError> {
    match state.to_str().filter(|s| postgres::is_url(s)) {
        Some(url) => match postgres::PostgresLedger::open(&postgres::Address::parse(url)?) {
            Ok(_) => Ok(true),
            Err(LedgerError::Missing { .. }) => Ok(false),
            Err(e) => Err(e),
        },
        None => Ok(state.exists()),
    }
}

/// Opens the ledger `--state` names: a `postgres://` URL, or a SQLite file.
/// Where a run on `state` stages what it fetches (its `Store::staging`), before it is opened.
pub fn staging_of(state: &std::path::Path) -> Result<std::path::PathBuf, LedgerError> {
    match state.to_str().filter(|s| postgres::is_url(s)) {
        Some(url) => Ok(postgres::Address::parse(url)?.staging()),
        None => Ok(crate::staging::dir_for(state)),
    }
}

pub fn open(state: &std::path::Path) -> Result<Box<dyn Store>, LedgerError> {
    match state.to_str().filter(|s| postgres::is_url(s)) {
        Some(url) => Ok(Box::new(postgres::PostgresLedger::open(
            &postgres::Address::parse(url)?,
        )?)),
        None => Ok(Box::new(sqlite::SqliteLedger::open(state)?)),
    }
}

/// Creates the ledger `--state` names for a new run.
pub fn create(state: &std::path::Path, new: &NewRun) -> Result<Box<dyn Store>, LedgerError> {
    match state.to_str().filter(|s| postgres::is_url(s)) {
        Some(url) => Ok(Box::new(postgres::PostgresLedger::create(
            &postgres::Address::parse(url)?,
            new,
        )?)),
        None => Ok(Box::new(sqlite::SqliteLedger::create(state, new)?)),
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// RFC 3339 for a millisecond timestamp.
pub fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}
