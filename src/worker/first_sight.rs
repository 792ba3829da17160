//! First sight of a series identity: decode tags, map the name (or let the profile name
//! it), pick the Prometheus type, clean the labels, check the limits, and find or create the
//! series. Runs once per identity per worker, so it may allocate; its cost is linear in the
//! tags it looks at, and it looks at no more than the tag limit.

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::net::IpAddr;

use hashbrown::HashTable;

use crate::line::{EventKind, Sample};
use crate::mapping::naming::{is_reserved_label, is_valid_label_name};
use crate::mapping::profile::Unmapped;
use crate::mapping::{Action, Mapper, Profile};
use crate::store::{ObserverOptions, ResolveError, SeriesKind, SeriesSpec, Store, TextStyle};
use crate::telemetry::{CONFLICT_NAMES, catalog};

use super::handles::{NO_RETRY, Outcome, Resolution};
use super::limits::{DropReason, SampleLimits, ValueError, checked_value};
use super::sender::SenderLabel;

/// What a first sight decided, and why the identity cannot be stored when it cannot (for a
/// rate-limited log line).
pub(super) struct Resolved {
    pub(super) resolution: Resolution,
    pub(super) problem: Option<String>,
}

/// Labels being assembled, in the order first set, with one hash probe per key: a line with
/// thousands of tags costs linear time, not a scan of the list per tag.
struct LabelSet<'a> {
    pairs: Vec<(String, String)>,
    /// The raw tag key each pair was last set from (`None` for mapping and profile labels),
    /// to tell a repeated tag from two tags whose names escape alike.
    raw: Vec<Option<&'a str>>,
    index: HashTable<usize>,
    /// Seeded: keys come from the network.
    hasher: foldhash::fast::RandomState,
    /// Tags whose escaped name equalled an earlier tag's with a different raw name.
    collisions: u32,
}

impl<'a> LabelSet<'a> {
    fn new() -> Self {
        LabelSet {
            pairs: Vec::new(),
            raw: Vec::new(),
            index: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            collisions: 0,
        }
    }

    /// The slot of `key`, or where to add it.
    fn find(&self, key: &str) -> (u64, Option<usize>) {
        let hash = self.hasher.hash_one(key);
        let found = self.index.find(hash, |&i| self.pairs[i].0 == key).copied();
        (hash, found)
    }

    fn push(&mut self, hash: u64, key: String, value: &str, raw: Option<&'a str>) {
        let i = self.pairs.len();
        self.pairs.push((key, value.to_string()));
        self.raw.push(raw);
        let pairs = &self.pairs;
        let hasher = &self.hasher;
        self.index
            .insert_unique(hash, i, |&j| hasher.hash_one(pairs[j].0.as_str()));
    }

    /// A tag: a later value for the same name wins, as in statsd_exporter's label map.
    /// When the two tags had different raw names (`my.tag` and `my-tag` both escape to
    /// `my_tag`) the later still wins, and the collision is counted as a tag error.
    fn tag(&mut self, raw: &'a str, key: Cow<'_, str>, value: &str) {
        match self.find(&key) {
            (_, Some(i)) => {
                if self.raw[i].is_some_and(|earlier| earlier != raw) {
                    self.collisions += 1;
                }
                self.pairs[i].1 = value.to_string();
                self.raw[i] = Some(raw);
            }
            (hash, None) => self.push(hash, key.into_owned(), value, Some(raw)),
        }
    }

    /// A label from a mapping rule or the profile: sets `key`, or leaves an existing value
    /// alone unless `overwrite`.
    fn set(&mut self, key: &str, value: &str, overwrite: bool) {
        match self.find(key) {
            (_, Some(i)) if overwrite => {
                self.pairs[i].1 = value.to_string();
                self.raw[i] = None;
            }
            (_, Some(_)) => {}
            (hash, None) => self.push(hash, key.to_string(), value, None),
        }
    }
}

/// Resolves `sample`'s series identity with the mapper and profile in force, within
/// `limits` and the store's own; with a sender label, the label and the sender's address
/// (`None` for unixgram), which is set after mapping and wins over a tag of that name.
pub(super) fn resolve(
    profile: &Profile,
    mapper: &Mapper,
    store: &Store,
    limits: &SampleLimits,
    sender: Option<(&SenderLabel, Option<IpAddr>)>,
    sample: &Sample<'_>,
) -> Resolved {
    let kind = sample.kind();
    let mut resolution = Resolution::dropped();
    let done = |resolution, problem| Resolved {
        resolution,
        problem,
    };
    let limited = |mut resolution: Resolution, reason, what: String| {
        resolution.outcome = Outcome::Limited {
            reason,
            room_epoch: NO_RETRY,
        };
        Resolved {
            resolution,
            problem: Some(what),
        }
    };

    let mut labels = LabelSet::new();
    let Some(counts) = sample
        .tags
        .decode_within(limits.tag_budget(), |raw, k, v| labels.tag(raw, k, v))
    else {
        let what = format!(
            "metric {:?} carries more than {} tags",
            shown(&sample.metric),
            limits.max_tags_per_line
        );
        return limited(resolution, DropReason::TooManyTags, what);
    };
    resolution.tag_errors = counts.errors + labels.collisions;
    resolution.has_labels = counts.labels > 0;
    if limits.name_too_long(sample.metric.len()) {
        let what = format!(
            "metric {:?} is {} bytes long",
            shown(&sample.metric),
            sample.metric.len()
        );
        return limited(resolution, DropReason::MetricNameTooLong, what);
    }

    let defaults = mapper.defaults();
    let (name, observer, ttl, scale, help, style) = match mapper.map(&sample.metric, kind) {
        Some(m) if m.action == Action::Drop => {
            resolution.mapped = Some(Action::Drop);
            return done(resolution, None);
        }
        Some(m) => {
            resolution.mapped = Some(Action::Map);
            for (k, v) in &m.labels {
                labels.set(k, v, !m.honor_labels);
            }
            let name = profile.escape(&m.name).into_owned();
            (
                name,
                m.observer.clone(),
                m.ttl,
                m.scale.unwrap_or(1.0),
                m.help.clone(),
                TextStyle::ClientGolang,
            )
        }
        None => {
            let Unmapped {
                name,
                labels: extracted,
                observer,
                style,
            } = profile.unmapped(
                &sample.metric,
                sample.stat_type,
                sample.tags.extracted_by_sender(),
                defaults,
            );
            for (k, v) in &extracted {
                labels.set(k, v, false);
            }
            (name, observer, defaults.ttl, 1.0, None, style)
        }
    };
    if name.is_empty() {
        resolution.outcome = Outcome::Failed {
            counter: catalog::EVENTS_ERROR.counter(["empty_metric_name".into()]),
        };
        let problem = format!("metric {:?} maps to an empty name", shown(&sample.metric));
        return done(resolution, Some(problem));
    }
    // As statsd_exporter, after the mapping and before the registry: a refused first value
    // creates no series, and the key is resolved again with its next value. That includes
    // a sampled observation whose `_sum` (value times repeat) the new series could not take.
    let refused = match checked_value(sample.stat_type, sample.value, scale, profile) {
        Err(e) => Some(e),
        Ok(v) if kind == EventKind::Observer && !(v * f64::from(sample.repeat)).is_finite() => {
            Some(ValueError::NonFinite)
        }
        Ok(_) => None,
    };
    if let Some(e) = refused {
        resolution.outcome = Outcome::BadValue(e);
        return done(resolution, None);
    }
    if limits.name_too_long(name.len()) {
        let what = format!("metric {:?} is {} bytes long", shown(&name), name.len());
        return limited(resolution, DropReason::MetricNameTooLong, what);
    }
    let series_kind = match kind {
        EventKind::Counter => SeriesKind::Counter,
        EventKind::Gauge => SeriesKind::Gauge,
        EventKind::Observer => SeriesKind::Observer(&observer),
    };
    let (is_hist, is_summary) = match series_kind {
        SeriesKind::Observer(ObserverOptions::Histogram(_)) => (true, false),
        SeriesKind::Observer(ObserverOptions::Summary(_)) => (false, true),
        _ => (false, false),
    };
    let mut labels = labels.pairs;
    if let Some((label, address)) = sender {
        // After the mapping's labels, so neither a tag nor a rule can set it.
        resolution.sender_overridden = label.apply(address, &mut labels);
    }
    let before = labels.len();
    labels.retain(|(k, _)| is_valid_label_name(k) && !is_reserved_label(k, is_hist, is_summary));
    resolution.labels_dropped = (before - labels.len()) as u32;
    if let Some((k, _)) = labels.iter().find(|(k, _)| limits.name_too_long(k.len())) {
        let what = format!(
            "metric {name} has a label name of {} bytes ({:?})",
            k.len(),
            shown(k)
        );
        return limited(resolution, DropReason::LabelNameTooLong, what);
    }
    if let Some((k, v)) = labels.iter().find(|(_, v)| limits.value_too_long(v.len())) {
        let what = format!(
            "metric {name} has a value of {} bytes for label {k}",
            v.len()
        );
        return limited(resolution, DropReason::LabelValueTooLong, what);
    }

    let spec = SeriesSpec {
        name: &name,
        help: help.as_deref(),
        kind: series_kind,
        labels,
        ttl,
        style,
    };
    // Read before asking: room made after the refusal moves it past this value.
    let room_epoch = store.room_epoch();
    match store.resolve(&spec) {
        Ok(series) => {
            resolution.outcome = Outcome::Series { series, scale };
            done(resolution, None)
        }
        Err(e @ (ResolveError::SeriesLimit { .. } | ResolveError::MetricSeriesLimit { .. })) => {
            let reason = match e {
                ResolveError::SeriesLimit { .. } => DropReason::MaxSeries,
                _ => DropReason::MaxSeriesPerMetric,
            };
            resolution.outcome = Outcome::Limited { reason, room_epoch };
            done(resolution, Some(e.to_string()))
        }
        Err(e) => {
            resolution.outcome = Outcome::Failed {
                counter: catalog::EVENTS_CONFLICT
                    .counter([CONFLICT_NAMES.value(&name), kind.as_str().into()]),
            };
            done(resolution, Some(e.to_string()))
        }
    }
}

/// At most this much of a name goes into a log message.
const SHOWN_BYTES: usize = 200;

/// The start of `text`, cut on a character boundary, for a log message.
fn shown(text: &str) -> &str {
    if text.len() <= SHOWN_BYTES {
        return text;
    }
    let mut end = SHOWN_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_of<'a>(tags: &[(&'a str, &'a str)]) -> LabelSet<'a> {
        let mut set = LabelSet::new();
        for (raw, v) in tags {
            set.tag(raw, crate::mapping::naming::escape_metric_name(raw), v);
        }
        set
    }

    #[test]
    fn a_repeated_tag_overwrites_and_a_colliding_one_is_counted() {
        let set = set_of(&[("k", "1"), ("k", "2")]);
        assert_eq!(set.pairs, [("k".to_string(), "2".to_string())]);
        assert_eq!(set.collisions, 0, "statsd_exporter's duplicate: no error");
        let set = set_of(&[("my.tag", "a"), ("my-tag", "b"), ("other", "c")]);
        assert_eq!(
            set.pairs,
            [
                ("my_tag".to_string(), "b".to_string()),
                ("other".to_string(), "c".to_string())
            ]
        );
        assert_eq!(set.collisions, 1);
    }

    #[test]
    fn mapping_labels_honour_the_overwrite_flag() {
        let mut set = set_of(&[("a", "tag")]);
        set.set("a", "rule", false);
        set.set("b", "rule", false);
        assert_eq!(set.pairs[0].1, "tag");
        set.set("a", "rule", true);
        assert_eq!(set.pairs[0].1, "rule");
        assert_eq!(set.pairs[1], ("b".to_string(), "rule".to_string()));
    }

    #[test]
    fn many_tags_stay_in_first_set_order() {
        let raws: Vec<String> = (0..6000).map(|i| format!("k{i}")).collect();
        let tags: Vec<(&str, &str)> = raws.iter().map(|r| (r.as_str(), "v")).collect();
        let set = set_of(&tags);
        assert_eq!(set.pairs.len(), 6000);
        assert!(set.pairs.iter().zip(&raws).all(|((k, _), r)| k == r));
    }

    #[test]
    fn shown_cuts_on_a_char_boundary() {
        let long = "é".repeat(300);
        assert!(shown(&long).len() <= SHOWN_BYTES);
        assert_eq!(shown("short"), "short");
    }
}
