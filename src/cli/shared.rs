//! What several commands share: loading inputs with IDs named, preflight, the async runtime,
//! atomic file writes, how durations are shown. Command files use this module, never each
//! other.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::Failure;
use crate::plan::Plan;

/// Reads both inputs; an ID that is not a site's is named for what the target registry knows it
/// as (a customer, an app).
pub(crate) fn load(
    workflow: &std::path::Path,
    request: &std::path::Path,
) -> Result<crate::load::Inputs, Failure> {
    crate::load::inputs(workflow, request).map_err(|mut problems| {
        crate::preflight::identify_ids(request, &mut problems);
        Failure::Input(problems)
    })
}

/// What preflight checked and found in order.
#[derive(Default)]
pub(crate) struct Preflight {
    pub backups: Option<crate::backup::check::BackupCheck>,
    pub registry: Option<crate::preflight::RegistryCheck>,
}

/// Preflight (see `crate::preflight`): the target registry (unless `registry` is `None`), then
/// the backup store when the plan fetches anything. Refuses with exit 2 and every problem found;
/// changes nothing.
pub(crate) fn preflight(
    plan: &Plan,
    request: &crate::request::Request,
    request_path: &std::path::Path,
    registry: Option<crate::preflight::Options>,
) -> Result<Preflight, Failure> {
    let file = request_path.display().to_string();
    // Both checks run, so the operator sees every problem at once.
    let mut problems = Vec::new();
    let registry = match registry.map(|o| crate::preflight::registry(plan, request, &file, o)) {
        Some(Ok(found)) => found,
        Some(Err(p)) => {
            problems.extend(p);
            None
        }
        None => None,
    };
    let fetches = plan
        .templates
        .iter()
        .any(|t| t.kind == crate::backup::check::FETCH_KIND);
    let backups = match fetches.then(|| check_backups(plan)) {
        Some(Ok(found)) => Some(found),
        Some(Err(Failure::Input(p))) => {
            problems.extend(p);
            None
        }
        Some(Err(other)) => return Err(other),
        None => None,
    };
    if !problems.is_empty() {
        return Err(Failure::Input(problems));
    }
    Ok(Preflight { backups, registry })
}

/// Runs the backup check (listings only), refusing with exit 2 when a unit has no usable snapshot.
pub(crate) fn check_backups(plan: &Plan) -> Result<crate::backup::check::BackupCheck, Failure> {
    Ok(runtime()?.block_on(crate::backup::check::check(plan))?)
}

/// The inputs of a plan, with absolute paths so `drover run --plan` finds them from anywhere.
pub(crate) fn plan_inputs(
    workflow: &std::path::Path,
    request: &std::path::Path,
    pools: std::collections::BTreeMap<String, u32>,
) -> crate::plan::doc::PlanInputs {
    let abs = |p: &std::path::Path| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    };
    crate::plan::doc::PlanInputs {
        workflow: abs(workflow),
        request: abs(request),
        pools,
        excluded: Default::default(),
    }
}

/// Sites left out of a restore by `--exclude-refused`: site → why preflight refused it.
pub(crate) type Excluded = std::collections::BTreeMap<String, Vec<String>>;

/// Drops the `excluded` sites from `request`.
pub(crate) fn without(request: &mut crate::request::Request, excluded: &Excluded) {
    request
        .sites
        .retain(|s| !excluded.contains_key(s.id.as_str()));
}

/// [`preflight`], and with `exclude` the sites that only site-bound refusals concern (a live
/// site, an ID that is no site, a unit without a backup…) are left out instead: the plan is
/// made again without them and checked again. Refuses as `preflight` does when a problem
/// concerns more than sites, or when no site would be left. Returns the plan to run, what
/// preflight found and the sites left out.
pub(crate) fn preflight_excluding(
    plan: Plan,
    inputs: &mut crate::load::Inputs,
    options: &crate::plan::PlanOptions,
    request_path: &std::path::Path,
    registry: Option<crate::preflight::Options>,
    exclude: bool,
) -> Result<(Plan, Preflight, Excluded), Failure> {
    let problems = match preflight(&plan, &inputs.request, request_path, registry) {
        Ok(found) => return Ok((plan, found, Excluded::new())),
        Err(Failure::Input(problems)) => problems,
        Err(other) => return Err(other),
    };
    let site_bound = problems.iter().all(|p| !p.refuses.is_empty());
    let mut excluded = Excluded::new();
    for p in &problems {
        for site in &p.refuses {
            excluded
                .entry(site.clone())
                .or_default()
                .push(format!("{}: {}", p.entry, p.kind));
        }
    }
    if !exclude || !site_bound || excluded.len() >= plan.sites.len() {
        return Err(Failure::Input(problems));
    }
    without(&mut inputs.request, &excluded);
    let plan = crate::plan::plan(&inputs.workflow, &inputs.request, options)?;
    let found = preflight(&plan, &inputs.request, request_path, registry)?;
    Ok((plan, found, excluded))
}

/// Prints the sites `--exclude-refused` left out, with their reasons.
pub(crate) fn print_excluded(excluded: &Excluded) {
    if excluded.is_empty() {
        return;
    }
    errln!(
        "excluded: {} site{} refused by preflight, left out of this restore (--exclude-refused):",
        excluded.len(),
        if excluded.len() == 1 { "" } else { "s" }
    );
    for (site, reasons) in excluded {
        errln!("  {site}: {}", reasons.join("; "));
    }
}

/// Writes beside `path` and renames into place, so a reader never sees half a report.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = std::fs::File::create(&tmp)
        .map(std::io::BufWriter::new)
        .and_then(|mut w| {
            write(&mut w)?;
            w.flush()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// The multi-threaded runtime a command's async work runs on.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?)
}

/// Learns step durations from `--history`: ledgers of runs or drills, or a drill history
/// (`drills.jsonl`), whose every drill's ledger still on disk is used. Prints which evidence.
pub(crate) fn learn_history(
    paths: &[std::path::PathBuf],
) -> Result<crate::sim::model::DurationModel, Failure> {
    use crate::sim::model::{DurationModel, History};
    let mut ledgers: Vec<(String, std::path::PathBuf)> = Vec::new();
    // Every path is classified before any ledger is opened: reading a file that this process
    // also holds open through SQLite would release SQLite's locks on it.
    for path in paths {
        // A ledger by its first bytes (a ledger may be far larger than a drill history).
        let mut head = Vec::new();
        if let Ok(f) = std::fs::File::open(path) {
            let _ = std::io::Read::read_to_end(&mut std::io::Read::take(f, 16), &mut head);
        }
        let postgres = path.to_str().is_some_and(crate::ledger::postgres::is_url);
        if postgres || head.starts_with(crate::sniff::SQLITE_MAGIC) {
            ledgers.push((path.display().to_string(), path.clone()));
            continue;
        }
        let drills = match crate::drill::read(path) {
            Ok(drills) => drills,
            Err(e) => {
                return Err(super::refuse(
                    path,
                    "--history",
                    format!("neither a ledger nor a drill history: {e}"),
                    "give a ledger (--state of a run or drill) or a drill history (drills.jsonl)",
                ));
            }
        };
        for d in drills {
            let ledger = std::path::PathBuf::from(&d.state);
            if ledger.exists() {
                ledgers.push((format!("{} (drill of {})", d.state, d.at), ledger));
            } else {
                errln!(
                    "warning: {}: the ledger of the drill of {} ({}) is gone; it is not used",
                    path.display(),
                    d.at,
                    d.state
                );
            }
        }
    }
    if ledgers.is_empty() && !paths.is_empty() {
        return Err(super::refuse(
            &paths[0],
            "--history",
            "no ledger to learn from: every drill's ledger is gone".into(),
            "keep drill ledgers (--state) where the history says, or give run ledgers",
        ));
    }
    let mut loaded = Vec::new();
    for (source, path) in &ledgers {
        let ledger = crate::ledger::open(path)?;
        let drill = ledger.sessions()?.iter().any(|s| s.mode == "drill");
        loaded.push((
            source.clone(),
            if drill { "drill" } else { "run" },
            ledger.load()?,
        ));
    }
    let history: Vec<History<'_>> = loaded
        .iter()
        .map(|(source, kind, stored)| History {
            source: source.clone(),
            kind,
            plan: &stored.plan,
            records: &stored.steps,
        })
        .collect();
    Ok(DurationModel::learn(&history))
}

/// This process's command line as a ledger records it: any credential in it (a password in a
/// `--state` or `--postgres` URL) replaced by `***`.
pub(crate) fn argv() -> Vec<String> {
    std::env::args().map(|a| crate::redact::text(&a)).collect()
}
