//! Socket setup shared by both roles: UDP sockets with raised kernel buffers, TCP listeners,
//! and the socket options mio has no setter for.
//!
//! Sockets and their options go through `socket2`, the maintained standard for them. `libc`
//! remains only where socket2 has no setter: SO_RCVBUFFORCE / SO_SNDBUFFORCE (the privileged
//! buffer sizes), IP(V6)_MTU_DISCOVER (Don't Fragment), IP(V6)_MTU (a route's MTU), the UDP
//! GRO option of `quic::offload`, and `sched_setaffinity` for `--cpu`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, SockRef, Socket, Type};

/// Backlog of the TCP listeners.
const LISTEN_BACKLOG: libc::c_int = 1024;

/// Binds a non-blocking TCP listener with SO_REUSEADDR; with `share` also SO_REUSEPORT, so that
/// several ptproxy processes (one per core) can accept on the same address. Without it a second
/// process on the address fails with "address in use".
pub fn bind_tcp_listener(addr: SocketAddr, share: bool) -> io::Result<mio::net::TcpListener> {
    let socket = bound_socket(addr, Type::STREAM, share)?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

/// A non-blocking, close-on-exec socket of `kind` bound to `addr`; SO_REUSEPORT only when
/// `share`, SO_REUSEADDR on TCP.
fn bound_socket(addr: SocketAddr, kind: Type, share: bool) -> io::Result<Socket> {
    // socket2 sets close-on-exec on every socket it creates.
    let socket = Socket::new(Domain::for_address(addr), kind.nonblocking(), None)?;
    if share {
        socket.set_reuse_port(true)?;
    }
    if kind == Type::STREAM {
        socket.set_reuse_address(true)?;
    }
    socket
        .bind(&addr.into())
        .map_err(|e| bind_error(e, share))?;
    Ok(socket)
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
    let socket = bound_socket(addr, Type::DGRAM, share)?;
    set_buffer(&socket, Buffer::Receive, recv_buffer);
    set_buffer(&socket, Buffer::Send, send_buffer);
    set_dont_fragment(&socket, addr);
    Ok(mio::net::UdpSocket::from_std(socket.into()))
}

/// Sets the Don't Fragment bit and ignores the kernel's path MTU cache (PMTUDISC_PROBE), so a
/// datagram larger than the path never gets fragmented: QUIC's own path MTU discovery then
/// sees oversized probes lost instead of wrongly delivered in fragments (RFC 9000 §14).
/// (libc: socket2 has no setter for IP_MTU_DISCOVER.)
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

/// The MTU of the route to `peer` as the kernel knows it: the outgoing device's, or a smaller
/// path MTU it learned. Asked of a UDP socket connected to `peer` (connecting sends nothing).
/// (libc: socket2 has no getter for IP_MTU / IPV6_MTU.)
pub fn route_mtu(peer: SocketAddr) -> io::Result<usize> {
    let socket = Socket::new(Domain::for_address(peer), Type::DGRAM, None)?;
    socket.connect(&peer.into())?;
    let (level, opt) = if peer.is_ipv4() {
        (libc::IPPROTO_IP, libc::IP_MTU)
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU)
    };
    let mtu = getsockopt_int(&socket, level, opt)?;
    usize::try_from(mtu).map_err(|_| io::Error::other(format!("route MTU {mtu}")))
}

/// One of a socket's two kernel buffers.
#[derive(Clone, Copy)]
enum Buffer {
    Receive,
    Send,
}

impl Buffer {
    fn option_name(self) -> &'static str {
        match self {
            Buffer::Receive => "SO_RCVBUF",
            Buffer::Send => "SO_SNDBUF",
        }
    }

    /// The privileged option that ignores net.core.{r,w}mem_max (socket2 has none).
    fn force_option(self) -> libc::c_int {
        match self {
            Buffer::Receive => libc::SO_RCVBUFFORCE,
            Buffer::Send => libc::SO_SNDBUFFORCE,
        }
    }

    /// The sysctl prefix that caps unprivileged requests.
    fn sysctl(self) -> &'static str {
        match self {
            Buffer::Receive => "rmem",
            Buffer::Send => "wmem",
        }
    }
}

/// Sets a socket buffer size, trying the privileged FORCE variant first; warns when the kernel
/// grants less than asked (net.core.rmem_max / wmem_max cap unprivileged requests).
fn set_buffer(socket: &Socket, buffer: Buffer, wanted: usize) {
    let value = wanted.min(i32::MAX as usize / 2);
    let forced = setsockopt_int(
        socket,
        libc::SOL_SOCKET,
        buffer.force_option(),
        value as libc::c_int,
    );
    if forced.is_err() {
        let _ = match buffer {
            Buffer::Receive => socket.set_recv_buffer_size(value),
            Buffer::Send => socket.set_send_buffer_size(value),
        };
    }
    let granted = match buffer {
        Buffer::Receive => socket.recv_buffer_size(),
        Buffer::Send => socket.send_buffer_size(),
    };
    let name = buffer.option_name();
    // Linux reports twice the usable size (it counts its bookkeeping overhead).
    match granted {
        Ok(granted) if granted / 2 < wanted => log::warn!(
            "{name}: asked for {wanted} bytes, the OS granted {}; raise net.core.{}_max",
            granted / 2,
            buffer.sysctl()
        ),
        Ok(_) => {}
        Err(e) => log::warn!("{name}: cannot read back buffer size: {e}"),
    }
}

/// setsockopt(2) with an int value, for the few options socket2 has no setter for.
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

/// getsockopt(2) for an int value, for the few options socket2 has no getter for.
fn getsockopt_int(
    socket: &impl AsRawFd,
    level: libc::c_int,
    opt: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` live across the call; `len` is `value`'s exact size.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
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
    if let Err(e) = SockRef::from(stream).set_linger(Some(Duration::ZERO)) {
        log::debug!("SO_LINGER: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_any_port() -> SocketAddr {
        "127.0.0.1:0".parse().expect("literal address")
    }

    /// With `share`, a second listener binds the same address (SO_REUSEPORT); without it the
    /// second bind fails and the error names the setting that allows it.
    #[test]
    fn tcp_listeners_share_an_address_only_when_asked() {
        let first = bind_tcp_listener(loopback_any_port(), true).expect("first listener");
        let addr = first.local_addr().expect("address");
        let second = bind_tcp_listener(addr, true).expect("second listener with reuse_port");
        assert_eq!(second.local_addr().expect("address"), addr);

        let lone = bind_tcp_listener(loopback_any_port(), false).expect("unshared listener");
        let taken = lone.local_addr().expect("address");
        let err = bind_tcp_listener(taken, false).expect_err("address is taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("reuse_port: true"), "{err}");
    }

    /// The UDP socket is non-blocking, and the buffers it got are at least what Linux grants by
    /// default (the sizes asked for may be capped without privileges).
    #[test]
    fn udp_socket_is_non_blocking_with_buffers_set() {
        let socket = bind_udp(loopback_any_port(), 1 << 20, 1 << 20, false).expect("bind");
        let mut buf = [0u8; 16];
        let err = socket.recv_from(&mut buf).expect_err("nothing was sent");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let granted = SockRef::from(&socket)
            .recv_buffer_size()
            .expect("SO_RCVBUF");
        assert!(granted > 0, "{granted}");
    }

    /// The loopback route's MTU is the loopback device's (65536 by default on Linux), within
    /// the largest IP packet (65535).
    #[test]
    fn route_mtu_reads_the_loopback_device() {
        let mtu = route_mtu("127.0.0.1:443".parse().expect("literal")).expect("IP_MTU");
        assert!(mtu >= 1280, "{mtu}");
        let lo = std::fs::read_to_string("/sys/class/net/lo/mtu")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok());
        if let Some(lo) = lo {
            assert_eq!(mtu, lo.min(65_535));
        }
    }

    /// After `set_linger_zero`, the stream's SO_LINGER reads back as on with zero seconds.
    #[test]
    fn linger_zero_reads_back() {
        let listener = std::net::TcpListener::bind(loopback_any_port()).expect("listener");
        let std_stream =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let stream = mio::net::TcpStream::from_std(std_stream);
        set_linger_zero(&stream);
        let linger = SockRef::from(&stream).linger().expect("SO_LINGER");
        assert_eq!(linger, Some(Duration::ZERO));
    }
}
