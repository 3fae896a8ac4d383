//! `drover demo`: the whole story on embedded defaults — a reference SaaS platform is built and
//! backed up, a maintenance script deletes its sites, and drover plans, restores, validates,
//! reactivates and notifies them; then every site is verified against its pre-incident
//! fingerprint. Each stage is also a subcommand (`demo init`, `demo incident`, `demo verify`);
//! between them, the ordinary `drover plan` / `drover run` with `<dir>/request.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use super::shared::runtime;
use super::{Done, Failure, Format};
use crate::backup::s3::{S3Store, S3Url};
use crate::generate::{self, GenerateOptions};
use crate::platform::{DeleteMode, Platform};

/// The workflow the demo runs, embedded so the demo needs no files.
const WORKFLOW: &str = include_str!("../../workflows/saas-platform.toml");
/// The same for a platform with its shards in PostgreSQL (`--postgres`).
const WORKFLOW_POSTGRES: &str = include_str!("../../workflows/saas-platform-postgres.toml");

#[derive(Args, Debug)]
pub struct DemoArgs {
    #[command(subcommand)]
    stage: Option<Stage>,
    #[command(flatten)]
    opts: DemoOpts,
}

#[derive(Subcommand, Debug)]
enum Stage {
    /// Build the platform, back it up twice, and write <dir>/request.toml for every site.
    Init {
        #[command(flatten)]
        place: Place,
        #[command(flatten)]
        build: BuildOpts,
    },
    /// Run the maintenance script (in April 2022 a vendor's script, run in the wrong mode with a
    /// list of app IDs, deleted 883 customer sites): delete the sites and rewrite
    /// <dir>/request.toml to list them.
    Incident {
        #[command(flatten)]
        place: Place,
        #[command(flatten)]
        incident: IncidentOpts,
    },
    /// Compare every site with its pre-incident fingerprint; exit 0 only if all match.
    Verify {
        #[command(flatten)]
        place: Place,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

/// Every stage at once (`drover demo` without a stage).
#[derive(Args, Debug, Clone)]
struct DemoOpts {
    #[command(flatten)]
    place: Place,
    #[command(flatten)]
    build: BuildOpts,
    #[command(flatten)]
    incident: IncidentOpts,
}

#[derive(Args, Debug, Clone)]
struct Place {
    /// Where the platform, backups, request, ledger and report go [default: a new temp dir].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Put the platform's shards in PostgreSQL: one schema per shard in the database of this URL
    /// (`postgres://user@host:port/db`; the password from PGPASSWORD; `sslmode` as libpq), which
    /// must hold none of them yet. Restored with workflows/saas-platform-postgres.toml. Without a
    /// URL, prints how to start a throwaway server. `incident` and `verify` find the server in
    /// the platform (`<dir>/platform/postgres.url`).
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    postgres: Option<String>,
}

/// How `init` builds the platform.
#[derive(Args, Debug, Clone)]
struct BuildOpts {
    /// Sites on the platform.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    sites: u32,
    /// Seed for the platform's generated sites.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Put the platform's backups in S3 (`s3://bucket/prefix`, `?path-style=true` for most
    /// S3-compatible servers; credentials and endpoint from the standard AWS environment)
    /// instead of <dir>/backups. The request then restores from there.
    #[arg(long, value_name = "URL")]
    backups: Option<String>,
}

/// What the incident deletes.
#[derive(Args, Debug, Clone)]
struct IncidentOpts {
    /// How many sites the incident deletes [default: all, as the 2022 script did].
    #[arg(long)]
    deleted: Option<usize>,
    /// Share of the deleted sites that the script only marked for deletion (soft delete).
    #[arg(long, default_value = "0%")]
    soft_deleted: String,
}

pub fn run(args: DemoArgs) -> Result<Done, Failure> {
    match args.stage {
        Some(Stage::Init { place, build }) => {
            init(&dir(&place)?, &build, place.postgres.as_deref()).map(|()| Done::Ok)
        }
        Some(Stage::Incident { place, incident: o }) => {
            let dir = dir(&place)?;
            same_server(&dir, &place)?;
            incident(&dir, &o).map(|()| Done::Ok)
        }
        Some(Stage::Verify { place, format }) => {
            let dir = dir(&place)?;
            same_server(&dir, &place)?;
            verify(&dir, format)
        }
        None => whole(&args.opts),
    }
}

fn dir(o: &Place) -> Result<PathBuf, Failure> {
    if o.postgres.as_deref() == Some("") {
        return Err(super::refuse(
            Path::new("--postgres"),
            "--postgres",
            "needs the URL of a PostgreSQL server (13 or later) whose database the demo may fill"
                .into(),
            &throwaway_server(),
        ));
    }
    let d = match &o.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("drover-demo-{}", std::process::id())),
    };
    // The request written there names the platform and backups by path: make them absolute so
    // it works from any directory.
    std::path::absolute(&d)
        .with_context(|| format!("resolving {}", d.display()))
        .map_err(Failure::from)
}

/// How to start a throwaway PostgreSQL server for the demo, as commands to copy.
fn throwaway_server() -> String {
    "start a throwaway server (Debian: `apt-get install postgresql`; not as root), then give its URL:\n\
     \x20 bin=$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin); d=$(mktemp -d)\n\
     \x20 $bin/initdb -D $d/data -U drover --auth=trust\n\
     \x20 $bin/pg_ctl -D $d/data -l $d/log -o \"-p 54329 -k $d -c listen_addresses=127.0.0.1\" -w start\n\
     \x20 $bin/createdb -h 127.0.0.1 -p 54329 -U drover demo\n\
     \x20 drover demo --postgres postgres://drover@127.0.0.1:54329/demo\n\
     and when done: $bin/pg_ctl -D $d/data stop && rm -rf $d"
        .into()
}

fn whole(o: &DemoOpts) -> Result<Done, Failure> {
    let dir = dir(&o.place)?;
    let started = std::time::Instant::now();
    errln!("demo in {}", dir.display());
    init(&dir, &o.build, o.place.postgres.as_deref())?;
    let workflow = dir.join("workflow.toml");
    let drills = match &o.place.postgres {
        None => Some(calibrate(
            dir.as_path(),
            &workflow,
            &dir.join("request.toml"),
        )?),
        Some(_) => {
            errln!(
                "calibration: skipped; a drill copies a platform on SQLite shards only, so the \
                 forecast below uses the workflow's estimates"
            );
            None
        }
    };
    incident(&dir, &o.incident)?;
    let request = dir.join("request.toml");
    let deleted = std::fs::read_to_string(&request)
        .context("reading the request")?
        .matches("[[sites]]")
        .count();
    let (max_sites, state) = (deleted.max(1).to_string(), dir.join("ledger.db"));
    let history: Vec<&str> = match &drills {
        Some(d) => vec!["--history", path(d)],
        None => vec![],
    };
    let mut forecast = vec![
        "drover",
        "estimate",
        "-w",
        path(&workflow),
        "-r",
        path(&request),
    ];
    forecast.extend(&history);
    command(&forecast)?;
    let mut argv = vec![
        "drover",
        "run",
        "--yes",
        "--max-sites",
        &max_sites,
        "-w",
        path(&workflow),
        "-r",
        path(&request),
        "--state",
        path(&state),
    ];
    argv.extend(&history);
    let run_done = command(&argv)?;
    let verdict = verify(&dir, Format::Text)?;
    report(&dir)?;
    errln!("total {}", crate::report::human(started.elapsed()));
    errln!(
        "look closer: drover status --state {0}/ledger.db, drover report --state {0}/ledger.db --html report.html",
        dir.display()
    );
    errln!(
        "the demo's files (platform, backups, ledger, staging) take {} in {}; remove the directory when done",
        crate::util::size_text(crate::util::dir_size(&dir)),
        dir.display()
    );
    Ok(if run_done == Done::Ok && verdict == Done::Ok {
        Done::Ok
    } else {
        Done::Unfinished
    })
}

/// Runs a drover command line in this process.
fn command(argv: &[&str]) -> Result<Done, Failure> {
    let cli = super::Cli::try_parse_from(argv).map_err(anyhow::Error::new)?;
    super::execute(cli.command)
}

/// Sites in the calibration drill: 10 % of the platform, within these bounds. Fewer gave each
/// (step kind, product) a handful of points and forecasts from 0.6x to 1.4x the restore.
const CALIBRATION_SITES: (usize, usize) = (20, 60);

/// Measures how long steps take here, on the demo's data: before the incident, as a team would,
/// a DR drill restores a sample of the sites on a copy of the live platform. The workflow's
/// estimates describe production data (gigabytes per site) while the demo's sites hold a few
/// hundred kilobytes, so the forecast and the run's ETA start from this drill instead
/// (`--history <dir>/drills.jsonl`), as an operator's would start from their last exercise.
/// Returns the drill history.
fn calibrate(dir: &Path, workflow: &Path, request: &Path) -> Result<PathBuf, Failure> {
    let text = std::fs::read_to_string(request).context("reading the request")?;
    let mut table: toml::Table = text.parse().context("parsing the request")?;
    let Some(toml::Value::Array(sites)) = table.get_mut("sites") else {
        return Err(anyhow::anyhow!("the demo's request lists no sites").into());
    };
    let n = (sites.len() / 10)
        .clamp(CALIBRATION_SITES.0, CALIBRATION_SITES.1)
        .min(sites.len());
    let stride = (sites.len() / n.max(1)).max(1);
    *sites = sites.iter().step_by(stride).take(n).cloned().collect();
    let sample = dir.join("calibration-request.toml");
    std::fs::write(
        &sample,
        toml::to_string(&table).context("writing the sample")?,
    )
    .context("writing calibration-request.toml")?;
    let (state, drills, work) = (
        dir.join("calibration.db"),
        dir.join("drills.jsonl"),
        dir.join("calibration"),
    );
    std::fs::create_dir_all(&work).context("creating the calibration directory")?;
    errln!(
        "calibration: a DR drill of {n} sites on a copy of the live platform, to learn how long steps take here"
    );
    let argv = [
        "drover",
        "drill",
        "-w",
        path(workflow),
        "-r",
        path(&sample),
        "--target-rto",
        "1h",
        "--state",
        path(&state),
        "--history",
        path(&drills),
        "--work-dir",
        path(&work),
    ];
    command(&argv)?;
    Ok(drills)
}

/// Every site of the platform, in ID order.
fn site_ids(platform: &Platform) -> Result<Vec<String>, Failure> {
    let sites = platform.sites()?;
    Ok(sites.into_iter().map(|s| s.id).collect())
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn gen_opts(o: &BuildOpts) -> GenerateOptions {
    GenerateOptions {
        sites: o.sites as usize,
        seed: o.seed,
        ..GenerateOptions::default()
    }
}

/// `--postgres` on `incident` or `verify` must name the server `init` built the platform on.
fn same_server(dir: &Path, place: &Place) -> Result<(), Failure> {
    let Some(given) = &place.postgres else {
        return Ok(());
    };
    let recorded = Platform::open(dir.join("platform"))
        .ok()
        .and_then(|p| p.postgres_url());
    if recorded.as_deref() == Some(given.as_str()) {
        return Ok(());
    }
    Err(super::refuse(
        Path::new("--postgres"),
        "--postgres",
        match recorded {
            Some(_) => "names another server than the one this demo's platform was built on".into(),
            None => "this demo's platform has its shards in SQLite, not PostgreSQL".into(),
        },
        "leave --postgres out: the platform knows its server (<dir>/platform/postgres.url)",
    ))
}

fn init(dir: &Path, o: &BuildOpts, postgres: Option<&str>) -> Result<(), Failure> {
    let dest = o.backups.as_deref().map(s3_destination).transpose()?;
    for mine in ["backups", "backups-upload"] {
        if dir.join(mine).exists() {
            return Err(super::refuse(
                &dir.join(mine),
                "--dir",
                "already exists: the demo writes its backups only where there are none".into(),
                "give `demo init` a new --dir",
            ));
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let opts = gen_opts(o);
    let platform = match postgres {
        Some(url) => Platform::build_on_postgres(dir.join("platform"), &opts, url)?,
        None => Platform::build(dir.join("platform"), &opts)?,
    };
    // The marker also records how the platform was built: the incident's request needs the
    // same generated site sizes.
    let marker = serde_json::json!({
        "made_by": "drover demo init: `drover demo incident` may delete sites here",
        "sites": o.sites,
        "seed": o.seed,
    });
    std::fs::write(dir.join(DEMO_MARKER), format!("{marker}\n"))
        .context("writing the demo marker")?;
    let fingerprints =
        serde_json::to_value(platform.fingerprint_all()?).map_err(anyhow::Error::from)?;
    std::fs::write(dir.join("fingerprints.json"), fingerprints.to_string())
        .context("writing fingerprints.json")?;
    let now = Utc::now();
    // With --backups, the backups are written to a directory of the demo's own, uploaded, and
    // that directory removed.
    let local = match &o.backups {
        Some(_) => dir.join("backups-upload"),
        None => dir.join("backups"),
    };
    for age in [Duration::from_secs(90 * 60), Duration::from_secs(10 * 60)] {
        let at = now - chrono::Duration::from_std(age).expect("small");
        platform.backup(&local, at)?;
    }
    let source = match (&o.backups, dest) {
        (Some(url), Some(dest)) => upload(&local, dest, url)?,
        _ => local.display().to_string(),
    };
    let workflow = match postgres {
        Some(_) => WORKFLOW_POSTGRES,
        None => WORKFLOW,
    };
    std::fs::write(dir.join("workflow.toml"), workflow).context("writing workflow.toml")?;
    let all = site_ids(&platform)?;
    write_request(dir, &platform, &opts, &all, now, &source)?;
    let shards = match platform.postgres_url() {
        Some(_) => " (shards in PostgreSQL)",
        None => "",
    };
    errln!(
        "init: {} sites built{shards} and backed up twice to {source}; {}/request.toml lists them all",
        all.len(),
        dir.display()
    );
    Ok(())
}

/// The demo's S3 destination: a parsed `s3://` URL whose prefix holds no snapshots yet (the demo
/// never writes among someone else's backups).
fn s3_destination(url: &str) -> Result<S3Url, Failure> {
    let refuse = |message: String| {
        super::refuse(
            Path::new("--backups"),
            url,
            message,
            "give an empty prefix: s3://bucket/new-prefix (add ?path-style=true for most S3-compatible servers)",
        )
    };
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| refuse("only s3:// URLs are supported here".into()))?;
    let parsed = S3Url::parse(rest).map_err(refuse)?;
    let existing = runtime()?
        .block_on(async {
            let store = S3Store::connect(parsed.clone()).await;
            crate::backup::BackupStore::list_snapshots(&store, None).await
        })
        .map_err(|e| anyhow::anyhow!("listing {url}: {e}"))?;
    if !existing.is_empty() {
        return Err(refuse(format!(
            "{url} already holds {} snapshots; the demo writes only where there are none",
            existing.len()
        )));
    }
    Ok(parsed)
}

/// Uploads the backups the demo wrote in `local` (a directory it created) to `dest`, then
/// removes that directory, so the restore can only read them from S3.
fn upload(local: &Path, dest: S3Url, url: &str) -> Result<String, Failure> {
    let objects = runtime()?
        .block_on(async { S3Store::connect(dest).await.upload_tree(local).await })
        .map_err(|e| anyhow::anyhow!("uploading the backups to {url}: {e}"))?;
    std::fs::remove_dir_all(local).with_context(|| format!("removing {}", local.display()))?;
    errln!("init: uploaded {objects} backup objects to {url}");
    Ok(url.to_owned())
}

/// The backup source the demo's request names (written by `init`).
fn backups_source(dir: &Path) -> String {
    crate::load::peek(&dir.join("request.toml"), "backups", "source")
        .unwrap_or_else(|| dir.join("backups").display().to_string())
}

fn write_request(
    dir: &Path,
    platform: &Platform,
    opts: &GenerateOptions,
    sites: &[String],
    pit: DateTime<Utc>,
    source: &str,
) -> Result<(), Failure> {
    let sizes = generate::sizes(opts);
    let text = platform.restore_request("demo", sites, &sizes, source, pit)?;
    std::fs::write(dir.join("request.toml"), text).context("writing request.toml")?;
    Ok(())
}

/// Written by `demo init`: `demo incident` deletes sites, and refuses any directory without it.
const DEMO_MARKER: &str = ".drover-demo";

/// How `demo init` built the platform in `dir`, from its marker (older markers hold only text:
/// the defaults).
fn built_with(dir: &Path) -> GenerateOptions {
    let marker: serde_json::Value = std::fs::read_to_string(dir.join(DEMO_MARKER))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let defaults = BuildOpts {
        sites: 300,
        seed: 1,
        backups: None,
    };
    gen_opts(&BuildOpts {
        sites: marker["sites"]
            .as_u64()
            .map_or(defaults.sites, |n| n as u32),
        seed: marker["seed"].as_u64().unwrap_or(defaults.seed),
        backups: None,
    })
}

fn incident(dir: &Path, o: &IncidentOpts) -> Result<(), Failure> {
    if !dir.join(DEMO_MARKER).is_file() {
        return Err(super::refuse(
            dir,
            "--dir",
            format!(
                "{} was not made by `drover demo init`; the incident deletes sites, so it runs only on a demo platform",
                dir.display()
            ),
            "run `drover demo init --dir <new dir>` first, and point --dir at it",
        ));
    }
    let platform = Platform::open(dir.join("platform"))?;
    let all = site_ids(&platform)?;
    let n = o.deleted.unwrap_or(all.len()).min(all.len());
    let pct: f64 =
        o.soft_deleted.trim_end_matches('%').parse().map_err(|_| {
            anyhow::anyhow!("--soft-deleted '{}' is not a percentage", o.soft_deleted)
        })?;
    let soft_n = ((n as f64) * pct.clamp(0.0, 100.0) / 100.0).round() as usize;
    let deleted = &all[..n];
    let now = Utc::now();
    platform.incident(&deleted[..soft_n], DeleteMode::Soft, now)?;
    platform.incident(&deleted[soft_n..], DeleteMode::Permanent, now)?;
    write_request(
        dir,
        &platform,
        &built_with(dir),
        deleted,
        now,
        &backups_source(dir),
    )?;
    let incident = serde_json::json!({
        "at": now.to_rfc3339(),
        "deleted": deleted,
        "soft": &deleted[..soft_n],
    });
    std::fs::write(dir.join("incident.json"), incident.to_string())
        .context("writing incident.json")?;
    errln!(
        "incident: {} sites deleted ({} permanently, {} marked for deletion); {}/request.toml lists them",
        n,
        n - soft_n,
        soft_n,
        dir.display()
    );
    Ok(())
}

fn verify(dir: &Path, format: Format) -> Result<Done, Failure> {
    let platform = Platform::open(dir.join("platform"))?;
    let before: BTreeMap<String, Value> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("fingerprints.json"))
            .context("reading fingerprints.json (run `demo init` first)")?,
    )
    .map_err(anyhow::Error::from)?;
    let incident: Value = std::fs::read_to_string(dir.join("incident.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let deleted: Vec<String> = incident["deleted"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let now: BTreeMap<String, Value> = serde_json::from_value(
        serde_json::to_value(platform.fingerprint_all()?).map_err(anyhow::Error::from)?,
    )
    .map_err(anyhow::Error::from)?;
    let mut reactivations: BTreeMap<String, usize> = BTreeMap::new();
    for e in platform.events(Some("reactivated"))? {
        *reactivations.entry(e.site).or_default() += 1;
    }
    let restored_differ: Vec<&String> = deleted
        .iter()
        .filter(|s| before.get(*s) != now.get(*s))
        .collect();
    let neighbours_changed: Vec<&String> = before
        .keys()
        .filter(|s| !deleted.contains(s) && before.get(*s) != now.get(*s))
        .collect();
    let wrong_reactivations: Vec<(&String, usize)> = deleted
        .iter()
        .map(|s| (s, reactivations.get(s).copied().unwrap_or(0)))
        .filter(|(_, n)| *n != 1)
        .collect();
    let ok = restored_differ.is_empty()
        && neighbours_changed.is_empty()
        && wrong_reactivations.is_empty();
    let doc = serde_json::json!({
        "format": "drover-demo-verify/1",
        "sites": before.len(),
        "deleted": deleted.len(),
        "restored_equal": deleted.len() - restored_differ.len(),
        "all_equal": restored_differ.is_empty(),
        "neighbours_untouched": neighbours_changed.is_empty(),
        "one_reactivation_each": wrong_reactivations.is_empty(),
        "differ": restored_differ,
        "neighbours_changed": neighbours_changed,
        "reactivation_counts_not_one": wrong_reactivations,
    });
    match format {
        Format::Json => super::print_json(&doc)?,
        Format::Text => errln!(
            "verify: {} of {} deleted sites equal their pre-incident fingerprint; neighbours {}; reactivations {}",
            doc["restored_equal"],
            deleted.len(),
            if neighbours_changed.is_empty() {
                "untouched"
            } else {
                "CHANGED"
            },
            if wrong_reactivations.is_empty() {
                "exactly one per site"
            } else {
                "WRONG"
            }
        ),
    }
    Ok(if ok { Done::Ok } else { Done::Unfinished })
}

/// Sites restored, validated, quarantined; per-site RTO from the incident (registry times are
/// whole seconds).
fn report(dir: &Path) -> Result<(), Failure> {
    let platform = Platform::open(dir.join("platform"))?;
    let mut rto: Vec<i64> = Vec::new();
    let mut states: BTreeMap<&'static str, usize> = BTreeMap::new();
    for s in platform.sites()? {
        *states.entry(s.state.as_str()).or_default() += 1;
        if let (Some(d), Some(r)) = (s.deleted_at, s.reactivated_at) {
            rto.push(r - d);
        }
    }
    rto.sort_unstable();
    let pick = |p: f64| {
        rto.get(((p * rto.len() as f64).ceil() as usize).clamp(1, rto.len().max(1)) - 1)
            .copied()
            .unwrap_or(0)
    };
    let h = |secs: i64| crate::report::human(Duration::from_secs(secs.max(0) as u64));
    let line: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
    errln!("platform: {}", line.join(", "));
    if !rto.is_empty() {
        errln!(
            "RTO from the incident: p50 {}, p95 {}, max {} ({} sites)",
            h(pick(0.5)),
            h(pick(0.95)),
            h(*rto.last().unwrap_or(&0)),
            rto.len()
        );
    }
    Ok(())
}
