//! Dead-peer detection for an established session, as a plain state machine over `now`.
//!
//! QUIC's idle timeout (30 s by default) is far too slow to tell a load balancer that the path
//! is gone. So each side watches the time since the last packet it received from the peer:
//!
//! - after `timeout / first_probe_share` of silence it sends an ack-eliciting PING, then one
//!   every `timeout / PROBE_GAP_SHARE` while the silence lasts: an alive peer acknowledges
//!   within an RTT, so a quiet but healthy session costs one PING and one ACK per
//!   `timeout / first_probe_share` plus an RTT;
//! - after the whole timeout of silence the peer is declared dead.
//!
//! The timeout in force is the configured one, stretched to [`PTO_MULTIPLE`] probe timeouts of
//! the measured path (RTT + 4 x RTT variation + the peer's ACK delay), so that a slow or jittery
//! but alive path is never declared dead. With the default 3 s, a dead peer is noticed within
//! 3 s at any RTT up to about 500 ms; on a path with 5% loss each way, the probes that fit
//! in the timeout make a false verdict about 1e-9 per silent period.

use std::time::{Duration, Instant};

/// The timeout never drops below this many probe timeouts of the measured path.
pub const PTO_MULTIPLE: u32 = 2;
/// While silent, probes go out every `timeout / PROBE_GAP_SHARE`.
const PROBE_GAP_SHARE: u32 = 15;
/// The peer's maximum ACK delay assumed in the probe timeout (RFC 9000 default).
const MAX_ACK_DELAY: Duration = Duration::from_millis(25);

/// What the session must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Alive,
    /// Send an ack-eliciting packet: the peer has been quiet for a while.
    Probe,
    /// Nothing from the peer for the whole timeout.
    Dead,
}

/// The path's RTT estimate, as quiche measures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RttEstimate {
    pub rtt: Duration,
    pub rttvar: Duration,
}

impl RttEstimate {
    /// RFC 9002 §6.2.1 probe timeout.
    pub fn pto(self) -> Duration {
        self.rtt + (self.rttvar * 4).max(Duration::from_millis(1)) + MAX_ACK_DELAY
    }
}

#[derive(Debug, Clone)]
pub struct Liveness {
    timeout: Duration,
    /// The first probe goes out after `timeout / first_probe_share` of silence.
    first_probe_share: u32,
    last_receive: Instant,
    last_probe: Option<Instant>,
}

impl Liveness {
    /// `first_probe_share`: 3 for the client (it probes first), 2 for the server (the client's
    /// probes normally keep it from having to).
    pub fn new(timeout: Duration, first_probe_share: u32, now: Instant) -> Self {
        Liveness {
            timeout,
            first_probe_share: first_probe_share.max(1),
            last_receive: now,
            last_probe: None,
        }
    }

    /// The detector for a session, when `timeout` turns it on.
    pub fn configured(
        timeout: Option<Duration>,
        first_probe_share: u32,
        now: Instant,
    ) -> Option<Self> {
        timeout.map(|t| Liveness::new(t, first_probe_share, now))
    }

    /// A packet from the peer arrived.
    pub fn on_receive(&mut self, now: Instant) {
        self.last_receive = self.last_receive.max(now);
    }

    /// How long the peer has been silent.
    pub fn silence(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_receive)
    }

    /// How much silence passes before the first probe, on a path with this estimate.
    pub fn first_probe_after(&self, est: RttEstimate) -> Duration {
        self.timeout(est) / self.first_probe_share
    }

    /// The timeout in force on a path with this estimate.
    pub fn timeout(&self, est: RttEstimate) -> Duration {
        self.timeout.max(est.pto() * PTO_MULTIPLE)
    }

    /// When something is next due: a probe, or the verdict.
    pub fn deadline(&self, est: RttEstimate) -> Instant {
        let timeout = self.timeout(est);
        let first = self.last_receive + timeout / self.first_probe_share;
        let probe = match self.last_probe {
            Some(p) if p >= first => p + probe_gap(timeout),
            _ => first,
        };
        probe.min(self.last_receive + timeout)
    }

    /// What to do at `now`; records a probe when it says so.
    pub fn poll(&mut self, now: Instant, est: RttEstimate) -> Verdict {
        if self.silence(now) >= self.timeout(est) {
            return Verdict::Dead;
        }
        if now >= self.deadline(est) {
            self.last_probe = Some(now);
            return Verdict::Probe;
        }
        Verdict::Alive
    }
}

fn probe_gap(timeout: Duration) -> Duration {
    (timeout / PROBE_GAP_SHARE).max(Duration::from_millis(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn lan() -> RttEstimate {
        RttEstimate {
            rtt: MS,
            rttvar: MS,
        }
    }

    /// Polls every millisecond from `from` for `span`, collecting (offset, verdict) of every
    /// verdict other than Alive.
    fn run(
        l: &mut Liveness,
        from: Instant,
        span: Duration,
        est: RttEstimate,
    ) -> Vec<(u64, Verdict)> {
        let mut out = Vec::new();
        for i in 0..span.as_millis() as u64 {
            let now = from + MS * i as u32;
            match l.poll(now, est) {
                Verdict::Alive => {}
                v => out.push((i, v)),
            }
        }
        out
    }

    #[test]
    fn silent_peer_is_probed_then_declared_dead_at_the_timeout() {
        let t0 = Instant::now();
        let mut l = Liveness::new(3000 * MS, 3, t0);
        let verdicts = run(&mut l, t0, 3001 * MS, lan());
        let probes: Vec<u64> = verdicts
            .iter()
            .filter(|(_, v)| *v == Verdict::Probe)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(
            probes.first(),
            Some(&1000),
            "first probe after a third of the timeout"
        );
        assert_eq!(probes.get(1), Some(&1200), "then every timeout/15");
        assert_eq!(probes.len(), 10, "{probes:?}");
        assert_eq!(verdicts.last(), Some(&(3000, Verdict::Dead)));
    }

    #[test]
    fn any_packet_from_the_peer_restarts_the_silence() {
        let t0 = Instant::now();
        let mut l = Liveness::new(3000 * MS, 3, t0);
        assert_eq!(l.poll(t0 + 1000 * MS, lan()), Verdict::Probe);
        l.on_receive(t0 + 1001 * MS);
        assert_eq!(l.poll(t0 + 1500 * MS, lan()), Verdict::Alive);
        assert_eq!(
            l.deadline(lan()),
            t0 + 2001 * MS,
            "next probe a third after the ACK"
        );
        assert_eq!(l.poll(t0 + 3500 * MS, lan()), Verdict::Probe);
        assert_eq!(l.poll(t0 + 4001 * MS, lan()), Verdict::Dead);
    }

    #[test]
    fn a_slow_path_stretches_the_timeout_to_two_probe_timeouts() {
        let t0 = Instant::now();
        let slow = RttEstimate {
            rtt: 900 * MS,
            rttvar: 300 * MS,
        };
        let l = Liveness::new(3000 * MS, 3, t0);
        // PTO = 900 + 1200 + 25 ms.
        assert_eq!(l.timeout(slow), 4250 * MS);
        let rtt_500 = RttEstimate {
            rtt: 500 * MS,
            rttvar: 50 * MS,
        };
        assert_eq!(
            l.timeout(rtt_500),
            3000 * MS,
            "a settled 500 ms path keeps 3 s"
        );
    }

    #[test]
    fn server_share_probes_later_than_the_client() {
        let t0 = Instant::now();
        let l = Liveness::new(3000 * MS, 2, t0);
        assert_eq!(l.deadline(lan()), t0 + 1500 * MS);
    }
}
