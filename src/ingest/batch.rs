//! The receive loop shared by the UDP and unixgram listeners: batches of datagrams from a
//! [`BatchReceiver`] into a [`Sink`], with packet counts, where the kernel only reports drops
//! with `SO_RXQ_OVFL` the drop count it stamps on datagrams, and (UDP) a [`Backlog`] that
//! empties the socket into a bounded queue while handling is slow.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::backlog::{Backlog, DrainClock, MAX_BACKLOG_BYTES};
use super::sys::{BatchReceiver, Datagram};
use super::{IngestError, MAX_DATAGRAM, Sink};
use crate::logging::LogLimiter;
use crate::telemetry::catalog::{self, Family};

/// How a listener's receive threads run: the listener they belong to, how many datagrams
/// one `recvmmsg` takes, what they count, and how many datagrams each may set aside while
/// busy (0: none).
pub(crate) struct ReceiveThreads {
    pub(crate) listener: &'static str,
    pub(crate) batch: usize,
    pub(crate) packets: &'static Family<0>,
    pub(crate) queue: usize,
}

impl ReceiveThreads {
    /// Starts the thread `name`, receiving from `socket` (bound to `address`, with a receive
    /// timeout) into `sink` until `stop` is set. `stamped_drops`, for a socket with
    /// `SO_RXQ_OVFL` on, is where the kernel's drop count is stored as datagrams bring it.
    pub(crate) fn spawn<S: Sink>(
        &self,
        name: String,
        address: &str,
        socket: impl AsRawFd + Send + 'static,
        mut sink: S,
        stop: Arc<AtomicBool>,
        stamped_drops: Option<Arc<AtomicU32>>,
    ) -> Result<JoinHandle<()>, IngestError> {
        let (listener, batch, packets, queue) =
            (self.listener, self.batch, self.packets, self.queue);
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let mut receiver =
                    BatchReceiver::new(batch, stamped_drops.is_some(), sink.wants_sender());
                // Handles are made once per thread; incrementing them is a relaxed atomic add.
                let counters = LoopCounters {
                    packets: packets.counter([]),
                    stamped_drops,
                    bytes: catalog::RECEIVED_BYTES.counter([listener.into()]),
                    queued: catalog::UDP_PACKETS_QUEUED.counter([]),
                };
                let mut backlog = Backlog::new(queue, MAX_BACKLOG_BYTES);
                run_receive_loop(
                    &socket,
                    &mut sink,
                    &mut receiver,
                    &mut backlog,
                    &counters,
                    &stop,
                    listener,
                );
            })
            .map_err(|source| IngestError::Spawn {
                name,
                address: address.to_owned(),
                source,
            })
    }
}

/// What a receive loop reports, besides handing datagrams to its sink.
pub(crate) struct LoopCounters {
    /// Incremented by the number of datagrams in each batch.
    pub(crate) packets: metrics::Counter,
    /// Set to the kernel's drop count whenever a datagram carries it (`SO_RXQ_OVFL`); `None`
    /// when drops are read another way or not at all.
    pub(crate) stamped_drops: Option<Arc<AtomicU32>>,
    /// Incremented by the payload bytes of each batch.
    pub(crate) bytes: metrics::Counter,
    /// Incremented by the datagrams set aside in the backlog.
    pub(crate) queued: metrics::Counter,
}

static RECEIVE_ERROR_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));
static TRUNCATED_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));

/// Receives batches from `socket` into `sink` until `stop` is set. The socket must have a
/// receive timeout so that the flag is looked at regularly. When `receiver` records source
/// addresses, each datagram's sender is named to the sink before the datagram.
///
/// When handling keeps the thread from the socket for a while, what the socket holds is read
/// into `backlog` (while it has room), and the backlog is handled before the socket is read
/// again; datagrams reach the sink in the order they arrived either way.
pub(crate) fn run_receive_loop<S: Sink>(
    socket: &impl AsRawFd,
    sink: &mut S,
    receiver: &mut BatchReceiver,
    backlog: &mut Backlog,
    counters: &LoopCounters,
    stop: &Arc<AtomicBool>,
    listener: &'static str,
) {
    let name_senders = receiver.records_sources();
    let batch = receiver.capacity();
    let mut spill = Spill {
        // Made at the first drain: most threads never need its batch × 64 KiB.
        receiver: None,
        batch,
        drop_counter: counters.stamped_drops.is_some(),
        sources: name_senders,
        clock: DrainClock::new(),
        enabled: backlog.enabled(),
    };
    while !stop.load(Ordering::Relaxed) {
        if !backlog.is_empty() {
            handle_backlog(socket, sink, backlog, &mut spill, counters, stop, listener);
            continue;
        }
        match receiver.receive(socket) {
            Ok(n) => {
                spill.clock.read();
                each_accepted(receiver, n, counters, listener, |payload, source| {
                    if name_senders {
                        sink.sender(source);
                    }
                    sink.datagram(payload);
                    spill.after(payload.len(), socket, backlog, counters, listener);
                });
                sink.flush();
            }
            Err(err) => match err.kind() {
                // Receive timeout: nothing arrived; let the sink publish and look at `stop`.
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => sink.flush(),
                io::ErrorKind::Interrupted => {}
                _ => {
                    if RECEIVE_ERROR_LOG.allow().is_some() {
                        tracing::warn!(listener, error = %err, "receive failed; continuing");
                    }
                    sink.flush();
                    // Some errors persist (e.g. ENOMEM); do not spin on them.
                    std::thread::sleep(Duration::from_millis(1));
                }
            },
        }
    }
    sink.flush();
}

/// Hands the backlog to `sink` from its front, reading the socket into its back whenever
/// handling has been slow, until it is empty or `stop` is set. Flushes the sink after every
/// `batch` datagrams, as after a batch read from the socket.
fn handle_backlog<S: Sink>(
    socket: &impl AsRawFd,
    sink: &mut S,
    backlog: &mut Backlog,
    spill: &mut Spill,
    counters: &LoopCounters,
    stop: &AtomicBool,
    listener: &'static str,
) {
    let mut handled = 0;
    while let Some((payload, source)) = backlog.front() {
        if spill.sources {
            sink.sender(source);
        }
        let len = payload.len();
        sink.datagram(payload);
        backlog.pop();
        spill.after(len, socket, backlog, counters, listener);
        handled += 1;
        if handled % spill.batch == 0 {
            sink.flush();
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
    }
    sink.flush();
}

/// Counts the `n` datagrams `receiver` just took and their bytes, and calls `each` with the
/// payload and sender of every one that was not cut.
fn each_accepted(
    receiver: &BatchReceiver,
    n: usize,
    counters: &LoopCounters,
    listener: &'static str,
    mut each: impl FnMut(&[u8], Option<IpAddr>),
) {
    counters.packets.increment(n as u64);
    let mut bytes = 0u64;
    for i in 0..n {
        let datagram = receiver.datagram(i);
        bytes += datagram.payload.len() as u64;
        if let Some(payload) = accept(&datagram, counters, listener) {
            each(payload, datagram.source);
        }
    }
    counters.bytes.increment(bytes);
}

/// Records the drop count a datagram carries and returns its payload, or `None` (logged) for
/// a datagram the kernel cut, which would end in a half line that parses as garbage.
fn accept<'a>(
    datagram: &Datagram<'a>,
    counters: &LoopCounters,
    listener: &'static str,
) -> Option<&'a [u8]> {
    // The kernel's counter is cumulative per socket. It is stamped on a datagram when that
    // datagram is queued, and only when non-zero, so drops show up with the next datagram
    // that gets through.
    if let (Some(count), Some(stamped)) = (datagram.drop_count, &counters.stamped_drops) {
        stamped.store(count, Ordering::Relaxed);
    }
    if datagram.truncated {
        if TRUNCATED_LOG.allow().is_some() {
            tracing::warn!(
                listener,
                "dropping a truncated datagram (larger than {MAX_DATAGRAM} bytes)"
            );
        }
        return None;
    }
    Some(datagram.payload)
}

/// What a receive loop needs to read its socket into the backlog between datagrams.
struct Spill {
    receiver: Option<BatchReceiver>,
    batch: usize,
    drop_counter: bool,
    sources: bool,
    clock: DrainClock,
    enabled: bool,
}

impl Spill {
    /// A datagram of `len` bytes was handled: if the socket has waited long enough, reads what
    /// it holds into `backlog`.
    fn after(
        &mut self,
        len: usize,
        socket: &impl AsRawFd,
        backlog: &mut Backlog,
        counters: &LoopCounters,
        listener: &'static str,
    ) {
        if self.enabled && self.clock.handled(len) {
            self.drain(socket, backlog, counters, listener);
            self.clock.read();
        }
    }

    /// Reads, without waiting, what the socket holds into `backlog`, while it has room for a
    /// batch of datagrams as large as they can be: a datagram once read cannot be left for
    /// later, and the backlog must not take more than its bounds.
    fn drain(
        &mut self,
        socket: &impl AsRawFd,
        backlog: &mut Backlog,
        counters: &LoopCounters,
        listener: &'static str,
    ) {
        let (batch, drop_counter, sources) = (self.batch, self.drop_counter, self.sources);
        let receiver = self
            .receiver
            .get_or_insert_with(|| BatchReceiver::new(batch, drop_counter, sources));
        loop {
            let room = backlog.room(MAX_DATAGRAM).min(batch);
            if room == 0 {
                return;
            }
            let n = match receiver.receive_queued(socket, room) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                // Left to the main loop's next receive, which reports it.
                Err(_) => return,
            };
            let mut queued = 0u64;
            each_accepted(receiver, n, counters, listener, |payload, source| {
                // Cannot fail: `room` was checked for datagrams of the largest size.
                let pushed = backlog.push(payload, source);
                debug_assert!(pushed, "the backlog had room for the batch");
                queued += u64::from(pushed);
            });
            counters.queued.increment(queued);
            if n < room {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::RECEIVE_TIMEOUT;
    use crate::ingest::sys::{enable_drop_counter, socket_drops};
    use crate::telemetry::catalog;
    use std::net::{SocketAddr, UdpSocket};
    use std::time::Instant;

    /// Drives the drop test from inside the receive loop: once the loop has drained the
    /// queue (a flush with no datagram since the last one, i.e. a receive timeout), it sends
    /// one more datagram, which the kernel stamps with its drop count; seeing that datagram
    /// stops the loop. A deadline stops it too, so a lost datagram fails the test instead of
    /// hanging it.
    struct DropProbe {
        client: UdpSocket,
        server: SocketAddr,
        stop: Arc<AtomicBool>,
        deadline: Instant,
        datagrams: u64,
        since_flush: u64,
        flushes: u64,
        probe_sent: bool,
        probe_seen: bool,
    }

    const PROBE: &[u8] = b"after:1|c";

    impl Sink for DropProbe {
        fn datagram(&mut self, payload: &[u8]) {
            self.datagrams += 1;
            self.since_flush += 1;
            if payload == PROBE {
                self.probe_seen = true;
                self.stop.store(true, Ordering::Relaxed);
            }
        }
        fn line(&mut self, _line: &[u8]) {}
        fn flush(&mut self) {
            self.flushes += 1;
            if self.since_flush == 0 && !self.probe_sent {
                self.client.send_to(PROBE, self.server).unwrap();
                self.probe_sent = true;
            }
            self.since_flush = 0;
            if Instant::now() > self.deadline {
                self.stop.store(true, Ordering::Relaxed);
            }
        }
    }

    fn counter_value(rendered: &str, name: &str) -> u64 {
        rendered
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    #[test]
    fn batches_preserve_payloads_and_lengths() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_read_timeout(Some(RECEIVE_TIMEOUT)).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let payloads: [&[u8]; 3] = [b"one:1|c", b"", b"three:3|c\nfour:4|c"];
        for payload in payloads {
            client
                .send_to(payload, server.local_addr().unwrap())
                .unwrap();
        }
        let mut receiver = BatchReceiver::new(2, true, false);
        let mut got = Vec::new();
        while got.len() < payloads.len() {
            let n = receiver.receive(&server).unwrap();
            assert!(n <= 2);
            for i in 0..n {
                let datagram = receiver.datagram(i);
                assert!(!datagram.truncated);
                assert_eq!(datagram.drop_count, None);
                assert_eq!(datagram.source, None, "sources not recorded");
                got.push(datagram.payload.to_vec());
            }
        }
        assert_eq!(got, payloads.map(<[u8]>::to_vec));
        // Nothing left: the receive timeout surfaces as WouldBlock.
        let err = receiver.receive(&server).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    /// The kernel stamps its drop count on datagrams queued after the drops, so the count is
    /// stored with the next datagram that gets through, and is then what `SO_MEMINFO` reads.
    #[test]
    fn kernel_drops_are_stored_from_so_rxq_ovfl() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_read_timeout(Some(RECEIVE_TIMEOUT)).unwrap();
        socket2::SockRef::from(&server)
            .set_recv_buffer_size(4096)
            .unwrap();
        enable_drop_counter(&server).unwrap();
        let addr = server.local_addr().unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sent = 300u64;
        for _ in 0..sent {
            client.send_to(&[b'x'; 1000], addr).unwrap();
        }

        let stop = Arc::new(AtomicBool::new(false));
        let mut probe = DropProbe {
            client,
            server: addr,
            stop: Arc::clone(&stop),
            deadline: Instant::now() + Duration::from_secs(10),
            datagrams: 0,
            since_flush: 0,
            flushes: 0,
            probe_sent: false,
            probe_seen: false,
        };
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let stamped = Arc::new(AtomicU32::new(0));
        metrics::with_local_recorder(&recorder, || {
            let counters = LoopCounters {
                packets: catalog::UDP_PACKETS.counter([]),
                stamped_drops: Some(Arc::clone(&stamped)),
                bytes: metrics::Counter::noop(),
                queued: metrics::Counter::noop(),
            };
            let mut receiver = BatchReceiver::new(8, true, false);
            // Nothing set aside: every drop is the kernel's.
            let mut backlog = Backlog::new(0, 0);
            run_receive_loop(
                &server,
                &mut probe,
                &mut receiver,
                &mut backlog,
                &counters,
                &stop,
                "udp",
            );
        });

        assert!(probe.probe_seen, "the datagram sent after draining arrived");
        let rendered = handle.render();
        let packets = counter_value(&rendered, catalog::UDP_PACKETS.name);
        let drops = u64::from(stamped.load(Ordering::Relaxed));
        assert_eq!(packets, probe.datagrams);
        assert!(drops > 0, "{rendered}");
        assert_eq!(packets + drops, sent + 1, "{rendered}");
        assert_eq!(u64::from(socket_drops(&server).unwrap()), drops);
        assert!(probe.flushes >= 2, "flushed after batches and on timeouts");
    }

    /// Records what the loop tells it, and stops the loop after `want` datagrams.
    struct SenderRecorder {
        calls: Vec<String>,
        datagrams: usize,
        want: usize,
        stop: Arc<AtomicBool>,
    }

    impl Sink for SenderRecorder {
        fn datagram(&mut self, payload: &[u8]) {
            self.calls
                .push(format!("datagram {}", String::from_utf8_lossy(payload)));
            self.datagrams += 1;
            if self.datagrams == self.want {
                self.stop.store(true, Ordering::Relaxed);
            }
        }
        fn line(&mut self, _line: &[u8]) {}
        fn flush(&mut self) {}
        fn wants_sender(&self) -> bool {
            true
        }
        fn sender(&mut self, from: Option<std::net::IpAddr>) {
            self.calls.push(format!("sender {from:?}"));
        }
    }

    fn run_recording(socket: &impl AsRawFd, want: usize) -> Vec<String> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut sink = SenderRecorder {
            calls: Vec::new(),
            datagrams: 0,
            want,
            stop: Arc::clone(&stop),
        };
        let counters = LoopCounters {
            packets: metrics::Counter::noop(),
            stamped_drops: None,
            bytes: metrics::Counter::noop(),
            queued: metrics::Counter::noop(),
        };
        let mut receiver = BatchReceiver::new(4, false, sink.wants_sender());
        let mut backlog = Backlog::new(100, MAX_BACKLOG_BYTES);
        let deadline = Instant::now() + Duration::from_secs(10);
        // The loop returns once the sink has seen `want` datagrams; the deadline is only
        // looked at between receive timeouts, through a flag set from another thread.
        let guard_stop = Arc::clone(&stop);
        let guard = std::thread::spawn(move || {
            while !guard_stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            guard_stop.store(true, Ordering::Relaxed);
        });
        run_receive_loop(
            socket,
            &mut sink,
            &mut receiver,
            &mut backlog,
            &counters,
            &stop,
            "udp",
        );
        guard.join().unwrap();
        sink.calls
    }

    #[test]
    fn each_udp_datagram_is_preceded_by_its_source_address() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_read_timeout(Some(RECEIVE_TIMEOUT)).unwrap();
        let addr = server.local_addr().unwrap();
        // Linux routes all of 127/8 to loopback, so each client has its own source address.
        for (from, payload) in [
            ("127.0.0.2:0", "a:1|g"),
            ("127.0.0.3:0", "b:2|g"),
            ("127.0.0.2:0", "c:3|g"),
        ] {
            let client = UdpSocket::bind(from).unwrap();
            client.send_to(payload.as_bytes(), addr).unwrap();
        }
        assert_eq!(
            run_recording(&server, 3),
            [
                "sender Some(127.0.0.2)",
                "datagram a:1|g",
                "sender Some(127.0.0.3)",
                "datagram b:2|g",
                "sender Some(127.0.0.2)",
                "datagram c:3|g",
            ]
        );
    }

    #[test]
    fn ipv6_sources_are_recorded() {
        let server = UdpSocket::bind("[::1]:0").unwrap();
        server.set_read_timeout(Some(RECEIVE_TIMEOUT)).unwrap();
        let client = UdpSocket::bind("[::1]:0").unwrap();
        client
            .send_to(b"a:1|g", server.local_addr().unwrap())
            .unwrap();
        assert_eq!(
            run_recording(&server, 1),
            ["sender Some(::1)", "datagram a:1|g"]
        );
    }

    #[test]
    fn unixgram_datagrams_have_no_sender_address() {
        let (server, client) = std::os::unix::net::UnixDatagram::pair().unwrap();
        server.set_read_timeout(Some(RECEIVE_TIMEOUT)).unwrap();
        client.send(b"a:1|g").unwrap();
        assert_eq!(run_recording(&server, 1), ["sender None", "datagram a:1|g"]);
    }

    /// Takes `delay` over each of its first `slow` datagrams, as thousands of first sights
    /// would, records every payload and sender, and stops the loop at the first `END`.
    struct SlowSink {
        delay: Duration,
        slow: usize,
        payloads: Vec<Vec<u8>>,
        /// The sender named before each recorded payload.
        senders: Vec<Option<std::net::IpAddr>>,
        last_sender: Option<Option<std::net::IpAddr>>,
        stop: Arc<AtomicBool>,
    }

    const END: &[u8] = b"end";

    impl Sink for SlowSink {
        fn datagram(&mut self, payload: &[u8]) {
            if payload == END {
                self.stop.store(true, Ordering::Relaxed);
                return;
            }
            self.payloads.push(payload.to_vec());
            self.senders.extend(self.last_sender.take());
            if self.payloads.len() <= self.slow {
                std::thread::sleep(self.delay);
            }
        }
        fn line(&mut self, _line: &[u8]) {}
        fn flush(&mut self) {}
        fn wants_sender(&self) -> bool {
            true
        }
        fn sender(&mut self, from: Option<std::net::IpAddr>) {
            self.last_sender = Some(from);
        }
    }

    /// What [`slow_start`] saw.
    struct SlowStart {
        sent: Vec<Vec<u8>>,
        received: Vec<Vec<u8>>,
        senders: Vec<Option<std::net::IpAddr>>,
        kernel_drops: u32,
        queued: u64,
        packets: u64,
    }

    /// Sends 400 datagrams of 2 KiB, one a millisecond, from 127.0.0.5 to a socket with a
    /// 512 KiB buffer (about 120 of them) read by a loop whose sink takes 10 ms over each of
    /// its first 64: 640 ms of slow handling. Without a backlog a batch of 32 slow datagrams
    /// keeps the thread from the socket for up to 320 ms, far more than the buffer holds; with
    /// one, the socket is emptied after each slow datagram, when about 10 wait in it.
    fn slow_start(queue: usize) -> SlowStart {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_read_timeout(Some(RECEIVE_TIMEOUT)).unwrap();
        socket2::SockRef::from(&server)
            .set_recv_buffer_size(256 << 10)
            .unwrap();
        let addr = server.local_addr().unwrap();
        let sent: Vec<Vec<u8>> = (0..400)
            .map(|i| {
                let mut payload = format!("seq{i:04}:1|c\n").into_bytes();
                payload.resize(2048, b'#');
                payload
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let (sent, stop) = (sent.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let client = UdpSocket::bind("127.0.0.5:0").unwrap();
                for payload in &sent {
                    client.send_to(payload, addr).unwrap();
                    std::thread::sleep(Duration::from_millis(1));
                }
                // Repeated, in case the first is dropped; bounded so a broken loop fails.
                let deadline = Instant::now() + Duration::from_secs(10);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    client.send_to(END, addr).unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                }
                stop.store(true, Ordering::Relaxed);
            })
        };
        let mut sink = SlowSink {
            delay: Duration::from_millis(10),
            slow: 64,
            payloads: Vec::new(),
            senders: Vec::new(),
            last_sender: None,
            stop: Arc::clone(&stop),
        };
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let counters = LoopCounters {
                packets: catalog::UDP_PACKETS.counter([]),
                stamped_drops: None,
                bytes: metrics::Counter::noop(),
                queued: catalog::UDP_PACKETS_QUEUED.counter([]),
            };
            let mut receiver = BatchReceiver::new(32, false, true);
            let mut backlog = Backlog::new(queue, MAX_BACKLOG_BYTES);
            run_receive_loop(
                &server,
                &mut sink,
                &mut receiver,
                &mut backlog,
                &counters,
                &stop,
                "udp",
            );
        });
        sender.join().unwrap();
        let rendered = handle.render();
        SlowStart {
            sent,
            received: sink.payloads,
            senders: sink.senders,
            kernel_drops: socket_drops(&server).unwrap(),
            queued: counter_value(&rendered, catalog::UDP_PACKETS_QUEUED.name),
            packets: counter_value(&rendered, catalog::UDP_PACKETS.name),
        }
    }

    #[test]
    fn slow_handling_empties_the_socket_into_the_backlog_in_order() {
        let run = slow_start(10_000);
        assert_eq!(run.kernel_drops, 0);
        assert_eq!(run.received.len(), run.sent.len());
        assert!(
            run.received == run.sent,
            "every datagram, in the order sent"
        );
        let from: std::net::IpAddr = "127.0.0.5".parse().unwrap();
        assert_eq!(run.senders.len(), run.received.len());
        assert!(
            run.senders.iter().all(|s| *s == Some(from)),
            "each datagram named its sender, queued or not"
        );
        assert!(
            run.queued >= 100,
            "most of the slow stretch's datagrams went through the backlog: {}",
            run.queued
        );
        assert!(run.packets > run.sent.len() as u64);
    }

    /// The same load without a backlog overflows the buffer: the test above can fail.
    #[test]
    fn without_a_backlog_the_same_slow_start_loses_datagrams() {
        let run = slow_start(0);
        assert!(run.kernel_drops > 0, "the kernel dropped some");
        assert_eq!(run.queued, 0);
        // The drops may include repeated END datagrams.
        assert!(run.received.len() < run.sent.len());
        assert!(run.received.len() + run.kernel_drops as usize >= run.sent.len());
        // What got through is still in order.
        let mut sent = run.sent.iter();
        assert!(run.received.iter().all(|r| sent.any(|s| s == r)));
    }

    /// A backlog smaller than the slow stretch needs takes what it can and no more; the rest
    /// waits in the kernel's buffer or is dropped there and counted.
    #[test]
    fn a_small_backlog_holds_no_more_than_its_bound() {
        let run = slow_start(5);
        assert!(
            run.kernel_drops > 0,
            "5 datagrams are not enough to bridge 640 ms"
        );
        assert!(run.received.len() < run.sent.len());
        assert!(run.received.len() + run.kernel_drops as usize >= run.sent.len());
        assert!(run.queued > 0);
        let mut sent = run.sent.iter();
        assert!(run.received.iter().all(|r| sent.any(|s| s == r)));
    }
}
