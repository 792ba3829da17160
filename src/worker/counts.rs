//! What a worker counts over one receive batch, and the self-metric handles it publishes
//! them to once per batch, so the hot path touches no shared cache line per line.

use metrics::Counter;

use crate::line::{EventKind, ParseCounters, SampleError};
use crate::telemetry::catalog;

use super::limits::{DropReason, ValueError};

/// The event kinds in the order of [`BatchCounts::events`].
pub(super) const KINDS: [EventKind; 3] =
    [EventKind::Counter, EventKind::Gauge, EventKind::Observer];

/// Position of `k` in [`KINDS`]; also the tag byte of a series-identity key.
#[inline]
pub(super) fn kind_index(k: EventKind) -> usize {
    match k {
        EventKind::Counter => 0,
        EventKind::Gauge => 1,
        EventKind::Observer => 2,
    }
}

/// Counts accumulated over a batch and published by [`BatchCounts::publish`].
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct BatchCounts {
    pub(super) lines: u64,
    pub(super) parse: ParseCounters,
    pub(super) tags: u64,
    pub(super) tag_errors: u64,
    /// Events by kind, indexed by [`kind_index`].
    pub(super) events: [u64; 3],
    pub(super) unmapped: u64,
    pub(super) actions_map: u64,
    pub(super) actions_drop: u64,
    pub(super) negative_counter: u64,
    pub(super) non_finite: u64,
    pub(super) labels_dropped: u64,
    /// Events whose tag or mapping label the sender label overrode.
    pub(super) sender_overrides: u64,
    /// Events dropped by a limit, indexed by [`DropReason::index`].
    pub(super) dropped: [u64; DropReason::ALL.len()],
}

impl BatchCounts {
    /// Counts `events` refused for `e`.
    #[inline]
    pub(super) fn refused(&mut self, e: ValueError, events: u64) {
        match e {
            ValueError::NegativeCounter => self.negative_counter += events,
            ValueError::NonFinite => self.non_finite += events,
        }
    }
}

/// Counter handles, looked up once per worker.
#[derive(Debug)]
pub(super) struct CountHandles {
    lines: Counter,
    samples: Counter,
    sample_errors: [Counter; SampleError::ALL.len()],
    tags: Counter,
    tag_errors: Counter,
    events: [Counter; 3],
    unmapped: Counter,
    actions_map: Counter,
    actions_drop: Counter,
    negative_counter: Counter,
    non_finite: Counter,
    labels_dropped: Counter,
    /// Registered only with a sender label, so a scrape without one is unchanged.
    sender_overrides: Option<Counter>,
    dropped: [Counter; DropReason::ALL.len()],
}

impl CountHandles {
    /// The handles; `sender_label` adds the one of the sender label's overrides.
    pub(super) fn new(sender_label: bool) -> Self {
        CountHandles {
            lines: catalog::LINES.counter([]),
            samples: catalog::SAMPLES.counter([]),
            sample_errors: SampleError::ALL
                .map(|e| catalog::SAMPLE_ERRORS.counter([e.reason().into()])),
            tags: catalog::TAGS.counter([]),
            tag_errors: catalog::TAG_ERRORS.counter([]),
            events: KINDS.map(|k| catalog::EVENTS.counter([k.as_str().into()])),
            unmapped: catalog::EVENTS_UNMAPPED.counter([]),
            actions_map: catalog::EVENTS_ACTIONS.counter(["map".into()]),
            actions_drop: catalog::EVENTS_ACTIONS.counter(["drop".into()]),
            negative_counter: catalog::EVENTS_ERROR
                .counter([ValueError::NegativeCounter.as_str().into()]),
            non_finite: catalog::EVENTS_ERROR.counter([ValueError::NonFinite.as_str().into()]),
            labels_dropped: catalog::LABELS_DROPPED.counter([]),
            sender_overrides: sender_label.then(|| catalog::SENDER_LABEL_OVERRIDES.counter([])),
            dropped: DropReason::ALL.map(|r| catalog::EVENTS_DROPPED.counter([r.as_str().into()])),
        }
    }
}

impl BatchCounts {
    /// Adds the batch's counts to the self-metrics and starts a new batch.
    pub(super) fn publish(&mut self, to: &CountHandles) {
        let c = std::mem::take(self);
        let add = |counter: &Counter, n: u64| {
            if n > 0 {
                counter.increment(n)
            }
        };
        add(&to.lines, c.lines);
        add(&to.samples, c.parse.samples);
        for (counter, n) in to.sample_errors.iter().zip(c.parse.errors) {
            add(counter, n);
        }
        add(&to.tags, c.tags);
        // Tag errors of lines that emitted no sample come from the parser; the rest were
        // replayed per event from the handles.
        add(&to.tag_errors, c.tag_errors + c.parse.tag_errors);
        for (counter, n) in to.events.iter().zip(c.events) {
            add(counter, n);
        }
        add(&to.unmapped, c.unmapped);
        add(&to.actions_map, c.actions_map);
        add(&to.actions_drop, c.actions_drop);
        add(&to.negative_counter, c.negative_counter);
        add(&to.non_finite, c.non_finite);
        add(&to.labels_dropped, c.labels_dropped);
        if let Some(counter) = &to.sender_overrides {
            add(counter, c.sender_overrides);
        }
        for (counter, n) in to.dropped.iter().zip(c.dropped) {
            add(counter, n);
        }
    }
}
