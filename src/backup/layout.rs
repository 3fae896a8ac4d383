//! The backup layout: `<prefix>/<unit>/<snapshot time>/manifest.json` beside the snapshot's data
//! objects. A unit is a site's product (`site-0042/wiki`) or a shared unit (`wiki-3`); the
//! snapshot time is UTC in the compact form `20220405T073000Z`. Documented in docs/backups.md.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};

use super::SnapshotEntry;

/// The manifest's object name inside a snapshot directory.
pub const MANIFEST: &str = "manifest.json";

const COMPACT: &str = "%Y%m%dT%H%M%SZ";

/// The directory name for a snapshot time.
pub fn snapshot_name(time: DateTime<Utc>) -> String {
    time.format(COMPACT).to_string()
}

/// Parses a snapshot directory name (compact form, or RFC 3339).
pub fn parse_snapshot_time(name: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = NaiveDateTime::parse_from_str(name, COMPACT) {
        return Some(t.and_utc());
    }
    DateTime::parse_from_rfc3339(name)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Groups object keys (relative to the store's prefix) into snapshots: the first path component
/// that is a snapshot time splits a key into unit, snapshot and object name.
pub fn group(keys: impl IntoIterator<Item = (String, u64)>) -> Vec<SnapshotEntry> {
    let mut snapshots: BTreeMap<(String, String), SnapshotEntry> = BTreeMap::new();
    for (key, size) in keys {
        let parts: Vec<&str> = key.split('/').collect();
        let Some(pos) = parts.iter().position(|p| parse_snapshot_time(p).is_some()) else {
            continue;
        };
        if pos == 0 || pos + 1 >= parts.len() {
            continue;
        }
        let unit = parts[..pos].join("/");
        let snapshot = parts[pos].to_owned();
        let object = parts[pos + 1..].join("/");
        let entry = snapshots
            .entry((unit.clone(), snapshot.clone()))
            .or_insert_with(|| SnapshotEntry {
                time: parse_snapshot_time(&snapshot).expect("checked above"),
                unit,
                snapshot,
                complete: false,
                objects: 0,
                bytes: 0,
                manifest_bytes: 0,
            });
        if object == MANIFEST {
            entry.complete = true;
            entry.manifest_bytes = size;
        } else {
            entry.objects += 1;
            entry.bytes += size;
        }
    }
    let mut out: Vec<SnapshotEntry> = snapshots.into_values().collect();
    out.sort_by(|a, b| (&a.unit, a.time).cmp(&(&b.unit, b.time)));
    out
}

/// Checks that an object name from a manifest stays inside its directory: relative, no `..`,
/// no empty or `.` components, no backslashes or NULs.
pub fn check_object_name(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || name
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        Err(format!(
            "object name '{name}' is not a plain relative path (absolute, '..', or empty parts)"
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_group_into_snapshots_and_manifests_mark_completeness() {
        let keys = [
            ("site-0001/wiki/20220405T073000Z/manifest.json", 10),
            ("site-0001/wiki/20220405T073000Z/attachments/a.png", 100),
            ("site-0001/wiki/20220405T080000Z/attachments/a.png", 100),
            ("wiki-3/20220405T060000Z/manifest.json", 5),
            ("wiki-3/20220405T060000Z/shard.sqlite", 1000),
            ("stray-file", 1),
        ];
        let got = group(keys.iter().map(|(k, s)| (k.to_string(), *s)));
        let brief: Vec<(&str, &str, bool, usize, u64)> = got
            .iter()
            .map(|e| {
                (
                    e.unit.as_str(),
                    e.snapshot.as_str(),
                    e.complete,
                    e.objects,
                    e.bytes,
                )
            })
            .collect();
        assert_eq!(
            brief,
            [
                ("site-0001/wiki", "20220405T073000Z", true, 1, 100),
                ("site-0001/wiki", "20220405T080000Z", false, 1, 100),
                ("wiki-3", "20220405T060000Z", true, 1, 1000)
            ]
        );
    }

    #[test]
    fn object_names_cannot_escape() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a\\b",
        ] {
            assert!(check_object_name(bad).is_err(), "{bad:?}");
        }
        for ok in ["shard.sqlite", "attachments/a.png", "a..b"] {
            assert!(check_object_name(ok).is_ok(), "{ok:?}");
        }
    }
}
