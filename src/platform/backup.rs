//! Backs the platform up into a local store in drover's backup layout (docs/backups.md): per shard
//! a `VACUUM INTO` copy, per site and product its attachments as a tar, per site its key contacts.
//! Every snapshot's `manifest.json` is written last (to a temporary name, then renamed), so an
//! interrupted backup leaves only incomplete snapshots, which drover never chooses.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::postgres::PgSession;
use super::registry::{Contact, SiteRecord, SiteState};
use super::{Context, IoContext, Platform, PlatformError};
use crate::backup::layout::snapshot_name;
use crate::backup::writer::{SnapshotWriter, WriteError};

/// The object of a site's `contacts` unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactsExport {
    pub site: String,
    pub contacts: Vec<Contact>,
}

/// Per shard, its tables with a site column (parents first), looked up once per backup.
type SliceTables = BTreeMap<String, Vec<(String, Vec<String>)>>;

/// What a backup wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BackupReport {
    /// The snapshot directory name, `YYYYMMDDTHHMMSSZ`.
    pub snapshot: String,
    /// Every unit backed up, in order.
    pub units: Vec<String>,
    /// Bytes of objects written (manifests excluded).
    pub bytes: u64,
}

impl Platform {
    /// Backs up every shard, and the attachments and contacts of every site not permanently
    /// deleted (an empty backup of a deleted site would shadow its last good one).
    pub fn backup(
        &self,
        store: impl AsRef<Path>,
        time: DateTime<Utc>,
    ) -> Result<BackupReport, PlatformError> {
        let store = store.as_ref();
        let all = self.sites()?;
        let mut report = BackupReport {
            snapshot: snapshot_name(time),
            ..BackupReport::default()
        };
        let pg = self.pg()?;
        if let Some(pg) = &pg {
            pg.run(crate::pgslice::begin(&pg.db))?;
        }
        let mut tables = BTreeMap::new();
        for (shard, (product, on_shard)) in shard_sites(&all) {
            if pg.is_some() {
                break; // a PostgreSQL platform's rows are in its sites' own units
            }
            let unit = shard.clone();
            let mut snap = start(store, &unit, &product, None, on_shard, time)?;
            let object = snap.dir.join("shard.sqlite");
            let conn = self.shard(&shard)?;
            conn.execute("VACUUM INTO ?1", [object.to_string_lossy()])
                .db(&self.shard_path(&shard))?;
            add(&mut snap, &mut report, "shard.sqlite", None)?;
            finish(snap, &mut report)?;
        }
        for site in all.iter().filter(|s| s.state != SiteState::Deleted) {
            for product in &site.products {
                let slices = pg.as_ref().map(|pg| (pg, &mut tables));
                self.backup_product(store, site, product, time, &mut report, slices)?;
            }
            self.backup_contacts(store, site, time, &mut report)?;
        }
        if let Some(pg) = &pg {
            pg.execute("ROLLBACK", "ending the backup's transaction")?;
        }
        Ok(report)
    }

    /// A site's own unit of a product: its attachments, and on a PostgreSQL platform its rows
    /// (a tenant slice).
    fn backup_product(
        &self,
        store: &Path,
        site: &SiteRecord,
        product: &str,
        time: DateTime<Utc>,
        report: &mut BackupReport,
        slices: Option<(&PgSession, &mut SliceTables)>,
    ) -> Result<(), PlatformError> {
        let unit = format!("{}/{product}", site.id);
        let mut snap = start(store, &unit, product, Some(&site.id), vec![], time)?;
        let src = self.attachments_dir(&site.id, product);
        let object = snap.dir.join("attachments.tar");
        write_tar(&src, &object)?;
        add(&mut snap, report, "attachments.tar", Some("tar"))?;
        if let Some((pg, tables)) = slices {
            let shard = site.shard(product)?;
            for object in self.pg_export(pg, tables, shard, &site.id, &snap.dir)? {
                add(&mut snap, report, &object, None)?;
            }
        }
        finish(snap, report)
    }

    fn backup_contacts(
        &self,
        store: &Path,
        site: &SiteRecord,
        time: DateTime<Utc>,
        report: &mut BackupReport,
    ) -> Result<(), PlatformError> {
        let unit = format!("{}/contacts", site.id);
        let mut snap = start(store, &unit, "contacts", Some(&site.id), vec![], time)?;
        let export = ContactsExport {
            site: site.id.clone(),
            contacts: self.contacts(&site.id)?,
        };
        let object = snap.dir.join("contacts.json");
        let json = serde_json::to_vec_pretty(&export).expect("contacts serialize");
        fs::write(&object, json).io(&object)?;
        add(&mut snap, report, "contacts.json", None)?;
        finish(snap, report)
    }
}

/// Every shard → (product, the sites with data on it, sorted).
fn shard_sites(sites: &[SiteRecord]) -> BTreeMap<String, (String, Vec<String>)> {
    let mut out: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for site in sites {
        for (product, shard) in &site.shards {
            let entry = out
                .entry(shard.clone())
                .or_insert((product.clone(), vec![]));
            if site.state != SiteState::Deleted {
                entry.1.push(site.id.clone());
            }
        }
    }
    out
}

/// A tar of the regular files under `src` (none if it is missing), in path order, with fixed
/// metadata so equal files give equal bytes.
fn write_tar(src: &Path, dest: &Path) -> Result<(), PlatformError> {
    let files = if src.exists() {
        crate::util::relative_files(src).io(src)?
    } else {
        Vec::new()
    };
    let out = fs::File::create(dest).io(dest)?;
    let mut tar = tar::Builder::new(out);
    for rel in files {
        let path = src.join(&rel);
        let bytes = fs::read(&path).io(&path)?;
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        tar.append_data(&mut header, &rel, &bytes[..]).io(dest)?;
    }
    tar.into_inner().and_then(|f| f.sync_all()).io(dest)
}

fn start(
    store: &Path,
    unit: &str,
    product: &str,
    site: Option<&str>,
    sites: Vec<String>,
    time: DateTime<Utc>,
) -> Result<SnapshotWriter, PlatformError> {
    SnapshotWriter::start(store, unit, product, site, sites, time).map_err(Into::into)
}

fn add(
    snap: &mut SnapshotWriter,
    report: &mut BackupReport,
    name: &str,
    unpack: Option<&str>,
) -> Result<(), PlatformError> {
    let before = snap.bytes;
    snap.add(name, unpack)?;
    report.bytes += snap.bytes - before;
    Ok(())
}

fn finish(snap: SnapshotWriter, report: &mut BackupReport) -> Result<(), PlatformError> {
    report.units.push(snap.finish()?);
    Ok(())
}

impl From<WriteError> for PlatformError {
    fn from(e: WriteError) -> PlatformError {
        match e {
            WriteError::Exists(path) => PlatformError::SnapshotExists { path },
            WriteError::Io { path, source } => PlatformError::Io { path, source },
        }
    }
}
