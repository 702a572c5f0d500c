//! The pumps against in-memory sides: a scripted HTTP/1.1 buffer pair and a stream with a
//! chosen capacity, so every split of input and every blocking pattern is reproducible.

use super::*;
use crate::bridge::stream::{StreamFailed, StreamSink, StreamSource};
use crate::h1::body::BodyFraming;
use crate::testing::MemConn;

/// A stream that takes at most `capacity` bytes per call (and `budget` in all, when set:
/// flow-control credit) and records what went out.
#[derive(Default)]
struct Stream {
    capacity: usize,
    budget: Option<usize>,
    data: Vec<u8>,
    fin: bool,
    trailers: Option<Vec<H3Header>>,
    /// Bytes still to be read by `recv_body`.
    incoming: Vec<u8>,
}

impl StreamSink for Stream {
    fn send_body(&mut self, data: &[u8], fin: bool) -> Result<Option<usize>, StreamFailed> {
        assert!(!self.fin, "data after FIN");
        let capacity = self.capacity.min(self.budget.unwrap_or(usize::MAX));
        if capacity == 0 {
            return Ok(None);
        }
        let n = data.len().min(capacity);
        self.budget = self.budget.map(|b| b - n);
        self.data.extend_from_slice(&data[..n]);
        self.fin = fin && n == data.len();
        Ok(Some(n))
    }
    fn send_trailers(&mut self, fields: &[H3Header]) -> Result<bool, StreamFailed> {
        if self.capacity == 0 {
            return Ok(false);
        }
        self.trailers = Some(fields.to_vec());
        self.fin = true;
        Ok(true)
    }
}

impl StreamSource for Stream {
    fn recv_body(&mut self, buf: &mut [u8]) -> Result<usize, StreamFailed> {
        let n = buf.len().min(self.incoming.len()).min(self.capacity);
        buf[..n].copy_from_slice(&self.incoming[..n]);
        self.incoming.drain(..n);
        Ok(n)
    }
}

#[test]
fn a_chunked_body_with_trailers_reaches_the_stream_whatever_the_capacity() {
    let wire = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 1\r\n\r\nNEXT".to_vec();
    for capacity in [1, 3, 7, 64] {
        let mut h1 = MemConn::accepted(0);
        let mut stream = Stream {
            capacity,
            ..Stream::default()
        };
        let mut pump = H1ToH3::new(BodyFraming::Chunked, None);
        // Fed a byte at a time: every split point of the framing is crossed.
        for (turn, byte) in wire.iter().enumerate() {
            h1.input.push(*byte);
            pump.step(&mut h1, &mut stream).expect("pump");
            assert!(turn < wire.len(), "bounded");
        }
        for _ in 0..64 {
            pump.step(&mut h1, &mut stream).expect("pump");
        }
        assert!(pump.is_done(), "capacity {capacity}");
        assert_eq!(stream.data, b"hello world", "capacity {capacity}");
        assert!(stream.fin && stream.trailers.is_some());
        assert_eq!(h1.input, b"NEXT", "the next message is left alone");
    }
}

#[test]
fn a_truncated_body_never_ends_the_stream() {
    let mut h1 = MemConn {
        input: b"hel".to_vec(),
        ended: true,
        ..MemConn::accepted(0)
    };
    let mut stream = Stream {
        capacity: 100,
        ..Stream::default()
    };
    let mut pump = H1ToH3::new(BodyFraming::ContentLength(5), None);
    assert_eq!(
        pump.step(&mut h1, &mut stream),
        Err(H1ToH3Error::Body(BodyError::Truncated))
    );
    assert!(!stream.fin && !pump.is_done());
}

#[test]
fn the_fin_waits_for_a_blocked_stream() {
    let mut h1 = MemConn {
        input: b"hello".to_vec(),
        ..MemConn::accepted(0)
    };
    let mut stream = Stream::default();
    let mut pump = H1ToH3::new(BodyFraming::ContentLength(5), None);
    // The input is decoded (progress) but nothing leaves: the pump waits for the stream.
    assert_eq!(pump.step(&mut h1, &mut stream), Ok(true));
    assert!(stream.data.is_empty() && h1.input.is_empty());
    assert!(
        !pump.is_done() && !pump.waits_for_input(),
        "waits for the stream"
    );
    stream.capacity = 100;
    stream.budget = Some(2);
    pump.step(&mut h1, &mut stream).expect("pump");
    assert!(
        !stream.fin && stream.data == b"he",
        "part of the body, no FIN"
    );
    stream.budget = None;
    pump.step(&mut h1, &mut stream).expect("pump");
    assert!(pump.is_done() && stream.fin);
    assert_eq!(stream.data, b"hello");
}

#[test]
fn a_body_over_the_limit_is_refused_before_it_goes_out() {
    let mut h1 = MemConn {
        input: vec![b'a'; 10],
        ..MemConn::accepted(0)
    };
    let mut stream = Stream {
        capacity: 100,
        ..Stream::default()
    };
    let mut pump = H1ToH3::new(BodyFraming::ContentLength(10), Some(9));
    assert_eq!(
        pump.step(&mut h1, &mut stream),
        Err(H1ToH3Error::TooLarge(9))
    );
    assert!(stream.data.is_empty());
    // The error sticks: stepping again sends nothing over the limit.
    assert_eq!(
        pump.step(&mut h1, &mut stream),
        Err(H1ToH3Error::TooLarge(9))
    );
    assert!(stream.data.is_empty() && !stream.fin);
}

#[test]
fn a_waiting_body_says_it_waits_for_input() {
    let mut h1 = MemConn {
        input: b"he".to_vec(),
        ..MemConn::accepted(0)
    };
    let mut stream = Stream {
        capacity: 100,
        ..Stream::default()
    };
    let mut pump = H1ToH3::new(BodyFraming::ContentLength(5), None);
    pump.step(&mut h1, &mut stream).expect("pump");
    assert!(pump.waits_for_input());
}

#[test]
fn stream_data_is_encoded_within_the_output_room() {
    let payload: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let mut stream = Stream {
        capacity: 3000,
        incoming: payload.clone(),
        ..Stream::default()
    };
    let mut h1 = MemConn {
        cap: 10_000,
        ..MemConn::accepted(0)
    };
    let mut pump = H3ToH1::new(BodyEncoding::Chunked);
    let mut wire = Vec::new();
    for _ in 0..1000 {
        pump.step(&mut stream, &mut h1).expect("pump");
        assert!(
            h1.output.len() <= 10_000 + 32,
            "output bound: {}",
            h1.output.len()
        );
        wire.append(&mut h1.output);
        if stream.incoming.is_empty() && !pump.is_finished() {
            pump.on_finished();
        }
        if pump.is_done() {
            break;
        }
    }
    assert!(pump.is_done());
    let mut decoded = Vec::new();
    let mut decoder = BodyDecoder::new(BodyFraming::Chunked);
    let used = decoder
        .decode(&wire, &mut decoded, usize::MAX)
        .expect("valid chunked");
    assert_eq!((used, decoder.is_done()), (wire.len(), true));
    assert_eq!(decoded, payload);
}

#[test]
fn a_stream_that_ends_short_of_its_length_is_truncated() {
    let mut stream = Stream {
        capacity: 100,
        incoming: b"abc".to_vec(),
        ..Stream::default()
    };
    let mut h1 = MemConn {
        cap: 100,
        ..MemConn::accepted(0)
    };
    let mut pump = H3ToH1::new(BodyEncoding::ContentLength(5));
    pump.on_finished();
    assert_eq!(pump.step(&mut stream, &mut h1), Err(H3ToH1Error::Truncated));
    assert!(!pump.is_done());
}

#[test]
fn the_h1_framing_of_an_h3_body_is_decided_in_one_place() {
    use BodyEncoding as E;
    let names = |added: Option<Header>| added.map(|h| h.name);
    let cases = [
        // (message, declared, more frames, HTTP/1.1 peer) -> (encoding, field added)
        (
            Message::Request,
            None,
            false,
            true,
            Ok((E::None, None::<&str>)),
        ),
        (Message::Request, Some(0), false, true, Ok((E::None, None))),
        (
            Message::Request,
            Some(5),
            false,
            true,
            Err("content-length without a body"),
        ),
        (
            Message::Request,
            Some(5),
            true,
            true,
            Ok((E::ContentLength(5), None)),
        ),
        (
            Message::Request,
            None,
            true,
            true,
            Ok((E::Chunked, Some("transfer-encoding"))),
        ),
        (
            Message::Response,
            None,
            false,
            true,
            Ok((E::ContentLength(0), Some("content-length"))),
        ),
        (
            Message::Response,
            Some(7),
            false,
            false,
            Ok((E::ContentLength(7), None)),
        ),
        (
            Message::Response,
            None,
            true,
            true,
            Ok((E::Chunked, Some("transfer-encoding"))),
        ),
        (
            Message::Response,
            None,
            true,
            false,
            Ok((E::UntilClose, None)),
        ),
    ];
    for (message, declared, more, http11, want) in cases {
        let got = h1_framing(message, declared, more, http11).map(|(e, added)| (e, names(added)));
        let want = want.map(|(e, n)| (e, n.map(String::from)));
        assert_eq!(
            got, want,
            "{message:?} {declared:?} more={more} http11={http11}"
        );
    }
}

fn json_body(len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("{{\"id\":{i},\"tag\":\"row {i}\"}},").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// `body` through a compressing H1ToH3 (fed in `piece`-byte reads): what the stream got.
fn compressed_on_the_stream(body: &[u8], piece: usize) -> Vec<u8> {
    use crate::bridge::compression::Compressor;
    let mut h1 = MemConn::accepted(0);
    let mut stream = Stream {
        capacity: 1000,
        ..Stream::default()
    };
    let mut pump = H1ToH3::new(BodyFraming::ContentLength(body.len() as u64), None);
    pump.compress(Compressor::new(Some(body.len() as u64)).expect("a context"));
    for part in body.chunks(piece) {
        h1.input.extend_from_slice(part);
        pump.step(&mut h1, &mut stream).expect("pump");
    }
    for _ in 0..10_000 {
        if pump.is_done() {
            break;
        }
        pump.step(&mut h1, &mut stream).expect("pump");
    }
    assert!(pump.is_done() && stream.fin);
    assert_eq!(
        pump.sent,
        body.len() as u64,
        "counts the payload compressed"
    );
    stream.data
}

/// `wire` through a decompressing H3ToH1 framed by Content-Length `length`: the HTTP/1.1
/// bytes written, and the result of the last step.
fn decompressed_to_h1(wire: &[u8], length: u64) -> (Vec<u8>, Result<bool, H3ToH1Error>) {
    let mut stream = Stream {
        capacity: 777,
        incoming: wire.to_vec(),
        ..Stream::default()
    };
    let mut h1 = MemConn::accepted(10_000);
    let mut pump = H3ToH1::new(BodyEncoding::ContentLength(length));
    pump.decompress(Decompressor::new().expect("a context"));
    let mut out = Vec::new();
    let mut last = Ok(false);
    for _ in 0..100_000 {
        last = pump.step(&mut stream, &mut h1);
        out.append(&mut h1.output);
        if last.is_err() || pump.is_done() {
            break;
        }
        if stream.incoming.is_empty() && !pump.is_finished() {
            pump.on_finished();
        }
    }
    (out, last)
}

#[test]
fn a_compressed_body_crosses_byte_exact_and_smaller() {
    let body = json_body(200_000);
    for piece in [1000, 64 * 1024] {
        let wire = compressed_on_the_stream(&body, piece);
        assert!(
            wire.len() * 4 < body.len(),
            "{} bytes on the stream",
            wire.len()
        );
        let (out, last) = decompressed_to_h1(&wire, body.len() as u64);
        assert_eq!(last, Ok(true));
        assert!(out == body, "piece {piece}: {} bytes out", out.len());
    }
}

#[test]
fn a_paused_source_flushes_what_the_compressor_holds() {
    use crate::bridge::compression::Compressor;
    let body = json_body(5000);
    let mut h1 = MemConn::accepted(0);
    let mut stream = Stream {
        capacity: 100_000,
        ..Stream::default()
    };
    let mut pump = H1ToH3::new(BodyFraming::ContentLength(5000), None);
    pump.compress(Compressor::new(Some(5000)).expect("a context"));
    h1.input.extend_from_slice(&body[..300]);
    pump.step(&mut h1, &mut stream).expect("pump");
    assert!(pump.waits_for_input());
    // What went out already decodes to the first 300 bytes (the last one held back at the
    // far end until the frame's checksum is checked).
    let (out, last) = decompressed_to_h1(&stream.data, 5000);
    assert_eq!(out, &body[..299]);
    assert!(
        matches!(last, Err(H3ToH1Error::Corrupt(_))),
        "{last:?}: cut mid-frame"
    );
}

#[test]
fn corrupt_or_cut_compressed_data_never_ends_the_body() {
    let body = json_body(100_000);
    let wire = compressed_on_the_stream(&body, 8192);
    let mut cases = Vec::new();
    for at in [6, wire.len() / 3, wire.len() - 3] {
        let mut bad = wire.clone();
        bad[at] ^= 0x40;
        cases.push((format!("flipped byte {at}"), bad));
    }
    cases.push(("cut in half".into(), wire[..wire.len() / 2].to_vec()));
    cases.push(("last byte missing".into(), wire[..wire.len() - 1].to_vec()));
    cases.push(("not zstd".into(), body[..1000].to_vec()));
    for (what, bad) in cases {
        let (out, last) = decompressed_to_h1(&bad, body.len() as u64);
        assert!(
            matches!(last, Err(H3ToH1Error::Corrupt(_))),
            "{what}: {last:?}"
        );
        assert!(out.len() < body.len(), "{what}: the body never completes");
    }
}
