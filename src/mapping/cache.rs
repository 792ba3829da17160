//! The lookup cache: `(kind, name)` → the lookup's result, misses included, bounded by an LRU
//! or a random-replacement policy as in statsd_exporter's `mappercache`.
//!
//! A hit neither allocates nor copies the name: keys are looked up through the
//! [`CacheKeyView`] trait object, which both the owned key and a borrowed `(kind, &str)` pair
//! implement with the same hash and equality.

use super::{CacheKind, Mapping};
use crate::line::EventKind;
use crate::telemetry::catalog;
use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, RwLock};

/// What the cache stores: `None` for a name no rule maps.
pub(crate) type CachedLookup = Option<Arc<Mapping>>;

#[derive(Debug, Clone, PartialEq, Eq)]
struct CacheKey {
    kind: EventKind,
    name: Box<str>,
}

/// The common view of owned and borrowed keys.
trait CacheKeyView {
    fn kind(&self) -> EventKind;
    fn name(&self) -> &str;
}

impl CacheKeyView for CacheKey {
    fn kind(&self) -> EventKind {
        self.kind
    }
    fn name(&self) -> &str {
        &self.name
    }
}

impl CacheKeyView for (EventKind, &str) {
    fn kind(&self) -> EventKind {
        self.0
    }
    fn name(&self) -> &str {
        self.1
    }
}

impl Hash for dyn CacheKeyView + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind().hash(state);
        self.name().hash(state);
    }
}

impl PartialEq for dyn CacheKeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.kind() == other.kind() && self.name() == other.name()
    }
}

impl Eq for dyn CacheKeyView + '_ {}

// The owned key must hash exactly like its view, as `Borrow` requires.
impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self as &dyn CacheKeyView).hash(state);
    }
}

impl<'a> Borrow<dyn CacheKeyView + 'a> for CacheKey {
    fn borrow(&self) -> &(dyn CacheKeyView + 'a) {
        self
    }
}

/// Self-metrics handles, registered once per cache.
struct CacheMetrics {
    length: metrics::Gauge,
    gets: metrics::Counter,
    hits: metrics::Counter,
}

enum Store {
    Lru(Mutex<lru::LruCache<CacheKey, CachedLookup, foldhash::fast::RandomState>>),
    Random(RwLock<RandomCache>),
}

/// A bounded, thread-safe lookup cache.
pub(crate) struct LookupCache {
    store: Store,
    metrics: CacheMetrics,
}

impl LookupCache {
    /// A cache of `size` entries (at least one).
    pub(crate) fn new(size: NonZeroUsize, kind: CacheKind) -> LookupCache {
        let metrics = CacheMetrics {
            length: catalog::CACHE_LENGTH.gauge([]),
            gets: catalog::CACHE_GETS.counter([]),
            hits: catalog::CACHE_HITS.counter([]),
        };
        metrics.length.set(0.0);
        let store = match kind {
            CacheKind::Lru => Store::Lru(Mutex::new(lru::LruCache::with_hasher(
                size,
                foldhash::fast::RandomState::default(),
            ))),
            CacheKind::Random => Store::Random(RwLock::new(RandomCache::new(size.get()))),
        };
        LookupCache { store, metrics }
    }

    /// The cached result for `(kind, name)`, if present. `Some(None)` is a cached miss.
    pub(crate) fn get(&self, kind: EventKind, name: &str) -> Option<CachedLookup> {
        let query = (kind, name);
        let view: &dyn CacheKeyView = &query;
        match &self.store {
            Store::Lru(lru) => {
                // Counters are LRU-only, as in statsd_exporter.
                self.metrics.gets.increment(1);
                let mut lru = lru.lock().unwrap_or_else(|e| e.into_inner());
                let hit = lru.get(view).cloned();
                if hit.is_some() {
                    self.metrics.hits.increment(1);
                }
                hit
            }
            Store::Random(random) => {
                let random = random.read().unwrap_or_else(|e| e.into_inner());
                random.map.get(view).cloned()
            }
        }
    }

    /// Stores a result.
    pub(crate) fn insert(&self, kind: EventKind, name: &str, value: CachedLookup) {
        let key = CacheKey {
            kind,
            name: name.into(),
        };
        let len = match &self.store {
            Store::Lru(lru) => {
                let mut lru = lru.lock().unwrap_or_else(|e| e.into_inner());
                lru.put(key, value);
                lru.len()
            }
            Store::Random(random) => {
                let mut random = random.write().unwrap_or_else(|e| e.into_inner());
                random.insert(key, value);
                random.map.len()
            }
        };
        self.metrics.length.set(len as f64);
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        match &self.store {
            Store::Lru(lru) => lru.lock().unwrap_or_else(|e| e.into_inner()).len(),
            Store::Random(random) => random.read().unwrap_or_else(|e| e.into_inner()).map.len(),
        }
    }
}

/// Random replacement: when full, a uniformly chosen entry makes room. Reads take only a read
/// lock because, unlike LRU, a hit changes nothing.
struct RandomCache {
    capacity: usize,
    map: hashbrown::HashMap<CacheKey, CachedLookup, foldhash::fast::RandomState>,
    /// The keys again, so a victim can be drawn in O(1).
    keys: Vec<CacheKey>,
    rng: fastrand::Rng,
}

impl RandomCache {
    fn new(capacity: usize) -> RandomCache {
        RandomCache {
            capacity,
            map: hashbrown::HashMap::with_capacity_and_hasher(
                capacity.min(1 << 16),
                foldhash::fast::RandomState::default(),
            ),
            keys: Vec::new(),
            rng: fastrand::Rng::new(),
        }
    }

    fn insert(&mut self, key: CacheKey, value: CachedLookup) {
        if let Some(slot) = self.map.get_mut(&key) {
            *slot = value;
            return;
        }
        if self.map.len() >= self.capacity && !self.keys.is_empty() {
            let victim = self.keys.swap_remove(self.rng.usize(..self.keys.len()));
            self.map.remove(&victim);
        }
        self.keys.push(key.clone());
        self.map.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    #[test]
    fn keys_include_the_kind() {
        let cache = LookupCache::new(nz(10), CacheKind::Lru);
        cache.insert(EventKind::Counter, "a", None);
        assert_eq!(cache.get(EventKind::Counter, "a"), Some(None));
        assert_eq!(cache.get(EventKind::Gauge, "a"), None);
        assert_eq!(cache.get(EventKind::Counter, "b"), None);
    }

    #[test]
    fn lru_evicts_least_recently_used() {
        let cache = LookupCache::new(nz(2), CacheKind::Lru);
        cache.insert(EventKind::Counter, "a", None);
        cache.insert(EventKind::Counter, "b", None);
        assert!(cache.get(EventKind::Counter, "a").is_some());
        cache.insert(EventKind::Counter, "c", None);
        assert!(cache.get(EventKind::Counter, "a").is_some());
        assert!(cache.get(EventKind::Counter, "b").is_none());
        assert!(cache.get(EventKind::Counter, "c").is_some());
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn random_stays_bounded_and_keeps_the_newest() {
        let cache = LookupCache::new(nz(3), CacheKind::Random);
        for i in 0..100 {
            let name = format!("m{i}");
            cache.insert(EventKind::Gauge, &name, None);
            assert!(cache.get(EventKind::Gauge, &name).is_some());
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.len(), 3);
        // Re-inserting an existing key does not evict anything.
        cache.insert(EventKind::Gauge, "m99", None);
        assert_eq!(cache.len(), 3);
    }
}
