//! Parameter templates: `"{site}/attachments/{shard}"` split into literal text and variables,
//! filled in per step instance by the planner. `{env:NAME}` is a secret by reference: the
//! planner leaves it as it is (so only the reference reaches the plan and the ledger) and the
//! step resolves it from its environment when it runs (`steps::secret`), in the params that
//! kind resolves (`steps::resolves_secrets`).

use std::fmt::Write;

/// One parsed parameter value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamTemplate {
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(String),
    /// `{env:NAME}`: kept as a reference through planning.
    Secret(String),
}

/// Variables every step instance has; any other name is a site attribute.
pub const BUILTIN_VARS: &[&str] = &[
    "site",
    "product",
    "unit",
    "tier",
    "point_in_time",
    "request",
    "backups",
    "backup_window",
    "target",
    "step",
];

impl ParamTemplate {
    /// Parses `{name}` variables; `{{` and `}}` are literal braces.
    pub fn parse(text: &str) -> Result<ParamTemplate, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if let Some(var) = name.strip_prefix("env:")
                        && closed
                        && is_env_name(var)
                    {
                        if !lit.is_empty() {
                            pieces.push(Piece::Text(std::mem::take(&mut lit)));
                        }
                        pieces.push(Piece::Secret(var.to_owned()));
                        continue;
                    }
                    if !closed || !is_var_name(&name) {
                        return Err(format!(
                            "'{{{name}' is not a variable: write {{name}} with letters, digits, \
                             '_' or '.', and close it with '}}'"
                        ));
                    }
                    if !lit.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Var(name));
                }
                '}' => return Err("a lone '}' (write '}}' for a literal brace)".into()),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Text(lit));
        }
        Ok(ParamTemplate { pieces })
    }

    /// The variable names this template uses.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(v) => Some(v.as_str()),
            Piece::Text(_) | Piece::Secret(_) => None,
        })
    }

    /// Fills the template into `out` (cleared first), so a caller filling millions of
    /// params reuses one buffer.
    pub fn render_into<'v>(
        &self,
        out: &mut String,
        mut lookup: impl FnMut(&str) -> Option<&'v str>,
    ) -> Result<(), String> {
        out.clear();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Secret(name) => {
                    let _ = write!(out, "{{env:{name}}}");
                }
                Piece::Var(v) => out.push_str(lookup(v).ok_or_else(|| v.clone())?),
            }
        }
        Ok(())
    }
}

/// The environment variables a rendered param value refers to: `{env:NAME}`.
pub fn secret_refs(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(i) = rest.find("{env:") {
        let after = &rest[i + 5..];
        match after.find('}') {
            Some(end) if is_env_name(&after[..end]) => {
                out.push(&after[..end]);
                rest = &after[end + 1..];
            }
            _ => rest = after,
        }
    }
    out
}

/// An environment variable's name: letters, digits and `_`, not starting with a digit.
fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_var_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<&str, &str>) {
        let vars = |v: &str| match v {
            "site" => Some("site-0001"),
            "shard" => Some("wiki-3"),
            _ => None,
        };
        let got = ParamTemplate::parse(text)
            .map_err(|_| "parse error")
            .and_then(|t| {
                let mut out = String::new();
                t.render_into(&mut out, vars)
                    .map(|()| out)
                    .map_err(|_| "unknown var")
            });
        assert_eq!(got.as_deref().map_err(|e| *e), expected, "{text}");
    }

    #[test]
    fn renders_variables_and_escapes() {
        check("{site}/{shard}", Ok("site-0001/wiki-3"));
        check("plain", Ok("plain"));
        check("{{literal}}", Ok("{literal}"));
        check("{nope}", Err("unknown var"));
        check("{site", Err("parse error"));
        check("a } b", Err("parse error"));
        check("{}", Err("parse error"));
    }

    #[test]
    fn secret_references_pass_through_planning_unresolved() {
        check("Bearer {env:HOOK_TOKEN}", Ok("Bearer {env:HOOK_TOKEN}"));
        check("{env:1BAD}", Err("parse error"));
        assert_eq!(secret_refs("Bearer {env:HOOK_TOKEN}"), ["HOOK_TOKEN"]);
        assert!(secret_refs("env:staging").is_empty(), "an ordinary value");
        assert_eq!(secret_refs("{env:A}/{env:B_2}"), ["A", "B_2"]);
        assert!(secret_refs("https://h/x").is_empty());
    }
}
