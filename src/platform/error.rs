//! What can go wrong on the platform, with the site, product and file involved, and whether
//! trying again can help.

use std::path::PathBuf;

use rusqlite::ErrorCode;

use super::SiteState;

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error(
        "{} site{} held by another run: {}",
        held.len(),
        if held.len() == 1 { " is" } else { "s are" },
        held.iter().map(|(s, c)| format!("{s} by {}", c.run_id)).collect::<Vec<_>>().join(", ")
    )]
    Claimed { held: Vec<(String, super::Claim)> },
    #[error("{}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} already holds a platform; build into an empty directory", dir.display())]
    AlreadyBuilt { dir: PathBuf },
    #[error("{} is not a platform (no registry.db); build one first", dir.display())]
    NotAPlatform { dir: PathBuf },
    #[error("site '{site}' is not in the registry")]
    UnknownSite { site: String },
    #[error("site '{site}' has no product '{product}'")]
    UnknownProduct { site: String, product: String },
    #[error("site '{site}' is {state}: refusing to {action} a live site")]
    SiteActive {
        site: String,
        state: SiteState,
        action: &'static str,
    },
    #[error("site '{site}' is {state}: cannot {action}")]
    WrongState {
        site: String,
        state: SiteState,
        action: &'static str,
    },
    #[error("snapshot {}: {reason}", path.display())]
    BadSnapshot { path: PathBuf, reason: String },
    #[error("contacts export {}: {reason}", path.display())]
    BadContacts { path: PathBuf, reason: String },
    #[error("{} already exists; a snapshot is never overwritten", path.display())]
    SnapshotExists { path: PathBuf },
    #[error("registry entry of site '{site}' is damaged: {reason}")]
    BadRegistry { site: String, reason: String },
    #[error(transparent)]
    Invalid(#[from] ValidationFailure),
    /// The platform's shards on PostgreSQL.
    #[error(transparent)]
    Postgres(#[from] crate::pgslice::SliceError),
}

impl PlatformError {
    /// Whether the same call may succeed later: a busy database or a file system hiccup. Refusals,
    /// bad inputs and failed validations are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            PlatformError::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } => matches!(
                e.code,
                // Interrupted: the step's timeout or Ctrl-C stopped it (`Platform::stop_flag`).
                ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::OperationInterrupted
            ),
            PlatformError::Io { .. } => true,
            PlatformError::Postgres(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// A restored product that does not match its backup, or breaks an invariant of the platform.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("validation of {site}/{product} failed: {reason}")]
pub struct ValidationFailure {
    pub site: String,
    pub product: String,
    pub reason: String,
}
