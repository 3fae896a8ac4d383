//! Step kinds: what each step of a plan does when it runs.

/// Every step kind this build knows by name. The planner refuses any other kind.
pub const KNOWN_KINDS: &[&str] = &[
    "fetch",
    "rebuild",
    "validate",
    "reactivate",
    "notify",
    "noop",
    "sleep",
    "flaky",
    "fail",
];
