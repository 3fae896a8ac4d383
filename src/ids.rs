//! Typed identifiers: a site ID has one documented shape, and IDs of other kinds are recognised
//! and refused by name, so a list of app IDs can never be restored as if it were a list of sites.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest site ID drover accepts, in bytes.
pub const MAX_SITE_ID_LEN: usize = 64;

/// A validated site ID: `site-` followed by 1–59 lowercase letters, digits or inner hyphens,
/// e.g. `site-0042` or `site-acme-eu`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SiteId(String);

/// What an identifier looks like, used to explain why it is not a site ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    Site,
    /// A product (app) instance, `app-…`: the ID kind the 2022 script was wrongly given.
    App,
    Customer,
    Shard,
    Uuid,
    Unknown,
}

impl IdKind {
    /// A phrase for error messages: "an app (product instance) ID".
    pub fn describe(self) -> &'static str {
        match self {
            IdKind::Site => "a site ID",
            IdKind::App => "an app (product instance) ID",
            IdKind::Customer => "a customer ID",
            IdKind::Shard => "a database shard ID",
            IdKind::Uuid => "a bare UUID (drover site IDs are never bare UUIDs)",
            IdKind::Unknown => "not an ID drover recognises",
        }
    }
}

/// Why a string is not a valid site ID.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{value}' is {}, not a site ID; site IDs look like 'site-0042'", kind.describe())]
pub struct SiteIdError {
    pub value: String,
    pub kind: IdKind,
}

impl SiteId {
    /// Parses `value` as a site ID, or says which kind of ID it looks like instead.
    pub fn parse(value: &str) -> Result<SiteId, SiteIdError> {
        match classify(value) {
            IdKind::Site => Ok(SiteId(value.to_owned())),
            kind => Err(SiteIdError {
                value: shorten(value),
                kind,
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SiteId {
    type Error = SiteIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        SiteId::parse(&value)
    }
}

impl From<SiteId> for String {
    fn from(id: SiteId) -> String {
        id.0
    }
}

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest name of a pool, product, step or tier.
pub const MAX_NAME_LEN: usize = 64;

/// Checks a name a workflow or request gives a pool, product, step or tier. Names become parts
/// of step IDs, staging paths and terminal output, so they use a safe alphabet: ASCII letters,
/// digits, `-`, `_` and `.`, starting with a letter or digit, at most 64 bytes.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{}' is not a valid name: use ASCII letters, digits, '-', '_' and '.', starting \
             with a letter or digit, at most {MAX_NAME_LEN} bytes",
            crate::util::printable(&shorten(name))
        ))
    }
}

/// Classifies an identifier by its shape.
pub fn classify(value: &str) -> IdKind {
    if let Some(rest) = value.strip_prefix("site-") {
        if value.len() <= MAX_SITE_ID_LEN && is_slug(rest) {
            return IdKind::Site;
        }
        return IdKind::Unknown;
    }
    let prefixed = |p: &str| value.strip_prefix(p).is_some_and(is_slug);
    if prefixed("app-") || prefixed("product-") {
        IdKind::App
    } else if prefixed("cust-") || prefixed("customer-") {
        IdKind::Customer
    } else if looks_like_uuid(value) {
        // Before the shard shape: a UUID's last group is often all digits, which would
        // otherwise read as `<product>-<n>`.
        IdKind::Uuid
    } else if prefixed("shard-") || looks_like_shard(value) {
        IdKind::Shard
    } else {
        IdKind::Unknown
    }
}

/// Lowercase ASCII letters, digits and inner hyphens; non-empty.
fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `<product>-<number>`, e.g. `wiki-3`, the shape drover's shard attributes use.
fn looks_like_shard(s: &str) -> bool {
    match s.rsplit_once('-') {
        Some((product, n)) => {
            is_slug(product)
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && product.bytes().any(|b| b.is_ascii_lowercase())
        }
        None => false,
    }
}

fn looks_like_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    groups.len() == 5
        && groups
            .iter()
            .zip(lens)
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Keeps error messages readable when the offending value is huge.
fn shorten(value: &str) -> String {
    const MAX: usize = 80;
    if value.len() <= MAX {
        return value.to_owned();
    }
    let mut end = MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: &str, expected: IdKind) {
        assert_eq!(classify(value), expected, "{value}");
    }

    #[test]
    fn classifies_id_shapes() {
        check("site-0042", IdKind::Site);
        check("site-acme-eu", IdKind::Site);
        check("site-", IdKind::Unknown);
        check("site-ACME", IdKind::Unknown);
        check("site--x", IdKind::Unknown);
        check("app-7f3a", IdKind::App);
        check("cust-0042", IdKind::Customer);
        check("wiki-3", IdKind::Shard);
        check("shard-12", IdKind::Shard);
        check("0b6f4a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b", IdKind::Uuid);
        check("", IdKind::Unknown);
    }

    /// Every row of the table in docs/request-format.md, with the overlaps between rows.
    #[test]
    fn every_documented_kind_is_recognised_as_itself() {
        // site-…
        check("site-0042", IdKind::Site);
        check(&format!("site-{}", "a".repeat(59)), IdKind::Site);
        check(&format!("site-{}", "a".repeat(60)), IdKind::Unknown);
        check("site-123e4567-e89b-42d3-a456-426614174000", IdKind::Site);
        check("site-wiki-3", IdKind::Site);
        check("site-app-1", IdKind::Site);
        // app-…, product-…
        check("app-7f3a9c", IdKind::App);
        check("product-wiki-3", IdKind::App);
        check("app-123e4567-e89b-42d3-a456-426614174000", IdKind::App);
        // cust-…, customer-…
        check("customer-acme", IdKind::Customer);
        check("cust-site-1", IdKind::Customer);
        // shard-…, <product>-<n>
        check("shard-wiki-3", IdKind::Shard);
        check("identity-12", IdKind::Shard);
        check("service-desk-7", IdKind::Shard);
        check("a-1", IdKind::Shard);
        check("3-4", IdKind::Unknown);
        // 8-4-4-4-12 hex: the RFC 4122 example ends in an all-digit group, like a shard.
        check("123e4567-e89b-42d3-a456-426614174000", IdKind::Uuid);
        check("12345678-1234-1234-1234-123456789012", IdKind::Uuid);
        check("0B6F4A8E-1C2D-4E5F-8A9B-0C1D2E3F4A5B", IdKind::Uuid);
        check("123e4567-e89b-42d3-a456-42661417400", IdKind::Shard);
        check("123e4567-e89b-42d3-a456-4266141740000", IdKind::Shard);
        check("g23e4567-e89b-42d3-a456-426614174000", IdKind::Shard);
    }

    #[test]
    fn refusal_names_the_kind() {
        let err = SiteId::parse("app-7f3a").unwrap_err();
        assert_eq!(err.kind, IdKind::App);
        assert!(err.to_string().contains("app (product instance) ID"));
    }

    #[test]
    fn long_values_are_shortened_in_errors() {
        let long = "x".repeat(500);
        let err = SiteId::parse(&long).unwrap_err();
        assert!(err.value.len() < 100);
    }
}
