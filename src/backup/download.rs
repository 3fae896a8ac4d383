//! Fetching one snapshot into a directory, verified: the newest complete snapshot at or before the
//! target time, its manifest checked against the unit (and site) being restored, every object
//! downloaded by parallel ranged reads into a temporary file, checked for size and SHA-256, and
//! only then renamed to its final name. Objects already present and verified are not fetched
//! again, so a repeated or resumed fetch finishes what is missing.

use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::catalog::{self, NoSnapshot};
use super::manifest::{Manifest, ObjectEntry};
use super::{BackupStore, Body, StoreError};

/// Bytes gathered before each write to the staging file.
const WRITE_BUFFER: usize = 1 << 20;

/// How to download.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Objects larger than this are read in ranges of this size, in parallel.
    pub part_size: u64,
    /// Reads in flight at once, across all objects of the snapshot.
    pub concurrency: usize,
    /// Quick retries of one read on a transient error, before the step's own retry policy.
    pub read_retries: u32,
    /// Downloads of an object whose digest did not match before it counts as corrupt (bytes can be
    /// damaged in transit; a stored object that is damaged stays damaged).
    pub verify_attempts: u32,
    /// How far before the target time a snapshot may be.
    pub window: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            part_size: 8 << 20,
            concurrency: 8,
            read_retries: 5,
            verify_attempts: 3,
            window: Duration::from_secs(86_400),
        }
    }
}

/// What to fetch, and what it must be.
pub struct Target<'a> {
    pub unit: &'a str,
    /// The site being restored, for a site's own unit: its manifest must name it.
    pub site: Option<&'a str>,
    pub point_in_time: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    NoSnapshot(#[from] NoSnapshot),
    #[error("checksum mismatch for {key}: expected sha256 {expected}, got {actual}")]
    Checksum {
        key: String,
        expected: String,
        actual: String,
    },
    /// Every download of the object gave a different wrong digest: the bytes are being damaged
    /// on the way (a stored object that is damaged reads the same wrong way every time).
    #[error(
        "{key} read differently on each of {attempts} downloads, never matching sha256 {expected}: \
         damaged in transit; worth another attempt"
    )]
    Unstable {
        key: String,
        expected: String,
        attempts: usize,
    },
    #[error("tenant check failed for {key}: {message}; refusing to restore another tenant's data")]
    Tenant { key: String, message: String },
    #[error("archive {key}: {message}")]
    Archive { key: String, message: String },
    #[error("staging {path}: {message}")]
    Local { path: String, message: String },
    #[error("cancelled")]
    Cancelled,
}

impl FetchError {
    /// The backup itself is bad (an object that does not match its manifest, another tenant's
    /// manifest, a broken archive): restoring from it must not go ahead.
    pub fn is_bad_data(&self) -> bool {
        matches!(
            self,
            FetchError::Checksum { .. } | FetchError::Tenant { .. } | FetchError::Archive { .. }
        )
    }

    /// Worth another attempt of the step.
    pub fn is_retryable(&self) -> bool {
        match self {
            FetchError::Store(e) => e.is_transient(),
            FetchError::Local { .. } | FetchError::Cancelled | FetchError::Unstable { .. } => true,
            _ => false,
        }
    }
}

/// What a fetch did; the fetch step's output.
#[derive(Clone, Debug, Serialize)]
pub struct FetchReport {
    pub unit: String,
    pub snapshot: String,
    pub snapshot_time: DateTime<Utc>,
    /// Data loss this snapshot implies: target − snapshot time, in seconds.
    pub rpo_s: u64,
    pub dir: String,
    pub objects: usize,
    pub bytes: u64,
    /// Objects already present and verified, not downloaded again.
    pub reused: usize,
    pub downloaded_bytes: u64,
}

/// Fetches the right snapshot of `target.unit` into `dest`.
pub async fn fetch(
    store: &dyn BackupStore,
    target: &Target<'_>,
    dest: &Path,
    opts: &FetchOptions,
    cancel: &CancellationToken,
) -> Result<FetchReport, FetchError> {
    let snapshots = store.list_snapshots(Some(target.unit)).await?;
    let choice = catalog::choose(target.unit, &snapshots, target.point_in_time, opts.window)?;
    let snap = &choice.entry.snapshot;
    let permits = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let ctx = ObjectCtx {
        store,
        unit: target.unit,
        snapshot: snap,
        dest,
        opts,
        permits,
        cancel,
    };
    let manifest = ctx.manifest(choice.entry.manifest_bytes).await?;
    check_tenant(
        &manifest,
        target,
        &format!("{}/{}/{snap}", store.describe(), target.unit),
    )?;
    std::fs::create_dir_all(dest).map_err(|e| local(dest, e))?;
    let results: Vec<(bool, u64)> =
        futures::future::try_join_all(manifest.objects.iter().map(|o| ctx.object(o))).await?;
    sync_dir(dest);
    Ok(FetchReport {
        unit: target.unit.to_owned(),
        snapshot: snap.clone(),
        snapshot_time: choice.entry.time,
        rpo_s: choice.rpo.as_secs(),
        dir: dest.display().to_string(),
        objects: manifest.objects.len(),
        bytes: manifest.objects.iter().map(|o| o.size).sum(),
        reused: results.iter().filter(|r| r.0).count(),
        downloaded_bytes: results.iter().map(|r| r.1).sum(),
    })
}

/// One tenant's data must never land in another's site.
fn check_tenant(m: &Manifest, target: &Target<'_>, key: &str) -> Result<(), FetchError> {
    let fail = |message: String| {
        Err(FetchError::Tenant {
            key: format!("{key}/manifest.json"),
            message,
        })
    };
    if m.unit != target.unit {
        return fail(format!(
            "the manifest is for unit '{}', not '{}'",
            m.unit, target.unit
        ));
    }
    match (target.site, m.site.as_deref()) {
        (Some(want), Some(got)) if want != got => {
            fail(format!("the manifest is for site {got}, not {want}"))
        }
        (Some(want), None) => fail(format!(
            "the manifest names no site, but site {want} is being restored"
        )),
        (None, Some(got)) => fail(format!(
            "the manifest is site {got}'s own backup, not a shared unit"
        )),
        _ => Ok(()),
    }
}

struct ObjectCtx<'a> {
    store: &'a dyn BackupStore,
    unit: &'a str,
    snapshot: &'a str,
    dest: &'a Path,
    opts: &'a FetchOptions,
    permits: Arc<Semaphore>,
    cancel: &'a CancellationToken,
}

impl ObjectCtx<'_> {
    fn key(&self, o: &ObjectEntry) -> String {
        self.key_of(&o.name)
    }

    fn key_of(&self, name: &str) -> String {
        format!(
            "{}/{}/{}/{}",
            self.store.describe(),
            self.unit,
            self.snapshot,
            name
        )
    }

    /// Reads the manifest twice and compares: it is small, and a manifest damaged in transit
    /// would otherwise make every object look corrupt. A short or differing read is transient.
    async fn manifest(&self, size: u64) -> Result<Manifest, FetchError> {
        let key = self.key_of(super::layout::MANIFEST);
        if size > super::manifest::MAX_BYTES {
            return Err(StoreError::Permanent {
                what: key,
                message: format!(
                    "the manifest is {size} bytes, over drover's limit of {}",
                    crate::util::bytes_text(super::manifest::MAX_BYTES)
                ),
            }
            .into());
        }
        let mut tries = 0;
        loop {
            let first = self
                .read_range(super::layout::MANIFEST, 0..size)
                .await?
                .to_bytes();
            let second = self
                .read_range(super::layout::MANIFEST, 0..size)
                .await?
                .to_bytes();
            if first == second {
                return Manifest::parse(&first).map_err(|e| {
                    StoreError::Permanent {
                        what: key,
                        message: e.to_string(),
                    }
                    .into()
                });
            }
            tries += 1;
            if tries > self.opts.read_retries {
                return Err(StoreError::Transient {
                    what: key,
                    message: "the manifest read differently twice".into(),
                }
                .into());
            }
        }
    }

    /// Returns (reused, bytes downloaded).
    async fn object(&self, o: &ObjectEntry) -> Result<(bool, u64), FetchError> {
        let path = self.dest.join(&o.name);
        if verified(&path, o).await? {
            self.unpack(o, &path).await?;
            return Ok((true, 0));
        }
        let part = part_path(&path);
        let mut digests = Vec::new();
        for _ in 0..self.opts.verify_attempts.max(1) {
            let actual = self.download(o, &part).await?;
            if actual == o.sha256 {
                std::fs::rename(&part, &path).map_err(|e| local(&path, e))?;
                self.unpack(o, &path).await?;
                return Ok((false, o.size));
            }
            digests.push(actual);
        }
        let _ = std::fs::remove_file(&part);
        // The same wrong digest every time: the stored object is damaged (the backup is bad).
        // Different ones: the bytes were damaged on the way, and another attempt may succeed.
        let key = self.key(o);
        let expected = o.sha256.clone();
        if digests.iter().all(|d| *d == digests[0]) {
            let actual = digests.pop().unwrap_or_default();
            return Err(FetchError::Checksum {
                key,
                expected,
                actual,
            });
        }
        Err(FetchError::Unstable {
            key,
            expected,
            attempts: digests.len(),
        })
    }

    /// Writes the object into `part` by parallel ranged reads, hashing the bytes in order as they
    /// are written (no second pass over the file), syncs it, and returns its SHA-256.
    async fn download(&self, o: &ObjectEntry, part: &Path) -> Result<String, FetchError> {
        if let Some(parent) = part.parent() {
            std::fs::create_dir_all(parent).map_err(|e| local(parent, e))?;
        }
        let file = std::fs::File::create(part).map_err(|e| local(part, e))?;
        let ps = self.opts.part_size.max(1);
        let ranges: Vec<Range<u64>> = (0..o.size.div_ceil(ps))
            .map(|i| i * ps..((i + 1) * ps).min(o.size))
            .collect();
        // `buffered` keeps `concurrency` reads in flight but yields them in order, so the digest
        // can be computed while writing.
        let mut parts = futures::stream::iter(ranges)
            .map(|r| self.read_range(&o.name, r))
            .buffered(self.opts.concurrency.max(1));
        let mut hasher = Sha256::new();
        // Servers often send small chunks (s3s-fs: 4 KiB); gathering them into 1 MiB writes
        // saves hundreds of thousands of syscalls per GiB.
        let mut pending: Vec<u8> = Vec::with_capacity(WRITE_BUFFER);
        let mut offset = 0u64;
        while let Some(body) = parts.try_next().await? {
            for chunk in &body.0 {
                hasher.update(chunk);
                if pending.len() + chunk.len() > WRITE_BUFFER && !pending.is_empty() {
                    file.write_all_at(&pending, offset)
                        .map_err(|e| local(part, e))?;
                    offset += pending.len() as u64;
                    pending.clear();
                }
                pending.extend_from_slice(chunk);
            }
        }
        file.write_all_at(&pending, offset)
            .map_err(|e| local(part, e))?;
        file.sync_all().map_err(|e| local(part, e))?;
        Ok(hex::encode(hasher.finalize()))
    }

    /// One range, retried quickly on transient errors; a short body is transient.
    async fn read_range(&self, name: &str, r: Range<u64>) -> Result<Body, FetchError> {
        let mut delay = Duration::from_millis(50);
        let mut tries = 0;
        loop {
            let result = {
                let _permit = self
                    .permits
                    .acquire()
                    .await
                    .expect("semaphore never closed");
                tokio::select! {
                    _ = self.cancel.cancelled() => return Err(FetchError::Cancelled),
                    r = self.store.read(self.unit, self.snapshot, name, Some(r.clone())) => r,
                }
            };
            let err = match result {
                Ok(b) if b.len() == r.end - r.start => return Ok(b),
                Ok(b) => StoreError::Transient {
                    what: self.key_of(name),
                    message: format!(
                        "short read: {} of {} bytes at offset {}",
                        b.len(),
                        r.end - r.start,
                        r.start
                    ),
                },
                Err(e) => e,
            };
            tries += 1;
            if !err.is_transient() || tries > self.opts.read_retries {
                return Err(err.into());
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return Err(FetchError::Cancelled),
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    async fn unpack(&self, o: &ObjectEntry, archive: &Path) -> Result<(), FetchError> {
        if o.unpack.as_deref() != Some("tar") {
            return Ok(());
        }
        let (path, key) = (archive.to_path_buf(), self.key(o));
        let unpacked = tokio::task::spawn_blocking(move || unpack_tar(&path))
            .await
            .map_err(|e| local(archive, std::io::Error::other(e)))?;
        match unpacked {
            Ok(()) => Ok(()),
            Err(Unpack::Bad(message)) => Err(FetchError::Archive { key, message }),
            Err(Unpack::Local(path, e)) => Err(local(&path, e)),
        }
    }
}

/// Whether `path` already holds the object (size, then SHA-256).
async fn verified(path: &Path, o: &ObjectEntry) -> Result<bool, FetchError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == o.size => {
            Ok(sha256_file(path).await.map_err(|e| local(path, e))? == o.sha256)
        }
        Ok(_) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(local(path, e)),
    }
}

/// `<name>.drover-part` beside the final file.
fn part_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".drover-part");
    path.with_file_name(name)
}

/// SHA-256 of a file, lowercase hex, computed off the async threads.
pub async fn sha256_file(path: &Path) -> std::io::Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hex::encode(hasher.finalize()))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Why an unpack failed: the archive itself is bad (its bytes already matched the manifest, so
/// the backup is), or the local file system failed (worth another attempt).
enum Unpack {
    Bad(String),
    Local(PathBuf, std::io::Error),
}

/// Unpacks `<archive>` into `<archive>.d/`, refusing entries that are absolute, contain `..`, or
/// are links or devices. Idempotent: a completed unpack is marked and not repeated.
fn unpack_tar(archive: &Path) -> Result<(), Unpack> {
    let fs = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| Unpack::Local(path, e)
    };
    let bad = |e: std::io::Error| Unpack::Bad(e.to_string());
    let mut into = archive.as_os_str().to_os_string();
    into.push(".d");
    let into = PathBuf::from(into);
    // The marker sits beside the directory, so the directory holds exactly the archive's files.
    let mut marker = into.as_os_str().to_os_string();
    marker.push(".drover-unpacked");
    let marker = PathBuf::from(marker);
    if marker.exists() {
        return Ok(());
    }
    let tmp = part_path(&into);
    for partial in [&tmp, &into] {
        if partial.exists() {
            // Drover's own unfinished unpack from an interrupted attempt (no marker yet).
            std::fs::remove_dir_all(partial).map_err(fs(partial))?;
        }
    }
    std::fs::create_dir_all(&tmp).map_err(fs(&tmp))?;
    let file = std::fs::File::open(archive).map_err(fs(archive))?;
    let mut tar = tar::Archive::new(file);
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        if path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(Unpack::Bad(format!(
                "entry '{}' is absolute or contains '..'; refusing to unpack",
                path.display()
            )));
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            return Err(Unpack::Bad(format!(
                "entry '{}' is a {kind:?}, not a file or directory; refusing to unpack",
                path.display()
            )));
        }
        let out = tmp.join(&path);
        if kind.is_dir() {
            std::fs::create_dir_all(&out).map_err(fs(&out))?;
            continue;
        }
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(fs(parent))?;
        }
        let mut f = std::fs::File::create(&out).map_err(fs(&out))?;
        std::io::copy(&mut entry, &mut f).map_err(|e| match e.kind() {
            // Reading the (verified) archive ran out or hit garbage: the backup is bad.
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData => bad(e),
            _ => Unpack::Local(out.clone(), e),
        })?;
    }
    std::fs::rename(&tmp, &into).map_err(fs(&into))?;
    std::fs::write(&marker, b"").map_err(fs(&marker))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn local(path: &Path, e: std::io::Error) -> FetchError {
    FetchError::Local {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}
