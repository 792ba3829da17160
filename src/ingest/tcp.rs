//! TCP listener: a tokio task per connection, each with its own [`Sink`], framing lines the way
//! statsd_exporter's `bufio.Reader.ReadLine` with a 4096-byte buffer does.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use socket2::{Protocol, Type};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::socket::{bind_error, bind_with_ipv4_fallback, ip_socket, option_error};
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

/// Bytes read per `read` call. Large so that a busy connection costs few syscalls; a partial
/// line carried over between reads is at most [`TCP_MAX_LINE`] bytes, so most of it is free.
const READ_CHUNK: usize = 64 * 1024;

/// Pending connections the kernel queues before `accept`.
const LISTEN_BACKLOG: i32 = 1024;

static TOO_LONG_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));
static CONNECTION_ERROR_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));
static ACCEPT_ERROR_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));

/// How to run the TCP listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpOptions {
    /// Where to listen. Default `[::]:9125`, bound dual-stack (see
    /// [`parse_listen_address`](super::parse_listen_address)).
    pub addr: SocketAddr,
}

impl Default for TcpOptions {
    /// `[::]:9125`, statsd_exporter's default `:9125`.
    fn default() -> Self {
        TcpOptions {
            addr: SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), 9125),
        }
    }
}

/// Binds `opts.addr` and spawns, on the current tokio runtime, an accept task that starts a task
/// with its own sink for every connection.
///
/// Bind errors are returned. Counts `statsd_exporter_tcp_connections_total` per accepted
/// connection, `statsd_exporter_tcp_connection_errors_total` per read error other than EOF and
/// `statsd_exporter_tcp_too_long_lines_total` per connection closed for a too-long line.
///
/// Shutting the [`Listener`] down aborts the accept task and all connection tasks; the
/// listening socket closes when the runtime drops the aborted task.
pub async fn start_tcp<F: SinkFactory>(
    opts: &TcpOptions,
    factory: Arc<F>,
) -> Result<Listener, IngestError> {
    let listener = bind_with_ipv4_fallback(LISTENER, opts.addr, bind_listener)?;
    let local_addr = listener.local_addr().unwrap_or(opts.addr);
    tracing::info!(listener = "tcp", address = %local_addr, "accepting statsd over TCP");
    let task = tokio::spawn(accept_loop(listener, factory));
    Ok(Listener {
        local_addr: Some(local_addr),
        stop: Arc::new(AtomicBool::new(false)),
        threads: Vec::new(),
        task: Some(task),
        socket_path: None,
        read_buffers: Vec::new(),
    })
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

async fn accept_loop<F: SinkFactory>(listener: TcpListener, factory: Arc<F>) {
    let counters = ConnectionCounters {
        errors: catalog::TCP_CONNECTION_ERRORS.counter([]),
        too_long: catalog::TCP_TOO_LONG_LINES.counter([]),
    };
    let connections = catalog::TCP_CONNECTIONS.counter([]);
    // Owning the connection tasks here means aborting this task aborts them all.
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.increment(1);
                    let sink = factory.make_sink();
                    tasks.spawn(serve_connection(stream, peer, sink, counters.clone()));
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

#[derive(Clone)]
struct ConnectionCounters {
    errors: metrics::Counter,
    too_long: metrics::Counter,
}

async fn serve_connection<S: Sink>(
    mut stream: TcpStream,
    peer: SocketAddr,
    mut sink: S,
    counters: ConnectionCounters,
) {
    let mut framer = LineFramer::new();
    loop {
        match stream.read(framer.spare()).await {
            Ok(0) => {
                framer.finish(&mut sink);
                break;
            }
            Ok(n) => {
                framer.filled(n);
                let framed = framer.deliver_lines(&mut sink);
                sink.flush();
                if framed.is_err() {
                    counters.too_long.increment(1);
                    if TOO_LONG_LOG.allow().is_some() {
                        tracing::debug!(%peer, "closing TCP connection: line longer than {TCP_MAX_LINE} bytes");
                    }
                    return;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
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

/// Cuts a byte stream into lines inside one reused buffer: no allocation per line or per read.
pub(crate) struct LineFramer {
    buf: Box<[u8]>,
    /// Bytes of `buf` holding data: a partial line (< 4096 bytes) carried from the last read,
    /// then whatever the last read added.
    len: usize,
}

impl LineFramer {
    pub(crate) fn new() -> Self {
        LineFramer {
            buf: vec![0u8; READ_CHUNK].into_boxed_slice(),
            len: 0,
        }
    }

    /// Where the next read goes. Never empty: at most `TCP_MAX_LINE` bytes are carried over.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        &mut self.buf[self.len..]
    }

    /// Records that `n` bytes were read into [`spare`](Self::spare).
    pub(crate) fn filled(&mut self, n: usize) {
        self.len = (self.len + n).min(self.buf.len());
    }

    /// Hands every complete line to `sink`, `\n` or `\r\n` removed, and keeps the partial last
    /// line. Stops at the first line longer than [`TCP_MAX_LINE`]; the caller must then close
    /// the connection, as statsd_exporter does.
    pub(crate) fn deliver_lines<S: Sink>(&mut self, sink: &mut S) -> Result<(), LineTooLong> {
        let data = &self.buf[..self.len];
        let mut start = 0;
        while let Some(offset) = data[start..].iter().position(|&b| b == b'\n') {
            if offset > TCP_MAX_LINE {
                return Err(LineTooLong);
            }
            let mut line = &data[start..start + offset];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            sink.line(line);
            start += offset + 1;
        }
        let rest = self.len - start;
        if rest > TCP_MAX_LINE {
            return Err(LineTooLong);
        }
        self.buf.copy_within(start..self.len, 0);
        self.len = rest;
        Ok(())
    }

    /// At end of stream: hands a pending unterminated line to `sink` as it is (a trailing `\r`
    /// stays, as with Go's ReadLine).
    pub(crate) fn finish<S: Sink>(&mut self, sink: &mut S) {
        if self.len > 0 {
            sink.line(&self.buf[..self.len]);
            self.len = 0;
        }
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
            framer.spare()[..chunk.len()].copy_from_slice(chunk);
            framer.filled(chunk.len());
            if let Err(err) = framer.deliver_lines(&mut sink) {
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
        let mut rest = &input[..];
        while !rest.is_empty() {
            let spare = framer.spare();
            let n = spare.len().min(rest.len());
            spare[..n].copy_from_slice(&rest[..n]);
            framer.filled(n);
            rest = &rest[n..];
            framer.deliver_lines(&mut sink).unwrap();
        }
        framer.finish(&mut sink);
        assert_eq!(sink.lines.len(), 20_000);
        assert_eq!(sink.lines[19_999], b"metric.19999:1|c");
    }
}
