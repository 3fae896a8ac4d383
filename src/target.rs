//! The target platform's site registry, as preflight reads it: what an ID is (a site, a
//! customer, a product instance) and each site's state, customer, tier and products.
//!
//! [`SiteRegistry`] is read-only by construction: it has no method that writes. Adapters:
//! - [`reference`]: the reference platform's `registry.db` (`[target] registry = "<dir>"`);
//! - [`postgres`]: the operator's own registry in PostgreSQL, read through a view
//!   (`[target] registry = "postgres://…"`, docs/request-format.md);
//! - [`http`]: a JSON endpoint (`[target] registry = "https://…"`);
//! - [`exec`]: any other registry, through a command the operator provides
//!   (`[target] registry = { exec = ["tool", "lookup"] }`).
//!
//! [`open`] chooses the adapter from the request's `[target]`.

mod entries;
pub mod exec;
pub mod http;
pub mod postgres;
pub mod reference;
mod writes;

use std::collections::HashMap;

pub use crate::platform::{Claim, Identity, SiteRecord, SiteState};
use crate::request::Target;

/// A registry of sites, read-only.
pub trait SiteRegistry {
    /// Where it is, for messages (never with a password).
    fn describe(&self) -> String;
    /// The records of those of `ids` that are sites; other IDs are absent from the map.
    fn sites(&self, ids: &[&str]) -> Result<HashMap<String, SiteRecord>, RegistryError>;
    /// What `id` is, for an ID that is not a site.
    fn identify(&self, id: &str) -> Result<Identity, RegistryError>;
    /// What each of `ids` is ([`SiteRegistry::identify`]); adapters for which each question
    /// costs a request or a process answer them all at once.
    fn identify_all(&self, ids: &[&str]) -> Result<HashMap<String, Identity>, RegistryError> {
        ids.iter()
            .map(|&id| Ok((id.to_owned(), self.identify(id)?)))
            .collect()
    }
    /// What this registry is, however it was named: two registries with the same identity are
    /// the same (a drill refuses a drill environment that is production).
    fn identity(&self) -> Result<String, RegistryError>;
    /// Which of `ids` a run holds (`SiteClaims`), for preflight to name the run. Empty for a
    /// registry that keeps no claims.
    fn held(&self, ids: &[&str]) -> Result<HashMap<String, Claim>, RegistryError> {
        let _ = ids;
        Ok(HashMap::new())
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
    #[error("the registry at {registry} refused: {reason}")]
    Refused { registry: String, reason: String },
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
            RegistryError::Refused { .. } => {
                "check the site's state in the registry: drover reactivates only a site in \
                 restoring or validated"
                    .into()
            }
            RegistryError::Config(_) => "see docs/request-format.md, [target]".into(),
        }
    }
}

/// The adapter for a request's `[target]`.
pub fn open(target: &Target) -> Result<Box<dyn SiteRegistry>, RegistryError> {
    if let Some(argv) = &target.exec {
        return Ok(Box::new(exec::ExecRegistry::new(
            argv.clone(),
            target.registry.clone(),
        )?));
    }
    if http::is_url(&target.registry) {
        return Ok(Box::new(http::HttpRegistry::new(&target.registry)?));
    }
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

/// Which run is restoring each site, kept in the target registry (the write side, apart from
/// [`SiteRegistry`]): a run claims all its sites at once when it starts, so that two runs over
/// the same sites never both restore them.
pub trait SiteClaims {
    /// Claims `sites` for `me`'s run, all or none. Sites another run holds refuse the claim
    /// (`ClaimError::Held`, every one with its holder) unless `take_over`; the claims taken over
    /// are returned.
    fn claim(
        &self,
        sites: &[&str],
        me: &Claim,
        take_over: bool,
    ) -> Result<Vec<(String, Claim)>, ClaimError>;
    /// Releases every claim of `run_id` (its sites are all restored).
    fn release(&self, run_id: &str) -> Result<(), ClaimError>;
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("sites held by another run")]
    Held(Vec<(String, Claim)>),
    #[error("cannot record which run restores the sites in {registry}: {reason}")]
    Registry { registry: String, reason: String },
}

impl ClaimError {
    /// The registry at `registry` failed to keep claims.
    pub fn from_registry(registry: &str, e: RegistryError) -> ClaimError {
        ClaimError::Registry {
            registry: registry.to_owned(),
            reason: e.to_string(),
        }
    }
}

/// Where the sites of a request with `target` are claimed: in the registry itself, through the
/// same adapter that reads it. `None` when the reference platform's directory cannot be opened
/// (preflight has said why).
pub fn claims(target: &Target) -> Result<Option<Box<dyn SiteClaims>>, RegistryError> {
    if let Some(argv) = &target.exec {
        let registry = exec::ExecRegistry::new(argv.clone(), target.registry.clone())?;
        return Ok(Some(Box::new(registry)));
    }
    if http::is_url(&target.registry) {
        return Ok(Some(Box::new(http::HttpRegistry::new(&target.registry)?)));
    }
    if postgres::is_url(&target.registry) {
        return Ok(Some(Box::new(postgres::PostgresRegistry::connect(target)?)));
    }
    Ok(reference::Reference::open(&target.registry)
        .ok()
        .map(|r| Box::new(r) as Box<dyn SiteClaims>))
}

/// Whether `spec` (`Target::spec`) names an operator's own registry (PostgreSQL, HTTP or a
/// command) rather than the reference platform's directory.
pub fn is_operators(spec: &str) -> bool {
    postgres::is_url(spec) || http::is_url(spec) || spec.starts_with(crate::request::EXEC_PREFIX)
}

/// Whether preflight reads `target` and a run claims its sites there: always for an operator's
/// registry; for the reference platform when the workflow restores into it (`used`: a workflow
/// of `sleep` steps restores nothing there).
pub fn applies(target: &Target, used: bool) -> bool {
    is_operators(&target.spec()) || used
}

/// Whether a claim no longer holds its site: it was made on this host by a process that has
/// ended, for a ledger that does not exist (the run was stopped between claiming and writing its
/// ledger, or the ledger was removed), so nothing can continue that run. A run still between
/// the two keeps its claim. Without `/proc` (not Linux) no claim is void, nor one whose ledger
/// is in PostgreSQL (a standby or a resume elsewhere continues that run).
pub fn is_void(claim: &Claim) -> bool {
    let proc = std::path::Path::new("/proc");
    claim.host == crate::ledger::lock::hostname()
        && proc.join("self").exists()
        && !proc.join(claim.pid.to_string()).exists()
        && !crate::ledger::postgres::is_url(&claim.ledger)
        && !std::path::Path::new(&claim.ledger).exists()
}

/// Putting a restored site back in service through the operator's registry (the write side,
/// apart from [`SiteRegistry`]): a compare-and-set from `restoring` or `validated`, exactly once
/// per site however often it is asked (retries, resumes) with the same idempotency key.
pub trait SiteStates {
    /// Reactivates `site` if it is in one of [`REACTIVATE_FROM`]; `Ok(true)` the first time,
    /// `Ok(false)` when this key already reactivated it. Any other state is refused.
    fn reactivate(&self, site: &str, key: &str) -> Result<bool, RegistryError>;
}

/// The states a site may be reactivated from.
pub const REACTIVATE_FROM: [SiteState; 2] = [SiteState::Restoring, SiteState::Validated];

/// Whether a `reactivate` step's `platform` param names an operator's registry, which keeps
/// site states itself.
pub fn keeps_states(platform: &str) -> bool {
    is_operators(platform)
}

/// The registry a `reactivate` step's `platform` param (a `Target::spec`, usually `{target}`)
/// names, if it is an operator's: PostgreSQL (its function `drover_reactivate`), HTTP or a
/// command (the `reactivate` operation, docs/request-format.md). `None` for the reference
/// platform, whose own operations the step uses.
pub fn states(platform: &str) -> Result<Option<Box<dyn SiteStates>>, RegistryError> {
    if !keeps_states(platform) {
        return Ok(None);
    }
    let target = Target::parse(platform);
    Ok(Some(match &target.exec {
        Some(argv) => Box::new(exec::ExecRegistry::new(
            argv.clone(),
            target.registry.clone(),
        )?),
        None if http::is_url(platform) => Box::new(http::HttpRegistry::new(platform)?),
        None => Box::new(postgres::PostgresRegistry::connect(&target)?),
    }))
}

/// Why a site `claim` holds may not be restored by another run, and the fix: (message, fix).
pub fn held_refusal(c: &Claim) -> (String, String) {
    (
        format!(
            "is being restored by run {} (ledger {} on {}, pid {}, since {}): two runs never \
             restore the same site",
            c.run_id,
            c.ledger,
            c.host,
            c.pid,
            crate::ledger::format_ms(c.at)
        ),
        format!(
            "let that run finish, or continue it with `drover resume --state {}`; if it is \
             finished or abandoned, take its sites over with --replace-existing",
            c.ledger
        ),
    )
}
