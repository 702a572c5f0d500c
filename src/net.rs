//! Socket setup shared by both roles: UDP sockets with raised kernel buffers, TCP listeners,
//! and socket options mio has no setter for (through `libc`).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

/// Binds a non-blocking UDP socket and asks for the configured kernel buffer sizes.
pub fn bind_udp(
    addr: SocketAddr,
    recv_buffer: usize,
    send_buffer: usize,
) -> io::Result<mio::net::UdpSocket> {
    let socket = mio::net::UdpSocket::bind(addr)?;
    set_buffer(&socket, libc::SO_RCVBUF, "SO_RCVBUF", recv_buffer);
    set_buffer(&socket, libc::SO_SNDBUF, "SO_SNDBUF", send_buffer);
    Ok(socket)
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
    if setsockopt_int(socket, force, value).is_err() {
        let _ = setsockopt_int(socket, opt, value);
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

fn setsockopt_int(socket: &impl AsRawFd, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` lives across the call and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
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
