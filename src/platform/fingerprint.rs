//! A site's fingerprint: per product its row counts and a SHA-256 over its rows in a canonical
//! order (table by table, by id), plus digests of its attachments and key contacts. Two
//! fingerprints are equal exactly when the site's data is; the derived full-text index is left
//! out (`validate` checks it against the rows).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use rusqlite::Connection;
use rusqlite::types::ValueRef;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::schema::{self, Table};
use super::{Context, IoContext, Platform, PlatformError, registry};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SiteFingerprint {
    pub site: String,
    /// Product → its data.
    pub products: BTreeMap<String, ProductFingerprint>,
    /// SHA-256 over every attachment's relative path and bytes, in path order.
    pub attachments: String,
    /// SHA-256 over the key contacts, in email order.
    pub contacts: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProductFingerprint {
    /// Table → rows of the site.
    pub rows: BTreeMap<String, u64>,
    /// SHA-256 over the site's rows of every table.
    pub content: String,
}

impl Platform {
    pub fn fingerprint(&self, site: &str) -> Result<SiteFingerprint, PlatformError> {
        self.fingerprint_on(site, self.pg()?.as_ref())
    }

    fn fingerprint_on(
        &self,
        site: &str,
        pg: Option<&super::postgres::PgSession>,
    ) -> Result<SiteFingerprint, PlatformError> {
        let path = self.dir.join(super::REGISTRY);
        let conn = self.registry()?;
        let record = registry::site(&conn, &path, site)?;
        let mut products = BTreeMap::new();
        for product in &record.products {
            let shard = record.shard(product)?;
            let fp = match pg {
                Some(pg) => self.pg_fingerprint(pg, shard, site, product)?,
                None => {
                    let conn = self.shard(shard)?;
                    product_fingerprint(&conn, &self.shard_path(shard), "main", site, product)?
                }
            };
            products.insert(product.clone(), fp);
        }
        let mut h = Sha256::new();
        for c in registry::contacts(&conn, &path, site)? {
            hash_str(&mut h, &c.email);
            hash_str(&mut h, &c.name);
            hash_str(&mut h, &c.role);
        }
        Ok(SiteFingerprint {
            site: site.to_owned(),
            products,
            attachments: self.attachments_digest(site)?,
            contacts: hex::encode(h.finalize()),
        })
    }

    /// Every site's fingerprint, by site.
    pub fn fingerprint_all(&self) -> Result<BTreeMap<String, SiteFingerprint>, PlatformError> {
        let ids: Vec<String> = self.sites()?.into_iter().map(|s| s.id).collect();
        let pg = self.pg()?;
        ids.into_iter()
            .map(|id| Ok((id.clone(), self.fingerprint_on(&id, pg.as_ref())?)))
            .collect()
    }

    fn attachments_digest(&self, site: &str) -> Result<String, PlatformError> {
        let root = self.dir.join("attachments").join(site);
        let files = if root.exists() {
            crate::util::relative_files(&root).io(&root)?
        } else {
            Vec::new()
        };
        let mut h = Sha256::new();
        for rel in files {
            let path = root.join(&rel);
            hash_str(&mut h, &rel);
            hash_bytes(&mut h, &fs::read(&path).io(&path)?);
        }
        Ok(hex::encode(h.finalize()))
    }
}

/// A product's fingerprint for `site`, from the tables in `schema` (`main`, or an attached
/// snapshot).
pub(crate) fn product_fingerprint(
    conn: &Connection,
    path: &Path,
    schema: &str,
    site: &str,
    product: &str,
) -> Result<ProductFingerprint, PlatformError> {
    let product = schema::product(product).ok_or_else(|| PlatformError::UnknownProduct {
        site: site.to_owned(),
        product: product.to_owned(),
    })?;
    let mut h = Sha256::new();
    let mut rows = BTreeMap::new();
    for table in product.tables {
        let (n, digest) = table_digest(conn, path, schema, table, site)?;
        hash_str(&mut h, table.name);
        h.update(digest);
        rows.insert(table.name.to_owned(), n);
    }
    Ok(ProductFingerprint {
        rows,
        content: hex::encode(h.finalize()),
    })
}

/// SHA-256 over every other site's rows of `tables` in the `main` schema: what a restore of
/// `site` must leave exactly as it was.
pub(crate) fn neighbours_digest(
    conn: &Connection,
    path: &Path,
    tables: &[Table],
    site: &str,
) -> Result<[u8; 32], PlatformError> {
    let mut h = Sha256::new();
    for table in tables {
        let (n, digest) = rows_digest(conn, path, "main", table, "site <> ?1", site)?;
        hash_str(&mut h, table.name);
        h.update(n.to_le_bytes());
        h.update(digest);
    }
    Ok(h.finalize().into())
}

/// Row count and SHA-256 of the site's rows of one table, by id.
fn table_digest(
    conn: &Connection,
    path: &Path,
    schema: &str,
    table: &Table,
    site: &str,
) -> Result<(u64, [u8; 32]), PlatformError> {
    rows_digest(conn, path, schema, table, "site = ?1", site)
}

/// Row count and SHA-256 of the rows of one table that match `filter` (with `?1` = `site`),
/// by site and id.
fn rows_digest(
    conn: &Connection,
    path: &Path,
    schema: &str,
    table: &Table,
    filter: &str,
    site: &str,
) -> Result<(u64, [u8; 32]), PlatformError> {
    let sql = format!(
        "SELECT site, {} FROM {schema}.{} WHERE {filter} ORDER BY site, id",
        table.column_list(),
        table.name
    );
    let mut stmt = conn.prepare(&sql).db(path)?;
    let width = stmt.column_count();
    let mut rows = stmt.query([site]).db(path)?;
    let mut h = Sha256::new();
    let mut n = 0;
    while let Some(row) = rows.next().db(path)? {
        for i in 0..width {
            hash_value(&mut h, row.get_ref(i).db(path)?);
        }
        n += 1;
    }
    Ok((n, h.finalize().into()))
}

/// Hashes a value with its type, so `1` and `'1'` differ.
fn hash_value(h: &mut Sha256, v: ValueRef<'_>) {
    match v {
        ValueRef::Null => h.update(b"n"),
        ValueRef::Integer(i) => {
            h.update(b"i");
            h.update(i.to_le_bytes());
        }
        ValueRef::Real(f) => {
            h.update(b"r");
            h.update(f.to_bits().to_le_bytes());
        }
        ValueRef::Text(t) => {
            h.update(b"t");
            hash_bytes(h, t);
        }
        ValueRef::Blob(b) => {
            h.update(b"b");
            hash_bytes(h, b);
        }
    }
}

pub(crate) fn hash_str(h: &mut Sha256, s: &str) {
    hash_bytes(h, s.as_bytes());
}

/// Length-prefixed, so concatenations cannot collide.
fn hash_bytes(h: &mut Sha256, b: &[u8]) {
    h.update((b.len() as u64).to_le_bytes());
    h.update(b);
}
