//! Sharded series storage: counters, gauges, histograms and summaries; TTL; conflicts;
//! series limits.
//!
//! Layout: families are spread over shards by name hash, each shard a `RwLock` around a
//! hash map; a family holds its series ordered by sorted labels (`index.rs`), so scrapes
//! come out sorted without a sort. The hot path does not touch any of these locks: the
//! workers keep per-thread handles ([`SeriesRef`]) and update a series through atomics
//! (a summary through its own small mutex). Locks are taken only to create a series, to
//! scrape and to expire.
//!
//! Consistency a scrape sees: each series is read atomically (a histogram's buckets are
//! read one by one, so a concurrent observation may show in a bucket and not yet in the
//! sum); families are visited one at a time, and a large family in chunks with its lock
//! released in between, so a scrape never blocks series creation for long.
//!
//! Limits: [`StoreOptions::max_series`] bounds every series together and
//! [`StoreOptions::max_series_per_metric`] the series of one family. A series is only ever
//! refused at creation, so existing series keep updating exactly however full the store is.
//! A slot of the global limit is reserved before a family is created, so a refused series
//! leaves no empty family behind. When TTL expiry frees room, [`Store::room_epoch`] moves
//! and holders of a refusal try again.
//!
//! Expiry never sorts and never waits for a scrape. Each shard and each family keeps a lower
//! bound of its series' deadlines; a pass runs only once the earliest has passed (at most
//! every [`MIN_EXPIRY_PASS_INTERVAL_MS`]), walks only the shards where one has, and looks
//! into only the families where one has, so a series with a short TTL among millions with
//! long ones (or none) is found in a few milliseconds. The coarse clock ticks on a thread
//! of its own, so a long pass cannot hold time still.

pub mod clock;
mod index;
pub mod native;
pub mod options;
mod series;
pub mod summary;

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub use clock::CoarseClock;

use crate::telemetry::catalog;
use index::SeriesIndex;
pub use options::{
    HistogramOptions, NativeHistogramOptions, Objective, ObserverOptions, SummaryEstimator,
    SummaryOptions, TextStyle,
};
pub use series::Series;
pub use summary::{Observed, SummarySnapshot};

/// A handle to a live series, held by the hot path between events.
pub type SeriesRef = Arc<Series>;

/// Sorted `(name, value)` label pairs, shared by a series and its family's index.
pub type Labels = Arc<[(Box<str>, Box<str>)]>;

/// The Prometheus type of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FamilyType {
    /// A running total of `c` events.
    Counter,
    /// The last value set by `g` events (or moved by relative ones).
    Gauge,
    /// Quantiles over a sliding window, with `_sum` and `_count`.
    Summary,
    /// Cumulative `_bucket`s, with `_sum` and `_count`.
    Histogram,
}

impl FamilyType {
    /// The `# TYPE` keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            FamilyType::Counter => "counter",
            FamilyType::Gauge => "gauge",
            FamilyType::Summary => "summary",
            FamilyType::Histogram => "histogram",
        }
    }
}

/// What a new series should be.
#[derive(Clone, Copy, Debug)]
pub enum SeriesKind<'a> {
    /// A counter, for `c` events.
    Counter,
    /// A gauge, for `g` events.
    Gauge,
    /// A summary or histogram, as the options say.
    Observer(&'a ObserverOptions),
}

impl SeriesKind<'_> {
    /// The family type this kind creates.
    pub fn family_type(&self) -> FamilyType {
        match self {
            SeriesKind::Counter => FamilyType::Counter,
            SeriesKind::Gauge => FamilyType::Gauge,
            SeriesKind::Observer(ObserverOptions::Summary(_)) => FamilyType::Summary,
            SeriesKind::Observer(ObserverOptions::Histogram(_)) => FamilyType::Histogram,
        }
    }
}

/// Everything needed to find or create a series.
#[derive(Clone, Debug)]
pub struct SeriesSpec<'a> {
    /// A valid Prometheus metric name (already escaped).
    pub name: &'a str,
    /// HELP text; statsd_exporter's generic text when `None`.
    pub help: Option<&'a str>,
    /// Type and observer options.
    pub kind: SeriesKind<'a>,
    /// Label pairs with unique, valid, non-reserved names, in any order.
    pub labels: Vec<(String, String)>,
    /// Expire after this long without an update; zero never expires.
    pub ttl: Duration,
    /// How the family is written (fixed by the family's first series).
    pub style: TextStyle,
}

/// Why a series could not be created. Each is counted by the caller and never disturbs
/// other series.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The name (or a name its exposition would produce) is taken by a family of another type.
    #[error("metric {name} conflicts with an existing {existing}")]
    Conflict {
        /// The requested name.
        name: String,
        /// The type already registered.
        existing: &'static str,
    },
    /// The name belongs to the gateway's own telemetry.
    #[error("metric {name} is reserved for the gateway's own metrics")]
    Reserved {
        /// The requested name.
        name: String,
    },
    /// The store holds [`StoreOptions::max_series`] series already.
    #[error("a new series of {name} is refused: the store holds its limit of {limit} series")]
    SeriesLimit {
        /// The requested name.
        name: String,
        /// The limit in force.
        limit: usize,
    },
    /// The family holds [`StoreOptions::max_series_per_metric`] series already.
    #[error("a new series of {name} is refused: the metric holds its limit of {limit} series")]
    MetricSeriesLimit {
        /// The requested name.
        name: String,
        /// The limit in force.
        limit: usize,
    },
}

/// The generic HELP text, statsd_exporter's wording so dashboards' tooltips stay the same.
pub const DEFAULT_HELP: &str = "Metric autogenerated by statsd_exporter.";

/// A metric family: one name, one type, many series.
#[derive(Debug)]
pub struct Family {
    /// Shared with the shard index's key: one allocation per family name.
    name: Arc<str>,
    /// `None` is [`DEFAULT_HELP`], so the common case stores no text per family.
    help: Option<Box<str>>,
    family_type: FamilyType,
    observer: Option<ObserverOptions>,
    style: TextStyle,
    series: RwLock<SeriesIndex>,
    /// No series of the family can have expired at or before this coarse time (`u64::MAX`:
    /// none has a TTL, as far as the last look knew). Creators lower it; expiry passes
    /// skip the family until it has passed and then recompute it. Updates only push
    /// deadlines later, so it stays a lower bound.
    next_deadline: AtomicU64,
    /// Set when expiry removed the family from its shard; creators then retry.
    removed: AtomicBool,
}

impl Family {
    /// Asks the CPU to start loading the family's fields and its name. A scrape walks
    /// families scattered over the heap and is bound by memory latency: hinting the ones a
    /// few steps ahead lets those loads overlap the rendering of the current one.
    #[inline]
    pub fn prefetch(&self) {
        crate::prefetch::prefetch(self);
    }

    /// Like [`Family::prefetch`] for the name's bytes; call it once the family itself has
    /// arrived, since finding the name reads the family.
    #[inline]
    pub fn prefetch_name(&self) {
        crate::prefetch::prefetch_bytes(self.name.as_ptr(), 1);
    }

    /// The metric name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The HELP text.
    pub fn help(&self) -> &str {
        self.help.as_deref().unwrap_or(DEFAULT_HELP)
    }

    /// Counter, gauge, summary or histogram: fixed by the family's first series.
    pub fn family_type(&self) -> FamilyType {
        self.family_type
    }

    /// How the family is written.
    pub fn style(&self) -> TextStyle {
        self.style
    }

    /// Histogram bounds or summary objectives, for observer families.
    pub fn observer(&self) -> Option<&ObserverOptions> {
        self.observer.as_ref()
    }

    /// How many series the family holds now (takes its read lock).
    pub fn len(&self) -> usize {
        read(&self.series).len()
    }

    /// True when the family has no series.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Visits every series in label order, `chunk` at a time: the family's lock is held
    /// for one chunk and released before the next, so creators are never blocked for a
    /// whole large family. A series created during the walk shows if it sorts after the
    /// current position. `f` gets the handle, so a caller may keep a series past the walk.
    pub fn for_each_series(&self, chunk: usize, mut f: impl FnMut(&SeriesRef)) {
        let chunk = chunk.max(1);
        let mut last: Option<Labels> = None;
        // Grown on demand: most families hold one series, and a scrape visits them all.
        let mut batch: Vec<SeriesRef> = Vec::new();
        loop {
            batch.clear();
            {
                let map = read(&self.series);
                let after = last.take();
                map.page(after.as_ref(), chunk, |k, s| {
                    batch.push(s.clone());
                    // Only a full page is followed by another: the key it resumes after is
                    // the one clone a page needs (a clone per series was a cache miss each).
                    if batch.len() == chunk {
                        last = Some(k.clone());
                    }
                });
            }
            for s in &batch {
                f(s);
            }
            if batch.len() < chunk {
                return;
            }
        }
    }
}

/// The default of [`StoreOptions::max_series`] (`--statsd.max-series`): far above what a
/// Prometheus target is scraped with comfortably (a 1M-series exposition is ~100 MB of
/// text), and a bound of roughly 0.5–1 GB of memory when an attacker sends new names.
pub const DEFAULT_MAX_SERIES: usize = 1_000_000;

/// The default of [`StoreOptions::max_series_per_metric`] (`--statsd.max-series-per-metric`):
/// a tenth of [`DEFAULT_MAX_SERIES`], so one metric whose tags explode (a user id as a tag)
/// stops there and leaves room for new series of every other metric.
pub const DEFAULT_MAX_SERIES_PER_METRIC: usize = 100_000;

/// The shortest time between two expiry passes, so a store whose deadlines are spread
/// evenly (a flood of names with a TTL) is walked twice a second rather than on every tick.
/// A series expires no sooner than its TTL, and no later than two clock ticks, a
/// maintenance tick and a pass after it (up to this interval more when passes follow each
/// other).
pub const MIN_EXPIRY_PASS_INTERVAL_MS: u64 = 500;

/// How a [`Store`] is built.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Number of shards for the family index (rounded up to a power of two). Default 64.
    pub shards: usize,
    /// Family names owned by the gateway's own telemetry. Default none.
    pub reserved_names: Vec<String>,
    /// Most series held, all families together; 0 means no limit. Default
    /// [`DEFAULT_MAX_SERIES`].
    pub max_series: usize,
    /// Most series of one family; 0 means no limit. Default
    /// [`DEFAULT_MAX_SERIES_PER_METRIC`].
    pub max_series_per_metric: usize,
    /// How summary series estimate their quantiles. Default [`SummaryEstimator::Ckms`].
    pub summary_estimator: SummaryEstimator,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            shards: 64,
            reserved_names: Vec::new(),
            max_series: DEFAULT_MAX_SERIES,
            max_series_per_metric: DEFAULT_MAX_SERIES_PER_METRIC,
            summary_estimator: SummaryEstimator::default(),
        }
    }
}

/// The family types in the order of [`Store`]'s per-type counts.
const FAMILY_TYPES: [FamilyType; 4] = [
    FamilyType::Counter,
    FamilyType::Gauge,
    FamilyType::Summary,
    FamilyType::Histogram,
];

fn type_index(t: FamilyType) -> usize {
    match t {
        FamilyType::Counter => 0,
        FamilyType::Gauge => 1,
        FamilyType::Summary => 2,
        FamilyType::Histogram => 3,
    }
}

/// A reserved slot of the global series count, given back on drop unless a series took it.
struct SeriesSlot<'a> {
    count: &'a AtomicUsize,
    taken: bool,
}

impl SeriesSlot<'_> {
    fn take(mut self) {
        self.taken = true;
    }
}

impl Drop for SeriesSlot<'_> {
    fn drop(&mut self) {
        if !self.taken {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

type Shard = RwLock<hashbrown::HashMap<Arc<str>, Arc<Family>, foldhash::fast::RandomState>>;

/// Every family and series, sharded by family name; shared by the workers, the scrape and
/// the maintenance thread.
#[derive(Debug)]
pub struct Store {
    shards: Box<[Shard]>,
    hasher: foldhash::fast::RandomState,
    /// Serialises family creation so the cross-name conflict checks see a stable picture.
    create_lock: Mutex<()>,
    /// Bumped whenever a family is added or removed; the sorted list below is rebuilt only
    /// then, so a steady-state scrape does not sort 100k names.
    families_generation: AtomicU64,
    sorted_families: Mutex<(u64, Arc<[Arc<Family>]>)>,
    clock: CoarseClock,
    reserved: HashSet<String>,
    /// Live series plus slots reserved by creators in flight.
    series_count: AtomicUsize,
    ttl_series: AtomicUsize,
    max_series: usize,
    max_series_per_metric: usize,
    summary_estimator: SummaryEstimator,
    /// Live families by type, in [`FAMILY_TYPES`] order.
    families_by_type: [AtomicUsize; 4],
    /// Bumped by every expiry pass that removed a series: room may have been made.
    room_epoch: AtomicU64,
    /// The earliest known coarse time after which some series may have expired
    /// (`u64::MAX`: none known). Lowered by creators, recomputed by each pass.
    next_expiry_ms: AtomicU64,
    /// The same per shard, so a pass walks only the shards where something is due.
    shard_next_expiry: Box<[AtomicU64]>,
}

/// What one expiry pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ExpiryPass {
    /// Series removed.
    expired: usize,
    /// Families whose series were looked at (the rest were skipped on their deadline).
    families_checked: usize,
    /// Shards walked (the rest were skipped on their deadline).
    shards_walked: usize,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-update of a map whose every
    // mutation is a single insert/remove; the data is still consistent.
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// A store with a real clock.
    pub fn new(opts: StoreOptions) -> Self {
        Self::with_clock(opts, CoarseClock::real())
    }

    /// A store with the given clock (tests use a manual one).
    pub fn with_clock(opts: StoreOptions, clock: CoarseClock) -> Self {
        let n = opts.shards.max(1).next_power_of_two();
        let hasher = foldhash::fast::RandomState::default();
        let shards = (0..n)
            .map(|_| RwLock::new(hashbrown::HashMap::with_hasher(hasher.clone())))
            .collect();
        Store {
            shards,
            hasher,
            create_lock: Mutex::new(()),
            clock,
            reserved: opts.reserved_names.into_iter().collect(),
            series_count: AtomicUsize::new(0),
            ttl_series: AtomicUsize::new(0),
            max_series: opts.max_series,
            max_series_per_metric: opts.max_series_per_metric,
            summary_estimator: opts.summary_estimator,
            families_by_type: Default::default(),
            room_epoch: AtomicU64::new(0),
            next_expiry_ms: AtomicU64::new(u64::MAX),
            shard_next_expiry: (0..n).map(|_| AtomicU64::new(u64::MAX)).collect(),
            families_generation: AtomicU64::new(1),
            sorted_families: Mutex::new((0, Arc::from(Vec::new()))),
        }
    }

    /// The clock events are stamped with.
    pub fn clock(&self) -> &CoarseClock {
        &self.clock
    }

    /// Number of live series (plus, for an instant, series being created).
    pub fn series_count(&self) -> usize {
        self.series_count.load(Ordering::Relaxed)
    }

    /// The most series held, all families together (`--statsd.max-series`); 0: no limit.
    pub fn max_series(&self) -> usize {
        self.max_series
    }

    /// How summary series estimate their quantiles (`--statsd.summary-estimator`).
    pub fn summary_estimator(&self) -> SummaryEstimator {
        self.summary_estimator
    }

    /// Number of live families of type `t`.
    pub fn family_count(&self, t: FamilyType) -> usize {
        self.families_by_type[type_index(t)].load(Ordering::Relaxed)
    }

    /// Moves whenever expiry removed series, so a series refused by a limit may fit now.
    /// Holders of a refusal compare it with the value read before they asked.
    #[inline]
    pub fn room_epoch(&self) -> u64 {
        self.room_epoch.load(Ordering::Acquire)
    }

    /// Takes a slot of the global limit, or `None` when the store is full.
    fn reserve_series(&self) -> Option<SeriesSlot<'_>> {
        let count = &self.series_count;
        if self.max_series == 0 {
            count.fetch_add(1, Ordering::Relaxed);
        } else {
            count
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < self.max_series).then_some(n + 1)
                })
                .ok()?;
        }
        Some(SeriesSlot {
            count,
            taken: false,
        })
    }

    fn shard_index(&self, name: &str) -> usize {
        let h = self.hasher.hash_one(name) as usize;
        h & (self.shards.len() - 1)
    }

    fn shard(&self, name: &str) -> &Shard {
        &self.shards[self.shard_index(name)]
    }

    fn family(&self, name: &str) -> Option<Arc<Family>> {
        read(self.shard(name)).get(name).cloned()
    }

    /// Finds the series for `spec`, creating it (and its family) if needed. A new series
    /// beyond a limit is refused; an existing one is always found.
    pub fn resolve(&self, spec: &SeriesSpec<'_>) -> Result<SeriesRef, ResolveError> {
        let mut labels: Vec<(Box<str>, Box<str>)> = spec
            .labels
            .iter()
            .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
            .collect();
        labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let labels: Labels = labels.into();
        let want = spec.kind.family_type();
        let conflict = |existing: FamilyType| ResolveError::Conflict {
            name: spec.name.to_string(),
            existing: existing.as_str(),
        };
        // Retried only when expiry removes the family between lookup and insert.
        for _ in 0..8 {
            let found = self.family(spec.name);
            if let Some(family) = &found {
                if family.family_type != want {
                    return Err(conflict(family.family_type));
                }
                if let Some(s) = read(&family.series).get(&labels) {
                    return Ok(s.clone());
                }
            }
            // Before the family exists: a refused series must leave nothing behind.
            let slot = self
                .reserve_series()
                .ok_or_else(|| ResolveError::SeriesLimit {
                    name: spec.name.to_string(),
                    limit: self.max_series,
                })?;
            let family = match found {
                Some(f) => f,
                None => self.create_family(spec)?,
            };
            if family.family_type != want {
                return Err(conflict(family.family_type));
            }
            let mut map = write(&family.series);
            if family.removed.load(Ordering::Acquire) {
                continue;
            }
            if let Some(s) = map.get(&labels) {
                return Ok(s.clone());
            }
            if self.max_series_per_metric > 0 && map.len() >= self.max_series_per_metric {
                return Err(ResolveError::MetricSeriesLimit {
                    name: spec.name.to_string(),
                    limit: self.max_series_per_metric,
                });
            }
            let series = Arc::new(self.new_series(&family, labels.clone(), spec.ttl));
            map.insert(labels, series.clone());
            slot.take();
            if let Some(deadline) = series.deadline(self.clock.lag_ms()) {
                // Under the family's write lock, so a pass looking into the family either
                // sees the series or runs after these.
                self.ttl_series.fetch_add(1, Ordering::Relaxed);
                family.next_deadline.fetch_min(deadline, Ordering::Relaxed);
                self.shard_next_expiry[self.shard_index(spec.name)]
                    .fetch_min(deadline, Ordering::Relaxed);
                self.next_expiry_ms.fetch_min(deadline, Ordering::Relaxed);
            }
            return Ok(series);
        }
        Err(ResolveError::Conflict {
            name: spec.name.to_string(),
            existing: "expiring family",
        })
    }

    fn new_series(&self, family: &Family, labels: Labels, ttl: Duration) -> Series {
        let now = self.clock.now_ms();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        match (&family.family_type, &family.observer) {
            (FamilyType::Counter, _) => Series::counter(labels, now, ttl_ms),
            (FamilyType::Gauge, _) => Series::gauge(labels, now, ttl_ms),
            (FamilyType::Histogram, Some(ObserverOptions::Histogram(h))) => {
                Series::histogram(labels, h, now, ttl_ms)
            }
            (_, Some(ObserverOptions::Summary(s))) => {
                let at = self.clock.instant_at(now);
                Series::summary(labels, s, self.summary_estimator, now, ttl_ms, at)
            }
            (_, _) => Series::summary(
                labels,
                &SummaryOptions::default(),
                self.summary_estimator,
                now,
                ttl_ms,
                self.clock.instant_at(now),
            ),
        }
    }

    /// The names a family's exposition writes, which must not clash with another family.
    fn exposed_names(name: &str, t: FamilyType) -> Vec<String> {
        match t {
            FamilyType::Counter | FamilyType::Gauge => vec![name.to_string()],
            FamilyType::Summary => vec![
                name.to_string(),
                format!("{name}_sum"),
                format!("{name}_count"),
            ],
            FamilyType::Histogram => vec![
                name.to_string(),
                format!("{name}_sum"),
                format!("{name}_count"),
                format!("{name}_bucket"),
            ],
        }
    }

    fn create_family(&self, spec: &SeriesSpec<'_>) -> Result<Arc<Family>, ResolveError> {
        let _guard = self.create_lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = self.family(spec.name) {
            return Ok(f);
        }
        let t = spec.kind.family_type();
        let exposed = Self::exposed_names(spec.name, t);
        if exposed.iter().any(|n| self.reserved.contains(n.as_str())) {
            return Err(ResolveError::Reserved {
                name: spec.name.to_string(),
            });
        }
        // statsd_exporter's registry rules (§2.4): our sample names must not be another
        // family's name, and our name must not be one of an observer family's sample names.
        for n in exposed.iter().skip(1) {
            if let Some(other) = self.family(n) {
                return Err(ResolveError::Conflict {
                    name: spec.name.to_string(),
                    existing: other.family_type.as_str(),
                });
            }
        }
        for suffix in ["_sum", "_count", "_bucket"] {
            let Some(base) = spec.name.strip_suffix(suffix) else {
                continue;
            };
            let Some(other) = self.family(base) else {
                continue;
            };
            // statsd_exporter refuses a counter or gauge X_sum/X_count/X_bucket whenever X has
            // another type; and any family whose name is one of X's sample names would
            // print a duplicate series.
            let scalar = matches!(t, FamilyType::Counter | FamilyType::Gauge);
            if (scalar && other.family_type != t)
                || Self::exposed_names(base, other.family_type)
                    .iter()
                    .any(|n| n == spec.name)
            {
                return Err(ResolveError::Conflict {
                    name: spec.name.to_string(),
                    existing: other.family_type.as_str(),
                });
            }
        }
        let observer = match spec.kind {
            SeriesKind::Observer(o) => Some(o.clone()),
            _ => None,
        };
        let family = Arc::new(Family {
            name: Arc::from(spec.name),
            help: spec.help.filter(|h| *h != DEFAULT_HELP).map(Box::from),
            family_type: t,
            observer,
            style: spec.style,
            series: RwLock::new(SeriesIndex::default()),
            next_deadline: AtomicU64::new(u64::MAX),
            removed: AtomicBool::new(false),
        });
        write(self.shard(spec.name)).insert(family.name.clone(), family.clone());
        self.families_generation.fetch_add(1, Ordering::Release);
        self.families_by_type[type_index(t)].fetch_add(1, Ordering::Relaxed);
        Ok(family)
    }

    /// Every family, sorted by name. Each shard's lock is held only while its families are
    /// listed.
    pub fn families(&self) -> Arc<[Arc<Family>]> {
        let mut cached = self
            .sorted_families
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Read before listing: a family added meanwhile bumps it again and is picked up
        // by the next scrape.
        let generation = self.families_generation.load(Ordering::Acquire);
        if cached.0 == generation {
            return cached.1.clone();
        }
        let mut out: Vec<Arc<Family>> = Vec::new();
        for shard in self.shards.iter() {
            out.extend(read(shard).values().cloned());
        }
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let out: Arc<[Arc<Family>]> = out.into();
        *cached = (generation, out.clone());
        out
    }

    /// Removes every series whose TTL ran out (`last_update + ttl < now`, as
    /// statsd_exporter, with the clock's lag added so none goes early), and families left
    /// empty. Returns how many series expired. Costs
    /// nothing while no series has a TTL; otherwise it walks, in shard order (no sort), the
    /// shards where a deadline has passed, and looks into the families where one has.
    pub fn expire(&self) -> usize {
        self.expire_pass().expired
    }

    fn expire_pass(&self) -> ExpiryPass {
        let mut pass = ExpiryPass::default();
        // Creators lower these during the pass; what survives is folded in as it is found.
        self.next_expiry_ms.store(u64::MAX, Ordering::Relaxed);
        if self.ttl_series.load(Ordering::Relaxed) == 0 {
            return pass;
        }
        let now = self.clock.now_ms();
        let lag = self.clock.lag_ms();
        let mut next = u64::MAX;
        let mut stale_families: Vec<Arc<Family>> = Vec::new();
        for (shard, shard_next) in self.shards.iter().zip(self.shard_next_expiry.iter()) {
            let due = shard_next.load(Ordering::Relaxed);
            if now <= due {
                next = next.min(due);
                continue;
            }
            pass.shards_walked += 1;
            shard_next.store(u64::MAX, Ordering::Relaxed);
            let mut survivors = u64::MAX;
            {
                // Held while the shard's families are looked at: it only delays the creation
                // of a new family in this shard, never an update.
                let map = read(shard);
                for family in map.values() {
                    let due = family.next_deadline.load(Ordering::Relaxed);
                    if now <= due {
                        survivors = survivors.min(due);
                        continue;
                    }
                    pass.families_checked += 1;
                    family.next_deadline.store(u64::MAX, Ordering::Relaxed);
                    let mut stale = false;
                    let mut family_next = u64::MAX;
                    read(&family.series).for_each(|_, s| match s.deadline(lag) {
                        Some(d) if d < now => stale = true,
                        Some(d) => family_next = family_next.min(d),
                        None => {}
                    });
                    family
                        .next_deadline
                        .fetch_min(family_next, Ordering::Relaxed);
                    survivors = survivors.min(family_next);
                    if stale {
                        stale_families.push(family.clone());
                    }
                }
            }
            for family in stale_families.drain(..) {
                let (expired, kept) = self.remove_stale(&family, now);
                pass.expired += expired;
                survivors = survivors.min(kept);
            }
            shard_next.fetch_min(survivors, Ordering::Relaxed);
            next = next.min(survivors);
        }
        self.next_expiry_ms.fetch_min(next, Ordering::Relaxed);
        if pass.expired > 0 {
            self.room_epoch.fetch_add(1, Ordering::Release);
        }
        pass
    }

    /// Removes `family`'s series that are expired at `now`, and the family when that empties
    /// it. Returns how many series went, and the earliest deadline of those that stay (also
    /// folded into the family's bound).
    fn remove_stale(&self, family: &Arc<Family>, now: u64) -> (usize, u64) {
        let mut stale: Vec<Labels> = Vec::new();
        let mut kept = u64::MAX;
        // Found under the read lock, removed under the write lock, so creators and scrapes
        // of a large family wait only for the removals.
        let lag = self.clock.lag_ms();
        read(&family.series).for_each(|k, s| match s.deadline(lag) {
            Some(d) if d < now => stale.push(k.clone()),
            Some(d) => kept = kept.min(d),
            None => {}
        });
        let mut removed = 0;
        let mut map = write(&family.series);
        for k in stale {
            let Some(s) = map.get(&k) else { continue };
            match s.deadline(lag) {
                Some(d) if d < now => {
                    s.dead.store(true, Ordering::Release);
                    map.remove(&k);
                    removed += 1;
                    self.series_count.fetch_sub(1, Ordering::Relaxed);
                    self.ttl_series.fetch_sub(1, Ordering::Relaxed);
                }
                // Updated since it was found.
                Some(d) => kept = kept.min(d),
                None => {}
            }
        }
        family.next_deadline.fetch_min(kept, Ordering::Relaxed);
        if map.is_empty() {
            // Marked under the family lock, so a creator holding that lock either
            // inserted before (map not empty) or sees the mark and retries.
            family.removed.store(true, Ordering::Release);
            drop(map);
            let _guard = self.create_lock.lock().unwrap_or_else(|e| e.into_inner());
            let mut shard = write(self.shard(&family.name));
            if shard
                .get(&*family.name)
                .is_some_and(|f| Arc::ptr_eq(f, family))
            {
                shard.remove(&*family.name);
                self.families_generation.fetch_add(1, Ordering::Release);
                self.families_by_type[type_index(family.family_type)]
                    .fetch_sub(1, Ordering::Relaxed);
            }
        }
        (removed, kept)
    }

    /// True when a series may have expired since the last pass: the earliest deadline known
    /// lies before `now`.
    fn expiry_due(&self, now: u64) -> bool {
        now > self.next_expiry_ms.load(Ordering::Relaxed)
    }
}

/// How often the maintenance thread looks whether an expiry pass is due.
const MAINTENANCE_TICK: Duration = Duration::from_millis(100);

/// How often `statsgate_series` and `statsd_exporter_metrics_total` are published (the period
/// of statsd_exporter's TTL ticker).
const PUBLISH_PERIOD_MS: u64 = 1000;

/// The store's background threads: `statsgate-clock` keeps the coarse clock moving, and
/// `statsgate-maint` expires series when a deadline has passed and publishes
/// `statsgate_series`, `statsgate_series_expired_total` and `statsd_exporter_metrics_total`.
/// Neither depends on scrapes. Dropping it stops and joins both.
#[must_use = "dropping Maintenance stops it"]
#[derive(Debug)]
pub struct Maintenance {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Maintenance {
    /// Starts the threads for `store`.
    pub fn start(store: Arc<Store>) -> std::io::Result<Maintenance> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut maintenance = Maintenance {
            stop: stop.clone(),
            threads: Vec::new(),
        };
        let clock = {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::Builder::new()
                .name("statsgate-clock".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(clock::TICK);
                        store.clock.tick();
                    }
                })?
        };
        maintenance.threads.push(clock);
        let maint = std::thread::Builder::new()
            .name("statsgate-maint".into())
            .spawn(move || run_maintenance(&store, &stop))?;
        maintenance.threads.push(maint);
        Ok(maintenance)
    }
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a store maintenance thread panicked");
            }
        }
    }
}

/// When the next expiry pass may run: once a deadline has passed, and not sooner than
/// [`MIN_EXPIRY_PASS_INTERVAL_MS`] after the previous pass.
#[derive(Debug, Default)]
struct ExpirySchedule {
    last_pass_ms: Option<u64>,
}

impl ExpirySchedule {
    /// Runs a pass on `store` if one is due at the store's coarse time; returns how many
    /// series expired.
    fn run(&mut self, store: &Store) -> usize {
        let now = store.clock.now_ms();
        let rested = self
            .last_pass_ms
            .is_none_or(|last| now.saturating_sub(last) >= MIN_EXPIRY_PASS_INTERVAL_MS);
        if !rested || !store.expiry_due(now) {
            return 0;
        }
        self.last_pass_ms = Some(now);
        let started = std::time::Instant::now();
        let pass = store.expire_pass();
        if pass.expired > 0 {
            tracing::debug!(
                expired = pass.expired,
                series = store.series_count(),
                shards_walked = pass.shards_walked,
                families_checked = pass.families_checked,
                took_ms = started.elapsed().as_millis() as u64,
                "TTL expiry pass"
            );
        }
        pass.expired
    }
}

fn run_maintenance(store: &Store, stop: &AtomicBool) {
    let expired = catalog::SERIES_EXPIRED.counter([]);
    let series = catalog::SERIES.gauge([]);
    catalog::SERIES_LIMIT
        .gauge([])
        .set(store.max_series() as f64);
    let by_type = FAMILY_TYPES.map(|t| (t, catalog::METRICS.gauge([t.as_str().into()])));
    let mut schedule = ExpirySchedule::default();
    let mut last_publish: Option<u64> = None;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(MAINTENANCE_TICK);
        let n = schedule.run(store);
        if n > 0 {
            expired.increment(n as u64);
        }
        let now = store.clock.now_ms();
        if last_publish.is_none_or(|last| now.saturating_sub(last) >= PUBLISH_PERIOD_MS) {
            last_publish = Some(now);
            series.set(store.series_count() as f64);
            for (t, g) in &by_type {
                g.set(store.family_count(*t) as f64);
            }
        }
    }
}

#[cfg(test)]
mod tests;
