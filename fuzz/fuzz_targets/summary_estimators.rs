//! Fuzzes both summary estimators with the same observations, weights and clock:
//!
//! * neither panics, whatever the values (NaN, infinities, subnormals, huge weights) or the
//!   time steps;
//! * both refuse exactly the same observations, and the sketch never asks for a merge;
//! * every snapshot of both has the same `_sum` and `_count`;
//! * the sketch's quantiles are NaN (an empty window) or lie within the smallest and largest
//!   value ever accepted, and never decrease as the quantile grows.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use statsgate::store::options::{Objective, SummaryOptions};
use statsgate::store::summary::{Observed, SketchSummary, SlidingSummary};

const ACCURACIES: [f64; 4] = [0.001, 0.01, 0.05, 0.5];
/// One operation: kind, an f64's bits, a weight, a clock step.
const OP: usize = 11;

fuzz_target!(|data: &[u8]| {
    let Some((head, ops)) = data.split_first_chunk::<3>() else {
        return;
    };
    let alpha = ACCURACIES[usize::from(head[0] % 4)];
    let opts = SummaryOptions {
        objectives: [0.0, 0.5, 0.9, 0.99, 1.0]
            .iter()
            .map(|&quantile| Objective {
                quantile,
                error: 0.01,
            })
            .collect(),
        max_age: Duration::from_millis(u64::from(head[1]) * 100),
        age_buckets: u32::from(head[2] % 9),
        buf_cap: 0,
    };
    let t0 = Instant::now();
    let mut now = t0;
    let mut ckms = SlidingSummary::new(&opts, t0);
    let mut sketch = SketchSummary::new(&opts, alpha, t0);
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for op in ops.chunks_exact(OP) {
        now += Duration::from_millis(u64::from(op[10]) * u64::from(op[10]) * 10);
        if op[0] % 8 == 0 {
            let (a, b) = (ckms.snapshot(now), sketch.snapshot(now));
            assert_eq!(a.count, b.count);
            assert_eq!(a.sum.to_bits(), b.sum.to_bits());
            let mut last = f64::NEG_INFINITY;
            for &(q, v) in &b.quantiles {
                if v.is_nan() {
                    continue;
                }
                assert!(v >= lo && v <= hi, "q={q}: {v} outside [{lo}, {hi}]");
                assert!(v >= last, "q={q}: {v} below the lower quantile's {last}");
                last = v;
            }
            continue;
        }
        let mut bits = [0u8; 8];
        bits.copy_from_slice(&op[1..9]);
        let value = f64::from_bits(u64::from_le_bytes(bits));
        let count = match op[9] {
            255 => u32::MAX,
            c => u32::from(c % 5),
        };
        let a = ckms.observe(value, count, now);
        let b = sketch.observe(value, count, now);
        assert_ne!(b, Observed::MergeDue);
        assert_eq!(a.recorded(), b.recorded(), "{value} × {count}");
        if a == Observed::MergeDue && op[0] % 2 == 0 {
            ckms.merge_due();
        }
        if b.recorded() && count > 0 {
            lo = lo.min(value);
            hi = hi.max(value);
        }
    }
});
