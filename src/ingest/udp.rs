//! UDP listener: several `SO_REUSEPORT` sockets on one port, each read by its own thread with
//! batched `recvmmsg`, each thread feeding its own [`Sink`].
//!
//! Which socket (so which thread) gets a datagram is decided by a classic BPF program attached
//! to the reuseport group: a hash of the sender's IP address, not its port. All datagrams of
//! one host are therefore handled by one thread, in the order they arrived, even from a client
//! that opens a new socket (a new source port) per datagram; without it, a gauge set
//! (`x:5|g`) and the relative update after it (`x:+1|g`) could be applied by two threads in
//! the wrong order. Different hosts still spread over the threads.
//!
//! The port is claimed first by a plain socket without `SO_REUSEPORT`, so a port that another
//! process holds (another statsgate included: it could otherwise join the group and take a
//! share of the datagrams) fails the start with "address already in use", as in
//! statsd_exporter.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use socket2::{Protocol, SockRef, Socket, Type};

use super::batch::ReceiveThreads;
use super::drops;
use super::socket::{
    GrantedBuffer, ReadBuffer, bind_error, bind_with_ipv4_fallback, ip_socket, option_error,
    set_receive_timeout, size_read_buffer,
};
use super::sys::attach_reuseport_program;
use super::{IngestError, Listener, SinkFactory};
use crate::telemetry::catalog;

const LISTENER: &str = "udp";

/// statsd_exporter's `--statsd.udp-packet-queue-size` default.
pub const DEFAULT_PACKET_QUEUE: usize = 10_000;

/// How to run the UDP listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpOptions {
    /// Where to listen. Default `[::]:9125` (dual-stack, see
    /// [`parse_listen_address`](super::parse_listen_address)).
    pub addr: SocketAddr,
    /// How many `SO_REUSEPORT` sockets to open on `addr`, each with its own receive thread.
    /// Default 1; must be at least 1.
    pub sockets: usize,
    /// Each socket's receive buffer. Default: the largest the kernel allows up to
    /// [`DEFAULT_READ_BUFFER`](super::DEFAULT_READ_BUFFER). What the kernel granted is logged
    /// and given by [`Listener::read_buffers`].
    pub read_buffer: ReadBuffer,
    /// Datagrams taken per `recvmmsg` call. Default 32; must be at least 1. Each socket's
    /// thread preallocates `batch` × 65535 bytes.
    pub batch: usize,
    /// The most datagrams each receive thread reads from its socket and sets aside while
    /// handling is slow (statsd_exporter's `--statsd.udp-packet-queue-size`), at most 16 MiB
    /// of them; 0 sets none aside. Default 10,000.
    pub queue: usize,
}

impl Default for UdpOptions {
    /// `[::]:9125` (statsd_exporter's `:9125`), 1 socket, the largest receive buffer the
    /// kernel allows up to 8 MiB, batches of 32, a queue of 10,000 datagrams.
    fn default() -> Self {
        UdpOptions {
            addr: SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), 9125),
            sockets: 1,
            read_buffer: ReadBuffer::Largest(super::DEFAULT_READ_BUFFER),
            batch: 32,
            queue: DEFAULT_PACKET_QUEUE,
        }
    }
}

/// Binds `opts.sockets` UDP sockets to `opts.addr` and starts a receive thread
/// (`statsgate-udp-N`) for each, with a sink from `factory`.
///
/// All sockets are bound before any thread starts, so every bind error is returned here: a
/// port another process holds is [`IngestError::AddressInUse`], even when that process
/// bound it with `SO_REUSEPORT`. With port 0 the kernel picks a free port;
/// [`Listener::local_addr`] reports it.
///
/// Datagrams from one source address always go to the same socket (see the module
/// documentation). If the kernel refuses the program that does this, a warning is logged and
/// the kernel's own hash of address and port is used.
///
/// Each thread counts `statsd_exporter_udp_packets_total` per batch. Each socket's kernel drop
/// count is added to `statsd_exporter_udp_packet_drops_total` whenever the self-metrics are
/// rendered, and stays in it after the listener stops (see `drops.rs`).
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

    let sockets = u32::try_from(opts.sockets).map_err(|_| invalid("too many sockets"))?;
    let bind = |addr| bind_group(addr, sockets, opts.read_buffer);
    let Group {
        local_addr,
        sockets,
        read_buffers,
    } = bind_with_ipv4_fallback(LISTENER, opts.addr, bind)?;
    // `read_buffer` is SO_RCVBUF as read back: twice the usable bytes asked for.
    let first = read_buffers.first();
    tracing::info!(
        listener = "udp",
        address = %local_addr,
        sockets = opts.sockets,
        packet_queue = opts.queue,
        read_buffer = first.map(|g| g.bytes),
        read_buffer_set = first.map_or("system default", |g| g.option),
        "accepting statsd over UDP"
    );
    let read_buffers = read_buffers.iter().map(|g| g.bytes).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let mut listener = Listener {
        transport: LISTENER,
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
        queue: opts.queue,
    };
    let address = local_addr.to_string();
    for (index, socket) in sockets.into_iter().enumerate() {
        // Made here rather than in the thread so every sink exists when start_udp returns.
        let sink = factory.make_sink();
        let name = format!("statsgate-udp-{index}");
        let (socket, stamped_drops) = drops::track(socket, &address);
        // On error, dropping `listener` stops and joins the threads already started.
        let thread = threads.spawn(
            name,
            &address,
            socket,
            sink,
            Arc::clone(&stop),
            stamped_drops,
        )?;
        listener.threads.push(thread);
    }
    Ok(listener)
}

/// The bound sockets of a listener, in the order of their index in the reuseport group.
struct Group {
    local_addr: SocketAddr,
    sockets: Vec<Socket>,
    read_buffers: Vec<GrantedBuffer>,
}

/// Claims `addr`'s port, binds `sockets` reuseport sockets to it and attaches the program that
/// picks one of them by source address.
fn bind_group(
    addr: SocketAddr,
    sockets: u32,
    read_buffer: ReadBuffer,
) -> Result<Group, IngestError> {
    let local_addr = claim_port(addr)?;
    let mut group = Group {
        local_addr,
        sockets: Vec::new(),
        read_buffers: Vec::new(),
    };
    for _ in 0..sockets {
        let (socket, buffer) = bind_socket(local_addr, read_buffer)?;
        group.sockets.push(socket);
        group.read_buffers.extend(buffer);
    }
    if let Some(first) = group.sockets.first()
        && let Err(err) = attach_reuseport_program(first, &source_address_program(sockets))
    {
        // Not fatal: the kernel's own hash still spreads the datagrams, but a sender that
        // changes its source port may then have its datagrams handled out of order.
        tracing::warn!(
            address = %local_addr,
            error = %err,
            "cannot attach the reuseport program; datagrams of one sender may be handled \
             out of order by different receive threads (--statsd.udp-sockets=1 keeps order)"
        );
    }
    Ok(group)
}

/// Binds a plain socket, without `SO_REUSEPORT`, to `addr`, and closes it again: returns the
/// address with the port it got.
///
/// Any socket of another process on that port, with or without `SO_REUSEPORT`, makes this
/// bind fail with `EADDRINUSE`, whereas a reuseport bind would silently join that process's
/// group. With port 0 it also picks a port no one uses: a reuseport bind to port 0 may be
/// given a port that another reuseport group of the same user holds. Between this close and
/// the group's binds another process could take the port; it would then make those binds
/// fail (without `SO_REUSEPORT`) or get no datagrams (with it: the group's program only
/// picks sockets of this group).
fn claim_port(addr: SocketAddr) -> Result<SocketAddr, IngestError> {
    let probe = ip_socket(LISTENER, addr, Type::DGRAM, Protocol::UDP)?;
    probe
        .bind(&addr.into())
        .map_err(bind_error(LISTENER, addr))?;
    Ok(probe
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(addr))
}

/// A `SO_REUSEPORT` UDP socket bound to `addr`; also the receive buffer it got unless
/// `read_buffer` kept the system default.
fn bind_socket(
    addr: SocketAddr,
    read_buffer: ReadBuffer,
) -> Result<(Socket, Option<GrantedBuffer>), IngestError> {
    let socket = ip_socket(LISTENER, addr, Type::DGRAM, Protocol::UDP)?;
    socket
        .set_reuse_port(true)
        .map_err(option_error(LISTENER, addr, "SO_REUSEPORT"))?;
    let address = addr.to_string();
    let read_buffer = size_read_buffer(SockRef::from(&socket), LISTENER, &address, read_buffer)?;
    set_receive_timeout(SockRef::from(&socket), LISTENER, &address)?;
    socket
        .bind(&addr.into())
        .map_err(bind_error(LISTENER, addr))?;
    Ok((socket, read_buffer))
}

/// Multiplier of the source-address hash: 2^32 divided by the golden ratio, rounded to an
/// odd number. Multiplying by it carries every bit of the address into the product's high
/// half (Fibonacci hashing), which the program then reduces modulo the socket count; the low
/// bits alone would only reflect the address's low bits.
const SOURCE_HASH_MULTIPLIER: u32 = 0x9E37_79B1;

/// The classic BPF program that gives each datagram to socket
/// `((source * SOURCE_HASH_MULTIPLIER) >> 16) % sockets`, where `source` is the IPv4 source
/// address, or the xor of the four 32-bit words of the IPv6 one, as a big-endian number.
///
/// The kernel runs it with the UDP payload as its packet, so the IP header is read through
/// the negative `SKF_NET_OFF` offsets, which address the network header; the version nibble
/// tells IPv4 from IPv6 (an IPv6 socket that accepts IPv4 gets IPv4 headers). For anything
/// else it returns an index past the group, which makes the kernel use its own hash. An
/// out-of-range load (a truncated header) ends the program with 0: the first socket.
pub(crate) fn source_address_program(sockets: u32) -> Vec<libc::sock_filter> {
    use libc::{
        BPF_A, BPF_ABS, BPF_ALU, BPF_B, BPF_JA, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_MISC, BPF_MOD,
        BPF_MUL, BPF_RET, BPF_RSH, BPF_TAX, BPF_W, BPF_X, BPF_XOR,
    };
    fn op(code: u32, k: u32) -> libc::sock_filter {
        jump(code, k, 0, 0)
    }
    fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
        // Every BPF opcode fits in 16 bits.
        libc::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        }
    }
    // An offset into the IP header, encoded as the kernel's negative SKF_NET_OFF base.
    let net = |offset: i32| (libc::SKF_NET_OFF + offset) as u32;
    let load_word = |offset| op(BPF_LD | BPF_W | BPF_ABS, net(offset));
    let xor_x = op(BPF_ALU | BPF_XOR | BPF_X, 0);
    let tax = op(BPF_MISC | BPF_TAX, 0);
    // Jump offsets count instructions from the one after the jump; the numbers in the
    // comments are the instructions' indices.
    vec![
        /* 0 */ op(BPF_LD | BPF_B | BPF_ABS, net(0)),
        /* 1 */ op(BPF_ALU | BPF_RSH | BPF_K, 4), // A = IP version
        /* 2 */ jump(BPF_JMP | BPF_JEQ | BPF_K, 4, 0, 2), // IPv4: 3, else 5
        /* 3 */ load_word(12), // A = IPv4 source address
        /* 4 */ op(BPF_JMP | BPF_JA, 11), // to 16
        /* 5 */ jump(BPF_JMP | BPF_JEQ | BPF_K, 6, 0, 14), // IPv6: 6, else 20
        /* 6 */ load_word(8), // IPv6 source address: the words at 8, 12, 16, 20
        /* 7 */ tax,
        /* 8 */ load_word(12),
        /* 9 */ xor_x,
        /* 10 */ tax,
        /* 11 */ load_word(16),
        /* 12 */ xor_x,
        /* 13 */ tax,
        /* 14 */ load_word(20),
        /* 15 */ xor_x,
        /* 16 */ op(BPF_ALU | BPF_MUL | BPF_K, SOURCE_HASH_MULTIPLIER),
        /* 17 */ op(BPF_ALU | BPF_RSH | BPF_K, 16),
        /* 18 */ op(BPF_ALU | BPF_MOD | BPF_K, sockets.max(1)),
        /* 19 */ op(BPF_RET | BPF_A, 0),
        /* 20 */ op(BPF_RET | BPF_K, u32::MAX),
    ]
}

/// What [`source_address_program`] computes, for checking it against the kernel.
#[cfg(test)]
pub(crate) fn socket_for_source(source: std::net::IpAddr, sockets: u32) -> u32 {
    let word = match source.to_canonical() {
        std::net::IpAddr::V4(v4) => u32::from(v4),
        std::net::IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            (bits >> 96) as u32 ^ (bits >> 64) as u32 ^ (bits >> 32) as u32 ^ bits as u32
        }
    };
    (word.wrapping_mul(SOURCE_HASH_MULTIPLIER) >> 16) % sockets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Sink;
    use crate::ingest::socket::{granted_largest_read_buffer, granted_read_buffer};
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
            read_buffer: ReadBuffer::System,
            batch: 4,
            queue: DEFAULT_PACKET_QUEUE,
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

    /// Records which sink (so which socket: sinks are made in socket order) got each datagram.
    #[derive(Default)]
    struct BySocket {
        next: Mutex<usize>,
        seen: Mutex<Vec<(usize, Vec<u8>)>>,
    }

    struct SocketSink(usize, Arc<BySocket>);

    impl Sink for SocketSink {
        fn datagram(&mut self, payload: &[u8]) {
            self.1.seen.lock().unwrap().push((self.0, payload.to_vec()));
        }
        fn line(&mut self, _line: &[u8]) {}
        fn flush(&mut self) {}
    }

    impl SinkFactory for Arc<BySocket> {
        type Sink = SocketSink;
        fn make_sink(&self) -> SocketSink {
            let mut next = self.next.lock().unwrap();
            *next += 1;
            SocketSink(*next - 1, Arc::clone(self))
        }
    }

    /// Sends `per_source` datagrams from each source address, each from a new socket (so a
    /// new source port), to a listener of `sockets` sockets on `listen`, and checks that each
    /// landed on the socket `socket_for_source` names. Returns the sockets used.
    fn check_sources(listen: &str, sockets: u32, sources: &[std::net::IpAddr]) -> Vec<u32> {
        let by_socket = Arc::new(BySocket::default());
        let opts = UdpOptions {
            addr: listen.parse().unwrap(),
            ..options(sockets as usize)
        };
        let listener = start_udp(&opts, Arc::new(Arc::clone(&by_socket))).unwrap();
        let port = listener.local_addr().unwrap().port();
        let per_source = 5;
        for (i, source) in sources.iter().enumerate() {
            let target = SocketAddr::new(
                if source.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                },
                port,
            );
            for _ in 0..per_source {
                let client = std::net::UdpSocket::bind(SocketAddr::new(*source, 0)).unwrap();
                client.send_to(i.to_string().as_bytes(), target).unwrap();
            }
        }
        let total = sources.len() * per_source;
        let deadline = Instant::now() + Duration::from_secs(5);
        while by_socket.seen.lock().unwrap().len() < total && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        listener.shutdown();
        let seen = by_socket.seen.lock().unwrap();
        assert_eq!(seen.len(), total, "every datagram arrived");
        for (socket, payload) in seen.iter() {
            let i: usize = std::str::from_utf8(payload).unwrap().parse().unwrap();
            let want = socket_for_source(sources[i], sockets) as usize;
            assert_eq!(*socket, want, "datagram from {} on {listen}", sources[i]);
        }
        let mut used: Vec<u32> = sources
            .iter()
            .map(|s| socket_for_source(*s, sockets))
            .collect();
        used.sort_unstable();
        used.dedup();
        used
    }

    fn loopback_sources(n: u8) -> Vec<std::net::IpAddr> {
        (2..2 + n)
            .map(|last| std::net::Ipv4Addr::new(127, 0, 0, last).into())
            .collect()
    }

    #[test]
    fn each_source_address_has_its_socket_whatever_its_port() {
        let used = check_sources("127.0.0.1:0", 3, &loopback_sources(16));
        assert_eq!(used, [0, 1, 2], "16 hosts spread over all 3 sockets");
    }

    #[test]
    fn ipv4_and_ipv6_senders_of_a_dual_stack_listener_are_picked_by_address() {
        // The IPv6 program path, through the one IPv6 loopback address: ::1 hashes to socket 3
        // of 4, which neither a failed load (0) nor the kernel's own hash would pick for
        // every new port.
        let mut sources = loopback_sources(8);
        sources.push(std::net::Ipv6Addr::LOCALHOST.into());
        assert_eq!(
            socket_for_source(std::net::Ipv6Addr::LOCALHOST.into(), 4),
            3
        );
        let used = check_sources("[::]:0", 4, &sources);
        assert!(used.len() >= 3, "{used:?}");
    }

    #[test]
    fn the_program_is_accepted_for_any_socket_count() {
        for sockets in [1, 2, 7, 64] {
            // The kernel checks the program when it is attached, even to a lone socket.
            let reused = Socket::new(socket2::Domain::IPV4, Type::DGRAM, None).unwrap();
            reused.set_reuse_port(true).unwrap();
            reused
                .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
                .unwrap();
            attach_reuseport_program(&reused, &source_address_program(sockets)).unwrap();
        }
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
    fn port_in_use_without_reuseport_is_address_in_use() {
        // A plain socket (no SO_REUSEPORT) holds the port, so our reuseport bind must fail.
        let holder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut opts = options(1);
        opts.addr = holder.local_addr().unwrap();
        let err = start_udp(&opts, Arc::new(Arc::new(Recorded::default()))).unwrap_err();
        assert!(matches!(err, IngestError::AddressInUse { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!("listen udp {}: address already in use", opts.addr)
        );
    }

    #[test]
    fn port_held_by_another_reuseport_group_is_address_in_use() {
        // What a second gateway on the same port meets: the first one's sockets have
        // SO_REUSEPORT, and joining their group would silently take part of their traffic.
        let first = start_udp(&options(2), Arc::new(Arc::new(Recorded::default()))).unwrap();
        let mut opts = options(2);
        opts.addr = first.local_addr().unwrap();
        let err = start_udp(&opts, Arc::new(Arc::new(Recorded::default()))).unwrap_err();
        assert!(matches!(err, IngestError::AddressInUse { .. }), "{err}");
        first.shutdown();
    }

    #[test]
    fn read_buffer_is_applied() {
        let mut opts = options(2);
        opts.read_buffer = ReadBuffer::Bytes(1 << 16);
        let listener = start_udp(&opts, Arc::new(Arc::new(Recorded::default()))).unwrap();
        let want = granted_read_buffer(1 << 16);
        assert_eq!(listener.read_buffers(), [want, want]);
        listener.shutdown();

        for system in [ReadBuffer::System, ReadBuffer::Bytes(0)] {
            opts.read_buffer = system;
            let listener = start_udp(&opts, Arc::new(Arc::new(Recorded::default()))).unwrap();
            assert_eq!(
                listener.read_buffers(),
                [] as [usize; 0],
                "system default kept"
            );
            listener.shutdown();
        }
    }

    #[test]
    fn the_default_read_buffer_is_the_largest_allowed_up_to_8_mib() {
        let opts = UdpOptions {
            read_buffer: UdpOptions::default().read_buffer,
            ..options(2)
        };
        let listener = start_udp(&opts, Arc::new(Arc::new(Recorded::default()))).unwrap();
        let want = granted_largest_read_buffer(super::super::DEFAULT_READ_BUFFER);
        assert_eq!(listener.read_buffers(), [want, want]);
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
