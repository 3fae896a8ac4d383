//! What `drover serve` shows, read from the ledger: a [`Snapshot`] of the run at one moment,
//! re-read in the background at most once per [`REFRESH`] however many clients ask
//! ([`Reader`]). The plan and the
//! sites' customers are read once per plan; the step records, the holder and the time-left
//! ranges each time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ledger::{LedgerError, RunInfo, StepRecord, StepState, Stored};
use crate::plan::{Owner, Plan};
use crate::status::SiteState;
use crate::status::doc::HolderRecord;

/// How often the ledger is read again, at most.
pub const REFRESH: Duration = Duration::from_secs(1);

/// How often the time-left ranges (simulations) are computed again, at most.
const RANGES_REFRESH: Duration = Duration::from_secs(5);

/// Simulated trials behind the ranges: fewer for large plans (16 up to 6,000 steps, 3 from
/// 33,000), so that they cost little beside the run they forecast.
fn trials_for(steps: usize) -> u32 {
    (100_000 / steps.max(1)).clamp(3, 16) as u32
}

/// What does not change while a run goes: its plan, and each site's customer.
pub struct Fixed {
    pub info: RunInfo,
    pub plan: Arc<Plan>,
    /// Per site in plan order: its customer, from the request's `customer` attribute or the
    /// target registry; `None` when neither says.
    pub customers: Vec<Option<String>>,
    /// The customers, sorted, once each.
    pub customer_names: Vec<String>,
    /// The run's inputs, for where the sites' contacts are.
    pub inputs: crate::ledger::Snapshot,
}

/// The run at one moment.
pub struct Snapshot {
    pub fixed: Arc<Fixed>,
    pub steps: Vec<StepRecord>,
    pub holder: Option<HolderRecord>,
    /// When the ledger was read, ms since the epoch.
    pub read_at: i64,
    taken: Instant,
    pub sites: Vec<SiteState>,
    /// Why each site is not restored, for failed, blocked and quarantined ones.
    pub reasons: Vec<Option<String>>,
    pub ranges: Arc<Ranges>,
    /// Answers that depend only on the snapshot, made once for every client that asks before
    /// the next read.
    pub made: Made,
}

/// See [`Snapshot::made`].
#[derive(Default)]
pub struct Made {
    pub summary: std::sync::OnceLock<String>,
    pub failures: std::sync::OnceLock<String>,
    pub metrics: std::sync::OnceLock<String>,
    /// Per site: its steps, in plan order.
    pub steps_by_site: std::sync::OnceLock<Vec<Vec<usize>>>,
    /// Per customer (reads each site's contacts).
    pub customers: std::sync::OnceLock<crate::status::customers::CustomersDoc>,
    /// The timeline page.
    pub report: std::sync::OnceLock<String>,
}

/// Time left, as ranges over simulated trials (`sim::live::ranges`), and when it was computed.
pub struct Ranges {
    /// `None` when nothing is left to run.
    pub left: Option<crate::sim::live::Ranges>,
    taken: Instant,
}

impl Snapshot {
    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.fixed.plan
    }

    /// Site `s`'s time left as (p50, p90) seconds, while it is pending or running.
    pub fn site_range(&self, s: usize) -> Option<(f64, f64)> {
        if !matches!(self.sites[s], SiteState::Pending | SiteState::Running) {
            return None;
        }
        let (p50, p90) = *self.ranges.left.as_ref()?.sites_ms.get(s)?;
        (p90 != u64::MAX).then(|| self.since_computed(p50, p90))
    }

    /// The run's time left as (p50, p90) seconds.
    pub fn range(&self) -> Option<(f64, f64)> {
        let (p50, p90) = self.ranges.left.as_ref()?.left_ms;
        Some(self.since_computed(p50, p90))
    }

    /// Per customer, as `status --by-customer` shows them (made once per snapshot).
    pub fn customers(&self) -> &crate::status::customers::CustomersDoc {
        self.made.customers.get_or_init(|| {
            let plan = self.plan();
            let moment = crate::status::customers::Moment {
                plan,
                sites: self.sites.clone(),
                reasons: self.reasons.clone(),
                ranges: (0..plan.sites.len()).map(|i| self.site_range(i)).collect(),
                contacts: crate::status::customers::contacts_of(plan, &self.fixed.inputs),
                now: self.read_at,
            };
            moment.document(
                &self.fixed.info.run_id,
                &self.fixed.customers,
                crate::status::customers::DEFAULT_TEMPLATE,
            )
        })
    }

    /// Times left computed a moment before this snapshot, as of the snapshot, seconds.
    fn since_computed(&self, p50_ms: u64, p90_ms: u64) -> (f64, f64) {
        let ago = self
            .taken
            .saturating_duration_since(self.ranges.taken)
            .as_secs_f64();
        (
            (p50_ms as f64 / 1000.0 - ago).max(0.0),
            (p90_ms as f64 / 1000.0 - ago).max(0.0),
        )
    }
}

/// Reads the ledger at `path` for every client, at most once per [`REFRESH`]. A client never
/// waits for a read but the very first: one that finds the snapshot older than [`REFRESH`] gets
/// it as it is, and a read starts in the background (one at a time).
pub struct Reader {
    path: PathBuf,
    slot: std::sync::Mutex<Slot>,
    /// Held by the one client that makes the first read; the others wait for it.
    first: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Slot {
    snapshot: Option<Arc<Snapshot>>,
    /// A background read is under way.
    reading: bool,
    /// Why the last read failed, until one succeeds.
    failed: Option<Arc<LedgerError>>,
}

impl Reader {
    pub fn new(path: PathBuf) -> Reader {
        Reader {
            path,
            slot: std::sync::Mutex::new(Slot::default()),
            first: tokio::sync::Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The latest snapshot (see [`Reader`]); an error while the ledger cannot be read.
    pub async fn current(self: &Arc<Self>) -> Result<Arc<Snapshot>, Arc<LedgerError>> {
        let stale = {
            let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = slot
                .snapshot
                .as_ref()
                .is_some_and(|s| s.taken.elapsed() < REFRESH);
            if slot.failed.is_none() && fresh {
                return Ok(Arc::clone(slot.snapshot.as_ref().expect("fresh")));
            }
            if slot.snapshot.is_some() || slot.failed.is_some() {
                if !std::mem::replace(&mut slot.reading, true) {
                    let me = Arc::clone(self);
                    tokio::task::spawn_blocking(move || me.read());
                }
                if let Some(e) = &slot.failed {
                    return Err(Arc::clone(e));
                }
            }
            slot.snapshot.clone()
        };
        if let Some(s) = stale {
            return Ok(s);
        }
        // The first read: one client makes it, the others (a hundred at once, say) wait for it.
        let _first = self.first.lock().await;
        if let Some(s) = self
            .slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .snapshot
            .clone()
        {
            return Ok(s);
        }
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || me.read())
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// Reads the ledger now and keeps what it read (or why it could not).
    fn read(&self) -> Result<Arc<Snapshot>, Arc<LedgerError>> {
        let previous = self
            .slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .snapshot
            .clone();
        let read = read(&self.path, previous.as_deref());
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.reading = false;
        match read {
            Ok(s) => {
                let s = Arc::new(s);
                slot.snapshot = Some(Arc::clone(&s));
                slot.failed = None;
                Ok(s)
            }
            Err(e) => {
                let e = Arc::new(e);
                slot.failed = Some(Arc::clone(&e));
                Err(e)
            }
        }
    }
}

/// Reads the run; what `previous` read of the same plan is kept.
fn read(path: &Path, previous: Option<&Snapshot>) -> Result<Snapshot, LedgerError> {
    let ledger = crate::ledger::open(path)?;
    let info = ledger.info()?;
    let same_plan = previous.filter(|p| p.fixed.info.plan_hash == info.plan_hash);
    let (fixed, steps) = match same_plan {
        Some(p) => (Arc::clone(&p.fixed), ledger.step_records()?),
        None => {
            let stored = ledger.load()?;
            let steps = stored.steps.clone();
            (Arc::new(fixed(stored)), steps)
        }
    };
    let holder = ledger.holder()?;
    let read_at = crate::ledger::now_ms();
    let plan = &fixed.plan;
    let states: Vec<StepState> = steps.iter().map(|r| r.state).collect();
    let sites = crate::status::site_states(plan, &states, |i| steps[i].quarantined());
    let reasons = crate::status::doc::site_reasons(plan, &steps);
    let open = steps
        .iter()
        .any(|r| matches!(r.state, StepState::Pending | StepState::Running));
    let ranges = match same_plan.map(|p| &p.ranges) {
        Some(r) if open && r.taken.elapsed() < RANGES_REFRESH => Arc::clone(r),
        _ => Arc::new(ranges(&fixed, &steps, read_at, open)),
    };
    Ok(Snapshot {
        fixed,
        steps,
        holder,
        read_at,
        taken: Instant::now(),
        sites,
        reasons,
        ranges,
        made: Made::default(),
    })
}

/// The time left from the recorded state, with the run's own pools and limits.
fn ranges(fixed: &Fixed, steps: &[StepRecord], now: i64, open: bool) -> Ranges {
    let left = open.then(|| {
        let opts = crate::status::doc::sim_options(&fixed.plan, &fixed.info);
        crate::sim::live::ranges(
            &fixed.plan,
            steps,
            &opts,
            now,
            trials_for(fixed.plan.steps.len()),
        )
    });
    Ranges {
        left,
        taken: Instant::now(),
    }
}

fn fixed(stored: Stored) -> Fixed {
    let customers = crate::status::customers::of_sites(&stored.plan, &stored.snapshot);
    let mut customer_names: Vec<String> = customers.iter().flatten().cloned().collect();
    customer_names.sort();
    customer_names.dedup();
    Fixed {
        info: stored.info,
        plan: Arc::new(stored.plan),
        customers,
        customer_names,
        inputs: stored.snapshot,
    }
}

/// The site a step belongs to, if any.
pub fn site_of(plan: &Plan, i: usize) -> Option<usize> {
    match plan.steps[i].owner {
        Owner::Site { site, .. } => Some(site as usize),
        Owner::Shared { .. } => None,
    }
}
