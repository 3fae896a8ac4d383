//! `drover retry` and `drover skip`: operator repairs recorded in the ledger. They take the ledger
//! lock (so they never race a live run) and change only step states; `drover resume` then runs
//! what they released.

use std::path::PathBuf;

use clap::Args;

use super::{Done, Failure};
use crate::ledger::SessionMode;
use crate::ledger::lock::Holder;
use crate::ledger::{Op, StepState, Stored, now_ms};
use crate::plan::{Owner, StepIdx};

#[derive(Args, Debug)]
pub struct RetryArgs {
    /// The run's ledger.
    #[arg(long, short)]
    state: PathBuf,
    /// Only this site's failed and blocked steps (and the failed steps that block them).
    #[arg(long, conflicts_with = "step")]
    site: Option<String>,
    /// Only this step (and, if it is blocked, the failed steps that block it).
    #[arg(long)]
    step: Option<String>,
}

#[derive(Args, Debug)]
pub struct SkipArgs {
    /// The run's ledger.
    #[arg(long, short)]
    state: PathBuf,
    /// The failed step to skip, e.g. site-0042/wiki/validate.
    #[arg(long)]
    step: String,
    /// Why it is safe to skip; recorded in the ledger.
    #[arg(long)]
    reason: String,
}

pub fn retry(args: RetryArgs) -> Result<Done, Failure> {
    with_lock(&args.state, SessionMode::Retry, |stored| {
        let targets: Vec<StepIdx> = match (&args.site, &args.step) {
            (Some(site), _) => {
                let s = stored
                    .plan
                    .sites
                    .iter()
                    .position(|x| x.id.as_str() == site)
                    .ok_or_else(|| unknown(&args.state, "site", site))?
                    as u32;
                let of_site = |i: &StepIdx| matches!(stored.plan.steps[*i as usize].owner, Owner::Site { site, .. } if site == s);
                let own: Vec<StepIdx> = (0..stored.plan.steps.len() as StepIdx)
                    .filter(of_site)
                    .collect();
                with_failed_ancestors(stored, &own)
            }
            (None, Some(step)) => {
                let i =
                    find_step(stored, step).ok_or_else(|| unknown(&args.state, "step", step))?;
                with_failed_ancestors(stored, &[i])
            }
            (None, None) => (0..stored.plan.steps.len() as StepIdx).collect(),
        };
        let at = now_ms();
        let ops: Vec<Op> = targets
            .into_iter()
            .filter(|&i| {
                matches!(
                    stored.steps[i as usize].state,
                    StepState::Failed | StepState::Blocked
                )
            })
            .map(|step| Op::Requeue {
                step,
                at,
                reason: "drover retry".into(),
            })
            .collect();
        let was_failed = |op: &&Op| {
            matches!(op, Op::Requeue { step, .. }
                if stored.steps[*step as usize].state == StepState::Failed)
        };
        let failed = ops.iter().filter(was_failed).count();
        Ok((
            ops.clone(),
            format!(
                "re-queued {failed} failed and {} blocked steps",
                ops.len() - failed
            ),
        ))
    })
}

pub fn skip(args: SkipArgs) -> Result<Done, Failure> {
    with_lock(&args.state, SessionMode::Skip, |stored| {
        let i = find_step(stored, &args.step)
            .ok_or_else(|| unknown(&args.state, "step", &args.step))?;
        let state = stored.steps[i as usize].state;
        if state != StepState::Failed {
            return Err(super::refuse(
                &args.state,
                "--step",
                format!(
                    "step {} is {}; only a failed step can be skipped",
                    args.step,
                    state.as_str()
                ),
                "check the step with `drover status`",
            ));
        }
        if args.reason.trim().is_empty() {
            return Err(super::refuse(
                std::path::Path::new("--reason"),
                "--reason",
                "the reason is empty".into(),
                "say why skipping this step is safe; it is kept in the ledger",
            ));
        }
        let at = now_ms();
        let mut ops = vec![Op::Skip {
            step: i,
            at,
            reason: args.reason.clone(),
        }];
        let succ = stored.plan.successors();
        let mut stack = succ.of(i as usize).to_vec();
        let mut seen = std::collections::HashSet::new();
        while let Some(s) = stack.pop() {
            if seen.insert(s) && stored.steps[s as usize].state == StepState::Blocked {
                ops.push(Op::Requeue {
                    step: s,
                    at,
                    reason: format!("{} skipped", args.step),
                });
                stack.extend_from_slice(succ.of(s as usize));
            }
        }
        let msg = format!(
            "skipped {} and released {} blocked steps",
            args.step,
            ops.len() - 1
        );
        Ok((ops, msg))
    })
}

/// Opens the ledger under its lock, computes ops from its contents, records them.
fn with_lock(
    state: &std::path::Path,
    mode: SessionMode,
    f: impl FnOnce(&Stored) -> Result<(Vec<Op>, String), Failure>,
) -> Result<Done, Failure> {
    let mut ledger = crate::ledger::open(state)?;
    let me = Holder::current();
    ledger.acquire(&me)?;
    let result = (|| {
        let stored = ledger.load()?;
        let (ops, message) = f(&stored)?;
        let argv = super::shared::argv();
        ledger.record_session(mode, &argv, &me, &stored.info.plan_hash)?;
        ledger.apply(&ops)?;
        Ok::<_, Failure>(message)
    })();
    ledger.release()?;
    let message = result?;
    errln!(
        "{message}; continue with: drover resume --state {}",
        state.display()
    );
    Ok(Done::Ok)
}

fn find_step(stored: &Stored, id: &str) -> Option<StepIdx> {
    stored
        .plan
        .steps
        .iter()
        .position(|s| s.id == id)
        .map(|i| i as StepIdx)
}

/// The given steps plus every failed step among their ancestors (what blocks them).
fn with_failed_ancestors(stored: &Stored, steps: &[StepIdx]) -> Vec<StepIdx> {
    let mut out: Vec<StepIdx> = steps.to_vec();
    let mut stack: Vec<StepIdx> = steps
        .iter()
        .filter(|&&i| stored.steps[i as usize].state == StepState::Blocked)
        .copied()
        .collect();
    let mut seen = std::collections::HashSet::new();
    while let Some(s) = stack.pop() {
        for &d in &stored.plan.steps[s as usize].deps {
            if !seen.insert(d) {
                continue;
            }
            match stored.steps[d as usize].state {
                StepState::Failed => out.push(d),
                StepState::Blocked => {
                    out.push(d);
                    stack.push(d);
                }
                _ => {}
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn unknown(state: &std::path::Path, what: &'static str, name: &str) -> Failure {
    super::refuse(
        state,
        &format!("--{what}"),
        format!("this run has no {what} '{name}'"),
        &format!(
            "check the {what} ID with `drover status --state {}`",
            state.display()
        ),
    )
}
