//! The response half of an [`Exchange`]: the peer's HTTP/3 response head mapped to an
//! HTTP/1.1 head (body framing chosen for the client's version), interim (1xx) responses
//! relayed, and the response body and trailers moved from the stream to the socket while the
//! socket has room.

use quiche::h3::{self, Header as H3Header};

use crate::bridge::answers::{self, Answer};
use crate::bridge::headers;
use crate::bridge::tcp::TcpConn;
use crate::h1::body::{BodyEncoder, BodyEncoding};
use crate::h1::head::{Header, Version};
use crate::h1::write;
use crate::quic::h3_code;
use crate::quic::session::Session;

use super::{log_access, Ctx, Downstream, Exchange, Phase};

/// Where the response stands: its head awaited, its body being written (encoded for the
/// client), or complete.
pub(super) enum Response {
    AwaitHead,
    Body(BodyEncoder),
    Done,
}

impl Downstream {
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
}

impl Exchange {
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
    pub(super) fn pump_response(
        &mut self,
        tcp: &mut TcpConn,
        session: &mut Session,
    ) -> Result<bool, ()> {
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
