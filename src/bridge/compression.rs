//! Link compression of message bodies between the two ptproxy ends (zstd, issue #15 item 1).
//!
//! ```text
//! negotiation: each end with `http.compression.enabled` announces SETTING_LINK_ZSTD in its
//!              HTTP/3 SETTINGS; a stream is compressed only when both ends announced it
//! sender:      plain payload --Compressor (one zstd frame per body)--> DATA frames,
//!              with COMPRESSED_FIELD added to the message's fields
//! receiver:    DATA frames --Decompressor--> plain payload; the field is removed, and
//!              Content-Length (kept as the original) is checked against the plain bytes
//! ```
//!
//! Which bodies are compressed is [`Policy::compresses`]: the one place that decision is taken.
//! Memory is bounded per stream: a compression context at [`LEVEL`] with a window of
//! 2^[`WINDOW_LOG`] bytes (smaller when the body's length is known and shorter) takes about
//! [`COMPRESSOR_BYTES`]; a decompression context accepts windows up to 2^[`MAX_WINDOW_LOG`]
//! (8 MiB) and takes the peer's window plus about 256 KiB (1.2 MiB for a ptproxy peer). At
//! most [`MAX_COMPRESSING`] bodies are compressed at once per process; beyond that a body goes
//! plain (the receiver handles either). Counters of what crossed compressed are per thread
//! (the reactor is single-threaded) and read by the metrics ([`counters`]).
//!
//! An optional shared dictionary ([`dictionary`]) makes small bodies pay: a message compressed
//! with it is marked [`COMPRESSED_DICTIONARY_VALUE`] instead of [`COMPRESSED_VALUE`], so the
//! receiver knows which decoder it needs ([`decompressor_for`]).

pub mod dictionary;
mod policy;

use std::cell::Cell;
use std::sync::Arc;

use quiche::h3::NameValue;

use crate::bridge::headers::Field;
pub use dictionary::Dictionary;
pub use policy::Policy;
use zstd::zstd_safe::{self, CCtx, CParameter, DCtx, DParameter, InBuffer, OutBuffer};

/// The field that says the DATA of this message is one zstd frame. Only ptproxy writes it
/// (callers' copies are removed) and only ptproxy reads it (removed before the far side).
pub const COMPRESSED_FIELD: &str = "ptproxy-link-encoding";
/// Its value for one zstd frame made without a dictionary.
pub const COMPRESSED_VALUE: &[u8] = b"zstd";
/// Its value for one zstd frame made with the session's shared dictionary.
pub const COMPRESSED_DICTIONARY_VALUE: &[u8] = b"zstd-d";

/// The private HTTP/3 setting (RFC 9114 §7.2.4: unknown settings are ignored, so an older
/// peer just never compresses) by which an end announces it takes zstd-compressed bodies.
pub const SETTING_LINK_ZSTD: u64 = 0x7074_7a73;
/// Its value: version 1 of the scheme (one zstd frame per body, no dictionary).
pub const SETTING_LINK_ZSTD_V1: u64 = 1;

/// zstd level: level 3 (the library default) compresses text and JSON 4-10x at several
/// hundred MB/s per core, well above what a billed link carries.
pub const LEVEL: i32 = 3;
/// Window of the compressor: 1 MiB.
pub const WINDOW_LOG: u32 = 20;
/// Largest window the decompressor accepts from the peer: 8 MiB.
pub const MAX_WINDOW_LOG: u32 = 23;
/// Approximate memory of one compression context at [`LEVEL`] and [`WINDOW_LOG`] (window,
/// hash and chain tables, block buffers), as measured by the unit test below.
pub const COMPRESSOR_BYTES: usize = 2 * 1024 * 1024 + 512 * 1024;
/// Bodies compressed at once per process (about 160 MiB of contexts at most).
pub const MAX_COMPRESSING: usize = 64;
/// Output room [`Decompressor::read`] needs (one byte may be held back).
pub const MIN_ROOM: usize = 2;
/// Compressed bytes read from the stream per step.
const INPUT_CHUNK: usize = 16 * 1024;

/// Whether `settings` (the peer's raw HTTP/3 SETTINGS) announce link compression.
pub fn peer_announces(settings: Option<&[(u64, u64)]>) -> bool {
    settings.is_some_and(|s| s.contains(&(SETTING_LINK_ZSTD, SETTING_LINK_ZSTD_V1)))
}

/// The settings this end adds to its SETTINGS when compression is enabled.
pub fn announcement() -> Vec<(u64, u64)> {
    vec![(SETTING_LINK_ZSTD, SETTING_LINK_ZSTD_V1)]
}

/// The mark of a received field section, if any.
fn mark<T: NameValue>(fields: &[T]) -> Option<&[u8]> {
    fields
        .iter()
        .find(|f| f.name() == COMPRESSED_FIELD.as_bytes())
        .map(|f| f.value())
}

/// Whether a received field section marks its body as compressed (with or without dictionary).
pub fn is_marked<T: NameValue>(fields: &[T]) -> bool {
    mark(fields).is_some()
}

/// The decoder a received field section asks for: `None` when its body is plain; an error when
/// it needs a dictionary this session did not agree on (`dictionary`: the session's agreed one),
/// names an encoding this end does not know, or zstd has no memory. The stream is then reset:
/// its body is never guessed at.
pub fn decompressor_for<T: NameValue>(
    fields: &[T],
    dictionary: Option<&Arc<Dictionary>>,
) -> Result<Option<Decompressor>, CodecError> {
    match (mark(fields), dictionary) {
        (None, _) => Ok(None),
        (Some(COMPRESSED_VALUE), _) => Decompressor::new().map(Some),
        (Some(COMPRESSED_DICTIONARY_VALUE), Some(d)) => {
            Decompressor::with_dictionary(Arc::clone(d)).map(Some)
        }
        (Some(COMPRESSED_DICTIONARY_VALUE), None) => Err(CodecError(
            "the body needs a dictionary this session does not share".into(),
        )),
        (Some(other), _) => Err(CodecError(format!(
            "unknown link encoding {:?}",
            String::from_utf8_lossy(other)
        ))),
    }
}

/// The Content-Length of a field section, if one valid value is declared.
pub fn declared_length<T: NameValue>(fields: &[T]) -> Option<u64> {
    let mut values = fields.iter().filter(|f| f.name() == b"content-length");
    let first = std::str::from_utf8(values.next()?.value()).ok()?;
    if values.next().is_some() {
        return None;
    }
    first.trim().parse().ok()
}

/// Adds to `fields`, last, the mark of a body `compressor` compresses (a sender that keeps
/// the fields for another send pops it after).
pub fn add_mark(fields: &mut Vec<Field>, compressor: &Compressor) {
    let value = match compressor.uses_dictionary() {
        true => COMPRESSED_DICTIONARY_VALUE,
        false => COMPRESSED_VALUE,
    };
    fields.push(Field::fixed(COMPRESSED_FIELD.as_bytes(), value));
}

/// Bytes of compressed bodies, this thread (the reactor's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Plain bytes of bodies this end compressed, and what they became on the link.
    pub sent_plain: u64,
    pub sent_compressed: u64,
    /// Compressed bytes this end received, and the plain bytes they gave.
    pub received_compressed: u64,
    pub received_plain: u64,
}

thread_local! {
    static COUNTERS: Cell<Counters> = Cell::new(Counters::default());
    static COMPRESSING: Cell<usize> = const { Cell::new(0) };
}

/// The counters so far (for the metrics).
pub fn counters() -> Counters {
    COUNTERS.with(Cell::get)
}

fn count(update: impl FnOnce(&mut Counters)) {
    COUNTERS.with(|c| {
        let mut v = c.get();
        update(&mut v);
        c.set(v);
    });
}

/// The compressed stream cannot be decoded: corrupt, truncated, or a window too large.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

fn codec_error(code: usize) -> CodecError {
    CodecError(zstd_safe::get_error_name(code).to_string())
}

/// One body's compression: one zstd frame, ended by [`Compressor::finish`].
pub struct Compressor {
    cctx: CCtx<'static>,
    /// The dictionary `cctx` references (declared after it: dropped after it).
    dictionary: Option<Arc<Dictionary>>,
    /// Input went in since the last flush.
    unflushed: bool,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("unflushed", &self.unflushed)
            .field("dictionary", &self.dictionary)
            .finish()
    }
}

impl Compressor {
    /// A context for a body of `length` bytes (when known); `None` when [`MAX_COMPRESSING`]
    /// bodies are compressed already (this one goes plain) or zstd refuses the parameters.
    pub fn new(length: Option<u64>) -> Option<Self> {
        Self::with_dictionary(length, None)
    }

    /// The same, compressing with `dictionary` (the session's agreed one) when given.
    pub fn with_dictionary(
        length: Option<u64>,
        dictionary: Option<Arc<Dictionary>>,
    ) -> Option<Self> {
        if COMPRESSING.with(Cell::get) >= MAX_COMPRESSING {
            return None;
        }
        let mut cctx = CCtx::try_create()?;
        cctx.set_parameter(CParameter::CompressionLevel(LEVEL))
            .ok()?;
        cctx.set_parameter(CParameter::WindowLog(WINDOW_LOG)).ok()?;
        // A content checksum ends the frame: corruption the format itself would not notice
        // still fails the body at its end (it never ends cleanly).
        cctx.set_parameter(CParameter::ChecksumFlag(true)).ok()?;
        if let Some(d) = &dictionary {
            // The prepared dictionary, referenced (not copied). zstd's 4-byte dictionary ID
            // is left out of the frame: the mark and the negotiated SHA-256 id already say
            // which dictionary it is, and small bodies are where the bytes count.
            cctx.ref_cdict(d.cdict()).ok()?;
            cctx.set_parameter(CParameter::DictIdFlag(false)).ok()?;
        }
        cctx.set_pledged_src_size(length).ok()?;
        COMPRESSING.with(|c| c.set(c.get() + 1));
        Some(Compressor {
            cctx,
            dictionary,
            unflushed: false,
        })
    }

    /// Whether it compresses with the shared dictionary.
    pub fn uses_dictionary(&self) -> bool {
        self.dictionary.is_some()
    }

    /// Compresses `plain`, appending what zstd emits now to `out`.
    pub fn feed(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        let mut input = InBuffer::around(plain);
        while input.pos() < plain.len() {
            self.run(
                out,
                &mut input,
                zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_continue,
            )?;
        }
        self.unflushed |= !plain.is_empty();
        count(|c| c.sent_plain += plain.len() as u64);
        Ok(())
    }

    /// Whether input went in that [`Compressor::flush`] would emit.
    pub fn has_unflushed(&self) -> bool {
        self.unflushed
    }

    /// Emits everything fed so far (the source paused: an interactive body is not held back).
    pub fn flush(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.drain(out, zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_flush)
    }

    /// Ends the frame.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.drain(out, zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_end)
    }

    fn drain(
        &mut self,
        out: &mut Vec<u8>,
        op: zstd_safe::zstd_sys::ZSTD_EndDirective,
    ) -> Result<(), CodecError> {
        let mut input = InBuffer::around(&[]);
        // Each call emits up to the room given; zstd says 0 once everything is out.
        for _ in 0..1024 {
            if self.run(out, &mut input, op)? == 0 {
                self.unflushed = false;
                return Ok(());
            }
        }
        Err(CodecError("zstd did not finish flushing".into()))
    }

    /// One zstd call with at least a block's room at the end of `out`.
    fn run(
        &mut self,
        out: &mut Vec<u8>,
        input: &mut InBuffer<'_>,
        op: zstd_safe::zstd_sys::ZSTD_EndDirective,
    ) -> Result<usize, CodecError> {
        let before = out.len();
        out.reserve(CCtx::out_size());
        let mut output = OutBuffer::around_pos(out, before);
        let left = self
            .cctx
            .compress_stream2(&mut output, input, op)
            .map_err(codec_error)?;
        let emitted = out.len() - before;
        count(|c| c.sent_compressed += emitted as u64);
        Ok(left)
    }
}

impl Drop for Compressor {
    fn drop(&mut self) {
        COMPRESSING.with(|c| c.set(c.get().saturating_sub(1)));
    }
}

/// One body's decompression, pulling compressed bytes from the stream only as plain output
/// has room (a small frame may expand a lot: the output room bounds each step).
pub struct Decompressor {
    dctx: DCtx<'static>,
    /// The dictionary `dctx` references (declared after it: dropped after it).
    _dictionary: Option<Arc<Dictionary>>,
    /// Compressed bytes read from the stream, not decoded yet (from `pos`).
    pending: Vec<u8>,
    pos: usize,
    /// The last call ended a frame (and emitted all of it, its checksum checked).
    frame_done: bool,
    /// The last plain byte decoded, held back until the frame's checksum is checked: a body
    /// framed by Content-Length is never complete at the far side before that.
    held: Option<u8>,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor")
            .field("pending", &(self.pending.len() - self.pos))
            .field("frame_done", &self.frame_done)
            .finish()
    }
}

impl Decompressor {
    pub fn new() -> Result<Self, CodecError> {
        Self::make(None)
    }

    /// A decompressor of frames made with `dictionary`.
    pub fn with_dictionary(dictionary: Arc<Dictionary>) -> Result<Self, CodecError> {
        Self::make(Some(dictionary))
    }

    fn make(dictionary: Option<Arc<Dictionary>>) -> Result<Self, CodecError> {
        let mut dctx = DCtx::try_create().ok_or_else(|| CodecError("no memory".into()))?;
        dctx.set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG))
            .map_err(codec_error)?;
        if let Some(d) = &dictionary {
            dctx.ref_ddict(d.ddict()).map_err(codec_error)?;
        }
        Ok(Decompressor {
            dctx,
            _dictionary: dictionary,
            pending: Vec::new(),
            pos: 0,
            frame_done: false,
            held: None,
        })
    }

    /// Decodes into `out` as much as it holds, reading compressed bytes with `recv` when the
    /// ones in hand are used up. Returns the plain bytes written (0: nothing available now,
    /// or `out` shorter than [`MIN_ROOM`]). The last byte before the frame's end is held back
    /// until its checksum is checked.
    pub fn read<E>(
        &mut self,
        out: &mut [u8],
        recv: impl FnMut(&mut [u8]) -> Result<usize, E>,
        corrupt: impl Fn(CodecError) -> E,
    ) -> Result<usize, E> {
        if out.len() < MIN_ROOM {
            return Ok(0);
        }
        let start = match self.held.take() {
            Some(byte) => {
                out[0] = byte;
                1
            }
            None => 0,
        };
        let mut total = start + self.read_plain(&mut out[start..], recv, corrupt)?;
        if total > 0 && !self.frame_done {
            total -= 1;
            self.held = Some(out[total]);
        }
        Ok(total)
    }

    fn read_plain<E>(
        &mut self,
        out: &mut [u8],
        mut recv: impl FnMut(&mut [u8]) -> Result<usize, E>,
        corrupt: impl Fn(CodecError) -> E,
    ) -> Result<usize, E> {
        // Each turn decodes input in hand or reads more: it ends when plain bytes come out or
        // the stream has nothing more now. zstd progresses whenever it has input and room, so
        // a turn that moves nothing is a stuck decoder (refused rather than spun on); the
        // count bounds the turns well above what a stream's receive window can hold.
        for _ in 0..(1 << 20) {
            let had_input = self.pos < self.pending.len();
            if !had_input {
                self.refill(&mut recv)?;
            }
            let (written, consumed) = self.decode(out).map_err(&corrupt)?;
            if written > 0 {
                return Ok(written);
            }
            if consumed == 0 {
                if had_input {
                    return Err(corrupt(CodecError("zstd made no progress".into())));
                }
                return Ok(0);
            }
        }
        Err(corrupt(CodecError("zstd made no progress".into())))
    }

    fn refill<E>(&mut self, recv: &mut impl FnMut(&mut [u8]) -> Result<usize, E>) -> Result<(), E> {
        self.pending.resize(INPUT_CHUNK, 0);
        self.pos = 0;
        let n = recv(&mut self.pending)?;
        self.pending.truncate(n);
        count(|c| c.received_compressed += n as u64);
        Ok(())
    }

    /// One zstd call: (plain bytes written, compressed bytes consumed).
    fn decode(&mut self, out: &mut [u8]) -> Result<(usize, usize), CodecError> {
        let mut input = InBuffer::around(&self.pending[self.pos..]);
        let mut output = OutBuffer::around(out);
        let hint = self
            .dctx
            .decompress_stream(&mut output, &mut input)
            .map_err(codec_error)?;
        let (written, consumed) = (output.pos(), input.pos());
        self.pos += consumed;
        if written > 0 || consumed > 0 {
            self.frame_done = hint == 0;
        }
        count(|c| c.received_plain += written as u64);
        Ok((written, consumed))
    }

    /// The stream ended: its data must have been whole frames, all decoded.
    pub fn finish(&self) -> Result<(), CodecError> {
        if self.frame_done && self.pos >= self.pending.len() && self.held.is_none() {
            Ok(())
        } else {
            Err(CodecError("compressed body ends mid-frame".into()))
        }
    }
}

#[cfg(test)]
mod tests;
