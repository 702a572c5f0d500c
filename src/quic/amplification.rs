//! RFC 9000 §8.1 anti-amplification, enforced by us on the datagrams that actually leave: until
//! the peer's address is validated, a server sends at most three times the bytes it received
//! from it. quiche keeps a budget of its own but pads Initial datagrams to 1200 bytes without
//! charging the padding, so a spoofed Initial would bring back about 6x; this budget counts
//! whole datagrams (padding and retransmissions included) and [`super::udp::UdpIo`] stops
//! asking quiche for packets when it runs out.
//!
//! The address counts as validated when the handshake completed, when a Handshake packet from
//! it was processed (only a peer that saw our Initial can make one), or when the connection was
//! admitted with a Retry token.

/// At most this many times the bytes received, before validation.
pub const FACTOR: u64 = 3;
/// Below this allowance nothing is sent: a datagram carrying an ack-eliciting Initial must be
/// at least this large (RFC 9000 §14.1), and the peer's next Initial brings more allowance.
pub const MIN_SEND: usize = 1200;

#[derive(Debug, Clone, Default)]
pub struct SendBudget {
    received: u64,
    sent: u64,
    validated: bool,
    /// Sending stopped at the limit at least once.
    limited: bool,
    /// `limited` was already reported (counted) by the owner.
    reported: bool,
}

impl SendBudget {
    /// A budget for an address not validated yet.
    pub fn unvalidated() -> Self {
        SendBudget::default()
    }

    /// No limit (validated address, or the client role).
    pub fn validated() -> Self {
        SendBudget {
            validated: true,
            ..SendBudget::default()
        }
    }

    pub fn is_validated(&self) -> bool {
        self.validated
    }

    pub fn validate(&mut self) {
        self.validated = true;
    }

    /// A datagram of `len` bytes arrived from the peer.
    pub fn on_received(&mut self, len: usize) {
        if !self.validated {
            self.received += len as u64;
        }
    }

    /// A datagram of `len` bytes left for the peer.
    pub fn on_sent(&mut self, len: usize) {
        if !self.validated {
            self.sent += len as u64;
        }
    }

    /// Bytes that may still be sent; `None` when unlimited.
    pub fn allowance(&self) -> Option<usize> {
        if self.validated {
            return None;
        }
        let left = (self.received * FACTOR).saturating_sub(self.sent);
        Some(usize::try_from(left).unwrap_or(usize::MAX))
    }

    /// Whether a datagram of `len` bytes fits.
    pub fn allows(&self, len: usize) -> bool {
        self.allowance().is_none_or(|a| a >= len)
    }

    /// Room for the next datagram out of `buffer` bytes, or `None` when sending must wait
    /// (recorded as limited).
    pub fn room(&mut self, buffer: usize) -> Option<usize> {
        match self.allowance() {
            None => Some(buffer),
            Some(a) if a < MIN_SEND => {
                self.limited = true;
                None
            }
            Some(a) => Some(a.min(buffer)),
        }
    }

    /// True once, the first time after sending stopped at the limit.
    pub fn take_newly_limited(&mut self) -> bool {
        if self.limited && !self.reported {
            self.reported = true;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_times_what_was_received_then_nothing() {
        let mut b = SendBudget::unvalidated();
        assert_eq!(b.room(1350), None, "nothing received, nothing sent");
        assert!(b.take_newly_limited());
        assert!(!b.take_newly_limited(), "reported once");
        b.on_received(1200);
        assert_eq!(b.allowance(), Some(3600));
        assert_eq!(b.room(1350), Some(1350));
        b.on_sent(1350);
        b.on_sent(1350);
        assert_eq!(b.room(1350), None, "900 left: under one Initial datagram");
        assert!(b.allows(900) && !b.allows(901));
        b.on_received(1200);
        assert_eq!(b.room(5000), Some(900 + 3600));
    }

    #[test]
    fn validation_lifts_the_limit() {
        let mut b = SendBudget::unvalidated();
        b.on_received(100);
        b.validate();
        assert_eq!(b.allowance(), None);
        assert_eq!(b.room(1350), Some(1350));
        b.on_sent(1_000_000);
        assert!(b.allows(1_000_000));
        assert!(SendBudget::validated().is_validated());
    }
}
