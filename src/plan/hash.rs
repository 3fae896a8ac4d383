//! The plan hash: SHA-256 over a canonical, length-prefixed serialization of everything that
//! decides what the plan does — steps, kinds, parameters, dependencies, pool use, estimates,
//! timeouts and retries — and nothing that only decides how fast (pool capacities).
//! Identical across runs and machines for the same inputs; see docs/plan-format.md.

use sha2::{Digest, Sha256};

use super::Plan;

/// Bumped whenever the canonical serialization changes.
const DOMAIN: &str = "drover-plan-v1";

pub(super) fn hash(plan: &Plan) -> String {
    let mut h = Canonical::new();
    h.str(DOMAIN);
    h.str(&plan.workflow);
    h.str(&plan.request);
    h.str(&plan.point_in_time);
    h.list(plan.tiers.iter());
    h.list(plan.pools.iter().map(|p| &p.name));
    h.num(plan.sites.len() as u64);
    for site in &plan.sites {
        h.str(site.id.as_str());
        h.str(&plan.tiers[site.tier]);
        h.list(site.products.iter().map(|&p| &plan.products[p as usize]));
    }
    h.num(plan.steps.len() as u64);
    for step in &plan.steps {
        let template = &plan.templates[step.template as usize];
        h.str(&step.id);
        h.str(&template.name);
        h.str(&template.kind);
        h.num(step.params.len() as u64);
        for (k, v) in &step.params {
            h.str(k);
            h.str(v);
        }
        h.list(step.deps.iter().map(|&d| &plan.steps[d as usize].id));
        h.num(step.uses.len() as u64);
        for &(pool, n) in &step.uses {
            h.str(&plan.pools[pool as usize].name);
            h.num(n.into());
        }
        h.num(crate::limits::millis(step.estimate));
        h.num(crate::limits::millis(step.timeout));
        h.num(step.retry.attempts.into());
        h.num(crate::limits::millis(step.retry.initial_backoff));
        h.num(crate::limits::millis(step.retry.max_backoff));
    }
    h.finish()
}

/// Length-prefixed fields, so no two different plans serialize to the same bytes. Gathered in
/// a buffer and handed to SHA-256 in large pieces: a 2-million-step plan has about 40 million
/// fields, and one digest call per field cost more than the digest itself.
struct Canonical {
    sha: Sha256,
    buf: Vec<u8>,
}

impl Canonical {
    const FLUSH: usize = 1 << 16;

    fn new() -> Canonical {
        Canonical {
            sha: Sha256::new(),
            buf: Vec::with_capacity(Self::FLUSH + 4096),
        }
    }

    fn num(&mut self, n: u64) {
        self.buf.extend_from_slice(&n.to_le_bytes());
    }

    fn str(&mut self, s: &str) {
        self.num(s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
        if self.buf.len() >= Self::FLUSH {
            self.sha.update(&self.buf);
            self.buf.clear();
        }
    }

    fn list<S: AsRef<str>>(&mut self, items: impl ExactSizeIterator<Item = S>) {
        self.num(items.len() as u64);
        for item in items {
            self.str(item.as_ref());
        }
    }

    fn finish(mut self) -> String {
        self.sha.update(&self.buf);
        hex::encode(self.sha.finalize())
    }
}
