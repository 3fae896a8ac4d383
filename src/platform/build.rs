//! Builds a platform from the synthetic sites of [`generate::sites`]: the registry with customers
//! and key contacts, every shard's rows and full-text index, and the attachments. Deterministic
//! for a seed: the same options give the same bytes of data.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};
use sha2::{Digest, Sha256};

use super::registry::{self, Contact, SiteRecord, SiteState};
use super::schema::{self, Col, Product, Table};
use super::{Context, IoContext, Platform, PlatformError, REGISTRY, open_db, write_tx};
use crate::generate::{self, GenerateOptions, GeneratedSite};

const WORDS: &[&str] = &[
    "alpha",
    "backlog",
    "cache",
    "deploy",
    "edge",
    "feature",
    "gateway",
    "hotfix",
    "index",
    "jira",
    "kernel",
    "latency",
    "metric",
    "node",
    "outage",
    "pager",
    "queue",
    "release",
    "schema",
    "ticket",
    "uptime",
    "vendor",
    "webhook",
    "xml",
    "yaml",
    "zone",
    "billing",
    "customer",
    "dashboard",
    "runbook",
    "sprint",
    "roadmap",
];
const FIRST: &[&str] = &[
    "ada", "alan", "grace", "linus", "barbara", "ken", "margaret", "dennis",
];
const ROLES: &[&str] = &["admin", "billing", "technical"];

/// One site's data on one shard.
struct Tenant<'a> {
    site: &'a str,
    /// Row units of the product.
    units: u64,
    /// How many issues the site has (for issue references).
    issues: u64,
}

impl Platform {
    /// Builds a new platform in `dir` (created if missing; must not hold one already).
    pub fn build(dir: impl AsRef<Path>, opts: &GenerateOptions) -> Result<Platform, PlatformError> {
        Platform::build_indexed(dir.as_ref(), opts, true)
    }

    /// [`Platform::build`], with or without the shards' full-text index (shards that move to
    /// PostgreSQL leave it behind).
    pub(crate) fn build_indexed(
        dir: &Path,
        opts: &GenerateOptions,
        index: bool,
    ) -> Result<Platform, PlatformError> {
        if dir.join(REGISTRY).exists() {
            return Err(PlatformError::AlreadyBuilt {
                dir: dir.to_owned(),
            });
        }
        fs::create_dir_all(dir.join("shards")).io(dir)?;
        let platform = Platform {
            dir: dir.to_owned(),
            stop: None,
        };
        let sites = generate::sites(opts);
        platform.build_registry(&sites, opts.seed)?;
        for (shard, (product, tenants)) in shards(&sites) {
            platform.build_shard(&shard, product, &tenants, opts.seed, index)?;
        }
        for site in &sites {
            for (product, _, _) in &site.products {
                platform.write_attachments(&site.id, product, opts.seed)?;
            }
        }
        Ok(platform)
    }

    fn build_registry(&self, sites: &[GeneratedSite], seed: u64) -> Result<(), PlatformError> {
        let path = self.dir.join(REGISTRY);
        let mut conn = open_db(&path, true)?;
        let tx = write_tx(&mut conn, &path)?;
        tx.execute_batch(registry::SCHEMA).db(&path)?;
        let mut rng = rng_for(seed, &["customers"]);
        let customers = (sites.len() * 3 / 4).max(1);
        for site in sites {
            let record = SiteRecord {
                id: site.id.clone(),
                customer: format!("cust-{:04}", rng.random_range(1..=customers)),
                tier: site.tier.to_owned(),
                state: SiteState::Active,
                products: site
                    .products
                    .iter()
                    .map(|(p, _, _)| p.to_string())
                    .collect(),
                shards: site
                    .products
                    .iter()
                    .map(|(p, s, _)| (p.to_string(), s.clone()))
                    .collect(),
                deleted_at: None,
                retained_until: None,
                reactivated_at: None,
            };
            registry::insert_site(&tx, &path, &record)?;
            for product in &record.products {
                tx.execute(
                    "INSERT INTO apps (id, site, product) VALUES (?1, ?2, ?3)",
                    [&app_id(seed, &record.id, product), &record.id, product],
                )
                .db(&path)?;
            }
            for c in contacts(&record, seed) {
                tx.execute(
                    "INSERT INTO contacts (site, name, email, role) VALUES (?1, ?2, ?3, ?4)",
                    [&record.id, &c.name, &c.email, &c.role],
                )
                .db(&path)?;
            }
        }
        tx.commit().db(&path)
    }

    fn build_shard(
        &self,
        shard: &str,
        product: &Product,
        tenants: &[Tenant<'_>],
        seed: u64,
        index: bool,
    ) -> Result<(), PlatformError> {
        let path = self.shard_path(shard);
        let mut conn = open_db(&path, true)?;
        let tx = write_tx(&mut conn, &path)?;
        tx.execute_batch(&product.ddl()).db(&path)?;
        for tenant in tenants {
            let mut rng = rng_for(seed, &[tenant.site, product.name]);
            for table in product.tables {
                insert_rows(&tx, &path, table, tenant, &mut rng)?;
            }
            if index {
                index_site(&tx, &path, product, tenant.site)?;
            }
        }
        tx.commit().db(&path)
    }

    fn write_attachments(&self, site: &str, product: &str, seed: u64) -> Result<(), PlatformError> {
        let dir = self.attachments_dir(site, product);
        fs::create_dir_all(&dir).io(&dir)?;
        let mut rng = rng_for(seed, &[site, product, "attachments"]);
        for n in 1..=rng.random_range(2..=3) {
            let mut bytes = vec![0u8; rng.random_range(64..2048)];
            rng.fill(&mut bytes[..]);
            let path = dir.join(format!("file-{n}.bin"));
            fs::write(&path, bytes).io(&path)?;
        }
        Ok(())
    }
}

/// Replaces the full-text index entries of `site` with ones built from its rows.
pub(crate) fn index_site(
    conn: &Connection,
    path: &Path,
    product: &Product,
    site: &str,
) -> Result<u64, PlatformError> {
    conn.execute("DELETE FROM fts WHERE site = ?1", [site])
        .db(path)?;
    let mut entries = 0;
    for table in product.tables {
        let sql = format!(
            "INSERT INTO fts (site, doc, text) {}",
            table.index_select("main")
        );
        entries += conn.execute(&sql, [site]).db(path)? as u64;
    }
    Ok(entries)
}

/// Shard → (product, the sites on it), with each site's row units and issue count.
fn shards(sites: &[GeneratedSite]) -> BTreeMap<String, (&'static Product, Vec<Tenant<'_>>)> {
    let issues_product = schema::product("issues").expect("issues is a product");
    let mut out: BTreeMap<String, (&'static Product, Vec<Tenant<'_>>)> = BTreeMap::new();
    for site in sites {
        let issues = site
            .products
            .iter()
            .find(|(p, _, _)| *p == "issues")
            .map_or(0, |(_, _, gb)| issues_product.units(*gb));
        for (name, shard, gb) in &site.products {
            let product = schema::product(name).expect("generate knows only platform products");
            let tenant = Tenant {
                site: &site.id,
                units: product.units(*gb),
                issues,
            };
            out.entry(shard.clone())
                .or_insert((product, Vec::new()))
                .1
                .push(tenant);
        }
    }
    out
}

fn insert_rows(
    conn: &Connection,
    path: &Path,
    table: &Table,
    tenant: &Tenant<'_>,
    rng: &mut ChaCha8Rng,
) -> Result<(), PlatformError> {
    let marks = vec!["?"; table.columns.len() + 2].join(", ");
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({marks})",
        table.name,
        table.column_list()
    );
    let mut stmt = conn.prepare_cached(&sql).db(path)?;
    for id in 1..=table.rows(tenant.units) {
        let mut row = vec![
            Value::Text(tenant.site.to_owned()),
            Value::Integer(id as i64),
        ];
        row.extend(
            table
                .columns
                .iter()
                .map(|(_, col)| value(col, id, tenant, rng)),
        );
        stmt.execute(params_from_iter(row)).db(path)?;
    }
    Ok(())
}

fn value(col: &Col, id: u64, tenant: &Tenant<'_>, rng: &mut ChaCha8Rng) -> Value {
    match col {
        Col::Words(min, max) => {
            let n = rng.random_range(*min..=*max);
            let words: Vec<&str> = (0..n)
                .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                .collect();
            Value::Text(words.join(" "))
        }
        Col::Email => Value::Text(format!("user{id}@{}.example", tenant.site)),
        Col::Choice(options) => Value::Text(options[rng.random_range(0..options.len())].to_owned()),
        Col::IssueRef => Value::Integer(rng.random_range(1..=tenant.issues.max(1)) as i64),
    }
}

/// Two or three key contacts with distinct roles.
fn contacts(site: &SiteRecord, seed: u64) -> Vec<Contact> {
    let mut rng = rng_for(seed, &[&site.id, "contacts"]);
    let n = rng.random_range(2..=3);
    ROLES[..n]
        .iter()
        .map(|role| {
            let first = FIRST[rng.random_range(0..FIRST.len())];
            Contact {
                name: format!("{first} {}", site.customer),
                email: format!("{role}.{first}@{}.example", site.customer),
                role: role.to_string(),
            }
        })
        .collect()
}

/// A generator seeded by the platform seed and a name.
/// A product instance's ID, `app-` and 12 hex digits: the kind of ID the 2022 script was given.
fn app_id(seed: u64, site: &str, product: &str) -> String {
    let n: u64 = rng_for(seed, &[site, product, "app"]).random();
    format!("app-{:012x}", n >> 16)
}

fn rng_for(seed: u64, parts: &[&str]) -> ChaCha8Rng {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    ChaCha8Rng::from_seed(h.finalize().into())
}
