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

/// Why a manifest is refused: the backup is bad, never worth another read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("not a valid manifest: {0}")]
    Json(#[from] serde_json::Error),
    #[error("manifest format '{0}' is not '{FORMAT}'")]
    Format(String),
    #[error("{0}")]
    ObjectName(String),
    #[error(
        "object '{object}' has size {size}, over the limit of {} bytes per object",
        crate::limits::MAX_OBJECT_BYTES
    )]
    TooLarge { object: String, size: u64 },
    #[error("object '{0}' has no valid sha256")]
    Digest(String),
    #[error("object '{object}': unknown unpack format '{format}' (only \"tar\")")]
    Unpack { object: String, format: String },
}

impl Manifest {
    /// Parses and checks a manifest.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let m: Manifest = serde_json::from_slice(bytes)?;
        if m.format != FORMAT {
            return Err(ManifestError::Format(m.format));
        }
        let mut total: u64 = 0;
        for o in &m.objects {
            super::layout::check_object_name(&o.name).map_err(ManifestError::ObjectName)?;
            total = total
                .checked_add(o.size)
                .filter(|_| o.size <= crate::limits::MAX_OBJECT_BYTES)
                .ok_or_else(|| ManifestError::TooLarge {
                    object: o.name.clone(),
                    size: o.size,
                })?;
            if o.sha256.len() != 64 || !o.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ManifestError::Digest(o.name.clone()));
            }
            if let Some(u) = &o.unpack
                && u != "tar"
            {
                return Err(ManifestError::Unpack {
                    object: o.name.clone(),
                    format: u.clone(),
                });
            }
        }
        Ok(m)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("manifest serializes")
    }
}
