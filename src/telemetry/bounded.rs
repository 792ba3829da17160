//! Self-metric labels whose values come from the network, bounded so the gateway's own
//! metrics cannot grow without limit either: the first values get a series of their own,
//! every later one is counted under [`OTHER_LABEL_VALUE`].

use std::collections::BTreeSet;
use std::sync::Mutex;

use metrics::SharedString;

/// The label value that stands for every value beyond a [`BoundedLabel`]'s cap. It cannot
/// be an escaped metric name that statsd produces by accident (those never start with
/// `__` unless sent so), and it sorts first, where dashboards put an "other" row.
pub const OTHER_LABEL_VALUE: &str = "__other__";

/// How many metric names `statsd_exporter_events_conflict_total` labels one by one; a few
/// conflicting names are a misconfiguration worth seeing by name, thousands are a flood.
pub const CONFLICT_NAMES_CAP: usize = 1000;

/// The `metric_name` label of `statsd_exporter_events_conflict_total`.
pub static CONFLICT_NAMES: BoundedLabel = BoundedLabel::new(CONFLICT_NAMES_CAP);

/// A label that keeps at most `cap` distinct values, first come first kept.
#[derive(Debug)]
pub struct BoundedLabel {
    cap: usize,
    seen: Mutex<BTreeSet<Box<str>>>,
}

impl BoundedLabel {
    /// A label with room for `cap` values.
    pub const fn new(cap: usize) -> BoundedLabel {
        BoundedLabel {
            cap,
            seen: Mutex::new(BTreeSet::new()),
        }
    }

    /// The label value to record `value` under: itself while it is one of the first `cap`
    /// distinct values, else [`OTHER_LABEL_VALUE`]. Called on a first sight, not per event.
    pub fn value(&self, value: &str) -> SharedString {
        // A poisoned set is still a valid set.
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(value) {
            return SharedString::from(value.to_string());
        }
        if seen.len() < self.cap {
            seen.insert(value.into());
            return SharedString::from(value.to_string());
        }
        SharedString::const_str(OTHER_LABEL_VALUE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_beyond_the_cap_share_one() {
        let label = BoundedLabel::new(2);
        assert_eq!(&*label.value("a"), "a");
        assert_eq!(&*label.value("b"), "b");
        assert_eq!(&*label.value("c"), OTHER_LABEL_VALUE);
        assert_eq!(&*label.value("a"), "a", "kept values stay");
        assert_eq!(&*label.value("d"), OTHER_LABEL_VALUE);
    }
}
