//! The mapping file schema (statsd_exporter's, read as strictly as `yaml.UnmarshalStrict`)
//! and its compilation into rules.
//!
//! Checks that concern one value (label names, name templates, durations, enums, unknown and
//! duplicate keys) run while deserializing, so serde_yaml_ng attaches the key path and line.
//! Checks across fields (a `match` against its `match_type`, options against the observer
//! type) run afterwards and find their line with [`locate`].

use super::error::{ErrorLocation, MappingError};
use super::{Action, Defaults};
use crate::config::parse_go_duration;
use crate::line::EventKind;
use crate::store::options::{
    DEFAULT_BUCKETS, HistogramOptions, Objective, ObserverOptions, SummaryOptions,
};
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
static NAME_TEMPLATE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^([a-zA-Z_]|\$\{?[0-9]+\}?)([a-zA-Z0-9_]|\$\{?[0-9]+\}?)*$")
        .unwrap_or_else(|e| panic!("static regex: {e}"))
});
static GLOB_MATCH: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^(\*|[a-zA-Z_][a-zA-Z0-9_-]*)(\.\*|\.[a-zA-Z0-9_][a-zA-Z0-9_-]*)*$")
        .unwrap_or_else(|e| panic!("static regex: {e}"))
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

/// `{quantile, error}`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawObjective {
    quantile: f64,
    error: f64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSummaryOptions {
    #[serde(default)]
    quantiles: Option<Vec<RawObjective>>,
    #[serde(default)]
    max_age: GoDuration,
    #[serde(default)]
    age_buckets: u32,
    #[serde(default)]
    buf_cap: u32,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHistogramOptions {
    #[serde(default)]
    buckets: Option<Vec<f64>>,
    // Parsed for compatibility; the store keeps classic buckets only.
    #[serde(default)]
    #[allow(dead_code)]
    native_histogram_bucket_factor: Option<f64>,
    #[serde(default)]
    #[allow(dead_code)]
    native_histogram_max_buckets: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDefaults {
    #[serde(default)]
    observer_type: ObserverTypeField,
    #[serde(default)]
    match_type: MatchTypeField,
    #[serde(default)]
    glob_disable_ordering: bool,
    #[serde(default)]
    ttl: GoDuration,
    #[serde(default)]
    summary_options: Option<RawSummaryOptions>,
    #[serde(default)]
    histogram_options: Option<RawHistogramOptions>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMapping {
    #[serde(rename = "match", default)]
    pub(crate) pattern: Option<ScalarString>,
    #[serde(default)]
    pub(crate) name: Option<ScalarString>,
    #[serde(default)]
    pub(crate) labels: LabelTemplates,
    #[serde(default)]
    pub(crate) honor_labels: bool,
    #[serde(default)]
    observer_type: ObserverTypeField,
    #[serde(default)]
    match_type: MatchTypeField,
    #[serde(default)]
    pub(crate) help: Option<ScalarString>,
    #[serde(default)]
    action: ActionField,
    #[serde(default)]
    match_metric_type: MetricTypeField,
    #[serde(default)]
    ttl: GoDuration,
    #[serde(default)]
    summary_options: Option<RawSummaryOptions>,
    #[serde(default)]
    histogram_options: Option<RawHistogramOptions>,
    #[serde(default)]
    pub(crate) scale: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    defaults: Option<RawDefaults>,
    #[serde(default)]
    mappings: Option<Vec<RawMapping>>,
}

/// A rule after validation, before its matcher is compiled.
#[derive(Debug)]
pub(crate) struct CheckedRule {
    pub(crate) pattern: String,
    pub(crate) match_type: MatchType,
    pub(crate) name: String,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) honor_labels: bool,
    pub(crate) help: Option<String>,
    pub(crate) action: Action,
    pub(crate) kind: Option<EventKind>,
    pub(crate) ttl: Duration,
    pub(crate) observer: ObserverOptions,
    pub(crate) scale: Option<f64>,
    /// Where the rule starts, for errors found while compiling its matcher.
    pub(crate) at: ErrorLocation,
}

/// A parsed and validated file.
#[derive(Debug)]
pub(crate) struct CheckedConfig {
    pub(crate) defaults: Defaults,
    pub(crate) rules: Vec<CheckedRule>,
}

/// Parses and validates a mapping file's text.
pub(crate) fn parse(text: &str) -> Result<CheckedConfig, MappingError> {
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        serde_yaml_ng::from_str::<Option<RawConfig>>(text)
            .map_err(|e| classify_yaml_error(text, e))?
            .unwrap_or_default()
    };
    let raw_defaults = raw.defaults.unwrap_or_default();
    let summary_defaults = summary_defaults(raw_defaults.summary_options.as_ref());
    let histogram_defaults =
        histogram_defaults(raw_defaults.histogram_options.as_ref()).map_err(|detail| {
            MappingError::InvalidBuckets {
                at: locate(text, None, Some("histogram_options")),
                detail,
            }
        })?;
    let default_observer_type = raw_defaults.observer_type.0.unwrap_or_default();
    let defaults = Defaults {
        observer: match default_observer_type {
            ObserverType::Summary => ObserverOptions::Summary(summary_defaults.clone()),
            ObserverType::Histogram => ObserverOptions::Histogram(histogram_defaults.clone()),
        },
        ttl: raw_defaults.ttl.0,
        glob_disable_ordering: raw_defaults.glob_disable_ordering,
    };
    let default_match_type = raw_defaults.match_type.0.unwrap_or_default();

    let mut rules = Vec::new();
    for (index, m) in raw.mappings.unwrap_or_default().into_iter().enumerate() {
        let key = format!("mappings[{index}]");
        let at = |field: Option<&str>| {
            let mut at = locate(text, Some(index), field);
            if let Some(field) = field {
                at.key = format!("{key}.{field}");
            }
            at
        };
        let Some(ScalarString(pattern)) = m.pattern else {
            return Err(MappingError::MissingMatch {
                at: at(Some("match")),
            });
        };
        let name = match m.name {
            Some(ScalarString(name)) if !name.is_empty() => name,
            _ => {
                return Err(MappingError::MissingName {
                    at: at(Some("name")),
                });
            }
        };
        if !NAME_TEMPLATE.is_match(&name) {
            return Err(MappingError::InvalidNameTemplate {
                at: at(Some("name")),
                name,
            });
        }
        let match_type = m.match_type.0.unwrap_or(default_match_type);
        if match_type == MatchType::Glob && !GLOB_MATCH.is_match(&pattern) {
            return Err(MappingError::InvalidGlob {
                at: at(Some("match")),
                pattern,
            });
        }
        let observer_type = m.observer_type.0.unwrap_or(default_observer_type);
        let observer = match observer_type {
            ObserverType::Summary => {
                if m.histogram_options.is_some() {
                    return Err(MappingError::ObserverOptionsMismatch {
                        at: at(Some("histogram_options")),
                        detail: "histogram_options set on a summary mapping".into(),
                    });
                }
                ObserverOptions::Summary(merge_summary(
                    m.summary_options.as_ref(),
                    &summary_defaults,
                ))
            }
            ObserverType::Histogram => {
                if m.summary_options.is_some() {
                    return Err(MappingError::ObserverOptionsMismatch {
                        at: at(Some("summary_options")),
                        detail: "summary_options set on a histogram mapping".into(),
                    });
                }
                let own =
                    histogram_defaults_opt(m.histogram_options.as_ref()).map_err(|detail| {
                        MappingError::InvalidBuckets {
                            at: at(Some("histogram_options")),
                            detail,
                        }
                    })?;
                ObserverOptions::Histogram(own.unwrap_or_else(|| histogram_defaults.clone()))
            }
        };
        let ttl = if m.ttl.0.is_zero() {
            defaults.ttl
        } else {
            m.ttl.0
        };
        rules.push(CheckedRule {
            pattern,
            match_type,
            name,
            labels: m.labels.0,
            honor_labels: m.honor_labels,
            help: m.help.map(|h| h.0),
            action: m.action.0.unwrap_or(Action::Map),
            kind: m.match_metric_type.0,
            ttl,
            observer,
            scale: m.scale,
            at: at(Some("match")),
        });
    }
    Ok(CheckedConfig { defaults, rules })
}

fn objectives(raw: &[RawObjective]) -> Vec<Objective> {
    raw.iter()
        .map(|o| Objective {
            quantile: o.quantile,
            error: o.error,
        })
        .collect()
}

/// The defaults block's summary options over client_golang's; 0 and empty mean "unset".
fn summary_defaults(raw: Option<&RawSummaryOptions>) -> SummaryOptions {
    merge_summary(raw, &SummaryOptions::default())
}

/// Field-by-field fallback, as statsd_exporter does for a mapping's summary options.
fn merge_summary(raw: Option<&RawSummaryOptions>, fallback: &SummaryOptions) -> SummaryOptions {
    let Some(raw) = raw else {
        return fallback.clone();
    };
    SummaryOptions {
        objectives: match &raw.quantiles {
            Some(q) if !q.is_empty() => objectives(q),
            _ => fallback.objectives.clone(),
        },
        max_age: if raw.max_age.0.is_zero() {
            fallback.max_age
        } else {
            raw.max_age.0
        },
        age_buckets: if raw.age_buckets == 0 {
            fallback.age_buckets
        } else {
            raw.age_buckets
        },
        buf_cap: if raw.buf_cap == 0 {
            fallback.buf_cap
        } else {
            raw.buf_cap
        },
    }
}

fn histogram_defaults(raw: Option<&RawHistogramOptions>) -> Result<HistogramOptions, String> {
    Ok(histogram_defaults_opt(raw)?
        .unwrap_or_else(|| HistogramOptions::with_buckets(DEFAULT_BUCKETS.to_vec())))
}

/// The buckets a block sets, or `None` when it sets none (empty lists fall back too).
fn histogram_defaults_opt(
    raw: Option<&RawHistogramOptions>,
) -> Result<Option<HistogramOptions>, String> {
    let Some(buckets) = raw.and_then(|r| r.buckets.as_ref()) else {
        return Ok(None);
    };
    let mut buckets = buckets.clone();
    // client_golang drops a trailing +Inf bound; it is always implied.
    if buckets.last() == Some(&f64::INFINITY) {
        buckets.pop();
    }
    if buckets.is_empty() {
        return Ok(None);
    }
    if buckets.iter().any(|b| b.is_nan()) || buckets.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!(
            "histogram buckets must be in strictly increasing order: {buckets:?}"
        ));
    }
    Ok(Some(HistogramOptions::with_buckets(buckets)))
}

/// Turns a serde_yaml_ng error into the variant for its cause, with line and key.
fn classify_yaml_error(text: &str, e: serde_yaml_ng::Error) -> MappingError {
    let line = e.location().map(|l| l.line());
    let mut message = e.to_string();
    // serde_yaml_ng appends " at line L column C"; the location is reported separately.
    if let Some(pos) = message.rfind(" at line ") {
        message.truncate(pos);
    }
    // And prefixes the key path ("mappings[1].labels: ...") when there is one.
    let (key, detail) = match message.split_once(": ") {
        Some((path, rest))
            if !path.is_empty()
                && path
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.[]".contains(&b)) =>
        {
            (path.to_string(), rest.to_string())
        }
        _ => (String::new(), message.clone()),
    };
    let at = ErrorLocation {
        file: None,
        line,
        key,
    };
    if let Some(name) = detail
        .strip_prefix("invalid label name \"")
        .and_then(|rest| rest.strip_suffix('"'))
    {
        // serde_yaml_ng reports the labels block's first line; point at the key itself.
        let mut at = at;
        if let Some(index) = at
            .key
            .strip_prefix("mappings[")
            .and_then(|rest| rest.strip_suffix("].labels"))
            .and_then(|n| n.parse::<usize>().ok())
        {
            let labels_line = locate(text, Some(index), Some("labels")).line;
            let key_line = locate(text, Some(index), Some(name)).line;
            if key_line > labels_line {
                at.line = key_line;
            }
        }
        return MappingError::InvalidLabelName {
            at,
            name: name.to_string(),
        };
    }
    if detail.starts_with("unknown field `timer_type`")
        || detail.starts_with("unknown field `buckets`")
        || detail.starts_with("unknown field `quantiles`")
    {
        MappingError::LegacyKey { at, detail }
    } else if detail.starts_with("unknown field") {
        MappingError::UnknownKey { at, detail }
    } else if detail.starts_with("duplicate") {
        MappingError::DuplicateKey { at, detail }
    } else if detail.starts_with("invalid match_type")
        || detail.starts_with("invalid observer_type")
        || detail.starts_with("invalid action")
        || detail.starts_with("invalid match_metric_type")
    {
        MappingError::InvalidEnum { at, detail }
    } else if detail.starts_with("invalid duration") {
        MappingError::InvalidDuration { at, detail }
    } else {
        MappingError::Syntax { at, detail }
    }
}

/// Finds the line of `mappings[index].field` (or of a top-level `defaults` field when `index`
/// is `None`) in block-style YAML. Flow-style documents fall back to the enclosing item or
/// block, and the key path is always given, so an error stays unambiguous.
pub(crate) fn locate(text: &str, index: Option<usize>, field: Option<&str>) -> ErrorLocation {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let meaningful = |l: &str| {
        let t = l.trim_start();
        !t.is_empty() && !t.starts_with('#') && t != "---"
    };
    let section = if index.is_some() {
        "mappings"
    } else {
        "defaults"
    };
    let key_path = match (index, field) {
        (Some(i), _) => format!("mappings[{i}]"),
        (None, Some(f)) => format!("defaults.{f}"),
        (None, None) => "defaults".into(),
    };
    let mut at = ErrorLocation {
        file: None,
        line: None,
        key: key_path,
    };
    let Some(start) = lines
        .iter()
        .position(|l| l.starts_with(section) && l[section.len()..].trim_start().starts_with(':'))
    else {
        return at;
    };
    at.line = Some(start + 1);
    // The block's lines, up to the next top-level key.
    let end = lines[start + 1..]
        .iter()
        .position(|l| meaningful(l) && indent(l) == 0 && !l.starts_with('-'))
        .map_or(lines.len(), |p| start + 1 + p);
    let (from, to) = match index {
        None => (start + 1, end),
        Some(i) => {
            let items: Vec<usize> = (start + 1..end)
                .filter(|&n| lines[n].trim_start().starts_with('-') && meaningful(lines[n]))
                .collect();
            let item_indent = items.first().map(|&n| indent(lines[n]));
            let items: Vec<usize> = items
                .into_iter()
                .filter(|&n| Some(indent(lines[n])) == item_indent)
                .collect();
            let Some(&item) = items.get(i) else {
                return at;
            };
            at.line = Some(item + 1);
            (item, items.get(i + 1).copied().unwrap_or(end))
        }
    };
    if let Some(field) = field {
        let found = (from..to).find(|&n| {
            let t = lines[n].trim_start();
            let t = t.strip_prefix('-').map_or(t, str::trim_start);
            t.strip_prefix(field)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        });
        if let Some(n) = found {
            at.line = Some(n + 1);
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> MappingError {
        parse(text).expect_err("config should be rejected")
    }

    #[test]
    fn empty_documents_have_no_rules() {
        for text in ["", "{}", "---\n", "# comment only\n", "mappings: []\n"] {
            let c = parse(text).unwrap();
            assert!(c.rules.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn bad_label_name_names_line_and_key() {
        let text = "mappings:\n- match: a.*\n  name: x\n- match: b.*\n  name: y\n  labels:\n    ok_name: v\n    1x: v\n";
        let e = err(text);
        assert!(matches!(e, MappingError::InvalidLabelName { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("mappings[1].labels"), "{msg}");
        assert!(msg.contains("\"1x\""), "{msg}");
        assert_eq!(msg, "line 8: mappings[1].labels: invalid label name \"1x\"");
    }

    #[test]
    fn scalar_label_values_read_as_strings() {
        let c = parse(
            "mappings:\n- match: a.*\n  name: x\n  labels:\n    version: 2\n    canary: true\n",
        )
        .unwrap();
        assert_eq!(
            c.rules[0].labels,
            vec![
                ("version".to_string(), "2".to_string()),
                ("canary".to_string(), "true".to_string())
            ]
        );
    }

    #[test]
    fn one_character_label_names_are_rejected() {
        let e = err("mappings:\n- match: a.*\n  name: x\n  labels:\n    a: v\n");
        assert!(matches!(e, MappingError::InvalidLabelName { .. }), "{e:?}");
    }

    #[test]
    fn unknown_and_legacy_keys_are_rejected_with_lines() {
        let e = err("mappings:\n- match: a.*\n  name: x\n  colour: red\n");
        assert!(matches!(e, MappingError::UnknownKey { .. }), "{e:?}");
        assert!(e.to_string().contains("line 4"), "{e}");
        assert!(e.to_string().contains("mappings[0]"), "{e}");
        let e = err("mappings:\n- match: a.*\n  name: x\n  timer_type: histogram\n");
        assert!(matches!(e, MappingError::LegacyKey { .. }), "{e:?}");
        let e = err(
            "mappings:\n- match: a.*\n  name: x\n  quantiles:\n  - quantile: 0.5\n    error: 0.1\n",
        );
        assert!(matches!(e, MappingError::LegacyKey { .. }), "{e:?}");
        let e = err("defaults:\n  buckets: [1, 2]\n");
        assert!(matches!(e, MappingError::LegacyKey { .. }), "{e:?}");
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let e = err("mappings:\n- match: a.*\n  name: x\n  name: y\n");
        assert!(matches!(e, MappingError::DuplicateKey { .. }), "{e:?}");
        let e = err("mappings:\n- match: a.*\n  name: x\n  labels:\n    ab: v\n    ab: w\n");
        assert!(matches!(e, MappingError::DuplicateKey { .. }), "{e:?}");
        assert!(e.to_string().contains("mappings[0].labels"), "{e}");
    }

    #[test]
    fn enum_typos_are_rejected() {
        for (field, value) in [
            ("observer_type", "wrong"),
            ("match_type", "globb"),
            ("action", "xyz"),
            ("match_metric_type", "timer"),
        ] {
            let text = format!("mappings:\n- match: a.*\n  name: x\n  {field}: {value}\n");
            let e = err(&text);
            assert!(matches!(e, MappingError::InvalidEnum { .. }), "{e:?}");
            let msg = e.to_string();
            assert!(msg.contains("line 4") && msg.contains(field), "{msg}");
        }
    }

    #[test]
    fn cross_field_errors_are_located() {
        let text = "mappings:\n- match: a.*\n  name: x\n- match: bad!!glob.*\n  name: y\n";
        let e = err(text);
        assert!(matches!(e, MappingError::InvalidGlob { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "line 4: mappings[1].match: invalid glob match \"bad!!glob.*\""
        );
        let text = "mappings:\n- match: a.*\n  observer_type: histogram\n  name: x\n  summary_options:\n    max_age: 1m\n";
        let e = err(text);
        assert!(
            matches!(e, MappingError::ObserverOptionsMismatch { .. }),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("line 5: mappings[0].summary_options"),
            "{e}"
        );
        let e = err("mappings:\n- match: a.*\n  labels:\n    ab: v\n");
        assert!(matches!(e, MappingError::MissingName { .. }), "{e:?}");
        let e = err("mappings:\n- match: a.*\n  name: 1abc\n");
        assert!(
            matches!(e, MappingError::InvalidNameTemplate { .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("line 3"), "{e}");
    }

    #[test]
    fn bad_durations_and_buckets_are_rejected() {
        let e = err("defaults:\n  ttl: 10 minutes\n");
        assert!(matches!(e, MappingError::InvalidDuration { .. }), "{e:?}");
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = err(
            "mappings:\n- match: a.*\n  name: x\n  observer_type: histogram\n  histogram_options:\n    buckets: [2, 1]\n",
        );
        assert!(matches!(e, MappingError::InvalidBuckets { .. }), "{e:?}");
    }

    #[test]
    fn observer_options_fall_back_field_by_field() {
        let text = "defaults:\n  summary_options:\n    max_age: 15m\n    age_buckets: 3\n    buf_cap: 100\n  ttl: 5s\nmappings:\n- match: a.*\n  name: x\n  summary_options:\n    age_buckets: 7\n- match: b.*\n  name: y\n  observer_type: histogram\n  ttl: 1m\n";
        let c = parse(text).unwrap();
        let ObserverOptions::Summary(s) = &c.rules[0].observer else {
            panic!("summary expected");
        };
        assert_eq!(s.max_age, Duration::from_secs(900));
        assert_eq!(s.age_buckets, 7);
        assert_eq!(s.buf_cap, 100);
        assert_eq!(s.objectives, SummaryOptions::default().objectives);
        assert_eq!(c.rules[0].ttl, Duration::from_secs(5));
        assert_eq!(
            c.rules[1].observer,
            ObserverOptions::Histogram(HistogramOptions::default())
        );
        assert_eq!(c.rules[1].ttl, Duration::from_secs(60));
    }
}
