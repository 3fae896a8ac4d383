//! The registry (`registry.db`): sites and their states, key contacts, events, the notification
//! outbox, product instances (apps) and per-product validations. Owns that file's schema.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::{Context, PlatformError};

pub(crate) const SCHEMA: &str = "
CREATE TABLE sites (
    id TEXT PRIMARY KEY,
    customer TEXT NOT NULL,
    tier TEXT NOT NULL,
    state TEXT NOT NULL,
    products TEXT NOT NULL,
    shards TEXT NOT NULL,
    deleted_at INTEGER,
    retained_until INTEGER,
    reactivated_at INTEGER
);
CREATE TABLE contacts (
    site TEXT NOT NULL,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (site, email)
);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    site TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT
);
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    site TEXT NOT NULL,
    key TEXT NOT NULL,
    message TEXT NOT NULL,
    UNIQUE (site, key)
);
CREATE TABLE apps (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    product TEXT NOT NULL
);
CREATE TABLE validations (
    site TEXT NOT NULL,
    product TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (site, product)
);
";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SiteState {
    Active,
    /// Permanently deleted: its data is gone from the live platform.
    Deleted,
    /// Marked for deletion; data retained until `retained_until`.
    SoftDeleted,
    Restoring,
    /// Every product validated against its backup.
    Validated,
    Quarantined,
    ActiveAgain,
}

impl SiteState {
    const ALL: [SiteState; 7] = [
        SiteState::Active,
        SiteState::Deleted,
        SiteState::SoftDeleted,
        SiteState::Restoring,
        SiteState::Validated,
        SiteState::Quarantined,
        SiteState::ActiveAgain,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SiteState::Active => "active",
            SiteState::Deleted => "deleted",
            SiteState::SoftDeleted => "soft-deleted",
            SiteState::Restoring => "restoring",
            SiteState::Validated => "validated",
            SiteState::Quarantined => "quarantined",
            SiteState::ActiveAgain => "active-again",
        }
    }

    /// Every state's name, in lifecycle order.
    pub fn names() -> Vec<&'static str> {
        SiteState::ALL.iter().map(|s| s.as_str()).collect()
    }

    pub fn parse(s: &str) -> Option<SiteState> {
        SiteState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Serving customers: restore operations refuse such a site.
    pub fn is_live(self) -> bool {
        matches!(self, SiteState::Active | SiteState::ActiveAgain)
    }
}

impl fmt::Display for SiteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A site as the registry knows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SiteRecord {
    pub id: String,
    pub customer: String,
    pub tier: String,
    pub state: SiteState,
    pub products: Vec<String>,
    /// Product → shard.
    pub shards: BTreeMap<String, String>,
    pub deleted_at: Option<i64>,
    pub retained_until: Option<i64>,
    pub reactivated_at: Option<i64>,
}

impl SiteRecord {
    /// The shard holding the site's `product`.
    pub fn shard(&self, product: &str) -> Result<&str, PlatformError> {
        self.shards
            .get(product)
            .map(String::as_str)
            .ok_or_else(|| PlatformError::UnknownProduct {
                site: self.id.clone(),
                product: product.to_owned(),
            })
    }
}

/// A key contact of a site.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Contact {
    pub name: String,
    pub email: String,
    pub role: String,
}

const SITE_COLUMNS: &str =
    "id, customer, tier, state, products, shards, deleted_at, retained_until, reactivated_at";

pub(crate) fn site(conn: &Connection, path: &Path, id: &str) -> Result<SiteRecord, PlatformError> {
    let sql = format!("SELECT {SITE_COLUMNS} FROM sites WHERE id = ?1");
    let raw = conn.query_row(&sql, [id], raw_site).optional().db(path)?;
    raw.ok_or_else(|| PlatformError::UnknownSite {
        site: id.to_owned(),
    })?
    .parse()
}

pub(crate) fn sites(conn: &Connection, path: &Path) -> Result<Vec<SiteRecord>, PlatformError> {
    let sql = format!("SELECT {SITE_COLUMNS} FROM sites ORDER BY id");
    let mut stmt = conn.prepare(&sql).db(path)?;
    let raws = stmt
        .query_map([], raw_site)
        .db(path)?
        .collect::<Result<Vec<_>, _>>()
        .db(path)?;
    raws.into_iter().map(RawSite::parse).collect()
}

pub(crate) fn insert_site(
    conn: &Connection,
    path: &Path,
    s: &SiteRecord,
) -> Result<(), PlatformError> {
    let products = serde_json::to_string(&s.products).expect("strings serialize");
    let shards = serde_json::to_string(&s.shards).expect("strings serialize");
    conn.execute(
        "INSERT INTO sites (id, customer, tier, state, products, shards) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![s.id, s.customer, s.tier, s.state.as_str(), products, shards],
    )
    .db(path)?;
    Ok(())
}

pub(crate) fn set_state(
    conn: &Connection,
    path: &Path,
    site: &str,
    state: SiteState,
) -> Result<(), PlatformError> {
    conn.execute(
        "UPDATE sites SET state = ?2 WHERE id = ?1",
        params![site, state.as_str()],
    )
    .db(path)?;
    Ok(())
}

pub(crate) fn event(
    conn: &Connection,
    path: &Path,
    at: DateTime<Utc>,
    site: &str,
    kind: &str,
    detail: &str,
) -> Result<(), PlatformError> {
    conn.execute(
        "INSERT INTO events (at, site, kind, detail) VALUES (?1, ?2, ?3, ?4)",
        params![at.timestamp(), site, kind, detail],
    )
    .db(path)?;
    Ok(())
}

pub(crate) fn contacts(
    conn: &Connection,
    path: &Path,
    site: &str,
) -> Result<Vec<Contact>, PlatformError> {
    let mut stmt = conn
        .prepare("SELECT name, email, role FROM contacts WHERE site = ?1 ORDER BY email")
        .db(path)?;
    let rows = stmt
        .query_map([site], |r| {
            Ok(Contact {
                name: r.get(0)?,
                email: r.get(1)?,
                role: r.get(2)?,
            })
        })
        .db(path)?;
    rows.collect::<Result<Vec<_>, _>>().db(path)
}

/// Moves a site about to be restored to `restoring` (from deleted or soft-deleted); refuses a
/// live site. A quarantined site stays quarantined until every product validated again, so a
/// quarantine raised early in a restore (a bad backup) is not undone by the restore's next step.
/// Returns the record as it was.
pub(crate) fn begin_restore(
    conn: &Connection,
    path: &Path,
    id: &str,
    action: &'static str,
) -> Result<SiteRecord, PlatformError> {
    let record = site(conn, path, id)?;
    match record.state {
        s if s.is_live() => {
            return Err(PlatformError::SiteActive {
                site: id.to_owned(),
                state: s,
                action,
            });
        }
        SiteState::Deleted | SiteState::SoftDeleted => {
            set_state(conn, path, id, SiteState::Restoring)?;
        }
        _ => {}
    }
    Ok(record)
}

/// What an identifier names in the registry.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Identity {
    Site(SiteRecord),
    /// A customer, with the IDs of its sites.
    Customer {
        sites: Vec<String>,
    },
    /// A product instance (app) of a site.
    App {
        site: String,
        product: String,
    },
    /// Nothing in the registry has this ID.
    Unknown,
}

pub(crate) fn identify(
    conn: &Connection,
    path: &Path,
    id: &str,
) -> Result<Identity, PlatformError> {
    match site(conn, path, id) {
        Ok(record) => return Ok(Identity::Site(record)),
        Err(PlatformError::UnknownSite { .. }) => {}
        Err(e) => return Err(e),
    }
    // Registries built before product instances were recorded have no `apps` table.
    let has_apps = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'apps'",
            [],
            |_| Ok(()),
        )
        .optional()
        .db(path)?
        .is_some();
    let app = if !has_apps {
        None
    } else {
        conn.query_row("SELECT site, product FROM apps WHERE id = ?1", [id], |r| {
            Ok(Identity::App {
                site: r.get(0)?,
                product: r.get(1)?,
            })
        })
        .optional()
        .db(path)?
    };
    if let Some(app) = app {
        return Ok(app);
    }
    let mut stmt = conn
        .prepare("SELECT id FROM sites WHERE customer = ?1 ORDER BY id")
        .db(path)?;
    let sites = stmt
        .query_map([id], |r| r.get(0))
        .db(path)?
        .collect::<Result<Vec<String>, _>>()
        .db(path)?;
    Ok(if sites.is_empty() {
        Identity::Unknown
    } else {
        Identity::Customer { sites }
    })
}

/// The row as stored, before its JSON columns are parsed.
struct RawSite {
    id: String,
    customer: String,
    tier: String,
    state: String,
    products: String,
    shards: String,
    deleted_at: Option<i64>,
    retained_until: Option<i64>,
    reactivated_at: Option<i64>,
}

fn raw_site(r: &Row<'_>) -> rusqlite::Result<RawSite> {
    Ok(RawSite {
        id: r.get(0)?,
        customer: r.get(1)?,
        tier: r.get(2)?,
        state: r.get(3)?,
        products: r.get(4)?,
        shards: r.get(5)?,
        deleted_at: r.get(6)?,
        retained_until: r.get(7)?,
        reactivated_at: r.get(8)?,
    })
}

impl RawSite {
    fn parse(self) -> Result<SiteRecord, PlatformError> {
        let bad = |reason: String| PlatformError::BadRegistry {
            site: self.id.clone(),
            reason,
        };
        let state = SiteState::parse(&self.state)
            .ok_or_else(|| bad(format!("unknown state '{}'", self.state)))?;
        let products =
            serde_json::from_str(&self.products).map_err(|e| bad(format!("products: {e}")))?;
        let shards = serde_json::from_str(&self.shards).map_err(|e| bad(format!("shards: {e}")))?;
        Ok(SiteRecord {
            id: self.id,
            customer: self.customer,
            tier: self.tier,
            state,
            products,
            shards,
            deleted_at: self.deleted_at,
            retained_until: self.retained_until,
            reactivated_at: self.reactivated_at,
        })
    }
}
