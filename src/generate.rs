//! Synthetic restore requests for the shipped `saas-platform` workflow: mixed products per site,
//! tiers, database shards and skewed data sizes, deterministic for a seed. For benchmarks,
//! drills and what-if planning.

use std::collections::BTreeMap;
use std::fmt::Write;

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How to generate a request.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub sites: usize,
    pub seed: u64,
    /// Sites per database shard, on average.
    pub sites_per_shard: usize,
    pub point_in_time: String,
    pub backups: Option<String>,
    pub target: Option<String>,
    /// Give every site every product (the planning benchmark's 10,000 × 6 shape).
    pub all_products: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            sites: 300,
            seed: 1,
            sites_per_shard: 40,
            point_in_time: "2022-04-05T07:38:00Z".into(),
            backups: Some("backups".into()),
            target: Some("platform".into()),
            all_products: false,
        }
    }
}

/// Product name, share of sites that have it, relative data size.
const PRODUCTS: &[(&str, f64, f64)] = &[
    ("identity", 1.0, 0.05),
    ("issues", 0.85, 1.0),
    ("wiki", 0.7, 0.8),
    ("service-desk", 0.35, 0.4),
    ("alerts", 0.3, 0.1),
    ("status-page", 0.2, 0.05),
];

/// Tier name and share of sites.
const TIERS: &[(&str, f64)] = &[
    ("enterprise", 0.05),
    ("premium", 0.2),
    ("standard", 0.5),
    ("free", 0.25),
];

/// One generated site, before rendering.
#[derive(Clone, Debug)]
pub struct GeneratedSite {
    pub id: String,
    pub tier: &'static str,
    /// (product, shard, size in GB)
    pub products: Vec<(&'static str, String, f64)>,
}

/// Each generated site's data size per product, in GB: (site, product) → size.
pub fn sizes(opts: &GenerateOptions) -> BTreeMap<(String, String), f64> {
    sites(opts)
        .into_iter()
        .flat_map(|s| {
            s.products
                .into_iter()
                .map(move |(p, _, gb)| ((s.id.clone(), p.to_owned()), gb))
        })
        .collect()
}

/// The sites of a synthetic request.
pub fn sites(opts: &GenerateOptions) -> Vec<GeneratedSite> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let width = opts.sites.to_string().len().max(4);
    let shards = opts.sites.div_ceil(opts.sites_per_shard.max(1)).max(1);
    (1..=opts.sites)
        .map(|n| {
            let tier = pick_tier(rng.random());
            // Log-normal site size: most sites small, a long tail of big ones.
            let site_gb = (normal(&mut rng) * 1.1).exp() * 2.0;
            let mut products = Vec::new();
            for &(name, share, weight) in PRODUCTS {
                let wanted = rng.random::<f64>() < share || opts.all_products;
                let needs_issues =
                    name == "service-desk" && !products.iter().any(|(p, _, _)| *p == "issues");
                if !wanted || needs_issues {
                    continue;
                }
                let shard = format!("{name}-{}", rng.random_range(1..=shards));
                let gb = (site_gb * weight * rng.random_range(0.5..1.5) * 100.0).round() / 100.0;
                products.push((name, shard, gb.max(0.01)));
            }
            GeneratedSite {
                id: format!("site-{n:0width$}"),
                tier,
                products,
            }
        })
        .collect()
}

/// A complete request file (TOML) for the shipped workflow, every site inline.
pub fn request_toml(opts: &GenerateOptions) -> String {
    let sites = sites(opts);
    let mut out = String::with_capacity(sites.len() * 260);
    header(&mut out, opts, None);
    for site in &sites {
        render_site(&mut out, site);
    }
    out
}

/// The same request as [`request_toml`], its sites in a CSV site list: the request file (which
/// names `csv_name`, relative to itself, as `sites_csv`) and the CSV text. Large requests parse
/// several times faster this way.
pub fn request_with_csv(opts: &GenerateOptions, csv_name: &str) -> (String, String) {
    let sites = sites(opts);
    let mut toml = String::new();
    header(&mut toml, opts, Some(csv_name));
    let mut csv = String::with_capacity(sites.len() * 200);
    csv.push_str("id,tier,products,size_gb");
    for (p, _, _) in PRODUCTS {
        let _ = write!(csv, ",{p}.shard,{p}.size_gb");
    }
    csv.push('\n');
    for site in &sites {
        let names: Vec<&str> = site.products.iter().map(|(p, _, _)| *p).collect();
        let total: f64 = site.products.iter().map(|(_, _, gb)| gb).sum();
        let _ = write!(
            csv,
            "{},{},{},{total:.2}",
            site.id,
            site.tier,
            names.join(" ")
        );
        for (p, _, _) in PRODUCTS {
            match site.products.iter().find(|(name, _, _)| name == p) {
                Some((_, shard, gb)) => {
                    let _ = write!(csv, ",{shard},{gb:.2}");
                }
                None => csv.push_str(",,"),
            }
        }
        csv.push('\n');
    }
    (toml, csv)
}

fn header(out: &mut String, opts: &GenerateOptions, csv_name: Option<&str>) {
    let _ = writeln!(
        out,
        "# Synthetic restore request: {} sites, seed {}.",
        opts.sites, opts.seed
    );
    let _ = writeln!(
        out,
        "# Generated by `drover generate request`; deterministic for the seed.\n"
    );
    let _ = writeln!(
        out,
        "[request]\nname = \"synthetic-{}-seed-{}\"",
        opts.sites, opts.seed
    );
    let _ = writeln!(out, "point_in_time = \"{}\"", opts.point_in_time);
    let tiers: Vec<String> = TIERS.iter().map(|(t, _)| format!("\"{t}\"")).collect();
    let _ = writeln!(out, "tiers = [{}]", tiers.join(", "));
    if let Some(name) = csv_name {
        let _ = writeln!(out, "sites_csv = {}", toml_string(name));
    }
    out.push('\n');
    if let Some(b) = &opts.backups {
        let _ = writeln!(out, "[backups]\nsource = {}\n", toml_string(b));
    }
    if let Some(t) = &opts.target {
        let _ = writeln!(out, "[target]\nregistry = {}\n", toml_string(t));
    }
}

fn render_site(out: &mut String, site: &GeneratedSite) {
    let products: Vec<String> = site
        .products
        .iter()
        .map(|(p, _, _)| format!("\"{p}\""))
        .collect();
    let total: f64 = site.products.iter().map(|(_, _, gb)| gb).sum();
    let _ = write!(
        out,
        "[[sites]]\nid = \"{}\"\ntier = \"{}\"\nproducts = [{}]\nattrs = {{ size_gb = {:.2}",
        site.id,
        site.tier,
        products.join(", "),
        total
    );
    for (p, shard, gb) in &site.products {
        let _ = write!(
            out,
            ", \"{p}.shard\" = \"{shard}\", \"{p}.size_gb\" = {gb:.2}"
        );
    }
    out.push_str(" }\n\n");
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn pick_tier(x: f64) -> &'static str {
    let mut acc = 0.0;
    for &(tier, share) in TIERS {
        acc += share;
        if x < acc {
            return tier;
        }
    }
    TIERS[TIERS.len() - 1].0
}

/// A standard normal sample (Box–Muller).
pub(crate) fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_request() {
        let opts = GenerateOptions {
            sites: 50,
            ..Default::default()
        };
        assert_eq!(request_toml(&opts), request_toml(&opts));
        let other = GenerateOptions {
            seed: 2,
            ..opts.clone()
        };
        assert_ne!(request_toml(&opts), request_toml(&other));
    }

    #[test]
    fn every_site_has_identity_and_service_desk_has_issues() {
        let opts = GenerateOptions {
            sites: 500,
            ..Default::default()
        };
        for site in sites(&opts) {
            let names: Vec<&str> = site.products.iter().map(|p| p.0).collect();
            assert_eq!(names[0], "identity");
            if names.contains(&"service-desk") {
                assert!(names.contains(&"issues"), "{names:?}");
            }
        }
    }
}
