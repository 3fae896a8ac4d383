//! An operator's own site registry in PostgreSQL, read through a view (`drover_sites` unless
//! `[target] registry_view` names another) whose columns docs/request-format.md lists: the view
//! is where the operator maps their tables and state names to drover's.
//!
//! Read-only: the session's transactions are `READ ONLY`, and every query runs in one (a
//! read-only role is the operator's second lock, docs/safety.md). The password never appears in
//! the request: a URL carrying one is refused, and `PGPASSWORD` supplies it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::str::FromStr;

use postgres::{Client, Config};

use super::{Identity, RegistryError, SiteRecord, SiteRegistry, SiteState};
use crate::request::Target;

/// The view read when `[target] registry_view` names none.
pub const DEFAULT_VIEW: &str = "drover_sites";

/// Whether a `[target] registry` names a PostgreSQL server.
pub fn is_url(registry: &str) -> bool {
    registry.starts_with("postgres://") || registry.starts_with("postgresql://")
}

pub struct PostgresRegistry {
    /// The URL without a password, for messages.
    at: String,
    view: String,
    client: RefCell<Client>,
}

impl PostgresRegistry {
    pub fn connect(target: &Target) -> Result<PostgresRegistry, RegistryError> {
        let (plain, tls) = crate::pgtls::split(&target.registry)
            .map_err(|e| RegistryError::Config(format!("[target] registry: {e}")))?;
        let mut config = tokio_postgres::Config::from_str(&plain).map_err(|e| {
            RegistryError::Config(format!(
                "[target] registry is not a PostgreSQL URL drover can read: {e}"
            ))
        })?;
        if config.get_password().is_some() {
            return Err(RegistryError::Config(
                "[target] registry carries a password: a request is shared and kept, so drover \
                 refuses passwords in it; remove it from the URL and set PGPASSWORD in the \
                 environment instead"
                    .into(),
            ));
        }
        let at = describe(&config);
        let view = target
            .registry_view
            .clone()
            .unwrap_or_else(|| DEFAULT_VIEW.to_owned());
        if !is_identifier(&view) {
            return Err(RegistryError::Config(format!(
                "[target] registry_view = '{view}' is not a view name (letters, digits and _, \
                 optionally schema.view)"
            )));
        }
        crate::pgtls::settle(&mut config, &tls, "drover preflight");
        let unreachable = |e: postgres::Error| RegistryError::Unreachable {
            registry: at.clone(),
            reason: reason(&e),
        };
        let mut client = Config::from(config)
            .connect(tls.connector)
            .map_err(unreachable)?;
        client
            .batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            .map_err(unreachable)?;
        Ok(PostgresRegistry {
            at,
            view,
            client: RefCell::new(client),
        })
    }

    /// Runs `sql` with `params` in a read-only transaction.
    fn query(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, RegistryError> {
        let failed = |e: postgres::Error| RegistryError::Query {
            registry: self.at.clone(),
            view: self.view.clone(),
            reason: reason(&e),
        };
        let mut client = self.client.borrow_mut();
        let mut tx = client
            .build_transaction()
            .read_only(true)
            .start()
            .map_err(failed)?;
        let rows = tx.query(sql, params).map_err(failed)?;
        tx.commit().map_err(failed)?;
        Ok(rows)
    }

    fn bad(&self, id: &str, what: String) -> RegistryError {
        RegistryError::BadRow {
            registry: self.at.clone(),
            id: id.to_owned(),
            what,
        }
    }

    fn text(
        &self,
        row: &postgres::Row,
        id: &str,
        column: &str,
    ) -> Result<Option<String>, RegistryError> {
        row.try_get(column)
            .map_err(|e| self.bad(id, format!("an unreadable {column} ({})", reason(&e))))
    }
}

impl SiteRegistry for PostgresRegistry {
    fn describe(&self) -> String {
        self.at.clone()
    }

    fn sites(&self, ids: &[&str]) -> Result<HashMap<String, SiteRecord>, RegistryError> {
        let ids: Vec<&str> = ids.to_vec();
        let sql = format!(
            "SELECT id::text AS id, state::text AS state, customer::text AS customer, \
             tier::text AS tier, products::text[] AS products \
             FROM {} WHERE kind = 'site' AND id = ANY($1)",
            self.view
        );
        let mut out = HashMap::new();
        for row in self.query(&sql, &[&ids])? {
            let id: String = self.text(&row, "?", "id")?.unwrap_or_default();
            let state_name = self.text(&row, &id, "state")?.unwrap_or_default();
            let state = SiteState::parse(&state_name).ok_or_else(|| {
                self.bad(
                    &id,
                    format!(
                        "a site in state '{state_name}', which is not one of drover's: {}",
                        SiteState::names().join(", ")
                    ),
                )
            })?;
            let products: Option<Vec<String>> = row
                .try_get("products")
                .map_err(|e| self.bad(&id, format!("unreadable products ({})", reason(&e))))?;
            out.insert(
                id.clone(),
                SiteRecord {
                    customer: self.text(&row, &id, "customer")?.unwrap_or_default(),
                    tier: self.text(&row, &id, "tier")?.unwrap_or_default(),
                    state,
                    products: products.unwrap_or_default(),
                    shards: Default::default(),
                    deleted_at: None,
                    retained_until: None,
                    reactivated_at: None,
                    id,
                },
            );
        }
        Ok(out)
    }

    fn held(&self, ids: &[&str]) -> Result<HashMap<String, super::Claim>, RegistryError> {
        self.claims_of(ids)
    }

    fn identity(&self) -> Result<String, RegistryError> {
        // The cluster's own identifier (set by initdb) names the server whatever address
        // reached it; without the right to read it, the address the server reports.
        let cluster = self
            .query(
                "SELECT system_identifier::text FROM pg_control_system()",
                &[],
            )
            .ok()
            .and_then(|rows| rows.first().and_then(|r| r.try_get::<_, String>(0).ok()));
        let server = match cluster {
            Some(id) => format!("cluster {id}"),
            None => {
                let rows = self.query(
                    "SELECT coalesce(host(inet_server_addr()), 'socket') || ':' || \
                     coalesce(inet_server_port()::text, '')",
                    &[],
                )?;
                format!(
                    "server {}",
                    rows.first().map_or(String::new(), |r| r.get(0))
                )
            }
        };
        let rows = self.query("SELECT current_database()::text", &[])?;
        let db: String = rows.first().map_or(String::new(), |r| r.get(0));
        Ok(format!("postgres {server} database {db}"))
    }

    fn identify(&self, id: &str) -> Result<Identity, RegistryError> {
        let sql = format!(
            "SELECT kind::text AS kind, site::text AS site, product::text AS product \
             FROM {} WHERE id = $1 LIMIT 1",
            self.view
        );
        let Some(row) = self.query(&sql, &[&id])?.into_iter().next() else {
            return Ok(Identity::Unknown);
        };
        match self.text(&row, id, "kind")?.as_deref() {
            Some("site") => Ok(self
                .sites(&[id])?
                .remove(id)
                .map_or(Identity::Unknown, Identity::Site)),
            Some("customer") => {
                let sql = format!(
                    "SELECT id::text AS id FROM {} WHERE kind = 'site' AND customer = $1 ORDER BY id",
                    self.view
                );
                let sites = self
                    .query(&sql, &[&id])?
                    .iter()
                    .map(|r| self.text(r, id, "id").map(Option::unwrap_or_default))
                    .collect::<Result<_, _>>()?;
                Ok(Identity::Customer { sites })
            }
            Some("app") => Ok(Identity::App {
                site: self.text(&row, id, "site")?.unwrap_or_default(),
                product: self.text(&row, id, "product")?.unwrap_or_default(),
            }),
            other => Err(self.bad(
                id,
                format!(
                    "of kind '{}'; the kinds are site, customer and app",
                    other.unwrap_or("")
                ),
            )),
        }
    }
}

/// `postgres://user@host:port/db`, without a password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_default();
    let port = config
        .get_ports()
        .first()
        .map_or(String::new(), |p| format!(":{p}"));
    format!(
        "postgres://{}@{host}{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

/// The most telling message of a driver error: the server's own, when it sent one.
fn reason(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    }
}

fn is_identifier(name: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && !p.starts_with(|c: char| c.is_ascii_digit())
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() <= 2 && parts.iter().all(|p| part(p))
}

/// The table a run's claims are kept in, beside the operator's registry (created on first use;
/// the role needs `SELECT`, `INSERT`, `UPDATE` and `DELETE` on it, and `CREATE` the first time).
pub const CLAIMS_TABLE: &str = "drover_claims";

/// Held until the transaction ends: claims and releases take turns.
const SERIALIZE: &str = "SELECT pg_advisory_xact_lock(hashtext('drover_claims'))";

const CREATE_CLAIMS: &str = "CREATE TABLE IF NOT EXISTS drover_claims (
    site text PRIMARY KEY,
    run_id text NOT NULL,
    ledger text NOT NULL,
    host text NOT NULL,
    pid bigint NOT NULL,
    at bigint NOT NULL
)";

/// A read-write transaction on the claims table, created if need be, holding `SERIALIZE`: one
/// claimer at a time from before the table exists, so that two runs reading the same free sites
/// cannot both take them and two first claimers cannot both create the table (concurrent
/// `CREATE TABLE IF NOT EXISTS` can fail on PostgreSQL's catalog).
fn claims_transaction(client: &mut Client) -> Result<postgres::Transaction<'_>, postgres::Error> {
    let mut tx = client.build_transaction().read_only(false).start()?;
    tx.batch_execute(SERIALIZE)?;
    tx.batch_execute(CREATE_CLAIMS)?;
    Ok(tx)
}

fn claim_from(row: &postgres::Row) -> Result<(String, super::Claim), postgres::Error> {
    Ok((
        row.try_get("site")?,
        super::Claim {
            run_id: row.try_get("run_id")?,
            ledger: row.try_get("ledger")?,
            host: row.try_get("host")?,
            pid: u32::try_from(row.try_get::<_, i64>("pid")?).unwrap_or(0),
            at: row.try_get("at")?,
        },
    ))
}

impl PostgresRegistry {
    /// The claims of `ids`, read-only (none before any run claimed here).
    pub(super) fn claims_of(
        &self,
        ids: &[&str],
    ) -> Result<HashMap<String, super::Claim>, RegistryError> {
        let exists = self.query(
            &format!("SELECT to_regclass('{CLAIMS_TABLE}') IS NOT NULL"),
            &[],
        )?;
        if !exists.first().is_some_and(|r| r.get::<_, bool>(0)) {
            return Ok(HashMap::new());
        }
        let ids: Vec<&str> = ids.to_vec();
        let sql = format!(
            "SELECT site, run_id, ledger, host, pid, at FROM {CLAIMS_TABLE} WHERE site = ANY($1)"
        );
        let mut out = HashMap::new();
        for row in self.query(&sql, &[&ids])? {
            let (site, claim) = claim_from(&row)
                .map_err(|e| self.bad("?", format!("an unreadable claim ({})", reason(&e))))?;
            if !super::is_void(&claim) {
                out.insert(site, claim);
            }
        }
        Ok(out)
    }

    fn claims_failed(&self, e: &postgres::Error) -> super::ClaimError {
        super::ClaimError::Registry {
            registry: self.at.clone(),
            reason: format!(
                "{} (the role needs SELECT, INSERT, UPDATE and DELETE on {CLAIMS_TABLE}, and \
                 CREATE the first time)",
                reason(e)
            ),
        }
    }
}

impl super::SiteClaims for PostgresRegistry {
    fn claim(
        &self,
        sites: &[&str],
        me: &super::Claim,
        take_over: bool,
    ) -> Result<Vec<(String, super::Claim)>, super::ClaimError> {
        let failed = |e: postgres::Error| self.claims_failed(&e);
        let mut client = self.client.borrow_mut();
        let mut tx = claims_transaction(&mut client).map_err(failed)?;
        let ids: Vec<&str> = sites.to_vec();
        let held = tx
            .query(
                &format!(
                    "SELECT site, run_id, ledger, host, pid, at FROM {CLAIMS_TABLE} \
                     WHERE site = ANY($1) AND run_id <> $2 ORDER BY site"
                ),
                &[&ids, &me.run_id],
            )
            .map_err(failed)?
            .iter()
            .map(claim_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?
            .into_iter()
            .filter(|(_, c)| !super::is_void(c))
            .collect::<Vec<_>>();
        if !held.is_empty() && !take_over {
            return Err(super::ClaimError::Held(held));
        }
        let put = tx
            .prepare(&format!(
                "INSERT INTO {CLAIMS_TABLE} (site, run_id, ledger, host, pid, at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (site) DO UPDATE SET run_id = EXCLUDED.run_id, \
                 ledger = EXCLUDED.ledger, host = EXCLUDED.host, pid = EXCLUDED.pid, at = EXCLUDED.at"
            ))
            .map_err(failed)?;
        for site in sites {
            tx.execute(
                &put,
                &[
                    site,
                    &me.run_id,
                    &me.ledger,
                    &me.host,
                    &i64::from(me.pid),
                    &me.at,
                ],
            )
            .map_err(failed)?;
        }
        tx.commit().map_err(failed)?;
        Ok(held)
    }

    fn release(&self, run_id: &str) -> Result<(), super::ClaimError> {
        let failed = |e: postgres::Error| self.claims_failed(&e);
        let mut client = self.client.borrow_mut();
        let mut tx = claims_transaction(&mut client).map_err(failed)?;
        tx.execute(
            &format!("DELETE FROM {CLAIMS_TABLE} WHERE run_id = $1"),
            &[&run_id],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)
    }
}

/// The function an operator's PostgreSQL registry provides for reactivation:
/// `drover_reactivate(site text, idempotency_key text, expected text[]) RETURNS boolean` flips
/// the site to live when its state is one of `expected` (compare and set), records the key, and
/// returns true; it returns false when that key already reactivated the site, and raises an
/// error otherwise (docs/request-format.md has an example).
pub const REACTIVATE_FUNCTION: &str = "drover_reactivate";

impl super::SiteStates for PostgresRegistry {
    fn reactivate(&self, site: &str, key: &str) -> Result<bool, RegistryError> {
        let expected: Vec<&str> = super::REACTIVATE_FROM.iter().map(|s| s.as_str()).collect();
        let failed = |e: postgres::Error| RegistryError::Query {
            registry: self.at.clone(),
            view: format!("{REACTIVATE_FUNCTION}()"),
            reason: reason(&e),
        };
        let first: bool = {
            let mut client = self.client.borrow_mut();
            let mut tx = client
                .build_transaction()
                .read_only(false)
                .start()
                .map_err(failed)?;
            let row = tx
                .query_one(
                    &format!("SELECT {REACTIVATE_FUNCTION}($1, $2, $3::text[])"),
                    &[&site, &key, &expected],
                )
                .map_err(failed)?;
            let first = row.try_get(0).map_err(failed)?;
            tx.commit().map_err(failed)?;
            first
        };
        // Read back through the view: the site must now be live, whatever the function said.
        let now = self.sites(&[site])?;
        match now.get(site).map(|r| r.state) {
            Some(state) if state.is_live() => Ok(first),
            other => Err(self.bad(
                site,
                format!(
                    "{} after {REACTIVATE_FUNCTION}() said it reactivated it",
                    other.map_or("missing".to_owned(), |s| format!("a site in state {s}"))
                ),
            )),
        }
    }
}
