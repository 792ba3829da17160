//! The hot path: one [`Worker`] per receive thread or connection turns received bytes into
//! series updates in place — split, parse, resolve, update — with no channel hop, no lock
//! and no allocation for a series it has seen before.
//!
//! A worker remembers, per raw series identity (event kind + the name section, DogStatsD
//! tag section and container id exactly as they appear on the wire), how that identity was
//! resolved: the series handle, or the fact that it is dropped or conflicting. Only a
//! first sight goes through tag decoding, the mapper and the store's locks. A mapping
//! reload bumps a generation number that makes every worker forget its handles; TTL expiry
//! marks a series dead, which makes the worker resolve that identity again.

mod resolve;

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use hashbrown::HashTable;
use metrics::Counter;

use crate::line::{Dialects, EventKind, ParseCounters, Sample, SampleError, StatType, parse_line};
use crate::mapping::{Action, Mapper};
use crate::store::{SeriesRef, Store};

pub use resolve::{EnvoyProfile, Profile, ProfileError};

/// Upper bound on remembered identities per worker; beyond it the worker starts afresh, so
/// a flood of distinct names cannot grow memory without bound.
const MAX_HANDLES: usize = 1 << 20;

/// State shared by every worker.
pub struct Pipeline {
    store: Arc<Store>,
    mapper: ArcSwap<Mapper>,
    generation: AtomicU64,
    dialects: Dialects,
    profile: Profile,
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
        }
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
            handles: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            generation: self.generation.load(Ordering::Acquire),
            mapper: self.mapper.load_full(),
            counts: LocalCounts::default(),
            telemetry: WorkerTelemetry::new(),
            diagnostics: Diagnostics::default(),
        }
    }
}

/// How one raw identity resolved.
#[derive(Debug, Clone)]
enum Outcome {
    /// Update this series, after multiplying by `scale`.
    Series { series: SeriesRef, scale: f64 },
    /// The mapping says drop.
    Dropped,
    /// The series cannot be created: count the event against `counter`.
    Failed { counter: Counter },
}

#[derive(Debug)]
struct Handle {
    key: Box<[u8]>,
    hash: u64,
    outcome: Outcome,
    mapped: Option<Action>,
    tag_errors: u32,
    has_labels: bool,
    labels_dropped: u32,
}

impl Handle {
    #[inline]
    fn is_stale(&self) -> bool {
        matches!(&self.outcome, Outcome::Series { series, .. } if series.is_dead())
    }
}

/// Applies one sample through a resolved handle.
#[inline]
fn apply(handle: &Handle, sample: &Sample<'_>, shared: &Pipeline, c: &mut LocalCounts) {
    let kind = sample.kind();
    c.tags += u64::from(handle.has_labels);
    c.tag_errors += u64::from(handle.tag_errors);
    c.labels_dropped += u64::from(handle.labels_dropped);
    // statsd_exporter expands a sampled observer into int(1/rate) events, each counted.
    let events = if kind == EventKind::Observer {
        u64::from(sample.repeat)
    } else {
        1
    };
    c.events[kind_index(kind)] += events;
    match handle.mapped {
        None => c.unmapped += events,
        Some(Action::Map) => c.actions_map += events,
        Some(Action::Drop) => c.actions_drop += events,
    }
    match &handle.outcome {
        Outcome::Dropped => {}
        Outcome::Failed { counter } => counter.increment(events),
        Outcome::Series { series, scale } => {
            let store = &shared.store;
            let now = store.clock().now_ms();
            series.touch(now);
            match sample.stat_type {
                StatType::Counter => {
                    let v = sample.value * scale;
                    // NaN is not negative but would poison the running total too.
                    if v < 0.0 || v.is_nan() {
                        c.negative_counter += 1;
                    } else {
                        series.counter_add(v);
                    }
                }
                StatType::Gauge => series.gauge_update(sample.value * scale, sample.relative),
                StatType::Timer | StatType::Histogram | StatType::Distribution => {
                    let v = shared.profile.observed_value(sample) * scale;
                    series.observe(v, sample.repeat, store.clock(), now);
                }
            }
        }
    }
}

/// Counts accumulated over a batch and published in [`Worker::flush`].
#[derive(Debug, Default)]
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
    handles: HashTable<Handle>,
    hasher: foldhash::fast::RandomState,
    generation: u64,
    mapper: Arc<Mapper>,
    counts: LocalCounts,
    telemetry: WorkerTelemetry,
    diagnostics: Diagnostics,
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

fn write_key(out: &mut Vec<u8>, kind: EventKind, parts: &[&[u8]; 3]) {
    out.push(kind_index(kind) as u8);
    for p in parts {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p);
    }
}

fn key_matches(key: &[u8], kind: EventKind, parts: &[&[u8]; 3]) -> bool {
    let Some((&k, mut rest)) = key.split_first() else {
        return false;
    };
    if k != kind_index(kind) as u8 {
        return false;
    }
    for p in parts {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return false;
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len != p.len() || tail.len() < len || &tail[..len] != *p {
            return false;
        }
        rest = &tail[len..];
    }
    rest.is_empty()
}

impl Worker {
    /// Handles one datagram: every `\n`-separated piece is a line (statsd_exporter counts
    /// empty pieces as lines too).
    pub fn datagram(&mut self, payload: &[u8]) {
        self.follow_reload();
        for line in payload.split(|b| *b == b'\n') {
            self.parse_one(line);
        }
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
        let dialects = self.shared.dialects;
        // Split borrows: the parser needs the counters while the callback needs the rest.
        let mut parse = std::mem::take(&mut self.counts.parse);
        let before = parse.errors;
        parse_line(line, &dialects, &mut parse, |sample| self.sample(&sample));
        if parse.errors != before {
            self.report_bad_line(line, &before, &parse.errors);
        }
        self.counts.parse = parse;
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

    fn sample(&mut self, sample: &Sample<'_>) {
        let kind = sample.kind();
        let parts = sample.identity();
        let mut h = self.hasher.build_hasher();
        h.write_u8(kind_index(kind) as u8);
        for p in &parts {
            h.write(p);
            h.write_u8(0xff);
        }
        let hash = h.finish();
        // One probe in the steady state; a miss or a series expired since resolves first.
        match self
            .handles
            .find(hash, |e| key_matches(&e.key, kind, &parts))
        {
            Some(handle) if !handle.is_stale() => {
                apply(handle, sample, &self.shared, &mut self.counts);
            }
            _ => {
                self.resolve_into_cache(sample, hash, &parts);
                if let Some(handle) = self
                    .handles
                    .find(hash, |e| key_matches(&e.key, kind, &parts))
                {
                    apply(handle, sample, &self.shared, &mut self.counts);
                }
            }
        }
    }

    #[cold]
    fn resolve_into_cache(&mut self, sample: &Sample<'_>, hash: u64, parts: &[&[u8]; 3]) {
        let kind = sample.kind();
        if let Ok(entry) = self
            .handles
            .find_entry(hash, |e| key_matches(&e.key, kind, parts))
        {
            entry.remove();
        }
        if self.handles.len() >= MAX_HANDLES {
            self.handles.clear();
        }
        let r = resolve::resolve(
            &self.shared.profile,
            &self.mapper,
            &self.shared.store,
            sample,
        );
        let mut key = Vec::with_capacity(1 + 12 + parts.iter().map(|p| p.len()).sum::<usize>());
        write_key(&mut key, kind, parts);
        let handle = Handle {
            key: key.into_boxed_slice(),
            hash,
            outcome: r.outcome,
            mapped: r.mapped,
            tag_errors: r.tag_errors,
            has_labels: r.has_labels,
            labels_dropped: r.labels_dropped,
        };
        self.handles.insert_unique(hash, handle, |e| e.hash);
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
