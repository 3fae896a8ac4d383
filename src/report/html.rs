//! Draws a `Timeline` as one self-contained HTML page — inline CSS and JavaScript, no fetches, so
//! it opens anywhere, offline, years later. The tables (failures, restore time per site) are
//! plain HTML; the Gantt chart is SVG drawn on load by `html/gantt.js` from the chart data
//! embedded as JSON in `<script id="drover-data">`.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::human_ms;
use super::timeline::{Bar, FailureRow, ForecastView, SiteRow, Timeline};

const STYLE: &str = include_str!("html/report.css");
const SCRIPT: &str = include_str!("html/gantt.js");

/// Product colours, in product order (repeating past ten products). Red and green are left to
/// outcomes.
const PRODUCT_COLOURS: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#76b7b2", "#edc948", "#b07aa1", "#9c755f", "#ff9da7", "#86bcb6",
    "#d37295", "#a0cbe8",
];

/// Outcome colours; the CSS classes `o-<outcome>` in `html/report.css` use the same.
const OUTCOME_COLOURS: [(&str, &str); 6] = [
    ("succeeded", "#59a14f"),
    ("failed", "#e15759"),
    ("skipped", "#bab0ac"),
    ("running", "#4e79a7"),
    ("pending", "#f1ce63"),
    ("blocked", "#8f5fa8"),
];

/// More bars than this are thinned by the page (see `gantt.js`): a browser stays responsive
/// with tens of thousands of SVG elements, not hundreds of thousands.
const MAX_DRAWN_BARS: usize = 40_000;

/// Sites listed in the restore-time table; the JSON timeline has them all.
const MAX_SITE_ROWS: usize = 5_000;

/// The complete page. (Writing to a `String` cannot fail, hence the ignored `write!` results.)
pub fn html(t: &Timeline) -> String {
    let mut page = String::with_capacity(4096 + t.bars.len() * 80);
    let title = escape(&t.title);
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>\n{STYLE}{}</style>\n</head>\n<body>\n\
         <header>\n<h1>{title}</h1>\n<p class=\"sub\">{}</p>\n</header>\n",
        product_rules(&t.products),
        escape(&t.subtitle),
    );
    chart_section(&mut page, t);
    match &t.forecast {
        // A forecast has no outcomes to report: how busy each pool is, and each site's range.
        Some(f) => {
            pool_use_section(&mut page, f, t.span_ms);
            ranges_section(&mut page, f);
        }
        None => {
            failures_section(&mut page, &t.failures);
            sites_section(&mut page, &t.sites);
        }
    }
    let _ = write!(
        page,
        "<script type=\"application/json\" id=\"drover-data\">{}</script>\n\
         <script>\n{SCRIPT}</script>\n</body>\n</html>\n",
        chart_json(t)
    );
    page
}

/// CSS giving each product's bars its colour when the chart is coloured by product.
fn product_rules(products: &[String]) -> String {
    (0..products.len())
        .map(|i| format!(".by-product .p{i} {{ fill: {}; }}\n", product_colour(i)))
        .collect()
}

fn product_colour(i: usize) -> &'static str {
    PRODUCT_COLOURS[i % PRODUCT_COLOURS.len()]
}

fn chart_section(page: &mut String, t: &Timeline) {
    let what = match t.lane_mode {
        super::LaneMode::Site => "one lane per site (shared units first)",
        super::LaneMode::Pool => "one lane per pool (a step is drawn in the first pool it uses)",
    };
    let _ = write!(
        page,
        "<section id=\"timeline\" class=\"by-product\">\n<h2>Timeline <span class=\"hint\">\
         {what}; time from the first step's start; hover a bar for details</span></h2>\n{}\
         <div id=\"gantt\"><noscript>The chart needs JavaScript; the \
         tables below do not.</noscript></div>\n<p id=\"gantt-note\" class=\"note\"></p>\n",
        legend(t)
    );
    if !t.critical.is_empty() {
        let path: Vec<String> = t.critical.iter().map(|s| escape(s)).collect();
        // A real run has an origin; a forecast's bars carry the plan's critical path.
        let what = if t.origin.is_some() {
            "as run: the chain that ended last, each step held back by the dependency that \
             ended latest"
        } else {
            "planned"
        };
        let n = path.len();
        let steps = if n == 1 { "step" } else { "steps" };
        let _ = writeln!(
            page,
            "<p class=\"critical-list\"><b>Critical path</b> ({what}; {n} {steps}): {}</p>",
            path.join(" → ")
        );
    }
    page.push_str("</section>\n");
}

fn legend(t: &Timeline) -> String {
    let swatch = |colour: &str, label: &str| {
        format!(
            "<span class=\"item\"><i class=\"swatch\" style=\"background:{colour}\"></i>{}</span>",
            escape(label)
        )
    };
    let products: String = t
        .products
        .iter()
        .enumerate()
        .map(|(i, p)| swatch(product_colour(i), p))
        .chain(
            t.bars
                .iter()
                .any(|b| b.product.is_none())
                .then(|| swatch("#8c8c8c", "(no product)")),
        )
        .collect();
    if t.forecast.is_some() {
        return format!(
            "<div class=\"legend\">\n<span class=\"group products\"><b>Products</b> {products}</span>\n\
             <span class=\"group\"><span class=\"item\"><i class=\"swatch critical\"></i>critical \
             path</span></span>\n</div>\n"
        );
    }
    let present: Vec<&str> = t.bars.iter().map(|b| b.outcome.as_str()).collect();
    let outcomes: String = OUTCOME_COLOURS
        .iter()
        .filter(|(o, _)| present.contains(o))
        .map(|(o, colour)| swatch(colour, o))
        .collect();
    format!(
        "<div class=\"legend\">\n<span class=\"group\"><b>Colour by</b> \
         <label><input type=\"radio\" name=\"colour-by\" value=\"product\" checked> product</label> \
         <label><input type=\"radio\" name=\"colour-by\" value=\"outcome\"> outcome</label></span>\n\
         <span class=\"group products\"><b>Products</b> {products}</span>\n\
         <span class=\"group outcomes\"><b>Outcomes</b> {outcomes}</span>\n\
         <span class=\"group\"><span class=\"item\"><i class=\"swatch failed\"></i>failed \
         (red outline)</span><span class=\"item\"><i class=\"swatch critical\"></i>critical \
         path</span></span>\n</div>\n"
    )
}

fn failures_section(page: &mut String, failures: &[FailureRow]) {
    let _ = write!(page, "<section>\n<h2>Failures ({})</h2>\n", failures.len());
    if failures.is_empty() {
        page.push_str("<p>No step failed.</p>\n</section>\n");
        return;
    }
    page.push_str(
        "<table id=\"failures\">\n<thead><tr><th>step</th><th>site</th><th>kind</th>\
         <th>attempts</th><th>error</th><th>blocks</th></tr></thead>\n<tbody>\n",
    );
    for f in failures {
        let _ = writeln!(
            page,
            "<tr><td class=\"id\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"error\">{}</td><td>{}</td></tr>",
            escape(&f.step),
            escape(f.site.as_deref().unwrap_or("—")),
            escape(&f.kind),
            f.attempts,
            escape(&f.error),
            blocked_list(&f.blocks)
        );
    }
    page.push_str("</tbody>\n</table>\n</section>\n");
}

/// Columns of a pool-use chart.
const USE_COLUMNS: usize = 400;

/// Each pool's share of its capacity in use over the forecast, as a small area chart (drawn
/// here, so it needs no script).
fn pool_use_section(page: &mut String, f: &ForecastView, span_ms: u64) {
    page.push_str(
        "<section id=\"pool-use\">\n<h2>Pool use <span class=\"hint\">units in use ÷ capacity \
         over the forecast; a pool near 100 % for long is what bounds the restore</span></h2>\n",
    );
    let span = span_ms.max(1) as f64;
    for pool in &f.pools {
        let cap = pool.capacity.max(1) as f64;
        // Mean use in each column, from the step function.
        let mut cols = vec![0.0f64; USE_COLUMNS];
        for (k, &(t, units)) in pool.steps.iter().enumerate() {
            let end = pool.steps.get(k + 1).map_or(span_ms, |n| n.0) as f64;
            let (a, b) = (
                t as f64 / span * USE_COLUMNS as f64,
                end / span * USE_COLUMNS as f64,
            );
            let mut x = a;
            while x < b {
                let col = (x as usize).min(USE_COLUMNS - 1);
                let next = ((col + 1) as f64).min(b);
                cols[col] += (next - x) * units as f64 / cap;
                x = next;
            }
        }
        let mean = cols.iter().sum::<f64>() / USE_COLUMNS as f64;
        let points: String = cols
            .iter()
            .enumerate()
            .map(|(i, u)| format!(" {},{:.1}", i, 40.0 - 40.0 * u.min(1.0)))
            .collect();
        let _ = writeln!(
            page,
            "<figure class=\"pool-use\"><figcaption>{} ({} units): {:.0} % in use on average\
             </figcaption><svg viewBox=\"0 0 {USE_COLUMNS} 40\" preserveAspectRatio=\"none\" \
             role=\"img\" aria-label=\"use of pool {}\"><polygon points=\"0,40{points} {},40\" \
             fill=\"#4e79a7\" fill-opacity=\"0.6\"/></svg></figure>",
            escape(&pool.name),
            pool.capacity,
            mean * 100.0,
            escape(&pool.name),
            USE_COLUMNS - 1
        );
    }
    page.push_str("</section>\n");
}

/// Each site's forecast restore time as a range, slowest first.
fn ranges_section(page: &mut String, f: &ForecastView) {
    let over = if f.trials > 1 {
        format!("p50 and p90 over {} trials", f.trials)
    } else {
        "one simulation: run `drover estimate --trials 100` for ranges".to_owned()
    };
    let _ = write!(
        page,
        "<section>\n<h2>Forecast restore time per site <span class=\"hint\">from the start of \
         the restore; {over}; slowest first</span></h2>\n<table id=\"ranges\">\n<thead><tr>\
         <th>site</th><th>tier</th><th>p50</th><th>p90</th></tr></thead>\n<tbody>\n"
    );
    for r in f.ranges.iter().take(MAX_SITE_ROWS) {
        let _ = writeln!(
            page,
            "<tr><td class=\"id\">{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td></tr>",
            escape(&r.site),
            escape(&r.tier),
            human_ms(r.p50_ms),
            human_ms(r.p90_ms),
        );
    }
    page.push_str("</tbody>\n</table>\n");
    if f.ranges.len() > MAX_SITE_ROWS {
        let _ = writeln!(
            page,
            "<p class=\"note\">… and {} more sites; <code>drover estimate --format json</code> \
             lists every one.</p>",
            f.ranges.len() - MAX_SITE_ROWS
        );
    }
    page.push_str("</section>\n");
}

/// "none", or a count that opens to the list of blocked steps.
fn blocked_list(blocks: &[String]) -> String {
    if blocks.is_empty() {
        return "none".to_owned();
    }
    let items: String = blocks
        .iter()
        .map(|b| format!("<li>{}</li>", escape(b)))
        .collect();
    let n = blocks.len();
    let steps = if n == 1 { "step" } else { "steps" };
    format!("<details><summary>{n} {steps}</summary><ul>{items}</ul></details>")
}

fn sites_section(page: &mut String, sites: &[SiteRow]) {
    let _ = write!(
        page,
        "<section>\n<h2>Restore time per site <span class=\"hint\">the end of the site's last \
         step, from the first step's start; slowest first, sites not restored at the top\
         </span></h2>\n<table id=\"sites\">\n<thead><tr><th>site</th><th>tier</th>\
         <th>state</th><th>restore time</th><th>reason</th></tr></thead>\n<tbody>\n"
    );
    for s in sites.iter().take(MAX_SITE_ROWS) {
        let _ = writeln!(
            page,
            "<tr class=\"{state}\"><td class=\"id\">{}</td><td>{}</td><td>{state}</td>\
             <td class=\"num\">{}</td><td class=\"error\">{}</td></tr>",
            escape(&s.site),
            escape(&s.tier),
            s.restore_ms.map_or_else(|| "—".to_owned(), human_ms),
            escape(s.reason.as_deref().unwrap_or("")),
            state = s.state.as_str(),
        );
    }
    page.push_str("</tbody>\n</table>\n");
    if sites.len() > MAX_SITE_ROWS {
        let _ = writeln!(
            page,
            "<p class=\"note\">… and {} more sites; <code>drover report --timeline</code> and \
             <code>drover status --format json</code> list every one.</p>",
            sites.len() - MAX_SITE_ROWS
        );
    }
    page.push_str("</section>\n");
}

/// What `gantt.js` draws, compactly: names are listed once and bars refer to them by index.
#[derive(Serialize)]
struct Chart<'a> {
    span: u64,
    lanes: &'a [String],
    /// Rows per lane: bars that overlap in time are stacked.
    rows: Vec<u32>,
    products: &'a [String],
    kinds: Vec<&'a str>,
    outcomes: Vec<&'a str>,
    critical: &'a [String],
    #[serde(rename = "maxBars")]
    max_bars: usize,
    bars: Vec<BarCell<'a>>,
}

/// `[step, lane, row, start ms, end ms, product (-1: none), kind, outcome, critical (0/1),
/// note]`.
#[derive(Serialize)]
struct BarCell<'a>(
    &'a str,
    usize,
    u32,
    u64,
    u64,
    i64,
    usize,
    usize,
    u8,
    Option<&'a str>,
);

fn chart_json(t: &Timeline) -> String {
    let (rows, row_of) = pack(t.lanes.len(), &t.bars);
    let mut kinds = Names::default();
    let mut outcomes = Names::default();
    let products: BTreeMap<&str, i64> = t
        .products
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i as i64))
        .collect();
    let bars = t
        .bars
        .iter()
        .zip(row_of)
        .map(|(b, row)| {
            BarCell(
                &b.step,
                b.lane,
                row,
                b.start_ms,
                b.end_ms,
                b.product
                    .as_deref()
                    .and_then(|p| products.get(p))
                    .copied()
                    .unwrap_or(-1),
                kinds.index(&b.kind),
                outcomes.index(&b.outcome),
                u8::from(b.critical),
                b.note.as_deref(),
            )
        })
        .collect();
    let chart = Chart {
        span: t.span_ms,
        lanes: &t.lanes,
        rows,
        products: &t.products,
        kinds: kinds.list,
        outcomes: outcomes.list,
        critical: &t.critical,
        max_bars: MAX_DRAWN_BARS,
        bars,
    };
    // `<` only ever occurs inside JSON strings, where `\u003c` means the same; so no `</script>`
    // or `<!--` in a step ID or error message can end the script element early.
    serde_json::to_string(&chart)
        .expect("chart data serializes")
        .replace('<', "\\u003c")
}

/// Distinct names in first-seen order.
#[derive(Default)]
struct Names<'a> {
    list: Vec<&'a str>,
    index: BTreeMap<&'a str, usize>,
}

impl<'a> Names<'a> {
    fn index(&mut self, name: &'a str) -> usize {
        *self.index.entry(name).or_insert_with(|| {
            self.list.push(name);
            self.list.len() - 1
        })
    }
}

/// Stacks each lane's bars into rows so that bars overlapping in time never share one: first
/// fit, in start order. Returns the row count of each lane and the row of each bar.
fn pack(lanes: usize, bars: &[Bar]) -> (Vec<u32>, Vec<u32>) {
    let mut order: Vec<usize> = (0..bars.len()).collect();
    order.sort_by_key(|&i| (bars[i].lane, bars[i].start_ms, bars[i].end_ms));
    // Per lane, per row: when the row's last bar ends.
    let mut ends: Vec<Vec<u64>> = vec![Vec::new(); lanes];
    let mut row_of = vec![0; bars.len()];
    for i in order {
        let (bar, rows) = (&bars[i], &mut ends[bars[i].lane]);
        let row = match rows.iter().position(|&end| end <= bar.start_ms) {
            Some(row) => row,
            None => {
                rows.push(0);
                rows.len() - 1
            }
        };
        rows[row] = bar.end_ms;
        row_of[i] = row as u32;
    }
    (ends.iter().map(|rows| rows.len() as u32).collect(), row_of)
}

/// Text for HTML element content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
