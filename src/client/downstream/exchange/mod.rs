//! One request on a downstream connection: the [`Exchange`]. Its HTTP/3 request head is sent
//! once the session is usable (waiting at most `http.session_wait_ms`), a request that may be
//! repeated is sent again on the next session, and the request body moves from the socket to
//! the stream; [`Downstream::advance`] runs it and ends it when both directions are done.
//! Sending the head (link, gates, field shaping, compression, the open) is in [`open`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod open;

use super::request;
use super::tunnel::Tunnel;
use crate::bridge::answers::{self, Answer, Busy};
use crate::bridge::compression::Dictionary;
use crate::bridge::headers::forwarding::Completion;
use crate::bridge::headers::Field;
use crate::bridge::pump::{H1ToH3, H1ToH3Error};
use crate::bridge::stream::{SessionPort, StreamOf};
use crate::config::{ListenerRules, PeerGroup};
use crate::h1::body;
use crate::h1::head::{RequestHead, Version};
use crate::quic::h3_code;

use super::{log_access, Ctx, DownTimer, Downstream, DownstreamConn, Phase, Response};

/// The request a downstream connection carries, from its head to the end of its response.
pub struct Exchange {
    pub(super) method: String,
    pub(super) target: String,
    pub(super) version: Version,
    /// Request fields not sent yet (the session was not usable or the stream was blocked).
    pub(super) fields: Option<Vec<Field>>,
    /// A copy of the sent fields while the request may be sent again on a new session: it has
    /// no body, an idempotent method and no response started (RFC 9110 §9.2.2).
    pub(super) resend: Option<Vec<Field>>,
    /// The request already went out a second time.
    resent: bool,
    /// The stream was opened in 0-RTT, on an attempt not yet up.
    sent_early: bool,
    has_body: bool,
    /// The peers its route may use (`None`: any, failover).
    pub(super) peers: Option<PeerGroup>,
    /// The link of its stream; before the stream opens, the link it last tried.
    pub(super) link: Option<usize>,
    pub stream: Option<u64>,
    /// Why the last attempt to open the stream failed on a usable session.
    pub(super) blocked: Option<Busy>,
    pub(super) wait_until: Instant,
    /// The request body, socket -> stream.
    request_body: H1ToH3,
    /// The request body waits for the client's next byte (not for the peer).
    body_waits_for_client: bool,
    /// Since when no body byte arrived while waiting for one: `http.body_timeout_ms` runs
    /// from here.
    body_quiet_since: Instant,
    /// `TcpConn::received` at the last look.
    body_input_mark: u64,
    pub(super) request_done: bool,
    pub(super) response: Response,
    /// The response stream ended (its body, if any, then ends too).
    pub(super) fin_received: bool,
    /// Interim responses received from the peer.
    pub(super) interim_seen: u32,
    pub(super) keep_alive: bool,
    pub(super) started: Instant,
    pub(super) req_bytes: u64,
    pub(super) resp_bytes: u64,
    pub(super) status: u16,
    /// A WebSocket upgrade carried as an extended CONNECT, or a plain CONNECT.
    pub(super) tunnel: Option<Tunnel>,
    /// Its route compresses request bodies on the link (`routes[].compression`).
    compress: bool,
    /// What of its forwarding fields a completing server end may write instead.
    forwarding: Option<Completion>,
    /// The shared dictionary of the session its stream went on (`None`: none agreed): the
    /// response body may be compressed with it.
    pub(super) dictionary: Option<Arc<Dictionary>>,
}

impl<T: DownstreamConn> Downstream<T> {
    /// The exchange phase: sends the request once the session takes it, then moves the request
    /// and response bodies.
    pub(super) fn advance(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let Phase::Exchange(ex) = &mut self.phase else {
            return false;
        };
        let mut progress = false;
        if ex.stream.is_none() {
            match ex.try_send_request(ctx) {
                Ok(sent) => progress |= sent,
                Err(answer) => {
                    let head_only = ex.method == "HEAD";
                    self.tcp.queue(&answer.to_h1(true, head_only));
                    log_access(ctx, self.peer, ex, answer.status);
                    self.phase = Phase::Closing;
                    return true;
                }
            }
            if ex.stream.is_none() {
                return progress;
            }
        }
        let (hold, now) = (ctx.hold_bodies, ctx.now);
        let Some(session) = ctx.session(ex.link) else {
            return progress;
        };
        match ex.pump_request(&mut self.tcp, session, hold, now) {
            Ok(p) => progress |= p,
            Err(answer) => {
                log::debug!(
                    "request body from {} refused: {}",
                    self.peer,
                    answer.details
                );
                self.fail_request(ctx, answer);
                return true;
            }
        }
        let Phase::Exchange(ex) = &mut self.phase else {
            return progress;
        };
        if let Some(session) = ctx.session(ex.link) {
            match ex.pump_response(&mut self.tcp, session) {
                Ok(p) => progress |= p,
                Err(()) => {
                    self.abort(ctx);
                    return true;
                }
            }
        }
        if let Phase::Exchange(ex) = &mut self.phase {
            ex.count_tunnel_bytes(ctx.now, ctx.metrics);
        }
        progress | self.complete_if_done(ctx)
    }

    /// Ends the exchange when both directions are done.
    fn complete_if_done(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let Phase::Exchange(ex) = &mut self.phase else {
            return false;
        };
        if !matches!(ex.response, Response::Done) {
            return false;
        }
        if ex.tunnel_open() && !ex.request_done {
            return half_close_tunnel(ex, &mut self.tcp);
        }
        if let Some(id) = ex.stream.take() {
            ctx.forget_stream(ex.link, id);
            if !ex.request_done {
                // The response ended before the request body: stop it, the connection can't be reused.
                if let Some(s) = ctx.session(ex.link) {
                    s.reset(id, h3_code::NO_ERROR);
                }
                ex.keep_alive = false;
            }
        }
        log_access(ctx, self.peer, ex, ex.status);
        self.served += 1;
        // A client that half-closed after pipelining still gets every complete request answered.
        let more_input = !self.tcp.eof() || !self.tcp.input().is_empty();
        if ex.keep_alive && more_input && !ctx.stopping {
            self.phase = Phase::Idle;
            self.timers.clear(DownTimer::Head);
            self.timers
                .arm(DownTimer::KeepAlive, ctx.now + ctx.http.keepalive_timeout);
        } else {
            self.phase = Phase::Closing;
        }
        true
    }

    /// The session died under our stream, or the peer refused the stream unprocessed
    /// (REQUEST_REJECTED after its GOAWAY). A request that may be repeated waits for the next
    /// session: once, with a fresh `http.session_wait_ms`, when it had gone out on a session;
    /// as often as attempts fail, but within its running wait, when it had gone out in 0-RTT on
    /// an attempt that never came up (replay-safe by `http.early_data_methods`). Others are
    /// answered 503, or aborted if their response had started.
    pub fn on_session_lost(&mut self, ctx: &mut Ctx<'_>) {
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        let may_resend = ex.sent_early || !ex.resent;
        if matches!(ex.response, Response::AwaitHead) && may_resend {
            if let Some(fields) = ex.resend.take() {
                if let Some(id) = ex.stream.take() {
                    ctx.forget_stream(ex.link, id);
                }
                if !ex.sent_early {
                    ex.resent = true;
                    ex.wait_until = ctx.now + ctx.http.session_wait;
                }
                ex.fields = Some(fields);
                self.timers.arm(DownTimer::SessionWait, ex.wait_until);
                log::debug!(
                    "{} {} from {}: will be sent again on the next session",
                    ex.method,
                    ex.target,
                    self.peer
                );
                return;
            }
        }
        self.on_stream_failed(ctx, answers::session_lost());
    }

    /// The peer of `link` went silent: a request on it that may be repeated, with no response
    /// yet and not repeated before, goes to another peer of its group now (its stream on the
    /// silent one is cancelled). Others stay: the peer may yet answer, or the liveness check
    /// ends its session.
    pub fn move_off(&mut self, ctx: &mut Ctx<'_>, link: usize) {
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        let movable = ex.link == Some(link)
            && matches!(ex.response, Response::AwaitHead)
            && !ex.resent
            && ex.resend.is_some();
        if !movable || ex.choose_link(ctx).is_none_or(|other| other == link) {
            return;
        }
        let (Some(id), Some(fields)) = (ex.stream.take(), ex.resend.take()) else {
            return;
        };
        ctx.forget_stream(Some(link), id);
        if let Some(s) = ctx.session(Some(link)) {
            s.stop_sending(id, h3_code::REQUEST_CANCELLED);
            s.reset(id, h3_code::REQUEST_CANCELLED);
        }
        log::info!(
            "{} {} from {}: its peer is silent, sent again to another peer",
            ex.method,
            ex.target,
            self.peer
        );
        ex.resent = true;
        ex.fields = Some(fields);
        ex.wait_until = ctx.now + ctx.http.session_wait;
        self.timers.arm(DownTimer::SessionWait, ex.wait_until);
        self.more_work = true;
    }
}

impl Exchange {
    /// Validates the request head and prepares its HTTP/3 form. Returns an interim
    /// `100 Continue` to write when the client asked for one. Once accepted, the exchange takes
    /// the head's method and target (they are left empty: no copy per request); a refused head
    /// is left whole.
    pub(super) fn new(
        req: &mut RequestHead,
        peer: SocketAddr,
        rules: Option<&ListenerRules>,
        ctx: &Ctx<'_>,
    ) -> Result<(Self, Option<&'static [u8]>), Answer> {
        let prepared = request::prepare(req, peer, ctx.http, ctx.default_authority, rules)?;
        let has_body = prepared.has_body();
        let interim: Option<&'static [u8]> = prepared
            .continue_now
            .then_some(b"HTTP/1.1 100 Continue\r\n\r\n");
        let ex = Exchange {
            method: std::mem::take(&mut req.method),
            target: std::mem::take(&mut req.target),
            version: req.version,
            fields: Some(prepared.fields),
            resend: None,
            resent: false,
            sent_early: false,
            dictionary: None,
            has_body,
            peers: prepared.peers,
            link: None,
            stream: None,
            blocked: None,
            wait_until: ctx.now + ctx.http.session_wait,
            request_body: H1ToH3::new(prepared.framing, ctx.http.max_body_bytes),
            body_waits_for_client: false,
            body_quiet_since: ctx.now,
            body_input_mark: 0,
            request_done: false,
            response: Response::AwaitHead,
            fin_received: false,
            interim_seen: 0,
            keep_alive: req.wants_keep_alive(),
            started: ctx.now,
            req_bytes: 0,
            resp_bytes: 0,
            status: 0,
            tunnel: prepared.tunnel.map(Tunnel::new),
            compress: prepared.compress,
            forwarding: prepared.forwarding,
        };
        Ok((ex, interim))
    }

    /// Moves request body bytes from the socket into the stream, then the trailers. `Err`
    /// carries the answer for a broken body (malformed framing, over the size limit, or the
    /// client went away before its end).
    fn pump_request(
        &mut self,
        tcp: &mut impl DownstreamConn,
        session: &mut dyn SessionPort,
        hold: bool,
        now: Instant,
    ) -> Result<bool, Answer> {
        let Some(id) = self.stream else {
            return Ok(false);
        };
        if hold || self.request_done || !self.request_may_flow() {
            self.note_body_input(tcp, now, false);
            return Ok(false);
        }
        let moved = self.request_body.step(tcp, &mut StreamOf { session, id });
        self.req_bytes = self.request_body.sent;
        let progress = moved.map_err(|e| match e {
            H1ToH3Error::Body(e) => {
                answers::bad_request(400, &format!("request body: {}", body_error(e)))
            }
            H1ToH3Error::TooLarge(max) => request::body_too_large(max),
            H1ToH3Error::Stream(e) => stream_failed(&e.detail),
        })?;
        self.request_done = self.request_body.is_done();
        // A tunnel's caller may stay silent as long as it likes (no body stall clock).
        let waits = self.tunnel.is_none() && self.request_body.waits_for_input();
        self.note_body_input(tcp, now, waits);
        Ok(progress)
    }

    /// Runs the body stall clock: it restarts whenever a byte arrived (one that cannot be
    /// decoded yet counts too) or the body was waiting for the peer rather than the client.
    fn note_body_input(&mut self, tcp: &impl DownstreamConn, now: Instant, waits_for_client: bool) {
        let arrived = tcp.received() != self.body_input_mark;
        self.body_input_mark = tcp.received();
        if arrived || !self.body_waits_for_client {
            self.body_quiet_since = now;
        }
        self.body_waits_for_client = waits_for_client;
    }

    /// When the request body is given up if no byte arrives (while it waits for the client).
    pub(super) fn body_stall_deadline(&self, timeout: Duration) -> Option<Instant> {
        self.body_waits_for_client
            .then(|| self.body_quiet_since + timeout)
    }
}

/// The stream of an open tunnel ended while the caller still sends: the caller's connection
/// is half-closed (FIN) once the stream's last bytes are written; the other direction goes on.
fn half_close_tunnel(ex: &mut Exchange, tcp: &mut impl DownstreamConn) -> bool {
    match ex.tunnel.as_mut() {
        Some(t) if !t.write_closed && tcp.pending_output() == 0 => {
            tcp.shutdown_write();
            t.write_closed = true;
            true
        }
        _ => false,
    }
}

fn stream_failed(e: &str) -> Answer {
    Answer::new(
        answers::Side::Client,
        502,
        "proxy_internal_error",
        format!("the stream to the peer proxy failed: {e}"),
    )
}

fn body_error(e: body::BodyError) -> &'static str {
    match e {
        body::BodyError::Malformed(r) => r,
        body::BodyError::Truncated => "the client closed the connection before the end of the body",
        body::BodyError::TooLong => "body longer than declared",
    }
}
