//! `body_pumps` scripts built on purpose: a builder for the input layout of
//! [`crate::body_pumps`], the corpus seeds, and seeded random scripts around real bodies (valid,
//! corrupted, truncated, over the limit) for the stable-Rust smoke test in
//! `tests/fuzz_replay.rs`, which random bytes would rarely reach.

/// A `body_pumps` input under construction (opcodes as in the `body_pumps` module table).
pub struct Script(Vec<u8>);

impl Script {
    /// `mode` 0..=3: `H1ToH3` None / Content-Length `n` / chunked / until close; 4..=7 the same
    /// for `H3ToH1`. `limit`: 0 none, else `size(limit - 1)`.
    pub fn new(mode: u8, n: u32, limit: u8) -> Self {
        let [n0, n1, n2, _] = n.to_le_bytes();
        Script(vec![mode, n0, n1, n2, limit])
    }
    /// Feeds (`H1ToH3`) or delivers (`H3ToH1`) `bytes`, in ops of at most 255 bytes.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        for piece in bytes.chunks(255) {
            self.0.extend_from_slice(&[0, piece.len() as u8]);
            self.0.extend_from_slice(piece);
        }
        self
    }
    /// `(count + 1) * 512` bytes `b`.
    pub fn fill(&mut self, b: u8, count: u8) -> &mut Self {
        self.op(&[1, b, count])
    }
    pub fn end(&mut self) -> &mut Self {
        self.op(&[2])
    }
    /// Stream capacity per call (`size(c)`).
    pub fn capacity(&mut self, c: u8) -> &mut Self {
        self.op(&[3, c])
    }
    /// `H1ToH3`: stream credit (255 unlimited); `H3ToH1`: output room.
    pub fn credit(&mut self, b: u8) -> &mut Self {
        self.op(&[4, b])
    }
    pub fn step(&mut self) -> &mut Self {
        self.op(&[5])
    }
    /// `H1ToH3`: a step; `H3ToH1`: the socket writes out the output.
    pub fn six(&mut self) -> &mut Self {
        self.op(&[6])
    }
    /// `H1ToH3`: the next stream call fails; `H3ToH1`: trailer set `b % 4`.
    pub fn seven(&mut self, b: u8) -> &mut Self {
        self.op(&[7, b])
    }
    fn op(&mut self, op: &[u8]) -> &mut Self {
        self.0.extend_from_slice(op);
        self
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.clone()
    }
}

/// The seeds of `fuzz/corpus/body_pumps/`: one or more per framing and direction.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let chunked = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-sum: 1\r\n\r\nNEXT";
    let mut s = vec![
        (
            "seed-h1-none",
            Script::new(0, 0, 0)
                .capacity(10)
                .bytes(b"GET")
                .step()
                .to_bytes(),
        ),
        (
            "seed-h1-length",
            Script::new(1, 11, 0)
                .capacity(0)
                .bytes(b"hello")
                .step()
                .capacity(3)
                .bytes(b" worldNEXT")
                .step()
                .step()
                .end()
                .to_bytes(),
        ),
        (
            "seed-h1-length-truncated",
            Script::new(1, 11, 0)
                .capacity(100)
                .bytes(b"hello")
                .end()
                .step()
                .to_bytes(),
        ),
        (
            "seed-h1-chunked-trailers",
            Script::new(2, 0, 0)
                .capacity(2)
                .credit(7)
                .bytes(&chunked[..9])
                .step()
                .bytes(&chunked[9..])
                .step()
                .credit(255)
                .step()
                .to_bytes(),
        ),
        (
            "seed-h1-chunked-malformed",
            Script::new(2, 0, 0)
                .capacity(100)
                .bytes(b"5\r\nhello\r\nzz\r\n")
                .step()
                .to_bytes(),
        ),
        (
            "seed-h1-chunked-big",
            Script::new(2, 0, 0)
                .capacity(255)
                .bytes(b"20000\r\n")
                .fill(b'a', 255)
                .step()
                .step()
                .bytes(b"\r\n0\r\n\r\n")
                .step()
                .to_bytes(),
        ),
        (
            "seed-h1-until-close-limit",
            Script::new(3, 0, 5)
                .capacity(100)
                .bytes(b"abc")
                .step()
                .bytes(b"defg")
                .end()
                .step()
                .to_bytes(),
        ),
        (
            "seed-h1-stream-fails",
            Script::new(3, 0, 0)
                .capacity(4)
                .bytes(b"abcdef")
                .seven(0)
                .step()
                .to_bytes(),
        ),
        (
            "seed-h3-none",
            Script::new(4, 0, 0).credit(10).end().step().to_bytes(),
        ),
        (
            "seed-h3-length",
            Script::new(5, 11, 0)
                .capacity(4)
                .credit(6)
                .bytes(b"hello world")
                .step()
                .six()
                .step()
                .end()
                .credit(100)
                .step()
                .to_bytes(),
        ),
        (
            "seed-h3-length-too-long",
            Script::new(5, 3, 0)
                .capacity(100)
                .credit(100)
                .bytes(b"hello")
                .step()
                .to_bytes(),
        ),
        (
            "seed-h3-length-truncated",
            Script::new(5, 11, 0)
                .capacity(100)
                .credit(100)
                .bytes(b"hello")
                .end()
                .step()
                .step()
                .to_bytes(),
        ),
        (
            "seed-h3-chunked-trailers",
            Script::new(6, 0, 0)
                .capacity(3)
                .credit(0)
                .bytes(b"hello world")
                .step()
                .credit(9)
                .step()
                .six()
                .step()
                .seven(2)
                .end()
                .credit(100)
                .step()
                .step()
                .to_bytes(),
        ),
        (
            "seed-h3-chunked-big",
            Script::new(6, 0, 0)
                .capacity(255)
                .credit(200)
                .fill(b'z', 200)
                .step()
                .six()
                .step()
                .end()
                .step()
                .to_bytes(),
        ),
        (
            "seed-h3-until-close",
            Script::new(7, 0, 0)
                .capacity(5)
                .credit(8)
                .bytes(b"hello world")
                .step()
                .six()
                .step()
                .end()
                .step()
                .to_bytes(),
        ),
    ];
    s.sort_by_key(|(name, _)| *name);
    s
}

/// xorshift64*: deterministic, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// A run of body bytes: literal, or `(count + 1) * 512` copies of one byte.
#[derive(Clone)]
enum Piece {
    Bytes(Vec<u8>),
    Fill(u8, u8),
}

impl Piece {
    fn len(&self) -> usize {
        match self {
            Piece::Bytes(b) => b.len(),
            Piece::Fill(_, c) => (usize::from(*c) + 1) * 512,
        }
    }
}

/// A payload: a few literal runs, now and then a big fill (past `BODY_CHUNK`).
fn payload(rng: &mut Rng) -> Vec<Piece> {
    let count = rng.below(5);
    (0..count)
        .map(|_| {
            if rng.one_in(25) {
                Piece::Fill(rng.byte(), rng.byte())
            } else {
                let max = if rng.one_in(4) { 1200 } else { 40 };
                let len = rng.below(max);
                Piece::Bytes((0..len).map(|_| rng.byte()).collect())
            }
        })
        .collect()
}

/// The HTTP/1.1 wire of `payload` in `mode`'s framing (0..=3), maybe corrupted or cut; and
/// the Content-Length to declare.
fn h1_wire(rng: &mut Rng, mode: u8, payload: Vec<Piece>) -> (Vec<Piece>, u32) {
    let total: usize = payload.iter().map(Piece::len).sum();
    let mut n = total as u32;
    if rng.one_in(6) {
        n = (n + rng.below(5) as u32).saturating_sub(2);
    }
    let mut wire = match mode {
        0 => Vec::new(),
        2 => chunked(rng, payload),
        _ => payload,
    };
    if rng.one_in(3) {
        wire.push(Piece::Bytes(b"GET / HTTP/1.1\r\n".to_vec()));
    }
    if rng.one_in(8) {
        corrupt(rng, &mut wire);
    }
    if rng.one_in(8) && !wire.is_empty() {
        let keep = rng.below(wire.len() as u64) as usize;
        wire.truncate(keep + 1);
        if let Some(Piece::Bytes(last)) = wire.last_mut() {
            last.truncate(rng.below(last.len() as u64 + 1) as usize);
        }
    }
    (wire, n)
}

fn chunked(rng: &mut Rng, payload: Vec<Piece>) -> Vec<Piece> {
    let mut wire = Vec::new();
    for piece in payload.into_iter().filter(|p| p.len() > 0) {
        let ext = if rng.one_in(5) { ";x=1" } else { "" };
        let line = format!("{:X}{ext}\r\n", piece.len());
        wire.push(Piece::Bytes(line.into_bytes()));
        wire.push(piece);
        wire.push(Piece::Bytes(b"\r\n".to_vec()));
    }
    let mut end = b"0\r\n".to_vec();
    for trailer in [
        "x-sum: 1\r\n",
        "Content-Length: 9\r\n",
        "X-Other:  two words \r\n",
    ] {
        if rng.one_in(3) {
            end.extend_from_slice(trailer.as_bytes());
        }
    }
    end.extend_from_slice(b"\r\n");
    wire.push(Piece::Bytes(end));
    wire
}

/// Overwrites one literal byte with a random one.
fn corrupt(rng: &mut Rng, wire: &mut [Piece]) {
    let literal: Vec<usize> = (0..wire.len())
        .filter(|&i| matches!(&wire[i], Piece::Bytes(b) if !b.is_empty()))
        .collect();
    if literal.is_empty() {
        return;
    }
    let i = literal[rng.below(literal.len() as u64) as usize];
    if let Piece::Bytes(bytes) = &mut wire[i] {
        let at = rng.below(bytes.len() as u64) as usize;
        bytes[at] = rng.byte();
    }
}

/// A random size byte: often 0 (blocked), often small, sometimes large.
fn size_byte(rng: &mut Rng) -> u8 {
    match rng.below(5) {
        0 => 0,
        1 | 2 => rng.below(32) as u8,
        _ => rng.byte(),
    }
}

/// Random ops of the pump between two pieces of input.
fn interleave(rng: &mut Rng, script: &mut Script, h1_to_h3: bool) {
    for _ in 0..rng.below(4) {
        match rng.below(10) {
            0 | 1 => script.capacity(size_byte(rng)),
            2 if h1_to_h3 && rng.one_in(2) => script.credit(255),
            2 | 3 => script.credit(size_byte(rng)),
            4 if h1_to_h3 && rng.one_in(40) => script.seven(0),
            4 if !h1_to_h3 => script.seven(rng.byte()),
            5 | 6 => script.six(),
            _ => script.step(),
        };
    }
}

/// A random `body_pumps` input around a real body, for `seed`.
pub fn random(seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mode = rng.below(8) as u8;
    let payload = payload(&mut rng);
    let (pieces, n) = if mode < 4 {
        h1_wire(&mut rng, mode, payload)
    } else {
        let total: usize = payload.iter().map(Piece::len).sum();
        let n = (total as u32 + rng.below(3) as u32).saturating_sub(1);
        (payload, if rng.one_in(3) { n } else { total as u32 })
    };
    let limit = if rng.one_in(4) { rng.byte() } else { 0 };
    let mut script = Script::new(mode, n, limit);
    interleave(&mut rng, &mut script, mode < 4);
    for piece in pieces {
        match piece {
            Piece::Fill(b, c) => {
                script.fill(b, c);
            }
            Piece::Bytes(bytes) => {
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let k = (1 + rng.below(rest.len() as u64)) as usize;
                    script.bytes(&rest[..k]);
                    rest = &rest[k..];
                    interleave(&mut rng, &mut script, mode < 4);
                }
            }
        }
        interleave(&mut rng, &mut script, mode < 4);
    }
    if !rng.one_in(4) {
        script.end();
    }
    interleave(&mut rng, &mut script, mode < 4);
    script.to_bytes()
}
