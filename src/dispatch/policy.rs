//! Scheduling policies: the order in which ready steps start. The same code orders real runs and
//! simulations.

use crate::plan::{Owner, Plan, StepIdx};

/// Which ready step starts first.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Highest upward rank (longest remaining path) first, then most urgent tier, then plan order.
    #[default]
    CriticalPath,
    /// In the order steps became ready.
    Fifo,
    /// Most urgent tier first, then critical path.
    TierFirst,
    /// Steps of the sites with the least total work first: the most sites back per hour.
    SmallestSiteFirst,
}

impl Policy {
    /// The name the `--policy` flag and the JSON documents use: `critical-path`.
    pub fn name(self) -> &'static str {
        match self {
            Policy::CriticalPath => "critical-path",
            Policy::Fifo => "fifo",
            Policy::TierFirst => "tier-first",
            Policy::SmallestSiteFirst => "smallest-site-first",
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Computes a step's priority key; smaller starts first.
pub struct Priorities {
    policy: Policy,
    site_work: Vec<u64>,
}

impl Priorities {
    pub fn new(plan: &Plan, policy: Policy) -> Priorities {
        let mut site_work = Vec::new();
        if policy == Policy::SmallestSiteFirst {
            site_work = vec![0u64; plan.sites.len()];
            for step in &plan.steps {
                if let Owner::Site { site, .. } = step.owner {
                    let w = &mut site_work[site as usize];
                    *w = w.saturating_add(crate::limits::millis(step.estimate));
                }
            }
        }
        Priorities { policy, site_work }
    }

    /// `seq` counts pushes into the ready queue (for FIFO).
    pub fn key(&self, plan: &Plan, idx: StepIdx, seq: u64) -> u128 {
        let step = &plan.steps[idx as usize];
        let urgency = u64::MAX - crate::limits::millis(step.rank);
        let tier = step.tier as u128;
        let idx = idx as u128;
        match self.policy {
            Policy::CriticalPath => ((urgency as u128) << 64) | (tier << 32) | idx,
            Policy::Fifo => ((seq as u128) << 32) | idx,
            Policy::TierFirst => (tier << 96) | (((urgency >> 32) as u128) << 32) | idx,
            Policy::SmallestSiteFirst => {
                let work = match step.owner {
                    Owner::Site { site, .. } => self.site_work[site as usize],
                    Owner::Shared { .. } => 0,
                };
                ((work.min(u64::MAX >> 1) as u128) << 64) | ((urgency >> 32) as u128) << 32 | idx
            }
        }
    }
}

/// The canary wave: the smallest site (least estimated work) of each tier, most urgent tier
/// first, then the smallest remaining sites, until `n` sites are chosen.
pub fn canary_sites(plan: &Plan, n: usize) -> Vec<u32> {
    let mut work = vec![0u64; plan.sites.len()];
    for step in &plan.steps {
        if let Owner::Site { site, .. } = step.owner {
            let w = &mut work[site as usize];
            *w = w.saturating_add(crate::limits::millis(step.estimate));
        }
    }
    let mut by_size: Vec<u32> = (0..plan.sites.len() as u32).collect();
    by_size.sort_by_key(|&s| (work[s as usize], s));
    let mut chosen: Vec<u32> = Vec::new();
    for tier in 0..plan.tiers.len() {
        if chosen.len() >= n {
            break;
        }
        if let Some(&s) = by_size
            .iter()
            .find(|&&s| plan.sites[s as usize].tier == tier)
        {
            chosen.push(s);
        }
    }
    for &s in &by_size {
        if chosen.len() >= n {
            break;
        }
        if !chosen.contains(&s) {
            chosen.push(s);
        }
    }
    chosen
}
