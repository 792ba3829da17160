//! End-to-end tests of the ingest listeners over real sockets on 127.0.0.1 and in temp dirs.
//!
//! No global `metrics` recorder is installed: what a listener delivered is observed through a
//! recording [`Sink`] that tags everything with the sink (thread or connection) it came through.

mod common;

use common::read_data;
use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use statsgate::ingest::{
    IngestError, ReadBuffer, Sink, SinkFactory, TCP_MAX_LINE, TcpOptions, UdpOptions,
    UnixgramOptions, parse_listen_address, start_tcp, start_udp, start_unixgram,
};

/// Everything received, in order, with the id of the sink that received it.
#[derive(Default)]
struct Recorder {
    datagrams: Mutex<Vec<(usize, Vec<u8>)>>,
    lines: Mutex<Vec<(usize, Vec<u8>)>>,
    flushes: AtomicUsize,
    sinks: AtomicUsize,
    /// Ids of the sinks dropped so far. A listener drops a sink when the thread or connection
    /// task that owned it has ended, so nothing more can come through it.
    dropped: Mutex<Vec<usize>>,
}

impl Recorder {
    fn dropped(&self, id: usize) -> bool {
        self.dropped.lock().unwrap().contains(&id)
    }
}

struct RecordingSink {
    id: usize,
    recorder: Arc<Recorder>,
}

impl Sink for RecordingSink {
    fn datagram(&mut self, payload: &[u8]) {
        let mut datagrams = self.recorder.datagrams.lock().unwrap();
        datagrams.push((self.id, payload.to_vec()));
    }
    fn line(&mut self, line: &[u8]) {
        let mut lines = self.recorder.lines.lock().unwrap();
        lines.push((self.id, line.to_vec()));
    }
    fn flush(&mut self) {
        self.recorder.flushes.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for RecordingSink {
    fn drop(&mut self) {
        self.recorder.dropped.lock().unwrap().push(self.id);
    }
}

struct RecordingFactory(Arc<Recorder>);

impl SinkFactory for RecordingFactory {
    type Sink = RecordingSink;
    fn make_sink(&self) -> RecordingSink {
        RecordingSink {
            id: self.0.sinks.fetch_add(1, Ordering::Relaxed),
            recorder: Arc::clone(&self.0),
        }
    }
}

fn recorder() -> (Arc<Recorder>, Arc<RecordingFactory>) {
    let recorder = Arc::new(Recorder::default());
    let factory = Arc::new(RecordingFactory(Arc::clone(&recorder)));
    (recorder, factory)
}

/// Polls `done` until it holds or `limit` passes; returns whether it held.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

async fn wait_until_async(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    done()
}

fn temp_socket_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "statsgate-it-{tag}-{}-{}.sock",
        std::process::id(),
        fastrand::u64(..)
    ))
}

fn udp_options(sockets: usize) -> UdpOptions {
    UdpOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        sockets,
        read_buffer: ReadBuffer::Bytes(4 << 20),
        batch: 32,
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// UDP

#[test]
fn udp_two_sockets_on_one_port_receive_every_datagram() {
    let (recorder, factory) = recorder();
    let listener = start_udp(&udp_options(2), factory).unwrap();
    let addr = listener.local_addr().unwrap();
    assert_eq!(recorder.sinks.load(Ordering::Relaxed), 2);

    // Several senders, so the kernel's reuseport hash has a chance to use both sockets.
    let clients: Vec<UdpSocket> = (0..8)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let total = 2000;
    let mut expected = Vec::with_capacity(total);
    for i in 0..total {
        let payload = format!("udp.metric.{i}:{i}|c").into_bytes();
        clients[i % clients.len()].send_to(&payload, addr).unwrap();
        expected.push(payload);
        if i % 200 == 199 {
            // Stay well inside the receive buffers on a loaded 2-core machine.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let complete = wait_until(Duration::from_secs(10), || {
        recorder.datagrams.lock().unwrap().len() >= total
    });
    listener.shutdown();
    assert!(
        complete,
        "got {} of {total}",
        recorder.datagrams.lock().unwrap().len()
    );
    let mut got: Vec<Vec<u8>> = recorder
        .datagrams
        .lock()
        .unwrap()
        .iter()
        .map(|(_, d)| d.clone())
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    assert!(recorder.flushes.load(Ordering::Relaxed) > 0);
}

#[test]
fn udp_payload_bytes_are_exact_including_large_and_empty_datagrams() {
    let (recorder, factory) = recorder();
    let listener = start_udp(&udp_options(2), factory).unwrap();
    let addr = listener.local_addr().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();

    let large: Vec<u8> = (0..65000u32)
        .map(|i| {
            if i % 50 == 49 {
                b'\n'
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect();
    let payloads: Vec<Vec<u8>> = vec![
        b"a:1|c\nb:2|g\r\nc:3|ms|@0.5|#t:v\n".to_vec(),
        Vec::new(),
        large,
        vec![0, 255, b'\n', 0x80, b'x'],
    ];
    for payload in &payloads {
        client.send_to(payload, addr).unwrap();
    }
    let complete = wait_until(Duration::from_secs(10), || {
        recorder.datagrams.lock().unwrap().len() >= payloads.len()
    });
    listener.shutdown();
    assert!(complete);
    // One sender always hashes to the same socket, so order is kept.
    let got: Vec<Vec<u8>> = recorder
        .datagrams
        .lock()
        .unwrap()
        .iter()
        .map(|(_, d)| d.clone())
        .collect();
    assert_eq!(got, payloads);
}

/// Sockets are picked by source address, not port: each of 16 loopback addresses, sending
/// every datagram from a new socket (a new port), keeps to one socket, in order, and the
/// addresses spread over more than one socket.
#[test]
fn udp_each_source_address_keeps_to_one_socket_and_addresses_spread() {
    let (recorder, factory) = recorder();
    let listener = start_udp(&udp_options(2), factory).unwrap();
    let addr = listener.local_addr().unwrap();
    let hosts: Vec<std::net::Ipv4Addr> = (2..18).map(|i| [127, 0, 0, i].into()).collect();
    let per_host = 20;
    for n in 0..per_host {
        for (h, host) in hosts.iter().enumerate() {
            let client = UdpSocket::bind((*host, 0)).unwrap();
            client.send_to(format!("{h} {n}").as_bytes(), addr).unwrap();
        }
    }
    let total = hosts.len() * per_host;
    let complete = wait_until(Duration::from_secs(10), || {
        recorder.datagrams.lock().unwrap().len() >= total
    });
    listener.shutdown();
    assert!(complete);
    let datagrams = recorder.datagrams.lock().unwrap();
    let mut socket_of_host: Vec<Option<usize>> = vec![None; hosts.len()];
    let mut next_of_host = vec![0usize; hosts.len()];
    for (sink, payload) in datagrams.iter() {
        let text = std::str::from_utf8(payload).unwrap();
        let (h, n) = text.split_once(' ').unwrap();
        let (h, n): (usize, usize) = (h.parse().unwrap(), n.parse().unwrap());
        let socket = *socket_of_host[h].get_or_insert(*sink);
        assert_eq!(socket, *sink, "{} reached two sockets", hosts[h]);
        assert_eq!(n, next_of_host[h], "{}'s datagrams out of order", hosts[h]);
        next_of_host[h] += 1;
    }
    let mut used: Vec<usize> = socket_of_host.iter().flatten().copied().collect();
    used.sort_unstable();
    used.dedup();
    assert_eq!(used, [0, 1], "16 hosts all on one socket");
}

#[test]
fn udp_bind_error_is_returned_not_panicked() {
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut opts = udp_options(2);
    opts.addr = holder.local_addr().unwrap();
    let (_, factory) = recorder();
    let err = start_udp(&opts, factory).unwrap_err();
    assert!(matches!(err, IngestError::AddressInUse { .. }), "{err}");
    assert!(err.to_string().contains(&opts.addr.to_string()), "{err}");
}

#[test]
fn udp_dual_stack_wildcard_accepts_ipv4_clients() {
    let (recorder, factory) = recorder();
    let opts = UdpOptions {
        addr: parse_listen_address(":0").unwrap().unwrap(),
        ..udp_options(1)
    };
    let listener = start_udp(&opts, factory).unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .send_to(b"v4:1|c", SocketAddr::from(([127, 0, 0, 1], port)))
        .unwrap();
    let got = wait_until(Duration::from_secs(5), || {
        !recorder.datagrams.lock().unwrap().is_empty()
    });
    listener.shutdown();
    assert!(got);
}

#[test]
fn udp_shutdown_joins_threads_promptly() {
    let (recorder, factory) = recorder();
    let listener = start_udp(&udp_options(4), factory).unwrap();
    let addr = listener.local_addr().unwrap();
    let started = Instant::now();
    listener.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Every receive thread has ended (each dropped its sink on the way out), so nothing can
    // arrive any more; and their sockets are closed: the port can be bound again by a plain
    // socket (which would conflict with a live reuseport group of another owner).
    let mut dropped = recorder.dropped.lock().unwrap().clone();
    dropped.sort();
    assert_eq!(dropped, vec![0, 1, 2, 3]);
    UdpSocket::bind(addr).unwrap();
}

#[test]
fn udp_carries_the_envoy_stat_names() {
    let text = read_data("envoy-stat-names.txt");
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, kind) = l.rsplit_once('|').unwrap_or((l, "c"));
            format!("envoy.{name}:1|{kind}")
        })
        .collect();
    // Pack lines into datagrams of at most 1400 bytes, as Envoy's statsd sink does.
    let mut datagrams = vec![String::new()];
    for line in &lines {
        let current = datagrams.last_mut().unwrap();
        if !current.is_empty() && current.len() + 1 + line.len() > 1400 {
            datagrams.push(line.clone());
        } else {
            if !current.is_empty() {
                current.push('\n');
            }
            current.push_str(line);
        }
    }
    let (recorder, factory) = recorder();
    let listener = start_udp(&udp_options(2), factory).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    for datagram in &datagrams {
        client
            .send_to(datagram.as_bytes(), listener.local_addr().unwrap())
            .unwrap();
    }
    let complete = wait_until(Duration::from_secs(10), || {
        recorder.datagrams.lock().unwrap().len() >= datagrams.len()
    });
    listener.shutdown();
    assert!(complete);
    let got: Vec<String> = recorder
        .datagrams
        .lock()
        .unwrap()
        .iter()
        .map(|(_, d)| String::from_utf8(d.clone()).unwrap())
        .collect();
    assert_eq!(got, datagrams);
}

// ---------------------------------------------------------------------------------------------
// TCP

async fn tcp_listener() -> (Arc<Recorder>, statsgate::ingest::Listener, SocketAddr) {
    let (recorder, factory) = recorder();
    let opts = TcpOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..TcpOptions::default()
    };
    let listener = start_tcp(&opts, factory).await.unwrap();
    let addr = listener.local_addr().unwrap();
    (recorder, listener, addr)
}

fn lines_of(recorder: &Recorder) -> Vec<Vec<u8>> {
    recorder
        .lines
        .lock()
        .unwrap()
        .iter()
        .map(|(_, l)| l.clone())
        .collect()
}

fn owned(lines: &[&str]) -> Vec<Vec<u8>> {
    lines.iter().map(|l| l.as_bytes().to_vec()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_frames_lf_crlf_and_a_partial_last_line() {
    let (recorder, listener, addr) = tcp_listener().await;
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.write_all(b"a:1|c\nb:2|g\r\n\nc:3|ms").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let want = owned(&["a:1|c", "b:2|g", "", "c:3|ms"]);
    let done = wait_until_async(Duration::from_secs(5), || lines_of(&recorder).len() >= 4).await;
    assert!(done);
    assert_eq!(lines_of(&recorder), want);
    assert_eq!(recorder.sinks.load(Ordering::Relaxed), 1);
    listener.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_many_lines_in_one_write() {
    let (recorder, listener, addr) = tcp_listener().await;
    let mut payload = Vec::new();
    let mut want = Vec::new();
    for i in 0..10_000 {
        let line = format!("tcp.metric.{i}:{i}|c");
        payload.extend_from_slice(line.as_bytes());
        payload.extend_from_slice(if i % 2 == 0 { b"\n" } else { b"\r\n" });
        want.push(line.into_bytes());
    }
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.write_all(&payload).unwrap();
    drop(client);
    let done = wait_until_async(Duration::from_secs(10), || {
        lines_of(&recorder).len() >= want.len()
    })
    .await;
    assert!(done);
    assert_eq!(lines_of(&recorder), want);
    listener.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_lines_split_across_writes() {
    let (recorder, listener, addr) = tcp_listener().await;
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.set_nodelay(true).unwrap();
    for piece in [&b"spl"[..], b"it:1", b"|c\r", b"\nnext:2|c\n", b"tail"] {
        client.write_all(piece).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(client);
    let want = owned(&["split:1|c", "next:2|c", "tail"]);
    let done = wait_until_async(Duration::from_secs(5), || lines_of(&recorder).len() >= 3).await;
    assert!(done);
    assert_eq!(lines_of(&recorder), want);
    listener.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_too_long_line_closes_only_that_connection() {
    let (recorder, listener, addr) = tcp_listener().await;
    let mut bad = std::net::TcpStream::connect(addr).unwrap();
    let mut payload = b"before:1|c\n".to_vec();
    payload.extend(std::iter::repeat_n(b'x', 5000));
    payload.extend_from_slice(b"\nafter:1|c\n");
    bad.write_all(&payload).unwrap();

    // The server closes the connection: the client sees EOF or a reset, within bounds.
    bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    match bad.read(&mut buf) {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("server sent {n} bytes"),
    }
    // Later data on that connection goes nowhere (the write may fail once the peer reset).
    let _ = bad.write_all(b"late:1|c\n");
    drop(bad);

    // Its task has ended once it dropped its sink: nothing more can come from it.
    assert!(wait_until_async(Duration::from_secs(5), || recorder.dropped(0)).await);

    let mut good = std::net::TcpStream::connect(addr).unwrap();
    good.write_all(b"good:1|c\n").unwrap();
    drop(good);
    assert!(wait_until_async(Duration::from_secs(5), || recorder.dropped(1)).await);
    let lines = recorder.lines.lock().unwrap().clone();
    assert_eq!(
        lines,
        vec![(0, b"before:1|c".to_vec()), (1, b"good:1|c".to_vec())]
    );
    listener.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_longest_allowed_line_is_delivered() {
    let (recorder, listener, addr) = tcp_listener().await;
    let line = vec![b'y'; TCP_MAX_LINE];
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.write_all(&line).unwrap();
    client.write_all(b"\nnext:1|c\n").unwrap();
    drop(client);
    let done = wait_until_async(Duration::from_secs(5), || lines_of(&recorder).len() >= 2).await;
    assert!(done);
    assert_eq!(lines_of(&recorder), vec![line, b"next:1|c".to_vec()]);
    listener.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_sink_per_connection() {
    let (recorder, listener, addr) = tcp_listener().await;
    for i in 0..3 {
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client.write_all(format!("c{i}:1|c\n").as_bytes()).unwrap();
    }
    let done = wait_until_async(Duration::from_secs(5), || lines_of(&recorder).len() >= 3).await;
    assert!(done);
    let mut ids: Vec<usize> = recorder
        .lines
        .lock()
        .unwrap()
        .iter()
        .map(|(id, _)| *id)
        .collect();
    ids.sort();
    assert_eq!(ids, vec![0, 1, 2]);
    listener.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_shutdown_stops_accepting_and_drops_connections() {
    let (recorder, listener, addr) = tcp_listener().await;
    let mut open = std::net::TcpStream::connect(addr).unwrap();
    open.write_all(b"x:1|c\n").unwrap();
    assert!(wait_until_async(Duration::from_secs(5), || lines_of(&recorder).len() == 1).await);
    listener.shutdown();
    // Aborted tasks are dropped by the runtime shortly after; the port then refuses.
    let refused = wait_until_async(Duration::from_secs(5), || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;
    assert!(refused);
    open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 8];
    assert!(matches!(open.read(&mut buf), Ok(0) | Err(_)));
}

#[tokio::test]
async fn tcp_bind_error_is_returned() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let opts = TcpOptions {
        addr: holder.local_addr().unwrap(),
        ..TcpOptions::default()
    };
    let (_, factory) = recorder();
    let err = start_tcp(&opts, factory).await.unwrap_err();
    assert!(matches!(err, IngestError::AddressInUse { .. }), "{err}");
    assert!(err.to_string().contains(&opts.addr.to_string()), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Unixgram

#[test]
fn unixgram_delivers_applies_mode_and_removes_the_file() {
    let (recorder, factory) = recorder();
    let opts = UnixgramOptions {
        path: temp_socket_path("deliver"),
        mode: 0o720,
        read_buffer: 1 << 20,
    };
    let listener = start_unixgram(&opts, factory).unwrap();
    assert_eq!(listener.local_addr(), None);
    let mode = std::fs::metadata(&opts.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o720);

    let client = UnixDatagram::unbound().unwrap();
    let payloads: Vec<Vec<u8>> = vec![b"u:1|c\nv:2|g".to_vec(), Vec::new(), vec![b'z'; 60_000]];
    for payload in &payloads {
        client.send_to(payload, &opts.path).unwrap();
    }
    let complete = wait_until(Duration::from_secs(5), || {
        recorder.datagrams.lock().unwrap().len() >= payloads.len()
    });
    let started = Instant::now();
    listener.shutdown();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(complete);
    let got: Vec<Vec<u8>> = recorder
        .datagrams
        .lock()
        .unwrap()
        .iter()
        .map(|(_, d)| d.clone())
        .collect();
    assert_eq!(got, payloads);
    assert!(!opts.path.exists(), "socket file left behind");
}

#[test]
fn unixgram_refuses_an_existing_path() {
    let path = temp_socket_path("exists");
    std::fs::write(&path, b"keep me").unwrap();
    let (_, factory) = recorder();
    let opts = UnixgramOptions {
        path: path.clone(),
        mode: 0o755,
        read_buffer: 0,
    };
    let err = start_unixgram(&opts, factory).unwrap_err();
    assert!(matches!(err, IngestError::PathExists { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn unixgram_unbindable_path_is_a_bind_error() {
    let path = std::env::temp_dir()
        .join(format!("statsgate-no-such-dir-{}", fastrand::u64(..)))
        .join("s.sock");
    let (_, factory) = recorder();
    let opts = UnixgramOptions {
        path,
        mode: 0o755,
        read_buffer: 0,
    };
    let err = start_unixgram(&opts, factory).unwrap_err();
    assert!(matches!(err, IngestError::Bind { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Listen addresses

#[test]
fn listen_addresses_like_statsd_exporter() {
    assert_eq!(parse_listen_address("").unwrap(), None);
    assert_eq!(
        parse_listen_address(":9125").unwrap(),
        Some("[::]:9125".parse().unwrap())
    );
    assert_eq!(
        parse_listen_address("127.0.0.1:9125").unwrap(),
        Some("127.0.0.1:9125".parse().unwrap())
    );
    assert_eq!(
        parse_listen_address("[::1]:9125").unwrap(),
        Some("[::1]:9125".parse().unwrap())
    );
    let localhost = parse_listen_address("localhost:9125").unwrap().unwrap();
    assert!(localhost.ip().is_loopback());
    assert_eq!(localhost.port(), 9125);
    for bad in ["9125", "localhost", ":http", ":70000", "::1:9125"] {
        assert!(
            matches!(
                parse_listen_address(bad),
                Err(IngestError::InvalidAddress { .. })
            ),
            "{bad}"
        );
    }
}
