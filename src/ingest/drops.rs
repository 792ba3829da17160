//! `statsd_exporter_udp_packet_drops_total`: the kernel's drop counts of every UDP socket the
//! gateway has opened, summed when the self-metrics are rendered (each scrape and each
//! remote_write snapshot), so the value is exact at that moment.
//!
//! The kernel keeps one cumulative drop counter per socket (`sk_drops`, what `/proc/net/udp`
//! shows as `drops`). It is read with `SO_MEMINFO` at render time. `SO_RXQ_OVFL` would only
//! stamp it on the next datagram queued, so drops after which nothing else arrives would
//! never be counted; it is used only on a kernel whose `SO_MEMINFO` lacks the counter, and
//! then the receive thread stores the stamped value where the render reads it. Either way
//! each socket has exactly one source, and only the render writes the counter.
//!
//! A socket's count stays in the sum after the socket is closed (a stopped listener), so the
//! counter never goes back. When a render finds that it grew, a warning says so (at most one
//! a minute), so the drops also show in the log.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use socket2::Socket;

use super::sys::{enable_drop_counter, socket_drops};
use crate::logging::LogLimiter;
use crate::telemetry::{self, catalog};

/// Where a socket's drop count is read.
enum Reading {
    /// `getsockopt(SO_MEMINFO)` on the socket, at render time.
    MemInfo(Arc<Socket>),
    /// The last count `SO_RXQ_OVFL` stamped on a datagram, stored by the receive thread.
    Stamped(Arc<AtomicU32>),
}

impl Reading {
    fn now(&self) -> Option<u32> {
        match self {
            Reading::MemInfo(socket) => socket_drops(socket.as_ref()).ok(),
            Reading::Stamped(count) => Some(count.load(Ordering::Relaxed)),
        }
    }
}

/// One open socket's share of the sum.
struct Tracked {
    id: u64,
    reading: Reading,
    /// The kernel's 32-bit count when last read.
    last: u32,
    /// Drops counted for this socket so far: the growth of `last` over all reads, so a
    /// wrapped kernel counter keeps counting up.
    counted: u64,
}

impl Tracked {
    fn refresh(&mut self) {
        if let Some(now) = self.reading.now() {
            self.counted += u64::from(now.wrapping_sub(self.last));
            self.last = now;
        }
    }
}

/// Every socket counted: the open ones, and the sum of the closed ones.
struct Registry {
    next_id: u64,
    open: Vec<Tracked>,
    closed: u64,
    /// The total when a warning last reported it.
    logged: u64,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next_id: 0,
    open: Vec::new(),
    closed: 0,
    logged: 0,
});

static GROWTH_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(60));

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // The registry's sums are valid whatever a panicking holder was doing.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// The drops of every UDP socket the gateway has opened, up to now.
fn total_in(registry: &mut Registry) -> u64 {
    let mut total = registry.closed;
    for tracked in &mut registry.open {
        tracked.refresh();
        total += tracked.counted;
    }
    total
}

/// Sets `statsd_exporter_udp_packet_drops_total` to the total; run on every render.
fn publish() {
    let mut registry = registry();
    let total = total_in(&mut registry);
    if total > registry.logged && GROWTH_LOG.allow().is_some() {
        tracing::warn!(
            listener = "udp",
            dropped = total - registry.logged,
            total,
            "the kernel dropped UDP datagrams because a socket's receive buffer was full; \
             a larger --statsd.read-buffer (with net.core.rmem_max) or more \
             --statsd.udp-sockets may help"
        );
        registry.logged = total;
    }
    drop(registry);
    catalog::UDP_PACKET_DROPS.counter([]).absolute(total);
}

/// A bound UDP socket whose kernel drops are counted until it is dropped. Its receive thread
/// owns it.
pub(crate) struct CountedSocket {
    socket: Arc<Socket>,
    /// The registry entry; `None` when this kernel gives no drop count.
    id: Option<u64>,
}

impl AsRawFd for CountedSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl Drop for CountedSocket {
    fn drop(&mut self) {
        let Some(id) = self.id else { return };
        let mut registry = registry();
        if let Some(at) = registry.open.iter().position(|t| t.id == id) {
            let mut tracked = registry.open.swap_remove(at);
            // The last drops before the socket closes (the registry's reference to it goes
            // with `tracked`, this one right after).
            tracked.refresh();
            registry.closed += tracked.counted;
        }
    }
}

/// Starts counting `socket`'s kernel drops in `statsd_exporter_udp_packet_drops_total`.
/// Returns the socket for its receive thread and, when drops can only be read from
/// `SO_RXQ_OVFL` (now enabled), where that thread stores the last count it saw.
pub(crate) fn track(socket: Socket, address: &str) -> (CountedSocket, Option<Arc<AtomicU32>>) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| telemetry::on_render(publish));

    let socket = Arc::new(socket);
    let (reading, stamped, last) = match socket_drops(socket.as_ref()) {
        Ok(now) => (Reading::MemInfo(Arc::clone(&socket)), None, now),
        Err(meminfo) => match enable_drop_counter(socket.as_ref()) {
            Ok(()) => {
                let count = Arc::new(AtomicU32::new(0));
                (Reading::Stamped(Arc::clone(&count)), Some(count), 0)
            }
            Err(err) => {
                // Not fatal: only the drop counter is lost.
                tracing::warn!(%address, error = %err, meminfo = %meminfo, "cannot read the socket's drop count (SO_MEMINFO, SO_RXQ_OVFL); kernel drops will not be counted");
                return (CountedSocket { socket, id: None }, None);
            }
        },
    };
    let mut registry = registry();
    let id = registry.next_id;
    registry.next_id += 1;
    registry.open.push(Tracked {
        id,
        reading,
        last,
        counted: 0,
    });
    (
        CountedSocket {
            socket,
            id: Some(id),
        },
        stamped,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, UdpSocket};

    fn total() -> u64 {
        total_in(&mut registry())
    }

    fn bound(buffer: usize) -> (Socket, SocketAddr) {
        let socket = Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        socket.set_recv_buffer_size(buffer).unwrap();
        socket
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        (socket, addr)
    }

    /// Fills `addr`'s small buffer: nothing reads it, so most of these are dropped.
    fn flood(addr: SocketAddr) {
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..200 {
            client.send_to(&[b'x'; 1000], addr).unwrap();
        }
    }

    /// Other tests in this process open counted sockets too, so this one looks at how the
    /// total grows, with its own socket's count read beside it.
    #[test]
    fn drops_are_counted_while_open_and_kept_after_close() {
        let (socket, addr) = bound(4096);
        let (counted, stamped) = track(socket, "test");
        assert!(stamped.is_none(), "SO_MEMINFO gives the drop count here");
        let before = total();
        flood(addr);
        let drops = u64::from(socket_drops(&counted).unwrap());
        assert!(drops > 100, "{drops}");
        let open = total();
        assert!(open >= before + drops, "{before} + {drops} > {open}");
        drop(counted);
        assert!(total() >= open, "a closed socket's drops stay counted");
    }
}
