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

/// What [`back_up`] wrote.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BackupReport {
    pub schema: String,
    /// The snapshot directory name, `YYYYMMDDTHHMMSSZ`.
    pub snapshot: String,
    pub tables: Vec<String>,
    /// Every unit written (`<tenant>/<product>`), in order.
    pub units: Vec<String>,
    pub rows: u64,
    pub bytes: u64,
}

/// Backs up the slices of `tenants` (every tenant found when `None`) of `schema` into `store`,
/// a directory in drover's backup layout: per tenant a snapshot of the unit
/// `<tenant>/<product>` at `time`, its manifest written last. All read in one transaction.
pub async fn back_up(
    db: &Db,
    schema: &str,
    tenant_column: &str,
    product: &str,
    tenants: Option<Vec<String>>,
    store: &Path,
    time: chrono::DateTime<chrono::Utc>,
) -> Result<BackupReport, SliceError> {
    begin(db).await?;
    let result = back_up_in(db, schema, tenant_column, product, tenants, store, time).await;
    let _ = db.client.batch_execute("ROLLBACK").await;
    result
}

async fn back_up_in(
    db: &Db,
    schema: &str,
    tenant_column: &str,
    product: &str,
    tenants: Option<Vec<String>>,
    store: &Path,
    time: chrono::DateTime<chrono::Utc>,
) -> Result<BackupReport, SliceError> {
    let tables = super::tenant_tables(db, schema, tenant_column).await?;
    if tables.is_empty() {
        return Err(SliceError::Config(format!(
            "schema {schema} has no table with the column '{tenant_column}' (check --schema and \
             --tenant-column)"
        )));
    }
    let tenants = match tenants {
        Some(t) => t,
        None => {
            let union: Vec<String> = tables
                .iter()
                .map(|(t, _)| {
                    format!(
                        "SELECT {c}::text FROM {} WHERE {c} IS NOT NULL",
                        qualified(schema, t),
                        c = ident(tenant_column)
                    )
                })
                .collect();
            let sql = format!("{} ORDER BY 1", union.join(" UNION "));
            db.client
                .query(&sql, &[])
                .await
                .map_err(db.failed(format!("listing the tenants of schema {schema}")))?
                .iter()
                .map(|r| r.get(0))
                .collect()
        }
    };
    if let Some(bad) = tenants.iter().find(|t| !unit_safe(t)) {
        return Err(SliceError::Config(format!(
            "tenant '{bad}' cannot name a backup unit: drover's units are made of letters, \
             digits, '-', '_', '.' and '@' (not starting with '.')"
        )));
    }
    let mut report = BackupReport {
        schema: schema.to_owned(),
        snapshot: crate::backup::layout::snapshot_name(time),
        tables: tables.iter().map(|(t, _)| t.clone()).collect(),
        ..BackupReport::default()
    };
    let failed = |e: crate::backup::writer::WriteError| SliceError::Config(e.to_string());
    for tenant in &tenants {
        let unit = format!("{tenant}/{product}");
        let mut snap = crate::backup::writer::SnapshotWriter::start(
            store,
            &unit,
            product,
            Some(tenant),
            vec![],
            time,
        )
        .map_err(failed)?;
        let manifest = export_tenant(db, schema, tenant_column, &tables, tenant, &snap.dir).await?;
        for t in &manifest.tables {
            snap.add(&t.file, None).map_err(failed)?;
            report.rows += t.rows;
        }
        snap.add(MANIFEST, None).map_err(failed)?;
        report.bytes += snap.bytes;
        report.units.push(snap.finish().map_err(failed)?);
    }
    Ok(report)
}

/// Whether a tenant's value can be a path component of a backup unit.
fn unit_safe(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 128
        && !tenant.starts_with('.')
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}
