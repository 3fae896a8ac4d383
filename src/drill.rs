//! Drills: a restore rehearsed on an isolated copy of the platform, measured against a target
//! RTO, and kept in a history so the trend over successive (growing) drills can be read.
//!
//! A drill never touches production: [`prepare`] copies the platform (read-only on the source),
//! then deletes the drilled sites in the copy only, so the restore runs from backups exactly as
//! after a real incident. Steps that would act outside the copy are refused ([`external_steps`])
//! or cut off from the outside ([`isolate`]: no webhooks). The CLI runs the ordinary scheduler against the copy and removes the
//! copy afterwards. The history is a JSON-lines file, one [`DrillRecord`] per drill.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::platform::{DeleteMode, Platform, PlatformError};

/// Step kinds that act on systems outside the platform (operators' own infrastructure): a drill
/// cannot contain them, since it must change nothing but its copy.
pub const EXTERNAL_KINDS: &[&str] = &["exec", "http"];

/// Step params that reach outside the platform (`notify`'s webhook): a drill removes them, so
/// its messages stay in the copy's outbox.
pub const EXTERNAL_PARAMS: &[&str] = &["webhook"];

/// The templates of `plan` (name, kind) whose steps would act outside the platform copy.
pub fn external_steps(plan: &crate::plan::Plan) -> Vec<(&str, &str)> {
    plan.templates
        .iter()
        .enumerate()
        .filter(|(_, t)| EXTERNAL_KINDS.contains(&t.kind.as_str()))
        .filter(|(i, _)| plan.steps.iter().any(|s| s.template as usize == *i))
        .map(|(_, t)| (t.name.as_str(), t.kind.as_str()))
        .collect()
}

/// Removes the params that reach outside the platform from every step, and rehashes the plan.
/// Returns how many steps lost one.
pub fn isolate(plan: &mut crate::plan::Plan) -> usize {
    let mut changed = 0;
    for step in &mut plan.steps {
        let before = step.params.len();
        step.params.retain(|k| !EXTERNAL_PARAMS.contains(&k));
        changed += usize::from(step.params.len() != before);
    }
    plan.hash = crate::plan::rehash(plan);
    changed
}

/// Copies `production` into `dir` (which must not exist) and deletes `sites` there, permanently,
/// as the incident would. Returns the copy.
pub fn prepare(
    production: &Platform,
    sites: &[String],
    dir: &Path,
    at: DateTime<Utc>,
) -> Result<Platform, PlatformError> {
    let copy = production.copy_to(dir)?;
    let live: Vec<&String> = sites
        .iter()
        .filter(|s| {
            copy.site(s)
                .is_ok_and(|r| r.state != crate::platform::SiteState::Deleted)
        })
        .collect();
    copy.incident(&live, DeleteMode::Permanent, at)?;
    Ok(copy)
}

/// One drill's result, as kept in the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    /// When the drill started (RFC 3339).
    pub at: String,
    pub request: String,
    pub plan_hash: String,
    /// The drill's ledger, for `drover audit` and `drover report`.
    pub state: String,
    pub sites: usize,
    pub restored: usize,
    pub target_rto_s: f64,
    /// From the start of the restore until its last site was restored; `None` if a site was not.
    pub batch_rto_s: Option<f64>,
    /// Per-site restore times of the restored sites.
    pub site_rto_p50_s: Option<f64>,
    pub site_rto_p95_s: Option<f64>,
    pub site_rto_max_s: Option<f64>,
    pub slowest_site: Option<String>,
    pub pass: bool,
    /// Why it failed, when it did.
    pub reason: Option<String>,
}

impl DrillRecord {
    /// The record of a drill that started `at`, ran the plan in `run` (its ledger at `state`) and
    /// measured `m` against `target`.
    pub fn new(
        at: &DateTime<Utc>,
        run: &crate::ledger::RunInfo,
        state: &str,
        target: Duration,
        m: &Measured,
        verdict: &Result<(), DrillFailure>,
    ) -> DrillRecord {
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        DrillRecord {
            at: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            request: run.request_name.clone(),
            plan_hash: run.plan_hash.clone(),
            state: state.to_owned(),
            sites: m.sites,
            restored: m.restored,
            target_rto_s: target.as_secs_f64(),
            batch_rto_s: secs(m.batch),
            site_rto_p50_s: secs(m.p50),
            site_rto_p95_s: secs(m.p95),
            site_rto_max_s: secs(m.max.as_ref().map(|x| x.0)),
            slowest_site: m.max.as_ref().map(|x| x.1.clone()),
            pass: verdict.is_ok(),
            reason: verdict.as_ref().err().map(DrillFailure::to_string),
        }
    }
}

/// The RTO figures of a drill from each site's restore time (`None`: not restored).
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    pub sites: usize,
    pub restored: usize,
    pub batch: Option<Duration>,
    pub p50: Option<Duration>,
    pub p95: Option<Duration>,
    pub max: Option<(Duration, String)>,
}

pub fn measure(sites: &[(String, Option<Duration>)]) -> Measured {
    let mut done: Vec<(Duration, &str)> = sites
        .iter()
        .filter_map(|(s, d)| d.map(|d| (d, s.as_str())))
        .collect();
    done.sort();
    let pick = |q: f64| {
        let i = ((q * done.len() as f64).ceil() as usize).clamp(1, done.len().max(1)) - 1;
        done.get(i).map(|d| d.0)
    };
    let max = done.last().map(|(d, s)| (*d, (*s).to_owned()));
    Measured {
        sites: sites.len(),
        restored: done.len(),
        batch: (done.len() == sites.len()).then(|| max.as_ref().map_or(Duration::ZERO, |m| m.0)),
        p50: pick(0.5),
        p95: pick(0.95),
        max,
    }
}

/// Why a drill failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DrillFailure {
    #[error("{missing} of {sites} sites were not restored")]
    NotRestored { missing: usize, sites: usize },
    #[error(
        "the batch took {}, over the target of {}",
        crate::report::human(*took),
        crate::report::human(*target)
    )]
    OverTarget { took: Duration, target: Duration },
    #[error("the drill was interrupted")]
    Interrupted,
}

impl Measured {
    /// PASS only if every site was restored and the batch finished within the target.
    pub fn verdict(&self, target: Duration) -> Result<(), DrillFailure> {
        match self.batch {
            None => Err(DrillFailure::NotRestored {
                missing: self.sites - self.restored,
                sites: self.sites,
            }),
            Some(took) if took > target => Err(DrillFailure::OverTarget { took, target }),
            Some(_) => Ok(()),
        }
    }
}

/// Why a drill history cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("it is {}; {}", .0.describe(), .0.usage())]
    OtherKind(crate::sniff::FileKind),
    #[error("it is not UTF-8 text")]
    NotUtf8,
    #[error("line {line}: {source}")]
    Line {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

/// Appends a record to the history file (created if absent).
pub fn append(history: &Path, record: &DrillRecord) -> std::io::Result<()> {
    let mut line = serde_json::to_string(record).expect("a record serializes");
    line.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(history)?;
    f.write_all(line.as_bytes())?;
    f.sync_all()
}

/// The largest drill history drover reads (each drill adds a few hundred bytes).
pub const MAX_HISTORY_BYTES: u64 = 64 * 1024 * 1024;

/// Every record of the history, oldest first. A line that does not parse is an error naming
/// its number.
pub fn read(history: &Path) -> Result<Vec<DrillRecord>, HistoryError> {
    let bytes = crate::util::read_capped(history, MAX_HISTORY_BYTES)?;
    match crate::sniff::kind_of(&bytes) {
        crate::sniff::FileKind::JsonLines | crate::sniff::FileKind::Other => {}
        kind => return Err(HistoryError::OtherKind(kind)),
    }
    let text = String::from_utf8(bytes).map_err(|_| HistoryError::NotUtf8)?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| HistoryError::Line {
                line: i + 1,
                source,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n))
    }

    #[test]
    fn the_batch_rto_is_the_slowest_site_and_needs_every_site() {
        let all = [
            ("a".into(), s(10)),
            ("b".into(), s(30)),
            ("c".into(), s(20)),
        ];
        let m = measure(&all);
        assert_eq!(m.batch, s(30));
        assert_eq!(m.max, Some((Duration::from_secs(30), "b".into())));
        assert_eq!(m.p50, s(20));
        assert!(m.verdict(Duration::from_secs(30)).is_ok());
        assert!(
            m.verdict(Duration::from_secs(29))
                .unwrap_err()
                .to_string()
                .contains("over the target")
        );

        let missing = [("a".into(), s(10)), ("b".into(), None)];
        let m = measure(&missing);
        assert_eq!(m.batch, None);
        assert_eq!(
            m.verdict(Duration::from_secs(3600))
                .unwrap_err()
                .to_string(),
            "1 of 2 sites were not restored"
        );
    }
}
