//! What a worker refuses: samples over a size limit, series over the store's limits, and
//! values that would poison a series. Every refusal is counted; none creates a series.

use crate::line::StatType;
use crate::mapping::Profile;

/// Size limits on what one sample may bring into the store, checked at a first sight (a
/// line seen before costs nothing more). Each is counted in
/// `statsgate_events_dropped_total{reason}` when hit; 0 turns a limit off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleLimits {
    /// Most tags on one sample: name-embedded and DogStatsD tags, valid or not, and the
    /// container id. Default [`SampleLimits::DEFAULT_MAX_TAGS_PER_LINE`].
    pub max_tags_per_line: usize,
    /// Longest label value, in bytes. Default [`SampleLimits::DEFAULT_MAX_LABEL_VALUE_LENGTH`].
    pub max_label_value_length: usize,
    /// Longest metric name, in bytes, both as sent (before mapping, so a huge name never
    /// reaches the mapper's cache) and as stored; also the longest label name. Default
    /// [`SampleLimits::DEFAULT_MAX_METRIC_NAME_LENGTH`].
    pub max_metric_name_length: usize,
}

impl SampleLimits {
    /// Twice the 30 labels per series that Grafana Mimir accepts by default: a series with
    /// more labels than this is unusable in PromQL anyway, and Envoy or DogStatsD clients
    /// send a handful.
    pub const DEFAULT_MAX_TAGS_PER_LINE: usize = 64;
    /// Grafana Mimir's default for label values, long enough for a URL path or a
    /// Kubernetes FQDN.
    pub const DEFAULT_MAX_LABEL_VALUE_LENGTH: usize = 2048;
    /// Several times the longest Envoy stat name of an Istio mesh (about 250 bytes with
    /// 63-character service and namespace names).
    pub const DEFAULT_MAX_METRIC_NAME_LENGTH: usize = 1024;

    /// No limit at all.
    pub const UNLIMITED: SampleLimits = SampleLimits {
        max_tags_per_line: 0,
        max_label_value_length: 0,
        max_metric_name_length: 0,
    };

    /// The tag budget to decode with (0 is no limit).
    pub(super) fn tag_budget(&self) -> usize {
        match self.max_tags_per_line {
            0 => usize::MAX,
            n => n,
        }
    }

    /// Whether a metric or label name of `len` bytes is over the limit.
    pub(super) fn name_too_long(&self, len: usize) -> bool {
        self.max_metric_name_length > 0 && len > self.max_metric_name_length
    }

    /// Whether a label value of `len` bytes is over the limit.
    pub(super) fn value_too_long(&self, len: usize) -> bool {
        self.max_label_value_length > 0 && len > self.max_label_value_length
    }
}

impl Default for SampleLimits {
    fn default() -> Self {
        SampleLimits {
            max_tags_per_line: Self::DEFAULT_MAX_TAGS_PER_LINE,
            max_label_value_length: Self::DEFAULT_MAX_LABEL_VALUE_LENGTH,
            max_metric_name_length: Self::DEFAULT_MAX_METRIC_NAME_LENGTH,
        }
    }
}

/// Why a limit dropped an event: the `reason` of `statsgate_events_dropped_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DropReason {
    /// The store holds `--statsd.max-series` series.
    MaxSeries,
    /// The metric holds `--statsd.max-series-per-metric` series.
    MaxSeriesPerMetric,
    /// More than `--statsd.max-tags-per-line` tags.
    TooManyTags,
    /// A metric name longer than `--statsd.max-metric-name-length`.
    MetricNameTooLong,
    /// A label name longer than `--statsd.max-metric-name-length`.
    LabelNameTooLong,
    /// A label value longer than `--statsd.max-label-value-length`.
    LabelValueTooLong,
}

impl DropReason {
    /// Every reason, in [`DropReason::index`] order.
    pub(super) const ALL: [DropReason; 6] = [
        DropReason::MaxSeries,
        DropReason::MaxSeriesPerMetric,
        DropReason::TooManyTags,
        DropReason::MetricNameTooLong,
        DropReason::LabelNameTooLong,
        DropReason::LabelValueTooLong,
    ];

    /// Position in [`DropReason::ALL`].
    pub(super) fn index(self) -> usize {
        self as usize
    }

    /// The `reason` label value.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            DropReason::MaxSeries => "max_series",
            DropReason::MaxSeriesPerMetric => "max_series_per_metric",
            DropReason::TooManyTags => "too_many_tags",
            DropReason::MetricNameTooLong => "metric_name_too_long",
            DropReason::LabelNameTooLong => "label_name_too_long",
            DropReason::LabelValueTooLong => "label_value_too_long",
        }
    }
}

/// Why an event's value was refused: a `reason` of `statsd_exporter_events_error_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ValueError {
    /// A counter increment below zero (`-Inf` included), statsd_exporter's own reason.
    NegativeCounter,
    /// A NaN or `+Inf` counter increment, a NaN or infinite observation, or an update that
    /// would take a counter's total or an observer's `_sum` past `f64::MAX`.
    NonFinite,
}

impl ValueError {
    /// The `reason` label value.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            ValueError::NegativeCounter => "illegal_negative_counter",
            ValueError::NonFinite => "illegal_non_finite_value",
        }
    }
}

/// The value an event applies once the mapping's `scale` is in: a counter's increment, a
/// gauge's value, or an observation in the profile's unit. Gauges take any value, as
/// statsd_exporter's do (the next absolute set repairs a NaN).
#[inline]
pub(super) fn checked_value(
    stat_type: StatType,
    value: f64,
    scale: f64,
    profile: &Profile,
) -> Result<f64, ValueError> {
    match stat_type {
        StatType::Counter => {
            let v = value * scale;
            if v < 0.0 {
                Err(ValueError::NegativeCounter)
            } else if v < f64::INFINITY {
                Ok(v)
            } else {
                // NaN fails both comparisons and lands here with +Inf.
                Err(ValueError::NonFinite)
            }
        }
        StatType::Gauge => Ok(value * scale),
        StatType::Timer | StatType::Histogram | StatType::Distribution => {
            let v = profile.observed_value(stat_type, value) * scale;
            if v.is_finite() {
                Ok(v)
            } else {
                Err(ValueError::NonFinite)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_refused_like_statsd_exporter_and_beyond() {
        let p = Profile::Statsd;
        let check = |t, v| checked_value(t, v, 1.0, &p);
        assert_eq!(check(StatType::Counter, 2.0), Ok(2.0));
        assert_eq!(check(StatType::Counter, -0.0), Ok(-0.0));
        assert_eq!(
            check(StatType::Counter, -5.0),
            Err(ValueError::NegativeCounter)
        );
        assert_eq!(
            check(StatType::Counter, f64::NEG_INFINITY),
            Err(ValueError::NegativeCounter)
        );
        for v in [f64::INFINITY, f64::NAN] {
            assert_eq!(check(StatType::Counter, v), Err(ValueError::NonFinite));
            assert_eq!(check(StatType::Timer, v), Err(ValueError::NonFinite));
            assert_eq!(check(StatType::Histogram, -v), Err(ValueError::NonFinite));
        }
        assert!(check(StatType::Gauge, f64::NAN).is_ok_and(f64::is_nan));
        assert_eq!(check(StatType::Timer, 250.0), Ok(0.25));
        // A finite value the scale pushes out of range.
        assert_eq!(
            checked_value(StatType::Counter, 1e308, 10.0, &p),
            Err(ValueError::NonFinite)
        );
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let off = SampleLimits::UNLIMITED;
        assert_eq!(off.tag_budget(), usize::MAX);
        assert!(!off.name_too_long(usize::MAX) && !off.value_too_long(usize::MAX));
        let on = SampleLimits::default();
        assert!(on.name_too_long(1025) && !on.name_too_long(1024));
        assert!(on.value_too_long(2049) && !on.value_too_long(2048));
    }
}
