//! `drover plan`: validate, expand and summarize a restore, and optionally write the full plan.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::Failure;
use super::Format;
use super::shared::{Preflight, load, plan_inputs, preflight_excluding, print_excluded};
use crate::plan::doc::{PlanDoc, Summary};
use crate::plan::{self, Plan, PlanOptions};
use crate::report::human;

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Workflow file (TOML): products, step templates, pools. See docs/workflow-format.md.
    #[arg(long, short)]
    workflow: PathBuf,
    /// Restore request (TOML): sites, products, point in time. See docs/request-format.md.
    #[arg(long, short)]
    request: PathBuf,
    /// Pool capacity overrides, e.g. `db=8,s3=32`.
    #[arg(long, value_parser = super::parse_pools)]
    pools: Option<std::collections::BTreeMap<String, u32>>,
    /// Summary format on standard output.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Write the full plan (every step with deps, pool use and rank) as JSON to this file,
    /// for review and for `drover run --plan`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Skip the preflight checks that read the outside world: the backup store (every fetch
    /// step's unit has a complete snapshot inside the window; the RPO each site will get) and
    /// the target registry (every site exists and may be restored). `drover run` always does them.
    #[arg(long)]
    offline: bool,
    /// Preflight: allow sites an earlier restore already touched (restoring, validated,
    /// quarantined) to be restored again from backups. A live site is refused regardless.
    #[arg(long)]
    replace_existing: bool,
    /// Preflight: leave out the sites it refuses (a live site, an ID that is no site, a unit
    /// with no backup in its window…) and plan the others, instead of refusing the whole plan.
    /// The sites left out are listed with their reasons, written into the plan file (`--out`)
    /// and recorded in the ledger of a run made from it. Refuses as before when a problem is
    /// not about particular sites.
    #[arg(long, conflicts_with = "offline")]
    exclude_refused: bool,
}

pub fn run(args: PlanArgs) -> Result<(), Failure> {
    let pools = args.pools.unwrap_or_default();
    let mut loaded = load(&args.workflow, &args.request)?;
    let options = PlanOptions {
        pool_capacity: pools.clone(),
    };
    let plan = plan::plan(&loaded.workflow, &loaded.request, &options)?;
    let mut inputs = plan_inputs(&args.workflow, &args.request, pools);
    let (plan, checked) = if args.offline {
        (plan, Preflight::default())
    } else {
        let opts = crate::preflight::Options {
            replace_existing: args.replace_existing,
            ..Default::default()
        };
        let (plan, checked, excluded) = preflight_excluding(
            plan,
            &mut loaded,
            &options,
            &args.request,
            Some(opts),
            args.exclude_refused,
        )?;
        print_excluded(&excluded);
        inputs.excluded = excluded;
        (plan, checked)
    };
    let capacity: Vec<u32> = plan.pools.iter().map(|p| p.capacity).collect();
    for warning in crate::preflight::pools(&plan, &capacity, crate::schedule::DEFAULT_MAX_PARALLEL)
    {
        errln!("warning: {warning}");
    }
    let secrets = crate::preflight::secrets(&plan, |name| std::env::var_os(name).is_some());
    super::warn_secrets(&secrets);
    super::refuse_unresolved_secrets(&secrets, &args.workflow)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        Format::Text => {
            let mut out = super::Printable(&mut out);
            print_text(&mut out, &plan).context("writing the summary")?;
            if let Some(c) = &checked.backups {
                print_backups(&mut out, &plan, c).context("writing the summary")?;
            }
            if let Some(r) = &checked.registry {
                print_registry(&mut out, r).context("writing the summary")?;
            }
        }
        Format::Json => {
            let mut doc =
                serde_json::to_value(Summary::new(&plan)).context("encoding the summary")?;
            if let Some(c) = &checked.backups {
                doc["backups"] = backups_json(&plan, c);
            }
            if let Some(r) = &checked.registry {
                doc["registry"] = serde_json::to_value(r).context("encoding the summary")?;
            }
            if !inputs.excluded.is_empty() {
                doc["excluded"] =
                    serde_json::to_value(&inputs.excluded).context("encoding the summary")?;
            }
            serde_json::to_writer_pretty(&mut out, &doc).context("writing the summary")?;
            writeln!(out).context("writing the summary")?;
        }
    }
    if let Some(path) = args.out {
        write_plan(&path, &plan, &inputs)?;
        errln!(
            "wrote the full plan to {} (hash {})",
            path.display(),
            &plan.hash
        );
    }
    // The process exits next; freeing a 200k-step plan piece by piece would only add time.
    std::mem::forget(plan);
    Ok(())
}

fn write_plan(
    path: &std::path::Path,
    plan: &Plan,
    inputs: &crate::plan::doc::PlanInputs,
) -> Result<(), Failure> {
    super::shared::write_atomically(path, |w| {
        Ok(serde_json::to_writer(w, &PlanDoc::new(plan, inputs))?)
    })?;
    Ok(())
}

// Over 80 lines on purpose: a renderer, one block per section of the summary, read top to
// bottom like the output it prints.
fn print_text(out: &mut impl Write, plan: &Plan) -> std::io::Result<()> {
    let s = Summary::new(plan);
    writeln!(out, "plan {}", plan.hash)?;
    writeln!(out, "  workflow       {}", plan.workflow)?;
    writeln!(
        out,
        "  request        {} (point in time {})",
        if plan.request.is_empty() {
            "-"
        } else {
            &plan.request
        },
        plan.point_in_time
    )?;
    let tiers: Vec<String> = plan
        .tiers
        .iter()
        .filter_map(|t| s.sites_by_tier.get(t.as_str()).map(|n| format!("{t} {n}")))
        .collect();
    writeln!(out, "  sites          {} ({})", s.sites, tiers.join(", "))?;
    let products: Vec<String> = s
        .sites_by_product
        .iter()
        .map(|(p, n)| format!("{p} {n}"))
        .collect();
    writeln!(out, "  products       {}", products.join(", "))?;
    let kinds: Vec<String> = s
        .steps_by_kind
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    writeln!(out, "  steps          {} ({})", s.steps, kinds.join(", "))?;
    writeln!(out, "  edges          {}", s.edges)?;
    for (name, c) in &s.conditional_steps {
        writeln!(
            out,
            "  conditional    {name}: {} steps where {}",
            c.steps, c.when
        )?;
    }
    for (i, g) in s.paths.iter().enumerate() {
        let label = if i == 0 { "paths" } else { "" };
        let what = if g.skips.is_empty() {
            "take every step".to_owned()
        } else {
            format!("skip {}", g.skips.join(", "))
        };
        let more = if g.sites > g.examples.len() {
            ", …"
        } else {
            ""
        };
        writeln!(
            out,
            "  {label:<14} {} sites {what} ({}{more})",
            g.sites,
            g.examples.join(", ")
        )?;
    }
    writeln!(
        out,
        "  pools          demand ÷ capacity = least time for the pool alone"
    )?;
    for p in &plan.pools {
        writeln!(
            out,
            "    {:<12} {:>12} ÷ {:<5} = {}",
            p.name,
            human(p.demand),
            p.capacity,
            human(p.bound())
        )?;
    }
    let cp = &plan.critical_path;
    writeln!(
        out,
        "  critical path  {} over {} steps",
        human(plan.critical_path_length()),
        cp.len()
    )?;
    if let (Some(&first), Some(&last)) = (cp.first(), cp.last()) {
        writeln!(out, "    first        {}", plan.steps[first as usize].id)?;
        writeln!(out, "    last         {}", plan.steps[last as usize].id)?;
    }
    writeln!(
        out,
        "  lower bound    {} (no schedule can finish sooner with these pools, if steps take \
         the workflow's estimates; `drover estimate --history` forecasts from measured durations)",
        human(plan.lower_bound)
    )?;
    writeln!(out, "  total work     {}", human(plan.total_work()))?;
    Ok(())
}

fn print_backups(
    out: &mut impl Write,
    plan: &Plan,
    c: &crate::backup::check::BackupCheck,
) -> std::io::Result<()> {
    writeln!(
        out,
        "  backups        {} units in {} store(s): every one has a snapshot in its window",
        c.units, c.sources
    )?;
    if let Some((p50, max, site)) = c.rpo_summary(plan) {
        writeln!(
            out,
            "    RPO          p50 {}, max {} ({site})",
            human(p50),
            human(max)
        )?;
    }
    Ok(())
}

fn print_registry(
    out: &mut impl Write,
    r: &crate::preflight::RegistryCheck,
) -> std::io::Result<()> {
    let states: Vec<String> = r.by_state.iter().map(|(s, n)| format!("{n} {s}")).collect();
    writeln!(
        out,
        "  registry       every site may be restored ({}) in {}",
        states.join(", "),
        r.registry
    )
}

fn backups_json(plan: &Plan, c: &crate::backup::check::BackupCheck) -> serde_json::Value {
    let summary = c.rpo_summary(plan);
    serde_json::json!({
        "units": c.units,
        "sources": c.sources,
        "rpo_p50_s": summary.as_ref().map(|s| s.0.as_secs()),
        "rpo_max_s": summary.as_ref().map(|s| s.1.as_secs()),
        "rpo_max_site": summary.as_ref().map(|s| s.2.clone()),
        "site_rpo_s": plan
            .sites
            .iter()
            .zip(&c.site_rpo_s)
            .map(|(s, r)| (s.id.to_string(), *r))
            .collect::<std::collections::BTreeMap<_, _>>(),
    })
}
