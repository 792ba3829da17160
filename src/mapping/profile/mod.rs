//! Built-in naming profiles (`--profile`): what happens to a statsd name that no mapping
//! rule matches, which tag dialects are read, and the unit observers record.
//!
//! [`envoy`] holds Envoy's tag extraction and Prometheus naming for the Envoy profile.

pub mod envoy;

use std::borrow::Cow;

use crate::line::{Dialects, StatType};
use crate::mapping::Defaults;
use crate::mapping::naming::{escape_metric_name, escape_metric_name_legacy};
use crate::store::{HistogramOptions, ObserverOptions, SummaryOptions, TextStyle};
use envoy::{
    ENVOY_DEFAULT_BUCKETS_MS, TagExtractor, TagRuleSet, prometheus_label_name,
    prometheus_metric_name, sink_prefix_strip,
};

/// The tag dialects read under the Envoy profile where no `--statsd.parse-*-tags` flag says
/// otherwise: the two that Envoy's sinks send, DogStatsD (`dog_statsd`) and Graphite
/// (`graphite_statsd`); the plain `statsd` sink sends none. The others would read bytes of
/// real Envoy names as tags: an IPv6 listener `listener.[__]_15001.downstream_cx_total` looks
/// like a SignalFX tag block. Graphite's `;` never occurs in an Envoy stat name.
pub const ENVOY_DIALECTS: Dialects = Dialects {
    dogstatsd: true,
    influxdb: false,
    librato: false,
    signalfx: false,
    graphite: true,
    dogstatsd_tags_last: true,
};

/// A built-in naming profile: what happens to names the mapping file does not match.
/// Cloning is cheap: compiled rules share their regex programs.
#[derive(Clone, Debug, Default)]
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

/// Settings of the Envoy profile, built by [`Profile::envoy`].
#[derive(Clone, Debug)]
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
            // Envoy's dog_statsd and graphite_statsd sinks send the tag-extracted name with
            // the tags beside it; extracting again could cut a real name segment.
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

/// How a profile names a statsd metric that no mapping rule matched. TTL, scale and HELP
/// are the mapping file's defaults whatever the profile.
pub(crate) struct Unmapped {
    /// The Prometheus metric name, escaped.
    pub(crate) name: String,
    /// Labels taken from the name (Envoy's tag extraction); tags sent with the line win.
    pub(crate) labels: Vec<(String, String)>,
    /// What an observer event of this name feeds.
    pub(crate) observer: ObserverOptions,
    /// How the family is written.
    pub(crate) style: TextStyle,
}

impl Profile {
    /// The Envoy profile: strip `prefix.`, extract tags with the named rule set
    /// (`envoy`, `envoy-2018` or `istio`).
    pub fn envoy(prefix: &str, rules: &str) -> Result<Profile, ProfileError> {
        let set: TagRuleSet = rules
            .parse()
            .map_err(|_| ProfileError::UnknownTagRules(rules.to_string()))?;
        Ok(Profile::envoy_with(prefix, set))
    }

    /// The Envoy profile: strip `prefix.`, extract tags with the `rules` set.
    pub fn envoy_with(prefix: &str, rules: TagRuleSet) -> Profile {
        Profile::Envoy(EnvoyProfile {
            extractor: TagExtractor::new(rules),
            prefix: prefix.to_string(),
            histogram: ObserverOptions::Histogram(HistogramOptions::with_buckets(
                ENVOY_DEFAULT_BUCKETS_MS.to_vec(),
            )),
        })
    }

    /// The dialects in force under this profile, given the ones the flags ask for. The
    /// Envoy profile's defaults ([`ENVOY_DIALECTS`]) are applied where the flags are read
    /// ([`crate::cli::Flags::dialects`]), as only there is it known which flags were given.
    pub(crate) fn adjust_dialects(&self, d: Dialects) -> Dialects {
        match self {
            Profile::Statsd => d,
            Profile::IstioMixer => Dialects {
                influxdb: false,
                librato: false,
                signalfx: false,
                graphite: false,
                ..d
            },
            Profile::Envoy(_) => Dialects {
                dogstatsd_tags_last: true,
                ..d
            },
        }
    }

    /// The value an observer series records for a sample of `stat_type` and `value`.
    #[inline]
    pub(crate) fn observed_value(&self, stat_type: StatType, value: f64) -> f64 {
        match self {
            Profile::Statsd if stat_type == StatType::Timer => value / 1000.0,
            Profile::Statsd | Profile::IstioMixer | Profile::Envoy(_) => value,
        }
    }

    /// Escapes a metric name (a mapped one too) the way this profile's statsd_exporter
    /// version does.
    pub(crate) fn escape<'n>(&self, name: &'n str) -> Cow<'n, str> {
        match self {
            Profile::Statsd | Profile::Envoy(_) => escape_metric_name(name),
            Profile::IstioMixer => escape_metric_name_legacy(name),
        }
    }

    /// Names `metric`, which no mapping rule matched. `tags_extracted` says the line
    /// carried DogStatsD or Graphite tags ([`crate::line::Tags::extracted_by_sender`]), which
    /// under the Envoy profile means Envoy already extracted them from the name.
    pub(crate) fn unmapped(
        &self,
        metric: &str,
        stat_type: StatType,
        tags_extracted: bool,
        defaults: &Defaults,
    ) -> Unmapped {
        match self {
            Profile::Envoy(e) => {
                let (name, labels) = e.name_and_tags(metric, tags_extracted);
                Unmapped {
                    name,
                    labels,
                    observer: e.histogram.clone(),
                    style: TextStyle::Envoy,
                }
            }
            Profile::Statsd | Profile::IstioMixer => Unmapped {
                name: self.escape(metric).into_owned(),
                labels: Vec::new(),
                observer: match (self, stat_type) {
                    // statsd_exporter 0.5/0.6 observed raw milliseconds into a default summary.
                    (Profile::IstioMixer, StatType::Timer) => {
                        ObserverOptions::Summary(SummaryOptions::default())
                    }
                    _ => defaults.observer.clone(),
                },
                style: TextStyle::ClientGolang,
            },
        }
    }
}
