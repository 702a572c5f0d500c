//! The response half of an [`Exchange`]: the peer's HTTP/3 response head mapped to an
//! HTTP/1.1 head (body framing chosen for the client's version), interim (1xx) responses
//! relayed (bounded), and the response body and trailers moved from the stream to the socket while the
//! socket has room.

use quiche::h3::{Event, Header as H3Header};

use crate::bridge::answers::{self, Answer};
use crate::bridge::compression;
use crate::bridge::headers;
use crate::bridge::pump::{h1_framing, H3ToH1, Message};
use crate::bridge::stream::{SessionPort, StreamOf};
use crate::h1::body::BodyEncoding;
use crate::h1::head::{Header, Version};
use crate::h1::write;
use crate::quic::h3_code;

use super::tunnel::Tunnel;
use super::{log_access, Ctx, Downstream, DownstreamConn, Exchange, Phase};

/// Interim (1xx) responses relayed to the client per request (the server relays at most 16
/// from the upstream too); later ones are dropped.
const MAX_INTERIM_RELAYED: u32 = 16;

/// Where the response stands: its head awaited, its body being written (encoded for the
/// client), or complete.
pub(super) enum Response {
    AwaitHead,
    Body(H3ToH1),
    Done,
}

impl<T: DownstreamConn> Downstream<T> {
    /// HTTP/3 delivered a field section on our stream.
    pub fn on_headers(&mut self, ctx: &mut Ctx<'_>, list: &[H3Header], more_frames: bool) {
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        let was_open = ex.tunnel_open();
        match ex.start_response(list, more_frames, &mut self.tcp) {
            Ok(())
                if ex.tunnel.is_some() && !was_open && matches!(ex.response, Response::Body(_)) =>
            {
                ex.open_tunnel(ctx.now, ctx.metrics);
            }
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

    /// An HTTP/3 event on this connection's request stream: the response's field sections,
    /// its data, its end, or a reset (REQUEST_REJECTED: the peer refused it unprocessed, so it
    /// may go out again on the next session).
    pub fn on_stream_event(&mut self, ctx: &mut Ctx<'_>, event: Event) {
        match event {
            Event::Headers { list, more_frames } => self.on_headers(ctx, &list, more_frames),
            Event::Data => self.drive(ctx),
            Event::Finished => self.on_finished(ctx),
            Event::Reset(code) if code == h3_code::REQUEST_REJECTED => self.on_session_lost(ctx),
            Event::Reset(code) => self.on_stream_failed(ctx, answers::peer_reset(code)),
            Event::GoAway | Event::PriorityUpdate => {}
        }
    }

    pub fn on_finished(&mut self, ctx: &mut Ctx<'_>) {
        if let Phase::Exchange(ex) = &mut self.phase {
            ex.fin_received = true;
            if let Response::Body(body) = &mut ex.response {
                body.on_finished();
            }
        }
        self.drive(ctx);
    }
}

impl Exchange {
    /// Passes an informational (1xx) response to an HTTP/1.1 client (RFC 9110 §15.2).
    /// HTTP/1.0 clients never get one; `100 Continue` is ours to send (see `request`).
    /// At most [`MAX_INTERIM_RELAYED`] per request, and only while the client reads: they are
    /// advisory, and a client that does not read must not make us hold endless 103s.
    fn relay_interim(&mut self, status: u16, fields: Vec<Header>, tcp: &mut impl DownstreamConn) {
        if self.version != Version::Http11 || status == 100 {
            return;
        }
        self.interim_seen += 1;
        let mut head = Vec::new();
        write::write_status_head(status, fields, &mut head);
        if self.interim_seen > MAX_INTERIM_RELAYED || head.len() > tcp.write_room() {
            log::debug!(
                "stream {:?}: interim {status} not relayed (the client is not reading, or too many)",
                self.stream
            );
            return;
        }
        tcp.queue(&head);
    }

    /// Turns the peer's response fields into an HTTP/1.1 head on the socket.
    fn start_response(
        &mut self,
        list: &[H3Header],
        more_frames: bool,
        tcp: &mut impl DownstreamConn,
    ) -> Result<(), Answer> {
        if let Response::Body(body) = &mut self.response {
            match headers::trailers_from_h3(list) {
                Ok(trailers) => body.set_trailers(trailers),
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
        if let Some(t) = &self.tunnel {
            if Tunnel::accepts(status) {
                let (status, fields) = t.accepted_head(status, fields)?;
                self.start_tunnel(status, fields, tcp);
                return Ok(());
            }
            // Refused: relayed as an ordinary response, the connection closes after it.
            self.tunnel = None;
            self.keep_alive = false;
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
        } else {
            let http11 = self.version == Version::Http11;
            let (encoding, added) = h1_framing(Message::Response, length, more_frames, http11)
                .map_err(answers::bad_peer_response)?;
            fields.extend(added);
            encoding
        };
        if encoding == BodyEncoding::UntilClose {
            self.keep_alive = false;
        }
        if !self.keep_alive {
            fields.push(field("connection", "close"));
        } else if self.version == Version::Http10 {
            fields.push(field("connection", "keep-alive"));
        }
        let mut body = H3ToH1::new(encoding);
        match compression::decompressor_for(list, self.dictionary.as_ref()) {
            Ok(Some(d)) => body.decompress(d),
            Ok(None) => {}
            Err(e) => return Err(answers::bad_peer_response(&e.0)),
        }
        write::write_status_head(status, fields, tcp.output());
        log::debug!("stream {:?}: response {status} ({encoding:?})", self.stream);
        self.status = status;
        self.resend = None;
        if self.fin_received {
            body.on_finished();
        }
        self.response = Response::Body(body);
        Ok(())
    }

    /// The peer accepted the tunnel: the caller gets `status` (101 for WebSocket, 200 for
    /// CONNECT) and the stream's bytes from now on, until the stream ends.
    fn start_tunnel(&mut self, status: u16, fields: Vec<Header>, tcp: &mut impl DownstreamConn) {
        write::write_status_head(status, fields, tcp.output());
        self.status = status;
        self.keep_alive = false;
        let mut body = H3ToH1::new(BodyEncoding::UntilClose);
        if self.fin_received {
            body.on_finished();
        }
        self.response = Response::Body(body);
    }

    /// Moves response body bytes from the stream to the socket while the socket has room.
    /// Returns whether anything moved. `Err` means the response cannot be completed.
    pub(super) fn pump_response(
        &mut self,
        tcp: &mut impl DownstreamConn,
        session: &mut dyn SessionPort,
    ) -> Result<bool, ()> {
        let Some(id) = self.stream else {
            return Ok(false);
        };
        let Response::Body(body) = &mut self.response else {
            return Ok(false);
        };
        let progress = body.step(&mut StreamOf { session, id }, tcp).map_err(|e| {
            log::debug!("stream {id}: response body failed: {e:?}");
        })?;
        self.resp_bytes = body.received;
        if body.is_done() {
            self.response = Response::Done;
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
