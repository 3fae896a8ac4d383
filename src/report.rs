//! Reports of a restore, drawn as a timeline: what happened to every step of a run (or, for a
//! forecast, what would happen), when, in which lane, and with what outcome.
//!
//! - `timeline`: the model — plain data (`Timeline`: lanes, bars, per-site restore times,
//!   failures) that a run's ledger records or a simulated schedule are turned into;
//! - `html`: draws any `Timeline` as one self-contained HTML page (SVG Gantt chart, tables);
//! - `document`: the JSON timeline of a run's steps (format `drover-timeline/1`).
//!
//! Pure: no IO, no printing; the CLI writes the files.

pub mod document;
pub mod html;
pub mod timeline;

pub use document::{TIMELINE_FORMAT, TimelineDoc};
pub use html::html;
pub use timeline::{Bar, FailureRow, LaneMode, Lanes, SiteRow, Timeline};

/// A span of milliseconds for people, in drover's one duration style (the terminal, the
/// reports and the page's chart all use it): `850ms`, `12.3s`, `4m 05s`, `2h 07m`, `1d 16h`.
pub fn human_ms(ms: u64) -> String {
    const MIN: u64 = 60_000;
    const HOUR: u64 = 60 * MIN;
    const DAY: u64 = 24 * HOUR;
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..MIN if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        1_000..MIN => format!("{:.1}s", ms as f64 / 1e3),
        MIN..HOUR => format!("{}m {:02}s", ms / MIN, ms / 1_000 % 60),
        HOUR..DAY => format!("{}h {:02}m", ms / HOUR, ms / MIN % 60),
        _ => format!("{}d {:02}h", ms / DAY, ms / HOUR % 24),
    }
}

/// [`human_ms`] of a duration.
pub fn human(d: std::time::Duration) -> String {
    human_ms(crate::limits::millis(d))
}

#[cfg(test)]
mod tests {
    use super::human_ms;

    #[test]
    fn spans_read_in_the_largest_sensible_unit() {
        let check = |ms, expected: &str| assert_eq!(human_ms(ms), expected, "{ms} ms");
        check(0, "0ms");
        check(999, "999ms");
        check(12_345, "12.3s");
        check(10_000, "10s");
        check(245_000, "4m 05s");
        check(7_620_000, "2h 07m");
        check(146_047_000, "1d 16h");
    }
}
