//! The incident: deletes sites the way the 2022 maintenance script did. A soft delete only marks
//! them (data retained 14 days); a permanent one removes exactly those sites' rows from every
//! shard (neighbours untouched), their index entries, attachments and key contacts.

use std::collections::BTreeMap;
use std::fs;

use chrono::{DateTime, Duration, Utc};
use rusqlite::params;
use serde::Serialize;

use super::registry::{self, SiteRecord, SiteState};
use super::{Context, IoContext, Platform, PlatformError, schema, write_tx};

/// How long a soft-deleted site's data is retained.
pub const RETENTION: Duration = Duration::days(14);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeleteMode {
    /// Marked for deletion; data kept until the retention ends.
    Soft,
    /// Data removed from the live platform.
    Permanent,
}

/// What an incident deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IncidentReport {
    pub sites: usize,
    /// Product rows removed (full-text index entries not counted).
    pub rows: u64,
}

impl Platform {
    /// Deletes `sites`. Every site is looked up before anything changes: an unknown site
    /// deletes nothing.
    pub fn incident<S: AsRef<str>>(
        &self,
        sites: &[S],
        mode: DeleteMode,
        at: DateTime<Utc>,
    ) -> Result<IncidentReport, PlatformError> {
        let path = self.registry_path();
        let mut conn = self.registry()?;
        let records = sites
            .iter()
            .map(|s| registry::site(&conn, &path, s.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let tx = write_tx(&mut conn, &path)?;
        for r in &records {
            mark(&tx, &path, r, mode, at)?;
        }
        tx.commit().db(&path)?;
        let mut report = IncidentReport {
            sites: records.len(),
            rows: 0,
        };
        if mode == DeleteMode::Permanent {
            report.rows = self.purge(&records)?;
        }
        Ok(report)
    }

    /// Removes the sites' rows (one transaction per shard) and attachments.
    fn purge(&self, records: &[SiteRecord]) -> Result<u64, PlatformError> {
        let mut by_shard: BTreeMap<&str, (&str, Vec<&str>)> = BTreeMap::new();
        for r in records {
            for (product, shard) in &r.shards {
                by_shard
                    .entry(shard)
                    .or_insert((product, vec![]))
                    .1
                    .push(&r.id);
            }
        }
        let mut rows = 0;
        let pg = self.pg()?;
        for (shard, (product, sites)) in by_shard {
            rows += match &pg {
                Some(pg) => {
                    let schema = super::restore::product_schema(sites[0], product)?;
                    self.pg_purge(pg, shard, schema, &sites)?
                }
                None => self.purge_shard(shard, product, &sites)?,
            };
        }
        for r in records {
            let dir = self.dir.join("attachments").join(&r.id);
            if dir.exists() {
                fs::remove_dir_all(&dir).io(&dir)?;
            }
        }
        Ok(rows)
    }

    fn purge_shard(
        &self,
        shard: &str,
        product: &str,
        sites: &[&str],
    ) -> Result<u64, PlatformError> {
        let path = self.shard_path(shard);
        let product = schema::product(product).ok_or_else(|| PlatformError::UnknownProduct {
            site: sites[0].to_owned(),
            product: product.to_owned(),
        })?;
        let mut conn = self.shard(shard)?;
        let tx = write_tx(&mut conn, &path)?;
        let mut rows = 0;
        for site in sites {
            for table in product.tables {
                let sql = format!("DELETE FROM {} WHERE site = ?1", table.name);
                rows += tx.execute(&sql, [site]).db(&path)? as u64;
            }
            tx.execute("DELETE FROM fts WHERE site = ?1", [site])
                .db(&path)?;
        }
        tx.commit().db(&path)?;
        Ok(rows)
    }
}

/// Records the deletion in the registry; a permanent one also drops the key contacts (they
/// were deleted with the sites in 2022) and any validations.
fn mark(
    conn: &rusqlite::Connection,
    path: &std::path::Path,
    r: &SiteRecord,
    mode: DeleteMode,
    at: DateTime<Utc>,
) -> Result<(), PlatformError> {
    let (state, retained) = match mode {
        DeleteMode::Soft => (SiteState::SoftDeleted, Some((at + RETENTION).timestamp())),
        DeleteMode::Permanent => (SiteState::Deleted, None),
    };
    conn.execute(
        "UPDATE sites SET state = ?2, deleted_at = ?3, retained_until = ?4, reactivated_at = NULL
         WHERE id = ?1",
        params![r.id, state.as_str(), at.timestamp(), retained],
    )
    .db(path)?;
    if mode == DeleteMode::Permanent {
        conn.execute("DELETE FROM contacts WHERE site = ?1", [&r.id])
            .db(path)?;
    }
    conn.execute("DELETE FROM validations WHERE site = ?1", [&r.id])
        .db(path)?;
    registry::event(conn, path, at, &r.id, state.as_str(), "")
}
