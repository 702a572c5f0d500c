//! Work left at a loop cap (issue 11): the server reads at most `DATAGRAMS_PER_TURN` datagrams
//! per loop turn, and mio is edge-triggered, so what a read leaves in the socket gets no new
//! readiness event. Here a burst of three times the cap waits in the server's socket while the
//! server is stopped (SIGSTOP), so it all arrives under one readiness edge, and nothing else
//! talks to the server afterwards: every datagram must still be handled.
//!
//! The datagrams are client Initials in datagrams under 1200 bytes, which the server drops
//! without answering and counts (`ptproxy_initials_dropped_undersized_total`). They must not
//! be answered: the server's own sending makes the socket writable again, and that edge
//! carries its readable bit too, which would hide the hazard.

use crate::harness::admin::{metric, metrics_addr};
use crate::harness::pair::{PairBuilder, LOG_QUIC_LISTEN, READY_TIMEOUT};
use crate::harness::proxy::{Proxy, Role};
use crate::harness::tmp::TempDir;
use crate::harness::{closed_tcp_addr, poll_until};
use ptproxy::reactor::backlog::DATAGRAMS_PER_TURN;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

const BURST: usize = 3 * DATAGRAMS_PER_TURN;
const DATAGRAM_LEN: usize = 64;
const DROPPED: &str = "ptproxy_initials_dropped_undersized_total";

/// Keeps a process stopped; continues it when dropped (also when the test fails).
struct Stopped(u32);

impl Stopped {
    fn stop(pid: u32) -> Stopped {
        signal(pid, libc::SIGSTOP);
        let state = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) S ...": the state follows the command's closing parenthesis.
            let after = &stat[stat.rfind(')')? + 1..];
            after.split_whitespace().next().map(str::to_owned)
        };
        poll_until(Duration::from_secs(10), Duration::from_millis(5), || {
            (state()? == "T").then_some(())
        })
        .expect("the server did not stop");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid of a child process we started; no memory is involved.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

/// An Initial packet header (no token) with connection IDs made from `n`, padded to
/// `DATAGRAM_LEN`: far under the 1200 bytes a client's Initial datagram must have.
fn undersized_initial(n: usize) -> [u8; DATAGRAM_LEN] {
    let mut p = [0u8; DATAGRAM_LEN];
    p[0] = 0xc0;
    p[1..5].copy_from_slice(&1u32.to_be_bytes());
    p[5] = 8;
    p[6..14].copy_from_slice(&(n as u64).to_be_bytes());
    p[14] = 8;
    p[15..23].copy_from_slice(&(n as u64).to_le_bytes());
    p[23] = 0; // token length
    p
}

#[test]
fn a_datagram_flood_over_the_read_cap_is_all_handled_without_a_later_packet() {
    let dir = TempDir::new("read_backlog");
    let (maddr, mjson) = metrics_addr();
    let builder = PairBuilder::new(closed_tcp_addr()).server("metrics.listen", &mjson);
    let config = dir.join("server.json");
    std::fs::write(&config, builder.server_config().pretty()).expect("write config");
    let listen: SocketAddr = builder
        .server_config()
        .get("listen")
        .and_then(|j| j.as_str())
        .and_then(|a| a.parse().ok())
        .expect("server listen address");
    let mut server = Proxy::new("server", Role::Server, &config);
    server.start();
    server.expect_log(LOG_QUIC_LISTEN, READY_TIMEOUT);
    assert_eq!(metric(maddr, DROPPED), Some(0.0));

    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let stopped = Stopped::stop(server.pid().expect("server pid"));
    for n in 0..BURST {
        socket
            .send_to(&undersized_initial(n), listen)
            .expect("send");
    }
    // One readiness edge for the whole burst; no datagram is sent to the server after it (the
    // scrapes are TCP: they wake the server's loop, not its UDP socket).
    drop(stopped);
    let mut dropped = 0.0;
    let all = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
        dropped = metric(maddr, DROPPED)?;
        (dropped == BURST as f64).then_some(())
    });
    if all.is_none() {
        server.dump_log();
    }
    assert_eq!(
        dropped, BURST as f64,
        "the server handled {dropped} of {BURST} datagrams sent in one burst \
         (read cap {DATAGRAMS_PER_TURN} per turn)"
    );
}
