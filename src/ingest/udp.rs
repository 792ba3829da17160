//! UDP listener: several `SO_REUSEPORT` sockets on one port, each read by its own thread with
//! batched `recvmmsg`, each thread feeding its own [`Sink`].
//!
//! The kernel spreads datagrams over the sockets by a hash of the sender's address and port, so
//! one busy sender stays on one thread while many senders use them all.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use socket2::{Domain, Protocol, Socket, Type};

use super::batch::{BatchReceiver, LoopCounters, enable_drop_counter, run_receive_loop};
use super::{IngestError, Listener, RECEIVE_TIMEOUT, SinkFactory, names, option_error};

const LISTENER: &str = "udp";

/// How to run the UDP listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpOptions {
    /// Where to listen. Default `[::]:9125` (dual-stack, see
    /// [`parse_listen_address`](super::parse_listen_address)).
    pub addr: SocketAddr,
    /// How many `SO_REUSEPORT` sockets to open on `addr`, each with its own receive thread.
    /// Default 1; must be at least 1.
    pub sockets: usize,
    /// `SO_RCVBUF` in bytes for each socket; 0 (the default) leaves the system default. The
    /// kernel caps it at `net.core.rmem_max` (and doubles it for bookkeeping); the effective
    /// value is logged.
    pub read_buffer: usize,
    /// Datagrams taken per `recvmmsg` call. Default 32; must be at least 1. Each socket's
    /// thread preallocates `batch` × 65535 bytes.
    pub batch: usize,
}

impl Default for UdpOptions {
    /// `[::]:9125` (statsd_exporter's `:9125`), 1 socket, system receive buffer, batches of 32.
    fn default() -> Self {
        UdpOptions {
            addr: SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), 9125),
            sockets: 1,
            read_buffer: 0,
            batch: 32,
        }
    }
}

/// Binds `opts.sockets` UDP sockets to `opts.addr` and starts a receive thread
/// (`statsgate-udp-N`) for each, with a sink from `factory`.
///
/// All sockets are bound before any thread starts, so every bind error (address in use,
/// permission denied) is returned here. With port 0 the first socket picks the port and the
/// others join it; [`Listener::local_addr`] reports it.
///
/// Each thread counts `statsd_exporter_udp_packets_total` per batch and, from the kernel's
/// `SO_RXQ_OVFL` counter, `statsd_exporter_udp_packet_drops_total`.
pub fn start_udp<F: SinkFactory>(
    opts: &UdpOptions,
    factory: Arc<F>,
) -> Result<Listener, IngestError> {
    let invalid = |reason| IngestError::InvalidOption {
        listener: LISTENER,
        address: opts.addr.to_string(),
        reason,
    };
    if opts.sockets == 0 {
        return Err(invalid("at least one socket is needed"));
    }
    if opts.batch == 0 {
        return Err(invalid("batch must be at least 1"));
    }

    let first = bind_with_fallback(opts.addr, opts.read_buffer)?;
    let local_addr = first
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(opts.addr);
    let mut sockets = vec![first];
    for _ in 1..opts.sockets {
        sockets.push(bind_socket(local_addr, opts.read_buffer)?);
    }
    tracing::info!(address = %local_addr, sockets = opts.sockets, "listening for statsd on UDP");

    let stop = Arc::new(AtomicBool::new(false));
    let mut listener = Listener {
        local_addr: Some(local_addr),
        stop: Arc::clone(&stop),
        threads: Vec::with_capacity(opts.sockets),
        task: None,
        socket_path: None,
    };
    for (index, socket) in sockets.into_iter().enumerate() {
        let name = format!("statsgate-udp-{index}");
        let stop = Arc::clone(&stop);
        let batch = opts.batch;
        // Made here rather than in the thread so every sink exists when start_udp returns.
        let mut sink = factory.make_sink();
        let spawned = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let mut receiver = BatchReceiver::new(batch, true);
                // Handles are made once per thread; incrementing them is a relaxed atomic add.
                let counters = LoopCounters {
                    packets: metrics::counter!(names::UDP_PACKETS),
                    drops: Some(metrics::counter!(names::UDP_PACKET_DROPS)),
                };
                run_receive_loop(
                    &socket,
                    &mut sink,
                    &mut receiver,
                    &counters,
                    &stop,
                    LISTENER,
                );
            });
        match spawned {
            Ok(handle) => listener.threads.push(handle),
            // Dropping `listener` stops and joins the threads already started.
            Err(source) => {
                return Err(IngestError::Spawn {
                    name,
                    address: local_addr.to_string(),
                    source,
                });
            }
        }
    }
    Ok(listener)
}

/// Binds `addr`; the all-interfaces IPv6 address falls back to IPv4 on hosts without IPv6.
fn bind_with_fallback(addr: SocketAddr, read_buffer: usize) -> Result<Socket, IngestError> {
    match bind_socket(addr, read_buffer) {
        Err(IngestError::Socket { source, .. }) | Err(IngestError::Bind { source, .. })
            if is_unspecified_v6(addr) && ipv6_unavailable(&source) =>
        {
            tracing::info!(error = %source, "IPv6 unavailable; listening for UDP on IPv4 only");
            bind_socket(
                SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), addr.port()),
                read_buffer,
            )
        }
        other => other,
    }
}

pub(crate) fn is_unspecified_v6(addr: SocketAddr) -> bool {
    matches!(addr, SocketAddr::V6(v6) if v6.ip().is_unspecified())
}

pub(crate) fn ipv6_unavailable(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL) | Some(libc::EPROTONOSUPPORT)
    )
}

fn bind_socket(addr: SocketAddr, read_buffer: usize) -> Result<Socket, IngestError> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(
        |source| IngestError::Socket {
            listener: LISTENER,
            address: addr.to_string(),
            source,
        },
    )?;
    if is_unspecified_v6(addr) {
        // One socket for IPv4 and IPv6 clients, like Go's wildcard listen.
        socket
            .set_only_v6(false)
            .map_err(option_error(LISTENER, addr, "IPV6_V6ONLY"))?;
    }
    socket
        .set_reuse_port(true)
        .map_err(option_error(LISTENER, addr, "SO_REUSEPORT"))?;
    if read_buffer > 0 {
        socket
            .set_recv_buffer_size(read_buffer)
            .map_err(option_error(LISTENER, addr, "SO_RCVBUF"))?;
        match socket.recv_buffer_size() {
            Ok(effective) => tracing::info!(
                address = %addr,
                requested = read_buffer,
                effective,
                "UDP receive buffer set (the kernel doubles the request and caps it at net.core.rmem_max)"
            ),
            Err(err) => tracing::warn!(address = %addr, error = %err, "cannot read back SO_RCVBUF"),
        }
    }
    socket
        .set_read_timeout(Some(RECEIVE_TIMEOUT))
        .map_err(option_error(LISTENER, addr, "SO_RCVTIMEO"))?;
    if let Err(err) = enable_drop_counter(&socket) {
        // Not fatal: only the drop counter is lost.
        tracing::warn!(address = %addr, error = %err, "cannot enable SO_RXQ_OVFL; kernel drops will not be counted");
    }
    socket
        .bind(&addr.into())
        .map_err(|source| IngestError::Bind {
            listener: LISTENER,
            address: addr.to_string(),
            source,
        })?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Sink;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    #[derive(Default)]
    struct Recorded {
        datagrams: Mutex<Vec<Vec<u8>>>,
        sinks: Mutex<usize>,
    }

    struct RecordingSink(Arc<Recorded>);

    impl Sink for RecordingSink {
        fn datagram(&mut self, payload: &[u8]) {
            self.0.datagrams.lock().unwrap().push(payload.to_vec());
        }
        fn line(&mut self, _line: &[u8]) {}
        fn flush(&mut self) {}
    }

    impl SinkFactory for Arc<Recorded> {
        type Sink = RecordingSink;
        fn make_sink(&self) -> RecordingSink {
            *self.sinks.lock().unwrap() += 1;
            RecordingSink(Arc::clone(self))
        }
    }

    fn options(sockets: usize) -> UdpOptions {
        UdpOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            sockets,
            read_buffer: 0,
            batch: 4,
        }
    }

    #[test]
    fn receives_datagrams_and_makes_a_sink_per_socket() {
        let recorded = Arc::new(Recorded::default());
        let listener = start_udp(&options(3), Arc::new(Arc::clone(&recorded))).unwrap();
        let addr = listener.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..20 {
            client
                .send_to(format!("m{i}:1|c").as_bytes(), addr)
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while recorded.datagrams.lock().unwrap().len() < 20 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        listener.shutdown();
        assert_eq!(*recorded.sinks.lock().unwrap(), 3);
        let mut got = recorded.datagrams.lock().unwrap().clone();
        got.sort();
        let mut want: Vec<Vec<u8>> = (0..20).map(|i| format!("m{i}:1|c").into_bytes()).collect();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn zero_sockets_or_batch_is_an_option_error() {
        let factory = Arc::new(Arc::new(Recorded::default()));
        let mut opts = options(0);
        assert!(matches!(
            start_udp(&opts, Arc::clone(&factory)),
            Err(IngestError::InvalidOption { .. })
        ));
        opts.sockets = 1;
        opts.batch = 0;
        assert!(matches!(
            start_udp(&opts, factory),
            Err(IngestError::InvalidOption { .. })
        ));
    }

    #[test]
    fn port_in_use_without_reuseport_is_a_bind_error() {
        // A plain socket (no SO_REUSEPORT) holds the port, so our reuseport bind must fail.
        let holder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut opts = options(1);
        opts.addr = holder.local_addr().unwrap();
        let err = start_udp(&opts, Arc::new(Arc::new(Recorded::default()))).unwrap_err();
        assert!(matches!(err, IngestError::Bind { .. }), "{err}");
        assert!(err.to_string().contains(&opts.addr.to_string()), "{err}");
    }

    #[test]
    fn read_buffer_is_applied() {
        let mut opts = options(1);
        opts.read_buffer = 1 << 16;
        let listener = start_udp(&opts, Arc::new(Arc::new(Recorded::default()))).unwrap();
        listener.shutdown();
    }

    #[test]
    fn shutdown_is_prompt() {
        let listener = start_udp(&options(2), Arc::new(Arc::new(Recorded::default()))).unwrap();
        let started = Instant::now();
        listener.shutdown();
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
