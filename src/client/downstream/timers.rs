//! A downstream connection's timers: which ones its phase keeps armed (derived from its state
//! after every drive), and what each does when it comes due: the keep-alive and head timeouts,
//! the wait for a session, the request body stall, the closing linger, a tunnel's idle timeout.

use super::response::Response;
use super::{log_access, Ctx, Downstream, DownstreamConn, Phase};
use crate::bridge::answers::{self, Answer};
use crate::time::Slot;

/// A connection's named timers; which ones may be armed follows from its phase
/// ([`Downstream::settle_timers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownTimer {
    /// Idle between requests with no byte of the next head (`http.keepalive_timeout_ms`).
    KeepAlive,
    /// The head being received must be complete (`http.head_timeout_ms`).
    Head,
    /// The request waits for a usable session (`http.session_wait_ms`).
    SessionWait,
    /// The request body waits for the client's next byte (`http.body_timeout_ms`).
    BodyStall,
    /// Closing: the client must take our last output, each progress giving it another
    /// `http.keepalive_timeout_ms`; lingering after our FIN: [`super::LINGER`]. Then the connection ends.
    Linger,
    /// An open WebSocket tunnel moved no byte either way (`http.tunnel_idle_timeout_ms`).
    TunnelIdle,
}

impl Slot for DownTimer {
    const ALL: &'static [Self] = &[
        Self::KeepAlive,
        Self::Head,
        Self::SessionWait,
        Self::BodyStall,
        Self::Linger,
        Self::TunnelIdle,
    ];
    fn index(self) -> usize {
        self as usize
    }
}

impl<T: DownstreamConn> Downstream<T> {
    /// Clears the timers the current phase has no use for, and runs the ones it derives from
    /// its state: the body stall clock, and the closing wait (restarted by output progress).
    pub(super) fn settle_timers(&mut self, ctx: &Ctx<'_>, flushed: bool) {
        let keep: &[DownTimer] = match &self.phase {
            Phase::Idle => &[DownTimer::KeepAlive, DownTimer::Head],
            Phase::Exchange(ex) => {
                match ex.body_stall_deadline(ctx.http.body_timeout) {
                    Some(at) => self.timers.arm(DownTimer::BodyStall, at),
                    None => self.timers.clear(DownTimer::BodyStall),
                }
                if ex.stream.is_some() && !ctx.early(ex.link) {
                    self.timers.clear(DownTimer::SessionWait);
                }
                match ex.tunnel_idle_deadline(ctx.http.tunnel_idle_timeout) {
                    Some(at) => self.timers.arm(DownTimer::TunnelIdle, at),
                    None => self.timers.clear(DownTimer::TunnelIdle),
                }
                &[
                    DownTimer::SessionWait,
                    DownTimer::BodyStall,
                    DownTimer::TunnelIdle,
                ]
            }
            Phase::Closing => {
                if flushed || !self.timers.is_armed(DownTimer::Linger) {
                    let wait = ctx.http.keepalive_timeout;
                    self.timers.arm(DownTimer::Linger, ctx.now + wait);
                }
                &[DownTimer::Linger]
            }
            // Armed on entering it (`step_close`).
            Phase::Lingering => &[DownTimer::Linger],
            Phase::Done => &[],
        };
        for &timer in DownTimer::ALL {
            if !keep.contains(&timer) {
                self.timers.clear(timer);
            }
        }
    }

    /// Handles the earliest timer due (a later call handles the next one).
    pub fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        let Some(timer) = self.timers.pop_expired(ctx.now) else {
            return;
        };
        match timer {
            DownTimer::KeepAlive if self.is_idle() => self.phase = Phase::Done,
            DownTimer::Head if self.is_idle() => self.head_timed_out(),
            DownTimer::SessionWait => self.session_wait_over(ctx),
            DownTimer::BodyStall if self.body_stalled(ctx) => {
                let answer = Answer::new(
                    answers::Side::Client,
                    408,
                    "http_request_error",
                    format!(
                        "the request body stalled: no byte for {} ms (http.body_timeout_ms)",
                        ctx.http.body_timeout.as_millis()
                    ),
                );
                log::debug!("{} from {}", answer.details, self.peer);
                self.fail_request(ctx, answer);
            }
            DownTimer::Linger => self.phase = Phase::Done,
            DownTimer::TunnelIdle => self.tunnel_idle_over(ctx),
            _ => {}
        }
        self.drive(ctx);
    }

    /// No complete head in time: a connection that sent nothing just closes, one with a
    /// partial head is answered 408.
    fn head_timed_out(&mut self) {
        if self.tcp.input().is_empty() {
            self.phase = Phase::Done;
            return;
        }
        self.refuse(
            Answer::new(
                answers::Side::Client,
                408,
                "http_request_error",
                "the request head did not arrive in time",
            ),
            None,
        );
    }

    /// The wait for a session is over: a request not sent is answered 503; one sent in 0-RTT
    /// on an attempt whose handshake never completed too (the peer may well be gone).
    fn session_wait_over(&mut self, ctx: &mut Ctx<'_>) {
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        if ex.stream.is_none() {
            let answer = ex.unsent_answer(ctx);
            self.tcp.queue(&answer.to_h1(true, ex.method == "HEAD"));
            log_access(ctx, self.peer, ex, answer.status);
            self.phase = Phase::Closing;
        } else if ctx.early(ex.link) && matches!(ex.response, Response::AwaitHead) {
            let why = ctx.links.why_down(ex.peers.as_ref());
            let answer = answers::session_unavailable(ctx.http.session_wait.as_millis(), &why);
            self.fail_request(ctx, answer);
        }
    }

    /// The request body waited for the client longer than `http.body_timeout_ms`. Input that
    /// arrived in this turn is read first, so it counts.
    fn body_stalled(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let waiting = |phase: &Phase| match phase {
            Phase::Exchange(ex) => ex.body_stall_deadline(ctx.http.body_timeout),
            _ => None,
        };
        if waiting(&self.phase).is_none() {
            return false;
        }
        self.drive(ctx);
        waiting(&self.phase).is_some_and(|d| d <= ctx.now)
    }
}
