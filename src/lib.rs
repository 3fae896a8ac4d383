//! drover: disaster-recovery orchestration for thousands of multi-product sites.
//!
//! A **workflow** says how one multi-product site is restored; a **request** names the deleted
//! sites and a point in time. drover plans them into one validated, ranked, hashed DAG of steps
//! ([`plan()`]), runs it under pool budgets with every transition checkpointed in a ledger
//! ([`schedule::run`]), and forecasts it with the same scheduler over virtual time ([`sim`]).
//!
//! # Plan a request
//!
//! ```
//! use drover::{PlanOptions, Request, Source, Workflow};
//!
//! let workflow = Workflow::parse(
//!     &Source::new("workflow.toml", r#"
//!         [workflow]
//!         name = "example"
//!         [pools.db]
//!         capacity = 2
//!         [products.wiki]
//!         [steps.restore]
//!         scope = "product"
//!         kind = "noop"
//!         uses = { db = 1 }
//!         estimate = "10m"
//!         [steps.reactivate]
//!         scope = "site"
//!         kind = "noop"
//!         after = ["restore"]
//!         estimate = "1m"
//!     "#),
//!     drover::steps::KNOWN_KINDS,
//! )
//! .expect("a valid workflow");
//! let request = Request::parse(
//!     &Source::new("request.toml", r#"
//!         [request]
//!         point_in_time = "2022-04-05T07:38:00Z"
//!         products = ["wiki"]
//!         [[sites]]
//!         id = "site-0001"
//!         [[sites]]
//!         id = "site-0002"
//!     "#),
//!     |_csv| unreachable!("no CSV site list"),
//! )
//! .expect("a valid request");
//! let plan = drover::plan(&workflow, &request, &PlanOptions::default()).expect("it plans");
//! let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
//! assert_eq!(ids.len(), 4);
//! assert!(ids.contains(&"site-0001/wiki/restore") && ids.contains(&"site-0002/reactivate"));
//! // Two restores of 10 minutes share 2 database slots, then 1 minute of reactivation.
//! assert_eq!(plan.lower_bound, std::time::Duration::from_secs(11 * 60));
//! println!("plan {}: {} steps", &plan.hash[..12], plan.steps.len());
//! ```
//!
//! # Run it, extend it
//!
//! - Run a plan: [`schedule::run`] with a [`ledger::Ledger`] (SQLite: `ledger::sqlite`) behind a
//!   [`schedule::Journal`], the kinds of [`Registry::builtin`], and an [`events::EventSink`] for
//!   progress. `resume` is the same call with the ledger's recorded step states.
//! - A step kind of your own: implement [`StepKind`] and [`Registry::register`] it.
//! - A backup store of your own: implement [`BackupStore`] (list snapshots, read an object).
//!
//! # Layout
//!
//! - [`ids`]: typed site IDs; other kinds of ID are recognised and refused.
//! - [`source`], [`diag`]: input text with locations, and the problems found in it.
//! - [`sniff`]: what kind of drover file some bytes are, to name a file given in the wrong place.
//! - [`workflow`]: the workflow format (how one site is restored), parsed and resolved.
//! - [`request`]: the restore request format (which sites, which point in time), TOML and CSV.
//! - [`limits`]: the range of every number an operator can write.
//! - [`load`]: reads workflow and request files; the only IO before planning.
//! - [`plan`](mod@plan): pure planner: expand, validate, rank, lower bound, hash.
//! - [`generate`]: synthetic requests for benchmarks and drills.
//! - [`steps`]: the `StepKind` trait, the registry, one file per built-in kind.
//! - [`backup`]: backup stores (local, S3), manifests, point-in-time choice, verified fetch.
//! - [`platform`]: the reference multi-tenant SaaS platform (SQLite shards, or schemas on a
//!   PostgreSQL server) the demo deletes and restores.
//! - [`pgslice`]: one tenant's rows of a multi-tenant PostgreSQL schema: backed up as a tenant
//!   slice, restored into the live shard in one transaction, validated.
//! - [`ledger`]: the durable record of a run (SQLite; in-memory for tests), group-committed.
//! - [`schedule`]: the one loop that spawns steps: pools, policies, retries, failure isolation.
//! - [`sim`]: the scheduling core over virtual time, and the duration model: forecasts.
//! - [`report`]: a run drawn as a timeline: HTML (Gantt chart, restore times, failures) and JSON.
//! - [`events`]: what a run reports; consumed by the CLI's progress display.
//! - [`status`]: per-site state derived from step states.
//!
//! Inside the crate only: `dispatch` (the scheduling core runs and forecasts share),
//! `preflight` (read-only checks against the target registry), `drill`, `staging` (what may be
//! removed), `redact` (credentials out of outputs), `util`, and `cli` (the command line, the only
//! code that prints; the binary calls [`main`]).

pub mod backup;
mod cli;
pub mod diag;
mod dispatch;
mod drill;
pub mod events;
pub mod generate;
pub mod ids;
pub mod ledger;
pub mod limits;
pub mod load;
pub mod pgslice;
mod pgtls;
pub mod plan;
pub mod platform;
mod preflight;
mod redact;
pub mod report;
pub mod request;
pub mod schedule;
pub mod serve;
pub mod sim;
pub mod sniff;
pub mod source;
mod staging;
pub mod status;
pub mod steps;
pub mod target;
pub mod updates;
mod util;
pub mod workers;
pub mod workflow;

pub use backup::BackupStore;
pub use cli::main;
pub use plan::{Plan, PlanOptions, plan};
pub use request::Request;
pub use source::Source;
pub use steps::{Registry, StepContext, StepError, StepKind};
pub use workflow::Workflow;
