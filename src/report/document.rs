//! The JSON timeline of a run (format `drover-timeline/1`, described in docs/report.md): every
//! step of the plan with its lane, times, attempts, outcome, backup point and error. Owns that
//! format: fields are only added within a version.

use serde::Serialize;

use crate::ledger::{RunInfo, StepRecord, StepState, format_ms};
use crate::plan::{Owner, Plan};

use super::timeline::{Clock, LaneMode, Lanes, actual_critical_path, end_of, product_of, site_of};

pub const TIMELINE_FORMAT: &str = "drover-timeline/1";

#[derive(Clone, Debug, Serialize)]
pub struct TimelineDoc {
    pub format: &'static str,
    pub run_id: String,
    pub plan_hash: String,
    pub workflow: String,
    pub request: String,
    pub lanes: LaneMode,
    /// When the first step started (RFC 3339); `*_ms` fields count from here.
    pub origin: Option<String>,
    /// Step IDs along the plan's critical path, first to last.
    pub critical_path: Vec<String>,
    /// Step IDs along the path the run actually took to its last step (what the HTML report
    /// draws): from the step that ended last back through the dependency that ended latest.
    pub critical_path_as_run: Vec<String>,
    /// Every step of the plan, in plan order.
    pub steps: Vec<StepEntry>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StepEntry {
    pub step: String,
    pub site: Option<String>,
    /// For a shared unit's step: `<attribute>/<unit>`, e.g. `shard/wiki-3`.
    pub unit: Option<String>,
    pub product: Option<String>,
    pub kind: String,
    pub lane: String,
    pub start: Option<String>,
    pub end: Option<String>,
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub attempts: u32,
    pub outcome: StepState,
    pub critical: bool,
    pub backup: Option<BackupPoint>,
    pub error: Option<String>,
    /// What blocks a blocked step, or why a skipped one was skipped.
    pub note: Option<String>,
}

/// The snapshot a fetch restored from, as its output reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackupPoint {
    pub snapshot: String,
    pub snapshot_time: Option<String>,
    /// Data lost to the restore: the point in time minus the snapshot's time, in seconds.
    pub rpo_s: Option<u64>,
}

impl TimelineDoc {
    /// `steps[i]` is the ledger record of `plan.steps[i]`.
    pub fn from_run(
        info: &RunInfo,
        plan: &Plan,
        steps: &[StepRecord],
        mode: LaneMode,
    ) -> TimelineDoc {
        let clock = Clock::new(steps);
        let lanes = Lanes::new(plan, mode);
        let mut critical = vec![false; plan.steps.len()];
        for &i in &plan.critical_path {
            critical[i as usize] = true;
        }
        let entry = |(i, r): (usize, &StepRecord)| {
            let step = &plan.steps[i];
            let end = end_of(r);
            StepEntry {
                step: step.id.clone(),
                site: site_of(plan, step).map(str::to_owned),
                unit: match &step.owner {
                    Owner::Shared {
                        attribute, unit, ..
                    } => Some(format!("{attribute}/{unit}")),
                    Owner::Site { .. } => None,
                },
                product: product_of(plan, step).map(str::to_owned),
                kind: plan.kind(step).to_owned(),
                lane: lanes.names[lanes.of_step[i]].clone(),
                start: r.started_at.map(format_ms),
                end: end.map(format_ms),
                start_ms: r.started_at.map(|t| clock.rel(t)),
                end_ms: end.map(|t| clock.rel(t)),
                attempts: r.attempts,
                outcome: r.state,
                critical: critical[i],
                backup: r.output.as_deref().and_then(backup_point),
                error: r.last_error.clone(),
                note: r.note.clone(),
            }
        };
        TimelineDoc {
            format: TIMELINE_FORMAT,
            run_id: info.run_id.clone(),
            plan_hash: info.plan_hash.clone(),
            workflow: info.workflow_name.clone(),
            request: info.request_name.clone(),
            lanes: mode,
            origin: clock.origin.map(format_ms),
            critical_path: plan
                .critical_path
                .iter()
                .map(|&i| plan.steps[i as usize].id.clone())
                .collect(),
            critical_path_as_run: actual_critical_path(plan, steps, &clock)
                .into_iter()
                .map(|i| plan.steps[i].id.clone())
                .collect(),
            steps: steps.iter().enumerate().map(entry).collect(),
        }
    }
}

/// The backup point in a step's output (JSON), if it names a `snapshot` (a fetch's does).
fn backup_point(output: &str) -> Option<BackupPoint> {
    let value: serde_json::Value = serde_json::from_str(output).ok()?;
    Some(BackupPoint {
        snapshot: value.get("snapshot")?.as_str()?.to_owned(),
        snapshot_time: value
            .get("snapshot_time")
            .and_then(|t| t.as_str())
            .map(str::to_owned),
        rpo_s: value.get("rpo_s").and_then(|s| s.as_u64()),
    })
}

#[cfg(test)]
mod tests {
    use super::{BackupPoint, backup_point};

    #[test]
    fn a_fetch_output_gives_its_backup_point_and_other_outputs_none() {
        let fetch = r#"{"unit":"wiki-3","snapshot":"2022-04-05T07-00-00Z",
            "snapshot_time":"2022-04-05T07:00:00Z","rpo_s":2280,"objects":3}"#;
        assert_eq!(
            backup_point(fetch),
            Some(BackupPoint {
                snapshot: "2022-04-05T07-00-00Z".into(),
                snapshot_time: Some("2022-04-05T07:00:00Z".into()),
                rpo_s: Some(2280),
            })
        );
        assert_eq!(backup_point(r#"{"slept_ms":20}"#), None);
        assert_eq!(backup_point("not json"), None);
    }
}
