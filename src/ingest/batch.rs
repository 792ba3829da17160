//! Batched datagram receive (`recvmmsg`) shared by the UDP and unixgram listeners.
//!
//! One [`BatchReceiver`] belongs to one receive thread. It owns `batch` preallocated buffers of
//! [`MAX_DATAGRAM`] bytes and the `mmsghdr`/`iovec` arrays that point into them, built once and
//! reused for every call, so receiving never allocates.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{LogLimiter, MAX_DATAGRAM, Sink};

/// `SO_RXQ_OVFL` from `<asm/socket.h>`; libc does not export it for every Linux target.
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_RXQ_OVFL: libc::c_int = 0x0024;
/// `SO_RXQ_OVFL` from `<asm/socket.h>`; libc does not export it for every Linux target.
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_RXQ_OVFL: libc::c_int = 40;

/// Room for one control message carrying the kernel's `u32` drop counter.
// SAFETY: CMSG_SPACE is plain arithmetic on its argument.
const CONTROL_LEN: usize = unsafe { libc::CMSG_SPACE(size_of::<u32>() as libc::c_uint) } as usize;
/// `CONTROL_LEN` in `u64` words: the control buffers are `u64`s so that every `cmsghdr` in them
/// is suitably aligned.
const CONTROL_WORDS: usize = CONTROL_LEN.div_ceil(size_of::<u64>());

/// Asks the kernel to attach the socket's cumulative drop counter to received datagrams.
pub(crate) fn enable_drop_counter(fd: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` outlives the call and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_RXQ_OVFL,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One received datagram.
pub(crate) struct Datagram<'a> {
    pub(crate) payload: &'a [u8],
    /// The kernel cut the datagram to fit the buffer (cannot happen with 65535-byte buffers).
    pub(crate) truncated: bool,
    /// The socket's cumulative drop count, when the kernel attached it.
    pub(crate) drop_count: Option<u32>,
}

/// Preallocated `recvmmsg` state for one receive thread.
pub(crate) struct BatchReceiver {
    buffers: Vec<u8>,
    control: Vec<u64>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    control_words: usize,
    received: usize,
}

impl BatchReceiver {
    /// `batch` datagrams per call (at least 1); `drop_counter` reserves room for the
    /// `SO_RXQ_OVFL` control message.
    pub(crate) fn new(batch: usize, drop_counter: bool) -> Self {
        let batch = batch.max(1);
        let control_words = if drop_counter { CONTROL_WORDS } else { 0 };
        let iovec = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        BatchReceiver {
            buffers: vec![0u8; batch * MAX_DATAGRAM],
            control: vec![0u64; batch * control_words],
            iovecs: vec![iovec; batch],
            // SAFETY: mmsghdr is a plain C struct for which all-zero is a valid value.
            headers: vec![unsafe { std::mem::zeroed::<libc::mmsghdr>() }; batch],
            control_words,
            received: 0,
        }
    }

    /// Waits for at least one datagram (up to the socket's receive timeout), then takes whatever
    /// else is already queued, up to the batch size. Returns how many were received.
    pub(crate) fn receive(&mut self, fd: &impl AsRawFd) -> io::Result<usize> {
        // The pointers are rebuilt on every call (a few stores per datagram slot) rather than
        // kept from `new`: then none outlives a borrow of the buffers it points into, and the
        // lengths the kernel overwrote are reset to the capacities.
        let buffers = self.buffers.as_mut_ptr();
        let control = self.control.as_mut_ptr();
        let control_len = self.control_words * size_of::<u64>();
        for (i, (header, iovec)) in self.headers.iter_mut().zip(&mut self.iovecs).enumerate() {
            // SAFETY: `buffers` holds `headers.len()` slots of MAX_DATAGRAM bytes and `control`
            // holds `headers.len()` slots of `control_words` words, so both offsets stay inside.
            unsafe {
                iovec.iov_base = buffers.add(i * MAX_DATAGRAM).cast();
                iovec.iov_len = MAX_DATAGRAM;
                header.msg_hdr.msg_control = if control_len == 0 {
                    std::ptr::null_mut()
                } else {
                    control.add(i * self.control_words).cast()
                };
            }
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_controllen = control_len as _;
            header.msg_hdr.msg_flags = 0;
            header.msg_len = 0;
        }
        self.received = 0;
        // SAFETY: every header points at an iovec and a control buffer owned by `self` and sized
        // as declared; `headers.len()` is the vector length; a null timeout is allowed.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.headers.as_mut_ptr(),
                self.headers.len() as libc::c_uint,
                libc::MSG_WAITFORONE as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// The `i`th datagram of the last [`receive`](Self::receive); `i` < its return value.
    pub(crate) fn datagram(&self, i: usize) -> Datagram<'_> {
        let header = &self.headers[i];
        let len = (header.msg_len as usize).min(MAX_DATAGRAM);
        let start = i * MAX_DATAGRAM;
        Datagram {
            payload: &self.buffers[start..start + len],
            truncated: header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            drop_count: self.drop_count(&header.msg_hdr),
        }
    }

    fn drop_count(&self, header: &libc::msghdr) -> Option<u32> {
        if self.control.is_empty() {
            return None;
        }
        let mut found = None;
        // SAFETY: `header` was filled in by recvmmsg; its msg_control/msg_controllen describe
        // the returned control data inside `self.control`, which CMSG_FIRSTHDR/NXTHDR walk
        // without leaving it. The data read is the u32 the kernel wrote for SO_RXQ_OVFL.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(header);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == SO_RXQ_OVFL {
                    found = Some(libc::CMSG_DATA(cmsg).cast::<u32>().read_unaligned());
                }
                cmsg = libc::CMSG_NXTHDR(header, cmsg);
            }
        }
        found
    }
}

/// What a receive loop reports, besides handing datagrams to its sink.
pub(crate) struct LoopCounters {
    /// Incremented by the number of datagrams in each batch.
    pub(crate) packets: metrics::Counter,
    /// Incremented by the growth of the kernel's drop counter; `None` when not tracked.
    pub(crate) drops: Option<metrics::Counter>,
}

static RECEIVE_ERROR_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));
static TRUNCATED_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));

/// Receives batches from `socket` into `sink` until `stop` is set. The socket must have a
/// receive timeout so that the flag is looked at regularly.
pub(crate) fn run_receive_loop<S: Sink>(
    socket: &impl AsRawFd,
    sink: &mut S,
    receiver: &mut BatchReceiver,
    counters: &LoopCounters,
    stop: &Arc<AtomicBool>,
    listener: &'static str,
) {
    // The kernel's counter is cumulative per socket and starts at zero. It is stamped on a
    // datagram when that datagram is queued, and only when non-zero, so drops show up with the
    // next datagram that gets through, and a missing value means "no drops yet".
    let mut last_drop_count: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        match receiver.receive(socket) {
            Ok(n) => {
                counters.packets.increment(n as u64);
                let mut drop_count = last_drop_count;
                for i in 0..n {
                    let datagram = receiver.datagram(i);
                    if let Some(count) = datagram.drop_count {
                        drop_count = count;
                    }
                    if datagram.truncated {
                        // A cut datagram would end in a half line that parses as garbage.
                        if TRUNCATED_LOG.allow() {
                            tracing::warn!(
                                listener,
                                "dropping a truncated datagram (larger than {MAX_DATAGRAM} bytes)"
                            );
                        }
                        continue;
                    }
                    sink.datagram(datagram.payload);
                }
                if let Some(drops) = &counters.drops {
                    let delta = drop_count.wrapping_sub(last_drop_count);
                    if delta > 0 {
                        drops.increment(u64::from(delta));
                    }
                }
                last_drop_count = drop_count;
                sink.flush();
            }
            Err(err) => match err.kind() {
                // Receive timeout: nothing arrived; let the sink publish and look at `stop`.
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => sink.flush(),
                io::ErrorKind::Interrupted => {}
                _ => {
                    if RECEIVE_ERROR_LOG.allow() {
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
    use crate::ingest::{RECEIVE_TIMEOUT, names};
    use std::net::UdpSocket;

    #[derive(Default)]
    struct CountingSink {
        datagrams: u64,
        flushes: u64,
    }

    impl Sink for CountingSink {
        fn datagram(&mut self, _payload: &[u8]) {
            self.datagrams += 1;
        }
        fn line(&mut self, _line: &[u8]) {}
        fn flush(&mut self) {
            self.flushes += 1;
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
        let mut receiver = BatchReceiver::new(2, true);
        let mut got = Vec::new();
        while got.len() < payloads.len() {
            let n = receiver.receive(&server).unwrap();
            assert!(n <= 2);
            for i in 0..n {
                let datagram = receiver.datagram(i);
                assert!(!datagram.truncated);
                assert_eq!(datagram.drop_count, None);
                got.push(datagram.payload.to_vec());
            }
        }
        assert_eq!(got, payloads.map(<[u8]>::to_vec));
        // Nothing left: the receive timeout surfaces as WouldBlock.
        let err = receiver.receive(&server).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    /// The kernel stamps its drop count on datagrams queued after the drops, so the count is
    /// published with the next datagram that gets through.
    #[test]
    fn kernel_drops_are_counted_from_so_rxq_ovfl() {
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
        let helper = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                client.send_to(b"after:1|c", addr).unwrap();
                std::thread::sleep(Duration::from_millis(300));
                stop.store(true, Ordering::Relaxed);
            })
        };
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let mut sink = CountingSink::default();
        metrics::with_local_recorder(&recorder, || {
            let counters = LoopCounters {
                packets: metrics::counter!(names::UDP_PACKETS),
                drops: Some(metrics::counter!(names::UDP_PACKET_DROPS)),
            };
            let mut receiver = BatchReceiver::new(8, true);
            run_receive_loop(&server, &mut sink, &mut receiver, &counters, &stop, "udp");
        });
        helper.join().unwrap();

        let rendered = handle.render();
        let packets = counter_value(&rendered, names::UDP_PACKETS);
        let drops = counter_value(&rendered, names::UDP_PACKET_DROPS);
        assert_eq!(packets, sink.datagrams);
        assert!(drops > 0, "{rendered}");
        assert_eq!(packets + drops, sent + 1, "{rendered}");
        assert!(sink.flushes >= 2, "flushed after batches and on timeouts");
    }
}
