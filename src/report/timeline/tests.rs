//! Timelines of small hand-written ledgers.

use super::*;
use crate::plan::{PlanOptions, plan};
use crate::request::Request;
use crate::source::Source;
use crate::workflow::Workflow;

/// A shard fetch per product (pool s3), a load per product (pool db), a site step (no pool).
const WF: &str = r#"
[workflow]
name = "t"
[pools.s3]
capacity = 2
[pools.db]
capacity = 2
[products.a]
[steps.get]
scope = "shared"
unit = "shard"
kind = "fetch"
uses = { s3 = 1 }
estimate = "10s"
[steps.load]
scope = "product"
kind = "restore-tenant"
after = ["get"]
uses = { db = 1 }
estimate = "20s"
[steps.up]
scope = "site"
kind = "reactivate"
after = ["load"]
estimate = "1s"
"#;

const SITES: &str = r#"
[[sites]]
id = "site-1"
attrs = { shard = "s1" }
[[sites]]
id = "site-2"
tier = "enterprise"
attrs = { shard = "s1" }
[[sites]]
id = "site-3"
attrs = { shard = "s2" }
"#;

fn test_plan() -> Plan {
    let wf = Workflow::parse(&Source::new("wf.toml", WF), crate::steps::KNOWN_KINDS).unwrap();
    let text = format!(
        "[request]\nname = \"r\"\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"a\"]\n{SITES}"
    );
    let req = Request::parse(&Source::new("req.toml", text), |_| unreachable!()).unwrap();
    plan(&wf, &req, &PlanOptions::default()).unwrap()
}

const T0: i64 = 1_650_000_000_000;

fn record(state: StepState, start: Option<i64>, end: Option<i64>) -> StepRecord {
    StepRecord {
        state,
        attempts: u32::from(start.is_some()),
        started_at: start.map(|s| T0 + s),
        ended_at: end.map(|e| T0 + e),
        ..StepRecord::default()
    }
}

/// Ledger records by step ID; steps not named stay pending.
fn records(plan: &Plan, by_id: &[(&str, StepRecord)]) -> Vec<StepRecord> {
    plan.steps
        .iter()
        .map(|s| {
            by_id
                .iter()
                .find(|(id, _)| *id == s.id)
                .map_or_else(StepRecord::default, |(_, r)| r.clone())
        })
        .collect()
}

/// site-1 restored at 400 ms, site-2 at 500 ms; site-3's load failed, blocking its `up`.
fn finished_run(plan: &Plan) -> Vec<StepRecord> {
    use StepState::*;
    let mut failed = record(Failed, Some(110), Some(150));
    failed.last_error = Some("disk full".into());
    let mut blocked = record(Blocked, None, None);
    blocked.note = Some("site-3/a/load".into());
    records(
        plan,
        &[
            ("shard/s1/get", record(Succeeded, Some(0), Some(100))),
            ("shard/s2/get", record(Succeeded, Some(10), Some(110))),
            ("site-1/a/load", record(Succeeded, Some(100), Some(390))),
            ("site-2/a/load", record(Succeeded, Some(100), Some(480))),
            ("site-3/a/load", failed),
            ("site-1/up", record(Succeeded, Some(390), Some(400))),
            ("site-2/up", record(Succeeded, Some(480), Some(500))),
            ("site-3/up", blocked),
        ],
    )
}

#[test]
fn site_lanes_put_shared_units_first_then_sites_in_plan_order() {
    let plan = test_plan();
    let lanes = Lanes::new(&plan, LaneMode::Site);
    assert_eq!(
        lanes.names,
        ["shard/s1", "shard/s2", "site-1", "site-2", "site-3"]
    );
    let lane = |id: &str| {
        let i = plan.steps.iter().position(|s| s.id == id).unwrap();
        lanes.names[lanes.of_step[i]].as_str()
    };
    assert_eq!(lane("shard/s2/get"), "shard/s2");
    assert_eq!(lane("site-2/a/load"), "site-2");
    assert_eq!(lane("site-2/up"), "site-2");
}

#[test]
fn pool_lanes_use_the_first_pool_a_step_holds_and_one_lane_for_none() {
    let plan = test_plan();
    let lanes = Lanes::new(&plan, LaneMode::Pool);
    assert_eq!(
        lanes.names,
        ["db", "s3", NO_POOL],
        "pools in plan (name) order"
    );
    for (step, &lane) in plan.steps.iter().zip(&lanes.of_step) {
        let expected = match plan.kind(step) {
            "fetch" => "s3",
            "restore-tenant" => "db",
            _ => NO_POOL,
        };
        assert_eq!(lanes.names[lane], expected, "{}", step.id);
    }
}

#[test]
fn only_started_steps_get_bars_timed_from_the_first_start() {
    let plan = test_plan();
    let t = Timeline::from_run(&plan, &finished_run(&plan), LaneMode::Site);
    let ids: Vec<&str> = t.bars.iter().map(|b| b.step.as_str()).collect();
    assert_eq!(ids.len(), 7, "every step but the blocked one: {ids:?}");
    assert!(!ids.contains(&"site-3/up"));
    let bar = |id: &str| t.bars.iter().find(|b| b.step == id).unwrap();
    let load = bar("site-3/a/load");
    assert_eq!((load.start_ms, load.end_ms), (110, 150));
    assert_eq!(load.outcome, "failed");
    assert_eq!(load.note.as_deref(), Some("disk full"));
    assert_eq!(load.product.as_deref(), Some("a"));
    assert_eq!(t.lanes[load.lane], "site-3");
    assert_eq!(bar("site-1/up").product, None);
    assert_eq!(t.span_ms, 500);
    assert_eq!(t.origin.as_deref(), Some("2022-04-15T05:20:00.000Z"));
}

fn step_index(plan: &Plan, id: &str) -> usize {
    plan.steps.iter().position(|s| s.id == id).unwrap()
}

#[test]
fn the_critical_path_is_the_chain_that_ended_last_not_the_planned_one() {
    let plan = test_plan();
    let t = Timeline::from_run(&plan, &finished_run(&plan), LaneMode::Site);
    // site-2/up ended last (500 ms), after site-2/a/load (480 ms), after shard/s1/get (100 ms).
    assert_eq!(t.critical, ["shard/s1/get", "site-2/a/load", "site-2/up"]);
    let planned: Vec<&str> = plan
        .critical_path
        .iter()
        .map(|&i| plan.steps[i as usize].id.as_str())
        .collect();
    assert_eq!(planned.len(), 3, "{planned:?}");
    assert_ne!(
        t.critical, planned,
        "the run's path differs from the plan's"
    );
    for b in &t.bars {
        assert_eq!(b.critical, t.critical.contains(&b.step), "{}", b.step);
    }
    assert_eq!(t.bars.iter().filter(|b| b.critical).count(), 3);
}

#[test]
fn the_critical_path_goes_back_to_the_dependency_that_ended_latest() {
    let mut plan = test_plan();
    // site-2/up waits for its load (ends at 480 ms) and for shard s2's fetch (ends at 490 ms).
    let (up, get) = (
        step_index(&plan, "site-2/up"),
        step_index(&plan, "shard/s2/get"),
    );
    plan.steps[up].deps.push(get as crate::plan::StepIdx);
    let mut steps = finished_run(&plan);
    steps[get] = record(StepState::Succeeded, Some(10), Some(490));
    let t = Timeline::from_run(&plan, &steps, LaneMode::Site);
    assert_eq!(t.critical, ["shard/s2/get", "site-2/up"]);
}

#[test]
fn the_critical_path_looks_through_a_dependency_that_never_ran() {
    let plan = test_plan();
    let mut steps = finished_run(&plan);
    let mut skipped = record(StepState::Skipped, None, None);
    skipped.note = Some("restored by hand".into());
    steps[step_index(&plan, "site-2/a/load")] = skipped;
    let t = Timeline::from_run(&plan, &steps, LaneMode::Site);
    assert_eq!(t.critical, ["shard/s1/get", "site-2/up"]);
}

#[test]
fn a_step_still_running_after_every_other_ended_ends_the_critical_path() {
    let plan = test_plan();
    let steps = records(
        &plan,
        &[
            (
                "shard/s1/get",
                record(StepState::Succeeded, Some(0), Some(100)),
            ),
            (
                "site-2/a/load",
                record(StepState::Succeeded, Some(100), Some(200)),
            ),
            ("site-1/a/load", record(StepState::Running, Some(250), None)),
        ],
    );
    let t = Timeline::from_run(&plan, &steps, LaneMode::Site);
    assert_eq!(t.critical, ["shard/s1/get", "site-1/a/load"]);
}

#[test]
fn a_step_still_running_is_drawn_up_to_the_last_recorded_time() {
    let plan = test_plan();
    let steps = records(
        &plan,
        &[
            (
                "shard/s1/get",
                record(StepState::Succeeded, Some(0), Some(100)),
            ),
            ("site-1/a/load", record(StepState::Running, Some(100), None)),
            (
                "shard/s2/get",
                record(StepState::Succeeded, Some(0), Some(250)),
            ),
        ],
    );
    let t = Timeline::from_run(&plan, &steps, LaneMode::Site);
    let load = t.bars.iter().find(|b| b.step == "site-1/a/load").unwrap();
    assert_eq!(
        (load.start_ms, load.end_ms, load.outcome.as_str()),
        (100, 250, "running")
    );
}

#[test]
fn sites_not_restored_come_first_then_the_slowest() {
    let plan = test_plan();
    let t = Timeline::from_run(&plan, &finished_run(&plan), LaneMode::Site);
    let rows: Vec<(&str, &str, Option<u64>)> = t
        .sites
        .iter()
        .map(|s| (s.site.as_str(), s.state.as_str(), s.restore_ms))
        .collect();
    assert_eq!(
        rows,
        [
            ("site-3", "failed", None),
            ("site-2", "restored", Some(500)),
            ("site-1", "restored", Some(400)),
        ]
    );
    assert_eq!(t.sites[1].tier, "enterprise");
    assert_eq!(
        t.sites[0].reason.as_deref(),
        Some("site-3/a/load failed: disk full")
    );
}

#[test]
fn failures_list_their_error_and_the_steps_they_block() {
    let plan = test_plan();
    let t = Timeline::from_run(&plan, &finished_run(&plan), LaneMode::Pool);
    assert_eq!(t.failures.len(), 1);
    let f = &t.failures[0];
    assert_eq!(f.step, "site-3/a/load");
    assert_eq!(f.site.as_deref(), Some("site-3"));
    assert_eq!(f.kind, "restore-tenant");
    assert_eq!((f.attempts, f.error.as_str()), (1, "disk full"));
    assert_eq!(f.blocks, ["site-3/up"]);
}

#[test]
fn a_run_that_has_not_started_has_no_bars_and_says_so() {
    let plan = test_plan();
    let steps = vec![StepRecord::default(); plan.steps.len()];
    let t = Timeline::from_run(&plan, &steps, LaneMode::Site);
    assert!(t.bars.is_empty());
    assert!(t.critical.is_empty());
    assert_eq!((t.span_ms, t.origin.as_deref()), (0, None));
    assert!(
        t.subtitle.starts_with("no step has started"),
        "{}",
        t.subtitle
    );
    assert!(t.sites.iter().all(|s| s.restore_ms.is_none()));
}

#[test]
fn lanes_are_per_site_up_to_300_sites() {
    let mut plan = test_plan();
    assert_eq!(LaneMode::auto(&plan), LaneMode::Site);
    let site = plan.sites[0].clone();
    plan.sites.resize(LaneMode::MAX_SITE_LANES + 1, site);
    assert_eq!(LaneMode::auto(&plan), LaneMode::Pool);
}
