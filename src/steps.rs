//! Step kinds: what a step does when it runs. A kind implements [`StepKind`]; a [`Registry`] maps
//! kind names (as written in workflows) to implementations.
//!
//! Built-in kinds ([`BUILTIN`], the one list): `fetch` (verified download of a backup
//! snapshot); `exec` (a command) and `http` (a JSON POST) for operators' own infrastructure; the
//! reference platform's `restore-contacts`, `restore-tenant`, `restore-attachments`,
//! `rebuild-index`, `validate`, `reactivate` and `notify`; for multi-tenant PostgreSQL shards
//! `pg-restore-tenant` and `pg-validate` (tenant slices, `pgslice`); for tests, benchmarks and drills `noop`, `sleep`, `flaky`, `fail`.

mod exec;
mod fail;
mod fetch;
mod flaky;
mod http;
mod noop;
mod notify;
mod pg_common;
mod pg_restore_tenant;
mod pg_validate;
mod platform_common;
mod reactivate;
mod rebuild_index;
mod restore_attachments;
mod restore_contacts;
mod restore_tenant;
mod secret;
mod sleep;
mod validate;

pub(crate) use http::post_json;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

/// Makes one built-in kind.
type Make = fn() -> Arc<dyn StepKind>;

/// Every built-in step kind, by the name workflows use: the one list. The planner's known kinds
/// ([`KNOWN_KINDS`]) and the run's [`Registry::builtin`] both derive from it.
const BUILTIN: [(&str, Make); 16] = [
    ("fetch", || Arc::new(fetch::Fetch::default())),
    ("restore-contacts", || {
        Arc::new(restore_contacts::RestoreContacts)
    }),
    ("restore-tenant", || Arc::new(restore_tenant::RestoreTenant)),
    ("restore-attachments", || {
        Arc::new(restore_attachments::RestoreAttachments)
    }),
    ("pg-restore-tenant", || {
        Arc::new(pg_restore_tenant::PgRestoreTenant)
    }),
    ("pg-validate", || Arc::new(pg_validate::PgValidate)),
    ("rebuild-index", || Arc::new(rebuild_index::RebuildIndex)),
    ("validate", || Arc::new(validate::Validate)),
    ("reactivate", || Arc::new(reactivate::Reactivate)),
    ("notify", || Arc::new(notify::Notify::default())),
    ("noop", || Arc::new(noop::Noop)),
    ("sleep", || Arc::new(sleep::Sleep)),
    ("flaky", || Arc::new(flaky::Flaky)),
    ("fail", || Arc::new(fail::Fail)),
    ("exec", || Arc::new(exec::Exec)),
    ("http", || Arc::new(http::Http::default())),
];

/// Every step kind this build knows by name (from [`BUILTIN`]); the planner refuses any other.
pub const KNOWN_KINDS: &[&str] = &names(&BUILTIN);

const fn names<const N: usize>(kinds: &[(&'static str, Make); N]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = kinds[i].0;
        i += 1;
    }
    out
}

/// What a running step is given.
#[derive(Clone, Debug)]
pub struct StepContext {
    /// e.g. `site-0042/wiki/rebuild`.
    pub step_id: String,
    pub site: Option<String>,
    pub product: Option<String>,
    /// Parameters after templating.
    pub params: crate::plan::Params,
    /// Outputs of the steps this one depends on, by step ID.
    pub upstream: BTreeMap<String, serde_json::Value>,
    /// The same for every attempt and every resume of this step in this run: pass it to any
    /// external system so a repeated call is recognised as the same operation.
    pub idempotency_key: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The workflow's estimate for this step.
    pub estimate: Duration,
    /// Cancelled when the run is interrupted; a step should stop promptly and leave no partial
    /// result under its final name.
    pub cancel: CancellationToken,
    /// A directory the step may use for its files (created on demand by the step).
    pub staging: PathBuf,
}

impl StepContext {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name)
    }
}

/// How a step failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// Worth another attempt (a timeout, a 503, a reset connection).
    #[error("{0}")]
    Retryable(String),
    /// Another attempt would fail the same way (a bad parameter, a refusal, a 404).
    #[error("{0}")]
    Permanent(String),
    /// The site's data is wrong (its backup failed verification, or the restored data does not
    /// match it): permanent, and the site is quarantined — never reactivated until a human has
    /// looked. The recorded error starts with [`crate::ledger::QUARANTINE_PREFIX`].
    #[error("quarantined: {0}")]
    Quarantine(String),
}

impl StepError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StepError::Retryable(_))
    }
}

/// A small JSON value recorded in the ledger and handed to dependent steps.
pub type StepOutput = serde_json::Value;

/// One kind of step. Implementations must be idempotent: running a step again with the same
/// idempotency key must give the same result and never duplicate an effect.
#[async_trait]
pub trait StepKind: Send + Sync {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError>;
}

/// Step kinds by name.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: HashMap<String, Arc<dyn StepKind>>,
}

impl Registry {
    /// The kinds implemented in this crate ([`BUILTIN`]).
    pub fn builtin() -> Registry {
        let kinds = BUILTIN
            .iter()
            .map(|(name, make)| (name.to_string(), make()))
            .collect();
        Registry { kinds }
    }

    /// The names this registry can run, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.kinds.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    pub fn register(&mut self, name: &str, kind: impl StepKind + 'static) {
        self.kinds.insert(name.to_owned(), Arc::new(kind));
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn StepKind>> {
        self.kinds.get(name).cloned()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.kinds.contains_key(name)
    }
}

/// Whether kind `kind` resolves `{env:NAME}` secret references in its param `param` (see
/// `steps::secret`): where the value goes to another system as a credential would.
pub fn resolves_secrets(kind: &str, param: &str) -> bool {
    match kind {
        "http" => param == "url" || param.starts_with("header."),
        "notify" => param == "webhook" || param.starts_with("header."),
        "exec" => param.starts_with("env."),
        "pg-restore-tenant" | "pg-validate" => param == "database",
        _ => false,
    }
}

/// For tests and drills: when the step has a `record` param, appends a line
/// `<idempotency key> <attempt>` to that file, so a test can see exactly which steps executed
/// and how often.
pub(crate) fn record_execution(ctx: &StepContext) -> Result<(), StepError> {
    use std::io::Write;
    let Some(path) = ctx.param("record") else {
        return Ok(());
    };
    let line = format!("{} {}\n", ctx.idempotency_key, ctx.attempt);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| StepError::Retryable(format!("record {path}: {e}")))
}

/// Reads a humantime duration parameter of at most `max`.
pub(crate) fn duration_param(
    ctx: &StepContext,
    name: &str,
    max: Duration,
) -> Result<Option<Duration>, StepError> {
    ctx.param(name)
        .map(|v| {
            crate::limits::duration(v, max)
                .map_err(|e| StepError::Permanent(format!("param {name} = '{v}': {e}")))
        })
        .transpose()
}

/// Reads a whole-number parameter within `range`.
pub(crate) fn number_param<T>(
    ctx: &StepContext,
    name: &str,
    range: std::ops::RangeInclusive<T>,
) -> Result<Option<T>, StepError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    ctx.param(name)
        .map(|v| {
            v.parse::<T>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    StepError::Permanent(format!(
                        "param {name} = '{v}' is not a whole number from {} to {}",
                        range.start(),
                        range.end()
                    ))
                })
        })
        .transpose()
}
