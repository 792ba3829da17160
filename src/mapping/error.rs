//! Why a mapping file was rejected, with the file, line and key it concerns.

use std::fmt;
use std::path::PathBuf;

/// Where in a mapping file an error was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLocation {
    /// The file, when the configuration came from one.
    pub file: Option<PathBuf>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key path, e.g. `mappings[1].labels`; empty for the document itself.
    pub key: String,
}

impl fmt::Display for ErrorLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        Ok(())
    }
}

/// A mapping file that cannot be loaded, one variant per cause. Any error rejects the whole
/// file, so a reload keeps the previous configuration. Reloads are counted by outcome only
/// (`statsd_exporter_config_reloads_total{outcome="failure"}`); the variant shows in the log
/// line and in the answer to `/-/reload`.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The mapping file's path, as given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid YAML, or a value of the wrong type.
    #[error("{at}{detail}")]
    Syntax {
        /// The line and key path of the offending value.
        at: ErrorLocation,
        /// The parser's description.
        detail: String,
    },
    /// A key the schema does not know (`yaml.UnmarshalStrict` rejects these too).
    #[error("{at}{detail}")]
    UnknownKey {
        /// The line and key path of the offending value.
        at: ErrorLocation,
        /// Which key, and the expected ones.
        detail: String,
    },
    /// `timer_type`, a mapping-level `buckets` or `quantiles`: removed from statsd_exporter;
    /// use `observer_type`, `histogram_options` and `summary_options`.
    #[error("{at}{detail} (legacy key; use observer_type, summary_options or histogram_options)")]
    LegacyKey {
        /// The line and key path of the offending value.
        at: ErrorLocation,
        /// The parser's message, naming the key.
        detail: String,
    },
    /// The same key twice in one map.
    #[error("{at}{detail}")]
    DuplicateKey {
        /// The line and key path of the offending value.
        at: ErrorLocation,
        /// The parser's message, naming the key.
        detail: String,
    },
    /// An enumerated value (`observer_type`, `match_type`, `action`, `match_metric_type`) that
    /// is not one of its allowed spellings.
    #[error("{at}{detail}")]
    InvalidEnum {
        /// The line and key path of the offending value.
        at: ErrorLocation,
        /// The value and the allowed ones.
        detail: String,
    },
    /// A label key outside `^[a-zA-Z_][a-zA-Z0-9_]+$` (one-character names are rejected, as
    /// in statsd_exporter).
    #[error("{at}invalid label name {name:?}")]
    InvalidLabelName {
        /// The line and key path of the offending value.
        at: ErrorLocation,
        /// The offending key.
        name: String,
    },
    /// A mapping without `name`, or with an empty one.
    #[error("{at}metric mapping didn't set a metric name")]
    MissingName {
        /// The line and key path of the offending value.
        at: ErrorLocation,
    },
    /// A mapping without `match`.
    #[error("{at}metric mapping didn't set a match")]
    MissingMatch {
        /// The line and key path of the offending value.
        at: ErrorLocation,
    },
    /// A `name` template outside `^([a-zA-Z_]|\$\{?\d+\}?)([a-zA-Z0-9_]|\$\{?\d+\}?)*$`.
    #[error("{at}invalid metric name template {name:?}")]
    InvalidNameTemplate {
        /// The line and key path of the offending value.
        at: ErrorLocation,
        /// The template as written.
        name: String,
    },
    /// A glob that is not dot-separated words and whole-segment `*`s.
    #[error("{at}invalid glob match {pattern:?}")]
    InvalidGlob {
        /// The line and key path of the offending value.
        at: ErrorLocation,
        /// The glob as written.
        pattern: String,
    },
    /// A regex that does not compile.
    #[error("{at}invalid regex {pattern:?}: {reason}")]
    InvalidRegex {
        /// The line and key path of the offending value.
        at: ErrorLocation,
        /// The regex as written.
        pattern: String,
        /// The compiler's message.
        reason: String,
    },
    /// A Go duration that does not parse (`"1m30s"`, `"500ms"` and `"2h"` do).
    #[error("{at}{detail}")]
    InvalidDuration {
        /// The line and key path of the offending value.
        at: ErrorLocation,
        /// The value as written, and why it does not parse.
        detail: String,
    },
    /// `summary_options` on a histogram mapping or `histogram_options` on a summary one.
    #[error("{at}{detail}")]
    ObserverOptionsMismatch {
        /// The line and key path of the offending value.
        at: ErrorLocation,
        /// Which options clash with which type.
        detail: String,
    },
    /// Histogram buckets that are not strictly increasing, or not numbers.
    #[error("{at}{detail}")]
    InvalidBuckets {
        /// The line and key path of the offending value.
        at: ErrorLocation,
        /// The buckets, and what is wrong with them.
        detail: String,
    },
}

/// The variants that carry a location, matched once for `&self` and `&mut self`.
macro_rules! location_of {
    ($e:expr) => {
        match $e {
            MappingError::Read { .. } => None,
            MappingError::Syntax { at, .. }
            | MappingError::UnknownKey { at, .. }
            | MappingError::LegacyKey { at, .. }
            | MappingError::DuplicateKey { at, .. }
            | MappingError::InvalidEnum { at, .. }
            | MappingError::InvalidLabelName { at, .. }
            | MappingError::MissingName { at }
            | MappingError::MissingMatch { at }
            | MappingError::InvalidNameTemplate { at, .. }
            | MappingError::InvalidGlob { at, .. }
            | MappingError::InvalidRegex { at, .. }
            | MappingError::InvalidDuration { at, .. }
            | MappingError::ObserverOptionsMismatch { at, .. }
            | MappingError::InvalidBuckets { at, .. } => Some(at),
        }
    };
}

impl MappingError {
    /// The location, when the error has one.
    pub fn location(&self) -> Option<&ErrorLocation> {
        location_of!(self)
    }

    fn location_mut(&mut self) -> Option<&mut ErrorLocation> {
        location_of!(self)
    }

    /// Names the file the configuration came from.
    pub(crate) fn in_file(mut self, path: &std::path::Path) -> MappingError {
        if let Some(at) = self.location_mut() {
            at.file = Some(path.to_path_buf());
        }
        self
    }
}
