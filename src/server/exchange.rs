//! Server role: one request stream from the peer, carried to the upstream as HTTP/1.1 and its
//! response carried back.
//!
//! ```text
//! upstream: Connecting --connected--> Busy (request head + body out, response in) --> pool/close
//! response: AwaitHead --head parsed--> HeadReady --sent--> Body --end--> Done
//!           any failure before the head went out becomes a synthesized 502/504 (answers.rs);
//!           after it, the stream is reset so the client side never sees a clean end.
//! ```
//! A reused keep-alive connection that ends before any response byte is the upstream's idle
//! close racing the reuse: an idempotent request whose body was not started is sent once more
//! on a fresh connection. The final head must come within `upstream.response_timeout_ms` of the
//! request's last progress (interim responses, at most 16, and head bytes do not extend it);
//! each exchange's deadline is armed in the timer queue exactly once.
//! Request body bytes move only while the upstream socket has room, response bytes only while
//! the stream takes them, so QUIC flow control and TCP push back on the fast side.

use std::time::Instant;

use quiche::h3::{self, Header as H3Header};

use crate::bridge::answers::{self, Answer};
use crate::bridge::headers;
use crate::config::UpstreamConfig;
use crate::h1::body::{self, BodyDecoder, BodyEncoder, BodyEncoding, BodyFraming};
use crate::h1::head::{self, Header, Limits, RequestHead};
use crate::h1::write;
use crate::quic::h3_code;
use crate::quic::session::Session;

use super::upstream::{Pool, UpState};
use super::upstream_head;

const BODY_CHUNK: usize = 64 * 1024;
/// Steps one `drive` call may take before yielding to other exchanges.
const DRIVE_BUDGET: usize = 64;
/// Interim (1xx) responses relayed per request; one more is a 502, so an upstream cannot hold
/// a request open with endless 103s.
const MAX_INTERIM_RESPONSES: u32 = 16;

pub struct Ctx<'a> {
    pub now: Instant,
    /// This exchange's slab key (owner of the upstream connection it checks out).
    pub key: usize,
    pub registry: &'a mio::Registry,
    pub session: &'a mut Session,
    pub pool: &'a mut Pool,
    pub upstream: &'a UpstreamConfig,
    pub max_head_bytes: usize,
    pub access_log: bool,
    pub client: &'a str,
    pub metrics: &'a mut crate::metrics::Metrics,
}

enum Response {
    AwaitHead,
    /// Fields ready to send (retried while the stream is blocked); `fin` when there is no body;
    /// `interim` for a 1xx response, after which the final head is awaited again.
    HeadReady {
        fields: Vec<H3Header>,
        fin: bool,
        interim: bool,
    },
    Body,
    Done,
}

/// Whether the exchange is over (its slab entry can go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Continue,
    /// Stopped at the step budget with progress still possible: drive again soon.
    Yielded,
    Finished,
}

pub struct Exchange {
    pub stream: u64,
    upstream: Option<usize>,
    method: String,
    target: String,
    head_bytes: Vec<u8>,
    head_written: bool,
    encoding: BodyEncoding,
    encoder: BodyEncoder,
    /// The request was already sent again on a fresh connection (see [`Exchange::retry`]).
    retried: bool,
    fin_received: bool,
    request_done: bool,
    response: Response,
    /// A HEADERS frame (interim or final) went out on the stream.
    head_frames_sent: bool,
    /// Interim responses received so far.
    interim_count: u32,
    decoder: Option<BodyDecoder>,
    request_trailers: Vec<Header>,
    response_trailers: Option<Vec<H3Header>>,
    chunk: Vec<u8>,
    reusable: bool,
    /// When the current phase times out: connect, or response (see [`Exchange::on_timer`]).
    deadline: Instant,
    /// The deadline last handed to the timer queue (none yet for a new exchange).
    armed: Option<Instant>,
    started: Instant,
    req_bytes: u64,
    resp_bytes: u64,
    status: u16,
}

impl Exchange {
    /// A request stream's first field section arrived. Invalid requests are answered 400 and
    /// never reach the upstream.
    pub fn start(ctx: &mut Ctx<'_>, stream: u64, list: &[H3Header], more_frames: bool) -> Self {
        let mut ex = Exchange {
            stream,
            upstream: None,
            method: String::new(),
            target: String::new(),
            head_bytes: Vec::new(),
            head_written: false,
            encoding: BodyEncoding::None,
            encoder: BodyEncoder::new(BodyEncoding::None),
            retried: false,
            fin_received: !more_frames,
            request_done: false,
            response: Response::AwaitHead,
            head_frames_sent: false,
            interim_count: 0,
            decoder: None,
            request_trailers: Vec::new(),
            response_trailers: None,
            chunk: Vec::new(),
            reusable: true,
            deadline: ctx.now + ctx.upstream.connect_timeout,
            armed: None,
            started: ctx.now,
            req_bytes: 0,
            resp_bytes: 0,
            status: 0,
        };
        match prepare_request(list, more_frames) {
            Ok((head, encoding)) => {
                log::debug!(
                    "stream {stream} from {}: {} {}",
                    ctx.client,
                    head.method,
                    head.target
                );
                ex.method = head.method.clone();
                ex.target = head.target.clone();
                write::write_request_head(&head, &mut ex.head_bytes);
                ex.encoding = encoding;
                ex.encoder = BodyEncoder::new(encoding);
                match ctx.pool.checkout(ctx.registry, ctx.key) {
                    Ok(key) => ex.upstream = Some(key),
                    Err(e) => ex.answer(ctx, answers::upstream_unreachable(&e)),
                }
            }
            Err(answer) => ex.answer(ctx, answer),
        }
        ex
    }

    /// Makes all the progress possible now.
    pub fn drive(&mut self, ctx: &mut Ctx<'_>) -> Outcome {
        for _ in 0..DRIVE_BUDGET {
            let progress = match self.step(ctx) {
                Ok(p) => p,
                Err(Failure::Answer(answer)) => {
                    self.answer(ctx, answer);
                    true
                }
                Err(Failure::Reset(reason)) => {
                    log::info!(
                        "stream {} to {}: {reason}; resetting it",
                        self.stream,
                        ctx.client
                    );
                    return self.abort(ctx);
                }
                Err(Failure::Malformed(reason)) => {
                    log::info!(
                        "stream {} from {}: malformed request: {reason}; resetting it",
                        self.stream,
                        ctx.client
                    );
                    return self.reset(ctx, h3_code::MESSAGE_ERROR, h3_code::MESSAGE_ERROR);
                }
            };
            if let Some(outcome) = self.try_complete(ctx) {
                return outcome;
            }
            if !progress {
                return Outcome::Continue;
            }
        }
        Outcome::Yielded
    }

    fn step(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Failure> {
        let mut progress = self.connect_step(ctx)?;
        progress |= self.request_step(ctx)?;
        progress |= self.response_step(ctx)?;
        Ok(progress)
    }

    /// Finishes a pending connect and writes the request head.
    fn connect_step(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Failure> {
        let Some(key) = self.upstream else {
            return Ok(false);
        };
        let Some(up) = ctx.pool.conns.get_mut(key) else {
            return Ok(false);
        };
        if up.state == UpState::Connecting {
            match up.tcp.connect_result() {
                None => return Ok(false),
                // The next address of the upstream's name, if one is left to try.
                Some(Err(e)) => {
                    return match ctx.pool.connect_failed(ctx.registry, key, &e) {
                        Ok(true) => Ok(true),
                        Ok(false) => Err(Failure::Answer(answers::upstream_unreachable(&e))),
                        Err(e2) => Err(Failure::Answer(answers::upstream_unreachable(&e2))),
                    };
                }
                Some(Ok(())) => {
                    up.state = UpState::Busy;
                    let _ = up.tcp.stream.set_nodelay(true);
                    self.deadline = ctx.now + ctx.upstream.response_timeout;
                    ctx.pool.connected(key);
                }
            }
        }
        let Some(up) = ctx.pool.conns.get_mut(key) else {
            return Ok(false);
        };
        if !self.head_written {
            up.tcp.queue(&self.head_bytes);
            self.head_written = true;
            self.deadline = ctx.now + ctx.upstream.response_timeout;
            return Ok(true);
        }
        Ok(false)
    }

    /// Request body: stream -> upstream socket, while the socket has room.
    fn request_step(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Failure> {
        let Some(up) = self.upstream.and_then(|k| ctx.pool.conns.get_mut(k)) else {
            return Ok(false);
        };
        if up.state != UpState::Busy {
            return Ok(false);
        }
        let mut progress = false;
        if !self.request_done {
            let Some(h3) = ctx.session.h3.as_mut() else {
                return Ok(false);
            };
            let mut buf = [0u8; 16 * 1024];
            loop {
                let room = up.tcp.write_room().min(buf.len());
                if room == 0 {
                    break;
                }
                match h3.recv_body(&mut ctx.session.conn, self.stream, &mut buf[..room]) {
                    Ok(n) => {
                        self.encoder
                            .encode(&buf[..n], up.tcp.output_mut())
                            .map_err(|_| {
                                Failure::Malformed("request body longer than its content-length")
                            })?;
                        self.req_bytes += n as u64;
                        progress = true;
                    }
                    Err(h3::Error::Done) => break,
                    Err(e) => {
                        return Err(Failure::Reset(
                            if matches!(e, h3::Error::TransportError(_)) {
                                "the peer cancelled the request"
                            } else {
                                "HTTP/3 error on the request stream"
                            },
                        ))
                    }
                }
            }
            if self.fin_received && up.tcp.write_room() > 0 {
                self.encoder
                    .finish(&self.request_trailers, up.tcp.output_mut())
                    .map_err(|_| {
                        Failure::Malformed("request body shorter than its content-length")
                    })?;
                self.request_done = true;
                progress = true;
            }
        }
        if up.tcp.flush() {
            self.deadline = ctx.now + ctx.upstream.response_timeout;
            progress = true;
        }
        Ok(progress)
    }

    /// Response: upstream socket -> stream.
    fn response_step(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Failure> {
        let mut progress = false;
        if let Some(up) = self.upstream.and_then(|k| ctx.pool.conns.get_mut(k)) {
            if up.state == UpState::Busy && up.tcp.fill() {
                // Bytes of a head (trickled, or interim responses) do not extend the wait for
                // the final head: only the request's progress does (see `request_step`).
                if !self.awaiting_final_head() {
                    self.deadline = ctx.now + ctx.upstream.response_timeout;
                }
                progress = true;
            }
        }
        if matches!(self.response, Response::AwaitHead) {
            progress |= self.parse_response_head(ctx)?;
        }
        if let Response::HeadReady {
            fields,
            fin,
            interim,
        } = &self.response
        {
            let Some(h3) = ctx.session.h3.as_mut() else {
                return Ok(progress);
            };
            if !headers::peer_accepts(h3, fields) {
                return Err(Failure::Answer(answers::upstream_invalid(
                    "response head larger than the peer proxy accepts",
                )));
            }
            let conn = &mut ctx.session.conn;
            // The first HEADERS frame opens the response; later ones (after 1xx) continue it.
            let sent = if self.head_frames_sent {
                h3.send_additional_headers(conn, self.stream, fields, false, *fin)
            } else {
                h3.send_response(conn, self.stream, fields, *fin)
            };
            match sent {
                Ok(()) => {
                    self.head_frames_sent = true;
                    self.response = match (interim, fin) {
                        (true, _) => Response::AwaitHead,
                        (false, true) => Response::Done,
                        (false, false) => Response::Body,
                    };
                    progress = true;
                }
                Err(h3::Error::StreamBlocked) => return Ok(progress),
                Err(_) => return Err(Failure::Reset("cannot send the response head")),
            }
            if matches!(self.response, Response::AwaitHead) {
                progress |= self.parse_response_head(ctx)?;
                return Ok(progress);
            }
        }
        if matches!(self.response, Response::Body) {
            progress |= self.pump_response_body(ctx)?;
        }
        Ok(progress)
    }

    fn parse_response_head(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Failure> {
        let Some(up) = self.upstream.and_then(|k| ctx.pool.conns.get_mut(k)) else {
            return Ok(false);
        };
        if up.state != UpState::Busy {
            return Ok(false);
        }
        let limits = Limits {
            max_head_bytes: ctx.max_head_bytes,
            ..Limits::default()
        };
        let (resp, len) = match head::parse_response(&up.tcp.input, &limits) {
            Ok(Some(parsed)) => parsed,
            Ok(None) if up.tcp.input_ended() => {
                if self.may_retry(up.reused, up.tcp.input.is_empty()) {
                    return self.retry(ctx);
                }
                return Err(Failure::Answer(answers::upstream_closed()));
            }
            Ok(None) => return Ok(false),
            Err(e) => return Err(Failure::Answer(answers::upstream_invalid(e.reason))),
        };
        if resp.status == 101 {
            return Err(Failure::Answer(answers::upstream_invalid(
                "101 Switching Protocols is not supported",
            )));
        }
        up.tcp.consume(len);
        if resp.status < 200 {
            self.interim_count += 1;
            if self.interim_count > MAX_INTERIM_RESPONSES {
                return Err(Failure::Answer(answers::upstream_invalid(&format!(
                    "more than {MAX_INTERIM_RESPONSES} interim (1xx) responses"
                ))));
            }
            // Informational: relayed as its own HEADERS frame (RFC 9114 §4.1).
            self.response = Response::HeadReady {
                fields: headers::response_to_h3(&resp),
                fin: false,
                interim: true,
            };
            return Ok(true);
        }
        let framing = body::response_framing(&resp, &self.method)
            .map_err(|e| Failure::Answer(answers::upstream_invalid(e.reason)))?;
        if framing != BodyFraming::None {
            upstream_head::check_transfer_codings(&resp.headers).map_err(Failure::Answer)?;
        }
        log::debug!(
            "stream {}: upstream answered {} ({framing:?})",
            self.stream,
            resp.status
        );
        self.reusable &= resp.wants_keep_alive() && framing != BodyFraming::UntilClose;
        self.status = resp.status;
        let fin = framing == BodyFraming::None || framing == BodyFraming::ContentLength(0);
        let mut decoder = BodyDecoder::new(framing);
        // Body bytes that came with the head are checked before the head goes out, so broken
        // framing right at the start is still a clean 502.
        let used = decoder
            .decode(&up.tcp.input, &mut self.chunk, BODY_CHUNK)
            .map_err(|e| Failure::Answer(answers::upstream_invalid(body_error(e))))?;
        up.tcp.consume(used);
        self.decoder = Some(decoder);
        self.response = Response::HeadReady {
            fields: headers::response_to_h3(&resp),
            fin,
            interim: false,
        };
        Ok(true)
    }

    /// Whether a request whose connection ended before any response byte may be sent again:
    /// only once, only if the connection was a reused one (the upstream may have closed it
    /// while idle, as RFC 9112 §9.3.1 allows), only for an idempotent method whose body was not
    /// started (RFC 9110 §9.2.2).
    fn may_retry(&self, reused: u32, no_response_byte: bool) -> bool {
        reused > 0
            && no_response_byte
            && !self.retried
            && self.interim_count == 0
            && !self.head_frames_sent
            && self.req_bytes == 0
            && self.request_trailers.is_empty()
            && crate::client::request::is_idempotent(&self.method)
    }

    /// Sends the request again on a fresh upstream connection.
    fn retry(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Failure> {
        log::info!(
            "stream {}: reused upstream connection closed before a response; retrying {} {} on a fresh one",
            self.stream,
            self.method,
            self.target
        );
        if let Some(key) = self.upstream.take() {
            ctx.pool.close(ctx.registry, key);
        }
        let key = ctx
            .pool
            .connect_new(ctx.registry, ctx.key)
            .map_err(|e| Failure::Answer(answers::upstream_unreachable(&e)))?;
        self.upstream = Some(key);
        self.retried = true;
        self.head_written = false;
        self.encoder = BodyEncoder::new(self.encoding);
        self.request_done = false;
        self.deadline = ctx.now + ctx.upstream.connect_timeout;
        Ok(true)
    }

    /// The final response head has not been parsed yet.
    fn awaiting_final_head(&self) -> bool {
        matches!(
            self.response,
            Response::AwaitHead | Response::HeadReady { interim: true, .. }
        )
    }

    /// Moves decoded response bytes (or a synthesized body) into the stream.
    fn pump_response_body(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Failure> {
        let Some(h3) = ctx.session.h3.as_mut() else {
            return Ok(false);
        };
        let mut up = self.upstream.and_then(|k| ctx.pool.conns.get_mut(k));
        let mut progress = false;
        loop {
            if let (true, Some(decoder), Some(up)) = (
                self.chunk.is_empty(),
                self.decoder.as_mut(),
                up.as_deref_mut(),
            ) {
                if !decoder.is_done() {
                    let used = decoder
                        .decode(&up.tcp.input, &mut self.chunk, BODY_CHUNK)
                        .map_err(|_| Failure::Reset("malformed response body from the upstream"))?;
                    up.tcp.consume(used);
                    if self.chunk.is_empty() && !decoder.is_done() && up.tcp.input_ended() {
                        decoder.at_eof().map_err(|_| {
                            Failure::Reset("the upstream cut the response body short")
                        })?;
                    }
                }
            }
            if let Some(decoder) = self.decoder.as_mut().filter(|d| d.is_done()) {
                // Taken once; the body's last bytes may already sit in `chunk`.
                let trailers = headers::trailers_to_h3(&decoder.take_trailers());
                if !trailers.is_empty() {
                    self.response_trailers = Some(trailers);
                }
            }
            let body_done = self.decoder.as_ref().is_none_or(|d| d.is_done());
            if self.chunk.is_empty() && !body_done {
                return Ok(progress);
            }
            if let (true, Some(trailers)) = (self.chunk.is_empty(), &self.response_trailers) {
                return match h3.send_additional_headers(
                    &mut ctx.session.conn,
                    self.stream,
                    trailers,
                    true,
                    true,
                ) {
                    Ok(()) => {
                        self.response = Response::Done;
                        Ok(true)
                    }
                    Err(h3::Error::StreamBlocked) | Err(h3::Error::Done) => Ok(progress),
                    Err(_) => Err(Failure::Reset("cannot send the response trailers")),
                };
            }
            let fin = body_done && self.response_trailers.is_none();
            match h3.send_body(&mut ctx.session.conn, self.stream, &self.chunk, fin) {
                Ok(n) => {
                    self.chunk.drain(..n);
                    self.resp_bytes += n as u64;
                    progress = true;
                    if self.chunk.is_empty() && fin {
                        self.response = Response::Done;
                        return Ok(true);
                    }
                    if n == 0 {
                        return Ok(progress);
                    }
                }
                Err(h3::Error::Done) | Err(h3::Error::StreamBlocked) => return Ok(progress),
                Err(_) => return Err(Failure::Reset("the stream to the peer failed")),
            }
        }
    }

    /// Replaces whatever response was coming with a synthesized one; the upstream is dropped.
    fn answer(&mut self, ctx: &mut Ctx<'_>, answer: Answer) {
        log::debug!(
            "stream {}: {} {}",
            self.stream,
            answer.status,
            answer.details
        );
        if matches!(self.response, Response::Body | Response::Done) {
            // The head already went out: too late to answer, the stream must be reset.
            let _ = self.abort(ctx);
            return;
        }
        if let Some(key) = self.upstream.take() {
            ctx.pool.close(ctx.registry, key);
        }
        self.stop_request(ctx);
        let (fields, body) = answer.to_h3();
        self.status = answer.status;
        self.chunk = body;
        self.decoder = None;
        self.response = Response::HeadReady {
            fields,
            fin: false,
            interim: false,
        };
    }

    /// Tells the peer to stop sending the request body (we will not read it).
    fn stop_request(&mut self, ctx: &mut Ctx<'_>) {
        if !self.request_done {
            let _ = ctx.session.conn.stream_shutdown(
                self.stream,
                quiche::Shutdown::Read,
                h3_code::NO_ERROR,
            );
            self.request_done = true;
            self.reusable = false;
        }
    }

    /// Ends the exchange once the response is complete.
    fn try_complete(&mut self, ctx: &mut Ctx<'_>) -> Option<Outcome> {
        if !matches!(self.response, Response::Done) {
            return None;
        }
        if !self.request_done {
            if !self.fin_received {
                self.stop_request(ctx);
            } else {
                return None; // the rest of the request body is still flowing to the upstream
            }
        }
        if let Some(key) = self.upstream.take() {
            ctx.pool.checkin(ctx.registry, key, self.reusable, ctx.now);
        }
        self.log_access(ctx);
        Some(Outcome::Finished)
    }

    /// Resets the stream both ways and drops the upstream connection.
    pub fn abort(&mut self, ctx: &mut Ctx<'_>) -> Outcome {
        self.reset(ctx, h3_code::REQUEST_CANCELLED, h3_code::INTERNAL_ERROR)
    }

    /// Resets the stream with these codes (STOP_SENDING, RESET_STREAM) and drops the upstream
    /// connection.
    fn reset(&mut self, ctx: &mut Ctx<'_>, read_code: u64, write_code: u64) -> Outcome {
        let _ = ctx
            .session
            .conn
            .stream_shutdown(self.stream, quiche::Shutdown::Read, read_code);
        let _ = ctx
            .session
            .conn
            .stream_shutdown(self.stream, quiche::Shutdown::Write, write_code);
        if let Some(key) = self.upstream.take() {
            ctx.pool.close(ctx.registry, key);
        }
        self.log_access(ctx);
        Outcome::Finished
    }

    /// A second field section on the request stream: the request trailers.
    pub fn on_trailers(&mut self, list: &[H3Header]) -> Outcome {
        match headers::trailers_from_h3(list) {
            Ok(trailers) => {
                self.request_trailers = trailers;
                Outcome::Continue
            }
            Err(e) => {
                log::info!(
                    "stream {}: invalid request trailers ({}); resetting",
                    self.stream,
                    e.0
                );
                Outcome::Finished
            }
        }
    }

    pub fn on_finished(&mut self) {
        self.fin_received = true;
    }

    /// The deadline passed: connect or response timeout.
    pub fn on_timer(&mut self, ctx: &mut Ctx<'_>) -> Outcome {
        if self.deadline > ctx.now || matches!(self.response, Response::Done) {
            return Outcome::Continue;
        }
        let connecting = self
            .upstream
            .and_then(|k| ctx.pool.conns.get(k))
            .is_some_and(|u| u.state == UpState::Connecting);
        let answer = if connecting {
            answers::upstream_connect_timeout(ctx.upstream.connect_timeout.as_millis())
        } else {
            answers::upstream_timeout(ctx.upstream.response_timeout.as_millis())
        };
        if !matches!(self.response, Response::AwaitHead) {
            log::info!(
                "stream {}: upstream stalled mid-response; resetting",
                self.stream
            );
            return self.abort(ctx);
        }
        self.answer(ctx, answer);
        // The synthesized answer gets one more period to be delivered, then the stream is reset.
        self.deadline = ctx.now + ctx.upstream.response_timeout;
        self.drive(ctx)
    }

    /// The deadline to hand to the timer queue, when it is not armed yet: every new deadline
    /// is scheduled once, a passed one is not scheduled again (no busy loop).
    pub fn deadline_to_arm(&mut self) -> Option<Instant> {
        if self.armed == Some(self.deadline) {
            return None;
        }
        self.armed = Some(self.deadline);
        Some(self.deadline)
    }

    pub fn upstream(&self) -> Option<usize> {
        self.upstream
    }

    /// The exchange ended: count it and write its access line.
    fn log_access(&self, ctx: &mut Ctx<'_>) {
        ctx.metrics
            .record_request(self.status, ctx.now.saturating_duration_since(self.started));
        if !ctx.access_log {
            return;
        }
        log::info!(
            "access {} \"{} {}\" {} req={} resp={} {:.1}ms",
            ctx.client,
            self.method,
            self.target,
            self.status,
            self.req_bytes,
            self.resp_bytes,
            ctx.now
                .saturating_duration_since(self.started)
                .as_secs_f64()
                * 1000.0
        );
    }
}

fn body_error(e: body::BodyError) -> &'static str {
    match e {
        body::BodyError::Malformed(reason) => reason,
        body::BodyError::Truncated => "response body cut short",
        body::BodyError::TooLong => "response body longer than declared",
    }
}

enum Failure {
    /// Answer the client with this (or reset if the head already went out).
    Answer(Answer),
    /// Reset the stream.
    Reset(&'static str),
    /// The request is malformed (RFC 9114 §4.1.2): reset the stream with H3_MESSAGE_ERROR.
    Malformed(&'static str),
}

/// HTTP/3 request fields -> HTTP/1.1 head for the upstream, with body framing decided:
/// no body when the stream ended with the fields, Content-Length when given, else chunked.
fn prepare_request(
    list: &[H3Header],
    more_frames: bool,
) -> Result<(RequestHead, BodyEncoding), Answer> {
    let mut head = headers::request_from_h3(list).map_err(|e| answers::bad_h3_request(e.0))?;
    let length =
        headers::content_length(&head.headers).map_err(|e| answers::bad_h3_request(e.0))?;
    let encoding = match (more_frames, length) {
        (false, Some(n)) if n > 0 => {
            return Err(answers::bad_h3_request("content-length without a body"))
        }
        (false, _) => BodyEncoding::None,
        (true, Some(n)) => BodyEncoding::ContentLength(n),
        (true, None) => {
            head.headers.push(Header {
                name: "transfer-encoding".into(),
                value: b"chunked".to_vec(),
            });
            BodyEncoding::Chunked
        }
    };
    Ok((head, encoding))
}
