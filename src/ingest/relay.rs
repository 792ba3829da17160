//! `--statsd.relay.address`: forwards every non-empty received line, unmodified, to another
//! statsd server, as statsd_exporter's relay does (`pkg/relay/relay.go`): lines joined with
//! `\n` into UDP packets of at most `--statsd.relay.packet-length` bytes, sent when the
//! next line would not fit and at least once a second; a line that cannot fit a packet on
//! its own is not relayed and is counted.
//!
//! Relaying decorates the listeners' sinks: [`Relayed`] wraps a [`SinkFactory`] so that
//! every sink it makes tees each line to its own [`Relay`] (a connected socket and a
//! buffer) before passing it on. Relaying adds a copy per line and a send per packet, and
//! no lock.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use metrics::Counter;

use super::{Sink, SinkFactory, datagram_lines};
use crate::telemetry::catalog;

/// How often a partly filled packet is sent anyway.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Makes sinks that relay every line to a target, then hand it to `inner`'s sink. With no
/// target the sinks pass everything straight through.
#[derive(Debug)]
pub struct Relayed<F> {
    inner: F,
    target: Option<RelayTarget>,
}

impl<F: SinkFactory> Relayed<F> {
    /// Relays to `target`, when there is one, in front of `inner`'s sinks.
    pub fn new(inner: F, target: Option<RelayTarget>) -> Relayed<F> {
        Relayed { inner, target }
    }
}

impl<F: SinkFactory> SinkFactory for Relayed<F> {
    type Sink = RelayedSink<F::Sink>;

    fn make_sink(&self) -> Self::Sink {
        let relay = self.target.as_ref().and_then(|t| match Relay::new(t) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(error = %e, "relaying disabled for this receive thread");
                None
            }
        });
        RelayedSink {
            inner: self.inner.make_sink(),
            relay,
        }
    }
}

/// A sink that relays each line, then passes it on unchanged.
#[derive(Debug)]
pub struct RelayedSink<S> {
    inner: S,
    relay: Option<Relay>,
}

impl<S: Sink> Sink for RelayedSink<S> {
    fn datagram(&mut self, payload: &[u8]) {
        if let Some(relay) = &mut self.relay {
            for line in datagram_lines(payload) {
                relay.line(line);
            }
        }
        self.inner.datagram(payload);
    }

    fn line(&mut self, line: &[u8]) {
        if let Some(relay) = &mut self.relay {
            relay.line(line);
        }
        self.inner.line(line);
    }

    fn flush(&mut self) {
        if let Some(relay) = &mut self.relay {
            relay.tick();
        }
        self.inner.flush();
    }

    fn wants_sender(&self) -> bool {
        self.inner.wants_sender()
    }

    fn sender(&mut self, from: Option<std::net::IpAddr>) {
        self.inner.sender(from);
    }
}

/// Where to relay to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayTarget {
    /// The resolved target.
    pub addr: SocketAddr,
    /// The target as given on the command line, for the `target` label.
    pub label: String,
    /// Largest packet to send.
    pub packet_length: usize,
}

/// The relay could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The address does not resolve.
    #[error("relay address {0:?} does not resolve to a host and port")]
    Address(String),
    /// A packet must hold at least one byte and a newline.
    #[error("relay packet length {0} is too small")]
    PacketLength(usize),
    /// The socket could not be created or connected.
    #[error("cannot open a UDP socket to relay to {target}: {source}")]
    Socket {
        /// The target as given on the command line.
        target: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl RelayTarget {
    /// Resolves `addr` (`host:port`) once, at startup.
    pub fn new(addr: &str, packet_length: usize) -> Result<RelayTarget, RelayError> {
        if packet_length < 2 {
            return Err(RelayError::PacketLength(packet_length));
        }
        let resolved = addr
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| RelayError::Address(addr.to_string()))?;
        Ok(RelayTarget {
            addr: resolved,
            label: addr.to_string(),
            packet_length,
        })
    }
}

/// One receive thread's relay: its socket and the packet being filled.
#[derive(Debug)]
struct Relay {
    socket: UdpSocket,
    buf: Vec<u8>,
    packet_length: usize,
    last_send: Instant,
    packets: Counter,
    long_lines: Counter,
    lines_relayed: Counter,
}

impl Relay {
    /// Opens a socket connected to the target.
    fn new(target: &RelayTarget) -> Result<Relay, RelayError> {
        let bind: SocketAddr = if target.addr.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let socket = UdpSocket::bind(bind)
            .and_then(|s| s.connect(target.addr).map(|()| s))
            .map_err(|source| RelayError::Socket {
                target: target.label.clone(),
                source,
            })?;
        let label = target.label.clone();
        Ok(Relay {
            socket,
            buf: Vec::with_capacity(target.packet_length),
            packet_length: target.packet_length,
            last_send: Instant::now(),
            packets: catalog::RELAY_PACKETS.counter([label.clone().into()]),
            long_lines: catalog::RELAY_LONG_LINES.counter([label.clone().into()]),
            lines_relayed: catalog::RELAY_LINES_RELAYED.counter([label.into()]),
        })
    }

    /// Queues one line (without its newline). Empty lines are not relayed.
    #[inline]
    fn line(&mut self, line: &[u8]) {
        if line.is_empty() {
            return;
        }
        if line.len() + 1 > self.packet_length {
            self.long_lines.increment(1);
            return;
        }
        if self.buf.len() + line.len() + 1 > self.packet_length {
            self.send();
        }
        self.buf.extend_from_slice(line);
        self.buf.push(b'\n');
        self.lines_relayed.increment(1);
    }

    /// Sends a partly filled packet once it has waited a second. Call often.
    fn tick(&mut self) {
        if !self.buf.is_empty() && self.last_send.elapsed() >= FLUSH_INTERVAL {
            self.send();
        }
    }

    fn send(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        // UDP relaying is best effort, as in statsd_exporter: a refused or failed send
        // (the target is down) must not disturb ingestion.
        if self.socket.send(&self.buf).is_ok() {
            self.packets.increment(1);
        }
        self.buf.clear();
        self.last_send = Instant::now();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.send();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(packet_length: usize) -> (UdpSocket, Relay) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let target =
            RelayTarget::new(&rx.local_addr().unwrap().to_string(), packet_length).unwrap();
        (rx, Relay::new(&target).unwrap())
    }

    fn recv(rx: &UdpSocket) -> Vec<u8> {
        let mut b = [0u8; 2048];
        let n = rx.recv(&mut b).unwrap();
        b[..n].to_vec()
    }

    #[test]
    fn batches_lines_up_to_the_packet_length() {
        let (rx, mut r) = pair(20);
        r.line(b"a:1|c"); // 6 bytes with \n
        r.line(b"b:2|c"); // 12
        r.line(b"");
        r.line(b"c:3|c"); // 18
        r.line(b"d:4|c"); // would be 24: sends the first packet
        assert_eq!(recv(&rx), b"a:1|c\nb:2|c\nc:3|c\n");
        r.line(&[b'x'; 20]); // cannot fit a packet of 20 with its newline
        drop(r);
        assert_eq!(
            recv(&rx),
            b"d:4|c\n",
            "the rest is sent on drop, the long line never"
        );
    }

    #[test]
    fn a_partly_filled_packet_goes_out_after_a_second() {
        let (rx, mut r) = pair(1400);
        r.line(b"a:1|c");
        r.tick();
        rx.set_nonblocking(true).unwrap();
        let mut b = [0u8; 64];
        assert!(rx.recv(&mut b).is_err(), "not yet");
        r.last_send -= FLUSH_INTERVAL;
        r.tick();
        rx.set_nonblocking(false).unwrap();
        assert_eq!(recv(&rx), b"a:1|c\n");
    }

    /// Records what reaches the decorated sink.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
    }

    impl Sink for Recorder {
        fn datagram(&mut self, payload: &[u8]) {
            self.calls
                .push(format!("datagram {}", String::from_utf8_lossy(payload)));
        }
        fn line(&mut self, line: &[u8]) {
            self.calls
                .push(format!("line {}", String::from_utf8_lossy(line)));
        }
        fn flush(&mut self) {
            self.calls.push("flush".into());
        }
    }

    struct Recorders;

    impl SinkFactory for Recorders {
        type Sink = Recorder;
        fn make_sink(&self) -> Recorder {
            Recorder::default()
        }
    }

    #[test]
    fn relayed_sinks_tee_every_line_and_pass_everything_on() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let target = RelayTarget::new(&rx.local_addr().unwrap().to_string(), 1400).unwrap();
        let mut sink = Relayed::new(Recorders, Some(target)).make_sink();
        sink.datagram(b"a:1|c\n\nb:2|g");
        sink.line(b"c:3|ms");
        sink.flush();
        assert_eq!(
            sink.inner.calls,
            ["datagram a:1|c\n\nb:2|g", "line c:3|ms", "flush"]
        );
        drop(sink);
        assert_eq!(
            recv(&rx),
            b"a:1|c\nb:2|g\nc:3|ms\n",
            "empty lines are not relayed"
        );

        let mut plain = Relayed::new(Recorders, None).make_sink();
        assert!(plain.relay.is_none());
        plain.line(b"d:4|c");
        assert_eq!(plain.inner.calls, ["line d:4|c"]);
    }

    #[test]
    fn bad_targets_are_errors() {
        assert!(RelayTarget::new("no-port", 1400).is_err());
        assert!(RelayTarget::new("127.0.0.1:9125", 1).is_err());
    }
}
