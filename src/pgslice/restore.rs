//! Copies one tenant's slice into a live shard, in one transaction, beside everyone else's rows.
//!
//! Inside one `REPEATABLE READ` transaction: the idempotency key is recorded first (a key
//! already recorded means the copy was made: nothing is copied again); the tenant must have no
//! live rows (unless the step may replace them); the other tenants' rows are digested; each
//! table, parents first, is staged from its `.copy` object into a temporary table, checked
//! against the slice's count and checksum, and inserted with `INSERT … SELECT`; the other
//! tenants' rows are digested again, and any difference rolls everything back. The transaction's
//! snapshot is what makes the two digests comparable while other tenants keep writing.

use std::path::Path;
use std::time::Instant;

use futures::SinkExt;
use serde::Serialize;
use tokio::io::AsyncReadExt;

use super::{
    Db, SliceError, TableSlice, TenantManifest, checksum, checksum_sql, column_list, ident,
    literal, qualified, read_manifest,
};

/// What to do when the live shard already holds rows of the tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Existing {
    /// Refuse: the site is quarantined for a human to look (the default).
    #[default]
    Refuse,
    /// Delete the tenant's live rows of the slice's tables, in the same transaction, first.
    Replace,
}

pub struct RestoreOptions<'a> {
    /// The schema to restore into; the slice's own when `None`.
    pub schema: Option<&'a str>,
    /// The tenant the step restores: the slice must be this tenant's.
    pub tenant: &'a str,
    pub existing: Existing,
    /// Tables whose other tenants' rows are not digested (very large tables).
    pub skip_neighbour_check: &'a [String],
    /// The step's idempotency key: one copy per key, ever.
    pub key: &'a str,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Restored {
    pub schema: String,
    pub tables: usize,
    pub rows_inserted: u64,
    /// Live rows of the tenant deleted first (`existing = "replace"` only).
    pub rows_replaced: u64,
    /// The key was already recorded: an earlier attempt made the copy, nothing was copied now.
    pub already_restored: bool,
    /// Milliseconds spent digesting other tenants' rows (both digests).
    pub neighbour_check_ms: u64,
}

/// The bookkeeping table of copies made, one row per idempotency key.
const RESTORES: &str = "drover.tenant_restores";

/// Restores the slice fetched into `dir` (see the module documentation).
pub async fn restore_tenant(
    db: &mut Db,
    dir: &Path,
    opts: &RestoreOptions<'_>,
) -> Result<Restored, SliceError> {
    let manifest = read_manifest(dir, opts.tenant)?;
    ensure_bookkeeping(db).await?;
    db.client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(db.failed("starting the restore's transaction"))?;
    let result = copy(db, dir, &manifest, opts).await;
    let end = match &result {
        Ok(_) => "COMMIT",
        Err(_) => "ROLLBACK",
    };
    let ended = db
        .client
        .batch_execute(end)
        .await
        .map_err(db.failed("ending the restore's transaction"));
    let restored = result?;
    ended?;
    Ok(restored)
}

async fn copy(
    db: &Db,
    dir: &Path,
    manifest: &TenantManifest,
    opts: &RestoreOptions<'_>,
) -> Result<Restored, SliceError> {
    let schema = opts.schema.unwrap_or(&manifest.schema);
    let mut done = Restored {
        schema: schema.to_owned(),
        tables: manifest.tables.len(),
        ..Restored::default()
    };
    let claimed = db
        .client
        .execute(
            &format!(
                "INSERT INTO {RESTORES} (key, schema_name, tenant) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO NOTHING"
            ),
            &[&opts.key, &schema, &opts.tenant],
        )
        .await
        .map_err(db.failed("recording the restore's key"))?;
    if claimed == 0 {
        done.already_restored = true;
        return Ok(done);
    }
    let tenant_col = ident(&manifest.tenant_column);
    let mine = format!("{tenant_col} = {}", literal(opts.tenant));
    let others = format!("{tenant_col} IS DISTINCT FROM {}", literal(opts.tenant));

    let mut live = Vec::new();
    for t in &manifest.tables {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {mine}",
            qualified(schema, &t.name)
        );
        let n: i64 = db
            .client
            .query_one(&sql, &[])
            .await
            .map_err(db.failed(format!("counting live rows of {schema}.{}", t.name)))?
            .get(0);
        if n > 0 {
            live.push(format!("{} rows in {schema}.{}", n, t.name));
        }
    }
    if !live.is_empty() && opts.existing == Existing::Refuse {
        return Err(SliceError::LiveRows(format!(
            "the live shard already holds rows of tenant '{}' ({}); drover never overwrites live \
             data: look at them, and set existing = \"replace\" on the step only if they may go",
            opts.tenant,
            live.join(", ")
        )));
    }

    let checked: Vec<&TableSlice> = manifest
        .tables
        .iter()
        .filter(|t| !opts.skip_neighbour_check.contains(&t.name))
        .collect();
    let started = Instant::now();
    let before = neighbours(db, schema, &checked, &others).await?;
    done.neighbour_check_ms += started.elapsed().as_millis() as u64;

    if !live.is_empty() {
        for t in manifest.tables.iter().rev() {
            let sql = format!("DELETE FROM {} WHERE {mine}", qualified(schema, &t.name));
            done.rows_replaced += db
                .client
                .execute(&sql, &[])
                .await
                .map_err(db.failed(format!("replacing live rows of {schema}.{}", t.name)))?;
        }
    }

    for (i, t) in manifest.tables.iter().enumerate() {
        done.rows_inserted += copy_table(db, dir, schema, t, i, &tenant_col, opts.tenant).await?;
    }

    let started = Instant::now();
    let after = neighbours(db, schema, &checked, &others).await?;
    done.neighbour_check_ms += started.elapsed().as_millis() as u64;
    if let Some(t) = checked
        .iter()
        .zip(before.iter().zip(&after))
        .find_map(|(t, (b, a))| (b != a).then_some(t))
    {
        return Err(SliceError::Neighbours(format!(
            "restoring tenant '{}' changed other tenants' rows of {schema}.{} (a trigger or a \
             rule on the table?); rolled back, nothing was changed",
            opts.tenant, t.name
        )));
    }
    db.client
        .execute(
            &format!("UPDATE {RESTORES} SET rows = $2 WHERE key = $1"),
            &[&opts.key, &(done.rows_inserted as i64)],
        )
        .await
        .map_err(db.failed("recording the restore"))?;
    Ok(done)
}

/// Stages one table's `.copy` object, checks it against the slice, and inserts it.
async fn copy_table(
    db: &Db,
    dir: &Path,
    schema: &str,
    t: &TableSlice,
    i: usize,
    tenant_col: &str,
    tenant: &str,
) -> Result<u64, SliceError> {
    let live = qualified(schema, &t.name);
    let cols = column_list(&t.columns);
    let stage = format!("drover_stage_{i}");
    let what = |doing: &str| format!("{doing} {schema}.{}", t.name);
    db.client
        .batch_execute(&format!(
            "CREATE TEMP TABLE {stage} ON COMMIT DROP AS SELECT {cols} FROM {live} WITH NO DATA"
        ))
        .await
        .map_err(db.failed(what("staging")))?;
    let path = dir.join(&t.file);
    let bad = |reason: String| SliceError::BadSlice {
        path: path.display().to_string(),
        reason,
    };
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| bad(format!("cannot read it: {e}")))?;
    let sink = db
        .client
        .copy_in::<_, bytes::Bytes>(&format!("COPY {stage} ({cols}) FROM STDIN"))
        .await
        .map_err(db.failed(what("staging")))?;
    let mut sink = std::pin::pin!(sink);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| bad(format!("cannot read it: {e}")))?;
        if n == 0 {
            break;
        }
        let sent = sink.send(bytes::Bytes::copy_from_slice(&buf[..n])).await;
        sent.map_err(|e| staging_error(db, &path, &what("staging"), &e))?;
    }
    sink.as_mut()
        .finish()
        .await
        .map_err(|e| staging_error(db, &path, &what("staging"), &e))?;
    let strays: i64 = db
        .client
        .query_one(
            &format!(
                "SELECT count(*) FROM {stage} WHERE {tenant_col} IS DISTINCT FROM {}",
                literal(tenant)
            ),
            &[],
        )
        .await
        .map_err(db.failed(what("checking")))?
        .get(0);
    if strays > 0 {
        return Err(bad(format!(
            "{strays} of its rows belong to other tenants than '{tenant}'"
        )));
    }
    let (rows, sum) = checksum(
        db,
        &checksum_sql(&stage, &t.columns, "true"),
        what("checking"),
    )
    .await?;
    if rows != t.rows || sum != t.checksum {
        return Err(SliceError::Mismatch(format!(
            "{}: {rows} rows with checksum {sum}, but the slice recorded {} rows with checksum {}",
            path.display(),
            t.rows,
            t.checksum
        )));
    }
    db.client
        .execute(
            &format!("INSERT INTO {live} ({cols}) SELECT {cols} FROM {stage}"),
            &[],
        )
        .await
        .map_err(db.failed(what("inserting into")))
}

/// A COPY the server rejected for its data (class 22: bad format, bad value) is a bad slice;
/// anything else is the server's.
fn staging_error(db: &Db, path: &Path, what: &str, e: &tokio_postgres::Error) -> SliceError {
    match e.as_db_error() {
        Some(d) if d.code().code().starts_with("22") => SliceError::BadSlice {
            path: path.display().to_string(),
            reason: format!("not valid COPY data for the table: {}", d.message()),
        },
        _ => super::query_error(db.at.clone(), what.to_owned(), e),
    }
}

/// The other tenants' `(count, checksum)` of each table.
async fn neighbours(
    db: &Db,
    schema: &str,
    tables: &[&TableSlice],
    others: &str,
) -> Result<Vec<(u64, String)>, SliceError> {
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        let sql = digest_sql(&qualified(schema, &t.name), others);
        out.push(
            checksum(
                db,
                &sql,
                format!("digesting other tenants' rows of {schema}.{}", t.name),
            )
            .await?,
        );
    }
    Ok(out)
}

/// The other tenants' rows as row *versions*: their count and the sum of a 64-bit hash of each
/// version's identity (`tableoid`, `ctid`, `xmin`). Any insert, update or delete of a row makes
/// or removes a version (an update writes a new one, with this transaction's ID), so within one
/// snapshot two equal digests mean that the transaction changed none of these rows, and nothing
/// else can have changed them in its view: rows committed by others after the snapshot are
/// invisible to it, and the versions it sees cannot be vacuumed away while it runs. It reads no
/// column, so it costs a scan, not the rendering and hashing of every row's text (several times
/// cheaper on a large shard, docs/benchmarks.md).
fn digest_sql(from: &str, filter: &str) -> String {
    format!(
        "SELECT count(*)::bigint, \
         coalesce(sum(hashtextextended(tableoid::text || ctid::text || xmin::text, 0)), 0)::text \
         FROM {from} WHERE {filter}"
    )
}

/// Creates the bookkeeping schema and table once per database (under a lock, so that two
/// first restores do not race to create it).
async fn ensure_bookkeeping(db: &mut Db) -> Result<(), SliceError> {
    if db.bookkept {
        return Ok(());
    }
    let exists: bool = db
        .client
        .query_one(
            &format!("SELECT to_regclass('{RESTORES}') IS NOT NULL"),
            &[],
        )
        .await
        .map_err(db.failed("looking for drover.tenant_restores"))?
        .get(0);
    if !exists {
        create_bookkeeping(db).await?;
    }
    db.bookkept = true;
    Ok(())
}

async fn create_bookkeeping(db: &Db) -> Result<(), SliceError> {
    db.client
        .batch_execute(&format!(
            "BEGIN;
             SELECT pg_advisory_xact_lock(hashtext('{RESTORES}'));
             CREATE SCHEMA IF NOT EXISTS drover;
             CREATE TABLE IF NOT EXISTS {RESTORES} (
                 key text PRIMARY KEY,
                 schema_name text NOT NULL,
                 tenant text NOT NULL,
                 rows bigint,
                 restored_at timestamptz NOT NULL DEFAULT now()
             );
             COMMIT;"
        ))
        .await
        .map_err(db.failed("creating drover.tenant_restores (drover's record of tenant copies)"))
}
