//! One HTTP/1.1 connection from a local service, and the request it is currently carrying.
//!
//! A connection serves its requests one at a time, in order (pipelined requests wait in the
//! input buffer), so responses always leave in request order. Phases:
//!
//! ```text
//! Idle --head parsed--> Exchange --response done--> Idle (keep-alive) | Closing --> Done
//!   ^ bad head: answer 4xx ---------------------------------------------> Closing
//!                       Exchange --failure after the head went out--> Done (abort, RST)
//! ```
//!
//! An exchange sends its request as one HTTP/3 stream once the session is usable (waiting at
//! most `http.session_wait_ms`, then 503), streams the request body from the socket to the stream
//! and the response body back, each bounded by the socket buffers in [`TcpConn`].
//!
//! This module holds the connection: its phases, the next request head, closing and lingering,
//! and shutdown; `timers` its timers (which its phase keeps, what each does when due).
//! `exchange` holds the [`Exchange`] (the request head sent once the
//! session takes it, the wait for a session and the resend rules, the request body from the
//! socket to the stream, and the end of the exchange); `response` maps the peer's response
//! head to HTTP/1.1, relays interim responses and moves the response body to the socket.

pub mod conn;
mod exchange;
pub mod request;
mod response;
#[cfg(test)]
mod tests;
mod timers;
mod tunnel;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::bridge::answers::{self, Answer, Busy};
use crate::bridge::headers;
use crate::bridge::stream::SessionPort;
use crate::bridge::tcp::TcpConn;
use crate::client::downstreams::Links;
use crate::client::stream_routes::{StreamRef, StreamRoutes};
use crate::config::{ClientHttpConfig, ListenerRules};
use crate::h1::head::{self, Limits, RequestHead, Version};
use crate::metrics::Metrics;
use crate::quic::h3_code;
use crate::time::Slots;

pub use conn::DownstreamConn;
pub use exchange::Exchange;
use response::Response;
pub use timers::DownTimer;

/// Steps one `drive` call may take before yielding to other connections.
const DRIVE_BUDGET: usize = 64;
/// How long a closing connection keeps reading (and discarding) so its last response is not
/// destroyed by a TCP reset.
const LINGER: Duration = Duration::from_secs(2);

/// What the proxy shares with every downstream while driving it.
pub struct Ctx<'a> {
    pub key: usize,
    pub now: Instant,
    pub http: &'a ClientHttpConfig,
    /// Authority for HTTP/1.0 requests without Host.
    pub default_authority: &'a str,
    /// The sessions, one per peer, by link key.
    pub links: &'a mut dyn Links,
    /// A graceful stop is under way: finish what is in flight, take nothing new.
    pub stopping: bool,
    /// A request head waits for connection credit: bodies pause so that it can leave (heads
    /// first, or bulk uploads would starve every new request).
    pub hold_bodies: bool,
    /// Output is written at the end of the turn, not now: the session's events are being
    /// handed out, and a response's head and first body bytes come as two events (one write
    /// for both, not two).
    pub defer_flush: bool,
    pub streams: &'a mut StreamRoutes,
    pub metrics: &'a mut Metrics,
}

impl Ctx<'_> {
    /// The session of `link` when streams may use it.
    pub fn session(&mut self, link: Option<usize>) -> Option<&mut dyn SessionPort> {
        self.links.port(link?)
    }

    /// The session of `link` is still in 0-RTT: only `http.early_data_methods` may be sent.
    pub fn early(&self, link: Option<usize>) -> bool {
        link.is_some_and(|l| self.links.in_early_data(l))
    }

    /// Forgets stream `id` of `link` (it ended or was given up).
    fn forget_stream(&mut self, link: Option<usize>, id: u64) {
        if let Some(link) = link {
            self.streams.remove(StreamRef { link, id });
        }
    }
}

pub enum Phase {
    Idle,
    Exchange(Box<Exchange>),
    /// Flushing the last output; then the write side is shut.
    Closing,
    /// Write side shut; reading and discarding until EOF or the deadline.
    Lingering,
    /// To be removed (the socket is dropped; `abort` made that a reset).
    Done,
}

pub struct Downstream<T: DownstreamConn = TcpConn> {
    pub tcp: T,
    pub peer: SocketAddr,
    pub phase: Phase,
    pub timers: Slots<DownTimer>,
    /// The last `drive` ran out of budget with work left.
    pub more_work: bool,
    served: u32,
    /// The routes of the listener it came in on (`None`: requests name no service).
    rules: Option<Rc<ListenerRules>>,
}

impl<T: DownstreamConn> Downstream<T> {
    pub fn new(tcp: T, peer: SocketAddr, http: &ClientHttpConfig, now: Instant) -> Self {
        let mut timers = Slots::default();
        timers.arm(DownTimer::Head, now + http.head_timeout);
        Downstream {
            tcp,
            peer,
            phase: Phase::Idle,
            timers,
            more_work: false,
            served: 0,
            rules: None,
        }
    }

    /// The connection came in on a listener with these routes.
    pub fn with_rules(mut self, rules: Option<Rc<ListenerRules>>) -> Self {
        self.rules = rules;
        self
    }

    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Between requests (keep-alive, or not started yet).
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Idle)
    }

    /// The exchange has its stream open on the session.
    pub fn has_stream(&self) -> bool {
        matches!(&self.phase, Phase::Exchange(ex) if ex.stream.is_some())
    }

    /// The exchange waits for the session (not sent yet).
    pub fn is_waiting(&self) -> bool {
        matches!(&self.phase, Phase::Exchange(ex) if ex.stream.is_none() && ex.fields.is_some())
    }

    /// The request body is still on its way to the peer.
    pub fn sends_body(&self) -> bool {
        matches!(&self.phase, Phase::Exchange(ex) if ex.stream.is_some() && !ex.request_done)
    }

    /// The request head waits for send capacity that pausing the bodies will free: it fits the
    /// congestion window `cwnd` once what is in flight is acknowledged.
    pub fn head_waits_for_credit(&self, cwnd: impl Fn(usize) -> usize) -> bool {
        let Phase::Exchange(ex) = &self.phase else {
            return false;
        };
        match (&ex.fields, ex.blocked, ex.link) {
            (Some(fields), Some(Busy::Credit), Some(link)) => {
                headers::field_section_size(fields) <= cwnd(link) as u64
            }
            _ => false,
        }
    }

    /// Makes all the progress possible now. Sets `more_work` when it stopped at its step budget
    /// with progress still possible (the proxy then drives it again without waiting for an
    /// event: the sockets it left ready will not report a new edge).
    pub fn drive(&mut self, ctx: &mut Ctx<'_>) {
        self.more_work = false;
        let mut flushed = false;
        for _ in 0..DRIVE_BUDGET {
            let mut progress = self.tcp.fill();
            progress |= match self.phase {
                Phase::Idle => self.start_exchange(ctx),
                Phase::Exchange(_) => self.advance(ctx),
                Phase::Closing | Phase::Lingering | Phase::Done => false,
            };
            let out = !ctx.defer_flush && self.tcp.flush();
            flushed |= out;
            progress |= out;
            if self.tcp.is_broken() && !matches!(self.phase, Phase::Done) {
                self.abort(ctx);
            }
            if self.step_close(ctx.now) || !progress {
                // Deferred output is written when the connection is driven again this turn.
                self.more_work = ctx.defer_flush && self.tcp.pending_output() > 0;
                self.settle_timers(ctx, flushed);
                return;
            }
        }
        self.more_work = true;
        self.settle_timers(ctx, flushed);
    }

    /// Closing -> Lingering -> Done as the output drains and the peer goes away.
    fn step_close(&mut self, now: Instant) -> bool {
        if matches!(self.phase, Phase::Closing) && self.tcp.pending_output() == 0 {
            self.tcp.shutdown_write();
            self.phase = Phase::Lingering;
            self.timers.arm(DownTimer::Linger, now + LINGER);
        }
        if matches!(self.phase, Phase::Lingering) {
            self.tcp.consume(self.tcp.input().len());
            if self.tcp.input_ended() || self.tcp.write_failed() {
                self.phase = Phase::Done;
            }
        }
        matches!(self.phase, Phase::Done)
    }

    /// Idle: parse the next request head, if complete.
    fn start_exchange(&mut self, ctx: &mut Ctx<'_>) -> bool {
        if ctx.stopping && self.tcp.input().is_empty() {
            self.phase = Phase::Done; // graceful stop: an idle connection just closes
            return false;
        }
        if self.tcp.input().is_empty() {
            if self.tcp.eof() {
                self.phase = Phase::Done;
            }
            return false;
        }
        let limits = Limits {
            max_head_bytes: ctx.http.max_head_bytes,
            ..Limits::default()
        };
        let parsed = match head::parse_request(self.tcp.input(), &limits) {
            Ok(Some(parsed)) => parsed,
            Ok(None) if self.tcp.eof() => {
                self.refuse(
                    answers::bad_request(400, "connection closed inside the request head"),
                    None,
                );
                return true;
            }
            Ok(None) => {
                if !self.timers.is_armed(DownTimer::Head) {
                    // First bytes of a head: from now on the head timeout applies, not keep-alive.
                    self.timers.clear(DownTimer::KeepAlive);
                    self.timers
                        .arm(DownTimer::Head, ctx.now + ctx.http.head_timeout);
                }
                return false;
            }
            Err(e) => {
                self.refuse(answers::bad_request(e.status, e.reason), None);
                return true;
            }
        };
        let (mut request, len) = parsed;
        self.tcp.consume(len);
        match Exchange::new(&mut request, self.peer, self.rules.as_deref(), ctx) {
            Ok((ex, interim)) => {
                if let Some(bytes) = interim {
                    self.tcp.queue(bytes);
                }
                self.timers.arm(DownTimer::SessionWait, ex.wait_until);
                self.phase = Phase::Exchange(Box::new(ex));
            }
            Err(answer) => self.refuse(answer, Some(&request)),
        }
        true
    }

    /// Answers a request we will not forward, then closes.
    fn refuse(&mut self, answer: Answer, request: Option<&RequestHead>) {
        let head_only = request.is_some_and(|r| r.method == "HEAD");
        self.tcp.queue(&answer.to_h1(true, head_only));
        if let Some(r) = request {
            log::debug!(
                "refused {} {} from {}: {}",
                r.method,
                r.target,
                self.peer,
                answer.details
            );
        }
        self.phase = Phase::Closing;
    }

    /// The process stops now (drain deadline passed, or a second stop signal): a request
    /// whose response has not begun is answered 503, one whose response is under way is aborted
    /// (a truncated body must not look complete), an idle connection closes.
    pub fn on_shutdown(&mut self, ctx: &mut Ctx<'_>) {
        match &self.phase {
            Phase::Exchange(_) => self.fail_request(ctx, answers::shutting_down()),
            Phase::Idle => self.phase = Phase::Done,
            Phase::Closing | Phase::Lingering | Phase::Done => {}
        }
        self.drive(ctx);
    }

    /// The peer reset our stream (or the session died): answer if we still can, else abort.
    pub fn on_stream_failed(&mut self, ctx: &mut Ctx<'_>, answer: Answer) {
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        if let Some(id) = ex.stream.take() {
            ctx.forget_stream(ex.link, id);
        }
        if matches!(ex.response, Response::AwaitHead) {
            self.tcp.queue(&answer.to_h1(true, ex.method == "HEAD"));
            log_access(ctx, self.peer, ex, answer.status);
            self.phase = Phase::Closing;
        } else {
            log::info!("aborting response to {}: {}", self.peer, answer.details);
            self.abort(ctx);
        }
        self.drive(ctx);
    }

    /// The request cannot be completed: cancel the stream (the server then abandons the
    /// upstream request), and answer if the response has not started, else abort.
    fn fail_request(&mut self, ctx: &mut Ctx<'_>, answer: Answer) {
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        if !matches!(ex.response, Response::AwaitHead) {
            self.abort(ctx);
            return;
        }
        self.tcp.queue(&answer.to_h1(true, ex.method == "HEAD"));
        log_access(ctx, self.peer, ex, answer.status);
        self.release_stream(ctx, h3_code::REQUEST_CANCELLED);
        self.phase = Phase::Closing;
    }

    /// Gives the stream back (reset both directions) if the exchange still holds one.
    fn release_stream(&mut self, ctx: &mut Ctx<'_>, code: u64) {
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        if let Some(id) = ex.stream.take() {
            ctx.forget_stream(ex.link, id);
            if let Some(s) = ctx.session(ex.link) {
                s.stop_sending(id, code);
                s.reset(id, code);
            }
        }
    }

    /// Drops the connection with a TCP reset so a partial response never looks complete.
    pub fn abort(&mut self, ctx: &mut Ctx<'_>) {
        if let Phase::Exchange(ex) = &mut self.phase {
            if ex.tunnel_open() {
                log_access(ctx, self.peer, ex, ex.status);
            }
        }
        self.release_stream(ctx, h3_code::REQUEST_CANCELLED);
        self.tcp.reset_on_close();
        self.phase = Phase::Done;
    }
}

/// A request ended with `status`: count it and write its access line (a tunnel's with how
/// long it was open; it is counted closed here).
fn log_access(ctx: &mut Ctx<'_>, peer: SocketAddr, ex: &mut Exchange, status: u16) {
    let tunnel = ex.close_tunnel(ctx.now, ctx.metrics);
    ctx.metrics
        .record_request(status, ctx.now.saturating_duration_since(ex.started));
    if !ctx.http.access_log {
        return;
    }
    let version = if ex.version == Version::Http10 {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    };
    log::info!(
        "access {peer} \"{} {} {version}\" {status} req={} resp={} {:.1}ms{tunnel}",
        ex.method,
        ex.target,
        ex.req_bytes,
        ex.resp_bytes,
        ctx.now.saturating_duration_since(ex.started).as_secs_f64() * 1000.0
    );
}
