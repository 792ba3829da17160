//! Placeholder until the sliding-window estimator lands: exact sum/count, NaN quantiles.
use super::options::SummaryOptions;
use std::time::Instant;

/// One summary series' state.
#[derive(Debug)]
pub struct SlidingSummary {
    qs: Vec<f64>,
    sum: f64,
    count: u64,
}

/// Quantiles, sum and count at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct SummarySnapshot {
    /// (quantile, value) pairs.
    pub quantiles: Vec<(f64, f64)>,
    /// Sum of all observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl SlidingSummary {
    /// New state.
    pub fn new(opts: &SummaryOptions, _now: Instant) -> Self {
        SlidingSummary {
            qs: opts.objectives.iter().map(|o| o.quantile).collect(),
            sum: 0.0,
            count: 0,
        }
    }
    /// Observe.
    pub fn observe(&mut self, value: f64, count: u32, _now: Instant) {
        self.sum += value * f64::from(count);
        self.count += u64::from(count);
    }
    /// Snapshot.
    pub fn snapshot(&mut self, _now: Instant) -> SummarySnapshot {
        SummarySnapshot {
            quantiles: self.qs.iter().map(|q| (*q, f64::NAN)).collect(),
            sum: self.sum,
            count: self.count,
        }
    }
}
