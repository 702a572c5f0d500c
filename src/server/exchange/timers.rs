//! The deadlines of an [`Exchange`] ([`ExchangeTimer`]): the upstream connect, the upstream's
//! progress, the delivery of a synthesized answer, an open tunnel's idle timeout; what each
//! expiry does, and where the progress timers start again.

use std::time::Instant;

use crate::bridge::answers::{self, Answer};
use crate::config::UpstreamConfig;

use super::{Ctx, Exchange, ExchangeTimer, Outcome, Response};

impl Exchange {
    /// Handles the earliest timer due at `now` (a later call handles the next one).
    pub fn on_timer(&mut self, ctx: &mut Ctx<'_>) -> Outcome {
        let Some(timer) = self.timers.pop_expired(ctx.now) else {
            return Outcome::Continue;
        };
        match timer {
            ExchangeTimer::Connect => self.connect_timed_out(ctx),
            ExchangeTimer::Response => self.time_out(
                ctx,
                answers::upstream_timeout(ctx.upstream.response_timeout.as_millis()),
            ),
            ExchangeTimer::Deliver => {
                log::info!(
                    "stream {}: the answer could not be delivered in time; resetting",
                    self.stream
                );
                self.abort(ctx)
            }
            ExchangeTimer::Idle => {
                log::info!(
                    "stream {}: the tunnel moved no byte for {} ms; resetting",
                    self.stream,
                    ctx.tunnel_idle_timeout.as_millis()
                );
                self.abort(ctx)
            }
        }
    }

    /// The connect did not finish in time: another healthy address of the service gets the
    /// request (nothing was sent yet), with a connect timeout of its own; with none left, 504.
    fn connect_timed_out(&mut self, ctx: &mut Ctx<'_>) -> Outcome {
        let ms = ctx.upstream.connect_timeout.as_millis();
        if let Some(key) = self.upstream {
            let timed_out = std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connect timed out ({ms} ms)"),
            );
            if let Ok(true) = ctx.pool.connect_failed(key, &timed_out) {
                self.arm_connect_timer(ctx, key);
                return self.drive(ctx);
            }
        }
        self.time_out(ctx, answers::upstream_connect_timeout(ms))
    }

    /// The upstream missed a deadline: answer with `answer` while the response has not begun,
    /// reset the stream once it has, and stop an unread request body after a complete response.
    fn time_out(&mut self, ctx: &mut Ctx<'_>, answer: Answer) -> Outcome {
        match self.response {
            Response::Done => {
                log::info!(
                    "stream {}: the upstream stopped reading the request body; ending the exchange",
                    self.stream
                );
                self.stop_request(ctx);
                if let Some(key) = self.upstream.take() {
                    ctx.pool.close(key);
                }
                self.try_complete(ctx).unwrap_or(Outcome::Finished)
            }
            Response::AwaitHead | Response::HeadReady { interim: true, .. } => {
                self.answer(ctx, answer);
                self.drive(ctx)
            }
            Response::HeadReady { .. } | Response::Body => {
                log::info!(
                    "stream {}: upstream stalled mid-response; resetting",
                    self.stream
                );
                self.abort(ctx)
            }
        }
    }

    /// A checked-out connection that is still connecting gets the connect timeout; the
    /// response timeout starts when the request head is written.
    pub(super) fn arm_connect_timer(&mut self, ctx: &mut Ctx<'_>, key: usize) {
        let connecting = ctx.pool.conn(key).is_some_and(|u| u.is_connecting());
        if connecting {
            self.timers.arm(
                ExchangeTimer::Connect,
                ctx.now + ctx.upstream.connect_timeout,
            );
        }
    }

    /// The upstream made progress: the response timeout starts again (an open tunnel has its
    /// idle timeout instead).
    pub(super) fn upstream_progressed(&mut self, now: Instant, config: &UpstreamConfig) {
        if self.tunnel_open() {
            return;
        }
        self.timers
            .arm(ExchangeTimer::Response, now + config.response_timeout);
    }
}
