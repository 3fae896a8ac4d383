//! The end of a site's restore: quarantine after a failed validation, reactivation exactly once,
//! and notifications appended to the outbox once per idempotency key.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::registry::{self, SiteState};
use super::{Context, Platform, PlatformError, write_tx};

impl Platform {
    /// Takes a site that is not live out of the restore until every product of it validated
    /// again (its earlier validations are voided). Repeating it is a no-op (no second event).
    pub fn quarantine(
        &self,
        site: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), PlatformError> {
        let path = self.registry_path();
        let mut conn = self.registry()?;
        let tx = write_tx(&mut conn, &path)?;
        let record = registry::site(&tx, &path, site)?;
        match record.state {
            s if s.is_live() => {
                return Err(PlatformError::SiteActive {
                    site: site.to_owned(),
                    state: s,
                    action: "quarantine",
                });
            }
            SiteState::Quarantined => return Ok(()),
            _ => {}
        }
        registry::set_state(&tx, &path, site, SiteState::Quarantined)?;
        // Earlier validations no longer vouch for the site: every product must validate again
        // before it can become `validated`.
        tx.execute("DELETE FROM validations WHERE site = ?1", [site])
            .db(&path)?;
        registry::event(&tx, &path, at, site, "quarantined", reason)?;
        tx.commit().db(&path)
    }

    /// Makes a validated (or soft-deleted, whose data was kept) site `active-again` and records
    /// the time. Returns whether it changed anything: a repeat is a no-op, with no second event.
    pub fn reactivate(&self, site: &str, at: DateTime<Utc>) -> Result<bool, PlatformError> {
        let path = self.registry_path();
        let mut conn = self.registry()?;
        let tx = write_tx(&mut conn, &path)?;
        let record = registry::site(&tx, &path, site)?;
        match record.state {
            SiteState::ActiveAgain => return Ok(false),
            SiteState::Validated | SiteState::SoftDeleted => {}
            state => {
                return Err(PlatformError::WrongState {
                    site: site.to_owned(),
                    state,
                    action: "reactivate it (only a validated or soft-deleted site can be)",
                });
            }
        }
        tx.execute(
            "UPDATE sites SET state = ?2, reactivated_at = ?3, retained_until = NULL WHERE id = ?1",
            params![site, SiteState::ActiveAgain.as_str(), at.timestamp()],
        )
        .db(&path)?;
        registry::event(&tx, &path, at, site, "reactivated", record.state.as_str())?;
        tx.commit().db(&path)?;
        Ok(true)
    }

    /// Appends a notification (JSON) for `site` to the outbox, once per `key`. Returns whether
    /// it was appended.
    pub fn notify(
        &self,
        site: &str,
        key: &str,
        message: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<bool, PlatformError> {
        let path = self.registry_path();
        let conn = self.registry()?;
        registry::site(&conn, &path, site)?;
        let added = conn
            .execute(
                "INSERT OR IGNORE INTO outbox (at, site, key, message) VALUES (?1, ?2, ?3, ?4)",
                params![at.timestamp(), site, key, message.to_string()],
            )
            .db(&path)?;
        Ok(added == 1)
    }
}
