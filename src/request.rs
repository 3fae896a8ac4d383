//! The restore request: which sites to restore, with which products, to what point in time.
//! Sites come inline (`[[sites]]`) and/or from a CSV list (`request/csv.rs`).
//!
//! Pure: the caller supplies a loader for the CSV file, so this module does no IO itself.

mod csv;
pub mod format;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, FixedOffset};

use crate::diag::{Location, Problem, ProblemKind};
use crate::ids::SiteId;
use crate::source::Source;
use format::RequestFile;

/// Tier names, most urgent first, when the request gives none.
pub const DEFAULT_TIERS: &[&str] = &["enterprise", "premium", "standard", "free"];

/// A validated restore request.
#[derive(Clone, Debug)]
pub struct Request {
    pub name: String,
    pub point_in_time: DateTime<FixedOffset>,
    /// Tier names, most urgent first.
    pub tiers: Vec<String>,
    /// Products for sites that list none, and where that list was written.
    pub default_products: Option<(Vec<String>, Location)>,
    pub backups: Option<String>,
    /// How far before `point_in_time` a backup may be.
    pub backup_window: std::time::Duration,
    /// `[target] registry`: the platform directory, the registry URL, or for a registry behind
    /// a command `exec:` and its arguments as a JSON array (`Target::spec`); `{target}` in steps.
    pub target: Option<String>,
    /// `[target] registry_view`.
    pub registry_view: Option<String>,
    pub sites: Vec<Site>,
}

/// The request's `[target]`: where its sites' registry is.
#[derive(Clone, Debug)]
pub struct Target {
    /// The directory or URL; for a command, how it is described.
    pub registry: String,
    pub registry_view: Option<String>,
    /// The command and its arguments, for a registry reached by a command.
    pub exec: Option<Vec<String>>,
}

impl Target {
    /// The registry at `registry` (a directory or URL), through its default view.
    pub fn at(registry: &str) -> Target {
        Target {
            registry: registry.to_owned(),
            registry_view: None,
            exec: None,
        }
    }

    /// A registry reached by running `argv`.
    pub fn command(argv: Vec<String>) -> Target {
        Target {
            registry: format!("the command `{}`", argv.join(" ")),
            registry_view: None,
            exec: Some(argv),
        }
    }

    /// The target as one string that [`Target::parse`] reads back: what `{target}` gives steps
    /// and what a ledger records of the registry its run claimed sites in.
    pub fn spec(&self) -> String {
        match &self.exec {
            Some(argv) => format!(
                "{EXEC_PREFIX}{}",
                serde_json::to_string(argv).unwrap_or_default()
            ),
            None => self.registry.clone(),
        }
    }

    /// A target from its [`Target::spec`], or from `exec:<command> [args…]` as typed on a
    /// command line (split at whitespace).
    pub fn parse(spec: &str) -> Target {
        match spec.strip_prefix(EXEC_PREFIX) {
            Some(command) => Target::command(
                serde_json::from_str(command)
                    .unwrap_or_else(|_| command.split_whitespace().map(str::to_owned).collect()),
            ),
            None => Target::at(spec),
        }
    }
}

/// How a [`Target::spec`] names a registry behind a command.
pub const EXEC_PREFIX: &str = "exec:";

impl Request {
    /// The `[target]`, if the request names one.
    pub fn target(&self) -> Option<Target> {
        let mut target = Target::parse(self.target.as_deref()?);
        target.registry_view = self.registry_view.clone();
        Some(target)
    }
}

#[derive(Clone, Debug)]
pub struct Site {
    pub id: SiteId,
    /// Index into `Request::tiers`.
    pub tier: usize,
    /// The site's own product list, when it has one.
    pub products: Option<Vec<String>>,
    pub attrs: BTreeMap<String, String>,
    pub at: Location,
}

impl Request {
    /// Parses and validates a request. `load` reads a CSV site list named by `sites_csv`
    /// (relative to the request file).
    pub fn parse(
        source: &Source,
        load: impl FnOnce(&str) -> Result<Source, Problem>,
    ) -> Result<Request, Vec<Problem>> {
        let file: RequestFile =
            toml::from_str(&source.text).map_err(|e| vec![source.toml_problem(&e)])?;
        let mut problems = Vec::new();
        let header = &file.request;
        if *header.format.get_ref() != 1 {
            problems.push(invalid_at(
                source,
                header.format.span().start,
                "request.format",
                "only format 1 exists",
                "write format = 1",
            ));
        }
        let point_in_time = parse_time(source, &header.point_in_time, &mut problems);
        let backup_window = backup_window(source, file.backups.as_ref(), &mut problems);
        let tiers = tiers(source, header, &mut problems);
        if let Some(format::Registry::Location(l)) = file.target.as_ref().map(|t| &t.registry) {
            // A string is never run: a command is written as a list, on purpose.
            if l.starts_with(EXEC_PREFIX) {
                problems.push(Problem::new(
                    source.whole(),
                    "target.registry",
                    ProblemKind::Invalid {
                        message: format!("'{l}' is neither a directory nor a URL"),
                        fix: "write a registry behind a command as registry = { exec = [\"command\", \"arg\"] }"
                            .into(),
                    },
                ));
            }
        }
        let default_products = header
            .products
            .as_ref()
            .map(|p| (p.get_ref().clone(), source.locate(p.span().start)));
        let mut sites = Vec::new();
        for spec in &file.sites {
            match inline_site(source, spec, &tiers) {
                Ok(site) => sites.push(site),
                Err(p) => problems.extend(p),
            }
        }
        if let Some(csv_name) = &header.sites_csv {
            match load(csv_name.get_ref()) {
                Ok(csv_source) => match csv::sites(&csv_source, &tiers) {
                    Ok(csv_sites) => sites.extend(csv_sites),
                    Err(p) => problems.extend(p),
                },
                Err(p) => problems.push(p),
            }
        }
        check_duplicates(&sites, &mut problems);
        check_no_secret_references(&sites, &mut problems);
        if sites.is_empty() && problems.is_empty() {
            problems.push(Problem::new(
                source.whole(),
                "sites",
                ProblemKind::EmptyRequest,
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Request {
            name: file.request.name.clone(),
            point_in_time: point_in_time.expect("no problems means the time parsed"),
            tiers,
            default_products,
            backup_window,
            backups: file.backups.map(|b| b.source),
            registry_view: file.target.as_ref().and_then(|t| t.registry_view.clone()),
            target: file.target.map(|t| match t.registry {
                format::Registry::Location(l) => l,
                format::Registry::Exec { exec } => Target::command(exec).spec(),
            }),
            sites,
        })
    }
}

fn parse_time(
    source: &Source,
    value: &toml::Spanned<String>,
    problems: &mut Vec<Problem>,
) -> Option<DateTime<FixedOffset>> {
    match DateTime::parse_from_rfc3339(value.get_ref()) {
        Ok(t) => Some(t),
        Err(e) => {
            let kind = ProblemKind::BadTimestamp {
                value: value.get_ref().clone(),
                reason: e.to_string(),
            };
            problems.push(Problem::new(
                source.locate(value.span().start),
                "request.point_in_time",
                kind,
            ));
            None
        }
    }
}

/// The default `[backups] window`.
pub const DEFAULT_BACKUP_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

fn backup_window(
    source: &Source,
    backups: Option<&format::Backups>,
    problems: &mut Vec<Problem>,
) -> std::time::Duration {
    let Some(w) = backups.and_then(|b| b.window.as_ref()) else {
        return DEFAULT_BACKUP_WINDOW;
    };
    crate::limits::duration(w.get_ref(), crate::limits::MAX_WINDOW).unwrap_or_else(|e| {
        problems.push(Problem::new(
            source.locate(w.span().start),
            "backups.window",
            ProblemKind::duration(w.get_ref(), e),
        ));
        DEFAULT_BACKUP_WINDOW
    })
}

fn tiers(source: &Source, header: &format::Header, problems: &mut Vec<Problem>) -> Vec<String> {
    let Some(tiers) = &header.tiers else {
        return DEFAULT_TIERS.iter().map(|t| t.to_string()).collect();
    };
    let list = tiers.get_ref();
    let mut seen = std::collections::HashSet::new();
    if list.is_empty() || !list.iter().all(|t| seen.insert(t)) {
        problems.push(invalid_at(
            source,
            tiers.span().start,
            "request.tiers",
            "tiers must be a non-empty list of distinct names",
            "list each tier once, most urgent first",
        ));
    }
    for tier in list {
        if let Err(message) = crate::ids::check_name(tier) {
            problems.push(invalid_at(
                source,
                tiers.span().start,
                "request.tiers",
                &message,
                "rename the tier, e.g. 'premium'",
            ));
        }
    }
    list.clone()
}

fn inline_site(
    source: &Source,
    spec: &format::SiteSpec,
    tiers: &[String],
) -> Result<Site, Vec<Problem>> {
    let at = source.locate(spec.id.span().start);
    let mut problems = Vec::new();
    let id = SiteId::parse(spec.id.get_ref())
        .map_err(|e| Problem::new(at.clone(), "sites.id", ProblemKind::BadSiteId(e)));
    let tier = spec
        .tier
        .as_ref()
        .map(|t| (t.get_ref().as_str(), source.locate(t.span().start)));
    let tier = resolve_tier(tier, tiers, spec.id.get_ref());
    let mut attrs = BTreeMap::new();
    for (key, value) in &spec.attrs {
        match attr_text(value) {
            Some(text) => {
                attrs.insert(key.clone(), text);
            }
            None => problems.push(Problem::new(
                at.clone(),
                format!("site {} attrs.{key}", spec.id.get_ref()),
                invalid(
                    "an attribute must be a string, number or boolean",
                    "write the value as a string or number",
                ),
            )),
        }
    }
    let (id, tier) = match (id, tier) {
        (Ok(id), Ok(tier)) => (id, tier),
        (id, tier) => {
            problems.extend(id.err());
            problems.extend(tier.err());
            return Err(problems);
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Site {
        id,
        tier,
        products: spec.products.as_ref().map(|p| p.get_ref().clone()),
        attrs,
        at,
    })
}

/// A tier name to its index; a missing tier is the least urgent one.
fn resolve_tier(
    tier: Option<(&str, Location)>,
    tiers: &[String],
    site: &str,
) -> Result<usize, Problem> {
    match tier {
        None => Ok(tiers.len().saturating_sub(1)),
        Some((name, at)) => tiers.iter().position(|t| t == name).ok_or_else(|| {
            let kind = ProblemKind::Unknown {
                what: "tier",
                name: name.to_owned(),
                known: tiers.to_vec(),
            };
            Problem::new(at, format!("site {site} tier"), kind)
        }),
    }
}

fn attr_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A site's attribute values are data, often from a list someone else made: one that reads as a
/// secret reference (`{env:NAME}`) would, once templated into an http or exec param, make drover
/// send that environment variable wherever the workflow sends the param.
fn check_no_secret_references(sites: &[Site], problems: &mut Vec<Problem>) {
    for site in sites {
        for (key, value) in &site.attrs {
            if value.contains("{env:") {
                problems.push(Problem::new(
                    site.at.clone(),
                    format!("site {} attrs.{key}", site.id),
                    ProblemKind::Invalid {
                        message: "the value contains '{env:', which drover reads as a secret \
                                  reference; a site's data may not name secrets"
                            .into(),
                        fix: "remove it from the site list; secrets belong in the workflow's \
                              params as {env:NAME}"
                            .into(),
                    },
                ));
            }
        }
    }
}

fn check_duplicates(sites: &[Site], problems: &mut Vec<Problem>) {
    let mut first: HashMap<&SiteId, &Location> = HashMap::with_capacity(sites.len());
    for site in sites {
        if let Some(prev) = first.insert(&site.id, &site.at) {
            let kind = ProblemKind::DuplicateSite {
                site: site.id.to_string(),
                first: prev.to_string(),
            };
            problems.push(Problem::new(
                site.at.clone(),
                format!("site {}", site.id),
                kind,
            ));
            first.insert(&site.id, prev);
        }
    }
}

fn invalid(message: &str, fix: &str) -> ProblemKind {
    ProblemKind::Invalid {
        message: message.into(),
        fix: fix.into(),
    }
}

fn invalid_at(source: &Source, offset: usize, entry: &str, message: &str, fix: &str) -> Problem {
    let kind = ProblemKind::Invalid {
        message: message.into(),
        fix: fix.into(),
    };
    Problem::new(source.locate(offset), entry, kind)
}
