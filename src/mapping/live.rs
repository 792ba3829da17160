//! The mapper in force while the gateway runs, and its reload.
//!
//! Receive threads read the current [`Mapper`] through an [`ArcSwap`] and keep their own
//! `Arc` to it between batches. A reload builds a whole new mapper first and swaps it in
//! only when the file is good, then bumps a generation word; a worker that sees the word
//! change takes the new mapper and forgets what it cached under the old one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use super::{CacheOptions, Mapper, MappingError};
use crate::telemetry::catalog;

/// The mapper in force, the file it came from, and how many times it was replaced.
pub struct LiveMapper {
    current: ArcSwap<Mapper>,
    /// Bumped after every swap; workers compare it with the value they last saw.
    generation: AtomicU64,
    source: Option<PathBuf>,
    cache: CacheOptions,
    last_reload: Mutex<Option<ReloadRecord>>,
}

/// When the mapping file was last read again, and how that went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadRecord {
    /// When the reload finished.
    pub at: SystemTime,
    /// The new rule count, or why the file was refused (the previous rules stayed).
    pub outcome: Result<usize, String>,
}

impl std::fmt::Debug for LiveMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveMapper")
            .field("rules", &self.current.load().rule_count())
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl LiveMapper {
    /// Serves `mapper`; with no file behind it, [`reload`](Self::reload) has nothing to do.
    pub fn new(mapper: Mapper) -> LiveMapper {
        LiveMapper {
            current: ArcSwap::new(published(mapper)),
            generation: AtomicU64::new(0),
            source: None,
            cache: CacheOptions::default(),
            last_reload: Mutex::new(None),
        }
    }

    /// Loads the mapping file at `source`, or starts with no rules when there is none
    /// (`--statsd.mapping-config` unset). Reloads read the same file with the same cache
    /// options.
    pub fn load(source: Option<&Path>, cache: CacheOptions) -> Result<LiveMapper, MappingError> {
        let mapper = match source {
            Some(path) => Mapper::load_file(path, cache)?,
            None => Mapper::empty(cache),
        };
        Ok(LiveMapper {
            current: ArcSwap::new(published(mapper)),
            generation: AtomicU64::new(0),
            source: source.map(Path::to_path_buf),
            cache,
            last_reload: Mutex::new(None),
        })
    }

    /// The mapping file served, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// The last [`reload`](Self::reload) that read the file; `None` before the first.
    pub fn last_reload(&self) -> Option<ReloadRecord> {
        self.last_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The mapper in force now.
    pub fn current(&self) -> Arc<Mapper> {
        self.current.load_full()
    }

    /// Changes after every swap. Acquire pairs with the Release in [`replace`](Self::replace),
    /// so a reader that sees a new generation also sees the mapper stored before it.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Swaps in `mapper` atomically. Workers pick it up at their next datagram or line;
    /// events in flight finish with the old rules, none is lost or applied twice.
    pub fn replace(&self, mapper: Mapper) {
        self.current.store(published(mapper));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Reads the mapping file again and swaps it in; on error the old rules stay. Returns the
    /// new rule count, or `None` when there is no file to read. Counts
    /// `statsd_exporter_config_reloads_total{outcome}` and logs the result.
    pub fn reload(&self) -> Result<Option<usize>, MappingError> {
        let Some(path) = &self.source else {
            tracing::info!("reload requested, but no mapping config is set");
            return Ok(None);
        };
        let result = Mapper::load_file(path, self.cache);
        let outcome = match &result {
            Ok(mapper) => Ok(mapper.rule_count()),
            Err(e) => Err(e.to_string()),
        };
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(ReloadRecord {
            at: SystemTime::now(),
            outcome,
        });
        match result {
            Ok(mapper) => {
                let n = mapper.rule_count();
                self.replace(mapper);
                catalog::CONFIG_RELOADS
                    .counter(["success".into()])
                    .increment(1);
                tracing::info!(mappings = n, file = %path.display(), "mapping config reloaded");
                Ok(Some(n))
            }
            Err(e) => {
                catalog::CONFIG_RELOADS
                    .counter(["failure".into()])
                    .increment(1);
                tracing::error!(error = %e, "mapping config reload failed; keeping the previous rules");
                Err(e)
            }
        }
    }
}

/// Wraps a mapper about to be served and sets `statsd_exporter_loaded_mappings` to its rule
/// count: the one place that gauge is written.
fn published(mapper: Mapper) -> Arc<Mapper> {
    catalog::LOADED_MAPPINGS
        .gauge([])
        .set(mapper.rule_count() as f64);
    Arc::new(mapper)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_reload_records_each_outcome() {
        let dir = std::env::temp_dir().join(format!("statsgate-live-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mapping.yml");
        std::fs::write(&path, "mappings: []\n").unwrap();
        let live = LiveMapper::load(Some(&path), CacheOptions::default()).unwrap();
        assert_eq!(live.source(), Some(path.as_path()));
        assert_eq!(live.last_reload(), None, "loading is not a reload");

        std::fs::write(&path, "mappings:\n- match: \"a.*\"\n  name: \"a\"\n").unwrap();
        assert_eq!(live.reload().unwrap(), Some(1));
        let ok = live.last_reload().unwrap();
        assert_eq!(ok.outcome, Ok(1));

        std::fs::write(&path, "mappings: [").unwrap();
        assert!(live.reload().is_err());
        let failed = live.last_reload().unwrap();
        assert!(failed.outcome.is_err(), "{failed:?}");
        assert!(failed.at >= ok.at);
        assert_eq!(live.current().rule_count(), 1, "the previous rules stay");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
