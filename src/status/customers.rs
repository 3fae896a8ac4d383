//! Per customer: their sites, each site's state and time left, their key contacts, and a
//! message support can send as it stands (`drover status --by-customer`, format
//! `drover-customers/1` in docs/status-format.md).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::SiteState;
use crate::ledger::{Stored, format_ms};

pub const FORMAT: &str = "drover-customers/1";

/// The message when no template is given. Placeholders: {customer}, {as_of}, {restored},
/// {total}, {eta}, {sites} (one line per site).
pub const DEFAULT_TEMPLATE: &str = "Subject: Restoring your sites: {restored} of {total} back

Hello {customer},

As of {as_of}, {restored} of your {total} sites are restored and back in service. {eta}

{sites}

The times are estimates from the restore as it runs, and can move; we will write again when they
change.
";

#[derive(Serialize)]
pub struct CustomersDoc {
    pub format: &'static str,
    pub run_id: String,
    pub as_of: String,
    pub customers: Vec<CustomerDoc>,
}

#[derive(Serialize)]
pub struct CustomerDoc {
    /// `null` for sites whose customer neither the request nor the registry names.
    pub customer: Option<String>,
    pub contacts: Vec<ContactDoc>,
    /// What is not known about the contacts (sites whose contacts are not restored yet).
    pub contacts_note: Option<String>,
    pub sites_total: usize,
    pub restored: usize,
    /// Until the customer's last site is back: p50 and p90, seconds; `null` when nothing of
    /// theirs is left (or can be: failed, blocked, quarantined).
    pub eta_p50_s: Option<f64>,
    pub eta_p90_s: Option<f64>,
    pub sites: Vec<CustomerSite>,
    pub message: String,
}

#[derive(Serialize)]
pub struct CustomerSite {
    pub site: String,
    pub state: SiteState,
    pub eta_p50_s: Option<f64>,
    pub eta_p90_s: Option<f64>,
    pub reason: Option<String>,
}

#[derive(Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct ContactDoc {
    pub name: String,
    pub email: String,
    pub role: String,
}

/// The document for the run in `stored` at `now` (ms), with messages from `template`.
pub fn document(stored: &Stored, now: i64, template: &str) -> CustomersDoc {
    let plan = std::sync::Arc::new(stored.plan.clone());
    let customers = of_sites(&plan, &stored.snapshot);
    Moment::read(&plan, &stored.info, &stored.snapshot, &stored.steps, now, 8).document(
        &stored.info.run_id,
        &customers,
        template,
    )
}

/// What the per-customer view needs of a run at one moment.
pub struct Moment<'a> {
    pub plan: &'a crate::plan::Plan,
    pub sites: Vec<SiteState>,
    /// Why each site is not restored (`doc::site_reasons`).
    pub reasons: Vec<Option<String>>,
    /// Per site, while it is pending or running: seconds left, p50 and p90.
    pub ranges: Vec<Option<(f64, f64)>>,
    /// Per site: its key contacts as the registry holds them now (`None`: not known).
    pub contacts: Vec<Option<Vec<ContactDoc>>>,
    pub now: i64,
}

impl<'a> Moment<'a> {
    /// Reads the moment from a run's step records, simulating `trials` times for the ranges.
    pub fn read(
        plan: &'a std::sync::Arc<crate::plan::Plan>,
        info: &crate::ledger::RunInfo,
        snapshot: &crate::ledger::Snapshot,
        steps: &[crate::ledger::StepRecord],
        now: i64,
        trials: u32,
    ) -> Moment<'a> {
        let states: Vec<crate::ledger::StepState> = steps.iter().map(|r| r.state).collect();
        let sites = super::site_states(plan, &states, |i| steps[i].quarantined());
        let open = sites
            .iter()
            .any(|s| matches!(s, SiteState::Pending | SiteState::Running));
        let ranges = match open {
            true => {
                let opts = super::doc::sim_options(plan, info);
                let r = crate::sim::live::ranges(plan, steps, &opts, now, trials);
                (0..plan.sites.len())
                    .map(|i| {
                        r.sites_ms
                            .get(i)
                            .filter(|_| matches!(sites[i], SiteState::Pending | SiteState::Running))
                            .filter(|(_, p90)| *p90 != u64::MAX)
                            .map(|&(a, b)| (a as f64 / 1000.0, b as f64 / 1000.0))
                    })
                    .collect()
            }
            false => vec![None; plan.sites.len()],
        };
        Moment {
            plan,
            reasons: super::doc::site_reasons(plan, steps),
            contacts: contacts_of(plan, snapshot),
            sites,
            ranges,
            now,
        }
    }

    /// Per customer (`customers`: each site's), with messages from `template`.
    pub fn document(
        &self,
        run_id: &str,
        customers: &[Option<String>],
        template: &str,
    ) -> CustomersDoc {
        let plan = self.plan;
        let mut by: BTreeMap<Option<String>, Vec<usize>> = BTreeMap::new();
        for (i, c) in customers.iter().enumerate() {
            by.entry(c.clone()).or_default().push(i);
        }
        let as_of = format_ms(self.now);
        let customers = by
            .into_iter()
            .map(|(customer, members)| {
                let rows: Vec<CustomerSite> = members
                    .iter()
                    .map(|&i| CustomerSite {
                        site: plan.sites[i].id.to_string(),
                        state: self.sites[i],
                        eta_p50_s: self.ranges[i].map(|r| r.0),
                        eta_p90_s: self.ranges[i].map(|r| r.1),
                        reason: self.reasons[i].clone(),
                    })
                    .collect();
                let mut people: Vec<ContactDoc> = members
                    .iter()
                    .flat_map(|&i| self.contacts.get(i).cloned().flatten().unwrap_or_default())
                    .collect();
                people.sort();
                people.dedup_by(|a, b| a.email == b.email);
                let unknown = members
                    .iter()
                    .filter(|&&i| self.contacts.get(i).is_none_or(|c| c.is_none()))
                    .count();
                let max = |f: fn(&CustomerSite) -> Option<f64>| {
                    rows.iter().filter_map(f).reduce(f64::max)
                };
                let mut doc = CustomerDoc {
                    customer,
                    contacts: people,
                    contacts_note: (unknown > 0).then(|| {
                        format!(
                            "the contacts of {unknown} of these sites are not known yet (they \
                             come back with the site's restore-contacts step, or the registry \
                             has none)"
                        )
                    }),
                    sites_total: rows.len(),
                    restored: rows
                        .iter()
                        // Back in service, whether or not its notification went out.
                        .filter(|r| matches!(r.state, SiteState::Restored | SiteState::Unnotified))
                        .count(),
                    eta_p50_s: max(|r| r.eta_p50_s),
                    eta_p90_s: max(|r| r.eta_p90_s),
                    sites: rows,
                    message: String::new(),
                };
                doc.message = message(template, &doc, &as_of);
                doc
            })
            .collect();
        CustomersDoc {
            format: FORMAT,
            run_id: run_id.to_owned(),
            as_of,
            customers,
        }
    }
}

/// `template` filled in for one customer.
pub fn message(template: &str, c: &CustomerDoc, as_of: &str) -> String {
    let human = |s: f64| crate::report::human(std::time::Duration::from_secs_f64(s));
    let eta = match (c.eta_p50_s, c.eta_p90_s) {
        (Some(p50), Some(p90)) => format!(
            "We expect the rest back in {} to {} from now.",
            human(p50),
            human(p90)
        ),
        _ if c.restored == c.sites_total => "Every one of them is back.".to_owned(),
        _ => "For the others we cannot give a time yet: our team is working on them.".to_owned(),
    };
    let sites: Vec<String> = c
        .sites
        .iter()
        .map(|s| {
            let when = match (s.eta_p50_s, s.eta_p90_s) {
                (Some(a), Some(b)) => format!(", expected in {} to {}", human(a), human(b)),
                _ => String::new(),
            };
            let state = match s.state {
                SiteState::Restored => "restored",
                SiteState::Unnotified => "restored",
                SiteState::Pending | SiteState::Running => "being restored",
                SiteState::Failed | SiteState::Blocked | SiteState::Quarantined => {
                    "needs our attention before it can be restored"
                }
            };
            format!("- {}: {state}{when}", s.site)
        })
        .collect();
    template
        .replace("{customer}", c.customer.as_deref().unwrap_or("customer"))
        .replace("{as_of}", as_of)
        .replace("{restored}", &c.restored.to_string())
        .replace("{total}", &c.sites_total.to_string())
        .replace("{eta}", &eta)
        .replace("{sites}", &sites.join("\n"))
}

/// Per site: its key contacts as the reference platform's registry holds them now (restored
/// with the site), or `None` when they are not there (or the target is not the reference
/// platform).
pub fn contacts_of(
    plan: &crate::plan::Plan,
    snapshot: &crate::ledger::Snapshot,
) -> Vec<Option<Vec<ContactDoc>>> {
    let platform = request_of(snapshot)
        .and_then(|r| r.target)
        .filter(|t| !crate::target::is_operators(t))
        .and_then(|t| crate::platform::Platform::open(Path::new(&t)).ok());
    plan.sites
        .iter()
        .map(|s| {
            let found = platform.as_ref()?.contacts(s.id.as_str()).ok()?;
            (!found.is_empty()).then(|| {
                found
                    .into_iter()
                    .map(|c| ContactDoc {
                        name: c.name,
                        email: c.email,
                        role: c.role,
                    })
                    .collect()
            })
        })
        .collect()
}

/// Each site's customer: the request's `customer` attribute, else what the target registry
/// says (read once; a registry that cannot be read leaves them unknown).
pub fn of_sites(
    plan: &crate::plan::Plan,
    snapshot: &crate::ledger::Snapshot,
) -> Vec<Option<String>> {
    let Some(request) = request_of(snapshot) else {
        return vec![None; plan.sites.len()];
    };
    let by_attr: std::collections::HashMap<&str, &str> = request
        .sites
        .iter()
        .filter_map(|s| Some((s.id.as_str(), s.attrs.get("customer")?.as_str())))
        .collect();
    let missing: Vec<&str> = plan
        .sites
        .iter()
        .map(|s| s.id.as_str())
        .filter(|id| !by_attr.contains_key(id))
        .collect();
    let from_registry = if missing.is_empty() {
        Default::default()
    } else {
        request
            .target()
            .and_then(|t| crate::target::open(&t).ok())
            .and_then(|r| r.sites(&missing).ok())
            .unwrap_or_default()
    };
    plan.sites
        .iter()
        .map(|s| {
            let id = s.id.as_str();
            by_attr
                .get(id)
                .map(|c| (*c).to_owned())
                .or_else(|| from_registry.get(id).map(|r| r.customer.clone()))
                .filter(|c| !c.is_empty())
        })
        .collect()
}

/// The request as the ledger's snapshot of it, its registry resolved against its file's
/// directory.
pub fn request_of(snapshot: &crate::ledger::Snapshot) -> Option<crate::request::Request> {
    use crate::source::Source;
    let name = &snapshot.request_file;
    let text = snapshot.files.get(name)?;
    let mut request =
        crate::request::Request::parse(&Source::new(name.clone(), text.clone()), |csv| {
            let text = snapshot.files.get(csv).cloned().unwrap_or_default();
            Ok(Source::new(csv, text))
        })
        .ok()?;
    let dir = Path::new(name).parent().unwrap_or(Path::new(""));
    request.target = request.target.map(|t| {
        if crate::target::is_operators(&t) || Path::new(&t).is_absolute() {
            t
        } else {
            dir.join(t).display().to_string()
        }
    });
    Some(request)
}
