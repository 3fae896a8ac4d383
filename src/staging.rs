//! drover's staging area (`<ledger>.staging/`, one directory per step) and what may be removed
//! from it. drover removes only what it recorded creating there: the directories of succeeded
//! `fetch` steps (their recorded output names them), once every step that reads them is done.
//! Anything else — files an operator put there, step logs, the data of a step still needed by an
//! unfinished one, any path outside the staging root — stays.

use std::path::{Component, Path, PathBuf};

use crate::backup::check::FETCH_KIND;
use crate::ledger::{StepRecord, StepState};
use crate::plan::Plan;

/// Where a run's steps keep their files: beside its ledger, `<state>.staging/`.
pub fn dir_for(state: &Path) -> PathBuf {
    let mut name = state.file_name().unwrap_or_default().to_os_string();
    name.push(".staging");
    state.with_file_name(name)
}

/// A fetched snapshot that may go.
#[derive(Clone, Debug, PartialEq)]
pub struct Removable {
    pub step: String,
    pub dir: PathBuf,
}

/// What a clean would remove, and how many fetched snapshots must stay.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cleanable {
    pub remove: Vec<Removable>,
    /// Fetched snapshots that an unfinished step still needs.
    pub still_needed: usize,
}

/// The fetch directories of `plan` that are recorded in `steps`, lie inside `root`, and whose
/// readers have all succeeded or been skipped.
pub fn cleanable(plan: &Plan, steps: &[StepRecord], root: &Path) -> Cleanable {
    let succ = plan.successors();
    let done = |i: usize| matches!(steps[i].state, StepState::Succeeded | StepState::Skipped);
    // A step's staging directory is `<root>/<step id>`: one whose ID extends another's
    // (`a/b/fetch` under `a/b`) lives inside it, and must not go with it.
    let ids: std::collections::BTreeSet<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
    let holds_another = |id: &str| {
        let under = format!("{id}/");
        ids.range(under.as_str()..)
            .next()
            .is_some_and(|next| next.starts_with(&under))
    };
    let mut out = Cleanable::default();
    for (i, step) in plan.steps.iter().enumerate() {
        if plan.kind(step) != FETCH_KIND || steps[i].state != StepState::Succeeded {
            continue;
        }
        let Some(dir) = recorded_dir(&steps[i]) else {
            continue;
        };
        if !inside(&dir, root) || !dir.exists() || holds_another(&step.id) {
            continue;
        }
        if succ.of(i).iter().all(|&s| done(s as usize)) {
            out.remove.push(Removable {
                step: step.id.clone(),
                dir,
            });
        } else {
            out.still_needed += 1;
        }
    }
    out
}

/// Removes the directories and returns the bytes freed.
pub fn remove(dirs: &[Removable]) -> std::io::Result<u64> {
    let mut freed = 0;
    for r in dirs {
        freed += crate::util::dir_size(&r.dir);
        std::fs::remove_dir_all(&r.dir)?;
    }
    Ok(freed)
}

/// How many bytes removing `dirs` would free.
pub fn size(dirs: &[Removable]) -> u64 {
    dirs.iter().map(|r| crate::util::dir_size(&r.dir)).sum()
}

fn recorded_dir(record: &StepRecord) -> Option<PathBuf> {
    let output: serde_json::Value = serde_json::from_str(record.output.as_deref()?).ok()?;
    output["dir"].as_str().map(PathBuf::from)
}

/// Whether `dir` is strictly below `root`, judged on the path's text (no `..`, no symlink
/// resolution needed for a path that drover itself recorded).
fn inside(dir: &Path, root: &Path) -> bool {
    let (Ok(dir), Ok(root)) = (std::path::absolute(dir), std::path::absolute(root)) else {
        return false;
    };
    dir != root
        && dir.starts_with(&root)
        && !dir.components().any(|c| matches!(c, Component::ParentDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_strictly_below_the_root_count() {
        let root = Path::new("/var/drover/run.db.staging");
        assert!(inside(&root.join("shard/wiki-1/fetch-shard"), root));
        assert!(!inside(root, root));
        assert!(!inside(Path::new("/var/drover/backups"), root));
        assert!(!inside(&root.join("../backups"), root));
    }
}
