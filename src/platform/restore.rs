//! The restore operations drover's step kinds call: key contacts, a tenant's rows from a shard
//! snapshot, attachments, the full-text index. Each is idempotent, refuses a live site, never
//! deletes or overwrites customer data, and touches only the named site.

use std::fs;
use std::path::Path;

use rusqlite::Connection;
use serde::Serialize;

use super::backup::ContactsExport;
use super::build::index_site;
use super::fingerprint::neighbours_digest;
use super::registry::{self, SiteRecord, SiteState};
use super::{Context, IoContext, Platform, PlatformError, ValidationFailure, schema, write_tx};

/// What `restore_tenant` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TenantRestore {
    /// Rows copied from the snapshot.
    pub inserted: u64,
    /// Rows of the site in the snapshot that the live shard already held.
    pub present: u64,
}

/// What `restore_attachments` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AttachmentRestore {
    pub copied: u64,
    /// Already there with the same bytes.
    pub present: u64,
    /// Already there with other bytes: kept, since the live file may be newer.
    pub conflicts: Vec<String>,
}

impl Platform {
    /// Adds the key contacts of a contacts export (a `contacts.json` backup object) to `site`.
    /// Returns how many were missing.
    pub fn restore_contacts(
        &self,
        site: &str,
        export: impl AsRef<Path>,
    ) -> Result<u64, PlatformError> {
        let file = export.as_ref();
        let bad = |reason: String| PlatformError::BadContacts {
            path: file.to_owned(),
            reason,
        };
        let bytes = fs::read(file).io(file)?;
        let export: ContactsExport = serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("not a contacts export: {e}")))?;
        if export.site != site {
            return Err(bad(format!(
                "holds the contacts of '{}', not of '{site}'",
                export.site
            )));
        }
        let path = self.registry_path();
        let mut conn = self.registry()?;
        let tx = write_tx(&mut conn, &path)?;
        registry::begin_restore(&tx, &path, site, "restore contacts of")?;
        let mut added = 0;
        for c in &export.contacts {
            added += tx
                .execute(
                    "INSERT OR IGNORE INTO contacts (site, name, email, role) VALUES (?1, ?2, ?3, ?4)",
                    [site, &c.name, &c.email, &c.role],
                )
                .db(&path)? as u64;
        }
        tx.commit().db(&path)?;
        Ok(added)
    }

    /// Copies `site`'s rows of `product` from a shard snapshot into the live shard, in one
    /// transaction. Rows already present are kept as they are; no other site's row is read
    /// into the live shard, and if any other site's row differs at the end (a trigger, a bug),
    /// the transaction is rolled back and the restore refused. Voids an earlier validation of
    /// the product.
    pub fn restore_tenant(
        &self,
        site: &str,
        product: &str,
        snapshot: impl AsRef<Path>,
    ) -> Result<TenantRestore, PlatformError> {
        let snapshot = snapshot.as_ref();
        let record = self.begin(site, "restore data of")?;
        let shard = record.shard(product)?;
        let tables = product_schema(site, product)?.tables;
        self.void_validation(site, product)?;
        let path = self.shard_path(shard);
        let mut conn = self.shard(shard)?;
        attach(&conn, &path, snapshot, tables)?;
        let tx = write_tx(&mut conn, &path)?;
        // The write lock is held from here to the commit: nothing else changes the shard, so the
        // other sites' rows must be exactly as they were when the copy is done.
        let neighbours = neighbours_digest(&tx, &path, tables, site)?;
        let mut done = TenantRestore::default();
        for table in tables {
            let cols = table.column_list();
            let count = format!("SELECT count(*) FROM snap.{} WHERE site = ?1", table.name);
            let total: u64 = tx.query_row(&count, [site], |r| r.get(0)).db(&path)?;
            let copy = format!(
                "INSERT OR IGNORE INTO main.{t} ({cols}) SELECT {cols} FROM snap.{t} WHERE site = ?1",
                t = table.name
            );
            let inserted = tx.execute(&copy, [site]).db(&path)? as u64;
            done.inserted += inserted;
            done.present += total - inserted;
        }
        if neighbours_digest(&tx, &path, tables, site)? != neighbours {
            drop(tx); // rolls back
            return Err(ValidationFailure {
                site: site.to_owned(),
                product: product.to_owned(),
                reason: format!(
                    "restoring it changed other sites' rows on shard {shard}; rolled back, no row was changed"
                ),
            }
            .into());
        }
        tx.commit().db(&path)?;
        conn.execute("DETACH DATABASE snap", []).db(&path)?;
        Ok(done)
    }

    /// Copies the files of an unpacked attachments backup into the site's product directory.
    pub fn restore_attachments(
        &self,
        site: &str,
        product: &str,
        unpacked: impl AsRef<Path>,
    ) -> Result<AttachmentRestore, PlatformError> {
        let src = unpacked.as_ref();
        let record = self.begin(site, "restore attachments of")?;
        record.shard(product)?; // the site has the product
        let dest = self.attachments_dir(site, product);
        let files = crate::util::relative_files(src).io(src)?;
        let mut done = AttachmentRestore::default();
        for rel in files {
            let (from, to) = (src.join(&rel), dest.join(&rel));
            let bytes = fs::read(&from).io(&from)?;
            match fs::read(&to) {
                Ok(live) if live == bytes => done.present += 1,
                Ok(_) => done.conflicts.push(rel),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    write_new(&to, &bytes)?;
                    done.copied += 1;
                }
                Err(e) => {
                    return Err(PlatformError::Io {
                        path: to,
                        source: e,
                    });
                }
            }
        }
        Ok(done)
    }

    /// Rebuilds the site's full-text index entries of `product` from its rows. Returns the
    /// number of entries.
    pub fn rebuild_index(&self, site: &str, product: &str) -> Result<u64, PlatformError> {
        let record = self.begin(site, "rebuild the index of")?;
        let shard = record.shard(product)?;
        let schema = product_schema(site, product)?;
        let path = self.shard_path(shard);
        let mut conn = self.shard(shard)?;
        let tx = write_tx(&mut conn, &path)?;
        let entries = index_site(&tx, &path, schema, site)?;
        tx.commit().db(&path)?;
        Ok(entries)
    }

    /// Before a product's rows are restored elsewhere (a PostgreSQL shard): refuses a live site,
    /// moves a deleted one to `restoring`, and voids an earlier validation of the product.
    pub fn begin_product_restore(&self, site: &str, product: &str) -> Result<(), PlatformError> {
        let record = self.begin(site, "restore data of")?;
        record.shard(product)?; // the site has the product
        self.void_validation(site, product)
    }

    /// Refuses a live site; moves a deleted one to `restoring`.
    fn begin(&self, site: &str, action: &'static str) -> Result<SiteRecord, PlatformError> {
        let path = self.registry_path();
        let mut conn = self.registry()?;
        let tx = write_tx(&mut conn, &path)?;
        let record = registry::begin_restore(&tx, &path, site, action)?;
        tx.commit().db(&path)?;
        Ok(record)
    }

    fn void_validation(&self, site: &str, product: &str) -> Result<(), PlatformError> {
        let path = self.registry_path();
        let mut conn = self.registry()?;
        let tx = write_tx(&mut conn, &path)?;
        tx.execute(
            "DELETE FROM validations WHERE site = ?1 AND product = ?2",
            [site, product],
        )
        .db(&path)?;
        tx.execute(
            "UPDATE sites SET state = ?2 WHERE id = ?1 AND state = ?3",
            [
                site,
                SiteState::Restoring.as_str(),
                SiteState::Validated.as_str(),
            ],
        )
        .db(&path)?;
        tx.commit().db(&path)
    }
}

pub(crate) fn product_schema(
    site: &str,
    product: &str,
) -> Result<&'static schema::Product, PlatformError> {
    schema::product(product).ok_or_else(|| PlatformError::UnknownProduct {
        site: site.to_owned(),
        product: product.to_owned(),
    })
}

/// Attaches a shard snapshot as `snap`, checking that it exists and holds the product's tables.
pub(crate) fn attach(
    conn: &Connection,
    path: &Path,
    snapshot: &Path,
    tables: &[schema::Table],
) -> Result<(), PlatformError> {
    let bad = |reason: String| PlatformError::BadSnapshot {
        path: snapshot.to_owned(),
        reason,
    };
    // ATTACH would create a missing file.
    if !snapshot.is_file() {
        return Err(bad("no such file".into()));
    }
    conn.execute("ATTACH DATABASE ?1 AS snap", [snapshot.to_string_lossy()])
        .db(path)?;
    for table in tables {
        let found = conn.query_row(
            "SELECT count(*) FROM snap.sqlite_master WHERE type = 'table' AND name = ?1",
            [table.name],
            |r| r.get::<_, i64>(0),
        );
        match found {
            Ok(1) => {}
            Ok(_) => return detach_with(conn, bad(format!("has no table '{}'", table.name))),
            Err(e) => return detach_with(conn, bad(format!("not a shard snapshot: {e}"))),
        }
    }
    Ok(())
}

fn detach_with(conn: &Connection, e: PlatformError) -> Result<(), PlatformError> {
    let _ = conn.execute("DETACH DATABASE snap", []);
    Err(e)
}

/// Writes a new file through a temporary name, so a crash never leaves a partial one.
fn write_new(to: &Path, bytes: &[u8]) -> Result<(), PlatformError> {
    let dir = to.parent().expect("a file under the attachments directory");
    fs::create_dir_all(dir).io(dir)?;
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(".restore-part");
    let tmp = std::path::PathBuf::from(tmp);
    fs::write(&tmp, bytes).io(&tmp)?;
    fs::rename(&tmp, to).io(to)
}
