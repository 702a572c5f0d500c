//! The QUIC side: TLS and transport setup, the session wrapper, the datagram path and the
//! reconnect policy. Nothing here knows HTTP/1.1.

pub mod amplification;
pub mod backoff;
pub mod debug;
pub mod liveness;
pub mod offload;
pub mod path_check;
pub mod refusal;
pub mod session;
pub mod setup;
pub mod tls;
pub mod udp;

/// Length of the connection IDs we issue.
pub const CID_LEN: usize = quiche::MAX_CONN_ID_LEN;

/// HTTP/3 error codes we send when resetting streams (RFC 9114 §8.1).
pub mod h3_code {
    pub const NO_ERROR: u64 = 0x100;
    pub const INTERNAL_ERROR: u64 = 0x102;
    pub const REQUEST_REJECTED: u64 = 0x10b;
    pub const REQUEST_CANCELLED: u64 = 0x10c;
    pub const REQUEST_INCOMPLETE: u64 = 0x10d;
    pub const MESSAGE_ERROR: u64 = 0x10e;
}

/// Fills `buf` with random bytes from the OS (ring's system RNG).
pub fn random_bytes(buf: &mut [u8]) {
    use ring::rand::SecureRandom;
    if ring::rand::SystemRandom::new().fill(buf).is_err() {
        // ring reports failure only if the OS RNG is unavailable; fall back to time-derived bytes
        // (used for connection IDs and jitter, whose secrecy is not what protects the session).
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> ((i % 16) * 8)) as u8 ^ i as u8;
        }
    }
}

/// A uniform sample in [0, 1).
pub fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    random_bytes(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}
