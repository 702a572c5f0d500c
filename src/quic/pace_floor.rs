//! Floors under BBR2's pacing rate, two kinds:
//! - **In STARTUP** (no known link): RFC 9002 §7.7's pacer, 1.25 times the congestion window
//!   per smoothed RTT. In STARTUP with a current estimate, BBR2's own rate (2.885 times the
//!   bandwidth estimate, with a window of about twice the bandwidth-delay product) is above
//!   the floor, so the floor only lifts a rate that has fallen behind the window.
//! - **At a known link's rate** (`transport.link` holding its window): 90% of the link's rate
//!   in every BBR2 mode: the rate to go with the window, which is held at the link's
//!   bandwidth-delay product already (`quic::setup`).
//!
//! Why the STARTUP floor: quiche 0.30's BBR2 sets its first pacing rate at the first ACK from
//! the initial window (without the gain), and in STARTUP raises it only from delivery-rate
//! samples. On a session whose traffic so far was small requests those samples are small (the
//! application, not the path, set their rate), so the first larger answer or upload leaves
//! paced at a fraction of what the congestion window allows: a 48 KB answer after small
//! requests left over 133 ms, 3.3 RTTs of 40 ms (e2e `pace_floor`), a 10 MiB transfer spent
//! its first round trips at 0.1-0.3 MB/s (`benches/README.md`, "Warm-session transfers").
//!
//! Why the link floor: on a lossy link quiche's plateau rule can end STARTUP at the rate of
//! small requests (README "Transport", known defect), and past STARTUP each round with random
//! loss above BBR2's 1.5% threshold cuts its estimate, so it never probes back up: a 4 MiB
//! download after small requests at 2% loss took 7.2 s instead of 0.6 s (e2e `startup_exit`).
//! A link whose rate the operator states and whose window ptproxy holds is ptproxy's to fill;
//! its floor keeps such an estimate from pacing below it. 90%, not 100%: the rate counts UDP
//! payloads, the link also carries their headers, and BBR2's own rate is above the floor
//! whenever its estimate is right, so the floor does not fill the queue BBR2 drains.
//!
//! What a floor does: a packet quiche's pacer holds back may leave as soon as the floor's own
//! schedule (this rate, over every packet the session sends) allows. The window still bounds
//! what is in flight. Without a known link, outside STARTUP (BBR2's estimate then comes from
//! a full pipe) and under CUBIC and Reno (quiche's older recovery, whose pacer follows the
//! window already) there is no floor; a known link that does not hold its window has none
//! either (a STARTUP floor over that link's window would pace at 1.25 times its rate). A floor
//! never exceeds `max_pacing_rate_mbps`, which quiche keeps to in its own pacer, the one the
//! floor goes around.
//!
//! quiche's pacer schedules each packet after the one before at its own rate, whenever the
//! packet really left, so packets the floor sends early put quiche's schedule ahead of the
//! clock: its *lead*. Once the floor is off (STARTUP over) that lead would hold the next packets
//! back for as long as it is (137-167 ms mid-transfer pauses in e2e `pace_floor`). So the session's
//! release times are quiche's shifted back by the lead: quiche's spacing, from when packets
//! really left. The lead is gone once quiche's pacer has nothing scheduled (its schedule starts
//! again from the clock).

use std::time::{Duration, Instant};

use crate::config::TransportConfig;

/// RFC 9002 §7.7's pacing gain over the window per RTT.
const WINDOW_GAIN: f64 = 1.25;

/// A known link's floor as a share of its rate.
const LINK_SHARE: f64 = 0.9;

/// Which floor a session's pacing has.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum FloorKind {
    /// None at all.
    #[default]
    Off,
    /// RFC 9002's pacer while BBR2 is in STARTUP.
    Startup,
    /// A share of a known link's rate, in bytes per second, in every BBR2 mode.
    Link(f64),
}

/// One session's pacing beside quiche's: the floor's schedule and how far quiche's schedule
/// runs ahead of the clock. The default has no floor (sessions not set up from transport
/// settings: the handshake check of `--check --connect`, the simulated pair).
#[derive(Debug, Default)]
pub struct PaceFloor {
    /// Which floor there is.
    kind: FloorKind,
    /// The floor's highest rate, in bytes per second (`None`: none).
    ceiling: Option<u64>,
    /// When the floor lets the next packet leave.
    next: Option<Instant>,
    /// How far ahead of the clock quiche's schedule runs because the floor sent early.
    lead: Duration,
}

/// The floor's rate, in bytes per second, while it applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloorRate(f64);

impl FloorRate {
    /// The floor of a session whose congestion controller is `bbr2_in_startup`, with window
    /// `cwnd` and smoothed RTT `srtt`, at most `ceiling` bytes per second; `None` when no floor
    /// applies.
    pub fn new(
        bbr2_in_startup: bool,
        cwnd: usize,
        srtt: Duration,
        ceiling: Option<u64>,
    ) -> Option<FloorRate> {
        if !bbr2_in_startup || cwnd == 0 || srtt.is_zero() {
            return None;
        }
        let rate = WINDOW_GAIN * cwnd as f64 / srtt.as_secs_f64();
        Some(FloorRate::capped(rate, ceiling))
    }

    /// `rate` bytes per second, at most `ceiling`.
    fn capped(rate: f64, ceiling: Option<u64>) -> FloorRate {
        FloorRate(ceiling.map_or(rate, |c| rate.min(c as f64)))
    }

    pub fn bytes_per_second(&self) -> f64 {
        self.0
    }

    /// How long `bytes` take at this rate.
    fn transfer_time(&self, bytes: usize) -> Duration {
        Duration::from_secs_f64(bytes as f64 / self.0)
    }
}

impl PaceFloor {
    /// The floor of sessions with transport settings `t`, capped at `max_pacing_rate_mbps`:
    /// STARTUP's without a known link, the link's when it holds its window, else none.
    pub fn for_transport(t: &TransportConfig) -> PaceFloor {
        let kind = match t.link {
            None => FloorKind::Startup,
            Some(link) if link.hold_window => {
                FloorKind::Link(LINK_SHARE * link.bytes_per_second() as f64)
            }
            Some(_) => FloorKind::Off,
        };
        PaceFloor {
            kind,
            ceiling: t.max_pacing_rate_mbps.map(|mbps| mbps * 1_000_000 / 8),
            ..PaceFloor::default()
        }
    }

    /// The floor of `conn` now, whose active path's figures are `path`.
    pub fn rate(
        &self,
        conn: &quiche::Connection,
        path: Option<&quiche::PathStats>,
    ) -> Option<FloorRate> {
        let path = path?;
        let bbr2 = conn.gcongestion_enabled() == Some(true);
        match self.kind {
            FloorKind::Off => None,
            FloorKind::Startup => {
                let in_startup = bbr2 && path.startup_exit.is_none();
                FloorRate::new(in_startup, path.cwnd, path.rtt, self.ceiling)
            }
            FloorKind::Link(rate) => bbr2.then(|| FloorRate::capped(rate, self.ceiling)),
        }
    }

    /// When a packet quiche schedules for `quiche_at` leaves: that time less the lead.
    pub fn release(&self, quiche_at: Instant) -> Instant {
        quiche_at.checked_sub(self.lead).unwrap_or(quiche_at)
    }

    /// quiche's pacer has nothing scheduled: its next schedule starts from the clock.
    pub fn on_quiche_idle(&mut self) {
        self.lead = Duration::ZERO;
    }

    /// Whether the floor (at `rate`, `None`: no floor) lets the next packet leave by `horizon`.
    pub fn allows(&self, rate: Option<FloorRate>, horizon: Instant) -> bool {
        rate.is_some() && self.next.is_none_or(|next| next <= horizon)
    }

    /// When the floor (at `rate`) lets the next packet leave; `None`: no floor.
    pub fn next_release(&self, rate: Option<FloorRate>) -> Option<Instant> {
        rate.and(self.next)
    }

    /// A packet of `bytes` left at `now`, scheduled by quiche for `quiche_at`; `by_floor`: the
    /// floor let it go before quiche's (shifted) schedule did. The floor's next packet waits
    /// its transfer time at `rate`.
    pub fn on_sent(
        &mut self,
        bytes: usize,
        rate: Option<FloorRate>,
        quiche_at: Instant,
        by_floor: bool,
        now: Instant,
    ) {
        if by_floor {
            self.lead = quiche_at.saturating_duration_since(now);
        }
        if let Some(rate) = rate {
            let start = self.next.map_or(now, |next| next.max(now));
            self.next = Some(start + rate.transfer_time(bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(50);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_floor_is_rfc_9002s_pacer_in_bbr2_startup_only() {
        let rate = FloorRate::new(true, 84_000, RTT, None).expect("BBR2 in STARTUP has a floor");
        assert!((rate.bytes_per_second() - 1.25 * 84_000.0 / 0.05).abs() < 1.0);
        assert_eq!(
            FloorRate::new(false, 84_000, RTT, None),
            None,
            "after STARTUP or not BBR2"
        );
        assert_eq!(
            FloorRate::new(true, 84_000, Duration::ZERO, None),
            None,
            "no RTT yet"
        );
        assert_eq!(FloorRate::new(true, 0, RTT, None), None);
        let capped = FloorRate::new(true, 84_000, RTT, Some(1_000_000)).expect("capped floor");
        assert_eq!(
            capped.bytes_per_second(),
            1_000_000.0,
            "never above the ceiling"
        );
    }

    #[test]
    fn a_known_link_holding_its_window_has_its_floor_and_the_pacing_cap_bounds_both() {
        let mut t = crate::sim::pair::default_configs().0.transport;
        let plain = PaceFloor::for_transport(&t);
        assert!(plain.kind == FloorKind::Startup && plain.ceiling.is_none());
        t.max_pacing_rate_mbps = Some(16);
        assert_eq!(PaceFloor::for_transport(&t).ceiling, Some(2_000_000));
        let mut link = crate::config::KnownLink {
            rate_mbps: 20,
            rtt: RTT,
            hold_window: true,
        };
        t.link = Some(link);
        assert_eq!(
            PaceFloor::for_transport(&t).kind,
            FloorKind::Link(0.9 * 2_500_000.0),
            "90% of 20 Mbit/s"
        );
        link.hold_window = false;
        t.link = Some(link);
        assert_eq!(PaceFloor::for_transport(&t).kind, FloorKind::Off);
        assert_eq!(
            FloorRate::capped(2_250_000.0, Some(2_000_000)).bytes_per_second(),
            2_000_000.0
        );
    }

    #[test]
    fn the_schedule_spaces_packets_at_the_rate_from_when_they_leave() {
        // 1 MB/s: a 1000-byte packet takes 1 ms.
        let rate = Some(FloorRate(1_000_000.0));
        let now = Instant::now();
        let mut floor = PaceFloor::default();
        assert!(floor.allows(rate, now), "nothing sent yet");
        assert!(!floor.allows(None, now), "no floor, nothing allowed");
        floor.on_sent(1000, rate, now, false, now);
        floor.on_sent(1000, rate, now, false, now);
        assert_eq!(floor.next_release(rate), Some(now + 2 * MS));
        assert_eq!(floor.next_release(None), None);
        assert!(!floor.allows(rate, now + MS));
        assert!(floor.allows(rate, now + 2 * MS));
        // After a pause the schedule starts again from the send, not from the old time.
        let later = now + Duration::from_secs(1);
        floor.on_sent(1000, rate, later, false, later);
        assert_eq!(floor.next_release(rate), Some(later + MS));
    }

    #[test]
    fn quiche_s_schedule_is_shifted_back_by_the_lead_the_floor_gave_it() {
        let rate = Some(FloorRate(1_000_000.0));
        let now = Instant::now();
        let mut floor = PaceFloor::default();
        assert_eq!(floor.release(now + 30 * MS), now + 30 * MS, "no lead yet");
        // The floor sends a packet quiche had scheduled 200 ms ahead.
        floor.on_sent(1000, rate, now + 200 * MS, true, now);
        assert_eq!(floor.release(now + 230 * MS), now + 30 * MS);
        // Packets quiche's own (shifted) schedule sends keep the lead.
        floor.on_sent(1000, rate, now + 230 * MS, false, now + 30 * MS);
        assert_eq!(floor.release(now + 260 * MS), now + 60 * MS);
        // quiche idle: its schedule starts again from the clock.
        floor.on_quiche_idle();
        assert_eq!(floor.release(now + 260 * MS), now + 260 * MS);
    }
}
