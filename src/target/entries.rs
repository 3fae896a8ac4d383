//! What a registry reached by a command (`exec`) answers: one JSON object per ID it knows,
//! docs/request-format.md ("A registry behind a command"). IDs it does not know are left out.

use std::collections::HashMap;

use serde::Deserialize;

use super::{Identity, RegistryError, SiteRecord, SiteState};

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
pub fn sites(
    entries: &[Entry],
    registry: &str,
) -> Result<HashMap<String, SiteRecord>, RegistryError> {
    let mut out = HashMap::new();
    for e in entries {
        if let Some(record) = e.site_record(registry)? {
            out.insert(record.id.clone(), record);
        }
    }
    Ok(out)
}

/// What each of `ids` is, from the entries a lookup of them gave: an ID without one is unknown.
pub fn identities(
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
