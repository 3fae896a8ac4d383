//! Who holds a ledger: one live process at a time. A holder is identified by PID, host and the
//! process's start time (so a recycled PID is not mistaken for the old holder). A holder on this
//! host is alive while its process is; one on another host while its heartbeat is recent.

use serde::{Deserialize, Serialize};

/// A heartbeat older than this means a holder on another host is gone.
pub const STALE_AFTER_MS: i64 = 60_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// Process start time in clock ticks since boot (Linux), when known.
    pub proc_start: Option<u64>,
    pub user: String,
}

impl Holder {
    /// This process.
    pub fn current() -> Holder {
        let pid = std::process::id();
        Holder {
            pid,
            host: hostname(),
            proc_start: proc_start(pid),
            user: username(),
        }
    }

    /// Whether the process that recorded this holder still runs. `heartbeat_at` is the last
    /// heartbeat it recorded (ms since the epoch).
    pub fn is_alive(&self, heartbeat_at: i64, now: i64) -> bool {
        if self.host != hostname() {
            return now - heartbeat_at < STALE_AFTER_MS;
        }
        match (proc_start(self.pid), self.proc_start) {
            (Some(now_start), Some(recorded)) => now_start == recorded,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// The user running drover, for the audit trail: the account of the process's real user ID
/// (which `USER` cannot disguise), else `USER`/`LOGNAME`, else `uid <n>`.
pub fn username() -> String {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        });
    let account = uid.as_deref().and_then(|uid| {
        std::fs::read_to_string("/etc/passwd")
            .ok()?
            .lines()
            .find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                (f.nth(1)? == uid).then(|| name.to_owned())
            })
    });
    account
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .or_else(|| std::env::var("LOGNAME").ok().filter(|u| !u.is_empty()))
        .or_else(|| uid.map(|u| format!("uid {u}")))
        .unwrap_or_else(|| "unknown-user".into())
}

/// Field 22 of /proc/<pid>/stat: the process start time; `None` if there is no such process.
fn proc_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_pid_is_not() {
        let me = Holder::current();
        assert!(me.is_alive(0, 0));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let gone = Holder {
            pid,
            proc_start: Some(1),
            ..me.clone()
        };
        assert!(!gone.is_alive(0, 0));
        let recycled = Holder {
            proc_start: me.proc_start.map(|s| s + 1),
            ..me
        };
        assert!(
            !recycled.is_alive(0, 0),
            "same PID, different start time: not the holder"
        );
    }

    #[test]
    fn other_hosts_are_judged_by_heartbeat() {
        let other = Holder {
            host: "elsewhere.invalid".into(),
            ..Holder::current()
        };
        assert!(other.is_alive(1_000, 1_000 + STALE_AFTER_MS - 1));
        assert!(!other.is_alive(1_000, 1_000 + STALE_AFTER_MS));
    }
}
