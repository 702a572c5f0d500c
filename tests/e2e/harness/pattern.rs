//! Deterministic byte pattern (position dependent, so shifts / duplications /
//! drops are detected) and a fast streaming checksum.

fn mix(k: u64) -> u64 {
    let mut z = k.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Byte of the pattern at absolute offset `i`.
pub fn pattern_byte(i: u64) -> u8 {
    (mix(i >> 3) >> ((i & 7) * 8)) as u8
}

/// Fills `buf` with the pattern bytes for offsets `offset..offset+buf.len()`.
pub fn fill_pattern(offset: u64, buf: &mut [u8]) {
    let mut i = 0usize;
    // unaligned head
    while i < buf.len() && (offset + i as u64) & 7 != 0 {
        buf[i] = pattern_byte(offset + i as u64);
        i += 1;
    }
    // aligned words
    while i + 8 <= buf.len() {
        let w = mix((offset + i as u64) >> 3).to_le_bytes();
        buf[i..i + 8].copy_from_slice(&w);
        i += 8;
    }
    while i < buf.len() {
        buf[i] = pattern_byte(offset + i as u64);
        i += 1;
    }
}

/// One 64-byte line of the compressible text; `#` stands for the line number's 12 digits.
const TEXT_LINE: &[u8; 64] =
    b"{\"row\":############,\"tag\":\"ptproxy link compression\"},         \n";

/// Compressible, position dependent text (JSON-like 64-byte lines, numbered) for offsets
/// `offset..offset+buf.len()`.
pub fn fill_text(offset: u64, buf: &mut [u8]) {
    const POW10: [u64; 12] = [
        100_000_000_000,
        10_000_000_000,
        1_000_000_000,
        100_000_000,
        10_000_000,
        1_000_000,
        100_000,
        10_000,
        1_000,
        100,
        10,
        1,
    ];
    for (k, b) in buf.iter_mut().enumerate() {
        let i = offset + k as u64;
        let (line, col) = (i / 64, (i % 64) as usize);
        *b = match TEXT_LINE[col] {
            b'#' => b'0' + ((line / POW10[col - 7]) % 10) as u8,
            c => c,
        };
    }
}

/// `n` bytes of [`fill_text`] from offset 0.
pub fn text(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    fill_text(0, &mut v);
    v
}

/// `n` pattern bytes from offset 0.
pub fn pattern(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    fill_pattern(0, &mut v);
    v
}

/// Checks that `buf` equals the pattern at `offset`; on mismatch returns the
/// absolute offset of the first wrong byte. `scratch` avoids reallocations.
pub fn check_pattern(offset: u64, buf: &[u8], scratch: &mut Vec<u8>) -> Result<(), u64> {
    scratch.resize(buf.len(), 0);
    fill_pattern(offset, scratch);
    if scratch[..] == *buf {
        return Ok(());
    }
    let i = buf
        .iter()
        .zip(scratch.iter())
        .position(|(a, b)| a != b)
        .unwrap_or(0);
    Err(offset + i as u64)
}

/// Streaming checksum (word-wise, 64 bit). Identical results whatever the
/// chunking of the input.
#[derive(Clone)]
pub struct Checksum {
    h: u64,
    len: u64,
    pend: [u8; 8],
    npend: usize,
}

const P: u64 = 0x0000_0100_0000_01B3;

impl Default for Checksum {
    fn default() -> Self {
        Checksum {
            h: 0xCBF2_9CE4_8422_2325,
            len: 0,
            pend: [0; 8],
            npend: 0,
        }
    }
}

impl Checksum {
    pub fn new() -> Self {
        Self::default()
    }

    fn word(&mut self, w: u64) {
        self.h = (self.h ^ w).wrapping_mul(P);
        self.h ^= self.h >> 29;
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.npend > 0 {
            let take = (8 - self.npend).min(data.len());
            self.pend[self.npend..self.npend + take].copy_from_slice(&data[..take]);
            self.npend += take;
            data = &data[take..];
            if self.npend < 8 {
                return;
            }
            let w = u64::from_le_bytes(self.pend);
            self.word(w);
            self.npend = 0;
        }
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().unwrap()));
        }
        let rest = chunks.remainder();
        self.pend[..rest.len()].copy_from_slice(rest);
        self.npend = rest.len();
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn value(&self) -> u64 {
        let mut c = self.clone();
        for i in 0..c.npend {
            c.h = (c.h ^ c.pend[i] as u64).wrapping_mul(P);
        }
        mix(c.h ^ c.len)
    }
}

/// Checksum of a byte slice.
pub fn checksum(data: &[u8]) -> u64 {
    let mut c = Checksum::new();
    c.update(data);
    c.value()
}

/// Checksum of the first `n` pattern bytes (computed in 64 KiB steps).
pub fn pattern_checksum(n: u64) -> u64 {
    let mut c = Checksum::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    while off < n {
        let k = ((n - off) as usize).min(buf.len());
        fill_pattern(off, &mut buf[..k]);
        c.update(&buf[..k]);
        off += k as u64;
    }
    c.value()
}

/// The `/sink` answer for a body of `n` pattern bytes.
pub fn sink_answer(len: u64, sum: u64) -> String {
    format!("len={len} sum={sum:016x}")
}
