//! First sight of a series identity: decode tags, map the name, pick the Prometheus type,
//! clean the labels, and find or create the series. Runs once per identity per worker, so
//! it may allocate.

use std::borrow::Cow;

use crate::line::{Dialects, EventKind, Sample, StatType};
use crate::mapping::envoy::{
    ENVOY_DEFAULT_BUCKETS_MS, TagExtractor, TagRuleSet, prometheus_label_name,
    prometheus_metric_name, sink_prefix_strip,
};
use crate::mapping::{Action, Mapper};
use crate::naming::{
    escape_metric_name, escape_metric_name_legacy, is_reserved_label, is_valid_label_name,
};
use crate::store::{
    HistogramOptions, ObserverOptions, SeriesKind, SeriesSpec, Store, SummaryOptions, TextStyle,
};

use super::handles::Outcome;

/// A built-in naming profile: what happens to names the mapping file does not match.
#[derive(Debug, Default)]
pub enum Profile {
    /// Current statsd_exporter: escaped statsd name, tags as labels, timers in seconds.
    #[default]
    Statsd,
    /// What Istio 0.2–1.0's Mixer endpoint served (statsd_exporter 0.5/0.6, empty mapping):
    /// every non-alphanumeric character becomes `_` (no double-dash rule), timers are
    /// summaries of raw milliseconds, and only DogStatsD tags are parsed.
    IstioMixer,
    /// Envoy's own `/stats/prometheus` names and labels: the sink prefix is stripped,
    /// Envoy's tag-extraction rules turn name segments into labels, and timers become
    /// histograms in milliseconds with Envoy's default buckets.
    Envoy(EnvoyProfile),
}

/// Settings of the Envoy profile.
#[derive(Debug)]
pub struct EnvoyProfile {
    extractor: TagExtractor,
    prefix: String,
    histogram: ObserverOptions,
}

impl EnvoyProfile {
    /// Prometheus name and extracted labels for an unmapped statsd name.
    fn name_and_tags(
        &self,
        metric: &str,
        already_extracted: bool,
    ) -> (String, Vec<(String, String)>) {
        let Some(stat) = sink_prefix_strip(metric, &self.prefix) else {
            // Not from an Envoy sink with our prefix: name it as statsd_exporter would.
            return (escape_metric_name(metric).into_owned(), Vec::new());
        };
        if already_extracted {
            // Envoy's dog_statsd sink sends the tag-extracted name with the tags as
            // DogStatsD tags; extracting again could cut a real name segment.
            return (prometheus_metric_name(stat), Vec::new());
        }
        let ex = self.extractor.extract(stat);
        let tags = ex
            .tags
            .iter()
            .map(|(k, v)| (prometheus_label_name(k), v.clone()))
            .collect();
        (prometheus_metric_name(&ex.name), tags)
    }
}

/// A profile could not be set up from its flags.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// `--envoy.tag-rules` names no known rule set.
    #[error("unknown --envoy.tag-rules {0:?}: use envoy, envoy-2018 or istio")]
    UnknownTagRules(String),
}

impl Profile {
    /// The Envoy profile: strip `prefix.`, extract tags with the named rule set
    /// (`envoy`, `envoy-2018` or `istio`).
    pub fn envoy(prefix: &str, rules: &str) -> Result<Profile, ProfileError> {
        let set: TagRuleSet = rules
            .parse()
            .map_err(|_| ProfileError::UnknownTagRules(rules.to_string()))?;
        Ok(Profile::Envoy(EnvoyProfile {
            extractor: TagExtractor::new(set),
            prefix: prefix.to_string(),
            histogram: ObserverOptions::Histogram(HistogramOptions::with_buckets(
                ENVOY_DEFAULT_BUCKETS_MS.to_vec(),
            )),
        }))
    }

    /// The dialects in force under this profile.
    pub(super) fn adjust_dialects(&self, d: Dialects) -> Dialects {
        match self {
            Profile::Statsd => d,
            Profile::IstioMixer => Dialects {
                influxdb: false,
                librato: false,
                signalfx: false,
                ..d
            },
            Profile::Envoy(_) => Dialects {
                dogstatsd_tags_last: true,
                ..d
            },
        }
    }

    /// The value an observer series records for `sample`.
    #[inline]
    pub(super) fn observed_value(&self, stat_type: StatType, value: f64) -> f64 {
        match self {
            Profile::Statsd if stat_type == StatType::Timer => value / 1000.0,
            Profile::Statsd | Profile::IstioMixer | Profile::Envoy(_) => value,
        }
    }

    fn escape<'n>(&self, name: &'n str) -> Cow<'n, str> {
        match self {
            Profile::Statsd | Profile::Envoy(_) => escape_metric_name(name),
            Profile::IstioMixer => escape_metric_name_legacy(name),
        }
    }
}

/// What a first sight decided, remembered by the worker for later events.
pub(super) struct Resolved {
    pub(super) outcome: Outcome,
    pub(super) mapped: Option<Action>,
    pub(super) tag_errors: u32,
    pub(super) has_labels: bool,
    pub(super) labels_dropped: u32,
    /// Why the identity cannot be stored, for a (rate-limited) log line.
    pub(super) problem: Option<String>,
}

fn upsert(labels: &mut Vec<(String, String)>, key: &str, value: &str, overwrite: bool) {
    match labels.iter_mut().find(|(k, _)| k == key) {
        Some(slot) if overwrite => slot.1 = value.to_string(),
        Some(_) => {}
        None => labels.push((key.to_string(), value.to_string())),
    }
}

pub(super) fn resolve(
    profile: &Profile,
    mapper: &Mapper,
    store: &Store,
    sample: &Sample<'_>,
) -> Resolved {
    let mut labels: Vec<(String, String)> = Vec::new();
    let counts = sample.tags.decode(|k, v| upsert(&mut labels, &k, v, true));
    let kind = sample.kind();
    let mut resolved = Resolved {
        outcome: Outcome::Dropped,
        mapped: None,
        tag_errors: counts.errors,
        has_labels: counts.labels > 0,
        labels_dropped: 0,
        problem: None,
    };

    let defaults = mapper.defaults();
    let mut style = TextStyle::ClientGolang;
    let (name, observer, ttl, scale, help) = match mapper.map(&sample.metric, kind) {
        Some(m) if m.action == Action::Drop => {
            resolved.mapped = Some(Action::Drop);
            return resolved;
        }
        Some(m) => {
            resolved.mapped = Some(Action::Map);
            for (k, v) in &m.labels {
                upsert(&mut labels, k, v, !m.honor_labels);
            }
            let name = profile.escape(&m.name).into_owned();
            (
                name,
                m.observer.clone(),
                m.ttl,
                m.scale.unwrap_or(1.0),
                m.help.clone(),
            )
        }
        None => match profile {
            Profile::Envoy(e) => {
                style = TextStyle::Envoy;
                let (name, tags) = e.name_and_tags(&sample.metric, sample.tags.dogstatsd.is_some());
                for (k, v) in &tags {
                    upsert(&mut labels, k, v, false);
                }
                (name, e.histogram.clone(), defaults.ttl, 1.0, None)
            }
            _ => {
                let name = profile.escape(&sample.metric).into_owned();
                (name, defaults.observer.clone(), defaults.ttl, 1.0, None)
            }
        },
    };
    if name.is_empty() {
        resolved.problem = Some(format!(
            "metric {:?} maps to an empty name",
            &*sample.metric
        ));
        resolved.outcome = Outcome::Failed {
            counter: metrics::counter!("statsd_exporter_events_error_total", "reason" => "empty_metric_name"),
        };
        return resolved;
    }
    let observer = match (profile, sample.stat_type) {
        // statsd_exporter 0.5/0.6 observed raw milliseconds into a default summary.
        (Profile::IstioMixer, StatType::Timer) if resolved.mapped.is_none() => {
            ObserverOptions::Summary(SummaryOptions::default())
        }
        _ => observer,
    };
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
    let before = labels.len();
    labels.retain(|(k, _)| is_valid_label_name(k) && !is_reserved_label(k, is_hist, is_summary));
    resolved.labels_dropped = (before - labels.len()) as u32;

    let spec = SeriesSpec {
        name: &name,
        help: help.as_deref(),
        kind: series_kind,
        labels,
        ttl,
        style,
    };
    resolved.outcome = match store.resolve(&spec) {
        Ok(series) => Outcome::Series { series, scale },
        Err(e) => {
            resolved.problem = Some(e.to_string());
            Outcome::Failed {
                counter: metrics::counter!(
                    "statsd_exporter_events_conflict_total",
                    "metric_name" => name.clone(),
                    "type" => kind.as_str()
                ),
            }
        }
    };
    resolved
}
