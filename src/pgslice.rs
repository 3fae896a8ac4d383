//! One tenant's rows in a multi-tenant PostgreSQL database: backed up as a *tenant slice* (the
//! `pg-snapshot` format), copied back into a live shard that keeps serving every other tenant,
//! and validated. The `pg-restore-tenant` and `pg-validate` step kinds and the reference
//! platform on PostgreSQL use it.
//!
//! # The `pg-snapshot` format (docs/backups.md)
//!
//! A tenant's slice of one schema is a snapshot of the unit `<site>/<product>` in drover's backup
//! layout, so the ordinary verified `fetch` brings it, and one tenant's restore reads only that
//! tenant's bytes (never a whole shard dump):
//!
//! ```text
//! <table>.copy      per table: the tenant's rows, COPY text format, the columns of pg-tenant.json
//! pg-tenant.json    drover-pg-tenant/1: schema, tenant column and value, the tables in
//!                   foreign-key order (parents first) with their columns, row counts and checksums
//! ```
//!
//! Every slice of one backup is read in one `REPEATABLE READ READ ONLY` transaction, so all
//! tenants are from the same moment. A table's checksum is order-independent: the sum of the
//! first 60 bits of the MD5 of each row's text (`count` and `sum` both), computed by the server
//! with [`checksum_sql`] on the backup and again on the restored rows.

mod export;
mod restore;
mod validate;

pub use export::{BackupReport, back_up, begin, export_tenant};
pub use restore::{Existing, RestoreOptions, Restored, restore_tenant};
pub use validate::{Validated, validate_tenant};

use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

/// The file name of a slice's description.
pub const MANIFEST: &str = "pg-tenant.json";
pub const FORMAT: &str = "drover-pg-tenant/1";
/// The largest `pg-tenant.json` drover reads.
const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// `pg-tenant.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantManifest {
    pub format: String,
    /// The schema the rows were read from (and are restored into, unless the step names another).
    pub schema: String,
    pub tenant_column: String,
    pub tenant: String,
    /// Parents before the tables that reference them.
    pub tables: Vec<TableSlice>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSlice {
    pub name: String,
    pub columns: Vec<String>,
    /// The object holding the rows (`<table>.copy`).
    pub file: String,
    pub rows: u64,
    /// [`checksum_sql`]'s sum, as decimal text.
    pub checksum: String,
}

/// Why a slice could not be backed up, restored or validated.
#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    /// The server could not be reached, or the connection broke: worth another attempt.
    #[error("{at}: {reason}")]
    Connection { at: String, reason: String },
    /// A statement failed. Retryable when the server says so (serialization, deadlock, shutdown).
    #[error("{at}: {what}: {reason}")]
    Query {
        at: String,
        what: String,
        reason: String,
        retryable: bool,
    },
    /// The slice's files are not what they claim to be: the site's backup is bad.
    #[error("{path}: {reason}")]
    BadSlice { path: String, reason: String },
    /// The tenant's data differs from its slice, or the slice's rows are not the tenant's: the
    /// site must not be handed back.
    #[error("{0}")]
    Mismatch(String),
    /// The live shard already holds rows of this tenant, and the step may not replace them.
    #[error("{0}")]
    LiveRows(String),
    /// The restore would have changed other tenants' rows; it was rolled back.
    #[error("{0}")]
    Neighbours(String),
    /// A parameter or the live schema does not fit.
    #[error("{0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl SliceError {
    pub fn is_retryable(&self) -> bool {
        match self {
            SliceError::Connection { .. } => true,
            SliceError::Query { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// The site's data is wrong: it must be quarantined.
    pub fn quarantines(&self) -> bool {
        matches!(
            self,
            SliceError::BadSlice { .. } | SliceError::Mismatch(_) | SliceError::LiveRows(_)
        )
    }
}

/// A connected database, named without its password for messages.
pub struct Db {
    pub client: Client,
    pub at: String,
    /// Whether drover's bookkeeping table is known to exist there.
    bookkept: bool,
}

/// Idle connections of the steps of this process, by URL: a new backend costs a fork, its
/// catalog caches and a TLS handshake, more than the statements of a small tenant's restore.
static IDLE: std::sync::Mutex<Vec<(String, Db)>> = std::sync::Mutex::new(Vec::new());
/// Idle connections kept per process; more are closed.
const MAX_IDLE: usize = 32;

/// A connection from this process's pool (see [`pooled`]). Returned to the pool by
/// [`Pooled::release`] once its work ended cleanly; dropped otherwise, which closes it (and the
/// server rolls back whatever it was doing).
pub struct Pooled {
    url: String,
    db: Option<Db>,
}

impl std::ops::Deref for Pooled {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db.as_ref().expect("held until released")
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Db {
        self.db.as_mut().expect("held until released")
    }
}

impl Pooled {
    /// Puts the connection back for the next step (outside any transaction).
    pub fn release(mut self) {
        let Some(db) = self.db.take() else { return };
        if db.client.is_closed() {
            return;
        }
        let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((std::mem::take(&mut self.url), db));
        }
    }
}

/// A connection to `url`: an idle one of this process when there is one, else a new one
/// ([`connect`]).
pub async fn pooled(url: &str, application: &str) -> Result<Pooled, SliceError> {
    let reused = {
        let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|(_, db)| !db.client.is_closed());
        idle.iter()
            .rposition(|(u, _)| u == url)
            .map(|i| idle.swap_remove(i).1)
    };
    let db = match reused {
        Some(db) => db,
        None => connect(url, application).await?,
    };
    Ok(Pooled {
        url: url.to_owned(),
        db: Some(db),
    })
}

impl Db {
    /// A failed statement, described.
    pub(crate) fn failed(
        &self,
        what: impl Into<String>,
    ) -> impl FnOnce(tokio_postgres::Error) -> SliceError {
        let (at, what) = (self.at.clone(), what.into());
        move |e| query_error(at, what, &e)
    }
}

fn query_error(at: String, what: String, e: &tokio_postgres::Error) -> SliceError {
    if e.is_closed() {
        return SliceError::Connection {
            at,
            reason: format!("{what}: the connection closed"),
        };
    }
    let (reason, retryable) = match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            // 40: serialization failure, deadlock; 53: out of resources; 57P: shutting down;
            // 08: connection.
            let retryable = ["40", "53", "57P", "08"]
                .iter()
                .any(|c| code.starts_with(c));
            (format!("{} ({code})", db.message()), retryable)
        }
        None => (e.to_string(), true),
    };
    SliceError::Query {
        at,
        what,
        reason: crate::redact::text(&reason),
        retryable,
    }
}

/// Connects to `url` (a `postgres://` URL; `sslmode`/`sslrootcert` as in `pgtls`; a password
/// from the URL itself or `PGPASSWORD`). The connection is driven on the current runtime.
pub async fn connect(url: &str, application: &str) -> Result<Db, SliceError> {
    let at = crate::redact::text(url.split('?').next().unwrap_or(url));
    let (plain, tls) =
        crate::pgtls::split(url).map_err(|e| SliceError::Config(format!("{at}: {e}")))?;
    let mut config = tokio_postgres::Config::from_str(&plain).map_err(|e| {
        SliceError::Config(format!(
            "{at} is not a PostgreSQL URL drover can read: {}",
            crate::redact::text(&e.to_string())
        ))
    })?;
    crate::pgtls::settle(&mut config, &tls, application);
    let (client, connection) =
        config
            .connect(tls.connector)
            .await
            .map_err(|e| SliceError::Connection {
                at: at.clone(),
                reason: crate::redact::text(&e.to_string()),
            })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "a tenant-slice connection ended");
        }
    });
    Ok(Db {
        client,
        at,
        bookkept: false,
    })
}

/// The URL in a file that names a database (`database_file`, a platform's `postgres.url`): its
/// first line that is neither empty nor a `#` comment, trimmed.
pub fn url_in(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
}

/// Reads and checks the `pg-tenant.json` of a fetched slice, which must be `tenant`'s.
pub fn read_manifest(dir: &Path, tenant: &str) -> Result<TenantManifest, SliceError> {
    let path = dir.join(MANIFEST);
    let bad = |reason: String| SliceError::BadSlice {
        path: path.display().to_string(),
        reason,
    };
    let size = std::fs::metadata(&path)
        .map_err(|e| bad(format!("cannot read it: {e}")))?
        .len();
    if size > MAX_MANIFEST_BYTES {
        return Err(bad(format!(
            "{size} bytes, over the limit of {MAX_MANIFEST_BYTES}"
        )));
    }
    let bytes = std::fs::read(&path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let manifest: TenantManifest =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a tenant slice: {e}")))?;
    if manifest.format != FORMAT {
        return Err(bad(format!(
            "format '{}' is not '{FORMAT}'",
            manifest.format
        )));
    }
    for t in &manifest.tables {
        let name_ok = !t.file.contains('/') && !t.file.starts_with('.') && !t.file.is_empty();
        if !name_ok {
            return Err(bad(format!(
                "table {}: file '{}' is not a plain name",
                t.name, t.file
            )));
        }
        if !t.columns.contains(&manifest.tenant_column) {
            return Err(bad(format!(
                "table {} does not list the tenant column '{}'",
                t.name, manifest.tenant_column
            )));
        }
    }
    if manifest.tenant != tenant {
        return Err(SliceError::BadSlice {
            path: dir.display().to_string(),
            reason: format!(
                "holds the rows of tenant '{}', not of '{tenant}'",
                manifest.tenant
            ),
        });
    }
    Ok(manifest)
}

/// `"name"`, quoted for SQL.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, quoted for SQL (standard-conforming strings, PostgreSQL's default since 9.1).
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `"schema"."table"`.
pub(crate) fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", ident(schema), ident(table))
}

/// The column list, quoted.
pub(crate) fn column_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(count, checksum)` of the rows of `from` (a table or query) that `filter` selects, over
/// `columns`: the row count, and the sum of the first 60 bits of the MD5 of each row's text —
/// equal for equal sets of rows in any order.
pub(crate) fn checksum_sql(from: &str, columns: &[String], filter: &str) -> String {
    format!(
        "SELECT count(*)::bigint, coalesce(sum(('x' || substr(md5(r::text), 1, 15))::bit(60)::bigint), 0)::text \
         FROM (SELECT {} FROM {from} WHERE {filter}) r",
        column_list(columns)
    )
}

/// Runs a [`checksum_sql`] query.
pub(crate) async fn checksum(
    db: &Db,
    sql: &str,
    what: impl Into<String>,
) -> Result<(u64, String), SliceError> {
    let row = db
        .client
        .query_one(sql, &[])
        .await
        .map_err(db.failed(what))?;
    Ok((row.get::<_, i64>(0) as u64, row.get(1)))
}

/// The tables of `schema` that have `tenant_column`, with their columns (generated ones left out:
/// they cannot be written), parents before the tables that reference them.
pub async fn tenant_tables(
    db: &Db,
    schema: &str,
    tenant_column: &str,
) -> Result<Vec<(String, Vec<String>)>, SliceError> {
    let rows = db
        .client
        .query(
            "SELECT c.relname::text, array_agg(a.attname::text ORDER BY a.attnum)
               FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                                  AND a.attgenerated = ''
              WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
              GROUP BY c.relname
             HAVING bool_or(a.attname = $2)
              ORDER BY c.relname",
            &[&schema, &tenant_column],
        )
        .await
        .map_err(db.failed(format!("listing the tables of schema {schema}")))?;
    let tables: Vec<(String, Vec<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let edges = db
        .client
        .query(
            "SELECT child.relname::text, parent.relname::text
               FROM pg_constraint con
               JOIN pg_class child ON child.oid = con.conrelid
               JOIN pg_class parent ON parent.oid = con.confrelid
               JOIN pg_namespace n ON n.oid = child.relnamespace
              WHERE con.contype = 'f' AND n.nspname = $1 AND parent.relnamespace = child.relnamespace
                AND con.conrelid <> con.confrelid",
            &[&schema],
        )
        .await
        .map_err(db.failed(format!("reading the foreign keys of schema {schema}")))?;
    let edges: Vec<(String, String)> = edges.iter().map(|r| (r.get(0), r.get(1))).collect();
    fk_order(tables, &edges).map_err(|cycle| {
        SliceError::Config(format!(
            "schema {schema}: the foreign keys between {cycle} form a cycle; drover restores \
             tables parents first and cannot order these"
        ))
    })
}

/// `tables` with every parent (by `edges`, child → parent) before its children; the names in a
/// cycle otherwise.
fn fk_order(
    mut tables: Vec<(String, Vec<String>)>,
    edges: &[(String, String)],
) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut out = Vec::with_capacity(tables.len());
    while !tables.is_empty() {
        let ready = tables.iter().position(|(name, _)| {
            !edges
                .iter()
                .any(|(child, parent)| child == name && tables.iter().any(|(t, _)| t == parent))
        });
        match ready {
            Some(i) => out.push(tables.remove(i)),
            None => {
                let names: Vec<&str> = tables.iter().map(|(t, _)| t.as_str()).collect();
                return Err(names.join(", "));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> (String, Vec<String>) {
        (name.to_owned(), vec![])
    }

    #[test]
    fn parents_come_first_and_cycles_are_named() {
        let edges = [
            ("comments".to_owned(), "issues".to_owned()),
            ("issues".to_owned(), "projects".to_owned()),
        ];
        let order = fk_order(vec![t("comments"), t("issues"), t("projects")], &edges).unwrap();
        let names: Vec<&str> = order.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["projects", "issues", "comments"]);
        let cycle = [
            ("a".to_owned(), "b".to_owned()),
            ("b".to_owned(), "a".to_owned()),
        ];
        assert_eq!(
            fk_order(vec![t("a"), t("b"), t("c")], &cycle).unwrap_err(),
            "a, b"
        );
    }

    #[test]
    fn names_and_text_are_quoted() {
        assert_eq!(qualified("wiki-3", "pa\"ges"), "\"wiki-3\".\"pa\"\"ges\"");
        assert_eq!(literal("o'brien"), "'o''brien'");
    }
}
