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
    /// Simulate every other policy on this restore and use the one that finishes soonest; of
    /// those within 2 % of it, the one whose sites are back soonest on average.
    #[default]
    Auto,
    /// Sites one after another, each next site the one that unlocks the most restore work per
    /// unit of fetching still needed (sites that share shard snapshots go together).
    Flow,
    /// Highest upward rank (longest remaining path) first, then most urgent tier, then plan order.
    CriticalPath,
    /// Steps of the sites with the most total work first.
    LargestSiteFirst,
    /// Most urgent tier first; within a tier, sites in `flow` order.
    TierFirst,
    /// Steps of the sites with the least total work first: the most sites back per hour.
    SmallestSiteFirst,
    /// In the order steps became ready.
    Fifo,
}

impl Policy {
    /// Every policy but `auto`: what `auto` chooses from.
    pub const CONCRETE: [Policy; 6] = [
        Policy::Flow,
        Policy::CriticalPath,
        Policy::LargestSiteFirst,
        Policy::TierFirst,
        Policy::SmallestSiteFirst,
        Policy::Fifo,
    ];

    /// The name the `--policy` flag and the JSON documents use: `critical-path`.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Auto => "auto",
            Policy::Flow => "flow",
            Policy::CriticalPath => "critical-path",
            Policy::LargestSiteFirst => "largest-site-first",
            Policy::TierFirst => "tier-first",
            Policy::SmallestSiteFirst => "smallest-site-first",
            Policy::Fifo => "fifo",
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Each step's place in the policy's order; smaller starts first.
pub struct Priorities {
    /// Per step, its place (unused under `fifo`, which orders by arrival).
    place: Vec<u32>,
    /// The step at each place; `None` under `fifo`.
    by_place: Option<std::sync::Arc<[StepIdx]>>,
}

impl Priorities {
    /// `auto` is chosen by simulation before a run (`sim::compare`); unresolved, it orders as
    /// `flow`, which it most often chooses.
    pub fn new(
        plan: &Plan,
        succ: &crate::plan::rank::Successors,
        policy: Policy,
        capacity: &[u32],
    ) -> Priorities {
        let policy = match policy {
            Policy::Auto => Policy::Flow,
            p => p,
        };
        if policy == Policy::Fifo {
            return Priorities {
                place: Vec::new(),
                by_place: None,
            };
        }
        let site_order = site_order(plan, succ, policy, capacity);
        // Keys end in the step's index, so they are distinct and sorting them is the order.
        let mut keys: Vec<u128> = (0..plan.steps.len() as StepIdx)
            .map(|idx| key(plan, &site_order, policy, idx))
            .collect();
        keys.sort_unstable();
        let by_place: std::sync::Arc<[StepIdx]> =
            keys.iter().map(|&k| k as u32 as StepIdx).collect();
        let mut place = vec![0u32; plan.steps.len()];
        for (p, &idx) in by_place.iter().enumerate() {
            place[idx as usize] = p as u32;
        }
        Priorities {
            place,
            by_place: Some(by_place),
        }
    }

    /// The step at each place, for the ready queue; `None`: order by arrival.
    pub fn by_place(&self) -> Option<std::sync::Arc<[StepIdx]>> {
        self.by_place.clone()
    }

    /// The queue key of a step becoming ready: its place, or under `fifo` `seq`, which counts
    /// pushes into the ready queue.
    pub fn key(&self, idx: StepIdx, seq: u64) -> u64 {
        match self.by_place {
            Some(_) => self.place[idx as usize].into(),
            None => seq,
        }
    }
}

/// Per step, for the site-ordered policies: its site's place in the order; a shared step takes
/// the place of the first site that needs it, so a shard's snapshot is fetched when its first
/// site is next, not before every site's work. Empty for the others.
fn site_order(
    plan: &Plan,
    succ: &crate::plan::rank::Successors,
    policy: Policy,
    capacity: &[u32],
) -> Vec<u64> {
    let place: Vec<u64> = match policy {
        Policy::SmallestSiteFirst => site_work(plan),
        Policy::LargestSiteFirst => site_work(plan).iter().map(|w| u64::MAX - w).collect(),
        // `auto` is resolved before this; unresolved it orders as `flow`.
        Policy::Flow | Policy::TierFirst | Policy::Auto => flow_order(plan, succ, capacity),
        Policy::CriticalPath | Policy::Fifo => return Vec::new(),
    };
    plan.steps
        .iter()
        .enumerate()
        .map(|(i, step)| match step.owner {
            Owner::Site { site, .. } => place[site as usize],
            Owner::Shared { .. } => succ
                .of(i)
                .iter()
                .filter_map(|&s| match plan.steps[s as usize].owner {
                    Owner::Site { site, .. } => Some(place[site as usize]),
                    Owner::Shared { .. } => None,
                })
                .min()
                .unwrap_or(0),
        })
        .collect()
}

/// A step's priority key under a fixed-order policy; smaller starts first.
fn key(plan: &Plan, site_order: &[u64], policy: Policy, idx: StepIdx) -> u128 {
    let step = &plan.steps[idx as usize];
    let urgency = u64::MAX - crate::limits::millis(step.rank);
    let tier = step.tier as u128;
    let i = idx as u128;
    match policy {
        Policy::TierFirst => (tier << 96) | ((site_order[idx as usize] as u128) << 32) | i,
        Policy::SmallestSiteFirst | Policy::LargestSiteFirst | Policy::Flow | Policy::Auto => {
            let order = site_order[idx as usize];
            ((order as u128) << 64) | ((urgency >> 32) as u128) << 32 | i
        }
        Policy::CriticalPath | Policy::Fifo => ((urgency as u128) << 64) | (tier << 32) | i,
    }
}

fn site_work(plan: &Plan) -> Vec<u64> {
    let mut site_work = vec![0u64; plan.sites.len()];
    for step in &plan.steps {
        if let Owner::Site { site, .. } = step.owner {
            let w = &mut site_work[site as usize];
            *w = w.saturating_add(crate::limits::millis(step.estimate));
        }
    }
    site_work
}

/// Sites in the order that unlocks the most downstream work per unit of first-stage work: a
/// site's first pooled steps (its fetches) plus the shared steps it needs that no earlier site
/// needed (its shards' snapshots), against the rest of its pooled work; each step's work ÷ its
/// pool's capacity. Greedy: the next site is the best by that ratio once the earlier sites'
/// shared steps are counted as done. Returns each site's place.
fn flow_order(plan: &Plan, succ: &crate::plan::rank::Successors, capacity: &[u32]) -> Vec<u64> {
    let n = plan.sites.len();
    let norm = |i: usize| -> f64 {
        let step = &plan.steps[i];
        step.uses
            .iter()
            .map(|&(p, u)| {
                crate::limits::millis(step.estimate) as f64 * u as f64
                    / capacity[p as usize].max(1) as f64
            })
            .sum()
    };
    let (mut own, mut down) = (vec![0f64; n], vec![0f64; n]);
    let mut shared_of: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut sites_of: std::collections::HashMap<usize, Vec<usize>> = Default::default();
    let order = crate::plan::rank::topological_order(plan, succ);
    let mut after_pooled = vec![false; plan.steps.len()];
    for &i in &order {
        let i = i as usize;
        let step = &plan.steps[i];
        let Owner::Site { site, .. } = step.owner else {
            continue;
        };
        let site = site as usize;
        let mut behind = false;
        for &d in &step.deps {
            let d = d as usize;
            match plan.steps[d].owner {
                Owner::Site { .. } => {
                    behind |= after_pooled[d] || !plan.steps[d].uses.is_empty();
                }
                Owner::Shared { .. } => {
                    if !shared_of[site].contains(&d) {
                        shared_of[site].push(d);
                        sites_of.entry(d).or_default().push(site);
                    }
                }
            }
        }
        after_pooled[i] = behind;
        if behind {
            down[site] += norm(i);
        } else {
            own[site] += norm(i);
        }
    }
    let mut opened = vec![false; plan.steps.len()];
    let up = |site: usize, opened: &[bool]| -> f64 {
        own[site]
            + shared_of[site]
                .iter()
                .filter(|&&d| !opened[d])
                .map(|&d| norm(d))
                .sum::<f64>()
    };
    #[derive(PartialEq)]
    struct Entry(f64, f64, std::cmp::Reverse<usize>, u32);
    impl Eq for Entry {}
    impl PartialOrd for Entry {
        fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(o))
        }
    }
    impl Ord for Entry {
        fn cmp(&self, o: &Self) -> std::cmp::Ordering {
            self.0
                .total_cmp(&o.0)
                .then(self.1.total_cmp(&o.1))
                .then(self.2.cmp(&o.2))
        }
    }
    let ratio = |site: usize, opened: &[bool]| down[site] / up(site, opened).max(1.0);
    let mut version = vec![0u32; n];
    let mut heap: std::collections::BinaryHeap<Entry> = (0..n)
        .map(|s| Entry(ratio(s, &opened), down[s], std::cmp::Reverse(s), 0))
        .collect();
    let mut place = vec![0u64; n];
    let mut placed = vec![false; n];
    let mut k = 0u64;
    while let Some(Entry(_, _, std::cmp::Reverse(s), v)) = heap.pop() {
        if placed[s] || v != version[s] {
            continue;
        }
        placed[s] = true;
        place[s] = k;
        k += 1;
        for &d in &shared_of[s] {
            if std::mem::replace(&mut opened[d], true) {
                continue;
            }
            for &other in &sites_of[&d] {
                if !placed[other] {
                    version[other] += 1;
                    heap.push(Entry(
                        ratio(other, &opened),
                        down[other],
                        std::cmp::Reverse(other),
                        version[other],
                    ));
                }
            }
        }
    }
    place
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
