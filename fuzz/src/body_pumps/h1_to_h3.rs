//! `body_pumps`, HTTP/1.1 -> HTTP/3: [`H1ToH3`] against a scripted HTTP/1.1 input and an
//! in-memory stream sink, checked against a one-shot `BodyDecoder` of all the fed bytes (the
//! checks are listed in the parent module).

use ptproxy::bridge::headers::trailers_to_h3;
use ptproxy::bridge::pump::{H1ToH3, H1ToH3Error, BODY_CHUNK};
use ptproxy::bridge::stream::{StreamFailed, StreamSink};
use ptproxy::h1::{BodyDecoder, BodyError, BodyFraming};
use ptproxy::testing::MemConn;
use quiche::h3::Header as H3Header;

use super::{append, final_steps, Op, UNLIMITED};

fn injected() -> StreamFailed {
    StreamFailed {
        cancelled: true,
        detail: "injected".into(),
    }
}

/// The sending half of a stream: takes at most `capacity` bytes per call and `credit` in all.
#[derive(Default)]
struct Sink {
    capacity: usize,
    credit: Option<usize>,
    fail_next: bool,
    /// An injected failure was returned.
    failed: bool,
    data: Vec<u8>,
    fin: bool,
    trailers: Option<Vec<H3Header>>,
}

impl Sink {
    fn open(&self) -> usize {
        self.capacity.min(self.credit.unwrap_or(usize::MAX))
    }

    fn fail(&mut self) -> Result<(), StreamFailed> {
        if std::mem::take(&mut self.fail_next) {
            self.failed = true;
            return Err(injected());
        }
        Ok(())
    }
}

impl StreamSink for Sink {
    fn send_body(&mut self, data: &[u8], fin: bool) -> Result<Option<usize>, StreamFailed> {
        assert!(!self.fin, "send_body after FIN");
        assert!(data.len() <= BODY_CHUNK, "pending chunk of {}", data.len());
        self.fail()?;
        if self.open() == 0 {
            return Ok(None);
        }
        let n = data.len().min(self.open());
        self.credit = self.credit.map(|c| c - n);
        self.data.extend_from_slice(&data[..n]);
        self.fin = fin && n == data.len();
        Ok(Some(n))
    }

    fn send_trailers(&mut self, fields: &[H3Header]) -> Result<bool, StreamFailed> {
        assert!(!self.fin, "trailers after FIN");
        self.fail()?;
        if self.open() == 0 {
            return Ok(false);
        }
        self.trailers = Some(fields.to_vec());
        self.fin = true;
        Ok(true)
    }
}

/// What a one-shot decode of all the fed bytes gives.
struct Oracle {
    payload: Vec<u8>,
    consumed: usize,
    done: bool,
    /// The trailer section due on the stream (`None`: a bare FIN).
    trailers: Option<Vec<H3Header>>,
    error: Option<BodyError>,
}

fn oracle(framing: BodyFraming, wire: &[u8], ended: bool) -> Oracle {
    let mut decoder = BodyDecoder::new(framing);
    let mut payload = Vec::new();
    let mut result = decoder.decode(wire, &mut payload, usize::MAX);
    if result.is_ok() && !decoder.is_done() && ended {
        result = decoder.at_eof().map(|()| wire.len());
    }
    let trailers = trailers_to_h3(&decoder.take_trailers());
    Oracle {
        payload,
        consumed: result.clone().unwrap_or(0),
        done: decoder.is_done(),
        trailers: (!trailers.is_empty()).then_some(trailers),
        error: result.err(),
    }
}

/// `H1ToH3` under test with its sides and the checks' state.
struct H1ToH3Run {
    pump: H1ToH3,
    h1: MemConn,
    sink: Sink,
    limit: Option<u64>,
    /// Every byte fed to the HTTP/1.1 side.
    fed: Vec<u8>,
    /// What the oracle decoded: all that the script feeds.
    wire: Vec<u8>,
    oracle: Oracle,
    /// Decodes what the pump consumed, to know what it holds.
    shadow: BodyDecoder,
    shadow_at: usize,
    shadow_payload: Vec<u8>,
}

pub(super) fn h1_to_h3(framing: BodyFraming, limit: Option<u64>, ops: &[Op]) {
    let mut wire = Vec::new();
    for op in ops.iter().take_while(|op| !matches!(op, Op::End)) {
        append(op, &mut wire);
    }
    let ended = ops.iter().any(|op| matches!(op, Op::End));
    let mut run = H1ToH3Run {
        pump: H1ToH3::new(framing, limit),
        h1: MemConn::accepted(0),
        sink: Sink::default(),
        limit,
        fed: Vec::new(),
        oracle: oracle(framing, &wire, ended),
        wire,
        shadow: BodyDecoder::new(framing),
        shadow_at: 0,
        shadow_payload: Vec::new(),
    };
    if run.play(ops).and_then(|()| run.final_steps()).is_ok() {
        run.check_final();
    }
}

impl H1ToH3Run {
    /// Runs the script; `Err` once the pump failed (it is then dropped, as the proxy drops
    /// the exchange).
    fn play(&mut self, ops: &[Op]) -> Result<(), ()> {
        for op in ops {
            match *op {
                Op::Bytes(_) | Op::Fill(..) if !self.h1.ended => {
                    let piece = append(op, &mut self.fed);
                    self.h1.send(piece);
                }
                Op::End => self.h1.ended = true,
                Op::Capacity(c) => self.sink.capacity = c,
                Op::Credit(c) => self.sink.credit = c,
                Op::Step | Op::Six => {
                    self.step()?;
                }
                Op::Seven(_) => self.sink.fail_next = true,
                _ => {}
            }
        }
        Ok(())
    }

    /// The stream takes everything from now on.
    fn final_steps(&mut self) -> Result<(), ()> {
        assert!(self.fed == self.wire, "the oracle saw other bytes");
        self.sink.capacity = UNLIMITED;
        self.sink.credit = None;
        self.sink.fail_next = false;
        final_steps(|| self.step())
    }

    /// One `step` and the checks after it; `Err` when the pump failed (it is then dropped,
    /// as the proxy drops the exchange).
    fn step(&mut self) -> Result<bool, ()> {
        let before = (
            self.h1.consumed(),
            self.sink.data.len(),
            self.sink.fin,
            self.sink.trailers.is_some(),
        );
        let result = self.pump.step(&mut self.h1, &mut self.sink);
        self.follow_consumed();
        self.check_sent();
        match result {
            Ok(true) => Ok(true),
            Ok(false) => {
                let after = (
                    self.h1.consumed(),
                    self.sink.data.len(),
                    self.sink.fin,
                    self.sink.trailers.is_some(),
                );
                assert_eq!(before, after, "Ok(false) but something moved");
                Ok(false)
            }
            Err(error) => {
                self.check_error(error);
                Err(())
            }
        }
    }

    /// Feeds the bytes the pump consumed since the last step to the shadow decoder.
    fn follow_consumed(&mut self) {
        let fresh = &self.fed[self.shadow_at..self.h1.consumed()];
        let mut used = 0;
        loop {
            let result = self
                .shadow
                .decode(&fresh[used..], &mut self.shadow_payload, usize::MAX);
            match result {
                Ok(0) => break,
                Ok(n) => used += n,
                Err(e) => panic!("the pump consumed bytes that do not decode: {e:?}"),
            }
        }
        assert_eq!(used, fresh.len(), "the consumed bytes stop mid-way");
        self.shadow_at = self.h1.consumed();
    }

    fn check_sent(&self) {
        let sent = &self.sink.data;
        assert_eq!(self.pump.sent, sent.len() as u64, "sent counts the payload");
        assert!(
            self.shadow_payload.starts_with(sent),
            "sent payload is not what was decoded"
        );
        let pending = self.shadow_payload.len() - sent.len();
        assert!(pending <= BODY_CHUNK, "{pending} decoded bytes pending");
        if let Some(max) = self.limit {
            assert!(
                sent.len() as u64 <= max,
                "{} sent over limit {max}",
                sent.len()
            );
        }
        assert_eq!(self.sink.fin, self.pump.is_done(), "is_done() is FIN sent");
        if self.sink.fin {
            assert!(self.oracle.done, "FIN before the body's end");
            assert!(
                *sent == self.oracle.payload,
                "FIN without the whole payload"
            );
            assert_eq!(self.sink.trailers, self.oracle.trailers, "trailer section");
        }
        if self.pump.waits_for_input() {
            assert!(!self.h1.ended, "waits for input after EOF");
            assert_eq!(pending, 0, "waits for input with payload pending");
        }
    }

    fn check_error(&self, error: H1ToH3Error) {
        assert!(
            !self.sink.fin && !self.pump.is_done(),
            "{error:?} after FIN"
        );
        match error {
            H1ToH3Error::Body(e) => assert_eq!(Some(e), self.oracle.error, "body error"),
            H1ToH3Error::TooLarge(max) => {
                assert_eq!(Some(max), self.limit, "TooLarge names the limit");
                assert!(
                    self.oracle.payload.len() as u64 > max,
                    "TooLarge for a payload of {} <= {max}",
                    self.oracle.payload.len()
                );
            }
            H1ToH3Error::Stream(e) => {
                assert!(self.sink.failed && e == injected(), "stream error {e:?}")
            }
        }
    }

    /// The pump stalled with unlimited stream room and saw all input: it is where the oracle is.
    fn check_final(&self) {
        let oracle = &self.oracle;
        assert_eq!(oracle.error, None, "the pump missed the body's error");
        if let Some(max) = self.limit {
            assert!(
                oracle.payload.len() as u64 <= max,
                "the pump missed the limit"
            );
        }
        assert!(self.sink.data == oracle.payload, "payload not all sent");
        assert_eq!(self.pump.is_done(), oracle.done, "done");
        if oracle.done {
            assert_eq!(self.h1.consumed(), oracle.consumed, "bytes after the body");
        } else {
            assert!(
                self.pump.waits_for_input(),
                "stalled but not waiting for input"
            );
        }
    }
}
