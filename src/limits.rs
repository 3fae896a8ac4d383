//! The range of every number an operator can write, in one place: a value outside its range is
//! refused as input (exit 2, naming the file, the entry and the range), so that no value that
//! is well-formed but huge can overflow later arithmetic. docs/security.md lists them.
//!
//! Sums over many steps (pool demand, critical paths, simulated time) saturate as well, so even
//! millions of steps at the largest allowed values cannot wrap or panic.

use std::time::Duration;

const DAY: u64 = 24 * 3600;

/// A step's `estimate`, `timeout` and `scale.per`, and a step's scaled estimate.
pub const MAX_STEP_DURATION: Duration = Duration::from_secs(366 * DAY);
/// `retry.initial_backoff` and `retry.max_backoff`.
pub const MAX_BACKOFF: Duration = Duration::from_secs(DAY);
/// `[backups] window`, the fetch step's `window` and `backups fetch --window`.
pub const MAX_WINDOW: Duration = Duration::from_secs(100 * 366 * DAY);
/// `--target-rto` of `estimate` and `drill`.
pub const MAX_RTO: Duration = Duration::from_secs(10 * 366 * DAY);
/// `run --grace`.
pub const MAX_GRACE: Duration = Duration::from_secs(DAY);
/// A pool's capacity (workflow, `--pools`) and a step's `uses`.
pub const MAX_CAPACITY: u32 = 1_000_000;
/// A numeric site attribute used to scale an estimate (`size_gb`, …).
pub const MAX_ATTRIBUTE: f64 = 1e12;
/// Reads in flight for one fetch (`concurrency`).
pub const MAX_FETCH_CONCURRENCY: usize = 1024;
/// The range size of a fetch (`part_size`), in bytes.
pub const FETCH_PART_SIZE: std::ops::RangeInclusive<u64> = 1024..=(1 << 30);
/// The size of one object in a backup manifest, in bytes (1 PiB).
pub const MAX_OBJECT_BYTES: u64 = 1 << 50;

/// Why a duration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0}")]
    Malformed(String),
    #[error("more than the limit of {}", human(*.0))]
    TooLong(Duration),
}

/// Parses a humantime duration of at most `max`.
pub fn duration(text: &str, max: Duration) -> Result<Duration, DurationError> {
    let d = humantime::parse_duration(text).map_err(|e| DurationError::Malformed(e.to_string()))?;
    if d > max {
        return Err(DurationError::TooLong(max));
    }
    Ok(d)
}

/// `366d`, `1day`: a limit as humantime writes it.
pub fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A clap value parser for a duration of at most `max`.
pub fn duration_arg(max: Duration) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    move |text| duration(text, max).map_err(|e| e.to_string())
}

/// `base + per × value`, or `None` when it would exceed [`MAX_STEP_DURATION`].
pub fn scaled(base: Duration, per: Duration, value: f64) -> Option<Duration> {
    let extra = Duration::try_from_secs_f64(per.as_secs_f64() * value).ok()?;
    base.checked_add(extra).filter(|d| *d <= MAX_STEP_DURATION)
}

/// Whole milliseconds of a duration, saturating instead of wrapping.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_over_their_limit_are_refused_with_the_limit() {
        assert_eq!(duration("15m", MAX_BACKOFF), Ok(Duration::from_secs(900)));
        let err = duration("300000years", MAX_WINDOW).unwrap_err();
        assert_eq!(err, DurationError::TooLong(MAX_WINDOW));
        assert!(err.to_string().contains("limit of 100years"), "{err}");
        assert!(duration("2days", MAX_BACKOFF).is_err());
        assert!(duration("500000000000years", MAX_STEP_DURATION).is_err());
    }

    #[test]
    fn scaled_estimates_never_overflow() {
        let hour = Duration::from_secs(3600);
        assert_eq!(scaled(hour, hour, 2.0), Some(3 * hour));
        assert_eq!(scaled(hour, hour, 1e300), None);
        assert_eq!(scaled(hour, MAX_STEP_DURATION, MAX_ATTRIBUTE), None);
        assert_eq!(scaled(Duration::MAX, hour, 0.0), None);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
