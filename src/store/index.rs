//! A family's series, ordered by labels.
//!
//! Most families hold one series (every flat statsd name is its own family), and a
//! `BTreeMap` allocates a whole node (~300 bytes) for its first entry: a family with one
//! series keeps it inline instead, and becomes a map at the second.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{Labels, SeriesRef};

/// Series of one family, in label order.
#[derive(Debug, Default)]
pub(crate) enum SeriesIndex {
    #[default]
    Empty,
    One(Labels, SeriesRef),
    Many(BTreeMap<Labels, SeriesRef>),
}

impl SeriesIndex {
    pub(crate) fn len(&self) -> usize {
        match self {
            SeriesIndex::Empty => 0,
            SeriesIndex::One(..) => 1,
            SeriesIndex::Many(m) => m.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn get(&self, labels: &[(Box<str>, Box<str>)]) -> Option<&SeriesRef> {
        match self {
            SeriesIndex::Empty => None,
            SeriesIndex::One(k, s) => (**k == *labels).then_some(s),
            SeriesIndex::Many(m) => m.get(labels),
        }
    }

    pub(crate) fn insert(&mut self, labels: Labels, series: SeriesRef) {
        match std::mem::take(self) {
            SeriesIndex::Empty => *self = SeriesIndex::One(labels, series),
            SeriesIndex::One(k, _) if k == labels => *self = SeriesIndex::One(k, series),
            SeriesIndex::One(k, s) => {
                let mut m = BTreeMap::new();
                m.insert(k, s);
                m.insert(labels, series);
                *self = SeriesIndex::Many(m);
            }
            SeriesIndex::Many(mut m) => {
                m.insert(labels, series);
                *self = SeriesIndex::Many(m);
            }
        }
    }

    pub(crate) fn remove(&mut self, labels: &[(Box<str>, Box<str>)]) -> Option<SeriesRef> {
        match std::mem::take(self) {
            SeriesIndex::Empty => None,
            SeriesIndex::One(k, s) if *k == *labels => Some(s),
            one @ SeriesIndex::One(..) => {
                *self = one;
                None
            }
            SeriesIndex::Many(mut m) => {
                let removed = m.remove(labels);
                *self = if m.is_empty() {
                    SeriesIndex::Empty
                } else {
                    SeriesIndex::Many(m)
                };
                removed
            }
        }
    }

    /// Up to `n` entries strictly after `after` (from the start when `None`), in order.
    pub(crate) fn page(
        &self,
        after: Option<&Labels>,
        n: usize,
        mut f: impl FnMut(&Labels, &SeriesRef),
    ) {
        match self {
            SeriesIndex::Empty => {}
            SeriesIndex::One(k, s) => {
                if after.is_none_or(|a| k > a) && n > 0 {
                    f(k, s)
                }
            }
            SeriesIndex::Many(m) => {
                let lower = match after {
                    Some(a) => Bound::Excluded(a.clone()),
                    None => Bound::Unbounded,
                };
                for (k, s) in m.range((lower, Bound::Unbounded)).take(n) {
                    f(k, s);
                }
            }
        }
    }

    /// Every entry, in order.
    pub(crate) fn for_each(&self, f: impl FnMut(&Labels, &SeriesRef)) {
        self.page(None, usize::MAX, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Series;
    use std::sync::Arc;

    fn labels(v: &str) -> Labels {
        Arc::from(vec![("k".into(), v.into())])
    }

    fn series(l: &Labels) -> SeriesRef {
        Arc::new(Series::counter(l.clone(), 0, 0))
    }

    fn keys(ix: &SeriesIndex, after: Option<&Labels>, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        ix.page(after, n, |k, _| out.push(k[0].1.to_string()));
        out
    }

    #[test]
    fn one_inline_then_a_map_then_back() {
        let mut ix = SeriesIndex::default();
        let (b, a, c) = (labels("b"), labels("a"), labels("c"));
        ix.insert(b.clone(), series(&b));
        assert!(matches!(ix, SeriesIndex::One(..)));
        assert!(ix.get(&b).is_some() && ix.get(&a).is_none());
        ix.insert(b.clone(), series(&b));
        assert_eq!(ix.len(), 1, "same labels replace");
        ix.insert(a.clone(), series(&a));
        ix.insert(c.clone(), series(&c));
        assert_eq!(keys(&ix, None, 10), ["a", "b", "c"]);
        assert_eq!(keys(&ix, Some(&a), 1), ["b"]);
        assert_eq!(keys(&ix, Some(&c), 10), Vec::<String>::new());
        assert!(ix.remove(&a).is_some() && ix.remove(&a).is_none());
        ix.remove(&b);
        ix.remove(&c);
        assert!(ix.is_empty() && matches!(ix, SeriesIndex::Empty));
    }

    #[test]
    fn single_entry_paging() {
        let mut ix = SeriesIndex::default();
        let b = labels("b");
        ix.insert(b.clone(), series(&b));
        assert_eq!(keys(&ix, Some(&labels("a")), 5), ["b"]);
        assert_eq!(keys(&ix, Some(&b), 5), Vec::<String>::new());
        assert_eq!(keys(&ix, None, 0), Vec::<String>::new());
        assert!(ix.remove(&labels("z")).is_none());
        assert_eq!(ix.len(), 1);
    }
}
