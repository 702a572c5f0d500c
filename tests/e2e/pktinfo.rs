//! A server bound to a wildcard address on a host with several addresses answers each client
//! from the address that client sent to (issue 13, item 5: `IP_PKTINFO`). Without it the
//! kernel picks the source by route, the client's connected socket drops the answers, and no
//! session ever comes up.
//!
//! The test runs in a network namespace of its own, created by its thread (`unshare`), where
//! `127.0.0.2` is a second local address of the namespace's loopback: the client goes to
//! `127.0.0.2`, the route back to the client's `127.0.0.1` picks `127.0.0.1`. Creating a
//! namespace needs CAP_SYS_ADMIN (root, as in CI and the benchmarks); without it the test says
//! so and checks nothing.

use std::io;

use crate::harness::{free_udp_port, PairBuilder, Upstream};

/// Moves the calling thread (and the threads and processes it starts) into a new network
/// namespace and brings its loopback up. `Ok(false)` without the privilege to do so.
fn own_network_namespace() -> io::Result<bool> {
    // SAFETY: plain unshare(2) of the calling thread's network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EPERM) => Ok(false),
            _ => Err(e),
        };
    }
    loopback_up()?;
    Ok(true)
}

/// `ip link set lo up`, with the ioctls it makes.
fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain datagram socket, closed below; the ifreq is zeroed then given the name.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let e = io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(e);
        }
    }
    Ok(())
}

#[test]
fn a_server_on_a_wildcard_address_answers_from_the_address_the_client_sent_to() {
    let run = std::thread::spawn(|| {
        match own_network_namespace() {
            Ok(true) => {}
            Ok(false) => {
                println!("skipped: creating a network namespace needs CAP_SYS_ADMIN (root)");
                return;
            }
            Err(e) => panic!("cannot create a network namespace: {e}"),
        }
        let up = Upstream::start();
        let port = free_udp_port();
        // The pair starts only once the client's session is up: it never would if answers
        // left from 127.0.0.1.
        let pair = PairBuilder::new(up.addr())
            .name("pktinfo_wildcard")
            .server("listen", &format!("\"0.0.0.0:{port}\""))
            .client("peer.address", &format!("\"127.0.0.2:{port}\""))
            .start();
        let up_line = pair
            .client
            .expect_log("session established", std::time::Duration::from_secs(1));
        println!("{up_line}");
        assert!(up_line.contains(&format!("127.0.0.2:{port}")), "{up_line}");
        for i in 0..5 {
            let r = pair.get(&format!("/hello?{i}"));
            assert_eq!((r.status(), r.body_str().as_str()), (200, "hello"), "{r}");
        }
        assert_eq!(up.request_count(), 5);
    });
    if let Err(panic) = run.join() {
        std::panic::resume_unwind(panic);
    }
}
