//! How a series becomes exposition samples: a counter or gauge is one sample; a histogram
//! is `_bucket{le}` per bound and `+Inf`, then `_sum` and `_count`; a summary is one sample
//! per quantile (ascending), then `_sum` and `_count`.
//!
//! The text exposition and remote_write both walk series through [`for_each_sample`], so
//! the two always carry the same names, labels and values.

use std::io::Write as _;

use super::text::write_float;
use crate::store::{Family, FamilyType, Series, TextStyle};

/// A sample's value: a float, or an integer count (text writes it without a fraction).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SampleValue {
    /// A counter, gauge, sum or quantile.
    Float(f64),
    /// A bucket or observation count.
    Count(u64),
}

impl SampleValue {
    /// The value as a float, as remote_write carries it.
    pub fn as_f64(self) -> f64 {
        match self {
            SampleValue::Float(v) => v,
            SampleValue::Count(c) => c as f64,
        }
    }
}

/// The label the expansion adds to a series' own labels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BoundLabel {
    /// A histogram bucket's upper bound, `le`.
    Le(f64),
    /// A summary's quantile, `quantile`.
    Quantile(f64),
}

impl BoundLabel {
    /// The label name.
    pub fn name(self) -> &'static str {
        match self {
            BoundLabel::Le(_) => "le",
            BoundLabel::Quantile(_) => "quantile",
        }
    }

    /// Appends the label value as the family's style prints it (no quoting or escaping:
    /// a formatted number needs none).
    pub fn write_value(self, buf: &mut Vec<u8>, style: TextStyle) {
        let v = match self {
            BoundLabel::Le(v) | BoundLabel::Quantile(v) => v,
        };
        match style {
            // Envoy writes bounds with `%.32g`: whole numbers in full, never `1e+06`.
            TextStyle::Envoy if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e21 => {
                let _ = write!(buf, "{v:.0}");
            }
            _ => write_float(buf, v),
        }
    }
}

/// One sample of a series: the family name plus `suffix`, the series' labels plus `bound`,
/// and the value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// `""`, `"_bucket"`, `"_sum"` or `"_count"`.
    pub suffix: &'static str,
    /// `le` or `quantile`, for buckets and quantiles.
    pub bound: Option<BoundLabel>,
    /// The value.
    pub value: SampleValue,
}

/// Calls `f` for every sample `series` of `family` exposes, in exposition order. `at` is
/// the instant a summary's sliding window is read at (the store clock's current instant).
#[inline]
pub fn for_each_sample(
    family: &Family,
    series: &Series,
    at: std::time::Instant,
    mut f: impl FnMut(Sample),
) {
    let sample = |suffix, bound, value| Sample {
        suffix,
        bound,
        value,
    };
    match family.family_type() {
        FamilyType::Counter | FamilyType::Gauge => {
            f(sample("", None, SampleValue::Float(series.scalar())));
        }
        FamilyType::Summary => {
            let Some(mut snap) = series.summary_snapshot(at) else {
                return;
            };
            // client_golang writes quantiles in ascending order, whatever the file's order.
            snap.quantiles.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (q, v) in &snap.quantiles {
                f(sample(
                    "",
                    Some(BoundLabel::Quantile(*q)),
                    SampleValue::Float(*v),
                ));
            }
            f(sample("_sum", None, SampleValue::Float(snap.sum)));
            f(sample("_count", None, SampleValue::Count(snap.count)));
        }
        FamilyType::Histogram => {
            let Some((bounds, cumulative, sum)) = series.histogram_snapshot() else {
                return;
            };
            for (i, c) in cumulative.iter().enumerate() {
                let le = bounds.get(i).copied().unwrap_or(f64::INFINITY);
                f(sample(
                    "_bucket",
                    Some(BoundLabel::Le(le)),
                    SampleValue::Count(*c),
                ));
            }
            f(sample("_sum", None, SampleValue::Float(sum)));
            let count = cumulative.last().copied().unwrap_or(0);
            f(sample("_count", None, SampleValue::Count(count)));
        }
    }
}
