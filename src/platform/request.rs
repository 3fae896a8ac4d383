//! The restore request for a platform's sites: what an operator would hand drover after an
//! incident — the deleted sites, with their products, shards, sizes and state (which decides the
//! restore path), pointing at the platform's backups and registry.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::{Platform, PlatformError};

impl Platform {
    /// A request (TOML) restoring `sites` to `point_in_time` from `backups` (a directory or a
    /// URL). `size_gb` gives each
    /// site's data size per product (for estimates); missing sizes count as 1 GB.
    pub fn restore_request(
        &self,
        name: &str,
        sites: &[String],
        size_gb: &BTreeMap<(String, String), f64>,
        backups: &str,
        point_in_time: DateTime<Utc>,
    ) -> Result<String, PlatformError> {
        let mut out = String::new();
        let pit = point_in_time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let _ = writeln!(
            out,
            "# Restore request for {} sites of the platform in {}.\n",
            sites.len(),
            self.dir().display()
        );
        let _ = writeln!(
            out,
            "[request]\nname = {}\npoint_in_time = \"{pit}\"\ntiers = [\"enterprise\", \"premium\", \"standard\", \"free\"]\n",
            toml_str(name)
        );
        let _ = writeln!(out, "[backups]\nsource = {}\n", toml_str(backups));
        let _ = writeln!(
            out,
            "[target]\nregistry = {}\n",
            toml_str(&self.dir().display().to_string())
        );
        for id in sites {
            let site = self.site(id)?;
            let products: Vec<String> = site.products.iter().map(|p| toml_str(p)).collect();
            let _ = write!(
                out,
                "[[sites]]\nid = \"{}\"\ntier = \"{}\"\nproducts = [{}]\nattrs = {{ state = \"{}\"",
                site.id,
                site.tier,
                products.join(", "),
                site.state.as_str()
            );
            for p in &site.products {
                let gb = size_gb
                    .get(&(site.id.clone(), p.clone()))
                    .copied()
                    .unwrap_or(1.0);
                let _ = write!(
                    out,
                    ", \"{p}.shard\" = \"{}\", \"{p}.size_gb\" = {gb:.2}",
                    site.shard(p)?
                );
            }
            out.push_str(" }\n\n");
        }
        Ok(out)
    }
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}
