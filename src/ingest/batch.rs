//! The receive loop shared by the UDP and unixgram listeners: batches of datagrams from a
//! [`BatchReceiver`] into a [`Sink`], with packet counts and, where the kernel only reports
//! drops with `SO_RXQ_OVFL`, the drop count it stamps on datagrams.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::sys::BatchReceiver;
use super::{IngestError, MAX_DATAGRAM, Sink};
use crate::logging::LogLimiter;
use crate::telemetry::catalog::{self, Family};

/// How a listener's receive threads run: the listener they belong to, how many datagrams
/// one `recvmmsg` takes, and what they count.
pub(crate) struct ReceiveThreads {
    pub(crate) listener: &'static str,
    pub(crate) batch: usize,
    pub(crate) packets: &'static Family<0>,
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
        let (listener, batch, packets) = (self.listener, self.batch, self.packets);
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
                };
                run_receive_loop(
                    &socket,
                    &mut sink,
                    &mut receiver,
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
}

static RECEIVE_ERROR_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));
static TRUNCATED_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));

/// Receives batches from `socket` into `sink` until `stop` is set. The socket must have a
/// receive timeout so that the flag is looked at regularly. When `receiver` records source
/// addresses, each datagram's sender is named to the sink before the datagram.
pub(crate) fn run_receive_loop<S: Sink>(
    socket: &impl AsRawFd,
    sink: &mut S,
    receiver: &mut BatchReceiver,
    counters: &LoopCounters,
    stop: &Arc<AtomicBool>,
    listener: &'static str,
) {
    let name_senders = receiver.records_sources();
    while !stop.load(Ordering::Relaxed) {
        match receiver.receive(socket) {
            Ok(n) => {
                counters.packets.increment(n as u64);
                let mut bytes = 0u64;
                for i in 0..n {
                    let datagram = receiver.datagram(i);
                    bytes += datagram.payload.len() as u64;
                    // The kernel's counter is cumulative per socket. It is stamped on a
                    // datagram when that datagram is queued, and only when non-zero, so drops
                    // show up with the next datagram that gets through.
                    if let (Some(count), Some(stamped)) =
                        (datagram.drop_count, &counters.stamped_drops)
                    {
                        stamped.store(count, Ordering::Relaxed);
                    }
                    if datagram.truncated {
                        // A cut datagram would end in a half line that parses as garbage.
                        if TRUNCATED_LOG.allow().is_some() {
                            tracing::warn!(
                                listener,
                                "dropping a truncated datagram (larger than {MAX_DATAGRAM} bytes)"
                            );
                        }
                        continue;
                    }
                    if name_senders {
                        sink.sender(datagram.source);
                    }
                    sink.datagram(datagram.payload);
                }
                counters.bytes.increment(bytes);
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
            };
            let mut receiver = BatchReceiver::new(8, true, false);
            run_receive_loop(&server, &mut probe, &mut receiver, &counters, &stop, "udp");
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
        };
        let mut receiver = BatchReceiver::new(4, false, sink.wants_sender());
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
        run_receive_loop(socket, &mut sink, &mut receiver, &counters, &stop, "udp");
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
}
