//! The backup manifest, format `drover-backup/1`: what a snapshot backs up and every object's
//! size and SHA-256. Written last, so a snapshot without one is incomplete. Documented in
//! docs/backups.md.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "drover-backup/1";
/// The largest manifest drover reads (a million objects fit in well under this).
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    /// The unit this snapshot backs up: `site-0042/wiki`, or a shared unit such as `wiki-3`.
    pub unit: String,
    pub product: String,
    /// For a site's own unit: the site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// For a shared unit: the sites whose data it holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<String>,
    pub snapshot_time: DateTime<Utc>,
    pub objects: Vec<ObjectEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectEntry {
    /// Relative path inside the snapshot directory.
    pub name: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    /// `"tar"`: drover unpacks it after verifying it (entries must stay inside the directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpack: Option<String>,
}

impl Manifest {
    /// Parses and checks a manifest.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("not a valid manifest: {e}"))?;
        if m.format != FORMAT {
            return Err(format!("manifest format '{}' is not '{FORMAT}'", m.format));
        }
        let mut total: u64 = 0;
        for o in &m.objects {
            super::layout::check_object_name(&o.name)?;
            total = total
                .checked_add(o.size)
                .filter(|_| o.size <= crate::limits::MAX_OBJECT_BYTES)
                .ok_or_else(|| {
                    format!(
                        "object '{}' has size {}, over the limit of {} bytes per object",
                        o.name,
                        o.size,
                        crate::limits::MAX_OBJECT_BYTES
                    )
                })?;
            if o.sha256.len() != 64 || !o.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("object '{}' has no valid sha256", o.name));
            }
            if let Some(u) = &o.unpack
                && u != "tar"
            {
                return Err(format!(
                    "object '{}': unknown unpack format '{u}' (only \"tar\")",
                    o.name
                ));
            }
        }
        Ok(m)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("manifest serializes")
    }
}
