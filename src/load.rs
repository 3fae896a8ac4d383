//! Reading a workflow and a request from disk into validated values, keeping the text of every
//! file read (the ledger stores it, so a run can always be traced to its exact inputs).
//! The only IO on the way to a plan; everything after this is pure.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use crate::diag::{Location, Problem, ProblemKind};
use crate::ledger::Snapshot;
use crate::request::Request;
use crate::sniff::FileKind;
use crate::source::Source;
use crate::workflow::Workflow;

/// A workflow and a request, validated, with the text they came from.
pub struct Inputs {
    pub workflow: Workflow,
    pub request: Request,
    pub snapshot: Snapshot,
}

/// Reads and validates both files, reporting the problems of both at once.
pub fn inputs(workflow_path: &Path, request_path: &Path) -> Result<Inputs, Vec<Problem>> {
    let files = RefCell::new(std::collections::BTreeMap::new());
    let wf = workflow_with(workflow_path, &files);
    let req = request_with(request_path, &files);
    match (wf, req) {
        (Ok(workflow), Ok(request)) => {
            let snapshot = Snapshot {
                files: files.into_inner(),
                workflow_file: workflow_path.display().to_string(),
                request_file: request_path.display().to_string(),
            };
            Ok(Inputs {
                workflow,
                request,
                snapshot,
            })
        }
        (w, r) => {
            let mut problems = w.err().unwrap_or_default();
            problems.extend(r.err().unwrap_or_default());
            Err(problems)
        }
    }
}

/// Reads and validates a workflow file.
pub fn workflow(path: &Path) -> Result<Workflow, Vec<Problem>> {
    workflow_with(path, &RefCell::default())
}

/// Reads and validates a request file and the CSV site list it names.
pub fn request(path: &Path) -> Result<Request, Vec<Problem>> {
    request_with(path, &RefCell::default())
}

type Files = RefCell<std::collections::BTreeMap<String, String>>;

/// Reads an input file that should be of kind `expected`. What kind of file it is instead is
/// only worked out once it failed to read or parse (see [`named_kind`]): the sniff parses the
/// whole file, which a 50 MB request should not pay for twice.
fn read(path: &Path, files: &Files, expected: FileKind) -> Result<Source, Problem> {
    let bytes = Source::read_bytes(path, crate::source::MAX_INPUT_BYTES)?;
    if bytes.starts_with(crate::sniff::SQLITE_MAGIC) {
        return Err(named_kind(path, &bytes, expected).expect("a SQLite file is a known kind"));
    }
    remember(
        Source::from_bytes(path.display().to_string(), bytes)?,
        files,
    )
}

/// A file that did not parse as `expected` but is another kind of drover file, named for what
/// it is ("this is a restore request; pass it with -r"); `None` if it is not one.
fn named_kind(path: &Path, bytes: &[u8], expected: FileKind) -> Option<Problem> {
    let found = crate::sniff::kind_of(bytes);
    (found != expected && found != FileKind::Other).then(|| {
        Problem::new(
            Location::file(&path.display().to_string()),
            "",
            ProblemKind::Invalid {
                message: format!("this is {}, not {}", found.describe(), expected.describe()),
                fix: format!("{}; did you swap the files?", found.usage()),
            },
        )
    })
}

/// Parse problems, or the one problem that says the file is another kind of drover file.
fn or_named(
    path: &Path,
    source: &Source,
    expected: FileKind,
    problems: Vec<Problem>,
) -> Vec<Problem> {
    named_kind(path, source.text.as_bytes(), expected).map_or(problems, |p| vec![p])
}

fn read_limited(path: &Path, files: &Files, limit: u64) -> Result<Source, Problem> {
    remember(Source::read_limited(path, limit)?, files)
}

/// Keeps the text of a file read, for the ledger's snapshot of the inputs.
fn remember(source: Source, files: &Files) -> Result<Source, Problem> {
    files
        .borrow_mut()
        .insert(source.name.clone(), source.text.clone());
    Ok(source)
}

fn workflow_with(path: &Path, files: &Files) -> Result<Workflow, Vec<Problem>> {
    let source = read(path, files, FileKind::Workflow).map_err(|p| vec![p])?;
    Workflow::parse(&source, crate::steps::KNOWN_KINDS)
        .map_err(|p| or_named(path, &source, FileKind::Workflow, p))
}

fn request_with(path: &Path, files: &Files) -> Result<Request, Vec<Problem>> {
    let source = read(path, files, FileKind::Request).map_err(|p| vec![p])?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let site_list = |name: &str| {
        read_limited(
            &resolve(&dir, name),
            files,
            crate::source::MAX_SITE_LIST_BYTES,
        )
    };
    let mut request = Request::parse(&source, site_list)
        .map_err(|p| or_named(path, &source, FileKind::Request, p))?;
    request.backups = request.backups.map(|b| absolute_source(&b, &dir));
    request.target = request.target.map(|t| {
        if t.starts_with(crate::request::EXEC_PREFIX) {
            t
        } else {
            absolute_source(&t, &dir)
        }
    });
    Ok(request)
}

/// One string setting (`[table] key = "…"`) of a request file, read leniently: for a file that
/// may not validate, or when nothing else of it is needed. `None` if it cannot be read.
pub fn peek(request_path: &Path, table: &str, key: &str) -> Option<String> {
    peek_value(request_path, table, key)?
        .as_str()
        .map(str::to_owned)
}

/// As [`peek`], the value whatever its type.
pub fn peek_value(request_path: &Path, table: &str, key: &str) -> Option<toml::Value> {
    let bytes = crate::util::read_capped(request_path, crate::source::MAX_INPUT_BYTES).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut value: toml::Table = text.parse().ok()?;
    value.remove(table)?.get(key).cloned()
}

/// A backup source with a relative directory made absolute (relative to the request file), so
/// steps can open it from anywhere. URLs other than `file://` are left as they are.
fn absolute_source(source: &str, dir: &Path) -> String {
    if source.contains("://") && !source.starts_with("file://") {
        return source.to_owned();
    }
    let path = source.strip_prefix("file://").unwrap_or(source);
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let abs = resolve(
        &std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()),
        path,
    );
    abs.display().to_string()
}

fn resolve(dir: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}
