//! Every `unsafe` system call of ingest, behind safe wrappers: batched receive
//! (`recvmmsg`), the kernel's drop counter (read with `getsockopt(SO_MEMINFO)`, or where that
//! does not give it, `SO_RXQ_OVFL`, set with `setsockopt` and read from each datagram's
//! control messages), a receive buffer over `net.core.rmem_max` (`SO_RCVBUFFORCE`), the
//! reuseport group's socket-selection program
//! (`SO_ATTACH_REUSEPORT_CBPF`), a socket's inode mode before `bind` (`fchmod`) and the
//! descriptor limit (`getrlimit`/`setrlimit`), and glibc's heap growth step (`mallopt`).
//! Everything else uses `std` and `socket2`.
//!
//! One [`BatchReceiver`] belongs to one receive thread. It owns `batch` preallocated buffers of
//! [`MAX_DATAGRAM`] bytes and the `mmsghdr`/`iovec` arrays that point into them (and, when
//! source addresses are wanted, a `sockaddr_storage` per datagram), built once and reused for
//! every call, so receiving never allocates.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use super::MAX_DATAGRAM;

/// How far glibc grows a heap beyond each request (`M_TOP_PAD`).
pub const HEAP_GROWTH_STEP: usize = 4 << 20;

/// Makes glibc grow its heaps [`HEAP_GROWTH_STEP`] at a time; true when it took.
///
/// A receive thread allocates from a heap of its own (a glibc arena), which glibc otherwise
/// grows by just the request, one `mprotect` per page or so: a fresh gateway meeting a fleet's
/// 10k names made ~1,200 of those calls, a tenth of its first-sight time, while datagrams
/// queued up. The pages stay untouched until used, so resident memory does not grow; a heap
/// may keep up to the step of freed memory instead of returning it at once.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn pad_heap_growth() -> bool {
    let Ok(step) = libc::c_int::try_from(HEAP_GROWTH_STEP) else {
        return false;
    };
    // SAFETY: mallopt only sets an allocator parameter; any value is accepted or refused.
    unsafe { libc::mallopt(libc::M_TOP_PAD, step) == 1 }
}

/// Other C libraries grow their heaps their own way.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn pad_heap_growth() -> bool {
    false
}

/// `SO_RXQ_OVFL` from `<asm/socket.h>`; libc does not export it for every Linux target.
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_RXQ_OVFL: libc::c_int = 0x0024;
/// `SO_RXQ_OVFL` from `<asm/socket.h>`; libc does not export it for every Linux target.
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_RXQ_OVFL: libc::c_int = 40;

/// `SO_ATTACH_REUSEPORT_CBPF` from `<asm/socket.h>`; libc does not export it for every Linux
/// target.
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 0x0035;
/// `SO_ATTACH_REUSEPORT_CBPF` from `<asm/socket.h>`; libc does not export it for every Linux
/// target.
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// `SO_MEMINFO` from `<asm/socket.h>`; libc does not export it for Linux.
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_MEMINFO: libc::c_int = 0x0039;
/// `SO_MEMINFO` from `<asm/socket.h>`; libc does not export it for Linux.
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_MEMINFO: libc::c_int = 55;

/// `SO_RCVBUFFORCE` from `<asm/socket.h>`; libc does not export it for Linux.
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_RCVBUFFORCE: libc::c_int = 0x100b;
/// `SO_RCVBUFFORCE` from `<asm/socket.h>`; libc does not export it for Linux.
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_RCVBUFFORCE: libc::c_int = 33;

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

/// The socket's cumulative drop counter (`sk_drops`: datagrams the kernel discarded for this
/// socket, mostly because its receive buffer was full), read now with `SO_MEMINFO`. It is
/// the count `/proc/net/udp` shows in its `drops` column, and a 32-bit counter that wraps.
/// Fails on a kernel whose `SO_MEMINFO` is missing (before Linux 4.12) or too short to hold it.
pub(crate) fn socket_drops(fd: &impl AsRawFd) -> io::Result<u32> {
    const DROPS: usize = libc::SK_MEMINFO_DROPS as usize;
    // Room for more fields than this kernel knows: it writes the ones it has and says how
    // many bytes that was.
    let mut meminfo = [0u32; 16];
    let mut len = size_of_val(&meminfo) as libc::socklen_t;
    // SAFETY: `meminfo` and `len` outlive the call, and `len` is the size of `meminfo`; the
    // kernel writes at most `len` bytes and stores the count it wrote in `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            meminfo.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < (DROPS + 1) * size_of::<u32>() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_MEMINFO has no drop counter on this kernel",
        ));
    }
    Ok(meminfo[DROPS])
}

/// Sets the receive buffer with `SO_RCVBUFFORCE`, which may exceed `net.core.rmem_max`; the
/// kernel refuses it (`EPERM`) without `CAP_NET_ADMIN`. Like `SO_RCVBUF`, the kernel doubles
/// `bytes` for its own bookkeeping.
pub(crate) fn force_receive_buffer(fd: &impl AsRawFd, bytes: usize) -> io::Result<()> {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: `bytes` outlives the call and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_RCVBUFFORCE,
            (&bytes as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Attaches a classic BPF program to the `SO_REUSEPORT` group that `fd` (bound) belongs to.
/// For every datagram the group receives, the kernel runs it and delivers the datagram to the
/// socket whose index in the group (the order of `bind`) it returns; an index out of range
/// makes the kernel fall back to its own hash.
pub(crate) fn attach_reuseport_program(
    fd: &impl AsRawFd,
    program: &[libc::sock_filter],
) -> io::Result<()> {
    let len = libc::c_ushort::try_from(program.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "BPF program too long"))?;
    let fprog = libc::sock_fprog {
        len,
        // The kernel copies the instructions and never writes through this pointer.
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` and the instructions it points to outlive the call, and the length
    // passed is the size of `fprog`; the kernel validates the program itself.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the mode of an unbound Unix socket's inode. Linux creates the socket file at `bind`
/// with this mode less the umask, so a mode of 0 makes the file appear with no permissions
/// at all until it is given its final mode.
pub(crate) fn set_socket_inode_mode(fd: &impl AsRawFd, mode: u32) -> io::Result<()> {
    // SAFETY: fchmod takes a descriptor and a mode; `fd` is an open socket.
    let rc = unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The process's descriptor limit (`RLIMIT_NOFILE`): the soft limit in force and the hard
/// limit it may be raised to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DescriptorLimit {
    /// The limit in force: descriptors numbered at or above it cannot be opened.
    pub(crate) soft: u64,
    /// The ceiling an unprivileged process may raise `soft` to.
    pub(crate) hard: u64,
}

/// Reads `RLIMIT_NOFILE`.
pub(crate) fn descriptor_limit() -> io::Result<DescriptorLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for getrlimit to fill in.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc == 0 {
        #[allow(
            clippy::useless_conversion,
            reason = "rlim_t is narrower than u64 on some 32-bit targets"
        )]
        Ok(DescriptorLimit {
            soft: u64::from(limit.rlim_cur),
            hard: u64::from(limit.rlim_max),
        })
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the soft `RLIMIT_NOFILE` to `soft`, keeping the hard limit.
pub(crate) fn set_descriptor_limit(soft: u64, hard: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: libc::rlim_t::try_from(soft).unwrap_or(libc::RLIM_INFINITY),
        rlim_max: libc::rlim_t::try_from(hard).unwrap_or(libc::RLIM_INFINITY),
    };
    // SAFETY: `limit` is a valid rlimit that setrlimit only reads.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
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
    /// The sender's IP address, when the receiver records sources and the sender has one
    /// (a unixgram sender has none).
    pub(crate) source: Option<IpAddr>,
}

/// Preallocated `recvmmsg` state for one receive thread.
pub(crate) struct BatchReceiver {
    buffers: Vec<u8>,
    control: Vec<u64>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    /// One source address per datagram slot; empty when sources are not recorded.
    sources: Vec<libc::sockaddr_storage>,
    control_words: usize,
    received: usize,
}

impl BatchReceiver {
    /// `batch` datagrams per call (at least 1); `drop_counter` reserves room for the
    /// `SO_RXQ_OVFL` control message; `sources` has the kernel write each datagram's source
    /// address.
    pub(crate) fn new(batch: usize, drop_counter: bool, sources: bool) -> Self {
        let batch = batch.max(1);
        let control_words = if drop_counter { CONTROL_WORDS } else { 0 };
        let iovec = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        // SAFETY: sockaddr_storage is a plain C struct for which all-zero is a valid value.
        let address = unsafe { std::mem::zeroed::<libc::sockaddr_storage>() };
        BatchReceiver {
            buffers: vec![0u8; batch * MAX_DATAGRAM],
            control: vec![0u64; batch * control_words],
            iovecs: vec![iovec; batch],
            // SAFETY: mmsghdr is a plain C struct for which all-zero is a valid value.
            headers: vec![unsafe { std::mem::zeroed::<libc::mmsghdr>() }; batch],
            sources: vec![address; if sources { batch } else { 0 }],
            control_words,
            received: 0,
        }
    }

    /// Waits for at least one datagram (up to the socket's receive timeout), then takes whatever
    /// else is already queued, up to the batch size. Returns how many were received.
    pub(crate) fn receive(&mut self, fd: &impl AsRawFd) -> io::Result<usize> {
        self.receive_with(fd, libc::MSG_WAITFORONE, self.headers.len())
    }

    /// Takes whatever is already queued, up to `max` datagrams and the batch size, without
    /// waiting: 0 when nothing is.
    pub(crate) fn receive_queued(&mut self, fd: &impl AsRawFd, max: usize) -> io::Result<usize> {
        match self.receive_with(fd, libc::MSG_DONTWAIT, max) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(0),
            other => other,
        }
    }

    fn receive_with(
        &mut self,
        fd: &impl AsRawFd,
        flags: libc::c_int,
        max: usize,
    ) -> io::Result<usize> {
        // The pointers are rebuilt on every call (a few stores per datagram slot) rather than
        // kept from `new`: then none outlives a borrow of the buffers it points into, and the
        // lengths the kernel overwrote are reset to the capacities.
        let buffers = self.buffers.as_mut_ptr();
        let control = self.control.as_mut_ptr();
        let control_len = self.control_words * size_of::<u64>();
        let sources = self.sources.as_mut_ptr();
        let record_sources = !self.sources.is_empty();
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
            if record_sources {
                // SAFETY: `sources` holds `headers.len()` addresses, so the slot is inside.
                header.msg_hdr.msg_name = unsafe { sources.add(i) }.cast();
                header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as _;
            }
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_controllen = control_len as _;
            header.msg_hdr.msg_flags = 0;
            header.msg_len = 0;
        }
        self.received = 0;
        // Clamped here, next to the call it guards, rather than by each caller.
        let max = max.min(self.headers.len());
        // SAFETY: every header points at an iovec, a control buffer and (or a null) address
        // buffer owned by `self` and sized as declared; `max` is at most `headers.len()`, so
        // the kernel writes only headers of the vector; a null timeout is allowed.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.headers.as_mut_ptr(),
                max as libc::c_uint,
                flags as _,
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
            source: self
                .sources
                .get(i)
                .and_then(|a| source_ip(a, header.msg_hdr.msg_namelen)),
        }
    }

    /// Datagrams per call.
    pub(crate) fn capacity(&self) -> usize {
        self.headers.len()
    }

    /// Whether the kernel writes each datagram's source address.
    pub(crate) fn records_sources(&self) -> bool {
        !self.sources.is_empty()
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

/// The IP address in a source address the kernel wrote (`len` bytes of it); `None` for
/// another family (a unixgram sender's path, or an unbound unixgram sender's empty address).
fn source_ip(addr: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<IpAddr> {
    let len = len as usize;
    match libc::c_int::from(addr.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large and
            // aligned enough for, and the kernel wrote all of it.
            let v4 =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)).into())
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a sockaddr_in6.
            let v6 =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(Ipv6Addr::from(v6.sin6_addr.s6_addr).into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_heap_growth_step() {
        assert!(super::pad_heap_growth());
    }
}
