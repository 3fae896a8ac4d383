//! Backups in object storage: the narrow [`BackupStore`] trait (list snapshots, read a manifest,
//! read an object or a byte range), its two implementations, the documented layout, point-in-time
//! selection, and verified, parallel download.
//!
//! - `layout`: `<prefix>/<unit>/<snapshot time>/{manifest.json, objects…}` and key parsing;
//! - `manifest`: the manifest format (one file owns it);
//! - `local`: a directory (`file:///path` or a plain path), the embedded default;
//! - `s3`: `s3://bucket/prefix` through aws-sdk-s3 — the only module that imports the AWS SDK;
//! - `catalog`: the newest complete snapshot at or before a point in time, and the RPO;
//! - `check`: every fetch of a plan has a snapshot in its window (before anything runs);
//! - `download`: ranged, parallel, verified, atomic, idempotent fetch of one snapshot;
//! - `writer`: one snapshot written into a local store, its manifest last.

pub mod catalog;
pub mod check;
pub mod download;
pub mod layout;
pub mod local;
pub mod manifest;
pub mod s3;
pub mod writer;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

pub use manifest::Manifest;

/// One snapshot directory found in a store.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SnapshotEntry {
    pub unit: String,
    /// The directory name, e.g. `20220405T073000Z`.
    pub snapshot: String,
    pub time: DateTime<Utc>,
    /// Its manifest exists (manifests are written last).
    pub complete: bool,
    /// Data objects (the manifest excluded) and their total size.
    pub objects: usize,
    pub bytes: u64,
    /// Size of the manifest, when complete (lets a reader detect a short read of it).
    #[serde(skip)]
    pub manifest_bytes: u64,
}

/// Bytes read from a store, in the chunks they arrived in (no copy into one buffer).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Body(pub Vec<Bytes>);

impl Body {
    pub fn len(&self) -> u64 {
        self.0.iter().map(|c| c.len() as u64).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One contiguous buffer (copies when there is more than one chunk).
    pub fn to_bytes(&self) -> Bytes {
        match self.0.as_slice() {
            [one] => one.clone(),
            chunks => chunks.concat().into(),
        }
    }
}

/// What went wrong talking to a store.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Worth retrying: 5xx, SlowDown, timeouts, resets, truncated bodies.
    #[error("{what}: {message} (transient)")]
    Transient { what: String, message: String },
    #[error("{what}: not found")]
    NotFound { what: String },
    #[error("{what}: {message}")]
    Permanent { what: String, message: String },
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient { .. })
    }
}

/// A place backups are read from. Implementations only read: drover never writes to or deletes
/// from a backup store.
#[async_trait]
pub trait BackupStore: Send + Sync {
    /// Every snapshot under `unit`, or in the whole store when `None`, oldest first per unit.
    async fn list_snapshots(&self, unit: Option<&str>) -> Result<Vec<SnapshotEntry>, StoreError>;

    /// Bytes `range` of an object of a snapshot (all of it when `None`), as received.
    async fn read(
        &self,
        unit: &str,
        snapshot: &str,
        object: &str,
        range: Option<Range<u64>>,
    ) -> Result<Body, StoreError>;

    /// Where this store is (`s3://bucket/prefix`, or a directory), for messages; an object's
    /// full name is `<describe>/<unit>/<snapshot>/<object>`.
    fn describe(&self) -> String;
}

/// Opens the store a source string names: `s3://bucket/prefix`, `file:///path`, or a path
/// (relative paths are taken from `base`).
pub async fn open(source: &str, base: &Path) -> Result<Arc<dyn BackupStore>, StoreError> {
    if let Some(rest) = source.strip_prefix("s3://") {
        let url = s3::S3Url::parse(rest).map_err(|message| StoreError::Permanent {
            what: source.to_owned(),
            message,
        })?;
        return Ok(Arc::new(s3::S3Store::connect(url).await));
    }
    let path = source.strip_prefix("file://").unwrap_or(source);
    let path = if Path::new(path).is_absolute() {
        Path::new(path).to_path_buf()
    } else {
        base.join(path)
    };
    Ok(Arc::new(local::LocalStore::new(path)))
}
