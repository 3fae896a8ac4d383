//! drover: disaster-recovery orchestration for thousands of multi-product sites.
//!
//! # Layout
//!
//! - [`ids`]: typed site IDs; other kinds of ID are recognised and refused.
//! - [`source`], [`diag`]: input text with locations, and the problems found in it.
//! - [`workflow`]: the workflow format (how one site is restored), parsed and resolved.
//! - [`request`]: the restore request format (which sites, which point in time), TOML and CSV.
//! - [`load`]: reads workflow and request files; the only IO before planning.
//! - [`plan`]: pure planner: expand, validate, rank, lower bound, hash.
//! - [`generate`]: synthetic requests for benchmarks and drills.
//! - [`steps`]: step kinds.
//! - [`cli`]: the command line; the only code that prints.

pub mod cli;
pub mod diag;
pub mod generate;
pub mod ids;
pub mod load;
pub mod plan;
pub mod request;
pub mod source;
pub mod steps;
mod util;
pub mod workflow;
