//! `drover report`: draws a run from its ledger — a self-contained HTML page (Gantt chart,
//! restore time per site, failures) and a JSON timeline of every step (docs/report.md).
//! Read-only: safe while the run is going.

use std::io::Write;
use std::path::PathBuf;

use clap::{ArgGroup, Args, ValueEnum};

use super::shared::write_atomically;
use super::{Done, Failure};
use crate::report::{LaneMode, Timeline, TimelineDoc, html};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("output").required(true).multiple(true).args(["html", "timeline"])))]
pub struct ReportArgs {
    /// The run's ledger.
    #[arg(long, short)]
    state: PathBuf,
    /// Write the HTML report here: one file, no external resources; open it in any browser.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Write the timeline of every step here, as JSON (format `drover-timeline/1`).
    #[arg(long, value_name = "FILE.json")]
    timeline: Option<PathBuf>,
    /// Chart lanes: one per site (and shared unit) or one per pool. Default: site for up to
    /// 300 sites, else pool.
    #[arg(long, value_enum)]
    lanes: Option<Lanes>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Lanes {
    Site,
    Pool,
}

pub fn run(args: ReportArgs) -> Result<Done, Failure> {
    let stored = crate::ledger::open(&args.state)?.load()?;
    let mode = match args.lanes {
        Some(Lanes::Site) => LaneMode::Site,
        Some(Lanes::Pool) => LaneMode::Pool,
        None => LaneMode::auto(&stored.plan),
    };
    if let Some(path) = &args.html {
        let mut timeline = Timeline::from_run(&stored.plan, &stored.steps, mode);
        timeline.subtitle = format!("run {} · {}", stored.info.run_id, timeline.subtitle);
        write_atomically(path, |w| w.write_all(html(&timeline).as_bytes()))?;
        outln!(
            "wrote {} ({} bars in {} lanes)",
            path.display(),
            timeline.bars.len(),
            timeline.lanes.len()
        );
    }
    if let Some(path) = &args.timeline {
        let doc = TimelineDoc::from_run(&stored.info, &stored.plan, &stored.steps, mode);
        write_atomically(path, |w| Ok(serde_json::to_writer(w, &doc)?))?;
        outln!("wrote {} ({} steps)", path.display(), doc.steps.len());
    }
    Ok(Done::Ok)
}
