//! Which run is restoring a site: a claim per site in the registry, taken for all of a run's
//! sites at once when it starts (one write transaction: all or none), so that two runs started
//! over the same sites never both restore them. A run's claims are released when every one of
//! its sites is restored; a failed or abandoned run's stay until a run takes them over
//! deliberately.

use rusqlite::{OptionalExtension, params};

use super::{Context, Platform, PlatformError, write_tx};

/// The run holding a site.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claim {
    pub run_id: String,
    /// The run's ledger, as its process saw it.
    pub ledger: String,
    pub host: String,
    pub pid: u32,
    /// When it claimed, ms since the epoch.
    pub at: i64,
}

const CLAIMS: &str = "CREATE TABLE IF NOT EXISTS claims (
    site TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    ledger TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    at INTEGER NOT NULL
)";

impl Platform {
    /// Claims `sites` for `me`'s run. Sites another run holds are refused, every one with its
    /// holder (nothing is claimed then), unless `take_over`: then they pass to `me`, and the
    /// claims taken over are returned. A claim `void` says is no longer held passes silently.
    pub fn claim_sites(
        &self,
        sites: &[&str],
        me: &Claim,
        take_over: bool,
        void: impl Fn(&Claim) -> bool,
    ) -> Result<Vec<(String, Claim)>, PlatformError> {
        let path = self.registry_path();
        let mut conn = self.registry()?;
        let tx = write_tx(&mut conn, &path)?;
        tx.execute(CLAIMS, []).db(&path)?;
        let mut others = Vec::new();
        {
            let mut held = tx
                .prepare("SELECT run_id, ledger, host, pid, at FROM claims WHERE site = ?1")
                .db(&path)?;
            for &site in sites {
                let claim = held
                    .query_row([site], |r| {
                        Ok(Claim {
                            run_id: r.get(0)?,
                            ledger: r.get(1)?,
                            host: r.get(2)?,
                            pid: r.get(3)?,
                            at: r.get(4)?,
                        })
                    })
                    .optional()
                    .db(&path)?;
                if let Some(c) = claim.filter(|c| c.run_id != me.run_id && !void(c)) {
                    others.push((site.to_owned(), c));
                }
            }
        }
        if !others.is_empty() && !take_over {
            return Err(PlatformError::Claimed { held: others });
        }
        {
            let mut put = tx
                .prepare(
                    "INSERT OR REPLACE INTO claims (site, run_id, ledger, host, pid, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .db(&path)?;
            for &site in sites {
                put.execute(params![site, me.run_id, me.ledger, me.host, me.pid, me.at])
                    .db(&path)?;
            }
        }
        tx.commit().db(&path)?;
        Ok(others)
    }

    /// Every site's claim, read-only (none in a registry no run has claimed in).
    pub fn claims(&self) -> Result<Vec<(String, Claim)>, PlatformError> {
        let path = self.registry_path();
        let conn = self.registry_read_only()?;
        let exists: bool = conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'claims'",
                [],
                |r| r.get(0),
            )
            .db(&path)?;
        if !exists {
            return Ok(Vec::new());
        }
        let mut stmt = conn
            .prepare("SELECT site, run_id, ledger, host, pid, at FROM claims ORDER BY site")
            .db(&path)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    Claim {
                        run_id: r.get(1)?,
                        ledger: r.get(2)?,
                        host: r.get(3)?,
                        pid: r.get(4)?,
                        at: r.get(5)?,
                    },
                ))
            })
            .db(&path)?;
        rows.collect::<Result<_, _>>().db(&path)
    }

    /// Releases every claim of `run_id`.
    pub fn release_sites(&self, run_id: &str) -> Result<usize, PlatformError> {
        let path = self.registry_path();
        let mut conn = self.registry()?;
        let tx = write_tx(&mut conn, &path)?;
        tx.execute(CLAIMS, []).db(&path)?;
        let n = tx
            .execute("DELETE FROM claims WHERE run_id = ?1", [run_id])
            .db(&path)?;
        tx.commit().db(&path)?;
        Ok(n)
    }
}
