//! What an HTTP or command registry answers to drover's writes (docs/request-format.md, "Claims
//! and reactivation through your registry"): one JSON object per operation. The operations
//! themselves reach the registry as a JSON body (HTTP) or as environment variables and IDs on
//! standard input (a command); the answers are the same for both.

use serde::Deserialize;

use super::{Claim, ClaimError, RegistryError, SiteRegistry};

/// A site and the run holding it.
#[derive(Debug, Deserialize)]
pub struct SiteClaim {
    pub site: String,
    #[serde(flatten)]
    pub claim: Claim,
}

/// The answer to `claim`: `{"claimed": true, "taken_over": [...]}`, or `{"claimed": false,
/// "held": [...]}` when other runs hold some of the sites (and nothing was claimed).
#[derive(Debug, Deserialize)]
pub struct ClaimAnswer {
    pub claimed: bool,
    #[serde(default)]
    pub held: Vec<SiteClaim>,
    #[serde(default)]
    pub taken_over: Vec<SiteClaim>,
}

impl ClaimAnswer {
    pub fn into_result(self, registry: &str) -> Result<Vec<(String, Claim)>, ClaimError> {
        let pairs = |v: Vec<SiteClaim>| v.into_iter().map(|c| (c.site, c.claim)).collect();
        match (self.claimed, self.held.is_empty()) {
            (true, _) => Ok(pairs(self.taken_over)),
            (false, false) => Err(ClaimError::Held(pairs(self.held))),
            (false, true) => Err(ClaimError::Registry {
                registry: registry.to_owned(),
                reason: "it answered claimed: false without naming the runs that hold the \
                         sites (\"held\")"
                    .into(),
            }),
        }
    }
}

/// The answer to `reactivate`: `{"reactivated": true}` the first time, `{"reactivated":
/// false}` when this idempotency key already did it, `{"refused": "<why>"}` for a site in any
/// state but the expected ones.
#[derive(Debug, Deserialize)]
pub struct ReactivateAnswer {
    pub reactivated: Option<bool>,
    pub refused: Option<String>,
}

impl ReactivateAnswer {
    /// The answer, checked by reading the site back: it must be live now, whatever was said.
    pub fn checked(self, registry: &dyn SiteRegistry, site: &str) -> Result<bool, RegistryError> {
        let first = match (self.refused, self.reactivated) {
            (Some(reason), _) => {
                return Err(RegistryError::Refused {
                    registry: registry.describe(),
                    reason: format!("it did not reactivate {site}: {reason}"),
                });
            }
            (None, Some(first)) => first,
            (None, None) => {
                return Err(RegistryError::BadRow {
                    registry: registry.describe(),
                    id: site.to_owned(),
                    what: "neither reactivated nor refused (the answer to reactivate is \
                           {\"reactivated\": true|false} or {\"refused\": \"why\"})"
                        .into(),
                });
            }
        };
        let now = registry.sites(&[site])?;
        match now.get(site).map(|r| r.state) {
            Some(state) if state.is_live() => Ok(first),
            other => Err(RegistryError::BadRow {
                registry: registry.describe(),
                id: site.to_owned(),
                what: format!(
                    "{} after it said it reactivated it",
                    other.map_or("missing".to_owned(), |s| format!("a site in state {s}"))
                ),
            }),
        }
    }
}
