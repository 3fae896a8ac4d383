//! Per-customer progress updates while a run goes: "your sites are being restored, expected
//! between X and Y" (docs/workflow-format.md, `notify`). A `notify` step with the param
//! `progress_moves` turns them on for its site's customer. Every `progress_every` the run's
//! ledger is read and each customer's time left simulated (`status --by-customer`'s view); a
//! customer gets an update when their expected time is first known, and again only when either
//! end of it (p50 or p90, as a time of day) has moved by more than `progress_moves` since the
//! last one they got.
//!
//! Exactly once per change, across crashes and resumes: an update is first recorded in the
//! ledger (`updates`: customer, sequence number, idempotency key, message), then delivered
//! through the customer's first site's `notify` params (the platform's outbox, once per key,
//! and the `webhook` with the key in `Idempotency-Key`), then marked delivered. A resume
//! delivers what was recorded and not delivered, with the same key and message, before it
//! decides anything new, and decides from the last update recorded, so an unchanged time sends
//! nothing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::events::{EventSink, RunEvent};
use crate::ledger::sqlite::UpdateRow;
use crate::ledger::{LedgerError, RunInfo, Snapshot, Store, format_ms, now_ms};
use crate::plan::{Owner, Plan, StepIdx};
use crate::status::customers::{self, CustomerDoc, Moment};
use crate::steps::{StepContext, StepError};

/// On a `notify` step: how far a customer's expected time must move before they get another
/// update (a duration, e.g. `"30m"`). Its presence turns updates on.
pub const MOVES: &str = "progress_moves";
/// On a `notify` step: how often the run looks (a duration; default [`DEFAULT_EVERY`]).
pub const EVERY: &str = "progress_every";
/// The `notify` params that hold durations, checked when the workflow is read.
pub const DURATION_PARAMS: &[&str] = &[MOVES, EVERY];

const DEFAULT_EVERY: Duration = Duration::from_secs(30);
/// Simulated trials behind each look: a customer's range, not the run's exact forecast.
const TRIALS: u32 = 8;

/// A duration param of [`DURATION_PARAMS`]: at least a second, at most a day.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = crate::limits::duration(text, Duration::from_secs(86_400))
        .map_err(|e| format!("'{text}' is not a duration of at most a day: {e}"))?;
    if d < Duration::from_secs(1) {
        return Err(format!("'{text}' is under a second"));
    }
    Ok(d)
}

/// Where updates are on: per site, the `notify` step whose params deliver them.
pub struct Settings {
    notify_of: Vec<Option<StepIdx>>,
    every: Duration,
}

impl Settings {
    /// `None` when no `notify` step of the plan has [`MOVES`].
    pub fn of(plan: &Plan) -> Option<Settings> {
        let mut notify_of = vec![None; plan.sites.len()];
        let mut every: Option<Duration> = None;
        for (i, step) in plan.steps.iter().enumerate() {
            let Owner::Site { site, .. } = step.owner else {
                continue;
            };
            if plan.kind(step) != "notify" || step.params.get(MOVES).is_none() {
                continue;
            }
            notify_of[site as usize].get_or_insert(i as StepIdx);
            let e = step.params.get(EVERY).and_then(|t| parse_duration(t).ok());
            every = Some(
                every
                    .unwrap_or(DEFAULT_EVERY)
                    .min(e.unwrap_or(DEFAULT_EVERY)),
            );
        }
        every.map(|every| Settings { notify_of, every })
    }
}

/// Decides and delivers the updates of one run (see the module's documentation).
pub struct Updates {
    ledger: Box<dyn Store>,
    plan: Arc<Plan>,
    info: RunInfo,
    snapshot: Snapshot,
    /// Each site's customer (read once).
    customers: Vec<Option<String>>,
    /// Each site's index in the plan, by ID.
    site_index: HashMap<String, usize>,
    settings: Settings,
    client: reqwest::Client,
}

/// What one look delivered, for the run's display.
#[derive(Debug, Default)]
struct Delivered {
    sent: usize,
    failed: usize,
    first_error: Option<String>,
}

impl Updates {
    /// Updates for the run in `ledger` (read and written on a connection of their own), or
    /// `None` when its plan asks for none.
    pub fn open(
        ledger: &dyn Store,
        plan: Arc<Plan>,
        info: RunInfo,
        snapshot: Snapshot,
    ) -> Result<Option<Updates>, LedgerError> {
        let Some(settings) = Settings::of(&plan) else {
            return Ok(None);
        };
        let ledger = ledger.reopen()?;
        let customers = customers::of_sites(&plan, &snapshot);
        let site_index = plan
            .sites
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.to_string(), i))
            .collect();
        Ok(Some(Updates {
            site_index,
            ledger,
            plan,
            info,
            snapshot,
            customers,
            settings,
            client: reqwest::Client::new(),
        }))
    }

    /// Looks every `progress_every` until `stop`: delivers what is recorded and not delivered,
    /// then decides and delivers what is new. Problems are reported as events; none stops the
    /// run.
    pub async fn watch(mut self, events: &dyn EventSink, stop: CancellationToken) {
        loop {
            let (me, decided) = tokio::task::spawn_blocking(move || {
                let decided = self.decide(now_ms());
                (self, decided)
            })
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            self = me;
            match decided {
                Ok(due) if !due.is_empty() => {
                    let d = self.deliver(due, &stop).await;
                    if d.sent + d.failed > 0 {
                        events.emit(&RunEvent::CustomerUpdates {
                            sent: d.sent,
                            failed: d.failed,
                            error: d.first_error,
                        });
                    }
                }
                Ok(_) => {}
                Err(e) => events.emit(&RunEvent::CustomerUpdates {
                    sent: 0,
                    failed: 0,
                    error: Some(format!("cannot read the run for customer updates: {e}")),
                }),
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(self.settings.every) => {}
            }
        }
        // A PostgreSQL connection closes by blocking: not on the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
    }

    /// Records the updates due at `now` and returns every one not delivered yet, oldest first.
    fn decide(&mut self, now: i64) -> Result<Vec<UpdateRow>, LedgerError> {
        let recorded = self.ledger.updates()?;
        let mut last: HashMap<&str, &UpdateRow> = HashMap::new();
        for u in &recorded {
            last.insert(u.customer.as_str(), u);
        }
        let steps = self.ledger.step_records()?;
        let moment = Moment::read(&self.plan, &self.info, &self.snapshot, &steps, now, TRIALS);
        let doc = moment.document(
            &self.info.run_id,
            &self.customers,
            customers::DEFAULT_TEMPLATE,
        );
        let mut new = Vec::new();
        for c in &doc.customers {
            let (Some(name), Some(p50), Some(p90)) = (&c.customer, c.eta_p50_s, c.eta_p90_s) else {
                continue;
            };
            let Some((site, moves)) = self.route(c) else {
                continue;
            };
            let at = |s: f64| now.saturating_add((s * 1000.0) as i64);
            let (p50_at, p90_at) = (at(p50), at(p90));
            let previous = last.get(name.as_str());
            // One update at a time: a newer one waits until the last one is delivered.
            if previous.is_some_and(|p| p.delivered_at.is_none())
                || !moved(previous.copied(), p50_at, p90_at, moves)
            {
                continue;
            }
            let seq = previous.map_or(1, |p| p.seq + 1);
            let key = format!("{}/progress/{name}/{seq}", self.info.run_id);
            let message = self.message(c, seq, p50_at, p90_at);
            new.push(UpdateRow {
                customer: name.clone(),
                seq,
                key,
                site: self.plan.sites[site].id.to_string(),
                decided_at: now,
                p50_at,
                p90_at,
                message: message.to_string(),
                delivered_at: None,
            });
        }
        for u in &new {
            self.ledger.record_update(u)?;
        }
        Ok(recorded
            .into_iter()
            .filter(|u| u.delivered_at.is_none())
            .chain(new)
            .collect())
    }

    /// The customer's first site with updates on, and how far their time must move.
    fn route(&self, c: &CustomerDoc) -> Option<(usize, i64)> {
        c.sites.iter().find_map(|s| {
            let site = *self.site_index.get(&s.site)?;
            let step = self.settings.notify_of[site]?;
            let moves = self.plan.steps[step as usize]
                .params
                .get(MOVES)
                .and_then(|t| parse_duration(t).ok())?;
            Some((site, crate::limits::millis(moves) as i64))
        })
    }

    fn message(&self, c: &CustomerDoc, seq: u32, p50_at: i64, p90_at: i64) -> serde_json::Value {
        serde_json::json!({
            "kind": "progress",
            "run_id": self.info.run_id,
            "customer": c.customer,
            "update": seq,
            "to": c.contacts.iter().map(|p| p.email.as_str()).collect::<Vec<_>>(),
            "restored": c.restored,
            "total": c.sites_total,
            "expected_between": [format_ms(p50_at), format_ms(p90_at)],
            "sites": c.sites.iter().map(|s| serde_json::json!({
                "site": s.site,
                "state": s.state,
                "eta_p50_s": s.eta_p50_s,
                "eta_p90_s": s.eta_p90_s,
            })).collect::<Vec<_>>(),
            "text": c.message,
        })
    }

    /// Delivers each update through its site's `notify` params and marks it delivered.
    async fn deliver(&mut self, due: Vec<UpdateRow>, stop: &CancellationToken) -> Delivered {
        let mut d = Delivered::default();
        for u in due {
            if stop.is_cancelled() {
                break;
            }
            match self.deliver_one(&u, stop).await {
                Ok(()) => match self.ledger.update_delivered(&u.key, now_ms()) {
                    Ok(()) => d.sent += 1,
                    Err(e) => {
                        d.failed += 1;
                        d.first_error.get_or_insert(e.to_string());
                    }
                },
                Err(e) => {
                    d.failed += 1;
                    d.first_error
                        .get_or_insert(format!("update {} for {}: {e}", u.seq, u.customer));
                }
            }
        }
        d
    }

    async fn deliver_one(&self, u: &UpdateRow, stop: &CancellationToken) -> Result<(), StepError> {
        let site = self
            .site_index
            .get(&u.site)
            .and_then(|&s| self.settings.notify_of[s])
            .ok_or_else(|| StepError::Permanent(format!("{} has no notify step", u.site)))?;
        let step = &self.plan.steps[site as usize];
        let message: serde_json::Value = serde_json::from_str(&u.message)
            .map_err(|e| StepError::Permanent(format!("the recorded message: {e}")))?;
        let ctx = StepContext {
            step_id: format!("{}/progress/{}", u.site, u.seq),
            site: Some(u.site.clone()),
            product: None,
            params: step.params.clone(),
            upstream: Default::default(),
            idempotency_key: u.key.clone(),
            attempt: 1,
            estimate: Duration::ZERO,
            cancel: stop.child_token(),
            staging: PathBuf::new(),
        };
        if let Some(dir) = ctx.param("platform").map(PathBuf::from) {
            let (site, key, body) = (u.site.clone(), u.key.clone(), message.clone());
            tokio::task::spawn_blocking(move || {
                crate::platform::Platform::open(dir)?.notify(&site, &key, &body, chrono::Utc::now())
            })
            .await
            .map_err(|e| StepError::Retryable(e.to_string()))?
            .map_err(|e| StepError::Retryable(e.to_string()))?;
        }
        if let Some(url) = ctx.param("webhook") {
            crate::steps::post_json(&self.client, &ctx, url, &message).await?;
        }
        Ok(())
    }
}

/// Whether a customer's expected time (p50, p90 as times, ms) has moved by more than `moves`
/// since the `last` update they got; always, when they got none.
fn moved(last: Option<&UpdateRow>, p50_at: i64, p90_at: i64, moves: i64) -> bool {
    last.is_none_or(|l| (p50_at - l.p50_at).abs() > moves || (p90_at - l.p90_at).abs() > moves)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(p50_at: i64, p90_at: i64) -> UpdateRow {
        UpdateRow {
            customer: "acme".into(),
            seq: 1,
            key: "k".into(),
            site: "s".into(),
            decided_at: 0,
            p50_at,
            p90_at,
            message: "{}".into(),
            delivered_at: Some(1),
        }
    }

    #[test]
    fn a_customer_hears_again_only_when_either_end_moves_past_the_threshold() {
        let min = 60_000;
        assert!(moved(None, 0, 0, 30 * min), "the first time is always news");
        let last = sent(60 * min, 90 * min);
        assert!(!moved(Some(&last), 60 * min, 90 * min, 30 * min));
        assert!(!moved(Some(&last), 80 * min, 110 * min, 30 * min));
        assert!(
            moved(Some(&last), 60 * min, 121 * min, 30 * min),
            "p90 later"
        );
        assert!(
            moved(Some(&last), 29 * min, 90 * min, 30 * min),
            "p50 earlier"
        );
    }

    #[test]
    fn durations_are_checked_when_the_workflow_is_read() {
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert!(parse_duration("soon").unwrap_err().contains("'soon'"));
        assert!(
            parse_duration("10ms")
                .unwrap_err()
                .contains("under a second")
        );
        assert!(parse_duration("2days").is_err());
    }
}
