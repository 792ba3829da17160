//! TCP listener: a tokio task per connection, each with its own [`Sink`], framing lines the way
//! statsd_exporter's `bufio.Reader.ReadLine` with a 4096-byte buffer does.
//!
//! Bounded where statsd_exporter is not: at most [`TcpOptions::max_connections`] connections
//! are open at once, and never more than the descriptor limit less a reserve, so that statsd
//! clients cannot take the descriptors HTTP scrapes need; a connection beyond that is accepted
//! and reset at once. A connection that sends nothing for [`TcpOptions::idle_timeout`] is
//! closed. Reads go into one buffer per runtime thread, so an open connection holds no read
//! buffer of its own: only the partial line it has sent so far (at most [`TCP_MAX_LINE`]
//! bytes), released when it closes.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use socket2::{Protocol, SockRef, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::socket::{bind_error, bind_with_ipv4_fallback, ip_socket, option_error};
use super::sys::{descriptor_limit, set_descriptor_limit};
use super::{IngestError, Listener, Sink, SinkFactory};
use crate::logging::LogLimiter;
use crate::telemetry::catalog;

const LISTENER: &str = "tcp";

/// The longest TCP line accepted, counting a `\r` before the `\n` but not the `\n`.
///
/// statsd_exporter reads with a 4096-byte `bufio.Reader`; a line that does not fit in it
/// together with its `\n` is "too long", is counted in `statsd_exporter_tcp_too_long_lines_total`
/// and closes the connection.
pub const TCP_MAX_LINE: usize = 4095;

/// Bytes read per `read` call. Large so that a busy connection costs few syscalls; it is one
/// buffer per runtime thread, shared by all the connections that thread serves.
const READ_CHUNK: usize = 64 * 1024;

/// Pending connections the kernel queues before `accept`.
const LISTEN_BACKLOG: i32 = 1024;

/// The default of [`TcpOptions::max_connections`].
pub const DEFAULT_TCP_MAX_CONNECTIONS: usize = 4096;

/// The default of [`TcpOptions::idle_timeout`].
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Descriptors kept out of reach of statsd TCP connections, for everything else the process
/// opens: HTTP connections (scrapes, probes), the other listeners' sockets, the runtime's own,
/// files read on a reload or a scrape. Half the limit when the limit is below twice this.
pub const RESERVED_DESCRIPTORS: u64 = 256;

static TOO_LONG_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));
static CONNECTION_ERROR_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));
static ACCEPT_ERROR_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));
static REFUSED_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));

thread_local! {
    /// The read buffer of the runtime thread a connection task is running on. Borrowed only
    /// for one read and the synchronous framing of what it read, never across an `.await`.
    static READ_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; READ_CHUNK].into_boxed_slice());
}

/// How to run the TCP listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpOptions {
    /// Where to listen. Default `[::]:9125`, bound dual-stack (see
    /// [`parse_listen_address`](super::parse_listen_address)).
    pub addr: SocketAddr,
    /// The most connections open at once; a connection beyond it is accepted and reset at
    /// once, and counted in `statsgate_tcp_connections_refused_total`. Default
    /// [`DEFAULT_TCP_MAX_CONNECTIONS`]; 0 means no limit but the descriptor limit. Either way
    /// the limit is lowered to the process's descriptor limit (soft `RLIMIT_NOFILE`, read when
    /// the listener starts) less [`RESERVED_DESCRIPTORS`].
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed (a partial last line is
    /// delivered first, as at end of stream) and counted in `statsgate_tcp_idle_closed_total`.
    /// Default [`DEFAULT_TCP_IDLE_TIMEOUT`]; `None` keeps idle connections forever, as
    /// statsd_exporter does.
    pub idle_timeout: Option<Duration>,
}

impl Default for TcpOptions {
    /// `[::]:9125` (statsd_exporter's default `:9125`), at most
    /// [`DEFAULT_TCP_MAX_CONNECTIONS`] connections, closed after
    /// [`DEFAULT_TCP_IDLE_TIMEOUT`] without data.
    fn default() -> Self {
        TcpOptions {
            addr: SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), 9125),
            max_connections: DEFAULT_TCP_MAX_CONNECTIONS,
            idle_timeout: Some(DEFAULT_TCP_IDLE_TIMEOUT),
        }
    }
}

/// Binds `opts.addr` and spawns, on the current tokio runtime, an accept task that starts a task
/// with its own sink for every connection, up to the connection limit.
///
/// Bind errors are returned. Counts `statsd_exporter_tcp_connections_total` per accepted
/// connection, `statsd_exporter_tcp_connection_errors_total` per read error other than EOF,
/// `statsd_exporter_tcp_too_long_lines_total` per connection closed for a too-long line,
/// `statsgate_tcp_connections_refused_total` per connection reset for the limit,
/// `statsgate_tcp_idle_closed_total` per connection closed for idleness, and keeps
/// `statsgate_tcp_connections_open`.
///
/// Shutting the [`Listener`] down aborts the accept task and all connection tasks; the
/// listening socket closes when the runtime drops the aborted task.
pub async fn start_tcp<F: SinkFactory>(
    opts: &TcpOptions,
    factory: Arc<F>,
) -> Result<Listener, IngestError> {
    let max_connections = effective_max_connections(opts.max_connections);
    if max_connections == 0 {
        return Err(IngestError::InvalidOption {
            listener: LISTENER,
            address: opts.addr.to_string(),
            reason: "the descriptor limit leaves no room for connections",
        });
    }
    let listener = bind_with_ipv4_fallback(LISTENER, opts.addr, bind_listener)?;
    let local_addr = listener.local_addr().unwrap_or(opts.addr);
    tracing::info!(
        listener = "tcp",
        address = %local_addr,
        max_connections,
        idle_timeout = %opts.idle_timeout.map_or_else(|| "none".to_owned(), |d| format!("{d:?}")),
        "accepting statsd over TCP"
    );
    let limits = Limits {
        max_connections,
        idle_timeout: opts.idle_timeout,
    };
    let task = tokio::spawn(accept_loop(listener, factory, limits));
    Ok(Listener {
        transport: LISTENER,
        local_addr: Some(local_addr),
        stop: Arc::new(AtomicBool::new(false)),
        threads: Vec::new(),
        task: Some(task),
        socket_path: None,
        read_buffers: Vec::new(),
    })
}

/// `requested` (0: unlimited) lowered to the descriptor limit less the reserve.
fn effective_max_connections(requested: usize) -> usize {
    let Ok(limit) = descriptor_limit() else {
        // Cannot happen on Linux; keep the asked-for limit.
        return requested;
    };
    let room = usize::try_from(connection_room(limit.soft)).unwrap_or(usize::MAX);
    if requested != 0 && requested <= room {
        return requested;
    }
    tracing::info!(
        requested,
        descriptor_limit = limit.soft,
        max_connections = room,
        "statsd TCP connections limited by the descriptor limit, less a reserve for HTTP and the other listeners"
    );
    room
}

/// Raises the soft descriptor limit (`RLIMIT_NOFILE`) to the hard limit, and logs the limit
/// then in force. Call once at startup, before [`start_tcp`], which sizes its connection limit
/// from it.
///
/// Go's runtime does the same at startup since Go 1.19, so statsd_exporter runs with the hard
/// limit; without this, statsgate would keep the soft limit (1024 under systemd and in many
/// container runtimes) and its TCP connection limit would be far lower. The soft limit is low
/// by default only for programs that use `select(2)`, which statsgate does not.
pub fn raise_descriptor_limit() {
    let limit = match descriptor_limit() {
        Ok(limit) => limit,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the descriptor limit (RLIMIT_NOFILE)");
            return;
        }
    };
    if limit.soft >= limit.hard {
        return;
    }
    match set_descriptor_limit(limit.hard, limit.hard) {
        Ok(()) => tracing::info!(
            from = limit.soft,
            to = limit.hard,
            "descriptor limit (RLIMIT_NOFILE) raised to its hard limit"
        ),
        Err(err) => tracing::warn!(
            soft = limit.soft,
            hard = limit.hard,
            error = %err,
            "cannot raise the descriptor limit (RLIMIT_NOFILE) to its hard limit"
        ),
    }
}

/// The descriptors statsd TCP connections may use under a soft limit of `soft`.
fn connection_room(soft: u64) -> u64 {
    let reserve = RESERVED_DESCRIPTORS.min(soft / 2);
    soft.saturating_sub(reserve)
}

fn bind_listener(addr: SocketAddr) -> Result<TcpListener, IngestError> {
    let socket = ip_socket(LISTENER, addr, Type::STREAM, Protocol::TCP)?;
    // Lets a restarted gateway bind while old connections sit in TIME_WAIT.
    socket
        .set_reuse_address(true)
        .map_err(option_error(LISTENER, addr, "SO_REUSEADDR"))?;
    socket
        .set_nonblocking(true)
        .map_err(option_error(LISTENER, addr, "O_NONBLOCK"))?;
    socket
        .bind(&addr.into())
        .map_err(bind_error(LISTENER, addr))?;
    socket
        .listen(LISTEN_BACKLOG)
        .map_err(bind_error(LISTENER, addr))?;
    TcpListener::from_std(socket.into()).map_err(bind_error(LISTENER, addr))
}

/// What every connection of a listener is held to.
#[derive(Clone, Copy)]
struct Limits {
    max_connections: usize,
    idle_timeout: Option<Duration>,
}

async fn accept_loop<F: SinkFactory>(listener: TcpListener, factory: Arc<F>, limits: Limits) {
    let counters = ConnectionCounters {
        errors: catalog::TCP_CONNECTION_ERRORS.counter([]),
        too_long: catalog::TCP_TOO_LONG_LINES.counter([]),
        idle_closed: catalog::TCP_IDLE_CLOSED.counter([]),
        open: catalog::TCP_CONNECTIONS_OPEN.gauge([]),
        bytes: catalog::RECEIVED_BYTES.counter(["tcp".into()]),
    };
    let connections = catalog::TCP_CONNECTIONS.counter([]);
    let refused = catalog::TCP_CONNECTIONS_REFUSED.counter([]);
    // Only this loop adds to it, so checking it before adding cannot overshoot the limit.
    let open = Arc::new(AtomicUsize::new(0));
    // Owning the connection tasks here means aborting this task aborts them all.
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if open.load(Ordering::Acquire) >= limits.max_connections {
                        refuse(stream, peer, limits.max_connections);
                        refused.increment(1);
                        continue;
                    }
                    connections.increment(1);
                    let slot = OpenSlot::take(&open, &counters.open);
                    let mut sink = factory.make_sink();
                    if sink.wants_sender() {
                        sink.sender(Some(peer.ip()));
                    }
                    let counters = counters.clone();
                    tasks.spawn(serve_connection(stream, peer, sink, counters, limits.idle_timeout, slot));
                }
                Err(err) => {
                    if ACCEPT_ERROR_LOG.allow().is_some() {
                        tracing::warn!(error = %err, "TCP accept failed");
                    }
                    // EMFILE and friends persist until a connection closes; do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

/// Closes a connection beyond the limit with a reset rather than a FIN: the client's next
/// write fails instead of vanishing, and no TIME_WAIT state is left on this side.
fn refuse(stream: TcpStream, peer: SocketAddr, max_connections: usize) {
    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
    if REFUSED_LOG.allow().is_some() {
        tracing::warn!(%peer, max_connections, "refusing a statsd TCP connection: the connection limit is reached");
    }
}

/// One connection's place under the limit, given back when the connection task ends,
/// however it ends (closed, failed or aborted).
struct OpenSlot {
    open: Arc<AtomicUsize>,
    gauge: metrics::Gauge,
}

impl OpenSlot {
    fn take(open: &Arc<AtomicUsize>, gauge: &metrics::Gauge) -> OpenSlot {
        let now = open.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        gauge.set(now as f64);
        OpenSlot {
            open: Arc::clone(open),
            gauge: gauge.clone(),
        }
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        let before = self.open.fetch_sub(1, Ordering::AcqRel);
        self.gauge.set(before.saturating_sub(1) as f64);
    }
}

#[derive(Clone)]
struct ConnectionCounters {
    errors: metrics::Counter,
    too_long: metrics::Counter,
    idle_closed: metrics::Counter,
    open: metrics::Gauge,
    bytes: metrics::Counter,
}

/// What one read did to a connection.
enum ReadOutcome {
    /// Lines delivered (or nothing was there after all); keep reading.
    More,
    /// The peer closed its side.
    Closed,
    /// A line longer than [`TCP_MAX_LINE`]: close the connection.
    TooLong,
    /// The read failed.
    Failed(io::Error),
}

async fn serve_connection<S: Sink>(
    stream: TcpStream,
    peer: SocketAddr,
    mut sink: S,
    counters: ConnectionCounters,
    idle_timeout: Option<Duration>,
    _slot: OpenSlot,
) {
    let mut framer = LineFramer::new();
    loop {
        let ready = match idle_timeout {
            Some(limit) => match tokio::time::timeout(limit, stream.readable()).await {
                Ok(ready) => ready,
                Err(_) => {
                    // Go's ReadLine would have handed out the partial line at end of stream.
                    framer.finish(&mut sink);
                    counters.idle_closed.increment(1);
                    tracing::debug!(%peer, "closing an idle TCP connection");
                    break;
                }
            },
            None => stream.readable().await,
        };
        let outcome = match ready {
            Ok(()) => READ_BUFFER.with_borrow_mut(|buffer| match stream.try_read(buffer) {
                Ok(0) => ReadOutcome::Closed,
                Ok(n) => {
                    counters.bytes.increment(n as u64);
                    let framed = framer.feed(&buffer[..n], &mut sink);
                    sink.flush();
                    match framed {
                        Ok(()) => ReadOutcome::More,
                        Err(LineTooLong) => ReadOutcome::TooLong,
                    }
                }
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    ReadOutcome::More
                }
                Err(err) => ReadOutcome::Failed(err),
            }),
            Err(err) => ReadOutcome::Failed(err),
        };
        match outcome {
            ReadOutcome::More => {}
            ReadOutcome::Closed => {
                framer.finish(&mut sink);
                break;
            }
            ReadOutcome::TooLong => {
                counters.too_long.increment(1);
                if TOO_LONG_LOG.allow().is_some() {
                    tracing::debug!(%peer, "closing TCP connection: line longer than {TCP_MAX_LINE} bytes");
                }
                return;
            }
            ReadOutcome::Failed(err) => {
                // Go's ReadLine hands out a pending partial line before reporting the error.
                framer.finish(&mut sink);
                counters.errors.increment(1);
                if CONNECTION_ERROR_LOG.allow().is_some() {
                    tracing::debug!(%peer, error = %err, "TCP read failed");
                }
                break;
            }
        }
    }
    sink.flush();
}

/// A line exceeded [`TCP_MAX_LINE`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LineTooLong;

/// Cuts a byte stream into lines. Complete lines are handed out straight from the buffer
/// that was read into; only a partial last line is copied, to be completed by the next read.
pub(crate) struct LineFramer {
    /// The partial line carried from the last read: at most `TCP_MAX_LINE` bytes, so never
    /// more than that is held per connection.
    partial: Vec<u8>,
}

impl LineFramer {
    pub(crate) fn new() -> Self {
        LineFramer {
            partial: Vec::new(),
        }
    }

    /// Hands every line completed by `chunk` to `sink`, `\n` or `\r\n` removed, and keeps the
    /// partial last line. Stops at the first line longer than [`TCP_MAX_LINE`]; the caller
    /// must then close the connection, as statsd_exporter does.
    pub(crate) fn feed<S: Sink>(&mut self, chunk: &[u8], sink: &mut S) -> Result<(), LineTooLong> {
        let mut rest = chunk;
        if !self.partial.is_empty() {
            match memchr::memchr(b'\n', rest) {
                Some(end) => {
                    if self.partial.len() + end > TCP_MAX_LINE {
                        return Err(LineTooLong);
                    }
                    self.partial.extend_from_slice(&rest[..end]);
                    sink.line(strip_cr(&self.partial));
                    self.partial.clear();
                    rest = &rest[end + 1..];
                }
                None => {
                    if self.partial.len() + rest.len() > TCP_MAX_LINE {
                        return Err(LineTooLong);
                    }
                    self.partial.extend_from_slice(rest);
                    return Ok(());
                }
            }
        }
        while let Some(end) = memchr::memchr(b'\n', rest) {
            if end > TCP_MAX_LINE {
                return Err(LineTooLong);
            }
            sink.line(strip_cr(&rest[..end]));
            rest = &rest[end + 1..];
        }
        if rest.len() > TCP_MAX_LINE {
            return Err(LineTooLong);
        }
        self.partial.extend_from_slice(rest);
        Ok(())
    }

    /// At end of stream: hands a pending unterminated line to `sink` as it is (a trailing `\r`
    /// stays, as with Go's ReadLine).
    pub(crate) fn finish<S: Sink>(&mut self, sink: &mut S) {
        if !self.partial.is_empty() {
            sink.line(&self.partial);
            self.partial = Vec::new();
        }
    }
}

/// A line without the `\r` of a `\r\n` ending.
fn strip_cr(line: &[u8]) -> &[u8] {
    match line {
        [rest @ .., b'\r'] => rest,
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Lines {
        lines: Vec<Vec<u8>>,
        flushes: usize,
    }

    impl Sink for Lines {
        fn datagram(&mut self, _payload: &[u8]) {}
        fn line(&mut self, line: &[u8]) {
            self.lines.push(line.to_vec());
        }
        fn flush(&mut self) {
            self.flushes += 1;
        }
    }

    /// Feeds `chunks` as successive reads, then EOF.
    fn frame(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Result<(), LineTooLong>) {
        let mut framer = LineFramer::new();
        let mut sink = Lines::default();
        for chunk in chunks {
            if let Err(err) = framer.feed(chunk, &mut sink) {
                return (sink.lines, Err(err));
            }
        }
        framer.finish(&mut sink);
        (sink.lines, Ok(()))
    }

    fn lines(ls: &[&str]) -> Vec<Vec<u8>> {
        ls.iter().map(|l| l.as_bytes().to_vec()).collect()
    }

    #[test]
    fn the_descriptor_reserve_is_256_or_half_a_small_limit() {
        assert_eq!(connection_room(1_048_576), 1_048_576 - 256);
        assert_eq!(connection_room(1024), 768);
        assert_eq!(connection_room(512), 256);
        assert_eq!(connection_room(128), 64);
        assert_eq!(connection_room(1), 1);
        assert_eq!(connection_room(0), 0);
    }

    #[test]
    fn strips_lf_and_crlf() {
        let (got, res) = frame(&[b"a:1|c\nb:2|g\r\nc:3|ms\n"]);
        assert_eq!(res, Ok(()));
        assert_eq!(got, lines(&["a:1|c", "b:2|g", "c:3|ms"]));
    }

    #[test]
    fn empty_lines_are_delivered() {
        let (got, _) = frame(&[b"\n\r\na\n"]);
        assert_eq!(got, lines(&["", "", "a"]));
    }

    #[test]
    fn lone_cr_inside_a_line_stays() {
        let (got, _) = frame(&[b"a\rb\n"]);
        assert_eq!(got, lines(&["a\rb"]));
    }

    #[test]
    fn partial_last_line_at_eof_is_delivered_unstripped() {
        let (got, _) = frame(&[b"a\nb:1|c"]);
        assert_eq!(got, lines(&["a", "b:1|c"]));
        let (got, _) = frame(&[b"a\nb\r"]);
        assert_eq!(got, lines(&["a", "b\r"]));
    }

    #[test]
    fn lines_split_across_reads() {
        let (got, _) = frame(&[b"ab", b"c:1", b"|c\r", b"\nd:2|c\n", b"e"]);
        assert_eq!(got, lines(&["abc:1|c", "d:2|c", "e"]));
    }

    #[test]
    fn longest_allowed_line_passes() {
        let line = vec![b'x'; TCP_MAX_LINE];
        let mut input = line.clone();
        input.push(b'\n');
        let (got, res) = frame(&[&input]);
        assert_eq!(res, Ok(()));
        assert_eq!(got, vec![line.clone()]);
        // Unterminated at EOF, the same length still fits Go's buffer.
        let (got, res) = frame(&[&line]);
        assert_eq!(res, Ok(()));
        assert_eq!(got, vec![line]);
    }

    #[test]
    fn one_byte_more_is_too_long() {
        let mut input = vec![b'x'; TCP_MAX_LINE + 1];
        input.push(b'\n');
        assert_eq!(frame(&[b"ok\n", &input, b"after\n"]).1, Err(LineTooLong));
        assert_eq!(frame(&[b"ok\n", &input]).0, lines(&["ok"]));
        // Without a newline yet: detected as soon as the buffer would be full.
        assert_eq!(frame(&[&input[..TCP_MAX_LINE + 1]]).1, Err(LineTooLong));
    }

    #[test]
    fn crlf_counts_the_cr_like_go() {
        // 4095 bytes + "\r\n" does not fit Go's 4096-byte buffer with its '\n'.
        let mut input = vec![b'x'; TCP_MAX_LINE];
        input.extend_from_slice(b"\r\n");
        assert_eq!(frame(&[&input]).1, Err(LineTooLong));
        let mut input = vec![b'x'; TCP_MAX_LINE - 1];
        input.extend_from_slice(b"\r\n");
        assert_eq!(frame(&[&input]).0, vec![vec![b'x'; TCP_MAX_LINE - 1]]);
    }

    #[test]
    fn long_line_split_across_reads_is_too_long() {
        let part = vec![b'y'; 3000];
        assert_eq!(frame(&[&part, &part, b"\n"]).1, Err(LineTooLong));
    }

    #[test]
    fn many_lines_fill_whole_reads() {
        let mut input = Vec::new();
        for i in 0..20_000 {
            input.extend_from_slice(format!("metric.{i}:1|c\n").as_bytes());
        }
        let mut framer = LineFramer::new();
        let mut sink = Lines::default();
        for chunk in input.chunks(READ_CHUNK) {
            framer.feed(chunk, &mut sink).unwrap();
        }
        framer.finish(&mut sink);
        assert_eq!(sink.lines.len(), 20_000);
        assert_eq!(sink.lines[19_999], b"metric.19999:1|c");
    }
}
