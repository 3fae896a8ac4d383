//! Problems with an operator's input: where (file, line, column), which entry, what is wrong and
//! how to fix it. The planner collects every problem it finds instead of stopping at the first.

use std::fmt;

use crate::ids::SiteIdError;

/// Where a problem is: a file, and the line and column where the parser knows them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    pub file: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
}

impl Location {
    pub fn file(name: &str) -> Location {
        Location {
            file: name.to_owned(),
            line: None,
            column: None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        Ok(())
    }
}

/// One problem in the input.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{at}: {}{kind}\n    fix: {}", entry_prefix(.entry), .kind.fix())]
pub struct Problem {
    pub at: Location,
    /// The entry the problem is in, e.g. `steps.rebuild.timeout` or `site site-0042`.
    pub entry: String,
    pub kind: ProblemKind,
    /// The sites this problem refuses, when it concerns only them (a preflight refusal):
    /// `--exclude-refused` leaves them out instead of refusing the whole plan.
    pub refuses: Vec<String>,
}

fn entry_prefix(entry: &str) -> String {
    if entry.is_empty() {
        String::new()
    } else {
        format!("{entry}: ")
    }
}

impl Problem {
    pub fn new(at: Location, entry: impl Into<String>, kind: ProblemKind) -> Problem {
        Problem {
            at,
            entry: entry.into(),
            kind,
            refuses: Vec::new(),
        }
    }

    /// This problem, concerning only `sites`.
    pub fn refusing(mut self, sites: Vec<String>) -> Problem {
        self.refuses = sites;
        self
    }
}

/// What is wrong. Each variant knows the fix to suggest.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProblemKind {
    #[error("cannot read the file: {reason}")]
    Unreadable { reason: String },
    #[error("the file is larger than drover's limit of {}", crate::util::bytes_text(*.limit))]
    TooLarge { limit: u64 },
    #[error("the file is empty")]
    EmptyFile,
    #[error("the file is not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("{message}")]
    Syntax { message: String },
    #[error("dependency cycle: {}", path.join(" -> "))]
    Cycle { path: Vec<String> },
    #[error("unknown {what} '{name}'")]
    Unknown {
        what: &'static str,
        name: String,
        known: Vec<String>,
    },
    #[error("site attribute '{attribute}' is not set for site {site}{}", product_suffix(.product))]
    MissingAttribute {
        attribute: String,
        site: String,
        product: Option<String>,
    },
    #[error("attribute '{attribute}' of site {site} is '{value}', not a number")]
    NotANumber {
        attribute: String,
        site: String,
        value: String,
    },
    #[error("pool '{pool}' has capacity 0, so nothing that uses it could ever run")]
    ZeroCapacity { pool: String },
    #[error("needs {needs} units of pool '{pool}', which has only {capacity}")]
    PoolTooSmall {
        pool: String,
        needs: u32,
        capacity: u32,
    },
    #[error("site {site} is listed twice (first at {first})")]
    DuplicateSite { site: String, first: String },
    #[error("the request lists no sites")]
    EmptyRequest,
    #[error("'{value}' is not a duration ({reason})")]
    BadDuration { value: String, reason: String },
    #[error("'{value}' is {reason}")]
    OutOfRange {
        value: String,
        reason: String,
        /// The allowed range, as the fix states it: "1 to 1000000", "at most 1day".
        range: String,
    },
    #[error("'{value}' is not an RFC 3339 timestamp ({reason})")]
    BadTimestamp { value: String, reason: String },
    #[error("{0}")]
    BadSiteId(SiteIdError),
    #[error(
        "site {site} has product '{product}', which needs '{needs}', but the site does not list '{needs}'"
    )]
    MissingProductDependency {
        site: String,
        product: String,
        needs: String,
    },
    #[error("{message}")]
    Invalid { message: String, fix: String },
}

fn product_suffix(product: &Option<String>) -> String {
    match product {
        Some(p) => format!(" (looked up as '{p}.<attribute>' and '<attribute>')"),
        None => String::new(),
    }
}

impl ProblemKind {
    /// What the operator should do about it.
    pub fn fix(&self) -> String {
        use ProblemKind::*;
        match self {
            Unreadable { .. } => "check the path and its permissions".into(),
            TooLarge { .. } => "split the input, or check that this is the file you meant".into(),
            EmptyFile => "give a file with content; see docs/workflow-format.md".into(),
            NotUtf8 { .. } => {
                "save the file as UTF-8 text; check that it is not a binary file".into()
            }
            Syntax { .. } => "correct the syntax at the position shown".into(),
            Cycle { .. } => "remove one of the dependencies on the cycle".into(),
            Unknown { what, known, .. } => {
                if known.is_empty() {
                    format!("declare the {what} first")
                } else {
                    format!("use one of: {}", one_line_list(known))
                }
            }
            MissingAttribute { attribute, .. } => {
                format!("set '{attribute}' in the site's attrs (or its CSV row)")
            }
            NotANumber { .. } => "give a number, e.g. 12.5".into(),
            ZeroCapacity { .. } => "give the pool a capacity of at least 1".into(),
            PoolTooSmall { .. } => "raise the pool's capacity or lower the step's use".into(),
            DuplicateSite { .. } => "list each site once".into(),
            EmptyRequest => "add sites under [[sites]] or name a CSV with request.sites_csv".into(),
            BadDuration { .. } => "write a duration like \"90s\", \"15m\" or \"1h 30m\"".into(),
            OutOfRange { range, .. } => {
                format!(
                    "give a value in the allowed range: {range} (docs/security.md lists every limit)"
                )
            }
            BadTimestamp { .. } => "write a time like \"2022-04-05T07:38:00Z\"".into(),
            BadSiteId(_) => {
                "check that this list really names sites; a site ID is 'site-' followed by \
                 lowercase letters, digits and hyphens"
                    .into()
            }
            MissingProductDependency { needs, .. } => {
                format!("add '{needs}' to the site's products")
            }
            Invalid { fix, .. } => fix.clone(),
        }
    }
}

fn one_line_list(items: &[String]) -> String {
    const SHOWN: usize = 12;
    let mut out = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        out.push_str(&format!(", … ({} in all)", items.len()));
    }
    out
}

impl ProblemKind {
    /// The problem for a refused duration: malformed, or over its limit.
    pub fn duration(value: &str, err: crate::limits::DurationError) -> ProblemKind {
        use crate::limits::DurationError;
        match err {
            DurationError::Malformed(reason) => ProblemKind::BadDuration {
                value: value.to_owned(),
                reason,
            },
            DurationError::TooLong(max) => ProblemKind::OutOfRange {
                value: value.to_owned(),
                reason: err.to_string(),
                range: format!("at most {}", crate::limits::human(max)),
            },
        }
    }
}

/// Problems that differ only in the site they name, gathered: 300 live sites are one line with a
/// count and the first IDs, not 300 lines.
#[derive(Debug)]
pub struct ProblemGroup<'a> {
    /// The group's problems, in input order.
    pub members: Vec<&'a Problem>,
    /// The site IDs the group's problems name, in input order.
    pub sites: Vec<String>,
}

/// How many site IDs a group names before "… and N more".
const GROUP_SHOWN: usize = 10;

/// Groups problems of the same shape (file, entry and message with the site ID taken out, fix),
/// in the order their first member appears.
pub fn grouped(problems: &[Problem]) -> Vec<ProblemGroup<'_>> {
    let mut groups: Vec<ProblemGroup<'_>> = Vec::new();
    let mut by_shape: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for p in problems {
        let Some((shape, site)) = shape_of(p) else {
            groups.push(ProblemGroup {
                members: vec![p],
                sites: Vec::new(),
            });
            continue;
        };
        match by_shape.get(&shape) {
            Some(&g) => {
                groups[g].members.push(p);
                groups[g].sites.push(site);
            }
            None => {
                by_shape.insert(shape, groups.len());
                groups.push(ProblemGroup {
                    members: vec![p],
                    sites: vec![site],
                });
            }
        }
    }
    groups
}

/// A problem's text with the site ID its entry names replaced, and that ID; `None` for a
/// problem whose entry names no site.
fn shape_of(p: &Problem) -> Option<(String, String)> {
    let start = p.entry.find("site-")?;
    let end = p.entry[start..]
        .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
        .map_or(p.entry.len(), |n| start + n);
    let site = &p.entry[start..end];
    let text = format!(
        "{}\u{0}{}\u{0}{}\u{0}{}",
        p.at.file,
        p.entry,
        p.kind,
        p.kind.fix()
    );
    Some((text.replace(site, "<site>"), site.to_owned()))
}

impl fmt::Display for ProblemGroup<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.members.len() < 3 {
            let each: Vec<String> = self.members.iter().map(|p| p.to_string()).collect();
            return write!(f, "{}", each.join("\n"));
        }
        let first = &self.sites[0];
        let shown: Vec<&str> = self
            .sites
            .iter()
            .take(GROUP_SHOWN)
            .map(String::as_str)
            .collect();
        let more = self.sites.len().saturating_sub(GROUP_SHOWN);
        let more = if more > 0 {
            format!(", … and {more} more")
        } else {
            String::new()
        };
        let p = self.members[0];
        write!(
            f,
            "{}: {} sites: {}{}\n    sites: {}{more}\n    fix: {}",
            p.at.file,
            self.sites.len(),
            entry_prefix(&p.entry.replace(first.as_str(), "<site>")),
            p.kind.to_string().replace(first.as_str(), "<site>"),
            shown.join(", "),
            p.kind.fix().replace(first.as_str(), "<site>"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(site: &str, line: u32) -> Problem {
        let at = Location {
            file: "req.toml".into(),
            line: Some(line),
            column: Some(6),
        };
        let kind = ProblemKind::Invalid {
            message: "is active in the registry: drover never restores over a live site".into(),
            fix: "remove it from the request".into(),
        };
        Problem::new(at, format!("site {site}"), kind)
    }

    #[test]
    fn problems_that_differ_only_in_their_site_are_one_line() {
        let mut problems: Vec<Problem> = (1..=300)
            .map(|i| live(&format!("site-{i:04}"), i))
            .collect();
        problems.push(Problem::new(
            Location::file("wf.toml"),
            "pools.db",
            ProblemKind::ZeroCapacity { pool: "db".into() },
        ));
        let groups = grouped(&problems);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].sites.len(), 300);
        let text = groups[0].to_string();
        assert!(
            text.starts_with("req.toml: 300 sites: site <site>: is active"),
            "{text}"
        );
        assert!(
            text.contains("site-0009, site-0010, … and 290 more"),
            "{text}"
        );
        assert!(text.contains("fix: remove it from the request"), "{text}");
        assert_eq!(groups[1].to_string(), problems[300].to_string());
        // A site named only in the file's path does not make problems alike.
        let at = Location::file("/srv/site-restore/req.toml");
        let kind = |m: &str| ProblemKind::Invalid {
            message: m.into(),
            fix: "f".into(),
        };
        let odd = [
            Problem::new(at.clone(), "a", kind("one")),
            Problem::new(at.clone(), "b", kind("two")),
            Problem::new(at, "c", kind("three")),
        ];
        assert_eq!(grouped(&odd).len(), 3);
        // Two alike are still shown one by one.
        let two = grouped(&problems[..2]);
        assert_eq!(two.len(), 1);
        assert_eq!(
            two[0].to_string(),
            format!("{}\n{}", problems[0], problems[1])
        );
    }
}
