//! A registry reached through a command the operator provides (`[target] registry = { exec =
//! ["my-registry-tool", "lookup"] }`): drover writes the IDs to look up on its standard input,
//! one per line, and reads one JSON object per known ID from its standard output
//! (`entries::Entry`). A command that fails, hangs past `TIMEOUT` or answers something else is
//! a clear error, never a pass.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::entries::{self, Entry};
use super::{Identity, RegistryError, SiteRecord, SiteRegistry};

/// How long one lookup may take.
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
        let mut child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
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
        let text = String::from_utf8(out)
            .map_err(|_| self.failed("its output is not UTF-8 text".into()))?;
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
}

impl SiteRegistry for ExecRegistry {
    fn describe(&self) -> String {
        self.described.clone()
    }

    fn identity(&self) -> Result<String, RegistryError> {
        // The program itself, however named (a relative path, a symlink), and its arguments.
        let program = std::fs::canonicalize(&self.argv[0])
            .map_or_else(|_| self.argv[0].clone(), |p| p.display().to_string());
        Ok(format!("command {program} {}", self.argv[1..].join(" ")))
    }

    fn sites(&self, ids: &[&str]) -> Result<HashMap<String, SiteRecord>, RegistryError> {
        let entries = self.lookup(ids)?;
        entries::sites(&entries, &self.described)
    }

    fn identify(&self, id: &str) -> Result<Identity, RegistryError> {
        match self.lookup(&[id])?.into_iter().find(|e| e.id == id) {
            Some(e) => e.identity(&self.described),
            None => Ok(Identity::Unknown),
        }
    }
}
