//! The page's structure and the chart data it embeds, for hand-made timelines (the browser test in
//! tests/it/report.rs checks that it renders).

use super::*;
use crate::report::LaneMode;
use crate::status::SiteState;

fn bar(step: &str, lane: usize, start_ms: u64, end_ms: u64) -> Bar {
    Bar {
        step: step.into(),
        lane,
        start_ms,
        end_ms,
        product: Some("wiki".into()),
        kind: "sleep".into(),
        outcome: "succeeded".into(),
        critical: false,
        note: None,
    }
}

fn timeline(bars: Vec<Bar>) -> Timeline {
    Timeline {
        title: "Restore drill".into(),
        subtitle: "a test".into(),
        lane_mode: LaneMode::Site,
        lanes: vec!["site-1".into(), "site-2".into()],
        products: vec!["wiki".into()],
        span_ms: bars.iter().map(|b| b.end_ms).max().unwrap_or(0),
        bars,
        origin: None,
        critical: vec![],
        sites: vec![],
        failures: vec![],
        forecast: None,
    }
}

/// The chart data embedded in a page.
fn chart_of(page: &str) -> serde_json::Value {
    let start = page.find("id=\"drover-data\">").unwrap() + "id=\"drover-data\">".len();
    let end = start + page[start..].find("</script>").unwrap();
    serde_json::from_str(&page[start..end]).unwrap()
}

#[test]
fn bars_that_overlap_in_time_are_stacked_and_touching_ones_share_a_row() {
    let check = |bars: &[(usize, u64, u64)], rows: &[u32], row_of: &[u32]| {
        let bars: Vec<Bar> = bars.iter().map(|&(l, s, e)| bar("x", l, s, e)).collect();
        assert_eq!(pack(2, &bars), (rows.to_vec(), row_of.to_vec()), "{bars:?}");
    };
    check(&[], &[0, 0], &[]);
    check(&[(0, 0, 10), (0, 10, 20)], &[1, 0], &[0, 0]);
    check(&[(0, 0, 10), (0, 5, 20), (0, 12, 15)], &[2, 0], &[0, 1, 0]);
    check(&[(1, 5, 20), (0, 0, 10), (1, 0, 10)], &[1, 2], &[1, 0, 0]);
}

#[test]
fn the_page_embeds_compact_chart_data_for_every_bar() {
    let mut failed = bar("site-2/wiki/load", 1, 5, 30);
    failed.outcome = "failed".into();
    failed.critical = true;
    failed.note = Some("disk full".into());
    let mut unit = bar("site-1/up", 0, 0, 10);
    unit.product = None;
    let page = html(&timeline(vec![unit, failed]));
    let chart = chart_of(&page);
    assert_eq!(chart["span"], 30);
    assert_eq!(chart["lanes"], serde_json::json!(["site-1", "site-2"]));
    assert_eq!(chart["rows"], serde_json::json!([1, 1]));
    assert_eq!(
        chart["bars"],
        serde_json::json!([
            ["site-1/up", 0, 0, 0, 10, -1, 0, 0, 0, null],
            ["site-2/wiki/load", 1, 0, 5, 30, 0, 0, 1, 1, "disk full"],
        ])
    );
    assert_eq!(
        chart["outcomes"],
        serde_json::json!(["succeeded", "failed"])
    );
    assert!(page.contains(".by-product .p0 { fill: #4e79a7; }"));
    for fetch in ["src=", "href=", "@import", "url("] {
        assert!(!page.contains(fetch), "the page fetches nothing: {fetch}");
    }
}

#[test]
fn text_from_the_ledger_cannot_break_out_of_the_page() {
    let mut b = bar("site-1/a/x", 0, 0, 10);
    b.outcome = "failed".into();
    b.note = Some("</script><script>alert(1)</script>".into());
    let mut t = timeline(vec![b]);
    t.failures.push(FailureRow {
        step: "site-1/a/x".into(),
        site: Some("site-1".into()),
        kind: "fail".into(),
        attempts: 1,
        error: "<b>&\"'".into(),
        blocks: vec!["site-1/up".into()],
    });
    let page = html(&t);
    assert_eq!(page.matches("</script>").count(), 2, "only the page's own");
    assert_eq!(
        chart_of(&page)["bars"][0][9],
        "</script><script>alert(1)</script>"
    );
    assert!(page.contains("<td class=\"error\">&lt;b&gt;&amp;&quot;&#39;</td>"));
    assert!(page.contains("<summary>1 step</summary><ul><li>site-1/up</li></ul>"));
}

#[test]
fn sites_show_restore_times_and_a_dash_when_not_restored() {
    let mut t = timeline(vec![]);
    t.sites = vec![
        SiteRow {
            site: "site-2".into(),
            tier: "free".into(),
            state: SiteState::Blocked,
            restore_ms: None,
            reason: Some("site-2/up blocked by shard/s1/get".into()),
        },
        SiteRow {
            site: "site-1".into(),
            tier: "enterprise".into(),
            state: SiteState::Restored,
            restore_ms: Some(12_345),
            reason: None,
        },
    ];
    let page = html(&t);
    assert!(page.contains(
        "<td class=\"num\">—</td><td class=\"error\">site-2/up blocked by shard/s1/get</td>"
    ));
    assert!(page.contains("<td>restored</td><td class=\"num\">12.3s</td>"));
    assert!(page.contains("<h2>Failures (0)</h2>\n<p>No step failed.</p>"));
}

#[test]
fn every_lane_is_in_the_chart_data_even_with_a_thousand_lanes() {
    let lanes: Vec<String> = (0..1000).map(|i| format!("site-{i:04}")).collect();
    // Bars in every other lane; the rest are idle, and still lanes with a label.
    let bars = (0..1000)
        .step_by(2)
        .map(|i| bar(&format!("site-{i:04}/up"), i, 0, 10))
        .collect();
    let mut t = timeline(bars);
    t.lanes = lanes.clone();
    let chart = chart_of(&html(&t));
    assert_eq!(chart["lanes"], serde_json::json!(lanes));
    let rows = chart["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1000, "a row count for every lane");
    assert!(rows.iter().step_by(2).all(|r| r == 1));
    assert!(rows.iter().skip(1).step_by(2).all(|r| r == 0));
}

#[test]
fn the_critical_path_is_called_as_run_for_a_run_and_planned_for_a_forecast() {
    let mut b = bar("site-1/up", 0, 0, 10);
    b.critical = true;
    let mut t = timeline(vec![b]);
    t.critical = vec!["site-1/up".into()];
    assert!(html(&t).contains("<b>Critical path</b> (planned; 1 step): site-1/up</p>"));
    t.origin = Some("2022-04-05T08:00:00.000Z".into());
    let page = html(&t);
    assert!(
        page.contains("<b>Critical path</b> (as run: the chain that ended last"),
        "{page}"
    );
    assert_eq!(
        chart_of(&page)["critical"],
        serde_json::json!(["site-1/up"])
    );
}
