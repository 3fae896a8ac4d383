//! The reference multi-tenant SaaS platform that drover's demo deletes and restores: a registry of
//! sites, every product's data on shared SQLite shards, a derived full-text index per shard, and
//! attachments on disk. Synchronous (rusqlite). A [`Platform`] is only a directory: every
//! operation opens its own connections, so one handle can be shared by concurrent restore steps
//! (SQLite's locks and a busy timeout serialise writers to the same file).
//!
//! # On-disk layout
//!
//! ```text
//! <dir>/registry.db                      SQLite, WAL: the control plane
//!     sites(id, customer, tier, state, products, shards, deleted_at, retained_until, reactivated_at)
//!         products: JSON list; shards: JSON {product: shard}
//!     contacts(site, name, email, role)      key contacts; PRIMARY KEY (site, email)
//!     events(seq, at, site, kind, detail)    deleted, soft-deleted, quarantined, validated, reactivated
//!     outbox(seq, at, site, key, message)    notifications (JSON); UNIQUE (site, key)
//!     apps(id, site, product)                product instances, `app-` + 12 hex digits
//!     validations(site, product, at)         products validated since their last restore
//! <dir>/shards/<shard>.db                one per product shard (`wiki-3`), many sites' rows, WAL
//!     identity       users(site, id, name, email)
//!     issues         issues(site, id, title, body), comments(site, id, issue_id, body)
//!     wiki           pages(site, id, title, body)
//!     service-desk   tickets(site, id, issue_id, subject)   issue_id: an issue of the same site
//!     alerts         schedules(site, id, name, rule)
//!     status-page    components(site, id, name, status)
//!     fts            FTS5 (site UNINDEXED, doc UNINDEXED, text): derived, one entry per row,
//!                    doc = `<table>/<id>`
//! <dir>/attachments/<site>/<product>/<file>   a few small files per site and product
//! ```
//!
//! Every product table has the primary key `(site, id)`. Times are Unix seconds (UTC).
//!
//! # Site states
//!
//! `active` → `soft-deleted` (data kept, retained 14 days) or `deleted` (data gone). A restore
//! operation moves a deleted or soft-deleted site to `restoring`; once every product of the site
//! validated, it is `validated`; `reactivate` makes it `active-again`, exactly once. A failed
//! validation or a site's bad backup is followed by `quarantine` → `quarantined`, which a later
//! restore leaves in place until every product validated again. No restore operation touches
//! an `active` or `active-again` site.
//!
//! # Backups
//!
//! [`Platform::backup`] writes the layout of docs/backups.md: `<store>/<shard>/<time>/shard.sqlite`
//! (a `VACUUM INTO` copy), `<store>/<site>/<product>/<time>/attachments.tar` (`"unpack": "tar"`)
//! and `<store>/<site>/contacts/<time>/contacts.json`, each snapshot's `manifest.json` last.

mod backup;
mod build;
mod claims;
mod copy;
mod error;
mod fingerprint;
mod incident;
mod lifecycle;
mod postgres;
mod query;
mod registry;
mod request;
mod restore;
mod schema;
mod validate;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

pub use backup::{BackupReport, ContactsExport};
pub use claims::Claim;
pub use error::{PlatformError, ValidationFailure};
pub use fingerprint::{ProductFingerprint, SiteFingerprint};
pub use incident::{DeleteMode, IncidentReport, RETENTION};
pub use postgres::POSTGRES_URL;
pub use query::{Event, OutboxMessage};
pub use registry::{Contact, Identity, SiteRecord, SiteState};
pub use restore::{AttachmentRestore, TenantRestore};

/// The registry's file name inside a platform directory.
pub const REGISTRY: &str = "registry.db";

/// How long a writer waits for another writer of the same file before giving up (retryable).
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a waiting writer looks again (and checks whether it was told to stop).
const BUSY_POLL: Duration = Duration::from_millis(10);
/// SQLite virtual-machine instructions between two checks of the stop flag in a long query.
const STOP_CHECK_OPS: i32 = 10_000;

/// A platform directory (see the module documentation for its layout).
#[derive(Clone, Debug)]
pub struct Platform {
    dir: PathBuf,
    /// Set by [`Platform::stop_flag`]'s owner to abandon the current operation: a wait for a
    /// busy database or a long query ends with an error and its transaction rolls back.
    stop: Option<Arc<AtomicBool>>,
}

impl Platform {
    /// Opens an existing platform.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Platform, PlatformError> {
        let dir = dir.into();
        if !dir.join(REGISTRY).is_file() {
            return Err(PlatformError::NotAPlatform { dir });
        }
        Ok(Platform { dir, stop: None })
    }

    /// A flag that, once set, makes this handle's SQLite work give up: a wait for another
    /// writer stops at its next poll and a running statement at its next check, with an error
    /// (the transaction rolls back; every platform operation is one transaction, so nothing is
    /// left half done). Step kinds set it when their timeout fires or the run is cancelled.
    pub fn stop_flag(&mut self) -> Arc<AtomicBool> {
        self.stop.get_or_insert_with(Default::default).clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The live database file of a shard.
    pub fn shard_path(&self, shard: &str) -> PathBuf {
        self.dir.join("shards").join(format!("{shard}.db"))
    }

    /// The live attachments directory of a site's product.
    pub fn attachments_dir(&self, site: &str, product: &str) -> PathBuf {
        self.dir.join("attachments").join(site).join(product)
    }

    fn registry_path(&self) -> PathBuf {
        self.dir.join(REGISTRY)
    }

    fn registry(&self) -> Result<Connection, PlatformError> {
        self.stoppable(open_db(&self.registry_path(), false)?)
    }

    /// A connection that can only read: preflight and drills must change nothing.
    fn registry_read_only(&self) -> Result<Connection, PlatformError> {
        open_db_read_only(&self.registry_path())
    }

    fn shard(&self, shard: &str) -> Result<Connection, PlatformError> {
        self.stoppable(open_db(&self.shard_path(shard), false)?)
    }

    /// Makes a connection honour the stop flag (see [`Platform::stop_flag`]). The connection
    /// must be used on the thread that opened it, as every platform operation does.
    fn stoppable(&self, mut conn: Connection) -> Result<Connection, PlatformError> {
        let Some(stop) = self.stop.clone() else {
            return Ok(conn);
        };
        STOP.with(|s| *s.borrow_mut() = Some(stop.clone()));
        let path = conn.path().map(PathBuf::from).unwrap_or_default();
        conn.busy_handler(Some(wait_unless_stopped)).db(&path)?;
        conn.progress_handler(STOP_CHECK_OPS, Some(move || stop.load(Ordering::Relaxed)))
            .db(&path)?;
        Ok(conn)
    }
}

thread_local! {
    /// The stop flag of the platform operation running on this thread (SQLite's busy handler
    /// is a plain function, so it finds its flag here).
    static STOP: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

/// SQLite's busy handler for stoppable connections: waits like `busy_timeout` does, but gives
/// up at once when the operation was told to stop.
fn wait_unless_stopped(tries: i32) -> bool {
    let stopped = STOP.with(|s| {
        s.borrow()
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    });
    let waited = BUSY_POLL.saturating_mul(tries.max(0) as u32);
    if stopped || waited >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(BUSY_POLL);
    true
}

/// Opens (or, with `create`, creates) a database in WAL mode with a busy timeout.
fn open_db(path: &Path, create: bool) -> Result<Connection, PlatformError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).db(path)?;
    conn.busy_timeout(BUSY_TIMEOUT).db(path)?;
    conn.pragma_update(None, "journal_mode", "WAL").db(path)?;
    conn.pragma_update(None, "synchronous", "NORMAL").db(path)?;
    Ok(conn)
}

/// Opens a database for reading only, with a busy timeout.
fn open_db_read_only(path: &Path) -> Result<Connection, PlatformError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).db(path)?;
    conn.busy_timeout(BUSY_TIMEOUT).db(path)?;
    Ok(conn)
}

/// A write transaction that takes the write lock at once: a deferred one that reads first and
/// then writes can fail with "busy" without waiting, which `IMMEDIATE` avoids.
fn write_tx<'c>(conn: &'c mut Connection, path: &Path) -> Result<Transaction<'c>, PlatformError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .db(path)
}

/// Attaches the path to an error: `.db(path)` for SQLite, `.io(path)` for the file system.
trait Context<T> {
    fn db(self, path: &Path) -> Result<T, PlatformError>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn db(self, path: &Path) -> Result<T, PlatformError> {
        self.map_err(|source| PlatformError::Sqlite {
            path: path.to_owned(),
            source,
        })
    }
}

trait IoContext<T> {
    fn io(self, path: &Path) -> Result<T, PlatformError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io(self, path: &Path) -> Result<T, PlatformError> {
        self.map_err(|source| PlatformError::Io {
            path: path.to_owned(),
            source,
        })
    }
}
