//! The mapping file's schema as serde types, read as strictly as statsd_exporter's
//! `yaml.UnmarshalStrict`: unknown and duplicate keys, bad enum spellings, durations and
//! label names are refused while deserializing, so serde_yaml_ng attaches the key path and
//! line to the error.

use super::duration::parse_go_duration;
use crate::line::EventKind;
use crate::mapping::Action;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::sync::LazyLock;
use std::time::Duration;

/// How a rule's `match` is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum MatchType {
    #[default]
    Glob,
    Regex,
}

/// What a rule's observer events (`ms`, `h`, `d`) feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum ObserverType {
    #[default]
    Summary,
    Histogram,
}

/// Deserializes a string enum that, like statsd_exporter's, also accepts "" for "unset".
macro_rules! string_enum {
    ($wrapper:ident, $inner:ty, $what:literal, { $($text:literal => $value:expr),* $(,)? }) => {
        #[derive(Clone, Copy, Debug, Default)]
        pub(crate) struct $wrapper(pub(crate) Option<$inner>);

        impl<'de> Deserialize<'de> for $wrapper {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                // A visitor rather than `String::deserialize`, so the error is raised while
                // the deserializer still knows the key path and line.
                struct V;
                impl Visitor<'_> for V {
                    type Value = $wrapper;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str(concat!("a ", $what))
                    }
                    fn visit_unit<E: de::Error>(self) -> Result<$wrapper, E> {
                        Ok($wrapper(None))
                    }
                    fn visit_str<E: de::Error>(self, text: &str) -> Result<$wrapper, E> {
                        match text {
                            "" => Ok($wrapper(None)),
                            $($text => Ok($wrapper(Some($value))),)*
                            other => Err(E::custom(format!(
                                concat!("invalid ", $what, " {:?}, expected one of: {}"),
                                other,
                                [$($text),*].join(", ")
                            ))),
                        }
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

string_enum!(MatchTypeField, MatchType, "match_type", {
    "glob" => MatchType::Glob, "regex" => MatchType::Regex,
});
string_enum!(ObserverTypeField, ObserverType, "observer_type", {
    "summary" => ObserverType::Summary, "histogram" => ObserverType::Histogram,
});
string_enum!(ActionField, Action, "action", {
    "map" => Action::Map, "drop" => Action::Drop,
});
string_enum!(MetricTypeField, EventKind, "match_metric_type", {
    "counter" => EventKind::Counter, "gauge" => EventKind::Gauge, "observer" => EventKind::Observer,
});

/// A Go duration (`time.ParseDuration`), e.g. `1m30s`, `500ms`, `2h`; an integer is
/// nanoseconds, as Go's YAML decoder reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct GoDuration(pub(crate) Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = GoDuration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as \"1m30s\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<GoDuration, E> {
                Ok(GoDuration(Duration::from_nanos(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<GoDuration, E> {
                u64::try_from(v)
                    .map(|n| GoDuration(Duration::from_nanos(n)))
                    .map_err(|_| E::custom(format!("invalid duration {v}: negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GoDuration, E> {
                parse_go_duration(v)
                    .map(GoDuration)
                    .ok_or_else(|| E::custom(format!("invalid duration {v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

static LABEL_NAME: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^[a-zA-Z_][a-zA-Z0-9_]+$").unwrap_or_else(|e| panic!("static regex: {e}"))
});

/// A string that, like a Go `string` field read by yaml.v2, also takes a number or a boolean
/// (`version: 2` is the label value "2").
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ScalarString(pub(crate) String);

impl<'de> Deserialize<'de> for ScalarString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ScalarString;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<ScalarString, E> {
                Ok(ScalarString(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Labels in file order, refusing bad names and duplicate keys.
#[derive(Clone, Debug, Default)]
pub(crate) struct LabelTemplates(pub(crate) Vec<(String, String)>);

impl<'de> Deserialize<'de> for LabelTemplates {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LabelTemplates;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of label names to templates")
            }
            fn visit_unit<E: de::Error>(self) -> Result<LabelTemplates, E> {
                Ok(LabelTemplates::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LabelTemplates, A::Error> {
                let mut labels: Vec<(String, String)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !LABEL_NAME.is_match(&key) {
                        return Err(de::Error::custom(format!("invalid label name {key:?}")));
                    }
                    if labels.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom(format!("duplicate label {key:?}")));
                    }
                    let value: ScalarString = map.next_value()?;
                    labels.push((key, value.0));
                }
                Ok(LabelTemplates(labels))
            }
        }
        d.deserialize_any(V)
    }
}

/// One `summary_options.quantiles` entry: `{quantile, error}`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawObjective {
    pub(crate) quantile: f64,
    pub(crate) error: f64,
}

/// `summary_options`, in `defaults` or a mapping; 0 and an empty list mean "unset".
///
/// In this and the blocks below every key is optional (`#[serde(default)]` on the struct).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawSummaryOptions {
    pub(crate) quantiles: Option<Vec<RawObjective>>,
    pub(crate) max_age: GoDuration,
    pub(crate) age_buckets: u32,
    pub(crate) buf_cap: u32,
}

/// `histogram_options`, in `defaults` or a mapping.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawHistogramOptions {
    pub(crate) buckets: Option<Vec<f64>>,
    pub(crate) native_histogram_bucket_factor: Option<f64>,
    pub(crate) native_histogram_max_buckets: Option<u32>,
}

/// The `defaults` block: what mappings leave unset, and what unmapped events use.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawDefaults {
    pub(crate) observer_type: ObserverTypeField,
    pub(crate) match_type: MatchTypeField,
    pub(crate) glob_disable_ordering: bool,
    pub(crate) ttl: GoDuration,
    pub(crate) summary_options: Option<RawSummaryOptions>,
    pub(crate) histogram_options: Option<RawHistogramOptions>,
}

/// One entry of `mappings`, before the checks across its fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawMapping {
    #[serde(rename = "match")]
    pub(crate) pattern: Option<ScalarString>,
    pub(crate) name: Option<ScalarString>,
    pub(crate) labels: LabelTemplates,
    pub(crate) honor_labels: bool,
    pub(crate) observer_type: ObserverTypeField,
    pub(crate) match_type: MatchTypeField,
    pub(crate) help: Option<ScalarString>,
    pub(crate) action: ActionField,
    pub(crate) match_metric_type: MetricTypeField,
    pub(crate) ttl: GoDuration,
    pub(crate) summary_options: Option<RawSummaryOptions>,
    pub(crate) histogram_options: Option<RawHistogramOptions>,
    pub(crate) scale: Option<f64>,
}

/// The whole document; both blocks are optional, as is the document itself.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) defaults: Option<RawDefaults>,
    pub(crate) mappings: Option<Vec<RawMapping>>,
}
