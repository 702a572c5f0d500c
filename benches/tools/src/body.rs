//! Bodies for the link-compression benchmark (issue 15), made the same way by ptb-upstream and
//! ptb-load so that each side can check what the other sent: realistic JSON of an exact size
//! (an array of records with varied values, deterministic by seed), random (incompressible)
//! bytes, and the FNV-1a 64 checksum that travels beside a body in `X-Body-Fnv`.

/// xorshift64*: deterministic, fast, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

/// FNV-1a, 64 bits.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `size` random bytes.
pub fn random_body(size: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed ^ 0x005E_ED0F_BA5E);
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        out.extend_from_slice(&r.next_u64().to_le_bytes());
    }
    out.truncate(size);
    out
}

const FIRST: &[&str] = &["Ana", "Bruno", "Chen", "Dara", "Emil", "Fatima", "Goran", "Hana", "Ivan", "Jun", "Kofi", "Lena"];
const LAST: &[&str] = &["Silva", "Okafor", "Nguyen", "Müller", "Rossi", "Kowalski", "Tanaka", "Haddad", "Novak", "Berg"];
const CITY: &[&str] = &["Lisbon", "Lagos", "Hanoi", "Berlin", "Turin", "Kraków", "Osaka", "Beirut", "Brno", "Oslo"];
const TAG: &[&str] = &["admin", "beta", "billing", "eu", "trial", "vip", "mobile", "api", "legacy", "support"];
const STATUS: &[&str] = &["active", "suspended", "pending", "closed"];

/// One JSON record with varied values, like a typical API listing.
fn record(r: &mut Rng, id: u64) -> String {
    let first = r.pick(FIRST);
    let last = r.pick(LAST);
    let tags: Vec<String> = (0..1 + r.below(3)).map(|_| format!("\"{}\"", r.pick(TAG))).collect();
    format!(
        "{{\"id\":{id},\"name\":\"{first} {last}\",\"email\":\"{}.{}{}@example.com\",\"status\":\"{}\",\
         \"city\":\"{}\",\"balance\":{}.{:02},\"logins\":{},\"verified\":{},\"tags\":[{}],\
         \"created_at\":\"2026-{:02}-{:02}T{:02}:{:02}:{:02}Z\",\"ref\":\"{:016x}\"}}",
        first.to_lowercase(),
        last.to_lowercase(),
        r.below(100),
        r.pick(STATUS),
        r.pick(CITY),
        r.below(100_000),
        r.below(100),
        r.below(5000),
        r.below(2) == 1,
        tags.join(","),
        1 + r.below(12),
        1 + r.below(28),
        r.below(24),
        r.below(60),
        r.below(60),
        r.next_u64() >> 32,
    )
}

/// Exactly `size` bytes of valid JSON (`size` >= 2): `{"items":[record,...]}` padded with
/// spaces (insignificant whitespace) to the size.
pub fn json_body(size: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let open = b"{\"items\":[";
    let close = b"]}";
    if size < open.len() + close.len() {
        let mut tiny = vec![b' '; size];
        tiny[..2.min(size)].copy_from_slice(&b"{}"[..2.min(size)]);
        return tiny;
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(open);
    let mut id = seed.wrapping_mul(1000) % 1_000_000;
    loop {
        let rec = record(&mut r, id);
        id += 1;
        let sep = usize::from(out.len() > open.len());
        if out.len() + sep + rec.len() + close.len() > size {
            break;
        }
        if sep == 1 {
            out.push(b',');
        }
        out.extend_from_slice(rec.as_bytes());
    }
    out.extend_from_slice(close);
    out.resize(size, b' ');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_exact_size_and_is_deterministic() {
        for size in [2usize, 11, 12, 100, 2048, 20480, 100_000] {
            let a = json_body(size, 7);
            assert_eq!(a.len(), size);
            assert_eq!(a, json_body(size, 7));
        }
        assert_ne!(json_body(20480, 1), json_body(20480, 2));
        let j = String::from_utf8(json_body(2048, 3)).unwrap();
        assert!(j.starts_with("{\"items\":[{\"id\":") && j.trim_end().ends_with("]}"), "{j}");
        assert_eq!(j.matches('{').count(), j.matches('}').count());
    }

    #[test]
    fn random_and_fnv() {
        assert_eq!(random_body(1000, 1).len(), 1000);
        assert_eq!(random_body(1000, 1), random_body(1000, 1));
        assert_ne!(random_body(1000, 1), random_body(1000, 2));
        // FNV-1a 64 known answers.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
    }
}
