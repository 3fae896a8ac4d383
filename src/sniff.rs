//! What kind of drover file some bytes are, so that a file given in the wrong place is named
//! for what it is ("this is a restore request; did you mean -r?") instead of failing on its
//! first unexpected field. Pure: looks only at the bytes it is given.

/// A kind of file drover reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A workflow (TOML with a `[workflow]` table).
    Workflow,
    /// A restore request (TOML with a `[request]` table).
    Request,
    /// A reviewed plan written by `drover plan --out` (`drover-plan/1`).
    Plan,
    /// Another JSON document drover writes (`drover-…` format), e.g. a status or an estimate.
    DroverJson(&'static str),
    /// A SQLite database: a ledger, or a platform's registry or shard.
    Sqlite,
    /// JSON lines, such as a drill history.
    JsonLines,
    /// Something else, or nothing recognisable.
    Other,
}

impl FileKind {
    /// "a restore request (TOML)", for messages.
    pub fn describe(self) -> String {
        match self {
            FileKind::Workflow => "a workflow (TOML with [workflow])".into(),
            FileKind::Request => "a restore request (TOML with [request])".into(),
            FileKind::Plan => "a reviewed plan (JSON written by `drover plan --out`)".into(),
            FileKind::DroverJson(format) => format!("a drover JSON document ({format})"),
            FileKind::Sqlite => "a SQLite database".into(),
            FileKind::JsonLines => "a JSON-lines file (such as a drill history)".into(),
            FileKind::Other => "not a file drover recognises".into(),
        }
    }

    /// Where this kind of file goes on drover's command line.
    pub fn usage(self) -> &'static str {
        match self {
            FileKind::Workflow => "pass it with -w/--workflow",
            FileKind::Request => "pass it with -r/--request",
            FileKind::Plan => "run it with `drover run --plan <file> --confirm <hash>`",
            FileKind::Sqlite => "a ledger goes with --state",
            FileKind::JsonLines => "a drill history goes with `drover drills --history`",
            FileKind::DroverJson(_) | FileKind::Other => "check that this is the file you meant",
        }
    }
}

/// The first bytes of every SQLite database file.
pub const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

/// Recognises a file by its first bytes and, for text, its top-level keys.
pub fn kind_of(bytes: &[u8]) -> FileKind {
    if bytes.starts_with(SQLITE_MAGIC) {
        return FileKind::Sqlite;
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return FileKind::Other;
    };
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        return json_kind(trimmed);
    }
    toml_kind(text)
}

fn json_kind(text: &str) -> FileKind {
    let first = text.lines().next().unwrap_or_default();
    let doc: Option<serde_json::Value> = serde_json::from_str(text).ok();
    let Some(doc) = doc else {
        let line: Option<serde_json::Value> = serde_json::from_str(first).ok();
        return match line {
            Some(_) => FileKind::JsonLines,
            None => FileKind::Other,
        };
    };
    match doc.get("format").and_then(|f| f.as_str()) {
        Some(crate::plan::doc::PLAN_FORMAT) => FileKind::Plan,
        Some(f) if f.starts_with("drover-") => FileKind::DroverJson(static_format(f)),
        _ => FileKind::Other,
    }
}

/// The known format names, as static strings (an unknown one is reported generically).
fn static_format(format: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "drover-plan-summary/1",
        "drover-status/1",
        "drover-estimate/1",
        "drover-timeline/1",
        "drover-backup/1",
    ];
    KNOWN
        .iter()
        .find(|k| **k == format)
        .copied()
        .unwrap_or("drover-…")
}

fn toml_kind(text: &str) -> FileKind {
    let Ok(table) = text.parse::<toml::Table>() else {
        return FileKind::Other;
    };
    if table.contains_key("workflow") {
        FileKind::Workflow
    } else if table.contains_key("request") {
        FileKind::Request
    } else {
        FileKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &[u8], expected: FileKind) {
        assert_eq!(kind_of(text), expected, "{}", String::from_utf8_lossy(text));
    }

    #[test]
    fn recognises_each_kind() {
        check(b"[workflow]\nname = \"x\"\n", FileKind::Workflow);
        check(
            b"[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\n",
            FileKind::Request,
        );
        check(
            b"{\"format\": \"drover-plan/1\", \"hash\": \"ab\"}",
            FileKind::Plan,
        );
        check(
            b"{\"format\": \"drover-status/1\"}",
            FileKind::DroverJson("drover-status/1"),
        );
        check(b"SQLite format 3\0rest", FileKind::Sqlite);
        check(b"{\"a\": 1}\n{\"a\": 2}\n", FileKind::JsonLines);
        check(b"id,tier\nsite-1,gold\n", FileKind::Other);
        check(b"\xff\xfe", FileKind::Other);
        check(b"", FileKind::Other);
    }
}
