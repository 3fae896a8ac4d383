//! `/metrics`: the run in the Prometheus text format (0.0.4), computed from a [`Snapshot`] of
//! the ledger, never from counters kept in the process: every process serving the ledger says
//! the same, and a restart loses nothing. docs/serve.md lists the metrics.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::snapshot::Snapshot;
use crate::ledger::StepState;
use crate::status::SiteState;

/// Upper bounds of the duration histogram's buckets, seconds: from sub-second steps to fetches
/// of hours.
const BUCKETS: [f64; 14] = [
    0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];

pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let plan = s.plan();
    let info = &s.fixed.info;

    family(
        &mut out,
        "drover_run_info",
        "gauge",
        "The run this ledger holds (always 1).",
    );
    sample(
        &mut out,
        "drover_run_info",
        &[
            ("run_id", &info.run_id),
            ("plan_hash", &info.plan_hash),
            ("workflow", &info.workflow_name),
        ],
        1.0,
    );
    family(
        &mut out,
        "drover_run_start_time_seconds",
        "gauge",
        "When the run was created, Unix time.",
    );
    sample(
        &mut out,
        "drover_run_start_time_seconds",
        &[],
        info.created_at as f64 / 1000.0,
    );
    let last_write = s
        .steps
        .iter()
        .flat_map(|r| [r.started_at, r.ended_at])
        .flatten()
        .max()
        .unwrap_or(info.created_at);
    family(
        &mut out,
        "drover_ledger_last_write_time_seconds",
        "gauge",
        "The latest step start or end the ledger records, Unix time.",
    );
    sample(
        &mut out,
        "drover_ledger_last_write_time_seconds",
        &[],
        last_write as f64 / 1000.0,
    );

    family(&mut out, "drover_sites", "gauge", "Sites per state.");
    let sites = crate::status::count_sites(&s.sites);
    for state in SiteState::ALL {
        let n = sites.get(&state).copied().unwrap_or(0);
        sample(
            &mut out,
            "drover_sites",
            &[("state", state.as_str())],
            n as f64,
        );
    }

    family(
        &mut out,
        "drover_steps",
        "gauge",
        "Steps per state and pool.",
    );
    let mut by: BTreeMap<(&str, StepState), usize> = BTreeMap::new();
    for (step, r) in plan.steps.iter().zip(&s.steps) {
        if step.uses.is_empty() {
            *by.entry(("none", r.state)).or_default() += 1;
        }
        for &(pool, _) in &step.uses {
            *by.entry((plan.pools[pool as usize].name.as_str(), r.state))
                .or_default() += 1;
        }
    }
    let mut pools: Vec<&str> = plan.pools.iter().map(|p| p.name.as_str()).collect();
    if plan.steps.iter().any(|s| s.uses.is_empty()) {
        pools.push("none");
    }
    for &pool in &pools {
        for state in StepState::ALL {
            let n = by.get(&(pool, state)).copied().unwrap_or(0);
            sample(
                &mut out,
                "drover_steps",
                &[("state", state.as_str()), ("pool", pool)],
                n as f64,
            );
        }
    }

    let uses = super::api::pools(s);
    family(
        &mut out,
        "drover_steps_waiting",
        "gauge",
        "Steps whose dependencies are done, waiting for their pool (the backlog).",
    );
    for p in &uses {
        sample(
            &mut out,
            "drover_steps_waiting",
            &[("pool", p.name)],
            p.waiting as f64,
        );
    }
    family(
        &mut out,
        "drover_pool_capacity",
        "gauge",
        "Units of each pool.",
    );
    for p in &uses {
        sample(
            &mut out,
            "drover_pool_capacity",
            &[("pool", p.name)],
            p.capacity as f64,
        );
    }

    durations(&mut out, s);
    per_kind(
        &mut out,
        s,
        "drover_step_retries_total",
        "Attempts beyond the first.",
        |r| f64::from(r.attempts.saturating_sub(1)),
    );
    per_kind(
        &mut out,
        s,
        "drover_step_failures_total",
        "Steps that failed for good (a retry resets them).",
        |r| {
            if r.state == StepState::Failed {
                1.0
            } else {
                0.0
            }
        },
    );

    let (p50, p90) = s.range().unwrap_or((0.0, 0.0));
    family(
        &mut out,
        "drover_eta_seconds",
        "gauge",
        "Time left if the run goes on from its recorded state: the median of simulated trials.",
    );
    sample(&mut out, "drover_eta_seconds", &[], p50);
    family(
        &mut out,
        "drover_eta_p90_seconds",
        "gauge",
        "Time left: the 90th percentile of simulated trials.",
    );
    sample(&mut out, "drover_eta_p90_seconds", &[], p90);
    out
}

/// The durations of finished steps, a histogram per kind.
fn durations(out: &mut String, s: &Snapshot) {
    let plan = s.plan();
    let name = "drover_step_duration_seconds";
    family(out, name, "histogram", "Durations of finished steps.");
    let mut by_kind: BTreeMap<&str, Vec<f64>> = plan
        .templates
        .iter()
        .map(|t| (t.kind.as_str(), Vec::new()))
        .collect();
    for (step, r) in plan.steps.iter().zip(&s.steps) {
        if let (Some(a), Some(b), true) = (r.started_at, r.ended_at, r.state.is_done()) {
            by_kind
                .entry(plan.kind(step))
                .or_default()
                .push((b - a).max(0) as f64 / 1000.0);
        }
    }
    for (kind, values) in &by_kind {
        for bound in BUCKETS {
            let n = values.iter().filter(|&&v| v <= bound).count();
            let le = bound.to_string();
            sample(
                out,
                &format!("{name}_bucket"),
                &[("kind", kind), ("le", &le)],
                n as f64,
            );
        }
        let n = values.len() as f64;
        sample(
            out,
            &format!("{name}_bucket"),
            &[("kind", kind), ("le", "+Inf")],
            n,
        );
        sample(
            out,
            &format!("{name}_sum"),
            &[("kind", kind)],
            values.iter().sum(),
        );
        sample(out, &format!("{name}_count"), &[("kind", kind)], n);
    }
}

/// A counter per step kind: the sum of `value` over the kind's steps.
fn per_kind(
    out: &mut String,
    s: &Snapshot,
    name: &str,
    help: &str,
    value: impl Fn(&crate::ledger::StepRecord) -> f64,
) {
    let plan = s.plan();
    family(out, name, "counter", help);
    let mut by_kind: BTreeMap<&str, f64> = plan
        .templates
        .iter()
        .map(|t| (t.kind.as_str(), 0.0))
        .collect();
    for (step, r) in plan.steps.iter().zip(&s.steps) {
        *by_kind.entry(plan.kind(step)).or_default() += value(r);
    }
    for (kind, v) in by_kind {
        sample(out, name, &[("kind", kind)], v);
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A label value in the text format: backslash, double quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
