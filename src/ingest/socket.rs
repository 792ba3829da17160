//! Socket setup shared by the UDP, TCP and unixgram listeners: listen addresses, dual-stack
//! binding with its IPv4 fallback, receive buffers and timeouts, and errors that name the
//! listener, address and option involved.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::sys::force_receive_buffer;
use super::{IngestError, RECEIVE_TIMEOUT};

/// Parses a statsd_exporter-style listen address.
///
/// * `""` means the listener is disabled: `Ok(None)`.
/// * `":9125"` (empty host) means all interfaces. It becomes `[::]:9125`, and the listeners bind
///   that dual-stack (`IPV6_V6ONLY` off), so IPv4 and IPv6 clients both reach it, as with Go's
///   wildcard listen in statsd_exporter. On a host without IPv6 the listeners fall back to
///   `0.0.0.0`. An explicit `0.0.0.0:9125` is IPv4 only.
/// * `"127.0.0.1:9125"`, `"[::1]:9125"`: literal addresses.
/// * `"localhost:9125"`: resolved once, now (blocking); an IPv4 result is preferred, as Go's
///   resolver does for the `ip` network.
///
/// The port must be decimal (0–65535); service names are rejected, as in statsd_exporter.
pub fn parse_listen_address(s: &str) -> Result<Option<SocketAddr>, IngestError> {
    if s.is_empty() {
        return Ok(None);
    }
    let invalid = |reason| IngestError::InvalidAddress {
        address: s.to_owned(),
        reason,
    };
    let (host, port) = s.rsplit_once(':').ok_or_else(|| invalid("missing port"))?;
    let host = match host.strip_prefix('[') {
        Some(rest) => rest
            .strip_suffix(']')
            .ok_or_else(|| invalid("unterminated '[' in host"))?,
        None if host.contains(':') => return Err(invalid("IPv6 host must be in brackets")),
        None if host.contains(']') => return Err(invalid("unexpected ']' in host")),
        None => host,
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("port must be a decimal number"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| invalid("port must be between 0 and 65535"))?;
    if host.is_empty() {
        return Ok(Some(SocketAddr::new(
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            port,
        )));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Some(SocketAddr::new(ip, port)));
    }
    let resolved: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|source| IngestError::Resolve {
            address: s.to_owned(),
            source,
        })?
        .collect();
    resolved
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| resolved.first())
        .copied()
        .map(Some)
        .ok_or_else(|| invalid("host resolved to no addresses"))
}

/// Runs `bind` for `addr`; when that is the all-interfaces IPv6 address and the host has no
/// IPv6, runs it again for `0.0.0.0` on the same port.
pub(crate) fn bind_with_ipv4_fallback<T>(
    listener: &'static str,
    addr: SocketAddr,
    bind: impl Fn(SocketAddr) -> Result<T, IngestError>,
) -> Result<T, IngestError> {
    match bind(addr) {
        Err(IngestError::Socket { source, .. }) | Err(IngestError::Bind { source, .. })
            if is_unspecified_v6(addr) && ipv6_unavailable(&source) =>
        {
            tracing::info!(listener, error = %source, "IPv6 unavailable; listening on IPv4 only");
            bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), addr.port()))
        }
        other => other,
    }
}

fn is_unspecified_v6(addr: SocketAddr) -> bool {
    matches!(addr, SocketAddr::V6(v6) if v6.ip().is_unspecified())
}

fn ipv6_unavailable(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL) | Some(libc::EPROTONOSUPPORT)
    )
}

/// A new IP socket for `addr`; on the all-interfaces IPv6 address it also takes IPv4
/// clients, like Go's wildcard listen.
pub(crate) fn ip_socket(
    listener: &'static str,
    addr: SocketAddr,
    ty: Type,
    protocol: Protocol,
) -> Result<Socket, IngestError> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol)).map_err(|source| {
        IngestError::Socket {
            listener,
            address: addr.to_string(),
            source,
        }
    })?;
    if is_unspecified_v6(addr) {
        socket
            .set_only_v6(false)
            .map_err(option_error(listener, addr, "IPV6_V6ONLY"))?;
    }
    Ok(socket)
}

/// Sets `SO_RCVBUF` to `bytes` unless it is 0 (the system default), and returns what the
/// kernel granted, read back: Linux doubles the request for its bookkeeping and caps it at
/// twice `net.core.rmem_max`. The listener's announcement logs it, once for all its sockets.
pub(crate) fn set_read_buffer(
    socket: SockRef<'_>,
    listener: &'static str,
    address: &str,
    bytes: usize,
) -> Result<Option<usize>, IngestError> {
    let granted = size_read_buffer(socket, listener, address, ReadBuffer::Bytes(bytes))?;
    Ok(granted.map(|g| g.bytes))
}

/// The receive buffer a UDP listener asks for, per socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadBuffer {
    /// The kernel's default (`net.core.rmem_default`, often 208 KiB): what
    /// `--statsd.read-buffer=0` asks for, as in statsd_exporter.
    System,
    /// `SO_RCVBUF` of this many bytes, as statsd_exporter sets it: the kernel caps the
    /// request at `net.core.rmem_max`, then doubles it for its bookkeeping.
    Bytes(usize),
    /// The largest buffer the kernel allows, up to this many bytes: `SO_RCVBUFFORCE`, which
    /// ignores `net.core.rmem_max` but needs `CAP_NET_ADMIN`, else `SO_RCVBUF`, capped at
    /// `net.core.rmem_max`. What statsgate asks for when `--statsd.read-buffer` is not given
    /// ([`DEFAULT_READ_BUFFER`]): the kernel's default loses bursts of datagrams.
    Largest(usize),
}

/// The most [`ReadBuffer::Largest`] asks for when `--statsd.read-buffer` is not given: 8 MiB.
pub const DEFAULT_READ_BUFFER: usize = 8 << 20;

/// A receive buffer as set: what `getsockopt(SO_RCVBUF)` reads back (twice the usable bytes
/// asked for, as Linux doubles every request for its bookkeeping), and the option that set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GrantedBuffer {
    /// `SO_RCVBUF` as read back.
    pub(crate) bytes: usize,
    /// `SO_RCVBUF` or `SO_RCVBUFFORCE`.
    pub(crate) option: &'static str,
}

/// Sizes `socket`'s receive buffer as `wanted` says; returns what the kernel granted, or
/// `None` for [`ReadBuffer::System`] (or a size of 0, which means the same).
pub(crate) fn size_read_buffer(
    socket: SockRef<'_>,
    listener: &'static str,
    address: &str,
    wanted: ReadBuffer,
) -> Result<Option<GrantedBuffer>, IngestError> {
    let option = match wanted {
        ReadBuffer::System | ReadBuffer::Bytes(0) | ReadBuffer::Largest(0) => return Ok(None),
        ReadBuffer::Bytes(bytes) => {
            socket.set_recv_buffer_size(bytes).map_err(option_error(
                listener,
                address,
                "SO_RCVBUF",
            ))?;
            "SO_RCVBUF"
        }
        ReadBuffer::Largest(bytes) => match force_receive_buffer(&*socket, bytes) {
            Ok(()) => "SO_RCVBUFFORCE",
            // Without CAP_NET_ADMIN (EPERM), the kernel caps SO_RCVBUF at rmem_max itself.
            Err(_) => {
                socket.set_recv_buffer_size(bytes).map_err(option_error(
                    listener,
                    address,
                    "SO_RCVBUF",
                ))?;
                "SO_RCVBUF"
            }
        },
    };
    let bytes = socket
        .recv_buffer_size()
        .map_err(option_error(listener, address, "SO_RCVBUF"))?;
    Ok(Some(GrantedBuffer { bytes, option }))
}

/// Makes blocking receives return after [`RECEIVE_TIMEOUT`], so receive threads look at
/// their stop flag.
pub(crate) fn set_receive_timeout(
    socket: SockRef<'_>,
    listener: &'static str,
    address: &str,
) -> Result<(), IngestError> {
    socket
        .set_read_timeout(Some(RECEIVE_TIMEOUT))
        .map_err(option_error(listener, address, "SO_RCVTIMEO"))
}

/// Wraps a failure to set `option` on the `listener` socket for `address`.
pub(crate) fn option_error(
    listener: &'static str,
    address: impl ToString,
    option: &'static str,
) -> impl FnOnce(std::io::Error) -> IngestError {
    move |source| IngestError::SocketOption {
        listener,
        address: address.to_string(),
        option,
        source,
    }
}

/// Wraps a failure to bind (or listen on) the `listener` socket for `address`: `EADDRINUSE`
/// becomes [`IngestError::AddressInUse`], anything else [`IngestError::Bind`].
pub(crate) fn bind_error(
    listener: &'static str,
    address: impl ToString,
) -> impl Fn(std::io::Error) -> IngestError {
    move |source| {
        if source.raw_os_error() == Some(libc::EADDRINUSE) {
            IngestError::AddressInUse {
                listener,
                address: address.to_string(),
            }
        } else {
            IngestError::Bind {
                listener,
                address: address.to_string(),
                source,
            }
        }
    }
}

/// What Linux grants for a `SO_RCVBUF` request: twice the request (for its own bookkeeping),
/// the request first capped at `net.core.rmem_max`. For tests of the listeners.
#[cfg(test)]
pub(crate) fn granted_read_buffer(requested: usize) -> usize {
    let text = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .expect("net.core.rmem_max is readable");
    let rmem_max: usize = text.trim().parse().expect("net.core.rmem_max is a number");
    2 * requested.min(rmem_max)
}

/// What Linux grants for [`ReadBuffer::Largest`]: twice the request with `CAP_NET_ADMIN`
/// (`SO_RCVBUFFORCE`), else as for `SO_RCVBUF`. For tests of the listeners.
#[cfg(test)]
pub(crate) fn granted_largest_read_buffer(requested: usize) -> usize {
    if has_net_admin() {
        2 * requested
    } else {
        granted_read_buffer(requested)
    }
}

/// Whether this process has `CAP_NET_ADMIN` (bit 12 of `CapEff` in `/proc/self/status`).
#[cfg(test)]
fn has_net_admin() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .expect("CapEff in /proc/self/status");
    let caps = u64::from_str_radix(caps.trim(), 16).expect("CapEff is hexadecimal");
    caps & (1 << 12) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> Option<SocketAddr> {
        parse_listen_address(s).unwrap()
    }

    #[test]
    fn empty_address_disables_the_listener() {
        assert_eq!(parsed(""), None);
    }

    #[test]
    fn port_only_means_all_interfaces_dual_stack() {
        assert_eq!(parsed(":9125"), Some("[::]:9125".parse().unwrap()));
    }

    #[test]
    fn literal_addresses() {
        assert_eq!(
            parsed("127.0.0.1:9125"),
            Some("127.0.0.1:9125".parse().unwrap())
        );
        assert_eq!(parsed("[::1]:9125"), Some("[::1]:9125".parse().unwrap()));
        assert_eq!(parsed("0.0.0.0:0"), Some("0.0.0.0:0".parse().unwrap()));
        assert_eq!(parsed("[::]:65535"), Some("[::]:65535".parse().unwrap()));
    }

    #[test]
    fn localhost_resolves_preferring_ipv4() {
        let addr = parsed("localhost:9125").unwrap();
        assert_eq!(addr.port(), 9125);
        assert!(addr.ip().is_loopback(), "{addr}");
    }

    #[test]
    fn malformed_addresses_are_rejected() {
        for bad in [
            "9125",
            "127.0.0.1",
            "127.0.0.1:",
            ":port",
            ":65536",
            ":-1",
            "::1:9125",
            "[::1:9125",
            "::1]:9125",
        ] {
            let err = parse_listen_address(bad).unwrap_err();
            assert!(
                matches!(err, IngestError::InvalidAddress { .. }),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn unresolvable_host_is_a_resolve_error() {
        let err = parse_listen_address("no-such-host.invalid:9125").unwrap_err();
        assert!(matches!(err, IngestError::Resolve { .. }), "{err}");
    }
}
