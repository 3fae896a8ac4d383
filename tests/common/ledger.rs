//! Reading a finished run's ledger in tests (shared by the `it` and `forecast_accuracy` binaries).

use std::path::Path;

/// Start of the first step to end of the last, in seconds.
pub fn measured_makespan_s(state: &Path) -> f64 {
    let conn = rusqlite::Connection::open(state).unwrap();
    let (start, end): (i64, i64) = conn
        .query_row(
            "SELECT MIN(started_at), MAX(ended_at) FROM steps",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    (end - start) as f64 / 1000.0
}
