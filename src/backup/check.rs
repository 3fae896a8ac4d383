//! The backup check before anything runs: every `fetch` step of a plan has a complete snapshot
//! inside the allowed window, and the RPO each site will get. Reads store listings; moves no data.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::catalog;
use crate::diag::{Location, Problem, ProblemKind};
use crate::plan::{Owner, Plan};

/// The step kind whose units are checked.
pub const FETCH_KIND: &str = "fetch";

/// What the check found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BackupCheck {
    pub units: usize,
    pub sources: usize,
    /// Per site (plan order): the worst RPO among the units it needs, in seconds.
    pub site_rpo_s: Vec<Option<u64>>,
}

impl BackupCheck {
    /// (p50, max) RPO over sites, and the site with the max.
    pub fn rpo_summary(&self, plan: &Plan) -> Option<(Duration, Duration, String)> {
        let mut v: Vec<(u64, usize)> = self
            .site_rpo_s
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.map(|r| (r, i)))
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let (max, site) = v[v.len() - 1];
        Some((
            Duration::from_secs(v[v.len() / 2].0),
            Duration::from_secs(max),
            plan.sites[site].id.to_string(),
        ))
    }
}

/// Checks every fetch step's unit against its store's listing (one listing per store).
pub async fn check(plan: &Plan) -> Result<BackupCheck, Vec<Problem>> {
    let mut problems = Vec::new();
    let (units, by_source) = fetches_by_source(plan, &mut problems);
    let succ = plan.successors();
    let mut report = BackupCheck {
        units,
        sources: by_source.len(),
        site_rpo_s: vec![None; plan.sites.len()],
    };
    for (source, steps) in by_source {
        let Some(listing) = listing(source, &mut problems).await else {
            continue;
        };
        for i in steps {
            match choose(plan, i, source, &listing) {
                Ok(rpo) => record_rpo(plan, &succ, i, rpo, &mut report.site_rpo_s),
                Err(p) => problems.push(p),
            }
        }
    }
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(problems)
    }
}

/// The plan's fetch steps grouped by backup source, and how many there are.
fn fetches_by_source<'p>(
    plan: &'p Plan,
    problems: &mut Vec<Problem>,
) -> (usize, BTreeMap<&'p str, Vec<usize>>) {
    let fetches: Vec<usize> = (0..plan.steps.len())
        .filter(|&i| plan.kind(&plan.steps[i]) == FETCH_KIND)
        .collect();
    let mut by_source: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &i in &fetches {
        match plan.steps[i].params.get("source") {
            Some(s) => by_source.entry(s).or_default().push(i),
            None => problems.push(problem(
                "plan",
                &plan.steps[i].id,
                "the fetch step has no 'source' param".into(),
                "give the step params source, unit and point_in_time",
            )),
        }
    }
    (fetches.len(), by_source)
}

/// Every snapshot in the store `source` names, by unit; `None` (with the problem) if it cannot
/// be listed.
async fn listing(
    source: &str,
    problems: &mut Vec<Problem>,
) -> Option<BTreeMap<String, Vec<super::SnapshotEntry>>> {
    let store = match super::open(source, Path::new("/")).await {
        Ok(s) => s,
        Err(e) => {
            let fix = "check the source URL";
            problems.push(problem(source, "backups.source", e.to_string(), fix));
            return None;
        }
    };
    match store.list_snapshots(None).await {
        Ok(l) => Some(catalog::by_unit(l)),
        Err(e) => {
            let fix = "check that the backup store exists and is reachable (credentials, endpoint)";
            problems.push(problem(source, "backups.source", e.to_string(), fix));
            None
        }
    }
}

/// The snapshot fetch step `i` would restore, as its RPO; or why there is none.
fn choose(
    plan: &Plan,
    i: usize,
    source: &str,
    listing: &BTreeMap<String, Vec<super::SnapshotEntry>>,
) -> Result<Duration, Problem> {
    let step = &plan.steps[i];
    let (Some(unit), Some(pit)) = (step.params.get("unit"), step.params.get("point_in_time"))
    else {
        return Err(problem(
            source,
            &step.id,
            "the fetch step needs params unit and point_in_time".into(),
            "add them to the workflow's fetch steps",
        ));
    };
    let Ok(target) = DateTime::parse_from_rfc3339(pit).map(|t| t.with_timezone(&Utc)) else {
        return Err(problem(
            source,
            &step.id,
            format!("point_in_time '{pit}' is not RFC 3339"),
            "use the request's {point_in_time}",
        ));
    };
    let window = step
        .params
        .get("window")
        .and_then(|w| crate::limits::duration(w, crate::limits::MAX_WINDOW).ok())
        .unwrap_or(crate::request::DEFAULT_BACKUP_WINDOW);
    let snapshots = listing.get(unit).map_or(&[][..], Vec::as_slice);
    catalog::choose(unit, snapshots, target, window)
        .map(|choice| choice.rpo)
        .map_err(|e| {
            let fix = "restore to a later point in time, widen [backups] window, or check that \
                       backups of this unit exist";
            problem(
                source,
                &format!("unit {unit} (step {})", step.id),
                e.to_string(),
                fix,
            )
            .refusing(sites_needing(plan, i))
        })
}

/// The sites that need step `i`: its own, or for a shared step every site after it.
fn sites_needing(plan: &Plan, i: usize) -> Vec<String> {
    let succ = plan.successors();
    let mut sites = std::collections::BTreeSet::new();
    let mut seen = std::collections::HashSet::from([i]);
    let mut todo = vec![i];
    while let Some(s) = todo.pop() {
        match plan.steps[s].owner {
            Owner::Site { site, .. } => {
                sites.insert(site);
            }
            // A shared step: the sites come after it.
            Owner::Shared { .. } => {
                for &next in succ.of(s) {
                    if seen.insert(next as usize) {
                        todo.push(next as usize);
                    }
                }
            }
        }
    }
    sites
        .into_iter()
        .map(|s| plan.sites[s as usize].id.to_string())
        .collect()
}
/// A site's RPO is the worst among the units it needs (its own, and the shared ones before it).
fn record_rpo(
    plan: &Plan,
    succ: &crate::plan::rank::Successors,
    i: usize,
    rpo: Duration,
    site_rpo: &mut [Option<u64>],
) {
    let mut note = |site: u32| {
        let slot = &mut site_rpo[site as usize];
        *slot = Some(slot.unwrap_or(0).max(rpo.as_secs()));
    };
    match plan.steps[i].owner {
        Owner::Site { site, .. } => note(site),
        Owner::Shared { .. } => {
            for &s in succ.of(i) {
                if let Owner::Site { site, .. } = plan.steps[s as usize].owner {
                    note(site);
                }
            }
        }
    }
}

fn problem(file: &str, entry: &str, message: String, fix: &str) -> Problem {
    Problem::new(
        Location::file(file),
        entry,
        ProblemKind::Invalid {
            message,
            fix: fix.into(),
        },
    )
}
