//! UDP segmentation offload (GSO) and receive aggregation (GRO), Linux only, with fallback.
//!
//! - GSO: one `sendmsg` with a `UDP_SEGMENT` control message carries several equal-size
//!   datagrams (the last may be shorter); the kernel (or the NIC) cuts them. One syscall instead
//!   of one per packet on bulk transfers.
//! - GRO: with `UDP_GRO` on, one `recvmsg` may return several datagrams of one flow glued
//!   together, with their size in a `UDP_GRO` control message; [`UdpIo::recv`](super::udp::UdpIo::recv) cuts them apart.
//!
//! A kernel that refuses either (old kernel, unsupported device) just gets one datagram per
//! syscall: [`UdpIo`](super::udp::UdpIo) turns GSO off at the first refusal.
//!
//! The `sendmsg`/`recvmsg` calls and their control messages stay on `libc`: socket2 has no
//! UDP_SEGMENT / UDP_GRO option and no control-message builder or parser, so it would only wrap
//! the same unsafe CMSG code. Addresses go through `socket2::SockAddr`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::{SockAddr, SockAddrStorage};

/// Linux uapi `UDP_SEGMENT` / `UDP_GRO` (socket options and control message types, SOL_UDP).
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
/// Most segments one GSO send may carry (kernel limit UDP_MAX_SEGMENTS).
pub const MAX_SEGMENTS: usize = 64;

/// Asks the kernel to aggregate received datagrams; false when it cannot.
pub fn enable_gro(socket: &impl AsRawFd) -> bool {
    crate::net::setsockopt_int(socket, libc::SOL_UDP, UDP_GRO, 1).is_ok()
}

/// Sends `buf` as datagrams of `segment` bytes (the last may be shorter) to `to` in one call.
pub fn send_segments(
    socket: &impl AsRawFd,
    buf: &[u8],
    segment: usize,
    to: SocketAddr,
) -> io::Result<usize> {
    let addr = socket2::SockAddr::from(to);
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // Room for one cmsg carrying a u16, aligned as the kernel expects.
    let mut control = [0u64; 4];
    // SAFETY: all-zero is a valid msghdr; every pointer set below outlives the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // sendmsg only reads the address; the `*mut` is what the C struct declares.
    msg.msg_name = addr.as_ptr() as *mut libc::c_void;
    msg.msg_namelen = addr.len();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as _;
    // SAFETY: the control buffer is CMSG_SPACE(2) bytes long (checked size above), so the first
    // header and its 2-byte payload fit.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err(io::Error::other(
                "no room for the UDP_SEGMENT control message",
            ));
        }
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment as u16);
    }
    // SAFETY: `msg` is fully initialised and points at live buffers.
    let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// One `recvmsg` result: `len` bytes from `from`, made of datagrams of `segment` bytes (the
/// last may be shorter; `segment == len` without aggregation).
pub struct Received {
    pub len: usize,
    pub segment: usize,
    pub from: SocketAddr,
}

/// Receives into `buf`, reporting the GRO segment size when the kernel aggregated datagrams.
pub fn recv_aggregate(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut addr = SockAddrStorage::zeroed();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: all-zero is a valid msghdr; every pointer set below outlives the recvmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut addr as *mut SockAddrStorage).cast();
    msg.msg_namelen = addr.size_of();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` is fully initialised and points at live buffers of the sizes given.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = n as usize;
    // SAFETY: the kernel wrote an address of `msg_namelen` bytes into `addr`, family included.
    let from = unsafe { SockAddr::new(addr, msg.msg_namelen) };
    let from = from
        .as_socket()
        .ok_or_else(|| io::Error::other("datagram from an unknown address family"))?;
    let mut segment = len;
    // SAFETY: walking the control messages the kernel wrote, within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                if size > 0 {
                    segment = size as usize;
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Received {
        len,
        segment: segment.max(1),
        from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    /// A real loopback round trip: one GSO send of 5 segments arrives as 5 datagrams with the
    /// right bytes, whether or not the kernel aggregated them on receive.
    #[test]
    fn gso_send_and_gro_receive_round_trip_on_loopback() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind rx");
        rx.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let gro = enable_gro(&rx);
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind tx");
        let mut payload = Vec::new();
        for i in 0..5u8 {
            payload.extend(std::iter::repeat_n(i, if i == 4 { 700 } else { 1200 }));
        }
        let to = rx.local_addr().expect("addr");
        let sent = send_segments(&tx, &payload, 1200, to).expect("GSO send on loopback");
        assert_eq!(sent, payload.len());
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut buf = vec![0u8; 65535];
        while got.len() < 5 {
            let r = recv_aggregate(&rx, &mut buf).expect("receive");
            assert_eq!(r.from, tx.local_addr().expect("addr"));
            got.extend(buf[..r.len].chunks(r.segment).map(<[u8]>::to_vec));
        }
        let sizes: Vec<usize> = got.iter().map(Vec::len).collect();
        assert_eq!(
            sizes,
            vec![1200, 1200, 1200, 1200, 700],
            "gro enabled: {gro}"
        );
        for (i, d) in got.iter().enumerate() {
            assert!(d.iter().all(|b| *b == i as u8), "datagram {i} corrupted");
        }
    }
}
