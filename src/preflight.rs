//! Preflight: read-only checks of a plan against what it is about to change, run by `drover plan`
//! and before a new `drover run` starts. Every problem is reported at once, with the site, the
//! reason and the fix; nothing is changed (the registry is opened read-only).
//!
//! - [`registry`]: every site of the request exists in the target platform's registry and may be
//!   restored: a live site is always refused; a site an earlier restore already touched
//!   (`restoring`, `validated`, `quarantined`) only with `--replace-existing`; an ID the registry
//!   knows as a customer or a product instance is refused with what it is; a site's products
//!   must be the registry's; a site sent down the soft-delete path must really be soft-deleted.
//! - [`identify_ids`]: turns "not a site ID" problems of the request into "this is customer X /
//!   the wiki instance of site Y" using the registry, when the request names one.
//! - [`pools`]: warnings about pool capacities that cannot take effect.
//!
//! Backups (a complete snapshot inside the window for every unit) are checked by
//! `backup::check`, which is async; the CLI runs it as part of preflight.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::diag::{Location, Problem, ProblemKind};
use crate::ids::SiteIdError;
use crate::plan::Plan;
use crate::request::Request;
use crate::target::{Identity, SiteRecord, SiteState};

/// The request attribute that chooses a site's restore path in the reference workflow.
pub const STATE_ATTR: &str = "state";

#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Allow restoring over a site an earlier restore already touched (never a live one).
    pub replace_existing: bool,
    /// For a drill, which restores into a copy: any state is fine, as long as the site exists
    /// with these products.
    pub drill: bool,
}

/// What the registry check found, for the summary.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RegistryCheck {
    pub registry: String,
    /// Sites by their state in the registry.
    pub by_state: BTreeMap<String, usize>,
}

/// Checks every site of `plan` against the registry the request's `[target]` names. `Ok(None)`
/// when the request names no target or no step uses it.
pub fn registry(
    plan: &Plan,
    request: &Request,
    request_file: &str,
    opts: Options,
) -> Result<Option<RegistryCheck>, Vec<Problem>> {
    let Some(target) = request.target() else {
        return Ok(None);
    };
    let target_at = || Location::file(request_file);
    let unreadable = |e: &crate::target::RegistryError| {
        vec![Problem::new(
            target_at(),
            "target.registry",
            ProblemKind::Invalid {
                message: e.to_string(),
                fix: e.fix(),
            },
        )]
    };
    if !crate::target::applies(&target, uses_target(plan, &target.spec())) {
        return Ok(None);
    }
    let registry = crate::target::open(&target).map_err(|e| unreadable(&e))?;
    let ids: Vec<&str> = plan.sites.iter().map(|s| s.id.as_str()).collect();
    let known = registry.sites(&ids).map_err(|e| unreadable(&e))?;
    let held = registry.held(&ids).map_err(|e| unreadable(&e))?;
    let described = registry.describe();
    let at: HashMap<&str, &crate::request::Site> =
        request.sites.iter().map(|s| (s.id.as_str(), s)).collect();
    // What the IDs that are not sites are, asked all at once.
    let others: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| !known.contains_key(*id))
        .collect();
    let identities = if others.is_empty() {
        Ok(HashMap::new())
    } else {
        registry.identify_all(&others)
    };
    let mut problems = Vec::new();
    let mut by_state = BTreeMap::new();
    for site in &plan.sites {
        let id = site.id.as_str();
        let req = at[id];
        let refusals = match known.get(id) {
            Some(record) => {
                *by_state
                    .entry(record.state.as_str().to_owned())
                    .or_insert(0) += 1;
                refusals(plan, site, req, record, held.get(id), opts)
            }
            None => vec![match &identities {
                Ok(identities) => not_a_site(
                    identities
                        .get(id)
                        .unwrap_or(&crate::target::Identity::Unknown),
                    &described,
                ),
                Err(e) => (format!("cannot look it up: {e}"), e.fix()),
            }],
        };
        problems.extend(refusals.into_iter().map(|(message, fix)| {
            Problem::new(
                req.at.clone(),
                format!("site {id}"),
                ProblemKind::Invalid { message, fix },
            )
            .refusing(vec![id.to_owned()])
        }));
    }
    if problems.is_empty() {
        Ok(Some(RegistryCheck {
            registry: described,
            by_state,
        }))
    } else {
        Err(problems)
    }
}

/// Whether any step of `plan` names the target `registry` (`{target}`).
pub fn uses_target(plan: &Plan, registry: &str) -> bool {
    plan.steps
        .iter()
        .any(|s| s.params.values().any(|v| v.contains(registry)))
}

/// Why a site the registry knows may not be restored as requested: (message, fix) pairs.
fn refusals(
    plan: &Plan,
    site: &crate::plan::SitePlan,
    req: &crate::request::Site,
    record: &SiteRecord,
    held: Option<&crate::target::Claim>,
    opts: Options,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match record.state {
        _ if opts.drill => {}
        s if !s.is_live() && held.is_some() && !opts.replace_existing => {
            out.extend(held.map(crate::target::held_refusal));
        }
        s if s.is_live() => out.push((
            format!(
                "is {s} in the registry: it is serving customers, and drover never restores over a live site"
            ),
            "remove it from the request; check that this list names only deleted sites".into(),
        )),
        SiteState::Restoring | SiteState::Validated | SiteState::Quarantined
            if !opts.replace_existing =>
        {
            out.push((
                format!(
                    "is {} in the registry: an earlier restore of it began, and restoring again \
                     replaces what that restore put back",
                    record.state
                ),
                "to continue the earlier run use `drover resume --state <its ledger>`; to restore \
                 it again from backups, pass --replace-existing"
                    .into(),
            ))
        }
        _ => {}
    }
    let missing: Vec<&str> = site
        .products
        .iter()
        .map(|&p| plan.products[p as usize].as_str())
        .filter(|p| !record.products.iter().any(|r| r == p))
        .collect();
    if !missing.is_empty() {
        out.push((
            format!(
                "has no {} in the registry (it has: {})",
                missing.join(", "),
                record.products.join(", ")
            ),
            "list only the site's own products".into(),
        ));
    }
    let soft = SiteState::SoftDeleted.as_str();
    if !opts.drill
        && req.attrs.get(STATE_ATTR).map(String::as_str) == Some(soft)
        && record.state != SiteState::SoftDeleted
    {
        out.push((
            format!(
                "the request says state = \"{soft}\" (un-delete in place, no backup fetched), but the registry says {}",
                record.state
            ),
            format!(
                "write state = \"{}\" for this site, or regenerate the request from the registry",
                record.state
            ),
        ));
    }
    out
}

/// The message and fix for an ID that is not a site of the registry.
fn not_a_site(identity: &Identity, registry: &str) -> (String, String) {
    match identity {
        // Added to the registry since this check read it: look again.
        Identity::Site(_) => (
            format!("appeared in the registry at {registry} while preflight was reading it"),
            "run the command again".into(),
        ),
        Identity::Customer { sites } => (
            format!(
                "is a customer in the registry at {registry}, not a site (its sites: {})",
                sites.join(", ")
            ),
            "list the customer's sites instead".into(),
        ),
        Identity::App { site, product } => (
            format!(
                "is the {product} instance (app) of {site} in the registry at {registry}, not a site"
            ),
            format!(
                "list {site} instead (with products = [\"{product}\"] to restore only that product)"
            ),
        ),
        Identity::Unknown => (
            format!("is not in the registry at {registry}"),
            "check the ID against the registry; drover restores only sites the registry knows"
                .into(),
        ),
    }
}

/// Rewrites "not a site ID" problems of a request that names a `[target] registry`: when the
/// registry knows the ID as a customer or a product instance, the problem says so and how to
/// fix the list. Other problems, and IDs the registry does not know, are left as they are.
/// Reads the request file leniently (it may be the file with the problems).
pub fn identify_ids(request_path: &Path, problems: &mut [Problem]) {
    if !problems
        .iter()
        .any(|p| matches!(p.kind, ProblemKind::BadSiteId(_)))
    {
        return;
    }
    let Some(target) = target_of(request_path) else {
        return;
    };
    let Ok(registry) = crate::target::open(&target) else {
        return;
    };
    let described = registry.describe();
    // All at once: a list of 883 app IDs is one lookup, not 883.
    let values: Vec<String> = problems
        .iter()
        .filter_map(|p| match &p.kind {
            ProblemKind::BadSiteId(SiteIdError { value, .. }) => Some(value.clone()),
            _ => None,
        })
        .collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    let Ok(identities) = registry.identify_all(&values) else {
        return;
    };
    for p in problems.iter_mut() {
        let ProblemKind::BadSiteId(SiteIdError { value, .. }) = &p.kind else {
            continue;
        };
        let identity = identities.get(value.as_str()).cloned();
        if let Some(identity @ (Identity::Customer { .. } | Identity::App { .. })) = identity {
            let (reason, fix) = not_a_site(&identity, &described);
            p.kind = ProblemKind::Invalid {
                message: format!("'{value}' {reason}"),
                fix,
            };
        }
    }
}

/// `[target]` of a request file, a directory resolved against the file's.
fn target_of(request_path: &Path) -> Option<crate::request::Target> {
    let registry = match crate::load::peek_value(request_path, "target", "registry")? {
        toml::Value::String(s) => s,
        toml::Value::Table(t) => {
            let argv = t.get("exec")?.as_array()?;
            let argv: Option<Vec<String>> =
                argv.iter().map(|a| a.as_str().map(str::to_owned)).collect();
            return Some(crate::request::Target::command(argv?));
        }
        _ => return None,
    };
    let registry =
        if crate::target::postgres::is_url(&registry) || crate::target::http::is_url(&registry) {
            registry
        } else {
            let dir = request_path.parent().unwrap_or(Path::new(""));
            dir.join(registry).display().to_string()
        };
    Some(crate::request::Target {
        registry,
        registry_view: crate::load::peek(request_path, "target", "registry_view"),
        exec: None,
    })
}

/// What a plan's params say about secrets: literal credentials (a warning: they reach the plan
/// and the ledger) and `{env:NAME}` references whose variable is not set (a refusal before a
/// run: the steps would fail).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SecretCheck {
    /// "step template 'notify' param 'webhook'": holds a literal credential.
    pub literal: Vec<String>,
    /// Variables referenced and not set, with the first param that needs each.
    pub missing: Vec<(String, String)>,
    /// Params holding a reference that their kind does not resolve (it would be sent as text).
    pub unresolved: Vec<String>,
}

/// Checks the params of each step template for secrets, on its first instance: references come
/// only from the workflow's text (a site's data may not hold one), so every instance of a
/// template has the same, and a plan of millions of steps is checked in a few thousand params.
pub fn secrets(plan: &Plan, is_set: impl Fn(&str) -> bool) -> SecretCheck {
    let mut check = SecretCheck::default();
    let mut missing = std::collections::BTreeMap::new();
    let mut first = vec![None; plan.templates.len()];
    for (i, step) in plan.steps.iter().enumerate() {
        first[step.template as usize].get_or_insert(i);
    }
    for step in first.into_iter().flatten().map(|i| &plan.steps[i]) {
        let template = &plan.templates[step.template as usize].name;
        for (key, value) in &step.params {
            let place = format!("step template '{template}' param '{key}'");
            let refs = crate::workflow::params::secret_refs(value);
            if !refs.is_empty() && !crate::steps::resolves_secrets(plan.kind(step), key) {
                check.unresolved.push(place.clone());
            }
            for name in &refs {
                if !is_set(name) {
                    missing
                        .entry(name.to_string())
                        .or_insert_with(|| place.clone());
                }
            }
            let sensitive_header = key.strip_prefix("header.").is_some_and(|h| {
                matches!(
                    h.to_ascii_lowercase().as_str(),
                    "authorization" | "x-api-key" | "cookie" | "proxy-authorization"
                )
            });
            let literal =
                crate::redact::has_credentials(value) || (sensitive_header && refs.is_empty());
            if literal {
                check.literal.push(place);
            }
        }
    }
    check.missing = missing.into_iter().collect();
    check
}

/// Warnings (not refusals) about pools whose capacity cannot take effect. Capacities that
/// cannot work at all (zero, smaller than one step's use, unknown pool) are refused by the
/// planner.
pub fn pools(plan: &Plan, capacity: &[u32], max_parallel: usize) -> Vec<String> {
    let mut used = vec![false; plan.pools.len()];
    for step in &plan.steps {
        for &(p, _) in &step.uses {
            used[p as usize] = true;
        }
    }
    let mut warnings = Vec::new();
    for ((pool, &cap), used) in plan.pools.iter().zip(capacity).zip(used) {
        if !used {
            warnings.push(format!(
                "pool '{}' is used by no step of this plan",
                pool.name
            ));
        } else if cap as usize > max_parallel {
            warnings.push(format!(
                "pool '{}' has capacity {cap}, but at most {max_parallel} steps run at once (--max-parallel)",
                pool.name
            ));
        }
    }
    warnings
}
