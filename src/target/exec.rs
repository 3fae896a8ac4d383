//! A registry reached through a command the operator provides (`[target] registry = { exec =
//! ["my-registry-tool", "lookup"] }`): drover writes the IDs to look up on its standard input,
//! one per line, and reads one JSON object per known ID from its standard output
//! (`entries::Entry`). Claims and reactivation run the same command with another operation in
//! `OP_ENV` and their arguments in the environment; each answers one JSON object (`writes`). A
//! command that fails, hangs past `TIMEOUT` or answers something else is a clear error, never a
//! pass.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::entries::{self, Entry};
use super::{Claim, ClaimError, RegistryError, SiteClaims, SiteRegistry, SiteStates, writes};

/// The environment variable that tells the command which operation drover asks for: `lookup`,
/// `claim`, `release` or `reactivate` (docs/request-format.md).
pub const OP_ENV: &str = "DROVER_REGISTRY_OP";

/// How long one operation may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The most output a lookup may give (about a kilobyte per ID for a million IDs).
const MAX_OUTPUT: u64 = 1 << 30;

pub struct ExecRegistry {
    argv: Vec<String>,
    described: String,
}

impl ExecRegistry {
    pub fn new(argv: Vec<String>, described: String) -> Result<ExecRegistry, RegistryError> {
        if argv.first().is_none_or(|c| c.is_empty()) {
            return Err(RegistryError::Config(
                "[target] registry = { exec = [...] } names no command".into(),
            ));
        }
        Ok(ExecRegistry { argv, described })
    }

    fn failed(&self, reason: String) -> RegistryError {
        RegistryError::Unreachable {
            registry: self.described.clone(),
            reason,
        }
    }

    /// The entries the command gives for `ids`.
    fn lookup(&self, ids: &[&str]) -> Result<Vec<Entry>, RegistryError> {
        let text = self.run("lookup", &[], ids)?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, line)| {
                serde_json::from_str::<Entry>(line).map_err(|e| {
                    self.failed(format!(
                        "line {} of its output is not an entry (docs/request-format.md): {e}",
                        n + 1
                    ))
                })
            })
            .collect()
    }

    /// Runs a write operation: `ids` on standard input, the rest in `env`; its answer is one
    /// JSON object.
    fn write<T: serde::de::DeserializeOwned>(
        &self,
        op: &str,
        env: &[(&str, String)],
        ids: &[&str],
    ) -> Result<T, RegistryError> {
        let text = self.run(op, env, ids)?;
        serde_json::from_str(text.trim()).map_err(|e| {
            self.failed(format!(
                "its answer to {op} ({OP_ENV}={op}) is not the JSON object docs/request-format.md                  describes: {e}"
            ))
        })
    }

    /// Runs the command for `op` (in `OP_ENV`) with `env`, writes `ids` to its standard input
    /// one per line, and returns its standard output.
    fn run(&self, op: &str, env: &[(&str, String)], ids: &[&str]) -> Result<String, RegistryError> {
        let mut child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .env(OP_ENV, op)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.failed(format!("cannot start it: {e}")))?;
        let mut stdin = child.stdin.take().expect("piped");
        let input: String = ids.iter().map(|id| format!("{id}\n")).collect();
        // Written on a thread, so a command that answers before it has read everything cannot
        // block on a full pipe while drover blocks writing.
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let mut stdout = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            (&mut stdout)
                .take(MAX_OUTPUT)
                .read_to_end(&mut out)
                .map(|_| out)
        });
        let mut stderr = child.stderr.take().expect("piped");
        let errors = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut out);
            out
        });
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() > TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(self.failed(format!(
                        "it did not answer within {}",
                        humantime::format_duration(TIMEOUT)
                    )));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(self.failed(format!("cannot wait for it: {e}"))),
            }
        };
        let _ = writer.join();
        let out = reader
            .join()
            .map_err(|_| self.failed("reading its output failed".into()))?
            .map_err(|e| self.failed(format!("cannot read its output: {e}")))?;
        let err = errors.join().unwrap_or_default();
        if !status.success() {
            let said = String::from_utf8_lossy(&err);
            return Err(self.failed(format!(
                "it exited with {status}{}",
                if said.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {}", crate::util::printable(said.trim()))
                }
            )));
        }
        String::from_utf8(out).map_err(|_| self.failed("its output is not UTF-8 text".into()))
    }
}

impl entries::Lookup for ExecRegistry {
    fn lookup(&self, ids: &[&str]) -> Result<Vec<Entry>, RegistryError> {
        ExecRegistry::lookup(self, ids)
    }

    fn described(&self) -> String {
        self.described.clone()
    }

    fn identity(&self) -> String {
        // The program itself, however named (a relative path, a symlink), and its arguments.
        let program = std::fs::canonicalize(&self.argv[0])
            .map_or_else(|_| self.argv[0].clone(), |p| p.display().to_string());
        format!("command {program} {}", self.argv[1..].join(" "))
    }
}

impl SiteClaims for ExecRegistry {
    fn claim(
        &self,
        sites: &[&str],
        me: &Claim,
        take_over: bool,
    ) -> Result<Vec<(String, Claim)>, ClaimError> {
        let env = [
            ("DROVER_RUN_ID", me.run_id.clone()),
            ("DROVER_RUN_LEDGER", me.ledger.clone()),
            ("DROVER_RUN_HOST", me.host.clone()),
            ("DROVER_RUN_PID", me.pid.to_string()),
            ("DROVER_RUN_AT", me.at.to_string()),
            ("DROVER_TAKE_OVER", u8::from(take_over).to_string()),
        ];
        let answer: writes::ClaimAnswer = self
            .write("claim", &env, sites)
            .map_err(|e| ClaimError::from_registry(&self.describe(), e))?;
        answer.into_result(&self.described)
    }

    fn release(&self, run_id: &str) -> Result<(), ClaimError> {
        let _: serde_json::Value = self
            .write("release", &[("DROVER_RUN_ID", run_id.to_owned())], &[])
            .map_err(|e| ClaimError::from_registry(&self.describe(), e))?;
        Ok(())
    }
}

impl SiteStates for ExecRegistry {
    fn reactivate(&self, site: &str, key: &str) -> Result<bool, RegistryError> {
        let expected: Vec<&str> = super::REACTIVATE_FROM.iter().map(|s| s.as_str()).collect();
        let env = [
            ("DROVER_SITE", site.to_owned()),
            ("DROVER_IDEMPOTENCY_KEY", key.to_owned()),
            ("DROVER_EXPECTED", expected.join(" ")),
        ];
        let answer: writes::ReactivateAnswer = self.write("reactivate", &env, &[site])?;
        answer.checked(self, site)
    }
}
