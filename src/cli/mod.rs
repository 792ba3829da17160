//! Command-line flags, with statsd_exporter's names and defaults so existing deployments
//! keep their arguments, and their translation into each stage's options.
//!
//! statsd_exporter uses kingpin (`--flag value`, `--flag=value`, `--[no-]bool`); Istio's
//! manifests pass Go `flag` style single-dash long flags (`-statsd.mapping-config=...`).
//! Both spellings are accepted.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, Parser, ValueEnum};

use crate::ingest::{DEFAULT_PACKET_QUEUE, DEFAULT_READ_BUFFER, ReadBuffer, TcpOptions};
use crate::line::Dialects;
use crate::mapping::profile::ENVOY_DIALECTS;
use crate::mapping::profile::envoy::TagRuleSet;
use crate::mapping::{CacheKind, CacheOptions, Profile, parse_go_duration};
use crate::store::{
    DEFAULT_MAX_SERIES, DEFAULT_MAX_SERIES_PER_METRIC, StoreOptions, SummaryEstimator,
};
use crate::worker::{SampleLimits, SenderLabel};

mod remote_write;

pub use remote_write::RemoteWriteFlags;

/// Boolean flags that also take a `--no-` form.
const NEGATABLE: &[&str] = &[
    "statsd.parse-dogstatsd-tags",
    "statsd.parse-influxdb-tags",
    "statsd.parse-librato-tags",
    "statsd.parse-signalfx-tags",
    "statsd.parse-graphite-tags",
    "web.enable-lifecycle",
    "check-config",
];

/// Log level (`--log.level`): the least severe messages written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Everything, including per-connection diagnostics.
    Debug,
    /// Startup, reloads and shutdown, plus warnings and errors (default).
    Info,
    /// Bad input and failing sockets, plus errors.
    Warn,
    /// Only what stops a stage or a reload.
    Error,
}

/// Log format (`--log.format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `key=value` pairs (default).
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Mapping cache policy (`--statsd.cache-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CacheType {
    /// Least recently used entries are evicted.
    Lru,
    /// A random entry is evicted; hits take only a read lock.
    Random,
}

/// Summary quantile estimator (`--statsd.summary-estimator`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EstimatorName {
    /// client_golang's CKMS streams: statsd_exporter's quantiles, bit for bit (default).
    Ckms,
    /// Logarithmic buckets: each quantile within --statsd.summary-relative-accuracy of the
    /// exact one; several times cheaper and a fraction of the memory.
    Ddsketch,
}

/// Naming profile (`--profile`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProfileName {
    /// Current statsd_exporter behaviour (default).
    Statsd,
    /// Istio 0.2–1.0 Mixer's "envoy" endpoint (statsd_exporter 0.5/0.6, empty mapping).
    #[value(name = "istio-mixer")]
    IstioMixer,
    /// Envoy's own /stats/prometheus names and labels, through Envoy's tag extraction.
    Envoy,
}

fn parse_octal(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8).map_err(|_| format!("{s:?} is not an octal file mode like 755"))
}

fn parse_bytes(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .map_err(|_| format!("{s:?} is not a byte count"))
}

fn parse_duration_flag(s: &str) -> Result<std::time::Duration, String> {
    parse_go_duration(s).ok_or_else(|| format!("{s:?} is not a duration like 200ms, 1s or 1m30s"))
}

fn parse_relative_accuracy(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        // Memory bound: 1e-3 lets a summary hold up to ~1.1 MB of buckets (five age buckets,
        // values over twelve decades of either sign); 1e-4 would allow ~11 MB.
        Ok(a) if (0.001..=0.5).contains(&a) => Ok(a),
        _ => Err(format!(
            "{s:?} is not a relative accuracy from 0.001 to 0.5"
        )),
    }
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a positive count")),
    }
}

fn parse_positive_duration(s: &str) -> Result<std::time::Duration, String> {
    match parse_duration_flag(s)? {
        d if d.is_zero() => Err(format!("{s:?} must be longer than 0")),
        d => Ok(d),
    }
}

/// Every flag statsgate takes, as parsed by [`parse_args`].
#[derive(Debug, Clone, Parser)]
#[command(
    name = "statsgate",
    version,
    about = "A fast statsd to Prometheus gateway; a drop-in replacement for statsd_exporter.",
    long_about = None,
    after_help = "Boolean flags also take a --no- form (e.g. --no-statsd.parse-dogstatsd-tags). \
                  Single-dash long flags (-statsd.mapping-config=...) are accepted as Istio's manifests use them."
)]
pub struct Flags {
    /// Address on which to expose metrics and the web interface ("" disables HTTP).
    #[arg(
        long = "web.listen-address",
        default_value = ":9102",
        value_name = "ADDR"
    )]
    pub web_listen_address: String,

    /// Path under which to expose metrics.
    #[arg(
        long = "web.telemetry-path",
        default_value = "/metrics",
        value_name = "PATH"
    )]
    pub web_telemetry_path: String,

    /// Enable shutdown and reload via HTTP (PUT|POST /-/quit, /-/reload).
    #[arg(long = "web.enable-lifecycle", action = ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true", value_name = "BOOL")]
    pub web_enable_lifecycle: bool,

    /// Configuration file for TLS, basic auth and response headers, in the Prometheus
    /// exporter-toolkit format; reloaded on SIGHUP and /-/reload.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,

    /// Open HTTP connections allowed; at the cap a new connection evicts the one idle longest,
    /// or is closed if all are serving a request (lowered to half the open-files limit).
    #[arg(
        long = "web.max-connections",
        default_value = "1024",
        value_parser = parse_positive,
        value_name = "N"
    )]
    pub web_max_connections: usize,

    /// Scrapes served at once; beyond it a scrape gets 503 at once, or takes the slot of a
    /// scrape whose client has stopped reading.
    #[arg(
        long = "web.max-concurrent-scrapes",
        default_value = "16",
        value_parser = parse_positive,
        value_name = "N"
    )]
    pub web_max_concurrent_scrapes: usize,

    /// Threads that render and gzip one scrape; 0: the machine's cores, up to four. A
    /// scrape of 100k series is tens of megabytes of text; with two threads it takes about
    /// half the time.
    #[arg(long = "web.render-threads", default_value = "0", value_name = "N")]
    pub web_render_threads: usize,

    /// Time allowed for a request header, from its first byte (and, for a new connection,
    /// from accept; includes the TLS handshake).
    #[arg(long = "web.read-header-timeout", default_value = "10s", value_parser = parse_positive_duration, value_name = "DURATION")]
    pub web_read_header_timeout: std::time::Duration,

    /// Time a keep-alive connection may wait for its next request.
    #[arg(long = "web.idle-timeout", default_value = "5m", value_parser = parse_positive_duration, value_name = "DURATION")]
    pub web_idle_timeout: std::time::Duration,

    /// Time a response may wait for the client to take more data before the connection is dropped.
    #[arg(long = "web.write-timeout", default_value = "30s", value_parser = parse_positive_duration, value_name = "DURATION")]
    pub web_write_timeout: std::time::Duration,

    /// On SIGTERM, SIGINT or /-/quit: time in-flight HTTP responses get to finish before their
    /// connections are cut and the process exits.
    #[arg(long = "shutdown.grace-period", default_value = "5s", value_parser = parse_duration_flag, value_name = "DURATION")]
    pub shutdown_grace_period: std::time::Duration,

    /// The UDP address on which to receive statsd metric lines ("" disables it).
    #[arg(
        long = "statsd.listen-udp",
        default_value = ":9125",
        value_name = "ADDR"
    )]
    pub statsd_listen_udp: String,

    /// The TCP address on which to receive statsd metric lines ("" disables it).
    #[arg(
        long = "statsd.listen-tcp",
        default_value = ":9125",
        value_name = "ADDR"
    )]
    pub statsd_listen_tcp: String,

    /// Most statsd TCP connections open at once; more are reset as soon as accepted (0 = no
    /// limit but the descriptor limit). Always lowered to the descriptor limit less a reserve
    /// of 256, so statsd clients cannot starve HTTP.
    #[arg(
        long = "statsd.tcp-max-connections",
        default_value = "4096",
        value_name = "N"
    )]
    pub statsd_tcp_max_connections: usize,

    /// Close a statsd TCP connection that sends nothing for this long (0 = never).
    #[arg(long = "statsd.tcp-idle-timeout", default_value = "5m", value_parser = parse_duration_flag, value_name = "DURATION")]
    pub statsd_tcp_idle_timeout: std::time::Duration,

    /// The Unix datagram socket path to receive statsd metric lines in datagram ("" disables it).
    #[arg(
        long = "statsd.listen-unixgram",
        default_value = "",
        value_name = "PATH"
    )]
    pub statsd_listen_unixgram: String,

    /// The permission mode of the unix socket (octal).
    #[arg(long = "statsd.unixsocket-mode", default_value = "755", value_parser = parse_octal, value_name = "MODE")]
    pub statsd_unixsocket_mode: u32,

    /// Metric mapping configuration file name.
    #[arg(long = "statsd.mapping-config", value_name = "FILE")]
    pub statsd_mapping_config: Option<PathBuf>,

    /// Size (in bytes) of the operating system's receive buffer for UDP and unixgram sockets (0 = system default). Not given: UDP sockets get the largest buffer the kernel allows up to 8 MiB (SO_RCVBUFFORCE, else SO_RCVBUF capped by net.core.rmem_max), unixgram sockets the system default.
    #[arg(long = "statsd.read-buffer", value_parser = parse_bytes, value_name = "BYTES")]
    pub statsd_read_buffer: Option<usize>,

    /// Maximum size of the metric mapping cache (0 disables it).
    #[arg(long = "statsd.cache-size", default_value = "1000", value_name = "N")]
    pub statsd_cache_size: usize,

    /// Metric mapping cache type.
    #[arg(long = "statsd.cache-type", default_value = "lru", value_enum)]
    pub statsd_cache_type: CacheType,

    /// Accepted for compatibility; statsgate has no event queue (each receive thread updates the store in place).
    #[arg(
        long = "statsd.event-queue-size",
        default_value = "10000",
        value_name = "N"
    )]
    pub statsd_event_queue_size: usize,

    /// Accepted for compatibility; no effect (no event queue).
    #[arg(
        long = "statsd.event-flush-threshold",
        default_value = "1000",
        value_name = "N"
    )]
    pub statsd_event_flush_threshold: usize,

    /// Accepted for compatibility; no effect (no event queue).
    #[arg(long = "statsd.event-flush-interval", default_value = "200ms", value_parser = parse_duration_flag, value_name = "DURATION")]
    pub statsd_event_flush_interval: std::time::Duration,

    /// The most UDP datagrams each receive thread reads from its socket and queues for itself while handling is slow (first sights, summary merges), at most 16 MiB of them, so the receive buffer does not overflow (0 = none).
    #[arg(
        long = "statsd.udp-packet-queue-size",
        default_value_t = DEFAULT_PACKET_QUEUE,
        value_name = "N"
    )]
    pub statsd_udp_packet_queue_size: usize,

    /// Number of UDP sockets (SO_REUSEPORT), each with its own receive thread (0 = one per CPU).
    #[arg(long = "statsd.udp-sockets", default_value = "0", value_name = "N")]
    pub statsd_udp_sockets: usize,

    /// Maximum number of series, all metrics together; events for a new series beyond it are dropped and counted, existing series keep updating (0 = no limit).
    #[arg(long = "statsd.max-series", default_value_t = DEFAULT_MAX_SERIES, value_name = "N")]
    pub statsd_max_series: usize,

    /// Maximum number of series of one metric name (0 = no limit).
    #[arg(long = "statsd.max-series-per-metric", default_value_t = DEFAULT_MAX_SERIES_PER_METRIC, value_name = "N")]
    pub statsd_max_series_per_metric: usize,

    /// How summaries (timers, histograms and distributions not mapped to observer_type histogram) estimate their quantiles: ckms, statsd_exporter's own, or ddsketch, each quantile within --statsd.summary-relative-accuracy of the exact one, several times cheaper per observation and a fraction of the memory.
    #[arg(long = "statsd.summary-estimator", default_value = "ckms", value_enum)]
    pub statsd_summary_estimator: EstimatorName,

    /// With --statsd.summary-estimator=ddsketch: the relative error allowed on each quantile's value (0.001 to 0.5).
    #[arg(long = "statsd.summary-relative-accuracy", default_value = "0.01", value_parser = parse_relative_accuracy, value_name = "FRACTION")]
    pub statsd_summary_relative_accuracy: f64,

    /// Maximum number of tags on one line (0 = no limit); a line with more is dropped and counted.
    #[arg(long = "statsd.max-tags-per-line", default_value_t = SampleLimits::DEFAULT_MAX_TAGS_PER_LINE, value_name = "N")]
    pub statsd_max_tags_per_line: usize,

    /// Maximum length of a label value in bytes (0 = no limit); an event with a longer one is dropped and counted.
    #[arg(long = "statsd.max-label-value-length", default_value_t = SampleLimits::DEFAULT_MAX_LABEL_VALUE_LENGTH, value_name = "BYTES")]
    pub statsd_max_label_value_length: usize,

    /// Maximum length of a metric name (as sent and as exposed) and of a label name, in bytes (0 = no limit); an event with a longer one is dropped and counted.
    #[arg(long = "statsd.max-metric-name-length", default_value_t = SampleLimits::DEFAULT_MAX_METRIC_NAME_LENGTH, value_name = "BYTES")]
    pub statsd_max_metric_name_length: usize,

    /// Label every series with the IP address of the host that sent it, under this label
    /// name (e.g. instance), so gauges of many senders stay apart. Off by default.
    #[arg(long = "statsd.sender-label", value_parser = SenderLabel::new, value_name = "NAME")]
    pub statsd_sender_label: Option<SenderLabel>,

    /// Parse DogStatsD style tags (default on).
    #[arg(long = "statsd.parse-dogstatsd-tags", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub parse_dogstatsd_tags: Option<bool>,

    /// Parse InfluxDB style tags (default on; off under --profile=envoy).
    #[arg(long = "statsd.parse-influxdb-tags", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub parse_influxdb_tags: Option<bool>,

    /// Parse Librato style tags (default on; off under --profile=envoy).
    #[arg(long = "statsd.parse-librato-tags", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub parse_librato_tags: Option<bool>,

    /// Parse SignalFX style tags (default on; off under --profile=envoy).
    #[arg(long = "statsd.parse-signalfx-tags", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub parse_signalfx_tags: Option<bool>,

    /// Parse Graphite style tags, name;k=v;k2=v2, as Envoy's graphite_statsd sink sends them
    /// (default off, as statsd_exporter has no such dialect; on under --profile=envoy).
    #[arg(long = "statsd.parse-graphite-tags", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub parse_graphite_tags: Option<bool>,

    /// The UDP address to relay every received line to, unmodified (host:port). Repeatable:
    /// with several, each line goes to one of them, chosen by a consistent hash of its series
    /// (name and tags), so each target owns its series.
    #[arg(long = "statsd.relay.address", value_name = "ADDR", action = ArgAction::Append)]
    pub statsd_relay_address: Vec<String>,

    /// Maximum relay output packet length in bytes.
    #[arg(
        long = "statsd.relay.packet-length",
        default_value = "1400",
        value_name = "BYTES"
    )]
    pub statsd_relay_packet_length: usize,

    /// The path to dump the internal FSM mapping to (not supported; accepted and ignored with a warning).
    #[arg(long = "debug.dump-fsm", default_value = "", hide = true)]
    pub debug_dump_fsm: String,

    /// Check the mapping configuration and exit (0 when valid, 1 otherwise).
    #[arg(long = "check-config", action = ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true", value_name = "BOOL")]
    pub check_config: bool,

    /// Naming profile: statsd (current statsd_exporter), istio-mixer (Istio 0.2–1.0's Mixer
    /// endpoint), envoy (Envoy's own /stats/prometheus names and labels).
    #[arg(long = "profile", default_value = "statsd", value_enum)]
    pub profile: ProfileName,

    /// Envoy stats sink prefix stripped by the envoy profile.
    #[arg(long = "envoy.prefix", default_value = "envoy", value_name = "PREFIX")]
    pub envoy_prefix: String,

    /// Envoy tag-extraction rules for the envoy profile: envoy (Envoy's defaults), envoy-2018, or istio (Istio 1.0's bootstrap rules).
    /// Checked whatever the profile, so a typo shows before the profile is switched on.
    #[arg(
        long = "envoy.tag-rules",
        default_value = "envoy",
        value_name = "RULES"
    )]
    pub envoy_tag_rules: TagRuleSet,

    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", default_value = "info", value_enum)]
    pub log_level: LogLevel,

    /// Output format of log messages.
    #[arg(long = "log.format", default_value = "logfmt", value_enum)]
    pub log_format: LogFormat,

    /// `--remote-write.*`.
    #[command(flatten)]
    pub remote_write: RemoteWriteFlags,
}

/// Rewrites kingpin/Go-flag spellings into clap's: `-long.flag` → `--long.flag`, and
/// `--no-x` → `--x=false` for negatable booleans.
fn normalise(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let Some(s) = a.to_str() else { return a };
            if i == 0 {
                return a;
            }
            let mut s = s.to_string();
            if s.len() > 2
                && s.starts_with('-')
                && !s.starts_with("--")
                && s[1..].contains(['.', '-'])
            {
                s.insert(0, '-');
            }
            if let Some(rest) = s.strip_prefix("--no-")
                && NEGATABLE.contains(&rest)
            {
                s = format!("--{rest}=false");
            }
            OsString::from(s)
        })
        .collect()
}

/// Parses the process arguments. Clap's own error (with usage) is returned for display.
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Flags, clap::Error> {
    Flags::try_parse_from(normalise(args))
}

impl Flags {
    /// The mapping cache (`--statsd.cache-size`, `--statsd.cache-type`).
    pub fn cache_options(&self) -> CacheOptions {
        CacheOptions {
            size: self.statsd_cache_size,
            kind: match self.statsd_cache_type {
                CacheType::Lru => CacheKind::Lru,
                CacheType::Random => CacheKind::Random,
            },
        }
    }

    /// The tag dialects asked for: each `--statsd.parse-*-tags` flag given, and for the
    /// others the profile's default (statsd_exporter's four on and Graphite off; under
    /// `--profile=envoy` only DogStatsD and Graphite, see [`ENVOY_DIALECTS`]). The profile may
    /// adjust them further.
    pub fn dialects(&self) -> Dialects {
        let defaults = match self.profile {
            ProfileName::Envoy => ENVOY_DIALECTS,
            ProfileName::Statsd | ProfileName::IstioMixer => Dialects::default(),
        };
        Dialects {
            dogstatsd: self.parse_dogstatsd_tags.unwrap_or(defaults.dogstatsd),
            influxdb: self.parse_influxdb_tags.unwrap_or(defaults.influxdb),
            librato: self.parse_librato_tags.unwrap_or(defaults.librato),
            signalfx: self.parse_signalfx_tags.unwrap_or(defaults.signalfx),
            graphite: self.parse_graphite_tags.unwrap_or(defaults.graphite),
            dogstatsd_tags_last: false,
        }
    }

    /// The naming profile (`--profile`, `--envoy.prefix`, `--envoy.tag-rules`).
    pub fn profile(&self) -> Profile {
        match self.profile {
            ProfileName::Statsd => Profile::Statsd,
            ProfileName::IstioMixer => Profile::IstioMixer,
            ProfileName::Envoy => Profile::envoy_with(&self.envoy_prefix, self.envoy_tag_rules),
        }
    }

    /// The TCP listener on `addr` (`--statsd.tcp-max-connections`, `--statsd.tcp-idle-timeout`).
    pub fn tcp_options(&self, addr: std::net::SocketAddr) -> TcpOptions {
        TcpOptions {
            addr,
            max_connections: self.statsd_tcp_max_connections,
            idle_timeout: (!self.statsd_tcp_idle_timeout.is_zero())
                .then_some(self.statsd_tcp_idle_timeout),
        }
    }

    /// The store's series limits (`--statsd.max-series`, `--statsd.max-series-per-metric`)
    /// and summary estimator (`--statsd.summary-estimator`).
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            max_series: self.statsd_max_series,
            max_series_per_metric: self.statsd_max_series_per_metric,
            summary_estimator: match self.statsd_summary_estimator {
                EstimatorName::Ckms => SummaryEstimator::Ckms,
                EstimatorName::Ddsketch => SummaryEstimator::DdSketch {
                    relative_accuracy: self.statsd_summary_relative_accuracy,
                },
            },
            ..StoreOptions::default()
        }
    }

    /// The per-sample limits (`--statsd.max-tags-per-line`, `--statsd.max-label-value-length`,
    /// `--statsd.max-metric-name-length`).
    pub fn sample_limits(&self) -> SampleLimits {
        SampleLimits {
            max_tags_per_line: self.statsd_max_tags_per_line,
            max_label_value_length: self.statsd_max_label_value_length,
            max_metric_name_length: self.statsd_max_metric_name_length,
        }
    }

    /// The UDP sockets' receive buffer: `--statsd.read-buffer` as statsd_exporter reads it
    /// (0 the system default), or when not given the largest the kernel allows up to
    /// [`DEFAULT_READ_BUFFER`].
    pub fn udp_read_buffer(&self) -> ReadBuffer {
        match self.statsd_read_buffer {
            None => ReadBuffer::Largest(DEFAULT_READ_BUFFER),
            Some(0) => ReadBuffer::System,
            Some(bytes) => ReadBuffer::Bytes(bytes),
        }
    }

    /// The unixgram socket's receive buffer in bytes (`--statsd.read-buffer`), 0 meaning the
    /// system default, also when the flag is not given.
    pub fn unixgram_read_buffer(&self) -> usize {
        self.statsd_read_buffer.unwrap_or(0)
    }

    /// UDP receive threads (`--statsd.udp-sockets`), 0 meaning one per CPU.
    pub fn udp_sockets(&self) -> usize {
        match self.statsd_udp_sockets {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Flags, clap::Error> {
        parse_args(
            std::iter::once("statsgate")
                .chain(args.iter().copied())
                .map(OsString::from),
        )
    }

    #[test]
    fn defaults_match_statsd_exporter() {
        let f = parse(&[]).unwrap();
        assert_eq!(f.web_listen_address, ":9102");
        assert_eq!(f.web_telemetry_path, "/metrics");
        assert!(!f.web_enable_lifecycle);
        assert_eq!(f.statsd_listen_udp, ":9125");
        assert_eq!(f.statsd_listen_tcp, ":9125");
        assert_eq!(f.statsd_listen_unixgram, "");
        assert_eq!(f.statsd_unixsocket_mode, 0o755);
        assert_eq!(f.statsd_cache_size, 1000);
        assert_eq!(f.statsd_cache_type, CacheType::Lru);
        assert_eq!(f.dialects(), Dialects::default());
        assert_eq!(f.log_format, LogFormat::Logfmt);
        assert_eq!(f.profile, ProfileName::Statsd);
        assert_eq!(f.web_max_connections, 1024);
        assert_eq!(f.web_max_concurrent_scrapes, 16);
        assert_eq!(
            f.web_read_header_timeout,
            std::time::Duration::from_secs(10)
        );
        assert_eq!(f.web_idle_timeout, std::time::Duration::from_secs(300));
        assert_eq!(f.web_write_timeout, std::time::Duration::from_secs(30));
        assert_eq!(f.shutdown_grace_period, std::time::Duration::from_secs(5));
    }

    #[test]
    fn tcp_limits_have_documented_defaults_and_zero_disables_the_timeout() {
        let addr = "127.0.0.1:9125".parse().unwrap();
        let f = parse(&[]).unwrap();
        assert_eq!(
            f.tcp_options(addr),
            TcpOptions {
                addr,
                ..TcpOptions::default()
            }
        );
        let f = parse(&[
            "--statsd.tcp-max-connections=10",
            "--statsd.tcp-idle-timeout=0",
        ])
        .unwrap();
        let opts = f.tcp_options(addr);
        assert_eq!(opts.max_connections, 10);
        assert_eq!(opts.idle_timeout, None);
        let f = parse(&["--statsd.tcp-idle-timeout=1m30s"]).unwrap();
        assert_eq!(
            f.tcp_options(addr).idle_timeout,
            Some(std::time::Duration::from_secs(90))
        );
        assert!(parse(&["--statsd.tcp-idle-timeout=soon"]).is_err());
        assert!(parse(&["--statsd.tcp-max-connections=-1"]).is_err());
    }

    #[test]
    fn limits_default_to_the_documented_values_and_zero_turns_them_off() {
        let f = parse(&[]).unwrap();
        let store = f.store_options();
        assert_eq!(
            (store.max_series, store.max_series_per_metric),
            (1_000_000, 100_000)
        );
        assert_eq!(f.sample_limits(), SampleLimits::default());
        assert_eq!(
            (
                f.sample_limits().max_tags_per_line,
                f.sample_limits().max_label_value_length,
                f.sample_limits().max_metric_name_length
            ),
            (64, 2048, 1024)
        );
        let f = parse(&[
            "--statsd.max-series=0",
            "--statsd.max-series-per-metric=0",
            "--statsd.max-tags-per-line=0",
            "--statsd.max-label-value-length=0",
            "--statsd.max-metric-name-length=0",
        ])
        .unwrap();
        assert_eq!(f.store_options().max_series, 0);
        assert_eq!(f.sample_limits(), SampleLimits::UNLIMITED);
        assert!(parse(&["--statsd.max-series=-1"]).is_err());
    }

    #[test]
    fn the_summary_estimator_is_ckms_unless_asked() {
        assert_eq!(
            parse(&[]).unwrap().store_options().summary_estimator,
            SummaryEstimator::Ckms
        );
        let f = parse(&["--statsd.summary-estimator=ddsketch"]).unwrap();
        assert_eq!(
            f.store_options().summary_estimator,
            SummaryEstimator::DdSketch {
                relative_accuracy: 0.01
            }
        );
        let f = parse(&[
            "--statsd.summary-estimator",
            "ddsketch",
            "--statsd.summary-relative-accuracy=0.05",
        ])
        .unwrap();
        assert_eq!(
            f.store_options().summary_estimator,
            SummaryEstimator::DdSketch {
                relative_accuracy: 0.05
            }
        );
        for bad in ["0", "0.0005", "0.6", "-0.01", "NaN", "1%"] {
            assert!(parse(&[&format!("--statsd.summary-relative-accuracy={bad}")]).is_err());
        }
        assert!(parse(&["--statsd.summary-estimator=tdigest"]).is_err());
    }

    #[test]
    fn kingpin_and_go_flag_spellings() {
        let f = parse(&[
            "--no-statsd.parse-dogstatsd-tags",
            "-statsd.mapping-config=/etc/statsd/mapping.conf",
            "--web.enable-lifecycle",
            "--statsd.listen-tcp=",
            "--statsd.unixsocket-mode",
            "600",
        ])
        .unwrap();
        assert!(!f.dialects().dogstatsd);
        assert_eq!(
            f.statsd_mapping_config.as_deref(),
            Some(std::path::Path::new("/etc/statsd/mapping.conf"))
        );
        assert!(f.web_enable_lifecycle);
        assert_eq!(f.statsd_listen_tcp, "");
        assert_eq!(f.statsd_unixsocket_mode, 0o600);
        let f = parse(&["--statsd.parse-influxdb-tags=false"]).unwrap();
        assert!(!f.dialects().influxdb);
    }

    #[test]
    fn envoy_profile_reads_only_envoys_tag_dialects_unless_asked() {
        let dialects = |args: &[&str]| parse(args).unwrap().dialects();
        let envoy = dialects(&["--profile=envoy"]);
        assert!(envoy.dogstatsd && !envoy.influxdb && !envoy.librato && !envoy.signalfx);
        assert!(envoy.graphite);
        assert!(!dialects(&["--profile=envoy", "--statsd.parse-graphite-tags=false"]).graphite);
        assert!(!dialects(&["--profile=envoy", "--no-statsd.parse-graphite-tags"]).graphite);
        // A flag given explicitly wins over the profile's default, either way.
        let asked = dialects(&[
            "--profile=envoy",
            "--statsd.parse-signalfx-tags",
            "--statsd.parse-librato-tags=true",
            "--no-statsd.parse-dogstatsd-tags",
        ]);
        assert!(asked.signalfx && asked.librato && !asked.influxdb && !asked.dogstatsd);
        let statsd = dialects(&["--no-statsd.parse-signalfx-tags"]);
        assert!(statsd.dogstatsd && statsd.influxdb && statsd.librato && !statsd.signalfx);
        // Graphite tags are statsgate's own: off unless asked for, in every other profile.
        assert!(!statsd.graphite);
        assert!(!dialects(&["--profile=istio-mixer"]).graphite);
        assert!(dialects(&["--statsd.parse-graphite-tags"]).graphite);
        assert!(dialects(&["--statsd.parse-graphite-tags=true"]).graphite);
        assert!(dialects(&["-statsd.parse-graphite-tags"]).graphite);
    }

    #[test]
    fn the_relay_address_repeats_in_order() {
        assert!(parse(&[]).unwrap().statsd_relay_address.is_empty());
        let f = parse(&[
            "--statsd.relay.address=b:9125",
            "-statsd.relay.address=a:9125",
            "--statsd.relay.address",
            "c:9125",
        ])
        .unwrap();
        assert_eq!(f.statsd_relay_address, ["b:9125", "a:9125", "c:9125"]);
    }

    #[test]
    fn the_sender_label_is_off_by_default_and_checked_when_given() {
        assert_eq!(parse(&[]).unwrap().statsd_sender_label, None);
        let f = parse(&["--statsd.sender-label=instance"]).unwrap();
        assert_eq!(
            f.statsd_sender_label.as_ref().map(SenderLabel::name),
            Some("instance")
        );
        let f = parse(&["-statsd.sender-label", "sender"]).unwrap();
        assert_eq!(
            f.statsd_sender_label.as_ref().map(SenderLabel::name),
            Some("sender")
        );
        for bad in ["", "sender-ip", "1st", "__instance", "le", "quantile"] {
            let err = parse(&[&format!("--statsd.sender-label={bad}"), "--check-config"])
                .expect_err(bad)
                .to_string();
            assert!(err.contains("--statsd.sender-label"), "{err}");
        }
    }

    #[test]
    fn bad_values_are_errors_not_panics() {
        assert!(parse(&["--statsd.unixsocket-mode=9z"]).is_err());
        assert!(parse(&["--statsd.cache-type=fifo"]).is_err());
        assert!(parse(&["--statsd.read-buffer=-1"]).is_err());
        assert!(parse(&["--statsd.read-buffer"]).is_err());
        assert!(parse(&["--statsd.event-flush-interval=soon"]).is_err());
        assert!(parse(&["--log.format=xml"]).is_err());
        assert!(parse(&["--no-such-flag"]).is_err());
        assert!(parse(&["--web.max-connections=0"]).is_err());
        assert!(parse(&["--web.read-header-timeout=0"]).is_err());
        assert!(parse(&["--shutdown.grace-period=0"]).is_ok());
        // Checked even when the profile that reads it is not selected.
        assert!(parse(&["--envoy.tag-rules=nonsense"]).is_err());
        let f = parse(&["--envoy.tag-rules=istio", "--check-config"]).unwrap();
        assert_eq!(f.envoy_tag_rules, TagRuleSet::Istio);
    }
}
