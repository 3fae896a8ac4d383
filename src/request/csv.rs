//! The CSV site list: a header row `id,tier,products,<attribute>…`, one row per site.
//! `products` is a space- or `;`-separated list (empty means the request's default products);
//! every further column is a site attribute (an empty cell leaves it unset).

use std::collections::BTreeMap;

use super::{Site, resolve_tier};
use crate::diag::{Location, Problem, ProblemKind};
use crate::ids::SiteId;
use crate::source::Source;

pub(super) fn sites(source: &Source, tiers: &[String]) -> Result<Vec<Site>, Vec<Problem>> {
    let mut reader = ::csv::ReaderBuilder::new()
        .trim(::csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(source.text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| vec![syntax(source, &e)])?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let Some(id_col) = column("id") else {
        let kind = ProblemKind::Invalid {
            message: format!(
                "the header row has no 'id' column (found: {})",
                headers.iter().collect::<Vec<_>>().join(", ")
            ),
            fix: "start the file with a header row: id,tier,products,<attributes>…".into(),
        };
        return Err(vec![Problem::new(line_at(source, 1), "header", kind)]);
    };
    let (tier_col, products_col) = (column("tier"), column("products"));
    let mut sites = Vec::new();
    let mut problems = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(syntax(source, &e));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as u32);
        let at = line_at(source, line);
        let id_text = record.get(id_col).unwrap_or("");
        let id = SiteId::parse(id_text)
            .map_err(|e| Problem::new(at.clone(), "id", ProblemKind::BadSiteId(e)));
        let tier_text = tier_col
            .and_then(|c| record.get(c))
            .filter(|t| !t.is_empty());
        let tier = resolve_tier(tier_text.map(|t| (t, at.clone())), tiers, id_text);
        let products = products_col
            .and_then(|c| record.get(c))
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.split([' ', ';'])
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            });
        let attrs: BTreeMap<String, String> = headers
            .iter()
            .zip(record.iter())
            .enumerate()
            .filter(|(i, (_, v))| {
                Some(*i) != Some(id_col)
                    && Some(*i) != tier_col
                    && Some(*i) != products_col
                    && !v.is_empty()
            })
            .map(|(_, (k, v))| (k.to_owned(), v.to_owned()))
            .collect();
        match (id, tier) {
            (Ok(id), Ok(tier)) => sites.push(Site {
                id,
                tier,
                products,
                attrs,
                at,
            }),
            (id, tier) => problems.extend(id.err().into_iter().chain(tier.err())),
        }
    }
    if problems.is_empty() {
        Ok(sites)
    } else {
        Err(problems)
    }
}

fn line_at(source: &Source, line: u32) -> Location {
    Location {
        file: source.name.clone(),
        line: Some(line),
        column: None,
    }
}

fn syntax(source: &Source, err: &::csv::Error) -> Problem {
    let line = err.position().map_or(0, |p| p.line() as u32);
    let message = match err.kind() {
        ::csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("this row has {len} fields; the header has {expected_len}"),
        _ => err.to_string(),
    };
    Problem::new(line_at(source, line), "", ProblemKind::Syntax { message })
}
