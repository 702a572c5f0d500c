//! The request direction of an [`Exchange`]: the upstream connect completing, the HTTP/1.1
//! request head, and the request body (and trailers) moved from the HTTP/3 stream to the
//! upstream socket while the socket has room (for a tunnel: its bytes, once it is open).

use quiche::h3::{Header as H3Header, NameValue};

use crate::bridge::pump::{h1_framing, H3ToH1Error, Message};

use crate::bridge::answers;
use crate::bridge::headers;
use crate::bridge::headers::connect::{self, RequestForm};
use crate::bridge::websocket;
use crate::h1::body::BodyEncoding;
use crate::h1::head::{RequestHead, Version};
use crate::quic::setup::EXTENDED_CONNECT;
use crate::resolve::HostPort;

use super::tunnel::{Tunnel, TunnelKind};
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
                    if self.open_connect_tunnel(ctx) {
                        return Ok(true);
                    }
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
        if !self.request_done && self.request_may_flow() {
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
                    H3ToH1Error::Corrupt(_) => {
                        Failure::Malformed("compressed request body does not decompress")
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
        progress |= self.half_close_tunnel(up);
        Ok(progress)
    }
}

/// A request stream's first field section, ready for the upstream.
pub(super) struct Prepared {
    pub head: RequestHead,
    /// How the stream's DATA is written to the upstream.
    pub encoding: BodyEncoding,
    /// A WebSocket extended CONNECT (the head is the upgrade request), or a plain CONNECT
    /// (the head only names it: nothing is written to the destination).
    pub tunnel: Option<Tunnel>,
}

impl Prepared {
    /// Whether the head is written to the upstream (all but a plain CONNECT's).
    pub fn goes_upstream(&self) -> bool {
        self.tunnel
            .as_ref()
            .is_none_or(|t| t.destination().is_none())
    }
}

/// HTTP/3 request fields -> what the upstream gets: an HTTP/1.1 request, the upgrade request
/// of a WebSocket extended CONNECT, or a plain CONNECT's destination. Malformed CONNECT forms
/// are [`Failure::Malformed`]; extended CONNECTs other than WebSocket are answered 501; other
/// invalid requests 400. Whether the destination is allowed is the service's decision.
pub(super) fn prepare_request(list: &[H3Header], more_frames: bool) -> Result<Prepared, Failure> {
    let form =
        connect::request_form(list, EXTENDED_CONNECT).map_err(|e| Failure::Malformed(e.0))?;
    match form {
        RequestForm::Plain => {
            let (head, encoding) = prepare_plain(list, more_frames)?;
            Ok(Prepared {
                head,
                encoding,
                tunnel: None,
            })
        }
        RequestForm::Extended(p) if p == websocket::PROTOCOL.as_bytes() => {
            let (head, key) = connect::websocket_upgrade_from_h3(list, websocket::new_key)
                .map_err(|e| Failure::Answer(answers::bad_h3_request(e.0)))?;
            Ok(Prepared {
                head,
                encoding: BodyEncoding::UntilClose,
                tunnel: Some(Tunnel::new(TunnelKind::WebSocket { generated_key: key })),
            })
        }
        RequestForm::Extended(p) => Err(Failure::Answer(answers::tunnel_not_carried(&format!(
            "extended CONNECT for {:?}",
            String::from_utf8_lossy(p)
        )))),
        RequestForm::Connect => prepare_connect(list),
    }
}

/// A plain CONNECT (`:authority` already checked as `host:port` by the form): its destination.
fn prepare_connect(list: &[H3Header]) -> Result<Prepared, Failure> {
    let authority = list
        .iter()
        .find(|h| h.name() == b":authority")
        .map(|h| String::from_utf8_lossy(h.value()).into_owned())
        .unwrap_or_default();
    let mut destination = HostPort::parse(&authority)
        .map_err(|e| Failure::Answer(answers::bad_h3_request(&format!("CONNECT: {e}"))))?;
    destination.host.make_ascii_lowercase();
    Ok(Prepared {
        head: RequestHead {
            method: "CONNECT".into(),
            target: authority,
            version: Version::Http11,
            headers: Vec::new(),
        },
        encoding: BodyEncoding::UntilClose,
        tunnel: Some(Tunnel::new(TunnelKind::Connect(destination))),
    })
}

/// HTTP/3 request fields -> HTTP/1.1 head for the upstream, with body framing decided:
/// no body when the stream ended with the fields, Content-Length when given, else chunked.
fn prepare_plain(
    list: &[H3Header],
    more_frames: bool,
) -> Result<(RequestHead, BodyEncoding), Failure> {
    let bad = |reason: &str| Failure::Answer(answers::bad_h3_request(reason));
    let mut head = headers::request_from_h3(list).map_err(|e| bad(e.0))?;
    let length = headers::content_length(&head.headers).map_err(|e| bad(e.0))?;
    let (encoding, added) = h1_framing(Message::Request, length, more_frames, true).map_err(bad)?;
    head.headers.extend(added);
    Ok((head, encoding))
}
