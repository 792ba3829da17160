//! The hot path: one [`Worker`] per receive thread or connection turns received bytes into
//! series updates in place — split, parse, resolve, update — with no channel hop, no lock
//! and no allocation for a series it has seen before.
//!
//! A worker remembers how raw line bytes resolved (`handles.rs`): the series handle, or
//! the fact that they are dropped or conflicting. A line whose shape (everything but the
//! value) was seen before is replayed without running the grammar; other lines are parsed
//! and their samples found by raw series identity. Only a first sight (`first_sight.rs`)
//! goes through tag decoding, the mapper and the store's locks. A mapping reload bumps the
//! [`LiveMapper`]'s generation, which makes every worker forget its handles; TTL expiry
//! marks a series dead, which makes the worker resolve that key again. What a batch counted
//! (`counts.rs`) is published once per batch.
//!
//! Limits (`limits.rs`) are checked at a first sight only: a key refused by one is
//! remembered like a conflict, so its later lines cost a table probe; one refused by the
//! store's series limits is tried again once TTL expiry has made room. Values that would
//! poison a series (negative or non-finite counter increments, non-finite observations) are
//! refused per event, and never create a series.
//!
//! With a sender label (`sender.rs`), the listener names the sender of what follows, and
//! every key starts with the sender's address.

mod counts;
mod first_sight;
mod handles;
mod index;
mod limits;
mod merges;
mod sender;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::ingest::{Sink, SinkFactory, datagram_lines};
use crate::line::{
    Dialects, EventKind, ReplayParts, Sample, SampleError, StatType, parse_line, parse_value,
    split_for_replay,
};
use crate::logging::LogLimiter;
use crate::mapping::{Action, LiveMapper, Mapper, Profile};
use crate::store::{Observed, Store};
use crate::telemetry::catalog;

use counts::{BatchCounts, CountHandles, kind_index};
use handles::{HandleTable, Key, NOWHERE, Outcome, Replay, Resolution, SHAPE_TAG};
use limits::{ValueError, checked_value};
use merges::DeferredMerges;
use sender::Sender;

pub use limits::SampleLimits;
pub use sender::{SenderLabel, SenderLabelError};

/// State shared by every worker: the store, the mapper in force, the tag dialects and the
/// naming profile. The listeners' [`SinkFactory`]: it makes a [`Worker`] per receive thread
/// or connection.
#[derive(Debug)]
pub struct Workers {
    shared: Arc<Shared>,
    limits: SampleLimits,
    sender_label: Option<Arc<SenderLabel>>,
}

#[derive(Debug)]
struct Shared {
    store: Arc<Store>,
    mapper: Arc<LiveMapper>,
    dialects: Dialects,
    profile: Profile,
}

impl Workers {
    /// Workers that update `store`, map with `mapper`, and parse the `dialects` as adjusted
    /// by `profile`.
    pub fn new(
        store: Arc<Store>,
        mapper: Arc<LiveMapper>,
        dialects: Dialects,
        profile: Profile,
    ) -> Workers {
        let dialects = profile.adjust_dialects(dialects);
        Workers {
            shared: Arc::new(Shared {
                store,
                mapper,
                dialects,
                profile,
            }),
            limits: SampleLimits::default(),
            sender_label: None,
        }
    }

    /// The same workers with other sample limits than [`SampleLimits::default`]; workers
    /// made after this call use them.
    pub fn with_limits(mut self, limits: SampleLimits) -> Workers {
        self.limits = limits;
        self
    }

    /// The same workers with a sender label (`--statsd.sender-label`), or without one
    /// (`None`, the default: events are keyed and stored as statsd_exporter does); workers
    /// made after this call use it. With a label, each worker wants its listener to name
    /// the sender of what it hands over ([`Sink::sender`]).
    pub fn with_sender_label(mut self, label: Option<SenderLabel>) -> Workers {
        self.sender_label = label.map(Arc::new);
        self
    }

    /// The store every worker updates.
    pub fn store(&self) -> &Arc<Store> {
        &self.shared.store
    }

    /// The mapper in force, for reloading it.
    pub fn mapper(&self) -> &Arc<LiveMapper> {
        &self.shared.mapper
    }

    /// The tag dialects every worker parses, as the profile adjusted them.
    pub fn dialects(&self) -> Dialects {
        self.shared.dialects
    }

    /// A new worker for one receive thread or connection.
    pub fn worker(&self) -> Worker {
        Worker {
            generation: self.shared.mapper.generation(),
            mapper: self.shared.mapper.current(),
            shared: self.shared.clone(),
            limits: self.limits,
            handles: HandleTable::default(),
            counts: BatchCounts::default(),
            merges: DeferredMerges::default(),
            count_handles: CountHandles::new(self.sender_label.is_some()),
            bad_input_log: LogLimiter::new(BAD_INPUT_LOG_PERIOD),
            replay_enabled: true,
            sender_label: self.sender_label.clone(),
            sender: Sender::default(),
        }
    }
}

impl SinkFactory for Workers {
    type Sink = Worker;

    fn make_sink(&self) -> Worker {
        self.worker()
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
fn apply(
    res: &Resolution,
    ev: Event,
    shared: &Shared,
    c: &mut BatchCounts,
    merges: &mut DeferredMerges,
) {
    let kind = ev.stat_type.kind();
    c.tags += u64::from(res.has_labels);
    c.tag_errors += u64::from(res.tag_errors);
    c.labels_dropped += u64::from(res.labels_dropped);
    c.sender_overrides += u64::from(res.sender_overridden);
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
        Outcome::Series { series, scale } => {
            let store = &shared.store;
            let v = match checked_value(ev.stat_type, ev.value, *scale, &shared.profile) {
                Ok(v) => v,
                Err(e) => return c.refused(e, events),
            };
            let now = store.clock().now_ms();
            let applied = match ev.stat_type {
                StatType::Counter => series.counter_add(v),
                StatType::Gauge => {
                    series.gauge_update(v, ev.relative);
                    true
                }
                StatType::Timer | StatType::Histogram | StatType::Distribution => {
                    match series.observe(v, ev.repeat, store.clock(), now) {
                        Observed::Refused => false,
                        Observed::Recorded => true,
                        Observed::MergeDue => {
                            merges.push(series);
                            true
                        }
                    }
                }
            };
            if applied {
                series.touch(now);
            } else {
                // The running total or `_sum` would have left the finite range.
                c.refused(ValueError::NonFinite, events);
            }
        }
        Outcome::Dropped => {}
        Outcome::Failed { counter } => counter.increment(events),
        Outcome::Limited { reason, .. } => c.dropped[reason.index()] += events,
        Outcome::BadValue(e) => c.refused(*e, events),
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

/// A replayable line's shape, hashed as a key.
#[derive(Clone, Copy)]
struct Shape<'a> {
    parts: ReplayParts<'a>,
    hash: u64,
    /// Where its entry probably is, once looked up (see [`HandleTable::prefetch`]).
    pos: u32,
}

/// The parts of a line shape's key: with a sender label, the sender's address comes first.
#[inline]
fn shape_parts<'a>(sender: Option<&'a [u8]>, r: &ReplayParts<'a>) -> ([&'a [u8]; 3], usize) {
    match sender {
        None => ([r.name_section, r.tail, &[]], 2),
        Some(s) => ([s, r.name_section, r.tail], 3),
    }
}

/// How many lines ahead of the one being handled a line's entry is hinted, and then its
/// key and series (see [`Worker::datagram`]): far enough that each hint has the handling
/// of a line or two to arrive in.
const ENTRY_AHEAD: usize = 4;
const TARGET_AHEAD: usize = 2;

/// Finds where line `j`'s entry probably is and hints it; a line of the same shape as the
/// one before (a hot series) reuses its position.
#[inline]
fn hint_entry(handles: &HandleTable, batch: &mut [(&[u8], Option<Shape<'_>>)], j: usize) {
    let before = j
        .checked_sub(1)
        .and_then(|i| batch.get(i))
        .and_then(|b| b.1);
    if let Some((_, Some(shape))) = batch.get_mut(j) {
        shape.pos = match before {
            Some(b) if b.hash == shape.hash => b.pos,
            _ => handles.prefetch(shape.hash),
        };
    }
}

/// Hints line `j`'s key and series, unless the line before has the same entry.
#[inline]
fn hint_target(handles: &HandleTable, batch: &[(&[u8], Option<Shape<'_>>)], j: usize) {
    let before = j
        .checked_sub(1)
        .and_then(|i| batch.get(i))
        .and_then(|b| b.1);
    if let Some((_, Some(shape))) = batch.get(j)
        && before.is_none_or(|b| b.pos != shape.pos)
    {
        handles.prefetch_target(shape.pos);
    }
}

/// Lines of a packed datagram hashed ahead of handling (see [`Worker::datagram`]): about
/// one 1,400-byte datagram of Envoy lines, and few enough that the first line's prefetched
/// index slot is still cached when its entry is looked up.
const BATCH: usize = 32;

/// Turns received bytes into series updates. One per thread or connection; not shared.
#[derive(Debug)]
pub struct Worker {
    shared: Arc<Shared>,
    limits: SampleLimits,
    handles: HandleTable,
    /// The mapper generation `mapper` and `handles` belong to.
    generation: u64,
    mapper: Arc<Mapper>,
    counts: BatchCounts,
    /// Summaries whose merges wait for the end of the batch.
    merges: DeferredMerges,
    count_handles: CountHandles,
    /// One log line per period for bad lines and series that cannot be stored; every one
    /// of them is still counted in the self-metrics.
    bad_input_log: LogLimiter,
    /// Off only in tests that check replay against the grammar.
    replay_enabled: bool,
    /// `--statsd.sender-label`; `None` keeps keys and series as statsd_exporter's.
    sender_label: Option<Arc<SenderLabel>>,
    /// Who sent what is being handled; used only with a sender label.
    sender: Sender,
}

/// How often a worker may log bad input.
const BAD_INPUT_LOG_PERIOD: Duration = Duration::from_secs(10);

/// One log line per period for events dropped by a limit, whichever worker drops them: a
/// flood of new names hits a limit on every receive thread at once.
static LIMIT_LOG: LogLimiter = LogLimiter::new(BAD_INPUT_LOG_PERIOD);

/// At most this much of a bad line goes into a log message.
const LOGGED_LINE_BYTES: usize = 200;

impl Worker {
    /// Handles one datagram: every `\n`-separated piece is a line (statsd_exporter counts
    /// empty pieces as lines too).
    pub fn datagram(&mut self, payload: &[u8]) {
        self.follow_reload();
        let mut lines = datagram_lines(payload);
        if memchr::memchr(b'\n', payload).is_none() {
            // One line: nothing to overlap its misses with.
            for line in lines {
                self.parse_one(line);
            }
            return;
        }
        // A packed datagram across many series is bound by memory latency: each line's
        // index slot, entry, key and series are a miss apiece, and each needs the one
        // before. So the lines are software-pipelined: all are hashed and their slots
        // hinted first; then, while line i is handled, line i + ENTRY_AHEAD has its entry
        // hinted (its slot has arrived) and line i + TARGET_AHEAD its key and series (its
        // entry has arrived). Each miss then overlaps the handling of the lines before it.
        let mut batch: [(&[u8], Option<Shape<'_>>); BATCH] = [(&[], None); BATCH];
        loop {
            let mut n = 0;
            for (slot, line) in batch.iter_mut().zip(lines.by_ref()) {
                let shape = self.shape(line);
                if let Some(s) = &shape {
                    self.handles.prefetch_slot(s.hash);
                }
                *slot = (line, shape);
                n += 1;
            }
            let batch = &mut batch[..n];
            for j in 0..ENTRY_AHEAD.min(n) {
                hint_entry(&self.handles, batch, j);
            }
            for j in 0..TARGET_AHEAD.min(n) {
                hint_target(&self.handles, batch, j);
            }
            for i in 0..n {
                if i + ENTRY_AHEAD < n {
                    hint_entry(&self.handles, batch, i + ENTRY_AHEAD);
                }
                if i + TARGET_AHEAD < n {
                    hint_target(&self.handles, batch, i + TARGET_AHEAD);
                }
                let (line, shape) = batch[i];
                self.handle_line(line, shape);
            }
            if n < BATCH {
                return;
            }
        }
    }

    /// Handles one line without its terminator.
    pub fn line(&mut self, line: &[u8]) {
        self.follow_reload();
        self.parse_one(line);
    }

    /// A line's shape and its hash, when the line may be replayed.
    #[inline]
    fn shape<'a>(&self, line: &'a [u8]) -> Option<Shape<'a>> {
        if !self.replay_enabled || line.is_empty() {
            return None;
        }
        let parts = split_for_replay(line).filter(|r| replayable_tail(r.tail))?;
        let sender = self.sender_label.as_ref().map(|_| self.sender.key());
        let (buf, len) = shape_parts(sender, &parts);
        let hash = self.handles.hash(Key {
            tag: SHAPE_TAG,
            parts: &buf[..len],
        });
        Some(Shape {
            parts,
            hash,
            pos: NOWHERE,
        })
    }

    /// Switches to a reloaded mapper before the next event, so an event received after a
    /// reload is always mapped by the new rules. One acquire load of a rarely written word.
    #[inline]
    fn follow_reload(&mut self) {
        let gen_now = self.shared.mapper.generation();
        if gen_now != self.generation {
            self.generation = gen_now;
            self.mapper = self.shared.mapper.current();
            self.handles.clear();
        }
    }

    fn parse_one(&mut self, line: &[u8]) {
        let shape = self.shape(line);
        self.handle_line(line, shape);
    }

    /// Handles a line whose shape [`Worker::shape`] found.
    fn handle_line(&mut self, line: &[u8], shape: Option<Shape<'_>>) {
        self.counts.lines += 1;
        if line.is_empty() {
            return;
        }
        if let Some(shape) = shape
            && self.replay(shape)
        {
            return;
        }
        let replay = shape.map(|s| s.parts);
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
    fn replay(&mut self, shape: Shape<'_>) -> bool {
        let r = shape.parts;
        let sender = self.sender_label.as_ref().map(|_| self.sender.key());
        let (buf, len) = shape_parts(sender, &r);
        let key = Key {
            tag: SHAPE_TAG,
            parts: &buf[..len],
        };
        let Some(entry) = self.handles.get_at(shape.pos, shape.hash, key) else {
            return false;
        };
        let Some(rp) = entry.replay else { return false };
        if entry.res.is_stale(&self.shared.store) {
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
        apply(
            &entry.res,
            ev,
            &self.shared,
            &mut self.counts,
            &mut self.merges,
        );
        true
    }

    #[cold]
    fn cache_shape(&mut self, r: ReplayParts<'_>, sample: &Sample<'_>) {
        // A copy: the key must not borrow `self`, which resolving borrows mutably.
        let sender = self.sender;
        let (buf, len) = shape_parts(self.sender_label.as_ref().map(|_| sender.key()), &r);
        let key = Key {
            tag: SHAPE_TAG,
            parts: &buf[..len],
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
        if matches!(res.outcome, Outcome::BadValue(_)) {
            // Not remembered: the key's next value may be good, and must create the series.
            apply(
                &res,
                Event::of(sample),
                &self.shared,
                &mut self.counts,
                &mut self.merges,
            );
            return;
        }
        let hash = self.handles.hash(key);
        let entry = self.handles.insert(hash, key, res, replay);
        apply(
            &entry.res,
            Event::of(sample),
            &self.shared,
            &mut self.counts,
            &mut self.merges,
        );
    }

    #[cold]
    fn report_bad_line(&mut self, line: &[u8], before: &[u64; 9], after: &[u64; 9]) {
        let Some(suppressed) = self.bad_input_log.allow() else {
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
            "bad statsd line dropped (counted in {})",
            catalog::SAMPLE_ERRORS.name
        );
    }

    /// Whether this worker keys and labels events by their sender: then its listener must
    /// call [`Worker::sender`] before handing it anything.
    pub fn wants_sender(&self) -> bool {
        self.sender_label.is_some()
    }

    /// Names the sender of the datagrams and lines that follow: a UDP datagram's source
    /// address, a TCP connection's peer, `None` for unixgram. Ignored without a sender label.
    #[inline]
    pub fn sender(&mut self, from: Option<IpAddr>) {
        if self.sender_label.is_some() {
            self.sender = Sender::of(from);
        }
    }

    /// Ends a batch: publishes its counts and does some of the summary merges put off
    /// during it. Call once per batch.
    pub fn flush(&mut self) {
        self.follow_reload();
        self.counts.publish(&self.count_handles);
        self.merges.batch_end();
    }

    /// A sample of a line that is not replayable: found by its series identity.
    fn sample(&mut self, sample: &Sample<'_>) {
        let identity = sample.identity();
        // A copy: the key must not borrow `self`, which resolving borrows mutably.
        let (sender, from_sender);
        let parts: &[&[u8]] = if self.sender_label.is_none() {
            &identity
        } else {
            sender = self.sender;
            let [name_section, dogstatsd, container] = identity;
            from_sender = [sender.key(), name_section, dogstatsd, container];
            &from_sender
        };
        let key = Key {
            tag: kind_index(sample.kind()) as u8,
            parts,
        };
        let hash = self.handles.hash(key);
        match self.handles.get(hash, key) {
            Some(entry) if !entry.res.is_stale(&self.shared.store) => {
                apply(
                    &entry.res,
                    Event::of(sample),
                    &self.shared,
                    &mut self.counts,
                    &mut self.merges,
                );
            }
            _ => self.resolve_and_apply(key, sample, None),
        }
    }

    /// First sight of a key: decode, map, create the series; log a problem (rate-limited).
    #[cold]
    fn resolve(&mut self, sample: &Sample<'_>) -> Resolution {
        let sender = self
            .sender_label
            .as_deref()
            .map(|label| (label, self.sender.address()));
        let r = first_sight::resolve(
            &self.shared.profile,
            &self.mapper,
            &self.shared.store,
            &self.limits,
            sender,
            sample,
        );
        if let Some(problem) = &r.problem {
            if let Outcome::Limited { reason, .. } = r.resolution.outcome {
                if let Some(suppressed) = LIMIT_LOG.allow() {
                    tracing::warn!(
                        reason = reason.as_str(),
                        suppressed,
                        "{problem}; its events are dropped and counted in {}",
                        catalog::EVENTS_DROPPED.name
                    );
                }
            } else if let Some(suppressed) = self.bad_input_log.allow() {
                tracing::warn!(suppressed, "{problem}; its events are dropped and counted");
            }
        }
        r.resolution
    }
}

impl Sink for Worker {
    fn datagram(&mut self, payload: &[u8]) {
        Worker::datagram(self, payload)
    }

    fn line(&mut self, line: &[u8]) {
        Worker::line(self, line)
    }

    fn flush(&mut self) {
        Worker::flush(self)
    }

    fn wants_sender(&self) -> bool {
        Worker::wants_sender(self)
    }

    fn sender(&mut self, from: Option<IpAddr>) {
        Worker::sender(self, from)
    }
}

#[cfg(test)]
mod tests;
