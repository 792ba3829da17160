//! First sight of a series identity: decode tags, map the name (or let the profile name
//! it), pick the Prometheus type, clean the labels, and find or create the series. Runs
//! once per identity per worker, so it may allocate.

use crate::line::{EventKind, Sample};
use crate::mapping::naming::{is_reserved_label, is_valid_label_name};
use crate::mapping::profile::Unmapped;
use crate::mapping::{Action, Mapper, Profile};
use crate::store::{ObserverOptions, SeriesKind, SeriesSpec, Store, TextStyle};
use crate::telemetry::catalog;

use super::handles::{Outcome, Resolution};

/// What a first sight decided, and why the identity cannot be stored when it cannot (for a
/// rate-limited log line).
pub(super) struct Resolved {
    pub(super) resolution: Resolution,
    pub(super) problem: Option<String>,
}

/// Sets `key` to `value`, or leaves an existing value alone unless `overwrite`.
fn upsert(labels: &mut Vec<(String, String)>, key: &str, value: &str, overwrite: bool) {
    match labels.iter_mut().find(|(k, _)| k == key) {
        Some(slot) if overwrite => slot.1 = value.to_string(),
        Some(_) => {}
        None => labels.push((key.to_string(), value.to_string())),
    }
}

/// Resolves `sample`'s series identity with the mapper and profile in force.
pub(super) fn resolve(
    profile: &Profile,
    mapper: &Mapper,
    store: &Store,
    sample: &Sample<'_>,
) -> Resolved {
    let mut labels: Vec<(String, String)> = Vec::new();
    let counts = sample.tags.decode(|k, v| upsert(&mut labels, &k, v, true));
    let kind = sample.kind();
    let mut resolution = Resolution {
        outcome: Outcome::Dropped,
        mapped: None,
        tag_errors: counts.errors,
        has_labels: counts.labels > 0,
        labels_dropped: 0,
    };
    let done = |resolution, problem| Resolved {
        resolution,
        problem,
    };

    let defaults = mapper.defaults();
    let (name, observer, ttl, scale, help, style) = match mapper.map(&sample.metric, kind) {
        Some(m) if m.action == Action::Drop => {
            resolution.mapped = Some(Action::Drop);
            return done(resolution, None);
        }
        Some(m) => {
            resolution.mapped = Some(Action::Map);
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
                sample.tags.dogstatsd.is_some(),
                defaults,
            );
            for (k, v) in &extracted {
                upsert(&mut labels, k, v, false);
            }
            (name, observer, defaults.ttl, 1.0, None, style)
        }
    };
    if name.is_empty() {
        resolution.outcome = Outcome::Failed {
            counter: catalog::EVENTS_ERROR.counter(["empty_metric_name".into()]),
        };
        let problem = format!("metric {:?} maps to an empty name", &*sample.metric);
        return done(resolution, Some(problem));
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
    let before = labels.len();
    labels.retain(|(k, _)| is_valid_label_name(k) && !is_reserved_label(k, is_hist, is_summary));
    resolution.labels_dropped = (before - labels.len()) as u32;

    let spec = SeriesSpec {
        name: &name,
        help: help.as_deref(),
        kind: series_kind,
        labels,
        ttl,
        style,
    };
    match store.resolve(&spec) {
        Ok(series) => {
            resolution.outcome = Outcome::Series { series, scale };
            done(resolution, None)
        }
        Err(e) => {
            resolution.outcome = Outcome::Failed {
                counter: catalog::EVENTS_CONFLICT.counter([name.into(), kind.as_str().into()]),
            };
            done(resolution, Some(e.to_string()))
        }
    }
}
