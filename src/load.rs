//! Reading a workflow and a request from disk into validated values. The only IO on the way to
//! a plan; everything after this is pure.

use std::path::{Path, PathBuf};

use crate::diag::Problem;
use crate::request::Request;
use crate::source::Source;
use crate::workflow::Workflow;

/// Reads and validates a workflow file.
pub fn workflow(path: &Path) -> Result<Workflow, Vec<Problem>> {
    let source = Source::read(path).map_err(|p| vec![p])?;
    Workflow::parse(&source, crate::steps::KNOWN_KINDS)
}

/// Reads and validates a request file and the CSV site list it names.
pub fn request(path: &Path) -> Result<Request, Vec<Problem>> {
    let source = Source::read(path).map_err(|p| vec![p])?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Request::parse(&source, |name| Source::read(&resolve(&dir, name)))
}

fn resolve(dir: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}
