//! Test-only helpers shared by the h1 unit tests.
//!
//! [`Rng`] is a seeded xorshift generator (deterministic, no dependency) used
//! by the mutation tests; failures print the offending input.

/// Deterministic xorshift64 generator.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// A value in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    /// Flips, inserts or deletes a few bytes of `seed`, favouring delimiters.
    pub(crate) fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        const SPECIAL: &[u8] = b"\r\n \t:;,0aF\x00\x0b\x7f\x80";
        let mut input = seed.to_vec();
        for _ in 0..=self.below(3) {
            let at = self.below(input.len() + 1);
            let byte = if self.below(2) == 0 {
                SPECIAL[self.below(SPECIAL.len())]
            } else {
                self.below(256) as u8
            };
            match self.below(3) {
                0 if at < input.len() => input[at] = byte,
                1 if at < input.len() => {
                    input.remove(at);
                }
                _ => input.insert(at, byte),
            }
        }
        input
    }
}
