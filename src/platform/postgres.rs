//! The reference platform with its shards in PostgreSQL: each shard is a schema (`"wiki-3"`) on
//! one server, holding many sites' rows; the registry and attachments stay in the platform
//! directory. `<dir>/postgres.url` (mode 0600) names the server; the workflow's PostgreSQL steps
//! read it by reference (`database_file = "{target}/postgres.url"`), so the URL is never written
//! into a plan or a ledger.
//!
//! A site's backup of a product is a tenant slice (`pgslice`, the `pg-snapshot` format) beside
//! its attachments in the `<site>/<product>` unit; every slice of one backup is read in one
//! repeatable-read transaction. There is no shared shard snapshot to fetch.

use std::collections::BTreeMap;
use std::fs;
use std::future::Future;
use std::path::Path;

use rusqlite::types::ValueRef;
use sha2::{Digest, Sha256};

use super::fingerprint::hash_str;
use super::schema::{self, Product};
use super::{Context, IoContext, Platform, PlatformError, ProductFingerprint};
use crate::generate::{self, GenerateOptions};
use crate::pgslice::{self, Db, SliceError, checksum, checksum_sql, ident, literal, qualified};

/// The file in a platform directory naming the PostgreSQL server of its shards.
pub const POSTGRES_URL: &str = "postgres.url";
/// The column every product table keeps its site in.
const TENANT: &str = "site";

/// A connection to the platform's server and the small runtime that drives it (the platform's
/// API is synchronous).
pub(crate) struct PgSession {
    rt: tokio::runtime::Runtime,
    pub db: Db,
}

impl PgSession {
    pub fn connect(url: &str) -> Result<PgSession, PlatformError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| PlatformError::Io {
                path: POSTGRES_URL.into(),
                source,
            })?;
        let db = rt.block_on(pgslice::connect(url, "drover platform"))?;
        Ok(PgSession { rt, db })
    }

    pub fn run<T>(&self, work: impl Future<Output = T>) -> T {
        self.rt.block_on(work)
    }

    pub fn execute(&self, sql: &str, what: &str) -> Result<(), PlatformError> {
        self.run(self.db.client.batch_execute(sql))
            .map_err(self.db.failed(what))
            .map_err(Into::into)
    }
}

impl Platform {
    /// The URL of the server holding this platform's shards, when they are in PostgreSQL.
    pub fn postgres_url(&self) -> Option<String> {
        let text = fs::read_to_string(self.dir.join(POSTGRES_URL)).ok()?;
        pgslice::url_in(&text).map(str::to_owned)
    }

    pub(crate) fn pg(&self) -> Result<Option<PgSession>, PlatformError> {
        self.postgres_url()
            .map(|url| PgSession::connect(&url))
            .transpose()
    }

    /// Builds a new platform in `dir` whose shards are schemas on the PostgreSQL server at `url`
    /// (the database must not hold any of them yet). The same sites and rows as
    /// [`Platform::build`] for the same options.
    pub fn build_on_postgres(
        dir: impl AsRef<Path>,
        opts: &GenerateOptions,
        url: &str,
    ) -> Result<Platform, PlatformError> {
        let dir = dir.as_ref();
        let pg = PgSession::connect(url)?;
        let mut shards: BTreeMap<String, &'static Product> = BTreeMap::new();
        for site in generate::sites(opts) {
            for (product, shard, _) in &site.products {
                let product = schema::product(product).expect("generate knows platform products");
                shards.insert(shard.clone(), product);
            }
        }
        let names: Vec<&str> = shards.keys().map(String::as_str).collect();
        let taken: Vec<String> = pg
            .run(pg.db.client.query(
                "SELECT nspname::text FROM pg_namespace WHERE nspname = ANY($1) ORDER BY 1",
                &[&names],
            ))
            .map_err(pg.db.failed("looking for the shards' schemas"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !taken.is_empty() {
            return Err(SliceError::Config(format!(
                "{}: the schemas {} already exist; drover builds a platform only where none of \
                 its shards are: give a new, empty database",
                pg.db.at,
                taken.join(", ")
            ))
            .into());
        }
        let platform = Platform::build_indexed(dir, opts, false)?;
        for (shard, product) in &shards {
            platform.move_shard(&pg, shard, product)?;
        }
        let file = dir.join(POSTGRES_URL);
        write_private(&file, &format!("{url}\n"))?;
        Ok(platform)
    }

    /// Creates the shard's schema on the server, copies its rows there, and removes the SQLite
    /// file: the shard lives only in PostgreSQL.
    fn move_shard(
        &self,
        pg: &PgSession,
        shard: &str,
        product: &Product,
    ) -> Result<(), PlatformError> {
        let path = self.shard_path(shard);
        pg.execute(
            &format!("BEGIN; {}", product.pg_ddl(shard)),
            &format!("creating schema {shard}"),
        )?;
        let conn = self.shard(shard)?;
        for table in product.tables {
            let sql = format!(
                "SELECT {} FROM {} ORDER BY site, id",
                table.column_list(),
                table.name
            );
            let mut stmt = conn.prepare(&sql).db(&path)?;
            let width = stmt.column_count();
            let mut rows = stmt.query([]).db(&path)?;
            let mut text = String::new();
            while let Some(row) = rows.next().db(&path)? {
                for i in 0..width {
                    if i > 0 {
                        text.push('\t');
                    }
                    match row.get_ref(i).db(&path)? {
                        ValueRef::Integer(n) => text.push_str(&n.to_string()),
                        ValueRef::Text(t) => copy_escape(&mut text, &String::from_utf8_lossy(t)),
                        other => {
                            unreachable!("the platform's tables hold text and integers: {other:?}")
                        }
                    }
                }
                text.push('\n');
            }
            let copy = format!(
                "COPY {} ({}) FROM STDIN",
                qualified(shard, table.name),
                table.column_list()
            );
            let what = format!("copying the rows of {shard}.{}", table.name);
            pg.run(async {
                use futures::SinkExt;
                let sink = pg.db.client.copy_in::<_, bytes::Bytes>(&copy).await?;
                let mut sink = std::pin::pin!(sink);
                sink.send(bytes::Bytes::from(text)).await?;
                sink.as_mut().finish().await
            })
            .map_err(pg.db.failed(what))?;
        }
        pg.execute("COMMIT", &format!("creating schema {shard}"))?;
        drop(conn);
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            match fs::remove_file(&name) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(PlatformError::Io {
                        path: name.into(),
                        source: e,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Removes the sites' rows from a shard on the server, children first, in one transaction.
    pub(crate) fn pg_purge(
        &self,
        pg: &PgSession,
        shard: &str,
        product: &Product,
        sites: &[&str],
    ) -> Result<u64, PlatformError> {
        let list: Vec<String> = sites.iter().map(|s| literal(s)).collect();
        let what = format!("deleting sites' rows from {shard}");
        let mut rows = 0;
        pg.execute("BEGIN", &what)?;
        for table in product.tables.iter().rev() {
            let sql = format!(
                "DELETE FROM {} WHERE site IN ({})",
                qualified(shard, table.name),
                list.join(", ")
            );
            rows += pg
                .run(pg.db.client.execute(&sql, &[]))
                .map_err(pg.db.failed(&what))?;
        }
        pg.execute("COMMIT", &what)?;
        Ok(rows)
    }

    /// A product's fingerprint for `site` from its shard on the server: per table the row count
    /// and the order-independent checksum `pg-validate` uses.
    pub(crate) fn pg_fingerprint(
        &self,
        pg: &PgSession,
        shard: &str,
        site: &str,
        product: &str,
    ) -> Result<ProductFingerprint, PlatformError> {
        let product = super::restore::product_schema(site, product)?;
        let mine = format!("{} = {}", ident(TENANT), literal(site));
        let mut h = Sha256::new();
        let mut rows = BTreeMap::new();
        for table in product.tables {
            let columns: Vec<String> = table.column_names().into_iter().map(Into::into).collect();
            let sql = checksum_sql(&qualified(shard, table.name), &columns, &mine);
            let (n, sum) = pg.run(checksum(
                &pg.db,
                &sql,
                format!("fingerprinting {shard}.{}", table.name),
            ))?;
            hash_str(&mut h, table.name);
            h.update(n.to_le_bytes());
            hash_str(&mut h, &sum);
            rows.insert(table.name.to_owned(), n);
        }
        Ok(ProductFingerprint {
            rows,
            content: hex::encode(h.finalize()),
        })
    }

    /// Writes `site`'s slice of `shard` into a snapshot directory; the caller has begun the
    /// backup's transaction. Returns the objects written.
    pub(crate) fn pg_export(
        &self,
        pg: &PgSession,
        tables: &mut BTreeMap<String, Vec<(String, Vec<String>)>>,
        shard: &str,
        site: &str,
        dir: &Path,
    ) -> Result<Vec<String>, PlatformError> {
        if !tables.contains_key(shard) {
            let found = pg.run(pgslice::tenant_tables(&pg.db, shard, TENANT))?;
            tables.insert(shard.to_owned(), found);
        }
        let manifest = pg.run(pgslice::export_tenant(
            &pg.db,
            shard,
            TENANT,
            &tables[shard],
            site,
            dir,
        ))?;
        let mut objects: Vec<String> = manifest.tables.into_iter().map(|t| t.file).collect();
        objects.push(pgslice::MANIFEST.to_owned());
        Ok(objects)
    }
}

/// Text in COPY's text format: backslash, tab, newline and carriage return escaped.
fn copy_escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// Writes a file only its owner can read (it may name a server with a password).
fn write_private(path: &Path, text: &str) -> Result<(), PlatformError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .io(path)?;
    file.write_all(text.as_bytes()).io(path)
}
