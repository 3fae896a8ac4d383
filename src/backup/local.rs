//! A backup store in a local directory (`file:///path` or a plain path): the embedded default,
//! and what the demo platform writes. Read-only.

use std::io::SeekFrom;
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{BackupStore, Body, SnapshotEntry, StoreError, layout};

pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: PathBuf) -> LocalStore {
        LocalStore { root }
    }

    fn object_path(&self, unit: &str, snapshot: &str, object: &str) -> Result<PathBuf, StoreError> {
        for part in [unit, object] {
            layout::check_object_name(part).map_err(|message| StoreError::Permanent {
                what: self.describe(),
                message,
            })?;
        }
        Ok(self.root.join(unit).join(snapshot).join(object))
    }

    /// Opens an object without following a link anywhere below the store's root: a symlink as
    /// the unit, snapshot, object or any directory between them is refused, so one site's
    /// object can never be another site's file (listing skips links for the same reason).
    async fn open_object(
        &self,
        unit: &str,
        snapshot: &str,
        object: &str,
    ) -> Result<tokio::fs::File, StoreError> {
        let path = self.object_path(unit, snapshot, object)?;
        let what = path.display().to_string();
        let root = self.root.clone();
        let checked = path.clone();
        tokio::task::spawn_blocking(move || refuse_links(&root, &checked))
            .await
            .map_err(|e| StoreError::Transient {
                what: what.clone(),
                message: e.to_string(),
            })?
            .map_err(|e| match e {
                LinkCheck::Io(e) => io_error(&what, e),
                LinkCheck::Link(link) => StoreError::Permanent {
                    what: what.clone(),
                    message: format!(
                        "{} is a symbolic link; a local backup store is read without following \
                         links, so that no unit can read another's data",
                        link.display()
                    ),
                },
            })?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| io_error(&what, e))?;
        // The path was checked before it was opened; make sure it is still the same file.
        let opened = file.metadata().await.map_err(|e| io_error(&what, e))?;
        let now = tokio::fs::symlink_metadata(&path)
            .await
            .map_err(|e| io_error(&what, e))?;
        use std::os::unix::fs::MetadataExt;
        if !opened.is_file() || opened.dev() != now.dev() || opened.ino() != now.ino() {
            return Err(StoreError::Permanent {
                what,
                message: "the object changed into a link or a non-file while it was opened".into(),
            });
        }
        Ok(file)
    }
}

enum LinkCheck {
    Io(std::io::Error),
    Link(PathBuf),
}

/// Every component of `path` below `root` must be a real directory or file, not a link.
fn refuse_links(root: &Path, path: &Path) -> Result<(), LinkCheck> {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let mut at = root.to_path_buf();
    for part in rel.components() {
        at.push(part);
        let meta = std::fs::symlink_metadata(&at).map_err(LinkCheck::Io)?;
        if meta.file_type().is_symlink() {
            return Err(LinkCheck::Link(at));
        }
    }
    Ok(())
}

#[async_trait]
impl BackupStore for LocalStore {
    async fn list_snapshots(&self, unit: Option<&str>) -> Result<Vec<SnapshotEntry>, StoreError> {
        let root = self.root.clone();
        let start = match unit {
            Some(u) => {
                layout::check_object_name(u).map_err(|message| StoreError::Permanent {
                    what: self.describe(),
                    message,
                })?;
                root.join(u)
            }
            None => root.clone(),
        };
        if !root.is_dir() {
            return Err(StoreError::NotFound {
                what: format!("backup directory {}", root.display()),
            });
        }
        let keys = tokio::task::spawn_blocking(move || walk(&root, &start))
            .await
            .map_err(|e| StoreError::Transient {
                what: "listing".into(),
                message: e.to_string(),
            })?
            .map_err(|e| io_error(&self.describe(), e))?;
        Ok(layout::group(keys))
    }

    async fn read(
        &self,
        unit: &str,
        snapshot: &str,
        object: &str,
        range: Option<Range<u64>>,
    ) -> Result<Body, StoreError> {
        let what = self
            .object_path(unit, snapshot, object)?
            .display()
            .to_string();
        let mut file = self.open_object(unit, snapshot, object).await?;
        let Some(range) = range else {
            let mut buf = Vec::new();
            file.read_to_end(&mut buf)
                .await
                .map_err(|e| io_error(&what, e))?;
            return Ok(Body(vec![buf.into()]));
        };
        file.seek(SeekFrom::Start(range.start))
            .await
            .map_err(|e| io_error(&what, e))?;
        let mut buf = vec![0; (range.end - range.start) as usize];
        file.read_exact(&mut buf)
            .await
            .map_err(|e| io_error(&what, e))?;
        Ok(Body(vec![Bytes::from(buf)]))
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

/// Every regular file under `start`, as (key relative to `root`, size).
fn walk(root: &Path, start: &Path) -> std::io::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut stack = vec![start.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let rel = entry
                    .path()
                    .strip_prefix(root)
                    .expect("walked under root")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, entry.metadata()?.len()));
            }
        }
    }
    Ok(out)
}

fn io_error(what: &str, e: std::io::Error) -> StoreError {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => StoreError::NotFound {
            what: what.to_owned(),
        },
        PermissionDenied | UnexpectedEof => StoreError::Permanent {
            what: what.to_owned(),
            message: e.to_string(),
        },
        _ => StoreError::Transient {
            what: what.to_owned(),
            message: e.to_string(),
        },
    }
}
