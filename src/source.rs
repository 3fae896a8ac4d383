//! Input text with its file name, so every problem can be reported as `file:line:column`.
//! Reading is bounded: a file that is too large or not UTF-8 is refused with a clear problem.

use std::path::Path;

use crate::diag::{Location, Problem, ProblemKind};

/// The largest workflow or request file drover reads.
pub const MAX_INPUT_BYTES: u64 = 64 * 1024 * 1024;
/// The largest CSV site list drover reads (a million sites fit in well under this).
pub const MAX_SITE_LIST_BYTES: u64 = 512 * 1024 * 1024;

/// One input file's text and where it came from.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: String,
    pub text: String,
    line_starts: Vec<usize>,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Source {
        let text = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Source {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// Reads a file, refusing missing, oversized, non-UTF-8 and empty input.
    pub fn read(path: &Path) -> Result<Source, Problem> {
        Source::read_limited(path, MAX_INPUT_BYTES)
    }

    /// [`Source::read`] with another size limit (CSV site lists are allowed more).
    pub fn read_limited(path: &Path, limit: u64) -> Result<Source, Problem> {
        let bytes = Source::read_bytes(path, limit)?;
        Source::from_bytes(path.display().to_string(), bytes)
    }

    /// The bytes of a file of at most `limit` bytes, before any check of their content.
    pub fn read_bytes(path: &Path, limit: u64) -> Result<Vec<u8>, Problem> {
        let name = path.display().to_string();
        crate::util::read_capped(path, limit).map_err(|e| {
            let kind = match e.kind() {
                std::io::ErrorKind::FileTooLarge => ProblemKind::TooLarge { limit },
                _ => ProblemKind::Unreadable {
                    reason: e.to_string(),
                },
            };
            Problem::new(Location::file(&name), "", kind)
        })
    }

    /// Checks UTF-8 and non-emptiness of bytes that came from `name`.
    pub fn from_bytes(name: String, bytes: Vec<u8>) -> Result<Source, Problem> {
        match String::from_utf8(bytes) {
            Ok(text) if text.trim().is_empty() => Err(Problem::new(
                Location::file(&name),
                "",
                ProblemKind::EmptyFile,
            )),
            Ok(text) => Ok(Source::new(name, text)),
            Err(e) => {
                let offset = e.utf8_error().valid_up_to();
                let prefix = String::from_utf8_lossy(&e.as_bytes()[..offset]).into_owned();
                let at = Source::new(name.clone(), prefix).locate(offset);
                Err(Problem::new(at, "", ProblemKind::NotUtf8 { offset }))
            }
        }
    }

    /// The 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let col = self.text[start..]
            .char_indices()
            .take_while(|(i, _)| start + i < offset)
            .count();
        (line as u32 + 1, col as u32 + 1)
    }

    /// A location for a byte offset in this source.
    pub fn locate(&self, offset: usize) -> Location {
        let (line, column) = self.line_col(offset);
        Location {
            file: self.name.clone(),
            line: Some(line),
            column: Some(column),
        }
    }

    /// A location for the whole file.
    pub fn whole(&self) -> Location {
        Location::file(&self.name)
    }

    /// The problem for a TOML deserialization error in this source, located by its span.
    pub fn toml_problem(&self, err: &toml::de::Error) -> Problem {
        let at = match err.span() {
            Some(span) => self.locate(span.start),
            None => self.whole(),
        };
        let message = err.message().trim().to_owned();
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(field, _)| field.to_owned());
        let kind = match missing {
            Some(field) => ProblemKind::Invalid {
                message,
                fix: format!(
                    "add `{field} = …` to the entry that starts here (docs/workflow-format.md, docs/request-format.md)"
                ),
            },
            None => ProblemKind::Syntax { message },
        };
        Problem::new(at, "", kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let s = Source::new("f", "ab\ncdé\nx");
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(4), (2, 2));
        assert_eq!(s.line_col(8), (3, 1));
    }

    #[test]
    fn non_utf8_is_located() {
        let err = Source::from_bytes("f".into(), b"ok\nab\xffc".to_vec()).unwrap_err();
        assert!(matches!(err.kind, ProblemKind::NotUtf8 { offset: 5 }));
        assert_eq!(err.at.line, Some(2));
        assert_eq!(err.at.column, Some(3));
    }
}
