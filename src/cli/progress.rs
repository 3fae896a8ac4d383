//! Renders run events: indicatif bars on a terminal, a plain line every few seconds otherwise, or
//! JSON log lines (`--log-format json`, through tracing). Failures are always reported as they
//! happen.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::{EventSink, Progress, RunEvent};
use crate::plan::Plan;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// How often a plain (non-terminal) progress line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// The run's event sink the CLI installs: a terminal (bars or plain lines) or JSON log lines.
pub enum Renderer {
    Terminal(TerminalSink),
    Json(JsonSink),
}

impl Renderer {
    pub fn new(plan: Arc<Plan>, format: LogFormat) -> Renderer {
        match format {
            LogFormat::Json => Renderer::Json(JsonSink::new(plan)),
            LogFormat::Text => Renderer::Terminal(TerminalSink::new(plan)),
        }
    }

    pub fn finish(&self) {
        if let Renderer::Terminal(t) = self {
            t.finish();
        }
    }
}

impl EventSink for Renderer {
    fn emit(&self, event: &RunEvent) {
        match self {
            Renderer::Terminal(t) => t.emit(event),
            Renderer::Json(j) => j.emit(event),
        }
    }
}

/// Progress bars on a terminal, a plain line every few seconds otherwise; failures, retries,
/// guards and interrupts as lines of their own. Text from the run (errors quote input) is
/// printed with control characters escaped.
pub struct TerminalSink {
    plan: Arc<Plan>,
    out: Screen,
}

enum Screen {
    Bars(Bars),
    Plain(Mutex<Instant>),
}

impl TerminalSink {
    fn new(plan: Arc<Plan>) -> TerminalSink {
        let out = if std::io::stderr().is_terminal() {
            Screen::Bars(Bars::new(&plan))
        } else {
            Screen::Plain(Mutex::new(Instant::now() - PLAIN_EVERY))
        };
        TerminalSink { plan, out }
    }

    fn finish(&self) {
        if let Screen::Bars(b) = &self.out {
            b.steps.finish();
            b.sites.finish();
            for p in &b.pools {
                p.finish_and_clear();
            }
        }
    }

    fn id(&self, step: u32) -> &str {
        &self.plan.steps[step as usize].id
    }

    /// A line that must be seen (failures, retries, interrupts).
    fn say(&self, line: String) {
        let line = crate::util::printable(&line);
        match &self.out {
            Screen::Bars(b) => {
                let _ = b.multi.println(line);
            }
            Screen::Plain(_) => eprintln!("{line}"),
        }
    }

    fn progress(&self, p: &Progress) {
        match &self.out {
            Screen::Bars(b) => b.update(p),
            Screen::Plain(last) => {
                if due(last, p) {
                    eprintln!("{}", plain_line(&self.plan, p));
                }
            }
        }
    }
}

impl EventSink for TerminalSink {
    fn emit(&self, event: &RunEvent) {
        match event {
            RunEvent::Progress(p) => self.progress(p),
            RunEvent::StepFailed {
                step,
                error,
                blocked,
            } => {
                let blocked = match blocked {
                    0 => String::new(),
                    n => format!(" ({n} dependent steps blocked)"),
                };
                self.say(format!("FAILED {}: {error}{blocked}", self.id(*step)));
            }
            RunEvent::StepRetrying {
                step,
                attempt,
                delay,
                error,
            } => self.say(format!(
                "retry  {} (attempt {attempt} failed: {error}); next attempt in {}",
                self.id(*step),
                crate::report::human(*delay)
            )),
            RunEvent::Draining { in_flight, grace } => self.say(format!(
                "draining: {in_flight} steps in flight, {} grace",
                crate::report::human(*grace)
            )),
            RunEvent::FanOutStopped { reason } => self.say(format!("STOPPED {reason}")),
            RunEvent::CanaryPassed { sites } => self.say(format!(
                "canary: all {sites} canary sites restored; starting the rest"
            )),
            RunEvent::CustomerUpdates {
                sent,
                failed,
                error,
            } => {
                let mut line = format!("customer updates: {sent} sent");
                if *failed > 0 {
                    line.push_str(&format!(", {failed} not delivered (tried again next look)"));
                }
                if let Some(e) = error {
                    line.push_str(&format!(": {e}"));
                }
                self.say(line)
            }
            RunEvent::Cancelling { in_flight } => {
                self.say(format!("grace period over: cancelling {in_flight} steps"))
            }
            RunEvent::Started {
                steps,
                steps_done,
                sites,
                sites_done,
            } => {
                if *steps_done > 0 {
                    self.say(format!("resuming: {steps_done} of {steps} steps and {sites_done} of {sites} sites already done"));
                }
            }
            // Shown through the bars and the periodic line, not one line each.
            RunEvent::StepStarted { .. }
            | RunEvent::StepSucceeded { .. }
            | RunEvent::SiteRestored { .. } => {}
        }
    }
}

/// One JSON log line (through tracing, on stderr) for every event a terminal shows, plus one per
/// step start and success at `RUST_LOG=debug`. The match names every event, so a new one cannot
/// be left out of the log by accident.
pub struct JsonSink {
    plan: Arc<Plan>,
    last_progress: Mutex<Instant>,
}

impl JsonSink {
    fn new(plan: Arc<Plan>) -> JsonSink {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init();
        JsonSink {
            plan,
            last_progress: Mutex::new(Instant::now() - PLAIN_EVERY),
        }
    }

    fn id(&self, step: u32) -> &str {
        &self.plan.steps[step as usize].id
    }

    fn progress(&self, p: &Progress) {
        if !due(&self.last_progress, p) {
            return;
        }
        tracing::info!(
            event = "progress",
            steps_done = p.steps_done,
            steps_total = p.steps_total,
            steps_failed = p.steps_failed,
            steps_blocked = p.steps_blocked,
            sites_restored = p.sites_restored,
            sites_total = p.sites_total,
            running = p.running,
            elapsed_s = p.elapsed.as_secs_f64(),
            eta_s = p.eta.map(|e| e.as_secs_f64())
        );
    }
}

impl EventSink for JsonSink {
    fn emit(&self, event: &RunEvent) {
        match event {
            RunEvent::Progress(p) => self.progress(p),
            RunEvent::StepFailed {
                step,
                error,
                blocked,
            } => tracing::warn!(
                event = "step_failed",
                step = self.id(*step),
                error = error.as_str(),
                blocked
            ),
            RunEvent::StepRetrying {
                step,
                attempt,
                delay,
                error,
            } => tracing::info!(
                event = "step_retrying",
                step = self.id(*step),
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = error.as_str()
            ),
            RunEvent::Draining { in_flight, grace } => tracing::warn!(
                event = "draining",
                in_flight,
                grace_ms = grace.as_millis() as u64
            ),
            RunEvent::Cancelling { in_flight } => {
                tracing::warn!(event = "cancelling", in_flight)
            }
            RunEvent::FanOutStopped { reason } => {
                tracing::warn!(event = "fan_out_stopped", reason = reason.as_str())
            }
            RunEvent::CanaryPassed { sites } => tracing::info!(event = "canary_passed", sites),
            RunEvent::CustomerUpdates {
                sent,
                failed,
                error,
            } => match error {
                Some(e) => {
                    tracing::warn!(event = "customer_updates", sent, failed, error = e.as_str())
                }
                None => tracing::info!(event = "customer_updates", sent, failed),
            },
            RunEvent::Started {
                steps,
                steps_done,
                sites,
                sites_done,
            } => tracing::info!(event = "run_started", steps, steps_done, sites, sites_done),
            RunEvent::StepStarted { step, attempt } => {
                tracing::debug!(event = "step_started", step = self.id(*step), attempt)
            }
            RunEvent::StepSucceeded { step } => {
                tracing::debug!(event = "step_succeeded", step = self.id(*step))
            }
            RunEvent::SiteRestored { site } => tracing::info!(
                event = "site_restored",
                site = self.plan.sites[*site as usize].id.as_str()
            ),
        }
    }
}

struct Bars {
    multi: MultiProgress,
    steps: ProgressBar,
    sites: ProgressBar,
    pools: Vec<ProgressBar>,
}

/// Whether a periodic line is due (always for the final snapshot).
fn due(last: &Mutex<Instant>, p: &Progress) -> bool {
    let mut last = last.lock().expect("progress clock");
    let finished =
        p.steps_done + p.steps_failed + p.steps_blocked >= p.steps_total && p.running == 0;
    if last.elapsed() >= PLAIN_EVERY || finished {
        *last = Instant::now();
        true
    } else {
        false
    }
}

impl Bars {
    fn new(plan: &Plan) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        let style = |t: &str| {
            ProgressStyle::with_template(t)
                .expect("valid template")
                .progress_chars("=> ")
        };
        let steps = multi.add(
            ProgressBar::new(plan.steps.len() as u64)
                .with_style(style("{elapsed_precise} steps {bar:40} {pos}/{len} {msg}")),
        );
        let sites = multi.add(
            ProgressBar::new(plan.sites.len() as u64)
                .with_style(style("         sites {bar:40} {pos}/{len} restored {msg}")),
        );
        let pools = plan
            .pools
            .iter()
            .map(|p| {
                multi.add(
                    ProgressBar::new(p.capacity as u64).with_style(style(&format!(
                        "{:>14} {{bar:40}} {{pos}}/{{len}} in use",
                        format!("pool {}", p.name)
                    ))),
                )
            })
            .collect();
        Bars {
            multi,
            steps,
            sites,
            pools,
        }
    }

    fn update(&self, p: &Progress) {
        self.steps.set_position(p.steps_done as u64);
        let mut msg = format!("running {}", p.running);
        if p.steps_failed > 0 {
            msg.push_str(&format!(", failed {}", p.steps_failed));
        }
        if p.steps_blocked > 0 {
            msg.push_str(&format!(", blocked {}", p.steps_blocked));
        }
        if let Some(eta) = p.eta {
            msg.push_str(&format!(", ETA {}", crate::report::human(eta)));
        }
        self.steps.set_message(msg);
        self.sites.set_position(p.sites_restored as u64);
        for (bar, (&used, &cap)) in self
            .pools
            .iter()
            .zip(p.pools_in_use.iter().zip(&p.pools_capacity))
        {
            bar.set_length(cap as u64);
            bar.set_position(used as u64);
        }
    }
}

fn plain_line(plan: &Plan, p: &Progress) -> String {
    let pct = if p.steps_total == 0 {
        100.0
    } else {
        100.0 * p.steps_done as f64 / p.steps_total as f64
    };
    let pools: Vec<String> = plan
        .pools
        .iter()
        .zip(p.pools_in_use.iter().zip(&p.pools_capacity))
        .map(|(pool, (u, c))| format!("{} {u}/{c}", pool.name))
        .collect();
    let eta = p
        .eta
        .map(|e| format!(" eta {}", crate::report::human(e)))
        .unwrap_or_default();
    format!(
        "[{}] steps {}/{} ({pct:.0}%) failed {} blocked {} | sites {}/{} restored | running {} | pools {}{eta}",
        crate::report::human(p.elapsed),
        p.steps_done,
        p.steps_total,
        p.steps_failed,
        p.steps_blocked,
        p.sites_restored,
        p.sites_total,
        p.running,
        pools.join(", ")
    )
}
