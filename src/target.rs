//! The target platform's site registry, as preflight reads it: what an ID is (a site, a
//! customer, a product instance) and each site's state, customer, tier and products.
//!
//! [`SiteRegistry`] is read-only by construction: it has no method that writes. Adapters:
//! - [`reference`]: the reference platform's `registry.db` (`[target] registry = "<dir>"`);
//! - [`postgres`]: the operator's own registry in PostgreSQL, read through a view
//!   (`[target] registry = "postgres://…"`, docs/request-format.md).
//!
//! [`open`] chooses the adapter from the request's `[target]`.

pub mod postgres;
pub mod reference;

use std::collections::HashMap;

pub use crate::platform::{Identity, SiteRecord, SiteState};
use crate::request::Target;

/// A registry of sites, read-only.
pub trait SiteRegistry {
    /// Where it is, for messages (never with a password).
    fn describe(&self) -> String;
    /// The records of those of `ids` that are sites; other IDs are absent from the map.
    fn sites(&self, ids: &[&str]) -> Result<HashMap<String, SiteRecord>, RegistryError>;
    /// What `id` is, for an ID that is not a site.
    fn identify(&self, id: &str) -> Result<Identity, RegistryError>;
    /// Whether the workflow must name this registry (`{target}`) for preflight to apply: the
    /// reference platform is checked only when the steps restore into it; an operator's own
    /// registry always.
    fn only_when_used(&self) -> bool {
        false
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read the registry at {registry}: {source}")]
    Reference {
        registry: String,
        #[source]
        source: crate::platform::PlatformError,
    },
    #[error("cannot reach the registry at {registry}: {reason}")]
    Unreachable { registry: String, reason: String },
    #[error("the registry at {registry} answered the query on {view} with an error: {reason}")]
    Query {
        registry: String,
        view: String,
        reason: String,
    },
    #[error("the registry at {registry} describes '{id}' as {what}")]
    BadRow {
        registry: String,
        id: String,
        what: String,
    },
    #[error("{0}")]
    Config(String),
}

impl RegistryError {
    /// What the operator can do about it.
    pub fn fix(&self) -> String {
        match self {
            RegistryError::Reference { .. } => {
                "point [target] registry at the platform directory (the one holding registry.db)".into()
            }
            RegistryError::Unreachable { .. } => {
                "check that the server is up and reachable from here, the user and database in the \
                 URL, and PGPASSWORD if the server asks for a password"
                    .into()
            }
            RegistryError::Query { view, .. } => format!(
                "create the view {view} with the columns docs/request-format.md lists (id, kind, \
                 state, customer, tier, products, site, product), or name yours with [target] registry_view"
            ),
            RegistryError::BadRow { .. } => {
                "map the registry's values to drover's in the view (docs/request-format.md lists them)".into()
            }
            RegistryError::Config(_) => "see docs/request-format.md, [target]".into(),
        }
    }
}

/// The adapter for a request's `[target]`.
pub fn open(target: &Target) -> Result<Box<dyn SiteRegistry>, RegistryError> {
    if postgres::is_url(&target.registry) {
        Ok(Box::new(postgres::PostgresRegistry::connect(target)?))
    } else {
        if target.registry_view.is_some() {
            return Err(RegistryError::Config(format!(
                "[target] registry_view is for a PostgreSQL registry, but registry = '{}' is a \
                 reference platform directory",
                target.registry
            )));
        }
        Ok(Box::new(reference::Reference::open(&target.registry)?))
    }
}
