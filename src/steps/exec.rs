//! `exec`: runs a command — the way operators drive their own infrastructure from a workflow.
//!
//! Params: `command` (the program), `args` (split on spaces; double quotes group words), and
//! `env.NAME` for environment variables; all templated like any param. A credential is passed
//! by reference, `env.DB_PASSWORD = "{env:PROD_DB_PASSWORD}"`, resolved only here (and hidden
//! again in the output's tail). The child also gets
//! `DROVER_IDEMPOTENCY_KEY`, `DROVER_STEP_ID`, `DROVER_ATTEMPT`, `DROVER_STAGING` (a directory
//! of its own, kept across attempts), `DROVER_UPSTREAM_STAGING` (the staging directories of the
//! `exec` steps it depends on, `:`-separated: where they left their files), `DROVER_UPSTREAM` (a
//! JSON file of those steps' outputs by step ID: a `fetch` names the snapshot it chose) and, for
//! site steps, `DROVER_SITE` and `DROVER_PRODUCT`. Its standard output and error go to `output.log` in its
//! staging directory; the output records the exit code, the last lines and the staging path.
//!
//! Exit 0 is success, 75 (EX_TEMPFAIL) a retryable failure, anything else permanent; a child
//! killed by a signal is retryable. A timed-out or cancelled step kills its child.

use std::process::Stdio;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::secret::Resolved;
use super::{StepContext, StepError, StepKind, StepOutput};

/// The exit code a command uses to ask for another attempt (sysexits' EX_TEMPFAIL).
pub const RETRYABLE_EXIT: i32 = 75;

/// How much of the log's end is kept in the step's output.
const TAIL_BYTES: usize = 2048;

pub struct Exec;

#[async_trait]
impl StepKind for Exec {
    async fn run(&self, ctx: StepContext) -> Result<StepOutput, StepError> {
        let program = ctx
            .param("command")
            .ok_or_else(|| StepError::Permanent("exec needs the param 'command'".into()))?;
        let args = split_args(ctx.param("args").unwrap_or(""))?;
        std::fs::create_dir_all(&ctx.staging)
            .map_err(|e| StepError::Retryable(format!("staging {}: {e}", ctx.staging.display())))?;
        let log_path = ctx.staging.join("output.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| StepError::Retryable(format!("{}: {e}", log_path.display())))?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| StepError::Retryable(e.to_string()))?,
            )
            .stderr(log)
            .env("DROVER_IDEMPOTENCY_KEY", &ctx.idempotency_key)
            .env("DROVER_STEP_ID", &ctx.step_id)
            .env("DROVER_ATTEMPT", ctx.attempt.to_string())
            .kill_on_drop(true);
        if let Some(site) = &ctx.site {
            cmd.env("DROVER_SITE", site);
        }
        if let Some(product) = &ctx.product {
            cmd.env("DROVER_PRODUCT", product);
        }
        let upstream = write_upstream(&ctx)?;
        cmd.env("DROVER_STAGING", &ctx.staging)
            .env("DROVER_UPSTREAM_STAGING", upstream_staging(&ctx))
            .env("DROVER_UPSTREAM", upstream);
        let mut secrets = Resolved::default();
        for (key, value) in &ctx.params {
            if let Some(name) = key.strip_prefix("env.") {
                cmd.env(name, secrets.resolve(value)?);
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| StepError::Permanent(format!("cannot start '{program}': {e}")))?;
        let status = tokio::select! {
            s = child.wait() => s.map_err(|e| StepError::Retryable(format!("waiting for '{program}': {e}")))?,
            _ = ctx.cancel.cancelled() => {
                let _ = child.kill().await;
                return Err(StepError::Retryable("cancelled".into()));
            }
        };
        let tail = secrets.hide(&tail(&log_path).await);
        let output = serde_json::json!({
            "exit_code": status.code(),
            "log": log_path.display().to_string(),
            "tail": tail,
            "staging": ctx.staging.display().to_string(),
        });
        match status.code() {
            Some(0) => Ok(output),
            Some(RETRYABLE_EXIT) => Err(StepError::Retryable(format!(
                "'{program}' exited {RETRYABLE_EXIT} (try again): {}",
                last_line(&tail)
            ))),
            Some(code) => Err(StepError::Permanent(format!(
                "'{program}' exited {code}: {}",
                last_line(&tail)
            ))),
            None => Err(StepError::Retryable(format!(
                "'{program}' was killed by a signal"
            ))),
        }
    }
}

/// Writes the outputs of the steps this one depends on, by step ID, to `upstream.json` in its
/// staging directory (a fetch's names the snapshot it chose, its time and where it is); returns
/// the file's path.
fn write_upstream(ctx: &StepContext) -> Result<std::path::PathBuf, StepError> {
    let path = ctx.staging.join("upstream.json");
    let text = serde_json::to_vec_pretty(&ctx.upstream).expect("JSON values serialize");
    let partial = ctx.staging.join("upstream.json.partial");
    std::fs::write(&partial, text)
        .and_then(|()| std::fs::rename(&partial, &path))
        .map_err(|e| StepError::Retryable(format!("{}: {e}", path.display())))?;
    Ok(path)
}

/// The staging directories of the steps this one depends on (those that report one, as `exec`
/// steps do), `:`-separated in step-ID order: where an earlier command left its files.
fn upstream_staging(ctx: &StepContext) -> String {
    ctx.upstream
        .values()
        .filter_map(|out| out.get("staging").and_then(|s| s.as_str()))
        .collect::<Vec<_>>()
        .join(":")
}

/// Splits on whitespace; `"…"` groups words (no escapes inside).
fn split_args(s: &str) -> Result<Vec<String>, StepError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if quoted {
        return Err(StepError::Permanent(format!(
            "args has an unclosed quote: {s}"
        )));
    }
    if any {
        out.push(cur);
    }
    Ok(out)
}

/// The last `TAIL_BYTES` of a command's output file (which may be huge).
async fn tail(path: &std::path::Path) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = tokio::fs::File::open(path).await {
        let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
        let start = len.saturating_sub(TAIL_BYTES as u64);
        if f.seek(std::io::SeekFrom::Start(start)).await.is_ok() {
            let _ = f.take(TAIL_BYTES as u64).read_to_end(&mut buf).await;
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn last_line(tail: &str) -> &str {
    tail.trim_end().rsplit('\n').next().unwrap_or("").trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_split_on_spaces_and_group_quotes() {
        assert_eq!(
            split_args(r#"-c "echo a b"  x"#).unwrap(),
            ["-c", "echo a b", "x"]
        );
        assert_eq!(split_args("").unwrap(), Vec::<String>::new());
        assert_eq!(split_args(r#"a "" b"#).unwrap(), ["a", "", "b"]);
        assert!(split_args(r#"a "b"#).is_err());
    }
}
