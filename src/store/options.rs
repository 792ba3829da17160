//! How an observer series aggregates: the options a mapping rule (or the defaults) selects.

use std::time::Duration;

/// One summary objective: the quantile and its allowed rank error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Objective {
    /// The quantile, in [0, 1].
    pub quantile: f64,
    /// The allowed rank error, in [0, 1].
    pub error: f64,
}

/// Summary options, with statsd_exporter's (client_golang's) defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryOptions {
    /// Objectives; default 0.5±0.05, 0.9±0.01, 0.99±0.001.
    pub objectives: Vec<Objective>,
    /// The sliding window length; default 10 minutes.
    pub max_age: Duration,
    /// How many buckets the window rotates through; default 5.
    pub age_buckets: u32,
    /// Observations buffered before they are merged into the streams; default 500.
    pub buf_cap: u32,
}

impl Default for SummaryOptions {
    fn default() -> Self {
        SummaryOptions {
            objectives: vec![
                Objective {
                    quantile: 0.5,
                    error: 0.05,
                },
                Objective {
                    quantile: 0.9,
                    error: 0.01,
                },
                Objective {
                    quantile: 0.99,
                    error: 0.001,
                },
            ],
            max_age: Duration::from_secs(600),
            age_buckets: 5,
            buf_cap: 500,
        }
    }
}

/// How summary series estimate their quantiles, for the whole gateway
/// (`--statsd.summary-estimator`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum SummaryEstimator {
    /// client_golang's CKMS streams: statsd_exporter's quantiles bit for bit, each within
    /// its objective's rank error.
    #[default]
    Ckms,
    /// Logarithmic buckets (DDSketch): each quantile's value within `relative_accuracy` of
    /// the exact quantile of the window, several times cheaper per observation and a small
    /// fraction of the memory; opt-in because it is not what statsd_exporter reports.
    DdSketch {
        /// The relative error bound α, in (0, 1).
        relative_accuracy: f64,
    },
}

/// Prometheus' `DefBuckets`, the default histogram layout.
pub const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram's bucket layout.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramOptions {
    /// Upper bounds, strictly increasing, without `+Inf` (which is always present).
    pub buckets: Vec<f64>,
    /// Native buckets kept alongside the classic ones; `None`: classic only.
    pub native: Option<NativeHistogramOptions>,
}

impl HistogramOptions {
    /// A classic histogram with these upper bounds (strictly increasing, `+Inf` left out).
    pub fn with_buckets(buckets: Vec<f64>) -> Self {
        HistogramOptions {
            buckets,
            native: None,
        }
    }
}

/// Native histogram settings, statsd_exporter's `native_histogram_bucket_factor` and
/// `native_histogram_max_buckets` (see [`super::native`] for what they do).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NativeHistogramOptions {
    /// Each bucket's upper bound is at most this factor times its lower bound; above 1.
    /// Default 1.1 (schema 3: 8 buckets per power of two, about 9% wide).
    pub bucket_factor: f64,
    /// Most buckets populated at once before the resolution is halved; 0 means no limit.
    /// Default 256.
    pub max_buckets: u32,
}

impl NativeHistogramOptions {
    /// The starting schema, or `None` when the factor is not above 1 (no native buckets,
    /// as client_golang).
    pub fn schema(&self) -> Option<i32> {
        super::native::pick_schema(self.bucket_factor)
    }
}

impl Default for NativeHistogramOptions {
    fn default() -> Self {
        NativeHistogramOptions {
            bucket_factor: super::native::DEFAULT_BUCKET_FACTOR,
            max_buckets: super::native::DEFAULT_MAX_BUCKETS,
        }
    }
}

impl Default for HistogramOptions {
    fn default() -> Self {
        HistogramOptions::with_buckets(DEFAULT_BUCKETS.to_vec())
    }
}

/// How a family's samples are written: as client_golang (statsd_exporter) writes them, or
/// as Envoy's own `/stats/prometheus` does, for the Envoy profile. Prometheus 2.x stores
/// `le` as a string, so `le="1e+06"` and `le="1000000"` are different series to a query:
/// each profile writes them as the exporter it replaces did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TextStyle {
    /// `le` in Go's `%g` shortest form (`1e+06`); no braces on an unlabelled series.
    #[default]
    ClientGolang,
    /// `le` in Envoy's `%.32g` (whole numbers in full: `3600000`); `name{}` for a series
    /// without labels.
    Envoy,
}

/// How observer events aggregate into a series.
#[derive(Clone, Debug, PartialEq)]
pub enum ObserverOptions {
    /// A summary (statsd_exporter's default).
    Summary(SummaryOptions),
    /// Cumulative buckets (`observer_type: histogram`), native ones alongside when set.
    Histogram(HistogramOptions),
}

impl Default for ObserverOptions {
    fn default() -> Self {
        ObserverOptions::Summary(SummaryOptions::default())
    }
}
