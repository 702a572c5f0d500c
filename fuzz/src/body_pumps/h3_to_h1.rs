//! `body_pumps`, HTTP/3 -> HTTP/1.1: [`H3ToH1`] against an in-memory stream source and a
//! bounded HTTP/1.1 output, every written byte decoded again with a `BodyDecoder` (the checks
//! are listed in the parent module).

use ptproxy::bridge::pump::{H1Buffers, H3ToH1, H3ToH1Error};
use ptproxy::bridge::stream::{StreamFailed, StreamSource};
use ptproxy::h1::{BodyDecoder, BodyEncoder, BodyEncoding, BodyFraming, Header};
use ptproxy::testing::MemConn;

use super::{append, final_steps, trailer_set, Op, CHUNK_OVERHEAD, UNLIMITED};

/// The receiving half of a stream: `incoming` is read at most `capacity` bytes per call.
#[derive(Default)]
struct Source {
    incoming: Vec<u8>,
    capacity: usize,
    /// Everything `recv_body` returned.
    read: Vec<u8>,
    /// The stream's FIN came (after `incoming`).
    ended: bool,
}

impl StreamSource for Source {
    fn recv_body(&mut self, buf: &mut [u8]) -> Result<usize, StreamFailed> {
        let n = buf.len().min(self.incoming.len()).min(self.capacity);
        buf[..n].copy_from_slice(&self.incoming[..n]);
        self.read.extend(self.incoming.drain(..n));
        Ok(n)
    }
}

/// `H3ToH1` under test with its sides and the checks' state.
struct H3ToH1Run {
    encoding: BodyEncoding,
    pump: H3ToH1,
    source: Source,
    h1: MemConn,
    /// Every byte delivered on the stream.
    delivered: Vec<u8>,
    trailers: Vec<Header>,
    /// Decodes everything the pump wrote.
    checker: BodyDecoder,
    decoded: Vec<u8>,
}

fn framing_of(encoding: BodyEncoding) -> BodyFraming {
    match encoding {
        BodyEncoding::None => BodyFraming::None,
        BodyEncoding::ContentLength(n) => BodyFraming::ContentLength(n),
        BodyEncoding::Chunked => BodyFraming::Chunked,
        BodyEncoding::UntilClose => BodyFraming::UntilClose,
    }
}

pub(super) fn h3_to_h1(encoding: BodyEncoding, ops: &[Op]) {
    let mut run = H3ToH1Run {
        encoding,
        pump: H3ToH1::new(encoding),
        source: Source::default(),
        h1: MemConn::accepted(0),
        delivered: Vec::new(),
        trailers: Vec::new(),
        checker: BodyDecoder::new(framing_of(encoding)),
        decoded: Vec::new(),
    };
    if run.play(ops).and_then(|()| run.final_steps()).is_ok() {
        run.check_final();
    }
}

impl H3ToH1Run {
    /// Runs the script; `Err` once the pump failed (it is then dropped).
    fn play(&mut self, ops: &[Op]) -> Result<(), ()> {
        for op in ops {
            match *op {
                Op::Bytes(_) | Op::Fill(..) if !self.source.ended => {
                    let piece = append(op, &mut self.delivered);
                    self.source.incoming.extend_from_slice(piece);
                }
                Op::End => self.source.ended = true,
                Op::Capacity(c) => self.source.capacity = c,
                Op::Credit(room) => self.h1.cap = room.unwrap_or(UNLIMITED),
                Op::Step => {
                    self.step()?;
                }
                Op::Six => self.h1.output.clear(),
                Op::Seven(b) => {
                    self.trailers = trailer_set(b);
                    self.pump.set_trailers(self.trailers.clone());
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The stream is read and the output written without limit from now on (the output is
    /// written out before each step).
    fn final_steps(&mut self) -> Result<(), ()> {
        self.source.capacity = UNLIMITED;
        self.h1.cap = UNLIMITED;
        final_steps(|| {
            self.h1.output.clear();
            self.step()
        })
    }

    /// `on_finished` once the stream ended and its data was read, one `step`, and the checks
    /// after it; `Err` when the pump failed (it is then dropped).
    fn step(&mut self) -> Result<bool, ()> {
        if self.source.ended && self.source.incoming.is_empty() && !self.pump.is_finished() {
            self.pump.on_finished();
        }
        let was_done = self.pump.is_done();
        let room = self.h1.write_room();
        let out_before = self.h1.output.len();
        let read_before = self.source.read.len();
        let result = self.pump.step(&mut self.source, &mut self.h1);
        let written = self.h1.output[out_before..].to_vec();
        let ended_now = self.pump.is_done() && !was_done;
        self.check_room(room, written.len(), ended_now);
        self.follow_written(&written);
        if ended_now {
            self.check_end();
        }
        match result {
            Ok(progress) => {
                assert_eq!(
                    self.pump.received,
                    self.source.read.len() as u64,
                    "read but not written"
                );
                let moved = !written.is_empty() || self.source.read.len() > read_before;
                assert!(progress || !moved, "Ok(false) but something moved");
                Ok(progress)
            }
            Err(error) => {
                self.check_error(error);
                Err(())
            }
        }
    }

    /// The bytes of the body's end for the current trailers (0 unless chunked).
    fn end_len(&self) -> usize {
        let mut end = Vec::new();
        if self.encoding == BodyEncoding::Chunked {
            let mut encoder = BodyEncoder::new(BodyEncoding::Chunked);
            encoder.finish(&self.trailers, &mut end).expect("finish");
        }
        end.len()
    }

    fn check_room(&self, room: usize, written: usize, ended_now: bool) {
        if room == 0 {
            assert_eq!(written, 0, "wrote without room");
            return;
        }
        let bound = match self.encoding {
            BodyEncoding::Chunked if ended_now => room - 1 + self.end_len(),
            BodyEncoding::Chunked => room + CHUNK_OVERHEAD,
            _ => room,
        };
        assert!(written <= bound, "wrote {written} with room {room}");
    }

    /// Decodes the freshly written bytes: all of them belong to the body, and what they carry
    /// is what was read from the stream.
    fn follow_written(&mut self, written: &[u8]) {
        let used = self
            .checker
            .decode(written, &mut self.decoded, usize::MAX)
            .unwrap_or_else(|e| panic!("written body does not decode: {e:?}"));
        assert_eq!(used, written.len(), "bytes written after the body's end");
        let received = usize::try_from(self.pump.received).expect("received");
        assert_eq!(self.decoded.len(), received, "received counts the payload");
        assert!(
            self.decoded[..] == self.source.read[..received],
            "written payload differs from the stream's"
        );
        if self.encoding == BodyEncoding::Chunked && self.checker.is_done() {
            assert!(self.pump.is_done(), "last chunk written but not done");
        }
    }

    /// The end was written (in this step): after the stream ended, with the whole body.
    fn check_end(&mut self) {
        assert!(self.pump.is_finished(), "body ended before the stream did");
        assert!(self.source.incoming.is_empty(), "ended with data unread");
        match self.encoding {
            BodyEncoding::Chunked | BodyEncoding::ContentLength(_) | BodyEncoding::None => {
                assert!(self.checker.is_done(), "done without the body's end")
            }
            BodyEncoding::UntilClose => {}
        }
        if self.encoding == BodyEncoding::Chunked {
            assert_eq!(
                self.checker.take_trailers(),
                self.trailers,
                "written trailers"
            );
        }
    }

    fn check_error(&self, error: H3ToH1Error) {
        assert!(!self.pump.is_done(), "{error:?} after the body's end");
        let read = self.source.read.len() as u64;
        match (error, self.encoding) {
            (H3ToH1Error::TooLong, BodyEncoding::ContentLength(n)) => {
                assert!(read > n, "TooLong after {read} of {n}")
            }
            (H3ToH1Error::TooLong, BodyEncoding::None) => assert!(read > 0, "TooLong, no data"),
            (H3ToH1Error::Truncated, BodyEncoding::ContentLength(n)) => {
                assert!(self.pump.is_finished(), "Truncated before the stream ended");
                assert!(self.pump.received < n, "Truncated at {} of {n}", read);
            }
            (error, encoding) => panic!("{error:?} for {encoding:?}"),
        }
    }

    /// The pump stalled with unlimited room and all data delivered: where the framing says.
    fn check_final(&self) {
        assert!(self.source.incoming.is_empty(), "data left unread");
        let total = self.delivered.len() as u64;
        match self.encoding {
            BodyEncoding::ContentLength(n) => {
                assert!(total <= n, "{total} bytes of {n} without TooLong");
                if self.source.ended {
                    assert_eq!(total, n, "ended short without Truncated");
                }
            }
            BodyEncoding::None => assert_eq!(total, 0, "data for no body without TooLong"),
            _ => {}
        }
        assert_eq!(
            self.pump.is_done(),
            self.source.ended,
            "done iff the stream ended"
        );
    }
}
