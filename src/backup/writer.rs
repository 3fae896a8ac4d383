//! Writes one snapshot into a local store in drover's layout: objects first, then every
//! object's size and SHA-256 in `manifest.json`, last and atomically (a temporary name, then a
//! rename), so an interrupted backup leaves only an incomplete snapshot, which drover never
//! chooses. Used by the reference platform's backups and `drover backups pg-snapshot`.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::layout::{MANIFEST, snapshot_name};
use super::manifest::{FORMAT, Manifest, ObjectEntry};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{} already exists; a snapshot is never overwritten", .0.display())]
    Exists(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One snapshot being written.
pub struct SnapshotWriter {
    pub dir: PathBuf,
    manifest: Manifest,
    /// Bytes of objects added.
    pub bytes: u64,
}

impl SnapshotWriter {
    /// Creates `<store>/<unit>/<time>/`; refuses one that already has a manifest.
    pub fn start(
        store: &Path,
        unit: &str,
        product: &str,
        site: Option<&str>,
        sites: Vec<String>,
        time: DateTime<Utc>,
    ) -> Result<SnapshotWriter, WriteError> {
        let dir = store.join(unit).join(snapshot_name(time));
        if dir.join(MANIFEST).exists() {
            return Err(WriteError::Exists(dir));
        }
        // Leftovers of an interrupted backup: never complete, safe to replace.
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let manifest = Manifest {
            format: FORMAT.to_owned(),
            unit: unit.to_owned(),
            product: product.to_owned(),
            site: site.map(str::to_owned),
            sites,
            snapshot_time: time,
            objects: vec![],
        };
        Ok(SnapshotWriter {
            dir,
            manifest,
            bytes: 0,
        })
    }

    /// Records an object already written into the snapshot directory.
    pub fn add(&mut self, name: &str, unpack: Option<&str>) -> Result<(), WriteError> {
        let path = self.dir.join(name);
        let mut file = fs::File::open(&path).map_err(io(&path))?;
        let mut hasher = Sha256::new();
        let size = std::io::copy(&mut file, &mut hasher).map_err(io(&path))?;
        self.bytes += size;
        self.manifest.objects.push(ObjectEntry {
            name: name.to_owned(),
            size,
            sha256: hex::encode(hasher.finalize()),
            unpack: unpack.map(str::to_owned),
        });
        Ok(())
    }

    /// Writes the manifest, last, and atomically. Returns the unit.
    pub fn finish(self) -> Result<String, WriteError> {
        let tmp = self.dir.join("manifest.json.tmp");
        fs::write(&tmp, self.manifest.to_json()).map_err(io(&tmp))?;
        let path = self.dir.join(MANIFEST);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(self.manifest.unit)
    }
}
