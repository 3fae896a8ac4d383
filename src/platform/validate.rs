//! Validates a restored product against the shard snapshot it came from: the live shard's
//! integrity, the site's row counts and content checksum, the full-text index against the rows,
//! and cross-product references (a service-desk ticket's issue exists in the site's issues).
//! A site whose every product validated becomes `validated`. That neighbours are unchanged is
//! checked where it can be decided: inside `restore_tenant`'s write transaction, which rolls
//! back if any other site's row differs (afterwards, other tenants' data changes legitimately).

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use sha2::{Digest, Sha256};

use super::fingerprint::{hash_str, product_fingerprint};
use super::registry::{self, SiteRecord, SiteState};
use super::restore::{attach, product_schema};
use super::schema::Product;
use super::{Context, Platform, PlatformError, ValidationFailure, write_tx};

impl Platform {
    /// Checks `site`'s `product` against `snapshot`. A mismatch is
    /// `PlatformError::Invalid(ValidationFailure)`, whose reason says what differs.
    pub fn validate(
        &self,
        site: &str,
        product: &str,
        snapshot: impl AsRef<Path>,
        at: DateTime<Utc>,
    ) -> Result<(), PlatformError> {
        let record = self.not_live(site)?;
        let fail = |reason: String| ValidationFailure {
            site: site.to_owned(),
            product: product.to_owned(),
            reason,
        };
        let schema = product_schema(site, product)?;
        let shard = record.shard(product)?;
        let path = self.shard_path(shard);
        let conn = self.shard(shard)?;
        integrity(&conn, &path)?.into_result(|r| fail(format!("shard {shard}: {r}")))?;
        attach(&conn, &path, snapshot.as_ref(), schema.tables)?;
        let compared = compare(&conn, &path, site, product);
        conn.execute("DETACH DATABASE snap", []).db(&path)?;
        compared?.into_result(fail)?;
        index_matches(&conn, &path, schema, site)?.into_result(fail)?;
        if product == "service-desk" {
            self.tickets_reference_issues(&conn, &path, &record)?
                .into_result(fail)?;
        }
        self.record_validation(&record, product, at)
    }

    /// Every ticket's issue exists in the site's issues shard.
    fn tickets_reference_issues(
        &self,
        conn: &Connection,
        path: &Path,
        record: &SiteRecord,
    ) -> Result<Comparison, PlatformError> {
        let Ok(issues_shard) = record.shard("issues") else {
            return Ok(Comparison::Differs(
                "the site has service-desk but no issues product".into(),
            ));
        };
        let issues = self.shard(issues_shard)?;
        let issues_path = self.shard_path(issues_shard);
        let ids: BTreeSet<i64> = ids(
            &issues,
            &issues_path,
            "SELECT id FROM issues WHERE site = ?1",
            &record.id,
        )?;
        let refs = ids_sorted(
            conn,
            path,
            "SELECT id, issue_id FROM tickets WHERE site = ?1 ORDER BY id",
            &record.id,
        )?;
        let dangling: Vec<String> = refs
            .iter()
            .filter(|(_, issue)| !ids.contains(issue))
            .map(|(ticket, issue)| format!("ticket {ticket} → issue {issue}"))
            .collect();
        if dangling.is_empty() {
            return Ok(Comparison::Matches);
        }
        Ok(Comparison::Differs(format!(
            "{} service-desk tickets reference issues missing from {issues_shard}: {}",
            dangling.len(),
            dangling
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// Records that `site`'s `product` validated where drover's own checks ran elsewhere (a
    /// PostgreSQL shard, `pg-validate`); a live site is refused.
    pub fn mark_validated(
        &self,
        site: &str,
        product: &str,
        at: DateTime<Utc>,
    ) -> Result<(), PlatformError> {
        let record = self.not_live(site)?;
        record.shard(product)?;
        self.record_validation(&record, product, at)
    }

    /// `site`'s record; a live site is never validated (its data is the customer's now).
    fn not_live(&self, site: &str) -> Result<SiteRecord, PlatformError> {
        let record = self.site(site)?;
        if record.state.is_live() {
            return Err(PlatformError::SiteActive {
                site: site.to_owned(),
                state: record.state,
                action: "validate",
            });
        }
        Ok(record)
    }

    fn record_validation(
        &self,
        record: &SiteRecord,
        product: &str,
        at: DateTime<Utc>,
    ) -> Result<(), PlatformError> {
        let path = self.registry_path();
        let mut conn = self.registry()?;
        let tx = write_tx(&mut conn, &path)?;
        tx.execute(
            "INSERT OR REPLACE INTO validations (site, product, at) VALUES (?1, ?2, ?3)",
            rusqlite::params![record.id, product, at.timestamp()],
        )
        .db(&path)?;
        let validated: usize = tx
            .query_row(
                "SELECT count(*) FROM validations WHERE site = ?1",
                [&record.id],
                |r| r.get(0),
            )
            .db(&path)?;
        let now = registry::site(&tx, &path, &record.id)?.state;
        let restoring = matches!(now, SiteState::Restoring | SiteState::Quarantined);
        if validated == record.products.len() && restoring {
            registry::set_state(&tx, &path, &record.id, SiteState::Validated)?;
            registry::event(&tx, &path, at, &record.id, "validated", "")?;
        }
        tx.commit().db(&path)
    }
}

/// SQLite's verdict on the shard. Only a verdict counts as a difference: a check that could not
/// run (busy, or stopped by a timeout or Ctrl-C) is an error, never a reason to quarantine.
fn integrity(conn: &Connection, path: &Path) -> Result<Comparison, PlatformError> {
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .db(path)?;
    Ok(match verdict.as_str() {
        "ok" => Comparison::Matches,
        _ => Comparison::Differs(format!("integrity check: {verdict}")),
    })
}

/// The outcome of one check of restored data: it matches, or what differs.
#[must_use]
enum Comparison {
    Matches,
    Differs(String),
}

impl Comparison {
    /// A difference as the validation failure `fail` makes of it.
    fn into_result(
        self,
        fail: impl FnOnce(String) -> ValidationFailure,
    ) -> Result<(), ValidationFailure> {
        match self {
            Comparison::Matches => Ok(()),
            Comparison::Differs(reason) => Err(fail(reason)),
        }
    }
}

/// The site's rows in `main` against those in `snap`.
fn compare(
    conn: &Connection,
    path: &Path,
    site: &str,
    product: &str,
) -> Result<Comparison, PlatformError> {
    let live = product_fingerprint(conn, path, "main", site, product)?;
    let snap = product_fingerprint(conn, path, "snap", site, product)?;
    for (table, n) in &snap.rows {
        let have = live.rows.get(table).copied().unwrap_or(0);
        if have != *n {
            return Ok(Comparison::Differs(format!(
                "{table}: {have} rows live, {n} in the snapshot"
            )));
        }
    }
    if live.content != snap.content {
        return Ok(Comparison::Differs(format!(
            "content checksum {} differs from the snapshot's {} (same row counts)",
            &live.content[..12],
            &snap.content[..12]
        )));
    }
    Ok(Comparison::Matches)
}

/// The site's index entries are exactly those its rows give.
fn index_matches(
    conn: &Connection,
    path: &Path,
    product: &Product,
    site: &str,
) -> Result<Comparison, PlatformError> {
    let (n_index, index) = digest(
        conn,
        path,
        "SELECT doc, text FROM fts WHERE site = ?1 ORDER BY doc",
        site,
    )?;
    let union: Vec<String> = product
        .tables
        .iter()
        .map(|t| {
            format!(
                "SELECT '{t}/' || id AS doc, {fts} AS text FROM {t} WHERE site = ?1",
                t = t.name,
                fts = t.fts
            )
        })
        .collect();
    let sql = format!("{} ORDER BY doc", union.join(" UNION ALL "));
    let (n_rows, rows) = digest(conn, path, &sql, site)?;
    if n_index != n_rows {
        return Ok(Comparison::Differs(format!(
            "full-text index has {n_index} entries for {n_rows} rows"
        )));
    }
    if index != rows {
        return Ok(Comparison::Differs(
            "full-text index entries differ from the rows' text".into(),
        ));
    }
    Ok(Comparison::Matches)
}

/// Count and SHA-256 of `(doc, text)` rows.
fn digest(
    conn: &Connection,
    path: &Path,
    sql: &str,
    site: &str,
) -> Result<(u64, [u8; 32]), PlatformError> {
    let mut stmt = conn.prepare(sql).db(path)?;
    let mut rows = stmt.query([site]).db(path)?;
    let (mut n, mut h) = (0, Sha256::new());
    while let Some(r) = rows.next().db(path)? {
        hash_str(&mut h, &r.get::<_, String>(0).db(path)?);
        hash_str(&mut h, &r.get::<_, String>(1).db(path)?);
        n += 1;
    }
    Ok((n, h.finalize().into()))
}

fn ids(
    conn: &Connection,
    path: &Path,
    sql: &str,
    site: &str,
) -> Result<BTreeSet<i64>, PlatformError> {
    let mut stmt = conn.prepare(sql).db(path)?;
    let rows = stmt.query_map([site], |r| r.get(0)).db(path)?;
    rows.collect::<Result<_, _>>().db(path)
}

fn ids_sorted(
    conn: &Connection,
    path: &Path,
    sql: &str,
    site: &str,
) -> Result<Vec<(i64, i64)>, PlatformError> {
    let mut stmt = conn.prepare(sql).db(path)?;
    let rows = stmt
        .query_map([site], |r| Ok((r.get(0)?, r.get(1)?)))
        .db(path)?;
    rows.collect::<Result<_, _>>().db(path)
}
