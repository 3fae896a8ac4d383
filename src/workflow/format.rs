//! The workflow file format, version 1: serde types that mirror the TOML exactly.
//! Every field is documented in `docs/workflow-format.md`; unknown fields are refused so a typo
//! (`timout`) is an error, not a silently ignored setting.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowFile {
    pub workflow: Header,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub pools: BTreeMap<String, Spanned<PoolSpec>>,
    #[serde(default)]
    pub products: BTreeMap<String, Spanned<ProductSpec>>,
    #[serde(default)]
    pub gate: Option<Spanned<GateSpec>>,
    #[serde(default)]
    pub steps: BTreeMap<String, Spanned<StepSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Format version; only 1 exists.
    #[serde(default = "one")]
    pub format: Spanned<u32>,
}

fn one() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub retry: Option<RetrySpec>,
    pub timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    pub capacity: Spanned<i64>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductSpec {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub after: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    pub step: Spanned<String>,
    pub waits_for: Spanned<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ScopeSpec {
    Product,
    Site,
    Shared,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub scope: ScopeSpec,
    /// For `scope = "shared"`: the site attribute that names the unit, e.g. `shard`.
    pub unit: Option<Spanned<String>>,
    /// The products this template applies to (product and shared scope); all when absent.
    pub products: Option<Vec<Spanned<String>>>,
    pub kind: Spanned<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub params: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    pub after: Vec<Spanned<String>>,
    #[serde(default)]
    pub uses: BTreeMap<String, Spanned<i64>>,
    pub retry: Option<RetrySpec>,
    pub timeout: Option<Spanned<String>>,
    pub estimate: Spanned<String>,
    pub scale: Option<Spanned<ScaleSpec>>,
    /// Only for sites (and products) whose attribute matches.
    pub when: Option<Spanned<WhenSpec>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    pub attempts: Option<Spanned<i64>>,
    pub initial_backoff: Option<Spanned<String>>,
    pub max_backoff: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleSpec {
    /// A numeric site attribute, e.g. `size_gb`.
    pub attribute: String,
    /// Added to the estimate per unit of the attribute, e.g. `"6s"`.
    pub per: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhenSpec {
    /// A site attribute (`<product>.<name>` before `<name>`), e.g. `state`.
    pub attribute: String,
    /// The step exists where the attribute is one of these…
    pub is: Option<Vec<String>>,
    /// …or where it is none of these.
    pub is_not: Option<Vec<String>>,
    /// The value for sites that do not set the attribute; without it, such a site is an error.
    pub default: Option<String>,
}
