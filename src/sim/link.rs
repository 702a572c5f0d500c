//! The simulated network between the two proxies: a seeded virtual link that delivers
//! datagrams in whole turns, and loses, duplicates, reorders or blackholes them by its seed.

/// A small deterministic generator (xorshift64*): the same seed gives the same decisions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// What the link does to datagrams.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub loss: f64,
    pub duplicate: f64,
    /// Chance that a datagram swaps places with another one of its turn.
    pub reorder: f64,
    /// Everything is dropped (a dead path).
    pub blackhole: bool,
    /// Chance that a send finds the sending side's socket full (WouldBlock until the next
    /// turn's WRITABLE).
    pub would_block: f64,
    /// The sockets refuse segmentation offload (GSO), so the datagram path falls back to one
    /// datagram per send.
    pub no_gso: bool,
    /// Chance that a receive hands out a GRO aggregate (the datagrams of one sender and size
    /// that follow, glued on).
    pub gro: f64,
}

/// One direction of the link: datagrams sent in a turn arrive together in the next one.
#[derive(Debug)]
pub struct Direction {
    in_flight: Vec<Vec<u8>>,
    pub sent: u64,
    pub dropped: u64,
    /// Of the dropped, those a blackhole took.
    pub blackholed: u64,
}

impl Direction {
    pub fn new() -> Self {
        Direction {
            in_flight: Vec::new(),
            sent: 0,
            dropped: 0,
            blackholed: 0,
        }
    }

    pub fn send(&mut self, datagram: &[u8], faults: &Faults, rng: &mut Rng) {
        self.sent += 1;
        if faults.blackhole {
            self.dropped += 1;
            self.blackholed += 1;
            return;
        }
        if rng.chance(faults.loss) {
            self.dropped += 1;
            return;
        }
        if rng.chance(faults.duplicate) {
            self.in_flight.push(datagram.to_vec());
        }
        self.in_flight.push(datagram.to_vec());
    }

    /// The datagrams arriving now, possibly reordered.
    pub fn deliver(&mut self, faults: &Faults, rng: &mut Rng) -> Vec<Vec<u8>> {
        let mut out = std::mem::take(&mut self.in_flight);
        for i in 0..out.len() {
            if rng.chance(faults.reorder) {
                let j = rng.below(out.len());
                out.swap(i, j);
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }
}

impl Default for Direction {
    fn default() -> Self {
        Direction::new()
    }
}
