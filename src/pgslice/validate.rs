//! Checks a restored tenant against its slice: per table the tenant's row count and checksum,
//! and that every foreign key of the tenant's rows finds its parent row. Read-only, in one
//! `REPEATABLE READ READ ONLY` transaction.

use std::path::Path;

use serde::Serialize;

use super::{Db, SliceError, checksum, checksum_sql, ident, literal, qualified, read_manifest};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Validated {
    pub tables: usize,
    pub rows: u64,
    /// Foreign keys of the tenant's rows checked.
    pub foreign_keys: usize,
}

/// Validates the tenant of the slice fetched into `dir`, in `schema` (the slice's own when
/// `None`). Any difference is [`SliceError::Mismatch`], naming every table that differs.
pub async fn validate_tenant(
    db: &Db,
    dir: &Path,
    schema: Option<&str>,
    tenant: &str,
) -> Result<Validated, SliceError> {
    let manifest = read_manifest(dir, tenant)?;
    let schema = schema.unwrap_or(&manifest.schema);
    db.client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(db.failed("starting the validation's transaction"))?;
    let result = check(db, &manifest, schema, tenant).await;
    let _ = db.client.batch_execute("ROLLBACK").await;
    let (done, differences) = result?;
    if differences.is_empty() {
        Ok(done)
    } else {
        Err(SliceError::Mismatch(format!(
            "tenant '{tenant}' in schema {schema}: {}",
            differences.join("; ")
        )))
    }
}

async fn check(
    db: &Db,
    manifest: &super::TenantManifest,
    schema: &str,
    tenant: &str,
) -> Result<(Validated, Vec<String>), SliceError> {
    let tenant_col = ident(&manifest.tenant_column);
    let mine = format!("{tenant_col} = {}", literal(tenant));
    let mut done = Validated {
        tables: manifest.tables.len(),
        ..Validated::default()
    };
    let mut differences = Vec::new();
    for t in &manifest.tables {
        let sql = checksum_sql(&qualified(schema, &t.name), &t.columns, &mine);
        let (rows, sum) = checksum(db, &sql, format!("checksumming {schema}.{}", t.name)).await?;
        done.rows += rows;
        if rows != t.rows {
            differences.push(format!(
                "{}: {rows} rows, the backup has {}",
                t.name, t.rows
            ));
        } else if sum != t.checksum {
            differences.push(format!(
                "{}: the rows' checksum {sum} differs from the backup's {}",
                t.name, t.checksum
            ));
        }
    }
    let names: Vec<&str> = manifest.tables.iter().map(|t| t.name.as_str()).collect();
    let keys = db
        .client
        .query(
            "SELECT con.conname::text, child.relname::text, pn.nspname::text, parent.relname::text,
                    ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
                          JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n
                          ORDER BY k.i),
                    ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
                          JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n
                          ORDER BY k.i)
               FROM pg_constraint con
               JOIN pg_class child ON child.oid = con.conrelid
               JOIN pg_namespace n ON n.oid = child.relnamespace
               JOIN pg_class parent ON parent.oid = con.confrelid
               JOIN pg_namespace pn ON pn.oid = parent.relnamespace
              WHERE con.contype = 'f' AND n.nspname = $1 AND child.relname::text = ANY($2)
              ORDER BY 2, 1",
            &[&schema, &names],
        )
        .await
        .map_err(db.failed(format!("reading the foreign keys of schema {schema}")))?;
    for key in &keys {
        let (name, child, parent_schema, parent): (String, String, String, String) =
            (key.get(0), key.get(1), key.get(2), key.get(3));
        let (from, to): (Vec<String>, Vec<String>) = (key.get(4), key.get(5));
        let matches: Vec<String> = from
            .iter()
            .zip(&to)
            .map(|(f, t)| format!("p.{} = c.{}", ident(t), ident(f)))
            .collect();
        let present: Vec<String> = from
            .iter()
            .map(|f| format!("c.{} IS NOT NULL", ident(f)))
            .collect();
        let sql = format!(
            "SELECT count(*) FROM {} c WHERE c.{mine} AND {} AND NOT EXISTS \
             (SELECT 1 FROM {} p WHERE {})",
            qualified(schema, &child),
            present.join(" AND "),
            qualified(&parent_schema, &parent),
            matches.join(" AND ")
        );
        let dangling: i64 = db
            .client
            .query_one(&sql, &[])
            .await
            .map_err(db.failed(format!("checking foreign key {name} of {schema}.{child}")))?
            .get(0);
        done.foreign_keys += 1;
        if dangling > 0 {
            differences.push(format!(
                "{child}: {dangling} rows reference missing rows of {parent_schema}.{parent} \
                 (foreign key {name})"
            ));
        }
    }
    Ok((done, differences))
}
