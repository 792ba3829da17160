//! The gateway's own metrics, under statsd_exporter's names so existing dashboards and
//! alerts keep working, plus `process_*` and statsgate's own additions (`statsgate_*`).
//!
//! Recorded through the `metrics` facade into `metrics-exporter-prometheus`, rendered after
//! the user's series on every scrape. Hot-path stages never look a counter up per event:
//! they hold [`metrics::Counter`] handles and add once per receive batch.

mod process;

use metrics::{Unit, describe_counter, describe_gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// HELP texts of every self-metric, statsd_exporter's wording where it has one.
const COUNTERS: &[(&str, &str)] = &[
    (
        "statsd_exporter_events_total",
        "The total number of StatsD events seen.",
    ),
    (
        "statsd_exporter_events_conflict_total",
        "The total number of StatsD events with conflicting names.",
    ),
    (
        "statsd_exporter_events_error_total",
        "The total number of StatsD events discarded due to errors.",
    ),
    (
        "statsd_exporter_events_unmapped_total",
        "The total number of StatsD events no mapping was found for.",
    ),
    (
        "statsd_exporter_events_actions_total",
        "The total number of StatsD events by action.",
    ),
    (
        "statsd_exporter_udp_packets_total",
        "The total number of StatsD packets received over UDP.",
    ),
    (
        "statsd_exporter_udp_packet_drops_total",
        "The total number of StatsD packets dropped by the kernel's UDP receive buffer (SO_RXQ_OVFL).",
    ),
    (
        "statsd_exporter_tcp_connections_total",
        "The total number of TCP connections handled.",
    ),
    (
        "statsd_exporter_tcp_connection_errors_total",
        "The number of errors encountered reading from TCP.",
    ),
    (
        "statsd_exporter_tcp_too_long_lines_total",
        "The number of lines discarded due to being too long.",
    ),
    (
        "statsd_exporter_unixgram_packets_total",
        "The total number of StatsD packets received over unixgram.",
    ),
    (
        "statsd_exporter_lines_total",
        "The total number of StatsD lines received.",
    ),
    (
        "statsd_exporter_samples_total",
        "The total number of StatsD samples received.",
    ),
    (
        "statsd_exporter_sample_errors_total",
        "The total number of errors parsing StatsD samples.",
    ),
    (
        "statsd_exporter_tags_total",
        "The total number of DogStatsD tags processed.",
    ),
    (
        "statsd_exporter_tag_errors_total",
        "The number of errors parsing DogStatsD tags.",
    ),
    (
        "statsd_exporter_config_reloads_total",
        "The number of configuration reloads.",
    ),
    (
        "statsd_exporter_relay_packets_total",
        "The number of StatsD packets relayed.",
    ),
    (
        "statsd_exporter_relay_long_lines_total",
        "The number lines that were too long to relay.",
    ),
    (
        "statsd_exporter_relay_lines_relayed_total",
        "The number of lines that were buffered to be relayed.",
    ),
    (
        "statsd_metric_mapper_cache_gets_total",
        "The count of total metric cache gets.",
    ),
    (
        "statsd_metric_mapper_cache_hits_total",
        "The count of total metric cache hits.",
    ),
    (
        "statsgate_labels_dropped_total",
        "Tags dropped because their name is reserved by Prometheus (__*), or is le on a histogram or quantile on a summary.",
    ),
    (
        "statsgate_series_expired_total",
        "Series removed because their TTL ran out.",
    ),
    (
        "statsgate_http_connections_refused_total",
        "HTTP connections closed at accept: --web.max-connections were open, all serving a request.",
    ),
    (
        "statsgate_http_connections_closed_total",
        "HTTP connections the gateway closed, by reason (timeouts, eviction, shutdown).",
    ),
    (
        "statsgate_http_scrapes_rejected_total",
        "Scrapes answered 503 because --web.max-concurrent-scrapes were in flight.",
    ),
    (
        "statsgate_http_auth_failures_total",
        "HTTP requests answered 401 (basic auth from --web.config.file).",
    ),
    (
        "statsgate_http_rate_limited_total",
        "HTTP requests answered 429 (rate_limit from --web.config.file).",
    ),
    (
        "statsgate_http_tls_handshake_errors_total",
        "TLS handshakes that failed (plain HTTP on the TLS port, refused client certificates, ...).",
    ),
];

const GAUGES: &[(&str, &str)] = &[
    (
        "statsd_exporter_loaded_mappings",
        "The current number of configured metric mappings.",
    ),
    (
        "statsd_exporter_metrics_total",
        "The total number of metrics.",
    ),
    (
        "statsd_metric_mapper_cache_length",
        "The count of unique metrics currently cached.",
    ),
    (
        "statsd_exporter_build_info",
        "A metric with a constant '1' value labeled by version, revision, branch, goversion from which statsd_exporter was built, and the goos and goarch for the build.",
    ),
    ("statsgate_series", "The number of series currently held."),
];

/// Every family name the telemetry may write; the store refuses user series that would
/// collide with them, so a scrape never holds one name twice.
pub fn reserved_names() -> Vec<String> {
    let mut v: Vec<String> = COUNTERS
        .iter()
        .chain(GAUGES.iter())
        .map(|(n, _)| n.to_string())
        .collect();
    v.extend(process::NAMES.iter().map(|n| n.to_string()));
    v
}

/// The installed recorder.
#[derive(Clone)]
pub struct Telemetry {
    handle: PrometheusHandle,
}

/// Installing the global recorder failed (one is already installed).
#[derive(Debug, thiserror::Error)]
#[error("cannot install the telemetry recorder: {0}")]
pub struct TelemetryError(String);

impl Telemetry {
    /// Installs the process-wide recorder and describes every self-metric.
    pub fn install() -> Result<Telemetry, TelemetryError> {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).map_err(|e| TelemetryError(e.to_string()))?;
        for (name, help) in COUNTERS {
            describe_counter!(*name, Unit::Count, *help);
        }
        for (name, help) in GAUGES {
            describe_gauge!(*name, *help);
        }
        metrics::gauge!(
            "statsd_exporter_build_info",
            "version" => env!("CARGO_PKG_VERSION"),
            "revision" => "",
            "branch" => "",
            "goversion" => "",
            "goos" => std::env::consts::OS,
            "goarch" => std::env::consts::ARCH,
        )
        .set(1.0);
        Ok(Telemetry { handle })
    }

    /// The self-metrics in text format, `process_*` included.
    pub fn render(&self) -> String {
        let mut out = self.handle.render();
        process::render(&mut out);
        out
    }
}
