//! The response direction of an [`Exchange`]: the upstream's response head parsed and mapped
//! to HTTP/3 (interim 1xx responses relayed, at most [`MAX_INTERIM_RESPONSES`]), the body
//! decoded and moved into the stream while it takes it, the trailers, and the one retry of a
//! request whose reused connection closed before any response byte.

use std::sync::Arc;

use crate::bridge::headers::Field;

use crate::bridge::answers;
use crate::bridge::compression::{self, Compressor, Dictionary};
use crate::bridge::headers;
use crate::bridge::pump::{H1ToH3, H1ToH3Error, NoH1};
use crate::config::CompressionPolicy;
use crate::h1::body::{self, BodyError, BodyFraming};
use crate::h1::head::{self, Limits};

use super::upstream_head;
use super::{Ctx, Exchange, ExchangeTimer, Failure, Response};

/// Interim (1xx) responses relayed per request; one more is a 502, so an upstream cannot hold
/// a request open with endless 103s.
const MAX_INTERIM_RESPONSES: u32 = 16;

impl Exchange {
    /// Response: upstream socket -> stream.
    pub(super) fn response_step(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Failure> {
        let mut progress = false;
        if let Some(up) = self.upstream.and_then(|k| ctx.pool.conn(k)) {
            if !up.is_connecting() && up.fill() {
                // Bytes of a head (trickled, or interim responses) do not extend the wait for
                // the final head: only the request's progress does (see `request_step`).
                if !self.awaiting_final_head() {
                    self.upstream_progressed(ctx.now, ctx.upstream);
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
            if !ctx.stream.accepts(fields) {
                return Err(Failure::Answer(answers::upstream_invalid(
                    "response head larger than the peer proxy accepts",
                )));
            }
            // The first HEADERS frame opens the response; later ones (after 1xx) continue it.
            match ctx.stream.send_fields(fields, !self.head_frames_sent, *fin) {
                Ok(true) => {
                    self.head_frames_sent = true;
                    self.response = match (interim, fin) {
                        (true, _) => Response::AwaitHead,
                        (false, true) => Response::Done,
                        (false, false) => Response::Body,
                    };
                    progress = true;
                }
                Ok(false) => return Ok(progress),
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
        let policy = ctx.compression;
        let Some(up) = self.upstream.and_then(|k| ctx.pool.conn(k)) else {
            return Ok(false);
        };
        if up.is_connecting() {
            return Ok(false);
        }
        let limits = Limits {
            max_head_bytes: ctx.max_head_bytes,
            ..Limits::default()
        };
        let (resp, len) = match head::parse_response(up.input(), &limits) {
            Ok(Some(parsed)) => parsed,
            Ok(None) if up.input_ended() => {
                if self.may_retry(up.reused(), up.input().is_empty()) {
                    return self.retry(ctx);
                }
                return Err(Failure::Answer(answers::upstream_closed()));
            }
            Ok(None) => return Ok(false),
            Err(e) => return Err(Failure::Answer(answers::upstream_invalid(e.reason))),
        };
        if resp.status == 101 && self.tunnel.is_none() {
            return Err(Failure::Answer(answers::upstream_invalid(
                "101 Switching Protocols is not supported",
            )));
        }
        up.consume(len);
        if resp.status == 101 {
            return self.open_tunnel(ctx, &resp);
        }
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
        if self.tunnel.is_some() && (200..300).contains(&resp.status) {
            // A 2xx to an extended CONNECT means "tunnel open" (RFC 9220): an upstream that
            // answered the upgrade without switching protocols must not look like one.
            return Err(Failure::Answer(answers::upstream_invalid(
                "a 2xx other than 101 Switching Protocols to a WebSocket upgrade",
            )));
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
        let mut fields = headers::response_to_h3(&resp);
        let mut body = H1ToH3::new(framing, None);
        if let Some(compressor) =
            self.compressor_for(policy, ctx.dictionary.as_ref(), framing, &fields)
        {
            compression::add_mark(&mut fields, &compressor);
            body.compress(compressor);
        }
        // Body bytes that came with the head are checked before the head goes out, so broken
        // framing right at the start is still a clean 502.
        body.decode(up).map_err(|e| match e {
            H1ToH3Error::Body(e) => Failure::Answer(answers::upstream_invalid(body_error(e))),
            _ => Failure::Answer(answers::upstream_invalid("response body")),
        })?;
        self.response_body = Some(body);
        self.response = Response::HeadReady {
            fields,
            fin,
            interim: false,
        };
        self.tunnel_refused(ctx);
        Ok(true)
    }

    /// A compressor for a response body with these fields, if the session negotiated link
    /// compression and the policy takes it (never a tunnel's, never an empty body); with the
    /// session's agreed `dictionary` when there is one.
    fn compressor_for(
        &self,
        policy: Option<&CompressionPolicy>,
        dictionary: Option<&Arc<Dictionary>>,
        framing: BodyFraming,
        fields: &[Field],
    ) -> Option<Compressor> {
        let policy = policy?;
        let empty = matches!(framing, BodyFraming::None | BodyFraming::ContentLength(0));
        if self.tunnel.is_some() || empty || !policy.compresses(fields, dictionary.is_some()) {
            return None;
        }
        let length = match framing {
            BodyFraming::ContentLength(n) => Some(n),
            _ => None,
        };
        Compressor::with_dictionary(length, dictionary.cloned())
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
            && self.request_body.received == 0
            && !self.request_body.has_trailers()
            && crate::bridge::is_idempotent(&self.method)
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
            ctx.pool.close(key);
        }
        let key = ctx
            .pool
            .connect_new()
            .map_err(|e| Failure::Answer(answers::upstream_unreachable(&e)))?;
        self.upstream = Some(key);
        self.retried = true;
        self.head_written = false;
        self.request_body.restart();
        self.request_done = false;
        self.timers.clear(ExchangeTimer::Response);
        self.arm_connect_timer(ctx, key);
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
    /// Response body: upstream socket (or the synthesized answer) -> stream.
    fn pump_response_body(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Failure> {
        if let Some(up) = self.upstream.and_then(|k| ctx.pool.conn(k)) {
            self.check_tunnel_upstream(up)?;
        }
        let Some(body) = self.response_body.as_mut() else {
            return Ok(false);
        };
        let moved = match self.upstream.and_then(|k| ctx.pool.conn(k)) {
            Some(up) => body.step(up, &mut *ctx.stream),
            None => body.step(&mut NoH1::default(), &mut *ctx.stream),
        };
        let progress = moved.map_err(|e| match e {
            H1ToH3Error::Body(BodyError::Truncated) => {
                Failure::Reset("the upstream cut the response body short")
            }
            H1ToH3Error::Body(_) | H1ToH3Error::TooLarge(_) => {
                Failure::Reset("malformed response body from the upstream")
            }
            H1ToH3Error::Stream(_) => Failure::Reset("the stream to the peer failed"),
        })?;
        if body.is_done() {
            self.response = Response::Done;
        }
        Ok(progress)
    }
}

fn body_error(e: body::BodyError) -> &'static str {
    match e {
        body::BodyError::Malformed(reason) => reason,
        body::BodyError::Truncated => "response body cut short",
        body::BodyError::TooLong => "response body longer than declared",
    }
}
