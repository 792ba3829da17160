//! Summary merges put off until the end of a receive batch.
//!
//! A summary's hot buffer fills every 500 observations, and merging it into the five age
//! streams costs about as much as handling a few hundred lines. Series fed at one rate fill
//! in step (every Envoy flush carries each timer once), so merging on the spot stalls the
//! receive thread for all of them at once, long enough for the kernel to drop datagrams.
//! Instead the worker queues the series and, at the end of each receive batch, merges for
//! at most an eighth of the time that has passed (no more than 2 ms saved up), spreading the
//! work over the time until they fill again. Quantiles do not change: a
//! summary merges a waiting buffer itself before its next swap or snapshot (see
//! [`crate::store::summary`]), so the queue only decides when the work is done.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::store::SeriesRef;

/// Queued series beyond this are merged on the spot, oldest first: the queue's memory is
/// bounded, and a backlog this long means the merges are not keeping up anyway.
const MAX_QUEUED: usize = 4096;

/// The share of the receive thread's time merges may take: `1 / DUTY`. At 2M lines/s over 10k
/// Envoy-like series, 600 summaries fill in step every 2.5 s; their merges, ~0.2 s of work
/// with cold caches, then take ~1.6 s at an eighth, done well before the buffers fill again
/// (an estimate from the per-merge cost in BENCHMARKS.md, not a measured drain time).
const DUTY: u32 = 8;

/// Merge time saved up while idle or between merges is capped, so a long quiet spell does
/// not license one long stall.
const MAX_BUDGET: Duration = Duration::from_millis(2);

/// Series whose summaries have a buffer waiting to be merged.
#[derive(Debug)]
pub(super) struct DeferredMerges {
    queue: VecDeque<SeriesRef>,
    /// Merge time allowed now: a share of the time since `last`, less the merges done.
    budget: Duration,
    last: Instant,
}

impl Default for DeferredMerges {
    fn default() -> DeferredMerges {
        DeferredMerges {
            queue: VecDeque::new(),
            budget: Duration::ZERO,
            last: Instant::now(),
        }
    }
}

impl DeferredMerges {
    /// Queues `series`, merging the oldest queued one now if the queue is full.
    pub(super) fn push(&mut self, series: &SeriesRef) {
        if self.queue.len() >= MAX_QUEUED
            && let Some(oldest) = self.queue.pop_front()
        {
            oldest.merge_due();
        }
        self.queue.push_back(series.clone());
    }

    /// The end of a receive batch: merges queued series while the time budget lasts (the
    /// merge that overdraws it is paid back by later batches).
    pub(super) fn batch_end(&mut self) {
        if self.queue.is_empty() {
            // No clock reads for traffic without summaries; the budget this skips accruing
            // is capped anyway.
            return;
        }
        let mut now = Instant::now();
        self.budget =
            (self.budget + now.saturating_duration_since(self.last) / DUTY).min(MAX_BUDGET);
        self.last = now;
        while !self.budget.is_zero() {
            let Some(series) = self.queue.pop_front() else {
                break;
            };
            series.merge_due();
            let after = Instant::now();
            self.budget = self
                .budget
                .saturating_sub(after.saturating_duration_since(now));
            now = after;
        }
        // Time spent merging is not time the batch waited for: it earns no budget.
        self.last = now;
    }

    /// Merges everything queued, whatever the budget.
    #[cfg(test)]
    pub(super) fn drain(&mut self) {
        while let Some(series) = self.queue.pop_front() {
            series.merge_due();
        }
    }

    /// How many series wait.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }
}
