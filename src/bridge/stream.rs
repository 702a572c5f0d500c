//! One HTTP/3 request stream as the exchange logic sees it: a port with the few operations an
//! exchange performs on its stream (field sections, body bytes, stopping and resetting), and
//! its production adapter over quiche ([`H3Stream`]). Tests and fuzzing implement the same
//! traits in memory, so the exchange logic runs without a session.

use quiche::h3::{self, Header as H3Header};

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

/// One quiche HTTP/3 stream.
pub struct H3Stream<'a> {
    pub h3: &'a mut h3::Connection,
    pub conn: &'a mut quiche::Connection,
    pub id: u64,
}

fn failed(e: h3::Error) -> StreamFailed {
    StreamFailed {
        cancelled: matches!(e, h3::Error::TransportError(_)),
        detail: e.to_string(),
    }
}

impl StreamSink for H3Stream<'_> {
    fn send_body(&mut self, data: &[u8], fin: bool) -> Result<Option<usize>, StreamFailed> {
        match self.h3.send_body(self.conn, self.id, data, fin) {
            Ok(n) => Ok(Some(n)),
            Err(h3::Error::Done) | Err(h3::Error::StreamBlocked) => Ok(None),
            Err(e) => Err(failed(e)),
        }
    }

    fn send_trailers(&mut self, fields: &[H3Header]) -> Result<bool, StreamFailed> {
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
        fields: &[H3Header],
        first: bool,
        fin: bool,
    ) -> Result<bool, StreamFailed>;
    /// Whether the peer accepts a field section this large (its SETTINGS).
    fn accepts(&self, fields: &[H3Header]) -> bool;
    /// Asks the peer to stop sending (STOP_SENDING with `code`).
    fn stop_sending(&mut self, code: u64);
    /// Abandons our side of the stream (RESET_STREAM with `code`).
    fn reset(&mut self, code: u64);
}

impl ExchangeStream for H3Stream<'_> {
    fn send_fields(
        &mut self,
        fields: &[H3Header],
        first: bool,
        fin: bool,
    ) -> Result<bool, StreamFailed> {
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

    fn accepts(&self, fields: &[H3Header]) -> bool {
        crate::bridge::headers::peer_accepts(self.h3, fields)
    }

    fn stop_sending(&mut self, code: u64) {
        let _ = self
            .conn
            .stream_shutdown(self.id, quiche::Shutdown::Read, code);
    }

    fn reset(&mut self, code: u64) {
        let _ = self
            .conn
            .stream_shutdown(self.id, quiche::Shutdown::Write, code);
    }
}
