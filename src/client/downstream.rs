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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use quiche::h3::{self, Header as H3Header};

use super::request;
use crate::bridge::answers::{self, Answer, Busy};
use crate::bridge::headers;
use crate::bridge::tcp::TcpConn;
use crate::config::ClientHttpConfig;
use crate::h1::body::{self, BodyDecoder, BodyEncoder, BodyEncoding};
use crate::h1::head::{self, Header, Limits, RequestHead, Version};
use crate::h1::write;
use crate::metrics::Metrics;
use crate::quic::h3_code;
use crate::quic::session::Session;

/// Steps one `drive` call may take before yielding to other connections.
const DRIVE_BUDGET: usize = 64;
/// Decoded request body bytes handed to HTTP/3 per step.
const BODY_CHUNK: usize = 64 * 1024;
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
    pub session: Option<&'a mut Session>,
    /// New requests may open streams on the session (false once the peer sent GOAWAY).
    pub accepting: bool,
    /// The session is still in 0-RTT: only `http.early_data_methods` may be sent.
    pub early: bool,
    /// A graceful stop is under way: finish what is in flight, take nothing new.
    pub stopping: bool,
    /// Why no session is usable (`PEER (REASON)`), for 503 answers.
    pub why_down: &'a str,
    /// A request head waits for connection credit: bodies pause so that it can leave (heads
    /// first, or bulk uploads would starve every new request).
    pub hold_bodies: bool,
    pub by_stream: &'a mut HashMap<u64, usize>,
    pub metrics: &'a mut Metrics,
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

pub struct Exchange {
    method: String,
    target: String,
    version: Version,
    /// Request fields not sent yet (the session was not usable or the stream was blocked).
    fields: Option<Vec<H3Header>>,
    /// A copy of the sent fields while the request may be sent again on a new session: it has
    /// no body, an idempotent method and no response started (RFC 9110 §9.2.2).
    resend: Option<Vec<H3Header>>,
    /// The request already went out a second time.
    resent: bool,
    /// The stream was opened in 0-RTT, on an attempt not yet up.
    sent_early: bool,
    has_body: bool,
    pub stream: Option<u64>,
    /// Why the last attempt to open the stream failed on a usable session.
    blocked: Option<Busy>,
    wait_until: Instant,
    decoder: BodyDecoder,
    /// The request body waits for the client's next byte (not for the peer).
    body_waits_for_client: bool,
    /// Since when no body byte arrived while waiting for one: `http.body_timeout_ms` runs
    /// from here.
    body_quiet_since: Instant,
    /// `TcpConn::received` at the last look.
    body_input_mark: u64,
    body_limit: Option<u64>,
    chunk: Vec<u8>,
    /// Request trailers still to send (after the last body bytes).
    request_trailers: Option<Vec<H3Header>>,
    request_done: bool,
    response: Response,
    /// Response trailers received from the peer, written with the last chunk.
    response_trailers: Vec<Header>,
    fin_received: bool,
    keep_alive: bool,
    started: Instant,
    req_bytes: u64,
    resp_bytes: u64,
    status: u16,
}

enum Response {
    AwaitHead,
    Body(BodyEncoder),
    Done,
}

pub struct Downstream {
    pub tcp: TcpConn,
    pub peer: SocketAddr,
    pub phase: Phase,
    /// When this connection must make progress (head, keep-alive idle, session wait, linger).
    pub deadline: Option<Instant>,
    /// Bytes of the next head arrived (the head timeout runs).
    head_started: bool,
    /// The last `drive` ran out of budget with work left.
    pub more_work: bool,
    served: u32,
}

impl Downstream {
    pub fn new(tcp: TcpConn, peer: SocketAddr, http: &ClientHttpConfig, now: Instant) -> Self {
        Downstream {
            tcp,
            peer,
            phase: Phase::Idle,
            deadline: Some(now + http.head_timeout),
            head_started: true,
            more_work: false,
            served: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Between requests (keep-alive, or not started yet).
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Idle)
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
    pub fn head_waits_for_credit(&self, cwnd: usize) -> bool {
        let Phase::Exchange(ex) = &self.phase else {
            return false;
        };
        match (&ex.fields, ex.blocked) {
            (Some(fields), Some(Busy::Credit)) => {
                headers::field_section_size(fields) <= cwnd as u64
            }
            _ => false,
        }
    }

    /// Makes all the progress possible now. Sets `more_work` when it stopped at its step budget
    /// with progress still possible (the proxy then drives it again without waiting for an
    /// event: the sockets it left ready will not report a new edge).
    pub fn drive(&mut self, ctx: &mut Ctx<'_>) {
        self.more_work = false;
        for _ in 0..DRIVE_BUDGET {
            let mut progress = self.tcp.fill();
            progress |= match self.phase {
                Phase::Idle => self.start_exchange(ctx),
                Phase::Exchange(_) => self.advance(ctx),
                Phase::Closing | Phase::Lingering | Phase::Done => false,
            };
            progress |= self.tcp.flush();
            if self.tcp.is_broken() && !matches!(self.phase, Phase::Done) {
                self.abort(ctx);
            }
            if self.step_close(ctx.now) || !progress {
                return;
            }
        }
        self.more_work = true;
    }

    /// Closing -> Lingering -> Done as the output drains and the peer goes away.
    fn step_close(&mut self, now: Instant) -> bool {
        if matches!(self.phase, Phase::Closing) && self.tcp.pending_output() == 0 {
            let _ = self.tcp.stream.shutdown(std::net::Shutdown::Write);
            self.phase = Phase::Lingering;
            self.deadline = Some(now + LINGER);
        }
        if matches!(self.phase, Phase::Lingering) {
            self.tcp.consume(self.tcp.input.len());
            if self.tcp.input_ended() || self.tcp.write_failed.is_some() {
                self.phase = Phase::Done;
            }
        }
        matches!(self.phase, Phase::Done)
    }

    /// Idle: parse the next request head, if complete.
    fn start_exchange(&mut self, ctx: &mut Ctx<'_>) -> bool {
        if ctx.stopping && self.tcp.input.is_empty() {
            self.phase = Phase::Done; // graceful stop: an idle connection just closes
            return false;
        }
        if self.tcp.input.is_empty() {
            if self.tcp.eof {
                self.phase = Phase::Done;
            }
            return false;
        }
        let limits = Limits {
            max_head_bytes: ctx.http.max_head_bytes,
            ..Limits::default()
        };
        let parsed = match head::parse_request(&self.tcp.input, &limits) {
            Ok(Some(parsed)) => parsed,
            Ok(None) if self.tcp.eof => {
                self.refuse(
                    answers::bad_request(400, "connection closed inside the request head"),
                    None,
                );
                return true;
            }
            Ok(None) => {
                if !self.head_started {
                    // First bytes of a head: from now on the head timeout applies, not keep-alive.
                    self.head_started = true;
                    self.deadline = Some(ctx.now + ctx.http.head_timeout);
                }
                return false;
            }
            Err(e) => {
                self.refuse(answers::bad_request(e.status, e.reason), None);
                return true;
            }
        };
        let (request, len) = parsed;
        self.tcp.consume(len);
        match Exchange::new(&request, self.peer, ctx) {
            Ok((ex, interim)) => {
                if let Some(bytes) = interim {
                    self.tcp.queue(bytes);
                }
                self.deadline = Some(ex.wait_until);
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

    fn advance(&mut self, ctx: &mut Ctx<'_>) -> bool {
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
        let Some(session) = ctx.session.as_deref_mut() else {
            return progress;
        };
        match ex.pump_request(&mut self.tcp, session, ctx.hold_bodies, ctx.now) {
            Ok(p) => {
                progress |= p;
                if let Some(stall) = ex.body_stall_deadline(ctx.http.body_timeout) {
                    let pending = self.deadline.filter(|d| *d > ctx.now);
                    self.deadline = crate::time::earliest(pending, Some(stall));
                }
            }
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
        if let Some(session) = ctx.session.as_deref_mut() {
            match ex.pump_response(&mut self.tcp, session) {
                Ok(p) => progress |= p,
                Err(()) => {
                    self.abort(ctx);
                    return true;
                }
            }
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
        if let Some(id) = ex.stream.take() {
            ctx.by_stream.remove(&id);
            if !ex.request_done {
                // The response ended before the request body: stop it, the connection can't be reused.
                if let Some(s) = ctx.session.as_deref_mut() {
                    let _ = s
                        .conn
                        .stream_shutdown(id, quiche::Shutdown::Write, h3_code::NO_ERROR);
                }
                ex.keep_alive = false;
            }
        }
        log_access(ctx, self.peer, ex, ex.status);
        self.served += 1;
        // A client that half-closed after pipelining still gets every complete request answered.
        let more_input = !self.tcp.eof || !self.tcp.input.is_empty();
        if ex.keep_alive && more_input && !ctx.stopping {
            self.phase = Phase::Idle;
            self.head_started = false;
            self.deadline = Some(ctx.now + ctx.http.keepalive_timeout);
        } else {
            self.phase = Phase::Closing;
        }
        true
    }

    /// HTTP/3 delivered a field section on our stream.
    pub fn on_headers(&mut self, ctx: &mut Ctx<'_>, list: &[H3Header], more_frames: bool) {
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        match ex.start_response(list, more_frames, &mut self.tcp) {
            Ok(()) => {}
            Err(answer) => {
                self.tcp.queue(&answer.to_h1(true, ex.method == "HEAD"));
                log_access(ctx, self.peer, ex, answer.status);
                self.release_stream(ctx, h3_code::MESSAGE_ERROR);
                self.phase = Phase::Closing;
            }
        }
        self.drive(ctx);
    }

    pub fn on_finished(&mut self, ctx: &mut Ctx<'_>) {
        if let Phase::Exchange(ex) = &mut self.phase {
            ex.fin_received = true;
        }
        self.drive(ctx);
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
                    ctx.by_stream.remove(&id);
                }
                if !ex.sent_early {
                    ex.resent = true;
                    ex.wait_until = ctx.now + ctx.http.session_wait;
                }
                ex.fields = Some(fields);
                self.deadline = Some(ex.wait_until);
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
            ctx.by_stream.remove(&id);
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

    /// Called when a deadline may have passed.
    pub fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        if self.deadline.is_none_or(|d| d > ctx.now) {
            return;
        }
        self.deadline = None;
        if self.body_stalled(ctx) {
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
            self.drive(ctx);
            return;
        }
        match &mut self.phase {
            Phase::Idle if self.tcp.input.is_empty() => self.phase = Phase::Done,
            Phase::Idle => self.refuse(
                Answer::new(
                    answers::Side::Client,
                    408,
                    "http_request_error",
                    "the request head did not arrive in time",
                ),
                None,
            ),
            Phase::Exchange(ex) if ex.stream.is_none() => {
                let answer = ex.unsent_answer(ctx);
                self.tcp.queue(&answer.to_h1(true, ex.method == "HEAD"));
                log_access(ctx, self.peer, ex, answer.status);
                self.phase = Phase::Closing;
            }
            // Sent in 0-RTT, but the handshake never completed: the peer may well be gone, and
            // the wait for a session is as bounded as for a request that was never sent.
            Phase::Exchange(ex)
                if ctx.early
                    && ex.wait_until <= ctx.now
                    && matches!(ex.response, Response::AwaitHead) =>
            {
                let answer =
                    answers::session_unavailable(ctx.http.session_wait.as_millis(), ctx.why_down);
                self.fail_request(ctx, answer);
            }
            Phase::Closing | Phase::Lingering => self.phase = Phase::Done,
            _ => {}
        }
        self.drive(ctx);
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
            ctx.by_stream.remove(&id);
            if let Some(s) = ctx.session.as_deref_mut() {
                let _ = s.conn.stream_shutdown(id, quiche::Shutdown::Read, code);
                let _ = s.conn.stream_shutdown(id, quiche::Shutdown::Write, code);
            }
        }
    }

    /// Drops the connection with a TCP reset so a partial response never looks complete.
    pub fn abort(&mut self, ctx: &mut Ctx<'_>) {
        self.release_stream(ctx, h3_code::REQUEST_CANCELLED);
        crate::net::set_linger_zero(&self.tcp.stream);
        self.phase = Phase::Done;
    }
}

impl Exchange {
    /// Validates the request head and prepares its HTTP/3 form. Returns an interim
    /// `100 Continue` to write when the client asked for one.
    fn new(
        req: &RequestHead,
        peer: SocketAddr,
        ctx: &Ctx<'_>,
    ) -> Result<(Self, Option<&'static [u8]>), Answer> {
        let prepared = request::prepare(req, peer, ctx.http, ctx.default_authority)?;
        let has_body = prepared.has_body();
        let interim: Option<&'static [u8]> = prepared
            .continue_now
            .then_some(b"HTTP/1.1 100 Continue\r\n\r\n");
        let ex = Exchange {
            method: req.method.clone(),
            target: req.target.clone(),
            version: req.version,
            fields: Some(prepared.fields),
            resend: None,
            resent: false,
            sent_early: false,
            has_body,
            stream: None,
            blocked: None,
            wait_until: ctx.now + ctx.http.session_wait,
            decoder: BodyDecoder::new(prepared.framing),
            body_waits_for_client: false,
            body_quiet_since: ctx.now,
            body_input_mark: 0,
            body_limit: ctx.http.max_body_bytes,
            chunk: Vec::new(),
            request_trailers: None,
            request_done: false,
            response: Response::AwaitHead,
            response_trailers: Vec::new(),
            fin_received: false,
            keep_alive: req.wants_keep_alive(),
            started: ctx.now,
            req_bytes: 0,
            resp_bytes: 0,
            status: 0,
        };
        Ok((ex, interim))
    }

    /// Opens the stream if the session is usable. `Err` answers the client (503/502).
    fn try_send_request(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Answer> {
        let replay_safe = ctx.http.early_data_methods.contains(&self.method);
        let allowed = ctx.accepting && (!ctx.early || replay_safe);
        if ctx.now >= self.wait_until {
            return Err(self.unsent_answer(ctx));
        }
        let session = ctx.session.as_deref_mut().filter(|_| allowed);
        let Some(session) = session else {
            return Ok(false);
        };
        let (Some(fields), Some(h3)) = (self.fields.as_ref(), session.h3.as_mut()) else {
            return Ok(false);
        };
        if !headers::peer_accepts(h3, fields) {
            return Err(answers::bad_request(
                431,
                "request head larger than the peer proxy accepts",
            ));
        }
        match h3.send_request(&mut session.conn, fields, !self.has_body) {
            Ok(id) => {
                let how = if ctx.early { " in 0-RTT" } else { "" };
                log::debug!(
                    "stream {id}: {} {} sent to the peer{how}",
                    self.method,
                    self.target
                );
                self.stream = Some(id);
                self.blocked = None;
                let sent = self.fields.take();
                if !self.has_body && request::is_idempotent(&self.method) {
                    self.resend = sent;
                }
                self.sent_early = ctx.early;
                self.request_done = !self.has_body;
                ctx.by_stream.insert(id, ctx.key);
                Ok(true)
            }
            Err(h3::Error::StreamBlocked) => {
                self.blocked = Some(Busy::Credit);
                Ok(false)
            }
            Err(h3::Error::TransportError(quiche::Error::StreamLimit)) => {
                self.blocked = Some(Busy::Streams);
                Ok(false)
            }
            Err(e) => Err(Answer::new(
                answers::Side::Client,
                502,
                "proxy_internal_error",
                format!("cannot send the request to the peer proxy: {e}"),
            )),
        }
    }

    /// The answer for a request whose wait for a stream ran out: the session was down, or up
    /// without room for it.
    fn unsent_answer(&self, ctx: &Ctx<'_>) -> Answer {
        let waited = ctx.http.session_wait.as_millis();
        match self.blocked.filter(|_| ctx.session.is_some()) {
            Some(why) => answers::session_busy(waited, why),
            None => answers::session_unavailable(waited, ctx.why_down),
        }
    }

    /// Moves request body bytes from the socket into the stream, then the trailers. `Err`
    /// carries the answer for a broken body (malformed framing, over the size limit, or the
    /// client went away before its end).
    fn pump_request(
        &mut self,
        tcp: &mut TcpConn,
        session: &mut Session,
        hold: bool,
        now: Instant,
    ) -> Result<bool, Answer> {
        let (Some(id), Some(h3)) = (self.stream, session.h3.as_mut()) else {
            return Ok(false);
        };
        if hold {
            self.note_body_input(tcp, now, false);
            return Ok(false);
        }
        let mut progress = false;
        let mut waits_for_client = false;
        while !self.request_done {
            if self.chunk.is_empty() && !self.decoder.is_done() {
                progress |= self.decode_request_body(tcp)?;
                if self.chunk.is_empty() && !self.decoder.is_done() {
                    waits_for_client = !tcp.input_ended();
                    break;
                }
            }
            if self.chunk.is_empty() {
                if let Some(trailers) = &self.request_trailers {
                    match h3.send_additional_headers(&mut session.conn, id, trailers, true, true) {
                        Ok(()) => self.request_done = true,
                        Err(h3::Error::StreamBlocked) | Err(h3::Error::Done) => break,
                        Err(e) => return Err(stream_failed(e)),
                    }
                    progress = true;
                    continue;
                }
            }
            let fin = self.decoder.is_done() && self.request_trailers.is_none();
            match h3.send_body(&mut session.conn, id, &self.chunk, fin) {
                Ok(n) => {
                    self.chunk.drain(..n);
                    self.req_bytes += n as u64;
                    progress = true;
                    if self.chunk.is_empty() && fin {
                        self.request_done = true;
                    } else if n == 0 && !self.chunk.is_empty() {
                        break;
                    }
                }
                Err(h3::Error::Done) | Err(h3::Error::StreamBlocked) => break,
                Err(e) => return Err(stream_failed(e)),
            }
        }
        self.note_body_input(tcp, now, waits_for_client && !self.request_done);
        Ok(progress)
    }

    /// Runs the body stall clock: it restarts whenever a byte arrived (one that cannot be
    /// decoded yet counts too) or the body was waiting for the peer rather than the client.
    fn note_body_input(&mut self, tcp: &TcpConn, now: Instant, waits_for_client: bool) {
        let arrived = tcp.received != self.body_input_mark;
        self.body_input_mark = tcp.received;
        if arrived || !self.body_waits_for_client {
            self.body_quiet_since = now;
        }
        self.body_waits_for_client = waits_for_client;
    }

    /// When the request body is given up if no byte arrives (while it waits for the client).
    fn body_stall_deadline(&self, timeout: Duration) -> Option<Instant> {
        self.body_waits_for_client
            .then(|| self.body_quiet_since + timeout)
    }

    /// Decodes the next piece of request body from the socket input into `chunk`, enforcing
    /// the size limit and collecting trailers at the end.
    fn decode_request_body(&mut self, tcp: &mut TcpConn) -> Result<bool, Answer> {
        let malformed = |e: body::BodyError| {
            answers::bad_request(400, &format!("request body: {}", body_error(e)))
        };
        let used = self
            .decoder
            .decode(&tcp.input, &mut self.chunk, BODY_CHUNK)
            .map_err(malformed)?;
        tcp.consume(used);
        if self.chunk.is_empty() && !self.decoder.is_done() && tcp.input_ended() {
            self.decoder.at_eof().map_err(malformed)?;
        }
        if let Some(max) = self.body_limit {
            if self.req_bytes + self.chunk.len() as u64 > max {
                return Err(request::body_too_large(max));
            }
        }
        if self.decoder.is_done() {
            let trailers = headers::trailers_to_h3(&self.decoder.take_trailers());
            if !trailers.is_empty() {
                self.request_trailers = Some(trailers);
            }
        }
        Ok(used > 0)
    }

    /// Passes an informational (1xx) response to an HTTP/1.1 client (RFC 9110 §15.2).
    /// HTTP/1.0 clients never get one; `100 Continue` is ours to send (see `request`).
    fn relay_interim(&self, status: u16, fields: Vec<Header>, tcp: &mut TcpConn) {
        if self.version != Version::Http11 || status == 100 {
            return;
        }
        write::write_status_head(status, fields, tcp.output_mut());
    }

    /// Turns the peer's response fields into an HTTP/1.1 head on the socket.
    fn start_response(
        &mut self,
        list: &[H3Header],
        more_frames: bool,
        tcp: &mut TcpConn,
    ) -> Result<(), Answer> {
        if matches!(self.response, Response::Body(_)) {
            match headers::trailers_from_h3(list) {
                Ok(trailers) => self.response_trailers = trailers,
                Err(e) => log::debug!("dropping invalid response trailers: {}", e.0),
            }
            return Ok(());
        }
        if !matches!(self.response, Response::AwaitHead) {
            return Ok(());
        }
        let (status, mut fields) =
            headers::response_from_h3(list).map_err(|e| answers::bad_peer_response(e.0))?;
        if status == 101 {
            return Err(answers::bad_peer_response(
                "101 Switching Protocols over HTTP/3",
            ));
        }
        if status < 200 {
            self.relay_interim(status, fields, tcp);
            return Ok(());
        }
        let length =
            headers::content_length(&fields).map_err(|e| answers::bad_peer_response(e.0))?;
        let no_body = self.method == "HEAD" || status == 204 || status == 304;
        if status == 204 {
            // RFC 9110 §8.6: a 204 never carries Content-Length (a 304 or HEAD answer may).
            fields.retain(|f| !f.name.eq_ignore_ascii_case("content-length"));
        }
        let encoding = if no_body {
            BodyEncoding::None
        } else if let Some(n) = length {
            BodyEncoding::ContentLength(n)
        } else if !more_frames {
            fields.push(field("content-length", "0"));
            BodyEncoding::ContentLength(0)
        } else if self.version == Version::Http11 {
            fields.push(field("transfer-encoding", "chunked"));
            BodyEncoding::Chunked
        } else {
            self.keep_alive = false;
            BodyEncoding::UntilClose
        };
        if !self.keep_alive {
            fields.push(field("connection", "close"));
        } else if self.version == Version::Http10 {
            fields.push(field("connection", "keep-alive"));
        }
        write::write_status_head(status, fields, tcp.output_mut());
        log::debug!("stream {:?}: response {status} ({encoding:?})", self.stream);
        self.status = status;
        self.resend = None;
        self.response = Response::Body(BodyEncoder::new(encoding));
        Ok(())
    }

    /// Moves response body bytes from the stream to the socket while the socket has room.
    /// Returns whether anything moved. `Err` means the response cannot be completed.
    fn pump_response(&mut self, tcp: &mut TcpConn, session: &mut Session) -> Result<bool, ()> {
        let (Some(id), Some(h3)) = (self.stream, session.h3.as_mut()) else {
            return Ok(false);
        };
        let Response::Body(encoder) = &mut self.response else {
            return Ok(false);
        };
        let mut buf = [0u8; 16 * 1024];
        let mut progress = false;
        loop {
            let room = tcp.write_room().min(buf.len());
            if room == 0 {
                return Ok(progress);
            }
            match h3.recv_body(&mut session.conn, id, &mut buf[..room]) {
                Ok(n) => {
                    encoder
                        .encode(&buf[..n], tcp.output_mut())
                        .map_err(|_| ())?;
                    self.resp_bytes += n as u64;
                    progress = true;
                }
                Err(h3::Error::Done) => break,
                Err(_) => return Err(()),
            }
        }
        if self.fin_received {
            encoder
                .finish(&self.response_trailers, tcp.output_mut())
                .map_err(|_| ())?;
            self.response = Response::Done;
            progress = true;
        }
        Ok(progress)
    }
}

fn field(name: &str, value: &str) -> Header {
    Header {
        name: name.to_string(),
        value: value.as_bytes().to_vec(),
    }
}

fn stream_failed(e: h3::Error) -> Answer {
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

/// A request ended with `status`: count it and write its access line.
fn log_access(ctx: &mut Ctx<'_>, peer: SocketAddr, ex: &Exchange, status: u16) {
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
        "access {peer} \"{} {} {version}\" {status} req={} resp={} {:.1}ms",
        ex.method,
        ex.target,
        ex.req_bytes,
        ex.resp_bytes,
        ctx.now.saturating_duration_since(ex.started).as_secs_f64() * 1000.0
    );
}
