//! The workflow: how one multi-product site is restored. `format` holds the TOML types; this module
//! resolves names to indices, parses durations and reports every problem at once.
//!
//! Pure: no IO. The caller reads the file into a [`Source`].

pub mod format;
pub mod params;

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use crate::diag::{Problem, ProblemKind};
use crate::limits;
use crate::source::Source;
use format::{ScopeSpec, StepSpec, WorkflowFile};
pub use params::ParamTemplate;

/// A validated workflow.
#[derive(Clone, Debug)]
pub struct Workflow {
    /// The file it was read from, for messages.
    pub file: String,
    pub name: String,
    pub description: String,
    pub pools: Vec<Pool>,
    /// Products in declaration-independent (name) order.
    pub products: Vec<Product>,
    /// Step templates in name order.
    pub templates: Vec<Template>,
    pub gate: Option<Gate>,
}

#[derive(Clone, Debug)]
pub struct Pool {
    pub name: String,
    pub capacity: u32,
    pub description: String,
}

#[derive(Clone, Debug)]
pub struct Product {
    pub name: String,
    pub description: String,
    /// Products of the same site that must be restored first (indices into `products`).
    pub after: Vec<usize>,
    /// 1-based line of the product's table, for messages.
    pub line: u32,
}

/// Where one instance of a template exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Once per (site, product).
    Product,
    /// Once per site.
    Site,
    /// Once per shared unit named by a site attribute (e.g. one fetch per database shard).
    Shared { attribute: String },
}

#[derive(Clone, Debug)]
pub struct Template {
    pub name: String,
    pub scope: Scope,
    /// For product and shared scope: the products it applies to (indices), all when `None`.
    pub products: Option<Vec<usize>>,
    pub kind: String,
    pub params: BTreeMap<String, ParamTemplate>,
    /// Templates this one waits for (indices into `templates`).
    pub after: Vec<usize>,
    /// Pool index and units held while running.
    pub uses: Vec<(usize, u32)>,
    pub retry: Retry,
    pub timeout: Duration,
    pub estimate: Estimate,
    /// Where the template applies at all (e.g. only to permanently deleted sites).
    pub when: Option<Condition>,
    /// 1-based line of the template in the workflow file, for messages.
    pub line: u32,
}

impl Template {
    pub fn applies_to(&self, product: usize) -> bool {
        self.products
            .as_ref()
            .is_none_or(|ps| ps.contains(&product))
    }
}

/// A condition on a site attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub attribute: String,
    pub values: Vec<String>,
    /// True: the attribute must be none of `values`.
    pub negate: bool,
    pub default: Option<String>,
}

impl Condition {
    /// Whether a value (or its absence, through `default`) satisfies the condition; `None` when
    /// the value is missing and there is no default.
    pub fn holds(&self, value: Option<&str>) -> Option<bool> {
        let v = value.or(self.default.as_deref())?;
        Some(self.values.iter().any(|x| x == v) != self.negate)
    }

    /// `state is deleted` / `state is not soft-deleted`, for plans and messages.
    pub fn describe(&self) -> String {
        format!(
            "{} is {}{}",
            self.attribute,
            if self.negate { "not " } else { "" },
            self.values.join(" or ")
        )
    }
}

/// Retry policy: `attempts` includes the first try.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Retry {
    pub attempts: u32,
    #[serde(with = "crate::util::millis")]
    pub initial_backoff: Duration,
    #[serde(with = "crate::util::millis")]
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            attempts: 3,
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// The default step timeout when neither the step nor `[defaults]` sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// `base + per × attribute`.
#[derive(Clone, Debug)]
pub struct Estimate {
    pub base: Duration,
    pub scale: Option<(String, Duration)>,
}

/// Product ordering rule: a product's `step` waits for the `waits_for` step of every product
/// listed in its `after`.
#[derive(Clone, Copy, Debug)]
pub struct Gate {
    pub step: usize,
    pub waits_for: usize,
}

impl Workflow {
    pub fn product_index(&self, name: &str) -> Option<usize> {
        self.products.iter().position(|p| p.name == name)
    }

    pub fn pool_index(&self, name: &str) -> Option<usize> {
        self.pools.iter().position(|p| p.name == name)
    }

    /// Parses and validates a workflow. `known_kinds` are the step kinds this build knows.
    pub fn parse(source: &Source, known_kinds: &[&str]) -> Result<Workflow, Vec<Problem>> {
        let file: WorkflowFile =
            toml::from_str(&source.text).map_err(|e| vec![source.toml_problem(&e)])?;
        let mut r = Resolver {
            source,
            problems: Vec::new(),
            known_kinds,
        };
        let workflow = r.resolve(file);
        if r.problems.is_empty() {
            Ok(workflow)
        } else {
            Err(r.problems)
        }
    }
}

struct Resolver<'a> {
    source: &'a Source,
    problems: Vec<Problem>,
    known_kinds: &'a [&'a str],
}

impl Resolver<'_> {
    fn report(
        &mut self,
        span: std::ops::Range<usize>,
        entry: impl Into<String>,
        kind: ProblemKind,
    ) {
        let at = self.source.locate(span.start);
        self.problems.push(Problem::new(at, entry, kind));
    }

    fn resolve(&mut self, file: WorkflowFile) -> Workflow {
        if *file.workflow.format.get_ref() != 1 {
            let span = file.workflow.format.span();
            self.report(
                span,
                "workflow.format",
                invalid("only format 1 exists", "write format = 1"),
            );
        }
        self.check_names(&file);
        let pools = self.pools(&file);
        let products = self.products(&file);
        let names: Vec<String> = file.steps.keys().cloned().collect();
        let default_timeout = file
            .defaults
            .timeout
            .as_ref()
            .and_then(|t| self.duration(t, "defaults.timeout"))
            .unwrap_or(DEFAULT_TIMEOUT);
        let default_retry = match &file.defaults.retry {
            Some(spec) => self.retry(spec, Retry::default(), "defaults.retry"),
            None => Retry::default(),
        };
        let ctx = TemplateCtx {
            pools: &pools,
            products: &products,
            names: &names,
            default_timeout,
            default_retry,
        };
        let templates: Vec<Template> = file
            .steps
            .iter()
            .map(|(name, spec)| self.template(name, spec, &ctx))
            .collect();
        self.check_scopes(&file, &templates);
        let gate = file.gate.as_ref().and_then(|g| self.gate(g, &names));
        if products.is_empty() {
            self.report(
                0..0,
                "products",
                invalid(
                    "the workflow declares no products",
                    "add at least one [products.<name>] table",
                ),
            );
        }
        if templates.is_empty() {
            self.report(
                0..0,
                "steps",
                invalid(
                    "the workflow declares no steps",
                    "add at least one [steps.<name>] table",
                ),
            );
        }
        Workflow {
            file: self.source.name.clone(),
            name: file.workflow.name,
            description: file.workflow.description,
            pools,
            products,
            templates,
            gate,
        }
    }

    fn pools(&mut self, file: &WorkflowFile) -> Vec<Pool> {
        let mut pools = Vec::new();
        for (name, spec) in &file.pools {
            let cap = &spec.get_ref().capacity;
            let capacity = match u32::try_from(*cap.get_ref()) {
                Ok(0) => {
                    self.report(
                        cap.span(),
                        format!("pools.{name}.capacity"),
                        ProblemKind::ZeroCapacity { pool: name.clone() },
                    );
                    0
                }
                Ok(c) if c <= limits::MAX_CAPACITY => c,
                _ => {
                    self.report(
                        cap.span(),
                        format!("pools.{name}.capacity"),
                        invalid(
                            format!("capacity {} is out of range", cap.get_ref()),
                            format!("give a whole number from 1 to {}", limits::MAX_CAPACITY),
                        ),
                    );
                    0
                }
            };
            pools.push(Pool {
                name: name.clone(),
                capacity,
                description: spec.get_ref().description.clone(),
            });
        }
        pools
    }

    /// Every pool, product and step name uses the safe alphabet of [`crate::ids::check_name`].
    fn check_names(&mut self, file: &WorkflowFile) {
        let named = file
            .pools
            .iter()
            .map(|(n, s)| ("pools", n, s.span()))
            .chain(file.products.iter().map(|(n, s)| ("products", n, s.span())))
            .chain(file.steps.iter().map(|(n, s)| ("steps", n, s.span())));
        let bad: Vec<_> = named
            .filter_map(|(table, name, span)| {
                let message = crate::ids::check_name(name).err()?;
                Some((
                    format!("{table}.{}", crate::util::printable(name)),
                    message,
                    span,
                ))
            })
            .collect();
        for (entry, message, span) in bad {
            self.report(
                span,
                entry,
                invalid(message, "rename it, e.g. 'restore-wiki'"),
            );
        }
    }

    fn products(&mut self, file: &WorkflowFile) -> Vec<Product> {
        let names: Vec<String> = file.products.keys().cloned().collect();
        let mut products = Vec::new();
        for (name, spec) in &file.products {
            let entry = format!("products.{name}.after");
            let after = spec
                .get_ref()
                .after
                .iter()
                .filter_map(|a| self.lookup(a, &names, "product", &entry))
                .collect();
            products.push(Product {
                line: self.source.line_col(spec.span().start).0,
                name: name.clone(),
                description: spec.get_ref().description.clone(),
                after,
            });
        }
        products
    }

    fn lookup(
        &mut self,
        name: &Spanned<String>,
        known: &[String],
        what: &'static str,
        entry: &str,
    ) -> Option<usize> {
        let found = known.iter().position(|k| k == name.get_ref());
        if found.is_none() {
            self.report(name.span(), entry, unknown(what, name.get_ref(), known));
        }
        found
    }

    /// A step duration (`estimate`, `timeout`, `scale.per`): at most a year.
    fn duration(&mut self, value: &Spanned<String>, entry: &str) -> Option<Duration> {
        self.duration_upto(value, entry, limits::MAX_STEP_DURATION)
    }

    fn duration_upto(
        &mut self,
        value: &Spanned<String>,
        entry: &str,
        max: Duration,
    ) -> Option<Duration> {
        match limits::duration(value.get_ref(), max) {
            Ok(d) => Some(d),
            Err(e) => {
                self.report(
                    value.span(),
                    entry,
                    ProblemKind::duration(value.get_ref(), e),
                );
                None
            }
        }
    }

    fn retry(&mut self, spec: &format::RetrySpec, base: Retry, entry: &str) -> Retry {
        let mut retry = base;
        if let Some(a) = &spec.attempts {
            match u32::try_from(*a.get_ref()) {
                Ok(n) if (1..=100).contains(&n) => retry.attempts = n,
                _ => self.report(
                    a.span(),
                    format!("{entry}.attempts"),
                    invalid(
                        format!("attempts = {} is out of range", a.get_ref()),
                        "give 1 to 100 (1 means no retry)",
                    ),
                ),
            }
        }
        if let Some(d) = &spec.initial_backoff {
            retry.initial_backoff = self
                .duration_upto(d, &format!("{entry}.initial_backoff"), limits::MAX_BACKOFF)
                .unwrap_or(retry.initial_backoff);
        }
        if let Some(d) = &spec.max_backoff {
            retry.max_backoff = self
                .duration_upto(d, &format!("{entry}.max_backoff"), limits::MAX_BACKOFF)
                .unwrap_or(retry.max_backoff);
        }
        if retry.max_backoff < retry.initial_backoff {
            retry.max_backoff = retry.initial_backoff;
        }
        retry
    }

    fn template(&mut self, name: &str, spec: &Spanned<StepSpec>, ctx: &TemplateCtx) -> Template {
        let s = spec.get_ref();
        let entry = |field: &str| format!("steps.{name}.{field}");
        self.check_kind(s, &entry("kind"));
        let scope = self.scope(name, spec);
        let products = self.template_products(spec, &scope, ctx, &entry("products"));
        let params = self.params(s, name);
        let after = s
            .after
            .iter()
            .filter_map(|a| self.lookup(a, ctx.names, "step", &entry("after")))
            .collect();
        let uses = self.uses(s, ctx, name);
        let retry = match &s.retry {
            Some(r) => self.retry(r, ctx.default_retry, &entry("retry")),
            None => ctx.default_retry,
        };
        let timeout = s
            .timeout
            .as_ref()
            .and_then(|t| self.duration(t, &entry("timeout")))
            .unwrap_or(ctx.default_timeout);
        Template {
            name: name.to_owned(),
            scope,
            products,
            kind: s.kind.get_ref().clone(),
            params,
            after,
            uses,
            retry,
            timeout,
            estimate: self.estimate(s, name),
            when: s.when.as_ref().and_then(|w| self.condition(name, w)),
            line: self.source.line_col(spec.span().start).0,
        }
    }

    fn check_kind(&mut self, s: &StepSpec, entry: &str) {
        if !self.known_kinds.contains(&s.kind.get_ref().as_str()) {
            let known: Vec<String> = self.known_kinds.iter().map(|k| k.to_string()).collect();
            self.report(
                s.kind.span(),
                entry,
                unknown("step kind", s.kind.get_ref(), &known),
            );
        }
    }

    /// The scope, and `unit` exactly when the scope is shared.
    fn scope(&mut self, name: &str, spec: &Spanned<StepSpec>) -> Scope {
        let s = spec.get_ref();
        match (s.scope, &s.unit) {
            (ScopeSpec::Shared, Some(unit)) => Scope::Shared {
                attribute: unit.get_ref().clone(),
            },
            (ScopeSpec::Shared, None) => {
                self.report(
                    spec.span(),
                    format!("steps.{name}"),
                    invalid(
                        "a shared step needs `unit`, the site attribute naming its unit",
                        "add e.g. unit = \"shard\"",
                    ),
                );
                Scope::Shared {
                    attribute: String::new(),
                }
            }
            (other, Some(unit)) => {
                self.report(
                    unit.span(),
                    format!("steps.{name}.unit"),
                    invalid(
                        "`unit` only applies to scope = \"shared\"",
                        "remove `unit` or set scope = \"shared\"",
                    ),
                );
                if other == ScopeSpec::Site {
                    Scope::Site
                } else {
                    Scope::Product
                }
            }
            (ScopeSpec::Site, None) => Scope::Site,
            (ScopeSpec::Product, None) => Scope::Product,
        }
    }

    /// The products a product or shared step applies to (`None`: all).
    fn template_products(
        &mut self,
        spec: &Spanned<StepSpec>,
        scope: &Scope,
        ctx: &TemplateCtx,
        entry: &str,
    ) -> Option<Vec<usize>> {
        match (&spec.get_ref().products, scope) {
            (Some(_), Scope::Site) => {
                self.report(
                    spec.span(),
                    entry,
                    invalid(
                        "a site step runs once per site; `products` does not apply",
                        "remove `products`",
                    ),
                );
                None
            }
            (Some(list), _) => {
                let names: Vec<String> = ctx.products.iter().map(|p| p.name.clone()).collect();
                Some(
                    list.iter()
                        .filter_map(|p| self.lookup(p, &names, "product", entry))
                        .collect(),
                )
            }
            (None, _) => None,
        }
    }

    /// Every param as a template; values must be strings, numbers or booleans.
    fn params(&mut self, s: &StepSpec, name: &str) -> BTreeMap<String, ParamTemplate> {
        let mut params = BTreeMap::new();
        for (key, value) in &s.params {
            let entry = format!("steps.{name}.params.{key}");
            let text = match value.get_ref() {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => {
                    let why = "a parameter must be a string, number or boolean";
                    self.report(
                        value.span(),
                        entry,
                        invalid(why, "write the value as a string"),
                    );
                    continue;
                }
            };
            if s.kind.get_ref() == "notify"
                && crate::updates::DURATION_PARAMS.contains(&key.as_str())
                && let Err(why) = crate::updates::parse_duration(&text)
            {
                let fix = "write a duration such as \"30m\" or \"1h\" (see docs/workflow-format.md, `notify`)";
                self.report(value.span(), entry, invalid(why, fix));
                continue;
            }
            match ParamTemplate::parse(&text) {
                Ok(t) => {
                    params.insert(key.clone(), t);
                }
                Err(why) => {
                    let fix = "fix the template; variables are {site}, {product}, {unit}, {tier}, \
                               {point_in_time}, a site attribute, or {env:NAME} for a secret";
                    self.report(value.span(), entry, invalid(why, fix));
                }
            }
        }
        params
    }

    /// The pool units the step holds while it runs: known pools, 1 to the pool's capacity.
    fn uses(&mut self, s: &StepSpec, ctx: &TemplateCtx, name: &str) -> Vec<(usize, u32)> {
        let mut uses = Vec::new();
        let pool_names: Vec<String> = ctx.pools.iter().map(|p| p.name.clone()).collect();
        for (pool, units) in &s.uses {
            let entry = format!("steps.{name}.uses.{pool}");
            let Some(idx) = pool_names.iter().position(|p| p == pool) else {
                let kind = unknown("pool", pool, &pool_names);
                self.report(units.span(), format!("steps.{name}.uses"), kind);
                continue;
            };
            let capacity = ctx.pools[idx].capacity;
            match u32::try_from(*units.get_ref()) {
                Ok(0) | Err(_) => self.report(
                    units.span(),
                    entry,
                    invalid(
                        format!("uses {} units", units.get_ref()),
                        "use 1 unit or more (at most the pool's capacity), or remove the pool from `uses`",
                    ),
                ),
                Ok(n) if capacity > 0 && n > capacity => {
                    let pool = pool.clone();
                    let kind = ProblemKind::PoolTooSmall { pool, needs: n, capacity };
                    self.report(units.span(), entry, kind);
                }
                Ok(n) => uses.push((idx, n)),
            }
        }
        uses
    }

    fn estimate(&mut self, s: &StepSpec, name: &str) -> Estimate {
        let base = self
            .duration(&s.estimate, &format!("steps.{name}.estimate"))
            .unwrap_or_default();
        let scale = s.scale.as_ref().and_then(|sc| {
            let per = self.duration(&sc.get_ref().per, &format!("steps.{name}.scale.per"))?;
            Some((sc.get_ref().attribute.clone(), per))
        });
        Estimate { base, scale }
    }

    fn condition(&mut self, name: &str, w: &Spanned<format::WhenSpec>) -> Option<Condition> {
        let spec = w.get_ref();
        let (values, negate) = match (&spec.is, &spec.is_not) {
            (Some(v), None) if !v.is_empty() => (v.clone(), false),
            (None, Some(v)) if !v.is_empty() => (v.clone(), true),
            _ => {
                self.report(
                    w.span(),
                    format!("steps.{name}.when"),
                    invalid(
                        "`when` needs exactly one of `is` or `is_not`, with at least one value",
                        "write e.g. when = { attribute = \"state\", is = [\"deleted\"] }",
                    ),
                );
                return None;
            }
        };
        Some(Condition {
            attribute: spec.attribute.clone(),
            values,
            negate,
            default: spec.default.clone(),
        })
    }

    /// Cross-scope rules for `after`: what each scope may wait for.
    fn check_scopes(&mut self, file: &WorkflowFile, templates: &[Template]) {
        for (t, (_, spec)) in templates.iter().zip(&file.steps) {
            for (&a, a_spec) in t.after.iter().zip(&spec.get_ref().after) {
                let dep = &templates[a];
                let entry = format!("steps.{}.after", t.name);
                let problem = match (&t.scope, &dep.scope) {
                    (Scope::Shared { attribute }, Scope::Shared { attribute: other })
                        if attribute != other =>
                    {
                        Some(format!(
                            "shared step '{}' (unit '{attribute}') cannot wait for '{}' of another unit ('{other}')",
                            t.name, dep.name
                        ))
                    }
                    (Scope::Shared { .. }, Scope::Shared { .. }) => None,
                    (Scope::Shared { .. }, _) => Some(format!(
                        "shared step '{}' runs once for many sites, so it can only wait for shared steps, not '{}'",
                        t.name, dep.name
                    )),
                    (Scope::Product, Scope::Product) if !covers(dep, t) => Some(format!(
                        "'{}' applies to products '{}' does not",
                        t.name, dep.name
                    )),
                    (Scope::Product, Scope::Shared { .. }) if !covers(dep, t) => Some(format!(
                        "'{}' applies to products that shared step '{}' does not",
                        t.name, dep.name
                    )),
                    _ => None,
                };
                if let Some(message) = problem {
                    let fix = "change `after` or the two steps' `products` so every instance \
                               has what it waits for";
                    self.report(a_spec.span(), entry, invalid(message, fix));
                }
            }
        }
    }

    fn gate(&mut self, gate: &Spanned<format::GateSpec>, names: &[String]) -> Option<Gate> {
        let g = gate.get_ref();
        let step = self.lookup(&g.step, names, "step", "gate.step")?;
        let waits_for = self.lookup(&g.waits_for, names, "step", "gate.waits_for")?;
        Some(Gate { step, waits_for })
    }
}

/// Whether `dep` exists for every product `t` applies to.
fn covers(dep: &Template, t: &Template) -> bool {
    match (&dep.products, &t.products) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(d), Some(ts)) => ts.iter().all(|p| d.contains(p)),
    }
}

struct TemplateCtx<'a> {
    pools: &'a [Pool],
    products: &'a [Product],
    names: &'a [String],
    default_timeout: Duration,
    default_retry: Retry,
}

fn invalid(message: impl Into<String>, fix: impl Into<String>) -> ProblemKind {
    ProblemKind::Invalid {
        message: message.into(),
        fix: fix.into(),
    }
}

fn unknown(what: &'static str, name: &str, known: &[String]) -> ProblemKind {
    ProblemKind::Unknown {
        what,
        name: name.to_owned(),
        known: known.to_vec(),
    }
}
