//! The QUIC side: TLS and transport setup, the session wrapper, the datagram path and the
//! reconnect policy. Nothing here knows HTTP/1.1.

pub mod ack_hold;
pub mod amplification;
pub mod backoff;
pub mod batch;
pub mod debug;
pub mod interest;
pub mod liveness;
pub mod loss_hiding;
pub mod offload;
pub mod pace_floor;
pub mod path_check;
pub mod refusal;
pub mod release;
pub mod session;
pub mod setup;
pub mod socket;
pub mod tls;
pub mod udp;

/// The longest connection ID (RFC 9000 §17.2); ours are `transport.connection_id_bytes`.
pub const MAX_CID_LEN: usize = quiche::MAX_CONN_ID_LEN;

/// A fresh random connection ID of `len` bytes (at most [`MAX_CID_LEN`]).
pub fn new_cid(len: usize) -> Vec<u8> {
    let mut cid = vec![0u8; len.min(MAX_CID_LEN)];
    random_bytes(&mut cid);
    cid
}

/// HTTP/3 error codes we send when resetting streams (RFC 9114 §8.1).
pub mod h3_code {
    pub const NO_ERROR: u64 = 0x100;
    pub const INTERNAL_ERROR: u64 = 0x102;
    pub const REQUEST_REJECTED: u64 = 0x10b;
    pub const REQUEST_CANCELLED: u64 = 0x10c;
    pub const REQUEST_INCOMPLETE: u64 = 0x10d;
    pub const MESSAGE_ERROR: u64 = 0x10e;
}

/// Exit status when the OS random generator fails while running (`EX_OSERR`, sysexits.h).
pub const EXIT_NO_RANDOMNESS: i32 = 71;

/// Fills `buf` with random bytes from the OS (ring's system RNG: `getrandom(2)`).
///
/// These bytes make connection IDs, reset tokens and path challenges unpredictable; there is
/// no weaker fallback. If the OS generator fails (which a working kernel never does: it is an
/// OS failure), the process stops at once with an error line and exit status
/// [`EXIT_NO_RANDOMNESS`], so that the supervisor restarts it or an operator looks, instead of
/// running on with guessable values. [`check_random`] makes the same failure a clear start-up
/// error.
pub fn random_bytes(buf: &mut [u8]) {
    use ring::rand::SecureRandom;
    let rng = ring::rand::SystemRandom::new();
    fill_or_stop(
        buf,
        |b| rng.fill(b).map_err(|_| ()),
        stop_without_randomness,
    );
}

/// Start-up check that the OS random generator works.
pub fn check_random() -> Result<(), String> {
    use ring::rand::SecureRandom;
    let mut probe = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut probe)
        .map_err(|_| "the OS random generator (getrandom) failed; refusing to start".to_string())
}

/// Fills `buf` with `fill`, or calls `stop` (which never returns) when it fails: no caller ever
/// sees bytes that did not come from the generator.
fn fill_or_stop(
    buf: &mut [u8],
    fill: impl FnOnce(&mut [u8]) -> Result<(), ()>,
    stop: impl FnOnce() -> std::convert::Infallible,
) {
    if fill(buf).is_err() {
        stop();
    }
}

fn stop_without_randomness() -> std::convert::Infallible {
    log::error!(
        "the OS random generator (getrandom) failed: stopping, since connection IDs and reset \
         tokens must not be guessable (exit status {EXIT_NO_RANDOMNESS})"
    );
    std::process::exit(EXIT_NO_RANDOMNESS)
}

/// A uniform sample in [0, 1).
pub fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    random_bytes(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_generator_stops_instead_of_falling_back() {
        let mut buf = [0u8; 16];
        let outcome = std::panic::catch_unwind(move || {
            fill_or_stop(&mut buf, |_| Err(()), || panic!("stopped"));
            buf
        });
        let stopped = outcome
            .err()
            .and_then(|p| p.downcast_ref::<&str>().copied());
        assert_eq!(
            stopped,
            Some("stopped"),
            "returned bytes not from the generator"
        );
    }

    #[test]
    fn a_working_generator_fills_the_buffer() {
        let mut buf = [0u8; 4];
        fill_or_stop(
            &mut buf,
            |b| {
                b.fill(7);
                Ok(())
            },
            || panic!("must not stop"),
        );
        assert_eq!(buf, [7; 4]);
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        random_bytes(&mut a);
        random_bytes(&mut b);
        assert_ne!(a, b);
        assert_eq!(check_random(), Ok(()));
    }
}
