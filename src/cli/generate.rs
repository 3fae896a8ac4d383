//! `drover generate request`: a synthetic restore request for the shipped workflow.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use super::Failure;
use crate::generate::{self, GenerateOptions};

#[derive(Subcommand, Debug)]
pub enum GenerateCommand {
    /// A realistic restore request for workflows/saas-platform.toml: mixed products per site,
    /// tiers, shards and skewed data sizes. Deterministic for a seed.
    Request(RequestArgs),
}

#[derive(Args, Debug)]
pub struct RequestArgs {
    /// Number of sites.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    sites: u32,
    /// Random seed; the same seed gives the same request.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Average number of sites per database shard.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    sites_per_shard: u32,
    /// Backup source to put in the request: s3://bucket/prefix, or a directory
    /// (relative to the request file).
    #[arg(long, default_value = "backups")]
    backups: String,
    /// The platform directory the sites are restored into (`[target] registry`), relative to
    /// the request file. `plan` and `run` check every site against its registry.
    #[arg(long, default_value = "platform")]
    target: String,
    /// Give every site all six products (instead of a realistic mix).
    #[arg(long)]
    all_products: bool,
    /// Write here instead of standard output. An existing file is not overwritten.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the sites to this CSV site list instead of inline, and name it in the request
    /// (`sites_csv`, relative to the request). Needs --out. For large requests: 100,000 sites
    /// parse several times faster from CSV than from TOML.
    #[arg(long, requires = "out")]
    sites_csv: Option<PathBuf>,
    /// Allow --out to replace an existing file.
    #[arg(long)]
    force: bool,
}

pub fn run(cmd: GenerateCommand) -> Result<(), Failure> {
    let GenerateCommand::Request(args) = cmd;
    let opts = GenerateOptions {
        sites: args.sites as usize,
        seed: args.seed,
        sites_per_shard: args.sites_per_shard as usize,
        backups: Some(args.backups),
        target: Some(args.target),
        all_products: args.all_products,
        ..GenerateOptions::default()
    };
    let Some(path) = args.out else {
        print!("{}", generate::request_toml(&opts));
        return Ok(());
    };
    refuse_existing(&path, "--out", args.force)?;
    match &args.sites_csv {
        None => write(&path, &generate::request_toml(&opts))?,
        Some(csv) => {
            refuse_existing(csv, "--sites-csv", args.force)?;
            let name = relative_to(csv, &path);
            let (toml, sites) = generate::request_with_csv(&opts, &name);
            write(csv, &sites)?;
            write(&path, &toml)?;
        }
    }
    errln!("wrote {} sites to {}", args.sites, path.display());
    Ok(())
}

fn refuse_existing(path: &Path, flag: &str, force: bool) -> Result<(), Failure> {
    if !path.exists() || force {
        return Ok(());
    }
    let kind = crate::diag::ProblemKind::Invalid {
        message: "the file already exists".into(),
        fix: format!("choose another {flag}, or add --force to replace it"),
    };
    Err(Failure::Input(vec![crate::diag::Problem::new(
        crate::diag::Location::file(&path.display().to_string()),
        flag,
        kind,
    )]))
}

fn write(path: &Path, text: &str) -> Result<(), Failure> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// How the request at `request` names `csv`: relative to the request's directory when the CSV
/// lies under it, else absolute.
fn relative_to(csv: &Path, request: &Path) -> String {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (csv, request) = (absolute(csv), absolute(request));
    let base = request.parent().unwrap_or(Path::new("/"));
    csv.strip_prefix(base).unwrap_or(&csv).display().to_string()
}
