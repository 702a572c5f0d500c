//! One HTTP/3 request stream as the exchange logic sees it: a port with the few operations an
//! exchange performs on its stream (field sections, body bytes, stopping and resetting), and
//! its production adapter over quiche ([`H3Stream`]); and the session as the client's
//! exchanges use it ([`SessionPort`]: open a request stream, then act on it by ID), which
//! [`crate::quic::session::Session`] implements. Tests and fuzzing implement the same traits
//! in memory, so the exchange logic runs without a session.

use std::sync::Arc;

use quiche::h3::{self, Header as H3Header};

use crate::bridge::compression::Dictionary;
use crate::bridge::headers::forwarding::ServerEnd;
use crate::bridge::headers::Field;
use crate::quic::ack_hold::AckHold;
use crate::quic::session::Session;

/// The HTTP/3 stream failed under a pump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFailed {
    /// The peer cancelled the stream (a transport-level reset), rather than an HTTP/3 error.
    pub cancelled: bool,
    pub detail: String,
}

/// Sending on one HTTP/3 stream.
pub trait StreamSink {
    /// Sends body bytes (`fin` ends the stream if all of them are taken); returns how many
    /// the stream took, `None` when it is blocked (flow control, congestion) and took nothing,
    /// not even a FIN.
    fn send_body(&mut self, data: &[u8], fin: bool) -> Result<Option<usize>, StreamFailed>;
    /// Sends the trailer section, ending the stream; `false` when the stream is blocked.
    fn send_trailers(&mut self, fields: &[H3Header]) -> Result<bool, StreamFailed>;
}

/// Receiving on one HTTP/3 stream.
pub trait StreamSource {
    /// Reads body bytes into `buf`; 0 when none are available now.
    fn recv_body(&mut self, buf: &mut [u8]) -> Result<usize, StreamFailed>;
}

/// One quiche HTTP/3 stream of a session. Whatever it gives quiche to send is reported to the
/// session's ACK hold, so a send that carries more than an ACK never waits.
pub struct H3Stream<'a> {
    h3: &'a mut h3::Connection,
    conn: &'a mut quiche::Connection,
    ack: &'a mut AckHold,
    id: u64,
}

impl<'a> H3Stream<'a> {
    /// Stream `id` of `session` (`None` before its HTTP/3 layer exists).
    pub fn of(session: &'a mut Session, id: u64) -> Option<Self> {
        Some(H3Stream {
            h3: session.h3.as_mut()?,
            conn: &mut session.conn,
            ack: &mut session.ack,
            id,
        })
    }
}

fn failed(e: h3::Error) -> StreamFailed {
    StreamFailed {
        cancelled: matches!(e, h3::Error::TransportError(_)),
        detail: e.to_string(),
    }
}

impl StreamSink for H3Stream<'_> {
    fn send_body(&mut self, data: &[u8], fin: bool) -> Result<Option<usize>, StreamFailed> {
        self.ack.on_output();
        match self.h3.send_body(self.conn, self.id, data, fin) {
            Ok(n) => Ok(Some(n)),
            Err(h3::Error::Done) | Err(h3::Error::StreamBlocked) => Ok(None),
            Err(e) => Err(failed(e)),
        }
    }

    fn send_trailers(&mut self, fields: &[H3Header]) -> Result<bool, StreamFailed> {
        self.ack.on_output();
        match self
            .h3
            .send_additional_headers(self.conn, self.id, fields, true, true)
        {
            Ok(()) => Ok(true),
            Err(h3::Error::Done) | Err(h3::Error::StreamBlocked) => Ok(false),
            Err(e) => Err(failed(e)),
        }
    }
}

impl StreamSource for H3Stream<'_> {
    fn recv_body(&mut self, buf: &mut [u8]) -> Result<usize, StreamFailed> {
        match self.h3.recv_body(self.conn, self.id, buf) {
            Ok(n) => Ok(n),
            Err(h3::Error::Done) => Ok(0),
            Err(e) => Err(failed(e)),
        }
    }
}

/// Everything an exchange does on its request stream.
pub trait ExchangeStream: StreamSink + StreamSource {
    /// Sends a field section: the first one opens the message (HEADERS), later ones continue
    /// it (after interim responses); `fin` ends the stream. `false` when the stream is
    /// blocked and nothing was sent.
    fn send_fields(
        &mut self,
        fields: &[Field],
        first: bool,
        fin: bool,
    ) -> Result<bool, StreamFailed>;
    /// Whether the peer accepts a field section this large (its SETTINGS).
    fn accepts(&self, fields: &[Field]) -> bool;
    /// Asks the peer to stop sending (STOP_SENDING with `code`).
    fn stop_sending(&mut self, code: u64);
    /// Abandons our side of the stream (RESET_STREAM with `code`).
    fn reset(&mut self, code: u64);
}

impl ExchangeStream for H3Stream<'_> {
    fn send_fields(
        &mut self,
        fields: &[Field],
        first: bool,
        fin: bool,
    ) -> Result<bool, StreamFailed> {
        self.ack.on_output();
        let sent = if first {
            self.h3.send_response(self.conn, self.id, fields, fin)
        } else {
            self.h3
                .send_additional_headers(self.conn, self.id, fields, false, fin)
        };
        match sent {
            Ok(()) => Ok(true),
            Err(h3::Error::StreamBlocked) | Err(h3::Error::Done) => Ok(false),
            Err(e) => Err(failed(e)),
        }
    }

    fn accepts(&self, fields: &[Field]) -> bool {
        crate::bridge::headers::peer_accepts(self.h3, fields)
    }

    fn stop_sending(&mut self, code: u64) {
        self.ack.on_output();
        let _ = self
            .conn
            .stream_shutdown(self.id, quiche::Shutdown::Read, code);
    }

    fn reset(&mut self, code: u64) {
        self.ack.on_output();
        let _ = self
            .conn
            .stream_shutdown(self.id, quiche::Shutdown::Write, code);
    }
}

/// Why a request stream could not be opened now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenRefused {
    /// No connection credit for the field section: retry when acknowledgements free some.
    Credit,
    /// The peer's stream limit is reached: retry when a stream ends.
    Streams,
    /// The session cannot take it at all.
    Failed(String),
}

/// The session as the client's exchanges use it: open a request stream, then work on a
/// stream by its ID (through [`StreamOf`]).
pub trait SessionPort {
    /// Whether the peer accepts a field section this large (its SETTINGS).
    fn accepts(&self, fields: &[Field]) -> bool;
    /// Whether the peer enabled extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL, RFC 9220);
    /// `None` until its SETTINGS arrived (they follow the handshake by up to a round trip).
    fn extended_connect(&self) -> Option<bool>;
    /// Whether both ends announced link compression of bodies (off unless a port says so).
    fn link_compression(&self) -> bool {
        false
    }
    /// The shared dictionary both ends announced, when compressed bodies may use it.
    fn link_dictionary(&self) -> Option<Arc<Dictionary>> {
        None
    }
    /// Whether the server end writes the forwarding fields' constant parts (a port that
    /// knows no peer: an older one, fields go as built).
    fn forwarding_server(&self) -> ServerEnd {
        ServerEnd::Older
    }
    /// Opens a request stream with these fields (`fin`: no body follows).
    fn open_request(&mut self, fields: &[Field], fin: bool) -> Result<u64, OpenRefused>;
    fn send_body(&mut self, id: u64, data: &[u8], fin: bool)
        -> Result<Option<usize>, StreamFailed>;
    fn send_trailers(&mut self, id: u64, fields: &[H3Header]) -> Result<bool, StreamFailed>;
    fn recv_body(&mut self, id: u64, buf: &mut [u8]) -> Result<usize, StreamFailed>;
    fn stop_sending(&mut self, id: u64, code: u64);
    fn reset(&mut self, id: u64, code: u64);
}

/// Stream `id` of a session, for the body pumps.
pub struct StreamOf<'a, S: SessionPort + ?Sized> {
    pub session: &'a mut S,
    pub id: u64,
}

impl<S: SessionPort + ?Sized> StreamSink for StreamOf<'_, S> {
    fn send_body(&mut self, data: &[u8], fin: bool) -> Result<Option<usize>, StreamFailed> {
        self.session.send_body(self.id, data, fin)
    }
    fn send_trailers(&mut self, fields: &[H3Header]) -> Result<bool, StreamFailed> {
        self.session.send_trailers(self.id, fields)
    }
}

impl<S: SessionPort + ?Sized> StreamSource for StreamOf<'_, S> {
    fn recv_body(&mut self, buf: &mut [u8]) -> Result<usize, StreamFailed> {
        self.session.recv_body(self.id, buf)
    }
}

impl SessionPort for Session {
    fn link_compression(&self) -> bool {
        crate::quic::session::Session::link_compression(self)
    }
    fn link_dictionary(&self) -> Option<Arc<Dictionary>> {
        crate::quic::session::Session::link_dictionary(self)
    }
    fn forwarding_server(&self) -> ServerEnd {
        crate::quic::session::Session::forwarding_server(self)
    }
    fn accepts(&self, fields: &[Field]) -> bool {
        self.h3
            .as_ref()
            .is_some_and(|h3| crate::bridge::headers::peer_accepts(h3, fields))
    }

    fn extended_connect(&self) -> Option<bool> {
        let h3 = self.h3.as_ref()?;
        h3.peer_settings_raw()
            .map(|_| h3.extended_connect_enabled_by_peer())
    }

    fn open_request(&mut self, fields: &[Field], fin: bool) -> Result<u64, OpenRefused> {
        self.ack.on_output();
        let Some(h3) = self.h3.as_mut() else {
            return Err(OpenRefused::Failed("no HTTP/3 layer yet".into()));
        };
        match h3.send_request(&mut self.conn, fields, fin) {
            Ok(id) => Ok(id),
            Err(h3::Error::StreamBlocked) => Err(OpenRefused::Credit),
            Err(h3::Error::TransportError(quiche::Error::StreamLimit)) => Err(OpenRefused::Streams),
            Err(e) => Err(OpenRefused::Failed(e.to_string())),
        }
    }

    fn send_body(
        &mut self,
        id: u64,
        data: &[u8],
        fin: bool,
    ) -> Result<Option<usize>, StreamFailed> {
        match H3Stream::of(self, id) {
            Some(mut s) => s.send_body(data, fin),
            None => Ok(None),
        }
    }

    fn send_trailers(&mut self, id: u64, fields: &[H3Header]) -> Result<bool, StreamFailed> {
        match H3Stream::of(self, id) {
            Some(mut s) => s.send_trailers(fields),
            None => Ok(false),
        }
    }

    fn recv_body(&mut self, id: u64, buf: &mut [u8]) -> Result<usize, StreamFailed> {
        match H3Stream::of(self, id) {
            Some(mut s) => s.recv_body(buf),
            None => Ok(0),
        }
    }

    fn stop_sending(&mut self, id: u64, code: u64) {
        self.ack.on_output();
        let _ = self.conn.stream_shutdown(id, quiche::Shutdown::Read, code);
    }

    fn reset(&mut self, id: u64, code: u64) {
        self.ack.on_output();
        let _ = self.conn.stream_shutdown(id, quiche::Shutdown::Write, code);
    }
}
