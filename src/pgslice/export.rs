//! Writes tenant slices: one tenant's rows of every table of a schema, with their counts and
//! checksums, in the `pg-snapshot` format.

use std::path::Path;

use std::io::Write;

use futures::StreamExt;

use super::{
    Db, FORMAT, MANIFEST, SliceError, TableSlice, TenantManifest, checksum, checksum_sql,
    column_list, ident, literal, qualified,
};

/// Writes `tenant`'s rows of `tables` (from [`super::tenant_tables`], parents first) of `schema`
/// into `dir` (which must exist): a `<table>.copy` per table and `pg-tenant.json`. Run it inside
/// a `REPEATABLE READ` transaction ([`begin`]) so that every table, and every tenant of one
/// backup, is read at the same moment. Returns the slice's description.
pub async fn export_tenant(
    db: &Db,
    schema: &str,
    tenant_column: &str,
    tables: &[(String, Vec<String>)],
    tenant: &str,
    dir: &Path,
) -> Result<TenantManifest, SliceError> {
    let filter = format!("{} = {}", ident(tenant_column), literal(tenant));
    let mut slices = Vec::with_capacity(tables.len());
    for (table, columns) in tables {
        let from = qualified(schema, table);
        let file = format!("{table}.copy");
        let path = dir.join(&file);
        let copy = format!(
            "COPY (SELECT {} FROM {from} WHERE {filter}) TO STDOUT",
            column_list(columns)
        );
        let what = format!("copying {tenant}'s rows of {schema}.{table}");
        let stream = db.client.copy_out(&copy).await.map_err(db.failed(&what))?;
        let io = |source| SliceError::Io {
            path: path.display().to_string(),
            source,
        };
        // Plain file writes: a backup runs on a runtime of its own (`platform::postgres`), where
        // waiting for the disk holds up nothing else.
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io)?);
        let mut stream = std::pin::pin!(stream);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(db.failed(&what))?;
            out.write_all(&chunk).map_err(io)?;
        }
        out.flush().map_err(io)?;
        let (rows, sum) = checksum(db, &checksum_sql(&from, columns, &filter), what).await?;
        slices.push(TableSlice {
            name: table.clone(),
            columns: columns.clone(),
            file,
            rows,
            checksum: sum,
        });
    }
    let manifest = TenantManifest {
        format: FORMAT.to_owned(),
        schema: schema.to_owned(),
        tenant_column: tenant_column.to_owned(),
        tenant: tenant.to_owned(),
        tables: slices,
    };
    let path = dir.join(MANIFEST);
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    std::fs::write(&path, json).map_err(|source| SliceError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(manifest)
}

/// Starts the read-only, repeatable-read transaction a backup's slices are read in.
pub async fn begin(db: &Db) -> Result<(), SliceError> {
    db.client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(db.failed("starting the backup's transaction"))
}
