//! Socket setup shared by both roles: UDP sockets with raised kernel buffers, TCP listeners,
//! and socket options mio has no setter for (through `libc`).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Backlog of the TCP listeners.
const LISTEN_BACKLOG: libc::c_int = 1024;

/// Binds a non-blocking TCP listener with SO_REUSEADDR; with `share` also SO_REUSEPORT, so that
/// several ptproxy processes (one per core) can accept on the same address. Without it a second
/// process on the address fails with "address in use".
pub fn bind_tcp_listener(addr: SocketAddr, share: bool) -> io::Result<mio::net::TcpListener> {
    let fd = bound_socket(addr, libc::SOCK_STREAM, share)?;
    // SAFETY: `fd` is a valid, bound socket we own.
    if unsafe { libc::listen(fd.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(mio::net::TcpListener::from_std(
        std::net::TcpListener::from(fd),
    ))
}

/// A non-blocking, close-on-exec socket of `kind` bound to `addr`; SO_REUSEPORT only when
/// `share`.
fn bound_socket(addr: SocketAddr, kind: libc::c_int, share: bool) -> io::Result<OwnedFd> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe { libc::socket(domain, kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if share {
        setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    if kind == libc::SOCK_STREAM {
        setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    }
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes for this family.
    if unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    } != 0
    {
        return Err(bind_error(io::Error::last_os_error(), share));
    }
    Ok(fd)
}

/// Says plainly that another process holds the address, and how sharing it is asked for.
fn bind_error(e: io::Error, share: bool) -> io::Error {
    if e.kind() != io::ErrorKind::AddrInUse {
        return e;
    }
    let hint = if share {
        "another process holds it without SO_REUSEPORT"
    } else {
        "another process (a second ptproxy?) already listens there; to run several processes on \
         one address on purpose, set `reuse_port: true` in every one of them (or use --cpu)"
    };
    io::Error::new(io::ErrorKind::AddrInUse, format!("address in use: {hint}"))
}

/// `addr` as a C socket address.
pub fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Pins this process to one CPU core (`--cpu N`).
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cpu {cpu} is out of range"),
        ));
    }
    // SAFETY: an all-zero cpu_set_t is empty; CPU_SET stays within its size (checked above).
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Binds a non-blocking UDP socket (SO_REUSEPORT when `share`, so several processes can share
/// the port) and asks for the configured kernel buffer sizes.
pub fn bind_udp(
    addr: SocketAddr,
    recv_buffer: usize,
    send_buffer: usize,
    share: bool,
) -> io::Result<mio::net::UdpSocket> {
    let fd = bound_socket(addr, libc::SOCK_DGRAM, share)?;
    let socket = mio::net::UdpSocket::from_std(std::net::UdpSocket::from(fd));
    set_buffer(&socket, libc::SO_RCVBUF, "SO_RCVBUF", recv_buffer);
    set_buffer(&socket, libc::SO_SNDBUF, "SO_SNDBUF", send_buffer);
    set_dont_fragment(&socket, addr);
    Ok(socket)
}

/// Sets the Don't Fragment bit and ignores the kernel's path MTU cache (PMTUDISC_PROBE), so a
/// datagram larger than the path never gets fragmented: QUIC's own path MTU discovery then
/// sees oversized probes lost instead of wrongly delivered in fragments (RFC 9000 §14).
fn set_dont_fragment(socket: &impl AsRawFd, addr: SocketAddr) {
    let (level, opt, value) = if addr.is_ipv4() {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        )
    } else {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        )
    };
    if let Err(e) = setsockopt_int(socket, level, opt, value) {
        log::debug!("cannot set Don't Fragment: {e}");
    }
}

/// Sets a socket buffer size, trying the privileged FORCE variant first; warns when the kernel
/// grants less than asked (net.core.rmem_max / wmem_max cap unprivileged requests).
fn set_buffer(socket: &impl AsRawFd, opt: libc::c_int, name: &str, wanted: usize) {
    let force = if opt == libc::SO_RCVBUF {
        libc::SO_RCVBUFFORCE
    } else {
        libc::SO_SNDBUFFORCE
    };
    let value = wanted.min(i32::MAX as usize / 2) as libc::c_int;
    if setsockopt_int(socket, libc::SOL_SOCKET, force, value).is_err() {
        let _ = setsockopt_int(socket, libc::SOL_SOCKET, opt, value);
    }
    // Linux reports twice the usable size (it counts its bookkeeping overhead).
    match getsockopt_int(socket, opt) {
        Ok(granted) if (granted as usize) / 2 < wanted => log::warn!(
            "{name}: asked for {wanted} bytes, the OS granted {}; raise net.core.{}_max",
            granted / 2,
            if opt == libc::SO_RCVBUF {
                "rmem"
            } else {
                "wmem"
            }
        ),
        Ok(_) => {}
        Err(e) => log::warn!("{name}: cannot read back buffer size: {e}"),
    }
}

pub(crate) fn setsockopt_int(
    socket: &impl AsRawFd,
    level: libc::c_int,
    opt: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` lives across the call and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn getsockopt_int(socket: &impl AsRawFd, opt: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes `close()` on a TCP stream send RST instead of FIN, so a peer never mistakes an aborted
/// close-delimited body for a complete one.
pub fn set_linger_zero(stream: &mio::net::TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` lives across the call and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        log::debug!("SO_LINGER: {}", io::Error::last_os_error());
    }
}
