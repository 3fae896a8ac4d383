//! drover: disaster-recovery orchestration for thousands of multi-product sites.
//!
//! # Layout
//!
//! - [`ids`]: typed site IDs; other kinds of ID are recognised and refused.
//! - [`source`], [`diag`]: input text with locations, and the problems found in it.
//! - [`sniff`]: what kind of drover file some bytes are, to name a file given in the wrong place.
//! - [`workflow`]: the workflow format (how one site is restored), parsed and resolved.
//! - [`redact`]: credentials out of every error drover records or prints.
//! - [`request`]: the restore request format (which sites, which point in time), TOML and CSV.
//! - [`limits`]: the range of every number an operator can write.
//! - [`load`]: reads workflow and request files; the only IO before planning.
//! - [`plan`]: pure planner: expand, validate, rank, lower bound, hash.
//! - [`preflight`]: read-only checks of a plan against the target registry and pools.
//! - [`generate`]: synthetic requests for benchmarks and drills.
//! - [`steps`]: the `StepKind` trait, the registry, one file per built-in kind.
//! - [`backup`]: backup stores (local, S3), manifests, point-in-time choice, verified fetch.
//! - [`platform`]: the reference multi-tenant SaaS platform (SQLite shards) the demo deletes and restores.
//! - [`ledger`]: the durable record of a run (SQLite; in-memory for tests), group-committed.
//! - [`dispatch`]: the synchronous scheduling core (ready queue, policies, pool budgets) that
//!   runs and forecasts share.
//! - [`schedule`]: the one loop that spawns steps: pools, policies, retries, failure isolation.
//! - [`sim`]: the scheduling core over virtual time, and the duration model: forecasts.
//! - [`drill`]: restores rehearsed on an isolated copy of the platform; their history.
//! - [`report`]: a run drawn as a timeline: HTML (Gantt chart, restore times, failures) and JSON.
//! - [`staging`]: what drover may remove from its staging area (only fetched data it recorded).
//! - [`events`]: what a run reports; consumed by the CLI's progress display.
//! - [`status`]: per-site state derived from step states.
//! - [`cli`]: the command line; the only code that prints.

pub mod backup;
pub mod cli;
pub mod diag;
pub mod dispatch;
pub mod drill;
pub mod events;
pub mod generate;
pub mod ids;
pub mod ledger;
pub mod limits;
pub mod load;
pub mod plan;
pub mod platform;
pub mod preflight;
pub mod redact;
pub mod report;
pub mod request;
pub mod schedule;
pub mod sim;
pub mod sniff;
pub mod source;
pub mod staging;
pub mod status;
pub mod steps;
mod util;
pub mod workflow;
