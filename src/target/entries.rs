//! What a registry reached by a command (`exec`) or an endpoint (`http`) answers: one JSON
//! object per ID it knows, docs/request-format.md ("A registry behind a command"). IDs it does
//! not know are left out. [`Lookup`] turns such lookups into a [`SiteRegistry`].

use std::collections::HashMap;

use serde::Deserialize;

use super::{Claim, Identity, RegistryError, SiteRecord, SiteRegistry, SiteState};

#[derive(Debug, Deserialize)]
pub struct Entry {
    pub id: String,
    /// `site`, `customer` or `app`.
    pub kind: String,
    pub state: Option<String>,
    pub customer: Option<String>,
    pub tier: Option<String>,
    #[serde(default)]
    pub products: Vec<String>,
    /// For an app: its site and product.
    pub site: Option<String>,
    pub product: Option<String>,
    /// For a customer: its sites.
    #[serde(default)]
    pub sites: Vec<String>,
    /// For a site a run has claimed: that run (`SiteClaims`).
    pub held_by: Option<super::Claim>,
}

impl Entry {
    /// The site this entry describes, if it is one.
    pub fn site_record(&self, registry: &str) -> Result<Option<SiteRecord>, RegistryError> {
        if self.kind != "site" {
            return Ok(None);
        }
        let name = self.state.as_deref().unwrap_or("");
        let state = SiteState::parse(name).ok_or_else(|| RegistryError::BadRow {
            registry: registry.to_owned(),
            id: self.id.clone(),
            what: format!(
                "a site in state '{name}', which is not one of drover's: {}",
                SiteState::names().join(", ")
            ),
        })?;
        Ok(Some(SiteRecord {
            id: self.id.clone(),
            customer: self.customer.clone().unwrap_or_default(),
            tier: self.tier.clone().unwrap_or_default(),
            state,
            products: self.products.clone(),
            shards: Default::default(),
            deleted_at: None,
            retained_until: None,
            reactivated_at: None,
        }))
    }

    pub fn identity(&self, registry: &str) -> Result<Identity, RegistryError> {
        match self.kind.as_str() {
            "site" => Ok(self
                .site_record(registry)?
                .map_or(Identity::Unknown, Identity::Site)),
            "customer" => Ok(Identity::Customer {
                sites: self.sites.clone(),
            }),
            "app" => Ok(Identity::App {
                site: self.site.clone().unwrap_or_default(),
                product: self.product.clone().unwrap_or_default(),
            }),
            other => Err(RegistryError::BadRow {
                registry: registry.to_owned(),
                id: self.id.clone(),
                what: format!("of kind '{other}'; the kinds are site, customer and app"),
            }),
        }
    }
}

/// The sites among `entries`.
fn sites(entries: &[Entry], registry: &str) -> Result<HashMap<String, SiteRecord>, RegistryError> {
    let mut out = HashMap::new();
    for e in entries {
        if let Some(record) = e.site_record(registry)? {
            out.insert(record.id.clone(), record);
        }
    }
    Ok(out)
}

/// What each of `ids` is, from the entries a lookup of them gave: an ID without one is unknown.
fn identities(
    entries: Vec<Entry>,
    ids: &[&str],
    registry: &str,
) -> Result<HashMap<String, Identity>, RegistryError> {
    let mut out: HashMap<String, Identity> = ids
        .iter()
        .map(|&id| (id.to_owned(), Identity::Unknown))
        .collect();
    for e in entries {
        if let Some(slot) = out.get_mut(&e.id) {
            *slot = e.identity(registry)?;
        }
    }
    Ok(out)
}

/// A registry that answers lookups with entries: everything preflight asks of it is one lookup.
pub trait Lookup {
    /// The entries for `ids` (an answer may hold others; they are ignored).
    fn lookup(&self, ids: &[&str]) -> Result<Vec<Entry>, RegistryError>;
    /// Where it is, for messages.
    fn described(&self) -> String;
    /// What it is, however named ([`SiteRegistry::identity`]).
    fn identity(&self) -> String;

    /// The entries for `ids`, and only those.
    fn lookup_only(&self, ids: &[&str]) -> Result<Vec<Entry>, RegistryError> {
        let wanted: std::collections::HashSet<&str> = ids.iter().copied().collect();
        Ok(self
            .lookup(ids)?
            .into_iter()
            .filter(|e| wanted.contains(e.id.as_str()))
            .collect())
    }
}

impl<T: Lookup> SiteRegistry for T {
    fn describe(&self) -> String {
        self.described()
    }

    fn identity(&self) -> Result<String, RegistryError> {
        Ok(Lookup::identity(self))
    }

    fn sites(&self, ids: &[&str]) -> Result<HashMap<String, SiteRecord>, RegistryError> {
        sites(&self.lookup_only(ids)?, &self.described())
    }

    fn identify(&self, id: &str) -> Result<Identity, RegistryError> {
        Ok(self
            .identify_all(&[id])?
            .remove(id)
            .unwrap_or(Identity::Unknown))
    }

    fn identify_all(&self, ids: &[&str]) -> Result<HashMap<String, Identity>, RegistryError> {
        identities(self.lookup_only(ids)?, ids, &self.described())
    }

    fn held(&self, ids: &[&str]) -> Result<HashMap<String, Claim>, RegistryError> {
        Ok(self
            .lookup_only(ids)?
            .into_iter()
            .filter_map(|e| Some((e.id, e.held_by?)))
            .collect())
    }
}
