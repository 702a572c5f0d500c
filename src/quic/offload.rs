//! UDP segmentation offload (GSO) and receive aggregation (GRO), Linux only, with fallback.
//!
//! - GSO: one `sendmsg` with a `UDP_SEGMENT` control message carries several equal-size
//!   datagrams (the last may be shorter); the kernel (or the NIC) cuts them. One syscall instead
//!   of one per packet on bulk transfers.
//! - GRO: with `UDP_GRO` on, one `recvmsg` may return several datagrams of one flow glued
//!   together, with their size in a `UDP_GRO` control message; [`UdpIo::recv`](super::udp::UdpIo::recv) cuts them apart.
//! - Batched calls: one `recvmmsg` reads up to [`MAX_MESSAGES`] messages (each possibly a GRO
//!   aggregate: datagrams from several senders, or of sizes GRO does not merge); one `sendmmsg`
//!   sends up to as many (each a datagram or a GSO batch, to any destination).
//!
//! - Packet info: a server bound to a wildcard address (`0.0.0.0`, `[::]`) on a host with
//!   several addresses asks for each datagram's destination (`IP_PKTINFO`, `IPV6_PKTINFO`) and
//!   answers from that same address, or a client that sent to the second address would get
//!   answers from the first one, which its connected socket drops.
//!
//! A kernel that refuses either offload (old kernel, unsupported device) just gets one datagram
//! per message: [`UdpIo`](super::udp::UdpIo) turns GSO off at the first refusal.
//!
//! The `sendmsg`/`recvmsg` (and `mmsg`) calls and their control messages stay on `libc`: socket2 has no
//! UDP_SEGMENT / UDP_GRO option and no control-message builder or parser, so it would only wrap
//! the same unsafe CMSG code. Addresses go through `socket2::SockAddr`.

use std::io;
use std::net::{IpAddr, SocketAddr};
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

/// Sends `buf` as datagrams of `segment` bytes (the last may be shorter) to `to` in one call,
/// from the local address `from` when given (see [`enable_pktinfo`]).
pub fn send_segments(
    socket: &impl AsRawFd,
    buf: &[u8],
    segment: usize,
    to: SocketAddr,
    from: Option<IpAddr>,
) -> io::Result<usize> {
    send_msg(socket, buf, Some(segment as u16), to, from)
}

/// Sends one datagram to `to` from the local address `from` (a socket bound to a wildcard
/// address answers from the address the peer sent to).
pub fn send_from(
    socket: &impl AsRawFd,
    buf: &[u8],
    to: SocketAddr,
    from: IpAddr,
) -> io::Result<usize> {
    send_msg(socket, buf, None, to, Some(from))
}

/// One `sendmsg` with the control messages asked for: `UDP_SEGMENT` and the source address.
fn send_msg(
    socket: &impl AsRawFd,
    buf: &[u8],
    segment: Option<u16>,
    to: SocketAddr,
    from: Option<IpAddr>,
) -> io::Result<usize> {
    let addr = SockAddr::from(to);
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut control = Control::default();
    control.push_for(segment, from, to);
    let msg = send_header(&addr, &mut iov, &mut control);
    // SAFETY: `msg` is fully initialised and points at live buffers.
    let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// The `msghdr` of one outgoing message; it points into `addr`, `iov` and `control`, which
/// must outlive its use.
fn send_header(addr: &SockAddr, iov: &mut libc::iovec, control: &mut Control) -> libc::msghdr {
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // sendmsg only reads the address; the `*mut` is what the C struct declares.
    msg.msg_name = addr.as_ptr() as *mut libc::c_void;
    msg.msg_namelen = addr.len();
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    if control.len > 0 {
        msg.msg_control = control.buf.as_mut_ptr().cast();
        msg.msg_controllen = control.len as _;
    }
    msg
}

/// Most messages one `sendmmsg` or `recvmmsg` call carries.
pub const MAX_MESSAGES: usize = 16;

/// One message of a [`send_many`] call: `len` bytes of the shared buffer from `start`, cut
/// into datagrams of `segment` bytes (GSO, when `segment < len`), to `to`, from `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    pub start: usize,
    pub len: usize,
    pub segment: usize,
    pub to: SocketAddr,
    pub from: Option<IpAddr>,
}

impl Outgoing {
    /// The message's bytes in the buffer it was gathered in.
    pub fn data<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start..self.start + self.len]
    }

    /// The `UDP_SEGMENT` size to ask for: only when the message holds several datagrams.
    pub fn gso_segment(&self) -> Option<u16> {
        (self.len > self.segment).then_some(self.segment as u16)
    }
}

/// Sends up to [`MAX_MESSAGES`] of `messages` (each a datagram or a GSO batch, to any
/// destination) in one `sendmmsg`; returns how many were sent, in order. An error is returned
/// only when the first one could not be sent (the kernel's rule).
pub fn send_many(socket: &impl AsRawFd, buf: &[u8], messages: &[Outgoing]) -> io::Result<usize> {
    let messages = &messages[..messages.len().min(MAX_MESSAGES)];
    if messages.is_empty() {
        return Ok(0);
    }
    let addrs: [SockAddr; MAX_MESSAGES] =
        std::array::from_fn(|i| SockAddr::from(messages.get(i).map_or(messages[0].to, |m| m.to)));
    let mut iovs: [libc::iovec; MAX_MESSAGES] = std::array::from_fn(|i| {
        let data = messages.get(i).map_or(&[][..], |m| m.data(buf));
        libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        }
    });
    let mut controls: [Control; MAX_MESSAGES] = std::array::from_fn(|_| Control::default());
    // SAFETY: all-zero is a valid mmsghdr.
    let mut headers: [libc::mmsghdr; MAX_MESSAGES] = unsafe { std::mem::zeroed() };
    for (i, m) in messages.iter().enumerate() {
        controls[i].push_for(m.gso_segment(), m.from, m.to);
        headers[i].msg_hdr = send_header(&addrs[i], &mut iovs[i], &mut controls[i]);
    }
    // SAFETY: the first `messages.len()` headers are initialised and point at live buffers.
    let n = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            messages.len() as _,
            0,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Outgoing control messages, laid out as the kernel reads them (CMSG_SPACE each).
#[derive(Default)]
struct Control {
    buf: [u64; 16],
    len: usize,
}

impl Control {
    /// The control messages of one send: `UDP_SEGMENT` when given, the source address when
    /// given.
    fn push_for(&mut self, segment: Option<u16>, from: Option<IpAddr>, to: SocketAddr) {
        if let Some(segment) = segment {
            self.push(libc::SOL_UDP, UDP_SEGMENT, &segment.to_ne_bytes());
        }
        if let Some(from) = from {
            self.push_source(from, to.is_ipv6());
        }
    }

    /// Appends one control message; ignored (and debug-logged) if it would not fit.
    fn push(&mut self, level: libc::c_int, ty: libc::c_int, data: &[u8]) {
        // SAFETY: CMSG_SPACE and CMSG_LEN only compute sizes.
        let (space, cmsg_len) = unsafe {
            (
                libc::CMSG_SPACE(data.len() as u32) as usize,
                libc::CMSG_LEN(data.len() as u32) as usize,
            )
        };
        let bytes = std::mem::size_of_val(&self.buf);
        if self.len + space > bytes {
            log::debug!("control message {level}/{ty} does not fit: not sent");
            return;
        }
        // SAFETY: the header and its data fit in `buf` from `len` on (checked above); `buf`
        // is u64-aligned and every CMSG_SPACE is a multiple of the header's alignment.
        unsafe {
            let base = self.buf.as_mut_ptr().cast::<u8>().add(self.len);
            let header = libc::cmsghdr {
                cmsg_len: cmsg_len as _,
                cmsg_level: level,
                cmsg_type: ty,
            };
            std::ptr::write_unaligned(base.cast::<libc::cmsghdr>(), header);
            let data_at = base.add(libc::CMSG_LEN(0) as usize);
            std::ptr::copy_nonoverlapping(data.as_ptr(), data_at, data.len());
        }
        self.len += space;
    }

    /// The source address of the datagram: `IP_PKTINFO` on an IPv4 socket, `IPV6_PKTINFO`
    /// (with an IPv4-mapped address for an IPv4 source) on an IPv6 one.
    fn push_source(&mut self, from: IpAddr, v6_socket: bool) {
        match (from, v6_socket) {
            (IpAddr::V4(v4), false) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(v4.octets()),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                self.push(libc::IPPROTO_IP, libc::IP_PKTINFO, as_bytes(&info));
            }
            (ip, _) => {
                let v6 = match ip {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: v6.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                self.push(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, as_bytes(&info));
            }
        }
    }
}

/// The bytes of a plain C struct.
fn as_bytes<T: Copy>(value: &T) -> &[u8] {
    // SAFETY: `T` is a plain-old-data libc struct; reading its bytes is always valid.
    unsafe {
        std::slice::from_raw_parts((value as *const T).cast::<u8>(), std::mem::size_of::<T>())
    }
}

/// Asks the kernel to report each datagram's destination address (`IP_PKTINFO`,
/// `IPV6_RECVPKTINFO`), so that a socket bound to a wildcard address knows which of the host's
/// addresses a peer sent to; false when it cannot.
pub fn enable_pktinfo(socket: &impl AsRawFd, v6: bool) -> bool {
    let (level, opt) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_PKTINFO)
    };
    crate::net::setsockopt_int(socket, level, opt, 1).is_ok()
}

/// One `recvmsg` result: `len` bytes from `from`, made of datagrams of `segment` bytes (the
/// last may be shorter; `segment == len` without aggregation), sent to the local address `to`
/// when the socket reports it ([`enable_pktinfo`]).
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub len: usize,
    pub segment: usize,
    pub from: SocketAddr,
    pub to: Option<IpAddr>,
}

/// Receives into `buf`, reporting the GRO segment size when the kernel aggregated datagrams,
/// and the destination address when the socket reports it.
pub fn recv_aggregate(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut got = [EMPTY];
    recv_many(socket, buf, buf.len(), &mut got)?;
    let [received] = got;
    Ok(received)
}

/// A placeholder before a receive fills it in.
pub const EMPTY: Received = Received {
    len: 0,
    segment: 1,
    from: SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::UNSPECIFIED,
        0,
    )),
    to: None,
};

/// Receives up to `out.len()` messages (at most [`MAX_MESSAGES`]) in one `recvmmsg`, each into
/// its own `slot`-byte part of `buf` (message `i` at `i * slot`); each may be a GRO aggregate.
/// Returns how many arrived (at least one: WouldBlock when none is waiting).
pub fn recv_many(
    socket: &impl AsRawFd,
    buf: &mut [u8],
    slot: usize,
    out: &mut [Received],
) -> io::Result<usize> {
    let count = out.len().min(MAX_MESSAGES).min(buf.len() / slot.max(1));
    let mut addrs: [SockAddrStorage; MAX_MESSAGES] =
        std::array::from_fn(|_| SockAddrStorage::zeroed());
    let mut controls = [[0u64; 16]; MAX_MESSAGES];
    let mut iovs: [libc::iovec; MAX_MESSAGES] = std::array::from_fn(|_| libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    });
    // SAFETY: all-zero is a valid mmsghdr.
    let mut headers: [libc::mmsghdr; MAX_MESSAGES] = unsafe { std::mem::zeroed() };
    for (i, part) in buf.chunks_exact_mut(slot).take(count).enumerate() {
        iovs[i].iov_base = part.as_mut_ptr().cast();
        iovs[i].iov_len = part.len();
        let msg = &mut headers[i].msg_hdr;
        msg.msg_name = (&mut addrs[i] as *mut SockAddrStorage).cast();
        msg.msg_namelen = addrs[i].size_of();
        msg.msg_iov = &mut iovs[i];
        msg.msg_iovlen = 1;
        msg.msg_control = controls[i].as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&controls[i]) as _;
    }
    // SAFETY: the first `count` headers point at live buffers of the sizes given.
    let n = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            count as _,
            0,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    for i in 0..n {
        let header = &headers[i];
        let len = header.msg_len as usize;
        // SAFETY: the kernel wrote an address of `msg_namelen` bytes, family included.
        let from = unsafe {
            SockAddr::new(
                std::mem::replace(&mut addrs[i], SockAddrStorage::zeroed()),
                header.msg_hdr.msg_namelen,
            )
        };
        let from = from
            .as_socket()
            .ok_or_else(|| io::Error::other("datagram from an unknown address family"))?;
        let (segment, to) = parse_control(&header.msg_hdr);
        out[i] = Received {
            len,
            segment: segment.unwrap_or(len).max(1),
            from,
            to,
        };
    }
    Ok(n)
}

/// The GRO segment size and the destination address a received message's control messages
/// carry.
fn parse_control(msg: &libc::msghdr) -> (Option<usize>, Option<IpAddr>) {
    let (mut segment, mut to) = (None, None);
    // SAFETY: walking the control messages the kernel wrote, within msg_controllen; each
    // payload is read unaligned, with the size its type has.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::SOL_UDP, UDP_GRO) => {
                    let size = std::ptr::read_unaligned(data.cast::<libc::c_int>());
                    if size > 0 {
                        segment = Some(size as usize);
                    }
                }
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let info = std::ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                    to = Some(IpAddr::from(info.ipi_addr.s_addr.to_ne_bytes()));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let info = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                    let v6 = std::net::Ipv6Addr::from(info.ipi6_addr.s6_addr);
                    to = Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4));
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    (segment, to)
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
        let sent = send_segments(&tx, &payload, 1200, to, None).expect("GSO send on loopback");
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

    /// A socket bound to 0.0.0.0 with packet info on learns the address a datagram was sent
    /// to, and answers from the address it names.
    #[test]
    fn packet_info_reports_the_destination_and_names_the_source() {
        let server = UdpSocket::bind("0.0.0.0:0").expect("bind wildcard");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        assert!(enable_pktinfo(&server, false), "IP_PKTINFO on");
        let port = server.local_addr().expect("addr").port();
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind client");
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let to: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        client.send_to(b"hello", to).expect("send");
        let mut buf = vec![0u8; 2048];
        let r = recv_aggregate(&server, &mut buf).expect("receive");
        assert_eq!(&buf[..r.len], b"hello");
        assert_eq!(r.to, Some(to.ip()), "the destination the client chose");
        let from = r.to.expect("destination");
        send_from(&server, b"answer", r.from, from).expect("send from it");
        let mut got = [0u8; 64];
        let (n, source) = client.recv_from(&mut got).expect("answer");
        assert_eq!((&got[..n], source), (&b"answer"[..], to));
    }

    /// Datagrams of different sizes from two senders (which GRO would not merge) all come
    /// out of one `recvmmsg`, each with its own source and bytes.
    #[test]
    fn recv_many_reads_datagrams_from_two_sources_in_one_call() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind rx");
        // Blocking with a timeout: the call waits for all four (loopback delivers at once).
        rx.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let to = rx.local_addr().expect("addr");
        let (a, b) = (
            UdpSocket::bind("127.0.0.1:0").expect("bind a"),
            UdpSocket::bind("127.0.0.1:0").expect("bind b"),
        );
        let sent: [(&UdpSocket, Vec<u8>); 4] = [
            (&a, vec![1; 300]),
            (&b, vec![2; 1200]),
            (&a, vec![3; 40]),
            (&b, vec![4; 900]),
        ];
        for (socket, data) in &sent {
            socket.send_to(data, to).expect("send");
        }
        let slot = 2048;
        let mut buf = vec![0u8; slot * MAX_MESSAGES];
        let mut got = [EMPTY; 4];
        let n = recv_many(&rx, &mut buf, slot, &mut got).expect("recvmmsg");
        assert_eq!(n, 4, "all four in one call");
        for (i, ((socket, data), r)) in sent.iter().zip(&got).enumerate() {
            assert_eq!(r.from, socket.local_addr().expect("addr"), "datagram {i}");
            assert_eq!((r.len, r.segment), (data.len(), data.len()), "datagram {i}");
            assert_eq!(&buf[i * slot..i * slot + r.len], &data[..], "datagram {i}");
        }
    }

    /// One `sendmmsg` carries a datagram, a GSO batch to another destination and a smaller
    /// datagram: all arrive, with their sizes and bytes, in order per destination.
    #[test]
    fn send_many_sends_mixed_sizes_and_destinations_in_one_call() {
        let bind = || {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            s
        };
        let (tx, x, y) = (bind(), bind(), bind());
        let (to_x, to_y) = (x.local_addr().expect("addr"), y.local_addr().expect("addr"));
        let mut buf = vec![7u8; 300];
        buf.extend((0..3u8).flat_map(|i| std::iter::repeat_n(10 + i, 1000)));
        buf.extend([9u8; 50]);
        let message = |start, len, segment, to| Outgoing {
            start,
            len,
            segment,
            to,
            from: None,
        };
        let messages = [
            message(0, 300, 300, to_x),
            message(300, 3000, 1000, to_y),
            message(3300, 50, 50, to_x),
        ];
        assert_eq!(send_many(&tx, &buf, &messages).expect("sendmmsg"), 3);
        let mut got = vec![0u8; 65535];
        let mut read = |s: &UdpSocket| {
            let (n, from) = s.recv_from(&mut got).expect("receive");
            assert_eq!(from, tx.local_addr().expect("addr"));
            got[..n].to_vec()
        };
        assert_eq!(read(&x), vec![7u8; 300]);
        assert_eq!(read(&x), vec![9u8; 50]);
        for i in 0..3u8 {
            assert_eq!(read(&y), vec![10 + i; 1000], "GSO segment {i}");
        }
    }
}
