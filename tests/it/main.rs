//! drover's integration tests, one binary: each module starts real things (the `drover`
//! binary, a real S3 server on loopback, SQLite files, headless Chromium) and checks what a user
//! would notice. One binary instead of one per file: the AWS SDK and s3s are linked once.

mod support;

mod backup;
mod bad_input;
mod estimate;
mod fetch_run;
mod fuzz;
mod kinds;
mod pg_ledger;
mod pg_targets;
mod plan_cli;
mod platform;
mod preflight;
mod registries;
mod report;
mod restore_e2e;
mod restore_faults;
mod run_cli;
mod safety;
mod schedule;
mod serve;
mod workers;
