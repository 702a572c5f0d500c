//! The two body pumps, one per direction, that both roles use for every message body:
//!
//! ```text
//! H1ToH3: HTTP/1.1 bytes --BodyDecoder--> payload --> DATA frames, trailers, FIN
//!         (client: the request body from service A; server: the response body from B)
//! H3ToH1: DATA frames --> payload --BodyEncoder--> HTTP/1.1 bytes, last chunk + trailers
//!         (client: the response body to service A; server: the request body to B)
//! ```
//!
//! A pump owns no socket and no session: it works on the HTTP/1.1 side's buffers
//! ([`H1Buffers`], a TCP connection in production) and on one HTTP/3 stream ([`StreamSink`] /
//! [`StreamSource`], quiche in production via [`crate::bridge::stream::H3Stream`]), so tests
//! and fuzzing drive it with plain buffers. Bytes move only while the receiving side has room (the stream's capacity,
//! the socket's [`crate::bridge::tcp::WRITE_CAP`]), which is how QUIC flow control and TCP push
//! back on the fast side; a body that ends early never ends cleanly (the pump fails instead).
//! With link compression ([`crate::bridge::compression`]) H1ToH3 compresses the payload before
//! the stream (flushing whenever the source pauses, ending the frame with the body) and H3ToH1
//! decompresses it before the framing, so the length checks apply to the plain bytes.

use quiche::h3::Header as H3Header;

use crate::bridge::compression::{CodecError, Compressor, Decompressor, MIN_ROOM};
use crate::bridge::headers;
use crate::bridge::stream::{StreamFailed, StreamSink, StreamSource};
use crate::h1::body::{BodyDecoder, BodyEncoder, BodyEncoding, BodyError, BodyFraming};
use crate::h1::head::Header;

/// Decoded payload held per step on its way to the stream.
pub const BODY_CHUNK: usize = 64 * 1024;

/// The HTTP/1.1 side's buffers, as the pumps see them.
pub trait H1Buffers {
    /// Received bytes not consumed yet.
    fn input(&self) -> &[u8];
    fn consume(&mut self, n: usize);
    /// No more input will come (EOF or a read error).
    fn input_ended(&self) -> bool;
    /// How many more output bytes may be queued now.
    fn write_room(&self) -> usize;
    fn output(&mut self) -> &mut Vec<u8>;
}

/// An HTTP/1.1 side with nothing to read and no room to write: for a body already in hand
/// (a synthesized answer).
#[derive(Default)]
pub struct NoH1 {
    /// Never written: the room is 0.
    nothing: Vec<u8>,
}

impl H1Buffers for NoH1 {
    fn input(&self) -> &[u8] {
        &[]
    }
    fn consume(&mut self, _n: usize) {}
    fn input_ended(&self) -> bool {
        true
    }
    fn write_room(&self) -> usize {
        0
    }
    fn output(&mut self) -> &mut Vec<u8> {
        &mut self.nothing
    }
}

/// Why an HTTP/1.1 body could not be carried to the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum H1ToH3Error {
    /// The body's framing is broken, or the input ended before its end ([`BodyError`]).
    Body(BodyError),
    /// The body is longer than the configured limit (bytes).
    TooLarge(u64),
    Stream(StreamFailed),
}

/// HTTP/1.1 body -> HTTP/3 DATA frames, then the trailers or a bare FIN.
#[derive(Debug)]
pub struct H1ToH3 {
    decoder: BodyDecoder,
    /// Payload (compressed when compressing) not taken by the stream yet.
    chunk: Vec<u8>,
    /// Compresses the payload on its way to the stream; dropped once its frame ended.
    compressor: Option<Compressor>,
    /// Decoded payload on its way to the compressor.
    plain: Vec<u8>,
    /// The body goes compressed (`sent` counts as it is compressed).
    compressing: bool,
    /// Trailers to send after the last payload byte.
    trailers: Option<Vec<H3Header>>,
    limit: Option<u64>,
    /// Payload bytes the stream took (when compressing: payload bytes compressed).
    pub sent: u64,
    done: bool,
    /// The last step stopped because the body needs more input.
    waits_for_input: bool,
    /// The error that stopped the pump: it stays stopped (nothing more goes out).
    failed: Option<H1ToH3Error>,
}

impl H1ToH3 {
    /// A body framed as `framing`, refused once longer than `limit` bytes.
    pub fn new(framing: BodyFraming, limit: Option<u64>) -> Self {
        H1ToH3 {
            decoder: BodyDecoder::new(framing),
            chunk: Vec::new(),
            compressor: None,
            plain: Vec::new(),
            compressing: false,
            trailers: None,
            limit,
            sent: 0,
            done: false,
            waits_for_input: false,
            failed: None,
        }
    }

    /// A body already in hand (a synthesized answer's text).
    pub fn in_hand(payload: Vec<u8>) -> Self {
        let mut pump = H1ToH3::new(BodyFraming::None, None);
        pump.chunk = payload;
        pump
    }

    /// Compresses the payload with `compressor` (before any payload moved).
    pub fn compress(&mut self, compressor: Compressor) {
        self.compressor = Some(compressor);
        self.compressing = true;
    }

    /// Everything (payload, trailers, FIN) was handed to the stream.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The last step stopped for lack of input that may still come: the body waits for the
    /// HTTP/1.1 peer, not for the stream.
    pub fn waits_for_input(&self) -> bool {
        self.waits_for_input && !self.done
    }

    /// Decodes the next piece of payload from the input, if none is pending. Returns whether
    /// input was consumed.
    pub fn decode(&mut self, h1: &mut (impl H1Buffers + ?Sized)) -> Result<bool, H1ToH3Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let decoded = self.decode_next(h1);
        if let Err(e) = &decoded {
            self.failed = Some(e.clone());
        }
        decoded
    }

    fn decode_next(&mut self, h1: &mut (impl H1Buffers + ?Sized)) -> Result<bool, H1ToH3Error> {
        if !self.chunk.is_empty() || self.decoder.is_done() {
            return Ok(false);
        }
        let into = match self.compressing {
            true => &mut self.plain,
            false => &mut self.chunk,
        };
        let used = self
            .decoder
            .decode(h1.input(), into, BODY_CHUNK)
            .map_err(H1ToH3Error::Body)?;
        h1.consume(used);
        if into.is_empty() && !self.decoder.is_done() && h1.input_ended() {
            self.decoder.at_eof().map_err(H1ToH3Error::Body)?;
        }
        if let Some(max) = self.limit {
            if self.sent + (into.len() as u64) > max {
                return Err(H1ToH3Error::TooLarge(max));
            }
        }
        self.compress_decoded()?;
        if self.decoder.is_done() && self.trailers.is_none() {
            let trailers = headers::trailers_to_h3(&self.decoder.take_trailers());
            self.trailers = (!trailers.is_empty()).then_some(trailers);
        }
        Ok(used > 0)
    }

    /// Compresses the payload just decoded, and ends the frame with the body.
    fn compress_decoded(&mut self) -> Result<(), H1ToH3Error> {
        let Some(c) = self.compressor.as_mut() else {
            return Ok(());
        };
        c.feed(&self.plain, &mut self.chunk)
            .map_err(compression_failed)?;
        self.sent += self.plain.len() as u64;
        self.plain.clear();
        if self.decoder.is_done() {
            c.finish(&mut self.chunk).map_err(compression_failed)?;
            self.compressor = None;
        }
        Ok(())
    }

    /// The source paused: what the compressor holds goes out now. Returns whether it emitted.
    fn flush_on_pause(&mut self) -> Result<bool, H1ToH3Error> {
        match self.compressor.as_mut().filter(|c| c.has_unflushed()) {
            Some(c) => {
                c.flush(&mut self.chunk).map_err(compression_failed)?;
                Ok(!self.chunk.is_empty())
            }
            None => Ok(false),
        }
    }

    /// Moves payload from the input to the stream while the stream takes it, then the
    /// trailers or the FIN. Returns whether anything moved.
    pub fn step(
        &mut self,
        h1: &mut (impl H1Buffers + ?Sized),
        stream: &mut (impl StreamSink + ?Sized),
    ) -> Result<bool, H1ToH3Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let stepped = self.step_inner(h1, stream);
        if let Err(e) = &stepped {
            self.failed = Some(e.clone());
        }
        stepped
    }

    fn step_inner(
        &mut self,
        h1: &mut (impl H1Buffers + ?Sized),
        stream: &mut (impl StreamSink + ?Sized),
    ) -> Result<bool, H1ToH3Error> {
        let mut progress = false;
        self.waits_for_input = false;
        while !self.done {
            progress |= self.decode(h1)?;
            if self.chunk.is_empty() && !self.decoder.is_done() {
                if self.flush_on_pause()? {
                    continue;
                }
                self.waits_for_input = !h1.input_ended();
                break;
            }
            if self.chunk.is_empty() {
                if let Some(trailers) = &self.trailers {
                    if !stream
                        .send_trailers(trailers)
                        .map_err(H1ToH3Error::Stream)?
                    {
                        break;
                    }
                    self.done = true;
                    return Ok(true);
                }
            }
            let fin = self.decoder.is_done() && self.trailers.is_none();
            let Some(n) = stream
                .send_body(&self.chunk, fin)
                .map_err(H1ToH3Error::Stream)?
            else {
                break;
            };
            self.chunk.drain(..n);
            if !self.compressing {
                self.sent += n as u64;
            }
            if self.chunk.is_empty() && fin {
                self.done = true;
                return Ok(true);
            }
            if n == 0 {
                break;
            }
            progress = true;
        }
        Ok(progress)
    }
}

/// The compressor failed (zstd out of memory): the body cannot go on.
fn compression_failed(e: CodecError) -> H1ToH3Error {
    H1ToH3Error::Stream(StreamFailed {
        cancelled: false,
        detail: format!("link compression failed: {}", e.0),
    })
}

/// Why an HTTP/3 body could not be carried to the HTTP/1.1 side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum H3ToH1Error {
    /// More payload than the declared Content-Length.
    TooLong,
    /// The stream ended before the declared Content-Length.
    Truncated,
    /// The body came compressed and does not decompress (corrupt or cut short).
    Corrupt(String),
    Stream(StreamFailed),
}

/// Which message an HTTP/3 body belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    Request,
    Response,
}

/// How a body arriving as HTTP/3 DATA is framed on HTTP/1.1, and the field that says so (if
/// one must be added): the one place both roles decide it. The declared length when there is
/// one; with none, an empty stream is no body for a request and `Content-Length: 0` for a
/// response (which would otherwise run until the close); otherwise chunked for an HTTP/1.1
/// peer and until-close for an HTTP/1.0 client. A request that declares a length but ends
/// with its fields is malformed (RFC 9114 §4.1.2). Bodies a response cannot have (HEAD, 204,
/// 304) are the caller's to rule out first.
pub fn h1_framing(
    message: Message,
    declared: Option<u64>,
    more_frames: bool,
    http11: bool,
) -> Result<(BodyEncoding, Option<Header>), &'static str> {
    let field = |name: &str, value: &str| {
        Some(Header {
            name: name.to_string(),
            value: value.as_bytes().to_vec(),
        })
    };
    match (message, declared, more_frames) {
        (Message::Request, Some(n), false) if n > 0 => Err("content-length without a body"),
        (Message::Request, _, false) => Ok((BodyEncoding::None, None)),
        (_, Some(n), _) => Ok((BodyEncoding::ContentLength(n), None)),
        (Message::Response, None, false) => {
            Ok((BodyEncoding::ContentLength(0), field("content-length", "0")))
        }
        (_, None, true) if http11 => {
            Ok((BodyEncoding::Chunked, field("transfer-encoding", "chunked")))
        }
        (_, None, true) => Ok((BodyEncoding::UntilClose, None)),
    }
}

/// HTTP/3 DATA frames -> HTTP/1.1 body bytes, then its end (last chunk and trailers).
#[derive(Debug)]
pub struct H3ToH1 {
    encoding: BodyEncoding,
    encoder: BodyEncoder,
    /// The stream's end was seen (all its data has been read before that).
    finished: bool,
    trailers: Vec<Header>,
    /// Payload bytes read from the stream (decompressed when it came compressed).
    pub received: u64,
    /// Decompresses the stream's payload (it came marked as compressed).
    decompressor: Option<Decompressor>,
    /// The error that stopped the pump: it stays stopped (no end is ever written).
    failed: Option<H3ToH1Error>,
}

impl H3ToH1 {
    pub fn new(encoding: BodyEncoding) -> Self {
        H3ToH1 {
            encoding,
            encoder: BodyEncoder::new(encoding),
            finished: false,
            trailers: Vec::new(),
            received: 0,
            decompressor: None,
            failed: None,
        }
    }

    /// The stream's payload is compressed, `d` decodes it (before any payload moved; see
    /// [`crate::bridge::compression::decompressor_for`]).
    pub fn decompress(&mut self, d: Decompressor) {
        self.decompressor = Some(d);
    }

    /// The same body, to be written again from its start (on a fresh connection): what the
    /// stream said (its end, its trailers) is kept.
    pub fn restart(&mut self) {
        self.encoder = BodyEncoder::new(self.encoding);
        self.received = 0;
    }

    /// The stream ended (after all its data).
    pub fn on_finished(&mut self) {
        self.finished = true;
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The trailer section that came on the stream (written with the last chunk).
    pub fn set_trailers(&mut self, trailers: Vec<Header>) {
        self.trailers = trailers;
    }

    pub fn has_trailers(&self) -> bool {
        !self.trailers.is_empty()
    }

    /// The body's end was written.
    pub fn is_done(&self) -> bool {
        self.encoder.is_finished()
    }

    /// Moves payload from the stream to the output while it has room, then the body's end
    /// once the stream has ended. Returns whether anything moved.
    pub fn step(
        &mut self,
        stream: &mut (impl StreamSource + ?Sized),
        h1: &mut (impl H1Buffers + ?Sized),
    ) -> Result<bool, H3ToH1Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let stepped = self.step_inner(stream, h1);
        if let Err(e) = &stepped {
            self.failed = Some(e.clone());
        }
        stepped
    }

    fn step_inner(
        &mut self,
        stream: &mut (impl StreamSource + ?Sized),
        h1: &mut (impl H1Buffers + ?Sized),
    ) -> Result<bool, H3ToH1Error> {
        if self.is_done() {
            return Ok(false);
        }
        let (mut progress, out_of_room) =
            super::buffer_pool::with_scratch(|buf| self.move_body(stream, h1, buf))?;
        if out_of_room {
            return Ok(progress);
        }
        if self.finished {
            if let Some(d) = &self.decompressor {
                d.finish().map_err(|e| H3ToH1Error::Corrupt(e.0))?;
            }
            self.encoder
                .finish(&self.trailers, h1.output())
                .map_err(|_| H3ToH1Error::Truncated)?;
            progress = true;
        }
        Ok(progress)
    }

    /// Moves the body bytes the stream has (as many as the output has room for) through
    /// `buf` into the HTTP/1 framing: (progress, stopped for want of output room).
    fn move_body(
        &mut self,
        stream: &mut (impl StreamSource + ?Sized),
        h1: &mut (impl H1Buffers + ?Sized),
        buf: &mut [u8],
    ) -> Result<(bool, bool), H3ToH1Error> {
        let mut progress = false;
        loop {
            let room = h1.write_room().min(buf.len());
            if room < self.decompressor.as_ref().map_or(1, |_| MIN_ROOM) {
                return Ok((progress, true));
            }
            let n = self.read_payload(stream, &mut buf[..room])?;
            if n == 0 {
                break;
            }
            self.encoder
                .encode(&buf[..n], h1.output())
                .map_err(|_| H3ToH1Error::TooLong)?;
            self.received += n as u64;
            progress = true;
        }
        Ok((progress, false))
    }

    /// Reads payload from the stream into `out`, decompressing it if it came compressed.
    fn read_payload(
        &mut self,
        stream: &mut (impl StreamSource + ?Sized),
        out: &mut [u8],
    ) -> Result<usize, H3ToH1Error> {
        match self.decompressor.as_mut() {
            Some(d) => d.read(
                out,
                |into: &mut [u8]| stream.recv_body(into).map_err(H3ToH1Error::Stream),
                |e| H3ToH1Error::Corrupt(e.0),
            ),
            None => stream.recv_body(out).map_err(H3ToH1Error::Stream),
        }
    }
}

#[cfg(test)]
mod tests;
