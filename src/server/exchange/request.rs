//! The request direction of an [`Exchange`]: the upstream connect completing, the HTTP/1.1
//! request head, and the request body (and trailers) moved from the HTTP/3 stream to the
//! upstream socket while the socket has room.

use quiche::h3::Header as H3Header;

use crate::bridge::pump::{h1_framing, H3ToH1Error, Message};

use crate::bridge::answers::{self, Answer};
use crate::bridge::headers;
use crate::h1::body::BodyEncoding;
use crate::h1::head::RequestHead;

use super::{Ctx, Exchange, ExchangeTimer, Failure};

impl Exchange {
    /// Finishes a pending connect and writes the request head.
    pub(super) fn connect_step(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Failure> {
        let Some(key) = self.upstream else {
            return Ok(false);
        };
        let Some(up) = ctx.pool.conn(key) else {
            return Ok(false);
        };
        if up.is_connecting() {
            match up.connect_result() {
                None => return Ok(false),
                // The next address of the upstream's name, if one is left to try.
                Some(Err(e)) => {
                    return match ctx.pool.connect_failed(key, &e) {
                        Ok(true) => {
                            // A fresh attempt on another address: its own connect timeout.
                            self.arm_connect_timer(ctx, key);
                            Ok(true)
                        }
                        Ok(false) => Err(Failure::Answer(answers::upstream_unreachable(&e))),
                        Err(e2) => Err(Failure::Answer(answers::upstream_unreachable(&e2))),
                    };
                }
                Some(Ok(())) => {
                    up.set_connected();
                    self.timers.clear(ExchangeTimer::Connect);
                    ctx.pool.connected(key);
                }
            }
        }
        let Some(up) = ctx.pool.conn(key) else {
            return Ok(false);
        };
        if !self.head_written {
            up.output().extend_from_slice(&self.head_bytes);
            self.head_written = true;
            self.upstream_progressed(ctx.now, ctx.upstream);
            return Ok(true);
        }
        Ok(false)
    }

    /// Request body: stream -> upstream socket, while the socket has room.
    pub(super) fn request_step(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Failure> {
        let Some(up) = self.upstream.and_then(|k| ctx.pool.conn(k)) else {
            return Ok(false);
        };
        if up.is_connecting() {
            return Ok(false);
        }
        let mut progress = false;
        if !self.request_done {
            progress |= self
                .request_body
                .step(&mut *ctx.stream, up)
                .map_err(|e| match e {
                    H3ToH1Error::TooLong => {
                        Failure::Malformed("request body longer than its content-length")
                    }
                    H3ToH1Error::Truncated => {
                        Failure::Malformed("request body shorter than its content-length")
                    }
                    H3ToH1Error::Stream(e) if e.cancelled => {
                        Failure::Reset("the peer cancelled the request")
                    }
                    H3ToH1Error::Stream(_) => Failure::Reset("HTTP/3 error on the request stream"),
                })?;
            self.request_done = self.request_body.is_done();
        }
        if up.flush() {
            self.upstream_progressed(ctx.now, ctx.upstream);
            progress = true;
        }
        Ok(progress)
    }
}

/// HTTP/3 request fields -> HTTP/1.1 head for the upstream, with body framing decided:
/// no body when the stream ended with the fields, Content-Length when given, else chunked.
pub(super) fn prepare_request(
    list: &[H3Header],
    more_frames: bool,
) -> Result<(RequestHead, BodyEncoding), Answer> {
    let mut head = headers::request_from_h3(list).map_err(|e| answers::bad_h3_request(e.0))?;
    let length =
        headers::content_length(&head.headers).map_err(|e| answers::bad_h3_request(e.0))?;
    let (encoding, added) =
        h1_framing(Message::Request, length, more_frames, true).map_err(answers::bad_h3_request)?;
    head.headers.extend(added);
    Ok((head, encoding))
}
