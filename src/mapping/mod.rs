//! Maps statsd names to Prometheus names and labels: statsd_exporter's mapping file (schema
//! and checks in `config/`, glob automaton, regex rules, templates, cache), the Prometheus
//! naming rules ([`naming`]), the built-in profiles ([`profile`]) and the mapper in force
//! ([`LiveMapper`]).
//!
//! A [`Mapper`] is immutable once built; a reload builds a new one (with a new, empty cache)
//! and swaps it in, so a failed reload leaves the running one untouched. See
//! `docs/mapping.md` for the file format.

mod cache;
mod config;
mod error;
mod glob;
mod live;
pub mod naming;
pub mod profile;
mod template;

pub use config::parse_go_duration;
pub use error::{ErrorLocation, MappingError};
pub use live::{LiveMapper, ReloadRecord};
pub use profile::{Profile, ProfileError};

use crate::line::EventKind;
use crate::store::options::ObserverOptions;
use cache::LookupCache;
use config::{CheckedRule, MatchType};
use glob::GlobAutomaton;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use template::{GlobTemplate, RegexTemplate};

/// Lookup cache settings (`--statsd.cache-size`, `--statsd.cache-type`).
#[derive(Clone, Copy, Debug)]
pub struct CacheOptions {
    /// Entries kept; 0 disables the cache. Default 1000.
    pub size: usize,
    /// Replacement policy. Default [`CacheKind::Lru`].
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

/// The cache's replacement policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheKind {
    /// Least recently used is evicted.
    Lru,
    /// A random entry is evicted; hits take only a read lock.
    Random,
}

/// The file's `defaults` block, resolved: what unmapped events use.
#[derive(Clone, Debug, PartialEq)]
pub struct Defaults {
    /// Observer type and options (summary with client_golang's defaults unless set).
    pub observer: ObserverOptions,
    /// Series TTL; zero never expires.
    pub ttl: Duration,
    /// Whether glob rules ignore file order (a literal segment beats `*`).
    pub glob_disable_ordering: bool,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            observer: ObserverOptions::default(),
            ttl: Duration::ZERO,
            glob_disable_ordering: false,
        }
    }
}

/// What a matched rule does with the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Rename and label the event (the default).
    Map,
    /// Discard the event.
    Drop,
}

/// The result of one lookup: the matched rule with its templates expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// Map or drop.
    pub action: Action,
    /// The expanded name template, not escaped (the profile escapes it).
    pub name: String,
    /// The expanded label templates, in file order.
    pub labels: Vec<(String, String)>,
    /// When true, a tag with the same name wins over the rule's label.
    pub honor_labels: bool,
    /// The rule's observer options, else the defaults'.
    pub observer: ObserverOptions,
    /// The rule's TTL, else the defaults'.
    pub ttl: Duration,
    /// The value multiplier, `Some` whenever the file sets it (even to 1).
    pub scale: Option<f64>,
    /// The `# HELP` text, when the rule sets one.
    pub help: Option<String>,
    /// Index of the matched rule in the file (diagnostics).
    pub rule_index: usize,
}

enum Templates {
    Glob {
        name: GlobTemplate,
        labels: Vec<(String, GlobTemplate)>,
    },
    Regex {
        regex: regex::Regex,
        name: RegexTemplate,
        labels: Vec<(String, RegexTemplate)>,
    },
}

/// A compiled rule.
struct Rule {
    checked: CheckedRule,
    templates: Templates,
    /// The lookup result when no template refers to a capture, built once.
    fixed: Option<Arc<Mapping>>,
}

impl Rule {
    fn result(&self, name: String, labels: Vec<(String, String)>, index: usize) -> Mapping {
        let c = &self.checked;
        Mapping {
            action: c.action,
            name,
            labels,
            honor_labels: c.honor_labels,
            observer: c.observer.clone(),
            ttl: c.ttl,
            scale: c.scale,
            help: c.help.clone(),
            rule_index: index,
        }
    }
}

/// The compiled mapping configuration and its lookup cache. `Send + Sync`; shared by every
/// receive thread.
pub struct Mapper {
    defaults: Defaults,
    rules: Vec<Rule>,
    globs: Option<GlobAutomaton>,
    /// Indexes into `rules` of the regex rules, in file order.
    regex_rules: Vec<usize>,
    /// All regex rules at once, to find the candidates in one pass over the name.
    regex_set: Option<regex::RegexSet>,
    cache: Option<LookupCache>,
}

impl std::fmt::Debug for Mapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapper")
            .field("rules", &self.rules.len())
            .field("defaults", &self.defaults)
            .finish_non_exhaustive()
    }
}

impl Mapper {
    /// A mapper with no rules: every lookup is unmapped.
    pub fn empty(cache: CacheOptions) -> Mapper {
        Mapper {
            defaults: Defaults::default(),
            rules: Vec::new(),
            globs: None,
            regex_rules: Vec::new(),
            regex_set: None,
            cache: new_cache(cache),
        }
    }

    /// Parses, validates and compiles a mapping file's text. An empty document and `{}` give
    /// zero rules.
    pub fn from_yaml(text: &str, cache: CacheOptions) -> Result<Mapper, MappingError> {
        let checked = config::parse(text)?;
        let mut globs = GlobAutomaton::new(checked.defaults.glob_disable_ordering);
        let mut has_globs = false;
        let mut rules = Vec::with_capacity(checked.rules.len());
        let mut regex_rules = Vec::new();
        let mut regex_patterns = Vec::new();
        for (index, rule) in checked.rules.into_iter().enumerate() {
            let templates = match rule.match_type {
                MatchType::Glob => {
                    has_globs = true;
                    let captures = globs.add(&rule.pattern, rule.kind, index);
                    Templates::Glob {
                        name: GlobTemplate::compile(&rule.name, captures),
                        labels: rule
                            .labels
                            .iter()
                            .map(|(k, v)| (k.clone(), GlobTemplate::compile(v, captures)))
                            .collect(),
                    }
                }
                MatchType::Regex => {
                    let regex = regex::Regex::new(&rule.pattern).map_err(|e| {
                        MappingError::InvalidRegex {
                            at: rule.at.clone(),
                            pattern: rule.pattern.clone(),
                            reason: e.to_string(),
                        }
                    })?;
                    regex_rules.push(index);
                    regex_patterns.push(rule.pattern.clone());
                    Templates::Regex {
                        name: RegexTemplate::compile(&rule.name, &regex),
                        labels: rule
                            .labels
                            .iter()
                            .map(|(k, v)| (k.clone(), RegexTemplate::compile(v, &regex)))
                            .collect(),
                        regex,
                    }
                }
            };
            let mut compiled = Rule {
                checked: rule,
                templates,
                fixed: None,
            };
            if let Templates::Glob { name, labels } = &compiled.templates
                && name.is_static()
                && labels.iter().all(|(_, t)| t.is_static())
            {
                let labels = labels
                    .iter()
                    .map(|(k, t)| (k.clone(), t.expand(&[])))
                    .collect();
                compiled.fixed = Some(Arc::new(compiled.result(name.expand(&[]), labels, index)));
            }
            rules.push(compiled);
        }
        globs.finish();
        let regex_set = if regex_patterns.is_empty() {
            None
        } else {
            // Every pattern compiled on its own above, so the set compiles too unless it
            // outgrows the size limit; then lookups fall back to trying each regex.
            regex::RegexSet::new(&regex_patterns).ok()
        };
        Ok(Mapper {
            defaults: checked.defaults,
            rules,
            globs: has_globs.then_some(globs),
            regex_rules,
            regex_set,
            cache: new_cache(cache),
        })
    }

    /// Reads and compiles a mapping file; errors name the file.
    pub fn load_file(path: &Path, cache: CacheOptions) -> Result<Mapper, MappingError> {
        let text = std::fs::read_to_string(path).map_err(|source| MappingError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Mapper::from_yaml(&text, cache).map_err(|e| e.in_file(path))
    }

    /// Number of rules (`statsd_exporter_loaded_mappings`).
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The defaults block, used for unmapped events.
    pub fn defaults(&self) -> &Defaults {
        &self.defaults
    }

    /// Cached lookup, keyed by `(kind, name)`; misses are cached too. A hit does not allocate.
    pub fn map(&self, name: &str, kind: EventKind) -> Option<Arc<Mapping>> {
        // Without rules every answer is "unmapped": a cache would only cost each new name a
        // hash, an insert and an eviction (the gateway's defaults and the Envoy profiles run
        // so, and meet a whole fleet's names at start).
        if self.rules.is_empty() {
            return None;
        }
        let Some(cache) = &self.cache else {
            return self.map_uncached(name, kind);
        };
        if let Some(hit) = cache.get(kind, name) {
            return hit;
        }
        let result = self.map_uncached(name, kind);
        cache.insert(kind, name, result.clone());
        result
    }

    /// The same lookup without the cache: all glob rules first, then regex rules in file
    /// order.
    pub fn map_uncached(&self, name: &str, kind: EventKind) -> Option<Arc<Mapping>> {
        if let Some(globs) = &self.globs
            && let Some(found) = globs.lookup(name, kind)
        {
            let rule = &self.rules[found.rule];
            if let Some(fixed) = &rule.fixed {
                return Some(Arc::clone(fixed));
            }
            if let Templates::Glob {
                name: name_t,
                labels,
            } = &rule.templates
            {
                let labels = labels
                    .iter()
                    .map(|(k, t)| (k.clone(), t.expand(&found.captures)))
                    .collect();
                let mapped = name_t.expand(&found.captures);
                return Some(Arc::new(rule.result(mapped, labels, found.rule)));
            }
        }
        if self.regex_rules.is_empty() {
            return None;
        }
        match &self.regex_set {
            Some(set) => {
                let candidates = set.matches(name);
                candidates
                    .iter()
                    .find_map(|i| self.try_regex(self.regex_rules[i], name, kind))
            }
            None => self
                .regex_rules
                .iter()
                .find_map(|&i| self.try_regex(i, name, kind)),
        }
    }

    fn try_regex(&self, index: usize, name: &str, kind: EventKind) -> Option<Arc<Mapping>> {
        let rule = &self.rules[index];
        let Templates::Regex {
            regex,
            name: name_t,
            labels,
        } = &rule.templates
        else {
            return None;
        };
        // statsd_exporter matches first and checks the type after, moving on when it differs.
        if rule.checked.kind.is_some_and(|k| k != kind) {
            return None;
        }
        let mut locations = regex.capture_locations();
        regex.captures_read(&mut locations, name)?;
        let labels = labels
            .iter()
            .map(|(k, t)| (k.clone(), t.expand(name, &locations)))
            .collect();
        let mapped = name_t.expand(name, &locations);
        Some(Arc::new(rule.result(mapped, labels, index)))
    }
}

fn new_cache(options: CacheOptions) -> Option<LookupCache> {
    NonZeroUsize::new(options.size).map(|size| LookupCache::new(size, options.kind))
}

#[cfg(test)]
mod tests;
