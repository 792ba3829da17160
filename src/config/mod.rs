//! Command-line flags, with statsd_exporter's names and defaults so existing deployments
//! keep their arguments.

mod flags;

pub use flags::{CacheType, Flags, LogFormat, LogLevel, ProfileName, parse_args};
