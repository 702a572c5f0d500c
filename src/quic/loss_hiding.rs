//! Loss hiding: which datagrams are sent twice (`transport.loss_hiding`), so that one loss on a
//! link with random loss costs nothing instead of a retransmission round trip. `small` copies
//! datagrams up to a size (requests, small responses, ACKs), `interactive` every datagram while
//! little was sent within the last RTT; [`super::udp::UdpIo`] sends the copies, at once or
//! `gap` later.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::{LossHiding, LossHidingMode};

/// Decides which datagrams are sent twice, and counts them.
#[derive(Debug)]
pub struct LossHider {
    cfg: LossHiding,
    /// (time, bytes) of original datagrams sent within the last RTT (interactive mode).
    recent: VecDeque<(Instant, usize)>,
    recent_bytes: u64,
    pub datagrams: u64,
    pub bytes: u64,
}

impl LossHider {
    pub fn new(cfg: LossHiding) -> Self {
        LossHider {
            cfg,
            recent: VecDeque::new(),
            recent_bytes: 0,
            datagrams: 0,
            bytes: 0,
        }
    }

    /// One line for the start-up log: the mode and what it costs.
    pub fn describe(&self) -> String {
        let c = &self.cfg;
        let gap = if c.gap.is_zero() {
            "right away".to_string()
        } else {
            format!("{} ms later", c.gap.as_millis())
        };
        match c.mode {
            LossHidingMode::Off => "loss hiding off".to_string(),
            LossHidingMode::Small => format!(
                "loss hiding: datagrams up to {} bytes are sent twice ({gap}); expected cost: \
                 up to 2x the bytes of small messages (requests, small responses, ACKs), bulk transfers unaffected",
                c.max_datagram
            ),
            LossHidingMode::Interactive => format!(
                "loss hiding: every datagram is sent twice ({gap}) while under {} bytes left in the last RTT; \
                 expected cost: 2x the bytes of interactive traffic, bulk transfers stop being duplicated",
                c.interactive_bytes
            ),
        }
    }

    /// Whether an original datagram of `len` bytes gets a copy; records it.
    pub(super) fn duplicate(&mut self, len: usize, now: Instant, rtt: Duration) -> bool {
        let dup = match self.cfg.mode {
            LossHidingMode::Off => false,
            LossHidingMode::Small => len <= self.cfg.max_datagram,
            LossHidingMode::Interactive => {
                self.forget_older_than(now.checked_sub(rtt).unwrap_or(now));
                self.recent.push_back((now, len));
                self.recent_bytes += len as u64;
                self.recent_bytes <= self.cfg.interactive_bytes
            }
        };
        if dup {
            self.datagrams += 1;
            self.bytes += len as u64;
        }
        dup
    }

    fn forget_older_than(&mut self, limit: Instant) {
        while let Some(&(t, len)) = self.recent.front() {
            if t >= limit {
                break;
            }
            self.recent.pop_front();
            self.recent_bytes -= len as u64;
        }
    }

    pub(super) fn gap(&self) -> Duration {
        self.cfg.gap
    }
}
