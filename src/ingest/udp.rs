//! UDP listener: several `SO_REUSEPORT` sockets on one port, each read by its own thread with
//! batched `recvmmsg`, each thread feeding its own [`Sink`].
//!
//! The kernel spreads datagrams over the sockets by a hash of the sender's address and port, so
//! one busy sender stays on one thread while many senders use them all.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use socket2::{Protocol, SockRef, Socket, Type};

use super::batch::ReceiveThreads;
use super::socket::{
    bind_error, bind_with_ipv4_fallback, ip_socket, option_error, set_read_buffer,
    set_receive_timeout,
};
use super::sys::enable_drop_counter;
use super::{IngestError, Listener, SinkFactory};
use crate::telemetry::catalog;

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
    /// value is logged and given by [`Listener::read_buffers`].
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

    let bind = |addr| bind_socket(addr, opts.read_buffer);
    let (first, first_buffer) = bind_with_ipv4_fallback(LISTENER, opts.addr, bind)?;
    let local_addr = first
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(opts.addr);
    let mut sockets = vec![first];
    let mut read_buffers: Vec<usize> = first_buffer.into_iter().collect();
    for _ in 1..opts.sockets {
        let (socket, buffer) = bind_socket(local_addr, opts.read_buffer)?;
        sockets.push(socket);
        read_buffers.extend(buffer);
    }
    tracing::info!(listener = "udp", address = %local_addr, sockets = opts.sockets, "accepting statsd over UDP");

    let stop = Arc::new(AtomicBool::new(false));
    let mut listener = Listener {
        local_addr: Some(local_addr),
        stop: Arc::clone(&stop),
        threads: Vec::with_capacity(opts.sockets),
        task: None,
        socket_path: None,
        read_buffers,
    };
    let threads = ReceiveThreads {
        listener: LISTENER,
        batch: opts.batch,
        packets: &catalog::UDP_PACKETS,
        drops: Some(&catalog::UDP_PACKET_DROPS),
    };
    let address = local_addr.to_string();
    for (index, socket) in sockets.into_iter().enumerate() {
        // Made here rather than in the thread so every sink exists when start_udp returns.
        let sink = factory.make_sink();
        let name = format!("statsgate-udp-{index}");
        // On error, dropping `listener` stops and joins the threads already started.
        let thread = threads.spawn(name, &address, socket, sink, Arc::clone(&stop))?;
        listener.threads.push(thread);
    }
    Ok(listener)
}

/// A `SO_REUSEPORT` UDP socket bound to `addr`, with the drop counter on; also the
/// `SO_RCVBUF` it got when `read_buffer` asked for one.
fn bind_socket(
    addr: SocketAddr,
    read_buffer: usize,
) -> Result<(Socket, Option<usize>), IngestError> {
    let socket = ip_socket(LISTENER, addr, Type::DGRAM, Protocol::UDP)?;
    socket
        .set_reuse_port(true)
        .map_err(option_error(LISTENER, addr, "SO_REUSEPORT"))?;
    let address = addr.to_string();
    let read_buffer = set_read_buffer(SockRef::from(&socket), LISTENER, &address, read_buffer)?;
    set_receive_timeout(SockRef::from(&socket), LISTENER, &address)?;
    if let Err(err) = enable_drop_counter(&socket) {
        // Not fatal: only the drop counter is lost.
        tracing::warn!(address = %addr, error = %err, "cannot enable SO_RXQ_OVFL; kernel drops will not be counted");
    }
    socket
        .bind(&addr.into())
        .map_err(bind_error(LISTENER, addr))?;
    Ok((socket, read_buffer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Sink;
    use crate::ingest::socket::granted_read_buffer;
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
        let mut opts = options(2);
        opts.read_buffer = 1 << 16;
        let listener = start_udp(&opts, Arc::new(Arc::new(Recorded::default()))).unwrap();
        let want = granted_read_buffer(opts.read_buffer);
        assert_eq!(listener.read_buffers(), [want, want]);
        listener.shutdown();

        opts.read_buffer = 0;
        let listener = start_udp(&opts, Arc::new(Arc::new(Recorded::default()))).unwrap();
        assert_eq!(
            listener.read_buffers(),
            [] as [usize; 0],
            "system default kept"
        );
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
