//! Point in time: for each unit, the newest complete snapshot at or before the request's target
//! time and within the allowed window, and the RPO it achieves (target − snapshot time).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::SnapshotEntry;

/// Why no snapshot fits.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum NoSnapshot {
    #[error("no backup of unit '{unit}' exists")]
    None { unit: String },
    #[error(
        "no complete backup of unit '{unit}' between {earliest} and {target}; the newest complete one is {newest}"
    )]
    OutsideWindow {
        unit: String,
        earliest: String,
        target: String,
        newest: String,
    },
    #[error(
        "no complete backup of unit '{unit}' at or before {target}; the oldest complete one is {oldest}"
    )]
    AllAfter {
        unit: String,
        target: String,
        oldest: String,
    },
    #[error(
        "unit '{unit}' has backups, but none is complete (no manifest); the newest is {newest}"
    )]
    Incomplete { unit: String, newest: String },
}

/// A chosen snapshot and the data loss it implies.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub entry: SnapshotEntry,
    /// target − snapshot time.
    pub rpo: Duration,
}

/// The newest complete snapshot of `unit` in `[target − window, target]`.
pub fn choose(
    unit: &str,
    snapshots: &[SnapshotEntry],
    target: DateTime<Utc>,
    window: Duration,
) -> Result<Choice, NoSnapshot> {
    let of_unit: Vec<&SnapshotEntry> = snapshots.iter().filter(|s| s.unit == unit).collect();
    let complete: Vec<&&SnapshotEntry> = of_unit.iter().filter(|s| s.complete).collect();
    // A window reaching before the earliest representable time starts there.
    let earliest = chrono::Duration::from_std(window)
        .ok()
        .and_then(|w| target.checked_sub_signed(w))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let fits = complete
        .iter()
        .filter(|s| s.time <= target && s.time >= earliest)
        .max_by_key(|s| s.time);
    if let Some(best) = fits {
        let rpo = (target - best.time).to_std().unwrap_or_default();
        return Ok(Choice {
            entry: (**best).clone(),
            rpo,
        });
    }
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let unit = unit.to_owned();
    if let Some(newest_before) = complete
        .iter()
        .filter(|s| s.time <= target)
        .max_by_key(|s| s.time)
    {
        return Err(NoSnapshot::OutsideWindow {
            unit,
            earliest: fmt(earliest),
            target: fmt(target),
            newest: fmt(newest_before.time),
        });
    }
    if let Some(oldest) = complete.iter().min_by_key(|s| s.time) {
        return Err(NoSnapshot::AllAfter {
            unit,
            target: fmt(target),
            oldest: fmt(oldest.time),
        });
    }
    match of_unit.iter().max_by_key(|s| s.time) {
        Some(newest) => Err(NoSnapshot::Incomplete {
            unit,
            newest: fmt(newest.time),
        }),
        None => Err(NoSnapshot::None { unit }),
    }
}

/// Every unit's snapshots, by unit.
pub fn by_unit(snapshots: Vec<SnapshotEntry>) -> BTreeMap<String, Vec<SnapshotEntry>> {
    let mut map: BTreeMap<String, Vec<SnapshotEntry>> = BTreeMap::new();
    for s in snapshots {
        map.entry(s.unit.clone()).or_default().push(s);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(unit: &str, time: &str, complete: bool) -> SnapshotEntry {
        let time = DateTime::parse_from_rfc3339(time)
            .unwrap()
            .with_timezone(&Utc);
        SnapshotEntry {
            unit: unit.into(),
            snapshot: super::super::layout::snapshot_name(time),
            time,
            complete,
            objects: 1,
            bytes: 1,
            manifest_bytes: 1,
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn newest_complete_at_or_before_the_target() {
        let snaps = [
            snap("u", "2022-04-05T06:00:00Z", true),
            snap("u", "2022-04-05T07:30:00Z", true),
            snap("u", "2022-04-05T07:35:00Z", false),
            snap("u", "2022-04-05T08:00:00Z", true),
        ];
        let c = choose("u", &snaps, t("2022-04-05T07:38:00Z"), DAY).unwrap();
        assert_eq!(c.entry.snapshot, "20220405T073000Z");
        assert_eq!(c.rpo, Duration::from_secs(8 * 60));
        let exact = choose("u", &snaps, t("2022-04-05T08:00:00Z"), DAY).unwrap();
        assert_eq!(exact.rpo, Duration::ZERO);
    }

    #[test]
    fn each_way_of_finding_nothing_is_explained() {
        let target = t("2022-04-05T07:38:00Z");
        let old = [snap("u", "2022-04-01T00:00:00Z", true)];
        let e = choose("u", &old, target, DAY).unwrap_err();
        assert!(
            e.to_string()
                .contains("the newest complete one is 2022-04-01T00:00:00Z"),
            "{e}"
        );
        let late = [snap("u", "2022-04-06T00:00:00Z", true)];
        assert!(matches!(
            choose("u", &late, target, DAY),
            Err(NoSnapshot::AllAfter { .. })
        ));
        let partial = [snap("u", "2022-04-05T07:00:00Z", false)];
        assert!(matches!(
            choose("u", &partial, target, DAY),
            Err(NoSnapshot::Incomplete { .. })
        ));
        assert!(matches!(
            choose("v", &partial, target, DAY),
            Err(NoSnapshot::None { .. })
        ));
    }
}
