//! A step's rendered parameters: a small sorted list whose keys and repeated values are shared.
//!
//! A 100,000-site plan holds about 14 million parameters, and most are the same few texts (every
//! fetch's `source`, `point_in_time` and `window`; every key). A `BTreeMap<String, String>` per
//! step spent about 900 bytes and ten allocations on each step; here a key or a repeated value is
//! one `Arc<str>` shared by every step that has it. It reads and serializes like the map it
//! replaces, so the plan file and the ledger's stored plan keep their format.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Parameters in key order, each key once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params(Vec<(Arc<str>, Arc<str>)>);

impl Params {
    /// From pairs in any order; a later pair replaces an earlier one with the same key.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (Arc<str>, Arc<str>)>) -> Params {
        let mut list: Vec<(Arc<str>, Arc<str>)> = pairs.into_iter().collect();
        // Stable, so among equal keys the last one given is last; keep it.
        list.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Arc<str>, Arc<str>)> = Vec::with_capacity(list.len());
        for pair in list {
            match out.last_mut() {
                Some(last) if last.0 == pair.0 => *last = pair,
                _ => out.push(pair),
            }
        }
        Params(out)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(_, v)| &**v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keeps the parameters whose key `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.0.retain(|(k, _)| keep(k));
    }
}

impl<'a> IntoIterator for &'a Params {
    type Item = (&'a str, &'a str);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Arc<str>, Arc<str>)>,
        fn(&'a (Arc<str>, Arc<str>)) -> (&'a str, &'a str),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Params {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Params {
        Params::from_pairs(
            iter.into_iter()
                .map(|(k, v)| (Arc::from(k.as_ref()), Arc::from(v.as_ref()))),
        )
    }
}

impl Serialize for Params {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Params, D::Error> {
        let map = std::collections::BTreeMap::<String, String>::deserialize(d)?;
        Ok(map.into_iter().collect())
    }
}

/// Hands out one shared `Arc<str>` per distinct text among the most recent few of one slot
/// (a template's parameter), so equal values across steps share one allocation. A value that
/// differs per step (`{site}/{product}`) just misses and gets its own.
#[derive(Default)]
pub(super) struct Recent(Vec<Arc<str>>);

impl Recent {
    /// How many distinct values a slot remembers: enough for one per product.
    const KEEP: usize = 8;

    pub(super) fn share(&mut self, text: &str) -> Arc<str> {
        if let Some(found) = self.0.iter().find(|v| ***v == *text) {
            return found.clone();
        }
        let value: Arc<str> = Arc::from(text);
        if self.0.len() == Self::KEEP {
            self.0.remove(0);
        }
        self.0.push(value.clone());
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_serializes_like_a_sorted_map() {
        let params: Params = [("unit", "site-1/wiki"), ("source", "s3://b"), ("a", "1")]
            .into_iter()
            .collect();
        assert_eq!(params.get("source"), Some("s3://b"));
        assert_eq!(params.get("missing"), None);
        let keys: Vec<&str> = params.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "source", "unit"]);
        let map: std::collections::BTreeMap<String, String> = params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        // The ledger stores plans with postcard: the bytes must be those of the map.
        assert_eq!(
            postcard::to_allocvec(&params).unwrap(),
            postcard::to_allocvec(&map).unwrap()
        );
        let back: Params = postcard::from_bytes(&postcard::to_allocvec(&map).unwrap()).unwrap();
        assert_eq!(back, params);
        assert_eq!(
            serde_json::to_string(&params).unwrap(),
            serde_json::to_string(&map).unwrap()
        );
    }

    #[test]
    fn a_later_pair_replaces_an_earlier_one() {
        let params: Params = [("k", "old"), ("k", "new")].into_iter().collect();
        assert_eq!(params.len(), 1);
        assert_eq!(params.get("k"), Some("new"));
    }

    #[test]
    fn equal_values_share_one_allocation() {
        let mut recent = Recent::default();
        let a = recent.share("backups");
        let b = recent.share("backups");
        assert!(Arc::ptr_eq(&a, &b));
        for i in 0..20 {
            recent.share(&format!("site-{i}/wiki"));
        }
        assert_eq!(recent.0.len(), Recent::KEEP);
    }
}
