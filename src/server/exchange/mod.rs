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
//! request's last progress (interim responses, at most 16, and head bytes do not extend it).
//! Its timers are named slots ([`ExchangeTimer`]): each is armed and cleared where its phase
//! starts and ends, and each expiry is handled once. After a complete response, a request body
//! still flowing to the upstream gets the response timeout too: an upstream that stops
//! reading it ends the exchange (no stream or connection is held forever).
//! Request body bytes move only while the upstream socket has room, response bytes only while
//! the stream takes them, so QUIC flow control and TCP push back on the fast side.
//!
//! This module holds the [`Exchange`] itself (start, drive, synthesized answers, resets, the
//! deadline); the data path is split by direction: `request` (the request head and body, stream
//! -> upstream socket) and `response` (the response head, interim responses, body and trailers,
//! upstream socket -> stream, and the retry on a closed reused connection); `timers` handles
//! the deadlines. An extended CONNECT for WebSocket is an exchange too, whose upgrade turns into
//! a tunnel (`tunnel`).

pub mod port;
mod request;
mod response;
pub mod route;
#[cfg(test)]
mod tests;
mod timers;
mod tunnel;
mod upstream_head;

use std::sync::Arc;
use std::time::{Duration, Instant};

use quiche::h3::Header as H3Header;

use crate::bridge::answers::{self, Answer};
use crate::bridge::compression::{self, Dictionary};
use crate::bridge::headers::{
    self,
    forwarding::{self, Completion},
};
use crate::bridge::pump::{H1ToH3, H3ToH1};
use crate::bridge::stream::ExchangeStream;
use crate::config::{CompressionPolicy, ConnectTo, UpstreamConfig};
use crate::h1::body::BodyEncoding;
use crate::h1::head::RequestHead;
use crate::h1::write;
use crate::quic::h3_code;
use crate::time::{Slot, Slots};

use port::UpstreamPort;

use request::{prepare_request, Prepared};
use tunnel::Tunnel;

/// Steps one `drive` call may take before yielding to other exchanges.
const DRIVE_BUDGET: usize = 64;

/// What an exchange works with while it runs: its two ports (the request stream and the
/// upstream connections) and plain data. No socket, registry or session.
pub struct Ctx<'a> {
    pub now: Instant,
    pub stream: &'a mut dyn ExchangeStream,
    pub pool: &'a mut dyn UpstreamPort,
    pub upstream: &'a UpstreamConfig,
    /// The name of the service the exchange is for (metrics, access log).
    pub service: &'a str,
    pub max_head_bytes: usize,
    pub access_log: bool,
    pub client: &'a str,
    pub metrics: &'a mut crate::metrics::Metrics,
    /// A tunnel moving no byte either way for this long is reset (`http.tunnel_idle_timeout_ms`).
    pub tunnel_idle_timeout: Duration,
    /// Where a plain CONNECT through the service may go (its `connect_to`).
    pub connect_to: &'a ConnectTo,
    /// Which response bodies go compressed: `Some` when both ends announced link compression.
    pub compression: Option<&'a CompressionPolicy>,
    /// The shared dictionary both ends announced: bodies compressed with it, both ways.
    pub dictionary: Option<Arc<Dictionary>>,
    /// What the client end left to this end of each request's forwarding fields (`None`: an
    /// older client, whose fields come complete).
    pub forwarding: Option<Completion>,
}

enum Response {
    AwaitHead,
    /// Fields ready to send (retried while the stream is blocked); `fin` when there is no body;
    /// `interim` for a 1xx response, after which the final head is awaited again.
    HeadReady {
        fields: Vec<headers::Field>,
        fin: bool,
        interim: bool,
    },
    Body,
    Done,
}

/// An exchange's named timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeTimer {
    /// The upstream connect must finish (`upstream.connect_timeout_ms`).
    Connect,
    /// The upstream must make progress (`upstream.response_timeout_ms`): read the request,
    /// send the final head, send body bytes.
    Response,
    /// A synthesized answer must be delivered to the peer (the stream may be blocked).
    Deliver,
    /// An open tunnel must move a byte either way (`http.tunnel_idle_timeout_ms`).
    Idle,
}

impl Slot for ExchangeTimer {
    const ALL: &'static [Self] = &[Self::Connect, Self::Response, Self::Deliver, Self::Idle];
    fn index(self) -> usize {
        self as usize
    }
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
    /// The service it is for (its index in the configuration).
    service: usize,
    upstream: Option<usize>,
    method: String,
    target: String,
    head_bytes: Vec<u8>,
    head_written: bool,
    /// The request body, stream -> upstream.
    request_body: H3ToH1,
    /// The request was already sent again on a fresh connection (see [`Exchange::retry`]).
    retried: bool,
    /// No more request bytes go to the upstream: all written, or stopped.
    request_done: bool,
    response: Response,
    /// A HEADERS frame (interim or final) went out on the stream.
    head_frames_sent: bool,
    /// Interim responses received so far.
    interim_count: u32,
    /// The response body, upstream (or a synthesized answer) -> stream, once the head is in.
    response_body: Option<H1ToH3>,
    reusable: bool,
    pub timers: Slots<ExchangeTimer>,
    started: Instant,
    status: u16,
    /// An extended CONNECT for WebSocket: the upgrade, then the tunnel.
    tunnel: Option<Tunnel>,
    /// Why the request stream is malformed: the first drive resets it (H3_MESSAGE_ERROR).
    malformed: Option<&'static str>,
}

impl Exchange {
    /// A request stream's first field section arrived, for the service `routed` names (see
    /// [`route::route`]) or refused there. Invalid requests are answered 400, refused ones
    /// with the refusal, malformed ones (CONNECT forms) reset; none reaches the upstream. A
    /// WebSocket extended CONNECT gets a fresh upstream connection.
    pub fn start(
        ctx: &mut Ctx<'_>,
        stream: u64,
        routed: Result<usize, Answer>,
        list: &[H3Header],
        more_frames: bool,
    ) -> Self {
        let mut prepared = prepare_request(list, more_frames);
        if let Ok(p) = prepared.as_mut() {
            if p.goes_upstream() {
                forwarding::complete(&mut p.head.headers, list, ctx.forwarding);
            }
        }
        let encoding = prepared.as_ref().map_or(BodyEncoding::None, |p| p.encoding);
        let mut request_body = H3ToH1::new(encoding);
        match compression::decompressor_for(list, ctx.dictionary.as_ref()) {
            Ok(Some(d)) => request_body.decompress(d),
            Ok(None) => {}
            Err(e) => {
                log::debug!("stream {stream}: request body not decodable: {}", e.0);
                prepared = Err(Failure::Reset(
                    "cannot decompress the request body (no memory, or no shared dictionary)",
                ));
            }
        }
        if !more_frames {
            request_body.on_finished();
        }
        let mut ex = Exchange {
            stream,
            service: *routed.as_ref().unwrap_or(&0),
            upstream: None,
            method: String::new(),
            target: String::new(),
            head_bytes: Vec::new(),
            head_written: false,
            request_body,
            retried: false,
            request_done: false,
            response: Response::AwaitHead,
            head_frames_sent: false,
            interim_count: 0,
            response_body: None,
            reusable: true,
            timers: Slots::default(),
            started: ctx.now,
            status: 0,
            tunnel: None,
            malformed: None,
        };
        match prepared {
            Ok(Prepared {
                mut head, tunnel, ..
            }) => {
                log::debug!(
                    "stream {stream} from {}: {} {}",
                    ctx.client,
                    head.method,
                    head.target
                );
                // The exchange keeps the method and target once the head is written (or
                // refused): moved, not copied.
                let keep_names = |ex: &mut Exchange, head: &mut RequestHead| {
                    ex.method = std::mem::take(&mut head.method);
                    ex.target = std::mem::take(&mut head.target);
                };
                if let Err(refusal) = routed {
                    keep_names(&mut ex, &mut head);
                    ex.answer(ctx, refusal);
                    return ex;
                }
                ex.reusable = tunnel.is_none();
                ex.tunnel = tunnel;
                let taken = ex.take_upstream(ctx, &head);
                keep_names(&mut ex, &mut head);
                match taken {
                    Ok(key) => {
                        ex.upstream = Some(key);
                        ex.arm_connect_timer(ctx, key);
                    }
                    Err(answer) => ex.answer(ctx, answer),
                }
            }
            Err(Failure::Answer(answer)) => ex.answer(ctx, answer),
            Err(Failure::Malformed(reason) | Failure::Reset(reason)) => ex.malformed = Some(reason),
        }
        ex
    }

    /// The upstream connection for request `head`: a pooled or new one for a request (its
    /// head queued for it), a new one for a WebSocket upgrade, a new one to the destination
    /// of a plain CONNECT the service allows (nothing queued: the bytes are the caller's).
    fn take_upstream(&mut self, ctx: &mut Ctx<'_>, head: &RequestHead) -> Result<usize, Answer> {
        let destination = self.tunnel.as_ref().and_then(|t| t.destination());
        let taken = match (destination, &self.tunnel) {
            (Some(_), _) if ctx.connect_to.is_empty() => {
                return Err(answers::connect_off(ctx.service));
            }
            (Some(d), _) if !ctx.connect_to.allows(d) => {
                log::info!(
                    "CONNECT to {d} from {} refused: not in service {:?}'s connect_to",
                    ctx.client,
                    ctx.service
                );
                ctx.metrics
                    .record_refused(Some(ctx.service), "connect_denied");
                return Err(answers::connect_denied(&d.to_string(), ctx.service));
            }
            (Some(d), _) => {
                self.head_written = true;
                ctx.pool.connect_to(d)
            }
            (None, tunnel) => {
                write::write_request_head(head, &mut self.head_bytes);
                match tunnel {
                    Some(_) => ctx.pool.connect_new(),
                    None => ctx.pool.checkout(),
                }
            }
        };
        taken.map_err(|e| answers::upstream_unreachable(&e))
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
        if let Some(reason) = self.malformed.take() {
            return Err(Failure::Malformed(reason));
        }
        let mut progress = self.connect_step(ctx)?;
        progress |= self.request_step(ctx)?;
        progress |= self.response_step(ctx)?;
        self.count_tunnel_bytes(ctx.now, ctx.metrics);
        Ok(progress)
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
            ctx.pool.close(key);
        }
        self.stop_request(ctx);
        self.timers.clear(ExchangeTimer::Connect);
        self.timers.clear(ExchangeTimer::Response);
        self.timers.arm(
            ExchangeTimer::Deliver,
            ctx.now + ctx.upstream.response_timeout,
        );
        let (fields, body) = answer.to_h3();
        self.status = answer.status;
        self.response_body = Some(H1ToH3::in_hand(body));
        self.response = Response::HeadReady {
            fields,
            fin: false,
            interim: false,
        };
    }

    /// Tells the peer to stop sending the request body (we will not read it).
    fn stop_request(&mut self, ctx: &mut Ctx<'_>) {
        if !self.request_done {
            ctx.stream.stop_sending(h3_code::NO_ERROR);
            self.request_done = true;
            self.reusable = false;
        }
    }

    /// Ends the exchange once the response is complete.
    fn try_complete(&mut self, ctx: &mut Ctx<'_>) -> Option<Outcome> {
        if !matches!(self.response, Response::Done) || !self.tunnel_ended() {
            return None;
        }
        if !self.request_done {
            if !self.request_body.is_finished() {
                self.stop_request(ctx);
            } else {
                return None; // the rest of the request body is still flowing to the upstream
            }
        }
        if let Some(key) = self.upstream.take() {
            ctx.pool.checkin(key, self.reusable);
        }
        self.log_access(ctx);
        Some(Outcome::Finished)
    }

    /// Resets the stream both ways and drops the upstream connection.
    pub fn abort(&mut self, ctx: &mut Ctx<'_>) -> Outcome {
        self.reset(ctx, h3_code::REQUEST_CANCELLED, h3_code::INTERNAL_ERROR)
    }

    /// Resets the stream with these codes (STOP_SENDING, RESET_STREAM) and drops the upstream
    /// connection. A response already complete (its FIN sent) is not reset: RESET_STREAM would
    /// only abandon its bytes still in flight and turn a complete answer into a reset.
    fn reset(&mut self, ctx: &mut Ctx<'_>, read_code: u64, write_code: u64) -> Outcome {
        ctx.stream.stop_sending(read_code);
        if !matches!(self.response, Response::Done) {
            ctx.stream.reset(write_code);
        }
        if let Some(key) = self.upstream.take() {
            self.abort_tunnel_upstream(ctx, key);
            ctx.pool.close(key);
        }
        self.log_access(ctx);
        Outcome::Finished
    }

    /// An HTTP/3 event on the request stream after its first field section: trailers, its
    /// end, or a reset by the peer. Data needs no handling here: the next [`Exchange::drive`]
    /// reads it (the caller drives the exchange after every event, now or later in the turn).
    pub fn on_stream_event(&mut self, ctx: &mut Ctx<'_>, event: quiche::h3::Event) -> Outcome {
        use quiche::h3::Event;
        match event {
            Event::Headers { list, .. } => match self.on_trailers(&list) {
                Outcome::Finished => self.abort(ctx),
                other => other,
            },
            Event::Finished => {
                self.on_finished();
                Outcome::Continue
            }
            Event::Reset(_) => self.abort(ctx),
            Event::Data | Event::GoAway | Event::PriorityUpdate => Outcome::Continue,
        }
    }

    /// A second field section on the request stream: the request trailers.
    pub fn on_trailers(&mut self, list: &[H3Header]) -> Outcome {
        match headers::trailers_from_h3(list) {
            Ok(trailers) => {
                self.request_body.set_trailers(trailers);
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
        self.request_body.on_finished();
    }

    pub fn upstream(&self) -> Option<usize> {
        self.upstream
    }

    pub fn service(&self) -> usize {
        self.service
    }

    /// A reload moved its service to another place in the list.
    pub fn service_moved(&mut self, to: usize) {
        self.service = to;
    }

    /// The exchange ended: count it and write its access line.
    fn log_access(&mut self, ctx: &mut Ctx<'_>) {
        let tunnel = self.tunnel_note(ctx.now);
        self.close_tunnel(ctx.metrics);
        ctx.metrics
            .record_request(self.status, ctx.now.saturating_duration_since(self.started));
        ctx.metrics.record_service_request(ctx.service, self.status);
        if !ctx.access_log {
            return;
        }
        log::info!(
            "access {} {} \"{} {}\" {} req={} resp={} {:.1}ms{tunnel}",
            ctx.client,
            ctx.service,
            self.method,
            self.target,
            self.status,
            self.request_body.received,
            self.response_body.as_ref().map_or(0, |b| b.sent),
            ctx.now
                .saturating_duration_since(self.started)
                .as_secs_f64()
                * 1000.0
        );
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
