//! Sockets: bytes in, datagrams and lines out. No parsing happens here.
//!
//! Each listener hands what it reads to a [`Sink`] that it owns outright: one per UDP receive
//! thread, one per TCP connection, one for the unixgram thread. The sink parses, maps and stores
//! in place, so there is no channel hop and no lock between the socket and the store. A sink is
//! told when a receive batch ends ([`Sink::flush`]) so it can publish its own counters once per
//! batch rather than once per line.
//!
//! Framing follows statsd_exporter (§1.1 of the reference notes): UDP and unixgram deliver whole
//! datagrams (the sink splits them on `\n`); TCP delivers lines with `\n` or `\r\n` removed, at
//! most 4095 bytes each, closing a connection that sends a longer one.
//!
//! Self-metrics use statsd_exporter's names through the `metrics` facade; call
//! [`describe_metrics`] once after installing a recorder to attach their HELP texts.

mod batch;
mod tcp;
mod udp;
mod unixgram;

use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use tcp::{TCP_MAX_LINE, TcpOptions, start_tcp};
pub use udp::{UdpOptions, start_udp};
pub use unixgram::{UnixgramOptions, start_unixgram};

/// Receives what a listener reads. One instance per receive thread / connection, never shared.
pub trait Sink: Send + 'static {
    /// One UDP or unixgram datagram payload (may hold many `\n`-separated lines; the sink splits).
    fn datagram(&mut self, payload: &[u8]);
    /// One line from a stream (TCP), framing (`\n` or `\r\n`) already removed.
    fn line(&mut self, line: &[u8]);
    /// End of a receive batch (after a `recvmmsg` batch, on a receive timeout, or when a TCP
    /// read buffer is drained): publish counters.
    fn flush(&mut self);
}

/// Makes a [`Sink`] per thread/connection.
pub trait SinkFactory: Send + Sync + 'static {
    /// The sink type this factory makes.
    type Sink: Sink;
    /// Called by [`start_udp`] once per socket and by [`start_unixgram`] once, on the caller's
    /// thread before the receive threads start (the sink then moves to its thread); and once per
    /// accepted TCP connection, on the runtime, before that connection is read.
    fn make_sink(&self) -> Self::Sink;
}

/// Why a listener could not start. Every variant names the address or path involved.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A listen address that is not `host:port`, `[v6]:port` or `:port`.
    #[error("invalid listen address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host part of a listen address did not resolve.
    #[error("cannot resolve listen address {address:?}: {source}")]
    Resolve {
        /// The address as given.
        address: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// Listener options that cannot work (for example zero sockets).
    #[error("invalid {listener} listener option for {address}: {reason}")]
    InvalidOption {
        /// `udp`, `tcp` or `unixgram`.
        listener: &'static str,
        /// The address or path the listener was for.
        address: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Creating the socket failed.
    #[error("cannot create {listener} socket for {address}: {source}")]
    Socket {
        /// `udp`, `tcp` or `unixgram`.
        listener: &'static str,
        /// The address or path.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Setting a socket option failed.
    #[error("cannot set {option} on {listener} socket {address}: {source}")]
    SocketOption {
        /// `udp`, `tcp` or `unixgram`.
        listener: &'static str,
        /// The address or path.
        address: String,
        /// The option, e.g. `SO_REUSEPORT`.
        option: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// Binding (or listening) failed: address in use, permission denied, no such interface.
    #[error("cannot bind {listener} socket to {address}: {source}")]
    Bind {
        /// `udp`, `tcp` or `unixgram`.
        listener: &'static str,
        /// The address or path.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The unixgram socket path already exists (statsd_exporter refuses to start then too).
    #[error("unixgram socket path {} already exists", path.display())]
    PathExists {
        /// The socket path.
        path: PathBuf,
    },
    /// Changing the unixgram socket file's mode failed.
    #[error("cannot chmod unixgram socket {} to {mode:o}: {source}", path.display())]
    Chmod {
        /// The socket path.
        path: PathBuf,
        /// The requested mode.
        mode: u32,
        /// The OS error.
        source: std::io::Error,
    },
    /// Starting a receive thread failed.
    #[error("cannot start receive thread {name} for {address}: {source}")]
    Spawn {
        /// The thread name.
        name: String,
        /// The address or path.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Parses a statsd_exporter-style listen address.
///
/// * `""` means the listener is disabled: `Ok(None)`.
/// * `":9125"` (empty host) means all interfaces. It becomes `[::]:9125`, and the listeners bind
///   that dual-stack (`IPV6_V6ONLY` off), so IPv4 and IPv6 clients both reach it, as with Go's
///   wildcard listen in statsd_exporter. On a host without IPv6 the listeners fall back to
///   `0.0.0.0`. An explicit `0.0.0.0:9125` is IPv4 only.
/// * `"127.0.0.1:9125"`, `"[::1]:9125"`: literal addresses.
/// * `"localhost:9125"`: resolved once, now (blocking); an IPv4 result is preferred, as Go's
///   resolver does for the `ip` network.
///
/// The port must be decimal (0–65535); service names are rejected, as in statsd_exporter.
pub fn parse_listen_address(s: &str) -> Result<Option<SocketAddr>, IngestError> {
    if s.is_empty() {
        return Ok(None);
    }
    let invalid = |reason| IngestError::InvalidAddress {
        address: s.to_owned(),
        reason,
    };
    let (host, port) = s.rsplit_once(':').ok_or_else(|| invalid("missing port"))?;
    let host = match host.strip_prefix('[') {
        Some(rest) => rest
            .strip_suffix(']')
            .ok_or_else(|| invalid("unterminated '[' in host"))?,
        None if host.contains(':') => return Err(invalid("IPv6 host must be in brackets")),
        None if host.contains(']') => return Err(invalid("unexpected ']' in host")),
        None => host,
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("port must be a decimal number"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| invalid("port must be between 0 and 65535"))?;
    if host.is_empty() {
        return Ok(Some(SocketAddr::new(
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            port,
        )));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Some(SocketAddr::new(ip, port)));
    }
    let resolved: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|source| IngestError::Resolve {
            address: s.to_owned(),
            source,
        })?
        .collect();
    resolved
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| resolved.first())
        .copied()
        .map(Some)
        .ok_or_else(|| invalid("host resolved to no addresses"))
}

/// A running listener. Dropping it, or calling [`Listener::shutdown`], stops it: receive threads
/// are told to stop and joined (they notice within their ~100 ms receive timeout), the TCP accept
/// task and its connection tasks are aborted, and a unixgram socket file is removed.
#[must_use = "dropping a Listener stops it"]
pub struct Listener {
    local_addr: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    socket_path: Option<PathBuf>,
}

impl Listener {
    /// The bound address (with the real port when port 0 was asked for); `None` for unixgram.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Stops the listener and waits for its threads to exit.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.local_addr)
            .field("threads", &self.threads.len())
            .field("task", &self.task.is_some())
            .field("socket_path", &self.socket_path)
            .finish()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            // Aborting the accept task drops its JoinSet, which aborts every connection task.
            task.abort();
        }
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("an ingest receive thread panicked");
            }
        }
        if let Some(path) = self.socket_path.take()
            && let Err(err) = std::fs::remove_file(&path)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %err, "cannot remove unixgram socket");
        }
    }
}

/// How long a blocking receive waits before the thread looks at its stop flag. Bounds shutdown
/// latency, and is the longest a sink waits for a `flush` when traffic stops.
pub(crate) const RECEIVE_TIMEOUT: Duration = Duration::from_millis(100);

/// The largest datagram UDP can carry (and what statsd_exporter accepts).
pub(crate) const MAX_DATAGRAM: usize = 65535;

/// Self-metric names, as statsd_exporter spells them.
pub(crate) mod names {
    pub const UDP_PACKETS: &str = "statsd_exporter_udp_packets_total";
    pub const UDP_PACKET_DROPS: &str = "statsd_exporter_udp_packet_drops_total";
    pub const TCP_CONNECTIONS: &str = "statsd_exporter_tcp_connections_total";
    pub const TCP_CONNECTION_ERRORS: &str = "statsd_exporter_tcp_connection_errors_total";
    pub const TCP_TOO_LONG_LINES: &str = "statsd_exporter_tcp_too_long_lines_total";
    pub const UNIXGRAM_PACKETS: &str = "statsd_exporter_unixgram_packets_total";
}

/// Registers HELP texts for the ingest counters with the installed `metrics` recorder.
/// The texts are statsd_exporter's, except for the drop counter, whose meaning differs.
pub fn describe_metrics() {
    metrics::describe_counter!(
        names::UDP_PACKETS,
        "The total number of StatsD packets received over UDP."
    );
    // statsd_exporter counts packets dropped from its full internal queue; statsgate has no
    // queue, so this counts what the kernel dropped because a socket's receive buffer was full.
    metrics::describe_counter!(
        names::UDP_PACKET_DROPS,
        "The total number of StatsD packets dropped by the kernel because a UDP socket's receive buffer was full."
    );
    metrics::describe_counter!(
        names::TCP_CONNECTIONS,
        "The total number of TCP connections handled."
    );
    metrics::describe_counter!(
        names::TCP_CONNECTION_ERRORS,
        "The number of errors encountered reading from TCP."
    );
    metrics::describe_counter!(
        names::TCP_TOO_LONG_LINES,
        "The number of lines discarded due to being too long."
    );
    metrics::describe_counter!(
        names::UNIXGRAM_PACKETS,
        "The total number of StatsD packets received over Unixgram."
    );
}

/// Lets one log line through per interval across all threads that share it, so a flood of
/// bad input or a persistent socket error cannot flood the log.
pub(crate) struct LogLimiter {
    interval_ms: u64,
    last_ms: AtomicU64,
}

impl LogLimiter {
    pub(crate) const fn new(interval: Duration) -> Self {
        LogLimiter {
            interval_ms: interval.as_millis() as u64,
            last_ms: AtomicU64::new(0),
        }
    }

    /// True if the caller may log now.
    pub(crate) fn allow(&self) -> bool {
        // A monotonic clock, so a wall-clock step back cannot silence logging; +1 keeps 0 free
        // to mean "never logged".
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        let now = EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < self.interval_ms {
            return false;
        }
        self.last_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// Wraps a socket setup error for `listener` at `address`.
pub(crate) fn option_error(
    listener: &'static str,
    address: impl ToString,
    option: &'static str,
) -> impl FnOnce(std::io::Error) -> IngestError {
    move |source| IngestError::SocketOption {
        listener,
        address: address.to_string(),
        option,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> Option<SocketAddr> {
        parse_listen_address(s).unwrap()
    }

    #[test]
    fn empty_address_disables_the_listener() {
        assert_eq!(parsed(""), None);
    }

    #[test]
    fn port_only_means_all_interfaces_dual_stack() {
        assert_eq!(parsed(":9125"), Some("[::]:9125".parse().unwrap()));
    }

    #[test]
    fn literal_addresses() {
        assert_eq!(
            parsed("127.0.0.1:9125"),
            Some("127.0.0.1:9125".parse().unwrap())
        );
        assert_eq!(parsed("[::1]:9125"), Some("[::1]:9125".parse().unwrap()));
        assert_eq!(parsed("0.0.0.0:0"), Some("0.0.0.0:0".parse().unwrap()));
        assert_eq!(parsed("[::]:65535"), Some("[::]:65535".parse().unwrap()));
    }

    #[test]
    fn localhost_resolves_preferring_ipv4() {
        let addr = parsed("localhost:9125").unwrap();
        assert_eq!(addr.port(), 9125);
        assert!(addr.ip().is_loopback(), "{addr}");
    }

    #[test]
    fn malformed_addresses_are_rejected() {
        for bad in [
            "9125",
            "127.0.0.1",
            "127.0.0.1:",
            ":port",
            ":65536",
            ":-1",
            "::1:9125",
            "[::1:9125",
            "::1]:9125",
        ] {
            let err = parse_listen_address(bad).unwrap_err();
            assert!(
                matches!(err, IngestError::InvalidAddress { .. }),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn unresolvable_host_is_a_resolve_error() {
        let err = parse_listen_address("no-such-host.invalid:9125").unwrap_err();
        assert!(matches!(err, IngestError::Resolve { .. }), "{err}");
    }

    #[test]
    fn log_limiter_lets_one_through_per_interval() {
        let limiter = LogLimiter::new(Duration::from_secs(3600));
        assert!(limiter.allow());
        assert!(!limiter.allow());
    }
}
