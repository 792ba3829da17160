//! Sockets: bytes in, datagrams and lines out. No parsing happens here.
//!
//! Each listener hands what it reads to a [`Sink`] that it owns outright: one per UDP receive
//! thread, one per TCP connection, one for the unixgram thread. The sink parses, maps and stores
//! in place, so there is no channel hop and no lock between the socket and the store (a UDP
//! thread slowed down reads ahead into a queue of its own, `backlog.rs`). A sink is
//! told when a receive batch ends ([`Sink::flush`]) so it can publish its own counters once per
//! batch rather than once per line.
//!
//! Abuse is bounded per listener: TCP connections have a limit and an idle timeout (see
//! [`TcpOptions`]); UDP sockets are picked by source address and a port held by another
//! process is refused (see [`start_udp`]); a stale unixgram socket file is replaced but a live
//! one is not (see [`start_unixgram`]).
//!
//! Framing follows statsd_exporter (§1.1 of the reference notes): UDP and unixgram deliver whole
//! datagrams (the sink splits them on `\n` with [`datagram_lines`]); TCP delivers lines with
//! `\n` or `\r\n` removed, at most 4095 bytes each, closing a connection that sends a longer
//! one.
//!
//! Files: `udp.rs`, `tcp.rs`, `unixgram.rs` (one listener each), `batch.rs` (the datagram
//! receive loop), `backlog.rs` (the bounded queue a UDP receive thread reads ahead into while
//! handling is slow), `drops.rs` (the UDP sockets' kernel drop counts), `socket.rs` (socket
//! setup they share), `sys.rs` (every `unsafe` system
//! call), `relay.rs` (a sink decorator that relays lines to other statsd servers; with several
//! it reads each line's series, through [`crate::line`], to pick the one that owns it).

mod backlog;
mod batch;
mod drops;
mod relay;
mod socket;
mod sys;
mod tcp;
mod udp;
mod unixgram;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub use relay::{RelayError, RelayTarget, Relayed, RelayedSink};
pub use socket::{DEFAULT_READ_BUFFER, ReadBuffer, parse_listen_address};
pub(crate) use sys::descriptor_limit;
pub use sys::{HEAP_GROWTH_STEP, pad_heap_growth};
pub use tcp::{
    DEFAULT_TCP_IDLE_TIMEOUT, DEFAULT_TCP_MAX_CONNECTIONS, RESERVED_DESCRIPTORS, TCP_MAX_LINE,
    TcpOptions, raise_descriptor_limit, start_tcp,
};
pub use udp::{DEFAULT_PACKET_QUEUE, UdpOptions, start_udp};
pub use unixgram::{UnixgramOptions, start_unixgram};

/// Receives what a listener reads. One instance per receive thread / connection, never shared.
pub trait Sink: Send + 'static {
    /// One UDP or unixgram datagram payload (may hold many `\n`-separated lines; the sink splits).
    fn datagram(&mut self, payload: &[u8]);
    /// One line from a stream (TCP), framing (`\n` or `\r\n`) already removed.
    fn line(&mut self, line: &[u8]);
    /// End of a receive batch (after a `recvmmsg` batch, on a receive timeout, or when a TCP
    /// read buffer is drained): publish counters.
    fn flush(&mut self);
    /// Whether the sink wants [`Sink::sender`] calls. Asked once, before the listener hands
    /// the sink anything; when false (the default) the UDP listener does not even ask the
    /// kernel for source addresses.
    fn wants_sender(&self) -> bool {
        false
    }
    /// Who sent the datagrams or lines that follow, until the next call: called, when
    /// [`Sink::wants_sender`] is true, before each UDP datagram with its source address,
    /// before each unixgram datagram with `None`, and once per TCP connection, before its
    /// first line, with the peer's address. The default ignores it.
    fn sender(&mut self, _from: Option<IpAddr>) {}
}

/// Makes a [`Sink`] per thread/connection.
pub trait SinkFactory: Send + Sync + 'static {
    /// The sink type this factory makes.
    type Sink: Sink;
    /// Called by [`start_udp`] once per socket and by [`start_unixgram`] once, on the caller's
    /// thread before the receive threads start (the sink then moves to its thread); and once per
    /// accepted TCP connection, on the runtime, before that connection is read.
    fn make_sink(&self) -> Self::Sink;
}

/// Why a listener could not start. Every variant names the address or path involved.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A listen address that is not `host:port`, `[v6]:port` or `:port`.
    #[error("invalid listen address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host part of a listen address did not resolve.
    #[error("cannot resolve listen address {address:?}: {source}")]
    Resolve {
        /// The address as given.
        address: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// Listener options that cannot work (for example zero sockets).
    #[error("invalid {listener} listener option for {address}: {reason}")]
    InvalidOption {
        /// `udp`, `tcp` or `unixgram`.
        listener: &'static str,
        /// The address or path the listener was for.
        address: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Creating the socket failed.
    #[error("cannot create {listener} socket for {address}: {source}")]
    Socket {
        /// `udp`, `tcp` or `unixgram`.
        listener: &'static str,
        /// The address or path.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Setting a socket option failed.
    #[error("cannot set {option} on {listener} socket {address}: {source}")]
    SocketOption {
        /// `udp`, `tcp` or `unixgram`.
        listener: &'static str,
        /// The address or path.
        address: String,
        /// The option, e.g. `SO_REUSEPORT`.
        option: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another socket holds the address: another process listens there (statsd_exporter
    /// words it the same way).
    #[error("listen {listener} {address}: address already in use")]
    AddressInUse {
        /// `udp`, `tcp` or `unixgram`.
        listener: &'static str,
        /// The address or path.
        address: String,
    },
    /// Binding (or listening) failed for another reason: permission denied, no such interface.
    #[error("cannot bind {listener} socket to {address}: {source}")]
    Bind {
        /// `udp`, `tcp` or `unixgram`.
        listener: &'static str,
        /// The address or path.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The unixgram socket path exists and is not a socket that can be replaced: a file of
    /// another kind, or a socket whose state cannot be probed (statsd_exporter refuses to start
    /// whenever the path exists).
    #[error("unixgram socket path {} already exists and is not a stale socket", path.display())]
    PathExists {
        /// The socket path.
        path: PathBuf,
    },
    /// The unixgram socket path is a socket that a live process is bound to.
    #[error("unixgram socket {} is in use by another process", path.display())]
    SocketInUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Changing the unixgram socket file's mode failed.
    #[error("cannot chmod unixgram socket {} to {mode:o}: {source}", path.display())]
    Chmod {
        /// The socket path.
        path: PathBuf,
        /// The requested mode.
        mode: u32,
        /// The OS error.
        source: std::io::Error,
    },
    /// Starting a receive thread failed.
    #[error("cannot start receive thread {name} for {address}: {source}")]
    Spawn {
        /// The thread name.
        name: String,
        /// The address or path.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A running listener. Dropping it, or calling [`Listener::shutdown`], stops it: receive threads
/// are told to stop and joined (they notice within their ~100 ms receive timeout), the TCP accept
/// task and its connection tasks are aborted, and a unixgram socket file is removed.
#[must_use = "dropping a Listener stops it"]
pub struct Listener {
    /// `udp`, `tcp` or `unixgram`.
    transport: &'static str,
    local_addr: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    socket_path: Option<PathBuf>,
    read_buffers: Vec<usize>,
}

impl Listener {
    /// The bound address (with the real port when port 0 was asked for); `None` for unixgram.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The transport: `udp`, `tcp` or `unixgram`.
    pub fn transport(&self) -> &'static str {
        self.transport
    }

    /// Where it listens, as an operator would write it: the bound address, or the socket
    /// file's path for unixgram.
    pub fn endpoint(&self) -> String {
        match (&self.local_addr, &self.socket_path) {
            (Some(addr), _) => addr.to_string(),
            (None, Some(path)) => path.display().to_string(),
            (None, None) => String::new(),
        }
    }

    /// The `SO_RCVBUF` each socket got, read back from the socket after setting the
    /// `read_buffer` option; empty when the option kept the system default, and for TCP.
    pub fn read_buffers(&self) -> &[usize] {
        &self.read_buffers
    }

    /// Stops the listener and waits for its threads to exit.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.local_addr)
            .field("threads", &self.threads.len())
            .field("task", &self.task.is_some())
            .field("socket_path", &self.socket_path)
            .field("read_buffers", &self.read_buffers)
            .finish()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            // Aborting the accept task drops its JoinSet, which aborts every connection task.
            task.abort();
        }
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("an ingest receive thread panicked");
            }
        }
        if let Some(path) = self.socket_path.take()
            && let Err(err) = std::fs::remove_file(&path)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %err, "cannot remove unixgram socket");
        }
    }
}

/// How long a blocking receive waits before the thread looks at its stop flag. Bounds shutdown
/// latency, and is the longest a sink waits for a `flush` when traffic stops.
pub(crate) const RECEIVE_TIMEOUT: Duration = Duration::from_millis(100);

/// The largest datagram UDP can carry (and what statsd_exporter accepts).
pub(crate) const MAX_DATAGRAM: usize = 65535;

/// The `\n`-separated lines of a datagram, in order: empty ones included, and the last one
/// whether or not a `\n` ends the datagram (`"a\n"` is `"a"` and `""`), as statsd_exporter
/// splits them.
pub fn datagram_lines(payload: &[u8]) -> DatagramLines<'_> {
    DatagramLines {
        rest: Some(payload),
    }
}

/// Iterator returned by [`datagram_lines`].
#[derive(Clone, Debug)]
pub struct DatagramLines<'a> {
    /// What is left to split; `None` after the last line.
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for DatagramLines<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match memchr::memchr(b'\n', rest) {
            Some(end) => {
                self.rest = Some(&rest[end + 1..]);
                Some(&rest[..end])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(payload: &[u8]) -> Vec<&[u8]> {
        datagram_lines(payload).collect()
    }

    #[test]
    fn datagrams_split_on_every_newline() {
        assert_eq!(lines(b""), [b"" as &[u8]]);
        assert_eq!(lines(b"a:1|c"), [b"a:1|c" as &[u8]]);
        assert_eq!(lines(b"a\n"), [b"a" as &[u8], b""]);
        assert_eq!(lines(b"a\n\nb\r"), [b"a" as &[u8], b"", b"b\r"]);
    }
}
