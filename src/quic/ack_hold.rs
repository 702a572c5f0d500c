//! Holding an owed ACK for the answer that follows, or for the next datagram of bulk data
//! (`transport.ack_delay_ms`).
//!
//! quiche acknowledges in every packet it builds and builds an ACK-only packet whenever it is
//! asked to send with an ACK owed, so a small request costs four datagrams: the request, the
//! server's ACK, the response, the client's ACK. Yet the response follows the request a moment
//! later and can carry the server's ACK, and the caller's next request can carry the client's.
//!
//! The policy is ours, as whether to ask quiche to send at all. The hold is armed in two cases:
//! - a datagram completed a message from the peer (a request at the server, a response at the
//!   client: the roles pass their HTTP/3 events to `Session::note_event`), when holds for
//!   answers are on (CUBIC and Reno: `TransportConfig::holds_acks_for_answers` says why not
//!   BBR2);
//! - a full-size datagram arrived first since the last send ([`AckHold::on_datagram`]): bulk
//!   data being received is acknowledged every second datagram, as TCP does, where one ACK
//!   per datagram went back whenever the data arrived spread out (a rate-limited link: 3266
//!   ACKs for 3279 datagrams of a 4 MiB transfer). The side that holds is only receiving then,
//!   and still sends an ACK-only packet every second datagram (BBR2 needs them).
//!
//! Tunnels' small datagrams and handshakes never wait. A hold lasts only while all of these
//! stay true:
//! - no more than one datagram arrived since the last send (RFC 9000 §13.2.2 asks for an ACK
//!   at least every second ack-eliciting packet);
//! - nothing else was given to quiche to send ([`AckHold::on_output`]: fields, body bytes,
//!   resets, GOAWAY, keepalives, and any of quiche's own timers firing);
//! - no packet was newly declared lost (its retransmission is due);
//! - the delay since arming has not run out (at most `transport.ack_delay_ms`, within the
//!   25 ms `max_ack_delay` quiche advertises, so the peer's loss timers allow for it).
//!
//! The role asks `Session::may_hold_send` ([`AckHold::holds`]) before each send; a real send
//! disarms the hold until the next completed message or first full-size datagram.

use std::time::{Duration, Instant};

/// The longest hold that may be configured: quiche advertises a `max_ack_delay` of 25 ms
/// (its default), and RFC 9000 §13.2.1 bounds our delay by what we advertise.
pub const MAX_ACK_DELAY: Duration = Duration::from_millis(25);
/// A datagram at least this large carries bulk data (ptproxy sends 1350-byte datagrams; ACKs,
/// requests and small answers are a few hundred bytes at most).
pub const BULK_DATAGRAM: usize = 1_000;

/// Whether an owed ACK may wait for the answer or the next datagram. One per session.
#[derive(Debug)]
pub struct AckHold {
    /// Longest hold (zero: never hold).
    delay: Duration,
    /// Completed messages arm a hold (not under BBR2).
    for_answers: bool,
    /// When a completed message armed the hold (`None`: not armed).
    armed_at: Option<Instant>,
    /// Datagrams accepted since the last send.
    datagrams: u32,
    /// Something besides an ACK was given to quiche since the last send.
    output: bool,
    /// quiche's count of lost packets at the last send.
    lost_at_send: usize,
}

impl AckHold {
    /// Holds of at most `delay`; `for_answers`: completed messages arm one too.
    pub fn new(delay: Duration, for_answers: bool) -> Self {
        AckHold {
            delay: delay.min(MAX_ACK_DELAY),
            for_answers,
            armed_at: None,
            datagrams: 0,
            output: false,
            lost_at_send: 0,
        }
    }

    /// Whether holds are on at all (`transport.ack_delay_ms` above 0).
    pub fn enabled(&self) -> bool {
        !self.delay.is_zero()
    }

    /// A datagram of `len` bytes from the peer was accepted: the first since the last send,
    /// full-size, arms a hold for the second.
    pub fn on_datagram(&mut self, now: Instant, len: usize) {
        self.datagrams = self.datagrams.saturating_add(1);
        if self.enabled() && self.datagrams == 1 && len >= BULK_DATAGRAM {
            self.armed_at.get_or_insert(now);
        }
    }

    /// Something besides an ACK waits to leave: the next send goes at once.
    pub fn on_output(&mut self) {
        self.output = true;
    }

    /// A datagram completed a message from the peer whose answer will follow: its ACK may
    /// wait for that answer.
    pub fn expect_answer(&mut self, now: Instant) {
        if self.enabled() && self.for_answers {
            self.armed_at.get_or_insert(now);
        }
    }

    /// Whether the send due now may be skipped: all it would carry is an ACK that can still
    /// wait. `lost` is quiche's count of lost packets now.
    pub fn holds(&self, now: Instant, lost: usize) -> bool {
        self.armed_at.is_some_and(|at| now < at + self.delay)
            && !self.output
            && self.datagrams <= 1
            && lost == self.lost_at_send
    }

    /// When a held ACK must leave (`None` when nothing is held).
    pub fn deadline(&self) -> Option<Instant> {
        self.armed_at
            .filter(|_| !self.output)
            .map(|at| at + self.delay)
    }

    /// quiche was asked to send: whatever was owed left. `lost` gives its count of lost
    /// packets, asked only when a datagram arrived since the last send (a loss is found on an
    /// ACK received, or by a timer, which sends at once and leaves the count behind: holds then
    /// wait for the next send with a datagram).
    pub fn on_sent(&mut self, lost: impl FnOnce() -> usize) {
        if self.datagrams > 0 {
            self.lost_at_send = lost();
        }
        self.armed_at = None;
        self.datagrams = 0;
        self.output = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const SMALL: usize = 120;
    const FULL: usize = 1350;

    /// A hold armed at `t0` by one datagram completing a message.
    fn armed(delay: Duration, t0: Instant) -> AckHold {
        let mut h = AckHold::new(delay, true);
        h.on_sent(|| 0);
        h.on_datagram(t0, SMALL);
        h.expect_answer(t0);
        h
    }

    #[test]
    fn an_armed_hold_lasts_until_the_delay_then_not() {
        let t0 = Instant::now();
        let h = armed(5 * MS, t0);
        assert!(h.holds(t0, 0));
        assert!(h.holds(t0 + 4 * MS, 0));
        assert!(!h.holds(t0 + 5 * MS, 0));
        assert_eq!(h.deadline(), Some(t0 + 5 * MS));
    }

    #[test]
    fn a_small_datagram_alone_arms_nothing() {
        let t0 = Instant::now();
        let mut h = AckHold::new(5 * MS, true);
        h.on_datagram(t0, SMALL);
        assert!(
            !h.holds(t0, 0),
            "a small datagram alone (tunnel bytes, an ACK)"
        );
        assert_eq!(h.deadline(), None);
    }

    #[test]
    fn output_a_second_datagram_or_a_loss_ends_the_hold() {
        let t0 = Instant::now();
        let mut h = armed(5 * MS, t0);
        h.on_output();
        assert!(!h.holds(t0, 0), "the answer (or anything else) is leaving");
        assert_eq!(h.deadline(), None, "no timer for a send that goes now");

        let mut h = armed(5 * MS, t0);
        h.on_datagram(t0, SMALL);
        assert!(
            !h.holds(t0, 0),
            "every second packet is acknowledged at once"
        );

        let h = armed(5 * MS, t0);
        assert!(!h.holds(t0, 1), "a retransmission is due");
    }

    #[test]
    fn a_send_disarms_and_remembers_the_losses() {
        let t0 = Instant::now();
        let mut h = armed(5 * MS, t0);
        h.on_sent(|| 3);
        assert!(!h.holds(t0, 3) && h.deadline().is_none());
        h.on_datagram(t0, SMALL);
        h.expect_answer(t0 + MS);
        assert!(
            h.holds(t0 + MS, 3),
            "losses counted before the send are old news"
        );
        assert_eq!(
            h.deadline(),
            Some(t0 + 6 * MS),
            "armed anew at the new message"
        );
    }

    #[test]
    fn a_zero_delay_never_holds_and_the_delay_is_capped() {
        let t0 = Instant::now();
        let h = armed(Duration::ZERO, t0);
        assert!(!h.holds(t0, 0) && h.deadline().is_none());
        let h = armed(Duration::from_secs(1), t0);
        assert_eq!(h.deadline(), Some(t0 + MAX_ACK_DELAY));
    }

    #[test]
    fn arming_twice_keeps_the_first_deadline() {
        let t0 = Instant::now();
        let mut h = armed(5 * MS, t0);
        h.expect_answer(t0 + 3 * MS);
        assert_eq!(
            h.deadline(),
            Some(t0 + 5 * MS),
            "the oldest owed ACK sets the bound"
        );
    }

    #[test]
    fn bulk_data_is_acknowledged_every_second_datagram() {
        let t0 = Instant::now();
        let mut h = AckHold::new(5 * MS, false);
        h.on_sent(|| 0);
        h.on_datagram(t0, FULL);
        assert!(
            h.holds(t0, 0),
            "the first full-size datagram waits for the second"
        );
        assert_eq!(h.deadline(), Some(t0 + 5 * MS));
        h.on_datagram(t0 + MS, FULL);
        assert!(
            !h.holds(t0 + MS, 0),
            "the second one is acknowledged with it"
        );
        h.on_sent(|| 0);
        h.on_datagram(t0 + 2 * MS, SMALL);
        assert!(!h.holds(t0 + 2 * MS, 0), "a small one does not wait");
        h.on_datagram(t0 + 2 * MS, FULL);
        assert!(
            !h.holds(t0 + 2 * MS, 0),
            "nor a full one second in the turn"
        );
    }

    #[test]
    fn without_holds_for_answers_a_completed_message_arms_nothing() {
        let t0 = Instant::now();
        let mut h = AckHold::new(5 * MS, false);
        h.on_sent(|| 0);
        h.on_datagram(t0, SMALL);
        h.expect_answer(t0);
        assert!(
            !h.holds(t0, 0) && h.deadline().is_none(),
            "BBR2: ACKs at once"
        );
        let mut h = AckHold::new(Duration::ZERO, true);
        h.on_datagram(t0, FULL);
        assert!(!h.holds(t0, 0), "a zero delay never holds bulk data either");
    }

    #[test]
    fn the_loss_count_is_asked_only_after_a_datagram_and_a_stale_one_holds_nothing() {
        let t0 = Instant::now();
        let mut h = AckHold::new(5 * MS, true);
        h.on_sent(|| panic!("nothing arrived: the count is not asked"));
        // A timer found two losses and sent at once: the count stays behind...
        h.on_datagram(t0, SMALL);
        h.expect_answer(t0);
        assert!(
            !h.holds(t0, 2),
            "...so no hold until a send with a datagram"
        );
        h.on_sent(|| 2);
        h.on_datagram(t0 + MS, SMALL);
        h.expect_answer(t0 + MS);
        assert!(h.holds(t0 + MS, 2));
    }
}
