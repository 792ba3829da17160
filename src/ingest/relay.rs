//! `--statsd.relay.address`: forwards every non-empty received line, unmodified, to other
//! statsd servers. With one target this is statsd_exporter's relay (`pkg/relay/relay.go`):
//! lines joined with `\n` into UDP packets of at most `--statsd.relay.packet-length` bytes,
//! sent when the next line would not fit and at least once a second; a line that cannot fit a
//! packet on its own is not relayed and is counted.
//!
//! The flag may be repeated. With several targets each line goes to exactly one of them,
//! chosen by a consistent hash of its series (`series_hash`, then `jump_hash` over the
//! targets in the order of the flags), and each target gets packets of its own. A series and
//! all its updates therefore land on one downstream gateway, which owns it outright; appending
//! an (n+1)th target moves about 1/(n+1) of the series, all of them to the new target. Every
//! relay counter carries the target's address as given in its `target` label.
//!
//! Relaying decorates the listeners' sinks: [`Relayed`] wraps a [`SinkFactory`] so that
//! every sink it makes tees each line to its own relays (one connected socket and one buffer
//! per target) before passing it on. Relaying adds a copy per line and a send per packet,
//! and no lock; with several targets, also a parse of the line and no allocation (unless a
//! SignalFx tag block sits in the middle of the name).

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use metrics::Counter;
use rapidhash::v3::rapidhash_v3;

use super::{Sink, SinkFactory, datagram_lines};
use crate::line::{Dialects, ParseCounters, Sample, parse_line};
use crate::telemetry::catalog;

/// How often a partly filled packet is sent anyway.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Makes sinks that relay every line to the targets, then hand it to `inner`'s sink. With
/// no target the sinks pass everything straight through.
#[derive(Debug)]
pub struct Relayed<F> {
    inner: F,
    targets: Vec<RelayTarget>,
    dialects: Dialects,
}

impl<F: SinkFactory> Relayed<F> {
    /// Relays to `targets`, in front of `inner`'s sinks: none passes everything straight
    /// through, one gets every line, several share the lines by series in this order. Lines
    /// are read with the default dialects unless [`with_dialects`](Self::with_dialects) says
    /// otherwise.
    pub fn new(inner: F, targets: impl IntoIterator<Item = RelayTarget>) -> Relayed<F> {
        Relayed {
            inner,
            targets: targets.into_iter().collect(),
            dialects: Dialects::default(),
        }
    }

    /// Reads each line's series with `dialects` when choosing among several targets; give
    /// the ones the gateway itself parses with, so the relay sees the same tags it does.
    pub fn with_dialects(mut self, dialects: Dialects) -> Relayed<F> {
        self.dialects = dialects;
        self
    }
}

impl<F: SinkFactory> SinkFactory for Relayed<F> {
    type Sink = RelayedSink<F::Sink>;

    fn make_sink(&self) -> Self::Sink {
        // All targets or none: without one of them this thread would send its series
        // elsewhere than every other thread does.
        let relay = match self.targets.iter().map(Relay::new).collect() {
            Ok(relays) => Relays::new(relays, self.dialects),
            Err(e) => {
                tracing::error!(error = %e, "relaying disabled for this receive thread");
                None
            }
        };
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
    relay: Option<Relays>,
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
    /// The same address is given twice: both would count under one `target` label.
    #[error("relay address {0:?} is given more than once")]
    Duplicate(String),
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

    /// Resolves every address of a repeated `--statsd.relay.address`, keeping their order,
    /// which is the order lines are sharded by.
    pub fn all(
        addrs: &[impl AsRef<str>],
        packet_length: usize,
    ) -> Result<Vec<RelayTarget>, RelayError> {
        let mut targets: Vec<RelayTarget> = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let addr = addr.as_ref();
            if targets.iter().any(|t| t.label == addr) {
                return Err(RelayError::Duplicate(addr.to_string()));
            }
            targets.push(RelayTarget::new(addr, packet_length)?);
        }
        Ok(targets)
    }
}

/// One receive thread's relays, one per target in the order of the flags, and how a line
/// picks one.
#[derive(Debug)]
struct Relays {
    relays: Vec<Relay>,
    dialects: Dialects,
}

impl Relays {
    /// `None` when there is nothing to relay to.
    fn new(relays: Vec<Relay>, dialects: Dialects) -> Option<Relays> {
        (!relays.is_empty()).then_some(Relays { relays, dialects })
    }

    /// Queues one line for the target that owns its series.
    #[inline]
    fn line(&mut self, line: &[u8]) {
        if line.is_empty() {
            return;
        }
        // One target gets every line as it is, without a look inside (statsd_exporter's relay).
        let target = match self.relays.len() {
            0 | 1 => 0,
            n => jump_hash(series_hash(line, &self.dialects), n),
        };
        if let Some(relay) = self.relays.get_mut(target) {
            relay.line(line);
        }
    }

    /// Sends each target's partly filled packet once it has waited a second.
    fn tick(&mut self) {
        for relay in &mut self.relays {
            relay.tick();
        }
    }
}

/// A 64-bit hash of the series a line updates: its metric name as the grammar cuts it
/// (name-embedded tags removed) and its tags as a set. Neither the order of the tags nor their
/// dialect (DogStatsD `|#k:v`, InfluxDB `name,k=v`, Librato `name#k=v`, SignalFx `name[k=v]`)
/// changes it, nor do the value, the type or the sample rate, so a series and all its updates
/// hash alike. A multi-value line is one series; a line the grammar rejects hashes its bytes
/// up to the first `:`, so it still goes somewhere, always the same place.
///
/// The identity is statsd's, before escaping and mapping: names or tag keys that differ only
/// in what escaping erases (`a.b` and `a_b`), or that a mapping rule folds into one series,
/// may hash apart. A tag key repeated with different values counts every value, where the
/// exposition keeps the last.
///
/// The function is fixed: every gateway, whatever its version, must send a series to the
/// same target. Names and tags are hashed with rapidhash V3 (its portable form with the
/// default secrets, whose output is stable across crate versions and platforms and matches
/// the C implementation), per-tag hashes are added up so their order does not matter (a sum,
/// unlike a XOR, does not cancel a tag given twice), and the parts are combined with
/// [`fold`]. The `shard_choice_is_stable` test pins it.
fn series_hash(line: &[u8], dialects: &Dialects) -> u64 {
    let mut counters = ParseCounters::default();
    let mut hash = None;
    parse_line(line, dialects, &mut counters, |sample| {
        if hash.is_none() {
            hash = Some(sample_hash(&sample));
        }
    });
    hash.unwrap_or_else(|| {
        let name = memchr::memchr(b':', line).map_or(line, |end| &line[..end]);
        rapidhash_v3(name)
    })
}

/// [`series_hash`] of a parsed sample.
fn sample_hash(sample: &Sample<'_>) -> u64 {
    let mut tags = 0u64;
    let mut count = 0u64;
    sample.tags.for_each_raw(|key, value| {
        tags = tags.wrapping_add(fold(
            rapidhash_v3(key.as_bytes()),
            rapidhash_v3(value.as_bytes()),
        ));
        count += 1;
    });
    fold(fold(rapidhash_v3(sample.metric.as_bytes()), tags), count)
}

/// Two hashes into one, order-sensitive: the folded 128-bit multiply of wyhash and
/// rapidhash, with the two inputs offset by different constants (rapidhash's first two
/// default secrets) so that `fold(a, b)` and `fold(b, a)` differ.
fn fold(a: u64, b: u64) -> u64 {
    let product = u128::from(a ^ 0x2d35_8dcc_aa6c_78a5) * u128::from(b ^ 0x8bb8_4b93_962e_acc9);
    (product as u64) ^ ((product >> 64) as u64)
}

/// The bucket of `key` among `buckets` (0 when there are none): John Lamping and Eric
/// Veach's jump consistent hash ("A Fast, Minimal Memory, Consistent Hash Algorithm", 2014,
/// arXiv:1406.2294, figure 1). Going from n to n+1 buckets moves a key only to the new
/// bucket, and only 1/(n+1) of the keys; it needs no table, just the number of buckets.
fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let buckets = i64::try_from(buckets).unwrap_or(i64::MAX);
    let mut bucket: i64 = -1;
    let mut next: i64 = 0;
    while next < buckets {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        // The paper's jump: the next bucket this key would move to as buckets are added.
        next = ((bucket + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    usize::try_from(bucket).unwrap_or(0)
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
        assert!(matches!(
            RelayTarget::all(&["127.0.0.1:9125", "127.0.0.1:9126", "127.0.0.1:9125"], 1400),
            Err(RelayError::Duplicate(a)) if a == "127.0.0.1:9125"
        ));
        let two = RelayTarget::all(&["127.0.0.1:9126", "127.0.0.1:9125"], 1400).unwrap();
        assert_eq!(
            two.iter().map(|t| t.label.as_str()).collect::<Vec<_>>(),
            ["127.0.0.1:9126", "127.0.0.1:9125"],
            "the order of the flags is kept"
        );
    }

    #[test]
    fn jump_hash_gives_the_published_buckets() {
        // The vectors the ports of the paper's code share (Go, Python, Elixir, C).
        for (key, buckets, want) in [
            (1, 1, 0),
            (42, 57, 43),
            (0xDEAD10CC, 1, 0),
            (0xDEAD10CC, 666, 361),
            (256, 1024, 520),
            (0, 2, 0),
            (4, 2, 1),
            (7, 2, 0),
            (1, 128, 55),
            (129, 128, 120),
            (u64::MAX, 128, 92),
        ] {
            assert_eq!(
                jump_hash(key, buckets),
                want,
                "key {key}, {buckets} buckets"
            );
        }
        assert_eq!(jump_hash(42, 0), 0, "no bucket");
    }

    #[test]
    fn a_new_bucket_takes_its_share_and_nothing_else_moves() {
        let keys: Vec<u64> = (0u32..20_000)
            .map(|i| rapidhash_v3(&i.to_le_bytes()))
            .collect();
        for n in 1..8 {
            let mut moved = 0u32;
            for &key in &keys {
                let (before, after) = (jump_hash(key, n), jump_hash(key, n + 1));
                assert!(before < n && after <= n);
                if before != after {
                    assert_eq!(after, n, "a key moves only to the new bucket");
                    moved += 1;
                }
            }
            let fraction = f64::from(moved) / keys.len() as f64;
            let want = 1.0 / (n + 1) as f64;
            assert!(
                (fraction - want).abs() < 0.02,
                "{n} -> {}: {fraction} moved, want about {want}",
                n + 1
            );
        }
    }

    fn hash(line: &str) -> u64 {
        series_hash(line.as_bytes(), &Dialects::default())
    }

    #[test]
    fn the_series_hash_ignores_tag_order_dialect_value_type_and_rate() {
        let same = [
            "a.b:1|c|#x:1,y:2",
            "a.b:1|c|#y:2,x:1",
            "a.b:7|g|#y:2|#x:1",
            "a.b:-3|c|@0.1|#x:1,y:2",
            "a.b:1:2:3|ms|#x:1,y:2",
            "a.b,x=1,y=2:1|c",
            "a.b,y=2,x=1:2|h",
            "a.b#y=2,x=1:1|c",
            "a.b[x=1,y=2]:1|c",
            "a.b[y=2,x=1]:1|d",
            "a.b,y=2,x=1:1|c:2|c",
            "a.b:1|c|#x:1,,y:2",
        ];
        for line in same {
            assert_eq!(hash(line), hash(same[0]), "{line}");
        }
        let different = [
            "a.b:1|c",
            "a.b:1|c|#x:1",
            "a.b:1|c|#x:2,y:2",
            "a.b:1|c|#x:1,y:2,z:3",
            "a.b:1|c|#x:1,y:2|c:box",
            "a.b:1|c|#x:1,y:2,y:2",
            "a.c:1|c|#x:1,y:2",
            "a.b:1|c|#x:1y,:2",
            "a.b:1|c|#x1:,y:2",
        ];
        let mut seen = vec![hash(same[0])];
        for line in different {
            let h = hash(line);
            assert!(!seen.contains(&h), "{line} collides");
            seen.push(h);
        }
    }

    #[test]
    fn a_line_the_grammar_rejects_hashes_its_name_section() {
        for line in ["a.b:x|c", "a.b:1|zz", "a.b", "a.b:1", "a.b:1|c|@0.5|#x:1|c"] {
            let name = line.split(':').next().unwrap();
            assert_eq!(hash(line), rapidhash_v3(name.as_bytes()), "{line}");
        }
        assert_eq!(
            series_hash(b"\xffa:1|c", &Dialects::default()),
            rapidhash_v3(b"\xffa")
        );
    }

    #[test]
    fn the_dialects_decide_what_a_tag_is() {
        let none = Dialects::NONE;
        let h = |line: &str| series_hash(line.as_bytes(), &none);
        assert_ne!(
            h("a,x=1,y=2:1|c"),
            h("a,y=2,x=1:1|c"),
            "without the InfluxDB dialect the tags are part of the name"
        );
        assert_eq!(h("a:1|c|#x:1"), h("a:2|c"), "DogStatsD tags are ignored");
    }

    /// Every gateway must keep sending a series where every other one sends it, across
    /// versions and restarts: a change here reshuffles every sharded deployment. The values
    /// were taken from this implementation (rapidhash 4.5); rapidhash promises its `v3`
    /// functions never change output.
    #[test]
    fn shard_choice_is_stable() {
        let lines = [
            "a.b:1|c|#x:1,y:2",
            "envoy.cluster.upstream_rq:1|c|#envoy.cluster_name:reviews",
            "bare:1|g",
            "not a line",
            "api.latency,route=/users:12|ms",
            "queue.depth[queue=mail]:7|g",
            "jobs.done#worker=3:1|c",
            "a:1|c",
            "b:1|c",
            "c:1|c",
            "d:1|c",
        ];
        // (series hash, target of 3, target of 4)
        let want = [
            (4448363122947131892, 1, 1),
            (1289497623242037988, 1, 1),
            (9427815335666934699, 2, 2),
            (2986130674555893510, 2, 2),
            (3105526554118228208, 1, 1),
            (9711285705878556249, 1, 1),
            (13552879899237059276, 0, 0),
            (16742591346513105771, 2, 3),
            (2436781995278730245, 2, 3),
            (5030743704117709677, 0, 0),
            (4240058505594755868, 2, 3),
        ];
        let got: Vec<(u64, usize, usize)> = lines
            .iter()
            .map(|l| (hash(l), jump_hash(hash(l), 3), jump_hash(hash(l), 4)))
            .collect();
        assert_eq!(got, want);
        assert_eq!(rapidhash_v3(b"example\n"), 14171553513653464504);
    }

    #[test]
    fn several_targets_share_the_lines_by_series() {
        let receivers: Vec<UdpSocket> = (0..3)
            .map(|_| {
                let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
                rx.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                rx
            })
            .collect();
        let addrs: Vec<String> = receivers
            .iter()
            .map(|r| r.local_addr().unwrap().to_string())
            .collect();
        let targets = RelayTarget::all(&addrs, 1400).unwrap();
        let mut sink = Relayed::new(Recorders, targets).make_sink();
        let mut sent = Vec::new();
        for i in 0..60 {
            // Each series twice, its tags in both orders, once in a datagram, once as a line.
            let (a, b) = (
                format!("s{}:1|c|#k:{i},j:x", i % 20),
                format!("s{},j=x,k={i}:2|c", i % 20),
            );
            sink.datagram(format!("{a}\n").as_bytes());
            sink.line(b.as_bytes());
            sent.push((a, b));
        }
        sink.datagram(b"not a line\n\n");
        drop(sink);
        let got: Vec<String> = receivers
            .iter()
            .map(|rx| {
                let mut text = String::new();
                let mut buf = [0u8; 2048];
                while let Ok(n) = rx.recv(&mut buf) {
                    assert!(n <= 1400);
                    text.push_str(std::str::from_utf8(&buf[..n]).unwrap());
                }
                text
            })
            .collect();
        let owner = |line: &str| {
            let holders: Vec<usize> = (0..3)
                .filter(|&t| got[t].lines().any(|l| l == line))
                .collect();
            assert_eq!(holders.len(), 1, "{line} went to {holders:?}");
            holders[0]
        };
        for (a, b) in &sent {
            assert_eq!(owner(a), owner(b), "{a} and {b} are one series");
        }
        owner("not a line");
        let total: usize = got.iter().map(|t| t.lines().count()).sum();
        assert_eq!(total, 121, "every line once, the empty one never");
        assert!(
            got.iter().all(|t| !t.is_empty()),
            "each target gets some: {got:?}"
        );
    }
}
