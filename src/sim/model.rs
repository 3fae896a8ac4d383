//! How long steps take. By default, the workflow's estimates (for `sleep` steps, the sleep they
//! will actually do). With history — previous ledgers — each (step kind, product) group is fitted
//! as `actual = a + b × expected`, with the spread of actual ÷ fitted giving p50, p90 and the
//! noise for Monte Carlo trials.

use std::collections::HashMap;

use rand::Rng;

use crate::ledger::{StepRecord, StepState};
use crate::plan::{Owner, Plan, StepIdx};

/// Log-normal noise (σ of ln) when no history says otherwise.
pub const DEFAULT_SIGMA: f64 = 0.15;

/// (step kind, product)
type Group = (String, Option<String>);

#[derive(Clone, Debug, Default)]
pub struct DurationModel {
    groups: HashMap<Group, Fit>,
}

/// One group's fit.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Fit {
    pub samples: usize,
    /// ms
    pub intercept: f64,
    pub slope: f64,
    /// actual ÷ fitted
    pub p50: f64,
    pub p90: f64,
    pub sigma: f64,
}

impl DurationModel {
    /// Learns from finished steps of previous runs.
    pub fn learn(history: &[(&Plan, &[StepRecord])]) -> DurationModel {
        let mut points: HashMap<Group, Vec<(f64, f64)>> = HashMap::new();
        for (plan, records) in history {
            for (i, r) in records.iter().enumerate() {
                let (Some(start), Some(end)) = (r.started_at, r.ended_at) else {
                    continue;
                };
                if r.state != StepState::Succeeded || end < start {
                    continue;
                }
                let expected = expected_ms(plan, i as StepIdx) as f64;
                points
                    .entry(group(plan, i as StepIdx))
                    .or_default()
                    .push((expected, (end - start) as f64));
            }
        }
        DurationModel {
            groups: points.into_iter().map(|(k, pts)| (k, fit(&pts))).collect(),
        }
    }

    pub fn fits(&self) -> impl Iterator<Item = (&Group, &Fit)> {
        self.groups.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Typical (p50) duration of a step, in ms.
    pub fn p50_ms(&self, plan: &Plan, idx: StepIdx) -> u64 {
        let expected = expected_ms(plan, idx) as f64;
        match self.groups.get(&group(plan, idx)) {
            Some(f) => ((f.intercept + f.slope * expected).max(0.0) * f.p50) as u64,
            None => expected as u64,
        }
    }

    /// A random duration around the p50 (log-normal), for Monte Carlo trials.
    pub fn sample_ms(&self, plan: &Plan, idx: StepIdx, rng: &mut impl Rng) -> u64 {
        let sigma = self
            .groups
            .get(&group(plan, idx))
            .map_or(DEFAULT_SIGMA, |f| f.sigma);
        let z = crate::generate::normal(rng);
        (self.p50_ms(plan, idx) as f64 * (sigma * z).exp()) as u64
    }

    /// Every step's p50 duration.
    pub fn p50_all(&self, plan: &Plan) -> Vec<u64> {
        (0..plan.steps.len() as StepIdx)
            .map(|i| self.p50_ms(plan, i))
            .collect()
    }
}

/// What a step is expected to take before any history: its estimate, or for `sleep` steps the
/// sleep its params ask for.
pub fn expected_ms(plan: &Plan, idx: StepIdx) -> u64 {
    let step = &plan.steps[idx as usize];
    let estimate = crate::limits::millis(step.estimate);
    if plan.kind(step) != "sleep" {
        return estimate;
    }
    let base = step
        .params
        .get("duration")
        .and_then(|d| humantime::parse_duration(d).ok())
        .map_or(estimate, crate::limits::millis);
    let scale = step
        .params
        .get("scale")
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.0);
    (base as f64 * scale) as u64
}

fn group(plan: &Plan, idx: StepIdx) -> Group {
    let step = &plan.steps[idx as usize];
    let product = match step.owner {
        Owner::Site { product, .. } => product,
        Owner::Shared { product, .. } => Some(product),
    };
    (
        plan.kind(step).to_owned(),
        product.map(|p| plan.products[p as usize].clone()),
    )
}

/// Least squares `actual = a + b × expected`, falling back to a pure ratio for few points or no
/// spread in `expected`; then the distribution of actual ÷ fitted.
fn fit(points: &[(f64, f64)]) -> Fit {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let (intercept, slope) = if points.len() >= 3 && sxx > 0.0 && sxy / sxx > 0.0 {
        let b = sxy / sxx;
        (my - b * mx, b)
    } else if mx > 0.0 {
        (0.0, my / mx)
    } else {
        (my, 0.0)
    };
    let mut ratios: Vec<f64> = points
        .iter()
        .map(|(x, y)| y / (intercept + slope * x).max(1.0))
        .filter(|r| r.is_finite() && *r > 0.0)
        .collect();
    ratios.sort_by(f64::total_cmp);
    let q = |p: f64| {
        if ratios.is_empty() {
            1.0
        } else {
            ratios[((p * ratios.len() as f64).ceil() as usize).clamp(1, ratios.len()) - 1]
        }
    };
    let logs: Vec<f64> = ratios.iter().map(|r| r.ln()).collect();
    let mean = logs.iter().sum::<f64>() / logs.len().max(1) as f64;
    let var = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / logs.len().max(1) as f64;
    Fit {
        samples: points.len(),
        intercept,
        slope,
        p50: q(0.5),
        p90: q(0.9),
        sigma: var.sqrt().max(0.01),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_history_is_recovered() {
        let pts: Vec<(f64, f64)> = (1..=20)
            .map(|x| (x as f64 * 1000.0, 500.0 + 2.0 * x as f64 * 1000.0))
            .collect();
        let f = fit(&pts);
        assert!(
            (f.slope - 2.0).abs() < 1e-9 && (f.intercept - 500.0).abs() < 1e-6,
            "{f:?}"
        );
        assert!((f.p50 - 1.0).abs() < 1e-9);
    }

    #[test]
    fn few_points_fall_back_to_a_ratio() {
        let f = fit(&[(1000.0, 3000.0), (2000.0, 6000.0)]);
        assert_eq!((f.intercept, f.slope), (0.0, 3.0));
    }
}
