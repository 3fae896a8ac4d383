//! The restore request file format, version 1: serde types that mirror the TOML exactly.
//! Documented in `docs/request-format.md`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestFile {
    pub request: Header,
    #[serde(default)]
    pub backups: Option<Backups>,
    #[serde(default)]
    pub target: Option<Target>,
    #[serde(default)]
    pub sites: Vec<SiteSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    #[serde(default)]
    pub name: String,
    pub point_in_time: Spanned<String>,
    #[serde(default)]
    pub products: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub tiers: Option<Spanned<Vec<String>>>,
    pub sites_csv: Option<Spanned<String>>,
    #[serde(default = "one")]
    pub format: Spanned<u32>,
}

fn one() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backups {
    pub source: String,
    /// How far before the point in time a backup may be (humantime); default 24h.
    pub window: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub registry: Registry,
    /// For a PostgreSQL registry: the view preflight reads (default `drover_sites`).
    pub registry_view: Option<String>,
}

/// `[target] registry`: a directory or URL, or `{ exec = [command, args…] }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Registry {
    Location(String),
    Exec { exec: Vec<String> },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    pub id: Spanned<String>,
    pub tier: Option<Spanned<String>>,
    pub products: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub attrs: BTreeMap<String, toml::Value>,
}
