//! `drover generate request`: a synthetic restore request for the shipped workflow.

use std::path::PathBuf;

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
    let text = generate::request_toml(&opts);
    match args.out {
        None => print!("{text}"),
        Some(path) => {
            if path.exists() && !args.force {
                let kind = crate::diag::ProblemKind::Invalid {
                    message: "the file already exists".into(),
                    fix: "choose another --out, or add --force to replace it".into(),
                };
                return Err(Failure::Input(vec![crate::diag::Problem::new(
                    crate::diag::Location::file(&path.display().to_string()),
                    "--out",
                    kind,
                )]));
            }
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            errln!("wrote {} sites to {}", args.sites, path.display());
        }
    }
    Ok(())
}
