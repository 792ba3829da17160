//! The mapping file: its schema ([`schema`]), the checks across fields that turn it into
//! rules (here), and where in the text an error belongs ([`locate`]).
//!
//! Checks that concern one value run while deserializing (see [`schema`]). Checks across
//! fields (a `match` against its `match_type`, options against the observer type) run
//! afterwards and find their line with [`locate::locate`].

mod duration;
mod locate;
mod schema;

pub use duration::parse_go_duration;
pub(crate) use schema::MatchType;

use super::error::{ErrorLocation, MappingError};
use super::{Action, Defaults};
use crate::line::EventKind;
use crate::store::options::{
    DEFAULT_BUCKETS, HistogramOptions, NativeHistogramOptions, Objective, ObserverOptions,
    SummaryOptions,
};
use locate::{classify_yaml_error, locate};
use schema::{
    ObserverType, RawConfig, RawHistogramOptions, RawObjective, RawSummaryOptions, ScalarString,
};
use std::sync::LazyLock;
use std::time::Duration;

static NAME_TEMPLATE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^([a-zA-Z_]|\$\{?[0-9]+\}?)([a-zA-Z0-9_]|\$\{?[0-9]+\}?)*$")
        .unwrap_or_else(|e| panic!("static regex: {e}"))
});
static GLOB_MATCH: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^(\*|[a-zA-Z_][a-zA-Z0-9_-]*)(\.\*|\.[a-zA-Z0-9_][a-zA-Z0-9_-]*)*$")
        .unwrap_or_else(|e| panic!("static regex: {e}"))
});

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
                let own = mapping_histogram(m.histogram_options.as_ref(), &histogram_defaults)
                    .map_err(|detail| MappingError::InvalidBuckets {
                        at: at(Some("histogram_options")),
                        detail,
                    })?;
                ObserverOptions::Histogram(own)
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
    let mut opts = histogram_defaults_opt(raw)?
        .unwrap_or_else(|| HistogramOptions::with_buckets(DEFAULT_BUCKETS.to_vec()));
    // statsd_exporter fills in 1.1 for a factor of 0 (or none) and 256 for a maximum of 0.
    let defaults = NativeHistogramOptions::default();
    let native = NativeHistogramOptions {
        bucket_factor: raw
            .and_then(|r| r.native_histogram_bucket_factor)
            .filter(|f| *f != 0.0)
            .unwrap_or(defaults.bucket_factor),
        max_buckets: raw
            .and_then(|r| r.native_histogram_max_buckets)
            .filter(|m| *m > 0)
            .unwrap_or(defaults.max_buckets),
    };
    opts.native = Some(native);
    Ok(opts)
}

/// A mapping's histogram options: its own buckets or the defaults', and its own native
/// settings where they are above 0 (statsd_exporter's rule), else the defaults'. A bucket
/// factor not above 1 turns native buckets off, as in client_golang.
fn mapping_histogram(
    raw: Option<&RawHistogramOptions>,
    defaults: &HistogramOptions,
) -> Result<HistogramOptions, String> {
    let mut opts = histogram_defaults_opt(raw)?.unwrap_or_else(|| defaults.clone());
    let mut native = defaults.native.unwrap_or_default();
    if let Some(f) = raw.and_then(|r| r.native_histogram_bucket_factor)
        && f > 0.0
    {
        native.bucket_factor = f;
    }
    if let Some(m) = raw.and_then(|r| r.native_histogram_max_buckets)
        && m > 0
    {
        native.max_buckets = m;
    }
    opts.native = native.schema().map(|_| native);
    Ok(opts)
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
            ObserverOptions::Histogram(HistogramOptions {
                native: Some(NativeHistogramOptions::default()),
                ..HistogramOptions::default()
            })
        );
        assert_eq!(c.rules[1].ttl, Duration::from_secs(60));
    }

    fn native_of(o: &ObserverOptions) -> Option<(f64, u32)> {
        match o {
            ObserverOptions::Histogram(h) => h.native.map(|n| (n.bucket_factor, n.max_buckets)),
            ObserverOptions::Summary(_) => panic!("histogram expected"),
        }
    }

    /// statsd_exporter's rules: every histogram is native too, with 1.1 and 256 unless the
    /// defaults or the mapping say otherwise (a mapping's value counts when above 0); a
    /// factor not above 1 keeps classic buckets only.
    #[test]
    fn native_histogram_options_follow_statsd_exporter() {
        let c = parse(
            "mappings:\n- match: a\n  name: a\n  observer_type: histogram\n\
             - match: b\n  name: b\n  observer_type: histogram\n  histogram_options:\n    \
             native_histogram_bucket_factor: 2\n\
             - match: c\n  name: c\n  observer_type: histogram\n  histogram_options:\n    \
             buckets: [1]\n    native_histogram_max_buckets: 20\n\
             - match: d\n  name: d\n  observer_type: histogram\n  histogram_options:\n    \
             native_histogram_bucket_factor: 1\n",
        )
        .unwrap();
        assert_eq!(native_of(&c.rules[0].observer), Some((1.1, 256)));
        assert_eq!(native_of(&c.rules[1].observer), Some((2.0, 256)));
        assert_eq!(native_of(&c.rules[2].observer), Some((1.1, 20)));
        let ObserverOptions::Histogram(h) = &c.rules[2].observer else {
            panic!()
        };
        assert_eq!(h.buckets, [1.0]);
        assert_eq!(native_of(&c.rules[3].observer), None);

        let c = parse(
            "defaults:\n  observer_type: histogram\n  histogram_options:\n    \
             native_histogram_bucket_factor: 1.5\n    native_histogram_max_buckets: 50\n\
             mappings:\n- match: a\n  name: a\n\
             - match: b\n  name: b\n  histogram_options:\n    native_histogram_max_buckets: 0\n",
        )
        .unwrap();
        assert_eq!(native_of(&c.rules[0].observer), Some((1.5, 50)));
        assert_eq!(native_of(&c.rules[1].observer), Some((1.5, 50)));
        assert_eq!(native_of(&c.defaults.observer), Some((1.5, 50)));

        // A defaults factor of 1 turns native buckets off for every mapping that keeps it.
        let c = parse(
            "defaults:\n  histogram_options:\n    native_histogram_bucket_factor: 1\n\
             mappings:\n- match: a\n  name: a\n  observer_type: histogram\n",
        )
        .unwrap();
        assert_eq!(native_of(&c.rules[0].observer), None);
    }
}
