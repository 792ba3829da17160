//! The hot path: one [`Worker`] per receive thread or connection turns received bytes into
//! series updates in place — split, parse, resolve, update — with no channel hop, no lock
//! and no allocation for a series it has seen before.
//!
//! A worker remembers how raw line bytes resolved (`handles.rs`): the series handle, or
//! the fact that they are dropped or conflicting. A line whose shape (everything but the
//! value) was seen before is replayed without running the grammar; other lines are parsed
//! and their samples found by raw series identity. Only a first sight goes through tag
//! decoding, the mapper and the store's locks. A mapping reload bumps a generation number
//! that makes every worker forget its handles; TTL expiry marks a series dead, which makes
//! the worker resolve that key again.

mod handles;
mod resolve;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use metrics::Counter;

use crate::line::{
    Dialects, EventKind, ParseCounters, ReplayParts, Sample, SampleError, StatType, parse_line,
    parse_value, split_for_replay,
};
use crate::mapping::{Action, Mapper};
use crate::store::Store;

use handles::{HandleTable, Key, Outcome, Replay, Resolution, SHAPE_TAG};

pub use resolve::{EnvoyProfile, Profile, ProfileError};

/// State shared by every worker.
pub struct Pipeline {
    store: Arc<Store>,
    mapper: ArcSwap<Mapper>,
    generation: AtomicU64,
    dialects: Dialects,
    profile: Profile,
    relay: Option<crate::relay::RelayTarget>,
}

impl Pipeline {
    /// A pipeline over `store`, mapping with `mapper`.
    pub fn new(store: Arc<Store>, mapper: Mapper, dialects: Dialects, profile: Profile) -> Self {
        let dialects = profile.adjust_dialects(dialects);
        Pipeline {
            store,
            mapper: ArcSwap::from_pointee(mapper),
            generation: AtomicU64::new(0),
            dialects,
            profile,
            relay: None,
        }
    }

    /// Also relays every received line to `target` (`--statsd.relay.address`).
    pub fn with_relay(mut self, target: crate::relay::RelayTarget) -> Self {
        self.relay = Some(target);
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The mapper in force.
    pub fn mapper(&self) -> Arc<Mapper> {
        self.mapper.load_full()
    }

    /// Swaps in a new mapper atomically. Workers pick it up at their next batch; events in
    /// flight finish with the old rules, none is lost or applied twice.
    pub fn replace_mapper(&self, mapper: Mapper) {
        self.mapper.store(Arc::new(mapper));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Loads the mapping file again and swaps it in; on error the old rules stay. Counts
    /// `statsd_exporter_config_reloads_total{outcome}` and sets
    /// `statsd_exporter_loaded_mappings`.
    pub fn reload_from(
        &self,
        path: &std::path::Path,
        cache: crate::mapping::CacheOptions,
    ) -> Result<usize, crate::mapping::MappingError> {
        match Mapper::load_file(path, cache) {
            Ok(m) => {
                let n = m.rule_count();
                self.replace_mapper(m);
                metrics::counter!("statsd_exporter_config_reloads_total", "outcome" => "success")
                    .increment(1);
                metrics::gauge!("statsd_exporter_loaded_mappings").set(n as f64);
                Ok(n)
            }
            Err(e) => {
                metrics::counter!("statsd_exporter_config_reloads_total", "outcome" => "failure")
                    .increment(1);
                Err(e)
            }
        }
    }

    /// A new worker for one receive thread or connection.
    pub fn worker(self: &Arc<Self>) -> Worker {
        Worker {
            shared: self.clone(),
            handles: HandleTable::default(),
            generation: self.generation.load(Ordering::Acquire),
            mapper: self.mapper.load_full(),
            counts: LocalCounts::default(),
            telemetry: WorkerTelemetry::new(),
            diagnostics: Diagnostics::default(),
            replay_enabled: true,
            relay: self
                .relay
                .as_ref()
                .and_then(|t| match crate::relay::Relay::new(t) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        tracing::error!(error = %e, "relaying disabled for this receive thread");
                        None
                    }
                }),
        }
    }
}

/// One event to apply, whether it came from the grammar or from a replayed line shape.
#[derive(Clone, Copy)]
struct Event {
    stat_type: StatType,
    value: f64,
    relative: bool,
    repeat: u32,
}

impl Event {
    fn of(sample: &Sample<'_>) -> Event {
        Event {
            stat_type: sample.stat_type,
            value: sample.value,
            relative: sample.relative,
            repeat: sample.repeat,
        }
    }
}

/// Applies one event through a resolution.
#[inline]
fn apply(res: &Resolution, ev: Event, shared: &Pipeline, c: &mut LocalCounts) {
    let kind = ev.stat_type.kind();
    c.tags += u64::from(res.has_labels);
    c.tag_errors += u64::from(res.tag_errors);
    c.labels_dropped += u64::from(res.labels_dropped);
    // statsd_exporter expands a sampled observer into int(1/rate) events, each counted.
    let events = if kind == EventKind::Observer {
        u64::from(ev.repeat)
    } else {
        1
    };
    c.events[kind_index(kind)] += events;
    match res.mapped {
        None => c.unmapped += events,
        Some(Action::Map) => c.actions_map += events,
        Some(Action::Drop) => c.actions_drop += events,
    }
    match &res.outcome {
        Outcome::Dropped => {}
        Outcome::Failed { counter } => counter.increment(events),
        Outcome::Series { series, scale } => {
            let store = &shared.store;
            let now = store.clock().now_ms();
            series.touch(now);
            match ev.stat_type {
                StatType::Counter => {
                    let v = ev.value * scale;
                    // NaN is not negative but would poison the running total too.
                    if v < 0.0 || v.is_nan() {
                        c.negative_counter += 1;
                    } else {
                        series.counter_add(v);
                    }
                }
                StatType::Gauge => series.gauge_update(ev.value * scale, ev.relative),
                StatType::Timer | StatType::Histogram | StatType::Distribution => {
                    let v = shared.profile.observed_value(ev.stat_type, ev.value) * scale;
                    series.observe(v, ev.repeat, store.clock(), now);
                }
            }
        }
    }
}

/// Whether a line with this tail may be replayed: at most one `@rate` (so the counter
/// division is one operation), and no `|T` timestamp (which changes on every line and
/// would only fill the table).
fn replayable_tail(tail: &[u8]) -> bool {
    let mut rates = 0;
    for i in memchr::memchr_iter(b'|', tail) {
        match tail.get(i + 1) {
            Some(b'@') => rates += 1,
            Some(b'T') => return false,
            _ => {}
        }
    }
    rates <= 1
}

/// Counts accumulated over a batch and published in [`Worker::flush`].
#[derive(Debug, Default, Clone, PartialEq)]
struct LocalCounts {
    lines: u64,
    parse: ParseCounters,
    tags: u64,
    tag_errors: u64,
    events: [u64; 3],
    unmapped: u64,
    actions_map: u64,
    actions_drop: u64,
    negative_counter: u64,
    labels_dropped: u64,
}

/// Counter handles, looked up once per worker.
struct WorkerTelemetry {
    lines: Counter,
    samples: Counter,
    sample_errors: [Counter; 9],
    tags: Counter,
    tag_errors: Counter,
    events: [Counter; 3],
    unmapped: Counter,
    actions_map: Counter,
    actions_drop: Counter,
    negative_counter: Counter,
    labels_dropped: Counter,
}

impl WorkerTelemetry {
    fn new() -> Self {
        let kinds = [EventKind::Counter, EventKind::Gauge, EventKind::Observer];
        WorkerTelemetry {
            lines: metrics::counter!("statsd_exporter_lines_total"),
            samples: metrics::counter!("statsd_exporter_samples_total"),
            sample_errors: SampleError::ALL
                .map(|e| metrics::counter!("statsd_exporter_sample_errors_total", "reason" => e.reason())),
            tags: metrics::counter!("statsd_exporter_tags_total"),
            tag_errors: metrics::counter!("statsd_exporter_tag_errors_total"),
            events: kinds.map(|k| metrics::counter!("statsd_exporter_events_total", "type" => k.as_str())),
            unmapped: metrics::counter!("statsd_exporter_events_unmapped_total"),
            actions_map: metrics::counter!("statsd_exporter_events_actions_total", "action" => "map"),
            actions_drop: metrics::counter!("statsd_exporter_events_actions_total", "action" => "drop"),
            negative_counter: metrics::counter!(
                "statsd_exporter_events_error_total", "reason" => "illegal_negative_counter"
            ),
            labels_dropped: metrics::counter!("statsgate_labels_dropped_total"),
        }
    }
}

/// Turns received bytes into series updates. One per thread or connection; not shared.
pub struct Worker {
    shared: Arc<Pipeline>,
    handles: HandleTable,
    generation: u64,
    mapper: Arc<Mapper>,
    counts: LocalCounts,
    telemetry: WorkerTelemetry,
    diagnostics: Diagnostics,
    /// Off only in tests that check replay against the grammar.
    replay_enabled: bool,
    relay: Option<crate::relay::Relay>,
}

/// Logs bad input at most once per [`Diagnostics::PERIOD`] per worker, with how many
/// similar events were not logged: a flood of garbage must not become a flood of logs.
/// Every bad line is still counted in the self-metrics.
#[derive(Debug, Default)]
struct Diagnostics {
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl Diagnostics {
    const PERIOD: std::time::Duration = std::time::Duration::from_secs(10);

    /// True when a message may be logged now; otherwise counts it as suppressed.
    fn allow(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Self::PERIOD)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// At most this much of a bad line goes into a log message.
const LOGGED_LINE_BYTES: usize = 200;

fn kind_index(k: EventKind) -> usize {
    match k {
        EventKind::Counter => 0,
        EventKind::Gauge => 1,
        EventKind::Observer => 2,
    }
}

impl Worker {
    /// Handles one datagram: every `\n`-separated piece is a line (statsd_exporter counts
    /// empty pieces as lines too).
    pub fn datagram(&mut self, payload: &[u8]) {
        self.follow_reload();
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', payload) {
            self.parse_one(&payload[start..end]);
            start = end + 1;
        }
        self.parse_one(&payload[start..]);
    }

    /// Handles one line without its terminator.
    pub fn line(&mut self, line: &[u8]) {
        self.follow_reload();
        self.parse_one(line);
    }

    /// Switches to a reloaded mapper before the next event, so an event received after a
    /// reload is always mapped by the new rules. One relaxed load of a rarely written word.
    #[inline]
    fn follow_reload(&mut self) {
        let gen_now = self.shared.generation.load(Ordering::Acquire);
        if gen_now != self.generation {
            self.generation = gen_now;
            self.mapper = self.shared.mapper.load_full();
            self.handles.clear();
        }
    }

    fn parse_one(&mut self, line: &[u8]) {
        self.counts.lines += 1;
        if line.is_empty() {
            return;
        }
        if let Some(relay) = &mut self.relay {
            relay.line(line);
        }
        let replay =
            split_for_replay(line).filter(|r| self.replay_enabled && replayable_tail(r.tail));
        if let Some(r) = replay
            && self.replay(r)
        {
            return;
        }
        let dialects = self.shared.dialects;
        // Split borrows: the parser needs the counters while the callback needs the rest.
        let mut parse = std::mem::take(&mut self.counts.parse);
        let (errors_before, tag_errors_before) = (parse.errors, parse.tag_errors);
        // Keep the last sample of a replayable line back: if it turns out to be the only
        // one and the parse was clean, its line shape is cached.
        let mut single: Option<Sample<'_>> = None;
        let mut emitted = 0usize;
        parse_line(line, &dialects, &mut parse, |sample| {
            emitted += 1;
            if replay.is_none() {
                self.sample(&sample);
            } else if let Some(earlier) = single.replace(sample) {
                // `a:1|c:2|g` looks single-valued up to the first `|` but is not.
                self.sample(&earlier);
            }
        });
        let clean =
            emitted == 1 && parse.errors == errors_before && parse.tag_errors == tag_errors_before;
        if parse.errors != errors_before {
            self.report_bad_line(line, &errors_before, &parse.errors);
        }
        self.counts.parse = parse;
        match (single, replay) {
            (Some(sample), Some(r)) if clean => self.cache_shape(r, &sample),
            (Some(sample), _) => self.sample(&sample),
            (None, _) => {}
        }
    }

    /// Replays a known line shape with this line's value. False when the shape is unknown
    /// or stale, or the value does not parse: the caller then runs the grammar.
    #[inline]
    fn replay(&mut self, r: ReplayParts<'_>) -> bool {
        let parts = [r.name_section, r.tail];
        let key = Key {
            tag: SHAPE_TAG,
            parts: &parts,
        };
        let hash = self.handles.hash(key);
        let Some(entry) = self.handles.get(hash, key) else {
            return false;
        };
        let Some(rp) = entry.replay else { return false };
        if entry.res.is_stale() {
            return false;
        }
        let Some(raw) = parse_value(r.value) else {
            return false;
        };
        let value = if rp.stat_type == StatType::Counter {
            raw / rp.rate
        } else {
            raw
        };
        let relative = matches!(r.value.first(), Some(b'+' | b'-'));
        self.counts.parse.samples += 1;
        let ev = Event {
            stat_type: rp.stat_type,
            value,
            relative,
            repeat: rp.repeat,
        };
        apply(&entry.res, ev, &self.shared, &mut self.counts);
        true
    }

    #[cold]
    fn cache_shape(&mut self, r: ReplayParts<'_>, sample: &Sample<'_>) {
        let parts = [r.name_section, r.tail];
        let key = Key {
            tag: SHAPE_TAG,
            parts: &parts,
        };
        let replay = Replay {
            stat_type: sample.stat_type,
            rate: sample.rate,
            repeat: sample.repeat,
        };
        self.resolve_and_apply(key, sample, Some(replay));
    }

    /// First sight of a key: resolves it, remembers it, and applies the sample.
    #[cold]
    fn resolve_and_apply(&mut self, key: Key<'_>, sample: &Sample<'_>, replay: Option<Replay>) {
        let res = self.resolve(sample);
        let hash = self.handles.hash(key);
        let entry = self.handles.insert(hash, key, res, replay);
        apply(
            &entry.res,
            Event::of(sample),
            &self.shared,
            &mut self.counts,
        );
    }

    #[cold]
    fn report_bad_line(&mut self, line: &[u8], before: &[u64; 9], after: &[u64; 9]) {
        let Some(suppressed) = self.diagnostics.allow() else {
            return;
        };
        let reason = SampleError::ALL
            .iter()
            .zip(before.iter().zip(after))
            .find(|(_, (b, a))| a > b)
            .map_or("unknown", |(e, _)| e.reason());
        let shown = String::from_utf8_lossy(&line[..line.len().min(LOGGED_LINE_BYTES)]);
        tracing::warn!(
            reason,
            line = %shown,
            suppressed,
            "bad statsd line dropped (counted in statsd_exporter_sample_errors_total)"
        );
    }

    /// Publishes the batch's counts. Call once per batch.
    pub fn flush(&mut self) {
        self.follow_reload();
        if let Some(relay) = &mut self.relay {
            relay.tick();
        }
        let c = std::mem::take(&mut self.counts);
        let t = &self.telemetry;
        let add = |counter: &Counter, n: u64| {
            if n > 0 {
                counter.increment(n)
            }
        };
        add(&t.lines, c.lines);
        add(&t.samples, c.parse.samples);
        for (i, n) in c.parse.errors.iter().enumerate() {
            add(&t.sample_errors[i], *n);
        }
        add(&t.tags, c.tags);
        // Tag errors of lines that emitted no sample come from the parser; the rest were
        // replayed per event from the handles.
        add(&t.tag_errors, c.tag_errors + c.parse.tag_errors);
        for (i, n) in c.events.iter().enumerate() {
            add(&t.events[i], *n);
        }
        add(&t.unmapped, c.unmapped);
        add(&t.actions_map, c.actions_map);
        add(&t.actions_drop, c.actions_drop);
        add(&t.negative_counter, c.negative_counter);
        add(&t.labels_dropped, c.labels_dropped);
    }

    /// A sample of a line that is not replayable: found by its series identity.
    fn sample(&mut self, sample: &Sample<'_>) {
        let parts = sample.identity();
        let key = Key {
            tag: kind_index(sample.kind()) as u8,
            parts: &parts,
        };
        let hash = self.handles.hash(key);
        match self.handles.get(hash, key) {
            Some(entry) if !entry.res.is_stale() => {
                apply(
                    &entry.res,
                    Event::of(sample),
                    &self.shared,
                    &mut self.counts,
                );
            }
            _ => self.resolve_and_apply(key, sample, None),
        }
    }

    /// First sight of a key: decode, map, create the series; log a problem (rate-limited).
    #[cold]
    fn resolve(&mut self, sample: &Sample<'_>) -> Resolution {
        let r = resolve::resolve(
            &self.shared.profile,
            &self.mapper,
            &self.shared.store,
            sample,
        );
        if let Some(problem) = &r.problem
            && let Some(suppressed) = self.diagnostics.allow()
        {
            tracing::warn!(suppressed, "{problem}; its events are dropped and counted");
        }
        Resolution {
            outcome: r.outcome,
            mapped: r.mapped,
            tag_errors: r.tag_errors,
            has_labels: r.has_labels,
            labels_dropped: r.labels_dropped,
        }
    }
}

/// Makes a [`Worker`] per receive thread or connection for the listeners.
pub struct Workers(pub Arc<Pipeline>);

impl crate::ingest::SinkFactory for Workers {
    type Sink = Worker;

    fn make_sink(&self) -> Worker {
        self.0.worker()
    }
}

impl crate::ingest::Sink for Worker {
    fn datagram(&mut self, payload: &[u8]) {
        Worker::datagram(self, payload)
    }

    fn line(&mut self, line: &[u8]) {
        Worker::line(self, line)
    }

    fn flush(&mut self) {
        Worker::flush(self)
    }
}

#[cfg(test)]
mod tests;
