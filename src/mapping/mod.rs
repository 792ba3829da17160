//! Maps statsd names to Prometheus names and labels: statsd_exporter's mapping file (glob
//! automaton, regex rules, templates, cache) and the built-in profiles.
//!
//! TEMPORARY STUB in the lead's tree until the mapping engine branch lands.

pub mod envoy;

use crate::line::EventKind;
use crate::store::ObserverOptions;
use std::sync::Arc;
use std::time::Duration;

/// Cache options.
#[derive(Clone, Copy, Debug)]
pub struct CacheOptions {
    /// Entries; 0 disables.
    pub size: usize,
    /// Replacement policy.
    pub kind: CacheKind,
}
impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            size: 1000,
            kind: CacheKind::Lru,
        }
    }
}
/// Cache policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheKind {
    /// LRU.
    Lru,
    /// Random replacement.
    Random,
}
/// Defaults.
#[derive(Clone, Debug, Default)]
pub struct Defaults {
    /// Observer options.
    pub observer: ObserverOptions,
    /// TTL.
    pub ttl: Duration,
    /// Ordering.
    pub glob_disable_ordering: bool,
}
/// Action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Map.
    Map,
    /// Drop.
    Drop,
}
/// A lookup result.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// Action.
    pub action: Action,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Vec<(String, String)>,
    /// Honor labels.
    pub honor_labels: bool,
    /// Observer.
    pub observer: ObserverOptions,
    /// TTL.
    pub ttl: Duration,
    /// Scale.
    pub scale: Option<f64>,
    /// Help.
    pub help: Option<String>,
    /// Rule index.
    pub rule_index: usize,
}
/// Errors.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// IO.
    #[error("{0}")]
    Io(String),
}
/// Mapper.
#[derive(Debug, Default)]
pub struct Mapper {
    defaults: Defaults,
}
impl Mapper {
    /// Empty.
    pub fn empty(_cache: CacheOptions) -> Mapper {
        Mapper::default()
    }
    /// From YAML.
    pub fn from_yaml(_text: &str, _cache: CacheOptions) -> Result<Mapper, MappingError> {
        Ok(Mapper::default())
    }
    /// Load.
    pub fn load_file(path: &std::path::Path, cache: CacheOptions) -> Result<Mapper, MappingError> {
        let t = std::fs::read_to_string(path).map_err(|e| MappingError::Io(e.to_string()))?;
        Self::from_yaml(&t, cache)
    }
    /// Rules.
    pub fn rule_count(&self) -> usize {
        0
    }
    /// Defaults.
    pub fn defaults(&self) -> &Defaults {
        &self.defaults
    }
    /// Map.
    pub fn map(&self, _name: &str, _kind: EventKind) -> Option<Arc<Mapping>> {
        None
    }
}
