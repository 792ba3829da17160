//! Every self-metric the gateway writes: name, type, label names and HELP text, each
//! defined once here and used everywhere else through these statics, so renaming one is a
//! one-line change. The names and HELP texts are statsd_exporter's (and client_golang's for
//! `process_*`) where it has them, so dashboards and alerts keep working.

use metrics::{Counter, Gauge, Label, SharedString};

/// The Prometheus type of a self-metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Set to the current value.
    Gauge,
}

impl Kind {
    /// The `# TYPE` keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One self-metric family. `N` is its number of labels, so asking for a series with the
/// wrong number of label values does not compile.
#[derive(Debug)]
pub struct Family<const N: usize> {
    /// The family name.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// Label names, in the order their values are given and written.
    pub labels: [&'static str; N],
    /// The `# HELP` text.
    pub help: &'static str,
}

/// A family with its label count erased, for walking the whole catalog.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// The family name.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// Label names.
    pub labels: &'static [&'static str],
    /// The `# HELP` text.
    pub help: &'static str,
}

impl<const N: usize> Family<N> {
    /// The counter series with these label values (in the order of `labels`), from the
    /// installed `metrics` recorder. Hot paths look a handle up once and keep it.
    pub fn counter(&self, values: [SharedString; N]) -> Counter {
        debug_assert_eq!(self.kind, Kind::Counter, "{} is not a counter", self.name);
        metrics::counter!(self.name, self.label_set(values))
    }

    /// The gauge series with these label values, as for [`counter`](Self::counter).
    pub fn gauge(&self, values: [SharedString; N]) -> Gauge {
        debug_assert_eq!(self.kind, Kind::Gauge, "{} is not a gauge", self.name);
        metrics::gauge!(self.name, self.label_set(values))
    }

    fn label_set(&self, values: [SharedString; N]) -> Vec<Label> {
        self.labels
            .iter()
            .zip(values)
            .map(|(name, value)| Label::new(*name, value))
            .collect()
    }

    /// This family without its label count.
    pub const fn entry(&'static self) -> Entry {
        Entry {
            name: self.name,
            kind: self.kind,
            labels: &self.labels,
            help: self.help,
        }
    }
}

/// Defines each family as a documented static and lists them all in `$list`.
macro_rules! families {
    ($list:ident: $($id:ident: $kind:ident $name:literal [$($label:literal),*] $help:literal;)*) => {
        $(
            #[doc = concat!("`", $name, "`: ", $help)]
            pub static $id: Family<{ <[&str]>::len(&[$($label),*]) }> = Family {
                name: $name,
                kind: Kind::$kind,
                labels: [$($label),*],
                help: $help,
            };
        )*
        #[doc = concat!("Every family of this list: ", $("`", $name, "` "),*)]
        pub static $list: &[Entry] = &[$($id.entry()),*];
    };
}

families! { RECORDED:
    LINES: Counter "statsd_exporter_lines_total" []
        "The total number of StatsD lines received.";
    SAMPLES: Counter "statsd_exporter_samples_total" []
        "The total number of StatsD samples received.";
    SAMPLE_ERRORS: Counter "statsd_exporter_sample_errors_total" ["reason"]
        "The total number of errors parsing StatsD samples.";
    TAGS: Counter "statsd_exporter_tags_total" []
        "The total number of DogStatsD tags processed.";
    TAG_ERRORS: Counter "statsd_exporter_tag_errors_total" []
        "The number of errors parsing DogStatsD tags.";
    EVENTS: Counter "statsd_exporter_events_total" ["type"]
        "The total number of StatsD events seen.";
    EVENTS_UNMAPPED: Counter "statsd_exporter_events_unmapped_total" []
        "The total number of StatsD events no mapping was found for.";
    EVENTS_ACTIONS: Counter "statsd_exporter_events_actions_total" ["action"]
        "The total number of StatsD events by action.";
    // `metric_name` comes from the network: the first CONFLICT_NAMES_CAP names get their own
    // value, the rest share OTHER_LABEL_VALUE (see `bounded.rs`).
    EVENTS_CONFLICT: Counter "statsd_exporter_events_conflict_total" ["metric_name", "type"]
        "The total number of StatsD events with conflicting names.";
    EVENTS_ERROR: Counter "statsd_exporter_events_error_total" ["reason"]
        "The total number of StatsD events discarded due to errors.";
    UDP_PACKETS: Counter "statsd_exporter_udp_packets_total" []
        "The total number of StatsD packets received over UDP.";
    // statsd_exporter counts what its full internal queue dropped; statsgate's queue never
    // drops (a full one leaves datagrams in the kernel's buffer), so this counts what the
    // kernel dropped because a socket's receive buffer was full. Set from the sockets' own
    // counts each time the self-metrics are rendered (`ingest/drops.rs`).
    UDP_PACKET_DROPS: Counter "statsd_exporter_udp_packet_drops_total" []
        "The total number of StatsD packets the kernel dropped because a UDP socket's receive buffer was full (the sockets' drop counts, read on each scrape).";
    UDP_PACKETS_QUEUED: Counter "statsgate_udp_packets_queued_total" []
        "UDP datagrams a receive thread read from its socket while busy and queued for itself (at most --statsd.udp-packet-queue-size), so that its receive buffer did not overflow.";
    TCP_CONNECTIONS: Counter "statsd_exporter_tcp_connections_total" []
        "The total number of TCP connections handled.";
    TCP_CONNECTION_ERRORS: Counter "statsd_exporter_tcp_connection_errors_total" []
        "The number of errors encountered reading from TCP.";
    TCP_TOO_LONG_LINES: Counter "statsd_exporter_tcp_too_long_lines_total" []
        "The number of lines discarded due to being too long.";
    TCP_CONNECTIONS_REFUSED: Counter "statsgate_tcp_connections_refused_total" []
        "StatsD TCP connections reset as soon as accepted because the connection limit (--statsd.tcp-max-connections, lowered to the descriptor limit less a reserve) was reached.";
    TCP_IDLE_CLOSED: Counter "statsgate_tcp_idle_closed_total" []
        "StatsD TCP connections closed because nothing arrived on them for --statsd.tcp-idle-timeout.";
    TCP_CONNECTIONS_OPEN: Gauge "statsgate_tcp_connections_open" []
        "StatsD TCP connections currently open.";
    UNIXGRAM_PACKETS: Counter "statsd_exporter_unixgram_packets_total" []
        "The total number of StatsD packets received over unixgram.";
    RECEIVED_BYTES: Counter "statsgate_received_bytes_total" ["transport"]
        "Bytes of StatsD payload received, by transport (udp, tcp, unixgram).";
    CONFIG_RELOADS: Counter "statsd_exporter_config_reloads_total" ["outcome"]
        "The number of configuration reloads.";
    LOADED_MAPPINGS: Gauge "statsd_exporter_loaded_mappings" []
        "The current number of configured metric mappings.";
    // One series per `--statsd.relay.address`, labelled with the address as given (so as
    // many as there are flags); with several, each counts only the lines sharded to it.
    RELAY_PACKETS: Counter "statsd_exporter_relay_packets_total" ["target"]
        "The number of StatsD packets relayed.";
    RELAY_LONG_LINES: Counter "statsd_exporter_relay_long_lines_total" ["target"]
        "The number lines that were too long to relay.";
    RELAY_LINES_RELAYED: Counter "statsd_exporter_relay_lines_relayed_total" ["target"]
        "The number of lines that were buffered to be relayed.";
    CACHE_GETS: Counter "statsd_metric_mapper_cache_gets_total" []
        "The count of total metric cache gets.";
    CACHE_HITS: Counter "statsd_metric_mapper_cache_hits_total" []
        "The count of total metric cache hits.";
    CACHE_LENGTH: Gauge "statsd_metric_mapper_cache_length" []
        "The count of unique metrics currently cached.";
    METRICS: Gauge "statsd_exporter_metrics_total" ["type"]
        "The total number of metrics.";
    BUILD_INFO: Gauge "statsd_exporter_build_info"
        ["version", "revision", "branch", "goversion", "goos", "goarch"]
        "A metric with a constant '1' value labeled by version, revision, branch, goversion from which statsd_exporter was built, and the goos and goarch for the build.";
    LABELS_DROPPED: Counter "statsgate_labels_dropped_total" []
        "Tags dropped because their name is reserved by Prometheus (__*), or is le on a histogram or quantile on a summary.";
    SENDER_LABEL_OVERRIDES: Counter "statsgate_sender_label_overrides_total" []
        "Events whose own tag or mapping label had the name of --statsd.sender-label, replaced by the sender's address (or removed, for a unixgram sender).";
    SERIES: Gauge "statsgate_series" []
        "The number of series currently held.";
    SERIES_LIMIT: Gauge "statsgate_series_limit" []
        "--statsd.max-series: the most series held at once; statsgate_series is compared with it.";
    SERIES_EXPIRED: Counter "statsgate_series_expired_total" []
        "Series removed because their TTL ran out.";
    EVENTS_DROPPED: Counter "statsgate_events_dropped_total" ["reason"]
        "StatsD events dropped by a limit (--statsd.max-*), by reason: max_series, max_series_per_metric, too_many_tags, metric_name_too_long, label_name_too_long, label_value_too_long.";
    REMOTE_WRITE_SAMPLES: Counter "statsgate_remote_write_samples_total" ["url"]
        "Samples a remote_write receiver accepted.";
    REMOTE_WRITE_FAILED_SAMPLES: Counter "statsgate_remote_write_failed_samples_total" ["reason", "url"]
        "Samples dropped without reaching a remote_write receiver, by reason.";
    REMOTE_WRITE_RETRIES: Counter "statsgate_remote_write_retries_total" ["url"]
        "remote_write requests retried after a 5xx, a 429, a timeout or a connection error.";
    REMOTE_WRITE_SENT_BYTES: Counter "statsgate_remote_write_sent_bytes_total" ["url"]
        "Compressed request bytes a remote_write receiver accepted.";
    REMOTE_WRITE_QUEUE_LENGTH: Gauge "statsgate_remote_write_queue_length" ["url"]
        "Samples waiting in a remote_write queue or in flight.";
    REMOTE_WRITE_LAST_SUCCESS: Gauge "statsgate_remote_write_last_success_timestamp_seconds" ["url"]
        "Unix time of the last request a remote_write receiver accepted.";
    REMOTE_WRITE_SNAPSHOT_SECONDS: Gauge "statsgate_remote_write_snapshot_seconds" []
        "How long the last remote_write snapshot (walk, encode, compress) took.";
    HTTP_CONNECTIONS_REFUSED: Counter "statsgate_http_connections_refused_total" []
        "HTTP connections closed at accept: --web.max-connections were open, all serving a request.";
    HTTP_CONNECTIONS_CLOSED: Counter "statsgate_http_connections_closed_total" ["reason"]
        "HTTP connections the gateway closed, by reason (timeouts, eviction, shutdown).";
    HTTP_SCRAPES_REJECTED: Counter "statsgate_http_scrapes_rejected_total" []
        "Scrapes answered 503 because --web.max-concurrent-scrapes were in flight.";
    HTTP_AUTH_FAILURES: Counter "statsgate_http_auth_failures_total" []
        "HTTP requests answered 401 (basic auth from --web.config.file).";
    HTTP_RATE_LIMITED: Counter "statsgate_http_rate_limited_total" []
        "HTTP requests answered 429 (rate_limit from --web.config.file).";
    HTTP_TLS_HANDSHAKE_ERRORS: Counter "statsgate_http_tls_handshake_errors_total" []
        "TLS handshakes that failed (plain HTTP on the TLS port, refused client certificates, ...).";
}

// Read from /proc and written by `process.rs` on each scrape rather than recorded.
families! { PROCESS:
    PROCESS_CPU_SECONDS: Counter "process_cpu_seconds_total" []
        "Total user and system CPU time spent in seconds.";
    PROCESS_OPEN_FDS: Gauge "process_open_fds" []
        "Number of open file descriptors.";
    PROCESS_MAX_FDS: Gauge "process_max_fds" []
        "Maximum number of open file descriptors.";
    PROCESS_VIRTUAL_MEMORY: Gauge "process_virtual_memory_bytes" []
        "Virtual memory size in bytes.";
    PROCESS_RESIDENT_MEMORY: Gauge "process_resident_memory_bytes" []
        "Resident memory size in bytes.";
    PROCESS_START_TIME: Gauge "process_start_time_seconds" []
        "Start time of the process since unix epoch in seconds.";
    PROCESS_VIRTUAL_MEMORY_MAX: Gauge "process_virtual_memory_max_bytes" []
        "Maximum amount of virtual memory available in bytes.";
    // Like client_golang: the IP octets of the process's network namespace.
    PROCESS_NETWORK_RECEIVE: Counter "process_network_receive_bytes_total" []
        "Number of bytes received by the process over the network.";
    PROCESS_NETWORK_TRANSMIT: Counter "process_network_transmit_bytes_total" []
        "Number of bytes sent by the process over the network.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_label_counts_match() {
        let mut names: Vec<&str> = RECORDED.iter().chain(PROCESS).map(|e| e.name).collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all, "a family is listed twice");
        assert_eq!(EVENTS_CONFLICT.entry().labels, ["metric_name", "type"]);
        assert!(RECORDED.iter().any(|e| e.name == SERIES_EXPIRED.name));
    }

    #[test]
    fn counters_end_in_total() {
        for e in RECORDED.iter().chain(PROCESS) {
            if e.kind == Kind::Counter {
                assert!(e.name.ends_with("_total"), "{}", e.name);
            }
        }
    }
}
