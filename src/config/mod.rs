//! Command-line flags, with statsd_exporter's names and defaults so existing deployments
//! keep their arguments.

mod duration;
mod flags;

pub use duration::parse_go_duration;

pub use flags::{CacheType, Flags, LogFormat, LogLevel, ProfileName, parse_args};
