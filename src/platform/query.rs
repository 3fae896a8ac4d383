//! Reading the registry: sites, key contacts, events and the notification outbox.

use serde::Serialize;

use super::registry::{Contact, Identity, SiteRecord, contacts, identify, site, sites};
use super::{Context, Platform, PlatformError};

/// A registry event: a deletion, quarantine, validation or reactivation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    pub seq: i64,
    pub at: i64,
    pub site: String,
    pub kind: String,
    pub detail: Option<String>,
}

/// A notification waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutboxMessage {
    pub seq: i64,
    pub at: i64,
    pub site: String,
    pub key: String,
    pub message: String,
}

/// Reading the registry.
impl Platform {
    pub fn site(&self, id: &str) -> Result<SiteRecord, PlatformError> {
        site(&self.registry_read_only()?, &self.registry_path(), id)
    }

    /// What `id` names in the registry: a site, a customer, a product instance, or nothing.
    /// Reads only.
    pub fn identify(&self, id: &str) -> Result<Identity, PlatformError> {
        identify(&self.registry_read_only()?, &self.registry_path(), id)
    }

    pub fn sites(&self) -> Result<Vec<SiteRecord>, PlatformError> {
        sites(&self.registry_read_only()?, &self.registry_path())
    }

    /// The key contacts of a site, by email.
    pub fn contacts(&self, site: &str) -> Result<Vec<Contact>, PlatformError> {
        contacts(&self.registry_read_only()?, &self.registry_path(), site)
    }

    /// Every event, or those of one kind, in order.
    pub fn events(&self, kind: Option<&str>) -> Result<Vec<Event>, PlatformError> {
        let path = self.registry_path();
        let conn = self.registry_read_only()?;
        let mut stmt = conn
            .prepare(
                "SELECT seq, at, site, kind, detail FROM events
                 WHERE ?1 IS NULL OR kind = ?1 ORDER BY seq",
            )
            .db(&path)?;
        let rows = stmt
            .query_map([kind], |r| {
                Ok(Event {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    site: r.get(2)?,
                    kind: r.get(3)?,
                    detail: r.get(4)?,
                })
            })
            .db(&path)?;
        rows.collect::<Result<Vec<_>, _>>().db(&path)
    }

    /// Every notification, in order.
    pub fn outbox(&self) -> Result<Vec<OutboxMessage>, PlatformError> {
        let path = self.registry_path();
        let conn = self.registry_read_only()?;
        let mut stmt = conn
            .prepare("SELECT seq, at, site, key, message FROM outbox ORDER BY seq")
            .db(&path)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(OutboxMessage {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    site: r.get(2)?,
                    key: r.get(3)?,
                    message: r.get(4)?,
                })
            })
            .db(&path)?;
        rows.collect::<Result<Vec<_>, _>>().db(&path)
    }
}
