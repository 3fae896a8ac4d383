//! Expansion: every (site, product, template), (site, template) and (shared unit, template)
//! instance, with rendered parameters, resolved dependencies, pool use and estimates.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::params::{Params, Recent};
use super::{Owner, Plan, PlanOptions, PoolPlan, SitePlan, Step, StepIdx, TemplateInfo};
use crate::diag::{Location, Problem, ProblemKind};
use crate::limits;
use crate::request::{Request, Site};
use crate::workflow::{Scope, Template, Workflow};

const NONE: StepIdx = StepIdx::MAX;

pub(super) fn expand(
    wf: &Workflow,
    req: &Request,
    opts: &PlanOptions,
) -> Result<Plan, Vec<Problem>> {
    let mut order: Vec<&Site> = req.sites.iter().collect();
    order.sort_by(|a, b| a.id.cmp(&b.id));
    if order.len() >= PARALLEL_SITES
        && let Some(x) = in_halves(wf, req, opts, &order)
    {
        return Ok(x.finish(req));
    }
    let mut x = Expander::new(wf, req, opts, 0, order.len(), order.len());
    x.sites_in(&order);
    if !x.problems.is_empty() {
        return Err(x.problems);
    }
    Ok(x.finish(req))
}

/// From this many sites on, the two halves of the request are expanded on two threads.
const PARALLEL_SITES: usize = 20_000;

/// Expands the two halves of the sites at once and joins them into what one pass in site order
/// makes, step for step. `None` when either half found a problem (or joining does): the caller
/// then expands in one pass, which reports problems exactly as always.
fn in_halves<'a>(
    wf: &'a Workflow,
    req: &'a Request,
    opts: &PlanOptions,
    order: &[&'a Site],
) -> Option<Expander<'a>> {
    let mid = order.len() / 2;
    let (head, tail) = order.split_at(mid);
    let (mut x, y) = std::thread::scope(|scope| {
        let second = scope.spawn(|| {
            let mut y = Expander::new(wf, req, opts, mid as u32, tail.len(), tail.len());
            y.sites_in(tail);
            y
        });
        let mut x = Expander::new(wf, req, opts, 0, head.len(), order.len());
        x.sites_in(head);
        let y = second
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        (x, y)
    });
    if !x.problems.is_empty() || !y.problems.is_empty() {
        return None;
    }
    x.append(y).then_some(x)
}

struct Expander<'a> {
    wf: &'a Workflow,
    req: &'a Request,
    capacity: Vec<u32>,
    steps: Vec<Step>,
    sites: Vec<SitePlan>,
    problems: Vec<Problem>,
    /// `[site][product][template]` → step, flattened.
    product_slot: Vec<StepIdx>,
    /// `[site][template]` → step, flattened.
    site_slot: Vec<StepIdx>,
    /// (template, unit value) → step, and the product that first claimed the unit.
    shared: HashMap<(usize, &'a str), (StepIdx, usize)>,
    /// Σ of the scaling attribute over a shared step's sites.
    shared_scale: HashMap<StepIdx, f64>,
    pit: String,
    /// The request's backup window, in humantime form.
    window: String,
    /// Per template: its param keys, and the recent values of each (shared between steps).
    params: Vec<(Vec<Arc<str>>, Vec<Recent>)>,
    /// Where params are rendered before they are shared.
    buf: String,
    /// Where a step's dependencies are gathered before they are set.
    deps: Vec<StepIdx>,
    /// The request-wide index of this expander's first site (`in_halves`).
    first: u32,
    /// Each shared step's scaling values in site order, so a second half's sums can be added to
    /// the first's in the order one pass would have (`append`).
    scale_log: Vec<(StepIdx, f64)>,
}

impl<'a> Expander<'a> {
    /// An expander for `n_sites` sites, the first of them at `first` in the request's order,
    /// with room for the steps of `room` sites.
    fn new(
        wf: &'a Workflow,
        req: &'a Request,
        opts: &PlanOptions,
        first: u32,
        n_sites: usize,
        room: usize,
    ) -> Self {
        let (p, t) = (wf.products.len(), wf.templates.len());
        let capacity = wf
            .pools
            .iter()
            .map(|pool| {
                opts.pool_capacity
                    .get(&pool.name)
                    .copied()
                    .unwrap_or(pool.capacity)
            })
            .collect();
        Expander {
            wf,
            req,
            capacity,
            // At most this many: every site with every product (a `Vec` reserves address
            // space; only the steps written take memory). Growing a vector of 2 million
            // steps would copy half a gigabyte.
            steps: Vec::with_capacity(
                room * wf
                    .templates
                    .iter()
                    .map(|t| match t.scope {
                        Scope::Site => 1,
                        _ => p,
                    })
                    .sum::<usize>(),
            ),
            sites: Vec::with_capacity(n_sites),
            problems: Vec::new(),
            product_slot: vec![NONE; n_sites * p * t],
            site_slot: vec![NONE; n_sites * t],
            shared: HashMap::new(),
            shared_scale: HashMap::new(),
            pit: req
                .point_in_time
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            window: humantime::format_duration(req.backup_window).to_string(),
            params: wf
                .templates
                .iter()
                .map(|t| {
                    let keys = t.params.keys().map(|k| Arc::from(k.as_str())).collect();
                    (keys, t.params.keys().map(|_| Recent::default()).collect())
                })
                .collect(),
            buf: String::new(),
            deps: Vec::new(),
            first,
            scale_log: Vec::new(),
        }
    }

    /// Expands and links these sites, in order. Each site is linked right after it is expanded,
    /// while its steps are still in cache: the shared units it names exist by then (the first
    /// site to name one creates it).
    fn sites_in(&mut self, sites: &[&'a Site]) {
        for (s, site) in sites.iter().enumerate() {
            self.site(s as u32, site);
            self.link_site(s as u32, site);
        }
    }

    /// Appends the steps of the sites that follow this expander's (`next`, expanded on its own),
    /// so that the result is what one pass over both would have made: a shared unit both name
    /// is the step this one made (its tier the more urgent, its dependencies the first site's
    /// that had any, its scaling sum continued in site order), and every index is renumbered.
    /// False when joining finds a problem one pass would have reported.
    fn append(&mut self, next: Expander<'a>) -> bool {
        let Expander {
            steps,
            sites,
            shared,
            scale_log,
            ..
        } = next;
        let keys: HashMap<StepIdx, (usize, &'a str)> =
            shared.iter().map(|(&key, &(idx, _))| (idx, key)).collect();
        // Where each of `next`'s steps lands here.
        let mut to = Vec::with_capacity(steps.len());
        let mut count = self.steps.len() as StepIdx;
        for (i, step) in steps.iter().enumerate() {
            let Owner::Shared { product, .. } = &step.owner else {
                to.push(count);
                count += 1;
                continue;
            };
            let product = *product as usize;
            let Some(&key) = keys.get(&(i as StepIdx)) else {
                return false;
            };
            match self.shared.get(&key) {
                Some(&(_, first)) if first != product => return false,
                Some(&(idx, _)) => to.push(idx),
                None => {
                    self.shared.insert(key, (count, product));
                    to.push(count);
                    count += 1;
                }
            }
        }
        let ours = self.steps.len();
        for (i, mut step) in steps.into_iter().enumerate() {
            for d in &mut step.deps {
                *d = to[*d as usize];
            }
            step.deps.sort_unstable();
            step.deps.dedup();
            let at = to[i] as usize;
            if at >= ours {
                self.steps.push(step);
                continue;
            }
            let mine = &mut self.steps[at];
            mine.tier = mine.tier.min(step.tier);
            if mine.deps.is_empty() {
                mine.deps = step.deps;
            }
        }
        for (local, v) in scale_log {
            let idx = to[local as usize];
            let sum = self.shared_scale.entry(idx).or_default();
            *sum += v;
            let template = &self.wf.templates[self.steps[idx as usize].template as usize];
            if let Some((_, per)) = &template.estimate.scale
                && limits::scaled(template.estimate.base, *per, *sum).is_none()
            {
                return false;
            }
        }
        self.sites.extend(sites);
        true
    }

    fn report(&mut self, at: &Location, entry: String, kind: ProblemKind) {
        self.problems.push(Problem::new(at.clone(), entry, kind));
    }

    /// Resolves the site's products and creates its instances (dependencies come later).
    fn site(&mut self, s: u32, site: &'a Site) {
        let wf = self.wf;
        let products = self.products_of(site);
        for (t, template) in wf.templates.iter().enumerate() {
            match &template.scope {
                Scope::Product => {
                    for &p in products.iter().filter(|&&p| template.applies_to(p)) {
                        if !self.holds(template, site, Some(p)) {
                            continue;
                        }
                        let id = join(&[site.id.as_str(), &wf.products[p].name, &template.name]);
                        let idx = self.instance(
                            id,
                            t,
                            Owner::Site {
                                site: self.first + s,
                                product: Some(p as u16),
                            },
                            site,
                        );
                        let slot = self.pslot(s, p, t);
                        self.product_slot[slot] = idx;
                    }
                }
                Scope::Site => {
                    if !self.holds(template, site, None) {
                        continue;
                    }
                    let id = join(&[site.id.as_str(), &template.name]);
                    let idx = self.instance(
                        id,
                        t,
                        Owner::Site {
                            site: self.first + s,
                            product: None,
                        },
                        site,
                    );
                    self.site_slot[s as usize * wf.templates.len() + t] = idx;
                }
                Scope::Shared { attribute } => {
                    for &p in products.iter().filter(|&&p| template.applies_to(p)) {
                        if self.holds(template, site, Some(p)) {
                            self.join_shared(site, t, attribute, p);
                        }
                    }
                }
            }
        }
        self.sites.push(SitePlan {
            id: site.id.clone(),
            tier: site.tier,
            products: products.iter().map(|&p| p as u16).collect(),
        });
    }

    /// Whether the template's `when` condition holds for this site (and product); a site that
    /// lacks the attribute, with no default, is reported.
    fn holds(&mut self, template: &Template, site: &Site, product: Option<usize>) -> bool {
        let Some(cond) = &template.when else {
            return true;
        };
        let product_name = product.map(|p| self.wf.products[p].name.as_str());
        match cond.holds(attr(site, product_name, &cond.attribute)) {
            Some(h) => h,
            None => {
                let kind = ProblemKind::MissingAttribute {
                    attribute: cond.attribute.clone(),
                    site: site.id.to_string(),
                    product: product_name.map(str::to_owned),
                };
                let entry = format!("site {} (condition of step '{}')", site.id, template.name);
                if !self.problems.iter().any(|p| p.entry == entry) {
                    self.report(&site.at, entry, kind);
                }
                false
            }
        }
    }

    fn pslot(&self, s: u32, p: usize, t: usize) -> usize {
        (s as usize * self.wf.products.len() + p) * self.wf.templates.len() + t
    }

    /// The site's product indices in workflow order, with unknown names and missing
    /// dependencies reported.
    fn products_of(&mut self, site: &Site) -> Vec<usize> {
        let (names, at) = match (&site.products, &self.req.default_products) {
            (Some(own), _) => (own.clone(), site.at.clone()),
            (None, Some((default, at))) => (default.clone(), at.clone()),
            (None, None) => {
                let kind = ProblemKind::Invalid {
                    message: "the site lists no products and the request has no default `products`"
                        .into(),
                    fix: "give the site a products list, or set request.products".into(),
                };
                self.report(&site.at, format!("site {}", site.id), kind);
                return Vec::new();
            }
        };
        let mut products = Vec::new();
        for name in &names {
            match self.wf.product_index(name) {
                Some(p) if !products.contains(&p) => products.push(p),
                Some(_) => {}
                None => {
                    let known = self.wf.products.iter().map(|p| p.name.clone()).collect();
                    self.report(
                        &at,
                        format!("site {} products", site.id),
                        ProblemKind::Unknown {
                            what: "product",
                            name: name.clone(),
                            known,
                        },
                    );
                }
            }
        }
        if products.is_empty() && self.problems.is_empty() {
            let kind = ProblemKind::Invalid {
                message: "the site's product list is empty".into(),
                fix: "list at least one product".into(),
            };
            self.report(&at, format!("site {}", site.id), kind);
        }
        products.sort_unstable();
        for &p in &products {
            for &q in &self.wf.products[p].after {
                if !products.contains(&q) {
                    let kind = ProblemKind::MissingProductDependency {
                        site: site.id.to_string(),
                        product: self.wf.products[p].name.clone(),
                        needs: self.wf.products[q].name.clone(),
                    };
                    self.report(&site.at, format!("site {} products", site.id), kind);
                }
            }
        }
        products
    }

    fn join_shared(&mut self, site: &'a Site, t: usize, attribute: &str, p: usize) {
        let wf = self.wf;
        let Some(unit) = attr(site, Some(&self.wf.products[p].name), attribute) else {
            let kind = ProblemKind::MissingAttribute {
                attribute: attribute.to_owned(),
                site: site.id.to_string(),
                product: Some(self.wf.products[p].name.clone()),
            };
            self.report(
                &site.at,
                format!(
                    "site {} (needed by step '{}')",
                    site.id, self.wf.templates[t].name
                ),
                kind,
            );
            return;
        };
        // A shared unit's name becomes a step ID, a backup unit and a staging path.
        if let Err(message) = crate::ids::check_name(unit) {
            let kind = ProblemKind::Invalid {
                message: format!("attribute '{attribute}': {message}"),
                fix: "name shared units like 'wiki-3'".into(),
            };
            self.report(&site.at, format!("site {} attrs", site.id), kind);
            return;
        }
        let template = &wf.templates[t];
        let idx = match self.shared.get(&(t, unit)) {
            Some(&(idx, first)) if first != p => {
                let kind = ProblemKind::Invalid {
                    message: format!(
                        "shared unit '{unit}' is named by products '{}' and '{}'",
                        self.wf.products[first].name, self.wf.products[p].name
                    ),
                    fix: "give each product's units distinct names, e.g. wiki-3 and issues-3"
                        .into(),
                };
                self.report(&site.at, format!("site {} attrs", site.id), kind);
                idx
            }
            Some(&(idx, _)) => idx,
            None => {
                let id = format!("{attribute}/{unit}/{}", template.name);
                let owner = Owner::Shared {
                    attribute: attribute.to_owned(),
                    unit: unit.to_owned(),
                    product: p as u16,
                };
                let idx = self.instance(id, t, owner, site);
                self.shared.insert((t, unit), (idx, p));
                idx
            }
        };
        let step = &mut self.steps[idx as usize];
        step.tier = step.tier.min(site.tier);
        if let Some((attribute, per)) = &template.estimate.scale {
            let product = wf.products[p].name.as_str();
            if let Some(v) = self.number(site, Some(product), attribute, t) {
                self.scale_log.push((idx, v));
                let sum = self.shared_scale.entry(idx).or_default();
                *sum += v;
                let sum = *sum;
                if limits::scaled(template.estimate.base, *per, sum).is_none() {
                    let id = self.steps[idx as usize].id.clone();
                    self.too_long(
                        site,
                        t,
                        format!("{attribute} summed over the sites of {id} = {sum}"),
                    );
                }
            }
        }
    }

    /// Creates one instance with rendered params, pool use and its unscaled-or-scaled estimate.
    fn instance(&mut self, id: String, t: usize, owner: Owner, site: &Site) -> StepIdx {
        let wf = self.wf;
        let template = &wf.templates[t];
        let product = match &owner {
            Owner::Site {
                product: Some(p), ..
            }
            | Owner::Shared { product: p, .. } => Some(wf.products[*p as usize].name.as_str()),
            _ => None,
        };
        let mut buf = std::mem::take(&mut self.buf);
        let mut params = Vec::with_capacity(template.params.len());
        for (k, (key, value)) in template.params.iter().enumerate() {
            let rendered = value.render_into(&mut buf, |var| {
                self.var(var, &owner, site, product, &template.name)
            });
            match rendered {
                Ok(()) => {
                    let (keys, recent) = &mut self.params[t];
                    params.push((keys[k].clone(), recent[k].share(&buf)));
                }
                Err(var) => {
                    let var = var.as_str();
                    let site_for = if matches!(owner, Owner::Shared { .. }) {
                        None
                    } else {
                        Some(site)
                    };
                    self.missing_var(var, site_for, template, key, product);
                }
            }
        }
        self.buf = buf;
        // The template's keys are in order already (a BTreeMap), so this only wraps them.
        let params = Params::from_pairs(params);
        let estimate = match (&template.estimate.scale, &owner) {
            (Some((attribute, per)), Owner::Site { .. }) => {
                let v = self.number(site, product, attribute, t).unwrap_or(0.0);
                limits::scaled(template.estimate.base, *per, v).unwrap_or_else(|| {
                    self.too_long(site, t, format!("{attribute} = {v}"));
                    template.estimate.base
                })
            }
            _ => template.estimate.base,
        };
        let uses: Vec<(u16, u32)> = template
            .uses
            .iter()
            .map(|&(pool, n)| (pool as u16, n))
            .collect();
        for &(pool, n) in &uses {
            let cap = self.capacity[pool as usize];
            if n > cap {
                let wf_at = Location {
                    file: self.wf.file.clone(),
                    line: Some(template.line),
                    column: None,
                };
                let kind = ProblemKind::PoolTooSmall {
                    pool: self.wf.pools[pool as usize].name.clone(),
                    needs: n,
                    capacity: cap,
                };
                if !self.problems.iter().any(|p| p.at == wf_at) {
                    self.report(&wf_at, format!("steps.{}.uses", template.name), kind);
                }
            }
        }
        self.steps.push(Step {
            id,
            template: t as u16,
            owner,
            params,
            deps: Vec::new(),
            uses,
            estimate,
            timeout: template.timeout,
            retry: template.retry,
            rank: Duration::ZERO,
            tier: site.tier,
        });
        (self.steps.len() - 1) as StepIdx
    }

    fn var<'s>(
        &'s self,
        var: &str,
        owner: &'s Owner,
        site: &'s Site,
        product: Option<&'s str>,
        step: &'s str,
    ) -> Option<&'s str> {
        let shared = matches!(owner, Owner::Shared { .. });
        match (var, owner) {
            ("unit", Owner::Shared { unit, .. }) => Some(unit),
            (
                v,
                Owner::Shared {
                    attribute, unit, ..
                },
            ) if v == attribute => Some(unit),
            ("site", _) if !shared => Some(site.id.as_str()),
            ("tier", _) if !shared => Some(&self.req.tiers[site.tier]),
            (
                "product",
                Owner::Site {
                    product: Some(p), ..
                }
                | Owner::Shared { product: p, .. },
            ) => Some(&self.wf.products[*p as usize].name),
            ("point_in_time", _) => Some(&self.pit),
            ("request", _) => Some(&self.req.name),
            ("backups", _) => self.req.backups.as_deref(),
            ("backup_window", _) => Some(&self.window),
            ("target", _) => self.req.target.as_deref(),
            ("step", _) => Some(step),
            (attribute, _) if !shared => attr(site, product, attribute),
            _ => None,
        }
    }

    fn missing_var(
        &mut self,
        var: &str,
        site: Option<&Site>,
        template: &Template,
        key: &str,
        product: Option<&str>,
    ) {
        let entry = format!("steps.{}.params.{key}", template.name);
        let (at, kind) = match site {
            Some(site) if !crate::workflow::params::BUILTIN_VARS.contains(&var) => (
                site.at.clone(),
                ProblemKind::MissingAttribute {
                    attribute: var.to_owned(),
                    site: site.id.to_string(),
                    product: product.map(str::to_owned),
                },
            ),
            _ => {
                let at = Location {
                    file: self.wf.file.clone(),
                    line: Some(template.line),
                    column: None,
                };
                let message = format!("variable '{{{var}}}' has no value here");
                let fix = match (var, site) {
                    ("backups", _) => "set [backups] source in the request".to_owned(),
                    ("target", _) => "set [target] registry in the request".to_owned(),
                    (_, None) => "a shared step's params may use {unit}, its unit attribute, \
                                  {product}, {point_in_time}, {request}, {backups} and {target}"
                        .to_owned(),
                    _ => "a site step has no {product} or {unit}; remove the variable".to_owned(),
                };
                (at, ProblemKind::Invalid { message, fix })
            }
        };
        if !self.problems.iter().any(|p| p.entry == entry && p.at == at) {
            self.problems.push(Problem::new(at, entry, kind));
        }
    }

    /// A scaled estimate over [`limits::MAX_STEP_DURATION`]: the site's attribute is too large.
    fn too_long(&mut self, site: &Site, t: usize, what: String) {
        let entry = format!(
            "site {} (estimate of step '{}')",
            site.id, self.wf.templates[t].name
        );
        let kind = ProblemKind::OutOfRange {
            value: what,
            reason: format!(
                "too large: the step's scaled estimate would exceed the limit of {}",
                limits::human(limits::MAX_STEP_DURATION)
            ),
            range: "an attribute small enough that base + scale.per × value stays within the limit"
                .into(),
        };
        self.report(&site.at, entry, kind);
    }

    fn number(
        &mut self,
        site: &Site,
        product: Option<&str>,
        attribute: &str,
        t: usize,
    ) -> Option<f64> {
        let entry = || {
            format!(
                "site {} (estimate of step '{}')",
                site.id, self.wf.templates[t].name
            )
        };
        match attr(site, product, attribute) {
            None => {
                let kind = ProblemKind::MissingAttribute {
                    attribute: attribute.to_owned(),
                    site: site.id.to_string(),
                    product: product.map(str::to_owned),
                };
                self.report(&site.at, entry(), kind);
                None
            }
            Some(text) => match text.parse::<f64>() {
                Ok(v) if (0.0..=limits::MAX_ATTRIBUTE).contains(&v) => Some(v),
                Ok(v) if v.is_finite() && v > limits::MAX_ATTRIBUTE => {
                    let kind = ProblemKind::OutOfRange {
                        value: format!("{attribute} = {text}"),
                        reason: "too large for an estimate's scale".into(),
                        range: format!("0 to {:e}", limits::MAX_ATTRIBUTE),
                    };
                    self.report(&site.at, entry(), kind);
                    None
                }
                _ => {
                    let kind = ProblemKind::NotANumber {
                        attribute: attribute.to_owned(),
                        site: site.id.to_string(),
                        value: text.to_owned(),
                    };
                    self.report(&site.at, entry(), kind);
                    None
                }
            },
        }
    }

    /// Resolves the dependencies of every instance of one site.
    fn link_site(&mut self, s: u32, site: &'a Site) {
        let wf = self.wf;
        let mut deps = std::mem::take(&mut self.deps);
        // One small copy per site, so `resolve` may read the site while deps are set.
        let products = self.sites[s as usize].products.clone();
        for (t, template) in wf.templates.iter().enumerate() {
            match &template.scope {
                Scope::Product => {
                    for p in products.iter().map(|&p| p as usize) {
                        if !template.applies_to(p) {
                            continue;
                        }
                        let me = self.product_slot[self.pslot(s, p, t)];
                        if me == NONE {
                            continue; // its `when` does not hold here
                        }
                        for &a in &template.after {
                            self.resolve(s, site, Some(p), a, &mut deps);
                        }
                        if let Some(gate) = wf.gate.filter(|g| g.step == t) {
                            for &q in &wf.products[p].after {
                                let waits = self.product_slot[self.pslot(s, q, gate.waits_for)];
                                if waits != NONE {
                                    deps.push(waits);
                                }
                            }
                        }
                        self.set_deps(me, &mut deps);
                    }
                }
                Scope::Site => {
                    let me = self.site_slot[s as usize * wf.templates.len() + t];
                    if me == NONE {
                        continue;
                    }
                    for &a in &template.after {
                        self.resolve(s, site, None, a, &mut deps);
                    }
                    self.set_deps(me, &mut deps);
                }
                Scope::Shared { attribute } => {
                    for p in products.iter().map(|&p| p as usize) {
                        if !template.applies_to(p) {
                            continue;
                        }
                        let Some(unit) = attr(site, Some(&wf.products[p].name), attribute) else {
                            continue;
                        };
                        let Some(&(me, _)) = self.shared.get(&(t, unit)) else {
                            continue;
                        };
                        if self.steps[me as usize].deps.is_empty() {
                            for &a in &template.after {
                                self.resolve(s, site, Some(p), a, &mut deps);
                            }
                            self.set_deps(me, &mut deps);
                        }
                    }
                }
            }
        }
        self.deps = deps;
    }

    /// Appends the instances that template `a` means, seen from site `s` (and product `p`).
    fn resolve(&self, s: u32, site: &Site, p: Option<usize>, a: usize, out: &mut Vec<StepIdx>) {
        let dep = &self.wf.templates[a];
        if let Scope::Site = dep.scope {
            let found = self.site_slot[s as usize * self.wf.templates.len() + a];
            out.extend((found != NONE).then_some(found));
            return;
        }
        let one = p.map(|p| [p as u16]);
        let products: &[u16] = match &one {
            Some(one) => one,
            None => &self.sites[s as usize].products,
        };
        for q in products.iter().map(|&q| q as usize) {
            if p.is_none() && !dep.applies_to(q) {
                continue;
            }
            let found = match &dep.scope {
                Scope::Shared { attribute } => {
                    attr(site, Some(&self.wf.products[q].name), attribute)
                        .and_then(|unit| self.shared.get(&(a, unit)))
                        .map_or(NONE, |&(idx, _)| idx)
                }
                _ => self.product_slot[self.pslot(s, q, a)],
            };
            out.extend((found != NONE).then_some(found));
        }
    }

    /// Sets a step's dependencies from `deps` (emptied), sorted and without repeats.
    fn set_deps(&mut self, me: StepIdx, deps: &mut Vec<StepIdx>) {
        deps.sort_unstable();
        deps.dedup();
        self.steps[me as usize].deps = deps.clone();
        deps.clear();
    }

    fn finish(mut self, req: &Request) -> Plan {
        for (&idx, &v) in &self.shared_scale {
            let step = &mut self.steps[idx as usize];
            let per = self.wf.templates[step.template as usize]
                .estimate
                .scale
                .as_ref()
                .map_or(Duration::ZERO, |s| s.1);
            // Checked while the sums were made (`too_long`): within the limit here.
            step.estimate = limits::scaled(step.estimate, per, v).unwrap_or(step.estimate);
        }
        let mut demand = vec![Duration::ZERO; self.wf.pools.len()];
        for step in &self.steps {
            for &(pool, n) in &step.uses {
                let d = &mut demand[pool as usize];
                *d = d.saturating_add(step.estimate.saturating_mul(n));
            }
        }
        let pools = self
            .wf
            .pools
            .iter()
            .zip(demand)
            .zip(&self.capacity)
            .map(|((p, demand), &capacity)| PoolPlan {
                name: p.name.clone(),
                capacity,
                demand,
                edges: Duration::ZERO,
            })
            .collect();
        Plan {
            workflow: self.wf.name.clone(),
            request: req.name.clone(),
            point_in_time: self.pit,
            pools,
            tiers: req.tiers.clone(),
            products: self.wf.products.iter().map(|p| p.name.clone()).collect(),
            templates: self
                .wf
                .templates
                .iter()
                .map(|t| TemplateInfo {
                    name: t.name.clone(),
                    kind: t.kind.clone(),
                    when: t.when.as_ref().map(|c| c.describe()),
                })
                .collect(),
            sites: self.sites,
            steps: self.steps,
            critical_path: Vec::new(),
            lower_bound: Duration::ZERO,
            hash: String::new(),
            successors: Default::default(),
            facts: Default::default(),
        }
    }
}

/// `a/b/c`: a step ID, without the formatting machinery (millions of them per plan).
fn join(parts: &[&str]) -> String {
    let mut id = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            id.push('/');
        }
        id.push_str(part);
    }
    id
}

/// A site attribute, product-specific (`wiki.shard`) before site-wide (`shard`).
fn attr<'s>(site: &'s Site, product: Option<&str>, name: &str) -> Option<&'s str> {
    product
        .and_then(|p| {
            KEY.with_borrow_mut(|key| {
                // One reused buffer: this runs for every instance of 200k-step plans.
                key.clear();
                key.extend([p, ".", name]);
                site.attrs.get(key.as_str())
            })
        })
        .or_else(|| site.attrs.get(name))
        .map(String::as_str)
}

thread_local! {
    static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Source;

    fn shipped_workflow() -> Workflow {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/workflows/saas-platform.toml");
        let text = std::fs::read_to_string(path).unwrap();
        Workflow::parse(&Source::new(path, text), crate::steps::KNOWN_KINDS).unwrap()
    }

    fn request(text: String) -> Request {
        Request::parse(&Source::new("req.toml", text), |_| unreachable!()).unwrap()
    }

    fn sorted(req: &Request) -> Vec<&Site> {
        let mut order: Vec<&Site> = req.sites.iter().collect();
        order.sort_by(|a, b| a.id.cmp(&b.id));
        order
    }

    #[test]
    fn two_halves_make_the_plan_one_pass_makes() {
        let wf = shipped_workflow();
        let opts = PlanOptions::default();
        // Few sites per shard, so the halves share shards (and their scaled estimates).
        for (sites, seed) in [(2, 1), (301, 7), (1000, 3)] {
            let generated = crate::generate::GenerateOptions {
                sites,
                seed,
                sites_per_shard: 8,
                ..Default::default()
            };
            let req = request(crate::generate::request_toml(&generated));
            let order = sorted(&req);
            let mut one = Expander::new(&wf, &req, &opts, 0, order.len(), order.len());
            one.sites_in(&order);
            assert!(one.problems.is_empty());
            let one = one.finish(&req);
            let two = in_halves(&wf, &req, &opts, &order)
                .expect("a valid request joins")
                .finish(&req);
            let json = |p: &Plan| serde_json::to_value((&p.sites, &p.steps, &p.pools)).unwrap();
            assert_eq!(json(&one), json(&two), "{sites} sites, seed {seed}");
            assert!(
                one.steps
                    .iter()
                    .any(|s| matches!(s.owner, Owner::Shared { .. }))
            );
        }
    }

    #[test]
    fn halves_that_disagree_leave_it_to_one_pass() {
        let wf = shipped_workflow();
        // The same unit named by two products, one in each half: one pass reports it.
        let req = request(
            r#"
[request]
point_in_time = "2022-04-05T07:38:00Z"
[[sites]]
id = "site-1"
products = ["identity", "issues"]
attrs = { size_gb = 1, shard = "x-1" }
[[sites]]
id = "site-2"
products = ["identity", "wiki"]
attrs = { size_gb = 1, "identity.shard" = "i-2", "wiki.shard" = "i-2" }
"#
            .into(),
        );
        let opts = PlanOptions::default();
        assert!(in_halves(&wf, &req, &opts, &sorted(&req)).is_none());
        let problems = expand(&wf, &req, &opts).expect_err("refused");
        assert!(
            problems
                .iter()
                .any(|p| p.to_string().contains("is named by products")),
            "{problems:?}"
        );
    }
}
