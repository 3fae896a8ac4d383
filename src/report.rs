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

/// A span of milliseconds for people: `850 ms`, `12.3 s`, `4m 05s`, `2h 07m`.
pub fn human_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1e3),
        60_000..3_600_000 => format!("{}m {:02}s", ms / 60_000, ms / 1_000 % 60),
        _ => format!("{}h {:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::human_ms;

    #[test]
    fn spans_read_in_the_largest_sensible_unit() {
        let check = |ms, expected: &str| assert_eq!(human_ms(ms), expected, "{ms} ms");
        check(0, "0 ms");
        check(999, "999 ms");
        check(12_345, "12.3 s");
        check(245_000, "4m 05s");
        check(7_620_000, "2h 07m");
    }
}
