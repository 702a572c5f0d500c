//! Where the server sends one client's packets, and how that follows the client's NAT
//! rebindings, any number of times.
//!
//! quiche 0.30 handles a peer's address change itself, but keeps at most
//! `active_connection_id_limit` paths and only evicts a path that holds no connection ID; an
//! abandoned path keeps its ID (or shares the active one's), so once the table is full the
//! packets from the next new address are dropped and the session dies at the idle timeout
//! (the fourth rebinding with our limit of 4). So quiche is shown one address for the whole
//! session, the one of the handshake (`home`), and the address change is handled here:
//!
//! - A datagram from an unknown address moves nothing unless quiche authenticated a packet in
//!   it (its packet counter rose). Then that address becomes the *candidate*: the server
//!   challenges it ([`crate::quic::path_check`]) and holds the session's outgoing packets (they
//!   wait inside quiche, so nothing is lost) while the client's newest packets come from there.
//! - Only a valid answer, which needs the session's TLS secrets, and which arrives from the
//!   candidate, moves the session there. Challenges respect the RFC 9000 §8.1 budget: at most
//!   3x the bytes received from the candidate.
//! - Packets from the current address meanwhile (stragglers, or a spoofed candidate) release
//!   the hold; a candidate not validated in [`VALIDATION_TIMEOUT`] is dropped.
//!
//! A port-only change keeps quiche's congestion and RTT state, which RFC 9000 §9.4 allows.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::quic::amplification::SendBudget;
use crate::quic::path_check::{self, Nonce, CHALLENGE_LEN};
use crate::quic::session::Session;
use crate::quic::udp::UdpIo;

/// Challenges to a silent candidate are repeated this often.
const CHALLENGE_INTERVAL: Duration = Duration::from_millis(100);
/// A candidate not validated in this time is dropped.
pub const VALIDATION_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug)]
struct Candidate {
    addr: SocketAddr,
    nonce: Nonce,
    started: Instant,
    next_challenge: Instant,
    /// RFC 9000 §8.1: what may still be sent to the candidate.
    budget: SendBudget,
}

/// What a step changed, for the log and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    /// The session now sends to this address (the previous one is given).
    Moved {
        from: SocketAddr,
        to: SocketAddr,
    },
    /// A candidate address never answered its challenge.
    Abandoned(SocketAddr),
}

#[derive(Debug)]
pub struct PeerAddress {
    home: SocketAddr,
    current: SocketAddr,
    /// Source of the newest datagram quiche authenticated.
    latest: SocketAddr,
    candidate: Option<Candidate>,
}

impl PeerAddress {
    pub fn new(addr: SocketAddr) -> Self {
        PeerAddress {
            home: addr,
            current: addr,
            latest: addr,
            candidate: None,
        }
    }

    /// The address quiche knows the client by: every datagram is given to it as from here.
    pub fn home(&self) -> SocketAddr {
        self.home
    }

    /// Where the session's packets go.
    pub fn current(&self) -> SocketAddr {
        self.current
    }

    /// The client's newest packets come from an address not validated yet: sending waits.
    pub fn holds_sending(&self) -> bool {
        self.candidate
            .as_ref()
            .is_some_and(|c| c.addr == self.latest)
    }

    /// Records a datagram of `len` bytes from `from`; `authentic`: quiche accepted a packet of
    /// it (so it came from the client, though maybe relayed by someone on the path).
    pub fn on_datagram(&mut self, from: SocketAddr, len: usize, authentic: bool, now: Instant) {
        if let Some(c) = self.candidate.as_mut().filter(|c| c.addr == from) {
            c.budget.on_received(len);
        }
        if !authentic {
            return;
        }
        self.latest = from;
        let known = from == self.current || self.candidate.as_ref().is_some_and(|c| c.addr == from);
        if !known {
            let mut nonce = [0u8; 16];
            crate::quic::random_bytes(&mut nonce);
            let mut budget = SendBudget::unvalidated();
            budget.on_received(len);
            self.candidate = Some(Candidate {
                addr: from,
                nonce,
                started: now,
                next_challenge: now,
                budget,
            });
        }
    }

    /// The nonce a response from `from` must answer, if `from` is being validated.
    pub fn pending_nonce(&self, from: SocketAddr) -> Option<Nonce> {
        self.candidate
            .as_ref()
            .filter(|c| c.addr == from)
            .map(|c| c.nonce)
    }

    /// The candidate answered its challenge: the session moves there.
    pub fn on_validated(&mut self) -> Change {
        let Some(c) = self.candidate.take() else {
            return Change::None;
        };
        let from = std::mem::replace(&mut self.current, c.addr);
        Change::Moved { from, to: c.addr }
    }

    /// The challenge datagram due now and its destination (within the amplification budget);
    /// drops a candidate that timed out.
    pub fn due_challenge(
        &mut self,
        now: Instant,
    ) -> (Option<([u8; CHALLENGE_LEN], SocketAddr)>, Change) {
        let Some(c) = self.candidate.as_mut() else {
            return (None, Change::None);
        };
        if now >= c.started + VALIDATION_TIMEOUT {
            let addr = c.addr;
            self.candidate = None;
            return (None, Change::Abandoned(addr));
        }
        if now < c.next_challenge || !c.budget.allows(CHALLENGE_LEN) {
            return (None, Change::None);
        }
        c.budget.on_sent(CHALLENGE_LEN);
        c.next_challenge = now + CHALLENGE_INTERVAL;
        (
            Some((path_check::challenge(&c.nonce), c.addr)),
            Change::None,
        )
    }

    /// When [`Self::due_challenge`] has something to do next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.candidate
            .as_ref()
            .map(|c| c.next_challenge.min(c.started + VALIDATION_TIMEOUT))
    }
}

/// Gives one datagram of this session to quiche, as from `home`, and follows the client's
/// address.
pub fn deliver(
    session: &mut Session,
    peer: &mut PeerAddress,
    data: &mut [u8],
    from: SocketAddr,
    local: SocketAddr,
    now: Instant,
) {
    let len = data.len();
    let before = session.conn.stats().recv;
    session.handle_datagram(data, peer.home(), local, now);
    // Address checks need the session's TLS secrets: during the handshake nothing moves.
    if session.conn.is_established() {
        let authentic = session.conn.stats().recv > before;
        peer.on_datagram(from, len, authentic, now);
    }
}

/// Before a session sends: the challenge due goes out, a dropped candidate is reported.
/// True when the session's packets must wait (its new address is not validated yet).
pub fn before_sending(
    peer: &mut PeerAddress,
    client: &str,
    local: SocketAddr,
    udp: &mut UdpIo,
    metrics: &mut Metrics,
    now: Instant,
) -> bool {
    let (challenge, change) = peer.due_challenge(now);
    if let Some((datagram, to)) = challenge {
        let _ = udp.send_now(&datagram, to, local); // if lost, it is repeated
    }
    report(change, client, udp, metrics);
    peer.holds_sending()
}

/// Logs and counts a change of a client's address; what still waits to be sent follows it.
pub fn report(change: Change, client: &str, udp: &mut UdpIo, metrics: &mut Metrics) {
    match change {
        Change::None => {}
        Change::Moved { from, to } => {
            log::info!(
                "client {client} moved from {from} to {to} (NAT rebinding; new address validated)"
            );
            udp.redirect(from, to);
            metrics.address_changes += 1;
        }
        Change::Abandoned(addr) => {
            log::info!(
                "client {client}: packets came from {addr}, which did not answer its address check within {} s; it stays where it was",
                VALIDATION_TIMEOUT.as_secs()
            );
            metrics.address_validation_failures += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quic::amplification;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn an_authentic_datagram_from_a_new_address_is_challenged_and_holds_sending() {
        let now = Instant::now();
        let mut p = PeerAddress::new(addr(1));
        p.on_datagram(addr(2), 100, true, now);
        assert!(p.holds_sending());
        assert_eq!(p.current(), addr(1));
        let (challenge, change) = p.due_challenge(now);
        let (bytes, to) = challenge.expect("challenge due");
        assert_eq!((to, change), (addr(2), Change::None));
        assert_eq!(
            path_check::parse_challenge(&bytes),
            p.pending_nonce(addr(2))
        );
        assert!(
            p.due_challenge(now).0.is_none(),
            "repeated only after the interval"
        );
        assert!(p.due_challenge(now + CHALLENGE_INTERVAL).0.is_some());
        assert_eq!(
            p.on_validated(),
            Change::Moved {
                from: addr(1),
                to: addr(2)
            }
        );
        assert_eq!((p.current(), p.home()), (addr(2), addr(1)));
        assert!(!p.holds_sending());
    }

    #[test]
    fn unauthenticated_datagrams_move_nothing() {
        let now = Instant::now();
        let mut p = PeerAddress::new(addr(1));
        p.on_datagram(addr(2), 1200, false, now);
        assert!(!p.holds_sending());
        assert_eq!(p.pending_nonce(addr(2)), None);
        assert_eq!(p.due_challenge(now), (None, Change::None));
        assert_eq!(p.on_validated(), Change::None);
    }

    #[test]
    fn packets_from_the_current_address_release_the_hold() {
        let now = Instant::now();
        let mut p = PeerAddress::new(addr(1));
        p.on_datagram(addr(2), 100, true, now);
        p.on_datagram(addr(1), 100, true, now);
        assert!(!p.holds_sending(), "the client is still at its address");
        assert!(p.pending_nonce(addr(2)).is_some(), "still being validated");
        p.on_datagram(addr(2), 100, true, now);
        assert!(p.holds_sending());
    }

    #[test]
    fn challenges_stay_within_three_times_what_the_candidate_sent() {
        let now = Instant::now();
        let mut p = PeerAddress::new(addr(1));
        p.on_datagram(
            addr(2),
            2 * CHALLENGE_LEN / amplification::FACTOR as usize,
            true,
            now,
        );
        let mut t = now;
        let mut sent = 0;
        for _ in 0..10 {
            sent += usize::from(p.due_challenge(t).0.is_some());
            t += CHALLENGE_INTERVAL;
        }
        assert_eq!(sent, 1, "budget of {} bytes", 2 * CHALLENGE_LEN);
        p.on_datagram(addr(2), CHALLENGE_LEN, false, t);
        assert!(
            p.due_challenge(t).0.is_some(),
            "more received, more allowed"
        );
    }

    #[test]
    fn a_silent_candidate_is_abandoned() {
        let now = Instant::now();
        let mut p = PeerAddress::new(addr(1));
        p.on_datagram(addr(2), 100, true, now);
        assert!(p.next_deadline().is_some());
        let (_, change) = p.due_challenge(now + VALIDATION_TIMEOUT);
        assert_eq!(change, Change::Abandoned(addr(2)));
        assert!(!p.holds_sending());
        assert_eq!(p.current(), addr(1));
        assert_eq!(p.next_deadline(), None);
        // Its next authentic packet starts over.
        p.on_datagram(addr(2), 100, true, now + VALIDATION_TIMEOUT);
        assert!(p.holds_sending());
    }

    #[test]
    fn a_newer_address_replaces_the_candidate() {
        let now = Instant::now();
        let mut p = PeerAddress::new(addr(1));
        p.on_datagram(addr(2), 100, true, now);
        p.on_datagram(addr(3), 100, true, now);
        assert_eq!(p.pending_nonce(addr(2)), None);
        assert!(p.pending_nonce(addr(3)).is_some());
        assert_eq!(
            p.on_validated(),
            Change::Moved {
                from: addr(1),
                to: addr(3)
            }
        );
    }
}
